//! Telling the operator (design section 8b): the metrics file
//! ([`super::metrics`]), systemd readiness, watchdog and status
//! ([`super::systemd`]), heartbeats ([`super::heartbeat`]) and alerts
//! ([`super::alert`]). The monitor calls in here at one place per event
//! (a directive offered, an action finished, an iteration of the serve
//! loop); nothing here blocks the serve loop for long: the metrics file is
//! a small local write, notifications go through a queue.
//!
//! Nothing is written in a dry run, which may run beside the agent.

use std::future::Future;

use super::alert::Alerts;
use super::heartbeat::HeartbeatState;
use super::metrics::{DirectiveCounts, LastAction, MetricsFile, RelaySample, Snapshot};
use super::systemd::Notifier;
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
    /// The service manager, when `NOTIFY_SOCKET` is set (never in a dry
    /// run).
    notifier: Option<Notifier>,
    /// `READY=1` was sent (once per agent, not per worker).
    ready_sent: bool,
    /// The last `STATUS=` sent.
    status: String,
    /// When `WATCHDOG=1` is due next.
    next_watchdog: Option<tokio::time::Instant>,
    /// Heartbeats, unless `[heartbeat] relays` is empty or in a dry run.
    pub(super) heartbeat: Option<HeartbeatState>,
    /// Alerts (the hook only when `[alert]` is set and not in a dry run).
    pub(super) alerts: Alerts,
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
        ..
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
        let notifier = if dry_run { None } else { Notifier::from_env() };
        Telemetry {
            next_watchdog: notifier
                .as_ref()
                .and_then(Notifier::watchdog_interval)
                .map(|_| tokio::time::Instant::now()),
            notifier,
            heartbeat: if dry_run {
                None
            } else {
                HeartbeatState::new(
                    config.heartbeat().relays(),
                    std::time::Duration::from_secs(config.heartbeat().interval_secs()),
                )
            },
            alerts: Alerts::new(config.alert().filter(|_| !dry_run).cloned()),
            ready_sent: false,
            status: String::new(),
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
        let refresh = self
            .metrics
            .as_ref()
            .and_then(MetricsFile::refresh_at)
            .map(tokio::time::Instant::from_std);
        [refresh, self.next_watchdog].into_iter().flatten().min()
    }

    /// When the agent started, unix seconds.
    pub(super) fn started_at(&self) -> u64 {
        self.started_at
    }

    /// The last hook run, if any.
    pub(super) fn last_action(&self) -> Option<&LastAction> {
        self.last_action.as_ref()
    }

    /// Sends `WATCHDOG=1` if it is due.
    fn watchdog(&mut self) {
        let (Some(notifier), Some(due)) = (&self.notifier, self.next_watchdog) else {
            return;
        };
        let now = tokio::time::Instant::now();
        if now >= due {
            notifier.watchdog();
            self.next_watchdog = notifier.watchdog_interval().map(|i| now + i);
        }
    }

    /// Awaits `work` (a hook run, a restart delay) while keeping the
    /// watchdog fed and `STATUS=` set to `status`: the serve loop is
    /// legitimately busy, not stuck, and `work` has its own time limit.
    pub(super) async fn while_running<F: Future>(&self, status: &str, work: F) -> F::Output {
        let Some(notifier) = &self.notifier else {
            return work.await;
        };
        notifier.status(status);
        let Some(interval) = notifier.watchdog_interval() else {
            return work.await;
        };
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = tokio::time::sleep(interval) => notifier.watchdog(),
            }
        }
    }
}

impl Monitor {
    /// When the serve loop must call [`Monitor::telemetry_tick`] and
    /// [`Monitor::publish_heartbeat_if_due`] although nothing happened.
    pub(super) fn next_telemetry_tick(&self) -> Option<tokio::time::Instant> {
        let heartbeat = self
            .telemetry
            .heartbeat
            .as_ref()
            .filter(|_| self.worker_ready())
            .map(HeartbeatState::due_at);
        [
            self.telemetry.next_tick(),
            heartbeat,
            self.telemetry.alerts.relays_down_at(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What the metrics show now.
    fn snapshot(&self) -> Snapshot {
        let now = crate::now();
        let votes = self
            .engine
            .tally(now, self.installed.as_ref(), &|p: &Proposal| {
                self.already_done(p)
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
            scheduled: self.scheduled_deadline(),
            worker_restarts: self.restarts,
            sandbox: self.sandbox,
            outbox_pending: self.outbox.len(),
        }
    }

    /// Brings the telemetry up to date after anything happened (called
    /// after every iteration of the serve loop): the metrics file is
    /// written if a value changed or its refresh is due.
    pub(super) fn telemetry_tick(&mut self) {
        self.telemetry.watchdog();
        self.check_alerts();
        self.notify_status();
        if self.telemetry.metrics.is_none() {
            return;
        }
        let snapshot = self.snapshot();
        if let Some(metrics) = self.telemetry.metrics.as_mut() {
            metrics.update(&snapshot, crate::now());
        }
    }

    /// The one-line `STATUS=`: relays, sandbox, votes, last action,
    /// restarts.
    fn status_line(&self) -> String {
        let connected = self.relays.iter().filter(|r| r.connected).count();
        let sandbox = self.sandbox.map_or("not reported", |s| s.as_str());
        let voters: std::collections::BTreeSet<&[u8; 32]> =
            self.engine.directives().map(|d| d.author()).collect();
        let last = self.telemetry.last_action.as_ref().map_or_else(
            || "no action yet".to_owned(),
            |a| {
                format!(
                    "last action {} {} {}",
                    a.proposal.action.as_str(),
                    a.proposal.version,
                    a.status.as_str()
                )
            },
        );
        crate::core::text::printable(
            &format!(
                "{connected}/{} relays connected; sandbox {sandbox}; {} voters with a current directive; {last}; {} worker restarts",
                self.relays.len(),
                voters.len(),
                self.restarts
            ),
            256,
        )
    }

    /// `READY=1` once the current worker reported its sandbox and the
    /// relays' stored directives are in (or the sync deadline passed);
    /// `STATUS=` whenever the summary changes.
    fn notify_status(&mut self) {
        if self.telemetry.notifier.is_none() {
            return;
        }
        let ready = !self.telemetry.ready_sent && self.worker_ready();
        let status = self.status_line();
        if !ready && status == self.telemetry.status {
            return;
        }
        if let Some(notifier) = &self.telemetry.notifier {
            if ready {
                notifier.ready(&status);
                self.telemetry.ready_sent = true;
            } else {
                notifier.status(&status);
            }
        }
        self.telemetry.status = status;
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
        if let Some(hb) = self.telemetry.heartbeat.as_mut() {
            hb.due_now();
        }
        if status == Status::Failure {
            self.alert_action_failed(proposal, error);
        }
        self.telemetry_tick();
    }
}
