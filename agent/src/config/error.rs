//! Why a config was refused ([`ConfigError`]: what, where, and advice) and
//! what it allows but an operator probably did not mean ([`Warning`]).

use std::fmt;
use std::path::{Path, PathBuf};

use super::raw::ARGV_EXPECTED;
use super::RelayUrlError;
use crate::core::nip19::Nip19Error;

/// Why a config file was refused: what, where (file, line) and advice.
///
/// `Display` gives `FILE, line N: `key`: problem` (or the TOML parser's
/// message, with line, column and the offending line) followed by a second
/// line `hint: ...` saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub(super) file: Option<PathBuf>,
    pub(super) line: Option<usize>,
    pub(super) kind: ConfigErrorKind,
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
    /// The file is larger than [`MAX_CONFIG_BYTES`](super::MAX_CONFIG_BYTES).
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
    /// A `heartbeat.relays` entry that is not in `relays`.
    NotARelay,
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
    /// The `tls.extra_roots` file cannot be used as trust anchors.
    TlsRoots(String),
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
            Problem::NotARelay => f.write_str("is not one of `relays`"),
            Problem::EnvVar => f.write_str("`env:` must be followed by a variable name"),
            Problem::EmptyCommand => f.write_str("command is an empty array"),
            Problem::EmptyProgram => f.write_str("the program (first element) is empty"),
            Problem::NulByte => f.write_str("contains a NUL byte"),
            Problem::Template => f.write_str("has a `{` or `}` that is not part of `{version}`"),
            Problem::TlsRoots(why) => write!(f, "cannot use as trust anchors: {why}"),
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
            Problem::NotARelay => {
                "add the relay to `relays` too: the agent publishes heartbeats only to relays it is connected to"
            }
            Problem::EnvVar => "write node_key = \"env:VARIABLE_NAME\", or a key file path",
            Problem::EmptyCommand | Problem::EmptyProgram | Problem::NulByte => {
                "give the program and its arguments as an array, e.g. [\"/usr/local/libexec/pillar-upgrade\", \"--flag\"]"
            }
            Problem::Template => {
                "the only placeholder is {version}, e.g. \"/var/lib/pillar/staging/znnd-{version}\""
            }
            Problem::TlsRoots(_) => {
                "give a readable PEM file of CA certificates (-----BEGIN CERTIFICATE-----), at most 64 KiB"
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

    /// The file, when the config came from [`Config::load`](super::Config::load).
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

    pub(super) fn with_file(mut self, file: &Path) -> Self {
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
    /// quorum for conflicting proposals (`docs/PROTOCOL.md` section 5.7).
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
