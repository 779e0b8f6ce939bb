//! The alert hook (`[alert]`, design section 8b): the operator's argv, run
//! under the hooks' execution contract ([`super::exec::run_step`]: no
//! shell, a clean environment, a time limit, output captured and logged)
//! when something needs a person. It acts on nothing, so it needs no
//! quorum and no journal.
//!
//! Every alert is logged at warn level. The hook runs on a task of its own,
//! so the serve loop never waits for it, and at most once per kind of alert
//! in `alert.min_interval_secs`; alerts in between are only logged.
//!
//! Its environment: `PATH` ([`super::exec::HOOK_PATH`]), `QUBE_ALERT` (the
//! kind: `action_failed`, `conflict`, `sandbox`, `relays_down`,
//! `worker_restarts`), `QUBE_ALERT_MESSAGE` (one line), `QUBE_NETWORK`,
//! `QUBE_NODE_ID`; for `action_failed` also `QUBE_ACTION`, `QUBE_VERSION`,
//! `QUBE_HASH` and `QUBE_ERROR` (the ack's error).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::exec::{self, ExecEnv};
use super::Monitor;
use crate::config::AlertConfig;
use crate::core::directive::Proposal;
use crate::core::text::printable;

/// What an alert is about (`QUBE_ALERT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum AlertKind {
    /// A hook run failed or rolled back.
    ActionFailed,
    /// Quorums for different proposals at the same version: nothing runs.
    Conflict,
    /// The worker's sandbox is not fully enforced.
    Sandbox,
    /// Every relay has been disconnected for `alert.relays_down_secs`.
    RelaysDown,
    /// The worker was restarted `alert.worker_restarts` more times.
    WorkerRestarts,
}

impl AlertKind {
    fn as_str(self) -> &'static str {
        match self {
            AlertKind::ActionFailed => "action_failed",
            AlertKind::Conflict => "conflict",
            AlertKind::Sandbox => "sandbox",
            AlertKind::RelaysDown => "relays_down",
            AlertKind::WorkerRestarts => "worker_restarts",
        }
    }
}

/// The alert state: the hook, when each kind last ran, and the conditions
/// that are watched over time.
#[derive(Debug, Default)]
pub(super) struct Alerts {
    /// `[alert]`, unless unset or in a dry run (then alerts are only
    /// logged).
    hook: Option<AlertConfig>,
    last_run: HashMap<AlertKind, Instant>,
    /// Since when every relay is disconnected; `None` while one is up.
    all_down_since: Option<Instant>,
    /// This outage was alerted.
    all_down_alerted: bool,
    /// Worker restarts at the last restart alert.
    restarts_alerted: u32,
}

impl Alerts {
    /// Alerts through `hook` (`None`: logged only).
    pub(super) fn new(hook: Option<AlertConfig>) -> Alerts {
        Alerts {
            hook,
            ..Alerts::default()
        }
    }

    /// When the relays-down alert falls due, if every relay is down.
    pub(super) fn relays_down_at(&self) -> Option<Instant> {
        let since = self.all_down_since?;
        (!self.all_down_alerted).then(|| since + self.relays_down_after())
    }

    fn relays_down_after(&self) -> Duration {
        Duration::from_secs(
            self.hook
                .as_ref()
                .map_or(crate::config::DEFAULT_ALERT_RELAYS_DOWN_SECS, |h| {
                    h.relays_down_secs()
                }),
        )
    }

    fn restart_threshold(&self) -> u32 {
        let t = self
            .hook
            .as_ref()
            .map_or(crate::config::DEFAULT_ALERT_WORKER_RESTARTS, |h| {
                h.worker_restarts()
            });
        u32::try_from(t).unwrap_or(u32::MAX).max(1)
    }
}

impl Monitor {
    /// Logs `message` at warn level and runs the alert hook for `kind`
    /// unless it ran for `kind` within `alert.min_interval_secs`. `extra`
    /// adds variables to the hook's environment.
    pub(super) fn alert(
        &mut self,
        kind: AlertKind,
        message: &str,
        extra: Vec<(&'static str, String)>,
    ) {
        let message = printable(message, 1024);
        let alerts = &mut self.telemetry.alerts;
        let Some(hook) = alerts.hook.as_ref() else {
            warn!("alert {}: {message}", kind.as_str());
            return;
        };
        let now = Instant::now();
        let limit = Duration::from_secs(hook.min_interval_secs());
        if alerts
            .last_run
            .get(&kind)
            .is_some_and(|t| now.duration_since(*t) < limit)
        {
            warn!(
                "alert {}: {message} (the alert hook ran for this less than {} s ago; not run again)",
                kind.as_str(),
                limit.as_secs()
            );
            return;
        }
        warn!("alert {}: {message}; running the alert hook", kind.as_str());
        alerts.last_run.insert(kind, now);
        let mut vars = vec![
            ("QUBE_ALERT", kind.as_str().to_owned()),
            ("QUBE_ALERT_MESSAGE", message),
            ("QUBE_NETWORK", self.config.network().to_owned()),
            ("QUBE_NODE_ID", self.node_id.clone()),
        ];
        vars.extend(extra);
        let env = ExecEnv::from_vars(vars);
        let argv = hook.command().to_vec();
        let timeout = Duration::from_secs(hook.timeout_secs());
        // The step logs its own outcome; the serve loop does not wait.
        tokio::spawn(async move {
            exec::run_step(&argv, &env, timeout).await;
        });
    }

    /// An action failed: `action_failed`, with the proposal's variables.
    pub(super) fn alert_action_failed(&mut self, proposal: &Proposal, error: Option<&str>) {
        let error = error.unwrap_or("unknown").to_owned();
        let message = format!("{proposal}: failure: {error}");
        let extra = vec![
            ("QUBE_ACTION", proposal.action.as_str().to_owned()),
            ("QUBE_VERSION", proposal.version.clone()),
            ("QUBE_HASH", proposal.hash.to_ascii_lowercase()),
            ("QUBE_ERROR", error),
        ];
        self.alert(AlertKind::ActionFailed, &message, extra);
    }

    /// Quorums for different `proposals` at the same version: `conflict`.
    pub(super) fn alert_conflict(&mut self, proposals: &[String]) {
        let message = format!(
            "quorums for different proposals at the same version, nothing runs: {}",
            proposals.join(" | ")
        );
        self.alert(AlertKind::Conflict, &message, Vec::new());
    }

    /// The worker's sandbox is enforced only `level`: `sandbox`.
    pub(super) fn alert_sandbox(&mut self, level: &str, detail: &str) {
        let message = format!("worker sandbox {level}: {detail}");
        self.alert(AlertKind::Sandbox, &message, Vec::new());
    }

    /// Watches the conditions that last: every relay down, worker
    /// restarts. Called after every iteration of the serve loop.
    pub(super) fn check_alerts(&mut self) {
        let all_down = !self.relays.is_empty() && self.relays.iter().all(|r| !r.connected);
        let alerts = &mut self.telemetry.alerts;
        if !all_down {
            alerts.all_down_since = None;
            alerts.all_down_alerted = false;
        } else if alerts.all_down_since.is_none() {
            alerts.all_down_since = Some(Instant::now());
        }
        if alerts
            .relays_down_at()
            .is_some_and(|at| Instant::now() >= at)
        {
            alerts.all_down_alerted = true;
            let secs = alerts.relays_down_after().as_secs();
            let message = format!("every relay has been disconnected for {secs} s");
            self.alert(AlertKind::RelaysDown, &message, Vec::new());
        }
        let alerts = &self.telemetry.alerts;
        let threshold = alerts.restart_threshold();
        if self.restarts >= alerts.restarts_alerted.saturating_add(threshold) {
            self.telemetry.alerts.restarts_alerted = self.restarts;
            let message = format!(
                "the worker was restarted {} times since the agent started",
                self.restarts
            );
            self.alert(AlertKind::WorkerRestarts, &message, Vec::new());
        }
    }
}
