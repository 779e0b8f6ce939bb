//! The fleet view of `govctl status`: who should answer, and how they did.
//!
//! The roster is a fleet file (`--fleet FILE`, `[[nodes]]` with `name` and
//! `npub`) or, without one, every node whose heartbeat a relay holds. For
//! each node: its latest heartbeat (kind 30078, `d` =
//! `qube-agent/<network>/<its pubkey hex>`, `docs/PROTOCOL.md` section 13;
//! a heartbeat whose `d` names another key is ignored), whether it is in
//! the winning proposal's wave (section 5.8, computed from its key), and
//! its acknowledgement of that proposal. The wave is complete when every
//! node of the roster in the wave acknowledged `success`.

use std::collections::BTreeMap;
use std::path::Path;

use qube_agent::core::directive::Proposal;
use qube_agent::Event;
use serde::Deserialize;

use crate::error::{CliError, Result};
use crate::status_report::AckRow;

/// The event kind of heartbeats (NIP-78).
pub const HEARTBEAT_KIND: u16 = 30078;

/// Most nodes a fleet file may list.
const MAX_NODES: usize = 10_000;

/// One node of the roster.
pub struct FleetNode {
    /// Its name in the fleet file, or its `node_id` from a heartbeat.
    pub name: Option<String>,
    /// Its node key.
    pub pubkey: [u8; 32],
    /// Its latest heartbeat, if a relay holds one.
    pub heartbeat: Option<HeartbeatRow>,
    /// Whether it is in the winning proposal's wave; `None` without a
    /// winner.
    pub in_wave: Option<bool>,
    /// Its position for the winning proposal, 0 to 99.
    pub position: Option<u8>,
    /// Its acknowledgement of the winning proposal (matched by signer).
    pub ack: Option<AckRow>,
}

/// What a node's latest heartbeat says (every member optional: a reader
/// must ignore what it does not know and cannot rely on what is missing).
pub struct HeartbeatRow {
    /// The event's `created_at`, unix seconds.
    pub created_at: u64,
    /// Seconds since then.
    pub age_secs: u64,
    /// Older than the stale limit.
    pub stale: bool,
    /// `agent_version`.
    pub agent_version: Option<String>,
    /// `installed_version`.
    pub installed_version: Option<String>,
    /// `journal.seq`.
    pub journal_seq: Option<u64>,
    /// `journal.head`.
    pub journal_head: Option<String>,
    /// `node_id`.
    pub node_id: Option<String>,
}

/// The fleet part of the report.
pub struct Fleet {
    /// Where the roster came from: `fleet file` or `heartbeats`.
    pub source: &'static str,
    /// The nodes, in roster order (by name, then key, from heartbeats).
    pub nodes: Vec<FleetNode>,
    /// `Some(true)` when every node in the winning proposal's wave acked
    /// success; `None` without a winner or an empty roster.
    pub wave_complete: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    nodes: Vec<FleetEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetEntry {
    name: String,
    npub: String,
}

/// Reads a fleet file: TOML with `[[nodes]]` tables of `name` and `npub`
/// (an npub or 64 hex), names and keys unique.
///
/// # Errors
/// Unreadable, not that TOML, a bad key, a duplicate, or more than 10 000
/// nodes.
pub fn load(path: &Path) -> Result<Vec<(String, [u8; 32])>> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, &e))?;
    let file: FleetFile = toml::from_str(&text).map_err(|e| {
        CliError::failure(format!("fleet file {}: {e}", path.display())).hint(
            "a fleet file lists [[nodes]] tables, each with name = \"...\" and npub = \"npub1...\"",
        )
    })?;
    if file.nodes.len() > MAX_NODES {
        return Err(CliError::failure(format!(
            "fleet file {}: {} nodes, at most {MAX_NODES}",
            path.display(),
            file.nodes.len()
        )));
    }
    let mut nodes: Vec<(String, [u8; 32])> = Vec::with_capacity(file.nodes.len());
    for entry in file.nodes {
        let key = crate::config_edit::parse_public_key(&entry.npub).map_err(|e| {
            e.context(&format!(
                "fleet file {}, node {:?}",
                path.display(),
                entry.name
            ))
        })?;
        if nodes.iter().any(|(n, k)| *n == entry.name || *k == key) {
            return Err(CliError::failure(format!(
                "fleet file {}: node {:?} or its key is listed twice",
                path.display(),
                entry.name
            )));
        }
        nodes.push((entry.name, key));
    }
    Ok(nodes)
}

/// The newest of `events` per author (by `created_at`; the first seen of
/// equal ones).
pub fn latest_per_author<'a>(
    events: impl Iterator<Item = &'a Event>,
) -> BTreeMap<[u8; 32], &'a Event> {
    let mut latest: BTreeMap<[u8; 32], &Event> = BTreeMap::new();
    for event in events {
        if latest
            .get(&event.pubkey)
            .is_none_or(|old| event.created_at > old.created_at)
        {
            latest.insert(event.pubkey, event);
        }
    }
    latest
}

/// The latest valid heartbeat per node among `events`, for `network`,
/// at `now` (unix seconds), stale after `stale_secs`.
pub fn heartbeats(
    events: &[Event],
    network: &str,
    now: u64,
    stale_secs: u64,
) -> BTreeMap<[u8; 32], HeartbeatRow> {
    let own_d = |e: &&Event| {
        let d = format!("qube-agent/{network}/{}", hex::encode(e.pubkey));
        e.kind == HEARTBEAT_KIND && e.tag_value("d") == Some(d.as_str())
    };
    latest_per_author(events.iter().filter(own_d))
        .into_iter()
        .map(|(key, event)| {
            let v: serde_json::Value = serde_json::from_str(&event.content).unwrap_or_default();
            let text = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_owned);
            let age_secs = now.saturating_sub(event.created_at);
            let row = HeartbeatRow {
                created_at: event.created_at,
                age_secs,
                stale: age_secs > stale_secs,
                agent_version: text("agent_version"),
                installed_version: text("installed_version"),
                journal_seq: v
                    .get("journal")
                    .and_then(|j| j.get("seq"))
                    .and_then(serde_json::Value::as_u64),
                journal_head: v
                    .get("journal")
                    .and_then(|j| j.get("head"))
                    .and_then(|h| h.as_str())
                    .map(str::to_owned),
                node_id: text("node_id"),
            };
            (key, row)
        })
        .collect()
}

/// Builds the fleet view: `roster` (from a fleet file) or, when `None`,
/// every node with a heartbeat; `winner` the proposal that runs, if any;
/// `acks` its acknowledgements.
pub fn build(
    roster: Option<Vec<(String, [u8; 32])>>,
    mut beats: BTreeMap<[u8; 32], HeartbeatRow>,
    winner: Option<&Proposal>,
    acks: &[AckRow],
) -> Fleet {
    let source = if roster.is_some() {
        "fleet file"
    } else {
        "heartbeats"
    };
    let roster: Vec<(Option<String>, [u8; 32])> = match roster {
        Some(nodes) => nodes.into_iter().map(|(n, k)| (Some(n), k)).collect(),
        None => beats.iter().map(|(k, b)| (b.node_id.clone(), *k)).collect(),
    };
    let nodes: Vec<FleetNode> = roster
        .into_iter()
        .map(|(name, pubkey)| FleetNode {
            name,
            heartbeat: beats.remove(&pubkey),
            in_wave: winner.map(|p| p.in_wave(&pubkey)),
            position: winner.map(|p| p.wave_position(&pubkey)),
            ack: acks
                .iter()
                .filter(|a| a.signer == pubkey)
                .max_by_key(|a| a.created_at)
                .cloned(),
            pubkey,
        })
        .collect();
    let wave_complete = (winner.is_some() && !nodes.is_empty()).then(|| {
        nodes
            .iter()
            .filter(|n| n.in_wave == Some(true))
            .all(|n| n.ack.as_ref().is_some_and(|a| a.status == "success"))
    });
    Fleet {
        source,
        nodes,
        wave_complete,
    }
}
