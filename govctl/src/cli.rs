//! The command line, as clap derives it. Only parsing lives here; each
//! command's work is in its own module.
//!
//! Shared by the binary and by `build.rs`, which compiles this same file to
//! write the man pages and shell completions from it, so `man govctl` and
//! `--help` cannot drift apart. So this file may use only `std`, `clap` and
//! [`crate::defaults`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::defaults::{
    DEFAULT_LOG_N, DEFAULT_SIGNER_TIMEOUT_SECS, DEFAULT_STALE_SECS, DEFAULT_TIMEOUT_SECS, MAX_LOG_N,
};

/// What `propose upgrade|reboot --help` adds after the options. The 512 is
/// [`crate::show::LONG_VALUE_CHARS`].
const PROPOSE_AFTER_HELP: &str = "\
Before the key is unlocked, the directive is checked with the agent's rules and size limits (1024
bytes per tag value, ...) and shown on stderr: every tag, each value in full between double quotes,
with quotes, backslashes, control and invisible characters escaped. A warning: line follows for a
value that starts with '-', holds control or invisible characters, or is longer than 512 characters.
The directive expires 7 days after it is made unless --expires-in or --no-expiry says otherwise.

Remote signing (NIP-46): with --signer bunker://... or nostrconnect://?relay=..., the directive is
shown the same way, then sent to the remote signer, which holds the key. Its answer is refused, and
nothing written or published, unless it is exactly the directive shown, validly signed (NIP-01 id,
BIP-340) by the key the signer reported (get_public_key) and --expect when given, and one the agent
would count. Publishing (--relay) answers NIP-42 only with --auth-key.";

/// What `sign --help` adds after the options. The 512 is
/// [`crate::show::LONG_VALUE_CHARS`].
const SIGN_AFTER_HELP: &str = "\
The draft is shown on stderr first: every tag, each value in full between double quotes, with
quotes, backslashes, control and invisible characters escaped, then the content. A warning: line
follows for a tag no agent reads, for extra values the agent ignores, for a name or value that
starts with '-', holds control or invisible characters, or is longer than 512 characters, and for
control or invisible characters in the content. Refused after that: a draft the agent would not
count, one over the agent's size limits (1024 bytes per tag value, ...), and one whose genesis_url
is not an https:// URL. Otherwise govctl asks before signing (--yes skips the question).

With --signer bunker://... or nostrconnect://?relay=... a remote signer (NIP-46) signs instead of a
key file; it must sign as the key the draft names, and its answer must be exactly the draft
(the same id), validly signed, or nothing is written.";

/// `--expires-in` when not given: a directive stops counting a week after
/// it is made, so a forgotten one cannot be acted on months later.
pub const DEFAULT_EXPIRES_IN: &str = "7d";

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 failure (the reason and a hint are on stderr); 2 usage error; 3 from `status`
when a node in the winning proposal's wave has not acknowledged success yet.

Keys live in $GOVCTL_HOME, else $XDG_CONFIG_HOME/govctl, else ~/.config/govctl (mode 0700), one
file per key (NAME.key, mode 0600): a NIP-49 ncryptsec, or an nsec only with --plaintext.";

/// Governance tool for qube-agent fleets: keys, follows and quorum, and
/// signed HyperQube directives. It signs, publishes, verifies and reports;
/// it never executes anything.
#[derive(Parser)]
#[command(name = "govctl", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand)]
// Parsed once at start; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Create a governance key (NIP-49 encrypted) and print its npub.
    Keygen(KeygenArgs),
    /// Show, import or export a key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// List, add or remove follows in an agent config, keeping its comments.
    #[command(subcommand)]
    Follows(FollowsCommand),
    /// Change the quorum of an agent config, keeping its comments.
    #[command(subcommand)]
    Quorum(QuorumCommand),
    /// Build, check, sign and save or publish a directive (kind 33321).
    #[command(subcommand)]
    Propose(ProposeCommand),
    /// Sign a draft made by `propose --unsigned`, after showing it.
    #[command(after_help = SIGN_AFTER_HELP)]
    Sign(SignArgs),
    /// Publish signed event files to relays, answering NIP-42 challenges.
    Publish(PublishArgs),
    /// Check a signed event file and, for a directive, the agent's rules.
    Verify(VerifyArgs),
    /// Print the SHA-256 of a file, as --hash expects it.
    Hash(HashArgs),
    /// Tally the follows' current directives and list acknowledgements.
    Status(StatusArgs),
    /// List past and current proposals with their votes and each node's acknowledgement.
    History(HistoryArgs),
    /// Write the man pages and shell completions built into this binary to a
    /// directory, for packaging (see docs/RELEASE.md).
    #[command(hide = true)]
    GenerateAssets {
        /// Directory to write into, created if needed: man/man1 and
        /// completions/ below it.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Which key to use and how to unlock it.
#[derive(Args)]
pub struct KeyArgs {
    /// Key file to use instead of the key store.
    #[arg(long, value_name = "PATH", conflicts_with = "name")]
    pub key: Option<PathBuf>,
    /// Key name in the key store: KEYSTORE/NAME.key [default: default].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Read the passphrase from the first line of FILE instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// `govctl keygen`.
#[derive(Args)]
pub struct KeygenArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: KeyArgs,
    /// NIP-49 scrypt cost 2^N (16 = 64 MiB, the most is 20).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_N,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_LOG_N)))]
    pub log_n: u8,
    /// Store the key unencrypted (nsec). Anyone who reads the file can sign.
    #[arg(long, conflicts_with_all = ["passphrase_file", "log_n"])]
    pub plaintext: bool,
}

/// `govctl key ...`.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// Print a key's npub, hex public key, file and protection (never the secret).
    Show(KeyArgs),
    /// Store a secret key typed on the terminal or piped on stdin (nsec, ncryptsec or hex).
    ///
    /// An ncryptsec is checked with its passphrase (--passphrase-file is then
    /// the ncryptsec's) and stored as it is; an nsec or hex key is encrypted
    /// with a new passphrase unless --plaintext.
    Import(ImportArgs),
    /// Print a key as an ncryptsec (or as an nsec with --plaintext).
    ///
    /// A key stored encrypted is printed as stored; a plaintext key is
    /// encrypted with a new passphrase first.
    Export(ExportArgs),
}

/// `govctl key export`.
#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: KeyArgs,
    /// NIP-49 scrypt cost 2^N when a plaintext key is encrypted for export.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_N,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_LOG_N)))]
    pub log_n: u8,
    /// Print the secret key unencrypted (nsec).
    #[arg(long)]
    pub plaintext: bool,
}

/// `govctl follows ...`.
#[derive(Subcommand)]
pub enum FollowsCommand {
    /// Print the follows (name, role, npub) and the quorum.
    List {
        /// Agent config file.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
    /// Add a follow; refused if the result fails `qube-agent check-config`.
    Add {
        /// Public key: npub, nprofile or 64 hex characters.
        key: String,
        /// Display name, unique in the config.
        #[arg(long)]
        name: String,
        /// Whether the follow's directives count.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Agent config file.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
    /// Remove a follow by name or key; refused if the quorum could no longer be met.
    Remove {
        /// The follow's name, npub, nprofile or hex key.
        follow: String,
        /// Agent config file.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
}

/// A follow's role.
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Directives count towards the quorum.
    Voter,
    /// Shown in status, never counted.
    Observer,
}

/// `govctl quorum ...`.
#[derive(Subcommand)]
pub enum QuorumCommand {
    /// Set the quorum; refused unless 1 <= N <= the number of voters.
    Set {
        /// Distinct voters that must sign the same directive.
        n: u64,
        /// Agent config file.
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
}

/// `govctl propose ...`.
#[derive(Subcommand)]
pub enum ProposeCommand {
    /// Propose an upgrade to a version.
    #[command(after_help = PROPOSE_AFTER_HELP)]
    Upgrade(UpgradeArgs),
    /// Propose a reboot from a genesis.
    #[command(after_help = PROPOSE_AFTER_HELP)]
    Reboot(RebootArgs),
}

/// `govctl propose upgrade`.
#[derive(Args)]
pub struct UpgradeArgs {
    /// Activation time: every node pre-stages at once and runs the upgrade at this time; a node
    /// that first sees the quorum more than its deadline_grace_secs later refuses it. Unix seconds
    /// or RFC 3339 UTC (2025-03-01T12:00:00Z) [default: nodes upgrade as soon as the quorum holds].
    #[arg(long, value_name = "TIME")]
    pub required_by: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: ProposeArgs,
}

/// `govctl propose reboot`.
#[derive(Args)]
pub struct RebootArgs {
    /// Where nodes fetch the genesis from: an https:// URL (no other scheme, no user@ before the
    /// host, no spaces or control characters).
    #[arg(long, value_name = "URL")]
    pub genesis_url: String,
    /// Deadline: unix seconds or RFC 3339 UTC (2025-03-01T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub required_by: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: ProposeArgs,
}

/// What every proposal needs, and where it goes.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("artifact_hash").required(true).args(["hash", "artifact"])))]
pub struct ProposeArgs {
    /// Version to sign, exactly as nodes will see it (e.g. v1.2.3).
    #[arg(long)]
    pub version: String,
    /// Network id (e.g. hqz).
    #[arg(long)]
    pub network: String,
    /// SHA-256 of the artifact, 64 hex characters (see `govctl hash`).
    #[arg(long, value_name = "HASH")]
    pub hash: Option<String>,
    /// Compute the SHA-256 from this artifact file.
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,
    /// Stop counting after this long (NIP-40 expiration): e.g. 12h, 30m, 2w.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_EXPIRES_IN)]
    pub expires_in: String,
    /// Sign a directive that never expires: it counts until you sign a newer one (warns).
    #[arg(long, conflicts_with = "expires_in")]
    pub no_expiry: bool,
    /// Staged rollout: only this percentage of nodes acts, picked by a hash of each node's key and
    /// the proposal (docs/PROTOCOL.md section 5.8); 1 to 100. Votes for different waves never add
    /// up. Written with a `crit` tag, so an agent that does not know waves refuses to count it.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
    pub rollout: Option<u8>,
    /// Staged rollout: a node that acts whatever its hash (npub or hex; repeatable). Without
    /// --rollout, only the named nodes act.
    #[arg(long, value_name = "NPUB")]
    pub node: Vec<String>,
    /// Human-readable sentence [default: one describing the directive].
    #[arg(long, value_name = "TEXT")]
    pub content: Option<String>,
    /// The d tag.
    #[arg(long, value_name = "TAG", default_value = "hyperqube")]
    pub d_tag: String,
    /// Write the signed event to FILE and touch no network.
    #[arg(long, value_name = "FILE", conflicts_with = "relay")]
    pub out: Option<PathBuf>,
    /// With --out: write an unsigned draft for `govctl sign`; no key is read.
    #[arg(long, requires = "out")]
    pub unsigned: bool,
    /// With --unsigned: the key that will sign the draft (npub or hex). Without it: a NIP-46
    /// remote signer signs instead of a key file, either bunker://PUBKEY?relay=wss://...&secret=...
    /// as the signer shows it, or nostrconnect://?relay=wss://... to pair with a signer app (govctl
    /// prints the full URI and a QR code to scan). Not with --key, --name or --passphrase-file.
    #[arg(long, value_name = "NPUB|URI", required_if_eq("unsigned", "true"))]
    pub signer: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: KeyArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub publish: PublishOptions,
}

/// Where and how to publish.
#[derive(Args)]
pub struct PublishOptions {
    /// Relay to publish to (repeatable): wss://host[:port][/path].
    #[arg(long, value_name = "URL")]
    pub relay: Vec<String>,
    /// Key file for NIP-42 AUTH: a key the relay lets publish (propose: default the signing key).
    #[arg(long, value_name = "PATH")]
    pub auth_key: Option<PathBuf>,
    /// Passphrase file of --auth-key.
    #[arg(long, value_name = "FILE", requires = "auth_key")]
    pub auth_passphrase_file: Option<PathBuf>,
    /// Seconds to wait for the relays' answers.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Allow ws:// (unencrypted) to hosts other than loopback.
    #[arg(long)]
    pub allow_insecure_ws: bool,
}

/// How a signature is checked, and how long a remote signer may take.
#[derive(Args)]
pub struct RemoteArgs {
    /// Refuse unless the directive is signed by this key (npub or hex). A remote signer that
    /// reports another key is refused before it is asked to sign.
    #[arg(long, value_name = "NPUB")]
    pub expect: Option<String>,
    /// Agent config: refuse unless the directive is signed by one of its voters (as --expect, for
    /// any voter among its follows).
    #[arg(long, value_name = "PATH", conflicts_with = "expect")]
    pub config: Option<PathBuf>,
    /// Seconds to wait for a remote signer: for its relay, for the signer app to pair
    /// (nostrconnect://), and for each answer (approving on a phone takes time).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_SIGNER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub signer_timeout: u64,
}

/// `govctl sign`.
#[derive(Args)]
pub struct SignArgs {
    /// Draft file made by `govctl propose ... --unsigned`.
    pub draft: PathBuf,
    /// Where to write the signed event.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Sign without asking for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// The d tag the draft must have.
    #[arg(long, value_name = "TAG", default_value = "hyperqube")]
    pub d_tag: String,
    /// A NIP-46 remote signer signs instead of a key file: bunker://PUBKEY?relay=wss://...&secret=...
    /// or nostrconnect://?relay=wss://... (govctl prints the URI and a QR code to scan). Not with
    /// --key, --name or --passphrase-file.
    #[arg(long, value_name = "URI")]
    pub signer: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub remote: RemoteArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: KeyArgs,
}

/// `govctl publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// Signed event files (NIP-01 JSON).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub publish: PublishOptions,
}

/// `govctl verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Event file (NIP-01 JSON).
    pub file: PathBuf,
    /// Agent config whose rules apply (author must be a voter, network, d tag).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Network the directive must name (without --config).
    #[arg(long, conflicts_with = "config")]
    pub network: Option<String>,
    /// The d tag the directive must have (without --config).
    #[arg(
        long,
        value_name = "TAG",
        default_value = "hyperqube",
        conflicts_with = "config"
    )]
    pub d_tag: String,
}

/// `govctl hash`.
#[derive(Args)]
pub struct HashArgs {
    /// The artifact.
    pub file: PathBuf,
}

/// Where `status` and `history` read, and which directives count.
#[derive(Args)]
pub struct SourceArgs {
    /// Agent config: follows, quorum, and default network and relays.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Relay to read (repeatable) [default: the config's relays].
    #[arg(long, value_name = "URL")]
    pub relay: Vec<String>,
    /// Network id [default: the config's].
    #[arg(long)]
    pub network: Option<String>,
    /// The d tag (without --config).
    #[arg(
        long,
        value_name = "TAG",
        default_value = "hyperqube",
        conflicts_with = "config"
    )]
    pub d_tag: String,
    /// Seconds to wait for the relays.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Allow ws:// (unencrypted) to hosts other than loopback.
    #[arg(long)]
    pub allow_insecure_ws: bool,
    /// Fleet file: the nodes that should answer ([[nodes]] with name and npub) [default for
    /// status: every node whose heartbeat a relay holds].
    #[arg(long, value_name = "PATH")]
    pub fleet: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `govctl history`: the audit trail, from relays.
#[derive(Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub source: SourceArgs,
    /// Events created at or after TIME: unix seconds or RFC 3339 UTC (2026-12-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: String,
    /// Events created at or before TIME [default: now].
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

/// `govctl status`.
#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub source: SourceArgs,
    /// Quorum to tally with [default: the config's; without one, a majority of the authors].
    #[arg(long, value_name = "N")]
    pub quorum: Option<usize>,
    /// Also write the fleet table as one self-contained HTML page (no scripts, no external
    /// resources) to FILE, replacing it atomically.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Mark heartbeats older than this many seconds as stale.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_STALE_SECS)]
    pub stale_after: u64,
}

/// `govctl key import`.
#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub key: KeyArgs,
    /// NIP-49 scrypt cost 2^N when an nsec or hex key is encrypted (at most 20).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_N,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_LOG_N)))]
    pub log_n: u8,
    /// Store the key unencrypted (nsec). Anyone who reads the file can sign.
    #[arg(long, conflicts_with = "log_n")]
    pub plaintext: bool,
}
