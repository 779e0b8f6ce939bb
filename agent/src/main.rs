//! `qube-agent` command line.
//!
//! `run` (the agent), `check-config` (`docs/qube-agent.example.toml`), `--help` and
//! `--version`. Logs go to stderr with timestamps and levels: warnings and
//! errors by default, `-v` for what the agent does, `-vv` for debugging.

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
    /// More log output on stderr: -v for actions and relay state, -vv for
    /// debugging.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: watch the relays, count directives, act on a quorum.
    ///
    /// Connects to every configured relay, follows the voters' kind 33321
    /// directives, and when a quorum signs exactly the same action runs its
    /// hook once and publishes a signed acknowledgement (kind 3333). Stops
    /// on SIGINT or SIGTERM. Exit status: 0 after a signal, 1 on a config
    /// or state error.
    #[command(after_help = "Example: qube-agent run --config /etc/qube-agent/config.toml -v")]
    Run {
        /// The agent's TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// Tally and log what would run; run no hook, publish nothing,
        /// record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Start even when the kernel enforces no Landlock rule, so the
        /// network-facing worker runs unconfined (said loudly at every
        /// start). Without it the worker refuses to run unconfined.
        #[arg(long)]
        allow_unsandboxed: bool,
    },
    /// The network-facing worker (started by `run`; not for direct use).
    #[command(hide = true)]
    Worker {
        /// TCP port of a relay the worker may connect to.
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<u16>,
        /// See `run --allow-unsandboxed`.
        #[arg(long)]
        allow_unsandboxed: bool,
    },
    /// Apply the worker's sandbox, try the given operations, print what the
    /// kernel allowed as JSON lines (for confinement tests and for checking
    /// a kernel).
    #[command(hide = true)]
    SandboxProbe {
        /// Relay ports the sandbox allows.
        #[arg(long = "port", value_name = "PORT")]
        ports: Vec<u16>,
        /// Files to read.
        #[arg(long)]
        read: Vec<PathBuf>,
        /// Files to create.
        #[arg(long)]
        write: Vec<PathBuf>,
        /// Programs to run.
        #[arg(long)]
        exec: Vec<PathBuf>,
        /// Loopback ports to connect to.
        #[arg(long)]
        connect: Vec<u16>,
        /// Pids to send SIGCONT to.
        #[arg(long)]
        signal: Vec<i32>,
    },
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
    /// Show the node, the voters' current directives, the tally, the outbox
    /// and the journal.
    ///
    /// Read-only and safe while the agent runs: writes nothing, takes no
    /// lock, creates nothing. Shows the node id and npub, network, quorum,
    /// installed version, follows, each voter's current directive, the
    /// tally per proposal (runs, conflict, below quorum, already done, not
    /// newer than installed, outranked) with an explicit CONFLICT line,
    /// pending acknowledgements, and the last 10 journal records with
    /// whether the hash chain verifies. Exit status: 0; 1 when the config
    /// or the state cannot be read, or the journal does not verify.
    #[command(
        after_help = "Example: qube-agent status --config /etc/qube-agent/config.toml --json"
    )]
    Status {
        /// The agent's TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// Print one JSON object (field names in the qube_agent::report docs).
        #[arg(long)]
        json: bool,
    },
    /// List the journal of hook runs and verify its hash chain.
    ///
    /// Read-only and safe while the agent runs. Exit status: 0 when the
    /// chain verifies or there is no journal yet; 1 when it is corrupt or
    /// torn (the error names the line and why) or the config or the state
    /// directory cannot be read.
    #[command(
        after_help = "Example: qube-agent journal --config /etc/qube-agent/config.toml --verify"
    )]
    Journal {
        /// The agent's TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Print only the verdict.
        #[arg(long)]
        verify: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
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
        Command::SandboxProbe {
            ports,
            read,
            write,
            exec,
            connect,
            signal,
        } => sandbox_probe(
            &ports,
            qube_agent::worker::sandbox::ProbeRequest {
                read,
                write,
                exec,
                connect,
                signal,
            },
        ),
        Command::Status { config, json } => status(&config, json),
        Command::Journal {
            config,
            json,
            verify,
        } => journal(&config, json, verify),
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

/// `sandbox-probe`: confine as the worker does, try, report.
fn sandbox_probe(ports: &[u16], request: qube_agent::worker::sandbox::ProbeRequest) -> ExitCode {
    let report = match qube_agent::worker::sandbox::confine_worker(ports, false) {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::from(3);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{}",
        serde_json::json!({"op": "sandbox", "target": report.landlock.as_str(), "allowed": true, "error": null})
    );
    for attempt in qube_agent::worker::sandbox::probe(&request) {
        let _ = writeln!(stdout, "{}", serde_json::json!(attempt));
    }
    ExitCode::SUCCESS
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = qube_agent::monitor::RunOptions {
        dry_run,
        worker: qube_agent::monitor::WorkerMode::Process { program, args },
    };
    match runtime.block_on(qube_agent::monitor::run(config, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
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

/// `status`: read-only report of config and state (`qube_agent::report`).
fn status(path: &std::path::Path, json: bool) -> ExitCode {
    qube_agent::report::status_command(path, json, qube_agent::now()).print()
}

/// `journal`: list the journal and verify its chain (`qube_agent::report`).
fn journal(path: &std::path::Path, json: bool, verify: bool) -> ExitCode {
    qube_agent::report::journal_command(path, json, verify).print()
}
