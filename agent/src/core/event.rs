//! NIP-01 events: strict parsing, canonical serialization and id, BIP-340
//! verification and signing.
//!
//! Untrusted bytes become an [`UnverifiedEvent`] through [`UnverifiedEvent::from_json`],
//! which accepts exactly the NIP-01 shape and nothing else; only
//! [`UnverifiedEvent::verify`] (id and signature checked) or [`Keys::sign`]
//! make an [`Event`]. Code that acts on events takes `&Event`, so it cannot be
//! handed one whose signature was never checked.

use std::fmt;
use std::ops::Deref;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::core::error::{truncated, Error, Field, HexProblem, TagProblem};
use crate::core::json::{self, fail, reject_other_types, Any};
use crate::core::keys::{self, Keys};

/// Size limits applied to untrusted events and relay messages, checked before
/// the work they bound is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest event JSON, in bytes. Default 65 536.
    pub max_event_bytes: usize,
    /// Largest relay message (the `["EVENT", sub, event]` wrapper included),
    /// in bytes. Default 70 000.
    pub max_message_bytes: usize,
    /// Largest `content`, in bytes of UTF-8. Default 32 768.
    pub max_content_bytes: usize,
    /// Most tags in one event. Default 256.
    pub max_tags: usize,
    /// Most strings in one tag, the name included. Default 16.
    pub max_tag_values: usize,
    /// Longest string in a tag, in bytes of UTF-8. Default 1 024.
    pub max_tag_value_bytes: usize,
    /// Longest free text in a relay message (`NOTICE`, `CLOSED` and `OK`
    /// reasons, `AUTH` challenges), in bytes. Default 4 096.
    pub max_text_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 65_536,
            max_message_bytes: 70_000,
            max_content_bytes: 32_768,
            max_tags: 256,
            max_tag_values: 16,
            max_tag_value_bytes: 1_024,
            max_text_bytes: 4_096,
        }
    }
}

/// Depth of a well-formed event: object > tags array > tag array.
pub(crate) const EVENT_DEPTH: usize = 3;

/// The seven fields of a NIP-01 event, decoded.
///
/// Reached through [`UnverifiedEvent`] or [`Event`]; holding one says nothing
/// about whether the signature is valid.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventData {
    /// 32-byte event id as claimed by the event (NIP-01).
    pub id: [u8; 32],
    /// 32-byte BIP-340 x-only public key of the author.
    pub pubkey: [u8; 32],
    /// Unix time, seconds.
    pub created_at: u64,
    /// Event kind, 0..=65535.
    pub kind: u16,
    /// Tags: each a non-empty list of strings, the first being the tag name.
    pub tags: Vec<Vec<String>>,
    /// Arbitrary UTF-8 content.
    pub content: String,
    /// 64-byte BIP-340 Schnorr signature over `id`.
    pub sig: [u8; 64],
}

impl EventData {
    /// The id as 64 lowercase hex chars.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// The author's pubkey as 64 lowercase hex chars.
    pub fn pubkey_hex(&self) -> String {
        hex::encode(self.pubkey)
    }

    /// The value (element 1) of the first tag named `name`, if any.
    pub fn tag_value(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.first().is_some_and(|n| n == name))
            .and_then(|t| t.get(1))
            .map(String::as_str)
    }

    /// All tags whose name (element 0) is `name`, in order.
    pub fn tags_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
        self.tags
            .iter()
            .filter(move |t| t.first().is_some_and(|n| n == name))
            .map(Vec::as_slice)
    }

    /// Serializes as a NIP-01 event object, fields in NIP-01 order, no
    /// whitespace, strings escaped as in [`canonical_json`].
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256 + self.content.len());
        out.extend_from_slice(b"{\"id\":\"");
        push_hex(&mut out, &self.id);
        out.extend_from_slice(b"\",\"pubkey\":\"");
        push_hex(&mut out, &self.pubkey);
        out.extend_from_slice(b"\",\"created_at\":");
        push_decimal(&mut out, self.created_at);
        out.extend_from_slice(b",\"kind\":");
        push_decimal(&mut out, u64::from(self.kind));
        out.extend_from_slice(b",\"tags\":");
        push_tags(&mut out, &self.tags);
        out.extend_from_slice(b",\"content\":");
        json::push_string(&mut out, &self.content);
        out.extend_from_slice(b",\"sig\":\"");
        push_hex(&mut out, &self.sig);
        out.extend_from_slice(b"\"}");
        into_string(out)
    }

    /// Computes the NIP-01 id of these fields (ignores the claimed `id`).
    pub fn compute_id(&self) -> [u8; 32] {
        compute_id(
            &self.pubkey,
            self.created_at,
            self.kind,
            &self.tags,
            &self.content,
        )
    }
}

impl fmt::Debug for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id_hex())
            .field("pubkey", &self.pubkey_hex())
            .field("created_at", &self.created_at)
            .field("kind", &self.kind)
            .field("tags", &self.tags)
            .field("content", &self.content)
            .field("sig", &hex::encode(self.sig))
            .finish()
    }
}

/// An event that parsed strictly but whose id and signature are unchecked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnverifiedEvent(EventData);

impl UnverifiedEvent {
    /// Parses one NIP-01 event object from JSON bytes.
    ///
    /// Accepts exactly the fields `id, pubkey, created_at, kind, tags,
    /// content, sig` in any order; whitespace between tokens is allowed.
    ///
    /// # Errors
    /// [`Error::TooLarge`] over `limits.max_event_bytes` (checked first),
    /// [`Error::InvalidUtf8`], [`Error::TooDeep`] (more than 3 levels),
    /// [`Error::Json`] for malformed JSON, and one field-specific variant for
    /// each way a field can be wrong (see [`Error`]).
    ///
    /// The result is that of [`json::precheck`] followed by the strict
    /// parse, but valid input is read once: the strict parse runs first
    /// straight on the bytes, and only when it fails are the checks run
    /// to report the error they would have reported first
    /// ([`json::fast_then_checked`]).
    pub fn from_json(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        json::fast_then_checked(
            bytes,
            limits.max_event_bytes,
            |bytes| Self::parse(serde_json::Deserializer::from_slice(bytes), limits),
            || Self::from_json_checked(bytes, limits),
        )
    }

    /// [`UnverifiedEvent::from_json`] the long way: [`json::precheck`],
    /// then the strict parse. Gives the same result for every input; kept
    /// for the error path and for the tests and fuzz targets that hold the
    /// two equal (`fuzz/checks.rs`), not for callers.
    #[doc(hidden)]
    pub fn from_json_checked(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        let text = json::precheck(bytes, "event", limits.max_event_bytes, EVENT_DEPTH)?;
        // The same reader as the fast path (one instance of the parser
        // in the binary); the precheck has checked the UTF-8 already.
        Self::parse(
            serde_json::Deserializer::from_slice(text.as_bytes()),
            limits,
        )
    }

    /// The strict parse of one event object, and nothing after it.
    fn parse<'de, R: serde_json::de::Read<'de>>(
        mut de: serde_json::Deserializer<R>,
        limits: &Limits,
    ) -> Result<Self, Error> {
        let mut slot = None;
        let parsed = EventSeed {
            limits,
            slot: &mut slot,
        }
        .deserialize(&mut de)
        .and_then(|ev| de.end().map(|()| ev));
        json::finish(parsed, &mut slot).map(UnverifiedEvent)
    }

    /// Checks the id (NIP-01) and the BIP-340 signature.
    ///
    /// # Errors
    /// [`Error::IdMismatch`] when `id` is not the SHA-256 of the canonical
    /// serialization; [`Error::InvalidPubkey`] when `pubkey` is not on the
    /// curve; [`Error::InvalidSignature`] when `sig` does not verify.
    pub fn verify(self) -> Result<Event, Error> {
        if self.0.compute_id() != self.0.id {
            return Err(Error::IdMismatch);
        }
        keys::verify_schnorr(&self.0.pubkey, &self.0.id, &self.0.sig)?;
        Ok(Event(self.0))
    }

    /// Wraps fields without any check; for building test inputs.
    pub fn from_data(data: EventData) -> Self {
        UnverifiedEvent(data)
    }

    /// The decoded fields, to modify (for tests) or inspect.
    pub fn into_data(self) -> EventData {
        self.0
    }
}

impl Deref for UnverifiedEvent {
    type Target = EventData;
    fn deref(&self) -> &EventData {
        &self.0
    }
}

/// An event whose id and BIP-340 signature have been checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event(EventData);

impl Event {
    /// Parses and verifies in one step: [`UnverifiedEvent::from_json`] then
    /// [`UnverifiedEvent::verify`].
    ///
    /// # Errors
    /// Any error of those two.
    pub fn from_json(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        UnverifiedEvent::from_json(bytes, limits)?.verify()
    }

    pub(crate) fn new_signed(data: EventData) -> Self {
        Event(data)
    }

    /// Forgets that the event was verified (e.g. to tamper with it in tests).
    pub fn into_unverified(self) -> UnverifiedEvent {
        UnverifiedEvent(self.0)
    }
}

impl Deref for Event {
    type Target = EventData;
    fn deref(&self) -> &EventData {
        &self.0
    }
}

/// An event before signing: everything but `id` and `sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedEvent {
    /// Unix time, seconds.
    pub created_at: u64,
    /// Event kind.
    pub kind: u16,
    /// Tags, each non-empty.
    pub tags: Vec<Vec<String>>,
    /// Content.
    pub content: String,
}

impl Keys {
    /// Signs `unsigned` with these keys: sets `pubkey`, computes the NIP-01
    /// id and a BIP-340 signature with 32 bytes of fresh OS randomness as
    /// auxiliary data.
    ///
    /// # Errors
    /// [`Error::Randomness`] if the OS generator fails; [`Error::InvalidTag`]
    /// if a tag is empty (NIP-01 tags have a name).
    pub fn sign(&self, unsigned: UnsignedEvent) -> Result<Event, Error> {
        if let Some(index) = unsigned.tags.iter().position(Vec::is_empty) {
            return Err(Error::InvalidTag {
                index,
                problem: TagProblem::Empty,
            });
        }
        let pubkey = self.public_key();
        let id = compute_id(
            &pubkey,
            unsigned.created_at,
            unsigned.kind,
            &unsigned.tags,
            &unsigned.content,
        );
        let sig = self.sign_digest(&id)?;
        Ok(Event::new_signed(EventData {
            id,
            pubkey,
            created_at: unsigned.created_at,
            kind: unsigned.kind,
            tags: unsigned.tags,
            content: unsigned.content,
            sig,
        }))
    }
}

/// The canonical NIP-01 serialization `[0,"<pubkey>",created_at,kind,tags,"content"]`
/// as UTF-8 bytes: no whitespace; strings escaped with `\"`, `\\`, `\n`,
/// `\r`, `\t`, `\b`, `\f`, other bytes below 0x20 as `\u00xx` (lowercase),
/// everything else verbatim.
pub fn canonical_json(
    pubkey: &[u8; 32],
    created_at: u64,
    kind: u16,
    tags: &[Vec<String>],
    content: &str,
) -> Vec<u8> {
    let tag_bytes: usize = tags.iter().flatten().map(|v| v.len() + 4).sum();
    let mut out = Vec::with_capacity(128 + content.len() + tag_bytes);
    out.extend_from_slice(b"[0,\"");
    push_hex(&mut out, pubkey);
    out.extend_from_slice(b"\",");
    push_decimal(&mut out, created_at);
    out.push(b',');
    push_decimal(&mut out, u64::from(kind));
    out.push(b',');
    push_tags(&mut out, tags);
    out.push(b',');
    json::push_string(&mut out, content);
    out.push(b']');
    out
}

/// The NIP-01 event id: SHA-256 of [`canonical_json`], 32 bytes.
pub fn compute_id(
    pubkey: &[u8; 32],
    created_at: u64,
    kind: u16,
    tags: &[Vec<String>],
    content: &str,
) -> [u8; 32] {
    Sha256::digest(canonical_json(pubkey, created_at, kind, tags, content)).into()
}

fn push_tags(out: &mut Vec<u8>, tags: &[Vec<String>]) {
    out.push(b'[');
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (j, value) in tag.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json::push_string(out, value);
        }
        out.push(b']');
    }
    out.push(b']');
}

/// Appends lowercase hex of `bytes` (at most 64 bytes) without allocating.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut buf = [0u8; 128];
    if let Some(dst) = buf.get_mut(..bytes.len() * 2) {
        if hex::encode_to_slice(bytes, dst).is_ok() {
            out.extend_from_slice(dst);
        }
    }
}

/// Appends `n` in decimal without allocating.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        if let Some(d) = buf.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(start..).unwrap_or_default());
}

fn into_string(bytes: Vec<u8>) -> String {
    // Only ASCII and the bytes of valid `String`s were pushed, so this cannot
    // fail; the lossy form keeps the function total without a panic path.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Decodes exactly `N` bytes from `2N` lowercase hex chars.
pub(crate) fn parse_hex<const N: usize>(s: &str, field: Field) -> Result<[u8; N], Error> {
    let bad = |problem| Error::BadHex {
        field,
        expected_len: 2 * N,
        problem,
    };
    if s.len() != 2 * N {
        return Err(bad(HexProblem::Length { found: s.len() }));
    }
    // Decode and check in one pass without a branch per character: a byte
    // that is not a lowercase hex digit sets NOT_HEX in `invalid`, and only
    // then is the input searched for the first such byte.
    let mut out = [0u8; N];
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        if let &[high, low] = pair {
            let (high, low) = (hex_digit(high), hex_digit(low));
            invalid |= high | low;
            *byte = (high << 4) | (low & 0x0f);
        }
    }
    if invalid & NOT_HEX != 0 {
        let position = s.bytes().position(|b| hex_digit(b) == NOT_HEX);
        return Err(bad(HexProblem::Character {
            position: position.unwrap_or(0),
        }));
    }
    Ok(out)
}

/// What [`hex_digit`] gives for a byte that is not a lowercase hex digit;
/// no digit's value has this bit.
const NOT_HEX: u8 = 0x80;

/// The value of a lowercase hex digit (NIP-01 hex is lowercase), or
/// [`NOT_HEX`].
fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => NOT_HEX,
    }
}

// ---- serde plumbing: strict event object ----------------------------------

struct EventSeed<'a> {
    limits: &'a Limits,
    slot: &'a mut Option<Error>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = EventData;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<EventData, D::Error> {
        d.deserialize_any(self)
    }
}

impl EventSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &'static str) -> E {
        fail(self.slot, Error::NotAnObject { found })
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = EventData;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a NIP-01 event object")
    }

    reject_other_types!(except map);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventData, A::Error> {
        let limits = self.limits;
        let slot = self.slot;
        let mut seen = [false; 7];
        let (mut id, mut pubkey, mut sig) = (None, None, None);
        let (mut created_at, mut kind, mut tags, mut content) = (None, None, None, None);

        while let Some(key) = map.next_key::<Any>()? {
            let key = match key {
                Any::Str(key) => key,
                // JSON object keys are always strings.
                other => std::borrow::Cow::Borrowed(other.type_name()),
            };
            let Some(field) = Field::from_name(&key) else {
                return Err(fail(slot, Error::UnknownField(truncated(&key, 64))));
            };
            let Some(seen_field) = seen.get_mut(field.index()) else {
                return Err(fail(slot, Error::UnknownField(truncated(&key, 64))));
            };
            if std::mem::replace(seen_field, true) {
                return Err(fail(slot, Error::DuplicateField(field)));
            }
            if field == Field::Tags {
                tags = Some(map.next_value_seed(TagsSeed {
                    limits,
                    slot: &mut *slot,
                })?);
                continue;
            }
            let value: Any = map.next_value()?;
            let result = match field {
                Field::Id => string(field, value)
                    .and_then(|s| parse_hex(&s, field))
                    .map(|v| id = Some(v)),
                Field::Pubkey => string(field, value)
                    .and_then(|s| parse_hex(&s, field))
                    .map(|v| pubkey = Some(v)),
                Field::Sig => string(field, value)
                    .and_then(|s| parse_hex(&s, field))
                    .map(|v| sig = Some(v)),
                Field::CreatedAt => integer(field, value).map(|v| created_at = Some(v)),
                Field::Kind => integer(field, value).and_then(|k| {
                    u16::try_from(k)
                        .map(|k| kind = Some(k))
                        .map_err(|_| Error::KindOutOfRange(k))
                }),
                Field::Content => string(field, value).and_then(|s| {
                    if s.len() > limits.max_content_bytes {
                        Err(Error::TooLarge {
                            what: "content",
                            len: s.len(),
                            max: limits.max_content_bytes,
                        })
                    } else {
                        content = Some(s.into_owned());
                        Ok(())
                    }
                }),
                Field::Tags => Ok(()),
            };
            if let Err(e) = result {
                return Err(fail(slot, e));
            }
        }

        match (id, pubkey, created_at, kind, tags, content, sig) {
            (
                Some(id),
                Some(pubkey),
                Some(created_at),
                Some(kind),
                Some(tags),
                Some(content),
                Some(sig),
            ) => Ok(EventData {
                id,
                pubkey,
                created_at,
                kind,
                tags,
                content,
                sig,
            }),
            _ => {
                let missing = Field::ALL
                    .into_iter()
                    .zip(seen)
                    .find(|&(_, seen)| !seen)
                    .map_or(Field::Id, |(field, _)| field);
                Err(fail(slot, Error::MissingField(missing)))
            }
        }
    }
}

fn string(field: Field, value: Any<'_>) -> Result<std::borrow::Cow<'_, str>, Error> {
    match value {
        Any::Str(s) => Ok(s),
        other => Err(Error::WrongType {
            field,
            expected: "string",
            found: other.type_name(),
        }),
    }
}

fn integer(field: Field, value: Any<'_>) -> Result<u64, Error> {
    match value {
        Any::U64(v) => Ok(v),
        Any::Negative => Err(Error::Negative(field)),
        Any::F64 => Err(Error::NotAnInteger(field)),
        other => Err(Error::WrongType {
            field,
            expected: "integer",
            found: other.type_name(),
        }),
    }
}

/// Tags a parsed event's tag list has room for before it grows (a
/// directive has six to nine); a capacity, not a limit.
const TYPICAL_TAGS: usize = 8;

/// Values a parsed tag has room for before it grows; a capacity, not a
/// limit.
const TYPICAL_TAG_VALUES: usize = 3;

struct TagsSeed<'a> {
    limits: &'a Limits,
    slot: &'a mut Option<Error>,
}

impl TagsSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &'static str) -> E {
        fail(
            self.slot,
            Error::WrongType {
                field: Field::Tags,
                expected: "array",
                found,
            },
        )
    }
}

impl<'de> DeserializeSeed<'de> for TagsSeed<'_> {
    type Value = Vec<Vec<String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_> {
    type Value = Vec<Vec<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tags")
    }

    reject_other_types!(except seq);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // serde_json gives no length hint; a directive has about six tags,
        // so one allocation of this size replaces three growing ones.
        let mut tags = Vec::with_capacity(TYPICAL_TAGS.min(self.limits.max_tags));
        loop {
            let index = tags.len();
            let tag = seq.next_element_seed(TagSeed {
                index,
                limits: self.limits,
                slot: &mut *self.slot,
            })?;
            let Some(tag) = tag else { break };
            if index >= self.limits.max_tags {
                return Err(fail(
                    self.slot,
                    Error::TooManyTags {
                        max: self.limits.max_tags,
                    },
                ));
            }
            tags.push(tag);
        }
        Ok(tags)
    }
}

struct TagSeed<'a> {
    index: usize,
    limits: &'a Limits,
    slot: &'a mut Option<Error>,
}

impl TagSeed<'_> {
    fn invalid<E: de::Error>(self, problem: TagProblem) -> E {
        let index = self.index;
        fail(self.slot, Error::InvalidTag { index, problem })
    }
    fn wrong_type<E: de::Error>(self, _found: &'static str) -> E {
        self.invalid(TagProblem::NotArray)
    }
}

impl<'de> DeserializeSeed<'de> for TagSeed<'_> {
    type Value = Vec<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TagSeed<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tag (array of strings)")
    }

    reject_other_types!(except seq);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let limits = self.limits;
        // Most tags are a name and one or two values: one allocation.
        let mut values = Vec::with_capacity(TYPICAL_TAG_VALUES.min(limits.max_tag_values));
        while let Some(value) = seq.next_element::<Any>()? {
            let position = values.len();
            if position >= limits.max_tag_values {
                return Err(self.invalid(TagProblem::TooManyValues {
                    max: limits.max_tag_values,
                }));
            }
            let Any::Str(value) = value else {
                return Err(self.invalid(TagProblem::NotString { position }));
            };
            if value.len() > limits.max_tag_value_bytes {
                return Err(self.invalid(TagProblem::ValueTooLong {
                    position,
                    len: value.len(),
                    max: limits.max_tag_value_bytes,
                }));
            }
            values.push(value.into_owned());
        }
        if values.is_empty() {
            return Err(self.invalid(TagProblem::Empty));
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse_hex` as it was before it decoded and checked in one pass.
    fn parse_hex_reference(s: &str) -> Result<[u8; 32], Error> {
        let bad = |problem| Error::BadHex {
            field: Field::Id,
            expected_len: 64,
            problem,
        };
        if s.len() != 64 {
            return Err(bad(HexProblem::Length { found: s.len() }));
        }
        if let Some(position) = s
            .bytes()
            .position(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad(HexProblem::Character { position }));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        Ok(out)
    }

    #[test]
    fn parse_hex_decodes_lowercase_only() {
        let all: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
        let bytes: [u8; 128] = parse_hex(&all[..256], Field::Sig).unwrap();
        assert!(bytes.iter().copied().eq(0..128));
        let bytes: [u8; 128] = parse_hex(&all[256..], Field::Sig).unwrap();
        assert!(bytes.iter().copied().eq(128..=255));
        for bad in ['A', 'F', 'g', '/', ':', '`', ' ', '\0'] {
            for at in [0, 1, 62, 63] {
                let mut s = "0".repeat(64);
                s.replace_range(at..=at, &bad.to_string());
                assert_eq!(
                    parse_hex::<32>(&s, Field::Id),
                    parse_hex_reference(&s),
                    "{s}"
                );
            }
        }
        // A multi-byte character: the position is in bytes.
        let s = format!("{}é{}", "a".repeat(10), "b".repeat(52));
        assert_eq!(parse_hex::<32>(&s, Field::Id), parse_hex_reference(&s));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(5_000))]

            #[test]
            fn parse_hex_agrees_with_check_then_decode(
                s in "([0-9a-f]{0,70}|[0-9a-fA-Fg-z/:`@\u{e9}]{62,66}|[0-9a-f]{20}[^0-9a-f][0-9a-f]{43})"
            ) {
                prop_assert_eq!(parse_hex::<32>(&s, Field::Id), parse_hex_reference(&s));
            }
        }
    }
}
