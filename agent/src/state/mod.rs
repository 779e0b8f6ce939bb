//! The agent's on-disk state (`docs/qube-agent.example.toml`, `state_dir`): the state directory, the
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
//!   start (`docs/PROTOCOL.md` section 5.2).
//! * **Key files** (`node.key` and a configured `node_key` file) are refused
//!   when group or others have any permission on them (as ssh does with
//!   private keys), when they are not regular files, and when they are owned
//!   by a uid other than ours or root's. Secret bytes are only held in
//!   [`Zeroizing`](zeroize::Zeroizing) buffers, and no error carries any
//!   part of a key.
//!
//! # Files
//! This file holds the directory itself: opening and checking it, the lock,
//! atomic writes and bounded reads, and [`StateError`]. Each kind of state
//! has its own file, adding its methods to [`StateDir`]: `node_key.rs` (the
//! node key, [`KeyOrigin`]), `directives.rs` (the current directives),
//! `installed.rs` (the installed version) and `outbox.rs` ([`Outbox`],
//! [`backoff_secs`]); the journal is [`crate::state::journal`].

pub mod journal;

mod directives;
mod installed;
mod node_key;
mod outbox;

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::core::error::truncated;

pub use node_key::KeyOrigin;
pub use outbox::{
    backoff_secs, Delivery, Outbox, OutboxEntry, ACK_KIND, MAX_OUTBOX_ENTRIES,
    OUTBOX_DELIVERY_SECS, OUTBOX_INITIAL_BACKOFF_SECS, OUTBOX_MAX_BACKOFF_SECS,
};

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

/// Prefix of the temporary files of atomic writes.
const TEMP_PREFIX: &str = ".tmp-qube-";
/// Longest text from a state file quoted in an error, in bytes.
const MAX_QUOTED: usize = 80;

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
    /// ([`Limits::max_event_bytes`](crate::core::event::Limits::max_event_bytes)),
    /// so it could not be read back.
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

/// The state directory (`docs/qube-agent.example.toml`, `state_dir`), opened and checked.
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
    pub(crate) fn open_existing(path: impl AsRef<Path>) -> Result<StateDir, StateError> {
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

    /// Whether this directory has history that only a journal explains:
    /// saved directives, queued acks or a recorded installed version
    /// (a node key alone is not: it is made before the journal at first
    /// start).
    pub fn has_history(&self) -> bool {
        [DIRECTIVES_FILE, OUTBOX_FILE, INSTALLED_VERSION_FILE]
            .iter()
            .any(|f| self.path.join(f).exists())
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

#[cfg(test)]
mod tests {
    use super::*;

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
