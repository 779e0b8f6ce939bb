//! `wss://` end to end: the hand-set rustls path (ring, webpki roots plus
//! `[tls] extra_roots`) carries a quorum through a TLS relay, and a
//! certificate for another name, an expired one, or one from a CA we do
//! not trust is refused with a reason that says so, and nothing runs.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::Duration;

use qube_agent::config::RelayUrl;
use qube_agent::relay::{RelayEvent, RelayOptions, RelayPool, RelayTarget};
use qube_agent::Filter;
use qube_e2e::*;

/// A node whose config trusts `ca` for the relay at `url`.
fn tls_config(
    node: &Node,
    url: &str,
    ca: &TestCa,
    gov: &[qube_agent::Keys],
) -> qube_agent::config::Config {
    let pem = node.dir.path().join("relay-ca.pem");
    std::fs::write(&pem, ca.pem()).unwrap();
    node.config_with(
        &[url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        &format!("[tls]\nextra_roots = {pem:?}\n"),
        "",
    )
}

/// Publishes a 2-of-3 quorum for v1.2.3 to the plain relay behind the
/// terminator.
async fn publish_quorum(relay: &TestRelay, gov: &[qube_agent::Keys]) {
    let publisher = keys(9);
    for voter in &gov[..2] {
        let d = directive().created_at(now()).sign(voter);
        assert!(publish(&relay.url, &d, &publisher).await.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_runs_through_a_wss_relay_with_a_private_ca() {
    let ca = TestCa::new("qube test CA");
    let relay = start_relay(false).await;
    let wss = tls_terminator(&relay.url, &ca.leaf(&["localhost"], false)).await;
    let gov: Vec<qube_agent::Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let agent = start_agent(tls_config(&node, &wss, &ca, &gov));
    publish_quorum(&relay, &gov).await;
    assert!(
        wait_until(Duration::from_secs(20), || !node.runs().is_empty()).await,
        "the quorum did not run through {wss}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node.runs(), ["upgrade v1.2.3 pillar-test"]);
    agent.abort();
}

/// The reason the relay client gives for `leaf` when it trusts `ca`.
async fn refusal(ca: &TestCa, leaf: &TestLeaf) -> String {
    let relay = start_relay(false).await;
    let wss = tls_terminator(&relay.url, leaf).await;
    let target = RelayTarget::from(&RelayUrl::parse(&wss).unwrap());
    let options = RelayOptions {
        extra_roots: vec![ca.der()],
        ..fast_options()
    };
    let filter = Filter {
        kinds: vec![33321],
        tags: BTreeMap::from([('d', vec!["hyperqube".to_owned()])]),
        ..Filter::default()
    };
    let (_pool, mut rx) = RelayPool::start(vec![target], vec![filter], options);
    wait_for(&mut rx, Duration::from_secs(10), |e| match e {
        RelayEvent::Disconnected { reason, .. } => Some(reason.clone()),
        RelayEvent::Connected { .. } => panic!("connected despite a bad certificate"),
        _ => None,
    })
    .await
}

/// Nothing runs on a node whose only relay presents `leaf`.
async fn nothing_runs_behind(ca: &TestCa, leaf: &TestLeaf) {
    let relay = start_relay(false).await;
    let wss = tls_terminator(&relay.url, leaf).await;
    let gov: Vec<qube_agent::Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let agent = start_agent(tls_config(&node, &wss, ca, &gov));
    publish_quorum(&relay, &gov).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        node.runs().is_empty(),
        "ran through a relay with a bad certificate"
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused() {
    let ca = TestCa::new("qube test CA");
    let leaf = ca.leaf(&["relay.example"], false);
    let reason = refusal(&ca, &leaf).await;
    assert!(
        reason.contains("TLS handshake") && reason.contains("not valid for name \"localhost\""),
        "{reason}"
    );
    nothing_runs_behind(&ca, &leaf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let ca = TestCa::new("qube test CA");
    let leaf = ca.leaf(&["localhost"], true);
    let reason = refusal(&ca, &leaf).await;
    assert!(
        reason.contains("TLS handshake") && reason.contains("certificate expired"),
        "{reason}"
    );
    nothing_runs_behind(&ca, &leaf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_untrusted_ca_is_refused() {
    let trusted = TestCa::new("qube test CA");
    let other = TestCa::new("someone else's CA");
    let leaf = other.leaf(&["localhost"], false);
    let reason = refusal(&trusted, &leaf).await;
    assert!(
        reason.contains("TLS handshake") && reason.contains("UnknownIssuer"),
        "{reason}"
    );
    nothing_runs_behind(&trusted, &leaf).await;
}
