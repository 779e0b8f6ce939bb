//! Latency from the quorum-completing directive to the hook starting, on
//! loopback: one relay, one agent (in process), quorum 2 of 2. Each of 20
//! rounds signs a new version; the first vote is in place before the
//! measured one is sent. Reported: median, minimum and maximum of the time
//! from handing the second directive to the publishing client until the
//! hook's first instruction (its `date +%s%N`), and from the relay's `OK`
//! for that directive until the same moment.
//!
//! Run: `cargo bench -p qube-e2e --bench quorum_latency`.

// Bench code: a panic is how a broken fixture shows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::Duration;

use qube_agent::relay::{RelayEvent, RelayPool};
use qube_agent::{Filter, Keys};
use qube_e2e::*;

const ROUNDS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=2).map(keys).collect();
    // The hook prints the wall clock in nanoseconds first thing.
    let node = Node::with_hook("");
    let hook = node.dir.path().join("upgrade.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ndate +%s%N >> {}\n", node.marker.display()),
    )
    .unwrap();
    let _agent = start_agent(node.config(&[&relay.url], &[&gov[0], &gov[1]], 2));

    let (pool, mut rx) = RelayPool::start(
        vec![target(&relay.url)],
        vec![Filter {
            kinds: vec![1],
            authors: vec![[0; 32]],
            ..Filter::default()
        }],
        fast_options(),
    );
    wait_for(&mut rx, Duration::from_secs(10), |e| {
        matches!(e, RelayEvent::EndOfStored { .. }).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut from_send, mut from_ok) = (Vec::new(), Vec::new());
    // Each round's directives must be newer than the last round's.
    let base = now() - 1000;
    for round in 0..ROUNDS {
        let version = format!("v1.0.{round}");
        let created = base + round as u64;
        let first = directive()
            .created_at(created)
            .version(&version)
            .sign(&gov[0]);
        pool.publish(&first);
        wait_for(&mut rx, Duration::from_secs(10), |e| match e {
            RelayEvent::Ok { event_id, .. } if *event_id == first.id => Some(()),
            _ => None,
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        let second = directive()
            .created_at(created)
            .version(&version)
            .sign(&gov[1]);
        let sent = nanos_now();
        pool.publish(&second);
        let ok = wait_for(&mut rx, Duration::from_secs(10), |e| match e {
            RelayEvent::Ok { event_id, .. } if *event_id == second.id => Some(nanos_now()),
            _ => None,
        })
        .await;
        assert!(
            wait_until(Duration::from_secs(10), || node.runs().len() > round).await,
            "round {round}: the hook did not run"
        );
        let started: u128 = node.runs()[round].trim().parse().unwrap();
        from_send.push((started as f64 - sent as f64) / 1e6);
        from_ok.push((started as f64 - ok as f64) / 1e6);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = |name: &str, v: &Vec<f64>| {
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{name}: median {:.2} ms, min {min:.2} ms, max {max:.2} ms over {} rounds",
            median(v.clone()),
            v.len()
        );
    };
    println!("quorum-completing directive -> hook start (loopback, agent in process)");
    stats("from publish", &from_send);
    stats("from the relay's OK", &from_ok);
}
