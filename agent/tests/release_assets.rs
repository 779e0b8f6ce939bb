//! What `agent/build.rs` makes (`docs/RELEASE.md`): the build information of
//! `--version` and `--version --json`, and the man pages and completions that
//! `generate-assets` writes. Needs `bash` (for the completion check), not
//! `man`: the pages are checked for their structure here and rendered with
//! `man -l` by hand.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_qube-agent");

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qube-agent {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_json_has_the_build_information() {
    let text = stdout_of(&["--version", "--json"]);
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let object = json.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = [
        "name",
        "version",
        "git_commit",
        "git_dirty",
        "rustc",
        "target",
        "profile",
        "landlock_abi",
        "build_date",
        "features",
    ];
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected);

    assert_eq!(json["name"], "qube-agent");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    // Unknown (no git, a tarball) is null; otherwise a 12-digit hash.
    match &json["git_commit"] {
        serde_json::Value::Null => assert!(json["git_dirty"].is_null()),
        serde_json::Value::String(c) => {
            assert_eq!(c.len(), 12, "{c}");
            assert!(c.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
            assert!(json["git_dirty"].is_boolean() || json["git_dirty"].is_null());
        }
        other => panic!("git_commit {other}"),
    }
    assert!(json["rustc"].is_null() || json["rustc"].as_str().unwrap().starts_with('1'));
    assert!(!json["target"].as_str().unwrap().is_empty());
    assert!(["debug", "release"].contains(&json["profile"].as_str().unwrap()));
    assert!(json["landlock_abi"].as_u64().unwrap() >= 1);
    assert!(json["build_date"].is_null() || json["build_date"].as_str().unwrap().ends_with('Z'));
    assert!(json["features"].is_array());

    // The text says the same.
    let text = stdout_of(&["-V"]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("qube-agent {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert!(text.contains(&format!("landlock ABI: {}\n", json["landlock_abi"])));
    assert!(text.contains(&format!(
        "target:       {}\n",
        json["target"].as_str().unwrap()
    )));
    if let Some(commit) = json["git_commit"].as_str() {
        assert!(
            text.contains(&format!("commit:       {commit} (")),
            "{text}"
        );
    } else {
        assert!(text.contains("commit:       unknown\n"), "{text}");
    }
}

/// The Landlock ABI reported is the one the sandbox is written for.
#[test]
fn version_reports_the_sandbox_target_abi() {
    let sandbox = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/worker/sandbox.rs"),
    )
    .unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&["--version", "--json"])).unwrap();
    let declared = format!(
        "const TARGET_ABI: ABI = ABI::V{};",
        json["landlock_abi"].as_u64().unwrap()
    );
    assert!(
        sandbox.lines().any(|l| l.trim() == declared),
        "src/worker/sandbox.rs does not declare {declared}"
    );
}

const PAGES: &[&str] = &[
    "man/man1/qube-agent.1",
    "man/man1/qube-agent-run.1",
    "man/man1/qube-agent-check-config.1",
    "man/man1/qube-agent-status.1",
    "man/man1/qube-agent-journal.1",
    "man/man1/qube-agent-reset.1",
    "man/man1/qube-agent-retry.1",
    "man/man5/qube-agent.toml.5",
];

const COMPLETIONS: &[&str] = &[
    "completions/qube-agent.bash",
    "completions/_qube-agent",
    "completions/qube-agent.fish",
];

#[test]
fn generate_assets_writes_every_page_and_completion() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("assets");
    let listed = stdout_of(&["generate-assets", "--out", out.to_str().unwrap()]);

    let mut expected: Vec<String> = PAGES
        .iter()
        .chain(COMPLETIONS)
        .map(|rel| out.join(rel).display().to_string())
        .collect();
    let mut listed: Vec<String> = listed.lines().map(str::to_owned).collect();
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected, "nothing more, nothing less");

    for rel in PAGES {
        let page = std::fs::read_to_string(out.join(rel)).unwrap();
        let name = Path::new(rel).file_name().unwrap().to_str().unwrap();
        let (title, section) = name.rsplit_once('.').unwrap();
        let th = format!(".TH {} {section} ", title.to_uppercase());
        assert!(page.lines().any(|l| l.starts_with(&th)), "{rel}: no {th}");
        for heading in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION"] {
            assert!(page.lines().any(|l| l == heading), "{rel}: no {heading}");
        }
        // No timestamp unless SOURCE_DATE_EPOCH was set at build time.
        if std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
            assert!(page.contains(&format!("{th}\"\" ")), "{rel}: a date");
        }
    }

    // The hidden commands are not documented, not completed.
    let main = std::fs::read_to_string(out.join(PAGES[0])).unwrap();
    for page in &PAGES[1..5] {
        let name = Path::new(page).file_stem().unwrap().to_str().unwrap();
        let reference = format!("{}({})", name.replace('-', "\\-"), 1);
        assert!(main.contains(&reference), "qube-agent(1) lacks {reference}");
    }
    for hidden in ["worker", "sandbox-probe", "generate-assets"] {
        let escaped = hidden.replace('-', "\\-");
        assert!(
            !main.contains(&format!("qube\\-agent\\-{escaped}")),
            "{hidden}"
        );
        for rel in COMPLETIONS {
            let script = std::fs::read_to_string(out.join(rel)).unwrap();
            let listed = script
                .lines()
                .filter(|l| !l.contains("allow-unsandboxed"))
                .any(|l| l.contains(hidden));
            assert!(!listed, "{rel} completes {hidden}");
        }
    }
}

/// Every key of the example configuration has an entry in
/// qube-agent.toml(5), so the page cannot lose one.
#[test]
fn config_page_documents_every_key_of_the_example() {
    let dir = tempfile::tempdir().unwrap();
    stdout_of(&["generate-assets", "--out", dir.path().to_str().unwrap()]);
    let page = std::fs::read_to_string(dir.path().join("man/man5/qube-agent.toml.5")).unwrap();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/qube-agent.example.toml"),
    )
    .unwrap();
    let mut table = String::new();
    for line in example.lines().map(str::trim) {
        if line.starts_with('[') {
            table = line.to_owned();
            assert!(
                page.lines().any(|l| l == format!(".SH {table}")),
                "no section {table}"
            );
        } else if let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            let entry = format!(".TP\n\\fB{}\\fR\n", key.trim().replace('-', "\\-"));
            assert!(page.contains(&entry), "no entry for {table} {}", key.trim());
        }
    }
}

/// The bash completion loads and completes a command's options (with the
/// clap_complete workaround of build.rs; clap-rs/clap#6421).
#[test]
fn bash_completion_completes_commands_and_their_options() {
    let dir = tempfile::tempdir().unwrap();
    stdout_of(&["generate-assets", "--out", dir.path().to_str().unwrap()]);
    let script = dir.path().join("completions/qube-agent.bash");
    let probe = r#"
        set -e
        source "$1"
        complete -p qube-agent
        COMP_WORDS=(qube-agent ""); COMP_CWORD=1
        _qube__agent qube-agent "" qube-agent
        echo "top: ${COMPREPLY[*]}"
        COMP_WORDS=(qube-agent status --); COMP_CWORD=2
        _qube__agent qube-agent -- status
        echo "status: ${COMPREPLY[*]}"
    "#;
    let out = Command::new("bash")
        .args(["-c", probe, "probe"])
        .arg(&script)
        .output()
        .expect("bash is needed to check the bash completion");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("-F _qube__agent qube-agent"), "{stdout}");
    let top = stdout
        .lines()
        .find_map(|l| l.strip_prefix("top: "))
        .unwrap();
    let top: Vec<&str> = top.split(' ').collect();
    for word in [
        "run",
        "check-config",
        "status",
        "journal",
        "reset",
        "--version",
        "--json",
    ] {
        assert!(top.contains(&word), "top level lacks {word}: {top:?}");
    }
    assert!(!top.contains(&"worker") && !top.contains(&"sandbox-probe"));
    let status = stdout
        .lines()
        .find_map(|l| l.strip_prefix("status: "))
        .unwrap();
    assert_eq!(status, "--config --json --verbose --help");
}
