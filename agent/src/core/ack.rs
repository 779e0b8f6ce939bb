//! Acknowledgements (kind 3333, `docs/PROTOCOL.md` section 6): what a node publishes
//! after acting on a quorum, signed by its node key.
//!
//! Tags, in order: one `a` (`33321:<author hex>:<d tag>`) and one `p` per
//! voter whose directive formed the quorum (qubestr checks the first `a`),
//! one `e` per such directive id, then `version`, `network`, `action`,
//! `hash`, `status` (`success` | `failure`), `node_id`, `action_at` (unix
//! seconds) and, on failure, `error`. The content is a non-empty sentence.

use crate::core::directive::{Directive, Proposal, DIRECTIVE_KIND};
use crate::core::event::UnsignedEvent;

/// Kind of an acknowledgement.
pub const ACK_KIND: u16 = 3333;

/// Outcome of an action: the one success/failure type of the agent. The
/// hook runner returns it, the journal records it, the acknowledgement's
/// `status` tag carries it and `status` reports it; on the wire and on disk
/// it is `success` or `failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The hook (and health check, if any) succeeded.
    Success,
    /// It did not, or never ran (hash mismatch, interrupted).
    Failure,
}

impl Status {
    /// `success` or `failure`, as in the `status` tag and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an acknowledgement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack<'a> {
    /// The proposal acted on.
    pub proposal: &'a Proposal,
    /// Authors (32-byte pubkeys) and ids (32 bytes) of the directives that
    /// formed the quorum, sorted by author.
    pub directives: Vec<([u8; 32], [u8; 32])>,
    /// The `d` tag of those directives.
    pub d_tag: &'a str,
    /// Success or failure.
    pub status: Status,
    /// Short error for a failure (`hash mismatch`, `interrupted`, ...).
    pub error: Option<&'a str>,
    /// This node's id.
    pub node_id: &'a str,
    /// When the action finished, unix seconds.
    pub action_at: u64,
}

impl<'a> Ack<'a> {
    /// Authors and ids (32 bytes each) of `directives`, sorted by author, as
    /// [`Ack::directives`] wants them.
    pub fn sources<'d>(
        directives: impl IntoIterator<Item = &'d Directive>,
    ) -> Vec<([u8; 32], [u8; 32])> {
        let mut v: Vec<_> = directives
            .into_iter()
            .map(|d| (*d.author(), d.event().id))
            .collect();
        v.sort();
        v
    }

    /// The unsigned kind 3333 event, created at `created_at` (unix seconds).
    pub fn to_unsigned(&self, created_at: u64) -> UnsignedEvent {
        let p = self.proposal;
        let mut tags: Vec<Vec<String>> = Vec::new();
        for (author, _) in &self.directives {
            tags.push(vec![
                "a".into(),
                format!("{DIRECTIVE_KIND}:{}:{}", hex::encode(author), self.d_tag),
            ]);
        }
        for (author, _) in &self.directives {
            tags.push(vec!["p".into(), hex::encode(author)]);
        }
        for (_, id) in &self.directives {
            tags.push(vec!["e".into(), hex::encode(id)]);
        }
        let mut push = |name: &str, value: String| tags.push(vec![name.into(), value]);
        push("version", p.version.clone());
        push("network", p.network.clone());
        push("action", p.action.as_str().into());
        push("hash", p.hash.clone());
        push("status", self.status.as_str().into());
        push("node_id", self.node_id.into());
        push("action_at", self.action_at.to_string());
        if let (Status::Failure, Some(error)) = (self.status, self.error) {
            push("error", error.into());
        } else if self.status == Status::Failure {
            push("error", "unknown".into());
        }
        let content = match (self.status, self.error) {
            (Status::Success, _) => format!("{} {}: success", p.action.as_str(), p.version),
            (Status::Failure, e) => format!(
                "{} {}: failure ({})",
                p.action.as_str(),
                p.version,
                e.unwrap_or("unknown")
            ),
        };
        UnsignedEvent {
            created_at,
            kind: ACK_KIND,
            tags,
            content,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directive::Action;

    fn proposal() -> Proposal {
        Proposal {
            action: Action::Upgrade,
            network: "hqz".into(),
            version: "v1.2.3".into(),
            hash: "ab".repeat(32),
            genesis_url: None,
            required_by: None,
            rollout: None,
            nodes: Vec::new(),
        }
    }

    fn tag<'a>(u: &'a UnsignedEvent, name: &str) -> Vec<&'a str> {
        u.tags
            .iter()
            .filter(|t| t[0] == name)
            .map(|t| t[1].as_str())
            .collect()
    }

    #[test]
    fn failure_ack_carries_every_qubestr_tag_and_the_quorum() {
        let p = proposal();
        let ack = Ack {
            proposal: &p,
            directives: vec![([1; 32], [0xa; 32]), ([2; 32], [0xb; 32])],
            d_tag: "hyperqube",
            status: Status::Failure,
            error: Some("hash mismatch"),
            node_id: "pillar-1",
            action_at: 1_700_000_000,
        };
        let u = ack.to_unsigned(1_700_000_001);
        assert_eq!(u.kind, 3333);
        assert_eq!(
            tag(&u, "a"),
            [
                format!("33321:{}:hyperqube", "01".repeat(32)),
                format!("33321:{}:hyperqube", "02".repeat(32))
            ]
        );
        assert_eq!(u.tags[0][0], "a", "qubestr checks the first a tag");
        assert_eq!(tag(&u, "p"), ["01".repeat(32), "02".repeat(32)]);
        assert_eq!(tag(&u, "e"), ["0a".repeat(32), "0b".repeat(32)]);
        for (name, value) in [
            ("version", "v1.2.3"),
            ("network", "hqz"),
            ("action", "upgrade"),
            ("status", "failure"),
            ("node_id", "pillar-1"),
            ("action_at", "1700000000"),
            ("error", "hash mismatch"),
        ] {
            assert_eq!(tag(&u, name), [value], "{name}");
        }
        assert_eq!(tag(&u, "hash"), ["ab".repeat(32)]);
        assert!(!u.content.is_empty());
    }

    #[test]
    fn success_ack_has_no_error_tag() {
        let p = proposal();
        let u = Ack {
            proposal: &p,
            directives: vec![([1; 32], [0xa; 32])],
            d_tag: "hyperqube",
            status: Status::Success,
            error: None,
            node_id: "n",
            action_at: 5,
        }
        .to_unsigned(6);
        assert!(tag(&u, "error").is_empty());
        assert_eq!(tag(&u, "status"), ["success"]);
        assert_eq!(u.content, "upgrade v1.2.3: success");
    }
}
