//! Read-only operator reports: `qube-agent status` and `qube-agent journal`.
//!
//! Both read the config and the state directory (`docs/qube-agent.example.toml`)
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
//! A *proposal* object (`docs/PROTOCOL.md` section 4): `action` (`upgrade` |
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
//! * `conflict`: `null` or `{version, proposals}` (`docs/PROTOCOL.md` section 5 rule
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
//!
//! # Files
//! This file holds what both commands share: [`ReportError`],
//! [`load_config`], [`CommandOutput`] and the text helpers. `status.rs`
//! builds and prints the `status` report ([`status`], [`StatusReport`] and
//! its views), `journal.rs` the `journal` report ([`journal_report`],
//! [`JournalReport`], and the journal views `status` shows too), and
//! `time.rs` formats times ([`utc_iso8601`]).
//!
//! [`JournalError`]: crate::state::journal::JournalError
//! [`journal::inspect`]: crate::state::journal::inspect

mod journal;
mod status;
mod time;

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, ConfigError, Warning};
use crate::core::directive::Proposal;
use crate::core::quorum::QuorumError;
use crate::state::{StateDir, StateError};

pub use journal::{
    journal_command, journal_report, JournalReport, JournalVerdict, JournalView, RecordView,
};
pub use status::{
    status, status_command, ConflictView, DirectiveView, FollowView, InstalledView, NodeView,
    OutboxView, ProposalStatusView, RuntimeView, StatusReport, VoterDirectiveView,
    STATUS_JOURNAL_RECORDS,
};
pub use time::utc_iso8601;

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

/// Loads the config for a report.
///
/// # Errors
/// [`ReportError::Config`].
pub fn load_config(path: &Path) -> Result<(Config, Vec<Warning>), ReportError> {
    Ok(Config::load(path)?)
}

// ---------------------------------------------------------------------------
// Text
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

/// `s` escaped for a terminal, whole ([`crate::core::text::printable`]).
fn printable(s: &str) -> String {
    crate::core::text::printable(s, usize::MAX)
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
