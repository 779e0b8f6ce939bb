//! The one error type of the CLI: a lower-case message, optional advice, and
//! the exit status it maps to.
//!
//! Exit statuses (documented in `govctl --help`): 0 success, 1 failure (the
//! command ran and something was wrong: a bad key, a refused edit, an invalid
//! event, no relay accepted), 2 usage (the command line cannot be carried
//! out as written: clap's own errors and inconsistent options), 3 for
//! `govctl status` when a node in the winning proposal's wave has not
//! acknowledged success yet.

use std::fmt;
use std::path::Path;

/// Exit status of a failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a usage error.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of `govctl status` when the wave is not complete.
pub const EXIT_INCOMPLETE: u8 = 3;

/// A command's failure: printed as `error: MESSAGE` and `hint: ADVICE` on
/// stderr.
#[derive(Debug)]
pub struct CliError {
    message: String,
    hint: Option<String>,
    code: u8,
}

/// Result of a command step.
pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    /// A failure (exit status 1).
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
            code: EXIT_FAILURE,
        }
    }

    /// A usage error (exit status 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
            code: EXIT_USAGE,
        }
    }

    /// The wave is not complete yet (exit status 3).
    pub fn incomplete(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
            code: EXIT_INCOMPLETE,
        }
    }

    /// Adds advice: what to do next.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// A failure to read, write or create `path`.
    pub fn io(action: &str, path: &Path, err: &std::io::Error) -> CliError {
        CliError::failure(format!("cannot {action} {}: {err}", path.display()))
    }

    /// Puts `what` (e.g. the file concerned) before the message.
    #[must_use]
    pub fn context(mut self, what: &str) -> CliError {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The message, without `error:` and hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The exit status.
    pub fn code(&self) -> u8 {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Prints a warning line on stderr.
pub fn warn(message: impl fmt::Display) {
    eprintln!("warning: {message}");
}
