//! `govctl`: governance keys, follows and quorum, and signing of HyperQube
//! directives (kind 33321) for `qube-agent` fleets.
//!
//! Commands (`keygen`, `key`, `follows`, `quorum`, `propose`, `sign`,
//! `publish`, `verify`, `hash`, `status`) arrive in later releases; today the
//! binary answers `--help` and `--version` only.

#![forbid(unsafe_code)]

use clap::Parser;

/// Governance tool for qube-agent fleets: keys, follows, quorum and signed
/// directives. Never executes an action.
#[derive(Parser)]
#[command(name = "govctl", version, about, long_about)]
struct Cli {}

fn main() {
    let Cli {} = Cli::parse();
}
