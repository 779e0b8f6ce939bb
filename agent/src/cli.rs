//! The `qube-agent` command line, as clap types and nothing else.
//!
//! Shared by the binary (`mod cli;` in main.rs) and by `build.rs`, which
//! compiles this same file to write the man pages and the shell completions
//! from it: what `--help` says and what `man qube-agent` says cannot drift
//! apart. So this file may use only `std` and `clap`, nothing of the crate.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Quorum-gated upgrade and reboot agent for validator fleets.
///
/// Watches Nostr relays for HyperQube directives (kind 33321) signed by the
/// configured follows and runs the operator's hook when a quorum agrees on
/// exactly the same action.
//
// `--version` is an ordinary flag rather than clap's version action, which
// would print and exit before `--json` is seen: main.rs prints the build
// information itself. The command is therefore optional to clap; main.rs
// reports a missing one exactly as clap would.
#[derive(Parser)]
#[command(
    name = "qube-agent",
    version,
    about,
    long_about,
    arg_required_else_help = true,
    disable_version_flag = true,
    override_usage = "qube-agent [OPTIONS] <COMMAND>\n       qube-agent --version [--json]"
)]
pub struct Cli {
    /// More log output on stderr: -v for actions and relay state, -vv for
    /// debugging.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Print the version, git commit, rustc, target and Landlock ABI.
    #[arg(short = 'V', long)]
    pub version: bool,

    /// With --version: print the build information as one JSON object.
    #[arg(long, requires = "version")]
    pub json: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

// The commands. The hidden ones are for the agent itself, its tests and
// packaging: no man page, no completion (build.rs).
#[derive(Subcommand)]
pub enum Command {
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
    SandboxProbe(Box<ProbeArgs>),
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
    /// Start a new journal after it was lost; saved proposals never run here.
    ///
    /// `run` refuses to start when the state directory has saved
    /// directives, acknowledgements or an installed version but no journal:
    /// it could run the last voted action again. After restoring from a
    /// backup fails, `reset` writes a new journal in which each proposal of
    /// the saved directives (expired ones too) is recorded as a failure
    /// `reset: REASON`, so none of them runs here again. It never replaces
    /// an existing journal and needs the agent stopped (it takes the state
    /// lock). Exit status: 0 when the journal was written; 1 otherwise.
    #[command(
        after_help = "Example: qube-agent reset --config /etc/qube-agent/config.toml --reason \"disk replaced, journal lost\""
    )]
    Reset {
        /// The agent's TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// Why, recorded in the journal (1 to 200 characters, no control
        /// characters).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Allow one more run of a proposal that failed on this node.
    ///
    /// A proposal that ran on a node never runs there again, even after a
    /// transient failure. `retry` records the operator's permission for
    /// exactly one more run in the journal; the agent, at its next start,
    /// runs the proposal again if its quorum still holds (a deadline that
    /// has passed still refuses it). Refused for a run that succeeded, a
    /// run without an outcome, or a proposal that already has a retry. Needs
    /// the agent stopped (it takes the state lock). Exit status: 0 when the
    /// retry was recorded; 1 otherwise.
    #[command(
        after_help = "PROPOSAL is the seq of its started or outcome record as `qube-agent journal` lists it, or its version exactly as signed (e.g. v1.2.3) when one failed proposal has it.\n\nExample:\n  systemctl stop qube-agent\n  qube-agent retry --config /etc/qube-agent/config.toml v1.2.3 --reason \"mirror was down during fetch\"\n  systemctl start qube-agent"
    )]
    Retry {
        /// The agent's TOML config file.
        #[arg(long, short = 'c', value_name = "PATH")]
        config: PathBuf,
        /// The proposal: a journal seq or a version as signed.
        #[arg(value_name = "PROPOSAL")]
        proposal: String,
        /// Why, recorded in the journal (1 to 200 characters, no control
        /// characters).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Write the man pages and shell completions built into this binary to a
    /// directory, for packaging (see docs/RELEASE.md).
    #[command(hide = true)]
    GenerateAssets {
        /// Directory to write into, created if needed: man/man1, man/man5 and
        /// completions/ below it.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The arguments of `sandbox-probe` (boxed: the largest command by far).
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Relay ports the sandbox allows.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Files to read.
    #[arg(long)]
    pub read: Vec<PathBuf>,
    /// Files to create.
    #[arg(long)]
    pub write: Vec<PathBuf>,
    /// Programs to start (fork and exec).
    #[arg(long)]
    pub exec: Vec<PathBuf>,
    /// Loopback ports to connect to.
    #[arg(long)]
    pub connect: Vec<u16>,
    /// Pids to send SIGCONT to.
    #[arg(long)]
    pub signal: Vec<i32>,
    /// Named unix sockets to connect to.
    #[arg(long)]
    pub unix: Vec<PathBuf>,
    /// Pids to PTRACE_ATTACH to (and detach from at once).
    #[arg(long)]
    pub ptrace: Vec<i32>,
    /// Operations without a target: thread, netlink, udp, tcp-listen,
    /// tcp-bind, memfd, traceme, tty (ioctls on stdin, which must be a
    /// terminal), fork.
    #[arg(long = "try", value_name = "OP")]
    pub ops: Vec<String>,
    /// A program to execute in place of the probe (execve without fork),
    /// after every other attempt.
    #[arg(long, value_name = "PATH")]
    pub exec_in_place: Option<PathBuf>,
}
