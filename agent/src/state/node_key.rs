//! The node key (`docs/qube-agent.example.toml`, `state_dir`): read from `node.key` in the state
//! directory (generated at first start), from a configured file or from an
//! environment variable; see the "Key files" choice in [`crate::state`].

use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

use super::{fsync_dir, io_error, open_for_read, StateDir, StateError, NODE_KEY_FILE};
use crate::config::NodeKeySource;
use crate::core::keys::Keys;

/// Longest key file or environment value read: 64 hex chars plus trailing
/// whitespace, in bytes.
const MAX_KEY_TEXT_BYTES: usize = 128;

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

impl StateDir {
    /// The node key (`docs/qube-agent.example.toml`, `state_dir`).
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
    pub(crate) fn node_public_key(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
