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
/// scan is one pass over the bytes and allocates nothing.
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
    let mut in_string = false;
    // Offset of a `\uD800`-`\uDBFF` escape still waiting for its low half.
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
            // Unbalanced closers are left to the JSON parser to report.
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(text)
}

/// Four ASCII hex digits as a UTF-16 code unit.
fn hex4(digits: &[u8]) -> Option<u16> {
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
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
    while let Some(pos) = rest
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
    {
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
}
