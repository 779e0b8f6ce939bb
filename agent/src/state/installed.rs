//! The installed version (`installed_version`), recorded after each
//! successful upgrade: with `current_version` from the config (the higher of
//! the two), it is the anti-rollback floor.

use super::{StateDir, StateError, INSTALLED_VERSION_FILE, MAX_QUOTED};
use crate::config::Version;
use crate::core::error::truncated;

/// Longest `installed_version` file, in bytes.
const MAX_VERSION_FILE_BYTES: u64 = 1024;

impl StateDir {
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
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

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
}
