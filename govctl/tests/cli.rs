//! CLI snapshots (trycmd): `--help` of govctl and its commands, and the
//! main error messages, stdout and stderr both. Refresh after a deliberate
//! change with `TRYCMD=overwrite cargo test -p govctl --test cli`.
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
    // The outputs name no mode, but `follows list` would warn about a
    // group-writable config: pin the fixtures' modes whatever the umask.
    // passphrase-open.in holds a passphrase file that must stay 0644: govctl
    // refuses it.
    for dir in [
        "fixtures",
        "quorum-refused.in",
        "quorum-refused.out",
        "passphrase-open.in",
    ] {
        for entry in std::fs::read_dir(cmd.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    // A key file must be 0600 whatever git and the umask made of it.
    std::fs::set_permissions(
        cmd.join("sign-unknown-tag-yes.in/gov.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    trycmd::TestCases::new()
        // Help text wraps at 100 columns whatever the terminal says.
        .env("COLUMNS", "100")
        // Never the operator's real key store.
        .env("GOVCTL_HOME", "/nonexistent/govctl-test-home")
        .case("tests/cmd/*.toml");
}
