//! `qube-agent retry`: one more run of a proposal that failed on this node
//! (`docs/PROTOCOL.md` section 12, "Retry").
//!
//! A proposal with a `started` record never runs again, so a transient
//! failure (a mirror down during `fetch`) would otherwise need governance to
//! sign a new version. `retry` appends a retry record with the operator's
//! reason; the agent, at its next start, may then run the proposal once
//! more if its quorum still holds. It never applies to a run that
//! succeeded, takes the state lock (so not while the agent runs), and sends
//! nothing.

use super::MonitorError;
use crate::config::Config;
use crate::core::directive::Proposal;
use crate::state::journal::{Entry, Journal};
use crate::state::StateDir;

/// Allows one more run of the proposal named by `which` on `config`'s
/// node, journaling `reason` at `now` (unix seconds); returns the
/// proposal.
///
/// `which` is the `seq` of one of its records as `qube-agent journal` lists
/// them (its `started` or `outcome` record), or its version exactly as
/// signed (e.g. `v1.2.3`) when exactly one proposal with that version may
/// be retried.
///
/// # Errors
/// [`MonitorError::Retry`] when `which` names no proposal or more than
/// one; [`MonitorError::Journal`] with
/// [`JournalError::RetryRefused`](crate::state::journal::JournalError::RetryRefused)
/// when its last run succeeded, is open or already has a retry;
/// [`MonitorError::JournalMissing`] without a journal;
/// [`MonitorError::State`] when the state directory is missing or locked
/// by a running agent.
pub fn retry(
    config: &Config,
    which: &str,
    reason: &str,
    now: u64,
) -> Result<Proposal, MonitorError> {
    let state = StateDir::open_existing(config.state_dir())?;
    let _lock = state.lock()?;
    let path = state.journal_path();
    if !path.exists() {
        return Err(MonitorError::JournalMissing(path));
    }
    let mut journal = Journal::open(&path)?;
    let proposal = find(&journal, which)?;
    journal.append_retry(&proposal, reason, now)?;
    Ok(proposal)
}

/// The proposal `which` names in `journal` (see [`retry`]).
fn find(journal: &Journal, which: &str) -> Result<Proposal, MonitorError> {
    if !which.is_empty() && which.bytes().all(|b| b.is_ascii_digit()) {
        let seq: u64 = which
            .parse()
            .map_err(|_| MonitorError::Retry(format!("{which} is not a journal seq")))?;
        let entry = journal.record(seq).map(|r| &r.entry);
        let started = match entry {
            Some(Entry::Outcome { seq_started, .. }) => {
                journal.record(*seq_started).map(|r| &r.entry)
            }
            other => other,
        };
        return match started {
            Some(Entry::Started { proposal, .. } | Entry::Retry { proposal, .. }) => {
                Ok(proposal.clone())
            }
            Some(Entry::Checkpoint { .. }) => Err(MonitorError::Retry(format!(
                "record {seq} is a checkpoint of several proposals: name the proposal by its \
                 version"
            ))),
            _ => Err(MonitorError::Retry(format!(
                "the journal has no record {seq} (see `qube-agent journal`)"
            ))),
        };
    }
    let named: Vec<(Proposal, u64)> = journal
        .proposals()
        .into_iter()
        .filter(|(p, _)| p.version == which)
        .collect();
    let retriable: Vec<&(Proposal, u64)> = named
        .iter()
        .filter(|(p, _)| journal.retriable(p).is_ok())
        .collect();
    match (retriable.as_slice(), named.as_slice()) {
        ([(p, _)], _) => Ok(p.clone()),
        ([], []) => Err(MonitorError::Retry(format!(
            "no proposal with version {which:?} ran on this node (see `qube-agent journal`)"
        ))),
        // Let the journal say why the one it names cannot be retried.
        ([], [(p, _)]) => Ok(p.clone()),
        ([], _) => Err(MonitorError::Retry(format!(
            "none of the proposals with version {which:?} may be retried (each succeeded, is \
             open or already has a retry; see `qube-agent journal`)"
        ))),
        (several, _) => Err(MonitorError::Retry(format!(
            "{} failed proposals have version {which:?}; name one by the seq of its record: {}",
            several.len(),
            several
                .iter()
                .map(|(p, seq)| format!("{seq} ({p})"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
