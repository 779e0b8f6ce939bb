//! `follows add|remove|list` and `quorum set` on a commented sample config:
//! comments survive byte for byte, results pass the agent's config rules,
//! and refused edits leave the file untouched.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{chmod, stderr, Env};
use nostr::nips::nip19::{Nip19Profile, ToBech32};
use qube_agent::config::Config;

const SAMPLE: &str = include_str!("fixtures/sample.toml");
const DAVE_HEX: &str = "f47f88cb8db70e9f2e56690eb8cb408c6d664f3465908f0c5d40c5f6973d3f12";

fn setup() -> Env {
    let env = Env::new();
    std::fs::write(env.path("agent.toml"), SAMPLE).unwrap();
    chmod(&env.path("agent.toml"), 0o640);
    env
}

fn read(env: &Env) -> String {
    std::fs::read_to_string(env.path("agent.toml")).unwrap()
}

/// Every line of `SAMPLE` that holds a comment, except `except`.
fn comment_lines(except: &[&str]) -> Vec<&'static str> {
    SAMPLE
        .lines()
        .filter(|l| l.contains('#') && !except.iter().any(|e| l.contains(e)))
        .collect()
}

fn assert_comments_kept(text: &str, except: &[&str]) {
    let lines: Vec<&str> = text.lines().collect();
    let mut at = 0;
    for comment in comment_lines(except) {
        let found = lines[at..]
            .iter()
            .position(|l| *l == comment)
            .unwrap_or_else(|| panic!("comment line {comment:?} lost or moved:\n{text}"));
        at += found + 1;
    }
}

fn assert_unchanged_after_refusal(env: &Env, args: &[&str], reason: &str) {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("refusing to change agent.toml"), "{err}");
    assert!(err.contains(reason), "{args:?}: {err}");
    assert!(err.contains("\nhint: "), "{err}");
    assert_eq!(read(env), SAMPLE, "{args:?} changed the file");
}

#[test]
fn sample_is_a_valid_config() {
    let (config, _) = Config::from_toml_str(SAMPLE).unwrap();
    assert_eq!(config.voters().count(), 3);
    assert_eq!(config.quorum(), 2);
}

#[test]
fn list_shows_follows_and_quorum() {
    let env = setup();
    let out = env.ok(&["follows", "list", "--config", "agent.toml"]);
    assert!(
        out.contains(
            "george   voter     npub1sr47j9awvw2xa0m4w770dr2rl7ylzq4xt9k5rel3h4h58sc3mjysx6pj64"
        ),
        "{out}"
    );
    assert!(out.contains("auditor  observer"), "{out}");
    assert!(out.contains("quorum 2 of 3 voters"), "{out}");
}

#[test]
fn add_keeps_comments_layout_and_mode() {
    let env = setup();
    env.ok(&[
        "follows",
        "add",
        DAVE_HEX,
        "--name",
        "dave",
        "--role",
        "voter",
        "--config",
        "agent.toml",
    ]);
    let text = read(&env);
    assert_comments_kept(&text, &[]);
    // The original text is intact, with the new entry after the last follow.
    let npub = qube_agent::core::nip19::encode_npub(&hex32(DAVE_HEX));
    let entry = format!("\n[[follows]]\nname = \"dave\"\nnpub = \"{npub}\"\nrole = \"voter\"\n");
    let anchor = "role = \"observer\"\n";
    let expected = SAMPLE.replacen(anchor, &format!("{anchor}{entry}"), 1);
    assert_eq!(text, expected);
    assert_eq!(
        std::fs::metadata(env.path("agent.toml"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    let (config, _) = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.voters().count(), 4);
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".govctl-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn add_accepts_nprofile_and_refuses_duplicates_and_secrets() {
    let env = setup();
    let pk = nostr::key::PublicKey::from_slice(&hex32(DAVE_HEX)).unwrap();
    let nprofile = Nip19Profile::new(pk, []).to_bech32().unwrap();
    env.ok(&[
        "follows",
        "add",
        &nprofile,
        "--name",
        "dave",
        "--role",
        "observer",
        "--config",
        "agent.toml",
    ]);
    let text = read(&env);
    assert!(text.contains(&qube_agent::core::nip19::encode_npub(&hex32(DAVE_HEX))));
    assert!(text.contains("role = \"observer\"\n\n[[follows]]\nname = \"dave\""));
    std::fs::write(env.path("agent.toml"), SAMPLE).unwrap();

    // George again, under another name.
    assert_unchanged_after_refusal(
        &env,
        &[
            "follows",
            "add",
            "npub1sr47j9awvw2xa0m4w770dr2rl7ylzq4xt9k5rel3h4h58sc3mjysx6pj64",
            "--name",
            "george2",
            "--role",
            "voter",
            "--config",
            "agent.toml",
        ],
        "the same public key as follow \"george\"",
    );
    // An nsec is refused before anything is read.
    let out = env.run(&[
        "follows",
        "add",
        "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5",
        "--name",
        "x",
        "--role",
        "voter",
        "--config",
        "agent.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("SECRET key"), "{}", stderr(&out));
    assert_eq!(read(&env), SAMPLE);
}

#[test]
fn remove_keeps_comments_above_the_entry() {
    let env = setup();
    env.ok(&[
        "follows",
        "remove",
        "npub1sr47j9awvw2xa0m4w770dr2rl7ylzq4xt9k5rel3h4h58sc3mjysx6pj64",
        "--config",
        "agent.toml",
    ]);
    let text = read(&env);
    // Only george's own lines went; the council comment above him stayed.
    assert_comments_kept(&text, &["# ops lead"]);
    assert!(!text.contains("george"));
    let expected = SAMPLE.replacen(
        "\n[[follows]]\nname = \"george\"\nnpub = \"npub1sr47j9awvw2xa0m4w770dr2rl7ylzq4xt9k5rel3h4h58sc3mjysx6pj64\"\nrole = \"voter\"   # ops lead\n",
        "",
        1,
    );
    assert_eq!(text, expected);
    Config::from_toml_str(&text).unwrap();

    // By name: bob's comment inside his entry goes with him.
    std::fs::write(env.path("agent.toml"), SAMPLE).unwrap();
    env.ok(&["follows", "remove", "bob", "--config", "agent.toml"]);
    let text = read(&env);
    assert_comments_kept(&text, &["Bob's key"]);
    assert!(!text.contains("bob"));

    let out = env.run(&["follows", "remove", "nobody", "--config", "agent.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no follow named or keyed \"nobody\""));
}

#[test]
fn quorum_set_changes_only_the_value() {
    let env = setup();
    env.ok(&["quorum", "set", "3", "--config", "agent.toml"]);
    let text = read(&env);
    assert_eq!(
        text,
        SAMPLE.replace(
            "quorum = 2               # two",
            "quorum = 3               # two"
        )
    );
    assert_comments_kept(&text, &["two of the three"]);
    assert!(text.contains("quorum = 3               # two of the three voters must agree\n"));
    assert_eq!(Config::from_toml_str(&text).unwrap().0.quorum(), 3);
}

#[test]
fn impossible_quorums_are_refused_and_the_file_is_untouched() {
    let env = setup();
    assert_unchanged_after_refusal(
        &env,
        &["quorum", "set", "0", "--config", "agent.toml"],
        "quorum 0 is less than 1",
    );
    assert_unchanged_after_refusal(
        &env,
        &["quorum", "set", "4", "--config", "agent.toml"],
        "quorum 4 is more than the 3 follow(s) with role \"voter\"",
    );
    // Two voters removed with quorum 2 is fine; the third would leave one.
    env.ok(&["follows", "remove", "george", "--config", "agent.toml"]);
    let before = read(&env);
    let out = env.run(&["follows", "remove", "alice", "--config", "agent.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("quorum 2 is more than the 1 follow(s)"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("hint: lower the quorum first"),
        "{}",
        stderr(&out)
    );
    assert_eq!(read(&env), before);
    // Removing an observer never changes the voters.
    env.ok(&["follows", "remove", "auditor", "--config", "agent.toml"]);
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap();
    out
}
