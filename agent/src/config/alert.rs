//! The `[alert]` section (design section 8b): the operator's alert hook.

/// `alert.timeout_secs` when the file does not set it, in seconds.
pub const DEFAULT_ALERT_TIMEOUT_SECS: u64 = 30;
/// `alert.min_interval_secs` when the file does not set it, in seconds.
pub const DEFAULT_ALERT_MIN_INTERVAL_SECS: u64 = 600;
/// `alert.relays_down_secs` when the file does not set it, in seconds.
pub const DEFAULT_ALERT_RELAYS_DOWN_SECS: u64 = 600;
/// `alert.worker_restarts` when the file does not set it.
pub const DEFAULT_ALERT_WORKER_RESTARTS: u64 = 5;

/// The `[alert]` section: an argv run (under the hooks' execution contract:
/// no shell, a clean `QUBE_*` environment, a time limit) when something
/// needs the operator: an action failed, a conflict, a sandbox not fully
/// enforced, every relay down, repeated worker restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    pub(super) command: Vec<String>,
    pub(super) timeout_secs: u64,
    pub(super) min_interval_secs: u64,
    pub(super) relays_down_secs: u64,
    pub(super) worker_restarts: u64,
}

impl AlertConfig {
    /// The argv: non-empty, the program non-empty, no NUL byte.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// Time limit of one run, in seconds: 1 to
    /// [`MAX_HOOK_TIMEOUT_SECS`](super::MAX_HOOK_TIMEOUT_SECS), default
    /// [`DEFAULT_ALERT_TIMEOUT_SECS`].
    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs
    }

    /// The rate limit: at most one run per kind of alert in this many
    /// seconds (0 to 86400, default [`DEFAULT_ALERT_MIN_INTERVAL_SECS`]);
    /// alerts in between are only logged.
    pub fn min_interval_secs(&self) -> u64 {
        self.min_interval_secs
    }

    /// Every relay disconnected for this long, in seconds, is an alert (1
    /// to 86400, default [`DEFAULT_ALERT_RELAYS_DOWN_SECS`]).
    pub fn relays_down_secs(&self) -> u64 {
        self.relays_down_secs
    }

    /// Every this many worker restarts is an alert (1 to 1 000 000, default
    /// [`DEFAULT_ALERT_WORKER_RESTARTS`]).
    pub fn worker_restarts(&self) -> u64 {
        self.worker_restarts
    }
}
