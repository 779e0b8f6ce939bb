//! The agent's TOML configuration (`docs/qube-agent.example.toml`), parsed once and checked
//! before anything starts.
//!
//! Parsing is two steps. First serde reads the file into raw structs with
//! `deny_unknown_fields` everywhere (`raw`), so a misspelt key is an error
//! naming the key and its line instead of a silently disabled safety check.
//! Then each value is checked and turned into a typed value (`validate`):
//! relay URLs are parsed by the `url` crate ([`RelayUrl`], from
//! [`crate::core::relay_url`]), public keys decoded (NIP-19 npub or hex) and
//! checked to be BIP-340 keys, versions parsed as semver, hook commands kept
//! as argv arrays (a shell string is a type error), and the quorum checked
//! against the number of voters (`docs/PROTOCOL.md` section 5.7).
//!
//! [`Config::load`] returns the config with a list of [`Warning`]s (things
//! that are allowed but probably not meant); a refusal is a [`ConfigError`]
//! with the key, line and advice (`error`). [`Config::normalized_toml`]
//! prints the effective config with every default filled in (`normalized`).
//! Hook sections are [`Hook`]s (`hook`); values derived from a config for
//! more than one program are in `derived`.

mod alert;
mod derived;
mod error;
mod hook;
mod normalized;
mod raw;
mod tls;
mod validate;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest as _;

use crate::core::nip19;
pub use crate::core::relay_url::{RelayUrl, RelayUrlError, MAX_RELAY_URL_LEN};
pub use crate::core::version::Version;
pub use alert::{
    AlertConfig, DEFAULT_ALERT_MIN_INTERVAL_SECS, DEFAULT_ALERT_RELAYS_DOWN_SECS,
    DEFAULT_ALERT_TIMEOUT_SECS, DEFAULT_ALERT_WORKER_RESTARTS,
};
pub use derived::{default_node_id, effective_installed};
pub use error::{ConfigError, ConfigErrorKind, Problem, Warning};
pub use hook::{ArtifactTemplate, Health, Hook};

/// The largest config file [`Config::load`] reads, in bytes (1 MiB). A real
/// config is a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// `state_dir` when the file does not set it.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/qube-agent";
/// `d_tag` when the file does not set it: the `d` tag of HyperQube
/// directives (kind 33321).
pub const DEFAULT_D_TAG: &str = "hyperqube";
/// `policy.max_future_skew_secs` when the file does not set it, in seconds
/// (`docs/PROTOCOL.md` section 5.1).
pub const DEFAULT_MAX_FUTURE_SKEW_SECS: u64 = 600;
/// The largest accepted `policy.max_future_skew_secs`, in seconds (one day).
pub const MAX_FUTURE_SKEW_SECS: u64 = 86_400;
/// A hook's `timeout_secs` when the file does not set it, in seconds.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 900;
/// The largest accepted hook `timeout_secs`, in seconds (one day).
pub const MAX_HOOK_TIMEOUT_SECS: u64 = 86_400;
/// How long `version_command` may run, in seconds.
pub const VERSION_COMMAND_TIMEOUT_SECS: u64 = 30;
/// `reboot.deadline_grace_secs` when the file does not set it, in seconds:
/// a reboot whose quorum is first reached after its `required_by` is
/// refused (a node that comes up late never reboots with an old genesis).
pub const DEFAULT_REBOOT_GRACE_SECS: u64 = 0;
/// `upgrade.deadline_grace_secs` when the file does not set it, in seconds
/// (one day): a node that was down when an upgrade's activation time
/// passed still upgrades within a day of it.
pub const DEFAULT_UPGRADE_GRACE_SECS: u64 = 86_400;
/// The largest accepted `deadline_grace_secs`, in seconds (30 days).
pub const MAX_DEADLINE_GRACE_SECS: u64 = 30 * 86_400;
/// `heartbeat.interval_secs` when the file does not set it, in seconds
/// (one hour).
pub const DEFAULT_HEARTBEAT_INTERVAL_SECS: u64 = 3600;
/// The largest accepted `heartbeat.interval_secs`, in seconds (one day).
pub const MAX_HEARTBEAT_INTERVAL_SECS: u64 = 86_400;
/// `settle_secs` of a `[SECTION.health]` table that does not set it, in
/// seconds.
pub const DEFAULT_HEALTH_SETTLE_SECS: u64 = 10;
/// `interval_secs` of a health check that does not set it, in seconds.
pub const DEFAULT_HEALTH_INTERVAL_SECS: u64 = 5;
/// `window_secs` of a `[SECTION.health]` table that does not set it, in
/// seconds.
pub const DEFAULT_HEALTH_WINDOW_SECS: u64 = 60;
/// The largest accepted health `settle_secs`, `interval_secs` and
/// `window_secs`, in seconds (one day).
pub const MAX_HEALTH_SECS: u64 = 86_400;
/// The largest accepted health `tries`.
pub const MAX_HEALTH_TRIES: u64 = 100;
/// The pause between two attempts of one health check, in seconds.
pub const HEALTH_RETRY_PAUSE_SECS: u64 = 1;
/// The longest `network`, `d_tag`, `node_id` or follow `name`, in bytes.
pub const MAX_NAME_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Typed values
// ---------------------------------------------------------------------------

/// A validated agent configuration (`docs/qube-agent.example.toml`).
///
/// Built only by [`Config::load`] or [`Config::from_toml_str`], so every
/// value satisfies the checks documented on its accessor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    network: String,
    quorum: usize,
    relays: Vec<RelayUrl>,
    state_dir: PathBuf,
    node_id: Option<String>,
    node_key: Option<NodeKeySource>,
    current_version: Option<Version>,
    /// `version_command`: prints the installed version.
    version_command: Option<Vec<String>>,
    d_tag: String,
    /// `metrics_file`: where the Prometheus text file goes.
    metrics_file: Option<PathBuf>,
    follows: Vec<Follow>,
    policy: Policy,
    upgrade: Option<Hook>,
    reboot: Option<Hook>,
    /// `[tls] extra_roots`: the file and the DER certificates it held when
    /// the config was read.
    tls_extra_roots: Option<(PathBuf, Vec<Vec<u8>>)>,
    /// `[heartbeat]`.
    heartbeat: HeartbeatConfig,
    /// `[alert]`.
    alert: Option<AlertConfig>,
    /// SHA-256 of the file [`Config::load`] read; `None` from a string.
    source_sha256: Option<[u8; 32]>,
}

/// The `[heartbeat]` section (`docs/PROTOCOL.md` section 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatConfig {
    pub(super) relays: Vec<usize>,
    pub(super) interval_secs: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            relays: Vec::new(),
            interval_secs: DEFAULT_HEARTBEAT_INTERVAL_SECS,
        }
    }
}

impl HeartbeatConfig {
    /// Where heartbeats go: indexes into [`Config::relays`], distinct, in
    /// file order; empty (the default) means no heartbeats. Every
    /// heartbeat relay must also be in `relays`, so the worker is already
    /// connected to it (it then also serves directives and acks).
    pub fn relays(&self) -> &[usize] {
        &self.relays
    }

    /// Seconds between heartbeats (one is also sent at start and after
    /// each action): 1 to [`MAX_HEARTBEAT_INTERVAL_SECS`], default
    /// [`DEFAULT_HEARTBEAT_INTERVAL_SECS`].
    pub fn interval_secs(&self) -> u64 {
        self.interval_secs
    }
}

/// Whether a follow's directives count (`docs/PROTOCOL.md` section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `"voter"`: its directives count towards the quorum.
    Voter,
    /// `"observer"`: shown in status, never counted.
    Observer,
}

impl Role {
    /// The TOML spelling: `"voter"` or `"observer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Observer => "observer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[follows]]` entry: a trusted governance key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follow {
    name: String,
    pubkey: [u8; 32],
    role: Role,
}

impl Follow {
    /// Display name: 1 to [`MAX_NAME_LEN`] bytes, no control characters, no
    /// surrounding whitespace, unique in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 32-byte BIP-340 x-only public key (a valid curve point), unique
    /// in the config.
    pub fn pubkey(&self) -> &[u8; 32] {
        &self.pubkey
    }

    /// The public key as a NIP-19 `npub`.
    pub fn npub(&self) -> String {
        nip19::encode_npub(&self.pubkey)
    }

    /// The public key as 64 lowercase hex characters (the NIP-01 form).
    pub fn pubkey_hex(&self) -> String {
        hex::encode(self.pubkey)
    }

    /// Voter or observer.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// The `[policy]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    max_future_skew_secs: u64,
    allow_downgrade: bool,
    allow_insecure_ws: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_future_skew_secs: DEFAULT_MAX_FUTURE_SKEW_SECS,
            allow_downgrade: false,
            allow_insecure_ws: false,
        }
    }
}

impl Policy {
    /// How far in the future a directive's `created_at` may be, in seconds:
    /// 0 to [`MAX_FUTURE_SKEW_SECS`], default
    /// [`DEFAULT_MAX_FUTURE_SKEW_SECS`] (`docs/PROTOCOL.md` section 5.1).
    pub fn max_future_skew_secs(&self) -> u64 {
        self.max_future_skew_secs
    }

    /// Whether an upgrade to a version not newer than the installed one may
    /// run (`docs/PROTOCOL.md` section 5.4). Default `false`.
    pub fn allow_downgrade(&self) -> bool {
        self.allow_downgrade
    }

    /// Whether `ws://` relays other than loopback are accepted. Default
    /// `false`.
    pub fn allow_insecure_ws(&self) -> bool {
        self.allow_insecure_ws
    }
}

/// Where the node key comes from (`node_key`; `docs/qube-agent.example.toml`, `state_dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKeySource {
    /// An absolute path to a key file.
    File(PathBuf),
    /// `env:VAR`: the named environment variable holds the key. The name
    /// matches `[A-Za-z_][A-Za-z0-9_]*`.
    Env(String),
}

impl Config {
    /// Reads and checks the config file at `path`.
    ///
    /// Reads at most [`MAX_CONFIG_BYTES`]; the rest is
    /// [`Config::from_toml_str`]. On Unix a file writable by group or
    /// others adds a [`Warning::WritableByOthers`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file, the key and line where known, and
    /// advice: the file cannot be read, is too large, is not UTF-8, is not
    /// valid TOML of the expected shape, or a value is refused.
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let read_error = |err: std::io::Error| ConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            kind: ConfigErrorKind::Read {
                io: err.kind(),
                detail: err.to_string(),
            },
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        if metadata.is_dir() {
            return Err(read_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory",
            )));
        }
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_CONFIG_BYTES) {
            return Err(ConfigError {
                file: Some(path.to_path_buf()),
                line: None,
                kind: ConfigErrorKind::TooLarge {
                    max: MAX_CONFIG_BYTES,
                },
            });
        }
        let text = String::from_utf8(bytes).map_err(|err| ConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            kind: ConfigErrorKind::NotUtf8 {
                offset: err.utf8_error().valid_up_to(),
            },
        })?;
        let (mut config, mut warnings) =
            Config::from_toml_str(&text).map_err(|e| e.with_file(path))?;
        config.source_sha256 = Some(sha2::Sha256::digest(text.as_bytes()).into());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o022 != 0 {
                warnings.push(Warning::WritableByOthers { mode });
            }
        }
        Ok((config, warnings))
    }

    /// Parses and checks a config from TOML text (`docs/qube-agent.example.toml`).
    ///
    /// Checks, beyond the TOML types: `network`, `d_tag`, `node_id` and
    /// follow names are 1 to [`MAX_NAME_LEN`] printable bytes; `relays` is a
    /// non-empty list of distinct [`RelayUrl`]s, each `wss://`, or `ws://`
    /// to a loopback host unless `policy.allow_insecure_ws`; `state_dir`,
    /// a `node_key` path and hook `artifact`s are absolute; `node_key` is a
    /// path or `env:VAR`; `current_version` is semver with an optional
    /// leading `v`; each follow's key is an npub or 64 hex characters, a
    /// valid BIP-340 key, and distinct; `1 <= quorum <= voters`
    /// (`docs/PROTOCOL.md` section 5.7); numbers are in the ranges their accessors state;
    /// hook commands are non-empty argv arrays.
    ///
    /// Returns the config and its [`Warning`]s, in file order.
    ///
    /// # Errors
    /// A [`ConfigError`] (with no file) naming the key and line.
    pub fn from_toml_str(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        validate::from_toml_str(text)
    }

    /// The network id directives must carry (`network` tag), e.g. `hqz`.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// Distinct voters needed for a proposal: `1 <= quorum <= voters`.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The relays, distinct, in file order (at least one).
    pub fn relays(&self) -> &[RelayUrl] {
        &self.relays
    }

    /// Where state lives (`docs/qube-agent.example.toml`, `state_dir`); absolute, default
    /// [`DEFAULT_STATE_DIR`].
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The `[heartbeat]` section, defaults filled in.
    pub fn heartbeat(&self) -> &HeartbeatConfig {
        &self.heartbeat
    }

    /// The `[alert]` section, if configured.
    pub fn alert(&self) -> Option<&AlertConfig> {
        self.alert.as_ref()
    }

    /// SHA-256 of the file [`Config::load`] read, as published in
    /// heartbeats; `None` for a config parsed from a string.
    pub fn source_sha256(&self) -> Option<&[u8; 32]> {
        self.source_sha256.as_ref()
    }

    /// `[tls] extra_roots`: the PEM file of additional trust anchors for
    /// `wss://` relays (private relays with their own CA), if set.
    pub fn tls_extra_roots_path(&self) -> Option<&Path> {
        self.tls_extra_roots
            .as_ref()
            .map(|(path, _)| path.as_path())
    }

    /// The certificates of `[tls] extra_roots`, DER, as read and checked
    /// when the config was loaded (empty when not set). Trusted in addition
    /// to the Mozilla roots of webpki-roots, never instead.
    pub fn tls_extra_roots(&self) -> &[Vec<u8>] {
        self.tls_extra_roots
            .as_ref()
            .map_or(&[][..], |(_, roots)| roots.as_slice())
    }

    /// The `node_id` written in acks; `None` means derived from the node key.
    pub fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }

    /// Where the node key comes from; `None` means `state_dir/node.key`,
    /// generated at first start (`docs/qube-agent.example.toml`, `state_dir`).
    pub fn node_key(&self) -> Option<&NodeKeySource> {
        self.node_key.as_ref()
    }

    /// The configured anti-rollback floor, if any.
    pub fn current_version(&self) -> Option<&Version> {
        self.current_version.as_ref()
    }

    /// `version_command`: an argv (same rules as the hook argvs) whose
    /// standard output, trimmed, is the installed version (SemVer, a
    /// leading `v` allowed). The agent runs it at start, under
    /// [`VERSION_COMMAND_TIMEOUT_SECS`]; its version joins
    /// `current_version` and the recorded version (the highest counts).
    /// Without a known installed version, upgrades are refused.
    pub fn version_command(&self) -> Option<&[String]> {
        self.version_command.as_deref()
    }

    /// The `d` tag directives must carry; default [`DEFAULT_D_TAG`].
    pub fn d_tag(&self) -> &str {
        &self.d_tag
    }

    /// `metrics_file`: the absolute path of the Prometheus text-format file
    /// the agent keeps up to date for node_exporter's textfile collector;
    /// `None` writes none. The file name should end in `.prom` (the
    /// collector reads only those).
    pub fn metrics_file(&self) -> Option<&Path> {
        self.metrics_file.as_deref()
    }

    /// Every follow, voters and observers, in file order.
    pub fn follows(&self) -> &[Follow] {
        &self.follows
    }

    /// The follows whose directives count.
    pub fn voters(&self) -> impl Iterator<Item = &Follow> {
        self.follows.iter().filter(|f| f.role == Role::Voter)
    }

    /// The follow with this public key, if any.
    pub fn follow(&self, pubkey: &[u8; 32]) -> Option<&Follow> {
        self.follows.iter().find(|f| f.pubkey == *pubkey)
    }

    /// The `[policy]` section, defaults filled in.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The `[upgrade]` hook, if configured.
    pub fn upgrade(&self) -> Option<&Hook> {
        self.upgrade.as_ref()
    }

    /// The `[reboot]` hook, if configured.
    pub fn reboot(&self) -> Option<&Hook> {
        self.reboot.as_ref()
    }

    /// The hook section named by `action` (`[upgrade]` or `[reboot]`), if
    /// configured.
    pub fn hook(&self, action: crate::core::directive::Action) -> Option<&Hook> {
        match action {
            crate::core::directive::Action::Upgrade => self.upgrade(),
            crate::core::directive::Action::Reboot => self.reboot(),
        }
    }
}
