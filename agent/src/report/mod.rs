//! Read-only operator reports: `qube-agent status` and `qube-agent journal`.
//!
//! Both read the config and the state directory (DESIGN.md sections 6 and 7)
//! while the agent may be running: they never write, never take the state
//! lock ([`crate::state::StateDir::lock`]), never create the state directory
//! or the journal, and never generate a node key
//! (`StateDir::open_existing`, `StateDir::node_public_key`,
//! [`journal::inspect`]). A state directory that does not exist is
//! [`ReportError::NoStateDir`].
//!
//! The builders ([`status`], [`journal_report`]) return typed reports; their
//! `Display` is the text output, and [`StatusReport::to_json`] /
//! [`JournalReport::to_json`] the JSON output. [`status_command`] and
//! [`journal_command`] are the two commands, as the binary runs them.
//!
//! Text output escapes control characters in every string that came from a
//! signed event or a hook (`genesis_url`, error texts), so a directive cannot
//! write terminal escape sequences. No secret key material is ever read into
//! a report: the node's public key is derived in zeroizing memory, and when
//! the key cannot be read (it is 0600 and the operator may not be its owner)
//! the report says "unknown (node key not readable)" with the reason.
//!
//! # Exit status
//! `status`: 0, or 1 when the config or the state cannot be read
//! (`error: ...` on stderr, nothing on stdout), or when the journal does not
//! verify (the whole report on stdout, `error: ...` on stderr: the agent
//! would refuse to start). `journal`: 0 when the chain verifies or there is
//! no journal yet, 1 when it is corrupt, torn or unreadable (the
//! [`JournalError`] on stderr names the line and why) or on a config or
//! state error.
//!
//! # JSON (`--json`)
//! One JSON object; every field below is always present (`null` when it has
//! no value). Times are unix seconds, with a `*_utc` twin in ISO 8601
//! (`2023-11-14T22:13:20Z`); keys and ids are lower-case hex, npubs NIP-19.
//!
//! A *proposal* object (DESIGN.md section 3 rule 3): `action` (`upgrade` |
//! `reboot`), `network`, `version` (as signed), `hash`, `genesis_url`,
//! `required_by`.
//!
//! `status`:
//! * `now`, `now_utc`: when the report was made.
//! * `config`, `state_dir`: the paths read.
//! * `node`: `id` (from the config, else derived from the key, else
//!   `null`), `npub`, `pubkey` (hex), `key` (`ok` | `not_created` |
//!   `not_readable`), `key_error` (why not readable).
//! * `network`, `quorum`, `voter_count`.
//! * `installed_version`: `effective` (the higher of the two, SemVer
//!   without `v`; the anti-rollback floor), `configured` (`current_version`),
//!   `recorded` (state's `installed_version`).
//! * `follows`: `[{name, npub, role}]` (`role`: `voter` | `observer`).
//! * `directives`: per voter, in config order, `{voter, npub, directive}`;
//!   `directive` is `null` or `{id, created_at, created_at_utc, expiration,
//!   expired, proposal}`.
//! * `proposals`: the tally, highest version first: `{proposal, votes,
//!   voters, standing, standing_text, outranked_by}`; `voters` are follow
//!   names in config order; `standing` is one of `runs`, `conflict`, `outranked`,
//!   `below_quorum`, `already_done`, `not_newer`, `invalid_version`.
//! * `conflict`: `null` or `{version, proposals}` (DESIGN.md section 3 rule
//!   5: nothing runs).
//! * `outbox`: pending acks, `{id, status, action, version, attempts,
//!   next_attempt_at, next_attempt_utc, due}` (`status` is the ack's
//!   `status` tag).
//! * `journal`: as `journal --verify --json` below, plus `records`: the last
//!   [`STATUS_JOURNAL_RECORDS`] records.
//! * `warnings`: config warnings and dropped saved directives, as sentences.
//!
//! `journal --json`: `path`, `exists`, `verdict` (`verified` | `no_journal`
//! | `corrupt` | `torn` | `unreadable`), `verified` (true for `verified` and
//! `no_journal`), `error` (the [`JournalError`] text), `error_line`,
//! `record_count` (verified records), `head` (hex SHA-256 of the last
//! record's line, `null` when empty), and `records`: every verified record,
//! `{seq, at, at_utc, entry, proposal, directive_ids, seq_started, status,
//! error, awaiting_outcome}` where `entry` is `started` | `outcome`, an
//! outcome's `proposal` is its started record's, `status` (`success` |
//! `failure`) and `seq_started` are `null` for a started record, and
//! `awaiting_outcome` is true for a started record with no outcome (the hook
//! is running, or the agent died while it ran). With `--verify` the object
//! has no `records`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use jiff::{civil, SignedDuration};
use serde::Serialize;

use crate::config::default_node_id;
use crate::config::{Config, ConfigError, Warning};
use crate::core::directive::{Directive, Proposal};
use crate::core::nip19::encode_npub;
use crate::core::quorum::{Engine, QuorumError, Standing};
use crate::state::journal::{self, Entry, Inspection, JournalError, Record};
use crate::state::{OutboxEntry, StateDir, StateError};

/// How many of the last journal records `status` shows.
pub const STATUS_JOURNAL_RECORDS: usize = 10;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a report could not be made. `Display` is a lower-case sentence with
/// what to do next.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReportError {
    /// The config file could not be read or is invalid.
    Config(ConfigError),
    /// `state_dir` does not exist (and was not created).
    NoStateDir(PathBuf),
    /// A state file could not be read or does not parse.
    State(StateError),
    /// The quorum configuration was refused (a config that loaded cannot
    /// cause it).
    Quorum(QuorumError),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Config(e) => write!(f, "{e}"),
            ReportError::NoStateDir(path) => write!(
                f,
                "state directory {} does not exist (nothing was created): the agent has not \
                 started with this config yet, or `state_dir` in the config points elsewhere",
                path.display()
            ),
            ReportError::State(e) => {
                write!(f, "{e}")?;
                let denied = matches!(
                    e,
                    StateError::Io { source, .. }
                        if source.kind() == io::ErrorKind::PermissionDenied
                );
                if denied {
                    f.write_str(
                        "; run this command as the agent's user or as root (the state \
                         directory is 0700)",
                    )?;
                }
                Ok(())
            }
            ReportError::Quorum(e) => write!(f, "quorum: {e}"),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::Config(e) => Some(e),
            ReportError::State(e) => Some(e),
            ReportError::Quorum(e) => Some(e),
            ReportError::NoStateDir(_) => None,
        }
    }
}

impl From<ConfigError> for ReportError {
    fn from(e: ConfigError) -> Self {
        ReportError::Config(e)
    }
}

impl From<StateError> for ReportError {
    fn from(e: StateError) -> Self {
        ReportError::State(e)
    }
}

/// Opens `config`'s state directory read-only; a missing one is
/// [`ReportError::NoStateDir`].
fn open_state(config: &Config) -> Result<StateDir, ReportError> {
    match StateDir::open_existing(config.state_dir()) {
        Ok(state) => Ok(state),
        Err(StateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            Err(ReportError::NoStateDir(config.state_dir().to_path_buf()))
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Views (the JSON shapes)
// ---------------------------------------------------------------------------

/// A proposal as a line for people: `Proposal`'s fields with control
/// characters escaped (`{:?}`) and `required_by` also in UTC.
struct ShowProposal<'a>(&'a Proposal);

impl fmt::Display for ShowProposal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As `Proposal`'s Display: `{:?}` escapes control characters.
        let p = self.0;
        write!(
            f,
            "{} {:?} hash {} on {:?}",
            p.action.as_str(),
            p.version,
            p.hash,
            p.network
        )?;
        if let Some(url) = &p.genesis_url {
            write!(f, " genesis {url:?}")?;
        }
        if let Some(t) = p.required_by {
            write!(f, " required by {} ({t})", utc_iso8601(t))?;
        }
        Ok(())
    }
}

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
    /// Whether it is due now.
    pub due: bool,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordView {
    /// Position from 1 (the line number).
    pub seq: u64,
    /// When it was written, unix seconds.
    pub at: u64,
    /// `at` in ISO 8601, UTC.
    pub at_utc: String,
    /// `started` or `outcome`.
    pub entry: &'static str,
    /// The proposal (for an outcome: its started record's).
    pub proposal: Option<Proposal>,
    /// For a started record: the ids of the directives of its quorum.
    pub directive_ids: Vec<String>,
    /// For an outcome: the `seq` of its started record.
    pub seq_started: Option<u64>,
    /// For an outcome: `success` or `failure`.
    pub status: Option<&'static str>,
    /// For a failed outcome: why.
    pub error: Option<String>,
    /// For a started record with no outcome: the hook is running, or the
    /// agent died while it ran.
    pub awaiting_outcome: bool,
}

/// Whether the journal's hash chain verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalVerdict {
    /// The journal file.
    pub path: String,
    /// Whether the file exists.
    pub exists: bool,
    /// `verified`, `no_journal`, `corrupt`, `torn` or `unreadable`.
    pub verdict: &'static str,
    /// True for `verified` and `no_journal`.
    pub verified: bool,
    /// Why it does not verify ([`JournalError`]'s text).
    pub error: Option<String>,
    /// The line that does not verify (`corrupt`, `torn`).
    pub error_line: Option<u64>,
    /// Number of verified records.
    pub record_count: usize,
    /// SHA-256 of the last verified record's line, hex.
    pub head: Option<String>,
}

impl fmt::Display for JournalVerdict {
    /// One line: the verdict word first, for scripts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.verdict {
            "verified" => write!(
                f,
                "verified: {} record(s), head {} ({})",
                self.record_count,
                self.head.as_deref().unwrap_or("-"),
                self.path
            ),
            "no_journal" => write!(
                f,
                "no journal yet: {} does not exist (no hook has run on this node)",
                self.path
            ),
            verdict => {
                write!(f, "{verdict}: {} does not verify", self.path)?;
                if let Some(line) = self.error_line {
                    write!(f, " at line {line}")?;
                }
                Ok(())
            }
        }
    }
}

/// The journal: verdict and records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalView {
    /// Whether the chain verifies.
    #[serde(flatten)]
    pub verdict: JournalVerdict,
    /// Verified records, oldest first (all, or the last few in `status`).
    pub records: Vec<RecordView>,
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
}

/// Reads `runtime.json`; `None` when absent or unreadable.
fn runtime_view(state_dir: &Path) -> Option<RuntimeView> {
    let text = std::fs::read_to_string(state_dir.join(crate::monitor::RUNTIME_FILE)).ok()?;
    if text.len() > 4096 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(RuntimeView {
        pid: v.get("pid").and_then(serde_json::Value::as_u64),
        updated_at: v.get("updated_at").and_then(serde_json::Value::as_u64),
        worker_restarts: v.get("worker_restarts").and_then(serde_json::Value::as_u64),
        worker_sandbox: v
            .get("worker_sandbox")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    })
}

/// What `journal` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalReport {
    /// The verdict and every verified record.
    #[serde(flatten)]
    pub journal: JournalView,
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

/// The journal as [`journal::inspect`] found it.
struct JournalRead {
    path: PathBuf,
    exists: bool,
    result: Result<Inspection, JournalError>,
}

impl JournalRead {
    fn new(state: &StateDir) -> JournalRead {
        let path = state.journal_path();
        // A failed check counts as present: inspect then says why.
        let exists = path.try_exists().unwrap_or(true);
        let result = journal::inspect(&path);
        JournalRead {
            path,
            exists,
            result,
        }
    }

    fn records(&self) -> &[Record] {
        self.result.as_ref().map_or(&[], |i| i.records.as_slice())
    }

    /// The view, with the last `keep` records (all with `None`).
    fn view(&self, keep: Option<usize>) -> JournalView {
        let path = self.path.display().to_string();
        let (verdict, error, error_line, head) = match &self.result {
            Err(e) => {
                let (verdict, line) = match e {
                    JournalError::Corrupt { line, .. } => ("corrupt", Some(*line)),
                    _ => ("unreadable", None),
                };
                (verdict, Some(e.to_string()), line, None)
            }
            Ok(inspection) => {
                let head = (!inspection.records.is_empty()).then(|| hex::encode(inspection.head));
                match &inspection.torn_tail {
                    Some(torn) => {
                        let e = JournalError::TornTail {
                            path: self.path.clone(),
                            line: torn.line,
                            offset: torn.offset,
                            len: torn.len,
                        };
                        ("torn", Some(e.to_string()), Some(torn.line), head)
                    }
                    None if !self.exists => ("no_journal", None, None, None),
                    None => ("verified", None, None, head),
                }
            }
        };
        let records = self.records();
        let skip = keep.map_or(0, |keep| records.len().saturating_sub(keep));
        JournalView {
            verdict: JournalVerdict {
                path,
                exists: self.exists,
                verdict,
                verified: matches!(verdict, "verified" | "no_journal"),
                error,
                error_line,
                record_count: records.len(),
                head,
            },
            records: record_views(records, skip),
        }
    }
}

/// Views of `records` from index `skip` on.
fn record_views(records: &[Record], skip: usize) -> Vec<RecordView> {
    let started: BTreeMap<u64, &Proposal> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Started { proposal, .. } => Some((r.seq, proposal)),
            Entry::Outcome { .. } => None,
        })
        .collect();
    let finished: BTreeSet<u64> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Outcome { seq_started, .. } => Some(*seq_started),
            Entry::Started { .. } => None,
        })
        .collect();
    records
        .iter()
        .skip(skip)
        .map(|r| {
            let base = RecordView {
                seq: r.seq,
                at: r.at,
                at_utc: utc_iso8601(r.at),
                entry: "started",
                proposal: None,
                directive_ids: Vec::new(),
                seq_started: None,
                status: None,
                error: None,
                awaiting_outcome: false,
            };
            match &r.entry {
                Entry::Started {
                    proposal,
                    directive_ids,
                } => RecordView {
                    proposal: Some(proposal.clone()),
                    directive_ids: directive_ids.iter().map(hex::encode).collect(),
                    awaiting_outcome: !finished.contains(&r.seq),
                    ..base
                },
                Entry::Outcome {
                    seq_started,
                    status,
                    error,
                } => RecordView {
                    entry: "outcome",
                    proposal: started.get(seq_started).map(|p| (*p).clone()),
                    seq_started: Some(*seq_started),
                    status: Some(status.as_str()),
                    error: error.clone(),
                    ..base
                },
            }
        })
        .collect()
}

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

/// The higher of `current_version` in the config and the version the state
/// records after the last successful upgrade, as the agent computes it.
///
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
        due: entry.next_attempt_at <= now,
    }
}

/// Loads the config for a report.
///
/// # Errors
/// [`ReportError::Config`].
pub fn load_config(path: &Path) -> Result<(Config, Vec<Warning>), ReportError> {
    Ok(Config::load(path)?)
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
    let engine =
        Engine::from_directives(config.quorum_config(), directives).map_err(ReportError::Quorum)?;

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
    let done: BTreeSet<&Proposal> = journal
        .records()
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Started { proposal, .. } => Some(proposal),
            Entry::Outcome { .. } => None,
        })
        .collect();
    let tally = engine.tally(now, installed.as_ref(), &|p: &Proposal| done.contains(p));

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
        warnings: notes,
        runtime: runtime_view(config.state_dir()),
    })
}

/// Builds the `journal` report: every verified record and the verdict.
///
/// # Errors
/// [`ReportError::NoStateDir`], [`ReportError::State`] when the state
/// directory cannot be opened. A journal that does not verify is not an
/// error: see [`JournalVerdict`].
pub fn journal_report(config: &Config) -> Result<JournalReport, ReportError> {
    let state = open_state(config)?;
    Ok(JournalReport {
        journal: JournalRead::new(&state).view(None),
    })
}

impl StatusReport {
    /// The report as one pretty-printed JSON object (see the module docs).
    ///
    /// # Errors
    /// A serializer error (not expected: every field is a string, a number,
    /// a boolean or a list of them).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

impl JournalReport {
    /// The report as one pretty-printed JSON object (see the module docs).
    ///
    /// # Errors
    /// As [`StatusReport::to_json`].
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The verdict alone as a JSON object (`journal --verify --json`).
    ///
    /// # Errors
    /// As [`StatusReport::to_json`].
    pub fn verdict_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&self.journal.verdict)
    }
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

/// `s` escaped for a terminal, whole ([`crate::core::text::printable`]).
fn printable(s: &str) -> String {
    crate::core::text::printable(s, usize::MAX)
}

/// One journal record as a line.
fn write_record(f: &mut fmt::Formatter<'_>, r: &RecordView) -> fmt::Result {
    write!(f, "  {:>5}  {}  {:<7}  ", r.seq, r.at_utc, r.entry)?;
    if let Some(status) = r.status {
        write!(f, "{status}  ")?;
    }
    if let Some(seq) = r.seq_started {
        write!(f, "of seq {seq}: ")?;
    }
    match &r.proposal {
        Some(p) => write!(f, "{}", ShowProposal(p))?,
        None => f.write_str("(unknown proposal)")?,
    }
    if r.entry == "started" {
        write!(f, " ({} directives)", r.directive_ids.len())?;
    }
    if let Some(error) = &r.error {
        write!(f, "  error: {}", printable(error))?;
    }
    if r.awaiting_outcome {
        f.write_str("  [no outcome yet: running, or interrupted]")?;
    }
    writeln!(f)
}

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
                "worker:      sandbox {}, {} restart(s) (agent pid {}, recorded {})",
                r.worker_sandbox.as_deref().unwrap_or("not reported yet"),
                r.worker_restarts.unwrap_or(0),
                r.pid.map_or("?".to_owned(), |p| p.to_string()),
                r.updated_at.map_or("?".to_owned(), |t| t.to_string()),
            )?,
            None => writeln!(f, "worker:      unknown (the agent has not run)")?,
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
                "  ack {}  status {}  {} {}  attempts {}  next attempt {} ({}){}",
                a.id,
                printable(a.status.as_deref().unwrap_or("?")),
                printable(a.action.as_deref().unwrap_or("?")),
                printable(a.version.as_deref().unwrap_or("?")),
                a.attempts,
                a.next_attempt_utc,
                a.next_attempt_at,
                if a.due { ", due" } else { "" }
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

        if !self.warnings.is_empty() {
            writeln!(f, "\nwarnings:")?;
            for w in &self.warnings {
                writeln!(f, "  - {}", printable(w))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for JournalReport {
    /// Every record, then the verdict line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.journal.records {
            write_record(f, r)?;
        }
        writeln!(f, "{}", self.journal.verdict)
    }
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// What a command prints and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Text for stdout.
    pub stdout: String,
    /// Errors for stderr, each printed as `error: ...`.
    pub errors: Vec<String>,
    /// Exit status 0 when true, 1 otherwise.
    pub success: bool,
}

impl CommandOutput {
    fn failed(error: impl fmt::Display) -> CommandOutput {
        CommandOutput {
            stdout: String::new(),
            errors: vec![error.to_string()],
            success: false,
        }
    }

    /// Prints stdout, then each error as `error: ...` on stderr; exit status
    /// 0 on success, 1 on failure or when stdout cannot be written.
    pub fn print(&self) -> ExitCode {
        let mut ok = self.success;
        let mut stdout = io::stdout().lock();
        let mut stderr = io::stderr().lock();
        if stdout
            .write_all(self.stdout.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            let _ = writeln!(stderr, "error: cannot write to stdout");
            ok = false;
        }
        for e in &self.errors {
            let _ = writeln!(stderr, "error: {e}");
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

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

/// `qube-agent journal --config PATH [--json] [--verify]`.
pub fn journal_command(config_path: &Path, json: bool, verify_only: bool) -> CommandOutput {
    let report = match load_config(config_path).and_then(|(config, _)| journal_report(&config)) {
        Ok(report) => report,
        Err(e) => return CommandOutput::failed(e),
    };
    let stdout = match (json, verify_only) {
        (true, true) => report.verdict_json().map(|t| t + "\n"),
        (true, false) => report.to_json().map(|t| t + "\n"),
        (false, true) => Ok(format!("{}\n", report.journal.verdict)),
        (false, false) => Ok(report.to_string()),
    };
    let stdout = match stdout {
        Ok(text) => text,
        Err(e) => return CommandOutput::failed(format!("cannot write the JSON: {e}")),
    };
    let verdict = &report.journal.verdict;
    CommandOutput {
        stdout,
        errors: verdict.error.iter().cloned().collect(),
        success: verdict.verified,
    }
}

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// 1970-01-01T00:00:00: unix time 0 as a civil date and time in UTC.
const UNIX_EPOCH: civil::DateTime = civil::date(1970, 1, 1).at(0, 0, 0, 0);

/// The last second of year 9999, where jiff's calendar (and RFC 3339's
/// four-digit year) ends: 9999-12-31T23:59:59Z.
const LAST_CIVIL_SECOND: u64 = 253_402_300_799;

/// The proleptic Gregorian calendar repeats every 400 years (146 097 days).
const GREGORIAN_CYCLE_SECS: u64 = 146_097 * 86_400;

/// Unix seconds as ISO 8601 in UTC, `YYYY-MM-DDTHH:MM:SSZ` (proleptic
/// Gregorian calendar; years past 9999 get more digits).
///
/// Never panics, for any `u64`: times come from signed events.
pub fn utc_iso8601(unix: u64) -> String {
    // Civil time in UTC is unix time counted on jiff's calendar. A time past
    // year 9999 is first moved back by whole 400-year cycles (same month, day
    // and time of day), which are then added back to the year. Cannot
    // overflow: `cycles * GREGORIAN_CYCLE_SECS < unix - LAST + CYCLE <= u64::MAX`.
    let cycles = unix
        .saturating_sub(LAST_CIVIL_SECOND)
        .div_ceil(GREGORIAN_CYCLE_SECS);
    let within = unix - cycles * GREGORIAN_CYCLE_SECS;
    let datetime = i64::try_from(within)
        .ok()
        .and_then(|secs| UNIX_EPOCH.checked_add(SignedDuration::from_secs(secs)).ok());
    let Some(dt) = datetime else {
        // Unreachable: `within` is at most LAST_CIVIL_SECOND, in jiff's range.
        return unix.to_string();
    };
    if cycles == 0 {
        // jiff prints `YYYY-MM-DDTHH:MM:SS` (no fraction for whole seconds).
        return format!("{dt}Z");
    }
    let year = u64::from(dt.year().unsigned_abs()) + cycles * 400;
    format!(
        "{year}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(utc_iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_iso8601(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(utc_iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(utc_iso8601(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn iso8601_past_year_9999_gets_more_digits() {
        // Values from the hand-written Hinnant calendar this replaced.
        for (unix, text) in [
            (253_402_300_800, "10000-01-01T00:00:00Z"),
            (266_025_081_599, "10399-12-31T23:59:59Z"),
            (1 << 40, "36812-02-20T00:36:16Z"),
            (i64::MAX.unsigned_abs(), "292277026596-12-04T15:30:07Z"),
            (1 << 63, "292277026596-12-04T15:30:08Z"),
            (u64::MAX, "584554051223-11-09T07:00:15Z"),
        ] {
            assert_eq!(utc_iso8601(unix), text, "{unix}");
        }
    }

    /// Walks `days` days from `start` (a date at midnight, `first` days after
    /// 1970-01-01) and compares each day's text with a naive calendar.
    fn walk_days(first: u64, start: (u64, u64, u64), days: u64) {
        let (mut y, mut m, mut d) = start;
        for day in first..first + days {
            let text = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
            assert_eq!(utc_iso8601(day * 86_400), text, "day {day}");
            let last = format!("{y:04}-{m:02}-{d:02}T23:59:59Z");
            assert_eq!(utc_iso8601(day * 86_400 + 86_399), last, "day {day}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn iso8601_agrees_with_a_day_by_day_count() {
        // 1970..2100 a day at a time.
        walk_days(0, (1970, 1, 1), 47_482);
        // 9990..10410: across the end of jiff's calendar and a whole cycle.
        let first = 2_929_245; // 9990-01-01
        assert_eq!(utc_iso8601(first * 86_400), "9990-01-01T00:00:00Z");
        walk_days(first, (9990, 1, 1), 420 * 366);
    }

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
