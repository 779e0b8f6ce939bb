//! `govctl keygen` and `govctl key show|import|export`: the key store's
//! commands (formats and rules in [`crate::keystore`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use nostr::nips::nip19::ToBech32;
use nostr::nips::nip49::KeySecurity;

use crate::error::{warn, CliError, Result};
use crate::keystore::{self, SecretKey, StoredKey};
use crate::prompt;

/// Which key, and where its passphrase comes from.
pub struct KeyChoice<'a> {
    /// `--key PATH`.
    pub key: Option<&'a Path>,
    /// `--name NAME`.
    pub name: Option<&'a str>,
    /// `--passphrase-file FILE`.
    pub passphrase_file: Option<&'a Path>,
}

impl KeyChoice<'_> {
    /// The key file.
    pub fn path(&self) -> Result<PathBuf> {
        keystore::key_path(self.key, self.name).map(|(path, _)| path)
    }

    /// Reads and, if needed, decrypts the key.
    pub fn unlock(&self) -> Result<SecretKey> {
        keystore::unlock(&self.path()?, self.passphrase_file)
    }

    /// The file to create for a new key, creating the store directory when
    /// the key goes there.
    fn new_path(&self) -> Result<PathBuf> {
        let (path, in_store) = keystore::key_path(self.key, self.name)?;
        if in_store {
            if let Some(dir) = path.parent() {
                keystore::ensure_store_dir(dir)?;
            }
        }
        if path.exists() {
            return Err(CliError::failure(format!(
                "{} already exists; refusing to overwrite it",
                path.display()
            ))
            .hint("choose another --name or --key PATH, or move the old key away yourself"));
        }
        Ok(path)
    }
}

/// The NIP-19 npub of a 32-byte public key.
pub fn npub(pubkey: &[u8; 32]) -> String {
    qube_agent::core::nip19::encode_npub(pubkey)
}

fn warn_weak(log_n: u8) {
    if log_n < keystore::DEFAULT_LOG_N {
        warn(format_args!(
            "log_n {log_n} makes the passphrase cheap to guess; use {} or more for a real key",
            keystore::DEFAULT_LOG_N
        ));
    }
}

fn warn_plaintext(path: &Path) {
    warn(format_args!(
        "{} holds the secret key unencrypted (nsec): anyone who can read it can sign as you",
        path.display()
    ));
}

/// `govctl keygen`: makes a key, stores it, prints its npub.
pub fn keygen(choice: &KeyChoice<'_>, log_n: u8, plaintext: bool) -> Result<()> {
    keystore::check_log_n(log_n)?;
    let path = choice.new_path()?;
    let secret = SecretKey::generate()?;
    let pubkey = secret.public_key()?;
    let stored = if plaintext {
        StoredKey::Plain(secret)
    } else {
        let passphrase =
            prompt::new_passphrase(choice.passphrase_file, &path.display().to_string())?;
        warn_weak(log_n);
        StoredKey::Encrypted(secret.encrypt(&passphrase, log_n, KeySecurity::Medium)?)
    };
    keystore::write_new_key(&path, &stored)?;
    report_stored("created", &path, &stored);
    println!("{}", npub(&pubkey));
    Ok(())
}

fn report_stored(verb: &str, path: &Path, stored: &StoredKey) {
    match stored {
        StoredKey::Plain(_) => {
            eprintln!("{verb} {} (plaintext nsec)", path.display());
            warn_plaintext(path);
        }
        StoredKey::Encrypted(e) => eprintln!(
            "{verb} {} (NIP-49 ncryptsec, log_n {})",
            path.display(),
            e.log_n()
        ),
    }
}

/// `govctl key show`: npub, hex, file and protection; never the secret.
pub fn show(choice: &KeyChoice<'_>) -> Result<()> {
    let path = choice.path()?;
    let (secret, protection) = match keystore::read_key_file(&path)? {
        StoredKey::Plain(secret) => (secret, "no (plaintext nsec)".to_owned()),
        StoredKey::Encrypted(encrypted) => {
            let passphrase =
                prompt::existing_passphrase(choice.passphrase_file, &path.display().to_string())?;
            let protection = format!("yes (NIP-49 ncryptsec, log_n {})", encrypted.log_n());
            (
                keystore::decrypt(&encrypted, &passphrase)
                    .map_err(|e| e.context(&format!("key file {}", path.display())))?,
                protection,
            )
        }
    };
    let pubkey = secret.public_key()?;
    println!("npub:      {}", npub(&pubkey));
    println!("hex:       {}", hex::encode(pubkey));
    println!("file:      {}", path.display());
    println!("encrypted: {protection}");
    Ok(())
}

/// `govctl key import`: stores a key typed on the terminal or piped on
/// stdin (nsec, ncryptsec or hex), encrypted unless `plaintext`.
///
/// An ncryptsec is checked with its passphrase and stored as given (same
/// cost and passphrase); an nsec or hex key is encrypted with a new
/// passphrase.
pub fn import(choice: &KeyChoice<'_>, log_n: u8, plaintext: bool) -> Result<()> {
    keystore::check_log_n(log_n)?;
    let path = choice.new_path()?;
    let text = prompt::secret_input("secret key (nsec, ncryptsec or hex): ")?;
    let input = StoredKey::parse(&text, true)?;
    drop(text);
    let (stored, pubkey) = match input {
        StoredKey::Encrypted(encrypted) => {
            let passphrase =
                prompt::existing_passphrase(choice.passphrase_file, "the imported ncryptsec")?;
            let secret = keystore::decrypt(&encrypted, &passphrase)
                .map_err(|e| e.context("the imported ncryptsec"))?;
            let pubkey = secret.public_key()?;
            if plaintext {
                (StoredKey::Plain(secret), pubkey)
            } else {
                (StoredKey::Encrypted(encrypted), pubkey)
            }
        }
        StoredKey::Plain(secret) => {
            let pubkey = secret.public_key()?;
            if plaintext {
                (StoredKey::Plain(secret), pubkey)
            } else {
                let passphrase =
                    prompt::new_passphrase(choice.passphrase_file, &path.display().to_string())?;
                warn_weak(log_n);
                // It was handled unencrypted before: NIP-49 key security 0x00.
                let encrypted = secret.encrypt(&passphrase, log_n, KeySecurity::Weak)?;
                (StoredKey::Encrypted(encrypted), pubkey)
            }
        }
    };
    keystore::write_new_key(&path, &stored)?;
    report_stored("imported into", &path, &stored);
    println!("{}", npub(&pubkey));
    Ok(())
}

/// `govctl key export`: prints the key as an ncryptsec (encrypting a
/// plaintext key with a new passphrase), or as an nsec with `plaintext`.
pub fn export(choice: &KeyChoice<'_>, log_n: u8, plaintext: bool) -> Result<()> {
    let path = choice.path()?;
    let stored = keystore::read_key_file(&path)?;
    if plaintext {
        let secret = match stored {
            StoredKey::Plain(secret) => secret,
            StoredKey::Encrypted(encrypted) => {
                let passphrase = prompt::existing_passphrase(
                    choice.passphrase_file,
                    &path.display().to_string(),
                )?;
                keystore::decrypt(&encrypted, &passphrase)
                    .map_err(|e| e.context(&format!("key file {}", path.display())))?
            }
        };
        warn("printing the secret key unencrypted (nsec): keep it off shared screens and logs");
        // One write of a whole line goes straight to fd 1: stdout's
        // process-wide buffer never holds the nsec.
        let line = StoredKey::Plain(secret).to_line()?;
        let mut stdout = std::io::stdout().lock();
        return stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| {
                CliError::failure(format!("cannot write to stdout: {e}"))
                    .hint("redirect stdout to a file or a terminal that accepts output")
            });
    }
    let encrypted = match stored {
        StoredKey::Encrypted(encrypted) => encrypted,
        StoredKey::Plain(secret) => {
            keystore::check_log_n(log_n)?;
            let passphrase = prompt::new_passphrase(choice.passphrase_file, "the exported key")?;
            warn_weak(log_n);
            secret.encrypt(&passphrase, log_n, KeySecurity::Weak)?
        }
    };
    let text = encrypted
        .to_bech32()
        .map_err(|e| CliError::failure(format!("cannot encode ncryptsec: {e}")))?;
    println!("{text}");
    Ok(())
}
