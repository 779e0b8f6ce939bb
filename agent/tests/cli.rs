//! CLI snapshots (trycmd): `--help` and `--version` of qube-agent and of
//! its commands, `check-config` on a valid config, and the main errors with
//! their advice: stdout, stderr and exit status. Each case's fixture config
//! is in `tests/cmd/<case>.in/` (the case's working directory, read-only)
//! and is named by a relative `--config` path, so no output holds a
//! temporary path or a time. Refresh after a deliberate change with
//! `TRYCMD=overwrite cargo test -p qube-agent --test cli`, then read the
//! diff.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn cli_snapshots() {
    let cmd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd");
    // `Config::load` warns about a group- or world-writable config: pin the
    // fixtures' modes whatever the umask of the checkout.
    for entry in std::fs::read_dir(&cmd).unwrap() {
        let dir = entry.unwrap().path();
        if dir.extension().is_some_and(|ext| ext == "in") {
            for file in std::fs::read_dir(&dir).unwrap() {
                let path = file.unwrap().path();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
    trycmd::TestCases::new()
        // Help text wraps at 100 columns whatever the terminal says.
        .env("COLUMNS", "100")
        .case("tests/cmd/*.toml");
}
