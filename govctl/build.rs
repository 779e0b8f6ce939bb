//! Man pages and shell completions for `govctl` (`docs/RELEASE.md`),
//! written from the clap types of `src/cli.rs` (this script compiles that
//! very file), so they cannot drift from `--help`: `govctl(1)` and a page
//! per public command at every level (`govctl-key-show(1)`), and bash, zsh
//! and fish completions. They go to `$OUT_DIR/assets/` and are embedded in
//! the binary; `govctl generate-assets --out DIR` writes them out for
//! packaging. A page has a date only when `SOURCE_DATE_EPOCH` is set.

use std::path::PathBuf;

use clap::CommandFactory;
use qube_assets::generate::{env, source_date, Assets, Result};

// The binary's own command line; its fields are only read by the binary.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;
// The defaults cli.rs shows.
#[allow(dead_code)]
#[path = "src/defaults.rs"]
mod defaults;

fn main() -> Result<()> {
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    for path in ["build.rs", "src/cli.rs", "src/defaults.rs", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let mut assets = Assets::new(
        &out_dir,
        "govctl",
        env!("CARGO_PKG_VERSION"),
        source_date()?,
    )?;
    // govctl edits and reads the agent's configuration.
    assets.man_pages(
        cli::Cli::command(),
        &["qube-agent(1)", "qube-agent.toml(5)"],
        None,
    )?;
    assets.completions(&cli::Cli::command())?;
    std::fs::write(out_dir.join("assets.rs"), assets.table())?;
    Ok(())
}
