//! `qube-agent` command line.
//!
//! The daemon commands (`run`, `check-config`, `status`, `journal`) arrive
//! with the relay client and quorum engine; today the binary answers
//! `--help` and `--version` only.

#![forbid(unsafe_code)]

use clap::Parser;

/// Quorum-gated upgrade and reboot agent for validator fleets.
///
/// Watches Nostr relays for HyperQube directives (kind 33321) signed by the
/// configured follows and runs the operator's hook when a quorum agrees on
/// exactly the same action.
#[derive(Parser)]
#[command(name = "qube-agent", version, about, long_about)]
struct Cli {}

fn main() {
    let Cli {} = Cli::parse();
}
