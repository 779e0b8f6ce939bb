//! A fleet: three agents on two relays, one of them with a failing health
//! check (`docs/PROTOCOL.md` section 12). Each node runs the upgrade once
//! and acknowledges how it went, and `govctl status` lists all three acks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::{pairs, runtime, start_relay, voters, Env};

/// One in-process agent of a test fleet.
struct NodeSpec<'a> {
    /// `node_id` is `pillar-<i>`; its files are in `node<i>/`.
    i: usize,
    /// The `relays` array's contents (quoted URLs, comma-separated).
    relays: String,
    /// Its node key, when the test needs to know it.
    key: Option<&'a qube_agent::Keys>,
    /// Lines the hook runs before it records the run.
    hook_prefix: &'a str,
    /// More TOML: top-level lines (before the follows).
    top: String,
    /// More TOML after `[upgrade]` (e.g. a health table).
    upgrade: &'a str,
}

/// Starts the agent of `spec` in-process (quorum 2 of `voters`, installed
/// v1.0.0, an upgrade hook that appends `$QUBE_VERSION` to its marker);
/// returns its task and its marker file.
fn start_node(
    rt: &tokio::runtime::Runtime,
    env: &Env,
    voters: &[(&str, &str)],
    spec: &NodeSpec<'_>,
) -> (tokio::task::JoinHandle<()>, std::path::PathBuf) {
    let i = spec.i;
    let dir = env.path(&format!("node{i}"));
    std::fs::create_dir(&dir).unwrap();
    let marker = dir.join("hook-ran");
    let hook = dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n{}echo \"$QUBE_VERSION\" >> {}\n",
            spec.hook_prefix,
            marker.display()
        ),
    )
    .unwrap();
    common::chmod(&hook, 0o755);
    let key_line = spec.key.map_or_else(String::new, |keys| {
        let key_file = dir.join("node.key");
        std::fs::write(&key_file, format!("{}\n", hex::encode(keys.secret_bytes()))).unwrap();
        common::chmod(&key_file, 0o600);
        format!("node_key = {key_file:?}\n")
    });
    let mut toml = format!(
        "network = \"hqz\"\nquorum = 2\nrelays = [{}]\nstate_dir = {:?}\n{key_line}\
         node_id = \"pillar-{i}\"\ncurrent_version = \"v1.0.0\"\n{}\n",
        spec.relays,
        dir.join("state"),
        spec.top
    );
    for (name, npub) in voters {
        toml.push_str(&format!(
            "\n[[follows]]\nname = \"{name}\"\nnpub = \"{npub}\"\nrole = \"voter\"\n"
        ));
    }
    toml.push_str(&format!(
        "\n[upgrade]\ncommand = [{hook:?}]\ntimeout_secs = 10\n{}",
        spec.upgrade
    ));
    let config = qube_agent::config::Config::from_toml_str(&toml)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"))
        .0;
    let _runtime = rt.enter();
    (qube_e2e::start_agent_in_process(config), marker)
}

#[test]
fn three_nodes_on_two_relays_ack_and_govctl_status_lists_them() {
    let rt = runtime();
    let (a, b) = rt.block_on(async { (start_relay(false).await, start_relay(false).await) });
    let env = Env::new();
    let voters = voters(&env, &["ann", "ben", "cid"]);
    let pairs = pairs(&voters);
    let both = format!("relays = [\"{}\", \"{}\"]", a.url, b.url);
    let fleet =
        common::config_toml(&a.url, &pairs, 2).replace(&format!("relays = [\"{}\"]", a.url), &both);
    std::fs::write(env.path("fleet.toml"), &fleet).unwrap();

    // pillar-0 reads relay A, pillar-1 relay B, pillar-2 both and has a
    // health check that fails (no rollback).
    let relays_of = [
        format!("\"{}\"", a.url),
        format!("\"{}\"", b.url),
        format!("\"{}\", \"{}\"", a.url, b.url),
    ];
    let mut agents = Vec::new();
    let mut markers = Vec::new();
    for (i, relays) in relays_of.into_iter().enumerate() {
        let health = if i == 2 {
            "\n[upgrade.health]\ncommand = [\"/bin/false\"]\nsettle_secs = 0\nwindow_secs = 0\n"
        } else {
            ""
        };
        let spec = NodeSpec {
            i,
            relays,
            key: None,
            hook_prefix: "",
            top: String::new(),
            upgrade: health,
        };
        let (agent, marker) = start_node(&rt, &env, &pairs, &spec);
        agents.push(agent);
        markers.push(marker);
    }

    // ann and ben sign the same upgrade and publish it to both relays.
    for name in ["ann", "ben"] {
        common::propose_v123(&env, name, &[&a.url, &b.url], &[]);
    }

    // Every node runs the hook once and acknowledges; govctl sees all three.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let json = env.ok(&[
            "status",
            "--config",
            "fleet.toml",
            "--json",
            "--timeout",
            "5",
        ]);
        let report: serde_json::Value = serde_json::from_str(&json).unwrap();
        if report["acks"].as_array().is_some_and(|a| a.len() == 3) {
            break report;
        }
        assert!(Instant::now() < deadline, "not three acks: {json}");
        std::thread::sleep(Duration::from_millis(300));
    };
    for marker in &markers {
        let runs = std::fs::read_to_string(marker).unwrap();
        assert_eq!(runs, "v1.2.3\n", "{}", marker.display());
    }
    let mut acks: Vec<(String, String, Option<String>)> = report["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["version"], "v1.2.3");
            (
                a["node_id"].as_str().unwrap().to_owned(),
                a["status"].as_str().unwrap().to_owned(),
                a["error"].as_str().map(str::to_owned),
            )
        })
        .collect();
    acks.sort();
    assert_eq!(
        acks,
        [
            ("pillar-0".to_owned(), "success".to_owned(), None),
            ("pillar-1".to_owned(), "success".to_owned(), None),
            (
                "pillar-2".to_owned(),
                "failure".to_owned(),
                Some("health check failed: exit status 1".to_owned())
            ),
        ]
    );
    let text = env.ok(&["status", "--config", "fleet.toml", "--timeout", "5"]);
    for node in ["pillar-0", "pillar-1", "pillar-2"] {
        assert!(text.contains(node), "{text}");
    }
    for agent in agents {
        agent.abort();
    }
}

/// Critical tags (`docs/PROTOCOL.md` section 3): a directive whose `crit`
/// names a tag the agent does not implement is not counted, and `status`
/// says why; one whose `crit` names `rollout`, with a `rollout` tag, is
/// counted as its own proposal. `propose --rollout --node` always writes
/// the `crit` tag, and the result verifies.
#[test]
fn critical_tags_are_honoured_and_propose_writes_them() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let ann = env.keygen("ann");
    let (eve, fay) = (qube_e2e::keys(7), qube_e2e::keys(8));
    let npub = |k: &qube_agent::Keys| qube_agent::core::nip19::encode_npub(&k.public_key());
    let (eve_npub, fay_npub) = (npub(&eve), npub(&fay));
    let pairs = [
        ("ann", ann.as_str()),
        ("eve", eve_npub.as_str()),
        ("fay", fay_npub.as_str()),
    ];
    std::fs::write(
        env.path("fleet.toml"),
        common::config_toml(&relay.url, &pairs, 2),
    )
    .unwrap();
    let now = qube_agent::now();
    let unknown = qube_e2e::directive()
        .created_at(now)
        .hash(common::HASH)
        .push_tag("crit", &["no-such-tag"])
        .sign(&eve);
    let half = qube_e2e::directive()
        .created_at(now)
        .hash(common::HASH)
        .push_tag("crit", &["rollout"])
        .push_tag("rollout", &["50"])
        .sign(&fay);
    for event in [&unknown, &half] {
        let (accepted, why) = rt.block_on(qube_e2e::publish(&relay.url, event, &eve));
        assert!(accepted, "{why}");
    }
    let json = env.ok(&[
        "status",
        "--config",
        "fleet.toml",
        "--json",
        "--timeout",
        "5",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let refused = report["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{json}");
    assert_eq!(refused[0]["name"], "eve");
    assert_eq!(refused[0]["id"], unknown.id_hex());
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("critical tag \"no-such-tag\" is not implemented"),
        "{json}"
    );
    let counted: Vec<&str> = report["directives"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(counted, ["fay"], "{json}");
    let proposals = report["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), 1, "{json}");
    assert_eq!(proposals[0]["proposal"]["rollout"], 50, "{json}");
    let text = env.ok(&["status", "--config", "fleet.toml", "--timeout", "5"]);
    assert!(text.contains("refused: eve"), "{text}");

    // propose writes crit for the wave tags; the agent's rules accept it.
    env.ok(&common::propose_v123_args(&[
        "--rollout",
        "10",
        "--node",
        &fay_npub,
        "--name",
        "ann",
        "--passphrase-file",
        "pass",
        "--out",
        "wave.json",
    ]));
    let event: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("wave.json")).unwrap()).unwrap();
    let tags: Vec<Vec<String>> = serde_json::from_value(event["tags"].clone()).unwrap();
    let fay_hex = hex::encode(fay.public_key());
    for tag in [
        vec!["crit", "rollout", "node"],
        vec!["rollout", "10"],
        vec!["node", fay_hex.as_str()],
    ] {
        assert!(
            tags.iter().any(|t| *t == tag),
            "{tag:?} missing from {tags:?}"
        );
    }
    env.ok(&["verify", "wave.json", "--config", "fleet.toml"]);
    // An upgrade with an activation time (required_by).
    env.ok(&[
        "propose",
        "upgrade",
        "--version",
        "v1.2.4",
        "--network",
        "hqz",
        "--hash",
        common::HASH,
        "--required-by",
        "2030-01-01T00:00:00Z",
        "--name",
        "ann",
        "--passphrase-file",
        "pass",
        "--out",
        "timed.json",
    ]);
    let timed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("timed.json")).unwrap()).unwrap();
    let tags: Vec<Vec<String>> = serde_json::from_value(timed["tags"].clone()).unwrap();
    assert!(
        tags.iter().any(|t| *t == ["required_by", "1893456000"]),
        "{tags:?}"
    );
    env.ok(&["verify", "timed.json", "--config", "fleet.toml"]);
    let refused = env.run(&common::propose_v123_args(&[
        "--rollout",
        "0",
        "--name",
        "ann",
        "--passphrase-file",
        "pass",
        "--out",
        "bad.json",
    ]));
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

/// A headless Chromium (Debian's `chromium`, which `.ci/run` installs):
/// `None` when missing, unless `QUBE_REQUIRE_CHROMIUM` is set (CI), which
/// fails the test instead.
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("QUBE_REQUIRE_CHROMIUM").is_none(),
            "QUBE_REQUIRE_CHROMIUM is set but chromium is not installed"
        );
        eprintln!(
            "skipping the browser check: chromium is not installed (apt-get install chromium)"
        );
    }
    found
}

/// Staged rollout seen from govctl (`docs/PROTOCOL.md` section 5.8): three
/// agents with heartbeats on two relays and a fleet file. A 10 % wave that
/// names node 2 runs on node 2 and on node 0 (its hash), not on node 1;
/// `govctl status` exits 3 while a node in the wave has not acknowledged
/// success and 0 once all have, reporting each node's ack and heartbeat.
/// Then the upgrade for everyone runs on node 1 only. The `--html` page
/// renders in headless Chromium with a row per node and its status.
#[test]
fn a_wave_then_everyone_with_govctl_status_gating_and_the_html_page() {
    let rt = runtime();
    let (a, b) = rt.block_on(async { (start_relay(false).await, start_relay(false).await) });
    let env = Env::new();
    let voters = voters(&env, &["ann", "ben", "cid"]);
    let pairs = pairs(&voters);
    let both = format!("relays = [\"{}\", \"{}\"]", a.url, b.url);
    std::fs::write(
        env.path("fleet.toml"),
        common::config_toml(&a.url, &pairs, 2).replace(&format!("relays = [\"{}\"]", a.url), &both),
    )
    .unwrap();
    let node_keys: Vec<qube_agent::Keys> = (0..3u8).map(|i| qube_e2e::keys(50 + i)).collect();
    let mut roster = String::new();
    for (i, k) in node_keys.iter().enumerate() {
        roster.push_str(&format!(
            "[[nodes]]\nname = \"pillar-{i}\"\nnpub = \"{}\"\n\n",
            qube_agent::core::nip19::encode_npub(&k.public_key())
        ));
    }
    std::fs::write(env.path("nodes.toml"), roster).unwrap();

    // Node 2's hook takes 3 s, so the wave is incomplete for a while.
    let mut markers = Vec::new();
    let mut agents = Vec::new();
    for (i, keys) in node_keys.iter().enumerate() {
        let (relays, beat) = if i == 1 {
            (format!("\"{}\"", b.url), &b.url)
        } else {
            (format!("\"{}\", \"{}\"", a.url, b.url), &a.url)
        };
        let spec = NodeSpec {
            i,
            relays,
            key: Some(keys),
            hook_prefix: if i == 2 { "sleep 3\n" } else { "" },
            top: format!("\n[heartbeat]\nrelays = [\"{beat}\"]"),
            upgrade: "",
        };
        let (agent, marker) = start_node(&rt, &env, &pairs, &spec);
        agents.push(agent);
        markers.push(marker);
    }
    let runs = |i: usize| {
        std::fs::read_to_string(&markers[i])
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let status = || {
        env.run(&[
            "status",
            "--config",
            "fleet.toml",
            "--fleet",
            "nodes.toml",
            "--json",
            "--timeout",
            "5",
        ])
    };

    let named = qube_agent::core::nip19::encode_npub(&node_keys[2].public_key());
    let propose = |name: &str, wave: bool| {
        let extra = ["--rollout", "10", "--node", named.as_str()];
        common::propose_v123(
            &env,
            name,
            &[&a.url, &b.url],
            if wave { &extra } else { &[] },
        );
    };
    for name in ["ann", "ben"] {
        propose(name, true);
    }

    // Incomplete while node 2's hook runs: exit status 3.
    let first = status();
    assert_eq!(first.status.code(), Some(3), "{first:?}");
    assert!(
        common::stderr(&first).contains("wave incomplete"),
        "{}",
        common::stderr(&first)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let out = status();
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert!(Instant::now() < deadline, "never complete: {out:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!((runs(0), runs(1), runs(2)), (1, 0, 1));
    let fleet = &report["fleet"];
    assert_eq!(fleet["wave_complete"], true, "{report}");
    let nodes = fleet["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let expect = [
        (true, Some("success")),
        (false, None),
        (true, Some("success")),
    ];
    for (i, (node, (in_wave, ack))) in nodes.iter().zip(expect).enumerate() {
        assert_eq!(node["name"], format!("pillar-{i}"));
        assert_eq!(node["in_wave"], in_wave, "{node}");
        assert_eq!(node["ack"]["status"].as_str(), ack, "{node}");
        assert_eq!(
            node["heartbeat"]["node_id"],
            format!("pillar-{i}"),
            "{node}"
        );
        assert_eq!(node["heartbeat"]["stale"], false, "{node}");
    }

    // Everyone: node 1 now, nodes 0 and 2 not again.
    std::thread::sleep(Duration::from_secs(1));
    for name in ["ann", "ben"] {
        propose(name, false);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let out = status();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let everyone = report["decision"]["proposal"]["rollout"].is_null();
        if out.status.success() && everyone {
            break report;
        }
        assert!(Instant::now() < deadline, "never complete: {out:?}");
        std::thread::sleep(Duration::from_millis(300));
    };
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!((runs(0), runs(1), runs(2)), (1, 1, 1));
    for node in report["fleet"]["nodes"].as_array().unwrap() {
        assert_eq!(node["in_wave"], true, "{node}");
        assert_eq!(node["ack"]["status"], "success", "{node}");
    }

    // The page: a row per node with its status, in a real browser.
    env.ok(&[
        "status",
        "--config",
        "fleet.toml",
        "--fleet",
        "nodes.toml",
        "--html",
        "fleet.html",
        "--timeout",
        "5",
    ]);
    let html = std::fs::read_to_string(env.path("fleet.html")).unwrap();
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"));
    if let Some(browser) = chromium() {
        let url = format!("file://{}", env.path("fleet.html").display());
        let dom = std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap();
        let dom = String::from_utf8_lossy(&dom.stdout);
        for keys in &node_keys {
            let npub = qube_agent::core::nip19::encode_npub(&keys.public_key());
            assert!(
                dom.contains(&format!("data-node=\"{npub}\" data-status=\"success\"")),
                "{npub} has no success row in the rendered DOM:\n{dom}"
            );
        }
        assert!(dom.contains("Wave complete"), "{dom}");
        let shot = env.path("fleet.png");
        let out = std::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1400,500",
            ])
            .arg(format!("--screenshot={}", shot.display()))
            .arg(&url)
            .output()
            .unwrap();
        let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {out:?}"));
        assert_eq!(png.get(..8), Some(&b"\x89PNG\r\n\x1a\n"[..]));
        if let Some(keep) = std::env::var_os("QUBE_KEEP_SCREENSHOT") {
            std::fs::copy(&shot, keep).unwrap();
        }
    }
    for agent in agents {
        agent.abort();
    }
}

/// `govctl history --since` (the audit trail): a proposal whose directives
/// have expired is still listed, with its votes (marked expired) and the
/// node's acknowledgement.
#[test]
fn history_lists_an_expired_proposal_with_its_votes_and_acks() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let voters = voters(&env, &["ann", "ben"]);
    let pairs = pairs(&voters);
    std::fs::write(
        env.path("agent.toml"),
        common::config_toml(&relay.url, &pairs, 2),
    )
    .unwrap();
    let spec = NodeSpec {
        i: 0,
        relays: format!("\"{}\"", relay.url),
        key: None,
        hook_prefix: "",
        top: String::new(),
        upgrade: "",
    };
    let (agent, _) = start_node(&rt, &env, &pairs, &spec);
    let since = qube_agent::now() - 5;
    for name in ["ann", "ben"] {
        common::propose_v123(&env, name, &[&relay.url], &["--expires-in", "4s"]);
    }
    // After the votes expired: still in the history, with the node's ack.
    std::thread::sleep(Duration::from_secs(5));
    let since_text = since.to_string();
    let history = || {
        let json = env.ok(&[
            "history",
            "--config",
            "agent.toml",
            "--since",
            &since_text,
            "--json",
            "--timeout",
            "5",
        ]);
        serde_json::from_str::<serde_json::Value>(&json).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let report = history();
        if report["proposals"][0]["acks"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break report;
        }
        assert!(Instant::now() < deadline, "no ack in the history: {report}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let proposals = report["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), 1, "{report}");
    assert_eq!(proposals[0]["proposal"]["version"], "v1.2.3");
    let votes = proposals[0]["votes"].as_array().unwrap();
    let mut names: Vec<&str> = votes.iter().map(|v| v["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["ann", "ben"]);
    assert!(votes.iter().all(|v| v["expired"] == true), "{report}");
    let acks = proposals[0]["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0]["node_id"], "pillar-0");
    assert_eq!(acks[0]["status"], "success");
    // With a fleet file: the node that never answered is named.
    let silent = qube_agent::core::nip19::encode_npub(&qube_e2e::keys(61).public_key());
    std::fs::write(
        env.path("nodes.toml"),
        format!("[[nodes]]\nname = \"pillar-x\"\nnpub = \"{silent}\"\n"),
    )
    .unwrap();
    let json = env.ok(&[
        "history",
        "--config",
        "agent.toml",
        "--since",
        &since_text,
        "--fleet",
        "nodes.toml",
        "--json",
        "--timeout",
        "5",
    ]);
    let with_fleet: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        with_fleet["proposals"][0]["not_answered"],
        serde_json::json!(["pillar-x"]),
        "{json}"
    );
    assert_eq!(
        with_fleet["proposals"][0]["wave"][0]["in_wave"], true,
        "{json}"
    );
    let text = env.ok(&[
        "history",
        "--config",
        "agent.toml",
        "--since",
        &since_text,
        "--timeout",
        "5",
    ]);
    assert!(text.contains("upgrade \"v1.2.3\""), "{text}");
    assert!(text.contains("(expired "), "{text}");
    assert!(text.contains("ack pillar-0"), "{text}");
    // Before the window: nothing.
    let later = (qube_agent::now() + 60).to_string();
    let empty = env.ok(&[
        "history",
        "--config",
        "agent.toml",
        "--since",
        &later,
        "--json",
        "--timeout",
        "5",
    ]);
    let empty: serde_json::Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(empty["proposals"].as_array().unwrap().len(), 0, "{empty}");
    agent.abort();
}
