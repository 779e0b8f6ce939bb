//! The `journal` report: the journal's verdict and records (`status` shows
//! them too), how they are read, and their text (the JSON shape is in the
//! [`crate::report`] docs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    load_config, open_state, printable, utc_iso8601, CommandOutput, ReportError, ShowProposal,
};
use crate::config::Config;
use crate::core::directive::Proposal;
use crate::state::journal::{
    self, CheckpointRun, Entry, Inspection, JournalError, Previous, Record, StepRecord,
};
use crate::state::StateDir;

// ---------------------------------------------------------------------------
// Views (the JSON shapes)
// ---------------------------------------------------------------------------

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordView {
    /// Position from 1 (the line number).
    pub seq: u64,
    /// When it was written, unix seconds.
    pub at: u64,
    /// `at` in ISO 8601, UTC.
    pub at_utc: String,
    /// `started`, `outcome`, `retry` or `checkpoint`.
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
    /// For an outcome: the run's steps in order (empty for records of
    /// older agents).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// For a retry record: the operator's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a checkpoint record: the full journal it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// For a checkpoint record: the proposals carried over, with how their
    /// last run ended.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<CheckpointRun>,
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
pub(super) struct JournalRead {
    path: PathBuf,
    exists: bool,
    pub(super) result: Result<Inspection, JournalError>,
}

impl JournalRead {
    pub(super) fn new(state: &StateDir) -> JournalRead {
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

    pub(super) fn records(&self) -> &[Record] {
        self.result.as_ref().map_or(&[], |i| i.records.as_slice())
    }

    /// Whether the journal blocks `proposal` ([`Inspection::done`]);
    /// `false` when it does not verify.
    pub(super) fn contains(&self, proposal: &Proposal) -> bool {
        self.result.as_ref().is_ok_and(|i| i.done(proposal))
    }

    /// Proposals allowed one more run ([`Inspection::retries_allowed`]).
    pub(super) fn retries_allowed(&self) -> Vec<Proposal> {
        self.result
            .as_ref()
            .map_or_else(|_| Vec::new(), Inspection::retries_allowed)
    }

    /// The view, with the last `keep` records (all with `None`).
    pub(super) fn view(&self, keep: Option<usize>) -> JournalView {
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
            _ => None,
        })
        .collect();
    let finished: BTreeSet<u64> = records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Outcome { seq_started, .. } => Some(*seq_started),
            _ => None,
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
                steps: Vec::new(),
                reason: None,
                previous: None,
                carried: Vec::new(),
            };
            match &r.entry {
                Entry::Started {
                    proposal,
                    directive_ids,
                    ..
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
                    steps,
                } => RecordView {
                    entry: "outcome",
                    proposal: started.get(seq_started).map(|p| (*p).clone()),
                    seq_started: Some(*seq_started),
                    status: Some(status.as_str()),
                    error: error.clone(),
                    steps: steps.clone(),
                    ..base
                },
                Entry::Retry { proposal, reason } => RecordView {
                    entry: "retry",
                    proposal: Some(proposal.clone()),
                    reason: Some(reason.clone()),
                    ..base
                },
                Entry::Checkpoint { previous, runs } => RecordView {
                    entry: "checkpoint",
                    previous: Some(previous.clone()),
                    carried: runs.clone(),
                    ..base
                },
            }
        })
        .collect()
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

impl JournalReport {
    /// The report as one pretty-printed JSON object (see the [`crate::report`]
    /// docs).
    ///
    /// # Errors
    /// As [`StatusReport::to_json`](super::StatusReport::to_json).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The verdict alone as a JSON object (`journal --verify --json`).
    ///
    /// # Errors
    /// As [`StatusReport::to_json`](super::StatusReport::to_json).
    pub fn verdict_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&self.journal.verdict)
    }
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

/// One journal record as a line.
pub(super) fn write_record(f: &mut fmt::Formatter<'_>, r: &RecordView) -> fmt::Result {
    write!(f, "  {:>5}  {}  {:<7}  ", r.seq, r.at_utc, r.entry)?;
    if let Some(status) = r.status {
        write!(f, "{status}  ")?;
    }
    if let Some(seq) = r.seq_started {
        write!(f, "of seq {seq}: ")?;
    }
    if let Some(previous) = &r.previous {
        writeln!(
            f,
            "continues {} (last seq {}, head {}): {} proposal(s) carried over",
            printable(&previous.file),
            previous.seq,
            printable(&previous.head),
            r.carried.len()
        )?;
        for run in &r.carried {
            writeln!(
                f,
                "           {} {}",
                run.status.as_str(),
                ShowProposal(&run.proposal)
            )?;
        }
        return Ok(());
    }
    match &r.proposal {
        Some(p) => write!(f, "{}", ShowProposal(p))?,
        None => f.write_str("(unknown proposal)")?,
    }
    if let Some(reason) = &r.reason {
        write!(f, "  one more run allowed: {}", printable(reason))?;
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
    writeln!(f)?;
    for step in &r.steps {
        writeln!(
            f,
            "           step {}: {} at {} ({} ms, {} run(s))",
            printable(&step.name),
            printable(&step.result),
            utc_iso8601(step.at),
            step.ms,
            step.runs
        )?;
    }
    Ok(())
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
// Command
// ---------------------------------------------------------------------------

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
