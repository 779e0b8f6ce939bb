//! What `agent/build.rs` makes (`docs/RELEASE.md`): the build information of
//! `--version` and `--version --json`.

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
