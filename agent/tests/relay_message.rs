//! Relay-to-client message parsing and client-to-relay message building
//! (NIP-01, NIP-42): every message type, and the malformed shapes a hostile
//! relay can send.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use qube_agent::{ClientMessage, Error, Event, Filter, Limits, RelayMessage};
use qube_e2e::keys;

fn parse(text: &str) -> Result<RelayMessage, Error> {
    RelayMessage::from_json(text.as_bytes(), &Limits::default())
}

/// A NIP-42 AUTH event.
fn event() -> Event {
    qube_e2e::event(22242)
        .created_at(1_700_000_000)
        .tag("relay", "wss://relay.example")
        .tag("challenge", "c1")
        .sign(&keys(9))
}

#[test]
fn every_relay_message_type() {
    let ev = event();
    let m = parse(&format!("[\"EVENT\",\"sub1\",{}]", ev.to_json())).unwrap();
    assert_eq!(
        m,
        RelayMessage::Event {
            subscription_id: "sub1".into(),
            event: ev.clone().into_unverified()
        }
    );
    assert_eq!(
        parse(r#"["EOSE","sub1"]"#).unwrap(),
        RelayMessage::Eose {
            subscription_id: "sub1".into()
        }
    );
    assert_eq!(
        parse(&format!(
            "[\"OK\",\"{}\",false,\"auth-required: sign in\"]",
            ev.id_hex()
        ))
        .unwrap(),
        RelayMessage::Ok {
            event_id: ev.id,
            accepted: false,
            message: "auth-required: sign in".into()
        }
    );
    assert_eq!(
        parse(r#"[ "NOTICE" , "slow down" ]"#).unwrap(),
        RelayMessage::Notice {
            message: "slow down".into()
        }
    );
    assert_eq!(
        parse(r#"["CLOSED","sub1","error: shutting down"]"#).unwrap(),
        RelayMessage::Closed {
            subscription_id: "sub1".into(),
            message: "error: shutting down".into()
        }
    );
    assert_eq!(
        parse(r#"["AUTH","challenge-\u00e9"]"#).unwrap(),
        RelayMessage::Auth {
            challenge: "challenge-é".into()
        }
    );
}

#[test]
fn event_messages_are_parsed_strictly_but_not_verified() {
    let mut data = event().into_unverified().into_data();
    data.content = "tampered".into();
    let json = qube_agent::UnverifiedEvent::from_data(data).to_json();
    let m = parse(&format!("[\"EVENT\",\"s\",{json}]")).unwrap();
    let RelayMessage::Event { event, .. } = m else {
        panic!("{m:?}")
    };
    assert_eq!(event.verify(), Err(Error::IdMismatch));
    // Event errors come through unchanged.
    let bad = json.replace("\"kind\":22242", "\"kind\":70000");
    assert_eq!(
        parse(&format!("[\"EVENT\",\"s\",{bad}]")),
        Err(Error::KindOutOfRange(70000))
    );
}

#[test]
fn wrong_number_of_elements() {
    let id = event().id_hex();
    for (text, message, expected) in [
        (r#"["EOSE"]"#.to_owned(), "EOSE", 2),
        (r#"["EOSE","a","b"]"#.to_owned(), "EOSE", 2),
        (format!("[\"OK\",\"{id}\",true]"), "OK", 4),
        (r#"["NOTICE"]"#.to_owned(), "NOTICE", 2),
        (r#"["CLOSED","a"]"#.to_owned(), "CLOSED", 3),
        (r#"["AUTH","a","b"]"#.to_owned(), "AUTH", 2),
        (r#"["EVENT","a"]"#.to_owned(), "EVENT", 3),
    ] {
        assert_eq!(
            parse(&text),
            Err(Error::MessageLength { message, expected }),
            "{text}"
        );
    }
}

#[test]
fn wrong_element_types() {
    let id = event().id_hex();
    assert_eq!(
        parse(&format!("[\"OK\",\"{id}\",\"true\",\"\"]")),
        Err(Error::MessageElement {
            message: "OK",
            position: 2,
            expected: "a boolean"
        })
    );
    assert_eq!(
        parse(&format!("[\"OK\",\"{}\",true,\"\"]", id.to_uppercase())),
        Err(Error::MessageElement {
            message: "OK",
            position: 1,
            expected: "a 64-char lowercase hex event id"
        })
    );
    assert_eq!(
        parse(r#"["NOTICE",7]"#),
        Err(Error::MessageElement {
            message: "NOTICE",
            position: 1,
            expected: "a string"
        })
    );
    assert_eq!(
        parse(r#"["EVENT","s",[1]]"#),
        Err(Error::NotAnObject { found: "array" })
    );
    assert_eq!(
        parse(r#"[1,"x"]"#),
        Err(Error::MessageElement {
            message: "relay",
            position: 0,
            expected: "a message type string"
        })
    );
}

#[test]
fn not_a_message() {
    assert_eq!(
        parse("[]"),
        Err(Error::NotAMessage {
            found: "empty array"
        })
    );
    assert_eq!(parse("{}"), Err(Error::NotAMessage { found: "object" }));
    assert_eq!(
        parse("\"EOSE\""),
        Err(Error::NotAMessage { found: "string" })
    );
    assert!(matches!(parse("[\"EOSE\",\"a\""), Err(Error::Json(_))));
    assert_eq!(
        parse(r#"["COUNT","s",{"count":1}]"#),
        Err(Error::UnknownMessageType("COUNT".into()))
    );
    assert_eq!(
        Error::UnknownMessageType("COUNT".into()).to_string(),
        "unknown relay message type \"COUNT\""
    );
}

#[test]
fn subscription_ids_are_1_to_64_bytes() {
    assert!(parse(&format!("[\"EOSE\",\"{}\"]", "s".repeat(64))).is_ok());
    assert_eq!(
        parse(&format!("[\"EOSE\",\"{}\"]", "s".repeat(65))),
        Err(Error::InvalidSubscriptionId { len: 65 })
    );
    assert_eq!(
        parse(r#"["EOSE",""]"#),
        Err(Error::InvalidSubscriptionId { len: 0 })
    );
}

#[test]
fn size_and_depth_limits() {
    let limits = Limits::default();
    let long = format!("[\"NOTICE\",\"{}\"]", "x".repeat(limits.max_message_bytes));
    assert_eq!(
        parse(&long),
        Err(Error::TooLarge {
            what: "relay message",
            len: long.len(),
            max: limits.max_message_bytes
        })
    );
    let text = format!("[\"NOTICE\",\"{}\"]", "x".repeat(limits.max_text_bytes + 1));
    assert_eq!(
        parse(&text),
        Err(Error::TooLarge {
            what: "relay message text",
            len: limits.max_text_bytes + 1,
            max: limits.max_text_bytes
        })
    );
    // The event inside an EVENT message has its own, smaller limit.
    let small = Limits {
        max_event_bytes: 100,
        ..limits
    };
    let ev = event().to_json();
    assert_eq!(
        RelayMessage::from_json(format!("[\"EVENT\",\"s\",{ev}]").as_bytes(), &small),
        Err(Error::TooLarge {
            what: "event",
            len: ev.len(),
            max: 100
        })
    );
    assert_eq!(
        parse(r#"["NOTICE",[[[[["x"]]]]]]"#),
        Err(Error::TooDeep { max: 4 })
    );
}

#[test]
fn client_messages() {
    let ev = event();
    let mut tags = BTreeMap::new();
    tags.insert('d', vec!["hyperqube".to_owned()]);
    let filter = Filter {
        kinds: vec![33321],
        authors: vec![[0xab; 32]],
        tags,
        since: Some(10),
        ..Filter::default()
    };
    let req = ClientMessage::Req {
        subscription_id: "q",
        filters: std::slice::from_ref(&filter),
    };
    assert_eq!(
        req.to_json().unwrap(),
        format!(
            "[\"REQ\",\"q\",{{\"#d\":[\"hyperqube\"],\"authors\":[\"{}\"],\"kinds\":[33321],\"since\":10}}]",
            "ab".repeat(32)
        )
    );
    assert_eq!(
        ClientMessage::Close {
            subscription_id: "q"
        }
        .to_json()
        .unwrap(),
        r#"["CLOSE","q"]"#
    );
    let publish = ClientMessage::Event(&ev).to_json().unwrap();
    assert_eq!(publish, format!("[\"EVENT\",{}]", ev.to_json()));
    let auth = ClientMessage::Auth(&ev).to_json().unwrap();
    // What we send is something we would accept back.
    let inner = &auth["[\"AUTH\",".len()..auth.len() - 1];
    assert_eq!(
        Event::from_json(inner.as_bytes(), &Limits::default()).unwrap(),
        ev
    );
    assert_eq!(ev.tag_value("challenge"), Some("c1"));
    assert_eq!(ev.tags_named("relay").count(), 1);

    assert_eq!(
        ClientMessage::Req {
            subscription_id: "",
            filters: std::slice::from_ref(&filter)
        }
        .to_json(),
        Err(Error::InvalidSubscriptionId { len: 0 })
    );
    assert_eq!(
        ClientMessage::Req {
            subscription_id: "q",
            filters: &[]
        }
        .to_json(),
        Err(Error::MessageLength {
            message: "REQ",
            expected: 3
        })
    );
}
