//! Hostile and malformed events: each case asserts the specific error, so a
//! check that stops firing, or fires for the wrong reason, fails here.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use qube_agent::{
    Error, Event, Field, HexProblem, Limits, TagProblem, UnsignedEvent, UnverifiedEvent,
};
use qube_e2e::{directive, keys};
use serde_json::{json, Value};

/// A valid event: a directive with only its `d`, `action` and `version`
/// tags, and a quote and a newline in its content.
fn signed() -> Event {
    directive()
        .without_tag("hash")
        .without_tag("network")
        .content("upgrade to v1.2.3 \"now\"\n")
        .sign(&keys(1))
}

fn value() -> Value {
    serde_json::from_str(&signed().to_json()).unwrap()
}

fn parse(bytes: &[u8]) -> Result<Event, Error> {
    Event::from_json(bytes, &Limits::default())
}

fn parse_value(v: &Value) -> Result<Event, Error> {
    parse(v.to_string().as_bytes())
}

fn with(field: &str, new: Value) -> Value {
    let mut v = value();
    v[field] = new;
    v
}

#[test]
fn a_valid_event_parses_and_verifies() {
    let ev = signed();
    assert_eq!(parse(ev.to_json().as_bytes()).unwrap(), ev);
    // Whitespace and field order do not matter.
    let v: Value = serde_json::from_str(&ev.to_json()).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    assert_eq!(parse(pretty.as_bytes()).unwrap(), ev);
}

#[test]
fn wrong_id() {
    let v = with("id", json!("00".repeat(32)));
    assert_eq!(parse_value(&v), Err(Error::IdMismatch));
    assert_eq!(Error::IdMismatch.to_string(), "id does not match content");
}

#[test]
fn changed_content_no_longer_matches_id() {
    let v = with("content", json!("upgrade to v9.9.9"));
    assert_eq!(parse_value(&v), Err(Error::IdMismatch));
}

#[test]
fn valid_id_with_another_keys_signature() {
    let ev = signed();
    let other = keys(2).sign_with_aux_rand(&ev.id, &[0; 32]);
    let v = with("sig", json!(hex::encode(other)));
    assert_eq!(parse_value(&v), Err(Error::InvalidSignature));
    assert_eq!(Error::InvalidSignature.to_string(), "signature invalid");
}

#[test]
fn another_pubkey_with_a_recomputed_id_keeps_failing() {
    // An attacker swaps in a voter's pubkey and fixes the id: the signature
    // was made by someone else.
    let mut data = signed().into_unverified().into_data();
    data.pubkey = keys(3).public_key();
    data.id = data.compute_id();
    let ev = UnverifiedEvent::from_data(data);
    assert_eq!(parse(ev.to_json().as_bytes()), Err(Error::InvalidSignature));
}

#[test]
fn pubkey_not_on_the_curve() {
    let mut data = signed().into_unverified().into_data();
    // BIP-340 vector 5's pubkey: not the x coordinate of any curve point.
    data.pubkey = hex::decode("eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34")
        .unwrap()
        .try_into()
        .unwrap();
    data.id = data.compute_id();
    let ev = UnverifiedEvent::from_data(data);
    assert_eq!(parse(ev.to_json().as_bytes()), Err(Error::InvalidPubkey));
}

#[test]
fn uppercase_hex() {
    let ev = signed();
    let upper = ev.id_hex().to_uppercase();
    let position = upper.find(|c: char| c.is_ascii_uppercase()).unwrap();
    let err = parse_value(&with("id", json!(upper))).unwrap_err();
    assert_eq!(
        err,
        Error::BadHex {
            field: Field::Id,
            expected_len: 64,
            problem: HexProblem::Character { position }
        }
    );
    let err = parse_value(&with("sig", json!(hex::encode_upper(ev.sig)))).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadHex {
                field: Field::Sig,
                expected_len: 128,
                problem: HexProblem::Character { .. }
            }
        ),
        "{err:?}"
    );
}

#[test]
fn short_and_long_hex() {
    let ev = signed();
    let id = ev.id_hex();
    for (field, text, found) in [
        ("id", id[..63].to_owned(), 63),
        ("id", format!("{id}0"), 65),
        ("pubkey", ev.pubkey_hex()[..62].to_owned(), 62),
        ("sig", format!("{}00", hex::encode(ev.sig)), 130),
        ("sig", String::new(), 0),
    ] {
        let err = parse_value(&with(field, json!(text))).unwrap_err();
        let Error::BadHex {
            field: f, problem, ..
        } = &err
        else {
            panic!("{field}: {err:?}")
        };
        assert_eq!(f.name(), field);
        assert_eq!(*problem, HexProblem::Length { found }, "{field}");
    }
    // Non-hex characters of the right length.
    let err = parse_value(&with("pubkey", json!("g".repeat(64)))).unwrap_err();
    assert!(matches!(
        err,
        Error::BadHex {
            field: Field::Pubkey,
            problem: HexProblem::Character { position: 0 },
            ..
        }
    ));
}

#[test]
fn every_missing_field_is_named() {
    for field in Field::ALL {
        let mut v = value();
        v.as_object_mut().unwrap().remove(field.name());
        assert_eq!(parse_value(&v), Err(Error::MissingField(field)), "{field}");
    }
    assert_eq!(
        Error::MissingField(Field::Sig).to_string(),
        "missing field `sig`"
    );
}

#[test]
fn extra_field() {
    let mut v = value();
    v["relays"] = json!([]);
    assert_eq!(parse_value(&v), Err(Error::UnknownField("relays".into())));
}

#[test]
fn duplicate_fields() {
    let json = signed().to_json();
    // Append a second "kind" and a second "content" before the closing brace.
    let dup_kind = format!("{},\"kind\":1}}", &json[..json.len() - 1]);
    assert_eq!(
        parse(dup_kind.as_bytes()),
        Err(Error::DuplicateField(Field::Kind))
    );
    let dup_content = format!("{},\"content\":\"x\"}}", &json[..json.len() - 1]);
    assert_eq!(
        parse(dup_content.as_bytes()),
        Err(Error::DuplicateField(Field::Content))
    );
    // An escaped key is the same key.
    let dup_escaped = format!("{},\"\\u0069d\":\"x\"}}", &json[..json.len() - 1]);
    assert_eq!(
        parse(dup_escaped.as_bytes()),
        Err(Error::DuplicateField(Field::Id))
    );
}

#[test]
fn wrong_types() {
    let cases = [
        ("kind", json!("33321"), Field::Kind, "integer", "string"),
        (
            "created_at",
            json!(null),
            Field::CreatedAt,
            "integer",
            "null",
        ),
        ("content", json!(5), Field::Content, "string", "number"),
        ("content", json!(["a"]), Field::Content, "string", "array"),
        ("id", json!({"a": 1}), Field::Id, "string", "object"),
        ("tags", json!("d"), Field::Tags, "array", "string"),
        ("tags", json!({}), Field::Tags, "array", "object"),
        ("sig", json!(true), Field::Sig, "string", "boolean"),
    ];
    for (name, new, field, expected, found) in cases {
        assert_eq!(
            parse_value(&with(name, new)),
            Err(Error::WrongType {
                field,
                expected,
                found
            }),
            "{name}"
        );
    }
    for top in ["[]", "null", "\"event\"", "42"] {
        assert!(
            matches!(parse(top.as_bytes()), Err(Error::NotAnObject { .. })),
            "{top}"
        );
    }
}

#[test]
fn malformed_tags() {
    let tags = |t: Value| parse_value(&with("tags", t));
    let err = tags(json!([["a"], ["b"], ["c"], ["d", 1]])).unwrap_err();
    assert_eq!(
        err,
        Error::InvalidTag {
            index: 3,
            problem: TagProblem::NotString { position: 1 }
        }
    );
    assert_eq!(err.to_string(), "tag 3 is not an array of strings");
    assert_eq!(
        tags(json!([["a"], "b"])),
        Err(Error::InvalidTag {
            index: 1,
            problem: TagProblem::NotArray
        })
    );
    assert_eq!(
        tags(json!([["a"], []])),
        Err(Error::InvalidTag {
            index: 1,
            problem: TagProblem::Empty
        })
    );
    assert_eq!(
        tags(json!([[null]])),
        Err(Error::InvalidTag {
            index: 0,
            problem: TagProblem::NotString { position: 0 }
        })
    );
}

#[test]
fn kind_out_of_range() {
    assert_eq!(
        parse_value(&with("kind", json!(65536))),
        Err(Error::KindOutOfRange(65536))
    );
    assert_eq!(
        Error::KindOutOfRange(65536).to_string(),
        "kind 65536 is outside 0..=65535"
    );
    assert_eq!(
        parse_value(&with("kind", json!(-1))),
        Err(Error::Negative(Field::Kind))
    );
}

#[test]
fn negative_or_fractional_created_at() {
    assert_eq!(
        parse_value(&with("created_at", json!(-1))),
        Err(Error::Negative(Field::CreatedAt))
    );
    let json = signed().to_json();
    for bad in ["1700000000.5", "1.7e9", "1e3", "-0", "18446744073709551616"] {
        let text = json.replace("1700000000", bad);
        assert_eq!(
            parse(text.as_bytes()),
            Err(Error::NotAnInteger(Field::CreatedAt)),
            "{bad}"
        );
    }
    // Leading zeros are not JSON.
    let text = json.replace("1700000000", "01700000000");
    assert!(matches!(parse(text.as_bytes()), Err(Error::Json(_))));
}

#[test]
fn oversize_event_is_refused_before_parsing() {
    let limits = Limits::default();
    // Not even JSON: the length check comes first.
    let big = vec![b'x'; limits.max_event_bytes + 1];
    assert_eq!(
        Event::from_json(&big, &limits),
        Err(Error::TooLarge {
            what: "event",
            len: limits.max_event_bytes + 1,
            max: limits.max_event_bytes
        })
    );
}

#[test]
fn field_limits() {
    let small = Limits {
        max_content_bytes: 64,
        max_tags: 2,
        max_tag_values: 2,
        max_tag_value_bytes: 3,
        ..Limits::default()
    };
    let parse_small = |v: Value| Event::from_json(v.to_string().as_bytes(), &small);
    assert_eq!(
        parse_small(with("content", json!("x".repeat(65)))),
        Err(Error::TooLarge {
            what: "content",
            len: 65,
            max: 64
        })
    );
    assert_eq!(
        parse_small(with("tags", json!([["a"], ["b"], ["c"]]))),
        Err(Error::TooManyTags { max: 2 })
    );
    assert_eq!(
        parse_small(with("tags", json!([["a", "b", "c"]]))),
        Err(Error::InvalidTag {
            index: 0,
            problem: TagProblem::TooManyValues { max: 2 }
        })
    );
    assert_eq!(
        parse_small(with("tags", json!([["a"], ["b", "long"]]))),
        Err(Error::InvalidTag {
            index: 1,
            problem: TagProblem::ValueTooLong {
                position: 1,
                len: 4,
                max: 3
            }
        })
    );
}

#[test]
fn lone_surrogate_escape() {
    let json = signed().to_json();
    let at = json.find("upgrade to").unwrap();
    for escape in ["\\ud800", "\\udc00", "\\ud800\\u0041"] {
        let text = json.replacen("upgrade to", &format!("{escape}upgrade to"), 1);
        assert_eq!(
            parse(text.as_bytes()),
            Err(Error::LoneSurrogate { offset: at }),
            "{escape}"
        );
    }
    // A proper pair is fine (and changes the content, so the id breaks).
    let text = json.replacen("upgrade to", "\\ud83d\\ude00upgrade to", 1);
    assert_eq!(parse(text.as_bytes()), Err(Error::IdMismatch));
}

#[test]
fn invalid_utf8() {
    let json = signed().to_json();
    let at = json.find("upgrade to").unwrap();
    let mut bytes = json.into_bytes();
    bytes[at] = 0xff;
    assert_eq!(parse(&bytes), Err(Error::InvalidUtf8 { offset: at }));
    // An overlong encoding of '/' is invalid too.
    bytes[at] = 0xc0;
    bytes[at + 1] = 0xaf;
    assert_eq!(parse(&bytes), Err(Error::InvalidUtf8 { offset: at }));
}

#[test]
fn nesting_deeper_than_allowed() {
    assert_eq!(
        parse_value(&with("tags", json!([[["d"]]]))),
        Err(Error::TooDeep { max: 3 })
    );
    // Deep nesting anywhere, even in a field that is then ignored, stops
    // the parse before any allocation for it.
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(parse(deep.as_bytes()), Err(Error::TooDeep { max: 3 }));
}

#[test]
fn trailing_garbage_and_truncation() {
    let json = signed().to_json();
    assert!(matches!(
        parse(format!("{json}x").as_bytes()),
        Err(Error::Json(_))
    ));
    assert!(matches!(
        parse(format!("{json}{json}").as_bytes()),
        Err(Error::Json(_))
    ));
    assert!(matches!(
        parse(&json.as_bytes()[..json.len() - 1]),
        Err(Error::Json(_))
    ));
    assert!(matches!(parse(b""), Err(Error::Json(_))));
}

#[test]
fn signing_refuses_an_empty_tag() {
    let err = keys(1)
        .sign(UnsignedEvent {
            created_at: 1,
            kind: 1,
            tags: vec![vec!["a".into()], vec![]],
            content: String::new(),
        })
        .err();
    assert_eq!(
        err,
        Some(Error::InvalidTag {
            index: 1,
            problem: TagProblem::Empty
        })
    );
}
