//! The man pages and completions that `govctl/build.rs` writes from the
//! clap definition and `govctl generate-assets --out DIR` writes out
//! (`docs/RELEASE.md`): a page for every public command at every level and
//! none for the hidden one, and a bash completion that completes nested
//! commands and their options. Needs `bash`; the pages are rendered with
//! `man -l` by the release check (`.ci/release-check`), not here.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `govctl generate-assets --out DIR/assets`; returns that directory
/// and the paths govctl listed.
fn generate(dir: &Path) -> (PathBuf, Vec<String>) {
    let out_dir = dir.join("assets");
    let out = Command::new(env!("CARGO_BIN_EXE_govctl"))
        .arg("generate-assets")
        .arg("--out")
        .arg(&out_dir)
        .env("GOVCTL_HOME", "/nonexistent/govctl-test-home")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (out_dir, listed)
}

/// Every public command, nested ones as `parent-child`.
const COMMANDS: &[&str] = &[
    "keygen",
    "key",
    "key-show",
    "key-import",
    "key-export",
    "follows",
    "follows-list",
    "follows-add",
    "follows-remove",
    "quorum",
    "quorum-set",
    "propose",
    "propose-upgrade",
    "propose-reboot",
    "sign",
    "publish",
    "verify",
    "hash",
    "status",
    "history",
];

#[test]
fn a_page_for_every_public_command_and_three_completions() {
    let dir = tempfile::tempdir().unwrap();
    let (out, listed) = generate(dir.path());

    let mut pages: Vec<String> = vec!["man/man1/govctl.1".to_owned()];
    pages.extend(COMMANDS.iter().map(|c| format!("man/man1/govctl-{c}.1")));
    let completions = [
        "completions/govctl.bash",
        "completions/_govctl",
        "completions/govctl.fish",
    ];
    let mut expected: Vec<String> = pages
        .iter()
        .map(String::as_str)
        .chain(completions)
        .map(|rel| out.join(rel).display().to_string())
        .collect();
    let mut listed = listed;
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected, "exactly these files");

    for rel in &pages {
        let page = std::fs::read_to_string(out.join(rel)).unwrap();
        let title = Path::new(rel).file_stem().unwrap().to_str().unwrap();
        let th = format!(".TH {} 1 ", title.to_uppercase());
        assert!(page.lines().any(|l| l.starts_with(&th)), "{rel}: no {th}");
        for heading in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(page.lines().any(|l| l == heading), "{rel}: no {heading}");
        }
        // The hidden command is documented nowhere.
        assert!(!page.contains("generate"), "{rel} mentions generate-assets");
    }

    // A nested page has the nested usage and refers back to its parent.
    let show = std::fs::read_to_string(out.join("man/man1/govctl-key-show.1")).unwrap();
    assert!(show.contains("govctl key show"), "{show}");
    assert!(show.contains("\\fBgovctl\\-key\\fR(1)"), "{show}");
    // after_help that is not an example becomes NOTES.
    let top = std::fs::read_to_string(out.join("man/man1/govctl.1")).unwrap();
    assert!(top.lines().any(|l| l == ".SH NOTES"), "{top}");
    assert!(top.contains("Exit status"), "{top}");

    for rel in completions {
        let script = std::fs::read_to_string(out.join(rel)).unwrap();
        assert!(script.contains("propose"), "{rel} lacks propose");
        assert!(
            !script.contains("generate"),
            "{rel} completes generate-assets"
        );
    }
}

/// The bash completion loads and completes the commands of `govctl key`
/// and the options of `govctl propose upgrade`.
#[test]
fn bash_completion_completes_nested_commands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = generate(dir.path());
    let probe = r#"
        set -e
        source "$1"
        complete -p govctl
        COMP_WORDS=(govctl key ""); COMP_CWORD=2
        _govctl govctl "" key
        echo "key: ${COMPREPLY[*]}"
        COMP_WORDS=(govctl propose upgrade --); COMP_CWORD=3
        _govctl govctl -- upgrade
        echo "upgrade: ${COMPREPLY[*]}"
    "#;
    let run = Command::new("bash")
        .args(["-c", probe, "probe"])
        .arg(out.join("completions/govctl.bash"))
        .output()
        .expect("bash is needed to check the bash completion");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("-F _govctl govctl"), "{stdout}");
    let words = |label: &str| -> Vec<String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no {label} in {stdout}"))
            .split(' ')
            .map(str::to_owned)
            .collect()
    };
    let key = words("key: ");
    for command in ["show", "import", "export"] {
        assert!(key.contains(&command.to_owned()), "{key:?}");
    }
    let upgrade = words("upgrade: ");
    for option in [
        "--version",
        "--network",
        "--hash",
        "--artifact",
        "--out",
        "--relay",
    ] {
        assert!(upgrade.contains(&option.to_owned()), "{upgrade:?}");
    }
    assert!(
        !upgrade.contains(&"--genesis-url".to_owned()),
        "{upgrade:?}"
    );
}
