//! `qube-agent reset`: a deliberate, journaled new start for a node whose
//! journal is lost (`docs/PROTOCOL.md` section 12).
//!
//! Without its journal a node cannot know what already ran, so `run`
//! refuses to start ([`super::MonitorError::JournalMissing`]). `reset`
//! starts a new journal in which every proposal of the saved directives
//! (expired ones included) has a `started` record and a `failure` outcome
//! `reset: REASON`: none of them runs on this node again, unless the
//! operator deliberately allows it. It never replaces an existing journal,
//! takes the state lock (so not while the agent runs), sends nothing and
//! acknowledges nothing.

use std::collections::BTreeMap;

use super::MonitorError;
use crate::config::Config;
use crate::core::ack::{Ack, Status};
use crate::core::directive::{Directive, Proposal};
use crate::state::journal::Journal;
use crate::state::StateDir;

/// Longest `--reason`, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// Starts a new journal for `config`'s state directory at `now` (unix
/// seconds) that marks every proposal of the saved directives as never to
/// run; returns those proposals.
///
/// # Errors
/// [`MonitorError::JournalExists`] when there is a journal;
/// [`MonitorError::State`] when the state directory is missing, locked by
/// a running agent, or its directives cannot be read;
/// [`MonitorError::Journal`] when the journal cannot be written.
pub fn reset(config: &Config, reason: &str, now: u64) -> Result<Vec<Proposal>, MonitorError> {
    let state = StateDir::open_existing(config.state_dir())?;
    let _lock = state.lock()?;
    let path = state.journal_path();
    if path.exists() {
        return Err(MonitorError::JournalExists(path));
    }
    let (directives, _dropped) =
        state.load_directives(&config.directive_rules(), now, &config.voter_keys())?;
    let mut proposals: BTreeMap<Proposal, Vec<Directive>> = BTreeMap::new();
    for d in directives {
        proposals.entry(d.proposal().clone()).or_default().push(d);
    }
    let mut journal = Journal::open(&path)?;
    let error = format!("reset: {reason}");
    for (proposal, directives) in &proposals {
        let seq = journal.append_started_with_voters(proposal, &Ack::sources(directives), now)?;
        journal.append_outcome(seq, Status::Failure, Some(&error), now)?;
    }
    Ok(proposals.into_keys().collect())
}
