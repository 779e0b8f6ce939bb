//! Directives made by `govctl propose` and `govctl sign`: accepted by the
//! agent's rules and by rust-nostr's verification; `govctl verify` rejects
//! tampered copies with a clear reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{npub_hex, stderr, stdout, Env, HASH};
use qube_agent::config::Config;
use qube_agent::core::directive::{Action, Directive, DirectiveRules};

use qube_agent::{Event, Limits};

fn load(env: &Env, name: &str) -> (String, Event) {
    let text = std::fs::read_to_string(env.path(name)).unwrap();
    let event = Event::from_json(text.as_bytes(), &Limits::default()).unwrap();
    (text, event)
}

fn nostr_verify(text: &str) -> Result<(), String> {
    let event = nostr::event::Event::from_json(text).map_err(|e| e.to_string())?;
    event.verify().map_err(|e| e.to_string())
}

#[test]
fn offline_upgrade_passes_the_agent_rules_and_rust_nostr() {
    let env = Env::new();
    let npub = env.keygen("gov");
    std::fs::write(env.path("artifact"), b"znnd v1.2.3\n").unwrap();
    let hash = env.ok(&["hash", "artifact"]);
    let hash = hash.trim();
    assert_eq!(
        hash,
        hex::encode(qube_agent::artifact::sha256_file(&env.path("artifact")).unwrap())
    );
    let out = env.run(&[
        "propose",
        "upgrade",
        "--version",
        "v1.2.3",
        "--network",
        "hqz",
        "--artifact",
        "artifact",
        "--expires-in",
        "7d",
        "--name",
        "gov",
        "--passphrase-file",
        "pass",
        "--out",
        "upgrade.json",
    ]);
    common::assert_ok(&out, &["propose"]);
    let (text, event) = load(&env, "upgrade.json");
    assert_eq!(stdout(&out).trim(), event.id_hex());
    // Plain NIP-01 JSON: exactly the seven fields, one line.
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "content",
            "created_at",
            "id",
            "kind",
            "pubkey",
            "sig",
            "tags"
        ]
    );
    assert_eq!(text.lines().count(), 1);

    nostr_verify(&text).unwrap();
    assert_eq!(event.pubkey_hex(), npub_hex(&npub));
    let now = qube_agent::now();
    let directive = Directive::from_event(event.clone(), &DirectiveRules::new("hqz"), now).unwrap();
    let p = directive.proposal();
    assert_eq!(p.action, Action::Upgrade);
    assert_eq!(p.version, "v1.2.3");
    assert_eq!(p.hash, hash);
    let expiration = directive.expiration().unwrap();
    assert!((expiration - event.created_at).abs_diff(7 * 86_400) == 0);
    let names: Vec<&str> = event.tags.iter().map(|t| t[0].as_str()).collect();
    assert_eq!(
        names,
        ["d", "action", "version", "hash", "network", "expiration"]
    );
    assert!(!event.content.is_empty());

    // verify: valid, and valid under a config where the author votes.
    let shown = env.ok(&["verify", "upgrade.json"]);
    assert!(
        shown.contains("signature:  valid (qube-agent and rust-nostr agree)"),
        "{shown}"
    );
    assert!(shown.contains("verdict:    valid directive"), "{shown}");
    let config = common::config_toml("wss://relay.example", &[("gov", &npub)], 1);
    std::fs::write(env.path("agent.toml"), &config).unwrap();
    let (parsed, _) = Config::from_toml_str(&config).unwrap();
    Directive::from_event(event, &parsed.directive_rules(), now).unwrap();
    let shown = env.ok(&["verify", "upgrade.json", "--config", "agent.toml"]);
    assert!(shown.contains("(gov, voter)"), "{shown}");
    assert!(
        shown.contains("valid directive under agent.toml"),
        "{shown}"
    );
}

#[test]
fn tampered_copies_fail_with_a_clear_reason() {
    let env = Env::new();
    env.keygen("gov");
    env.ok(&[
        "propose",
        "upgrade",
        "--version",
        "1.0.0",
        "--network",
        "hqz",
        "--hash",
        HASH,
        "--name",
        "gov",
        "--passphrase-file",
        "pass",
        "--out",
        "good.json",
    ]);
    let (text, _) = load(&env, "good.json");
    let cases = [
        (
            "content.json",
            text.replacen("Upgrade", "Downgrade", 1),
            "id does not match content",
        ),
        (
            "version.json",
            text.replacen("1.0.0", "9.0.0", 2),
            "id does not match content",
        ),
        ("sig.json", flip_sig(&text), "signature invalid"),
        (
            "field.json",
            text.replacen("{", "{\"extra\":1,", 1),
            "not a NIP-01 event",
        ),
    ];
    for (name, tampered, reason) in cases {
        assert_ne!(tampered, text);
        std::fs::write(env.path(name), &tampered).unwrap();
        let out = env.run(&["verify", name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("error: {name} is not valid: {reason}")),
            "{name}: {err}"
        );
        assert!(nostr_verify(&tampered).is_err() || name == "field.json");
        // publish refuses it before touching the network.
        let out = env.run(&["publish", name, "--relay", "ws://127.0.0.1:9"]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stdout(&out).is_empty());
    }
    // Under a config where the author is not a follow: invalid, exit 1.
    std::fs::write(
        env.path("agent.toml"),
        common::config_toml(
            "wss://relay.example",
            &[(
                "alice",
                "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg",
            )],
            1,
        ),
    )
    .unwrap();
    let out = env.run(&["verify", "good.json", "--config", "agent.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a follow in the config"),
        "{}",
        stderr(&out)
    );
    // Wrong network.
    let out = env.run(&["verify", "good.json", "--network", "other"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("wrong network \"hqz\", expected \"other\""));
}

fn flip_sig(text: &str) -> String {
    let at = text.find("\"sig\":\"").unwrap() + 7;
    let mut bytes = text.as_bytes().to_vec();
    bytes[at + 10] = if bytes[at + 10] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn reboot_with_rfc3339_deadline() {
    let env = Env::new();
    env.keygen("gov");
    env.ok(&[
        "propose",
        "reboot",
        "--version",
        "v2.0.0",
        "--network",
        "hqz",
        "--hash",
        &HASH.to_uppercase(),
        "--genesis-url",
        "https://genesis.example/g.json",
        "--required-by",
        "2030-01-01T00:00:00Z",
        "--name",
        "gov",
        "--passphrase-file",
        "pass",
        "--out",
        "reboot.json",
    ]);
    let (text, event) = load(&env, "reboot.json");
    nostr_verify(&text).unwrap();
    let d = Directive::from_event(event, &DirectiveRules::new("hqz"), qube_agent::now()).unwrap();
    let p = d.proposal();
    assert_eq!(p.action, Action::Reboot);
    assert_eq!(p.hash, HASH, "stored lowercase");
    assert_eq!(p.required_by, Some(1_893_456_000));
    assert_eq!(
        p.genesis_url.as_deref(),
        Some("https://genesis.example/g.json")
    );
    assert!(d.event().content.contains("2030-01-01T00:00:00Z"));
    let shown = env.ok(&["verify", "reboot.json"]);
    assert!(
        shown.contains("required_by: 2030-01-01T00:00:00Z (1893456000)"),
        "{shown}"
    );
}

#[test]
fn bad_proposals_are_refused_before_the_key_is_read() {
    let env = Env::new();
    // No key exists: these must fail on the directive, not on the key.
    for (args, reason) in [
        (
            vec!["--version", "1.x", "--hash", HASH],
            "is not a semantic version",
        ),
        (
            vec!["--version", "1.0.0", "--hash", "abc"],
            "is not a SHA-256",
        ),
        (
            vec!["--version", "1.0.0", "--hash", HASH, "--content", ""],
            "content is empty",
        ),
        (
            vec!["--version", "1.0.0", "--hash", HASH, "--d-tag", ""],
            "tag `d` has no value",
        ),
    ] {
        let mut full = vec!["propose", "upgrade", "--network", "hqz", "--out", "x.json"];
        full.extend(args);
        let out = env.run(&full);
        assert_eq!(out.status.code(), Some(1), "{full:?}");
        assert!(stderr(&out).contains(reason), "{full:?}: {}", stderr(&out));
        assert!(!env.path("x.json").exists());
    }
    let out = env.run(&[
        "propose",
        "upgrade",
        "--version",
        "1.0.0",
        "--network",
        "hqz",
        "--hash",
        HASH,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nowhere to send the directive"));
}

#[test]
fn draft_signed_elsewhere_keeps_its_id() {
    let online = Env::new();
    let offline = Env::new();
    let npub = offline.keygen("gov");
    let out = online.run(&[
        "propose",
        "upgrade",
        "--version",
        "v3.0.0",
        "--network",
        "hqz",
        "--hash",
        HASH,
        "--unsigned",
        "--signer",
        &npub,
        "--out",
        "draft.json",
    ]);
    common::assert_ok(&out, &["propose", "--unsigned"]);
    let draft_id = stdout(&out).trim().to_owned();
    let draft = std::fs::read_to_string(online.path("draft.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&draft).unwrap();
    assert_eq!(value["pubkey"], npub_hex(&npub));
    assert_eq!(value["id"], draft_id);
    assert!(value.get("sig").is_none());

    std::fs::write(offline.path("draft.json"), &draft).unwrap();
    // No terminal and no --yes: refused, nothing written.
    let out = offline.run(&[
        "sign",
        "draft.json",
        "--out",
        "signed.json",
        "--name",
        "gov",
        "--passphrase-file",
        "pass",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("about to sign this directive"),
        "{}",
        stderr(&out)
    );
    let shown = stderr(&out);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("  version ") && l.ends_with(" \"v3.0.0\"")),
        "{shown}"
    );
    assert!(stderr(&out).contains("hint: use --yes"), "{}", stderr(&out));
    assert!(!offline.path("signed.json").exists());

    let out = offline.run(&[
        "sign",
        "draft.json",
        "--out",
        "signed.json",
        "--name",
        "gov",
        "--passphrase-file",
        "pass",
        "--yes",
    ]);
    common::assert_ok(&out, &["sign"]);
    assert_eq!(stdout(&out).trim(), draft_id);
    let (text, event) = load(&offline, "signed.json");
    assert_eq!(event.id_hex(), draft_id);
    nostr_verify(&text).unwrap();

    // Another key cannot sign it; an edited draft is refused.
    offline.keygen("other");
    let out = offline.run(&[
        "sign",
        "draft.json",
        "--out",
        "s2.json",
        "--name",
        "other",
        "--passphrase-file",
        "pass",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the draft is for"),
        "{}",
        stderr(&out)
    );
    std::fs::write(
        offline.path("edited.json"),
        draft.replace("v3.0.0", "v9.0.0"),
    )
    .unwrap();
    let out = offline.run(&[
        "sign",
        "edited.json",
        "--out",
        "s3.json",
        "--name",
        "gov",
        "--passphrase-file",
        "pass",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("id does not match its content"),
        "{}",
        stderr(&out)
    );
}

/// An event whose signature holds but which is over one of the agent's size
/// limits is reported as exactly that, not as "not a NIP-01 event"; exit 1.
#[test]
fn verify_names_the_agent_limit_an_oversized_event_breaks() {
    let env = Env::new();
    let keys = qube_agent::Keys::generate().unwrap();
    let url = format!("https://genesis.example/{}", "a".repeat(2000));
    let event = keys
        .sign(qube_agent::UnsignedEvent {
            created_at: 1_767_225_600,
            kind: 33321,
            tags: vec![
                vec!["d".into(), "hyperqube".into()],
                vec!["action".into(), "reboot".into()],
                vec!["version".into(), "v2.0.0".into()],
                vec!["hash".into(), HASH.into()],
                vec!["network".into(), "hqz".into()],
                vec!["genesis_url".into(), url],
                vec!["required_by".into(), "1893456000".into()],
            ],
            content: "Reboot.".into(),
        })
        .unwrap();
    let json = event.to_json();
    nostr_verify(&json).unwrap();
    std::fs::write(env.path("big.json"), &json).unwrap();
    let out = env.run(&["verify", "big.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "error: big.json is not valid: signature valid; exceeds the agent's limit of 1024 bytes per tag value (tag 5 value 1 is 2024 bytes)"
        ),
        "{err}"
    );
    assert!(!err.contains("not a NIP-01 event"), "{err}");
    assert!(err.contains("hint: "), "{err}");
    let shown = stdout(&out);
    assert!(
        shown.contains("signature:  valid (qube-agent and rust-nostr agree)"),
        "{shown}"
    );

    // Over the limit and tampered with: the signature is what is wrong.
    std::fs::write(env.path("bad.json"), json.replacen("Reboot.", "Reboot!", 1)).unwrap();
    let out = env.run(&["verify", "bad.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bad.json is not valid: id does not match content"),
        "{}",
        stderr(&out)
    );

    // Not an event at all stays "not a NIP-01 event".
    std::fs::write(env.path("junk.json"), "{\"id\":1}").unwrap();
    let out = env.run(&["verify", "junk.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a NIP-01 event"),
        "{}",
        stderr(&out)
    );
}

/// Without --expires-in a directive expires 7 days (604 800 s) after it is
/// made; --no-expiry leaves the tag out and warns; --expires-in still sets it.
#[test]
fn propose_expires_in_seven_days_unless_told_otherwise() {
    let env = Env::new();
    env.plain_key("k.key");
    let propose = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "propose",
            "upgrade",
            "--version",
            "1.0.0",
            "--network",
            "hqz",
            "--hash",
            HASH,
            "--key",
            "k.key",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let before = qube_agent::now();
        let result = env.run(&args);
        let after = qube_agent::now();
        common::assert_ok(&result, &args);
        let (_, event) = load(&env, out);
        (event, before, after, stderr(&result))
    };

    let (event, before, after, err) = propose("default.json", &[]);
    let expiration: u64 = event.tag_value("expiration").unwrap().parse().unwrap();
    assert_eq!(expiration, event.created_at + 604_800);
    assert!(
        (before + 604_800..=after + 604_800).contains(&expiration),
        "{expiration} not 7 days after [{before}, {after}]"
    );
    assert!(!err.contains("warning:"), "{err}");

    let (event, _, _, err) = propose("forever.json", &["--no-expiry"]);
    assert_eq!(event.tag_value("expiration"), None);
    assert!(
        err.contains("warning: --no-expiry: this directive never expires"),
        "{err}"
    );

    let (event, _, _, _) = propose("short.json", &["--expires-in", "12h"]);
    let expiration: u64 = event.tag_value("expiration").unwrap().parse().unwrap();
    assert_eq!(expiration, event.created_at + 12 * 3600);

    // Both at once is a usage error, and nothing is written.
    let out = env.run(&[
        "propose",
        "upgrade",
        "--version",
        "1.0.0",
        "--network",
        "hqz",
        "--hash",
        HASH,
        "--key",
        "k.key",
        "--expires-in",
        "1d",
        "--no-expiry",
        "--out",
        "both.json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!env.path("both.json").exists());
}

fn fixture(name: &str) -> String {
    format!("{}/tests/cmd/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `sign` shows every tag before asking: each value in full, escaped so
/// nothing in it reaches the terminal raw, and warnings on stderr.
#[test]
fn sign_shows_every_value_in_full_and_escaped() {
    let env = Env::new();
    let out = env.run(&["sign", &fixture("draft-control.json"), "--out", "x.json"]);
    assert_eq!(out.status.code(), Some(2), "no terminal, no --yes");
    let err = stderr(&out);
    assert!(
        err.contains("\n  network \"hqz\\u{1b}[1A\\u{1b}[2K\\rnetwork:     hqz\"\n"),
        "{err}"
    );
    assert!(
        err.contains("content:    \"Upgrade to v1.2.3.\\u{202e}\"\n"),
        "{err}"
    );
    assert!(
        !out.stderr.contains(&0x1b) && !err.contains('\r') && !err.contains('\u{202e}'),
        "raw control characters reached the terminal: {err:?}"
    );
    assert!(
        err.contains("warning: tag 4 \"network\" value 1 contains control or invisible characters"),
        "{err}"
    );
    assert!(!env.path("x.json").exists());

    // 5 000 characters are shown, all of them, and then refused: no agent
    // parses a tag value over 1 024 bytes.
    let out = env.run(&[
        "sign",
        &fixture("draft-long-url.json"),
        "--out",
        "x.json",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let url = format!("https://genesis.example/{}", "a".repeat(4976));
    assert!(err.contains(&format!("  genesis_url \"{url}\"\n")), "{err}");
    assert!(
        err.contains(
            "warning: tag 5 \"genesis_url\" value 1 is 5000 characters long (more than 512)"
        ),
        "{err}"
    );
    assert!(
        err.contains("error: no agent would accept this event: it exceeds the agent's limit of 1024 bytes per tag value"),
        "{err}"
    );
    assert!(!env.path("x.json").exists());
}

/// `propose` shows the directive before the key is unlocked, with the same
/// warnings, and refuses a genesis_url that is not https.
#[test]
fn propose_shows_the_directive_before_signing() {
    let env = Env::new();
    env.plain_key("k.key");
    let out = env.run(&[
        "propose",
        "upgrade",
        "--version",
        "v1.2.3",
        "--network",
        "hqz",
        "--hash",
        HASH,
        "--content=-upgrade\u{7}now",
        "--key",
        "k.key",
        "--out",
        "up.json",
    ]);
    common::assert_ok(&out, &["propose"]);
    let err = stderr(&out);
    let shown = err.find("about to sign this directive").unwrap();
    let signed = err.find("signed:").unwrap();
    assert!(shown < signed, "{err}");
    assert!(err.contains("content:    \"-upgrade\\u{7}now\""), "{err}");
    assert!(
        err.contains("warning: the content contains control or invisible characters"),
        "{err}"
    );
    let (_, event) = load(&env, "up.json");
    assert!(
        err.contains(&format!("id:     {}", event.id_hex())),
        "{err}"
    );

    for (url, why) in [
        (
            "http://genesis.example/g.json",
            "it does not start with https://",
        ),
        ("https://", "it names no host"),
        (
            "https://good.example@evil.example/g",
            "it has a user@ part before the host",
        ),
        ("https://genesis.example/a b", "it contains a space"),
        (
            "-https://genesis.example/",
            "it does not start with https://",
        ),
    ] {
        let arg = format!("--genesis-url={url}");
        let out = env.run(&[
            "propose",
            "reboot",
            "--version",
            "v2.0.0",
            "--network",
            "hqz",
            "--hash",
            HASH,
            &arg,
            "--required-by",
            "2030-01-01T00:00:00Z",
            "--key",
            "k.key",
            "--out",
            "reboot.json",
        ]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = stderr(&out);
        assert!(err.contains("is not an https:// URL: "), "{url}: {err}");
        assert!(err.contains(why), "{url}: {err}");
        assert!(err.contains("hint: "), "{url}: {err}");
        assert!(!env.path("reboot.json").exists());
    }
}
