//! Publishing heartbeats (kind 30078, `docs/PROTOCOL.md` section 13):
//! signed by the node key here in the monitor, handed to the worker for the
//! `[heartbeat] relays` only ([`MonitorMessage::PublishTo`]).
//!
//! One goes out once the worker is confined and synced, then every
//! `heartbeat.interval_secs`, and after every action. Each relay that has
//! not stored the current heartbeat gets it again when it (re)connects or
//! after the agent answered its NIP-42 challenge. A relay that refuses the
//! kind for another reason (qubestr takes only 33321 and 3333) is logged
//! once at warn level and skipped until the agent restarts.

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{info, warn};

use super::spawn::ToWorker;
use super::Monitor;
use crate::core::heartbeat::{Heartbeat, LastRun};
use crate::core::text::printable;
use crate::ipc::MonitorMessage;

/// The monitor's heartbeat state.
#[derive(Debug)]
pub(super) struct HeartbeatState {
    /// `[heartbeat] relays`, indexes into the config's relays.
    relays: Vec<usize>,
    interval: Duration,
    /// When the next is due; `None` before the first.
    next_at: Option<tokio::time::Instant>,
    /// The current heartbeat: its id and JSON.
    current: Option<([u8; 32], String)>,
    /// Relays that have not stored the current heartbeat.
    pending: BTreeSet<usize>,
    /// Relays that refused the kind: skipped.
    refused: BTreeSet<usize>,
}

impl HeartbeatState {
    /// Heartbeats to `relays` every `interval`; `None` when `relays` is
    /// empty (heartbeats off).
    pub(super) fn new(relays: &[usize], interval: Duration) -> Option<HeartbeatState> {
        (!relays.is_empty()).then(|| HeartbeatState {
            relays: relays.to_vec(),
            interval,
            next_at: None,
            current: None,
            pending: BTreeSet::new(),
            refused: BTreeSet::new(),
        })
    }

    /// When the next heartbeat is due (now, before the first).
    pub(super) fn due_at(&self) -> tokio::time::Instant {
        self.next_at.unwrap_or_else(tokio::time::Instant::now)
    }

    /// Makes the next heartbeat due now (after an action).
    pub(super) fn due_now(&mut self) {
        self.next_at = Some(tokio::time::Instant::now());
    }
}

impl Monitor {
    /// Whether the current worker is confined and synced: heartbeats (and
    /// `READY=1`) wait for that.
    pub(super) fn worker_ready(&self) -> bool {
        self.sandbox.is_some() && self.deciding
    }

    /// Signs and hands the worker a heartbeat when one is due.
    pub(super) fn publish_heartbeat_if_due(&mut self, to_worker: &ToWorker) {
        if !self.worker_ready() {
            return;
        }
        let Some(hb) = self.telemetry.heartbeat.as_ref() else {
            return;
        };
        if hb.due_at() > tokio::time::Instant::now() {
            return;
        }
        let targets: Vec<usize> = hb
            .relays
            .iter()
            .copied()
            .filter(|r| !hb.refused.contains(r))
            .collect();
        let interval = hb.interval;
        let event = match self.keys.sign(self.heartbeat().to_unsigned(crate::now())) {
            Ok(event) => event,
            Err(e) => {
                warn!("cannot sign a heartbeat: {e}");
                return;
            }
        };
        let Some(hb) = self.telemetry.heartbeat.as_mut() else {
            return;
        };
        hb.next_at = Some(tokio::time::Instant::now() + interval);
        if targets.is_empty() {
            return;
        }
        let json = event.to_json();
        hb.current = Some((event.id, json.clone()));
        hb.pending = targets.iter().copied().collect();
        info!("heartbeat {} published", event.id_hex());
        to_worker.send(MonitorMessage::PublishTo {
            relays: targets,
            event: json,
        });
    }

    /// The heartbeat as of now.
    fn heartbeat(&self) -> Heartbeat<'_> {
        let (journal_seq, journal_head, journal_entries) = match &self.journal {
            Some(j) => {
                let (seq, head) = j.head();
                (seq, head, j.records().len())
            }
            None => (0, [0; 32], 0),
        };
        let last = self.telemetry.last_action();
        Heartbeat {
            network: self.config.network(),
            node_pubkey: self.keys.public_key(),
            node_id: &self.node_id,
            agent_version: env!("CARGO_PKG_VERSION"),
            installed_version: self.installed.as_ref().map(ToString::to_string),
            journal_seq,
            journal_head,
            journal_entries,
            sandbox: self.sandbox.map(|s| s.as_str()),
            config_sha256: self.config.source_sha256().copied(),
            last_run: last.map(|a| LastRun {
                proposal: &a.proposal,
                status: a.status,
                error: a.error.as_deref(),
                at: a.at,
            }),
            uptime_secs: crate::now().saturating_sub(self.telemetry.started_at()),
            worker_restarts: self.restarts,
            outside_wave: self.outside_wave(),
        }
    }

    /// A relay answered event `event_id`: when it is the current
    /// heartbeat, records the answer and returns `true` (it is no ack).
    pub(super) fn heartbeat_answered(
        &mut self,
        relay: usize,
        event_id: &[u8; 32],
        accepted: bool,
        message: &str,
    ) -> bool {
        let url = self.relay_url(relay);
        let Some(hb) = self.telemetry.heartbeat.as_mut() else {
            return false;
        };
        if hb.current.as_ref().map(|(id, _)| id) != Some(event_id) {
            return false;
        }
        hb.pending.remove(&relay);
        if accepted {
            tracing::debug!("{url} stored the heartbeat");
        } else if message.starts_with("auth-required:") {
            // Sent again after the agent answers the relay's challenge.
            hb.pending.insert(relay);
        } else if hb.refused.insert(relay) {
            warn!(
                "{url} refused the heartbeat (kind 30078): {}; no more heartbeats go to it until the agent restarts",
                printable(message, 256)
            );
        }
        true
    }

    /// Sends the current heartbeat again to `relay` if it has not stored
    /// it (after a reconnection or a NIP-42 AUTH).
    pub(super) fn resend_heartbeat(&self, relay: usize, to_worker: &ToWorker) {
        let Some(hb) = self.telemetry.heartbeat.as_ref() else {
            return;
        };
        if let (Some((_, json)), true) = (&hb.current, hb.pending.contains(&relay)) {
            to_worker.send(MonitorMessage::PublishTo {
                relays: vec![relay],
                event: json.clone(),
            });
        }
    }
}
