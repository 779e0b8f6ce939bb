//! systemd readiness, watchdog and status (`sd_notify(3)`, `Type=notify`
//! in `deploy/qube-agent.service`), through the `sd-notify` crate.
//!
//! The datagrams are sent by a thread of their own, so the serve loop never
//! waits on the notification socket (a send to a full socket blocks); the
//! loop hands each message over a bounded queue and drops it when the queue
//! is full (the next watchdog ping or status follows soon). Messages keep
//! their order.
//!
//! Nothing happens unless `NOTIFY_SOCKET` is set. The worker and the hooks
//! never see `NOTIFY_SOCKET` or `WATCHDOG_USEC`: their environments are
//! cleared (`spawn.rs`, `exec.rs`).

use std::sync::mpsc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Messages waiting for the notification thread; more are dropped.
const QUEUE: usize = 16;

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Note {
    /// `READY=1` with `STATUS=`.
    Ready(String),
    /// `WATCHDOG=1`.
    Watchdog,
    /// `STATUS=`.
    Status(String),
}

/// The service manager's notification socket, when there is one.
#[derive(Debug)]
pub(super) struct Notifier {
    queue: mpsc::SyncSender<Note>,
    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when set
    /// for this process.
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier when `NOTIFY_SOCKET` is set, else `None`; the watchdog
    /// interval comes from `WATCHDOG_USEC` (and `WATCHDOG_PID`, when set,
    /// must be this process).
    pub(super) fn from_env() -> Option<Notifier> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog =
            sd_notify::watchdog_enabled().map(|d| (d / 2).max(Duration::from_millis(100)));
        let (queue, notes) = mpsc::sync_channel::<Note>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("sd-notify".into())
            .spawn(move || {
                let mut failing = false;
                for note in notes {
                    let result = match &note {
                        Note::Ready(status) => {
                            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)])
                        }
                        Note::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
                        Note::Status(status) => sd_notify::notify(&[NotifyState::Status(status)]),
                    };
                    match result {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            warn!("cannot notify the service manager: {e}");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start the service manager notifier: {e}");
            return None;
        }
        debug!(
            "notifying the service manager; watchdog every {:?}",
            watchdog
        );
        Some(Notifier { queue, watchdog })
    }

    /// How often the watchdog wants `WATCHDOG=1`, if it is on.
    pub(super) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&self, note: Note) {
        // Full: a later message follows; gone: nothing to tell.
        let _ = self.queue.try_send(note);
    }

    /// `READY=1` and `STATUS=status`.
    pub(super) fn ready(&self, status: &str) {
        self.send(Note::Ready(status.to_owned()));
    }

    /// `WATCHDOG=1`.
    pub(super) fn watchdog(&self) {
        self.send(Note::Watchdog);
    }

    /// `STATUS=status` (one line).
    pub(super) fn status(&self, status: &str) {
        self.send(Note::Status(status.to_owned()));
    }
}
