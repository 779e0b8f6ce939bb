//! The `status` report: its views, how it is built from the config and the
//! state, and its text (the JSON shape is in the [`crate::report`] docs).

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::journal::{write_record, JournalRead, JournalView};
use super::{
    load_config, open_state, printable, utc_iso8601, CommandOutput, ReportError, ShowProposal,
};
use crate::config::default_node_id;
use crate::config::{Config, Warning};
use crate::core::directive::{Directive, Proposal};
use crate::core::nip19::encode_npub;
use crate::core::quorum::{Engine, Standing};
use crate::state::{OutboxEntry, StateDir};

/// How many of the last journal records `status` shows.
pub const STATUS_JOURNAL_RECORDS: usize = 10;

// ---------------------------------------------------------------------------
// Views (the JSON shapes)
// ---------------------------------------------------------------------------

/// The node's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// The node id written in acks: `node_id` from the config, else derived
    /// from the public key; `None` when neither is known.
    pub id: Option<String>,
    /// The node's public key as an npub.
    pub npub: Option<String>,
    /// The node's public key, hex.
    pub pubkey: Option<String>,
    /// `ok`, `not_created` (no `node.key` yet) or `not_readable`.
    pub key: &'static str,
    /// Why the key could not be read (never any key material).
    pub key_error: Option<String>,
}

/// The installed version (anti-rollback floor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledView {
    /// The higher of `configured` and `recorded` (SemVer, no `v`).
    pub effective: Option<String>,
    /// `current_version` from the config.
    pub configured: Option<String>,
    /// The version the state records after the last successful upgrade.
    pub recorded: Option<String>,
}

/// A follow from the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowView {
    /// Its name.
    pub name: String,
    /// Its public key as an npub.
    pub npub: String,
    /// `voter` or `observer`.
    pub role: &'static str,
}

/// A voter and its current directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoterDirectiveView {
    /// The voter's name.
    pub voter: String,
    /// The voter's npub.
    pub npub: String,
    /// Its current directive, if it has one.
    pub directive: Option<DirectiveView>,
}

/// A voter's current directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectiveView {
    /// Event id, hex.
    pub id: String,
    /// `created_at`, unix seconds.
    pub created_at: u64,
    /// `created_at` in ISO 8601, UTC.
    pub created_at_utc: String,
    /// NIP-40 `expiration`, unix seconds.
    pub expiration: Option<u64>,
    /// Whether it has expired (then it does not count as a vote).
    pub expired: bool,
    /// What it votes for.
    pub proposal: Proposal,
}

/// One proposal of the tally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProposalStatusView {
    /// The exact tuple.
    pub proposal: Proposal,
    /// Number of distinct voters whose current, unexpired directive it is.
    pub votes: usize,
    /// Their names, in config order.
    pub voters: Vec<String>,
    /// `runs`, `conflict`, `outranked`, `below_quorum`, `already_done`,
    /// `not_newer` or `invalid_version`.
    pub standing: &'static str,
    /// The standing as a sentence.
    pub standing_text: String,
    /// For `outranked`: the winning version.
    pub outranked_by: Option<String>,
}

/// Different eligible proposals at the same highest version: nothing runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictView {
    /// The shared version (SemVer, no `v`).
    pub version: String,
    /// The conflicting proposals.
    pub proposals: Vec<Proposal>,
}

/// A pending acknowledgement in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxView {
    /// The ack's event id, hex.
    pub id: String,
    /// Its `status` tag (`success` or `failure`).
    pub status: Option<String>,
    /// Its `action` tag.
    pub action: Option<String>,
    /// Its `version` tag.
    pub version: Option<String>,
    /// Failed publication rounds so far.
    pub attempts: u32,
    /// Next attempt, unix seconds.
    pub next_attempt_at: u64,
    /// Next attempt in ISO 8601, UTC.
    pub next_attempt_utc: String,
    /// Relays that stored it already (escaped URLs); it is sent again
    /// until every configured relay has.
    pub delivered_to: Vec<String>,
    /// Whether it is due now.
    pub due: bool,
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// When the report was made, unix seconds.
    pub now: u64,
    /// `now` in ISO 8601, UTC.
    pub now_utc: String,
    /// The config file.
    pub config: String,
    /// The state directory.
    pub state_dir: String,
    /// The node.
    pub node: NodeView,
    /// The network id.
    pub network: String,
    /// The quorum.
    pub quorum: usize,
    /// The number of follows with role `voter`.
    pub voter_count: usize,
    /// The installed version.
    pub installed_version: InstalledView,
    /// Every follow, in config order.
    pub follows: Vec<FollowView>,
    /// Each voter's current directive, in config order.
    pub directives: Vec<VoterDirectiveView>,
    /// The tally, highest version first.
    pub proposals: Vec<ProposalStatusView>,
    /// A conflict, if there is one.
    pub conflict: Option<ConflictView>,
    /// Pending acknowledgements, oldest first.
    pub outbox: Vec<OutboxView>,
    /// The journal's verdict and its last records.
    pub journal: JournalView,
    /// Proposals the operator allowed one more run of (`qube-agent retry`)
    /// that has not happened yet.
    pub retries_allowed: Vec<Proposal>,
    /// Warnings, as sentences.
    pub warnings: Vec<String>,
    /// What the running (or last) agent recorded about its worker, from
    /// `runtime.json`; `null` when the agent never ran.
    pub runtime: Option<RuntimeView>,
}

/// The worker's state as the agent last recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeView {
    /// The monitor's process id.
    pub pid: Option<u64>,
    /// When recorded, unix seconds.
    pub updated_at: Option<u64>,
    /// Worker restarts since that agent started.
    pub worker_restarts: Option<u64>,
    /// `full`, `partial`, `none` or `in-process`; `null` before the worker
    /// reported.
    pub worker_sandbox: Option<String>,
    /// Whether decisions run: the worker delivered the relays' stored
    /// directives (or the sync deadline passed); `null` when not recorded.
    pub deciding: Option<bool>,
    /// The proposal whose hook runs now (escaped); `null` when none.
    pub running: Option<String>,
    /// The proposal waiting for its deadline (`required_by`); `null` when
    /// none.
    pub scheduled: Option<ScheduledView>,
    /// Each relay as the running agent's worker last reported it, in config
    /// order; empty before the worker reported.
    pub relays: Vec<RelayRuntimeView>,
}

/// A proposal scheduled for its deadline (`docs/PROTOCOL.md` section 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduledView {
    /// The proposal (escaped).
    pub proposal: String,
    /// When its action starts: its `required_by`, unix seconds.
    pub at: u64,
    /// `running` (`fetch` or the hash check runs now) or `ready`.
    pub prestage: String,
}

/// One relay's state in `runtime.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayRuntimeView {
    /// The URL as configured (escaped).
    pub url: String,
    /// Connected when recorded.
    pub connected: bool,
    /// `connecting`, `connected`, `authenticated` (NIP-42 AUTH accepted) or
    /// `backing_off`; `null` when not recorded.
    pub state: Option<String>,
    /// When backing off: the next attempt, unix seconds.
    pub retry_at: Option<u64>,
    /// Since when connected or disconnected, unix seconds.
    pub since: Option<u64>,
    /// Why it last disconnected (escaped).
    pub last_error: Option<String>,
    /// What it sent, counted by the worker since it started.
    pub counters: crate::ipc::RelayCounters,
}

/// Reads `runtime.json`; `None` when absent or unreadable.
fn runtime_view(state_dir: &Path) -> Option<RuntimeView> {
    let text = std::fs::read_to_string(state_dir.join(crate::state::RUNTIME_FILE)).ok()?;
    if text.len() > 64 * 1024 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(RuntimeView {
        pid: v.get("pid").and_then(serde_json::Value::as_u64),
        updated_at: v.get("updated_at").and_then(serde_json::Value::as_u64),
        worker_restarts: v.get("worker_restarts").and_then(serde_json::Value::as_u64),
        deciding: v.get("deciding").and_then(serde_json::Value::as_bool),
        running: v
            .get("running")
            .and_then(serde_json::Value::as_str)
            .map(|s| crate::core::text::printable(s, 512)),
        scheduled: v.get("scheduled").and_then(|s| {
            Some(ScheduledView {
                proposal: crate::core::text::printable(s.get("proposal")?.as_str()?, 512),
                at: s.get("at")?.as_u64()?,
                prestage: crate::core::text::printable(s.get("prestage")?.as_str()?, 16),
            })
        }),
        worker_sandbox: v
            .get("worker_sandbox")
            .and_then(serde_json::Value::as_str)
            .map(|s| crate::core::text::printable(s, 16)),
        relays: v
            .get("relays")
            .and_then(serde_json::Value::as_array)
            .map(|relays| relays.iter().filter_map(relay_runtime_view).collect())
            .unwrap_or_default(),
    })
}

/// One entry of `relays` in `runtime.json`; `None` when malformed.
fn relay_runtime_view(v: &serde_json::Value) -> Option<RelayRuntimeView> {
    Some(RelayRuntimeView {
        url: crate::core::text::printable(v.get("url")?.as_str()?, 256),
        connected: v.get("connected")?.as_bool()?,
        state: v
            .get("state")
            .and_then(serde_json::Value::as_str)
            .map(|s| crate::core::text::printable(s, 16)),
        retry_at: v.get("retry_at").and_then(serde_json::Value::as_u64),
        since: v.get("since").and_then(serde_json::Value::as_u64),
        last_error: v
            .get("last_error")
            .and_then(serde_json::Value::as_str)
            .map(|e| crate::core::text::printable(e, 256)),
        counters: serde_json::from_value(v.get("counters")?.clone()).ok()?,
    })
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

/// The node's identity, read without writing anything.
fn node_view(config: &Config, state: &StateDir) -> NodeView {
    let (pubkey, key, key_error) = match state.node_public_key(config.node_key()) {
        Ok(Some(pubkey)) => (Some(pubkey), "ok", None),
        Ok(None) => (None, "not_created", None),
        Err(e) => (None, "not_readable", Some(e.to_string())),
    };
    NodeView {
        id: config
            .node_id()
            .map(str::to_owned)
            .or_else(|| pubkey.as_ref().map(default_node_id)),
        npub: pubkey.as_ref().map(encode_npub),
        pubkey: pubkey.map(hex::encode),
        key,
        key_error,
    }
}

/// The JSON tag, text and `outranked_by` of a standing.
fn standing_parts(standing: &Standing) -> (&'static str, String, Option<String>) {
    match standing {
        Standing::Runs => (
            "runs",
            "runs: quorum reached, highest eligible version".to_owned(),
            None,
        ),
        Standing::Conflict => (
            "conflict",
            "CONFLICT: another eligible proposal has the same version; nothing runs".to_owned(),
            None,
        ),
        Standing::Outranked { by } => (
            "outranked",
            format!("outranked: eligible, but version {by} wins"),
            Some(by.to_string()),
        ),
        Standing::BelowQuorum { votes, quorum } => (
            "below_quorum",
            format!("below quorum: {votes} of {quorum} votes"),
            None,
        ),
        Standing::AlreadyDone => (
            "already_done",
            "already done (in the journal; never runs twice)".to_owned(),
            None,
        ),
        Standing::NotNewer { installed } => (
            "not_newer",
            format!("not newer than the installed version {installed} (anti-rollback)"),
            None,
        ),
        Standing::InvalidVersion => (
            "invalid_version",
            "version is not a semantic version".to_owned(),
            None,
        ),
        Standing::NotInWave { .. } => ("not_in_wave", standing.to_string(), None),
        Standing::InstalledUnknown => (
            "installed_unknown",
            "refused: the installed version is unknown (set current_version or version_command)"
                .to_owned(),
            None,
        ),
    }
}

fn directive_view(directive: &Directive, now: u64) -> DirectiveView {
    let event = directive.event();
    DirectiveView {
        id: event.id_hex(),
        created_at: event.created_at,
        created_at_utc: utc_iso8601(event.created_at),
        expiration: directive.expiration(),
        expired: directive.is_expired_at(now),
        proposal: directive.proposal().clone(),
    }
}

fn outbox_view(entry: &OutboxEntry, now: u64) -> OutboxView {
    let tag = |name: &str| entry.event.tag_value(name).map(str::to_owned);
    OutboxView {
        id: entry.event.id_hex(),
        status: tag("status"),
        action: tag("action"),
        version: tag("version"),
        attempts: entry.attempts,
        next_attempt_at: entry.next_attempt_at,
        next_attempt_utc: utc_iso8601(entry.next_attempt_at),
        delivered_to: entry
            .delivered
            .iter()
            .map(|u| crate::core::text::printable(u, 256))
            .collect(),
        due: entry.next_attempt_at <= now,
    }
}

/// Builds the `status` report of `config` (read from `config_path`, with its
/// `warnings`) at `now` (unix seconds), reading the state read-only.
///
/// # Errors
/// [`ReportError::NoStateDir`]; [`ReportError::State`] when a state file
/// cannot be read or does not parse (`directives.json`, `installed_version`,
/// `outbox.json`). A journal that does not verify is not an error: it is in
/// [`StatusReport::journal`].
pub fn status(
    config_path: &Path,
    config: &Config,
    warnings: &[Warning],
    now: u64,
) -> Result<StatusReport, ReportError> {
    let state = open_state(config)?;
    let mut notes: Vec<String> = warnings.iter().map(ToString::to_string).collect();

    let rules = config.directive_rules();
    let voters = config.voter_keys();
    let (directives, dropped) = state.load_directives(&rules, now, &voters)?;
    notes.extend(
        dropped
            .into_iter()
            .map(|why| format!("saved directive not counted: {why}")),
    );
    let node_key = state.node_public_key(config.node_key()).ok().flatten();
    let quorum_config = crate::core::quorum::QuorumConfig {
        node: node_key,
        ..config.quorum_config()
    };
    let engine = Engine::from_directives(quorum_config, directives).map_err(ReportError::Quorum)?;

    let recorded = state.installed_version()?;
    let configured = config.current_version();
    let installed = config.effective_installed(recorded.as_deref());

    let journal = JournalRead::new(&state);
    if journal.result.is_err() {
        notes.push(
            "the journal does not verify, so proposals already carried out cannot be told \
             apart; the agent will refuse to start"
                .to_owned(),
        );
    }
    let tally = engine.tally(now, installed.as_ref(), &|p: &Proposal| journal.contains(p));

    // Voter names in config order.
    let names_of = |pubkeys: &[[u8; 32]]| {
        let mut found: Vec<(usize, String)> = pubkeys
            .iter()
            .map(|pk| {
                let index = config.follows().iter().position(|f| f.pubkey() == pk);
                let name = index
                    .and_then(|i| config.follows().get(i))
                    .map_or_else(|| hex::encode(pk), |f| f.name().to_owned());
                (index.unwrap_or(usize::MAX), name)
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, name)| name).collect::<Vec<_>>()
    };
    let proposals: Vec<ProposalStatusView> = tally
        .iter()
        .map(|status| {
            let (standing, standing_text, outranked_by) = standing_parts(&status.standing);
            ProposalStatusView {
                proposal: status.proposal.clone(),
                votes: status.voters.len(),
                voters: names_of(&status.voters),
                standing,
                standing_text,
                outranked_by,
            }
        })
        .collect();
    let conflicting: Vec<&Proposal> = tally
        .iter()
        .filter(|s| s.standing == Standing::Conflict)
        .map(|s| &s.proposal)
        .collect();
    let conflict = conflicting.first().map(|first| ConflictView {
        version: first
            .semver()
            .map_or_else(|_| first.version.clone(), |v| v.to_string()),
        proposals: conflicting.iter().map(|p| (*p).clone()).collect(),
    });

    let outbox = state.outbox()?;

    Ok(StatusReport {
        now,
        now_utc: utc_iso8601(now),
        config: config_path.display().to_string(),
        state_dir: state.path().display().to_string(),
        node: node_view(config, &state),
        network: config.network().to_owned(),
        quorum: config.quorum(),
        voter_count: voters.len(),
        installed_version: InstalledView {
            effective: installed.map(|v| v.to_string()),
            configured: configured.map(|v| v.as_str().to_owned()),
            recorded,
        },
        follows: config
            .follows()
            .iter()
            .map(|f| FollowView {
                name: f.name().to_owned(),
                npub: f.npub(),
                role: f.role().as_str(),
            })
            .collect(),
        directives: config
            .voters()
            .map(|f| VoterDirectiveView {
                voter: f.name().to_owned(),
                npub: f.npub(),
                directive: engine.current(f.pubkey()).map(|d| directive_view(d, now)),
            })
            .collect(),
        proposals,
        conflict,
        outbox: outbox
            .entries()
            .iter()
            .map(|e| outbox_view(e, now))
            .collect(),
        journal: journal.view(Some(STATUS_JOURNAL_RECORDS)),
        retries_allowed: journal.retries_allowed(),
        warnings: notes,
        runtime: runtime_view(config.state_dir()),
    })
}

impl StatusReport {
    /// The report as one pretty-printed JSON object (see the [`crate::report`]
    /// docs).
    ///
    /// # Errors
    /// A serializer error (not expected: every field is a string, a number,
    /// a boolean or a list of them).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "node id:     {}",
            self.node.id.as_deref().unwrap_or("unknown")
        )?;
        match (&self.node.npub, self.node.key) {
            (Some(npub), _) => writeln!(f, "node npub:   {npub}")?,
            (None, "not_created") => writeln!(
                f,
                "node npub:   unknown (node key not created yet: the agent has not started)"
            )?,
            (None, _) => writeln!(f, "node npub:   unknown (node key not readable)")?,
        }
        if let Some(why) = &self.node.key_error {
            writeln!(f, "             {why}")?;
        }
        match &self.runtime {
            Some(r) => writeln!(
                f,
                "worker:      sandbox {}, {} restart(s), {} (agent pid {}, recorded {})",
                r.worker_sandbox.as_deref().unwrap_or("not reported yet"),
                r.worker_restarts.unwrap_or(0),
                match r.deciding {
                    Some(true) => "deciding",
                    Some(false) => "waiting for the relays' stored directives",
                    None => "decisions unknown",
                },
                r.pid.map_or("?".to_owned(), |p| p.to_string()),
                r.updated_at.map_or("?".to_owned(), |t| t.to_string()),
            )?,
            None => writeln!(f, "worker:      unknown (the agent has not run)")?,
        }
        if let Some(running) = self.runtime.as_ref().and_then(|r| r.running.as_ref()) {
            writeln!(f, "running:     {running} (hook running now)")?;
        }
        if let Some(s) = self.runtime.as_ref().and_then(|r| r.scheduled.as_ref()) {
            writeln!(
                f,
                "scheduled:   {} at {} ({})",
                s.proposal,
                utc_iso8601(s.at),
                if s.prestage == "ready" {
                    "pre-staged"
                } else {
                    "pre-staging"
                }
            )?;
        }
        for (i, r) in self
            .runtime
            .iter()
            .flat_map(|r| r.relays.iter())
            .enumerate()
        {
            let label = if i == 0 { "relays:" } else { "" };
            let since = r
                .since
                .map_or_else(String::new, |t| format!(" since {}", utc_iso8601(t)));
            let c = &r.counters;
            let state = match (r.state.as_deref(), r.connected) {
                (Some("authenticated"), true) => "connected, authenticated".to_owned(),
                (Some("connecting"), false) => "connecting".to_owned(),
                (_, true) => "connected".to_owned(),
                (_, false) => "DOWN".to_owned(),
            };
            let retry = match (r.retry_at, r.connected) {
                (Some(at), false) => format!(", next attempt at {}", utc_iso8601(at)),
                _ => String::new(),
            };
            write!(
                f,
                "{label:<12} {} {state}{since}{retry}; {} frames ({} bytes), {} delivered, {} dropped before a signature check, {} invalid",
                r.url,
                c.frames,
                c.bytes,
                c.delivered,
                c.outside_filter + c.duplicate,
                c.invalid,
            )?;
            match (&r.last_error, r.connected) {
                (Some(e), false) => writeln!(f, "; last error: {e}")?,
                _ => writeln!(f)?,
            }
        }
        writeln!(f, "network:     {}", self.network)?;
        writeln!(
            f,
            "quorum:      {} of {} voters",
            self.quorum, self.voter_count
        )?;
        let iv = &self.installed_version;
        writeln!(
            f,
            "installed:   {} (config current_version: {}; recorded: {})",
            iv.effective.as_deref().unwrap_or("unknown"),
            iv.configured.as_deref().unwrap_or("none"),
            iv.recorded.as_deref().unwrap_or("none")
        )?;
        writeln!(f, "state dir:   {}", self.state_dir)?;
        writeln!(f, "time:        {} ({})", self.now_utc, self.now)?;

        let width = self
            .follows
            .iter()
            .map(|x| x.name.chars().count())
            .max()
            .unwrap_or(0);
        writeln!(f, "\nfollows:")?;
        for x in &self.follows {
            writeln!(f, "  {:<width$}  {}  {}", x.name, x.npub, x.role)?;
        }

        writeln!(f, "\ndirectives (current, one per voter):")?;
        for v in &self.directives {
            match &v.directive {
                None => writeln!(f, "  {:<width$}  no directive", v.voter)?,
                Some(d) => {
                    writeln!(
                        f,
                        "  {:<width$}  {} ({})  id {}",
                        v.voter, d.created_at_utc, d.created_at, d.id
                    )?;
                    write!(f, "  {:<width$}  {}", "", ShowProposal(&d.proposal))?;
                    match (d.expiration, d.expired) {
                        (Some(t), true) => {
                            write!(f, "  EXPIRED at {} ({t}), not counted", utc_iso8601(t))?
                        }
                        (Some(t), false) => write!(f, "  expires {} ({t})", utc_iso8601(t))?,
                        (None, _) => {}
                    }
                    writeln!(f)?;
                }
            }
        }

        writeln!(f, "\ntally (quorum {}):", self.quorum)?;
        if self.proposals.is_empty() {
            writeln!(f, "  no votes")?;
        }
        for p in &self.proposals {
            writeln!(f, "  {}", ShowProposal(&p.proposal))?;
            writeln!(f, "      votes:    {} ({})", p.votes, p.voters.join(", "))?;
            writeln!(f, "      standing: {}", p.standing_text)?;
        }
        if let Some(conflict) = &self.conflict {
            writeln!(
                f,
                "CONFLICT: {} different proposals for version {} each have a quorum; nothing \
                 runs until the voters agree:",
                conflict.proposals.len(),
                conflict.version
            )?;
            for p in &conflict.proposals {
                writeln!(f, "  {p}")?;
            }
        }

        if self.outbox.is_empty() {
            writeln!(f, "\noutbox: empty")?;
        } else {
            writeln!(
                f,
                "\noutbox: {} pending acknowledgement(s):",
                self.outbox.len()
            )?;
        }
        for a in &self.outbox {
            writeln!(
                f,
                "  ack {}  status {}  {} {}  attempts {}  next attempt {} ({}){}{}",
                a.id,
                printable(a.status.as_deref().unwrap_or("?")),
                printable(a.action.as_deref().unwrap_or("?")),
                printable(a.version.as_deref().unwrap_or("?")),
                a.attempts,
                a.next_attempt_utc,
                a.next_attempt_at,
                if a.due { ", due" } else { "" },
                if a.delivered_to.is_empty() {
                    String::new()
                } else {
                    format!("; stored by {}", a.delivered_to.join(", "))
                }
            )?;
        }

        let j = &self.journal;
        if matches!(j.verdict.verdict, "corrupt" | "unreadable") {
            writeln!(f, "\njournal: records not shown (it does not verify)")?;
        } else if j.verdict.record_count == 0 {
            writeln!(f, "\njournal: no records")?;
        } else if j.records.len() < j.verdict.record_count {
            writeln!(
                f,
                "\njournal: last {} of {} records:",
                j.records.len(),
                j.verdict.record_count
            )?;
        } else {
            writeln!(f, "\njournal: {} record(s):", j.verdict.record_count)?;
        }
        for r in &j.records {
            write_record(f, r)?;
        }
        writeln!(f, "chain: {}", j.verdict)?;
        for p in &self.retries_allowed {
            writeln!(
                f,
                "retry:       one more run allowed (qube-agent retry) for {}",
                ShowProposal(p)
            )?;
        }

        if !self.warnings.is_empty() {
            writeln!(f, "\nwarnings:")?;
            for w in &self.warnings {
                writeln!(f, "  - {}", printable(w))?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Command
// ---------------------------------------------------------------------------

/// `qube-agent status --config PATH [--json]` at `now` (unix seconds).
pub fn status_command(config_path: &Path, json: bool, now: u64) -> CommandOutput {
    let report = match load_config(config_path)
        .and_then(|(config, warnings)| status(config_path, &config, &warnings, now))
    {
        Ok(report) => report,
        Err(e) => return CommandOutput::failed(e),
    };
    let stdout = if json {
        match report.to_json() {
            Ok(text) => text + "\n",
            Err(e) => return CommandOutput::failed(format!("cannot write the JSON: {e}")),
        }
    } else {
        report.to_string()
    };
    let errors: Vec<String> = report.journal.verdict.error.iter().cloned().collect();
    CommandOutput {
        stdout,
        success: errors.is_empty(),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standing_tags_are_stable() {
        let tags: Vec<&str> = [
            Standing::Runs,
            Standing::Conflict,
            Standing::Outranked {
                by: semver::Version::new(1, 2, 3),
            },
            Standing::BelowQuorum {
                votes: 1,
                quorum: 2,
            },
            Standing::AlreadyDone,
            Standing::NotNewer {
                installed: semver::Version::new(1, 0, 0),
            },
            Standing::InvalidVersion,
        ]
        .iter()
        .map(|s| standing_parts(s).0)
        .collect();
        assert_eq!(
            tags,
            [
                "runs",
                "conflict",
                "outranked",
                "below_quorum",
                "already_done",
                "not_newer",
                "invalid_version"
            ]
        );
        assert_eq!(
            standing_parts(&Standing::BelowQuorum {
                votes: 1,
                quorum: 2
            })
            .1,
            "below quorum: 1 of 2 votes"
        );
    }
}
