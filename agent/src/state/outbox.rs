//! The ack outbox (`docs/PROTOCOL.md` section 12), persisted in `outbox.json`, and
//! its retry backoff.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{StateDir, StateError, MAX_STATE_FILE_BYTES, OUTBOX_FILE};
use crate::core::backoff::Backoff;
use crate::core::event::{Event, Limits};

pub use crate::core::ack::ACK_KIND;
/// Most acks kept in the outbox; pushing one more drops the oldest (with a
/// warning). 200 acks of at most 64 KiB stay below [`MAX_STATE_FILE_BYTES`].
pub const MAX_OUTBOX_ENTRIES: usize = 200;
/// Delay after the first failed publication of an ack, in seconds.
pub const OUTBOX_INITIAL_BACKOFF_SECS: u64 = 5;
/// Longest delay between two publications of an ack, in seconds (one hour).
pub const OUTBOX_MAX_BACKOFF_SECS: u64 = 3600;
/// How long an ack is retried to the relays that have not stored it, in
/// seconds (7 days); then it is dropped with a warning.
pub const OUTBOX_DELIVERY_SECS: u64 = 7 * 24 * 3600;

impl StateDir {
    /// Loads the ack outbox from `outbox.json` (empty when missing).
    ///
    /// Every event is verified again and must be an ack (kind 3333).
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when the file does not parse, an event does
    /// not verify or is not an ack, or an event appears twice;
    /// [`StateError::TooLarge`]; [`StateError::Io`].
    pub fn outbox(&self) -> Result<Outbox, StateError> {
        let mut outbox = Outbox {
            dir: self.clone(),
            entries: Vec::new(),
        };
        let Some(bytes) = self.read_file(OUTBOX_FILE, MAX_STATE_FILE_BYTES)? else {
            return Ok(outbox);
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: self.path.join(OUTBOX_FILE),
            reason,
        };
        let raw: Vec<RawOutboxEntry<'_>> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let limits = Limits::default();
        for (i, entry) in raw.into_iter().enumerate() {
            let n = i.saturating_add(1);
            let event = Event::from_json(entry.event.get().as_bytes(), &limits)
                .map_err(|e| corrupt(format!("entry {n}: {e}")))?;
            if event.kind != ACK_KIND {
                return Err(corrupt(format!(
                    "entry {n}: kind {} is not an acknowledgement",
                    event.kind
                )));
            }
            if outbox.entries.iter().any(|e| e.event.id == event.id) {
                return Err(corrupt(format!(
                    "entry {n}: event {} appears twice",
                    event.id_hex()
                )));
            }
            outbox.entries.push(OutboxEntry {
                event,
                attempts: entry.attempts,
                next_attempt_at: entry.next_attempt_at,
                // Entries from before agents recorded it: from their next
                // attempt, the closest time known.
                queued_at: entry.queued_at.unwrap_or(entry.next_attempt_at),
                delivered: entry.delivered,
            });
        }
        Ok(outbox)
    }
}

/// One queued acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The signed ack (kind 3333).
    pub event: Event,
    /// Failed publication rounds so far.
    pub attempts: u32,
    /// When to try again, unix seconds; due when `now >= next_attempt_at`.
    pub next_attempt_at: u64,
    /// When it was queued, unix seconds: it is retried until
    /// `queued_at + OUTBOX_DELIVERY_SECS`.
    pub queued_at: u64,
    /// URLs of the relays that answered `OK true` for it, in that order.
    pub delivered: Vec<String>,
}

/// What [`Outbox::delivered`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The ack is not queued (already complete, or never queued).
    NotQueued,
    /// Recorded; some configured relays have not stored it yet.
    Partial,
    /// Every configured relay stored it: it left the outbox.
    Complete,
}

/// How an entry of `outbox.json` is read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutboxEntry<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
    attempts: u32,
    next_attempt_at: u64,
    #[serde(default)]
    queued_at: Option<u64>,
    #[serde(default)]
    delivered: Vec<String>,
}

/// The ack outbox (`docs/PROTOCOL.md` section 12): each ack stays queued until
/// every configured relay answered `OK true` for it, or for
/// [`OUTBOX_DELIVERY_SECS`] at most; persisted in `outbox.json`.
///
/// Every change is written atomically before the method returns; if the
/// write fails the in-memory queue is left unchanged too. Retries back off
/// exponentially ([`backoff_secs`]). Get one with [`StateDir::outbox`].
#[derive(Debug)]
pub struct Outbox {
    dir: StateDir,
    entries: Vec<OutboxEntry>,
}

/// Delay before retrying an ack that failed `attempts` times, in seconds:
/// 0 for 0 attempts, then 5 s doubling each time (5, 10, 20, ... 2560) up to
/// a cap of [`OUTBOX_MAX_BACKOFF_SECS`] (3600 s) from the 11th failure on.
pub fn backoff_secs(attempts: u32) -> u64 {
    OUTBOX_BACKOFF.delay(attempts).as_secs()
}

/// The outbox's retry schedule.
const OUTBOX_BACKOFF: Backoff = Backoff {
    initial: std::time::Duration::from_secs(OUTBOX_INITIAL_BACKOFF_SECS),
    max: std::time::Duration::from_secs(OUTBOX_MAX_BACKOFF_SECS),
};

impl Outbox {
    /// Queues a signed ack, due at once (`next_attempt_at = now`, unix
    /// seconds, 0 attempts). Pushing an event already queued changes
    /// nothing. When [`MAX_OUTBOX_ENTRIES`] are queued, the oldest is dropped
    /// with a warning.
    ///
    /// # Errors
    /// [`StateError::NotAnAck`] unless kind 3333; [`StateError::AckTooLarge`]
    /// over [`Limits::max_event_bytes`]; as [`StateDir::write_atomic`].
    pub fn push(&mut self, event: Event, now: u64) -> Result<(), StateError> {
        if event.kind != ACK_KIND {
            return Err(StateError::NotAnAck { kind: event.kind });
        }
        let len = event.to_json().len();
        let max = Limits::default().max_event_bytes;
        if len > max {
            return Err(StateError::AckTooLarge { len, max });
        }
        if self.entries.iter().any(|e| e.event.id == event.id) {
            return Ok(());
        }
        let mut entries = self.entries.clone();
        if entries.len() >= MAX_OUTBOX_ENTRIES {
            let dropped = entries.remove(0);
            tracing::warn!(
                "outbox full ({MAX_OUTBOX_ENTRIES} acks): dropped the oldest ack {}",
                dropped.event.id_hex()
            );
        }
        entries.push(OutboxEntry {
            event,
            attempts: 0,
            next_attempt_at: now,
            queued_at: now,
            delivered: Vec::new(),
        });
        self.commit(entries)
    }

    /// Records that the relay at `url` stored ack `id` (`OK true`). When
    /// every URL of `relays` (the configured relays) has, the ack leaves
    /// the outbox.
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn delivered(
        &mut self,
        id: &[u8; 32],
        url: &str,
        relays: &[&str],
    ) -> Result<Delivery, StateError> {
        let mut entries = self.entries.clone();
        let Some(entry) = entries.iter_mut().find(|e| &e.event.id == id) else {
            return Ok(Delivery::NotQueued);
        };
        if !entry.delivered.iter().any(|u| u == url) {
            entry.delivered.push(url.to_owned());
        }
        let complete = relays
            .iter()
            .all(|r| entry.delivered.iter().any(|u| u == r));
        if complete {
            entries.retain(|e| &e.event.id != id);
        }
        self.commit(entries)?;
        Ok(if complete {
            Delivery::Complete
        } else {
            Delivery::Partial
        })
    }

    /// Drops the acks queued more than [`OUTBOX_DELIVERY_SECS`] before
    /// `now` (unix seconds) and returns them, for a warning.
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn expire(&mut self, now: u64) -> Result<Vec<OutboxEntry>, StateError> {
        let (expired, kept): (Vec<OutboxEntry>, Vec<OutboxEntry>) = self
            .entries
            .iter()
            .cloned()
            .partition(|e| now > e.queued_at.saturating_add(OUTBOX_DELIVERY_SECS));
        if expired.is_empty() {
            return Ok(expired);
        }
        self.commit(kept)?;
        Ok(expired)
    }

    /// The entries due at `now` (unix seconds): `next_attempt_at <= now`, in
    /// queue order.
    pub fn due(&self, now: u64) -> Vec<OutboxEntry> {
        self.entries
            .iter()
            .filter(|e| e.next_attempt_at <= now)
            .cloned()
            .collect()
    }

    /// The earliest `next_attempt_at` (unix seconds), when a retry timer
    /// should fire; `None` when the outbox is empty.
    pub fn next_attempt_at(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.next_attempt_at).min()
    }

    /// Records a failed publication round of ack `id` at `now` (unix
    /// seconds): one more attempt, next try at `now + backoff_secs(attempts)`.
    /// Returns false (and writes nothing) when `id` is not queued.
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn mark_failed(&mut self, id: &[u8; 32], now: u64) -> Result<bool, StateError> {
        let mut entries = self.entries.clone();
        let Some(entry) = entries.iter_mut().find(|e| &e.event.id == id) else {
            return Ok(false);
        };
        entry.attempts = entry.attempts.saturating_add(1);
        entry.next_attempt_at = now.saturating_add(backoff_secs(entry.attempts));
        self.commit(entries)?;
        Ok(true)
    }

    /// Removes ack `id` once a relay answered `OK true` for it. Returns
    /// false (and writes nothing) when it is not queued.
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn remove(&mut self, id: &[u8; 32]) -> Result<bool, StateError> {
        let before = self.entries.len();
        let entries: Vec<OutboxEntry> = self
            .entries
            .iter()
            .filter(|e| &e.event.id != id)
            .cloned()
            .collect();
        if entries.len() == before {
            return Ok(false);
        }
        self.commit(entries)?;
        Ok(true)
    }

    /// Every queued entry, oldest first.
    pub fn entries(&self) -> &[OutboxEntry] {
        &self.entries
    }

    /// Number of queued acks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no ack is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes `entries` atomically, then makes them the queue.
    fn commit(&mut self, entries: Vec<OutboxEntry>) -> Result<(), StateError> {
        let mut out = String::from("[");
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\n{\"event\":");
            out.push_str(&entry.event.to_json());
            out.push_str(&format!(
                ",\"attempts\":{},\"next_attempt_at\":{},\"queued_at\":{},\"delivered\":{}}}",
                entry.attempts,
                entry.next_attempt_at,
                entry.queued_at,
                serde_json::Value::from(entry.delivered.clone())
            ));
        }
        out.push_str("\n]\n");
        self.dir.write_atomic(OUTBOX_FILE, out.as_bytes())?;
        self.entries = entries;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        let delays: Vec<u64> = (0..=13).map(backoff_secs).collect();
        assert_eq!(
            delays,
            [0, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
        );
        assert_eq!(backoff_secs(u32::MAX), 3600);
    }
}
