//! `qube-agent check-config --config PATH`, run as a process: exit status,
//! stdout (the normalized config) and stderr (`warning:` and `error:` lines).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GEORGE: &str = "npub1sr47j9awvw2xa0m4w770dr2rl7ylzq4xt9k5rel3h4h58sc3mjysx6pj64";
const ALICE_HEX: &str = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";
const ALICE: &str = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";

fn good_config() -> String {
    format!(
        r#"network = "hqz"
quorum = 2
relays = ["wss://qubestr.zenon.info/", "ws://127.0.0.1:7777"]

[[follows]]
name = "george"
npub = "{GEORGE}"
role = "voter"

[[follows]]
name = "alice"
npub = "{ALICE_HEX}"
role = "voter"

[upgrade]
command = ["/usr/local/libexec/pillar-upgrade", "--yes"]

[reboot]
command = ["/usr/local/libexec/pillar-reboot"]
timeout_secs = 60
"#
    )
}

/// A config file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("qube-agent-cli-test-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qube-agent"))
        .args(args)
        .output()
        .unwrap()
}

fn check(path: &Path) -> (i32, String, String) {
    let out = run(&["check-config", "--config", path.to_str().unwrap()]);
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn good_config_exits_0_with_normalized_output() {
    let file = TempFile::new("good.toml", &good_config());
    let (code, stdout, stderr) = check(&file.0);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(stderr, "");
    for expected in [
        "network = \"hqz\"\n",
        "quorum = 2\n",
        // Canonical relay forms.
        "relays = [\"wss://qubestr.zenon.info\", \"ws://127.0.0.1:7777\"]\n",
        // Defaults filled in.
        "state_dir = \"/var/lib/qube-agent\"\n",
        "d_tag = \"hyperqube\"\n",
        "max_future_skew_secs = 600\n",
        "allow_downgrade = false\n",
        "allow_insecure_ws = false\n",
        // The hex key printed as an npub.
        &format!("npub = \"{ALICE}\"\n"),
        "[upgrade]\ncommand = [\"/usr/local/libexec/pillar-upgrade\", \"--yes\"]\ntimeout_secs = 900\n",
        "[reboot]\ncommand = [\"/usr/local/libexec/pillar-reboot\"]\ntimeout_secs = 60\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    assert!(!stdout.contains(ALICE_HEX));
    // The output is itself a valid config that normalizes to itself.
    let again = TempFile::new("again.toml", &stdout);
    let (code, stdout2, _) = check(&again.0);
    assert_eq!(code, 0);
    assert_eq!(stdout2, stdout);
}

#[test]
fn bad_config_exits_1_with_error_line() {
    let text = good_config().replace("quorum = 2", "quorum = 3");
    let file = TempFile::new("bad.toml", &text);
    let (code, stdout, stderr) = check(&file.0);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    let first = stderr.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "error: config file {}, line 2: `quorum`: quorum 3 is more than the 2 follow(s) with role \"voter\", so it can never be met",
            file.0.display()
        )
    );
    assert!(stderr.contains("\nhint: "), "{stderr}");
}

#[test]
fn unknown_key_error_names_key_and_line() {
    let text = good_config().replace("[reboot]\n", "[reboot]\ncomand = [\"/x\"]\n");
    let file = TempFile::new("typo.toml", &text);
    let (code, _, stderr) = check(&file.0);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error: config file "), "{stderr}");
    assert!(stderr.contains("line 19"), "{stderr}");
    assert!(stderr.contains("unknown field `comand`"), "{stderr}");
}

#[test]
fn shell_string_command_is_an_error() {
    let text = good_config().replace(
        "command = [\"/usr/local/libexec/pillar-reboot\"]",
        "command = \"rm -rf /\"",
    );
    let file = TempFile::new("shell.toml", &text);
    let (code, stdout, stderr) = check(&file.0);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("invalid type: string"), "{stderr}");
}

#[test]
fn warnings_go_to_stderr() {
    // Quorum 1 of 2 voters, and no [reboot] section.
    let text = good_config().replace("quorum = 2", "quorum = 1");
    let cut = text.find("[reboot]").unwrap();
    let file = TempFile::new("warn.toml", &text[..cut]);
    let (code, stdout, stderr) = check(&file.0);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("quorum = 1\n"));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("warning: quorum 1 is at most half of the 2 voters"));
    assert!(lines[1].starts_with("warning: no [reboot] section"));
    assert!(!stdout.contains("warning"));
}

#[test]
fn missing_file_exits_1() {
    let path = std::env::temp_dir().join("qube-agent-cli-test-no-such-file.toml");
    let (code, stdout, stderr) = check(&path);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.starts_with(&format!(
            "error: cannot read config file {}",
            path.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: check the path given to --config"));
}

#[test]
fn help_describes_check_config() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Quorum-gated upgrade and reboot agent"),
        "{help}"
    );
    assert!(help.contains("check-config"), "{help}");

    let out = run(&["check-config", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--config <PATH>"), "{help}");
    assert!(help.contains("docs/qube-agent.example.toml"), "{help}");
}

#[test]
fn config_flag_is_required() {
    let out = run(&["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--config <PATH>"), "{stderr}");
}
