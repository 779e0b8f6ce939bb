//! `qube-agent` command line.
//!
//! `run` (the agent), `check-config` (`docs/qube-agent.example.toml`), `--help` and
//! `--version`. Logs go to stderr with timestamps and levels: warnings and
//! errors by default, `-v` for what the agent does, `-vv` for debugging.
//!
//! The clap types are in `cli.rs` (shared with `build.rs`, which writes the
//! man pages and completions from them); `build_info.rs` has what `--version`
//! prints and the generated files `generate-assets` writes.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use qube_agent::config::Config;

mod build_info;
mod cli;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        return build_info::print_version(cli.json);
    }
    let Some(command) = cli.command else {
        // Only --version stands without a command (see cli.rs): let clap
        // report the missing command, with its usual message and status 2.
        Cli::command().subcommand_required(true).get_matches();
        return ExitCode::from(2);
    };
    init_logging(cli.verbose);
    match command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Run {
            config,
            dry_run,
            allow_unsandboxed,
        } => run(&config, dry_run, allow_unsandboxed, cli.verbose),
        Command::Worker {
            ports,
            allow_unsandboxed,
        } => qube_agent::worker::process_main(&ports, allow_unsandboxed),
        Command::SandboxProbe(args) => sandbox_probe(*args),
        Command::Status { config, json } => status(&config, json),
        Command::Reset { config, reason } => reset(&config, &reason),
        Command::Retry {
            config,
            proposal,
            reason,
        } => retry(&config, &proposal, &reason),
        Command::Journal {
            config,
            json,
            verify,
        } => journal(&config, json, verify),
        Command::GenerateAssets { out } => build_info::write_assets(&out),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(verbose > 1)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `sandbox-probe`: confine as the worker does, try, report
/// (`qube_agent::worker::sandbox::probe_main`).
fn sandbox_probe(args: cli::ProbeArgs) -> ExitCode {
    let ops = match args.ops.iter().map(|op| op.parse()).collect() {
        Ok(ops) => ops,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::from(2);
        }
    };
    let request = qube_agent::worker::sandbox::ProbeRequest {
        read: args.read,
        write: args.write,
        exec: args.exec,
        connect: args.connect,
        signal: args.signal,
        unix: args.unix,
        ptrace: args.ptrace,
        ops,
        exec_in_place: args.exec_in_place,
    };
    qube_agent::worker::sandbox::probe_main(&args.ports, &request)
}

/// `run`: the agent until SIGINT/SIGTERM.
fn run(path: &std::path::Path, dry_run: bool, allow_unsandboxed: bool, verbose: u8) -> ExitCode {
    if let Err(e) = qube_agent::worker::sandbox::harden_process() {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        return ExitCode::FAILURE;
    }
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot find this program to start the worker: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut args = vec!["worker".to_owned()];
    if verbose > 0 {
        args.push(format!("-{}", "v".repeat(usize::from(verbose))));
    }
    if allow_unsandboxed {
        args.push("--allow-unsandboxed".to_owned());
    }
    let config = match Config::load(path) {
        Ok((config, warnings)) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            config
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let options = qube_agent::monitor::RunOptions {
        dry_run,
        worker: qube_agent::monitor::WorkerMode::Process { program, args },
    };
    qube_agent::monitor::run_process(config, options)
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

/// The config for a journaling command (`reset`, `retry`) after checking
/// its `--reason`; `None` once the error is printed.
fn journaling_config(path: &std::path::Path, reason: &str) -> Option<Config> {
    let mut stderr = std::io::stderr().lock();
    let chars = reason.trim().chars().count();
    if chars == 0
        || chars > qube_agent::monitor::MAX_REASON_CHARS
        || reason.chars().any(char::is_control)
    {
        let _ = writeln!(
            stderr,
            "error: --reason must be 1 to {} characters without control characters",
            qube_agent::monitor::MAX_REASON_CHARS
        );
        return None;
    }
    match Config::load(path) {
        Ok((config, _warnings)) => Some(config),
        Err(err) => {
            let _ = writeln!(stderr, "error: {err}");
            None
        }
    }
}

/// `retry`: one more run of a proposal that failed here.
fn retry(path: &std::path::Path, which: &str, reason: &str) -> ExitCode {
    let Some(config) = journaling_config(path, reason) else {
        return ExitCode::FAILURE;
    };
    match qube_agent::monitor::retry(&config, which, reason, qube_agent::now()) {
        Ok(proposal) => {
            let _ = writeln!(
                std::io::stdout().lock(),
                "one more run allowed for {proposal}; it runs when the agent starts and its \
                 quorum still holds"
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            let _ = writeln!(std::io::stderr().lock(), "error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `reset`: a new journal after the old one was lost.
fn reset(path: &std::path::Path, reason: &str) -> ExitCode {
    let Some(config) = journaling_config(path, reason) else {
        return ExitCode::FAILURE;
    };
    let mut stderr = std::io::stderr().lock();
    match qube_agent::monitor::reset(&config, reason, qube_agent::now()) {
        Ok(proposals) => {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(
                stdout,
                "started a new journal; {} proposal(s) recorded as never to run on this node:",
                proposals.len()
            );
            for p in proposals {
                let _ = writeln!(stdout, "  {p}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            let _ = writeln!(stderr, "error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `status`: read-only report of config and state (`qube_agent::report`).
fn status(path: &std::path::Path, json: bool) -> ExitCode {
    qube_agent::report::status_command(path, json, qube_agent::now()).print()
}

/// `journal`: list the journal and verify its chain (`qube_agent::report`).
fn journal(path: &std::path::Path, json: bool, verify: bool) -> ExitCode {
    qube_agent::report::journal_command(path, json, verify).print()
}
