//! The key store: governance keys as files, NIP-49 encrypted by default.
//!
//! # On-disk format
//! One key per file, one line: either a NIP-49 `ncryptsec1...` (the secret
//! key encrypted with a passphrase; scrypt cost `log_n`, XChaCha20-Poly1305)
//! or, only when asked for with `--plaintext`, a NIP-19 `nsec1...`,
//! followed by a newline. Nothing else: the public key is derived from the
//! secret when needed.
//!
//! # Where
//! `$GOVCTL_HOME`, else `$XDG_CONFIG_HOME/govctl`, else
//! `$HOME/.config/govctl`; the key named `NAME` is `NAME.key` there
//! (`default.key` unless `--name`). `--key PATH` names any file instead.
//!
//! # Rules
//! * The store directory is created with mode 0700; key files are created
//!   with mode 0600 and `create_new`, so an existing file is never
//!   overwritten.
//! * A store directory that group or others can write is refused at every
//!   use, not only when it is created ([`check_store_dir`]): whoever can
//!   write it can swap a key file for their own.
//! * A key file readable or writable by group or others is refused, as ssh
//!   refuses such private keys.
//! * Decryption refuses a `log_n` above [`MAX_LOG_N`] before running scrypt
//!   (a hostile ncryptsec cannot make us allocate gigabytes).
//! * Secrets live in [`Zeroizing`] memory, in buffers allocated at their
//!   final size (see [`crate::prompt::read_bounded`]); no type here
//!   implements `Debug`.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nostr::nips::nip19::{FromBech32, ToBech32};
use nostr::nips::nip49::{EncryptedSecretKey, KeySecurity};
use qube_agent::Keys;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};
use crate::prompt::Passphrase;

pub use crate::defaults::{DEFAULT_LOG_N, MAX_LOG_N};

/// Largest key file read, in bytes (an ncryptsec line is 163).
const MAX_KEY_FILE_BYTES: usize = 1024;

/// Key name used when neither `--name` nor `--key` is given.
pub const DEFAULT_NAME: &str = "default";

/// A 32-byte secp256k1 secret key. Not `Debug`, not `Clone`; erased on
/// drop.
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// A fresh key from the operating system's random generator.
    ///
    /// # Errors
    /// The generator failed.
    pub fn generate() -> Result<SecretKey> {
        let keys = Keys::generate()
            .map_err(|e| CliError::failure(format!("cannot generate a key: {e}")))?;
        Ok(SecretKey(Zeroizing::new(keys.secret_bytes())))
    }

    /// Wraps 32 bytes, checking that they are a valid secret key.
    fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Result<SecretKey> {
        match Keys::from_secret_bytes(&bytes) {
            Some(_) => Ok(SecretKey(bytes)),
            None => Err(CliError::failure(
                "not a valid secp256k1 secret key (zero or not below the curve order)",
            )),
        }
    }

    /// The signing keys.
    pub fn keys(&self) -> Result<Keys> {
        Keys::from_secret_bytes(&self.0)
            .ok_or_else(|| CliError::failure("not a valid secp256k1 secret key"))
    }

    /// The 32-byte x-only public key.
    pub fn public_key(&self) -> Result<[u8; 32]> {
        Ok(self.keys()?.public_key())
    }

    fn to_nostr(&self) -> Result<nostr::key::SecretKey> {
        nostr::key::SecretKey::from_slice(self.0.as_slice())
            .map_err(|e| CliError::failure(format!("not a valid secret key: {e}")))
    }

    /// The NIP-19 `nsec` form.
    pub fn to_nsec(&self) -> Result<Zeroizing<String>> {
        self.to_nostr()?
            .to_bech32()
            .map(Zeroizing::new)
            .map_err(|e| CliError::failure(format!("cannot encode nsec: {e}")))
    }

    /// Encrypts with NIP-49 at cost `log_n` (at most [`MAX_LOG_N`]).
    ///
    /// # Errors
    /// `log_n` above the cap, or the encryption failed.
    pub fn encrypt(
        &self,
        passphrase: &Passphrase,
        log_n: u8,
        security: KeySecurity,
    ) -> Result<EncryptedSecretKey> {
        check_log_n(log_n)?;
        EncryptedSecretKey::new(&self.to_nostr()?, passphrase.as_str(), log_n, security)
            .map_err(|e| CliError::failure(format!("NIP-49 encryption failed: {e}")))
    }
}

/// Refuses a scrypt cost above [`MAX_LOG_N`].
pub fn check_log_n(log_n: u8) -> Result<()> {
    if log_n > MAX_LOG_N {
        return Err(CliError::failure(format!(
            "scrypt log_n {log_n} is above govctl's limit of {MAX_LOG_N} ({} MiB of memory)",
            // scrypt with r = 8 needs 2^(log_n + 10) bytes; log_n > 20 here.
            1u64 << (log_n.min(60) - 10)
        ))
        .hint(format!(
            "use --log-n {MAX_LOG_N} or less; re-encrypt a stronger key with a lower log_n elsewhere"
        )));
    }
    Ok(())
}

/// Decrypts an ncryptsec, refusing a cost above [`MAX_LOG_N`] before
/// running scrypt.
///
/// # Errors
/// Cost too high, wrong passphrase (or corrupt data), invalid key.
pub fn decrypt(encrypted: &EncryptedSecretKey, passphrase: &Passphrase) -> Result<SecretKey> {
    check_log_n(encrypted.log_n())?;
    let secret = encrypted
        .decrypt_with_max_log_n(passphrase.as_str(), MAX_LOG_N)
        .map_err(|_| {
            CliError::failure("wrong passphrase (or the ncryptsec is corrupt)")
                .hint("check the passphrase; a passphrase file is read up to its first newline")
        })?;
    SecretKey::from_bytes(Zeroizing::new(secret.to_secret_bytes()))
}

/// A key as stored or as typed by the operator. Not `Debug`.
pub enum StoredKey {
    /// NIP-49 `ncryptsec`.
    Encrypted(EncryptedSecretKey),
    /// Plain secret key (`nsec` or hex).
    Plain(SecretKey),
}

impl StoredKey {
    /// Parses `ncryptsec1...`, `nsec1...` or, when `allow_hex`, 64 hex
    /// characters. Surrounding whitespace is ignored.
    ///
    /// # Errors
    /// Anything else, with the reason.
    pub fn parse(text: &str, allow_hex: bool) -> Result<StoredKey> {
        let text = text.trim();
        if text.starts_with("ncryptsec1") {
            return EncryptedSecretKey::from_bech32(text)
                .map(StoredKey::Encrypted)
                .map_err(|e| CliError::failure(format!("not a valid ncryptsec: {e}")));
        }
        if text.starts_with("nsec1") {
            let secret = nostr::key::SecretKey::from_bech32(text)
                .map_err(|e| CliError::failure(format!("not a valid nsec: {e}")))?;
            return SecretKey::from_bytes(Zeroizing::new(secret.to_secret_bytes()))
                .map(StoredKey::Plain);
        }
        if allow_hex && text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut bytes = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(text, bytes.as_mut_slice())
                .map_err(|_| CliError::failure("not 64 hex characters"))?;
            return SecretKey::from_bytes(bytes).map(StoredKey::Plain);
        }
        if text.starts_with("npub1") || text.starts_with("nprofile1") {
            return Err(CliError::failure("that is a public key, not a secret key")
                .hint("give the nsec or ncryptsec of the key"));
        }
        Err(CliError::failure(if allow_hex {
            "not an nsec, an ncryptsec or 64 hex characters"
        } else {
            "not an nsec or an ncryptsec"
        }))
    }

    /// The one-line file form, with its newline.
    pub fn to_line(&self) -> Result<Zeroizing<String>> {
        let text = match self {
            StoredKey::Encrypted(e) => Zeroizing::new(
                e.to_bech32()
                    .map_err(|e| CliError::failure(format!("cannot encode ncryptsec: {e}")))?,
            ),
            StoredKey::Plain(secret) => secret.to_nsec()?,
        };
        // Sized once: `format!` could grow the string and leave a copy.
        let mut line = Zeroizing::new(String::with_capacity(text.len() + 1));
        line.push_str(&text);
        line.push('\n');
        Ok(line)
    }
}

/// The key store directory (see the module docs).
///
/// # Errors
/// Neither `GOVCTL_HOME`, `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn store_dir() -> Result<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = from_env("GOVCTL_HOME") {
        return Ok(dir);
    }
    if let Some(dir) = from_env("XDG_CONFIG_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("govctl"));
    }
    if let Some(home) = from_env("HOME") {
        return Ok(home.join(".config").join("govctl"));
    }
    Err(
        CliError::failure("cannot find the key store: HOME is not set")
            .hint("set GOVCTL_HOME to a directory, or give --key PATH"),
    )
}

/// Checks a key name: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
///
/// # Errors
/// Any other name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::usage(format!("invalid key name {name:?}"))
            .hint("use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"))
    }
}

/// The file of the key chosen by `--key` or `--name` (default
/// [`DEFAULT_NAME`]); the second value says whether it is in the store.
///
/// # Errors
/// An invalid name, or no store directory.
pub fn key_path(key: Option<&Path>, name: Option<&str>) -> Result<(PathBuf, bool)> {
    if let Some(path) = key {
        return Ok((path.to_path_buf(), false));
    }
    let name = name.unwrap_or(DEFAULT_NAME);
    check_name(name)?;
    let dir = store_dir()?;
    check_store_dir(&dir)?;
    Ok((dir.join(format!("{name}.key")), true))
}

/// Refuses a store directory that group or others can write (they could
/// swap key files), or that is not a directory. Called at every use of the
/// store; a store that does not exist yet passes (its key is then missing,
/// or about to be created by [`ensure_store_dir`]).
///
/// # Errors
/// Too open, not a directory, or cannot be inspected.
pub fn check_store_dir(dir: &Path) -> Result<()> {
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(CliError::io("inspect the key store", dir, &e)
                .hint("set GOVCTL_HOME to a directory you own, or give --key PATH"))
        }
    };
    if !metadata.is_dir() {
        return Err(
            CliError::failure(format!("key store {} is not a directory", dir.display()))
                .hint("set GOVCTL_HOME to a directory you own, or give --key PATH"),
        );
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(CliError::failure(format!(
            "key store {} is writable by group or others (mode {mode:03o}): they could replace a key",
            dir.display()
        ))
        .hint(format!("chmod 700 {}", dir.display())));
    }
    Ok(())
}

/// Creates the store directory with mode 0700 if needed, then checks it
/// as [`check_store_dir`] does.
///
/// # Errors
/// Cannot create it, or it is too open.
pub fn ensure_store_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            CliError::io("create the key store", dir, &e)
                .hint("set GOVCTL_HOME to a directory you own, or give --key PATH")
        })?;
    check_store_dir(dir)
}

/// Writes a new key file: mode 0600, `create_new` (never overwrites),
/// synced to disk.
///
/// # Errors
/// The file exists (the error names it), or writing fails.
pub fn write_new_key(path: &Path, key: &StoredKey) -> Result<()> {
    let line = key.to_line()?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::failure(format!(
                    "{} already exists; refusing to overwrite it",
                    path.display()
                ))
                .hint("choose another --name or --key PATH, or move the old key away yourself")
            } else {
                CliError::io("create", path, &e)
            }
        })?;
    // The umask may have cleared bits, never added any; make it exactly 0600.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(line.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::io("write", path, &e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// Reads a key file, refusing one that group or others can read or write.
///
/// # Errors
/// Missing, unreadable, too open, too large, or not one of the two forms.
pub fn read_key_file(path: &Path) -> Result<StoredKey> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        let err = CliError::io("read key file", path, &e);
        if e.kind() == std::io::ErrorKind::NotFound {
            err.hint(
                "create a key with `govctl keygen`, or name one with --key PATH or --name NAME",
            )
        } else {
            err
        }
    })?;
    let metadata = file
        .metadata()
        .map_err(|e| CliError::io("inspect key file", path, &e))?;
    if !metadata.is_file() {
        return Err(CliError::failure(format!(
            "key file {} is not a regular file",
            path.display()
        )));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::failure(format!(
            "permissions {mode:04o} for key file {} are too open: it must not be accessible by group or others",
            path.display()
        ))
        .hint(format!("chmod 600 {}", path.display())));
    }
    let bytes = crate::prompt::read_bounded(&mut file, MAX_KEY_FILE_BYTES + 1)
        .map_err(|e| CliError::io("read key file", path, &e))?;
    if bytes.len() > MAX_KEY_FILE_BYTES {
        return Err(CliError::failure(format!(
            "key file {} is larger than {MAX_KEY_FILE_BYTES} bytes",
            path.display()
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| CliError::failure(format!("key file {} is not text", path.display())))?;
    StoredKey::parse(text, false).map_err(|e| {
        CliError::failure(format!(
            "key file {} holds no key govctl can read",
            path.display()
        ))
        .hint(format!(
            "a key file is one line, ncryptsec1... or nsec1... ({})",
            e.message()
        ))
    })
}

/// Reads a key file and decrypts it if needed (passphrase from `file` or
/// the terminal).
///
/// # Errors
/// As [`read_key_file`] and [`decrypt`].
pub fn unlock(path: &Path, passphrase_file: Option<&Path>) -> Result<SecretKey> {
    match read_key_file(path)? {
        StoredKey::Plain(secret) => Ok(secret),
        StoredKey::Encrypted(encrypted) => {
            let what = path.display().to_string();
            let passphrase = crate::prompt::existing_passphrase(passphrase_file, &what)?;
            decrypt(&encrypted, &passphrase).map_err(|e| e.context(&format!("key file {what}")))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn passphrase(text: &str) -> Passphrase {
        Passphrase::for_tests(text)
    }

    #[test]
    fn encrypt_decrypt_round_trip_and_wrong_passphrase() {
        let secret = SecretKey::generate().unwrap();
        let encrypted = secret
            .encrypt(&passphrase("right"), 4, KeySecurity::Medium)
            .unwrap();
        let back = decrypt(&encrypted, &passphrase("right")).unwrap();
        assert_eq!(back.public_key().unwrap(), secret.public_key().unwrap());
        assert!(decrypt(&encrypted, &passphrase("wrong")).is_err());
    }

    #[test]
    fn log_n_above_cap_is_refused_before_scrypt() {
        let secret = SecretKey::generate().unwrap();
        assert!(secret
            .encrypt(&passphrase("x"), MAX_LOG_N + 1, KeySecurity::Medium)
            .is_err());
        // Forge a payload claiming log_n 63: refused at once, no scrypt run.
        let encrypted = secret
            .encrypt(&passphrase("x"), 4, KeySecurity::Medium)
            .unwrap();
        let mut bytes = encrypted.as_vec();
        bytes[1] = 63;
        let forged = EncryptedSecretKey::from_slice(&bytes).unwrap();
        let err = decrypt(&forged, &passphrase("x")).err().unwrap();
        assert!(err.to_string().contains("above govctl's limit"), "{err}");
    }

    #[test]
    fn parse_forms() {
        let hex = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa";
        let nsec = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5";
        let from_hex = match StoredKey::parse(hex, true).unwrap() {
            StoredKey::Plain(s) => s,
            StoredKey::Encrypted(_) => panic!(),
        };
        assert_eq!(from_hex.to_nsec().unwrap().as_str(), nsec);
        assert!(StoredKey::parse(hex, false).is_err());
        assert!(StoredKey::parse(&"0".repeat(64), true).is_err());
        assert!(StoredKey::parse(
            "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg",
            true
        )
        .is_err());
        assert_eq!(
            StoredKey::parse(nsec, false)
                .unwrap()
                .to_line()
                .unwrap()
                .as_str(),
            format!("{nsec}\n")
        );
    }

    #[test]
    fn names() {
        check_name("default").unwrap();
        check_name("gov-2.backup_1").unwrap();
        for bad in ["", ".hidden", "a/b", "../x", "with space", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
