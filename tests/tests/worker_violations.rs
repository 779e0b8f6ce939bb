//! The monitor treats the worker as hostile (SECURITY.md, `docs/PROTOCOL.md` section 9): a worker
//! that forwards a forged directive or one from a non-voter, sends an
//! oversized frame or an unknown message type, or asks for an AUTH
//! signature for a relay we do not have or with an unbounded challenge, is
//! ended and restarted; no action runs and the monitor keeps its state.
//! A worker that stops reading cannot stall the monitor: it is ended
//! within the write deadline, SIGTERM still ends the monitor within 1 s,
//! and no process the worker started outlives it.

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
    // 2,000 AUTH answers fill the pipe of a worker that never reads and
    // overrun the monitor's 512-frame queue at once: the worker is
    // restarted, while the monitor keeps serving. (The 5 s write deadline,
    // for a worker that stalls with the queue not full, has its own test
    // below.)
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

/// Every process in process group `pgid`, with its state, from `/proc`.
fn group_members(pgid: u32) -> Vec<(u32, char)> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) STATE PPID PGRP ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next());
        let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        if let (Some(state), Some(pgrp)) = (state, pgrp) {
            if pgrp == pgid {
                members.push((pid, state));
            }
        }
    }
    members
}

/// The members of group `pgid` that are not zombies (a zombie has
/// exited and released everything; only its exit status waits for a
/// parent that may be gone).
fn live_members(pgid: u32) -> Vec<(u32, char)> {
    group_members(pgid)
        .into_iter()
        .filter(|(_, state)| *state != 'Z')
        .collect()
}

/// A child process this test started, ended by its pid if the test ends
/// before it does: SIGTERM first, so a monitor stops its worker's group,
/// then SIGKILL.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        for _ in 0..60 {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the agent's `runtime.json` shows relay 0 connected.
fn relay_0_connected(node: &Node) -> bool {
    let path = node.dir.path().join("state").join("runtime.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| {
            v.pointer("/relays/0/connected")
                .and_then(serde_json::Value::as_bool)
        })
        .unwrap_or(false)
}

/// A monitor process whose worker stopped reading with the pipe to it full.
struct Stalled {
    // Declared first, dropped first: the monitor ends before its relay.
    monitor: Started,
    node: Node,
    _relay: TestRelay,
    log: std::path::PathBuf,
    /// The fake worker's pid, which is its process group id.
    group: u32,
}

impl Stalled {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts the monitor as a process of its own (`qube-monitor`: what
/// `qube-agent run` runs, with the fake worker in mode `stall-pipe`), so a
/// signal goes to it and nowhere else; returns once the monitor has queued
/// its answers to the worker's 400 AUTH requests, so its writer is stuck on
/// the full pipe, and before any restart.
async fn stalled_monitor() -> Stalled {
    let relay = start_relay(false).await;
    let gov: Vec<qube_agent::Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let config = node.dir.path().join("config.toml");
    let toml = node.config_toml(&[&relay.url], &[&gov[0], &gov[1], &gov[2]], 1, "", "");
    std::fs::write(&config, toml).unwrap();
    let pidfile = node.dir.path().join("worker.pid");
    let log = node.dir.path().join("monitor.log");
    let program = worker_program();
    let monitor = Started(
        std::process::Command::new(program.with_file_name("qube-monitor"))
            .arg(&config)
            .arg(program.with_file_name("fake-worker"))
            .arg("stall-pipe")
            .arg(&pidfile)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut stalled = Stalled {
        monitor,
        node,
        _relay: relay,
        log,
        group: 0,
    };
    let read_pid = || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    assert!(
        wait_until(Duration::from_secs(15), || read_pid().is_some()).await,
        "the fake worker never started; monitor log:\n{}",
        stalled.log()
    );
    stalled.group = read_pid().unwrap();
    // The marker follows the flood: the monitor has queued its 400
    // answers, and the pipe to the worker, which no longer reads, is full.
    assert!(
        wait_until(Duration::from_secs(15), || relay_0_connected(&stalled.node)).await,
        "the monitor never took in the flood; monitor log:\n{}",
        stalled.log()
    );
    assert_eq!(
        stalled.monitor.0.try_wait().unwrap(),
        None,
        "the monitor stopped"
    );
    assert_eq!(
        worker_restarts(&stalled.node),
        0,
        "the worker was ended before the test looked; monitor log:\n{}",
        stalled.log()
    );
    // Positive control: the group checks see the worker and its child.
    assert!(
        live_members(stalled.group).len() >= 2,
        "the fake worker's group {}: {:?}",
        stalled.group,
        group_members(stalled.group)
    );
    stalled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_stops_reading_before_the_queue_fills_is_ended_by_the_write_deadline() {
    // The queue is not full (see `stall` for that): this is the per-frame
    // write deadline's work.
    let stalled = stalled_monitor().await;
    assert!(
        wait_until(Duration::from_secs(15), || worker_restarts(&stalled.node)
            >= 1)
        .await,
        "the stalled worker was not ended; monitor log:\n{}",
        stalled.log()
    );
    assert!(
        stalled
            .log()
            .contains("the worker did not read a frame within"),
        "ended for another reason; monitor log:\n{}",
        stalled.log()
    );
    let group = stalled.group;
    assert!(
        wait_until(Duration::from_secs(5), || live_members(group).is_empty()).await,
        "the ended worker's group lives on: {:?}",
        group_members(group)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_monitor_within_1_s_while_its_worker_stalls_it() {
    let mut stalled = stalled_monitor().await;
    let monitor = &mut stalled.monitor.0;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(monitor.id()).unwrap());
    let signalled = std::time::Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = monitor.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "the monitor ignored SIGTERM for 10 s; its log:\n{}",
            stalled.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = signalled.elapsed();
    eprintln!("monitor exited {} ms after SIGTERM", took.as_millis());
    assert!(
        took <= Duration::from_secs(1),
        "the monitor took {} ms to act on SIGTERM; its log:\n{}",
        took.as_millis(),
        stalled.log()
    );
    // `qube-agent run --help`: exit status 0 after a signal.
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; monitor log:\n{}",
        stalled.log()
    );
    // The signal, not the write deadline (5 s), ended the stall.
    assert_eq!(
        worker_restarts(&stalled.node),
        0,
        "monitor log:\n{}",
        stalled.log()
    );
    let group = stalled.group;
    assert!(
        wait_until(Duration::from_secs(5), || live_members(group).is_empty()).await,
        "the fake worker's group outlived the monitor: {:?}",
        group_members(group)
    );
}
