//! The agent's main job end to end, in process, against real relays on
//! loopback that demand NIP-42 for writes and apply qubestr's rules: a 2-of-3
//! quorum reached through two different relays runs the hook once, the
//! acknowledgement arrives with every tag qubestr requires, and a restart
//! runs nothing again.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qube_agent::Keys;
use qube_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_through_two_relays_runs_once_and_acknowledges() {
    let relay_a = start_relay(true).await;
    let relay_b = start_relay(true).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let config = node.config(
        &[&relay_a.url, &relay_b.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
    );

    let agent = start_agent(config.clone());
    let d1 = directive()
        .created_at(now())
        .version("v1.2.3")
        .sign(&gov[0]);
    let d2 = directive()
        .created_at(now())
        .version("v1.2.3")
        .sign(&gov[1]);
    // A third voter names another artifact: it must not add up.
    let d3 = directive()
        .created_at(now())
        .version("v1.2.3")
        .hash(&"2".repeat(64))
        .sign(&gov[2]);
    let publisher = keys(9);
    assert!(publish(&relay_a.url, &d1, &publisher).await.0);
    assert!(publish(&relay_b.url, &d3, &publisher).await.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(node.runs().is_empty(), "ran on one vote: {:?}", node.runs());
    assert!(publish(&relay_b.url, &d2, &publisher).await.0);

    assert!(
        wait_until(Duration::from_secs(20), || !node.runs().is_empty()).await,
        "hook never ran"
    );
    assert_eq!(node.runs(), ["upgrade v1.2.3 pillar-test"]);

    // The acknowledgement reaches both relays (each demands NIP-42 and
    // applies qubestr's rules).
    let node_pk = node.node_keys.public_key();
    for url in [&relay_a.url, &relay_b.url] {
        let ack = fetch_one(url, ack_filter(&node_pk), Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no acknowledgement on {url}"));
        let mut voters = vec![
            hex::encode(gov[0].public_key()),
            hex::encode(gov[1].public_key()),
        ];
        voters.sort();
        let expected_a: Vec<String> = voters
            .iter()
            .map(|v| format!("33321:{v}:hyperqube"))
            .collect();
        assert_eq!(tag_values(&ack, "a"), expected_a);
        assert_eq!(tag_values(&ack, "p"), voters);
        let mut ids = vec![d1.id_hex(), d2.id_hex()];
        ids.sort_by_key(|id| {
            if *id == d1.id_hex() {
                gov[0].public_key()
            } else {
                gov[1].public_key()
            }
        });
        assert_eq!(tag_values(&ack, "e").len(), 2);
        for id in &ids {
            assert!(tag_values(&ack, "e").contains(&id.as_str()));
        }
        assert_eq!(tag_values(&ack, "status"), ["success"]);
        assert_eq!(tag_values(&ack, "version"), ["v1.2.3"]);
        assert_eq!(tag_values(&ack, "network"), ["hqz"]);
        assert_eq!(tag_values(&ack, "action"), ["upgrade"]);
        assert_eq!(tag_values(&ack, "hash"), [HASH]);
        assert_eq!(tag_values(&ack, "node_id"), ["pillar-test"]);
        assert!(tag_values(&ack, "error").is_empty());
        let tags: Vec<Vec<String>> = ack.tags.clone();
        qubestr_check(ack.kind, &tags, &ack.content).unwrap();
    }

    // status shows the worker ran sandboxed as its own process, and both
    // relays (which demand NIP-42 for writes) accepted the node's AUTH.
    let report = || {
        qube_agent::report::status(std::path::Path::new("config.toml"), &config, &[], now())
            .unwrap()
    };
    let authenticated = wait_until(Duration::from_secs(5), || {
        report().runtime.is_some_and(|r| {
            r.relays
                .iter()
                .all(|relay| relay.state.as_deref() == Some("authenticated"))
        })
    })
    .await;
    let report = report();
    assert!(authenticated, "{:?}", report.runtime);
    assert!(report
        .to_string()
        .contains("connected, authenticated since"));
    let runtime = report.runtime.expect("no runtime.json");
    assert_eq!(runtime.worker_restarts, Some(0));
    assert!(
        matches!(
            runtime.worker_sandbox.as_deref(),
            Some("full" | "partial" | "none")
        ),
        "{runtime:?}"
    );

    // Restart: the quorum is still stored and still valid, but the journal
    // says it ran.
    agent.abort();
    let _ = agent.await;
    let agent = start_agent(config);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        node.runs().len(),
        1,
        "ran again after restart: {:?}",
        node.runs()
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_relay_its_state_and_what_it_sent() {
    let relay = start_relay(false).await;
    let dead = dead_port_url().await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let config = node.config(&[&relay.url, &dead], &[&gov[0], &gov[1], &gov[2]], 2);
    // One vote: stored, counted, nothing runs.
    let d1 = directive().created_at(now()).sign(&gov[0]);
    assert!(publish(&relay.url, &d1, &keys(9)).await.0);
    let agent = start_agent(config.clone());
    let status = || {
        qube_agent::report::status(std::path::Path::new("config.toml"), &config, &[], now()).ok()
    };
    // The counters arrive every 10 s.
    let reported = wait_until(Duration::from_secs(25), || {
        status().and_then(|s| s.runtime).is_some_and(|r| {
            r.relays.len() == 2 && r.relays[0].connected && r.relays[0].counters.delivered >= 1
        })
    })
    .await;
    let report = status().unwrap();
    assert!(reported, "relays not reported: {:?}", report.runtime);
    let relays = report.runtime.as_ref().unwrap().relays.clone();
    assert_eq!(relays[0].url, relay.url);
    assert_eq!(relays[0].counters.verified, 1, "{:?}", relays[0]);
    assert!(relays[0].counters.frames >= 2, "EVENT and EOSE at least");
    assert_eq!(relays[1].url, dead);
    assert!(!relays[1].connected);
    assert!(
        relays[1]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("connect")),
        "{:?}",
        relays[1]
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!("relays:      {} connected since", relay.url)),
        "{text}"
    );
    assert!(text.contains(&format!("{dead} DOWN since")), "{text}");
    assert!(text.contains(", next attempt at "), "{text}");
    let runtime = report.runtime.as_ref().unwrap();
    assert_eq!(runtime.deciding, Some(true), "{runtime:?}");
    assert_eq!(relays[0].state.as_deref(), Some("connected"));
    assert_eq!(relays[1].state.as_deref(), Some("backing_off"));
    // The next attempt is in the future of when it was recorded, within
    // the relay backoff's 60 s.
    let retry_at = relays[1].retry_at.unwrap();
    assert!(
        retry_at >= relays[1].since.unwrap() && retry_at <= now() + 60,
        "{retry_at}"
    );
    assert!(node.runs().is_empty());
    agent.abort();
}
