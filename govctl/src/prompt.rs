//! Secrets and confirmations from the operator: passphrases from a named
//! file or the terminal (never echoed), secret keys from the terminal or
//! stdin, yes/no questions.
//!
//! Everything secret is held in [`Zeroizing`] memory and no type here
//! implements `Debug`. Every secret buffer is allocated once, zeroed, at its
//! final size ([`read_bounded`], [`read_typed_line`]) and never grows: a
//! `Vec` or `String` that grows copies its bytes to a new allocation and
//! frees the old one without erasing it. Files and stdin are read without
//! std's buffering, and the terminal directly (`/dev/tty`, echo off), for
//! the same reason.
//!
//! A passphrase file readable or writable by group or others is refused, as
//! key files are. The terminal is used only when stdin is one: a command run
//! from a script never blocks on a prompt, it fails and says which option to
//! use instead.

use std::fs::File;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// Largest passphrase file read, in bytes (only its first line is used).
const MAX_PASSPHRASE_FILE_BYTES: usize = 64 * 1024;

/// Largest secret key text read from stdin, in bytes (an ncryptsec is 162
/// characters).
const MAX_SECRET_INPUT_BYTES: usize = 4096;

/// Longest passphrase typed at the terminal, in bytes.
pub const MAX_TYPED_PASSPHRASE_BYTES: usize = 1024;

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

/// Reads up to `limit` bytes into one zeroed buffer of exactly `limit`
/// bytes, allocated before the first byte arrives, and shortens it to what
/// was read (its capacity, erased on drop, stays). Callers pass one byte
/// more than they accept, so a longer input shows as a full buffer.
///
/// # Errors
/// A read error other than an interruption.
pub fn read_bounded(reader: &mut impl Read, limit: usize) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; limit]);
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
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

/// Reads the first line of a passphrase file, without `\n` or `\r\n`,
/// refusing a file that group or others can read or write.
fn read_passphrase_file(path: &Path) -> Result<Passphrase> {
    let mut file = File::open(path).map_err(|e| {
        CliError::io("read the passphrase file", path, &e)
            .hint("--passphrase-file names a file whose first line is the passphrase")
    })?;
    let mode = file
        .metadata()
        .map_err(|e| {
            CliError::io("inspect the passphrase file", path, &e)
                .hint("--passphrase-file names a file whose first line is the passphrase")
        })?
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(CliError::failure(format!(
            "permissions {mode:04o} for passphrase file {} are too open: it must not be accessible by group or others",
            path.display()
        ))
        .hint(format!("chmod 600 {}", path.display())));
    }
    let bytes = read_bounded(&mut file, MAX_PASSPHRASE_FILE_BYTES).map_err(|e| {
        CliError::io("read the passphrase file", path, &e)
            .hint("--passphrase-file names a file whose first line is the passphrase")
    })?;
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
    // One allocation of exactly the passphrase's length.
    Ok(Passphrase(Zeroizing::new(text.to_owned())))
}

/// Reads a secret key as text: from the terminal without echo when stdin is
/// one, else from stdin (at most 4 KiB), surrounding whitespace removed.
///
/// # Errors
/// Reading fails, the input is too long or not UTF-8, or nothing was given.
pub fn secret_input(prompt: &str) -> Result<Zeroizing<String>> {
    let text = if interactive() {
        prompt_secret(prompt)?
    } else {
        // A duplicate of fd 0 read as a plain file: `std::io::stdin()` would
        // keep a copy in its process-wide buffer, never erased.
        let mut stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
        let bytes = read_bounded(&mut stdin, MAX_SECRET_INPUT_BYTES + 1)
            .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
        if bytes.len() > MAX_SECRET_INPUT_BYTES {
            return Err(CliError::failure(format!(
                "more than {MAX_SECRET_INPUT_BYTES} bytes on stdin; a secret key is one short line"
            ))
            .hint("pipe only the nsec, the ncryptsec or the 64 hex characters"));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            CliError::failure("stdin is not UTF-8 text")
                .hint("pipe an nsec, an ncryptsec or 64 hex characters")
        })?;
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

/// Asks for a secret on the terminal (`/dev/tty`), echo off, and reads one
/// line of at most [`MAX_TYPED_PASSPHRASE_BYTES`] into a buffer of that
/// size ([`read_typed_line`]).
fn prompt_secret(prompt: &str) -> Result<Zeroizing<String>> {
    let tty_error = |e: std::io::Error| {
        CliError::failure(format!("cannot read from the terminal: {e}"))
            .hint("run govctl in a terminal, or use --passphrase-file FILE")
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(tty_error)?;
    (&tty)
        .write_all(prompt.as_bytes())
        .and_then(|()| (&tty).flush())
        .map_err(tty_error)?;
    let typed = {
        let _echo_off = EchoOff::new(&tty).map_err(|e| tty_error(e.into()))?;
        read_typed_line(&mut &tty, MAX_TYPED_PASSPHRASE_BYTES)
    };
    // Enter was not echoed either.
    let _ = (&tty).write_all(b"\n");
    let bytes = match typed.map_err(tty_error)? {
        Typed::Line(bytes) => bytes,
        Typed::Cancelled => {
            return Err(CliError::failure("cancelled at the prompt")
                .hint("run the command again to answer it"))
        }
        Typed::TooLong => {
            return Err(CliError::failure(format!(
                "the text typed is longer than {MAX_TYPED_PASSPHRASE_BYTES} bytes"
            ))
            .hint("use a shorter passphrase, or --passphrase-file FILE"))
        }
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        CliError::failure("the text typed is not UTF-8")
            .hint("set the terminal to UTF-8 and type it again")
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The terminal with echo, line editing and signal keys off, as typed;
/// restored on drop, whatever happened in between.
struct EchoOff<'a> {
    tty: &'a File,
    saved: Termios,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a File) -> nix::Result<EchoOff<'a>> {
        let saved = termios::tcgetattr(tty)?;
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ECHO | LocalFlags::ECHONL | LocalFlags::ICANON | LocalFlags::ISIG);
        for (index, value) in [
            (SpecialCharacterIndices::VMIN, 1),
            (SpecialCharacterIndices::VTIME, 0),
        ] {
            if let Some(c) = raw.control_chars.get_mut(index as usize) {
                *c = value;
            }
        }
        termios::tcsetattr(tty, SetArg::TCSANOW, &raw)?;
        Ok(EchoOff { tty, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.tty, SetArg::TCSANOW, &self.saved);
    }
}

/// One line typed with echo off.
enum Typed {
    /// The bytes before Enter (or end of input); capacity as allocated.
    Line(Zeroizing<Vec<u8>>),
    /// Ctrl-C, or Ctrl-D on an empty line.
    Cancelled,
    /// More than the buffer holds; the rest of the line was read and dropped.
    TooLong,
}

/// Reads one line from a terminal in non-canonical mode, one byte at a time,
/// into a zeroed buffer of exactly `max` bytes that never grows. It does the
/// line editing the terminal would: Backspace/DEL removes the last
/// character (all its UTF-8 bytes), Ctrl-U clears the line, escape
/// sequences (arrow keys) and other control characters are ignored; Enter
/// or end of input ends the line.
fn read_typed_line(input: &mut impl Read, max: usize) -> std::io::Result<Typed> {
    let mut line = Zeroizing::new(vec![0u8; max]);
    let mut len: usize = 0;
    let mut too_long = false;
    let mut byte = Zeroizing::new([0u8; 1]);
    while let Some(b) = next_byte(input, &mut byte)? {
        match b {
            b'\n' | b'\r' => break,
            0x03 => return Ok(Typed::Cancelled),
            0x04 if len == 0 => return Ok(Typed::Cancelled),
            0x7f | 0x08 => {
                while let Some(last) = len.checked_sub(1) {
                    len = last;
                    let Some(slot) = line.get_mut(last) else {
                        break;
                    };
                    let continuation = *slot & 0xc0 == 0x80;
                    *slot = 0;
                    if !continuation {
                        break;
                    }
                }
            }
            0x15 => {
                line.fill(0);
                len = 0;
            }
            0x1b => {
                // CSI (ESC [) and SS3 (ESC O) run to a final byte 0x40..=0x7e.
                if let Some(b'[' | b'O') = next_byte(input, &mut byte)? {
                    while let Some(b) = next_byte(input, &mut byte)? {
                        if (0x40..=0x7e).contains(&b) {
                            break;
                        }
                    }
                }
            }
            b if b < 0x20 => {}
            b => match line.get_mut(len) {
                Some(slot) => {
                    *slot = b;
                    len += 1;
                }
                None => too_long = true,
            },
        }
    }
    if too_long {
        return Ok(Typed::TooLong);
    }
    line.truncate(len);
    Ok(Typed::Line(line))
}

/// The next byte, or `None` at end of input.
fn next_byte(input: &mut impl Read, byte: &mut [u8; 1]) -> std::io::Result<Option<u8>> {
    loop {
        match input.read(byte) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte[0])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn typed(input: &[u8], max: usize) -> Typed {
        read_typed_line(&mut std::io::Cursor::new(input), max).unwrap()
    }

    fn line(input: &[u8]) -> Vec<u8> {
        match typed(input, 16) {
            Typed::Line(bytes) => {
                // Never grown, never shrunk: the one allocation is erased on drop.
                assert_eq!(bytes.capacity(), 16);
                bytes.to_vec()
            }
            Typed::Cancelled => panic!("cancelled"),
            Typed::TooLong => panic!("too long"),
        }
    }

    #[test]
    fn typed_line_is_edited_like_a_terminal() {
        assert_eq!(line(b"correct horse\n"), b"correct horse");
        assert_eq!(line(b"abc\r"), b"abc");
        assert_eq!(line(b"abc"), b"abc", "end of input ends the line");
        assert_eq!(line(b"ab\x7fc\n"), b"ac");
        assert_eq!(line(b"ab\x08\x08\x08c\n"), b"c");
        assert_eq!(
            line("h\u{e9}\x7f\n".as_bytes()),
            b"h",
            "one character, two bytes"
        );
        assert_eq!(line(b"wrong\x15right\n"), b"right");
        assert_eq!(line(b"a\x1b[Db\x1bOAc\x01\n"), b"abc");
        assert_eq!(line(b"\n"), b"");
        assert!(matches!(typed(b"abc\x03def\n", 16), Typed::Cancelled));
        assert!(matches!(typed(b"\x04", 16), Typed::Cancelled));
        assert_eq!(line(b"a\x04b\n"), b"ab");
    }

    #[test]
    fn typed_line_longer_than_the_buffer_is_refused() {
        assert!(matches!(typed(b"0123456789\n", 10), Typed::Line(_)));
        assert!(matches!(typed(b"0123456789a\n", 10), Typed::TooLong));
    }

    #[test]
    fn bounded_read_allocates_once() {
        let bytes = read_bounded(&mut std::io::Cursor::new(b"secret\n"), 64).unwrap();
        assert_eq!(bytes.as_slice(), b"secret\n");
        assert_eq!(bytes.capacity(), 64);
        let bytes = read_bounded(&mut std::io::Cursor::new(vec![7u8; 100]), 64).unwrap();
        assert_eq!(bytes.len(), 64);
        assert_eq!(bytes.capacity(), 64);
    }
}
