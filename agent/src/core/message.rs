//! NIP-01 relay messages: strict parsing of what a relay sends
//! (`EVENT`, `EOSE`, `OK`, `NOTICE`, `CLOSED`, `AUTH`) and building of what a
//! client sends (`REQ`, `CLOSE`, `EVENT`, `AUTH`; NIP-42 for the latter).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::core::error::{Error, Field};
use crate::core::event::{parse_hex, Event, Limits, UnverifiedEvent, EVENT_DEPTH};
use crate::core::json::{self, fail, reject_other_types, Any};

/// Kind of a NIP-42 authentication event (`relay` and `challenge` tags).
pub const AUTH_KIND: u16 = 22242;

/// Longest NIP-42 challenge the agent will sign, in bytes.
pub const MAX_CHALLENGE_BYTES: usize = 256;

/// Whether the agent signs an AUTH event for `challenge` (NIP-42): 1 to
/// [`MAX_CHALLENGE_BYTES`] bytes, no control character. The one rule: the
/// worker drops a relay's challenge that fails it, and the monitor treats a
/// worker that forwards one as compromised.
pub fn is_signable_challenge(challenge: &str) -> bool {
    !challenge.is_empty()
        && challenge.len() <= MAX_CHALLENGE_BYTES
        && !challenge.chars().any(char::is_control)
}

/// Longest subscription id NIP-01 allows, in bytes.
pub const MAX_SUBSCRIPTION_ID_BYTES: usize = 64;

/// A message from a relay to a client (NIP-01; `AUTH` per NIP-42).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayMessage {
    /// `["EVENT", <subscription id>, <event>]`. The event is parsed strictly
    /// but not verified.
    Event {
        /// Subscription the event answers, 1..=64 bytes.
        subscription_id: String,
        /// The event, unverified.
        event: UnverifiedEvent,
    },
    /// `["EOSE", <subscription id>]`: stored events end, live ones follow.
    Eose {
        /// Subscription id, 1..=64 bytes.
        subscription_id: String,
    },
    /// `["OK", <event id>, <accepted>, <message>]`: answer to a published event.
    Ok {
        /// 32-byte id of the event answered.
        event_id: [u8; 32],
        /// Whether the relay stored it.
        accepted: bool,
        /// Reason, possibly empty; machine prefix such as `auth-required:`.
        message: String,
    },
    /// `["NOTICE", <message>]`: human-readable text.
    Notice {
        /// The text.
        message: String,
    },
    /// `["CLOSED", <subscription id>, <message>]`: the relay ended a subscription.
    Closed {
        /// Subscription id, 1..=64 bytes.
        subscription_id: String,
        /// Reason, possibly empty.
        message: String,
    },
    /// `["AUTH", <challenge>]` (NIP-42).
    Auth {
        /// The challenge string to sign into a kind 22242 event.
        challenge: String,
    },
}

/// Depth of the deepest relay message: array > event object > tags > tag.
const MESSAGE_DEPTH: usize = EVENT_DEPTH + 1;

impl RelayMessage {
    /// Parses one relay message (a websocket text frame).
    ///
    /// # Errors
    /// [`Error::TooLarge`] over `limits.max_message_bytes` (checked first) or
    /// an `EVENT` whose event exceeds `limits.max_event_bytes`;
    /// [`Error::InvalidUtf8`], [`Error::TooDeep`], [`Error::Json`];
    /// [`Error::NotAMessage`], [`Error::UnknownMessageType`],
    /// [`Error::MessageLength`], [`Error::MessageElement`],
    /// [`Error::InvalidSubscriptionId`], and any event error for `EVENT`.
    ///
    /// Valid input is read once and invalid input is checked first, as for
    /// events ([`json::fast_then_checked`]).
    pub fn from_json(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        json::fast_then_checked(
            bytes,
            limits.max_message_bytes,
            |bytes| Self::parse(serde_json::Deserializer::from_slice(bytes), limits),
            || Self::from_json_checked(bytes, limits),
        )
    }

    /// [`RelayMessage::from_json`] the long way: [`json::precheck`], then
    /// the strict parse; the same result for every input. For the error
    /// path, tests and fuzz targets (`fuzz/checks.rs`), not for callers.
    #[doc(hidden)]
    pub fn from_json_checked(bytes: &[u8], limits: &Limits) -> Result<Self, Error> {
        let text = json::precheck(
            bytes,
            "relay message",
            limits.max_message_bytes,
            MESSAGE_DEPTH,
        )?;
        // The same reader as the fast path (one instance of the parser
        // in the binary); the precheck has checked the UTF-8 already.
        Self::parse(
            serde_json::Deserializer::from_slice(text.as_bytes()),
            limits,
        )
    }

    fn parse<'de, R: serde_json::de::Read<'de>>(
        mut de: serde_json::Deserializer<R>,
        limits: &Limits,
    ) -> Result<Self, Error> {
        let mut slot = None;
        let parsed = MessageSeed {
            limits,
            slot: &mut slot,
        }
        .deserialize(&mut de)
        .and_then(|m| de.end().map(|()| m));
        json::finish(parsed, &mut slot)
    }

    /// Serializes the message as a relay would send it (compact JSON). The
    /// agent never sends these; tests and fuzzing use it to check that
    /// parsing and serializing agree.
    pub fn to_json(&self) -> String {
        match self {
            RelayMessage::Event {
                subscription_id,
                event,
            } => format!(
                "[\"EVENT\",{},{}]",
                Value::from(subscription_id.as_str()),
                event.to_json()
            ),
            RelayMessage::Eose { subscription_id } => json!(["EOSE", subscription_id]).to_string(),
            RelayMessage::Ok {
                event_id,
                accepted,
                message,
            } => json!(["OK", hex::encode(event_id), accepted, message]).to_string(),
            RelayMessage::Notice { message } => json!(["NOTICE", message]).to_string(),
            RelayMessage::Closed {
                subscription_id,
                message,
            } => json!(["CLOSED", subscription_id, message]).to_string(),
            RelayMessage::Auth { challenge } => json!(["AUTH", challenge]).to_string(),
        }
    }
}

struct MessageSeed<'a> {
    limits: &'a Limits,
    slot: &'a mut Option<Error>,
}

impl MessageSeed<'_> {
    fn wrong_type<E: de::Error>(self, found: &'static str) -> E {
        fail(self.slot, Error::NotAMessage { found })
    }
}

impl<'de> DeserializeSeed<'de> for MessageSeed<'_> {
    type Value = RelayMessage;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RelayMessage, D::Error> {
        d.deserialize_any(self)
    }
}

/// Reads the next element of a message as a typed value or records why not.
struct Elements<'s, A> {
    seq: A,
    message: &'static str,
    expected: usize,
    position: usize,
    slot: &'s mut Option<Error>,
}

impl<'de, A: SeqAccess<'de>> Elements<'_, A> {
    fn err(&mut self, e: Error) -> A::Error {
        fail(self.slot, e)
    }

    fn next_any(&mut self) -> Result<Any<'de>, A::Error> {
        self.position += 1;
        match self.seq.next_element::<Any>()? {
            Some(v) => Ok(v),
            None => Err(self.err(Error::MessageLength {
                message: self.message,
                expected: self.expected,
            })),
        }
    }

    fn bad(&mut self, expected: &'static str) -> A::Error {
        let e = Error::MessageElement {
            message: self.message,
            position: self.position - 1,
            expected,
        };
        self.err(e)
    }

    fn text(&mut self, max: usize) -> Result<String, A::Error> {
        match self.next_any()? {
            Any::Str(s) if s.len() <= max => Ok(s.into_owned()),
            Any::Str(s) => Err(self.err(Error::TooLarge {
                what: "relay message text",
                len: s.len(),
                max,
            })),
            _ => Err(self.bad("a string")),
        }
    }

    fn subscription_id(&mut self) -> Result<String, A::Error> {
        match self.next_any()? {
            Any::Str(s) if !s.is_empty() && s.len() <= MAX_SUBSCRIPTION_ID_BYTES => {
                Ok(s.into_owned())
            }
            Any::Str(s) => Err(self.err(Error::InvalidSubscriptionId { len: s.len() })),
            _ => Err(self.bad("a subscription id string")),
        }
    }

    fn raw(&mut self) -> Result<&'de RawValue, A::Error> {
        self.position += 1;
        match self.seq.next_element::<&'de RawValue>()? {
            Some(v) => Ok(v),
            None => Err(self.err(Error::MessageLength {
                message: self.message,
                expected: self.expected,
            })),
        }
    }

    fn end(mut self) -> Result<(), A::Error> {
        match self.seq.next_element::<de::IgnoredAny>()? {
            None => Ok(()),
            Some(_) => Err(self.err(Error::MessageLength {
                message: self.message,
                expected: self.expected,
            })),
        }
    }
}

impl<'de> Visitor<'de> for MessageSeed<'_> {
    type Value = RelayMessage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a relay message array")
    }

    reject_other_types!(except seq);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RelayMessage, A::Error> {
        let limits = self.limits;
        let kind = match seq.next_element::<Any>()? {
            None => {
                return Err(fail(
                    self.slot,
                    Error::NotAMessage {
                        found: "empty array",
                    },
                ))
            }
            Some(Any::Str(s)) => s,
            Some(_) => {
                return Err(fail(
                    self.slot,
                    Error::MessageElement {
                        message: "relay",
                        position: 0,
                        expected: "a message type string",
                    },
                ))
            }
        };
        let (message, expected) = match kind.as_ref() {
            "EVENT" => ("EVENT", 3),
            "EOSE" => ("EOSE", 2),
            "OK" => ("OK", 4),
            "NOTICE" => ("NOTICE", 2),
            "CLOSED" => ("CLOSED", 3),
            "AUTH" => ("AUTH", 2),
            other => {
                return Err(fail(
                    self.slot,
                    Error::UnknownMessageType(crate::core::error::truncated(other, 32)),
                ))
            }
        };
        let mut el = Elements {
            seq,
            message,
            expected,
            position: 1,
            slot: self.slot,
        };
        let text_max = limits.max_text_bytes;
        let parsed = match message {
            "EVENT" => {
                let subscription_id = el.subscription_id()?;
                let raw = el.raw()?.get();
                let event = UnverifiedEvent::from_json(raw.as_bytes(), limits);
                match event {
                    Ok(event) => RelayMessage::Event {
                        subscription_id,
                        event,
                    },
                    Err(e) => return Err(el.err(e)),
                }
            }
            "EOSE" => RelayMessage::Eose {
                subscription_id: el.subscription_id()?,
            },
            "OK" => {
                let event_id = match el.next_any()? {
                    Any::Str(s) => match parse_hex::<32>(&s, Field::Id) {
                        Ok(id) => id,
                        Err(_) => return Err(el.bad("a 64-char lowercase hex event id")),
                    },
                    _ => return Err(el.bad("a 64-char lowercase hex event id")),
                };
                let accepted = match el.next_any()? {
                    Any::Bool(b) => b,
                    _ => return Err(el.bad("a boolean")),
                };
                let message = el.text(text_max)?;
                RelayMessage::Ok {
                    event_id,
                    accepted,
                    message,
                }
            }
            "NOTICE" => RelayMessage::Notice {
                message: el.text(text_max)?,
            },
            "CLOSED" => RelayMessage::Closed {
                subscription_id: el.subscription_id()?,
                message: el.text(text_max)?,
            },
            _ => RelayMessage::Auth {
                challenge: el.text(text_max)?,
            },
        };
        el.end()?;
        Ok(parsed)
    }
}

/// A NIP-01 subscription filter. Fields left empty/`None` are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Event ids (32 bytes each).
    pub ids: Vec<[u8; 32]>,
    /// Author pubkeys (32 bytes each).
    pub authors: Vec<[u8; 32]>,
    /// Kinds.
    pub kinds: Vec<u16>,
    /// Single-letter tag filters: `'d' => ["hyperqube"]` becomes `"#d":["hyperqube"]`.
    pub tags: BTreeMap<char, Vec<String>>,
    /// Lower bound on `created_at`, unix seconds.
    pub since: Option<u64>,
    /// Upper bound on `created_at`, unix seconds.
    pub until: Option<u64>,
    /// Most events to return from storage.
    pub limit: Option<u64>,
}

impl Filter {
    /// Whether `event` matches this filter (NIP-01 "filters": every field
    /// that is set must match; `#x` tag filters need a tag `x` whose value is
    /// listed). Reads only the event's claimed fields, so it costs no
    /// signature check: call it before [`UnverifiedEvent::verify`].
    pub fn matches(&self, event: &crate::core::event::EventData) -> bool {
        (self.ids.is_empty() || self.ids.contains(&event.id))
            && (self.authors.is_empty() || self.authors.contains(&event.pubkey))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && self.since.is_none_or(|t| event.created_at >= t)
            && self.until.is_none_or(|t| event.created_at <= t)
            && self.tags.iter().all(|(name, values)| {
                let mut buf = [0u8; 4];
                let name: &str = name.encode_utf8(&mut buf);
                let found = event
                    .tags_named(name)
                    .any(|t| t.get(1).is_some_and(|v| values.contains(v)));
                found
            })
    }

    /// The filter as a JSON object.
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        let hexes = |v: &[[u8; 32]]| Value::from(v.iter().map(hex::encode).collect::<Vec<_>>());
        if !self.ids.is_empty() {
            map.insert("ids".into(), hexes(&self.ids));
        }
        if !self.authors.is_empty() {
            map.insert("authors".into(), hexes(&self.authors));
        }
        if !self.kinds.is_empty() {
            map.insert("kinds".into(), Value::from(self.kinds.clone()));
        }
        for (letter, values) in &self.tags {
            map.insert(format!("#{letter}"), Value::from(values.clone()));
        }
        if let Some(since) = self.since {
            map.insert("since".into(), since.into());
        }
        if let Some(until) = self.until {
            map.insert("until".into(), until.into());
        }
        if let Some(limit) = self.limit {
            map.insert("limit".into(), limit.into());
        }
        Value::Object(map)
    }
}

/// A message from a client to a relay (NIP-01; `AUTH` per NIP-42).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ClientMessage<'a> {
    /// `["REQ", <subscription id>, <filter>...]`.
    Req {
        /// Subscription id, 1..=64 bytes.
        subscription_id: &'a str,
        /// One or more filters.
        filters: &'a [Filter],
    },
    /// `["CLOSE", <subscription id>]`.
    Close {
        /// Subscription id, 1..=64 bytes.
        subscription_id: &'a str,
    },
    /// `["EVENT", <event>]`: publish.
    Event(&'a Event),
    /// `["AUTH", <kind 22242 event>]` (NIP-42).
    Auth(&'a Event),
}

impl ClientMessage<'_> {
    /// Serializes the message as compact JSON text.
    ///
    /// # Errors
    /// [`Error::InvalidSubscriptionId`] when a subscription id is empty or
    /// over 64 bytes; [`Error::MessageLength`] for a `REQ` without filters.
    pub fn to_json(&self) -> Result<String, Error> {
        let check_sub = |id: &str| {
            if id.is_empty() || id.len() > MAX_SUBSCRIPTION_ID_BYTES {
                Err(Error::InvalidSubscriptionId { len: id.len() })
            } else {
                Ok(())
            }
        };
        Ok(match self {
            ClientMessage::Req {
                subscription_id,
                filters,
            } => {
                check_sub(subscription_id)?;
                if filters.is_empty() {
                    return Err(Error::MessageLength {
                        message: "REQ",
                        expected: 3,
                    });
                }
                let mut items = vec![json!("REQ"), json!(subscription_id)];
                items.extend(filters.iter().map(Filter::to_value));
                Value::Array(items).to_string()
            }
            ClientMessage::Close { subscription_id } => {
                check_sub(subscription_id)?;
                json!(["CLOSE", subscription_id]).to_string()
            }
            ClientMessage::Event(event) => format!("[\"EVENT\",{}]", event.to_json()),
            ClientMessage::Auth(event) => format!("[\"AUTH\",{}]", event.to_json()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::UnsignedEvent;
    use crate::core::keys::Keys;

    fn event(n: u8, kind: u16, created_at: u64, d: &str) -> Event {
        Keys::from_secret_bytes(&[n; 32])
            .unwrap()
            .sign(UnsignedEvent {
                created_at,
                kind,
                tags: vec![vec!["d".into(), d.into()]],
                content: String::new(),
            })
            .unwrap()
    }

    #[test]
    fn filter_matches_each_field_and_all_of_them() {
        let voter = Keys::from_secret_bytes(&[1; 32]).unwrap().public_key();
        let filter = Filter {
            kinds: vec![33321],
            authors: vec![voter],
            tags: BTreeMap::from([('d', vec!["hyperqube".to_owned()])]),
            since: Some(100),
            until: Some(200),
            ..Filter::default()
        };
        assert!(filter.matches(&event(1, 33321, 150, "hyperqube")));
        assert!(
            !filter.matches(&event(2, 33321, 150, "hyperqube")),
            "author"
        );
        assert!(!filter.matches(&event(1, 1, 150, "hyperqube")), "kind");
        assert!(!filter.matches(&event(1, 33321, 150, "other")), "#d");
        assert!(!filter.matches(&event(1, 33321, 99, "hyperqube")), "since");
        assert!(!filter.matches(&event(1, 33321, 201, "hyperqube")), "until");
        let e = event(1, 33321, 150, "hyperqube");
        let by_id = Filter {
            ids: vec![e.id],
            ..Filter::default()
        };
        assert!(by_id.matches(&e));
        assert!(!by_id.matches(&event(1, 33321, 151, "hyperqube")));
        assert!(Filter::default().matches(&e), "an empty filter matches all");
    }

    #[test]
    fn signable_challenges() {
        assert!(is_signable_challenge("c"));
        assert!(is_signable_challenge(&"c".repeat(MAX_CHALLENGE_BYTES)));
        assert!(is_signable_challenge("défi 🎲"));
        assert!(!is_signable_challenge(""));
        assert!(!is_signable_challenge(&"c".repeat(MAX_CHALLENGE_BYTES + 1)));
        assert!(!is_signable_challenge("hello\u{7}"));
        assert!(!is_signable_challenge("a\tb"));
        assert!(!is_signable_challenge("\u{9b}"));
    }

    /// Inputs near the edges of the checks that [`json::fast_then_checked`]
    /// skips for valid input: nesting, surrogates, UTF-8, size, control
    /// characters, trailing bytes.
    fn tricky_inputs() -> Vec<Vec<u8>> {
        let valid = Keys::from_secret_bytes(&[7; 32])
            .unwrap()
            .sign(UnsignedEvent {
                created_at: 1_700_000_000,
                kind: 33321,
                tags: vec![
                    vec!["d".into(), "hyperqube".into()],
                    vec!["version".into(), "v1.2.3".into(), "x".into(), "y".into()],
                ],
                content: "quote \" backslash \\ tab \t é 🎲 \u{1}".into(),
            })
            .unwrap()
            .to_json();
        assert_eq!(valid.len(), 435, "limit_sets() cuts at this length");
        let content_at = valid.find("\"content\":").unwrap() + "\"content\":".len();
        let with_content = |c: &str| {
            let end = valid[content_at..].find(",\"sig\"").map(|i| content_at + i);
            let mut s = valid.clone();
            if let Some(end) = end {
                s.replace_range(content_at..end, c);
            }
            s
        };
        let mut events: Vec<Vec<u8>> = [
            valid.clone(),
            with_content("[[[[]]]]"),
            with_content("[[]]"),
            with_content("{\"a\":{\"b\":[1]}}"),
            with_content("\"\\ud800\""),
            with_content("\"\\udc00x\""),
            with_content("\"\\ud800\\udc00\""),
            with_content("\"\\ud83c\\udfb2\""),
            with_content("\"\\ud800\\u0041\""),
            with_content("\"a\u{0}b\""),
            with_content("\"\\u0000\""),
            with_content("1"),
            with_content("\"x\" "),
            format!("{valid} "),
            format!("{valid}x"),
            format!("{valid}[[[[[[]]]]]]"),
            format!(" \n{valid}\t"),
            valid.replacen("\"d\"", "\"\\u0064\"", 1),
            valid.replacen("\"tags\":[", "\"tags\":[[[[\"x\"]]],", 1),
            valid.replacen('{', "{\"extra\":[[[[1]]]],", 1),
            valid.replacen('{', "{\"\\ud800\":1,", 1),
            valid.replacen("hyperqube", "\\udbff", 1),
        ]
        .into_iter()
        .map(String::into_bytes)
        .collect();
        let mut invalid_utf8 = valid.clone().into_bytes();
        let at = content_at + 2;
        invalid_utf8.splice(at..at, [0xff, 0xc3]);
        events.push(invalid_utf8);
        let mut overlong = valid.clone().into_bytes();
        overlong.splice(content_at + 2..content_at + 2, [0xc0, 0xaf]);
        events.push(overlong);
        let mut messages: Vec<Vec<u8>> = events
            .iter()
            .map(|e| [&b"[\"EVENT\",\"s\","[..], e, b"]"].concat())
            .collect();
        messages.extend(
            [
                "[\"EVENT\",\"\\ud800\",{}]",
                "[\"EVENT\",\"s\",{},[[[[[1]]]]]]",
                "[\"NOTICE\",\"\\udc00\"]",
                "[\"NOTICE\",[[[[[\"x\"]]]]]]",
                "[\"OK\",\"00\",true,\"\\ud800\"]",
                "[\"AUTH\",\"c\"]",
                "[\"EOSE\",\"s\"] ",
            ]
            .map(|m| m.as_bytes().to_vec()),
        );
        events.extend(messages);
        events
    }

    /// Small limits, so the size checks are reached too: the valid event
    /// of [`tricky_inputs`] is 435 bytes, its message 449, so these cut
    /// between them (and the message over them still needs its event
    /// checked).
    fn limit_sets() -> [Limits; 2] {
        let small = Limits {
            max_event_bytes: 434,
            max_message_bytes: 456,
            ..Limits::default()
        };
        [Limits::default(), small]
    }

    #[test]
    fn the_fast_path_gives_what_the_checks_give_on_tricky_input() {
        let mut parsed = 0;
        for input in tricky_inputs() {
            for limits in limit_sets() {
                let event = UnverifiedEvent::from_json(&input, &limits);
                parsed += usize::from(event.is_ok());
                assert_eq!(
                    event,
                    UnverifiedEvent::from_json_checked(&input, &limits),
                    "{}",
                    String::from_utf8_lossy(&input)
                );
                let message = RelayMessage::from_json(&input, &limits);
                parsed += usize::from(message.is_ok());
                assert_eq!(
                    message,
                    RelayMessage::from_json_checked(&input, &limits),
                    "{}",
                    String::from_utf8_lossy(&input)
                );
            }
        }
        // Both outcomes are exercised, not only refusals.
        assert!(parsed >= 10, "{parsed} inputs parsed");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Bytes worth putting anywhere in JSON: structure, escapes, the
        /// start of a surrogate escape, invalid UTF-8, a control character.
        const SPLICES: &[&[u8]] = &[
            b"\"", b"\\", b"[", b"]", b"{", b"}", b",", b":", b" ", b"\\u", b"\\ud800", b"\\udc00",
            b"d8", b"\xff", b"\xc3", b"\x00", b"\n", b"1", b"-", b"[[[[",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3_000))]

            #[test]
            fn the_fast_path_gives_what_the_checks_give(
                base in 0usize..64,
                edits in prop::collection::vec((any::<prop::sample::Index>(), 0..SPLICES.len(), 0u8..3), 1..4),
                small in any::<bool>(),
            ) {
                let inputs = tricky_inputs();
                let mut input = inputs[base % inputs.len()].clone();
                for (at, splice, how) in edits {
                    let at = at.index(input.len() + 1);
                    let splice = SPLICES[splice];
                    match how {
                        0 => { input.splice(at..at, splice.iter().copied()); }
                        1 => { let end = (at + splice.len()).min(input.len()); input.splice(at..end, splice.iter().copied()); }
                        _ => input.truncate(at),
                    }
                }
                let limits = &limit_sets()[usize::from(small)];
                prop_assert_eq!(
                    UnverifiedEvent::from_json(&input, limits),
                    UnverifiedEvent::from_json_checked(&input, limits)
                );
                prop_assert_eq!(
                    RelayMessage::from_json(&input, limits),
                    RelayMessage::from_json_checked(&input, limits)
                );
            }
        }
    }
}
