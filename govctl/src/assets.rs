//! `govctl generate-assets --out DIR` (hidden): the man pages and shell
//! completions that `build.rs` wrote from `cli.rs` and this binary embeds,
//! written out for packaging (`docs/RELEASE.md`).

use std::path::Path;

use crate::error::{CliError, Result};

// ASSETS: (path relative to DIR, contents) of every page and completion.
include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Writes every embedded file below `dir` and lists it on stdout.
///
/// # Errors
/// A file or directory that cannot be written.
pub fn write(dir: &Path) -> Result<()> {
    qube_assets::write(dir, ASSETS, |path| println!("{}", path.display())).map_err(|e| {
        CliError::io("write", &e.path, &e.source).hint("give --out a directory you can write to")
    })
}
