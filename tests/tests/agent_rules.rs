//! The quorum rules of `docs/PROTOCOL.md` sections 4 and 5 and the execution contract of
//! section 4, end to end: the agent runs in process against real relays on
//! loopback. Each negative case ends with a positive control, so a test
//! cannot pass merely because nothing works.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use qube_agent::{Event, Keys};
use qube_e2e::*;
use tokio_tungstenite::tungstenite::Message;

const OTHER_HASH: &str = "2222222222222222222222222222222222222222222222222222222222222222";
/// How long "nothing happened" is watched for.
const QUIET: Duration = Duration::from_millis(1500);
const RUN: Duration = Duration::from_secs(20);

fn gov() -> Vec<Keys> {
    (1..=4).map(keys).collect()
}

async fn send(url: &str, event: &Event) {
    let (accepted, message) = publish(url, event, &keys(99)).await;
    assert!(accepted, "relay refused a test directive: {message}");
}

async fn assert_quiet(node: &Node) {
    tokio::time::sleep(QUIET).await;
    assert!(
        node.runs().is_empty(),
        "ran when it must not: {:?}",
        node.runs()
    );
}

async fn assert_runs_once(node: &Node, expected: &str) {
    assert!(
        wait_until(RUN, || !node.runs().is_empty()).await,
        "control: the hook never ran"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.runs(), [expected]);
}

/// One relay, voters gov1..gov3, quorum 2, agent running.
async fn setup() -> (TestRelay, Vec<Keys>, Node, tokio::task::JoinHandle<()>) {
    let relay = start_relay(false).await;
    let gov = gov();
    let node = Node::default();
    let agent = start_agent(node.config(&[&relay.url], &[&gov[0], &gov[1], &gov[2]], 2));
    (relay, gov, node, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_follow_does_not_count() {
    let (relay, gov, node, _agent) = setup().await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&keys(50)),
    )
    .await;
    assert_quiet(&node).await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_does_not_count() {
    let relay = start_relay(false).await;
    let gov = gov();
    let node = Node::default();
    let toml = node.config_toml(&[&relay.url], &[&gov[0], &gov[1], &gov[2]], 2, "", "");
    // gov3 becomes an observer.
    let at = toml.rfind("role = \"voter\"").unwrap();
    let toml = format!(
        "{}role = \"observer\"{}",
        &toml[..at],
        &toml[at + "role = \"voter\"".len()..]
    );
    let config = qube_agent::config::Config::from_toml_str(&toml).unwrap().0;
    let _agent = start_agent(config);
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[2]),
    )
    .await;
    assert_quiet(&node).await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_does_not_count() {
    let good = start_relay(false).await;
    let gov = gov();
    // gov2's vote with its content changed (id no longer matches), and one
    // with a recomputed id but a signature by another key.
    let mut tampered = directive()
        .created_at(now())
        .version("v1.2.3")
        .sign(&gov[1])
        .into_unverified()
        .into_data();
    tampered.content = "upgrade to v1.2.3, trust me".into();
    let tampered = qube_agent::UnverifiedEvent::from_data(tampered).to_json();
    let mut resigned = directive()
        .created_at(now())
        .version("v1.2.3")
        .sign(&keys(60))
        .into_unverified()
        .into_data();
    resigned.pubkey = gov[1].public_key();
    resigned.id = resigned.compute_id();
    let resigned = qube_agent::UnverifiedEvent::from_data(resigned).to_json();
    let hostile = garbage_relay(vec![
        Message::text(format!("[\"EVENT\",\"qube-directives\",{tampered}]")),
        Message::text(format!("[\"EVENT\",\"qube-directives\",{resigned}]")),
        Message::text("[\"EOSE\",\"qube-directives\"]"),
    ])
    .await;
    let node = Node::default();
    let _agent = start_agent(node.config(&[&good.url, &hostile], &[&gov[0], &gov[1], &gov[2]], 2));
    send(
        &good.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    assert_quiet(&node).await;
    send(
        &good.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_network_does_not_count() {
    let (relay, gov, node, _agent) = setup().await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .network("testnet")
            .sign(&gov[1]),
    )
    .await;
    assert_quiet(&node).await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[2]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directive_dated_an_hour_ahead_does_not_count() {
    let (relay, gov, node, _agent) = setup().await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(now() + 3600)
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_quiet(&node).await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[2]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_directive_does_not_count() {
    // Relays drop expired events themselves (NIP-40); one that does not
    // serves gov2's expired vote.
    let good = start_relay(false).await;
    let gov = gov();
    let expired = directive()
        .created_at(now() - 60)
        .version("v1.2.3")
        .expiration(now() - 10)
        .sign(&gov[1]);
    let careless = garbage_relay(vec![
        Message::text(format!(
            "[\"EVENT\",\"qube-directives\",{}]",
            expired.to_json()
        )),
        Message::text("[\"EOSE\",\"qube-directives\"]"),
    ])
    .await;
    let node = Node::default();
    let _agent = start_agent(node.config(&[&good.url, &careless], &[&gov[0], &gov[1], &gov[2]], 2));
    send(
        &good.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    assert_quiet(&node).await;
    // Still valid for an hour: counts.
    let fresh = directive()
        .created_at(now())
        .version("v1.2.3")
        .expiration(now() + 3600)
        .sign(&gov[2]);
    send(&good.url, &fresh).await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_hashes_never_add_up_and_a_newer_directive_moves_the_vote() {
    let (relay, gov, node, _agent) = setup().await;
    let t = now() - 100;
    send(
        &relay.url,
        &directive().created_at(t).version("v1.2.3").sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(t)
            .version("v1.2.3")
            .hash(OTHER_HASH)
            .sign(&gov[1]),
    )
    .await;
    // v1.2.3 and 1.2.3 are different proposals too.
    send(
        &relay.url,
        &directive().created_at(t).version("1.2.3").sign(&gov[2]),
    )
    .await;
    assert_quiet(&node).await;
    // gov2 changes its mind: its newer directive replaces the old vote.
    send(
        &relay.url,
        &directive()
            .created_at(t + 1)
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_replayed_directive_changes_nothing_also_across_a_restart() {
    let good = start_relay(false).await;
    let gov = gov();
    let t = now() - 100;
    let old_vote = directive().created_at(t).version("v1.2.3").sign(&gov[0]);
    // A relay that replays gov1's superseded vote to every subscriber.
    let replayer = garbage_relay(vec![
        Message::text(format!(
            "[\"EVENT\",\"qube-directives\",{}]",
            old_vote.to_json()
        )),
        Message::text("[\"EOSE\",\"qube-directives\"]"),
    ])
    .await;
    let node = Node::default();
    let config = node.config(&[&good.url, &replayer], &[&gov[0], &gov[1], &gov[2]], 2);
    let agent = start_agent(config.clone());
    // gov1 moved to another artifact after its old vote.
    send(
        &good.url,
        &directive()
            .created_at(t + 10)
            .version("v1.2.3")
            .hash(OTHER_HASH)
            .sign(&gov[0]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(
        &good.url,
        &directive()
            .created_at(t + 20)
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_quiet(&node).await;

    agent.abort();
    let _ = agent.await;
    let _agent = start_agent(config);
    // After the restart the replayer sends the old vote again, first.
    assert_quiet(&node).await;
    send(
        &good.url,
        &directive()
            .created_at(t + 30)
            .version("v1.2.3")
            .sign(&gov[2]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_older_than_the_installed_version_does_not_run() {
    let relay = start_relay(false).await;
    let gov = gov();
    let node = Node::default();
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        "current_version = \"v2.0.0\"",
        "",
    );
    let _agent = start_agent(config);
    let t = now() - 100;
    send(
        &relay.url,
        &directive().created_at(t).version("v1.9.9").sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive().created_at(t).version("v1.9.9").sign(&gov[1]),
    )
    .await;
    send(
        &relay.url,
        &directive().created_at(t).version("v2.0.0").sign(&gov[2]),
    )
    .await;
    assert_quiet(&node).await;
    send(
        &relay.url,
        &directive()
            .created_at(t + 1)
            .version("v2.0.0")
            .sign(&gov[0]),
    )
    .await;
    assert_quiet(&node).await;
    send(
        &relay.url,
        &directive()
            .created_at(t + 1)
            .version("v2.1.0")
            .sign(&gov[1]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(t + 1)
            .version("v2.1.0")
            .sign(&gov[2]),
    )
    .await;
    assert_runs_once(&node, "upgrade v2.1.0 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_conflicting_quorums_at_the_same_version_run_nothing() {
    let relay = start_relay(false).await;
    let gov = gov();
    let node = Node::default();
    let t = now() - 100;
    // Both quorums are on the relay before the agent starts.
    for (g, hash) in [(0, HASH), (1, HASH), (2, OTHER_HASH), (3, OTHER_HASH)] {
        send(
            &relay.url,
            &directive()
                .created_at(t)
                .version("v1.2.3")
                .hash(hash)
                .sign(&gov[g]),
        )
        .await;
    }
    let config = node.config(&[&relay.url], &[&gov[0], &gov[1], &gov[2], &gov[3]], 2);
    let _agent = start_agent(config.clone());
    assert_quiet(&node).await;
    tokio::time::sleep(QUIET).await;
    assert!(node.runs().is_empty());
    // `status` reads the running agent's state and names the conflict.
    let report =
        qube_agent::report::status(std::path::Path::new("config.toml"), &config, &[], now())
            .unwrap();
    let conflict = report.conflict.expect("status shows no conflict");
    assert_eq!(conflict.version, "1.2.3");
    assert_eq!(conflict.proposals.len(), 2);
    // One side gives in: the conflict ends and the other proposal runs.
    send(
        &relay.url,
        &directive()
            .created_at(t + 1)
            .version("v1.2.3")
            .sign(&gov[3]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_arrives_through_the_third_relay_when_one_is_down_and_one_sends_garbage() {
    let good = start_relay(false).await;
    let hostile = garbage_relay(vec![
        Message::text("{\"not\":\"nostr\"}"),
        Message::binary(vec![0xff; 4096]),
        Message::text(format!("{}{}", "[".repeat(3000), "]".repeat(3000))),
        Message::text("[\"EVENT\",\"qube-directives\",{\"id\":1}]"),
    ])
    .await;
    let dead = dead_port_url().await;
    let gov = gov();
    let node = Node::default();
    let _agent = start_agent(node.config(
        &[&dead, &hostile, &good.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
    ));
    send(
        &good.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &good.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

/// Runs a quorum for v1.2.3 on a node and returns the acknowledgement.
async fn quorum_and_ack(node: &Node, upgrade_extra: &str) -> (TestRelay, Event) {
    let relay = start_relay(true).await;
    let gov = gov();
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        "",
        upgrade_extra,
    );
    let agent = start_agent(config);
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    let ack = fetch_one(
        &relay.url,
        ack_filter(&node.node_keys.public_key()),
        Duration::from_secs(30),
    )
    .await
    .expect("no acknowledgement");
    agent.abort();
    (relay, ack)
}

fn assert_failure(ack: &Event, error: &str) {
    assert_eq!(tag_values(ack, "status"), ["failure"], "{ack:?}");
    assert_eq!(tag_values(ack, "error"), [error], "{ack:?}");
    qubestr_check(ack.kind, &ack.tags, &ack.content).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_hash_mismatch_never_runs_the_hook_and_acks_failure() {
    let node = Node::default();
    let artifact = node.dir.path().join("znnd-v1.2.3");
    std::fs::write(&artifact, b"not the voted artifact").unwrap();
    let template = node.dir.path().join("znnd-{version}");
    let (_relay, ack) = quorum_and_ack(&node, &format!("artifact = {:?}", template)).await;
    assert_failure(&ack, "hash mismatch");
    assert!(node.runs().is_empty(), "the hook ran: {:?}", node.runs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_artifact_lets_the_hook_run() {
    let node = Node::default();
    let artifact = node.dir.path().join("znnd-v1.2.3");
    // HASH is 32 bytes of 0x11 written as hex: not a real SHA-256, so write
    // a file and vote for its real hash instead.
    std::fs::write(&artifact, b"the release").unwrap();
    let real = qube_agent::artifact::sha256_file(&artifact).unwrap();
    let relay = start_relay(false).await;
    let gov = gov();
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        "",
        &format!("artifact = {:?}", node.dir.path().join("znnd-{version}")),
    );
    let _agent = start_agent(config);
    for g in &gov[..2] {
        let d = directive()
            .created_at(now())
            .version("v1.2.3")
            .hash(&hex::encode(real))
            .content("upgrade")
            .sign(g);
        send(&relay.url, &d).await;
    }
    assert_runs_once(&node, "upgrade v1.2.3 pillar-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_timeout_acks_failure() {
    let node = Node::with_hook("sleep 30");
    let (_relay, ack) = quorum_and_ack(&node, "timeout_secs = 1").await;
    assert_failure(&ack, "timeout after 1 s");
    assert_eq!(node.runs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_zero_exit_acks_failure() {
    let node = Node::with_hook("exit 3");
    let (_relay, ack) = quorum_and_ack(&node, "").await;
    assert_failure(&ack, "exit status 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_hook_runs_restarts_without_running_again_and_acks_interrupted() {
    let node = Node::with_hook("sleep 30");
    let relay = start_relay(true).await;
    let gov = gov();
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        "",
        "timeout_secs = 60",
    );
    let agent = start_agent(config.clone());
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert!(
        wait_until(RUN, || !node.runs().is_empty()).await,
        "the hook never started"
    );
    // The agent dies mid-hook (the hook's process group dies with it).
    agent.abort();
    let _ = agent.await;

    let _agent = start_agent(config);
    let ack = fetch_one(
        &relay.url,
        ack_filter(&node.node_keys.public_key()),
        Duration::from_secs(30),
    )
    .await
    .expect("no acknowledgement after the restart");
    assert_failure(&ack, "interrupted");
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        node.runs().len(),
        1,
        "ran again after the restart: {:?}",
        node.runs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_tallies_but_runs_publishes_and_records_nothing() {
    let relay = start_relay(false).await;
    let gov = gov();
    let node = Node::default();
    let config = node.config(&[&relay.url], &[&gov[0], &gov[1], &gov[2]], 2);
    // A dry run creates nothing, not even the state directory.
    let state = node.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let agent = tokio::spawn(async move {
        qube_agent::monitor::run(config, split_options(true))
            .await
            .unwrap();
    });
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[0]),
    )
    .await;
    send(
        &relay.url,
        &directive()
            .created_at(now())
            .version("v1.2.3")
            .sign(&gov[1]),
    )
    .await;
    assert_quiet(&node).await;
    let ack = fetch_one(
        &relay.url,
        ack_filter(&node.node_keys.public_key()),
        Duration::from_secs(1),
    )
    .await;
    assert!(ack.is_none(), "a dry run published {ack:?}");
    assert!(
        !agent.is_finished(),
        "the dry run stopped: {:?}",
        agent.await
    );
    let files: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(files.is_empty(), "a dry run wrote {files:?}");
    agent.abort();
}

/// Kills the "service" a test's hooks started (its pid file) when dropped.
struct ServicePid(std::path::PathBuf);

impl Drop for ServicePid {
    fn drop(&mut self) {
        if let Ok(text) = std::fs::read_to_string(&self.0) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn write_script(path: &std::path::Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_dies_in_the_health_window_is_rolled_back_and_journaled() {
    // The upgrade starts a "service" (a real process) that dies 3 s later;
    // the rollback starts one that stays up.
    let dir = tempfile::tempdir().unwrap();
    let pid = dir.path().join("service.pid");
    let log = dir.path().join("steps.log");
    let _service = ServicePid(pid.clone());
    let node = Node::with_hook(&format!(
        "echo upgrade >> {log:?}\nsleep 3 </dev/null >/dev/null 2>&1 &\necho $! > {pid:?}"
    ));
    let health = dir.path().join("health.sh");
    write_script(
        &health,
        &format!(
            "state=$(cut -d' ' -f3 \"/proc/$(cat {pid:?})/stat\" 2>/dev/null)\n\
             if [ -n \"$state\" ] && [ \"$state\" != Z ]; then echo 'health ok' >> {log:?}; exit 0; fi\n\
             echo 'health dead' >> {log:?}\nexit 1"
        ),
    );
    let rollback = dir.path().join("rollback.sh");
    write_script(
        &rollback,
        &format!(
            "echo \"rollback $QUBE_FAILED_STEP $QUBE_HEALTH_RESULT\" >> {log:?}\n\
             sleep 60 </dev/null >/dev/null 2>&1 &\necho $! > {pid:?}"
        ),
    );
    let (_relay, ack) = quorum_and_ack(
        &node,
        &format!(
            "rollback = [{rollback:?}]\n\n[upgrade.health]\ncommand = [{health:?}]\nsettle_secs = 1\ninterval_secs = 1\nwindow_secs = 5"
        ),
    )
    .await;
    assert_failure(&ack, "rolled back");
    assert_eq!(node.runs().len(), 1);
    let mut steps: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    steps.dedup();
    assert_eq!(
        steps,
        [
            "upgrade",
            "health ok",
            "health dead",
            "rollback health exit status 1",
            "health ok"
        ]
    );

    // The journal's outcome names every step, how it ended and when.
    let journal =
        qube_agent::state::journal::inspect(&node.dir.path().join("state").join("journal.jsonl"))
            .unwrap();
    let outcome = journal
        .records
        .iter()
        .find_map(|r| match &r.entry {
            qube_agent::state::journal::Entry::Outcome { error, steps, .. } => {
                Some((error.clone(), steps.clone()))
            }
            _ => None,
        })
        .expect("no outcome in the journal");
    assert_eq!(outcome.0.as_deref(), Some("rolled back"));
    let summary: Vec<(&str, &str)> = outcome
        .1
        .iter()
        .map(|s| (s.name.as_str(), s.result.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("command", "ok"),
            ("health", "exit status 1"),
            ("rollback", "ok"),
            ("health after rollback", "ok")
        ]
    );
    let started = outcome.1[0].at;
    assert!(outcome.1.iter().all(|s| s.at >= started && s.at <= now()));
    assert!(outcome.1[3].ms >= 6_000, "{:?}", outcome.1[3]);
}
