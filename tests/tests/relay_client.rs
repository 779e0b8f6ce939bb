//! The relay client against real relays on loopback: subscribe, publish and
//! receive; NIP-42 authentication before publishing; one relay down and one
//! hostile never stop the others.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::Duration;

use qube_agent::relay::{RelayEvent, RelayPool};
use qube_agent::Filter;
use qube_e2e::*;
use tokio_tungstenite::tungstenite::Message;

const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const WAIT: Duration = Duration::from_secs(10);

fn directive_filter(authors: Vec<[u8; 32]>) -> Filter {
    let mut tags = BTreeMap::new();
    tags.insert('d', vec!["hyperqube".to_owned()]);
    Filter {
        kinds: vec![33321],
        authors,
        tags,
        ..Filter::default()
    }
}

#[tokio::test]
async fn publish_and_receive_through_a_real_relay() {
    let relay = start_relay(false).await;
    let voter = keys(1);
    let (pool, mut rx) = RelayPool::start(
        vec![target(&relay.url)],
        vec![directive_filter(vec![voter.public_key()])],
        fast_options(),
    );
    wait_for(&mut rx, WAIT, |e| {
        matches!(e, RelayEvent::EndOfStored { relay: 0 }).then_some(())
    })
    .await;

    let ev = directive()
        .created_at(now())
        .version("v1.2.3")
        .hash(HASH)
        .sign(&voter);
    pool.publish(&ev);
    let (accepted, message) = wait_for(&mut rx, WAIT, |e| match e {
        RelayEvent::Ok {
            event_id,
            accepted,
            message,
            ..
        } if *event_id == ev.id => Some((*accepted, message.clone())),
        _ => None,
    })
    .await;
    assert!(accepted, "relay refused: {message}");
    let got = wait_for(&mut rx, WAIT, |e| match e {
        RelayEvent::Event { event, .. } => Some(event.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, ev);
}

#[tokio::test]
async fn nip42_challenge_is_answered_before_publishing() {
    let relay = start_relay(true).await;
    let node = keys(7);
    let (pool, mut rx) = RelayPool::start(
        vec![target(&relay.url)],
        vec![directive_filter(vec![node.public_key()])],
        fast_options(),
    );
    wait_for(&mut rx, WAIT, |e| {
        matches!(e, RelayEvent::EndOfStored { relay: 0 }).then_some(())
    })
    .await;

    // The relay asks for authentication when we publish: it refuses the
    // event and sends a challenge, in either order.
    let ev = directive()
        .created_at(now())
        .version("v1.0.0")
        .hash(HASH)
        .sign(&node);
    pool.publish(&ev);
    let (mut refusal, mut challenge) = (None, None);
    while refusal.is_none() || challenge.is_none() {
        match wait_for(&mut rx, WAIT, |e| match e {
            RelayEvent::Ok { .. } | RelayEvent::AuthChallenge { .. } => Some(e.clone()),
            _ => None,
        })
        .await
        {
            RelayEvent::Ok {
                event_id,
                accepted,
                message,
                ..
            } => {
                assert_eq!(event_id, ev.id);
                assert!(!accepted);
                refusal = Some(message);
            }
            RelayEvent::AuthChallenge { challenge: c, .. } => challenge = Some(c),
            other => panic!("{other:?}"),
        }
    }
    let refusal = refusal.unwrap();
    assert!(refusal.starts_with("auth-required:"), "{refusal}");

    let auth = event(22242)
        .created_at(now())
        .tag("relay", &relay.url)
        .tag("challenge", &challenge.unwrap())
        .sign(&node);
    pool.authenticate(0, auth);
    pool.publish(&ev);
    wait_for(&mut rx, WAIT, |e| match e {
        RelayEvent::Ok {
            event_id,
            accepted: true,
            ..
        } if *event_id == ev.id => Some(()),
        RelayEvent::Ok {
            event_id,
            accepted: false,
            message,
            ..
        } if *event_id == ev.id => {
            panic!("refused after AUTH: {message}")
        }
        _ => None,
    })
    .await;
}

#[tokio::test]
async fn one_relay_down_and_one_hostile_do_not_stop_the_third() {
    let good = start_relay(false).await;
    let voter = keys(2);
    let forged = {
        let mut data = directive()
            .created_at(now())
            .version("v9.9.9")
            .hash(HASH)
            .sign(&voter)
            .into_unverified()
            .into_data();
        data.content = "forged".into();
        qube_agent::UnverifiedEvent::from_data(data).to_json()
    };
    let hostile = garbage_relay(vec![
        Message::text("not json"),
        Message::text("[\"EVENT\",\"qube-directives\",{}]"),
        Message::text(format!("[\"EVENT\",\"qube-directives\",{forged}]")),
        Message::text(format!("[\"NOTICE\",\"{}\"]", "[".repeat(100))),
        Message::binary(vec![0u8; 1024]),
        Message::text(format!("{}{}", "[".repeat(5000), "]".repeat(5000))),
    ])
    .await;
    let dead = dead_port_url().await;

    let (_pool, mut rx) = RelayPool::start(
        vec![target(&dead), target(&hostile), target(&good.url)],
        vec![directive_filter(vec![voter.public_key()])],
        fast_options(),
    );
    let (mut dead_retries, mut hostile_notices, mut good_ready) = (0, 0, false);
    while dead_retries < 2 || hostile_notices < 6 || !good_ready {
        match wait_for(&mut rx, WAIT, |e| Some(e.clone())).await {
            RelayEvent::Disconnected { relay: 0, .. } => dead_retries += 1,
            RelayEvent::Notice { relay: 1, .. } => hostile_notices += 1,
            RelayEvent::EndOfStored { relay: 2 } => good_ready = true,
            RelayEvent::Event { relay, event } => {
                panic!("unexpected event from {relay}: {event:?}")
            }
            _ => {}
        }
    }

    // A directive reaches the good relay from another client.
    let ev = directive()
        .created_at(now())
        .version("v1.2.4")
        .hash(HASH)
        .sign(&voter);
    let (publisher, mut prx) = RelayPool::start(
        vec![target(&good.url)],
        vec![directive_filter(vec![[0; 32]])],
        fast_options(),
    );
    wait_for(&mut prx, WAIT, |e| {
        matches!(e, RelayEvent::Connected { .. }).then_some(())
    })
    .await;
    publisher.publish(&ev);

    let got = wait_for(&mut rx, WAIT, |e| match e {
        RelayEvent::Event { relay, event } => {
            assert_eq!(
                *relay, 2,
                "an event came from a relay that only sends garbage: {event:?}"
            );
            Some(event.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(got, ev);
}

/// An EVENT frame for our subscription carrying `event`'s JSON.
fn event_frame(json: &str) -> Message {
    Message::text(format!(r#"["EVENT","qube-directives",{json}]"#))
}

#[tokio::test]
async fn floods_outside_the_filter_and_duplicates_cost_no_signature_check() {
    use qube_agent::relay::RelayStats;
    let voter = keys(1);
    let stranger = keys(2);
    // What the hostile relay answers to every frame: 2,000 events from a
    // non-voter (half with a broken signature), 2,000 of another kind, and
    // 1,000 copies of one valid voter directive.
    let good = directive().created_at(now()).sign(&voter);
    let from_stranger = directive().created_at(now()).sign(&stranger);
    let mut broken = from_stranger.clone().into_unverified().into_data();
    broken.content = "tampered".into();
    let broken = qube_agent::UnverifiedEvent::from_data(broken).to_json();
    let other_kind = event(1).created_at(now()).sign(&voter).to_json();
    let mut frames = Vec::new();
    for _ in 0..1_000 {
        frames.push(event_frame(&from_stranger.to_json()));
        frames.push(event_frame(&broken));
        frames.push(event_frame(&other_kind));
        frames.push(event_frame(&other_kind));
        frames.push(event_frame(&good.to_json()));
    }
    frames.push(Message::text(r#"["EOSE","qube-directives"]"#));
    let hostile = garbage_relay(frames).await;
    let (pool, mut rx) = RelayPool::start(
        vec![target(&hostile)],
        vec![directive_filter(vec![voter.public_key()])],
        fast_options(),
    );
    let delivered = wait_for(&mut rx, WAIT, |e| match e {
        RelayEvent::Event { event, .. } => Some(event.clone()),
        _ => None,
    })
    .await;
    assert_eq!(delivered, good, "positive control: the voter's directive");
    wait_for(&mut rx, WAIT, |e| {
        matches!(e, RelayEvent::EndOfStored { relay: 0 }).then_some(())
    })
    .await;
    let stats = pool.stats(0).unwrap();
    let get = RelayStats::get;
    assert_eq!(
        get(&stats.outside_filter),
        4_000,
        "non-voter and other-kind events"
    );
    assert_eq!(get(&stats.duplicate), 999, "copies of a delivered event");
    assert_eq!(
        get(&stats.verified),
        1,
        "only the first copy of the voter's directive is verified"
    );
    assert_eq!(get(&stats.delivered), 1);
    assert_eq!(get(&stats.invalid), 0);
}

#[tokio::test]
async fn a_relay_that_sends_a_forged_voter_event_is_disconnected() {
    let voter = keys(1);
    let mut forged = directive()
        .created_at(now())
        .sign(&voter)
        .into_unverified()
        .into_data();
    forged.content = "forged".into();
    let forged = qube_agent::UnverifiedEvent::from_data(forged).to_json();
    let hostile = garbage_relay(vec![event_frame(&forged), event_frame(&forged)]).await;
    let (pool, mut rx) = RelayPool::start(
        vec![target(&hostile)],
        vec![directive_filter(vec![voter.public_key()])],
        fast_options(),
    );
    let reason = wait_for(&mut rx, WAIT, |e| match e {
        RelayEvent::Disconnected { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(
        reason.contains("does not verify"),
        "disconnected for another reason: {reason}"
    );
    let stats = pool.stats(0).unwrap();
    // One signature check per connection, not one per forged frame.
    assert!(qube_agent::relay::RelayStats::get(&stats.verified) >= 1);
    assert_eq!(
        qube_agent::relay::RelayStats::get(&stats.invalid),
        qube_agent::relay::RelayStats::get(&stats.verified)
    );
}
