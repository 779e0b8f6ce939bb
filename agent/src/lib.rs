//! `qube-agent`: watches Nostr relays for HyperQube directives (kind 33321)
//! and, when a quorum of trusted keys signs exactly the same action, runs
//! the operator's hook and publishes a signed acknowledgement (kind 3333).
//! The wire format and quorum rules are in `docs/PROTOCOL.md`; the threat
//! model in `SECURITY.md`.
//!
//! # Floor plan
//!
//! The folders follow the privilege boundary (OpenSSH-style privilege
//! separation: the worker filters, the monitor decides). Each may import
//! only what its line says.
//!
//! | module | runs in | holds | may import |
//! |---|---|---|---|
//! | [`core`] | anywhere (pure: no I/O, no tokio, no clock) | nothing | itself |
//! | [`relay`] | worker, `govctl` | nothing | `core` |
//! | [`ipc`] | the seam, both sides | nothing | `core`, `relay` (targets) |
//! | [`worker`] | the sandboxed worker process | nothing | `core`, `relay`, `ipc` |
//! | [`monitor`] | the monitor process | node key, state | everything but `worker` internals |
//! | [`config`] | monitor, `report`, `govctl` | paths, never keys | `core` |
//! | [`state`] | monitor (writes), `report` (reads) | node key, journal, votes, outbox | `core`, `config` |
//! | [`artifact`] | monitor, `govctl` | nothing | nothing |
//! | [`report`] | `qube-agent status`/`journal` (read-only) | nothing | `core`, `config`, `state` |
//!
//! `govctl` uses `core`, `config`, `relay` and `artifact`: it never
//! executes anything and never imports the monitor.
//!
//! Every byte from a relay, a file or the worker is untrusted: parsing is
//! bounded by [`Limits`], never panics, and reports what was wrong as an
//! [`Error`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod artifact;
pub mod config;
pub mod core;
pub mod ipc;
pub mod monitor;
pub mod relay;
pub mod report;
pub mod state;
pub mod worker;

pub use crate::core::error::{Error, Field, HexProblem, TagProblem};
pub use crate::core::event::{Event, EventData, Limits, UnsignedEvent, UnverifiedEvent};
pub use crate::core::keys::Keys;
pub use crate::core::message::{ClientMessage, Filter, RelayMessage};

/// The current unix time in seconds (0 if the clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
