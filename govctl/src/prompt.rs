//! Secrets and confirmations from the operator: passphrases from a named
//! file or the terminal (never echoed), secret keys from the terminal or
//! stdin, yes/no questions.
//!
//! Everything secret is held in [`Zeroizing`] memory and no type here
//! implements `Debug`. The terminal is used only when stdin is one: a
//! command run from a script never blocks on a prompt, it fails and says
//! which option to use instead.

use std::io::{BufRead, IsTerminal, Read};
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Largest passphrase file read, in bytes.
const MAX_PASSPHRASE_FILE_BYTES: u64 = 64 * 1024;

/// Largest secret key text read from stdin, in bytes (an ncryptsec is 162
/// characters).
const MAX_SECRET_INPUT_BYTES: u64 = 4096;

/// A passphrase for NIP-49 encryption. Not `Debug`; erased on drop.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// The passphrase text (NIP-49 normalizes it to NFKC before use).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A passphrase from a string, for unit tests.
    #[cfg(test)]
    pub fn for_tests(text: &str) -> Passphrase {
        Passphrase(Zeroizing::new(text.to_owned()))
    }
}

/// Whether prompts can be shown: stdin is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads the passphrase of an existing key: the first line of `file`
/// (without its line ending), or one prompt on the terminal.
///
/// # Errors
/// The file cannot be read, or there is no terminal and no file.
pub fn existing_passphrase(file: Option<&Path>, what: &str) -> Result<Passphrase> {
    if let Some(file) = file {
        return read_passphrase_file(file);
    }
    require_terminal("--passphrase-file FILE")?;
    prompt_secret(&format!("passphrase for {what}: ")).map(Passphrase)
}

/// Reads a passphrase for a new encryption: the first line of `file`, or
/// asked twice on the terminal (both must match). An empty passphrase is
/// refused.
///
/// # Errors
/// As [`existing_passphrase`]; empty or mismatching passphrases.
pub fn new_passphrase(file: Option<&Path>, what: &str) -> Result<Passphrase> {
    let passphrase = if let Some(file) = file {
        read_passphrase_file(file)?
    } else {
        require_terminal("--passphrase-file FILE")?;
        let first = prompt_secret(&format!("new passphrase for {what}: "))?;
        let second = prompt_secret("repeat the passphrase: ")?;
        if *first != *second {
            return Err(CliError::failure("the two passphrases differ")
                .hint("run the command again and type the same passphrase twice"));
        }
        Passphrase(first)
    };
    if passphrase.as_str().is_empty() {
        return Err(CliError::failure("the passphrase is empty").hint(
            "choose a long passphrase; --plaintext stores the key unencrypted, which is rarely what you want",
        ));
    }
    Ok(passphrase)
}

/// Reads the first line of a passphrase file, without `\n` or `\r\n`.
fn read_passphrase_file(path: &Path) -> Result<Passphrase> {
    let file = std::fs::File::open(path).map_err(|e| {
        CliError::io("read the passphrase file", path, &e)
            .hint("--passphrase-file names a file whose first line is the passphrase")
    })?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PASSPHRASE_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::io("read the passphrase file", path, &e))?;
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let mut line = bytes.get(..line_end).unwrap_or_default();
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let text = std::str::from_utf8(line).map_err(|_| {
        CliError::failure(format!("the first line of {} is not UTF-8", path.display()))
            .hint("NIP-49 passphrases are UTF-8 text")
    })?;
    Ok(Passphrase(Zeroizing::new(text.to_owned())))
}

/// Reads a secret key as text: from the terminal without echo when stdin is
/// one, else from stdin (at most 4 KiB), surrounding whitespace removed.
///
/// # Errors
/// Reading fails or nothing was given.
pub fn secret_input(prompt: &str) -> Result<Zeroizing<String>> {
    let text = if interactive() {
        prompt_secret(prompt)?
    } else {
        let mut bytes = Zeroizing::new(Vec::new());
        std::io::stdin()
            .take(MAX_SECRET_INPUT_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| CliError::failure("stdin is not UTF-8 text"))?;
        Zeroizing::new(text.to_owned())
    };
    let trimmed = Zeroizing::new(text.trim().to_owned());
    if trimmed.is_empty() {
        return Err(CliError::failure("no secret key given")
            .hint("type or pipe an nsec, an ncryptsec or 64 hex characters"));
    }
    Ok(trimmed)
}

/// Asks a yes/no question on the terminal; only `y` or `yes` is yes.
///
/// # Errors
/// There is no terminal (the caller says which flag skips the question),
/// or reading fails.
pub fn confirm(question: &str, skip_flag: &str) -> Result<bool> {
    require_terminal(skip_flag)?;
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::failure(format!("cannot read the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn require_terminal(alternative: &str) -> Result<()> {
    if interactive() {
        Ok(())
    } else {
        Err(
            CliError::usage("stdin is not a terminal, so govctl cannot ask")
                .hint(format!("use {alternative}")),
        )
    }
}

fn prompt_secret(prompt: &str) -> Result<Zeroizing<String>> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| CliError::failure(format!("cannot read from the terminal: {e}")))
}
