//! The agent's TOML configuration (`docs/qube-agent.example.toml`) and the quorum check
//! at start (`docs/PROTOCOL.md` section 5.7): a valid config, defaults, the
//! documented example, and one test per way a config is refused.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use qube_agent::config::{
    Config, ConfigError, ConfigErrorKind, NodeKeySource, Problem, RelayUrlError, Role, Warning,
    MAX_CONFIG_BYTES,
};
use qube_agent::core::nip19::{self, Nip19Error};
use qube_e2e::temp_file;

/// The npub of `docs/qube-agent.example.toml`.
const GEORGE: &str = "npub1sr47j9awvw2xa0m4w770dr2rl7ylzq4xt9k5rel3h4h58sc3mjysx6pj64";
/// The NIP-19 example npub, and its hex form.
const ALICE: &str = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";
const ALICE_HEX: &str = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";
/// x(G), the public key of secret key 1, in hex.
const BOB_HEX: &str = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
/// x(2G), the public key of secret key 2.
const CAROL: &str = "npub1ccz8l9zpa47k6vz9gphftsrumpw80rjt3nhnefat4symjhrsnmjs38mnyd";
/// The NIP-19 example nsec.
const NSEC: &str = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5";

/// A valid config modelled on `docs/qube-agent.example.toml`: three voters, one observer,
/// quorum 2, both hooks.
fn sample() -> String {
    format!(
        r#"network = "hqz"
quorum = 2
relays = ["wss://qubestr.zenon.info", "wss://qubestr.zenon.red"]
state_dir = "/var/lib/qube-agent"
node_id = "pillar-eu-1"          # optional; default derived from the node key
current_version = "v0.0.8"       # optional anti-rollback floor

[[follows]]
name = "george"
npub = "{GEORGE}"
role = "voter"

[[follows]]
name = "alice"
npub = "{ALICE}"
role = "voter"

[[follows]]
name = "bob"
npub = "{BOB_HEX}"
role = "voter"

[[follows]]
name = "carol"
npub = "{CAROL}"
role = "observer"

[policy]
max_future_skew_secs = 600
allow_downgrade = false
allow_insecure_ws = false        # ws:// only to loopback unless true

[upgrade]
command = ["/usr/local/libexec/pillar-upgrade"]
timeout_secs = 900
artifact = "/var/lib/pillar/staging/znnd-{{version}}"

[reboot]
command = ["/usr/local/libexec/pillar-reboot"]
"#
    )
}

/// `sample()` with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    let text = sample();
    assert!(text.contains(from), "sample has no {from:?}");
    text.replacen(from, to, 1)
}

fn parse(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
    Config::from_toml_str(text)
}

fn error(text: &str) -> ConfigError {
    match parse(text) {
        Ok((config, _)) => panic!("accepted: {config:?}"),
        Err(err) => err,
    }
}

/// The problem and key of an `Invalid` error.
fn invalid(text: &str) -> (String, Problem, Option<usize>) {
    let err = error(text);
    match err.kind() {
        ConfigErrorKind::Invalid { key, problem } => (key.clone(), problem.clone(), err.line()),
        other => panic!("not an Invalid error: {other:?}\n{err}"),
    }
}

/// The message of a `Toml` error (type, syntax, unknown key).
fn toml_error(text: &str) -> (String, Option<usize>) {
    let err = error(text);
    match err.kind() {
        ConfigErrorKind::Toml(msg) => (msg.clone(), err.line()),
        other => panic!("not a Toml error: {other:?}\n{err}"),
    }
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

fn key(hex_key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut out).unwrap();
    out
}

// --- valid configs ---------------------------------------------------------

#[test]
fn sample_config_loads() {
    let (config, warnings) = parse(&sample()).unwrap();
    assert_eq!(warnings, vec![]);
    assert_eq!(config.network(), "hqz");
    assert_eq!(config.quorum(), 2);
    let relays: Vec<&str> = config.relays().iter().map(|r| r.as_str()).collect();
    assert_eq!(
        relays,
        ["wss://qubestr.zenon.info", "wss://qubestr.zenon.red"]
    );
    assert_eq!(config.state_dir(), Path::new("/var/lib/qube-agent"));
    assert_eq!(config.node_id(), Some("pillar-eu-1"));
    assert_eq!(config.node_key(), None);
    let version = config.current_version().unwrap();
    assert_eq!(version.as_str(), "v0.0.8");
    assert_eq!(*version.semver(), semver::Version::new(0, 0, 8));
    assert_eq!(config.d_tag(), "hyperqube");

    let follows = config.follows();
    assert_eq!(follows.len(), 4);
    assert_eq!(follows[0].name(), "george");
    assert_eq!(*follows[0].pubkey(), nip19::decode_npub(GEORGE).unwrap());
    assert_eq!(follows[1].pubkey_hex(), ALICE_HEX);
    assert_eq!(follows[2].pubkey_hex(), BOB_HEX);
    assert_eq!(follows[3].role(), Role::Observer);
    let voters: Vec<&str> = config.voters().map(|f| f.name()).collect();
    assert_eq!(voters, ["george", "alice", "bob"]);
    assert_eq!(config.follow(&key(ALICE_HEX)).unwrap().name(), "alice");

    let policy = config.policy();
    assert_eq!(policy.max_future_skew_secs(), 600);
    assert!(!policy.allow_downgrade());
    assert!(!policy.allow_insecure_ws());

    let upgrade = config.upgrade().unwrap();
    assert_eq!(upgrade.command(), ["/usr/local/libexec/pillar-upgrade"]);
    assert_eq!(upgrade.timeout_secs(), 900);
    let artifact = upgrade.artifact().unwrap();
    assert_eq!(artifact.as_str(), "/var/lib/pillar/staging/znnd-{version}");
    assert_eq!(
        artifact.expand("v1.2.3").unwrap(),
        PathBuf::from("/var/lib/pillar/staging/znnd-v1.2.3")
    );
    assert_eq!(upgrade.fetch(), None);
    let reboot = config.reboot().unwrap();
    assert_eq!(reboot.command(), ["/usr/local/libexec/pillar-reboot"]);
    assert_eq!(reboot.timeout_secs(), 900);
    assert_eq!(reboot.artifact(), None);
}

#[test]
fn defaults_are_filled_in() {
    let text = format!(
        r#"network = "hqz"
quorum = 1
relays = ["wss://relay.example"]
[[follows]]
name = "george"
npub = "{GEORGE}"
role = "voter"
[upgrade]
command = ["/bin/upgrade", "--now"]
[reboot]
command = ["/bin/reboot-node"]
"#
    );
    let (config, warnings) = parse(&text).unwrap();
    assert_eq!(warnings, vec![]);
    assert_eq!(config.state_dir(), Path::new("/var/lib/qube-agent"));
    assert_eq!(config.node_id(), None);
    assert_eq!(config.node_key(), None);
    assert_eq!(config.current_version(), None);
    assert_eq!(config.d_tag(), "hyperqube");
    assert_eq!(config.policy().max_future_skew_secs(), 600);
    assert!(!config.policy().allow_downgrade());
    assert!(!config.policy().allow_insecure_ws());
    assert_eq!(config.upgrade().unwrap().timeout_secs(), 900);
    assert_eq!(
        config.upgrade().unwrap().command(),
        ["/bin/upgrade", "--now"]
    );
}

#[test]
fn documented_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/qube-agent.example.toml");
    let (config, warnings) = Config::load(&path).unwrap();
    assert_eq!(warnings, vec![], "the example should be warning-free");
    assert_eq!(config.voters().count(), 3);
    assert_eq!(config.quorum(), 2);
    let upgrade = config.upgrade().unwrap();
    assert!(upgrade.fetch().is_some() && upgrade.rollback().is_some());
    let health = upgrade.health().unwrap();
    assert_eq!(
        (
            health.settle_secs(),
            health.interval_secs(),
            health.window_secs(),
            health.tries()
        ),
        (10, 5, 60, 1),
        "the example shows the defaults"
    );
    assert_eq!(
        config.node_key(),
        Some(&NodeKeySource::File("/var/lib/qube-agent/node.key".into()))
    );
}

#[test]
fn documented_example_comments_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/qube-agent.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let is_key = line.contains(" = ") && !line.trim_start().starts_with('#');
        if is_key {
            let previous = lines[..i].last().unwrap();
            assert!(
                previous.trim_start().starts_with('#'),
                "line {}: `{line}` has no comment above it",
                i + 1
            );
        }
    }
}

#[test]
fn normalized_toml_round_trips() {
    let text = edit("node_id", "node_key = \"env:QUBE_NODE_KEY\"\nnode_id");
    let (config, _) = parse(&text).unwrap();
    let normalized = config.normalized_toml();
    assert!(normalized.contains("quorum = 2\n"), "{normalized}");
    assert!(normalized.contains("d_tag = \"hyperqube\"\n"));
    assert!(normalized.contains("node_key = \"env:QUBE_NODE_KEY\"\n"));
    // Hex keys come out as npub.
    assert!(normalized.contains(&nip19::encode_npub(&key(BOB_HEX))));
    assert!(!normalized.contains(BOB_HEX));
    assert!(normalized.contains(
        "[reboot]\ncommand = [\"/usr/local/libexec/pillar-reboot\"]\ntimeout_secs = 900\n"
    ));
    let (again, warnings) = parse(&normalized).unwrap();
    assert_eq!(again, config);
    assert_eq!(warnings, vec![]);
    assert_eq!(again.normalized_toml(), normalized);
}

/// Strings the writer must escape, written here with TOML's own escapes:
/// quotes, backslashes, control characters (a hook argument may hold any
/// but NUL), TOML's delimiters (`'''`, `"""`) and non-ASCII text. Parsing
/// the normalized output gives back the same values and the same output.
#[test]
fn normalized_toml_escapes_quotes_backslashes_controls_and_unicode() {
    let replacements = [
        (
            r#"node_id = "pillar-eu-1""#,
            r#"node_id = "it's \"q\" \\ é ☃ 😀""#,
        ),
        (
            r#"state_dir = "/var/lib/qube-agent""#,
            r#"state_dir = "/var/lib/qube \"agent\"\\ü""#,
        ),
        (r#"name = "carol""#, r#"name = "o'brien \"the\" \\ 名前""#),
        (
            r#"command = ["/usr/local/libexec/pillar-upgrade"]"#,
            r#"command = ["/usr/local/libexec/pillar-upgrade", "a\"b\\c\n\t\u0001\u007F\u001B[0m é ''' \"\"\" \r\n\u2028\uFEFF end\\", ""]"#,
        ),
        (
            "artifact = \"/var/lib/pillar/staging/znnd-{version}\"",
            r#"artifact = "/srv/it's \"x\"\\é/znnd-{version}""#,
        ),
    ];
    let mut text = sample();
    for (from, to) in replacements {
        assert!(text.contains(from), "sample has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    let (config, _) = parse(&text).unwrap();
    assert_eq!(config.node_id(), Some("it's \"q\" \\ é ☃ 😀"));
    assert_eq!(config.state_dir(), Path::new("/var/lib/qube \"agent\"\\ü"));
    assert_eq!(config.follows()[3].name(), "o'brien \"the\" \\ 名前");
    let upgrade = config.upgrade().unwrap();
    assert_eq!(
        upgrade.command()[1],
        "a\"b\\c\n\t\u{1}\u{7f}\u{1b}[0m é ''' \"\"\" \r\n\u{2028}\u{feff} end\\"
    );
    assert_eq!(upgrade.command()[2], "");
    assert_eq!(
        upgrade.artifact().unwrap().as_str(),
        "/srv/it's \"x\"\\é/znnd-{version}"
    );

    let normalized = config.normalized_toml();
    // Every control character but a line break is escaped, not written raw.
    assert!(
        !normalized.chars().any(|c| c.is_control() && c != '\n'),
        "{normalized}"
    );
    assert!(normalized.contains("é ☃ 😀"), "{normalized}");
    let (again, _) = parse(&normalized).unwrap();
    assert_eq!(again, config, "{normalized}");
    assert_eq!(again.normalized_toml(), normalized);
}

#[test]
fn normalized_toml_of_minimal_config_shows_defaults() {
    let text = format!(
        "network = \"n\"\nquorum = 1\nrelays = [\"WSS://Relay.Example:443/\"]\n\
         [[follows]]\nname = \"g\"\nnpub = \"{GEORGE}\"\nrole = \"voter\"\n"
    );
    let (config, warnings) = parse(&text).unwrap();
    assert_eq!(
        warnings,
        vec![
            Warning::MissingHook { section: "upgrade" },
            Warning::MissingHook { section: "reboot" }
        ]
    );
    let normalized = config.normalized_toml();
    for expected in [
        "relays = [\"wss://relay.example\"]\n",
        "state_dir = \"/var/lib/qube-agent\"\n",
        "max_future_skew_secs = 600\n",
        "allow_downgrade = false\n",
        "allow_insecure_ws = false\n",
        "# [upgrade]: not set\n",
    ] {
        assert!(
            normalized.contains(expected),
            "{expected:?} in\n{normalized}"
        );
    }
    assert_eq!(parse(&normalized).unwrap().0, config);
}

#[test]
fn hex_pubkey_accepted_in_either_case() {
    let upper = edit(BOB_HEX, &BOB_HEX.to_ascii_uppercase());
    let (config, _) = parse(&upper).unwrap();
    assert_eq!(config.follows()[2].pubkey_hex(), BOB_HEX);
}

#[test]
fn node_key_env_and_path() {
    let text = edit("node_id", "node_key = \"env:QUBE_KEY_1\"\nnode_id");
    let (config, _) = parse(&text).unwrap();
    assert_eq!(
        config.node_key(),
        Some(&NodeKeySource::Env("QUBE_KEY_1".into()))
    );
    for bad in ["env:", "env:1X", "env:A-B", "env:A B"] {
        let text = edit("node_id", &format!("node_key = \"{bad}\"\nnode_id"));
        assert_eq!(invalid(&text).1, Problem::EnvVar, "{bad}");
    }
    let text = edit("node_id", "node_key = \"keys/node.key\"\nnode_id");
    assert_eq!(invalid(&text).1, Problem::NotAbsolute);
}

// --- unknown keys ----------------------------------------------------------

#[test]
fn unknown_top_level_key_rejected() {
    let text = edit("quorum = 2", "quorum = 2\nqourum_typo = 3");
    let (msg, line) = toml_error(&text);
    assert!(msg.contains("unknown field `qourum_typo`"), "{msg}");
    assert_eq!(line, Some(line_of(&text, "qourum_typo")));
    let shown = error(&text).to_string();
    assert!(shown.contains("line 3"), "{shown}");
    assert!(shown.contains("\nhint: check the spelling"), "{shown}");
}

#[test]
fn unknown_policy_key_rejected() {
    let text = edit("allow_downgrade = false", "allow_downgrades = true");
    let (msg, line) = toml_error(&text);
    assert!(msg.contains("unknown field `allow_downgrades`"), "{msg}");
    assert_eq!(line, Some(line_of(&text, "allow_downgrades")));
}

#[test]
fn unknown_follow_and_hook_keys_rejected() {
    let text = edit("role = \"observer\"", "role = \"observer\"\nweight = 2");
    assert!(toml_error(&text).0.contains("unknown field `weight`"));
    let text = edit("timeout_secs = 900", "timeout = 900");
    assert!(toml_error(&text).0.contains("unknown field `timeout`"));
    let text = edit("[reboot]", "[rebot]");
    assert!(toml_error(&text).0.contains("unknown field `rebot`"));
}

#[test]
fn unknown_role_rejected() {
    let text = edit("role = \"observer\"", "role = \"admin\"");
    let (msg, _) = toml_error(&text);
    assert!(msg.contains("admin"), "{msg}");
}

// --- relays ----------------------------------------------------------------

const RELAYS: &str = r#"relays = ["wss://qubestr.zenon.info", "wss://qubestr.zenon.red"]"#;

fn with_relays(list: &str) -> String {
    edit(RELAYS, &format!("relays = [{list}]"))
}

#[test]
fn ws_to_non_loopback_rejected() {
    for url in [
        "ws://relay.example",
        "ws://10.0.0.5:7777",
        "ws://localhost.evil.example",
        "ws://127.0.0.1.evil.example",
        "ws://128.0.0.1",
        "ws://[::2]",
    ] {
        let text = with_relays(&format!("\"wss://a.example\", \"{url}\""));
        let (key, problem, line) = invalid(&text);
        assert_eq!(key, "relays[1]", "{url}");
        assert_eq!(problem, Problem::InsecureRelay, "{url}");
        assert_eq!(line, Some(3));
    }
}

#[test]
fn ws_to_loopback_accepted() {
    let text = with_relays(
        "\"ws://127.0.0.1:7777\", \"ws://localhost:7000/r\", \"ws://[::1]:7001\", \"ws://127.8.9.10\"",
    );
    let (config, warnings) = parse(&text).unwrap();
    assert_eq!(warnings, vec![]);
    assert!(config
        .relays()
        .iter()
        .all(|r| r.is_loopback() && !r.is_tls()));
    assert_eq!(config.relays()[0].port(), 7777);
    assert_eq!(config.relays()[2].host(), "::1");
}

#[test]
fn ws_allowed_with_allow_insecure_ws() {
    let text = with_relays("\"ws://relay.example:7777\"").replacen(
        "allow_insecure_ws = false",
        "allow_insecure_ws = true",
        1,
    );
    let (config, warnings) = parse(&text).unwrap();
    assert!(config.policy().allow_insecure_ws());
    assert_eq!(config.relays()[0].as_str(), "ws://relay.example:7777");
    assert_eq!(
        warnings,
        vec![Warning::InsecureRelay {
            url: "ws://relay.example:7777".into()
        }]
    );
}

#[test]
fn http_and_other_schemes_rejected() {
    for (url, scheme) in [
        ("http://relay.example", "http"),
        ("https://relay.example", "https"),
        ("ftp://relay.example", "ftp"),
    ] {
        let text = with_relays(&format!("\"{url}\""));
        let (key, problem, _) = invalid(&text);
        assert_eq!(key, "relays[0]");
        assert_eq!(
            problem,
            Problem::Relay(RelayUrlError::Scheme {
                found: scheme.into()
            })
        );
    }
    // Even with allow_insecure_ws.
    let text = with_relays("\"http://relay.example\"").replacen(
        "allow_insecure_ws = false",
        "allow_insecure_ws = true",
        1,
    );
    assert!(matches!(invalid(&text).1, Problem::Relay(_)));
}

#[test]
fn relay_parsed_structurally_not_by_prefix() {
    for (url, expected) in [
        ("wss://", RelayUrlError::MissingHost),
        ("wss://user:pw@relay.example", RelayUrlError::UserInfo),
        ("ws://127.0.0.1@evil.example", RelayUrlError::UserInfo),
        ("ws://evil.127.0.0.1", RelayUrlError::Host),
        ("wss://relay.example:99999", RelayUrlError::Port),
        ("wss://relay.example#x", RelayUrlError::Fragment),
        (
            "wssx://relay.example",
            RelayUrlError::Scheme {
                found: "wssx".into(),
            },
        ),
    ] {
        let text = with_relays(&format!("\"{url}\""));
        assert_eq!(invalid(&text).1, Problem::Relay(expected), "{url}");
    }
    // WHATWG numeric hosts are IPv4 addresses: `127.1` is 127.0.0.1.
    let (config, _) = parse(&with_relays("\"ws://127.1:7777\"")).unwrap();
    assert_eq!(config.relays()[0].as_str(), "ws://127.0.0.1:7777");
    assert!(config.relays()[0].is_loopback());
}

#[test]
fn duplicate_relay_rejected() {
    let text = with_relays("\"wss://relay.example\", \"WSS://RELAY.example:443/\"");
    let (key, problem, _) = invalid(&text);
    assert_eq!(key, "relays[1]");
    assert_eq!(
        problem,
        Problem::DuplicateRelay {
            first: "relays[0]".into()
        }
    );
}

#[test]
fn empty_relays_rejected() {
    let (key, problem, _) = invalid(&with_relays(""));
    assert_eq!((key.as_str(), problem), ("relays", Problem::Empty));
}

// --- quorum (`docs/PROTOCOL.md` section 5.7) -------------------------------------

#[test]
fn quorum_zero_rejected() {
    let text = edit("quorum = 2", "quorum = 0");
    let (key, problem, line) = invalid(&text);
    assert_eq!(key, "quorum");
    assert_eq!(problem, Problem::QuorumTooSmall { quorum: 0 });
    assert_eq!(line, Some(2));
    let shown = error(&text).to_string();
    assert!(
        shown.contains("line 2: `quorum`: quorum 0 is less than 1"),
        "{shown}"
    );
}

#[test]
fn quorum_negative_rejected() {
    let text = edit("quorum = 2", "quorum = -1");
    assert_eq!(invalid(&text).1, Problem::QuorumTooSmall { quorum: -1 });
}

#[test]
fn quorum_above_voters_rejected() {
    let text = edit("quorum = 2", "quorum = 4");
    assert_eq!(
        invalid(&text).1,
        Problem::QuorumAboveVoters {
            quorum: 4,
            voters: 3
        }
    );
}

#[test]
fn observers_not_counted_as_voters() {
    // Four follows, one of them an observer: quorum 4 cannot be met...
    let text = edit("quorum = 2", "quorum = 4");
    assert!(matches!(
        invalid(&text).1,
        Problem::QuorumAboveVoters { voters: 3, .. }
    ));
    // ...and with every follow an observer, not even quorum 1.
    let text = sample()
        .replace("role = \"voter\"", "role = \"observer\"")
        .replacen("quorum = 2", "quorum = 1", 1);
    assert_eq!(
        invalid(&text).1,
        Problem::QuorumAboveVoters {
            quorum: 1,
            voters: 0
        }
    );
}

#[test]
fn no_follows_rejected() {
    let text =
        format!("network = \"hqz\"\nquorum = 1\n{RELAYS}\n[upgrade]\ncommand = [\"/bin/u\"]\n");
    assert_eq!(
        invalid(&text).1,
        Problem::QuorumAboveVoters {
            quorum: 1,
            voters: 0
        }
    );
}

#[test]
fn warning_at_quorum_at_most_half() {
    // 3 voters: quorum 1 warns (1 <= 3/2), quorum 2 and 3 do not.
    let (_, warnings) = parse(&edit("quorum = 2", "quorum = 1")).unwrap();
    assert_eq!(
        warnings,
        vec![Warning::WeakQuorum {
            quorum: 1,
            voters: 3
        }]
    );
    assert!(warnings[0].to_string().contains("consider quorum = 2"));
    assert_eq!(parse(&sample()).unwrap().1, vec![]);
    assert_eq!(parse(&edit("quorum = 2", "quorum = 3")).unwrap().1, vec![]);
    // 4 voters (the observer promoted): quorum 2 warns, 3 does not.
    let four = sample().replace("role = \"observer\"", "role = \"voter\"");
    assert_eq!(
        parse(&four).unwrap().1,
        vec![Warning::WeakQuorum {
            quorum: 2,
            voters: 4
        }]
    );
    assert_eq!(
        parse(&four.replacen("quorum = 2", "quorum = 3", 1))
            .unwrap()
            .1,
        vec![]
    );
}

// --- follows ---------------------------------------------------------------

#[test]
fn bad_npub_rejected() {
    // Bad checksum: last character changed.
    let bad = format!("{}q", &ALICE[..ALICE.len() - 1]);
    let text = edit(ALICE, &bad);
    let (key, problem, line) = invalid(&text);
    assert_eq!(key, "follows[1].npub");
    assert!(
        matches!(problem, Problem::Pubkey(Nip19Error::Bech32(_))),
        "{problem:?}"
    );
    assert_eq!(line, Some(line_of(&text, &bad)));
    // Not a key at all.
    let text = edit(ALICE, "alice");
    assert_eq!(invalid(&text).1, Problem::Pubkey(Nip19Error::NotAPubkey));
    // 63 hex characters.
    let text = edit(BOB_HEX, &BOB_HEX[1..]);
    assert_eq!(invalid(&text).1, Problem::Pubkey(Nip19Error::NotAPubkey));
}

#[test]
fn nsec_rejected_as_secret() {
    let text = edit(ALICE, NSEC);
    let err = error(&text);
    assert!(matches!(
        err.kind(),
        ConfigErrorKind::Invalid {
            problem: Problem::Pubkey(Nip19Error::SecretKey),
            ..
        }
    ));
    let shown = err.to_string();
    assert!(shown.contains("SECRET"), "{shown}");
    // The secret itself is not echoed.
    assert!(!shown.contains(NSEC), "{shown}");
}

#[test]
fn pubkey_off_curve_rejected() {
    // x = 5 is not the x coordinate of a secp256k1 point (BIP-340 vector 5's key).
    let off = "eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34";
    let text = edit(BOB_HEX, off);
    assert_eq!(invalid(&text).1, Problem::NotOnCurve);
}

#[test]
fn duplicate_follow_rejected() {
    // Alice again, given as hex instead of npub.
    let text = edit(BOB_HEX, ALICE_HEX);
    let (key, problem, _) = invalid(&text);
    assert_eq!(key, "follows[2].npub");
    assert_eq!(
        problem,
        Problem::DuplicateFollow {
            first: "alice".into()
        }
    );
    // Same key with a different role is still a duplicate.
    let text = edit(CAROL, GEORGE);
    assert!(matches!(invalid(&text).1, Problem::DuplicateFollow { .. }));
}

#[test]
fn duplicate_follow_name_rejected() {
    let text = edit("name = \"bob\"", "name = \"alice\"");
    let (key, problem, _) = invalid(&text);
    assert_eq!(
        (key.as_str(), problem),
        ("follows[2].name", Problem::DuplicateName)
    );
}

// --- hooks -----------------------------------------------------------------

#[test]
fn empty_command_rejected() {
    let text = edit(
        "command = [\"/usr/local/libexec/pillar-reboot\"]",
        "command = []",
    );
    let (key, problem, line) = invalid(&text);
    assert_eq!(key, "reboot.command");
    assert_eq!(problem, Problem::EmptyCommand);
    assert_eq!(line, Some(line_of(&text, "command = []")));
    let text = edit(
        "command = [\"/usr/local/libexec/pillar-reboot\"]",
        "command = [\"\", \"x\"]",
    );
    assert_eq!(invalid(&text).1, Problem::EmptyProgram);
}

#[test]
fn shell_string_command_rejected() {
    let text = edit(
        "command = [\"/usr/local/libexec/pillar-upgrade\"]",
        "command = \"rm -rf /\"",
    );
    let (msg, line) = toml_error(&text);
    assert!(msg.contains("invalid type: string \"rm -rf /\""), "{msg}");
    assert!(msg.contains("array of strings"), "{msg}");
    assert!(error(&text).advice().contains("never runs through a shell"));
    assert_eq!(line, Some(line_of(&text, "rm -rf")));
}

#[test]
fn optional_hook_commands_are_argv_too() {
    let text = edit(
        "timeout_secs = 900",
        "timeout_secs = 900\nhealth = \"check\"",
    );
    assert!(toml_error(&text).0.contains("invalid type: string"));
    let text = edit("timeout_secs = 900", "timeout_secs = 900\nrollback = []");
    let (key, problem, _) = invalid(&text);
    assert_eq!(
        (key.as_str(), problem),
        ("upgrade.rollback", Problem::EmptyCommand)
    );
}

#[test]
fn relative_program_warns() {
    let text = edit("/usr/local/libexec/pillar-reboot", "pillar-reboot");
    let (_, warnings) = parse(&text).unwrap();
    assert_eq!(
        warnings,
        vec![Warning::ProgramNotAbsolute {
            key: "reboot.command".into(),
            program: "pillar-reboot".into()
        }]
    );
}

#[test]
fn missing_hook_warns() {
    let text = sample();
    let cut = text.find("[reboot]").unwrap();
    let (config, warnings) = parse(&text[..cut]).unwrap();
    assert!(config.reboot().is_none());
    assert_eq!(warnings, vec![Warning::MissingHook { section: "reboot" }]);
}

#[test]
fn timeout_out_of_range_rejected() {
    for bad in ["0", "-5", "86401"] {
        let text = edit("timeout_secs = 900", &format!("timeout_secs = {bad}"));
        let (key, problem, _) = invalid(&text);
        assert_eq!(key, "upgrade.timeout_secs");
        assert!(matches!(
            problem,
            Problem::OutOfRange {
                min: 1,
                max: 86_400,
                ..
            }
        ));
    }
    let text = edit("max_future_skew_secs = 600", "max_future_skew_secs = 0");
    assert_eq!(parse(&text).unwrap().0.policy().max_future_skew_secs(), 0);
    let text = edit("max_future_skew_secs = 600", "max_future_skew_secs = -1");
    assert_eq!(invalid(&text).0, "policy.max_future_skew_secs");
}

#[test]
fn artifact_template_checked() {
    let text = edit("znnd-{version}", "znnd-{ver}");
    assert_eq!(invalid(&text).1, Problem::Template);
    let text = edit(
        "/var/lib/pillar/staging/znnd-{version}",
        "staging/znnd-{version}",
    );
    assert_eq!(invalid(&text).1, Problem::NotAbsolute);
}

// --- other values ----------------------------------------------------------

#[test]
fn bad_version_rejected() {
    for bad in ["0.0", "V0.0.8", "latest", "v01.0.0"] {
        let text = edit("\"v0.0.8\"", &format!("\"{bad}\""));
        let (key, problem, _) = invalid(&text);
        assert_eq!(key, "current_version");
        assert!(matches!(problem, Problem::Version(_)), "{bad}");
    }
    let text = edit("\"v0.0.8\"", "\"1.2.3-rc.1+build.5\"");
    assert!(parse(&text).is_ok());
}

#[test]
fn empty_network_rejected() {
    let text = edit("network = \"hqz\"", "network = \"\"");
    assert_eq!(invalid(&text), ("network".into(), Problem::Empty, Some(1)));
    let text = edit("network = \"hqz\"", "network = \" hqz\"");
    assert_eq!(invalid(&text).1, Problem::BadText);
}

#[test]
fn missing_required_key_rejected() {
    let text = edit("network = \"hqz\"\n", "");
    assert!(toml_error(&text).0.contains("missing field `network`"));
}

#[test]
fn relative_state_dir_rejected() {
    let text = edit("\"/var/lib/qube-agent\"", "\"state\"");
    assert_eq!(
        invalid(&text),
        ("state_dir".into(), Problem::NotAbsolute, Some(4))
    );
}

// --- files -----------------------------------------------------------------

#[test]
fn load_names_the_file() {
    let file = temp_file(
        "bad-quorum.toml",
        edit("quorum = 2", "quorum = 9").as_bytes(),
    );
    let err = Config::load(file.path()).unwrap_err();
    assert_eq!(err.file(), Some(file.path()));
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("config file {}, line 2:", file.path().display())),
        "{shown}"
    );
    assert!(shown.contains("hint: set 1 <= quorum"), "{shown}");
}

#[test]
fn load_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("does-not-exist.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(
        err.kind(),
        ConfigErrorKind::Read {
            io: std::io::ErrorKind::NotFound,
            ..
        }
    ));
    assert!(err
        .to_string()
        .contains("hint: check the path given to --config"));
}

#[test]
fn load_refuses_oversized_file() {
    let mut big = sample().into_bytes();
    big.resize(usize::try_from(MAX_CONFIG_BYTES).unwrap() + 1, b'\n');
    let file = temp_file("big.toml", &big);
    let err = Config::load(file.path()).unwrap_err();
    assert_eq!(
        *err.kind(),
        ConfigErrorKind::TooLarge {
            max: MAX_CONFIG_BYTES
        }
    );
    // Exactly at the limit is fine.
    big.pop();
    let file = temp_file("limit.toml", &big);
    assert!(Config::load(file.path()).is_ok());
}

#[test]
fn load_refuses_non_utf8() {
    let mut bytes = b"network = \"hq".to_vec();
    bytes.push(0xff);
    let file = temp_file("latin1.toml", &bytes);
    let err = Config::load(file.path()).unwrap_err();
    assert_eq!(*err.kind(), ConfigErrorKind::NotUtf8 { offset: 13 });
}

#[cfg(unix)]
#[test]
fn load_warns_when_writable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let file = temp_file("mode.toml", sample().as_bytes());
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (_, warnings) = Config::load(file.path()).unwrap();
    assert_eq!(warnings, vec![Warning::WritableByOthers { mode: 0o666 }]);
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(Config::load(file.path()).unwrap().1, vec![]);
}

// --- [tls] extra_roots --------------------------------------------------------

#[test]
fn tls_extra_roots_are_read_checked_and_printed() {
    let ca = qube_e2e::TestCa::new("qube test CA");
    let pem = temp_file("ca.pem", ca.pem());
    let text = format!(
        "{}\n[tls]\nextra_roots = {:?}\n",
        sample(),
        pem.path().to_str().unwrap()
    );
    let (config, _) = Config::from_toml_str(&text).unwrap();
    assert_eq!(config.tls_extra_roots(), [ca.der()]);
    assert_eq!(config.tls_extra_roots_path(), Some(pem.path()));
    let normalized = config.normalized_toml();
    assert!(normalized.contains("[tls]"), "{normalized}");
    let (again, _) = Config::from_toml_str(&normalized).unwrap();
    assert_eq!(again.tls_extra_roots(), config.tls_extra_roots());
    // Positive control above; without the section there are none.
    let (plain, _) = Config::from_toml_str(&sample()).unwrap();
    assert!(plain.tls_extra_roots().is_empty());
}

#[test]
fn tls_extra_roots_that_cannot_be_used_are_errors_with_the_line() {
    let garbage = temp_file("garbage.pem", "not a certificate\n");
    for (path, why) in [
        ("/nonexistent/ca.pem".to_owned(), "cannot open it"),
        (
            garbage.path().to_str().unwrap().to_owned(),
            "no CERTIFICATE",
        ),
    ] {
        let text = format!("{}\n[tls]\nextra_roots = {path:?}\n", sample());
        let (key, problem, line) = invalid(&text);
        assert_eq!(key, "tls.extra_roots");
        assert!(
            matches!(&problem, Problem::TlsRoots(w) if w.contains(why)),
            "{problem:?}"
        );
        assert_eq!(line, Some(line_of(&text, "extra_roots")));
    }
    let text = format!("{}\n[tls]\nextra_roots = \"ca.pem\"\n", sample());
    assert_eq!(invalid(&text).1, Problem::NotAbsolute);
}

#[test]
fn heartbeat_relays_must_be_among_the_relays() {
    let ok = format!(
        "{}\n[heartbeat]\nrelays = [\"wss://qubestr.zenon.red\"]\ninterval_secs = 5\n",
        sample()
    );
    let (config, _) = parse(&ok).unwrap();
    assert_eq!(config.heartbeat().relays(), [1]);
    assert_eq!(config.heartbeat().interval_secs(), 5);
    // It round-trips through the normalized form.
    let normalized = config.normalized_toml();
    assert!(
        normalized
            .contains("[heartbeat]\nrelays = [\"wss://qubestr.zenon.red\"]\ninterval_secs = 5\n"),
        "{normalized}"
    );
    assert_eq!(parse(&normalized).unwrap().0, config);

    let stranger = ok.replace(
        "relays = [\"wss://qubestr.zenon.red\"]\ninterval",
        "relays = [\"wss://other.example\"]\ninterval",
    );
    let err = parse(&stranger).unwrap_err().to_string();
    assert!(err.contains("heartbeat.relays[0]"), "{err}");
    assert!(err.contains("is not one of `relays`"), "{err}");
    let zero = ok.replace("interval_secs = 5", "interval_secs = 0");
    assert!(parse(&zero).is_err());
    // Default: no heartbeats, once an hour.
    let (config, _) = parse(&sample()).unwrap();
    assert!(config.heartbeat().relays().is_empty());
    assert_eq!(config.heartbeat().interval_secs(), 3600);
    assert_eq!(config.source_sha256(), None);
}

#[test]
fn alert_section_defaults_and_ranges() {
    let text = format!(
        "{}\n[alert]\ncommand = [\"/bin/alert\", \"--now\"]\n",
        sample()
    );
    let (config, _) = parse(&text).unwrap();
    let alert = config.alert().unwrap();
    assert_eq!(alert.command(), ["/bin/alert", "--now"]);
    assert_eq!(alert.timeout_secs(), 30);
    assert_eq!(alert.min_interval_secs(), 600);
    assert_eq!(alert.relays_down_secs(), 600);
    assert_eq!(alert.worker_restarts(), 5);
    let normalized = config.normalized_toml();
    assert_eq!(parse(&normalized).unwrap().0, config, "{normalized}");
    let shell = text.replace("[\"/bin/alert\", \"--now\"]", "\"/bin/alert --now\"");
    assert!(parse(&shell).is_err());
    let zero = format!("{text}worker_restarts = 0\n");
    let err = parse(&zero).unwrap_err().to_string();
    assert!(err.contains("alert.worker_restarts"), "{err}");
    assert!(parse(&sample()).unwrap().0.alert().is_none());
}

// --- health check -----------------------------------------------------------

/// `sample()` with `health` lines added to `[upgrade]` (after its other keys).
fn with_health(lines: &str) -> String {
    edit("[reboot]", &format!("{lines}\n\n[reboot]"))
}

#[test]
fn health_argv_form_is_one_immediate_check() {
    let text = edit(
        "timeout_secs = 900",
        "timeout_secs = 900\nhealth = [\"/bin/check\", \"--ok\"]",
    );
    let (config, _) = parse(&text).unwrap();
    let health = config.upgrade().unwrap().health().unwrap();
    assert_eq!(health.command(), ["/bin/check", "--ok"]);
    assert_eq!(
        (health.settle_secs(), health.window_secs(), health.tries()),
        (0, 0, 1)
    );
    assert_eq!(health.interval_secs(), 5);
    // The effective config writes it as the equivalent table, which parses
    // back to the same thing.
    let normalized = config.normalized_toml();
    assert!(normalized.contains("[upgrade.health]\n"), "{normalized}");
    assert!(normalized.contains("settle_secs = 0\n"), "{normalized}");
    let (again, _) = parse(&normalized).unwrap();
    assert_eq!(again, config);
    assert_eq!(again.normalized_toml(), normalized);
}

#[test]
fn health_table_defaults_and_values() {
    let (config, warnings) =
        parse(&with_health("[upgrade.health]\ncommand = [\"/bin/check\"]")).unwrap();
    assert_eq!(warnings, vec![]);
    let health = config.upgrade().unwrap().health().unwrap();
    assert_eq!(health.command(), ["/bin/check"]);
    assert_eq!(
        (
            health.settle_secs(),
            health.interval_secs(),
            health.window_secs(),
            health.tries()
        ),
        (10, 5, 60, 1)
    );

    let (config, _) = parse(&with_health(
        "[upgrade.health]\ncommand = [\"/bin/check\"]\nsettle_secs = 1\ninterval_secs = 2\nwindow_secs = 5\ntries = 3",
    ))
    .unwrap();
    let health = config.upgrade().unwrap().health().unwrap();
    assert_eq!(
        (
            health.settle_secs(),
            health.interval_secs(),
            health.window_secs(),
            health.tries()
        ),
        (1, 2, 5, 3)
    );
    let normalized = config.normalized_toml();
    let (again, _) = parse(&normalized).unwrap();
    assert_eq!(again, config);
}

#[test]
fn health_table_values_out_of_range_rejected() {
    for (line, key, min, max) in [
        ("settle_secs = -1", "upgrade.health.settle_secs", 0, 86_400),
        (
            "settle_secs = 86401",
            "upgrade.health.settle_secs",
            0,
            86_400,
        ),
        (
            "interval_secs = 0",
            "upgrade.health.interval_secs",
            1,
            86_400,
        ),
        (
            "window_secs = 86401",
            "upgrade.health.window_secs",
            0,
            86_400,
        ),
        ("tries = 0", "upgrade.health.tries", 1, 100),
        ("tries = 101", "upgrade.health.tries", 1, 100),
    ] {
        let text = with_health(&format!(
            "[upgrade.health]\ncommand = [\"/bin/check\"]\n{line}"
        ));
        let (found_key, problem, at) = invalid(&text);
        assert_eq!(found_key, key, "{line}");
        assert!(
            matches!(problem, Problem::OutOfRange { min: m, max: x, .. } if m == min && x == max),
            "{line}: {problem:?}"
        );
        assert_eq!(at, Some(line_of(&text, line)), "{line}");
        assert!(error(&text)
            .to_string()
            .contains("hint: use a value inside the range"));
    }
}

#[test]
fn health_table_needs_an_argv_command_and_known_keys() {
    let (msg, _) = toml_error(&with_health("[upgrade.health]\nsettle_secs = 1"));
    assert!(msg.contains("missing field `command`"), "{msg}");

    let (msg, _) = toml_error(&with_health(
        "[upgrade.health]\ncommand = [\"/bin/check\"]\nwindow = 5",
    ));
    assert!(msg.contains("unknown field `window`"), "{msg}");

    let text = with_health("[upgrade.health]\ncommand = []");
    let (key, problem, _) = invalid(&text);
    assert_eq!(
        (key.as_str(), problem),
        ("upgrade.health.command", Problem::EmptyCommand)
    );

    let text = with_health("[upgrade.health]\ncommand = \"check --ok\"");
    assert!(toml_error(&text).0.contains("array of strings"));

    // A plain string for `health` names both accepted forms, and the argv
    // advice applies.
    let text = edit(
        "timeout_secs = 900",
        "timeout_secs = 900\nhealth = \"check\"",
    );
    let err = error(&text);
    assert!(
        err.to_string().contains("or a table with `command`"),
        "{err}"
    );
    assert!(err.advice().contains("never runs through a shell"), "{err}");
}
