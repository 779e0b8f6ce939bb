//! The write-ahead journal (`docs/PROTOCOL.md` section 12): an append-only,
//! hash-chained record of every hook run, which makes execution
//! at-most-once.
//!
//! # Format
//! `journal.jsonl`, one JSON object per line, each line ending in `\n`:
//!
//! ```text
//! {"seq":1,"prev":"000…000","at":1700000000,"entry":{"started":{"proposal":{"action":"upgrade","network":"hqz","version":"v1.2.3","hash":"9f86…0a08"},"directive_ids":["ab…"]}}}
//! {"seq":2,"prev":"<sha256 of line 1>","at":1700000100,"entry":{"outcome":{"seq_started":1,"status":"success"}}}
//! ```
//!
//! * `seq` counts records from 1, so record `n` is line `n`.
//! * `prev` is the lower-case hex SHA-256 of the previous line's bytes
//!   (without its `\n`); 64 zeros for the first record.
//! * `at` is unix seconds.
//! * `entry` is `{"started":{proposal, directive_ids}}` (a hook is about to
//!   run) or `{"outcome":{seq_started, status, error?, steps?}}` (`status`
//!   is `success` or `failure`; `error` only with `failure`; `steps`, the
//!   run's steps in order as [`StepRecord`]s, e.g.
//!   `{"name":"health","result":"exit status 1","at":1700000040,"ms":3012,"runs":3}`,
//!   absent in records of agents before it and when no step ran). `proposal` has
//!   `action`, `network`, `version` (as signed), `hash`, and `genesis_url`
//!   and `required_by` when the directive had them.
//!
//! # At-most-once
//! The monitor calls [`Journal::append_started`], which returns only once
//! the record is on disk (`write` + `fdatasync`), then runs the hook, then
//! calls [`Journal::append_outcome`]. A proposal with a `started` record is
//! never run again ([`Journal::contains`]). A `started` with no outcome found
//! at start ([`Journal::interrupted`]) means the agent died while the hook
//! ran: it is acknowledged as `failure` with error `interrupted`, never
//! re-run.
//!
//! # Verification and what it proves
//! [`Journal::open`] reads the whole file and checks every line: it parses
//! strictly (unknown fields, bad hex or a bad version are errors), `seq`
//! is its line number, `prev` is the hash of the line before, an outcome
//! names an earlier `started` that has no outcome yet. The first failure is
//! [`JournalError::Corrupt`] with the line number, and the agent refuses to
//! start: editing, deleting, inserting or reordering a record shows at that
//! line or the next one. The chain has no key, so it shows accidents and
//! naive edits, not an attacker who rewrites every later record too; an
//! edit to the very last record shows only when compared with a copy of the
//! head ([`Journal::head`]), which the caller can log or publish.
//!
//! # A torn last line
//! A crash in the middle of an append leaves a last line without its `\n`.
//! [`Journal::open`] handles it as follows:
//! * if the unterminated text is a complete, valid record that extends the
//!   chain, it is kept and the missing `\n` is written (durably) at open.
//!   It counts as written: a torn `started` is treated as started (the hook
//!   never runs for it), so it shows in [`Journal::interrupted`] and is
//!   acknowledged as an interrupted failure;
//! * otherwise (cut JSON, zero bytes left by the file system) the record
//!   cannot be read, so nobody can tell which proposal it was about:
//!   [`JournalError::TornTail`], distinct from tampering, and the agent
//!   refuses to start. Its message gives the byte offset, for an operator
//!   to `truncate -s OFFSET FILE` after checking that no hook ran. (Since a
//!   hook runs only after its record is durable, a cut record means its hook
//!   did not run, unless the disk lied about the flush.)
//!
//! [`inspect`] reads a journal without creating or repairing it, for the
//! `journal` command; it reports a torn tail instead of failing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::directive::Proposal;
use crate::core::error::truncated;

/// Longest `reason` of a retry record, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Proposals per checkpoint record (so each stays far below
/// [`MAX_RECORD_BYTES`]).
pub const CHECKPOINT_RUNS_PER_RECORD: usize = 64;
/// A journal longer than this (in bytes) is rotated into a checkpoint
/// before the next `started` record (64 MiB less 1 MiB, which leaves room
/// for the outcome and retry records that may follow).
pub const ROTATE_BYTES: u64 = MAX_JOURNAL_BYTES - 1024 * 1024;

/// Longest record line, in bytes without the `\n` (64 KiB).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Largest journal file, in bytes (64 MiB, tens of thousands of runs).
pub const MAX_JOURNAL_BYTES: u64 = 64 * 1024 * 1024;
/// Longest `error` text kept in an outcome, in bytes; longer ones are
/// truncated (at a character boundary, with `…`).
pub const MAX_ERROR_BYTES: usize = 4096;
/// The longest step `name` or `result` kept in an outcome's `steps`, in
/// bytes; longer ones are cut there (at a character boundary) and end in
/// `…`.
pub const MAX_STEP_TEXT_BYTES: usize = 256;
/// The most steps kept in one outcome; a run has at most six (fetch,
/// artifact, command, health, rollback, health after rollback).
pub const MAX_STEPS: usize = 16;
/// `prev` of the first record: 32 zero bytes (64 `0` in hex).
pub const GENESIS_PREV: [u8; 32] = [0u8; 32];

pub use crate::core::ack::Status;

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entry {
    /// A hook is about to run for `proposal`.
    Started {
        /// The exact proposal (`docs/PROTOCOL.md` section 4).
        proposal: Proposal,
        /// The 32-byte ids of the directives that formed the quorum.
        directive_ids: Vec<[u8; 32]>,
        /// Their authors' 32-byte pubkeys, in the same order as
        /// `directive_ids`; empty in records written before agents kept
        /// them. An interrupted run is acknowledged from these, whatever
        /// the config or the saved directives say by then.
        voters: Vec<[u8; 32]>,
    },
    /// The run recorded at `seq_started` ended.
    Outcome {
        /// `seq` of the matching [`Entry::Started`].
        seq_started: u64,
        /// How it ended.
        status: Status,
        /// Why it failed; only with [`Status::Failure`], at most
        /// [`MAX_ERROR_BYTES`].
        error: Option<String>,
        /// The run's steps in order; empty in records written before
        /// agents kept them, and when no step ran.
        steps: Vec<StepRecord>,
    },
    /// The operator allowed one more run of `proposal`, whose last run on
    /// this node failed (`qube-agent retry`).
    Retry {
        /// The exact proposal.
        proposal: Proposal,
        /// Why, as the operator gave it (at most [`MAX_REASON_BYTES`]).
        reason: String,
    },
    /// The start of a journal that replaced a full one: proposals that ran
    /// there, with how their last run ended. Only at the start of a journal
    /// (one or more in a row); each listed proposal counts as started.
    Checkpoint {
        /// The journal this one continues.
        previous: Previous,
        /// Proposals and the status of their last run.
        runs: Vec<CheckpointRun>,
    },
}

/// Where a journal that starts with a checkpoint came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Previous {
    /// The file name the full journal was kept under, in the same
    /// directory.
    pub file: String,
    /// Its last record's `seq`.
    pub seq: u64,
    /// The SHA-256 of its last line (its head), 64 lower-case hex.
    pub head: String,
}

/// One proposal carried into a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRun {
    /// The exact proposal.
    pub proposal: Proposal,
    /// How its last run ended.
    pub status: Status,
}

/// One step of a run, as an outcome record keeps it (`docs/PROTOCOL.md`
/// section 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// `fetch`, `artifact` (the hash check), `command`, `health`,
    /// `rollback` or `health after rollback`.
    pub name: String,
    /// `ok`, or the step's error (`exit status 1`, `timeout after 900 s`,
    /// `hash mismatch`, ...), never hook output; cut at
    /// [`MAX_STEP_TEXT_BYTES`] (then `…`).
    pub result: String,
    /// When the step started, unix seconds.
    pub at: u64,
    /// How long it took, in milliseconds (for a health step: settle time,
    /// window and every check).
    pub ms: u64,
    /// Processes it ran (every attempt of every check for a health step; 0
    /// for the hash check).
    pub runs: u32,
}

/// One verified journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position from 1; equals the line number.
    pub seq: u64,
    /// SHA-256 of the previous line ([`GENESIS_PREV`] for the first).
    pub prev: [u8; 32],
    /// When it was written, unix seconds.
    pub at: u64,
    /// What it says.
    pub entry: Entry,
    /// SHA-256 of this record's line (the next record's `prev`).
    pub hash: [u8; 32],
}

/// What is wrong with a journal line ([`JournalError::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The line is empty.
    EmptyLine,
    /// The line is longer than [`MAX_RECORD_BYTES`].
    TooLong {
        /// Its length, in bytes.
        len: usize,
    },
    /// The line is not UTF-8.
    NotUtf8,
    /// The line is not a record: the parser's message.
    Parse(String),
    /// A field has a bad value (hex, version, error text).
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// `seq` is not the line number.
    Seq {
        /// The line number.
        expected: u64,
        /// The `seq` found.
        found: u64,
    },
    /// `prev` is not the hash of the previous line: that line was changed,
    /// or lines were removed or inserted.
    Prev {
        /// The previous line's number (0 for the first record: its `prev`
        /// must be [`GENESIS_PREV`]).
        previous_line: u64,
    },
    /// An outcome names no earlier `started` record.
    UnknownStarted {
        /// The `seq_started` found.
        seq_started: u64,
    },
    /// A `started` record for a proposal that already started and has no
    /// retry allowing it again.
    StartedAgain {
        /// The line of its earlier `started` (or checkpoint) record.
        first: u64,
    },
    /// A retry for a proposal whose last run is missing, open or
    /// succeeded, or that already has a retry.
    BadRetry(RetryRefusal),
    /// A checkpoint record after a record that is not one.
    CheckpointNotAtStart,
    /// An outcome names a `started` record that already has one.
    DuplicateOutcome {
        /// The `seq_started` found.
        seq_started: u64,
        /// The line of the first outcome.
        first: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::EmptyLine => f.write_str("empty line"),
            Corruption::TooLong { len } => {
                write!(f, "line of {len} bytes, over the {MAX_RECORD_BYTES} limit")
            }
            Corruption::NotUtf8 => f.write_str("not UTF-8"),
            Corruption::Parse(msg) => write!(f, "not a journal record: {msg}"),
            Corruption::BadField { field, problem } => write!(f, "field `{field}`: {problem}"),
            Corruption::Seq { expected, found } => {
                write!(
                    f,
                    "seq is {found}, expected {expected} (a record is missing or out of place)"
                )
            }
            Corruption::Prev { previous_line: 0 } => {
                f.write_str("prev of the first record is not 64 zeros")
            }
            Corruption::Prev { previous_line } => write!(
                f,
                "prev is not the SHA-256 of line {previous_line}: line {previous_line} \
                 was changed, or a line was removed or inserted"
            ),
            Corruption::UnknownStarted { seq_started } => write!(
                f,
                "outcome for seq {seq_started}, which is not an earlier started record"
            ),
            Corruption::StartedAgain { first } => write!(
                f,
                "started record for a proposal already started on line {first}, with no retry"
            ),
            Corruption::BadRetry(why) => write!(f, "retry record refused: {why}"),
            Corruption::CheckpointNotAtStart => {
                f.write_str("checkpoint record after the start of the journal")
            }
            Corruption::DuplicateOutcome { seq_started, first } => write!(
                f,
                "second outcome for seq {seq_started} (the first is on line {first})"
            ),
        }
    }
}

/// Why one more run of a proposal cannot be allowed
/// ([`Journal::append_retry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRefusal {
    /// It never ran on this node.
    NeverRan,
    /// Its last run has no outcome yet (it runs, or was interrupted and is
    /// acknowledged at the next start).
    Open,
    /// Its last run succeeded: a retry never applies to it.
    Succeeded,
    /// One more run is already allowed.
    AlreadyAllowed,
}

impl fmt::Display for RetryRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetryRefusal::NeverRan => "the proposal never ran on this node",
            RetryRefusal::Open => {
                "its last run has no outcome yet (running, or interrupted: start the agent once \
                 to acknowledge it)"
            }
            RetryRefusal::Succeeded => "its last run succeeded; a retry only follows a failure",
            RetryRefusal::AlreadyAllowed => "one more run is already allowed",
        })
    }
}

/// Why the journal could not be opened, verified or appended to.
#[derive(Debug)]
#[non_exhaustive]
pub enum JournalError {
    /// An operating-system error while doing `op`.
    Io {
        /// What was being done.
        op: &'static str,
        /// The journal file (or its directory).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The journal is not a regular file.
    NotARegularFile(PathBuf),
    /// The file is larger than [`MAX_JOURNAL_BYTES`], or an append would
    /// make it so.
    TooLarge {
        /// The journal file.
        path: PathBuf,
    },
    /// Line `line` (from 1) does not verify: tampering or corruption.
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// The line number, from 1.
        line: u64,
        /// What is wrong.
        problem: Corruption,
    },
    /// The last line has no `\n` and is not a complete record: the agent
    /// stopped while appending it (see the module docs).
    TornTail {
        /// The journal file.
        path: PathBuf,
        /// Its line number, from 1.
        line: u64,
        /// Byte offset where it starts (the length to truncate to).
        offset: u64,
        /// Its length, in bytes.
        len: usize,
    },
    /// The file changed on disk since it was opened ([`Journal::verify`]).
    ChangedOnDisk {
        /// The journal file.
        path: PathBuf,
    },
    /// [`Journal::append_started`] for a proposal already in the journal.
    AlreadyStarted {
        /// `seq` of its `started` record.
        seq: u64,
    },
    /// [`Journal::append_outcome`] for a `seq` that is no `started` record.
    UnknownStarted {
        /// The `seq_started` given.
        seq_started: u64,
    },
    /// [`Journal::append_outcome`] for a run that already has an outcome.
    AlreadyFinished {
        /// The `seq_started` given.
        seq_started: u64,
    },
    /// [`Journal::append_outcome`] with an error text and
    /// [`Status::Success`].
    ErrorWithSuccess,
    /// [`Journal::append_retry`] refused.
    RetryRefused(RetryRefusal),
    /// A record would be longer than [`MAX_RECORD_BYTES`].
    RecordTooLarge {
        /// Its length, in bytes.
        len: usize,
    },
    /// An earlier append failed; the file's state is unknown until it is
    /// opened (and verified) again.
    Poisoned,
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { op, path, source } => {
                write!(f, "cannot {op} journal {}: {source}", path.display())
            }
            JournalError::NotARegularFile(path) => {
                write!(f, "journal {} is not a regular file", path.display())
            }
            JournalError::TooLarge { path } => write!(
                f,
                "journal {} is full ({MAX_JOURNAL_BYTES} bytes). The agent rotates it into a \
                 checkpoint before the next run once it passes {ROTATE_BYTES} bytes; never \
                 replace it with an empty journal (the last voted action could run again): keep \
                 the file and report this",
                path.display()
            ),
            JournalError::Corrupt {
                path,
                line,
                problem,
            } => write!(
                f,
                "journal {} does not verify at line {line}: {problem}; it was corrupted or \
                 tampered with, refusing to start (compare it with a backup)",
                path.display()
            ),
            JournalError::TornTail {
                path,
                line,
                offset,
                len,
            } => write!(
                f,
                "journal {} ends with a torn line {line} ({len} bytes without a newline): the \
                 agent stopped while writing it; check that no hook ran for it, then run \
                 `truncate -s {offset} {}` to drop it",
                path.display(),
                path.display()
            ),
            JournalError::ChangedOnDisk { path } => write!(
                f,
                "journal {} changed on disk since the agent opened it",
                path.display()
            ),
            JournalError::AlreadyStarted { seq } => {
                write!(
                    f,
                    "this proposal is already in the journal (seq {seq}); it never runs twice"
                )
            }
            JournalError::UnknownStarted { seq_started } => {
                write!(f, "seq {seq_started} is not a started record")
            }
            JournalError::AlreadyFinished { seq_started } => {
                write!(f, "the run of seq {seq_started} already has an outcome")
            }
            JournalError::ErrorWithSuccess => {
                f.write_str("an outcome with status success cannot carry an error")
            }
            JournalError::RetryRefused(why) => write!(f, "no retry: {why}"),
            JournalError::RecordTooLarge { len } => write!(
                f,
                "journal record of {len} bytes is over the {MAX_RECORD_BYTES} limit"
            ),
            JournalError::Poisoned => f.write_str(
                "an earlier journal write failed; restart the agent to verify the journal",
            ),
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------
// Serialized form
// ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    seq: u64,
    prev: String,
    at: u64,
    entry: RawEntry,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawEntry {
    Started {
        proposal: Proposal,
        directive_ids: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        voters: Vec<String>,
    },
    Outcome {
        seq_started: u64,
        status: Status,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<StepRecord>,
    },
    Retry {
        proposal: Proposal,
        reason: String,
    },
    Checkpoint {
        previous: Previous,
        runs: Vec<CheckpointRun>,
    },
}

/// A proposal's hash must be lower-case hex as written, its version a
/// semantic version.
fn check_proposal(proposal: &Proposal) -> Result<(), Corruption> {
    parse_hash("hash", &proposal.hash)?;
    if let Err(e) = proposal.semver() {
        return Err(Corruption::BadField {
            field: "version",
            problem: format!(
                "{:?} is not a semantic version: {e}",
                truncated(&proposal.version, 80)
            ),
        });
    }
    Ok(())
}

/// 64 lower-case hex chars as 32 bytes.
fn parse_hash(field: &'static str, text: &str) -> Result<[u8; 32], Corruption> {
    let lower = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let mut out = [0u8; 32];
    if lower && hex::decode_to_slice(text, &mut out).is_ok() {
        Ok(out)
    } else {
        Err(Corruption::BadField {
            field,
            problem: format!(
                "{:?} is not 64 lower-case hex characters",
                truncated(text, 80)
            ),
        })
    }
}

impl RawRecord {
    /// The typed record, with every field checked; `hash` is the line's.
    fn into_record(self, hash: [u8; 32]) -> Result<Record, Corruption> {
        let entry = match self.entry {
            RawEntry::Started {
                proposal,
                directive_ids,
                voters,
            } => {
                check_proposal(&proposal)?;
                let directive_ids = directive_ids
                    .iter()
                    .map(|id| parse_hash("directive_ids", id))
                    .collect::<Result<Vec<_>, _>>()?;
                let voters = voters
                    .iter()
                    .map(|pk| parse_hash("voters", pk))
                    .collect::<Result<Vec<_>, _>>()?;
                if !voters.is_empty() && voters.len() != directive_ids.len() {
                    return Err(Corruption::BadField {
                        field: "voters",
                        problem: format!(
                            "{} voters for {} directive ids",
                            voters.len(),
                            directive_ids.len()
                        ),
                    });
                }
                Entry::Started {
                    proposal,
                    directive_ids,
                    voters,
                }
            }
            RawEntry::Outcome {
                seq_started,
                status,
                error,
                steps,
            } => {
                if status == Status::Success && error.is_some() {
                    return Err(Corruption::BadField {
                        field: "error",
                        problem: "present with status success".to_owned(),
                    });
                }
                Entry::Outcome {
                    seq_started,
                    status,
                    error,
                    steps,
                }
            }
            RawEntry::Retry { proposal, reason } => {
                check_proposal(&proposal)?;
                if reason.len() > MAX_REASON_BYTES || reason.trim().is_empty() {
                    return Err(Corruption::BadField {
                        field: "reason",
                        problem: format!("empty or longer than {MAX_REASON_BYTES} bytes"),
                    });
                }
                Entry::Retry { proposal, reason }
            }
            RawEntry::Checkpoint { previous, runs } => {
                parse_hash("head", &previous.head)?;
                for run in &runs {
                    check_proposal(&run.proposal)?;
                }
                Entry::Checkpoint { previous, runs }
            }
        };
        Ok(Record {
            seq: self.seq,
            prev: parse_hash("prev", &self.prev)?,
            at: self.at,
            entry,
            hash,
        })
    }
}

// ---------------------------------------------------------------------------
// Verification (pure)
// ---------------------------------------------------------------------------

/// The verified chain and what the verifier learnt on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Chain {
    records: Vec<Record>,
    /// `seq` of each started record → `seq` of its outcome, if any.
    runs: BTreeMap<u64, Option<u64>>,
    /// Each proposal that started (or is in a checkpoint) → its last run.
    proposals: BTreeMap<Proposal, LastRun>,
    /// Bytes of the complete (newline-terminated) lines.
    complete_len: u64,
}

/// A proposal's last run, as the chain knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LastRun {
    /// `seq` of its `started` (or checkpoint) record.
    seq: u64,
    /// How it ended; `None` while open.
    status: Option<Status>,
    /// The operator allowed one more run.
    retry: bool,
}

impl LastRun {
    /// Whether one more run may be allowed now.
    fn retriable(&self) -> Result<(), RetryRefusal> {
        match (self.status, self.retry) {
            (_, true) => Err(RetryRefusal::AlreadyAllowed),
            (None, _) => Err(RetryRefusal::Open),
            (Some(Status::Success), _) => Err(RetryRefusal::Succeeded),
            (Some(Status::Failure), false) => Ok(()),
        }
    }
}

/// Whether `proposal` must not run (again): it started, or is in a
/// checkpoint, and no retry allows it.
fn blocks(runs: &BTreeMap<Proposal, LastRun>, proposal: &Proposal) -> bool {
    runs.get(proposal).is_some_and(|r| !r.retry)
}

/// Whether `proposal`, in any wave, ran successfully: a proposal equal to
/// it but for `rollout` and `node` tags has a success as its last run
/// (`docs/PROTOCOL.md` section 5.8: a wider wave never runs again where a
/// narrower one succeeded).
fn succeeded_in_any_wave(runs: &BTreeMap<Proposal, LastRun>, proposal: &Proposal) -> bool {
    let base = proposal.without_wave();
    runs.iter()
        .any(|(p, r)| r.status == Some(Status::Success) && p.without_wave() == base)
}

impl Chain {
    /// Whether `proposal` must not run (again): see [`blocks`].
    fn blocks(&self, proposal: &Proposal) -> bool {
        blocks(&self.proposals, proposal)
    }

    /// See [`succeeded_in_any_wave`].
    fn succeeded_in_any_wave(&self, proposal: &Proposal) -> bool {
        succeeded_in_any_wave(&self.proposals, proposal)
    }

    /// Whether one more run of `proposal` may be allowed.
    fn retriable(&self, proposal: &Proposal) -> Result<(), RetryRefusal> {
        self.proposals
            .get(proposal)
            .ok_or(RetryRefusal::NeverRan)?
            .retriable()
    }

    fn head(&self) -> [u8; 32] {
        self.records.last().map_or(GENESIS_PREV, |r| r.hash)
    }

    fn next_seq(&self) -> u64 {
        self.records.last().map_or(1, |r| r.seq.saturating_add(1))
    }

    /// Checks `line` as the next record and adds it.
    fn push_line(&mut self, line: &[u8]) -> Result<(), Corruption> {
        if line.is_empty() {
            return Err(Corruption::EmptyLine);
        }
        if line.len() > MAX_RECORD_BYTES {
            return Err(Corruption::TooLong { len: line.len() });
        }
        let text = std::str::from_utf8(line).map_err(|_| Corruption::NotUtf8)?;
        let raw: RawRecord =
            serde_json::from_str(text).map_err(|e| Corruption::Parse(e.to_string()))?;
        let record = raw.into_record(Sha256::digest(line).into())?;
        self.push_record(record)
    }

    /// Checks the chain rules for `record` as the next record and adds it.
    fn push_record(&mut self, record: Record) -> Result<(), Corruption> {
        let expected = self.next_seq();
        if record.seq != expected {
            return Err(Corruption::Seq {
                expected,
                found: record.seq,
            });
        }
        if record.prev != self.head() {
            return Err(Corruption::Prev {
                previous_line: expected.saturating_sub(1),
            });
        }
        match &record.entry {
            Entry::Started { proposal, .. } => {
                if self.blocks(proposal) {
                    let first = self.proposals.get(proposal).map_or(0, |r| r.seq);
                    return Err(Corruption::StartedAgain { first });
                }
                self.runs.insert(record.seq, None);
                self.proposals.insert(
                    proposal.clone(),
                    LastRun {
                        seq: record.seq,
                        status: None,
                        retry: false,
                    },
                );
            }
            Entry::Outcome {
                seq_started,
                status,
                ..
            } => {
                match self.runs.get_mut(seq_started) {
                    Some(Some(first)) => {
                        return Err(Corruption::DuplicateOutcome {
                            seq_started: *seq_started,
                            first: *first,
                        })
                    }
                    Some(slot) => *slot = Some(record.seq),
                    None => {
                        return Err(Corruption::UnknownStarted {
                            seq_started: *seq_started,
                        })
                    }
                }
                // A proposal's last run is the only open one it can have.
                if let Some(run) = self
                    .proposals
                    .values_mut()
                    .find(|r| r.seq == *seq_started && r.status.is_none())
                {
                    run.status = Some(*status);
                }
            }
            Entry::Retry { proposal, .. } => {
                self.retriable(proposal).map_err(Corruption::BadRetry)?;
                if let Some(run) = self.proposals.get_mut(proposal) {
                    run.retry = true;
                }
            }
            Entry::Checkpoint { runs, .. } => {
                let at_start = self
                    .records
                    .iter()
                    .all(|r| matches!(r.entry, Entry::Checkpoint { .. }));
                if !at_start {
                    return Err(Corruption::CheckpointNotAtStart);
                }
                for run in runs {
                    if let Some(earlier) = self.proposals.get(&run.proposal) {
                        return Err(Corruption::StartedAgain { first: earlier.seq });
                    }
                    self.proposals.insert(
                        run.proposal.clone(),
                        LastRun {
                            seq: record.seq,
                            status: Some(run.status),
                            retry: false,
                        },
                    );
                }
            }
        }
        self.records.push(record);
        Ok(())
    }
}

/// A last line without `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tail {
    /// A complete, valid record that only lacks its newline (now in the
    /// chain).
    Unterminated { line: u64 },
    /// Not a complete record.
    Torn { line: u64, offset: u64, len: usize },
}

/// Verifies journal bytes: every complete line, then the tail.
fn verify_bytes(path: &Path, bytes: &[u8]) -> Result<(Chain, Option<Tail>), JournalError> {
    let mut chain = Chain::default();
    let mut rest = bytes;
    let mut line_no = 0u64;
    while !rest.is_empty() {
        line_no = line_no.saturating_add(1);
        let corrupt = |problem| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: line_no,
            problem,
        };
        let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
            // The last line has no newline: a complete record, or torn.
            let offset = chain.complete_len;
            let mut attempt = chain.clone();
            return match attempt.push_line(rest) {
                Ok(()) => Ok((attempt, Some(Tail::Unterminated { line: line_no }))),
                // It parsed but breaks the chain: that is not a crash.
                Err(
                    problem @ (Corruption::Seq { .. }
                    | Corruption::Prev { .. }
                    | Corruption::UnknownStarted { .. }
                    | Corruption::DuplicateOutcome { .. }
                    | Corruption::StartedAgain { .. }
                    | Corruption::BadRetry(_)
                    | Corruption::CheckpointNotAtStart
                    | Corruption::BadField { .. }),
                ) => Err(corrupt(problem)),
                Err(_) => Ok((
                    chain,
                    Some(Tail::Torn {
                        line: line_no,
                        offset,
                        len: rest.len(),
                    }),
                )),
            };
        };
        let line = rest.get(..newline).unwrap_or_default();
        chain.push_line(line).map_err(corrupt)?;
        let consumed = u64::try_from(newline.saturating_add(1)).unwrap_or(u64::MAX);
        chain.complete_len = chain.complete_len.saturating_add(consumed);
        rest = rest.get(newline.saturating_add(1)..).unwrap_or_default();
    }
    Ok((chain, None))
}

/// Reads a whole journal file, bounded by [`MAX_JOURNAL_BYTES`].
fn read_bounded(path: &Path, file: &mut File) -> Result<Vec<u8>, JournalError> {
    let meta = file.metadata().map_err(io_error("stat", path))?;
    if !meta.is_file() {
        return Err(JournalError::NotARegularFile(path.to_path_buf()));
    }
    if meta.len() > MAX_JOURNAL_BYTES {
        return Err(JournalError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_JOURNAL_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error("read", path))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_JOURNAL_BYTES {
        return Err(JournalError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Read-only inspection
// ---------------------------------------------------------------------------

/// A torn last line found by [`inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Its line number, from 1.
    pub line: u64,
    /// Byte offset where it starts.
    pub offset: u64,
    /// Its length, in bytes.
    pub len: usize,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Every verified record, in order (an unterminated but complete last
    /// record included).
    pub records: Vec<Record>,
    /// SHA-256 of the last record's line ([`GENESIS_PREV`] when empty).
    pub head: [u8; 32],
    /// A torn last line, which [`Journal::open`] would refuse.
    pub torn_tail: Option<TornTail>,
    /// Each proposal's last run.
    proposals: BTreeMap<Proposal, LastRun>,
}

impl Inspection {
    /// As [`Journal::contains`].
    pub fn contains(&self, proposal: &Proposal) -> bool {
        blocks(&self.proposals, proposal)
    }

    /// As [`Journal::done`].
    pub fn done(&self, proposal: &Proposal) -> bool {
        blocks(&self.proposals, proposal) || succeeded_in_any_wave(&self.proposals, proposal)
    }

    /// As [`Journal::retries_allowed`].
    pub fn retries_allowed(&self) -> Vec<Proposal> {
        retries_allowed(&self.proposals)
    }

    /// As [`Journal::retriable`].
    ///
    /// # Errors
    /// Why no retry can be allowed.
    pub fn retriable(&self, proposal: &Proposal) -> Result<(), RetryRefusal> {
        self.proposals
            .get(proposal)
            .ok_or(RetryRefusal::NeverRan)?
            .retriable()
    }
}

/// The proposals whose retry is allowed and not used yet.
fn retries_allowed(proposals: &BTreeMap<Proposal, LastRun>) -> Vec<Proposal> {
    proposals
        .iter()
        .filter(|(_, r)| r.retry)
        .map(|(p, _)| p.clone())
        .collect()
}

/// Reads and verifies the journal at `path` without creating, locking or
/// repairing it: for the `journal` command, safe while the agent runs. A
/// missing file is an empty journal.
///
/// # Errors
/// [`JournalError::Corrupt`] at the first line that does not verify;
/// [`JournalError::TooLarge`], [`JournalError::NotARegularFile`],
/// [`JournalError::Io`]. A torn last line is reported in
/// [`Inspection::torn_tail`], not as an error.
pub fn inspect(path: &Path) -> Result<Inspection, JournalError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Inspection {
                records: Vec::new(),
                head: GENESIS_PREV,
                torn_tail: None,
                proposals: BTreeMap::new(),
            })
        }
        Err(e) => return Err(io_error("open", path)(e)),
    };
    let bytes = read_bounded(path, &mut file)?;
    let (chain, tail) = verify_bytes(path, &bytes)?;
    let torn_tail = match tail {
        Some(Tail::Torn { line, offset, len }) => Some(TornTail { line, offset, len }),
        _ => None,
    };
    Ok(Inspection {
        head: chain.head(),
        records: chain.records,
        torn_tail,
        proposals: chain.proposals,
    })
}

// ---------------------------------------------------------------------------
// The journal
// ---------------------------------------------------------------------------

/// The open, verified journal; appends go through it.
///
/// One process should hold it at a time ([`crate::state::StateDir::lock`]).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    chain: Chain,
    len: u64,
    poisoned: bool,
    recovered_tail: Option<u64>,
    /// [`ROTATE_BYTES`]; smaller in this module's tests.
    rotate_bytes: u64,
}

impl Journal {
    /// Opens the journal at `path`, creating it (mode 0600, then `fsync` of
    /// its directory) if missing, and verifies the whole chain (see the
    /// module docs). A complete last record without its newline is kept and
    /// the newline written ([`Journal::recovered_tail`]).
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] with the first line that does not verify;
    /// [`JournalError::TornTail`] for a last line cut in the middle;
    /// [`JournalError::TooLarge`], [`JournalError::NotARegularFile`],
    /// [`JournalError::Io`].
    pub fn open(path: impl AsRef<Path>) -> Result<Journal, JournalError> {
        let path = path.as_ref().to_path_buf();
        let mut options = OpenOptions::new();
        options.read(true).append(true).mode(0o600);
        let mut file = match options.clone().create_new(true).open(&path) {
            Ok(file) => {
                let dir = match path.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent,
                    _ => Path::new("."),
                };
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error("fsync the directory of", &path))?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                options.open(&path).map_err(io_error("open", &path))?
            }
            Err(e) => return Err(io_error("create", &path)(e)),
        };
        let bytes = read_bounded(&path, &mut file)?;
        let (chain, tail) = verify_bytes(&path, &bytes)?;
        let mut len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        let mut recovered_tail = None;
        match tail {
            None => {}
            Some(Tail::Torn { line, offset, len }) => {
                return Err(JournalError::TornTail {
                    path,
                    line,
                    offset,
                    len,
                })
            }
            Some(Tail::Unterminated { line }) => {
                file.write_all(b"\n")
                    .and_then(|()| file.sync_data())
                    .map_err(io_error("complete the last line of", &path))?;
                len = len.saturating_add(1);
                recovered_tail = Some(line);
                tracing::warn!(
                    "journal {}: line {line} had no newline (the agent stopped while \
                     writing it); kept it as written",
                    path.display()
                );
            }
        }
        Ok(Journal {
            path,
            file,
            chain,
            len,
            poisoned: false,
            recovered_tail,
            rotate_bytes: ROTATE_BYTES,
        })
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The line number of a last record that [`Journal::open`] found
    /// without its newline and kept (a crash right at the end of an append).
    pub fn recovered_tail(&self) -> Option<u64> {
        self.recovered_tail
    }

    /// Records a run that is about to start: `proposal` and the 32-byte ids
    /// of the directives that formed its quorum, at `at` (unix seconds).
    /// Returns its `seq` once it is durable (written and `fdatasync`ed); run
    /// the hook only then.
    ///
    /// # Errors
    /// [`JournalError::AlreadyStarted`] when the proposal is already in the
    /// journal (at-most-once); [`JournalError::RecordTooLarge`];
    /// [`JournalError::TooLarge`]; [`JournalError::Poisoned`] after a failed
    /// append; [`JournalError::Io`] (the journal is then poisoned). On any
    /// error the hook must not run.
    pub fn append_started(
        &mut self,
        proposal: &Proposal,
        directive_ids: &[[u8; 32]],
        at: u64,
    ) -> Result<u64, JournalError> {
        self.append_started_by(
            proposal,
            &directive_ids
                .iter()
                .map(|id| ([0; 32], *id))
                .collect::<Vec<_>>(),
            false,
            at,
        )
    }

    /// [`Journal::append_started`] keeping each directive's author:
    /// `sources` are (author pubkey, directive id) pairs, 32 bytes each, as
    /// [`crate::core::ack::Ack::sources`] gives them.
    ///
    /// # Errors
    /// As [`Journal::append_started`].
    pub fn append_started_with_voters(
        &mut self,
        proposal: &Proposal,
        sources: &[([u8; 32], [u8; 32])],
        at: u64,
    ) -> Result<u64, JournalError> {
        self.append_started_by(proposal, sources, true, at)
    }

    fn append_started_by(
        &mut self,
        proposal: &Proposal,
        sources: &[([u8; 32], [u8; 32])],
        with_voters: bool,
        at: u64,
    ) -> Result<u64, JournalError> {
        if self.chain.blocks(proposal) {
            let seq = self.chain.proposals.get(proposal).map_or(0, |r| r.seq);
            return Err(JournalError::AlreadyStarted { seq });
        }
        let entry = RawEntry::Started {
            proposal: proposal.clone(),
            directive_ids: sources.iter().map(|(_, id)| hex::encode(id)).collect(),
            voters: if with_voters {
                sources.iter().map(|(pk, _)| hex::encode(pk)).collect()
            } else {
                Vec::new()
            },
        };
        self.append(entry, at)
    }

    /// Allows one more run of `proposal`, whose last run on this node
    /// failed (`qube-agent retry`): appends a retry record with `reason`
    /// (trimmed; 1 to [`MAX_REASON_BYTES`] bytes) at `at` (unix seconds)
    /// and returns its `seq` once durable. The next run makes a new
    /// `started` record; after it, the proposal is blocked again.
    ///
    /// # Errors
    /// [`JournalError::RetryRefused`] when its last run succeeded, is
    /// open, never happened, or already has a retry; the errors of an
    /// append as in [`Journal::append_started`].
    pub fn append_retry(
        &mut self,
        proposal: &Proposal,
        reason: &str,
        at: u64,
    ) -> Result<u64, JournalError> {
        self.retriable(proposal)
            .map_err(JournalError::RetryRefused)?;
        let entry = RawEntry::Retry {
            proposal: proposal.clone(),
            reason: truncated(reason.trim(), MAX_REASON_BYTES),
        };
        self.append(entry, at)
    }

    /// Whether one more run of `proposal` may be allowed
    /// ([`Journal::append_retry`]).
    ///
    /// # Errors
    /// Why not.
    pub fn retriable(&self, proposal: &Proposal) -> Result<(), RetryRefusal> {
        self.chain.retriable(proposal)
    }

    /// Proposals with a retry allowed and not used yet, in proposal order.
    pub fn retries_allowed(&self) -> Vec<Proposal> {
        retries_allowed(&self.chain.proposals)
    }

    /// Every proposal that ran (or is in the checkpoint), with the `seq`
    /// of its last run's `started` (or checkpoint) record, in proposal
    /// order.
    pub fn proposals(&self) -> Vec<(Proposal, u64)> {
        self.chain
            .proposals
            .iter()
            .map(|(p, r)| (p.clone(), r.seq))
            .collect()
    }

    /// Records how the run `seq_started` ended, at `at` (unix seconds);
    /// `error` (only with [`Status::Failure`]) is truncated to
    /// [`MAX_ERROR_BYTES`]. Returns the outcome's `seq` once durable.
    ///
    /// # Errors
    /// [`JournalError::UnknownStarted`], [`JournalError::AlreadyFinished`],
    /// [`JournalError::ErrorWithSuccess`], and the errors of an append as in
    /// [`Journal::append_started`].
    pub fn append_outcome(
        &mut self,
        seq_started: u64,
        status: Status,
        error: Option<&str>,
        at: u64,
    ) -> Result<u64, JournalError> {
        self.append_outcome_with_steps(seq_started, status, error, &[], at)
    }

    /// [`Journal::append_outcome`] with the run's steps: at most
    /// [`MAX_STEPS`] are kept (the first ones), each `name` and `result`
    /// cut at [`MAX_STEP_TEXT_BYTES`] (then `…`).
    ///
    /// # Errors
    /// As [`Journal::append_outcome`].
    pub fn append_outcome_with_steps(
        &mut self,
        seq_started: u64,
        status: Status,
        error: Option<&str>,
        steps: &[StepRecord],
        at: u64,
    ) -> Result<u64, JournalError> {
        match self.chain.runs.get(&seq_started) {
            None => return Err(JournalError::UnknownStarted { seq_started }),
            Some(Some(_)) => return Err(JournalError::AlreadyFinished { seq_started }),
            Some(None) => {}
        }
        if status == Status::Success && error.is_some() {
            return Err(JournalError::ErrorWithSuccess);
        }
        let entry = RawEntry::Outcome {
            seq_started,
            status,
            error: error.map(|e| truncated(e, MAX_ERROR_BYTES)),
            steps: steps
                .iter()
                .take(MAX_STEPS)
                .map(|step| StepRecord {
                    name: truncated(&step.name, MAX_STEP_TEXT_BYTES),
                    result: truncated(&step.result, MAX_STEP_TEXT_BYTES),
                    ..step.clone()
                })
                .collect(),
        };
        self.append(entry, at)
    }

    /// Appends one record durably; poisons the journal on failure.
    fn append(&mut self, entry: RawEntry, at: u64) -> Result<u64, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let seq = self.chain.next_seq();
        let raw = RawRecord {
            seq,
            prev: hex::encode(self.chain.head()),
            at,
            entry,
        };
        let mut line = serde_json::to_vec(&raw).map_err(|e| {
            io_error("encode a record for", &self.path)(io::Error::other(e.to_string()))
        })?;
        if line.len() > MAX_RECORD_BYTES {
            return Err(JournalError::RecordTooLarge { len: line.len() });
        }
        let hash: [u8; 32] = Sha256::digest(&line).into();
        // Re-read what we are about to write, as open() will.
        let record = raw
            .into_record(hash)
            .map_err(|problem| JournalError::Corrupt {
                path: self.path.clone(),
                line: seq,
                problem,
            })?;
        line.push(b'\n');
        let new_len = self
            .len
            .saturating_add(u64::try_from(line.len()).unwrap_or(u64::MAX));
        if new_len > MAX_JOURNAL_BYTES {
            return Err(JournalError::TooLarge {
                path: self.path.clone(),
            });
        }
        if let Err(e) = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
        {
            // Whatever reached the file, it cannot be trusted now: cut it
            // back (best effort) and refuse further appends.
            self.poisoned = true;
            let _ = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            return Err(io_error("append to", &self.path)(e));
        }
        self.len = new_len;
        let mut chain = self.chain.clone();
        match chain.push_record(record) {
            Ok(()) => self.chain = chain,
            Err(problem) => {
                self.poisoned = true;
                return Err(JournalError::Corrupt {
                    path: self.path.clone(),
                    line: seq,
                    problem,
                });
            }
        }
        Ok(seq)
    }

    /// Whether `proposal` has a `started` record or is in the checkpoint
    /// (whatever its outcome), with no retry allowing one more run: it
    /// must not run (again) (`docs/PROTOCOL.md` sections 5.4 and 12).
    pub fn contains(&self, proposal: &Proposal) -> bool {
        self.chain.blocks(proposal)
    }

    /// Whether `proposal` must not run on this node: [`Journal::contains`],
    /// or the same proposal in another wave (other `rollout` and `node`
    /// tags) succeeded here (`docs/PROTOCOL.md` section 5.8). The quorum
    /// engine's "already done".
    pub fn done(&self, proposal: &Proposal) -> bool {
        self.chain.blocks(proposal) || self.chain.succeeded_in_any_wave(proposal)
    }

    /// The runs that started and have no outcome, as `(seq, proposal)` in
    /// journal order. Ask at start, before running anything: each one was
    /// interrupted and must be acknowledged as `failure` with error
    /// `interrupted` (and its outcome appended), never re-run.
    pub fn interrupted(&self) -> Vec<(u64, Proposal)> {
        let open: BTreeSet<u64> = self
            .chain
            .runs
            .iter()
            .filter(|(_, outcome)| outcome.is_none())
            .map(|(&seq, _)| seq)
            .collect();
        self.chain
            .records
            .iter()
            .filter(|r| open.contains(&r.seq))
            .filter_map(|r| match &r.entry {
                Entry::Started { proposal, .. } => Some((r.seq, proposal.clone())),
                _ => None,
            })
            .collect()
    }

    /// Rotates a full journal (longer than [`ROTATE_BYTES`]) into a
    /// checkpoint (`docs/PROTOCOL.md` section 12): the file is kept as
    /// `journal-AT.jsonl` beside it (`at`, unix seconds), and a new journal
    /// takes its place that starts with checkpoint records listing every
    /// proposal that ran, with how its last run ended (followed by a retry
    /// record for each retry not used yet). So a proposal that ran before
    /// never runs again, and the chain restarts at `seq` 1 naming the old
    /// file, its last `seq` and its head. Call it before
    /// [`Journal::append_started`]; it does nothing while a run is open or
    /// when the journal is not full. Returns the kept file's path when it
    /// rotated.
    ///
    /// Every step leaves a verifiable `journal.jsonl` in place: the new
    /// journal is written and synced as `journal.jsonl.next`, the full one
    /// hard-linked to its new name, then the new one renamed over it and
    /// the directory synced.
    ///
    /// # Errors
    /// [`JournalError::Io`] (the journal is then unchanged, or already the
    /// new one if only the directory sync failed); [`JournalError::Poisoned`].
    pub fn rotate_if_full(&mut self, at: u64) -> Result<Option<PathBuf>, JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        let open = self.chain.runs.values().any(Option::is_none);
        if self.len <= self.rotate_bytes || open {
            return Ok(None);
        }
        let dir = match self.path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let kept_name = format!("journal-{at}.jsonl");
        let kept = dir.join(&kept_name);
        let next = dir.join(format!(
            "{}.next",
            self.path.file_name().map_or_else(
                || "journal.jsonl".into(),
                |n| n.to_string_lossy().into_owned()
            )
        ));
        match std::fs::remove_file(&next) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove a stale", &next)(e)),
        }
        let (last_seq, head) = self.head();
        let previous = Previous {
            file: kept_name,
            seq: last_seq,
            head: hex::encode(head),
        };
        let carried: Vec<CheckpointRun> = self
            .chain
            .proposals
            .iter()
            .map(|(proposal, run)| CheckpointRun {
                proposal: proposal.clone(),
                status: run.status.unwrap_or(Status::Failure),
            })
            .collect();
        let mut fresh = Journal::open(&next)?;
        fresh.rotate_bytes = self.rotate_bytes;
        for chunk in carried.chunks(CHECKPOINT_RUNS_PER_RECORD) {
            let entry = RawEntry::Checkpoint {
                previous: previous.clone(),
                runs: chunk.to_vec(),
            };
            fresh.append(entry, at)?;
        }
        if carried.is_empty() {
            let entry = RawEntry::Checkpoint {
                previous: previous.clone(),
                runs: Vec::new(),
            };
            fresh.append(entry, at)?;
        }
        for proposal in self.retries_allowed() {
            fresh.append_retry(&proposal, "allowed in the previous journal", at)?;
        }
        std::fs::hard_link(&self.path, &kept).map_err(io_error("keep the full", &self.path))?;
        std::fs::rename(&next, &self.path).map_err(io_error("replace the full", &self.path))?;
        fresh.path = self.path.clone();
        *self = fresh;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync the directory of", &self.path))?;
        tracing::info!(
            "journal {} rotated: the full journal is kept as {}; the new one starts with a \
             checkpoint of {} proposal(s)",
            self.path.display(),
            kept.display(),
            carried.len()
        );
        Ok(Some(kept))
    }

    /// The record with this `seq`, if any (for example to get the directive
    /// ids of an interrupted run).
    pub fn record(&self, seq: u64) -> Option<&Record> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.chain.records.get(index)
    }

    /// Every record, in order.
    pub fn records(&self) -> &[Record] {
        &self.chain.records
    }

    /// The last `seq` (0 when empty) and the SHA-256 of its line
    /// ([`GENESIS_PREV`] when empty): the chain head, to log or publish so
    /// that a later edit of the last record shows too.
    pub fn head(&self) -> (u64, [u8; 32]) {
        (
            self.chain.records.last().map_or(0, |r| r.seq),
            self.chain.head(),
        )
    }

    /// Re-reads the file from disk, verifies the whole chain again and checks
    /// that it is exactly what this journal wrote and read. Returns the
    /// number of records.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] with the line number, or
    /// [`JournalError::TornTail`], when the file no longer verifies;
    /// [`JournalError::ChangedOnDisk`] when it verifies but differs (for
    /// instance records were appended by someone else, or removed from the
    /// end); [`JournalError::Io`], [`JournalError::TooLarge`].
    pub fn verify(&self) -> Result<usize, JournalError> {
        let mut file = File::open(&self.path).map_err(io_error("open", &self.path))?;
        let bytes = read_bounded(&self.path, &mut file)?;
        let (chain, tail) = verify_bytes(&self.path, &bytes)?;
        match tail {
            None => {}
            Some(Tail::Torn { line, offset, len }) => {
                return Err(JournalError::TornTail {
                    path: self.path.clone(),
                    line,
                    offset,
                    len,
                })
            }
            Some(Tail::Unterminated { .. }) => {
                return Err(JournalError::ChangedOnDisk {
                    path: self.path.clone(),
                })
            }
        }
        if chain.records != self.chain.records {
            return Err(JournalError::ChangedOnDisk {
                path: self.path.clone(),
            });
        }
        Ok(chain.records.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directive::Action;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn proposal(version: &str) -> Proposal {
        Proposal {
            action: Action::Upgrade,
            network: "hqz".into(),
            version: version.into(),
            hash: HASH.into(),
            genesis_url: None,
            required_by: None,
            rollout: None,
            nodes: Vec::new(),
        }
    }

    fn line(seq: u64, prev: &[u8; 32], entry: &str) -> String {
        format!(
            "{{\"seq\":{seq},\"prev\":\"{}\",\"at\":5,\"entry\":{entry}}}",
            hex::encode(prev)
        )
    }

    fn started(version: &str) -> String {
        format!(
            "{{\"started\":{{\"proposal\":{{\"action\":\"upgrade\",\"network\":\"hqz\",\
             \"version\":\"{version}\",\"hash\":\"{HASH}\"}},\"directive_ids\":[]}}}}"
        )
    }

    fn verify(text: &str) -> Result<(Chain, Option<Tail>), JournalError> {
        verify_bytes(Path::new("j"), text.as_bytes())
    }

    fn corruption(text: &str) -> (u64, Corruption) {
        match verify(text) {
            Err(JournalError::Corrupt { line, problem, .. }) => (line, problem),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_journal_verifies() {
        let (chain, tail) = verify("").unwrap();
        assert!(chain.records.is_empty());
        assert_eq!(tail, None);
        assert_eq!(chain.head(), GENESIS_PREV);
    }

    #[test]
    fn hand_written_chain_verifies_and_hashes_lines_without_newline() {
        let l1 = line(1, &GENESIS_PREV, &started("1.0.0"));
        let h1: [u8; 32] = Sha256::digest(l1.as_bytes()).into();
        let l2 = line(
            2,
            &h1,
            "{\"outcome\":{\"seq_started\":1,\"status\":\"failure\",\"error\":\"boom\"}}",
        );
        let (chain, tail) = verify(&format!("{l1}\n{l2}\n")).unwrap();
        assert_eq!(tail, None);
        assert_eq!(chain.records.len(), 2);
        assert_eq!(chain.records[1].prev, h1);
        assert_eq!(
            chain.records[1].entry,
            Entry::Outcome {
                seq_started: 1,
                status: Status::Failure,
                error: Some("boom".into()),
                // A record without `steps`, as older agents wrote it.
                steps: Vec::new(),
            }
        );
        assert_eq!(chain.runs.get(&1), Some(&Some(2)));
    }

    #[test]
    fn strict_parsing() {
        let cases = [
            line(1, &GENESIS_PREV, &started("1.0")),
            line(1, &GENESIS_PREV, &started("1.0.0")).replace("\"at\":5", "\"at\":5,\"x\":1"),
            line(1, &GENESIS_PREV, &started("1.0.0")).replace("upgrade", "downgrade"),
            line(1, &GENESIS_PREV, &started("1.0.0")).replace(HASH, &HASH.to_uppercase()),
            line(1, &GENESIS_PREV, &started("1.0.0"))
                .replace("\"directive_ids\":[]", "\"directive_ids\":[\"ab\"]"),
            line(
                1,
                &GENESIS_PREV,
                "{\"outcome\":{\"seq_started\":1,\"status\":\"success\",\"extra\":1}}",
            ),
        ];
        for text in cases {
            let (line_no, problem) = corruption(&format!("{text}\n"));
            assert_eq!(line_no, 1, "{text}");
            assert!(
                matches!(problem, Corruption::Parse(_) | Corruption::BadField { .. }),
                "{text}: {problem:?}"
            );
        }
    }

    #[test]
    fn outcomes_must_match_an_open_started_record() {
        let l1 = line(1, &GENESIS_PREV, &started("1.0.0"));
        let h1: [u8; 32] = Sha256::digest(l1.as_bytes()).into();
        let unknown = line(
            2,
            &h1,
            "{\"outcome\":{\"seq_started\":7,\"status\":\"success\"}}",
        );
        assert_eq!(
            corruption(&format!("{l1}\n{unknown}\n")),
            (2, Corruption::UnknownStarted { seq_started: 7 })
        );
        let with_error = line(
            2,
            &h1,
            "{\"outcome\":{\"seq_started\":1,\"status\":\"success\",\"error\":\"x\"}}",
        );
        assert!(matches!(
            corruption(&format!("{l1}\n{with_error}\n")),
            (2, Corruption::BadField { field: "error", .. })
        ));
        let done = line(
            2,
            &h1,
            "{\"outcome\":{\"seq_started\":1,\"status\":\"success\"}}",
        );
        let h2: [u8; 32] = Sha256::digest(done.as_bytes()).into();
        let again = line(
            3,
            &h2,
            "{\"outcome\":{\"seq_started\":1,\"status\":\"failure\"}}",
        );
        assert_eq!(
            corruption(&format!("{l1}\n{done}\n{again}\n")),
            (
                3,
                Corruption::DuplicateOutcome {
                    seq_started: 1,
                    first: 2
                }
            )
        );
    }

    #[test]
    fn empty_and_overlong_lines() {
        let l1 = line(1, &GENESIS_PREV, &started("1.0.0"));
        assert_eq!(corruption(&format!("{l1}\n\n")), (2, Corruption::EmptyLine));
        let long = "x".repeat(MAX_RECORD_BYTES + 1);
        assert_eq!(
            corruption(&format!("{long}\n")),
            (
                1,
                Corruption::TooLong {
                    len: MAX_RECORD_BYTES + 1
                }
            )
        );
        assert_eq!(
            verify_bytes(Path::new("j"), b"\xff\n")
                .err()
                .map(|e| e.to_string()),
            Some(
                "journal j does not verify at line 1: not UTF-8; it was corrupted or \
                 tampered with, refusing to start (compare it with a backup)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn tails() {
        let l1 = line(1, &GENESIS_PREV, &started("1.0.0"));
        let h1: [u8; 32] = Sha256::digest(l1.as_bytes()).into();
        let l2 = line(2, &h1, &started("2.0.0"));
        // Complete record without its newline: kept.
        let (chain, tail) = verify(&format!("{l1}\n{l2}")).unwrap();
        assert_eq!(tail, Some(Tail::Unterminated { line: 2 }));
        assert_eq!(chain.records.len(), 2);
        // Cut in the middle, or zero bytes: torn, not in the chain.
        let cut = &l2[..l2.len() / 2];
        let offset = u64::try_from(l1.len() + 1).unwrap();
        for torn in [cut.to_owned(), "\0".repeat(40)] {
            let (chain, tail) = verify(&format!("{l1}\n{torn}")).unwrap();
            assert_eq!(chain.records.len(), 1);
            assert_eq!(
                tail,
                Some(Tail::Torn {
                    line: 2,
                    offset,
                    len: torn.len()
                })
            );
        }
        // A complete but out-of-chain last line is tampering, not a tear.
        let wrong = line(3, &h1, &started("2.0.0"));
        assert!(matches!(
            corruption(&format!("{l1}\n{wrong}")),
            (
                2,
                Corruption::Seq {
                    expected: 2,
                    found: 3
                }
            )
        ));
    }

    #[test]
    fn voters_are_kept_beside_directive_ids_and_must_pair_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let mut journal = Journal::open(&path).unwrap();
        let sources = [([7; 32], [1; 32]), ([8; 32], [2; 32])];
        journal
            .append_started_with_voters(&proposal("1.0.0"), &sources, 1)
            .unwrap();
        journal
            .append_started(&proposal("2.0.0"), &[[3; 32]], 2)
            .unwrap();
        drop(journal);
        let journal = Journal::open(&path).unwrap();
        let Some(Entry::Started {
            directive_ids,
            voters,
            ..
        }) = journal.record(1).map(|r| r.entry.clone())
        else {
            panic!("no started record")
        };
        assert_eq!(
            (directive_ids, voters),
            (vec![[1; 32], [2; 32]], vec![[7; 32], [8; 32]])
        );
        // Written without voters (as older agents did): none, not zeros.
        let Some(Entry::Started { voters, .. }) = journal.record(2).map(|r| r.entry.clone()) else {
            panic!("no started record")
        };
        assert!(voters.is_empty());
        // One voter for two directive ids is corruption.
        let odd = format!(
            "{{\"started\":{{\"proposal\":{{\"action\":\"upgrade\",\"network\":\"hqz\",\
             \"version\":\"1.0.0\",\"hash\":\"{HASH}\"}},\"directive_ids\":[\"{}\",\"{}\"],\
             \"voters\":[\"{}\"]}}}}",
            "11".repeat(32),
            "22".repeat(32),
            "77".repeat(32)
        );
        assert!(matches!(
            corruption(&line(1, &GENESIS_PREV, &odd)),
            (
                1,
                Corruption::BadField {
                    field: "voters",
                    ..
                }
            )
        ));
    }

    #[test]
    fn appends_are_refused_after_misuse() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path().join("j")).unwrap();
        let seq = journal.append_started(&proposal("1.0.0"), &[], 1).unwrap();
        assert!(matches!(
            journal.append_started(&proposal("1.0.0"), &[], 2),
            Err(JournalError::AlreadyStarted { seq: 1 })
        ));
        assert!(matches!(
            journal.append_outcome(seq, Status::Success, Some("x"), 2),
            Err(JournalError::ErrorWithSuccess)
        ));
        assert!(matches!(
            journal.append_outcome(9, Status::Success, None, 2),
            Err(JournalError::UnknownStarted { seq_started: 9 })
        ));
        journal
            .append_outcome(seq, Status::Success, None, 2)
            .unwrap();
        assert!(matches!(
            journal.append_outcome(seq, Status::Failure, None, 3),
            Err(JournalError::AlreadyFinished { seq_started: 1 })
        ));
        assert_eq!(journal.verify().unwrap(), 2);
    }

    #[test]
    fn long_errors_are_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path().join("j")).unwrap();
        let seq = journal.append_started(&proposal("1.0.0"), &[], 1).unwrap();
        let long = "é".repeat(MAX_ERROR_BYTES);
        journal
            .append_outcome(seq, Status::Failure, Some(&long), 2)
            .unwrap();
        let Entry::Outcome {
            error: Some(error), ..
        } = &journal.records()[1].entry
        else {
            panic!()
        };
        assert!(error.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(error.ends_with('…'));
        drop(journal);
        let journal = Journal::open(dir.path().join("j")).unwrap();
        assert_eq!(journal.records().len(), 2);
    }

    #[test]
    fn a_retry_allows_exactly_one_more_run_after_a_failure_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        let (failed, good) = (proposal("v1.0.0"), proposal("v2.0.0"));
        assert!(matches!(
            j.append_retry(&failed, "why", 1),
            Err(JournalError::RetryRefused(RetryRefusal::NeverRan))
        ));
        let s = j.append_started(&failed, &[], 1).unwrap();
        assert!(matches!(
            j.append_retry(&failed, "why", 1),
            Err(JournalError::RetryRefused(RetryRefusal::Open))
        ));
        j.append_outcome(s, Status::Failure, Some("fetch failed"), 2)
            .unwrap();
        let g = j.append_started(&good, &[], 3).unwrap();
        j.append_outcome(g, Status::Success, None, 4).unwrap();
        assert!(matches!(
            j.append_retry(&good, "why", 5),
            Err(JournalError::RetryRefused(RetryRefusal::Succeeded))
        ));
        assert!(j.contains(&failed));
        j.append_retry(&failed, "  mirror was down  ", 5).unwrap();
        assert!(!j.contains(&failed));
        assert_eq!(j.retries_allowed(), vec![failed.clone()]);
        assert!(matches!(
            j.append_retry(&failed, "again", 6),
            Err(JournalError::RetryRefused(RetryRefusal::AlreadyAllowed))
        ));
        // The one more run, then blocked again.
        let again = j.append_started(&failed, &[], 7).unwrap();
        assert!(j.contains(&failed));
        assert!(j.retries_allowed().is_empty());
        assert!(matches!(
            j.append_started(&failed, &[], 8),
            Err(JournalError::AlreadyStarted { seq }) if seq == again
        ));
        j.append_outcome(again, Status::Failure, Some("x"), 8)
            .unwrap();
        drop(j);
        // The file verifies with the same verdicts; the reason is trimmed.
        let j = Journal::open(&path).unwrap();
        assert!(j.contains(&failed) && j.contains(&good));
        let reasons: Vec<&str> = j
            .records()
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Retry { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, ["mirror was down"]);
        assert_eq!(j.retriable(&failed), Ok(()));
    }

    #[test]
    fn chain_rules_for_retries_checkpoints_and_second_starts() {
        let z = GENESIS_PREV;
        let h = |l: &str| -> [u8; 32] { Sha256::digest(l.as_bytes()).into() };
        // A second started record without a retry.
        let l1 = line(1, &z, &started("v1.0.0"));
        let l2 = line(2, &h(&l1), &started("v1.0.0"));
        assert_eq!(
            corruption(&format!("{l1}\n{l2}\n")),
            (2, Corruption::StartedAgain { first: 1 })
        );
        // A retry of a run that succeeded.
        let l2 = line(
            2,
            &h(&l1),
            r#"{"outcome":{"seq_started":1,"status":"success"}}"#,
        );
        let retry = format!(
            r#"{{"retry":{{"proposal":{{"action":"upgrade","network":"hqz","version":"v1.0.0","hash":"{HASH}"}},"reason":"r"}}}}"#
        );
        let l3 = line(3, &h(&l2), &retry);
        assert_eq!(
            corruption(&format!("{l1}\n{l2}\n{l3}\n")),
            (3, Corruption::BadRetry(RetryRefusal::Succeeded))
        );
        // A checkpoint after an ordinary record.
        let checkpoint = format!(
            r#"{{"checkpoint":{{"previous":{{"file":"journal-1.jsonl","seq":9,"head":"{HASH}"}},"runs":[{{"proposal":{{"action":"upgrade","network":"hqz","version":"v0.9.0","hash":"{HASH}"}},"status":"success"}}]}}}}"#
        );
        let l3 = line(3, &h(&l2), &checkpoint);
        assert_eq!(
            corruption(&format!("{l1}\n{l2}\n{l3}\n")),
            (3, Corruption::CheckpointNotAtStart)
        );
        // At the start it verifies, and its proposals count as started.
        let c1 = line(1, &z, &checkpoint);
        let c2 = line(2, &h(&c1), &started("v0.9.0"));
        assert_eq!(
            corruption(&format!("{c1}\n{c2}\n")),
            (2, Corruption::StartedAgain { first: 1 })
        );
        let (chain, _) = verify(&format!("{c1}\n")).unwrap();
        assert!(chain.blocks(&proposal("v0.9.0")));
    }

    #[test]
    fn a_full_journal_rotates_into_a_checkpoint_that_keeps_every_proposal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).unwrap();
        j.rotate_bytes = 2000;
        let count = CHECKPOINT_RUNS_PER_RECORD + 6;
        for i in 0..count {
            let p = proposal(&format!("v0.{i}.0"));
            let s = j.append_started(&p, &[], 10).unwrap();
            let status = if i % 2 == 0 {
                Status::Success
            } else {
                Status::Failure
            };
            let error = (status == Status::Failure).then_some("exit status 1");
            j.append_outcome(s, status, error, 11).unwrap();
        }
        j.append_retry(&proposal("v0.1.0"), "transient", 12)
            .unwrap();
        let (old_seq, old_head) = j.head();
        let old_bytes = std::fs::read(&path).unwrap();
        let kept = j.rotate_if_full(1_800_000_000).unwrap().unwrap();
        assert_eq!(kept, dir.path().join("journal-1800000000.jsonl"));
        assert_eq!(std::fs::read(&kept).unwrap(), old_bytes, "kept as it was");
        assert!(!dir.path().join("journal.jsonl.next").exists());
        // Every proposal is still blocked; the unused retry still allowed.
        for i in 0..count {
            let p = proposal(&format!("v0.{i}.0"));
            assert_eq!(j.contains(&p), i != 1, "{p}");
        }
        assert_eq!(j.retries_allowed(), vec![proposal("v0.1.0")]);
        assert_eq!(j.retriable(&proposal("v0.3.0")), Ok(()));
        assert_eq!(
            j.retriable(&proposal("v0.2.0")),
            Err(RetryRefusal::Succeeded)
        );
        // Two checkpoint records (64 + 6), then the retry.
        let kinds: Vec<&str> = j
            .records()
            .iter()
            .map(|r| match &r.entry {
                Entry::Checkpoint { previous, .. } => {
                    assert_eq!(previous.seq, old_seq);
                    assert_eq!(previous.head, hex::encode(old_head));
                    assert_eq!(previous.file, "journal-1800000000.jsonl");
                    "checkpoint"
                }
                Entry::Retry { .. } => "retry",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["checkpoint", "checkpoint", "retry"]);
        // Appends go to the new file, which verifies when opened again.
        let p = proposal("v9.0.0");
        j.append_started(&p, &[], 20).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.records().len(), 4);
        assert!(j.contains(&proposal("v0.0.0")) && j.contains(&p));
        // Not full any more: nothing to do.
        let mut j = j;
        assert_eq!(j.rotate_if_full(1_800_000_001).unwrap(), None);
    }
}
