//! The one error type of the protocol core: what was wrong with an event or a
//! relay message, in words an operator can act on.

use std::fmt;

/// A field of a NIP-01 event, in the order NIP-01 serializes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `id`: 32-byte SHA-256 of the canonical serialization, 64 lowercase hex chars.
    Id,
    /// `pubkey`: 32-byte BIP-340 x-only public key, 64 lowercase hex chars.
    Pubkey,
    /// `created_at`: unix time in seconds.
    CreatedAt,
    /// `kind`: integer 0..=65535.
    Kind,
    /// `tags`: array of non-empty arrays of strings.
    Tags,
    /// `content`: arbitrary string.
    Content,
    /// `sig`: 64-byte BIP-340 Schnorr signature, 128 lowercase hex chars.
    Sig,
}

impl Field {
    /// All seven fields, in NIP-01 order.
    pub const ALL: [Field; 7] = [
        Field::Id,
        Field::Pubkey,
        Field::CreatedAt,
        Field::Kind,
        Field::Tags,
        Field::Content,
        Field::Sig,
    ];

    /// The field's JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Pubkey => "pubkey",
            Field::CreatedAt => "created_at",
            Field::Kind => "kind",
            Field::Tags => "tags",
            Field::Content => "content",
            Field::Sig => "sig",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a hex field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HexProblem {
    /// The string has the wrong length (in bytes).
    Length {
        /// Bytes found.
        found: usize,
    },
    /// A byte that is not `0-9` or `a-f` (uppercase hex is rejected: NIP-01
    /// requires lowercase).
    Character {
        /// Byte offset of the first bad character.
        position: usize,
    },
}

/// What is wrong with one tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagProblem {
    /// The tag is not a JSON array.
    NotArray,
    /// Element `position` of the tag is not a string.
    NotString {
        /// Zero-based position inside the tag.
        position: usize,
    },
    /// The tag is `[]`; NIP-01 tags have at least a name.
    Empty,
    /// The tag has more values than [`Limits::max_tag_values`](crate::Limits).
    TooManyValues {
        /// The limit.
        max: usize,
    },
    /// Element `position` is longer than [`Limits::max_tag_value_bytes`](crate::Limits).
    ValueTooLong {
        /// Zero-based position inside the tag.
        position: usize,
        /// Bytes found.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
}

/// Why an event or a relay message was rejected.
///
/// Every variant is a property of the input, never of our state: the input
/// can be dropped and the caller goes on. `Display` gives a lower-case
/// sentence naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is longer than the limit for `what` (bytes).
    TooLarge {
        /// What was measured: "event", "relay message", "content", ...
        what: &'static str,
        /// Length found, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The input is not valid UTF-8 (RFC 8259 section 8.1).
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// JSON arrays/objects nest deeper than the shape allows.
    TooDeep {
        /// The allowed depth.
        max: usize,
    },
    /// A `\uXXXX` escape of a UTF-16 surrogate without its other half (such
    /// as `"\ud800"`): it decodes to no Unicode scalar value (RFC 8259
    /// section 8.2).
    LoneSurrogate {
        /// Byte offset of the escape's backslash.
        offset: usize,
    },
    /// Not well-formed JSON; the text is the parser's, with line and column.
    Json(String),
    /// The JSON value has the wrong type where an event object was expected.
    NotAnObject {
        /// JSON type found.
        found: &'static str,
    },
    /// One of the seven NIP-01 fields is absent.
    MissingField(Field),
    /// A field that NIP-01 does not define (name truncated to 64 bytes).
    UnknownField(String),
    /// A field appears twice.
    DuplicateField(Field),
    /// A field has the wrong JSON type.
    WrongType {
        /// The field.
        field: Field,
        /// JSON type expected.
        expected: &'static str,
        /// JSON type found.
        found: &'static str,
    },
    /// A hex field is not exactly the right number of lowercase hex chars.
    BadHex {
        /// The field.
        field: Field,
        /// Expected length in hex characters (64 or 128).
        expected_len: usize,
        /// What is wrong.
        problem: HexProblem,
    },
    /// `created_at` or `kind` is negative.
    Negative(Field),
    /// `created_at` or `kind` is a number with a fraction or an exponent, or
    /// larger than 2^64 - 1.
    NotAnInteger(Field),
    /// `kind` is above 65535 (NIP-01).
    KindOutOfRange(u64),
    /// More tags than [`Limits::max_tags`](crate::Limits).
    TooManyTags {
        /// The limit.
        max: usize,
    },
    /// Tag `index` (zero-based) is malformed.
    InvalidTag {
        /// Zero-based index of the tag in `tags`.
        index: usize,
        /// What is wrong with it.
        problem: TagProblem,
    },
    /// The `id` is not the SHA-256 of the canonical serialization (NIP-01).
    IdMismatch,
    /// The `pubkey` is not the x coordinate of a point on secp256k1 (BIP-340).
    InvalidPubkey,
    /// The BIP-340 signature does not verify for this id and pubkey.
    InvalidSignature,
    /// The operating system's random number generator failed (signing needs
    /// fresh auxiliary randomness, BIP-340 "Default Signing").
    Randomness,
    /// A relay message that is not a JSON array, or an empty one.
    NotAMessage {
        /// JSON type found ("empty array" for `[]`).
        found: &'static str,
    },
    /// A relay message whose first element names no type we know (NIP-01).
    UnknownMessageType(String),
    /// A relay message with the wrong number of elements.
    MessageLength {
        /// The message type, e.g. "EOSE".
        message: &'static str,
        /// Elements required.
        expected: usize,
    },
    /// An element of a relay message has the wrong type or value.
    MessageElement {
        /// The message type, e.g. "OK".
        message: &'static str,
        /// Zero-based element position.
        position: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// A subscription id that is empty or longer than 64 bytes (NIP-01).
    InvalidSubscriptionId {
        /// Its length in bytes.
        len: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge { what, len, max } => {
                write!(f, "{what} is {len} bytes, more than the limit of {max}")
            }
            Error::InvalidUtf8 { offset } => write!(f, "invalid UTF-8 at byte {offset}"),
            Error::TooDeep { max } => write!(f, "JSON nesting deeper than {max} levels"),
            Error::LoneSurrogate { offset } => write!(
                f,
                "JSON escape at byte {offset} is a lone UTF-16 surrogate, not a character"
            ),
            Error::Json(msg) => write!(f, "malformed JSON: {msg}"),
            Error::NotAnObject { found } => write!(f, "event is a JSON {found}, not an object"),
            Error::MissingField(field) => write!(f, "missing field `{field}`"),
            Error::UnknownField(name) => write!(f, "unknown field `{}`", name.escape_debug()),
            Error::DuplicateField(field) => write!(f, "duplicate field `{field}`"),
            Error::WrongType {
                field,
                expected,
                found,
            } => write!(f, "field `{field}` is a {found}, expected {expected}"),
            Error::BadHex {
                field,
                expected_len,
                problem,
            } => match problem {
                HexProblem::Length { found } => write!(
                    f,
                    "field `{field}` must be {expected_len} lowercase hex characters, found {found} bytes"
                ),
                HexProblem::Character { position } => write!(
                    f,
                    "field `{field}` must be lowercase hex: bad character at position {position}"
                ),
            },
            Error::Negative(field) => write!(f, "field `{field}` is negative"),
            Error::NotAnInteger(field) => {
                write!(f, "field `{field}` is not an integer in 0..2^64")
            }
            Error::KindOutOfRange(kind) => write!(f, "kind {kind} is outside 0..=65535"),
            Error::TooManyTags { max } => write!(f, "more than {max} tags"),
            Error::InvalidTag { index, problem } => match problem {
                TagProblem::NotArray | TagProblem::NotString { .. } => {
                    write!(f, "tag {index} is not an array of strings")
                }
                TagProblem::Empty => write!(f, "tag {index} is empty"),
                TagProblem::TooManyValues { max } => {
                    write!(f, "tag {index} has more than {max} values")
                }
                TagProblem::ValueTooLong { position, len, max } => write!(
                    f,
                    "tag {index} value {position} is {len} bytes, more than the limit of {max}"
                ),
            },
            Error::IdMismatch => f.write_str("id does not match content"),
            Error::InvalidPubkey => f.write_str("pubkey is not a valid BIP-340 public key"),
            Error::InvalidSignature => f.write_str("signature invalid"),
            Error::Randomness => f.write_str("the system random number generator failed"),
            Error::NotAMessage { found } => {
                write!(f, "relay message is a JSON {found}, not a non-empty array")
            }
            Error::UnknownMessageType(name) => {
                write!(f, "unknown relay message type \"{}\"", name.escape_debug())
            }
            Error::MessageLength { message, expected } => {
                write!(f, "{message} message must have exactly {expected} elements")
            }
            Error::MessageElement {
                message,
                position,
                expected,
            } => write!(f, "{message} message element {position} must be {expected}"),
            Error::InvalidSubscriptionId { len } => write!(
                f,
                "subscription id is {len} bytes, must be 1 to 64 (NIP-01)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Truncates attacker-chosen text for an error message, at a char boundary.
pub(crate) fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s.get(..end).unwrap_or_default().to_owned();
    out.push('…');
    out
}
