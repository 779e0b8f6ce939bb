//! JSON plumbing shared by the event and message parsers: the checks made
//! before any parsing work, a visitor that accepts any JSON value so the
//! caller can name the wrong type, and the NIP-01 string escaping.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::core::error::Error;

/// Checks done before parsing: length, UTF-8, nesting depth, and `\u`
/// escapes of lone UTF-16 surrogates (which decode to no character).
///
/// Returns the input as `&str`. Depth counts `[` and `{` outside strings; the
/// scan is one pass over the bytes, skips from one byte that matters to the
/// next, and allocates nothing.
pub(crate) fn precheck<'a>(
    bytes: &'a [u8],
    what: &'static str,
    max_len: usize,
    max_depth: usize,
) -> Result<&'a str, Error> {
    if bytes.len() > max_len {
        return Err(Error::TooLarge {
            what,
            len: bytes.len(),
            max: max_len,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut depth = 0usize;
    let mut i = 0;
    // Outside strings only quotes and brackets matter.
    while let Some(skip) = bytes.get(i..).and_then(|rest| {
        rest.iter()
            .position(|&b| matches!(b, b'"' | b'[' | b'{' | b']' | b'}'))
    }) {
        i += skip;
        match bytes.get(i) {
            Some(b'"') => i = string_end(bytes, i + 1)?,
            Some(b'[' | b'{') => {
                depth += 1;
                if depth > max_depth {
                    return Err(Error::TooDeep { max: max_depth });
                }
                i += 1;
            }
            // Unbalanced closers are left to the JSON parser to report.
            _ => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
        }
    }
    Ok(text)
}

/// From just after a string's opening quote, the offset just after its
/// closing quote, or the length of `bytes` if it has none. Inside a string
/// only escapes matter: a `\u` escape of a UTF-16 high surrogate must be
/// followed at once by one of a low surrogate, and a low surrogate must
/// follow a high one; [`Error::LoneSurrogate`] gives the offset of the
/// escape that breaks the rule (the high one, if it is unpaired).
fn string_end(bytes: &[u8], mut i: usize) -> Result<usize, Error> {
    while let Some(skip) = bytes.get(i..).and_then(find_special) {
        i += skip;
        match bytes.get(i) {
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => {}
            // A raw control character: the JSON parser rejects it.
            _ => {
                i += 1;
                continue;
            }
        }
        i += match escaped_unit(bytes, i) {
            Some(0xd800..=0xdbff) => match escaped_unit(bytes, i + 6) {
                Some(0xdc00..=0xdfff) => 12,
                // Input that ends here is left to the JSON parser.
                _ if bytes.get(i + 6).is_none() => 6,
                _ => return Err(Error::LoneSurrogate { offset: i }),
            },
            Some(0xdc00..=0xdfff) => return Err(Error::LoneSurrogate { offset: i }),
            Some(_) => 6,
            // Any other escape is two bytes.
            None => 2,
        };
    }
    Ok(bytes.len())
}

/// The UTF-16 code unit of a `\uXXXX` escape at offset `i`, if there is one.
fn escaped_unit(bytes: &[u8], i: usize) -> Option<u16> {
    match bytes.get(i..i + 2) {
        Some(b"\\u") => bytes.get(i + 2..i + 6).and_then(hex4),
        _ => None,
    }
}

/// The offset of the first byte in `bytes` that a JSON string cannot hold
/// as it is: a control character (below 0x20), `"` or `\\`. Looks at eight
/// bytes at a time: most of an event is long strings (hex, content) with
/// none of these.
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `word` that is below `n` (n <= 0x80). A
    // borrow can also set it in a byte above one that is really below `n`,
    // never in one before it, so the lowest bit set is exact.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH_BITS;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let Ok(word) = <[u8; 8]>::try_from(chunk).map(u64::from_le_bytes) else {
            break;
        };
        // A byte equal to `c` is a zero byte of `word ^ (ONES * c)`.
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let hits = below(word, 0x20) | below(quote, 1) | below(backslash, 1);
        if hits != 0 {
            // Bytes were read little-endian: the first in memory is lowest.
            return Some(offset + (hits.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    bytes
        .get(offset..)
        .unwrap_or_default()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|p| offset + p)
}

/// Four ASCII hex digits as a UTF-16 code unit.
fn hex4(digits: &[u8]) -> Option<u16> {
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Parses untrusted JSON with the result of [`precheck`] followed by a
/// strict parse, reading valid input only once.
///
/// `fast` is the strict parse run straight on the bytes (a serde_json slice
/// deserializer, which checks the UTF-8 of every string it reads); when it
/// succeeds, so would the checks: a strict parse accepts no value deeper
/// than its schema, and serde_json refuses a lone surrogate in every string
/// it hands to a visitor, and the bytes between strings can only be JSON's
/// ASCII. Only when `fast` fails does `checked` run (the precheck, then the
/// same parse) so that the error is the one the checks find first. Input
/// over `max_len` bytes is refused before either: the same
/// [`Error::TooLarge`] the precheck gives.
///
/// # Errors
/// Whatever `checked` returns for input `fast` refuses.
pub(crate) fn fast_then_checked<'a, T>(
    bytes: &'a [u8],
    max_len: usize,
    fast: impl FnOnce(&'a [u8]) -> Result<T, Error>,
    checked: impl FnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    if bytes.len() > max_len {
        // The precheck's first test, with its error.
        return checked();
    }
    fast(bytes).or_else(|_| checked())
}

/// Maps a serde_json failure to our error: the typed error recorded by a
/// visitor if there is one, otherwise the parser's own message.
pub(crate) fn finish<T>(
    result: Result<T, serde_json::Error>,
    slot: &mut Option<Error>,
) -> Result<T, Error> {
    match result {
        Ok(v) => Ok(v),
        Err(e) => Err(slot.take().unwrap_or_else(|| Error::Json(e.to_string()))),
    }
}

/// Records a typed error for [`finish`] and returns a serde error that stops
/// the parse at once.
pub(crate) fn fail<E: de::Error>(slot: &mut Option<Error>, err: Error) -> E {
    let msg = err.to_string();
    *slot = Some(err);
    E::custom(msg)
}

/// Any JSON value, keeping only what the strict parsers need to tell the
/// caller: strings and integers by value, the rest by type. Arrays and
/// objects are skipped (their depth is bounded by [`precheck`]).
#[derive(Debug)]
pub(crate) enum Any<'de> {
    /// Borrowed from the input when it has no escapes.
    Str(Cow<'de, str>),
    U64(u64),
    Negative,
    F64,
    Bool(bool),
    Null,
    Array,
    Object,
}

impl Any<'_> {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Any::Str(_) => "string",
            Any::U64(_) | Any::Negative | Any::F64 => "number",
            Any::Bool(_) => "boolean",
            Any::Null => "null",
            Any::Array => "array",
            Any::Object => "object",
        }
    }
}

impl<'de> Deserialize<'de> for Any<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Any<'de>, E> {
        Ok(Any::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Any<'de>, E> {
        Ok(Any::U64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Any<'de>, E> {
        // serde_json only calls this for negative integers.
        let _ = v;
        Ok(Any::Negative)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Any<'de>, E> {
        Ok(Any::F64)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Any<'de>, E> {
        Ok(Any::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Any<'de>, E> {
        Ok(Any::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Any<'de>, E> {
        Ok(Any::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Any<'de>, E> {
        Ok(Any::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Any::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Any<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Any::Object)
    }
}

/// Implements every `visit_*` except the listed container one as a call to
/// `self.wrong_type(found)`, so a visitor that wants an array or an object
/// reports the type it got through its own typed error.
macro_rules! reject_other_types {
    (except seq) => {
        reject_other_types!(@scalars);
        fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong_type("object"))
        }
    };
    (except map) => {
        reject_other_types!(@scalars);
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(self.wrong_type("array"))
        }
    };
    (@scalars) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(self.wrong_type("boolean"))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err(self.wrong_type("number"))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err(self.wrong_type("number"))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(self.wrong_type("number"))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(self.wrong_type("string"))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Err(self.wrong_type("null"))
        }
    };
}
pub(crate) use reject_other_types;

/// Appends `s` as a JSON string with the NIP-01 escaping: `\"`, `\\`, `\n`,
/// `\r`, `\t`, `\b`, `\f`; other bytes below 0x20 as `\u00xx` (lowercase
/// hex); everything else, DEL and U+2028 included, verbatim.
pub(crate) fn push_string(out: &mut Vec<u8>, s: &str) {
    let hex = |n: u8| if n < 10 { b'0' + n } else { b'a' + n - 10 };
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(pos) = find_special(rest) {
        let (plain, tail) = rest.split_at(pos);
        out.extend_from_slice(plain);
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(b >> 4), hex(b & 0xf)]),
        }
        rest = tail;
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = Vec::new();
        push_string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping_matches_nip01() {
        assert_eq!(esc(""), r#""""#);
        assert_eq!(esc("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(esc("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(esc("\u{0}\u{1f}\u{b}"), r#""\u0000\u001f\u000b""#);
        assert_eq!(esc("\u{7f}\u{2028}😀é"), "\"\u{7f}\u{2028}😀é\"");
    }

    #[test]
    fn escaping_agrees_with_serde_json_for_every_control_char() {
        for c in (0u32..0x80).chain([0x2028, 0x2029, 0xfeff, 0x1f600]) {
            let s = format!("x{}y", char::from_u32(c).unwrap());
            assert_eq!(esc(&s), serde_json::to_string(&s).unwrap(), "U+{c:04X}");
        }
    }

    #[test]
    fn precheck_counts_depth_outside_strings_only() {
        assert!(precheck(br#"[["[[[[[["]]"#, "x", 100, 2).is_ok());
        assert_eq!(
            precheck(b"[[[]]]", "x", 100, 2),
            Err(Error::TooDeep { max: 2 })
        );
        assert!(precheck(br#"["\"[[["]"#, "x", 100, 1).is_ok());
        assert_eq!(
            precheck(b"[1234]", "x", 5, 3),
            Err(Error::TooLarge {
                what: "x",
                len: 6,
                max: 5
            })
        );
        for (text, offset) in [
            (r#"["\ud800"]"#, 2),
            (r#"["\udfff"]"#, 2),
            (r#"["a\ud800\u0041"]"#, 3),
            (r#"["\ud800\ud800\udc00"]"#, 2),
            (r#"["\ud800\n"]"#, 2),
        ] {
            assert_eq!(
                precheck(text.as_bytes(), "x", 100, 3),
                Err(Error::LoneSurrogate { offset }),
                "{text}"
            );
        }
        for ok in [r#"["\ud83d\ude00"]"#, r#"["\\ud800"]"#, r#"["\u00e9\"\\"]"#] {
            assert!(precheck(ok.as_bytes(), "x", 100, 3).is_ok(), "{ok}");
        }
        assert_eq!(
            precheck(b"[\"\xff\"]", "x", 100, 3),
            Err(Error::InvalidUtf8 { offset: 2 })
        );
    }

    #[test]
    fn find_special_at_every_offset_of_a_word() {
        for special in [b'"', b'\\', 0x00, 0x1f] {
            for len in 0..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    // Bytes just beside the special ones, and above 0x7f.
                    bytes
                        .iter_mut()
                        .skip(at + 1)
                        .step_by(2)
                        .for_each(|b| *b = 0x20);
                    bytes
                        .iter_mut()
                        .skip(at + 2)
                        .step_by(2)
                        .for_each(|b| *b = 0xff);
                    assert_eq!(
                        find_special(&bytes),
                        Some(at),
                        "{special:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert_eq!(find_special(b"!#[]^_`~ \x7f\xc3\xa9abcdefgh"), None);
    }

    /// The scan `precheck` made before it learnt to skip (one byte at a
    /// time), kept as the reference the faster one must agree with.
    fn precheck_bytewise(bytes: &[u8], max_depth: usize) -> Result<(), Error> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut high_surrogate: Option<usize> = None;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if in_string {
                let unit = match (b, bytes.get(i + 1)) {
                    (b'\\', Some(b'u')) => bytes.get(i + 2..i + 6).and_then(hex4),
                    _ => None,
                };
                match (unit, high_surrogate) {
                    (Some(0xd800..=0xdbff), None) => high_surrogate = Some(i),
                    (Some(0xdc00..=0xdfff), Some(_)) => high_surrogate = None,
                    (Some(0xd800..=0xdfff), pending) | (_, pending @ Some(_)) => {
                        return Err(Error::LoneSurrogate {
                            offset: pending.unwrap_or(i),
                        })
                    }
                    _ => {}
                }
                i += match b {
                    b'\\' if unit.is_some() => 6,
                    b'\\' => 2,
                    b'"' => {
                        in_string = false;
                        1
                    }
                    _ => 1,
                };
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max_depth {
                        return Err(Error::TooDeep { max: max_depth });
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
        Ok(())
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Pieces that make the cases the scans treat differently: quotes,
        /// brackets, escapes of every kind of surrogate, other escapes,
        /// control and multi-byte characters, plain runs longer than a word.
        const PIECES: &[&str] = &[
            "\"",
            "\\",
            "\\\"",
            "\\\\",
            "\\u",
            "\\ud800",
            "\\uDBFF",
            "\\udc00",
            "\\uDFFF",
            "\\ud83d\\ude00",
            "\\u0041",
            "\\uD7FF",
            "\\uE000",
            "\\u12",
            "[",
            "]",
            "{",
            "}",
            ",",
            ":",
            "a",
            "0123456789abcdef",
            " ",
            "\u{1}",
            "\n",
            "é",
            "😀",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(20_000))]

            #[test]
            fn precheck_agrees_with_the_bytewise_scan(
                pieces in proptest::collection::vec(0..PIECES.len(), 0..40),
                max_depth in 0usize..5,
            ) {
                let text: String = pieces.iter().filter_map(|&i| PIECES.get(i).copied()).collect();
                prop_assert_eq!(
                    precheck(text.as_bytes(), "x", 10_000, max_depth).map(|_| ()),
                    precheck_bytewise(text.as_bytes(), max_depth),
                    "{:?}", text
                );
            }

            #[test]
            fn find_special_agrees_with_a_plain_search(
                bytes in proptest::collection::vec(prop_oneof![
                    4 => 0x20u8..0x7f,
                    1 => Just(b'"'),
                    1 => Just(b'\\'),
                    1 => 0u8..0x20,
                    1 => 0x7fu8..=0xff,
                ], 0..40),
            ) {
                let plain = bytes.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\');
                prop_assert_eq!(find_special(&bytes), plain);
            }
        }
    }
}
