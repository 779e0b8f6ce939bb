//! Heartbeats (kind 30078, NIP-78 application data; `docs/PROTOCOL.md`
//! section 13): a node's signed, addressable status, replaced by each newer
//! one, so a relay keeps the latest per node.
//!
//! Tags, in order: `d` = `qube-agent/<network>/<node pubkey hex>`,
//! `network`, `node_id`, `alt` (NIP-31, a human-readable summary). The
//! content is one JSON object ([`Heartbeat::content`]).

use crate::core::ack::Status;
use crate::core::directive::Proposal;
use crate::core::event::UnsignedEvent;

/// Kind of a heartbeat (NIP-78 application-specific data, addressable).
pub const HEARTBEAT_KIND: u16 = 30078;

/// The `format` member of the content: bumped when a member changes meaning.
pub const HEARTBEAT_FORMAT: u32 = 1;

/// The last hook run, as a heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun<'a> {
    /// What ran.
    pub proposal: &'a Proposal,
    /// How it ended.
    pub status: Status,
    /// Why it failed (the ack's `error`).
    pub error: Option<&'a str>,
    /// When the outcome was recorded, unix seconds.
    pub at: u64,
}

/// What a heartbeat says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat<'a> {
    /// The configured network.
    pub network: &'a str,
    /// The node key (32-byte BIP-340 x-only public key): the author.
    pub node_pubkey: [u8; 32],
    /// This node's `node_id`.
    pub node_id: &'a str,
    /// The agent's own version (`qube-agent --version`).
    pub agent_version: &'a str,
    /// The installed version the agent knows (anti-rollback floor), if any.
    pub installed_version: Option<String>,
    /// The journal head: the last record's `seq` (0 when empty) ...
    pub journal_seq: u64,
    /// ... and the SHA-256 of its line (the genesis value when empty).
    pub journal_head: [u8; 32],
    /// Records in the journal file.
    pub journal_entries: usize,
    /// The worker's sandbox: `full`, `partial`, `none`, or `None` before
    /// the current worker reported it.
    pub sandbox: Option<&'a str>,
    /// SHA-256 of the config file as read at start, if read from a file.
    pub config_sha256: Option<[u8; 32]>,
    /// The last hook run, if any.
    pub last_run: Option<LastRun<'a>>,
    /// Seconds since the agent started.
    pub uptime_secs: u64,
    /// Worker restarts since the agent started.
    pub worker_restarts: u32,
    /// Proposals whose quorum holds but whose wave leaves this node out
    /// (`docs/PROTOCOL.md` section 5.8), with this node's position.
    pub outside_wave: Vec<(Proposal, u8)>,
}

impl Heartbeat<'_> {
    /// The `d` tag: `qube-agent/<network>/<node pubkey, 64 hex>`.
    pub fn d_tag(network: &str, node_pubkey: &[u8; 32]) -> String {
        format!("qube-agent/{network}/{}", hex::encode(node_pubkey))
    }

    /// The content: a JSON object with `format` ([`HEARTBEAT_FORMAT`]),
    /// `network`, `node_id`, `agent_version`, `installed_version` (string
    /// or null), `journal` (`{"seq": N, "head": HEX64, "entries": N}`),
    /// `sandbox` (string or null), `config_sha256` (HEX64 or null),
    /// `last_action` (null or `{"action", "version", "hash", "network",
    /// "status", "error" (string or null), "at"}`), `uptime_secs`,
    /// `worker_restarts`, `outside_wave` (`[{"action", "version", "hash",
    /// "rollout" (number or null), "position"}]`).
    pub fn content(&self) -> String {
        let last = self.last_run.as_ref().map(|r| {
            serde_json::json!({
                "action": r.proposal.action.as_str(),
                "version": r.proposal.version,
                "hash": r.proposal.hash,
                "network": r.proposal.network,
                "status": r.status.as_str(),
                "error": r.error,
                "at": r.at,
            })
        });
        serde_json::json!({
            "format": HEARTBEAT_FORMAT,
            "network": self.network,
            "node_id": self.node_id,
            "agent_version": self.agent_version,
            "installed_version": self.installed_version,
            "journal": {
                "seq": self.journal_seq,
                "head": hex::encode(self.journal_head),
                "entries": self.journal_entries,
            },
            "sandbox": self.sandbox,
            "config_sha256": self.config_sha256.map(hex::encode),
            "last_action": last,
            "uptime_secs": self.uptime_secs,
            "worker_restarts": self.worker_restarts,
            "outside_wave": self.outside_wave.iter().map(|(p, position)| serde_json::json!({
                "action": p.action.as_str(),
                "version": p.version,
                "hash": p.hash,
                "rollout": p.rollout,
                "position": position,
            })).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// The unsigned kind 30078 event at `created_at` (unix seconds).
    pub fn to_unsigned(&self, created_at: u64) -> UnsignedEvent {
        let alt = format!(
            "qube-agent heartbeat: node {} on {}, agent {}, installed {}",
            self.node_id,
            self.network,
            self.agent_version,
            self.installed_version.as_deref().unwrap_or("unknown")
        );
        UnsignedEvent {
            created_at,
            kind: HEARTBEAT_KIND,
            tags: vec![
                vec!["d".into(), Self::d_tag(self.network, &self.node_pubkey)],
                vec!["network".into(), self.network.to_owned()],
                vec!["node_id".into(), self.node_id.to_owned()],
                vec!["alt".into(), alt],
            ],
            content: self.content(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::core::directive::Action;

    #[test]
    fn content_and_tags_carry_every_member() {
        let proposal = Proposal {
            action: Action::Upgrade,
            network: "hqz".into(),
            version: "v1.2.3".into(),
            hash: "ab".repeat(32),
            genesis_url: None,
            required_by: None,
            rollout: None,
            nodes: Vec::new(),
        };
        let hb = Heartbeat {
            network: "hqz",
            node_pubkey: [7; 32],
            node_id: "pillar-1",
            agent_version: "0.1.0",
            installed_version: Some("v1.2.3".into()),
            journal_seq: 2,
            journal_head: [9; 32],
            journal_entries: 2,
            sandbox: Some("full"),
            config_sha256: Some([1; 32]),
            last_run: Some(LastRun {
                proposal: &proposal,
                status: Status::Failure,
                error: Some("exit status 3"),
                at: 5,
            }),
            uptime_secs: 60,
            worker_restarts: 1,
            outside_wave: Vec::new(),
        };
        let event = hb.to_unsigned(100);
        assert_eq!(event.kind, 30078);
        assert_eq!(
            event.tags[0],
            [
                "d".to_owned(),
                format!("qube-agent/hqz/{}", "07".repeat(32))
            ]
        );
        let v: serde_json::Value = serde_json::from_str(&event.content).unwrap();
        assert_eq!(v["installed_version"], "v1.2.3");
        assert_eq!(v["journal"]["head"], "09".repeat(32));
        assert_eq!(v["journal"]["entries"], 2);
        assert_eq!(v["config_sha256"], "01".repeat(32));
        assert_eq!(v["last_action"]["status"], "failure");
        assert_eq!(v["last_action"]["error"], "exit status 3");
        assert_eq!(v["sandbox"], "full");
        assert_eq!(v["worker_restarts"], 1);
    }
}
