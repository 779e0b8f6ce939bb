//! `qube-agent check-config --config PATH`, run as a process: what the
//! snapshots in `tests/cmd` (`cli.rs`) cannot show. The exact text of the
//! errors, warnings and help is snapshot-tested there.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output};

use qube_e2e::temp_file;

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
    let file = temp_file("good.toml", good_config());
    let (code, stdout, stderr) = check(file.path());
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
    let again = temp_file("again.toml", &stdout);
    let (code, stdout2, _) = check(again.path());
    assert_eq!(code, 0);
    assert_eq!(stdout2, stdout);
}

/// Quotes, backslashes, control characters and non-ASCII text in `node_id`
/// and a hook argument survive `check-config`: the printed config keeps the
/// exact values and normalizes to itself.
#[test]
fn escaped_strings_round_trip_through_check_config() {
    let text = good_config()
        .replacen(
            "quorum = 2\n",
            "quorum = 2\nnode_id = \"it's \\\"q\\\" \\\\ é 😀\"\n",
            1,
        )
        .replacen(
            "\"--yes\"]",
            "\"--yes\", \"a\\\"b\\\\c\\n\\t\\u0001\\u007F ''' \\\"\\\"\\\" ☃\"]",
            1,
        );
    let file = temp_file("escaped.toml", &text);
    let (code, stdout, stderr) = check(file.path());
    assert_eq!(code, 0, "stderr: {stderr}\n{text}");
    let (config, _) = qube_agent::config::Config::from_toml_str(&stdout).unwrap();
    assert_eq!(config.node_id(), Some("it's \"q\" \\ é 😀"));
    assert_eq!(
        config.upgrade().unwrap().command(),
        [
            "/usr/local/libexec/pillar-upgrade",
            "--yes",
            "a\"b\\c\n\t\u{1}\u{7f} ''' \"\"\" ☃"
        ]
    );
    let again = temp_file("escaped-again.toml", &stdout);
    let (code, stdout2, _) = check(again.path());
    assert_eq!(code, 0);
    assert_eq!(stdout2, stdout);
}
