//! Against a real relay on loopback that demands NIP-42 for writes:
//! offline-signed directives published later with a separate publisher
//! key, directives published straight from `propose`, and `status`
//! tallying them and listing acknowledgements.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{runtime, start_relay, stderr, stdout, Env, HASH};
use qube_agent::core::ack::{Ack, Status};
use qube_agent::core::directive::{Directive, DirectiveRules};
use qube_agent::relay::{RelayEvent, RelayPool, RelayTarget};
use qube_agent::{Event, Filter, Keys, Limits};

fn load(env: &Env, name: &str) -> Event {
    let text = std::fs::read_to_string(env.path(name)).unwrap();
    Event::from_json(text.as_bytes(), &Limits::default()).unwrap()
}

/// The events the relay holds for `filter`.
async fn fetch(url: &str, filter: Filter) -> Vec<Event> {
    let rest = url.strip_prefix("ws://").unwrap();
    let (host, port) = rest.rsplit_once(':').unwrap();
    let target = RelayTarget {
        url: url.to_owned(),
        host: host.to_owned(),
        port: port.parse().unwrap(),
        tls: false,
    };
    let (_pool, mut rx) = RelayPool::start(vec![target], vec![filter], Default::default());
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(RelayEvent::Event { event, .. })) => events.push(event),
            Ok(Some(RelayEvent::EndOfStored { .. })) => return events,
            Ok(Some(_)) => {}
            other => panic!("relay did not answer: {other:?}"),
        }
    }
}

#[test]
fn offline_signed_directive_is_accepted_with_publisher_auth() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(true));
    let env = Env::new();
    let gov_npub = env.keygen("gov");
    env.plain_key("publisher.key");
    // Offline: sign to a file, no network.
    env.ok(&[
        "propose",
        "upgrade",
        "--version",
        "v1.2.3",
        "--network",
        "hqz",
        "--hash",
        HASH,
        "--name",
        "gov",
        "--passphrase-file",
        "pass",
        "--out",
        "upgrade.json",
    ]);
    let event = load(&env, "upgrade.json");

    // Without AUTH the relay refuses it, and govctl says what to do.
    let out = env.run(&[
        "publish",
        "upgrade.json",
        "--relay",
        &relay.url,
        "--timeout",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rejected: auth-required"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("hint: the relay wants NIP-42 authentication"),
        "{}",
        stderr(&out)
    );

    // With the publisher key (not the author) it is accepted.
    let out = env.run(&[
        "publish",
        "upgrade.json",
        "--relay",
        &relay.url,
        "--auth-key",
        "publisher.key",
    ]);
    common::assert_ok(&out, &["publish"]);
    let line = stdout(&out);
    assert!(
        line.starts_with(&format!("{}  {}  accepted", event.id_hex(), relay.url)),
        "{line}"
    );

    // The relay holds exactly the signed file's event.
    let stored = rt.block_on(fetch(
        &relay.url,
        Filter {
            ids: vec![event.id],
            ..Filter::default()
        },
    ));
    assert_eq!(stored, vec![event]);

    // A running qube-agent that follows `gov` (quorum 1) counts it: its
    // hook runs once.
    let (marker, hook) = common::version_hook(&env);
    let config = format!(
        "network = \"hqz\"\nquorum = 1\nrelays = [\"{}\"]\nstate_dir = {:?}\ncurrent_version = \"v0.0.1\"\n\
         [[follows]]\nname = \"gov\"\nnpub = \"{gov_npub}\"\nrole = \"voter\"\n\
         [upgrade]\ncommand = [{:?}]\n",
        relay.url,
        env.path("agent-state"),
        hook
    );
    let config = qube_agent::config::Config::from_toml_str(&config)
        .unwrap()
        .0;
    // The worker as a task of this test: the sandboxed worker binary
    // belongs to another package.
    let agent = {
        let _runtime = rt.enter();
        qube_e2e::start_agent_in_process(config)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not count the published directive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "v1.2.3\n");
    agent.abort();

    // A relay that is down: no answer, exit 1, the reason shown.
    let out = env.run(&[
        "publish",
        "upgrade.json",
        "--relay",
        "ws://127.0.0.1:9",
        "--timeout",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("no answer: connect to 127.0.0.1:9"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn status_tallies_directives_and_lists_acks() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(true));
    let env = Env::new();
    let voters = common::voters(&env, &["ann", "ben", "cid"]);
    let pairs = common::pairs(&voters);
    std::fs::write(
        env.path("agent.toml"),
        common::config_toml(&relay.url, &pairs, 2),
    )
    .unwrap();
    env.plain_key("publisher.key");

    // ann and ben publish the same upgrade straight from `propose` (the
    // signing key answers AUTH); cid names another artifact.
    for (name, hash) in [("ann", HASH), ("ben", HASH), ("cid", &"2".repeat(64))] {
        let out = env.run(&[
            "propose",
            "upgrade",
            "--version",
            "v1.2.3",
            "--network",
            "hqz",
            "--hash",
            hash,
            "--name",
            name,
            "--passphrase-file",
            "pass",
            "--relay",
            &relay.url,
        ]);
        common::assert_ok(&out, &["propose", name]);
        assert!(stdout(&out).contains("accepted"), "{}", stdout(&out));
    }

    // A node acknowledges the winning proposal.
    let directives: Vec<Directive> = rt
        .block_on(fetch(
            &relay.url,
            Filter {
                kinds: vec![33321],
                ..Filter::default()
            },
        ))
        .into_iter()
        .map(|e| Directive::from_event(e, &DirectiveRules::new("hqz"), qube_agent::now()).unwrap())
        .filter(|d| d.proposal().hash == HASH)
        .collect();
    assert_eq!(directives.len(), 2);
    let proposal = directives[0].proposal().clone();
    let node = Keys::generate().unwrap();
    let ack = node
        .sign(
            Ack {
                proposal: &proposal,
                directives: Ack::sources(&directives),
                d_tag: "hyperqube",
                status: Status::Success,
                error: None,
                node_id: "pillar-test",
                action_at: 1_800_000_000,
            }
            .to_unsigned(qube_agent::now()),
        )
        .unwrap();
    std::fs::write(env.path("ack.json"), ack.to_json()).unwrap();
    env.ok(&[
        "publish",
        "ack.json",
        "--relay",
        &relay.url,
        "--auth-key",
        "publisher.key",
    ]);

    let json = env.ok(&[
        "status",
        "--config",
        "agent.toml",
        "--json",
        "--timeout",
        "5",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["quorum"], 2);
    assert_eq!(report["voters"], 3);
    assert_eq!(report["relays"][0]["answered"], true);
    assert_eq!(report["directives"].as_array().unwrap().len(), 3);
    assert_eq!(report["decision"]["kind"], "run", "{json}");
    assert_eq!(report["decision"]["proposal"]["version"], "v1.2.3");
    assert_eq!(report["decision"]["proposal"]["hash"], HASH);
    let proposals = report["proposals"].as_array().unwrap();
    assert_eq!(proposals.len(), 2);
    let winner = proposals.iter().find(|p| p["votes"] == 2).unwrap();
    assert_eq!(winner["standing"], "runs");
    let mut names: Vec<&str> = winner["voter_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ann", "ben"]);
    let loser = proposals.iter().find(|p| p["votes"] == 1).unwrap();
    assert_eq!(loser["eligible"], false);
    assert_eq!(loser["voter_names"][0], "cid");
    let acks = report["acks"].as_array().unwrap();
    assert_eq!(acks.len(), 1, "{json}");
    assert_eq!(acks[0]["node_id"], "pillar-test");
    assert_eq!(acks[0]["status"], "success");
    assert_eq!(acks[0]["action_at"], 1_800_000_000);

    let text = env.ok(&["status", "--config", "agent.toml", "--timeout", "5"]);
    assert!(
        text.contains("decision: runs upgrade v1.2.3 hash 1111"),
        "{text}"
    );
    assert!(text.contains("2 vote(s): ann, ben"), "{text}");
    assert!(text.contains("pillar-test"), "{text}");
    assert!(text.contains("2027-01-15T08:00:00Z"), "{text}");

    // Without a config every author counts and the quorum is a majority.
    let json = env.ok(&[
        "status",
        "--relay",
        &relay.url,
        "--network",
        "hqz",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["voters"], 3);
    assert_eq!(report["quorum"], 2);
    assert_eq!(report["decision"]["kind"], "run");

    // Another network: nothing there.
    let json = env.ok(&[
        "status",
        "--config",
        "agent.toml",
        "--network",
        "other",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["decision"]["kind"], "nothing", "{json}");
}
