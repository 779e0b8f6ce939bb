//! The monitor treats the worker as hostile (SECURITY.md, `docs/PROTOCOL.md` section 9): a worker
//! that forwards a forged directive or one from a non-voter, sends an
//! oversized frame or an unknown message type, or asks for an AUTH
//! signature for a relay we do not have or with an unbounded challenge, is
//! ended and restarted; no action runs and the monitor keeps its state.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use qube_agent::monitor::{self, RunOptions, WorkerMode};
use qube_e2e::*;

async fn misbehave(mode: &str) {
    misbehave_with(&[mode]).await;
}

async fn misbehave_with(args: &[&str]) {
    let mode = args[0];
    let relay = start_relay(false).await;
    let gov: Vec<qube_agent::Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let config = node.config(&[&relay.url], &[&gov[0], &gov[1], &gov[2]], 1);
    let config_copy = config.clone();
    let program = worker_program().with_file_name("fake-worker");
    let options = RunOptions {
        dry_run: false,
        worker: WorkerMode::Process {
            program,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        },
    };
    let agent = tokio::spawn(async move { monitor::run(config, options).await.unwrap() });
    // Quorum is 1: a forwarded directive the monitor accepted would run.
    assert!(
        wait_until(Duration::from_secs(15), || worker_restarts(&node) >= 2).await,
        "{mode}: the worker was not ended and restarted (restarts: {})",
        worker_restarts(&node)
    );
    assert!(!agent.is_finished(), "{mode}: the monitor stopped");
    let report = qube_agent::report::status(
        std::path::Path::new("config.toml"),
        &config_copy,
        &[],
        now(),
    )
    .unwrap();
    assert!(
        report.runtime.unwrap().worker_restarts.unwrap() >= 2,
        "{mode}: status shows no restarts"
    );
    assert!(node.runs().is_empty(), "{mode}: an action ran");
    let state = node.dir.path().join("state");
    assert!(
        !state.join("directives.json").exists(),
        "{mode}: a forwarded directive was stored"
    );
    assert!(
        !state.join("journal.jsonl").exists()
            || std::fs::read_to_string(state.join("journal.jsonl"))
                .unwrap()
                .is_empty()
    );
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_directive_ends_the_worker() {
    misbehave("forged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directive_from_a_non_voter_ends_the_worker() {
    misbehave("nonvoter").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_the_worker() {
    misbehave("oversized").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_ends_the_worker() {
    misbehave("unknown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_request_for_another_relay_ends_the_worker() {
    misbehave("auth-other-relay").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_request_with_an_unbounded_challenge_ends_the_worker() {
    misbehave("auth-huge-challenge").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_reading_is_ended_within_the_write_deadline() {
    // 2,000 AUTH answers fill the pipe of a worker that never reads: the
    // monitor's writer misses its 5 s deadline (or its queue overruns) and
    // the worker is restarted, while the monitor keeps serving.
    misbehave("stall").await;
}

/// The state of process `pid` from `/proc` (`R`, `S`, `Z`, ...), `None`
/// when it no longer exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) STATE ...: the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restart_leaves_none_of_its_processes_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleeper.pid");
    let pidfile_arg = pidfile.to_str().unwrap().to_owned();
    let waiter = tokio::spawn(async move {
        // The first worker writes the file; later ones overwrite it.
        misbehave_with(&["fork", &pidfile_arg]).await;
    });
    assert!(
        wait_until(Duration::from_secs(15), || pidfile.exists()).await,
        "the fake worker never started its child"
    );
    let first: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        process_state(first).is_some_and(|s| s != 'Z'),
        "positive control: the child runs while its worker does"
    );
    // The worker is ended for its unknown message; its group goes with it.
    assert!(
        wait_until(Duration::from_secs(10), || process_state(first)
            .is_none_or(|s| s == 'Z'))
        .await,
        "the worker's child {first} outlived the worker (state {:?})",
        process_state(first)
    );
    waiter.await.unwrap();
    // The last worker's child dies with the agent's end (abort drops it).
    let last: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if last != first {
        assert!(
            wait_until(Duration::from_secs(10), || process_state(last)
                .is_none_or(|s| s == 'Z'))
            .await,
            "the last worker's child {last} outlived the agent"
        );
    }
}
