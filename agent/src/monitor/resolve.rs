//! Relay host names resolved by the monitor for the sandboxed worker
//! (`docs/PROTOCOL.md` section 9): the worker names a configured relay by
//! its index ([`crate::ipc::WorkerMessage::Resolve`]), never a host, and
//! gets addresses back ([`MonitorMessage::Resolved`]). So the worker needs
//! no resolver file and no UDP socket, and can ask only about the relays
//! the operator configured.
//!
//! A compromised worker can make the monitor resolve those names again and
//! again; that is bounded: one lookup per relay at a time, and an answer
//! younger than [`REUSE_FOR`] is given again instead of a new lookup.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ipc::MonitorMessage;
use crate::relay::MAX_ADDRESSES;

/// Longest one lookup may take (the system resolver's own retries
/// included); then the worker is told it failed.
pub(super) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer this young is given again instead of a new lookup.
pub(super) const REUSE_FOR: Duration = Duration::from_secs(1);

/// A finished lookup, from its task to the serve loop.
#[derive(Debug)]
pub(super) struct Answer {
    relay: usize,
    result: Result<Vec<IpAddr>, String>,
}

/// The lookups of one worker's lifetime: dropping it cancels those still
/// running (their answers would go to a worker that is gone).
#[derive(Debug)]
pub(super) struct Resolutions {
    answers: mpsc::Sender<Answer>,
    lookups: JoinSet<()>,
    in_flight: HashSet<usize>,
    recent: HashMap<usize, (Instant, Result<Vec<IpAddr>, String>)>,
}

impl Resolutions {
    /// No lookup yet; finished lookups arrive on the receiver, to be passed
    /// to [`Resolutions::answered`].
    pub(super) fn new() -> (Resolutions, mpsc::Receiver<Answer>) {
        let (answers, receiver) = mpsc::channel(16);
        let resolutions = Resolutions {
            answers,
            lookups: JoinSet::new(),
            in_flight: HashSet::new(),
            recent: HashMap::new(),
        };
        (resolutions, receiver)
    }

    /// The worker asked for relay `relay`, whose configured host and port
    /// are given. Returns an answer at once when a lookup finished less
    /// than [`REUSE_FOR`] ago; otherwise starts one (unless one is running)
    /// and returns `None`.
    pub(super) fn ask(&mut self, relay: usize, host: &str, port: u16) -> Option<MonitorMessage> {
        if let Some((at, result)) = self.recent.get(&relay) {
            if at.elapsed() < REUSE_FOR {
                return Some(message(relay, result.clone()));
            }
        }
        if !self.in_flight.insert(relay) {
            return None;
        }
        let answers = self.answers.clone();
        let host = host.to_owned();
        self.lookups.spawn(async move {
            let result = lookup(&host, port).await;
            let _ = answers.send(Answer { relay, result }).await;
        });
        None
    }

    /// A lookup finished: the message for the worker.
    pub(super) fn answered(&mut self, answer: Answer) -> MonitorMessage {
        self.in_flight.remove(&answer.relay);
        self.recent
            .insert(answer.relay, (Instant::now(), answer.result.clone()));
        // Reap finished tasks so the set does not grow.
        while self.lookups.try_join_next().is_some() {}
        message(answer.relay, answer.result)
    }
}

/// The system resolver, bounded in time and in the number of addresses.
async fn lookup(host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let mut addresses: Vec<IpAddr> = Vec::new();
    for address in found {
        let ip = address.ip();
        if !addresses.contains(&ip) {
            addresses.push(ip);
        }
        if addresses.len() == MAX_ADDRESSES {
            break;
        }
    }
    if addresses.is_empty() {
        return Err("no address".into());
    }
    Ok(addresses)
}

fn message(relay: usize, result: Result<Vec<IpAddr>, String>) -> MonitorMessage {
    match result {
        Ok(addresses) => MonitorMessage::Resolved {
            relay,
            addresses,
            error: None,
        },
        Err(e) => MonitorMessage::Resolved {
            relay,
            addresses: Vec::new(),
            error: Some(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(msg: &MonitorMessage) -> (usize, Vec<IpAddr>, Option<String>) {
        match msg {
            MonitorMessage::Resolved {
                relay,
                addresses,
                error,
            } => (*relay, addresses.clone(), error.clone()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn one_lookup_at_a_time_and_a_fresh_answer_is_reused() {
        let (mut resolutions, mut answers) = Resolutions::new();
        assert!(resolutions.ask(0, "localhost", 7000).is_none());
        // Asked again while the lookup runs: no second lookup.
        assert!(resolutions.ask(0, "localhost", 7000).is_none());
        assert_eq!(resolutions.lookups.len(), 1);
        let answer = answers.recv().await.unwrap();
        let (relay, found, error) = addresses(&resolutions.answered(answer));
        assert_eq!((relay, error), (0, None));
        assert!(found.iter().all(IpAddr::is_loopback), "{found:?}");
        assert!(!found.is_empty());
        // Asked right after: the same answer, with no lookup.
        let again = resolutions.ask(0, "localhost", 7000).unwrap();
        assert_eq!(addresses(&again).1, found);
        assert_eq!(resolutions.lookups.len(), 0);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error_answer() {
        let (mut resolutions, mut answers) = Resolutions::new();
        // `.invalid` never resolves (RFC 6761 section 6.4).
        assert!(resolutions.ask(1, "relay.invalid", 443).is_none());
        let answer = answers.recv().await.unwrap();
        let (relay, found, error) = addresses(&resolutions.answered(answer));
        assert_eq!(relay, 1);
        assert!(found.is_empty());
        assert!(error.is_some());
    }
}
