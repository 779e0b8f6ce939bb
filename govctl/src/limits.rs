//! The agent's size limits ([`Limits::default`], `docs/PROTOCOL.md`
//! section 10) in an operator's words: which limit an event breaks, so
//! `verify` can say "signature valid; exceeds the agent's limit of 1024
//! bytes per tag value" instead of "not a NIP-01 event", and `propose` and
//! `sign` can refuse to sign what no agent would parse.

use qube_agent::{Error, Limits, TagProblem};

/// Largest event file `verify` reads, in bytes (1 MiB): enough to check the
/// signature of an event over the agent's 64 KiB limit and say so.
pub const MAX_EXAMINED_EVENT_BYTES: usize = 1024 * 1024;

/// Limits loose enough that only the event's shape is checked: the file
/// cap above stands in for every size limit.
pub fn relaxed() -> Limits {
    Limits {
        max_event_bytes: MAX_EXAMINED_EVENT_BYTES,
        max_content_bytes: MAX_EXAMINED_EVENT_BYTES,
        max_tags: MAX_EXAMINED_EVENT_BYTES,
        max_tag_values: MAX_EXAMINED_EVENT_BYTES,
        max_tag_value_bytes: MAX_EXAMINED_EVENT_BYTES,
        ..Limits::default()
    }
}

/// The size limit `err` reports, as "the agent's limit of N ... (what was
/// found)"; `None` when `err` is about something other than size.
pub fn breach(err: &Error) -> Option<String> {
    Some(match err {
        Error::TooLarge {
            what: "event",
            len,
            max,
        } => format!("the agent's limit of {max} bytes per event (it is {len} bytes)"),
        Error::TooLarge {
            what: "content",
            len,
            max,
        } => format!("the agent's limit of {max} bytes of content (it is {len} bytes)"),
        Error::TooManyTags { max } => format!("the agent's limit of {max} tags per event"),
        Error::InvalidTag {
            index,
            problem: TagProblem::TooManyValues { max },
        } => format!("the agent's limit of {max} strings per tag (tag {index} has more)"),
        Error::InvalidTag {
            index,
            problem: TagProblem::ValueTooLong { position, len, max },
        } => format!(
            "the agent's limit of {max} bytes per tag value (tag {index} value {position} is {len} bytes)"
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use qube_agent::{Keys, UnsignedEvent, UnverifiedEvent};

    fn signed(tags: Vec<Vec<String>>, content: &str) -> String {
        let keys = Keys::generate().unwrap();
        keys.sign(UnsignedEvent {
            created_at: 1,
            kind: 1,
            tags,
            content: content.to_owned(),
        })
        .unwrap()
        .to_json()
    }

    fn strict_breach(json: &str) -> Option<String> {
        // The relaxed parse accepts it and the signature holds ...
        UnverifiedEvent::from_json(json.as_bytes(), &relaxed())
            .unwrap()
            .verify()
            .unwrap();
        // ... and the agent's own limits name the breach.
        breach(&UnverifiedEvent::from_json(json.as_bytes(), &Limits::default()).unwrap_err())
    }

    #[test]
    fn each_limit_is_named() {
        let long = vec!["r".to_owned(), "x".repeat(1025)];
        assert_eq!(
            strict_breach(&signed(vec![long], "hi")).as_deref(),
            Some("the agent's limit of 1024 bytes per tag value (tag 0 value 1 is 1025 bytes)")
        );
        let wide = vec!["t".to_owned(); 17];
        assert_eq!(
            strict_breach(&signed(vec![wide], "hi")).as_deref(),
            Some("the agent's limit of 16 strings per tag (tag 0 has more)")
        );
        let many = vec![vec!["t".to_owned()]; 257];
        assert_eq!(
            strict_breach(&signed(many, "hi")).as_deref(),
            Some("the agent's limit of 256 tags per event")
        );
        assert_eq!(
            strict_breach(&signed(vec![], &"c".repeat(32_769))).as_deref(),
            Some("the agent's limit of 32768 bytes of content (it is 32769 bytes)")
        );
        let big: Vec<Vec<String>> = (0..70)
            .map(|_| vec!["r".to_owned(), "x".repeat(1000)])
            .collect();
        let json = signed(big, "hi");
        assert!(strict_breach(&json)
            .unwrap()
            .starts_with("the agent's limit of 65536 bytes per event (it is "));
    }

    #[test]
    fn other_errors_are_not_limits() {
        assert_eq!(breach(&Error::InvalidSignature), None);
        assert_eq!(breach(&Error::IdMismatch), None);
    }
}
