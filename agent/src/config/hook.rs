//! Hook sections, `[upgrade]` and `[reboot]` (`docs/PROTOCOL.md` section 12): the argv
//! arrays the monitor runs and the artifact path template.

use std::path::PathBuf;

/// A hook section, `[upgrade]` or `[reboot]` (`docs/PROTOCOL.md` section 12).
///
/// Every argv is non-empty, its program (first element) non-empty, and no
/// element contains a NUL byte. The hooks are run directly, never through a
/// shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub(super) command: Vec<String>,
    pub(super) timeout_secs: u64,
    pub(super) artifact: Option<ArtifactTemplate>,
    pub(super) fetch: Option<Vec<String>>,
    pub(super) health: Option<Vec<String>>,
    pub(super) rollback: Option<Vec<String>>,
}

impl Hook {
    /// The argv run for the action: program then arguments.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// Time limit for each of this section's commands, in seconds: 1 to
    /// [`MAX_HOOK_TIMEOUT_SECS`](super::MAX_HOOK_TIMEOUT_SECS), default
    /// [`DEFAULT_HOOK_TIMEOUT_SECS`](super::DEFAULT_HOOK_TIMEOUT_SECS).
    pub fn timeout_secs(&self) -> u64 {
        self.timeout_secs
    }

    /// Where the artifact lands; its SHA-256 must equal the voted hash
    /// before `command` runs.
    pub fn artifact(&self) -> Option<&ArtifactTemplate> {
        self.artifact.as_ref()
    }

    /// Optional argv run before the hash check, to fetch the artifact.
    pub fn fetch(&self) -> Option<&[String]> {
        self.fetch.as_deref()
    }

    /// Optional argv run after `command`; a failure triggers `rollback`.
    pub fn health(&self) -> Option<&[String]> {
        self.health.as_deref()
    }

    /// Optional argv run when `health` fails.
    pub fn rollback(&self) -> Option<&[String]> {
        self.rollback.as_deref()
    }
}

/// An absolute path template in which every `{version}` expands to the
/// version string exactly as signed (`docs/PROTOCOL.md` section 12). No other `{` or `}`
/// may appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactTemplate(pub(super) String);

impl ArtifactTemplate {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Expands `{version}` to `version`.
    ///
    /// Returns `None` when `version` is empty or has a byte outside
    /// `[0-9A-Za-z.+-]` (the semver alphabet plus a leading `v`) or contains
    /// `..`: a directive's version can never add a path component.
    pub fn expand(&self, version: &str) -> Option<PathBuf> {
        let safe = !version.is_empty()
            && !version.contains("..")
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'+' | b'-'));
        safe.then(|| PathBuf::from(self.0.replace("{version}", version)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn artifact_expand_refuses_path_tricks() {
        let t = ArtifactTemplate("/staging/znnd-{version}".into());
        assert_eq!(
            t.expand("v1.2.3-rc.1+b5").unwrap(),
            PathBuf::from("/staging/znnd-v1.2.3-rc.1+b5")
        );
        for bad in ["", "../x", "1/2", "1..2", "a b", "1\0"] {
            assert_eq!(t.expand(bad), None, "{bad:?}");
        }
    }
}
