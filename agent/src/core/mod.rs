//! The protocol core: pure functions and types, no I/O, no clock reads, no
//! async runtime, no filesystem. Everything here is deterministic and unit-tested;
//! the worker, the monitor, `report` and `govctl` all call it, so each rule
//! lives in one place.
//!
//! * [`event`]: strict NIP-01 event parsing, canonical id, BIP-340
//!   verification and signing.
//! * [`message`]: relay-to-client messages (parsed), client-to-relay
//!   messages (built); NIP-01 and NIP-42.
//! * [`keys`]: BIP-340 keys; [`nip19`]: `npub`/`nsec` (NIP-19).
//! * [`relay_url`]: relay URLs as configured (`wss://`, loopback `ws://`).
//! * [`directive`]: HyperQube kind 33321 directives and their rules.
//! * [`admit`]: the one admission check every boundary calls.
//! * [`quorum`]: the quorum engine (votes, supersession, decisions).
//! * [`ack`]: kind 3333 acknowledgements.
//! * [`text`]: the one escaper of untrusted text for logs and terminals.
//! * [`backoff`]: the one retry schedule (relays, outbox, worker restarts).
//! * [`version`]: SemVer with an optional leading `v`, parsed once.

pub mod ack;
pub mod admit;
pub mod backoff;
pub mod directive;
pub(crate) mod error;
pub mod event;
pub mod heartbeat;
pub(crate) mod json;
pub mod keys;
pub mod message;
pub mod nip19;
pub mod quorum;
pub mod relay_url;
pub mod text;
pub mod version;

pub use error::{Error, Field, HexProblem, TagProblem};
