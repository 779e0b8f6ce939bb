//! `qube-agent`: the protocol core and (in later modules) the daemon that
//! watches Nostr relays for HyperQube directives (kind 33321) and acts when a
//! quorum of trusted keys agrees.
//!
//! This crate is the one place the wire format lives; `govctl` and the tests
//! use it too.
//!
//! * [`event`]: strict NIP-01 event parsing, canonical id, BIP-340
//!   verification and signing.
//! * [`message`]: relay-to-client message parsing, client-to-relay message
//!   building (NIP-01, NIP-42).
//! * [`keys`]: BIP-340 keys and Schnorr verification.
//!
//! Every byte from a relay is untrusted: parsing is bounded by [`Limits`],
//! never panics, and reports what was wrong as an [`Error`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ack;
pub mod config;
pub mod directive;
mod error;
pub mod event;
pub mod exec;
pub mod ipc;
pub mod journal;
mod json;
pub mod keys;
pub mod message;
pub mod monitor;
pub mod nip19;
pub mod quorum;
pub mod relay;
pub mod relay_url;
pub mod report;
pub mod sandbox;
pub mod state;
pub mod worker;

pub use error::{Error, Field, HexProblem, TagProblem};
pub use event::{Event, EventData, Limits, UnsignedEvent, UnverifiedEvent};
pub use keys::Keys;
pub use message::{ClientMessage, Filter, RelayMessage};

/// The current unix time in seconds (0 if the clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
