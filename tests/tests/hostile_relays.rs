//! A relay's fault is never the worker's fault (SECURITY.md, section 1):
//! beside a relay that misbehaves, a genuine 2-of-3 quorum published on an
//! honest relay runs its hook exactly once, within 2 s of the quorum's
//! second directive, and the worker is never restarted because of the
//! hostile relay. Each case ends with that positive control; a hostile relay
//! that could stop decisions fails it.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use qube_e2e::*;
use tokio_tungstenite::tungstenite::Message;

/// The stored events are in for the hostile relay too, so decisions are
/// not waiting for it.
fn eose() -> Message {
    Message::text(r#"["EOSE","qube-directives"]"#)
}

async fn quorum_beside(case: &str, hostile_frames: Vec<Message>) {
    let honest = start_relay(false).await;
    let hostile = garbage_relay(hostile_frames).await;
    let gov: Vec<qube_agent::Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let config = node.config(&[&honest.url, &hostile], &[&gov[0], &gov[1], &gov[2]], 2);
    let agent = start_agent(config);
    // Let the worker meet the hostile relay before the quorum exists.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let publisher = keys(9);
    let first = directive().created_at(now()).sign(&gov[0]);
    let second = directive().created_at(now()).sign(&gov[1]);
    assert!(publish(&honest.url, &first, &publisher).await.0, "{case}");
    assert!(publish(&honest.url, &second, &publisher).await.0, "{case}");
    let published = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || !node.runs().is_empty()).await,
        "{case}: the quorum did not run within 2 s of publication (worker restarts: {})",
        worker_restarts(&node)
    );
    let took = published.elapsed();
    // Give a second run, or a restart, time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        node.runs(),
        ["upgrade v1.2.3 pillar-test"],
        "{case}: the hook must run exactly once"
    );
    assert_eq!(
        worker_restarts(&node),
        0,
        "{case}: the worker was restarted for the relay's behaviour"
    );
    eprintln!(
        "{case}: hook started {} ms after publication",
        took.as_millis()
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_challenge_with_a_control_character() {
    let frames = vec![Message::text("[\"AUTH\",\"hello\\u0007\"]"), eose()];
    quorum_beside("control character", frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_auth_challenge() {
    quorum_beside(
        "empty challenge",
        vec![Message::text(r#"["AUTH",""]"#), eose()],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_auth_challenge_on_every_frame() {
    let auth = format!(r#"["AUTH","{}"]"#, "c".repeat(300));
    // garbage_relay answers every client frame (REQ, pings) with these.
    quorum_beside("oversized challenge", vec![Message::text(auth), eose()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_flood() {
    let mut frames: Vec<Message> = (0..5_000)
        .map(|i| Message::text(format!(r#"["NOTICE","flood {i}"]"#)))
        .collect();
    frames.push(eose());
    quorum_beside("notice flood", frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_frame() {
    let frames = vec![Message::text(format!(
        r#"["NOTICE","{}"]"#,
        "x".repeat(8 << 20)
    ))];
    quorum_beside("8 MiB frame", frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_and_garbage() {
    let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let frames = vec![
        Message::text(deep),
        Message::text("not json at all"),
        Message::text(r#"["EVENT","qube-directives",{"id":1}]"#),
        Message::binary(vec![0xff, 0xfe, 0x00]),
        eose(),
    ];
    quorum_beside("deep nesting and garbage", frames).await;
}
