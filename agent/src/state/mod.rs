//! The agent's on-disk state (DESIGN.md section 6): the state directory, the
//! node key, the current directive of each voter, the installed version and
//! the ack outbox. The journal has its own module, [`crate::state::journal`]; its
//! file lives here too ([`StateDir::journal_path`]).
//!
//! Layout of `state_dir` (mode 0700, owned by the agent's effective uid):
//!
//! | file | content | written |
//! |---|---|---|
//! | `node.key` | 64 lower-case hex chars and a newline (the 32-byte BIP-340 secret), 0600 | once, at first start, never overwritten |
//! | `directives.json` | a JSON array of the raw signed kind 33321 events, one per voter | [`StateDir::save_directives`] |
//! | `installed_version` | a semantic version with an optional leading `v`, and a newline | [`StateDir::set_installed_version`] |
//! | `outbox.json` | a JSON array of `{"event":<signed kind 3333 event>,"attempts":N,"next_attempt_at":T}` | every [`Outbox`] change |
//! | `journal.jsonl` | the hash-chained journal ([`crate::state::journal`]) | appended |
//! | `lock` | empty; `flock`ed by the running agent ([`StateDir::lock`]) | created once |
//!
//! # Choices
//! * **Directory ownership.** A state directory owned by another uid is
//!   refused ([`StateError::NotOwned`]): whoever owns it could replace the
//!   key, the journal or the votes. One owned by us whose mode is not 0700
//!   (for instance group- or world-readable after a careless `mkdir`) is
//!   set to 0700 with a warning: its content is ours, and the node key file
//!   in it is checked separately. Symbolic links to the directory are
//!   followed (systemd's `StateDirectory=` may use them); the checks apply
//!   to the directory itself, through an open handle.
//! * **Atomic writes.** Every file but the journal is replaced as a whole:
//!   a temporary file `.tmp-qube-*` in the same directory (0600), written,
//!   `fsync`ed, renamed over the target, then the directory `fsync`ed. A
//!   crash leaves either the old or the new file, never a mix; leftover
//!   temporary files are removed by the lock holder ([`StateDir::lock`]).
//! * **Reads are bounded** to [`MAX_STATE_FILE_BYTES`]; writes that would
//!   exceed it are refused, so the agent never writes a file it would refuse
//!   to read at the next start.
//! * **Corrupt state refuses to start.** A file that does not parse is an
//!   error ([`StateError::Corrupt`]), never silently reset. Inside a
//!   well-formed `directives.json`, an entry that no longer verifies, or no
//!   longer counts (its author is not a voter any more, the network changed),
//!   is dropped with a warning: the persisted votes are re-verified at every
//!   start (DESIGN.md section 3 rule 2).
//! * **Key files** (`node.key` and a configured `node_key` file) are refused
//!   when group or others have any permission on them (as ssh does with
//!   private keys), when they are not regular files, and when they are owned
//!   by a uid other than ours or root's. Secret bytes are only held in
//!   [`Zeroizing`] buffers, and no error carries any part of a key.

pub mod journal;

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::{Zeroize, Zeroizing};

use crate::config::{NodeKeySource, Version};
use crate::core::admit::{admit, Authors, Rejection};
use crate::core::backoff::Backoff;
use crate::core::directive::{Directive, DirectiveRules};
use crate::core::error::truncated;
use crate::core::event::{Event, Limits};
use crate::core::keys::Keys;

/// The largest state file read or written, in bytes (16 MiB).
pub const MAX_STATE_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// File name of the generated node key in the state directory.
pub const NODE_KEY_FILE: &str = "node.key";
/// File name of the persisted current directives.
pub const DIRECTIVES_FILE: &str = "directives.json";
/// File name of the installed version.
pub const INSTALLED_VERSION_FILE: &str = "installed_version";
/// File name of the ack outbox.
pub const OUTBOX_FILE: &str = "outbox.json";
/// File name of the journal ([`crate::state::journal`]).
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// File name of the lock file ([`StateDir::lock`]).
pub const LOCK_FILE: &str = "lock";
/// File where the running agent records worker restarts and the sandbox
/// state for `status` (JSON, best effort).
pub const RUNTIME_FILE: &str = "runtime.json";
/// Event kind of a HyperQube acknowledgement (DESIGN.md section 2).
pub const ACK_KIND: u16 = 3333;
/// Most acks kept in the outbox; pushing one more drops the oldest (with a
/// warning). 200 acks of at most 64 KiB stay below [`MAX_STATE_FILE_BYTES`].
pub const MAX_OUTBOX_ENTRIES: usize = 200;
/// Delay after the first failed publication of an ack, in seconds.
pub const OUTBOX_INITIAL_BACKOFF_SECS: u64 = 5;
/// Longest delay between two publications of an ack, in seconds (one hour).
pub const OUTBOX_MAX_BACKOFF_SECS: u64 = 3600;

/// Longest key file or environment value read: 64 hex chars plus trailing
/// whitespace, in bytes.
const MAX_KEY_TEXT_BYTES: usize = 128;
/// Longest `installed_version` file, in bytes.
const MAX_VERSION_FILE_BYTES: u64 = 1024;
/// Prefix of the temporary files of atomic writes.
const TEMP_PREFIX: &str = ".tmp-qube-";
/// Longest text from a state file quoted in an error, in bytes.
const MAX_QUOTED: usize = 80;

/// Where a node key was read from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A key file (`node.key` in the state directory, or `node_key = PATH`).
    File(PathBuf),
    /// The environment variable named by `node_key = "env:VAR"`.
    Env(String),
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::File(path) => write!(f, "key file {}", path.display()),
            KeyOrigin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Why the state could not be read or written.
///
/// `Display` gives a lower-case sentence naming the file and, where there is
/// one, what to do. No variant ever holds secret key material.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateError {
    /// An operating-system error while doing `op` on `path`.
    Io {
        /// What was being done: "read", "create directory", "rename", ...
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The state directory path exists but is not a directory.
    NotADirectory(PathBuf),
    /// A state file or key path is not a regular file (a FIFO, a device, a
    /// directory).
    NotARegularFile(PathBuf),
    /// The state directory or a key file is owned by another uid (for a key
    /// file: neither ours nor root's).
    NotOwned {
        /// The directory or file.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// Our effective uid.
        euid: u32,
    },
    /// A key file grants some permission to group or others.
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// The key text is not 64 hex characters (with optional trailing
    /// whitespace). The text itself is never kept.
    MalformedKey(KeyOrigin),
    /// The 32 bytes are not a valid secp256k1 secret key (zero, or not below
    /// the curve order).
    InvalidKey(KeyOrigin),
    /// The environment variable named by `node_key = "env:VAR"` is not set or
    /// is empty.
    EnvKeyUnset(String),
    /// The OS random generator failed while generating the node key.
    KeyGeneration,
    /// A file is larger than `max` bytes (reading), or the data to write is.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, in bytes.
        max: u64,
    },
    /// A state file does not parse; the agent refuses to start rather than
    /// discard it.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong (parser message, line and column).
        reason: String,
    },
    /// A version given to [`StateDir::set_installed_version`] is not a
    /// semantic version with an optional leading `v`.
    InvalidVersion {
        /// The version (truncated).
        version: String,
        /// The semver parser's reason.
        reason: String,
    },
    /// A file name given to [`StateDir::write_atomic`] is not a plain name.
    InvalidFileName(String),
    /// An event pushed to the [`Outbox`] is not an ack (kind 3333).
    NotAnAck {
        /// The event's kind.
        kind: u16,
    },
    /// An ack pushed to the [`Outbox`] is larger than an event may be
    /// ([`Limits::max_event_bytes`]), so it could not be read back.
    AckTooLarge {
        /// Its JSON length, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// Another process holds the state directory's lock.
    Locked(PathBuf),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            StateError::NotADirectory(path) => write!(
                f,
                "state directory {} exists and is not a directory",
                path.display()
            ),
            StateError::NotARegularFile(path) => {
                write!(f, "{} is not a regular file", path.display())
            }
            StateError::NotOwned { path, owner, euid } => write!(
                f,
                "{} is owned by uid {owner}, not by this agent (uid {euid}); \
                 refusing to use it: whoever owns it controls the agent's state \
                 (run `chown {euid} {}` if it is really the agent's)",
                path.display(),
                path.display()
            ),
            StateError::KeyPermissions { path, mode } => write!(
                f,
                "permissions {mode:04o} for key file {} are too open: it must not be \
                 accessible by group or others; run `chmod 600 {}` (and consider the \
                 key leaked if others could read it)",
                path.display(),
                path.display()
            ),
            StateError::MalformedKey(origin) => write!(
                f,
                "{origin} does not hold a node key: expected 64 hex characters \
                 (a 32-byte secp256k1 secret) and an optional newline"
            ),
            StateError::InvalidKey(origin) => write!(
                f,
                "{origin} does not hold a valid secp256k1 secret key \
                 (zero, or not below the curve order)"
            ),
            StateError::EnvKeyUnset(var) => write!(
                f,
                "environment variable {var} (node_key = \"env:{var}\") is not set or is empty"
            ),
            StateError::KeyGeneration => {
                f.write_str("cannot generate a node key: the OS random generator failed")
            }
            StateError::TooLarge { path, max } => write!(
                f,
                "{} is larger than {max} bytes; refusing to use it",
                path.display()
            ),
            StateError::Corrupt { path, reason } => write!(
                f,
                "{} is corrupt: {reason}; refusing to start (inspect it, then restore \
                 it from a backup or move it away)",
                path.display()
            ),
            StateError::InvalidVersion { version, reason } => write!(
                f,
                "installed version {version:?} is not a semantic version: {reason}"
            ),
            StateError::InvalidFileName(name) => {
                write!(f, "{name:?} is not a plain state file name")
            }
            StateError::NotAnAck { kind } => write!(
                f,
                "kind {kind} is not an acknowledgement (expected {ACK_KIND}); not queued"
            ),
            StateError::AckTooLarge { len, max } => write!(
                f,
                "acknowledgement is {len} bytes, more than the {max} an event may have; not queued"
            ),
            StateError::Locked(path) => write!(
                f,
                "{} is locked: another qube-agent is using this state directory",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StateError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Wraps an I/O error with what was being done to which path.
fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The state directory (DESIGN.md section 6), opened and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

/// The exclusive lock on a state directory, held until dropped
/// ([`StateDir::lock`]).
pub struct StateLock {
    _lock: Flock<File>,
}

impl fmt::Debug for StateLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateLock")
    }
}

impl StateDir {
    /// Opens the state directory at `path`, creating it with mode 0700 if it
    /// is missing (its parent must exist).
    ///
    /// An existing directory must be owned by our effective uid; if its mode
    /// is not 0700 it is set to 0700 and a warning is logged (see the module
    /// docs).
    ///
    /// # Errors
    /// [`StateError::Io`] when it cannot be created, opened or changed;
    /// [`StateError::NotADirectory`]; [`StateError::NotOwned`] when another
    /// uid owns it.
    pub fn open(path: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let path = path.as_ref().to_path_buf();
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                tracing::info!("created state directory {}", path.display());
                fsync_dir(parent_dir(&path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create directory", &path)(e)),
        }
        // Check and fix through one handle, so the checked directory is the
        // one changed.
        let dir = File::open(&path).map_err(io_error("open directory", &path))?;
        let meta = dir.metadata().map_err(io_error("stat", &path))?;
        if !meta.is_dir() {
            return Err(StateError::NotADirectory(path));
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid {
            return Err(StateError::NotOwned {
                path,
                owner: meta.uid(),
                euid,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode != 0o700 {
            dir.set_permissions(Permissions::from_mode(0o700))
                .map_err(io_error("chmod 700", &path))?;
            tracing::warn!(
                "state directory {} had mode {mode:04o}; set it to 0700",
                path.display()
            );
        }
        Ok(StateDir { path })
    }

    /// Opens an existing state directory to read it, for the operator
    /// commands (`status`, `journal`) that may run while the agent does:
    /// unlike [`StateDir::open`] it never creates the directory, never
    /// changes its mode and takes no lock. Ownership is not enforced, since
    /// reading hands nobody control of the agent (and root may inspect the
    /// agent user's directory); a caller that displays the state can check
    /// the owner itself.
    ///
    /// Only the reading methods ([`StateDir::load_directives`],
    /// [`StateDir::installed_version`], [`StateDir::outbox`],
    /// [`StateDir::node_public_key`], [`StateDir::journal_path`] with
    /// [`crate::state::journal::inspect`]) are meant for a directory opened this
    /// way.
    ///
    /// # Errors
    /// [`StateError::Io`] when it cannot be opened (kind `NotFound` when it
    /// does not exist); [`StateError::NotADirectory`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let path = path.as_ref().to_path_buf();
        let dir = File::open(&path).map_err(io_error("open directory", &path))?;
        let meta = dir.metadata().map_err(io_error("stat", &path))?;
        if !meta.is_dir() {
            return Err(StateError::NotADirectory(path));
        }
        Ok(StateDir { path })
    }

    /// The directory's path, as given to [`StateDir::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the journal file, for [`crate::state::journal::Journal::open`].
    pub fn journal_path(&self) -> PathBuf {
        self.path.join(JOURNAL_FILE)
    }

    /// Takes an exclusive, non-blocking `flock` on the `lock` file (created
    /// 0600 if missing), so that two agents never share a state directory
    /// (which would break at-most-once execution). Then removes temporary
    /// files left by atomic writes that a crash interrupted.
    ///
    /// The lock is held until the returned [`StateLock`] is dropped, and
    /// released by the kernel if the process dies.
    ///
    /// # Errors
    /// [`StateError::Locked`] when another process holds it;
    /// [`StateError::Io`] when the file cannot be opened or locked, or a
    /// leftover temporary file cannot be removed.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let path = self.path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Err(StateError::Locked(path)),
            Err((_, errno)) => return Err(io_error("lock", &path)(io::Error::from(errno))),
        };
        self.remove_temp_files()?;
        Ok(StateLock { _lock: lock })
    }

    /// Removes `.tmp-qube-*` files left by interrupted atomic writes.
    fn remove_temp_files(&self) -> Result<(), StateError> {
        let entries = fs::read_dir(&self.path).map_err(io_error("list", &self.path))?;
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.path))?;
            let is_temp = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(TEMP_PREFIX));
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_temp && is_file {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                tracing::warn!("removed {} left by an interrupted write", path.display());
            }
        }
        Ok(())
    }

    /// Replaces the file `name` in the state directory with `bytes`,
    /// atomically: a 0600 temporary file in the directory is written,
    /// `fsync`ed and renamed over `name`, then the directory is `fsync`ed. A
    /// crash at any point leaves either the old content or the new one.
    ///
    /// `name` is a plain file name (no `/`, not starting with `.`).
    ///
    /// # Errors
    /// [`StateError::InvalidFileName`]; [`StateError::TooLarge`] when
    /// `bytes` is longer than [`MAX_STATE_FILE_BYTES`]; [`StateError::Io`]
    /// for any failed step (the temporary file is then removed).
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let target = self.file_path(name)?;
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if len > MAX_STATE_FILE_BYTES {
            return Err(StateError::TooLarge {
                path: target,
                max: MAX_STATE_FILE_BYTES,
            });
        }
        let tmp = self.temp_file_with(bytes)?;
        tmp.persist(&target)
            .map_err(|e| io_error("rename into", &target)(e.error))?;
        fsync_dir(&self.path)
    }

    /// A synced 0600 temporary file in the directory holding `bytes`.
    fn temp_file_with(&self, bytes: &[u8]) -> Result<tempfile::NamedTempFile, StateError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(&self.path)
            .map_err(io_error("create a temporary file in", &self.path))?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io_error("write", tmp.path())(e))?;
        Ok(tmp)
    }

    /// The path of the plain file `name` in the directory.
    fn file_path(&self, name: &str) -> Result<PathBuf, StateError> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && !name.contains('/')
            && !name.contains('\0');
        if !plain {
            return Err(StateError::InvalidFileName(truncated(name, MAX_QUOTED)));
        }
        Ok(self.path.join(name))
    }

    /// Reads the file `name`, at most `max` bytes; `None` when it does not
    /// exist.
    fn read_file(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.file_path(name)?;
        let mut file = match open_for_read(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open", &path)(e)),
        };
        let meta = file.metadata().map_err(io_error("stat", &path))?;
        if !meta.is_file() {
            return Err(StateError::NotARegularFile(path));
        }
        if meta.len() > max {
            return Err(StateError::TooLarge { path, max });
        }
        let mut bytes = Vec::new();
        (&mut file)
            .take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io_error("read", &path))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
            return Err(StateError::TooLarge { path, max });
        }
        Ok(Some(bytes))
    }

    // -----------------------------------------------------------------------
    // Node key
    // -----------------------------------------------------------------------

    /// The node key (DESIGN.md section 6).
    ///
    /// * `None`: `node.key` in the state directory; generated at first start
    ///   (OS randomness, written atomically without ever replacing an
    ///   existing file, mode 0600, 64 lower-case hex chars and a newline).
    /// * `Some(File(path))`: that file, which must exist (never generated).
    /// * `Some(Env(var))`: the value of environment variable `var`. The
    ///   caller must remove `var` from the environment of every child it
    ///   spawns (the worker, the hooks): this function cannot.
    ///
    /// A key file must be a regular file owned by us or by root, with no
    /// permission for group or others. The key text is 64 hex characters
    /// (either case) followed by optional ASCII whitespace.
    ///
    /// # Errors
    /// [`StateError::KeyPermissions`] (the message advises `chmod 600
    /// FILE`), [`StateError::NotOwned`], [`StateError::NotARegularFile`],
    /// [`StateError::MalformedKey`], [`StateError::InvalidKey`],
    /// [`StateError::EnvKeyUnset`], [`StateError::KeyGeneration`],
    /// [`StateError::Io`]. None of them holds key material.
    pub fn node_key(&self, source: Option<&NodeKeySource>) -> Result<Keys, StateError> {
        match source {
            None => {
                let path = self.path.join(NODE_KEY_FILE);
                match load_key_file(&path) {
                    Err(StateError::Io { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        self.generate_node_key(&path)
                    }
                    other => other,
                }
            }
            Some(NodeKeySource::File(path)) => load_key_file(path),
            Some(NodeKeySource::Env(var)) => load_key_env(var),
        }
    }

    /// The node's 32-byte x-only public key, read without generating or
    /// writing anything (for `status`): from the same source and with the
    /// same checks as [`StateDir::node_key`]. The secret is only held in
    /// zeroizing memory while the public key is derived.
    ///
    /// `Ok(None)` when `source` is `None` and `node.key` does not exist yet
    /// (the agent has not started).
    ///
    /// # Errors
    /// As [`StateDir::node_key`], except that nothing is generated. None of
    /// them holds key material.
    pub fn node_public_key(
        &self,
        source: Option<&NodeKeySource>,
    ) -> Result<Option<[u8; 32]>, StateError> {
        let keys = match source {
            None => match load_key_file(&self.path.join(NODE_KEY_FILE)) {
                Err(StateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    return Ok(None)
                }
                other => other?,
            },
            Some(NodeKeySource::File(path)) => load_key_file(path)?,
            Some(NodeKeySource::Env(var)) => load_key_env(var)?,
        };
        Ok(Some(keys.public_key()))
    }

    /// Generates `node.key` at first start; if another process created it
    /// meanwhile, loads that one.
    fn generate_node_key(&self, path: &Path) -> Result<Keys, StateError> {
        let keys = Keys::generate().map_err(|_| StateError::KeyGeneration)?;
        let secret = Zeroizing::new(keys.secret_bytes());
        let mut text = Zeroizing::new([0u8; 65]);
        if let Some((newline, hex_part)) = text.split_last_mut() {
            *newline = b'\n';
            hex::encode_to_slice(secret.as_slice(), hex_part)
                .map_err(|_| StateError::KeyGeneration)?;
        }
        let tmp = self.temp_file_with(&*text)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return load_key_file(path);
            }
            Err(e) => return Err(io_error("create", path)(e.error)),
        }
        fsync_dir(&self.path)?;
        tracing::info!(
            "generated a new node key in {} (public key {})",
            path.display(),
            hex::encode(keys.public_key())
        );
        Ok(keys)
    }

    // -----------------------------------------------------------------------
    // Current directives
    // -----------------------------------------------------------------------

    /// Persists the current directives (DESIGN.md section 3 rule 2) to
    /// `directives.json`, atomically: a JSON array of the signed events
    /// exactly as [`crate::core::event::EventData::to_json`] prints them, one per
    /// line. Accepts a slice or [`crate::core::quorum::Engine::directives`].
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn save_directives<'a>(
        &self,
        directives: impl IntoIterator<Item = &'a Directive>,
    ) -> Result<(), StateError> {
        let mut out = String::from("[");
        for (i, directive) in directives.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('\n');
            out.push_str(&directive.event().to_json());
        }
        out.push_str("\n]\n");
        self.write_atomic(DIRECTIVES_FILE, out.as_bytes())
    }

    /// Loads and re-verifies the persisted directives.
    ///
    /// Each event is parsed and verified again ([`Event::from_json`] with the
    /// default [`Limits`]) and admitted ([`admit`]: its author is in
    /// `voters`, 32-byte x-only keys, and it follows `rules` at `now`, unix
    /// seconds; expired directives are kept, they still supersede older
    /// ones). Anything else is dropped, and the second element of the
    /// result says what and why, one sentence per dropped entry. A missing
    /// file is an empty state.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when the file is not a JSON array;
    /// [`StateError::TooLarge`]; [`StateError::Io`].
    pub fn load_directives(
        &self,
        rules: &DirectiveRules,
        now: u64,
        voters: &BTreeSet<[u8; 32]>,
    ) -> Result<(Vec<Directive>, Vec<String>), StateError> {
        let path = self.path.join(DIRECTIVES_FILE);
        let Some(bytes) = self.read_file(DIRECTIVES_FILE, MAX_STATE_FILE_BYTES)? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let raw: Vec<&RawValue> =
            serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let limits = Limits::default();
        let mut directives = Vec::new();
        let mut warnings = Vec::new();
        for (i, raw) in raw.into_iter().enumerate() {
            let what = format!("{}: entry {}", path.display(), i.saturating_add(1));
            let event = match Event::from_json(raw.get().as_bytes(), &limits) {
                Ok(event) => event,
                Err(e) => {
                    warnings.push(format!("{what}: dropped, it does not verify: {e}"));
                    continue;
                }
            };
            let id = event.id_hex();
            match admit(event, rules, Authors::Only(voters), now) {
                Ok(directive) => directives.push(directive),
                Err(Rejection::NotAVoter { author }) => warnings.push(format!(
                    "{what}: dropped directive {id}, its author {} is not a voter",
                    hex::encode(author)
                )),
                Err(e) => warnings.push(format!(
                    "{what}: dropped directive {id}, it no longer counts: {e}"
                )),
            }
        }
        Ok((directives, warnings))
    }

    // -----------------------------------------------------------------------
    // Installed version
    // -----------------------------------------------------------------------

    /// The installed version recorded by [`StateDir::set_installed_version`],
    /// exactly as written (`v1.2.3` or `1.2.3`); `None` when none is
    /// recorded.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when the file is not a semantic version with
    /// an optional leading `v` and a newline; [`StateError::TooLarge`] over
    /// 1 KiB; [`StateError::Io`].
    pub fn installed_version(&self) -> Result<Option<String>, StateError> {
        let Some(bytes) = self.read_file(INSTALLED_VERSION_FILE, MAX_VERSION_FILE_BYTES)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: self.path.join(INSTALLED_VERSION_FILE),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|_| corrupt("not UTF-8".to_owned()))?;
        let version = text.strip_suffix('\n').unwrap_or(&text);
        Version::parse(version).map_err(|e| {
            corrupt(format!(
                "{:?} is not a semantic version: {e}",
                truncated(version, MAX_QUOTED)
            ))
        })?;
        Ok(Some(version.to_owned()))
    }

    /// Records the installed version (semantic version, optional leading
    /// `v`, kept exactly as given), atomically.
    ///
    /// # Errors
    /// [`StateError::InvalidVersion`]; as [`StateDir::write_atomic`].
    pub fn set_installed_version(&self, version: &str) -> Result<(), StateError> {
        Version::parse(version).map_err(|e| StateError::InvalidVersion {
            version: truncated(version, MAX_QUOTED),
            reason: e.to_string(),
        })?;
        self.write_atomic(INSTALLED_VERSION_FILE, format!("{version}\n").as_bytes())
    }

    // -----------------------------------------------------------------------
    // Outbox
    // -----------------------------------------------------------------------

    /// Loads the ack outbox from `outbox.json` (empty when missing).
    ///
    /// Every event is verified again and must be an ack (kind 3333).
    ///
    /// # Errors
    /// [`StateError::Corrupt`] when the file does not parse, an event does
    /// not verify or is not an ack, or an event appears twice;
    /// [`StateError::TooLarge`]; [`StateError::Io`].
    pub fn outbox(&self) -> Result<Outbox, StateError> {
        let mut outbox = Outbox {
            dir: self.clone(),
            entries: Vec::new(),
        };
        let Some(bytes) = self.read_file(OUTBOX_FILE, MAX_STATE_FILE_BYTES)? else {
            return Ok(outbox);
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: self.path.join(OUTBOX_FILE),
            reason,
        };
        let raw: Vec<RawOutboxEntry<'_>> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let limits = Limits::default();
        for (i, entry) in raw.into_iter().enumerate() {
            let n = i.saturating_add(1);
            let event = Event::from_json(entry.event.get().as_bytes(), &limits)
                .map_err(|e| corrupt(format!("entry {n}: {e}")))?;
            if event.kind != ACK_KIND {
                return Err(corrupt(format!(
                    "entry {n}: kind {} is not an acknowledgement",
                    event.kind
                )));
            }
            if outbox.entries.iter().any(|e| e.event.id == event.id) {
                return Err(corrupt(format!(
                    "entry {n}: event {} appears twice",
                    event.id_hex()
                )));
            }
            outbox.entries.push(OutboxEntry {
                event,
                attempts: entry.attempts,
                next_attempt_at: entry.next_attempt_at,
            });
        }
        Ok(outbox)
    }
}

/// Opens a file for reading without blocking on a FIFO.
fn open_for_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
}

/// The directory holding `path` (`.` for a bare relative name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `fsync`s a directory, making renames and creations in it durable.
fn fsync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync directory", dir))
}

/// Loads a key file after checking its type, owner and permissions on the
/// open handle.
fn load_key_file(path: &Path) -> Result<Keys, StateError> {
    let mut file = open_for_read(path).map_err(io_error("open", path))?;
    let meta = file.metadata().map_err(io_error("stat", path))?;
    if !meta.is_file() {
        return Err(StateError::NotARegularFile(path.to_path_buf()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(StateError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            euid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StateError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let origin = || KeyOrigin::File(path.to_path_buf());
    // A fixed buffer and no std read_to_end: no reallocation or stack probe
    // leaves a copy of the secret behind.
    let mut text = Zeroizing::new([0u8; MAX_KEY_TEXT_BYTES]);
    let mut filled = 0usize;
    while let Some(spare) = text.get_mut(filled..).filter(|s| !s.is_empty()) {
        match file.read(spare) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("read", path)(e)),
        }
    }
    if filled == MAX_KEY_TEXT_BYTES {
        let mut probe = [0u8; 1];
        if file.read(&mut probe).map_err(io_error("read", path))? > 0 {
            probe.zeroize();
            return Err(StateError::MalformedKey(origin()));
        }
    }
    let bytes = text.get(..filled).unwrap_or_default();
    keys_from_text(bytes).map_err(|problem| problem.with(origin()))
}

/// Loads the key from environment variable `var`.
fn load_key_env(var: &str) -> Result<Keys, StateError> {
    let origin = || KeyOrigin::Env(var.to_owned());
    let value = match std::env::var(var) {
        Ok(value) => Zeroizing::new(value),
        Err(std::env::VarError::NotPresent) => return Err(StateError::EnvKeyUnset(var.to_owned())),
        Err(std::env::VarError::NotUnicode(value)) => {
            let mut bytes = std::os::unix::ffi::OsStringExt::into_vec(value);
            bytes.zeroize();
            return Err(StateError::MalformedKey(origin()));
        }
    };
    if value.is_empty() {
        return Err(StateError::EnvKeyUnset(var.to_owned()));
    }
    if value.len() > MAX_KEY_TEXT_BYTES {
        return Err(StateError::MalformedKey(origin()));
    }
    keys_from_text(value.as_bytes()).map_err(|problem| problem.with(origin()))
}

/// What is wrong with a key text, before the origin is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyTextProblem {
    Malformed,
    Invalid,
}

impl KeyTextProblem {
    fn with(self, origin: KeyOrigin) -> StateError {
        match self {
            KeyTextProblem::Malformed => StateError::MalformedKey(origin),
            KeyTextProblem::Invalid => StateError::InvalidKey(origin),
        }
    }
}

/// Parses 64 hex characters (either case) followed by optional ASCII
/// whitespace into keys. Never copies the text outside zeroizing memory, and
/// the error says nothing about the content.
fn keys_from_text(text: &[u8]) -> Result<Keys, KeyTextProblem> {
    let trimmed = match text.iter().rposition(|b| !b.is_ascii_whitespace()) {
        Some(last) => text.get(..=last).unwrap_or_default(),
        None => &[],
    };
    if trimmed.len() != 64 {
        return Err(KeyTextProblem::Malformed);
    }
    let mut secret = Zeroizing::new([0u8; 32]);
    // The hex error would name the offending (secret) character: dropped.
    hex::decode_to_slice(trimmed, &mut *secret).map_err(|_| KeyTextProblem::Malformed)?;
    Keys::from_secret_bytes(&secret).ok_or(KeyTextProblem::Invalid)
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

/// One queued acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The signed ack (kind 3333).
    pub event: Event,
    /// Failed publication rounds so far.
    pub attempts: u32,
    /// When to try again, unix seconds; due when `now >= next_attempt_at`.
    pub next_attempt_at: u64,
}

/// How an entry of `outbox.json` is read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutboxEntry<'a> {
    #[serde(borrow)]
    event: &'a RawValue,
    attempts: u32,
    next_attempt_at: u64,
}

/// The ack outbox (DESIGN.md section 4): each ack stays queued until at
/// least one relay answered `OK true` for it, persisted in `outbox.json`.
///
/// Every change is written atomically before the method returns; if the
/// write fails the in-memory queue is left unchanged too. Retries back off
/// exponentially ([`backoff_secs`]). Get one with [`StateDir::outbox`].
#[derive(Debug)]
pub struct Outbox {
    dir: StateDir,
    entries: Vec<OutboxEntry>,
}

/// Delay before retrying an ack that failed `attempts` times, in seconds:
/// 0 for 0 attempts, then 5 s doubling each time (5, 10, 20, ... 2560) up to
/// a cap of [`OUTBOX_MAX_BACKOFF_SECS`] (3600 s) from the 11th failure on.
pub fn backoff_secs(attempts: u32) -> u64 {
    OUTBOX_BACKOFF.delay(attempts).as_secs()
}

/// The outbox's retry schedule.
const OUTBOX_BACKOFF: Backoff = Backoff {
    initial: std::time::Duration::from_secs(OUTBOX_INITIAL_BACKOFF_SECS),
    max: std::time::Duration::from_secs(OUTBOX_MAX_BACKOFF_SECS),
};

impl Outbox {
    /// Queues a signed ack, due at once (`next_attempt_at = now`, unix
    /// seconds, 0 attempts). Pushing an event already queued changes
    /// nothing. When [`MAX_OUTBOX_ENTRIES`] are queued, the oldest is dropped
    /// with a warning.
    ///
    /// # Errors
    /// [`StateError::NotAnAck`] unless kind 3333; [`StateError::AckTooLarge`]
    /// over [`Limits::max_event_bytes`]; as [`StateDir::write_atomic`].
    pub fn push(&mut self, event: Event, now: u64) -> Result<(), StateError> {
        if event.kind != ACK_KIND {
            return Err(StateError::NotAnAck { kind: event.kind });
        }
        let len = event.to_json().len();
        let max = Limits::default().max_event_bytes;
        if len > max {
            return Err(StateError::AckTooLarge { len, max });
        }
        if self.entries.iter().any(|e| e.event.id == event.id) {
            return Ok(());
        }
        let mut entries = self.entries.clone();
        if entries.len() >= MAX_OUTBOX_ENTRIES {
            let dropped = entries.remove(0);
            tracing::warn!(
                "outbox full ({MAX_OUTBOX_ENTRIES} acks): dropped the oldest ack {}",
                dropped.event.id_hex()
            );
        }
        entries.push(OutboxEntry {
            event,
            attempts: 0,
            next_attempt_at: now,
        });
        self.commit(entries)
    }

    /// The entries due at `now` (unix seconds): `next_attempt_at <= now`, in
    /// queue order.
    pub fn due(&self, now: u64) -> Vec<OutboxEntry> {
        self.entries
            .iter()
            .filter(|e| e.next_attempt_at <= now)
            .cloned()
            .collect()
    }

    /// The earliest `next_attempt_at` (unix seconds), when a retry timer
    /// should fire; `None` when the outbox is empty.
    pub fn next_attempt_at(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.next_attempt_at).min()
    }

    /// Records a failed publication round of ack `id` at `now` (unix
    /// seconds): one more attempt, next try at `now + backoff_secs(attempts)`.
    /// Returns false (and writes nothing) when `id` is not queued.
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn mark_failed(&mut self, id: &[u8; 32], now: u64) -> Result<bool, StateError> {
        let mut entries = self.entries.clone();
        let Some(entry) = entries.iter_mut().find(|e| &e.event.id == id) else {
            return Ok(false);
        };
        entry.attempts = entry.attempts.saturating_add(1);
        entry.next_attempt_at = now.saturating_add(backoff_secs(entry.attempts));
        self.commit(entries)?;
        Ok(true)
    }

    /// Removes ack `id` once a relay answered `OK true` for it. Returns
    /// false (and writes nothing) when it is not queued.
    ///
    /// # Errors
    /// As [`StateDir::write_atomic`].
    pub fn remove(&mut self, id: &[u8; 32]) -> Result<bool, StateError> {
        let before = self.entries.len();
        let entries: Vec<OutboxEntry> = self
            .entries
            .iter()
            .filter(|e| &e.event.id != id)
            .cloned()
            .collect();
        if entries.len() == before {
            return Ok(false);
        }
        self.commit(entries)?;
        Ok(true)
    }

    /// Every queued entry, oldest first.
    pub fn entries(&self) -> &[OutboxEntry] {
        &self.entries
    }

    /// Number of queued acks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no ack is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes `entries` atomically, then makes them the queue.
    fn commit(&mut self, entries: Vec<OutboxEntry>) -> Result<(), StateError> {
        let mut out = String::from("[");
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("\n{\"event\":");
            out.push_str(&entry.event.to_json());
            out.push_str(&format!(
                ",\"attempts\":{},\"next_attempt_at\":{}}}",
                entry.attempts, entry.next_attempt_at
            ));
        }
        out.push_str("\n]\n");
        self.dir.write_atomic(OUTBOX_FILE, out.as_bytes())?;
        self.entries = entries;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_an_hour() {
        let delays: Vec<u64> = (0..=13).map(backoff_secs).collect();
        assert_eq!(
            delays,
            [0, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
        );
        assert_eq!(backoff_secs(u32::MAX), 3600);
    }

    #[test]
    fn key_text_accepts_hex_of_either_case_and_trailing_whitespace() {
        let lower = "01".repeat(32);
        for text in [
            lower.clone(),
            format!("{lower}\n"),
            format!("{lower}\r\n"),
            lower.to_uppercase(),
        ] {
            let keys = keys_from_text(text.as_bytes()).unwrap();
            assert_eq!(keys.secret_bytes(), [1u8; 32]);
        }
    }

    #[test]
    fn key_text_problems() {
        let lower = "01".repeat(32);
        for text in [
            String::new(),
            lower[..62].to_owned(),
            format!("{lower}00"),
            format!(" {lower}"),
            format!("{}zz", &lower[..62]),
            format!("{lower}\nextra"),
        ] {
            assert_eq!(
                keys_from_text(text.as_bytes()).err(),
                Some(KeyTextProblem::Malformed),
                "{text:?}"
            );
        }
        assert_eq!(
            keys_from_text("00".repeat(32).as_bytes()).err(),
            Some(KeyTextProblem::Invalid)
        );
        assert_eq!(
            keys_from_text("ff".repeat(32).as_bytes()).err(),
            Some(KeyTextProblem::Invalid)
        );
    }

    #[test]
    fn file_names_must_be_plain() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("s")).unwrap();
        for name in ["", ".hidden", "a/b", "../x", "a\0b"] {
            assert!(matches!(
                state.write_atomic(name, b"x"),
                Err(StateError::InvalidFileName(_))
            ));
        }
        state.write_atomic("plain", b"x").unwrap();
    }

    #[test]
    fn installed_version_file_is_validated() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("s")).unwrap();
        assert_eq!(state.installed_version().unwrap(), None);
        state.set_installed_version("v1.2.3").unwrap();
        assert_eq!(
            state.installed_version().unwrap().as_deref(),
            Some("v1.2.3")
        );
        assert_eq!(
            fs::read_to_string(state.path().join(INSTALLED_VERSION_FILE)).unwrap(),
            "v1.2.3\n"
        );
        let err = state.set_installed_version("latest").unwrap_err();
        assert!(matches!(err, StateError::InvalidVersion { .. }), "{err}");
        fs::write(state.path().join(INSTALLED_VERSION_FILE), "1.2\n").unwrap();
        let err = state.installed_version().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("refusing to start"), "{err}");
    }

    #[test]
    fn oversized_state_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("s")).unwrap();
        fs::write(state.path().join(INSTALLED_VERSION_FILE), "1".repeat(2000)).unwrap();
        let err = state.installed_version().unwrap_err();
        assert!(
            matches!(err, StateError::TooLarge { max: 1024, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
    }
}
