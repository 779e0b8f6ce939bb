//! "Quorum under flood": a 2-of-3 quorum arrives through an honest relay
//! while a second relay floods the worker with well-formed, useless frames
//! (events from a non-voter, events of another kind, and copies of one
//! stale voter directive), 20 rounds. Reported: the time from publishing
//! the quorum-completing directive to the hook's first instruction
//! (median, minimum, maximum), the flood's rate, the signature checks the
//! flooding relay cost (from the agent's own relay counters), and the peak
//! RSS of the monitor process (`qube-monitor`, what `qube-agent run` runs)
//! and of its sandboxed worker. Run it twice to compare: with the flood
//! (default) and without (`QUBE_BENCH_FLOOD=0`).
//!
//! Run: `cargo bench -p qube-e2e --bench quorum_under_flood`.

// Bench code: a panic is how a broken fixture shows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use qube_agent::Keys;
use qube_e2e::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const ROUNDS: usize = 20;

/// The flood's rate, frames per minute (the issue's target is at least one
/// million); the flooding relay paces itself to it.
const FLOOD_PER_MINUTE: u64 = 1_200_000;

/// A relay that, once subscribed to, sends `frames` round and round at
/// [`FLOOD_PER_MINUTE`] (or as fast as the connection takes them, if
/// slower); counts what it sent.
async fn flooding_relay(frames: Vec<Message>, sent: Arc<AtomicU64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let frames = frames.clone();
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                // Wait for the REQ, then answer EOSE and flood.
                if rx.next().await.is_none() {
                    return;
                }
                let eose = Message::text(r#"["EOSE","qube-directives"]"#);
                if tx.send(eose).await.is_err() {
                    return;
                }
                tokio::spawn(async move { while rx.next().await.is_some() {} });
                let batch =
                    Duration::from_secs_f64(frames.len() as f64 * 60.0 / FLOOD_PER_MINUTE as f64);
                let mut next = tokio::time::Instant::now();
                loop {
                    next += batch;
                    tokio::time::sleep_until(next).await;
                    for f in &frames {
                        if tx.feed(f.clone()).await.is_err() {
                            return;
                        }
                    }
                    if tx.flush().await.is_err() {
                        return;
                    }
                    sent.fetch_add(frames.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    url
}

/// Peak RSS (VmHWM) of process `pid`, KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Peak RSS (VmHWM) of the children of `parent` named qube-worker, KiB
/// (children from `/proc/PID/task/*/children`: any thread may have
/// spawned it).
fn worker_peak_rss_kib(parent: u32) -> Option<u64> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{parent}/task")).ok()? {
        let list = std::fs::read_to_string(task.ok()?.path().join("children")).unwrap_or_default();
        children.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    children
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == "qube-worker")
        })
        .filter_map(peak_rss_kib)
        .max()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let flood = std::env::var("QUBE_BENCH_FLOOD").map_or(true, |v| v != "0");
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let stranger = keys(77);
    let sent = Arc::new(AtomicU64::new(0));
    let mut relays = vec![relay.url.clone()];
    if flood {
        let event_frame =
            |json: String| Message::text(format!(r#"["EVENT","qube-directives",{json}]"#));
        let stale = directive().created_at(now() - 100_000).sign(&gov[2]);
        let mut frames = Vec::new();
        for i in 0..300u64 {
            let created = now() - i;
            frames.push(event_frame(
                directive().created_at(created).sign(&stranger).to_json(),
            ));
            frames.push(event_frame(
                event(1).created_at(created).sign(&gov[0]).to_json(),
            ));
            frames.push(event_frame(stale.to_json()));
        }
        relays.push(flooding_relay(frames, Arc::clone(&sent)).await);
    }
    let node = Node::with_hook("");
    let hook = node.dir.path().join("upgrade.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ndate +%s%N >> {}\n", node.marker.display()),
    )
    .unwrap();
    let relay_refs: Vec<&str> = relays.iter().map(String::as_str).collect();
    let voters = [&gov[0], &gov[1], &gov[2]];
    let config = node.config(&relay_refs, &voters, 2);
    // The monitor as a process of its own (what `qube-agent run` runs),
    // with the real sandboxed worker, so that each one's memory is its own.
    let config_path = node.dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        node.config_toml(&relay_refs, &voters, 2, "", ""),
    )
    .unwrap();
    let monitor = std::process::Command::new(env!("CARGO_BIN_EXE_qube-monitor"))
        .arg(&config_path)
        .arg(env!("CARGO_BIN_EXE_qube-worker"))
        .arg("worker")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Monitor)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let publisher = keys(9);
    let started_at = Instant::now();
    let sent_before = sent.load(Ordering::Relaxed);
    let mut from_send = Vec::new();
    let base = now() - 1000;
    for round in 0..ROUNDS {
        let version = format!("v1.0.{round}");
        let created = base + round as u64;
        let first = directive()
            .created_at(created)
            .version(&version)
            .sign(&gov[0]);
        assert!(publish(&relay.url, &first, &publisher).await.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let second = directive()
            .created_at(created)
            .version(&version)
            .sign(&gov[1]);
        let sent_at = nanos_now();
        assert!(publish(&relay.url, &second, &publisher).await.0);
        assert!(
            wait_until(Duration::from_secs(10), || node.runs().len() > round).await,
            "round {round}: the hook did not run"
        );
        let started: u128 = node.runs()[round].trim().parse().unwrap();
        from_send.push((started as f64 - sent_at as f64) / 1e6);
    }
    let elapsed = started_at.elapsed().as_secs_f64();
    let flood_frames = sent.load(Ordering::Relaxed) - sent_before;
    // Let the worker's next counters (every 10 s) reach runtime.json.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let report =
        qube_agent::report::status(std::path::Path::new("c"), &config, &[], now()).unwrap();
    let min = from_send.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = from_send.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "quorum under flood ({}): publication -> hook start: median {:.2} ms, min {min:.2} ms, max {max:.2} ms over {ROUNDS} rounds",
        if flood { "flooding relay beside the honest one" } else { "no flood" },
        median(from_send.clone())
    );
    if flood {
        println!(
            "flood: {flood_frames} frames in {elapsed:.1} s ({:.0} frames/min)",
            flood_frames as f64 / elapsed * 60.0
        );
        if let Some(r) = report.runtime.as_ref().and_then(|r| r.relays.get(1)) {
            let c = &r.counters;
            println!(
                "flooding relay as the agent counted it: {} frames received, {} outside the filter, {} duplicates, {} signature checks, {} delivered",
                c.frames, c.outside_filter, c.duplicate, c.verified, c.delivered
            );
        }
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    let pid = monitor.0.id();
    match (peak_rss_kib(pid), worker_peak_rss_kib(pid)) {
        (Some(m), Some(w)) => println!(
            "peak RSS: monitor {:.1} MiB + worker {:.1} MiB = {:.1} MiB",
            mib(m),
            mib(w),
            mib(m + w)
        ),
        other => println!("peak RSS: not found ({other:?})"),
    }
}

/// The monitor process; killed (by its pid) and reaped when dropped, also
/// when a round fails. Its worker ends when the monitor's pipe closes.
struct Monitor(std::process::Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
