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
    pub(super) health: Option<Health>,
    pub(super) rollback: Option<Vec<String>>,
    pub(super) deadline_grace_secs: u64,
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

    /// Optional health check after `command` (and again after `rollback`);
    /// a failure triggers `rollback`.
    pub fn health(&self) -> Option<&Health> {
        self.health.as_ref()
    }

    /// Optional argv run when the health check fails.
    pub fn rollback(&self) -> Option<&[String]> {
        self.rollback.as_deref()
    }

    /// How late a directive's `required_by` may be when its quorum is first
    /// reached, in seconds: a quorum reached more than this after
    /// `required_by` is refused with `deadline passed` (`docs/PROTOCOL.md`
    /// section 12). 0 to
    /// [`MAX_DEADLINE_GRACE_SECS`](super::MAX_DEADLINE_GRACE_SECS); default
    /// [`DEFAULT_REBOOT_GRACE_SECS`](super::DEFAULT_REBOOT_GRACE_SECS) for
    /// `[reboot]`, [`DEFAULT_UPGRADE_GRACE_SECS`](super::DEFAULT_UPGRADE_GRACE_SECS)
    /// for `[upgrade]`.
    pub fn deadline_grace_secs(&self) -> u64 {
        self.deadline_grace_secs
    }
}

/// The health check of a hook section (`docs/PROTOCOL.md` section 12): the
/// `[upgrade.health]` / `[reboot.health]` table, or the older
/// `health = [argv]` form, which means one check right after `command`
/// (`settle_secs` 0, `window_secs` 0, `tries` 1, `interval_secs` the
/// default).
///
/// After the action, the agent waits `settle_secs`, then runs `command` at
/// the start of the window and every `interval_secs` after, and once more
/// when `window_secs` have passed; every check must pass. A check that fails
/// is retried up to `tries` attempts in all, 1 s apart
/// ([`HEALTH_RETRY_PAUSE_SECS`](super::HEALTH_RETRY_PAUSE_SECS)), before
/// the window fails. With `window_secs` 0 there is one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub(super) command: Vec<String>,
    pub(super) settle_secs: u64,
    pub(super) interval_secs: u64,
    pub(super) window_secs: u64,
    pub(super) tries: u32,
}

impl Health {
    /// The check's argv (same rules as the other hook argvs); each run
    /// has the section's `timeout_secs`.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// How long to wait after the action before the first check, in
    /// seconds: 0 to [`MAX_HEALTH_SECS`](super::MAX_HEALTH_SECS); default
    /// [`DEFAULT_HEALTH_SETTLE_SECS`](super::DEFAULT_HEALTH_SETTLE_SECS)
    /// in a table, 0 in the argv form.
    pub fn settle_secs(&self) -> u64 {
        self.settle_secs
    }

    /// Time between the starts of two checks in the window, in seconds: 1
    /// to [`MAX_HEALTH_SECS`](super::MAX_HEALTH_SECS); default
    /// [`DEFAULT_HEALTH_INTERVAL_SECS`](super::DEFAULT_HEALTH_INTERVAL_SECS).
    /// A check that runs longer delays the next one.
    pub fn interval_secs(&self) -> u64 {
        self.interval_secs
    }

    /// How long health must keep passing, in seconds, counted from the
    /// first check: 0 (one check) to
    /// [`MAX_HEALTH_SECS`](super::MAX_HEALTH_SECS); default
    /// [`DEFAULT_HEALTH_WINDOW_SECS`](super::DEFAULT_HEALTH_WINDOW_SECS) in
    /// a table, 0 in the argv form.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// Attempts per check before it counts as failed: 1 to
    /// [`MAX_HEALTH_TRIES`](super::MAX_HEALTH_TRIES); default 1.
    pub fn tries(&self) -> u32 {
        self.tries
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
