//! `qube-agent` command line.
//!
//! Today: `check-config --config PATH` (design section 7) besides `--help`
//! and `--version`. The daemon commands (`run`, `status`, `journal`) arrive
//! with the relay client and quorum engine.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use qube_agent::config::Config;

/// Quorum-gated upgrade and reboot agent for validator fleets.
///
/// Watches Nostr relays for HyperQube directives (kind 33321) signed by the
/// configured follows and runs the operator's hook when a quorum agrees on
/// exactly the same action.
#[derive(Parser)]
#[command(
    name = "qube-agent",
    version,
    about,
    long_about,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file and print the effective configuration.
    ///
    /// Reads the TOML config, refuses unknown keys, checks relays (wss://, or
    /// ws:// to loopback unless policy.allow_insecure_ws), follows (npub or
    /// hex, no duplicates), hooks (argv arrays, never a shell string) and
    /// 1 <= quorum <= voters. On success prints the configuration with every
    /// default filled in to stdout, each warning to stderr as `warning: ...`,
    /// and exits 0. On error prints `error: ...` with the file, the line and
    /// a hint to stderr and exits 1.
    ///
    /// docs/qube-agent.example.toml documents every key.
    #[command(
        after_help = "Example: qube-agent check-config --config /etc/qube-agent/config.toml"
    )]
    CheckConfig {
        /// The agent's TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
    }
}

/// `check-config`: exit 0 with the normalized config on stdout, or exit 1
/// with `error: ...` on stderr.
fn check_config(path: &std::path::Path) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    match Config::load(path) {
        Ok((config, warnings)) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(config.normalized_toml().as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // stdout closed (e.g. piped to `head`): the check still ran,
                // but the caller did not get the output.
                let _ = writeln!(stderr, "error: cannot write to stdout");
                return ExitCode::FAILURE;
            }
            for warning in warnings {
                let _ = writeln!(stderr, "warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let _ = writeln!(stderr, "error: {err}");
            ExitCode::FAILURE
        }
    }
}
