//! Versions as HyperQube writes them: SemVer 2.0.0 with an optional
//! lowercase leading `v` (`docs/PROTOCOL.md` section 3 `version`, section 4).
//! The one place a version string is parsed: the directive `version` tag,
//! `current_version` in the config and the recorded installed version all
//! go through [`Version::parse`].

use std::fmt;

/// A semantic version with an optional leading `v`, as in `current_version`
/// and the directive `version` tag (`docs/PROTOCOL.md` section 3).
///
/// Keeps the string as written (`v1.2.3` and `1.2.3` are different strings,
/// `docs/PROTOCOL.md` section 4) and its parsed [`semver::Version`] for ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    text: String,
    semver: semver::Version,
}

impl Version {
    /// Parses `1.2.3` or `v1.2.3` (SemVer 2.0.0, with pre-release and build
    /// metadata; a lowercase `v` only).
    ///
    /// # Errors
    /// The semver parser's error when the rest is not a semantic version.
    pub fn parse(text: &str) -> Result<Version, semver::Error> {
        let bare = text.strip_prefix('v').unwrap_or(text);
        let semver = semver::Version::parse(bare)?;
        Ok(Version {
            text: text.to_owned(),
            semver,
        })
    }

    /// The version exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed version, for ordering (leading `v` ignored).
    pub fn semver(&self) -> &semver::Version {
        &self.semver
    }

    /// The parsed version, by value.
    pub fn into_semver(self) -> semver::Version {
        self.semver
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parse() {
        let v = Version::parse("v1.2.3").unwrap();
        assert_eq!(v.as_str(), "v1.2.3");
        assert_eq!(*v.semver(), semver::Version::new(1, 2, 3));
        assert!(Version::parse("1.2").is_err());
        assert!(Version::parse("V1.2.3").is_err());
        assert!(Version::parse("vv1.2.3").is_err());
        assert!(Version::parse("01.2.3").is_err());
    }
}
