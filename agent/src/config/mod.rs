//! The agent's TOML configuration (design section 7), parsed once and checked
//! before anything starts.
//!
//! Parsing is two steps. First serde reads the file into raw structs with
//! `deny_unknown_fields` everywhere, so a misspelt key is an error naming the
//! key and its line instead of a silently disabled safety check. Then each
//! value is checked and turned into a typed value: relay URLs are parsed
//! by the `url` crate ([`RelayUrl`], from [`crate::core::relay_url`]), public keys
//! decoded (NIP-19 npub or hex) and checked to be BIP-340 keys, versions
//! parsed as semver, hook commands kept as argv arrays (a shell string is a
//! type error), and the quorum checked against the number of voters (design
//! section 3, rule 7).
//!
//! [`Config::load`] returns the config with a list of [`Warning`]s (things
//! that are allowed but probably not meant); [`Config::normalized_toml`]
//! prints the effective config with every default filled in.

mod derived;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::core::nip19::{self, Nip19Error};
pub use crate::core::relay_url::{RelayUrl, RelayUrlError, MAX_RELAY_URL_LEN};

/// The largest config file [`Config::load`] reads, in bytes (1 MiB). A real
/// config is a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// `state_dir` when the file does not set it.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/qube-agent";
/// `d_tag` when the file does not set it: the `d` tag of HyperQube
/// directives (kind 33321).
pub const DEFAULT_D_TAG: &str = "hyperqube";
/// `policy.max_future_skew_secs` when the file does not set it, in seconds
/// (design section 3, rule 1).
pub const DEFAULT_MAX_FUTURE_SKEW_SECS: u64 = 600;
/// The largest accepted `policy.max_future_skew_secs`, in seconds (one day).
pub const MAX_FUTURE_SKEW_SECS: u64 = 86_400;
/// A hook's `timeout_secs` when the file does not set it, in seconds.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 900;
/// The largest accepted hook `timeout_secs`, in seconds (one day).
pub const MAX_HOOK_TIMEOUT_SECS: u64 = 86_400;
/// The longest `network`, `d_tag`, `node_id` or follow `name`, in bytes.
pub const MAX_NAME_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Typed values
// ---------------------------------------------------------------------------

/// A validated agent configuration (design section 7).
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
    d_tag: String,
    follows: Vec<Follow>,
    policy: Policy,
    upgrade: Option<Hook>,
    reboot: Option<Hook>,
}

/// Whether a follow's directives count (design section 3, rule 1).
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
    /// [`DEFAULT_MAX_FUTURE_SKEW_SECS`] (design section 3, rule 1).
    pub fn max_future_skew_secs(&self) -> u64 {
        self.max_future_skew_secs
    }

    /// Whether an upgrade to a version not newer than the installed one may
    /// run (design section 3, rule 4). Default `false`.
    pub fn allow_downgrade(&self) -> bool {
        self.allow_downgrade
    }

    /// Whether `ws://` relays other than loopback are accepted. Default
    /// `false`.
    pub fn allow_insecure_ws(&self) -> bool {
        self.allow_insecure_ws
    }
}

/// Where the node key comes from (`node_key`; design section 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKeySource {
    /// An absolute path to a key file.
    File(PathBuf),
    /// `env:VAR`: the named environment variable holds the key. The name
    /// matches `[A-Za-z_][A-Za-z0-9_]*`.
    Env(String),
}

/// A hook section, `[upgrade]` or `[reboot]` (design section 4).
///
/// Every argv is non-empty, its program (first element) non-empty, and no
/// element contains a NUL byte. The hooks are run directly, never through a
/// shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    command: Vec<String>,
    timeout_secs: u64,
    artifact: Option<ArtifactTemplate>,
    fetch: Option<Vec<String>>,
    health: Option<Vec<String>>,
    rollback: Option<Vec<String>>,
}

impl Hook {
    /// The argv run for the action: program then arguments.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// Time limit for each of this section's commands, in seconds: 1 to
    /// [`MAX_HOOK_TIMEOUT_SECS`], default [`DEFAULT_HOOK_TIMEOUT_SECS`].
    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs
    }

    /// Where the artifact lands; its SHA-256 must equal the voted hash
    /// before `command` runs.
    pub fn artifact(&self) -> Option<&ArtifactTemplate> {
        self.artifact.as_ref()
    }

    /// Optional argv run before the hash check, to fetch the artifact.
    pub fn fetch(&self) -> Option<&[String]> {
        self.fetch.as_deref()
    }

    /// Optional argv run after `command`; a failure triggers `rollback`.
    pub fn health(&self) -> Option<&[String]> {
        self.health.as_deref()
    }

    /// Optional argv run when `health` fails.
    pub fn rollback(&self) -> Option<&[String]> {
        self.rollback.as_deref()
    }
}

/// An absolute path template in which every `{version}` expands to the
/// version string exactly as signed (design section 4). No other `{` or `}`
/// may appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactTemplate(String);

impl ArtifactTemplate {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Expands `{version}` to `version`.
    ///
    /// Returns `None` when `version` is empty or has a byte outside
    /// `[0-9A-Za-z.+-]` (the semver alphabet plus a leading `v`) or contains
    /// `..`: a directive's version can never add a path component.
    pub fn expand(&self, version: &str) -> Option<PathBuf> {
        let safe = !version.is_empty()
            && !version.contains("..")
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
        safe.then(|| PathBuf::from(self.0.replace("{version}", version)))
    }
}

pub use crate::core::version::Version;
pub use derived::{default_node_id, effective_installed};

// ---------------------------------------------------------------------------
// Errors and warnings
// ---------------------------------------------------------------------------

/// Why a config file was refused: what, where (file, line) and advice.
///
/// `Display` gives `FILE, line N: `key`: problem` (or the TOML parser's
/// message, with line, column and the offending line) followed by a second
/// line `hint: ...` saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    file: Option<PathBuf>,
    line: Option<usize>,
    kind: ConfigErrorKind,
}

/// What is wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The file could not be opened or read.
    Read {
        /// The operating system's error kind.
        io: std::io::ErrorKind,
        /// The operating system's message.
        detail: String,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    TooLarge {
        /// The limit, in bytes.
        max: u64,
    },
    /// The file is not UTF-8 (TOML 1.0 requires it).
    NotUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// TOML syntax error, unknown key, missing key or value of the wrong
    /// type; the text is the TOML parser's, with line and column.
    Toml(String),
    /// A value is well-typed but not acceptable.
    Invalid {
        /// Dotted path of the key, e.g. `relays[1]` or `follows[0].npub`
        /// (indexes from 0).
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// An empty string or list where a value is required.
    Empty,
    /// A string longer than the limit.
    TooLong {
        /// Length found, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// A string with control characters or leading/trailing whitespace.
    BadText,
    /// An integer outside its range.
    OutOfRange {
        /// Value found.
        found: i64,
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// A relay URL that does not parse.
    Relay(RelayUrlError),
    /// A `ws://` relay to a host that is not loopback, without
    /// `policy.allow_insecure_ws`.
    InsecureRelay,
    /// The same relay (canonical form) listed twice.
    DuplicateRelay {
        /// Key of the first occurrence.
        first: String,
    },
    /// A public key that is neither an npub nor 64 hex characters.
    Pubkey(Nip19Error),
    /// 32 bytes that are not a BIP-340 public key (no curve point).
    NotOnCurve,
    /// The same public key in two `[[follows]]` entries.
    DuplicateFollow {
        /// Name of the first entry with that key.
        first: String,
    },
    /// The same name in two `[[follows]]` entries.
    DuplicateName,
    /// Not a semantic version (the text is the semver parser's).
    Version(String),
    /// A path that is not absolute.
    NotAbsolute,
    /// `env:` followed by something that is not a variable name.
    EnvVar,
    /// A command argv with no elements.
    EmptyCommand,
    /// A command whose program (first element) is empty.
    EmptyProgram,
    /// A command argument or path with a NUL byte.
    NulByte,
    /// An artifact template with a `{` or `}` other than `{version}`.
    Template,
    /// `quorum` is less than 1.
    QuorumTooSmall {
        /// Value found.
        quorum: i64,
    },
    /// `quorum` is more than the number of voters, so it can never be met.
    QuorumAboveVoters {
        /// Value found.
        quorum: i64,
        /// Follows with role `voter`.
        voters: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("must not be empty"),
            Problem::TooLong { len, max } => {
                write!(f, "is {len} bytes, more than the limit of {max}")
            }
            Problem::BadText => {
                f.write_str("has control characters or leading/trailing whitespace")
            }
            Problem::OutOfRange { found, min, max } => {
                write!(f, "{found} is outside {min}..={max}")
            }
            Problem::Relay(err) => write!(f, "not a relay URL: {err}"),
            Problem::InsecureRelay => {
                f.write_str("ws:// (unencrypted) is only allowed to a loopback host")
            }
            Problem::DuplicateRelay { first } => write!(f, "same relay as `{first}`"),
            Problem::Pubkey(err) => write!(f, "bad public key: {err}"),
            Problem::NotOnCurve => f.write_str("is not a valid BIP-340 public key"),
            Problem::DuplicateFollow { first } => write!(
                f,
                "the same public key as follow \"{}\"",
                first.escape_debug()
            ),
            Problem::DuplicateName => f.write_str("another follow has the same name"),
            Problem::Version(err) => write!(f, "not a semantic version: {err}"),
            Problem::NotAbsolute => f.write_str("must be an absolute path"),
            Problem::EnvVar => f.write_str("`env:` must be followed by a variable name"),
            Problem::EmptyCommand => f.write_str("command is an empty array"),
            Problem::EmptyProgram => f.write_str("the program (first element) is empty"),
            Problem::NulByte => f.write_str("contains a NUL byte"),
            Problem::Template => f.write_str("has a `{` or `}` that is not part of `{version}`"),
            Problem::QuorumTooSmall { quorum } => write!(f, "quorum {quorum} is less than 1"),
            Problem::QuorumAboveVoters { quorum, voters } => write!(
                f,
                "quorum {quorum} is more than the {voters} follow(s) with role \"voter\", so it can never be met"
            ),
        }
    }
}

impl Problem {
    /// What the operator can do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            Problem::Empty | Problem::TooLong { .. } | Problem::BadText => {
                "give a short printable value"
            }
            Problem::OutOfRange { .. } => "use a value inside the range shown",
            Problem::Relay(_) => "write relays as \"wss://host[:port][/path]\"",
            Problem::InsecureRelay => {
                "use wss://; for a trusted private network set `allow_insecure_ws = true` in [policy]"
            }
            Problem::DuplicateRelay { .. } => "remove the duplicate entry",
            Problem::Pubkey(Nip19Error::SecretKey) => {
                "never put a secret key in the agent config; put the follow's npub here and treat the nsec as leaked"
            }
            Problem::Pubkey(_) | Problem::NotOnCurve => {
                "copy the follow's npub again (`govctl key show` prints it)"
            }
            Problem::DuplicateFollow { .. } | Problem::DuplicateName => {
                "list each governance key once, under one name"
            }
            Problem::Version(_) => "write a version such as \"1.2.3\" or \"v1.2.3\"",
            Problem::NotAbsolute => "the agent runs as a service: give a path starting with /",
            Problem::EnvVar => "write node_key = \"env:VARIABLE_NAME\", or a key file path",
            Problem::EmptyCommand | Problem::EmptyProgram | Problem::NulByte => {
                "give the program and its arguments as an array, e.g. [\"/usr/local/libexec/pillar-upgrade\", \"--flag\"]"
            }
            Problem::Template => {
                "the only placeholder is {version}, e.g. \"/var/lib/pillar/staging/znnd-{version}\""
            }
            Problem::QuorumTooSmall { .. } | Problem::QuorumAboveVoters { .. } => {
                "set 1 <= quorum <= the number of [[follows]] with role = \"voter\" (observers do not count)"
            }
        }
    }
}

impl ConfigError {
    /// What is wrong.
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }

    /// The file, when the config came from [`Config::load`].
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The 1-based line of the offending key or value, when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What the operator can do about it (one sentence).
    pub fn advice(&self) -> &'static str {
        match &self.kind {
            ConfigErrorKind::Read { io, .. } => match io {
                std::io::ErrorKind::NotFound => "check the path given to --config",
                std::io::ErrorKind::PermissionDenied => {
                    "run as the agent's user, or let it read the file"
                }
                _ => "check that the path names a readable regular file",
            },
            ConfigErrorKind::TooLarge { .. } => {
                "a config is a few kilobytes; check that --config names the right file"
            }
            ConfigErrorKind::NotUtf8 { .. } => "save the file as UTF-8",
            ConfigErrorKind::Toml(msg) if msg.contains("unknown field") => {
                "check the spelling against docs/qube-agent.example.toml, which documents every accepted key; unknown keys are errors so that a typo cannot disable a safety check"
            }
            ConfigErrorKind::Toml(msg) if msg.contains(ARGV_EXPECTED) => {
                "write the command as an array: program then arguments, e.g. [\"/usr/local/libexec/pillar-upgrade\", \"--flag\"]; it never runs through a shell"
            }
            ConfigErrorKind::Toml(_) => {
                "compare with docs/qube-agent.example.toml, which documents every accepted key and its type"
            }
            ConfigErrorKind::Invalid { problem, .. } => problem.advice(),
        }
    }

    fn with_file(mut self, file: &Path) -> Self {
        self.file = Some(file.to_path_buf());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = match &self.file {
            Some(path) => format!("config file {}", path.display()),
            None => "config".to_owned(),
        };
        match &self.kind {
            ConfigErrorKind::Read { detail, .. } => write!(f, "cannot read {file}: {detail}")?,
            ConfigErrorKind::TooLarge { max } => {
                write!(f, "{file} is larger than the limit of {max} bytes")?;
            }
            ConfigErrorKind::NotUtf8 { offset } => {
                write!(f, "{file} is not UTF-8 (invalid byte at offset {offset})")?;
            }
            ConfigErrorKind::Toml(msg) => write!(f, "{file}: {}", msg.trim_end())?,
            ConfigErrorKind::Invalid { key, problem } => {
                f.write_str(&file)?;
                if let Some(line) = self.line {
                    write!(f, ", line {line}")?;
                }
                write!(f, ": `{key}`: {problem}")?;
            }
        }
        write!(f, "\nhint: {}", self.advice())
    }
}

impl std::error::Error for ConfigError {}

/// Something a config allows but an operator probably did not mean.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// `quorum <= voters / 2`: two disjoint sets of voters can each reach
    /// quorum for conflicting proposals (design section 3, rule 7).
    WeakQuorum {
        /// The quorum.
        quorum: usize,
        /// Follows with role `voter`.
        voters: usize,
    },
    /// No hook section for an action: directives for it that reach quorum
    /// cannot run on this node.
    MissingHook {
        /// `"upgrade"` or `"reboot"`.
        section: &'static str,
    },
    /// A hook program that is not an absolute path: it is looked up in the
    /// agent's `PATH`.
    ProgramNotAbsolute {
        /// Key of the argv, e.g. `upgrade.command`.
        key: String,
        /// The program as written.
        program: String,
    },
    /// A `ws://` relay to a non-loopback host, allowed by
    /// `policy.allow_insecure_ws`: traffic to it is unencrypted.
    InsecureRelay {
        /// The relay, canonical form.
        url: String,
    },
    /// The config file can be written by group or others, who could then
    /// change the follows or the hooks.
    WritableByOthers {
        /// The file's permission bits.
        mode: u32,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::WeakQuorum { quorum, voters } => write!(
                f,
                "quorum {quorum} is at most half of the {voters} voters: two conflicting proposals can both reach quorum; consider quorum = {}",
                voters / 2 + 1
            ),
            Warning::MissingHook { section } => write!(
                f,
                "no [{section}] section: {section} directives that reach quorum cannot run on this node"
            ),
            Warning::ProgramNotAbsolute { key, program } => write!(
                f,
                "`{key}` program \"{}\" is not an absolute path and will be looked up in PATH",
                program.escape_debug()
            ),
            Warning::InsecureRelay { url } => write!(
                f,
                "relay {url} is unencrypted ws:// to a non-loopback host (allowed by policy.allow_insecure_ws)"
            ),
            Warning::WritableByOthers { mode } => write!(
                f,
                "config file mode is {mode:o}: group or others can change the follows and hooks; chmod go-w it"
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Raw serde structs
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    network: Spanned<String>,
    quorum: Spanned<i64>,
    relays: Spanned<Vec<Spanned<String>>>,
    state_dir: Option<Spanned<String>>,
    node_id: Option<Spanned<String>>,
    node_key: Option<Spanned<String>>,
    current_version: Option<Spanned<String>>,
    d_tag: Option<Spanned<String>>,
    #[serde(default)]
    follows: Vec<RawFollow>,
    #[serde(default)]
    policy: RawPolicy,
    upgrade: Option<RawHook>,
    reboot: Option<RawHook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollow {
    name: Spanned<String>,
    npub: Spanned<String>,
    role: Role,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    max_future_skew_secs: Option<Spanned<i64>>,
    allow_downgrade: Option<bool>,
    allow_insecure_ws: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    command: Spanned<RawArgv>,
    timeout_secs: Option<Spanned<i64>>,
    artifact: Option<Spanned<String>>,
    fetch: Option<Spanned<RawArgv>>,
    health: Option<Spanned<RawArgv>>,
    rollback: Option<Spanned<RawArgv>>,
}

/// What a hook command must be; the TOML type error quotes it.
const ARGV_EXPECTED: &str =
    "an array of strings (argv: program then arguments; a shell command line is not accepted)";

/// An argv array. A string is a type error whose message says why.
struct RawArgv(Vec<String>);

impl<'de> Deserialize<'de> for RawArgv {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgvVisitor;
        impl<'de> Visitor<'de> for ArgvVisitor {
            type Value = RawArgv;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ARGV_EXPECTED)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawArgv, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(RawArgv(argv))
            }
        }
        deserializer.deserialize_seq(ArgvVisitor)
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// The source text, to turn byte spans into line numbers.
struct Source<'a>(&'a str);

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> Option<usize> {
        self.0
            .get(..span.start)
            .map(|before| before.bytes().filter(|&b| b == b'\n').count() + 1)
    }

    fn invalid(
        &self,
        key: impl Into<String>,
        span: &Range<usize>,
        problem: Problem,
    ) -> ConfigError {
        ConfigError {
            file: None,
            line: self.line(span),
            kind: ConfigErrorKind::Invalid {
                key: key.into(),
                problem,
            },
        }
    }

    /// A required short string: non-empty, bounded, printable.
    fn text(&self, key: &str, value: Spanned<String>, max: usize) -> Result<String, ConfigError> {
        let span = value.span();
        let value = value.into_inner();
        let problem = if value.is_empty() {
            Some(Problem::Empty)
        } else if value.len() > max {
            Some(Problem::TooLong {
                len: value.len(),
                max,
            })
        } else if value.chars().any(char::is_control) || value.trim() != value {
            Some(Problem::BadText)
        } else {
            None
        };
        match problem {
            Some(problem) => Err(self.invalid(key, &span, problem)),
            None => Ok(value),
        }
    }

    fn absolute_path(&self, key: &str, value: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        let text = value.get_ref();
        if text.contains('\0') {
            return Err(self.invalid(key, &value.span(), Problem::NulByte));
        }
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(self.invalid(key, &value.span(), Problem::NotAbsolute));
        }
        Ok(path)
    }

    fn range(
        &self,
        key: &str,
        value: &Spanned<i64>,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let found = *value.get_ref();
        match u64::try_from(found) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.invalid(key, &value.span(), Problem::OutOfRange { found, min, max })),
        }
    }

    fn argv(
        &self,
        key: &str,
        value: Spanned<RawArgv>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Vec<String>, ConfigError> {
        let span = value.span();
        let RawArgv(argv) = value.into_inner();
        let Some(program) = argv.first() else {
            return Err(self.invalid(key, &span, Problem::EmptyCommand));
        };
        if program.is_empty() {
            return Err(self.invalid(key, &span, Problem::EmptyProgram));
        }
        if argv.iter().any(|arg| arg.contains('\0')) {
            return Err(self.invalid(key, &span, Problem::NulByte));
        }
        if !Path::new(program).is_absolute() {
            warnings.push(Warning::ProgramNotAbsolute {
                key: key.to_owned(),
                program: program.clone(),
            });
        }
        Ok(argv)
    }

    fn hook(
        &self,
        section: &str,
        raw: RawHook,
        warnings: &mut Vec<Warning>,
    ) -> Result<Hook, ConfigError> {
        let key = |field: &str| format!("{section}.{field}");
        let command = self.argv(&key("command"), raw.command, warnings)?;
        let timeout_secs = match &raw.timeout_secs {
            Some(t) => self.range(&key("timeout_secs"), t, 1, MAX_HOOK_TIMEOUT_SECS)?,
            None => DEFAULT_HOOK_TIMEOUT_SECS,
        };
        let artifact = match &raw.artifact {
            None => None,
            Some(template) => {
                self.absolute_path(&key("artifact"), template)?;
                let text = template.get_ref();
                if text.replace("{version}", "").contains(['{', '}']) {
                    return Err(self.invalid(key("artifact"), &template.span(), Problem::Template));
                }
                Some(ArtifactTemplate(text.clone()))
            }
        };
        let mut optional = |field: &str, value: Option<Spanned<RawArgv>>| {
            value
                .map(|argv| self.argv(&key(field), argv, warnings))
                .transpose()
        };
        let fetch = optional("fetch", raw.fetch)?;
        let health = optional("health", raw.health)?;
        let rollback = optional("rollback", raw.rollback)?;
        Ok(Hook {
            command,
            timeout_secs,
            artifact,
            fetch,
            health,
            rollback,
        })
    }
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
        let (config, mut warnings) = Config::from_toml_str(&text).map_err(|e| e.with_file(path))?;
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

    /// Parses and checks a config from TOML text (design section 7).
    ///
    /// Checks, beyond the TOML types: `network`, `d_tag`, `node_id` and
    /// follow names are 1 to [`MAX_NAME_LEN`] printable bytes; `relays` is a
    /// non-empty list of distinct [`RelayUrl`]s, each `wss://`, or `ws://`
    /// to a loopback host unless `policy.allow_insecure_ws`; `state_dir`,
    /// a `node_key` path and hook `artifact`s are absolute; `node_key` is a
    /// path or `env:VAR`; `current_version` is semver with an optional
    /// leading `v`; each follow's key is an npub or 64 hex characters, a
    /// valid BIP-340 key, and distinct; `1 <= quorum <= voters` (design
    /// section 3, rule 7); numbers are in the ranges their accessors state;
    /// hook commands are non-empty argv arrays.
    ///
    /// Returns the config and its [`Warning`]s, in file order.
    ///
    /// # Errors
    /// A [`ConfigError`] (with no file) naming the key and line.
    pub fn from_toml_str(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| {
            let line = err.span().and_then(|span| Source(text).line(&span));
            ConfigError {
                file: None,
                line,
                kind: ConfigErrorKind::Toml(err.to_string()),
            }
        })?;
        let src = Source(text);
        let mut warnings = Vec::new();

        let network = src.text("network", raw.network, MAX_NAME_LEN)?;
        let d_tag = match raw.d_tag {
            Some(tag) => src.text("d_tag", tag, MAX_NAME_LEN)?,
            None => DEFAULT_D_TAG.to_owned(),
        };
        let node_id = raw
            .node_id
            .map(|id| src.text("node_id", id, MAX_NAME_LEN))
            .transpose()?;
        let state_dir = match &raw.state_dir {
            Some(dir) => src.absolute_path("state_dir", dir)?,
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };
        let node_key = match &raw.node_key {
            None => None,
            Some(value) => match value.get_ref().strip_prefix("env:") {
                Some(var) => {
                    let valid = var
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        return Err(src.invalid("node_key", &value.span(), Problem::EnvVar));
                    }
                    Some(NodeKeySource::Env(var.to_owned()))
                }
                None => Some(NodeKeySource::File(src.absolute_path("node_key", value)?)),
            },
        };
        let current_version = match &raw.current_version {
            None => None,
            Some(value) => Some(Version::parse(value.get_ref()).map_err(|err| {
                src.invalid(
                    "current_version",
                    &value.span(),
                    Problem::Version(err.to_string()),
                )
            })?),
        };

        let policy = Policy {
            max_future_skew_secs: match &raw.policy.max_future_skew_secs {
                Some(v) => src.range("policy.max_future_skew_secs", v, 0, MAX_FUTURE_SKEW_SECS)?,
                None => DEFAULT_MAX_FUTURE_SKEW_SECS,
            },
            allow_downgrade: raw.policy.allow_downgrade.unwrap_or(false),
            allow_insecure_ws: raw.policy.allow_insecure_ws.unwrap_or(false),
        };

        let relays_span = raw.relays.span();
        let raw_relays = raw.relays.into_inner();
        if raw_relays.is_empty() {
            return Err(src.invalid("relays", &relays_span, Problem::Empty));
        }
        let mut relays: Vec<RelayUrl> = Vec::with_capacity(raw_relays.len());
        for (i, value) in raw_relays.iter().enumerate() {
            let key = format!("relays[{i}]");
            let url = RelayUrl::parse(value.get_ref())
                .map_err(|err| src.invalid(&key, &value.span(), Problem::Relay(err)))?;
            if !url.is_tls() && !url.is_loopback() {
                if !policy.allow_insecure_ws {
                    return Err(src.invalid(&key, &value.span(), Problem::InsecureRelay));
                }
                warnings.push(Warning::InsecureRelay {
                    url: url.as_str().to_owned(),
                });
            }
            if let Some(first) = relays.iter().position(|r| *r == url) {
                let first = format!("relays[{first}]");
                return Err(src.invalid(&key, &value.span(), Problem::DuplicateRelay { first }));
            }
            relays.push(url);
        }

        let mut follows: Vec<Follow> = Vec::with_capacity(raw.follows.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, raw_follow) in raw.follows.into_iter().enumerate() {
            let name_span = raw_follow.name.span();
            let name = src.text(&format!("follows[{i}].name"), raw_follow.name, MAX_NAME_LEN)?;
            if names.insert(name.clone(), i).is_some() {
                return Err(src.invalid(
                    format!("follows[{i}].name"),
                    &name_span,
                    Problem::DuplicateName,
                ));
            }
            let key = format!("follows[{i}].npub");
            let span = raw_follow.npub.span();
            let pubkey = nip19::parse_pubkey(raw_follow.npub.get_ref())
                .map_err(|err| src.invalid(&key, &span, Problem::Pubkey(err)))?;
            if secp256k1::XOnlyPublicKey::from_byte_array(&pubkey).is_err() {
                return Err(src.invalid(&key, &span, Problem::NotOnCurve));
            }
            if let Some(first) = follows.iter().find(|f| f.pubkey == pubkey) {
                let first = first.name.clone();
                return Err(src.invalid(&key, &span, Problem::DuplicateFollow { first }));
            }
            follows.push(Follow {
                name,
                pubkey,
                role: raw_follow.role,
            });
        }

        // Design section 3, rule 7.
        let voters = follows.iter().filter(|f| f.role == Role::Voter).count();
        let quorum_span = raw.quorum.span();
        let quorum_value = *raw.quorum.get_ref();
        let quorum = match usize::try_from(quorum_value) {
            Ok(q) if q >= 1 && q <= voters => q,
            Ok(q) if q >= 1 => {
                return Err(src.invalid(
                    "quorum",
                    &quorum_span,
                    Problem::QuorumAboveVoters {
                        quorum: quorum_value,
                        voters,
                    },
                ))
            }
            _ => {
                return Err(src.invalid(
                    "quorum",
                    &quorum_span,
                    Problem::QuorumTooSmall {
                        quorum: quorum_value,
                    },
                ))
            }
        };
        if quorum.saturating_mul(2) <= voters {
            warnings.push(Warning::WeakQuorum { quorum, voters });
        }

        let upgrade = raw
            .upgrade
            .map(|hook| src.hook("upgrade", hook, &mut warnings))
            .transpose()?;
        let reboot = raw
            .reboot
            .map(|hook| src.hook("reboot", hook, &mut warnings))
            .transpose()?;
        if upgrade.is_none() {
            warnings.push(Warning::MissingHook { section: "upgrade" });
        }
        if reboot.is_none() {
            warnings.push(Warning::MissingHook { section: "reboot" });
        }

        Ok((
            Config {
                network,
                quorum,
                relays,
                state_dir,
                node_id,
                node_key,
                current_version,
                d_tag,
                follows,
                policy,
                upgrade,
                reboot,
            },
            warnings,
        ))
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

    /// Where state lives (design section 6); absolute, default
    /// [`DEFAULT_STATE_DIR`].
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The `node_id` written in acks; `None` means derived from the node key.
    pub fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }

    /// Where the node key comes from; `None` means `state_dir/node.key`,
    /// generated at first start (design section 6).
    pub fn node_key(&self) -> Option<&NodeKeySource> {
        self.node_key.as_ref()
    }

    /// The configured anti-rollback floor, if any.
    pub fn current_version(&self) -> Option<&Version> {
        self.current_version.as_ref()
    }

    /// The `d` tag directives must carry; default [`DEFAULT_D_TAG`].
    pub fn d_tag(&self) -> &str {
        &self.d_tag
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

    /// The effective config as TOML: every default filled in, public keys
    /// as npub, relays in canonical form, unset optional keys as comments.
    /// Parsing the output gives back an equal [`Config`].
    pub fn normalized_toml(&self) -> String {
        let mut out = String::from("# qube-agent effective configuration (defaults filled in)\n");
        fn kv(out: &mut String, key: &str, value: String) {
            out.push_str(key);
            out.push_str(" = ");
            out.push_str(&value);
            out.push('\n');
        }
        kv(&mut out, "network", quote(&self.network));
        kv(&mut out, "quorum", self.quorum.to_string());
        kv(
            &mut out,
            "relays",
            array(self.relays.iter().map(RelayUrl::as_str)),
        );
        kv(
            &mut out,
            "state_dir",
            quote(&self.state_dir.to_string_lossy()),
        );
        match &self.node_id {
            Some(id) => kv(&mut out, "node_id", quote(id)),
            None => out.push_str("# node_id: not set, derived from the node key\n"),
        }
        match &self.node_key {
            Some(NodeKeySource::File(path)) => {
                kv(&mut out, "node_key", quote(&path.to_string_lossy()));
            }
            Some(NodeKeySource::Env(var)) => kv(&mut out, "node_key", quote(&format!("env:{var}"))),
            None => out.push_str("# node_key: not set, state_dir/node.key\n"),
        }
        match &self.current_version {
            Some(v) => kv(&mut out, "current_version", quote(v.as_str())),
            None => out.push_str("# current_version: not set\n"),
        }
        kv(&mut out, "d_tag", quote(&self.d_tag));

        for follow in &self.follows {
            out.push_str("\n[[follows]]\n");
            kv(&mut out, "name", quote(&follow.name));
            kv(&mut out, "npub", quote(&follow.npub()));
            kv(&mut out, "role", quote(follow.role.as_str()));
        }

        out.push_str("\n[policy]\n");
        kv(
            &mut out,
            "max_future_skew_secs",
            self.policy.max_future_skew_secs.to_string(),
        );
        kv(
            &mut out,
            "allow_downgrade",
            self.policy.allow_downgrade.to_string(),
        );
        kv(
            &mut out,
            "allow_insecure_ws",
            self.policy.allow_insecure_ws.to_string(),
        );

        for (section, hook) in [("upgrade", &self.upgrade), ("reboot", &self.reboot)] {
            let Some(hook) = hook else {
                out.push_str(&format!("\n# [{section}]: not set\n"));
                continue;
            };
            out.push_str(&format!("\n[{section}]\n"));
            kv(
                &mut out,
                "command",
                array(hook.command.iter().map(String::as_str)),
            );
            kv(&mut out, "timeout_secs", hook.timeout_secs.to_string());
            if let Some(artifact) = &hook.artifact {
                kv(&mut out, "artifact", quote(artifact.as_str()));
            }
            for (key, argv) in [
                ("fetch", &hook.fetch),
                ("health", &hook.health),
                ("rollback", &hook.rollback),
            ] {
                if let Some(argv) = argv {
                    kv(&mut out, key, array(argv.iter().map(String::as_str)));
                }
            }
        }
        out
    }
}

/// A TOML basic string: `"` and `\` escaped, control characters as `\uXXXX`
/// (TOML 1.0, "String").
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of basic strings on one line.
fn array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(quote).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b\\c\n\u{7f}é"), "\"a\\\"b\\\\c\\u000A\\u007Fé\"");
        let doc = format!("k = {}", quote("a\"b\\c\n\u{7f}\u{1}é"));
        let v: toml::Table = toml::from_str(&doc).unwrap();
        assert_eq!(v["k"].as_str().unwrap(), "a\"b\\c\n\u{7f}\u{1}é");
    }

    #[test]
    fn artifact_expand_refuses_path_tricks() {
        let t = ArtifactTemplate("/staging/znnd-{version}".into());
        assert_eq!(
            t.expand("v1.2.3-rc.1+b5").unwrap(),
            PathBuf::from("/staging/znnd-v1.2.3-rc.1+b5")
        );
        for bad in ["", "../x", "1/2", "1..2", "a b", "1\0"] {
            assert_eq!(t.expand(bad), None, "{bad:?}");
        }
    }
}
