//! Telling the operator (design section 8b): the metrics file
//! ([`super::metrics`]). The monitor calls in here at one place per event
//! (a directive offered, an action finished, an iteration of the serve
//! loop); nothing here blocks the serve loop for long: the metrics file is
//! a small local write.
//!
//! Nothing is written in a dry run, which may run beside the agent.

use super::metrics::{DirectiveCounts, LastAction, MetricsFile, RelaySample, Snapshot};
use super::Monitor;
use crate::config::Config;
use crate::core::ack::Status;
use crate::core::directive::Proposal;
use crate::state::journal::{Entry, Journal};

/// What the monitor keeps for telemetry.
#[derive(Debug)]
pub(super) struct Telemetry {
    /// When the agent started, unix seconds.
    started_at: u64,
    /// Directives offered to the engine, by result.
    pub(super) directives: DirectiveCounts,
    /// The last hook run.
    last_action: Option<LastAction>,
    /// `metrics_file`, unless unset or in a dry run.
    metrics: Option<MetricsFile>,
}

/// The last outcome in `journal` and the proposal it belongs to.
fn last_outcome(journal: &Journal) -> Option<LastAction> {
    let records = journal.records();
    let outcome = records
        .iter()
        .rev()
        .find(|r| matches!(r.entry, Entry::Outcome { .. }))?;
    let Entry::Outcome {
        seq_started,
        status,
        error,
    } = &outcome.entry
    else {
        return None;
    };
    let proposal = records.iter().find_map(|r| match &r.entry {
        Entry::Started { proposal, .. } if r.seq == *seq_started => Some(proposal.clone()),
        _ => None,
    })?;
    Some(LastAction {
        proposal,
        status: *status,
        error: error.clone(),
        at: outcome.at,
    })
}

impl Telemetry {
    /// Telemetry for `config`; the last action comes from `journal`
    /// (`None` in a dry run, which also writes nothing).
    pub(super) fn new(config: &Config, journal: Option<&Journal>, dry_run: bool) -> Telemetry {
        Telemetry {
            started_at: crate::now(),
            directives: DirectiveCounts::default(),
            last_action: journal.and_then(last_outcome),
            metrics: config
                .metrics_file()
                .filter(|_| !dry_run)
                .map(|p| MetricsFile::new(p.to_path_buf())),
        }
    }

    /// When the serve loop must call [`Monitor::telemetry_tick`] again
    /// although nothing happened: the metrics refresh.
    pub(super) fn next_tick(&self) -> Option<tokio::time::Instant> {
        self.metrics
            .as_ref()
            .and_then(MetricsFile::refresh_at)
            .map(tokio::time::Instant::from_std)
    }
}

impl Monitor {
    /// What the metrics show now.
    fn snapshot(&self) -> Snapshot {
        let now = crate::now();
        let (journal, journaled) = (&self.journal, &self.journaled);
        let votes = self
            .engine
            .tally(now, self.installed.as_ref(), &|p: &Proposal| {
                journal
                    .as_ref()
                    .map_or_else(|| journaled.contains(p), |j| j.contains(p))
            })
            .into_iter()
            .map(|s| (s.proposal, s.voters.len()))
            .collect();
        Snapshot {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            network: self.config.network().to_owned(),
            node: self.node_id.clone(),
            node_pubkey: hex::encode(self.keys.public_key()),
            start_time: self.telemetry.started_at,
            relays: self
                .relays
                .iter()
                .map(|r| RelaySample {
                    url: r.url.clone(),
                    connected: r.connected,
                    counters: r.counters,
                })
                .collect(),
            directives: self.telemetry.directives,
            quorum: self.config.quorum(),
            votes,
            last_action: self.telemetry.last_action.clone(),
            worker_restarts: self.restarts,
            sandbox: self.sandbox,
            outbox_pending: self.outbox.len(),
        }
    }

    /// Brings the telemetry up to date after anything happened (called
    /// after every iteration of the serve loop): the metrics file is
    /// written if a value changed or its refresh is due.
    pub(super) fn telemetry_tick(&mut self) {
        if self.telemetry.metrics.is_none() {
            return;
        }
        let snapshot = self.snapshot();
        if let Some(metrics) = self.telemetry.metrics.as_mut() {
            metrics.update(&snapshot, crate::now());
        }
    }

    /// A hook run ended (or was found interrupted at start) with `status`
    /// and `error`, recorded at `at`.
    pub(super) fn action_finished(
        &mut self,
        proposal: &Proposal,
        status: Status,
        error: Option<&str>,
        at: u64,
    ) {
        self.telemetry.last_action = Some(LastAction {
            proposal: proposal.clone(),
            status,
            error: error.map(str::to_owned),
            at,
        });
        self.telemetry_tick();
    }
}
