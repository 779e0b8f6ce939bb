//! The man pages and shell completions of `qube-agent` and `govctl`
//! (`docs/RELEASE.md`).
//!
//! Each binary's build script compiles that binary's clap definition
//! (`src/cli.rs`) and renders from it, with [`generate`] (feature
//! `generate`, build time only), one man page per public command and the
//! bash, zsh and fish completions into `$OUT_DIR/assets/`, plus a table
//! `ASSETS` of `(relative path, contents)` that embeds them in the binary.
//! The binary's hidden `generate-assets --out DIR` hands that table to
//! [`write`], so a package is made from exactly what `--help` says.

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

#[cfg(feature = "generate")]
pub mod generate;
mod timestamp;

pub use timestamp::Timestamp;

/// A file of [`write`] that could not be written.
#[derive(Debug)]
pub struct WriteError {
    /// The file (or the directory it needed).
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Writes each `(relative path, contents)` of `assets` below `dir`
/// (`man/man1/...`, `completions/...`), creating directories as needed and
/// replacing files of the same name, and calls `written` with each path.
///
/// # Errors
/// The first file or directory that cannot be written; the files before it
/// stay written.
pub fn write(
    dir: &Path,
    assets: &[(&str, &[u8])],
    mut written: impl FnMut(&Path),
) -> Result<(), WriteError> {
    for (rel, contents) in assets {
        let path = dir.join(rel);
        path.parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, contents))
            .map_err(|source| WriteError {
                path: path.clone(),
                source,
            })?;
        written(&path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn writes_every_file_below_the_directory_and_lists_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("assets");
        let assets: &[(&str, &[u8])] = &[
            ("man/man1/x.1", b".TH X 1\n"),
            ("completions/x.bash", b"complete"),
        ];
        let mut listed = Vec::new();
        write(&dir, assets, |p| listed.push(p.to_path_buf())).unwrap();
        assert_eq!(
            listed,
            [dir.join("man/man1/x.1"), dir.join("completions/x.bash")]
        );
        assert_eq!(
            std::fs::read(dir.join("man/man1/x.1")).unwrap(),
            b".TH X 1\n"
        );
        assert_eq!(
            std::fs::read(dir.join("completions/x.bash")).unwrap(),
            b"complete"
        );

        // A directory where a file must go: the error names that path.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("man")).unwrap();
        let err = write(&blocked, &[("man", b"x")], |_| {}).unwrap_err();
        assert_eq!(err.path, blocked.join("man"));
        assert!(err.to_string().starts_with("cannot write "), "{err}");
    }
}
