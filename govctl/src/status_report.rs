//! What `govctl status` found, and how it is shown: tables for people,
//! JSON for scripts (the same facts in both).

use qube_agent::config::Role;
use qube_agent::core::directive::Proposal;
use qube_agent::core::quorum::Decision;
use serde_json::{json, Value};

use crate::fleet::Fleet;
use crate::keycmd::npub;
use crate::show::printable;
use crate::time::format_utc;

/// One relay and how the fetch went.
pub struct RelayRow {
    /// URL, canonical form.
    pub url: String,
    /// It sent its stored events (EOSE).
    pub answered: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
}

/// An author's current directive.
pub struct DirectiveRow {
    /// Author's public key.
    pub author: [u8; 32],
    /// Follow name, when the config has one.
    pub name: Option<String>,
    /// Voter or observer (voter without a config).
    pub role: Role,
    /// Event id, hex.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Past its NIP-40 expiration: no longer counts.
    pub expired: bool,
    /// What it votes for.
    pub proposal: Proposal,
}

/// One proposal of the tally.
pub struct ProposalRow {
    /// The exact tuple.
    pub proposal: Proposal,
    /// Voters whose current directive it is.
    pub voters: Vec<[u8; 32]>,
    /// Their follow names, in the same order.
    pub names: Vec<Option<String>>,
    /// Whether it is eligible (`docs/PROTOCOL.md` section 5.4).
    pub eligible: bool,
    /// The engine's verdict, in words.
    pub standing: String,
}

/// The latest acknowledgement of one node for the winning proposal.
#[derive(Clone)]
pub struct AckRow {
    /// `node_id` tag, as the signer claims it.
    pub node_id: String,
    /// `version` tag.
    pub version: String,
    /// `status` tag: success or failure.
    pub status: String,
    /// `error` tag.
    pub error: Option<String>,
    /// `action_at` tag, unix seconds.
    pub action_at: Option<u64>,
    /// Who signed the ack (a node key).
    pub signer: [u8; 32],
    /// Event id, hex.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// Most refused directives `status` lists.
pub const MAX_REFUSED_SHOWN: usize = 50;

/// A directive from a follow (or, without a config, any author) that the
/// agent would not count, and why.
pub struct RefusedRow {
    /// Event id, hex.
    pub id: String,
    /// Its author.
    pub author: [u8; 32],
    /// The follow's name, with a config.
    pub name: Option<String>,
    /// The rule it breaks (`DirectiveError`'s sentence).
    pub reason: String,
}

/// Everything `govctl status` reports.
pub struct Report {
    /// Network id.
    pub network: String,
    /// `d` tag.
    pub d_tag: String,
    /// Quorum tallied with.
    pub quorum: usize,
    /// Number of voters.
    pub voters: usize,
    /// Voters and quorum come from a config (else: every author).
    pub from_config: bool,
    /// The relays.
    pub relays: Vec<RelayRow>,
    /// Events dropped: not a directive that counts, or not from a follow.
    pub ignored_events: usize,
    /// Of those, the ones from follows refused by a directive rule (at
    /// most [`MAX_REFUSED_SHOWN`]), with the reason.
    pub refused: Vec<RefusedRow>,
    /// Current directives, by author.
    pub directives: Vec<DirectiveRow>,
    /// Follows (name, role) with no directive.
    pub without_directive: Vec<(String, Role)>,
    /// The tally, highest version first.
    pub proposals: Vec<ProposalRow>,
    /// The engine's decision; `None` when there are no voters.
    pub decision: Option<Decision>,
    /// Acks for the winning proposal, by node id.
    pub acks: Vec<AckRow>,
    /// The fleet view: roster, heartbeats, wave, acks per node.
    pub fleet: Option<Fleet>,
}

pub(crate) fn proposal_json(p: &Proposal) -> Value {
    json!({
        "action": p.action.as_str(),
        "version": p.version,
        "hash": p.hash,
        "network": p.network,
        "genesis_url": p.genesis_url,
        "required_by": p.required_by,
        "rollout": p.rollout,
        "nodes": p.nodes,
    })
}

fn proposal_text(p: &Proposal) -> String {
    let mut text = format!(
        "{} {} hash {}",
        p.action.as_str(),
        printable(&p.version, 40),
        p.hash
    );
    if let Some(url) = &p.genesis_url {
        text.push_str(&format!(" genesis {}", printable(url, 100)));
    }
    if let Some(t) = p.required_by {
        text.push_str(&format!(" required by {}", format_utc(t)));
    }
    text
}

fn short_npub(key: &[u8; 32]) -> String {
    let n = npub(key);
    format!("{}...", n.get(..16).unwrap_or(&n))
}

fn display_name(name: Option<&String>, key: &[u8; 32]) -> String {
    name.map_or_else(|| short_npub(key), |n| printable(n, 64))
}

impl Report {
    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let decision = match &self.decision {
            None | Some(Decision::Nothing) => json!({"kind": "nothing"}),
            Some(Decision::Run { proposal, .. }) => {
                json!({"kind": "run", "proposal": proposal_json(proposal)})
            }
            Some(Decision::Conflict(ps)) => json!({
                "kind": "conflict",
                "proposals": ps.iter().map(proposal_json).collect::<Vec<_>>(),
            }),
        };
        json!({
            "network": self.network,
            "d_tag": self.d_tag,
            "quorum": self.quorum,
            "voters": self.voters,
            "counting": if self.from_config { "config" } else { "every author (no --config)" },
            "relays": self.relays.iter().map(|r| json!({
                "url": r.url, "answered": r.answered, "error": r.error,
            })).collect::<Vec<_>>(),
            "ignored_events": self.ignored_events,
            "refused": self.refused.iter().map(|r| json!({
                "id": r.id, "author": npub(&r.author), "name": r.name, "reason": r.reason,
            })).collect::<Vec<_>>(),
            "directives": self.directives.iter().map(|d| json!({
                "author": npub(&d.author),
                "name": d.name,
                "role": d.role.as_str(),
                "id": d.id,
                "created_at": d.created_at,
                "expired": d.expired,
                "proposal": proposal_json(&d.proposal),
            })).collect::<Vec<_>>(),
            "without_directive": self.without_directive.iter().map(|(name, role)| json!({
                "name": name, "role": role.as_str(),
            })).collect::<Vec<_>>(),
            "proposals": self.proposals.iter().map(|p| json!({
                "proposal": proposal_json(&p.proposal),
                "votes": p.voters.len(),
                "voters": p.voters.iter().map(npub).collect::<Vec<_>>(),
                "voter_names": p.names,
                "eligible": p.eligible,
                "standing": p.standing,
            })).collect::<Vec<_>>(),
            "decision": decision,
            "fleet": self.fleet.as_ref().map(fleet_json),
            "acks": self.acks.iter().map(|a| json!({
                "node_id": a.node_id, "version": a.version, "status": a.status,
                "error": a.error, "action_at": a.action_at, "signer": npub(&a.signer),
                "id": a.id, "created_at": a.created_at,
            })).collect::<Vec<_>>(),
        })
    }

    /// Prints the report as tables.
    pub fn print(&self) {
        println!(
            "network {}, d tag {}, quorum {} of {} voter(s), counting {}",
            printable(&self.network, 64),
            printable(&self.d_tag, 64),
            self.quorum,
            self.voters,
            if self.from_config {
                "the config's voters"
            } else {
                "every author (no --config)"
            }
        );
        println!("\nrelays:");
        for r in &self.relays {
            match (&r.error, r.answered) {
                (_, true) => println!("  {}  answered", r.url),
                (Some(e), false) => println!("  {}  no answer: {}", r.url, printable(e, 200)),
                (None, false) => println!("  {}  no answer", r.url),
            }
        }
        println!("\ncurrent directives:");
        let mut rows: Vec<&DirectiveRow> = self.directives.iter().collect();
        rows.sort_by_key(|d| display_name(d.name.as_ref(), &d.author));
        for d in rows {
            println!(
                "  {:<20} {:<8} {}  signed {}{}",
                display_name(d.name.as_ref(), &d.author),
                d.role.as_str(),
                proposal_text(&d.proposal),
                format_utc(d.created_at),
                if d.expired { " (expired)" } else { "" }
            );
        }
        for (name, role) in &self.without_directive {
            println!("  {:<20} {:<8} (none)", printable(name, 64), role.as_str());
        }
        if self.directives.is_empty() && self.without_directive.is_empty() {
            println!("  (none)");
        }
        if self.ignored_events > 0 {
            println!(
                "  ({} event(s) ignored: not a directive that counts here)",
                self.ignored_events
            );
        }
        for r in &self.refused {
            println!(
                "  refused: {} {}: {}",
                printable(r.name.as_deref().unwrap_or(&short_npub(&r.author)), 64),
                r.id.get(..12).unwrap_or(&r.id),
                printable(&r.reason, 200)
            );
        }
        let Some(decision) = &self.decision else {
            println!("\ndecision: nothing (no voter)");
            return;
        };
        println!("\nproposals:");
        for p in &self.proposals {
            let mut names: Vec<String> = p
                .voters
                .iter()
                .zip(&p.names)
                .map(|(k, n)| display_name(n.as_ref(), k))
                .collect();
            names.sort();
            println!(
                "  {}\n    {} vote(s): {}\n    {}",
                proposal_text(&p.proposal),
                p.voters.len(),
                names.join(", "),
                p.standing
            );
        }
        if self.proposals.is_empty() {
            println!("  (none)");
        }
        match decision {
            Decision::Nothing => println!("\ndecision: nothing runs"),
            Decision::Conflict(ps) => {
                println!("\ndecision: CONFLICT, nothing runs:");
                for p in ps {
                    println!("  {}", proposal_text(p));
                }
            }
            Decision::Run { proposal, .. } => {
                println!("\ndecision: runs {}", proposal_text(proposal));
                self.print_acks();
            }
        }
        self.print_fleet();
    }

    /// Prints the fleet table, if there is a fleet view.
    fn print_fleet(&self) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        println!(
            "\nfleet ({} node(s), from the {}):",
            fleet.nodes.len(),
            fleet.source
        );
        if fleet.nodes.is_empty() {
            println!("  (none)");
            return;
        }
        println!(
            "  {:<20} {:<16} {:<9} {:<8} {:<28} HEARTBEAT",
            "NODE", "KEY", "WAVE", "ACK", "ERROR"
        );
        for n in &fleet.nodes {
            let wave = match (n.in_wave, n.position) {
                (Some(true), Some(p)) => format!("in ({p})"),
                (Some(false), Some(p)) => format!("out ({p})"),
                _ => "-".to_owned(),
            };
            let (ack, error) = match &n.ack {
                Some(a) => (
                    printable(&a.status, 16),
                    a.error
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), |e| printable(e, 80)),
                ),
                None if n.in_wave == Some(true) => ("PENDING".to_owned(), "-".to_owned()),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let beat = n.heartbeat.as_ref().map_or_else(
                || "none".to_owned(),
                |h| {
                    format!(
                        "{} installed {}, journal {}, {} s ago{}",
                        h.agent_version
                            .as_deref()
                            .map_or("?".to_owned(), |v| printable(v, 32)),
                        h.installed_version
                            .as_deref()
                            .map_or("?".to_owned(), |v| printable(v, 32)),
                        h.journal_seq.map_or("?".to_owned(), |s| s.to_string()),
                        h.age_secs,
                        if h.stale { " STALE" } else { "" }
                    )
                },
            );
            println!(
                "  {:<20} {:<16} {:<9} {:<8} {:<28} {}",
                n.name
                    .as_deref()
                    .map_or("?".to_owned(), |s| printable(s, 64)),
                short_npub(&n.pubkey),
                wave,
                ack,
                error,
                beat
            );
        }
        match fleet.wave_complete {
            Some(true) => println!("wave: complete (every node in the wave acknowledged success)"),
            Some(false) => println!("wave: INCOMPLETE (exit status 3)"),
            None => {}
        }
    }

    fn print_acks(&self) {
        println!("\nacknowledgements:");
        if self.acks.is_empty() {
            println!("  (none yet)");
            return;
        }
        println!(
            "  {:<20} {:<12} {:<8} {:<20} {:<20} SIGNER",
            "NODE_ID", "VERSION", "STATUS", "ACTION_AT", "ERROR"
        );
        for a in &self.acks {
            println!(
                "  {:<20} {:<12} {:<8} {:<20} {:<20} {}",
                printable(&a.node_id, 64),
                printable(&a.version, 40),
                printable(&a.status, 16),
                a.action_at.map_or_else(|| "-".to_owned(), format_utc),
                a.error
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), |e| printable(e, 80)),
                short_npub(&a.signer)
            );
        }
    }
}

/// The fleet view as JSON (`fleet` in `govctl status --json`).
fn fleet_json(fleet: &Fleet) -> Value {
    json!({
        "source": fleet.source,
        "wave_complete": fleet.wave_complete,
        "nodes": fleet.nodes.iter().map(|n| json!({
            "name": n.name,
            "npub": npub(&n.pubkey),
            "in_wave": n.in_wave,
            "position": n.position,
            "ack": n.ack.as_ref().map(|a| json!({
                "status": a.status, "error": a.error, "action_at": a.action_at,
                "node_id": a.node_id, "id": a.id, "created_at": a.created_at,
            })),
            "heartbeat": n.heartbeat.as_ref().map(|h| json!({
                "created_at": h.created_at, "age_secs": h.age_secs, "stale": h.stale,
                "agent_version": h.agent_version, "installed_version": h.installed_version,
                "journal_seq": h.journal_seq, "journal_head": h.journal_head,
                "node_id": h.node_id,
            })),
        })).collect::<Vec<_>>(),
    })
}
