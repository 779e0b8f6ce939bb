//! A hostile worker for the monitor's tests: reads the start message, then
//! sends one kind of misbehaviour (named by its only argument) and waits
//! until the monitor ends it.
//!
//! Modes: `forged` (a voter's directive with a broken signature),
//! `nonvoter` (a valid directive from a key that is not a voter),
//! `oversized` (a frame length over the cap), `unknown` (a message type the
//! protocol does not have: a request to sign a kind 1 event),
//! `auth-other-relay` (an AUTH request for a relay index not configured),
//! `auth-huge-challenge` (an AUTH request with a 1000-byte challenge),
//! `stall` (2,000 valid AUTH requests, then it never reads its stdin again,
//! so the monitor's answers fill the pipe), `fork PIDFILE` (leads its own
//! session as the real worker does, starts `/bin/sleep`, writes the sleeper's
//! pid to PIDFILE, waits 1 s, then sends an unknown message type),
//! `stall-pipe PIDFILE` (leads its own session, starts `/bin/sleep` in its
//! process group, writes its own pid, which is its process group id, to
//! PIDFILE, sends 400 valid AUTH requests and then a relay status
//! "connected" for relay 0 as a marker, and never reads its stdin again:
//! the monitor's 400 answers, about 400 bytes each, fill the 64 KiB pipe
//! but not the monitor's 512-frame queue, so the monitor's writer is stuck
//! on a frame until its write deadline), `gated GATE ENVFILE` (writes the
//! names of its environment variables to ENVFILE, one a line, waits until
//! the file GATE exists, then reports its sandbox and that the relays are
//! synced, and idles: a well-behaved worker whose start the test controls).

#![forbid(unsafe_code)]
// A test fixture: a broken fixture may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use qube_agent::ipc::{self, MonitorMessage, WorkerMessage};
use qube_agent::UnverifiedEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a frame of a message type the protocol does not have: a request
/// to sign a kind 1 event.
async fn send_unknown_message(stdout: &mut tokio::io::Stdout) {
    let frame = br#"{"type":"sign_event","kind":1,"content":"pay me"}"#;
    stdout
        .write_all(&(frame.len() as u32).to_be_bytes())
        .await
        .unwrap();
    stdout.write_all(frame).await.unwrap();
    stdout.flush().await.unwrap();
}

/// Starts `/bin/sleep 1000` in this process's group; returns its pid.
fn start_sleeper() -> u32 {
    // Never waited for on purpose: the monitor must end it with the
    // worker's process group.
    #[allow(clippy::zombie_processes)]
    let sleeper = std::process::Command::new("/bin/sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    sleeper.id()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "fork" || mode == "stall-pipe" {
        qube_agent::worker::sandbox::detach_session().unwrap();
    }
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let _start: MonitorMessage = ipc::read_message(&mut stdin).await.unwrap();
    if mode == "gated" {
        let gate = std::env::args().nth(2).unwrap();
        let envfile = std::env::args().nth(3).unwrap();
        let names: Vec<String> = std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        std::fs::write(envfile, names.join("\n")).unwrap();
        while !std::path::Path::new(&gate).exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // Behave like a worker up to here, so each mode tests its own
    // misbehaviour rather than a missing sandbox report.
    let report = WorkerMessage::Sandbox {
        enforcement: ipc::Enforcement::None,
        detail: "fake worker".into(),
    };
    ipc::write_message(&mut stdout, &report).await.unwrap();
    let voter = qube_e2e::keys(1);
    // A v9.9.9 upgrade directive, signed now.
    let vote = qube_e2e::directive()
        .created_at(qube_agent::now())
        .version("v9.9.9")
        .hash(&"ab".repeat(32))
        .content("upgrade");
    match mode.as_str() {
        "gated" => {
            let synced = WorkerMessage::Synced { relays_synced: 1 };
            ipc::write_message(&mut stdout, &synced).await.unwrap();
        }
        "forged" => {
            let mut data = vote.sign(&voter).into_unverified().into_data();
            data.content = "upgrade now, trust me".into();
            let event = UnverifiedEvent::from_data(data).to_json();
            ipc::write_message(&mut stdout, &WorkerMessage::Directive { relay: 0, event })
                .await
                .unwrap();
        }
        "nonvoter" => {
            let stranger = qube_e2e::keys(77);
            let event = vote.sign(&stranger).to_json();
            ipc::write_message(&mut stdout, &WorkerMessage::Directive { relay: 0, event })
                .await
                .unwrap();
        }
        "oversized" => {
            stdout
                .write_all(&(64u32 << 20).to_be_bytes())
                .await
                .unwrap();
            stdout.flush().await.unwrap();
        }
        "unknown" => {
            send_unknown_message(&mut stdout).await;
        }
        "auth-other-relay" => {
            let msg = WorkerMessage::AuthRequest {
                relay: 99,
                challenge: "c".into(),
            };
            ipc::write_message(&mut stdout, &msg).await.unwrap();
        }
        "auth-huge-challenge" => {
            let msg = WorkerMessage::AuthRequest {
                relay: 0,
                challenge: "c".repeat(1000),
            };
            ipc::write_message(&mut stdout, &msg).await.unwrap();
        }
        "stall" => {
            for _ in 0..2_000 {
                let msg = WorkerMessage::AuthRequest {
                    relay: 0,
                    challenge: "c".into(),
                };
                ipc::write_message(&mut stdout, &msg).await.unwrap();
            }
            // Never read again: the monitor must not wait for us.
            std::future::pending::<()>().await;
        }
        "stall-pipe" => {
            let pidfile = std::env::args().nth(2).unwrap();
            start_sleeper();
            std::fs::write(pidfile, std::process::id().to_string()).unwrap();
            for _ in 0..400 {
                let msg = WorkerMessage::AuthRequest {
                    relay: 0,
                    challenge: "c".into(),
                };
                ipc::write_message(&mut stdout, &msg).await.unwrap();
            }
            // The monitor handles frames in order: once it records this
            // in runtime.json, it has queued all 400 answers.
            let marker = WorkerMessage::RelayStatus {
                relay: 0,
                connected: true,
                detail: "flood sent".into(),
                retry_in_ms: None,
            };
            ipc::write_message(&mut stdout, &marker).await.unwrap();
            // Never read again: the monitor must not wait for us.
            std::future::pending::<()>().await;
        }
        "fork" => {
            let pidfile = std::env::args().nth(2).unwrap();
            let sleeper = start_sleeper();
            std::fs::write(pidfile, sleeper.to_string()).unwrap();
            // Long enough for the test to see the child alive.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            send_unknown_message(&mut stdout).await;
        }
        other => panic!("unknown mode {other:?}"),
    }
    // Wait to be killed (or for the monitor to close the channel).
    let mut rest = Vec::new();
    let _ = stdin.read_to_end(&mut rest).await;
}
