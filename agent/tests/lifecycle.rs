//! The execution lifecycle against the real `qube-agent run` binary (its
//! worker sandboxed) and real relays with qubestr's rules
//! (`docs/PROTOCOL.md` section 12): a hook runs on its own task, so the
//! monitor keeps serving meanwhile; SIGTERM during a hook lets it finish
//! and journals its real outcome.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use qube_agent::config::Config;
use qube_agent::state::journal::{inspect, Entry};
use qube_agent::{Event, Keys, Limits};
use qube_e2e::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const AGENT: &str = env!("CARGO_BIN_EXE_qube-agent");

/// `qube-agent run` as a process of its own; killed (by pid) when dropped
/// if it is still running.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(node: &Node, config_toml: &str) -> Agent {
        let config = node.dir.path().join("config.toml");
        std::fs::write(&config, config_toml).unwrap();
        let log = node.dir.path().join(format!("agent-{}.log", now_nanos()));
        let child = Command::new(AGENT)
            .args(["run", "--config"])
            .arg(&config)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// Waits up to `within` for the process to exit.
    fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The agent's status, as `qube-agent status` computes it.
/// `None` before the agent created its state directory.
fn status(config: &Config) -> Option<qube_agent::report::StatusReport> {
    qube_agent::report::status(Path::new("config.toml"), config, &[], now()).ok()
}

/// Waits until the running agent decides (its worker delivered the relays'
/// stored directives).
async fn wait_deciding(config: &Config, agent: &Agent) {
    let deciding = wait_until(Duration::from_secs(20), || {
        status(config)
            .and_then(|s| s.runtime)
            .is_some_and(|r| r.deciding == Some(true))
    })
    .await;
    assert!(deciding, "the agent never decided:\n{}", agent.log());
}

/// Starts the agent with `toml`, waits until it decides, then publishes
/// directives for v1.2.3 from the first two of `gov` (a 2-of-3 quorum)
/// on `relay`.
async fn start_and_vote(node: &Node, toml: &str, relay: &str, gov: &[Keys]) -> (Agent, Config) {
    let config = Config::from_toml_str(toml).unwrap().0;
    let agent = Agent::start(node, toml);
    wait_deciding(&config, &agent).await;
    let publisher = keys(9);
    for g in &gov[..2] {
        let d = directive().created_at(now()).version("v1.2.3").sign(g);
        assert!(publish(relay, &d, &publisher).await.0);
    }
    (agent, config)
}

/// The node's acknowledgement on the relay at `url`, within 15 s; panics
/// with `agent`'s log otherwise.
async fn node_ack(url: &str, node: &Node, agent: &Agent) -> Event {
    fetch_one(
        url,
        ack_filter(&node.node_keys.public_key()),
        Duration::from_secs(15),
    )
    .await
    .unwrap_or_else(|| panic!("no acknowledgement on {url}:\n{}", agent.log()))
}

/// Lines of the file the test hooks write `start V` / `end V` to.
fn steps(node: &Node) -> Vec<String> {
    lines(node, "steps")
}

/// Lines of the file `name` in the node's directory (none when absent).
fn lines(node: &Node, name: &str) -> Vec<String> {
    std::fs::read_to_string(node.dir.path().join(name))
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The nanosecond timestamp a test hook wrote as `VERSION NANOS` for
/// `version` into the file `name`, if it did.
fn stamp(node: &Node, name: &str, version: &str) -> Option<u128> {
    lines(node, name).iter().find_map(|l| {
        let (v, t) = l.split_once(' ')?;
        (v == version).then(|| t.parse().ok()).flatten()
    })
}

/// The `[reboot]` section `Node::config_toml` writes, replaced by the
/// deadline tests.
const FALSE_REBOOT: &str = "[reboot]\ncommand = [\"/bin/false\"]\n";

/// A reboot directive for `version`, due at `required_by`.
fn reboot(version: &str, required_by: u64) -> EventBuilder {
    directive()
        .action("reboot")
        .version(version)
        .genesis_url("https://genesis.example/hqz.json")
        .required_by(required_by)
        .created_at(now())
}

/// The acknowledgement `node` published for `version` on `url`, within 15 s.
async fn ack_for(url: &str, node: &Node, version: &str) -> Option<Event> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let acks = fetch_stored(
            url,
            ack_filter(&node.node_keys.public_key()),
            Duration::from_secs(5),
        )
        .await;
        if let Some(ack) = acks
            .into_iter()
            .find(|a| tag_values(a, "version") == [version])
        {
            return Some(ack);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A hook that logs its start and end, sleeping `secs` for v1.2.3 only.
fn slow_hook(secs: u64) -> Node {
    Node::with_hook(&format!(
        "steps=\"$(dirname \"$0\")/steps\"\necho \"start $QUBE_VERSION\" >> \"$steps\"\nif [ \"$QUBE_VERSION\" = v1.2.3 ]; then sleep {secs}; fi\necho \"end $QUBE_VERSION\" >> \"$steps\""
    ))
}

/// A relay that answers REQ with EOSE, sends a NIP-42 challenge `after`
/// the connection opened, and reports each AUTH event it receives (with
/// when it arrived).
async fn late_challenger(
    after: Duration,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(Instant, Event)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let challenge_at = tokio::time::sleep(after);
                tokio::pin!(challenge_at);
                let mut challenged = false;
                loop {
                    tokio::select! {
                        () = &mut challenge_at, if !challenged => {
                            challenged = true;
                            let auth = Message::text(r#"["AUTH","late-challenge"]"#);
                            if ws.send(auth).await.is_err() {
                                return;
                            }
                        }
                        frame = ws.next() => {
                            let Some(Ok(Message::Text(text))) = frame else { return };
                            let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                            match value[0].as_str() {
                                Some("REQ") => {
                                    let eose = format!(r#"["EOSE",{}]"#, value[1]);
                                    if ws.send(Message::text(eose)).await.is_err() {
                                        return;
                                    }
                                }
                                Some("AUTH") => {
                                    let event = Event::from_json(
                                        value[1].to_string().as_bytes(),
                                        &Limits::default(),
                                    )
                                    .unwrap();
                                    let ok = format!(r#"["OK","{}",true,""]"#, event.id_hex());
                                    let _ = tx.send((Instant::now(), event));
                                    if ws.send(Message::text(ok)).await.is_err() {
                                        return;
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

/// The journal's records: (action version, outcome status) per finished
/// run, in order.
fn journal_outcomes(node: &Node) -> Vec<(String, String)> {
    let path = node
        .dir
        .path()
        .join("state")
        .join(qube_agent::state::JOURNAL_FILE);
    let inspection = inspect(&path).unwrap();
    let mut started = std::collections::HashMap::new();
    let mut out = Vec::new();
    for record in inspection.records {
        match record.entry {
            Entry::Started { proposal, .. } => {
                started.insert(record.seq, proposal.version.clone());
            }
            Entry::Outcome {
                seq_started: seq,
                status,
                ..
            } => {
                let version = started.get(&seq).cloned().unwrap_or_default();
                out.push((version, status.as_str().to_owned()));
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_serves_while_a_hook_runs_and_actions_take_turns() {
    let relay = start_relay(false).await;
    let (challenger, mut auths) = late_challenger(Duration::from_secs(8)).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = slow_hook(20);
    let voters = [&gov[0], &gov[1], &gov[2]];
    let toml = node.config_toml(
        &[&relay.url, &challenger],
        &voters,
        2,
        "",
        "timeout_secs = 60\n",
    );
    let config = Config::from_toml_str(&toml).unwrap().0;
    let agent = Agent::start(&node, &toml);
    wait_deciding(&config, &agent).await;

    let publisher = keys(9);
    let t = now();
    for g in &gov[..2] {
        let d = directive().created_at(t).version("v1.2.3").sign(g);
        assert!(publish(&relay.url, &d, &publisher).await.0);
    }
    let started = wait_until(Duration::from_secs(10), || steps(&node).len() == 1).await;
    assert!(started, "the first hook did not start:\n{}", agent.log());

    // While it runs (20 s): a second quorum for v1.3.0 arrives and is
    // tallied, and a relay's NIP-42 challenge is answered.
    for g in [&gov[0], &gov[2]] {
        let d = directive().created_at(t + 1).version("v1.3.0").sign(g);
        assert!(publish(&relay.url, &d, &publisher).await.0);
    }
    let tallied = wait_until(Duration::from_secs(5), || {
        status(&config)
            .unwrap()
            .proposals
            .iter()
            .any(|p| p.proposal.version == "v1.3.0" && p.votes == 2)
    })
    .await;
    assert!(
        tallied,
        "v1.3.0 was not tallied during the hook:\n{}",
        agent.log()
    );
    assert_eq!(
        steps(&node),
        ["start v1.2.3"],
        "tallied only after the hook"
    );
    let (answered_at, auth) = tokio::time::timeout(Duration::from_secs(15), auths.recv())
        .await
        .expect("no AUTH answer within 15 s")
        .unwrap();
    assert_eq!(tag_values(&auth, "challenge"), ["late-challenge"]);
    assert_eq!(tag_values(&auth, "relay"), [challenger.as_str()]);
    assert_eq!(auth.pubkey, node.node_keys.public_key());
    assert_eq!(
        steps(&node),
        ["start v1.2.3"],
        "the AUTH was answered only after the hook ({:?} ago)",
        answered_at.elapsed()
    );
    assert!(
        status(&config)
            .and_then(|s| s.runtime)
            .and_then(|r| r.running)
            .is_some_and(|r| r.contains("v1.2.3")),
        "status does not show the running hook"
    );

    // The second action runs after the first, not beside it.
    let both = wait_until(Duration::from_secs(40), || steps(&node).len() == 4).await;
    assert!(both, "{:?}\n{}", steps(&node), agent.log());
    assert_eq!(
        steps(&node),
        ["start v1.2.3", "end v1.2.3", "start v1.3.0", "end v1.3.0"]
    );
    let outcomes = wait_until(Duration::from_secs(5), || {
        journal_outcomes(&node).len() == 2
    })
    .await;
    assert!(outcomes, "{:?}", journal_outcomes(&node));
    assert_eq!(
        journal_outcomes(&node),
        [
            ("v1.2.3".to_owned(), "success".to_owned()),
            ("v1.3.0".to_owned(), "success".to_owned())
        ]
    );
    let ack = node_ack(&relay.url, &node, &agent).await;
    assert_eq!(tag_values(&ack, "status"), ["success"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_hook_lets_it_finish_and_journals_the_outcome() {
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = slow_hook(4);
    let voters = [&gov[0], &gov[1], &gov[2]];
    let toml = node.config_toml(&[&relay.url], &voters, 2, "", "timeout_secs = 30\n");
    let (mut agent, _config) = start_and_vote(&node, &toml, &relay.url, &gov).await;
    let started = wait_until(Duration::from_secs(10), || steps(&node).len() == 1).await;
    assert!(started, "the hook did not start:\n{}", agent.log());

    agent.terminate();
    // Still there while the hook runs.
    assert!(
        agent.wait(Duration::from_secs(1)).is_none(),
        "{}",
        agent.log()
    );
    let exit = agent.wait(Duration::from_secs(15)).expect("did not exit");
    assert_eq!(exit.code(), Some(0), "{}", agent.log());
    assert_eq!(steps(&node), ["start v1.2.3", "end v1.2.3"]);
    assert_eq!(
        journal_outcomes(&node),
        [("v1.2.3".to_owned(), "success".to_owned())]
    );
    assert!(
        agent.log().contains("after the running upgrade hook"),
        "{}",
        agent.log()
    );

    // At the next start the ack goes out and nothing runs again.
    let mut again = Agent::start(&node, &toml);
    let ack = node_ack(&relay.url, &node, &again).await;
    assert_eq!(tag_values(&ack, "status"), ["success"]);
    assert_eq!(tag_values(&ack, "version"), ["v1.2.3"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node.runs().len(), 1, "ran again after restart");
    again.terminate();
    let exit = again.wait(Duration::from_secs(5)).expect("did not exit");
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_is_acknowledged_with_its_voters_even_after_a_config_change() {
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    // The hook outlives the agent's SIGKILL by 2 s, then ends by itself.
    let node = slow_hook(2);
    let toml = node.config_toml(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        "",
        "timeout_secs = 30\n",
    );
    let (mut agent, _config) = start_and_vote(&node, &toml, &relay.url, &gov).await;
    let started = wait_until(Duration::from_secs(10), || steps(&node).len() == 1).await;
    assert!(started, "the hook did not start:\n{}", agent.log());
    // The agent dies mid-hook.
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();

    // The operator removes the second voter before the restart.
    let toml = node.config_toml(
        &[&relay.url],
        &[&gov[0], &gov[2]],
        2,
        "",
        "timeout_secs = 30\n",
    );
    let again = Agent::start(&node, &toml);
    let ack = node_ack(&relay.url, &node, &again).await;
    assert_eq!(tag_values(&ack, "status"), ["failure"]);
    assert_eq!(tag_values(&ack, "error"), ["interrupted"]);
    let mut voters = vec![
        hex::encode(gov[0].public_key()),
        hex::encode(gov[1].public_key()),
    ];
    voters.sort();
    assert_eq!(
        tag_values(&ack, "p"),
        voters,
        "the removed voter is still named"
    );
    assert_eq!(tag_values(&ack, "a").len(), 2);
    qubestr_check(ack.kind, &ack.tags, &ack.content).unwrap();
    assert_eq!(
        journal_outcomes(&node),
        [("v1.2.3".to_owned(), "failure".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_was_down_gets_the_ack_when_it_comes_back() {
    let relay = start_relay(false).await;
    let late = dead_port_url().await;
    let late_port: u16 = late.rsplit(':').next().unwrap().parse().unwrap();
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = slow_hook(0);
    let toml = node.config_toml(
        &[&relay.url, &late],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        "",
        "",
    );
    let (agent, config) = start_and_vote(&node, &toml, &relay.url, &gov).await;
    let node_pk = node.node_keys.public_key();
    let ack = node_ack(&relay.url, &node, &agent).await;
    // Stored by the first relay, still queued for the one that is down.
    let pending = wait_until(Duration::from_secs(5), || {
        status(&config)
            .is_some_and(|s| s.outbox.len() == 1 && s.outbox[0].delivered_to == [relay.url.clone()])
    })
    .await;
    assert!(pending, "{:?}", status(&config).map(|s| s.outbox));

    // The relay comes back at its URL: it gets the same ack, and the
    // outbox empties.
    let back = start_relay_on(Some(late_port), false).await;
    assert_eq!(back.url, late);
    let again = fetch_one(&late, ack_filter(&node_pk), Duration::from_secs(40))
        .await
        .unwrap_or_else(|| panic!("the late relay never got the ack:\n{}", agent.log()));
    assert_eq!(again.id, ack.id);
    let empty = wait_until(Duration::from_secs(5), || {
        status(&config).is_some_and(|s| s.outbox.is_empty())
    })
    .await;
    assert!(empty, "{:?}", status(&config).map(|s| s.outbox));
    assert_eq!(node.runs().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_journal_stops_the_agent_until_a_journaled_reset() {
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = slow_hook(0);
    let toml = node.config_toml(&[&relay.url], &[&gov[0], &gov[1], &gov[2]], 2, "", "");
    let (mut agent, config) = start_and_vote(&node, &toml, &relay.url, &gov).await;
    assert!(
        wait_until(Duration::from_secs(10), || journal_outcomes(&node).len()
            == 1)
        .await
    );
    agent.terminate();
    assert_eq!(agent.wait(Duration::from_secs(5)).unwrap().code(), Some(0));

    // The journal is lost; the quorum still stands on the relay.
    let journal = node
        .dir
        .path()
        .join("state")
        .join(qube_agent::state::JOURNAL_FILE);
    std::fs::remove_file(&journal).unwrap();
    let mut refused = Agent::start(&node, &toml);
    let exit = refused.wait(Duration::from_secs(10)).expect("did not exit");
    assert_eq!(exit.code(), Some(1));
    let log = refused.log();
    assert!(
        log.contains("journal") && log.contains("is missing") && log.contains("qube-agent reset"),
        "{log}"
    );
    assert!(!journal.exists(), "the refused start created a journal");

    let config_path = node.dir.path().join("config.toml");
    let reset = |reason: &str| {
        Command::new(AGENT)
            .args(["reset", "--config"])
            .arg(&config_path)
            .args(["--reason", reason])
            .output()
            .unwrap()
    };
    let bad = reset("");
    assert_eq!(bad.status.code(), Some(1));
    let out = reset("disk replaced");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 proposal(s)") && text.contains("1.2.3"),
        "{text}"
    );
    // It never replaces a journal.
    let again = reset("twice");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert_eq!(
        journal_outcomes(&node),
        [("v1.2.3".to_owned(), "failure".to_owned())]
    );

    // Now it starts, and the standing quorum does not run again.
    let mut after = Agent::start(&node, &toml);
    wait_deciding(&config, &after).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        node.runs().len(),
        1,
        "ran again after the reset:\n{}",
        after.log()
    );
    after.terminate();
    assert_eq!(after.wait(Duration::from_secs(5)).unwrap().code(), Some(0));
}

/// Synchronized reboot (`docs/PROTOCOL.md` section 12, "Deadlines"):
/// three agents with three node keys on one host, a 2-of-3 reboot due in
/// 5 s. Each node pre-stages (`fetch`) as soon as the quorum holds, shows
/// the schedule in `status`, and starts `command` from its timer at the
/// deadline: every hook starts at or after it, all three within 1 s. The
/// same kind of reboot whose quorum comes after its deadline is refused
/// with `deadline passed` on every node and runs nothing. Rounds:
/// `QUBE_SYNC_ROUNDS` (default 2); each prints the measured spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_with_a_deadline_starts_on_every_node_within_a_second() {
    let relay = start_relay(false).await;
    let gov = [keys(1), keys(2), keys(3)];
    let voters: Vec<&Keys> = gov.iter().collect();
    let rounds: u32 = std::env::var("QUBE_SYNC_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let record = |file: &str| {
        format!("echo \"$QUBE_VERSION $(date +%s%N)\" >> \"$(dirname \"$0\")/{file}\"")
    };
    let nodes: Vec<Node> = (0..3u8)
        .map(|i| Node::numbered(&record("starts"), 50 + i))
        .collect();
    let mut agents = Vec::new();
    let mut configs = Vec::new();
    for node in &nodes {
        let fetch = node.dir.path().join("fetch.sh");
        std::fs::write(&fetch, format!("#!/bin/sh\n{}\n", record("fetches"))).unwrap();
        std::fs::set_permissions(&fetch, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let toml = node.config_toml(&[&relay.url], &voters, 2, "", "").replace(
            FALSE_REBOOT,
            &format!(
                "[reboot]\ncommand = [{:?}]\nfetch = [{fetch:?}]\ntimeout_secs = 10\n",
                node.dir.path().join("upgrade.sh")
            ),
        );
        assert!(toml.contains("fetch.sh"), "{toml}");
        configs.push(Config::from_toml_str(&toml).unwrap().0);
        agents.push(Agent::start(node, &toml));
    }
    for (config, agent) in configs.iter().zip(&agents) {
        wait_deciding(config, agent).await;
    }
    let logs = |agents: &[Agent]| {
        agents
            .iter()
            .map(Agent::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let publisher = keys(9);
    for round in 0..rounds {
        let version = format!("v1.0.{round}");
        let deadline = now() + 5;
        let deadline_ns = u128::from(deadline) * 1_000_000_000;
        for g in &gov[..2] {
            assert!(
                publish(&relay.url, &reboot(&version, deadline).sign(g), &publisher)
                    .await
                    .0
            );
        }
        // Scheduled and pre-staged on every node before the deadline.
        let staged = wait_until(Duration::from_secs(4), || {
            configs.iter().all(|c| {
                status(c)
                    .and_then(|s| s.runtime)
                    .and_then(|r| r.scheduled)
                    .is_some_and(|s| s.at == deadline && s.prestage == "ready")
            })
        })
        .await;
        assert!(staged, "not scheduled everywhere:\n{}", logs(&agents));
        let ran = wait_until(Duration::from_secs(15), || {
            nodes.iter().all(|n| stamp(n, "starts", &version).is_some())
        })
        .await;
        assert!(ran, "a hook did not run:\n{}", logs(&agents));
        let starts: Vec<u128> = nodes
            .iter()
            .map(|n| stamp(n, "starts", &version).unwrap())
            .collect();
        for node in &nodes {
            let fetched = stamp(node, "fetches", &version).unwrap();
            assert!(
                fetched < deadline_ns,
                "fetch ran at the deadline, not before"
            );
        }
        for &start in &starts {
            assert!(start >= deadline_ns, "a hook started before its deadline");
        }
        let (first, last) = (starts.iter().min().unwrap(), starts.iter().max().unwrap());
        let spread_ms = (last - first) as f64 / 1e6;
        eprintln!(
            "round {round}: first hook {:.1} ms after the deadline, spread {spread_ms:.1} ms",
            (first - deadline_ns) as f64 / 1e6
        );
        assert!(spread_ms < 1000.0, "spread {spread_ms} ms");
        for node in &nodes {
            let ack = ack_for(&relay.url, node, &version).await.unwrap();
            assert_eq!(tag_values(&ack, "status"), ["success"]);
        }
    }

    // A quorum first reached after the deadline (grace 0): refused.
    for g in &gov[..2] {
        let late = reboot("v1.1.0", now() - 30).sign(g);
        assert!(publish(&relay.url, &late, &publisher).await.0);
    }
    for node in &nodes {
        let ack = ack_for(&relay.url, node, "v1.1.0")
            .await
            .unwrap_or_else(|| {
                panic!("no ack for the late reboot:\n{}", logs(&agents));
            });
        assert_eq!(tag_values(&ack, "status"), ["failure"]);
        assert_eq!(tag_values(&ack, "error"), ["deadline passed"]);
        assert_eq!(stamp(node, "starts", "v1.1.0"), None);
        assert_eq!(stamp(node, "fetches", "v1.1.0"), None);
        assert_eq!(
            journal_outcomes(node).last().unwrap(),
            &("v1.1.0".to_owned(), "failure".to_owned())
        );
    }
}

/// An upgrade with an activation time (`required_by`) pre-stages at once:
/// an artifact with the wrong hash fails the run and is acknowledged
/// before the deadline, and `command` never runs. A schedule follows the
/// vote: when a voter changes its vote before the deadline, the action is
/// dropped and nothing runs when the time comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_upgrade_fails_early_on_a_bad_artifact_and_follows_the_vote() {
    let relay = start_relay(false).await;
    let gov = [keys(1), keys(2), keys(3)];
    let voters: Vec<&Keys> = gov.iter().collect();
    let node = Node::default();
    let artifact = |v: &str| node.dir.path().join(format!("artifact-{v}"));
    std::fs::write(artifact("v1.2.3"), "not the voted artifact").unwrap();
    std::fs::write(artifact("v1.3.0"), "the voted artifact").unwrap();
    let good_hash = hex::encode(qube_agent::artifact::sha256_file(&artifact("v1.3.0")).unwrap());
    let template = node.dir.path().join("artifact-{version}");
    let toml = node.config_toml(
        &[&relay.url],
        &voters,
        2,
        "",
        &format!("artifact = {:?}\n", template.display().to_string()),
    );
    let config = Config::from_toml_str(&toml).unwrap().0;
    let agent = Agent::start(&node, &toml);
    wait_deciding(&config, &agent).await;
    let publisher = keys(9);

    // Wrong artifact: acknowledged as a failure long before the deadline.
    let deadline = now() + 30;
    for g in &gov[..2] {
        let d = directive()
            .version("v1.2.3")
            .required_by(deadline)
            .created_at(now())
            .sign(g);
        assert!(publish(&relay.url, &d, &publisher).await.0);
    }
    let ack = ack_for(&relay.url, &node, "v1.2.3")
        .await
        .unwrap_or_else(|| {
            panic!("no early ack:\n{}", agent.log());
        });
    assert!(now() < deadline, "the failure waited for the deadline");
    assert_eq!(tag_values(&ack, "status"), ["failure"]);
    assert_eq!(tag_values(&ack, "error"), ["hash mismatch"]);
    assert!(node.runs().is_empty(), "command ran: {:?}", node.runs());

    // A good artifact is scheduled; a changed vote drops the schedule.
    // (created_at in the future: newer than the votes of this second.)
    let deadline = now() + 4;
    for (i, g) in gov[..2].iter().enumerate() {
        let d = directive()
            .version("v1.3.0")
            .hash(&good_hash)
            .required_by(deadline)
            .created_at(now() + 1 + u64::try_from(i).unwrap())
            .sign(g);
        assert!(publish(&relay.url, &d, &publisher).await.0);
    }
    let scheduled = |want: bool| {
        let config = &config;
        move || {
            status(config)
                .and_then(|s| s.runtime)
                .is_some_and(|r| r.scheduled.is_some() == want)
        }
    };
    assert!(
        wait_until(Duration::from_secs(3), scheduled(true)).await,
        "v1.3.0 was not scheduled:\n{}",
        agent.log()
    );
    let changed = directive()
        .version("v1.3.0")
        .hash(HASH)
        .required_by(deadline)
        .created_at(now() + 3)
        .sign(&gov[1]);
    assert!(publish(&relay.url, &changed, &publisher).await.0);
    assert!(
        wait_until(Duration::from_secs(3), scheduled(false)).await,
        "the schedule outlived its quorum:\n{}",
        agent.log()
    );
    tokio::time::sleep_until(
        tokio::time::Instant::now() + Duration::from_secs(deadline + 2 - now()),
    )
    .await;
    assert!(node.runs().is_empty(), "command ran: {:?}", node.runs());
    assert_eq!(
        journal_outcomes(&node),
        [("v1.2.3".to_owned(), "failure".to_owned())]
    );
    // The log says which schedule was dropped, and why.
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("v1.3.0") && l.contains("unscheduled:")),
        "{log}"
    );
}

/// Runs `qube-agent ARGS... --config <node's config>` to completion.
fn agent_command(node: &Node, args: &[&str]) -> std::process::Output {
    Command::new(AGENT)
        .args(args)
        .arg("--config")
        .arg(node.dir.path().join("config.toml"))
        .output()
        .unwrap()
}

/// `qube-agent retry` (`docs/PROTOCOL.md` section 12): after a failed run,
/// exactly one more run, shown in `status` until it happens; refused while
/// one is already allowed and after a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_allows_exactly_one_more_run_after_a_failure() {
    let relay = start_relay(false).await;
    let gov = [keys(1), keys(2), keys(3)];
    let voters: Vec<&Keys> = gov.iter().collect();
    let node = Node::with_hook("if [ -e \"$(dirname \"$0\")/fail\" ]; then exit 1; fi");
    let fail = node.dir.path().join("fail");
    std::fs::write(&fail, "").unwrap();
    let toml = node.config_toml(&[&relay.url], &voters, 2, "", "");
    let (mut agent, config) = start_and_vote(&node, &toml, &relay.url, &gov).await;
    let failed = wait_until(Duration::from_secs(15), || {
        journal_outcomes(&node).len() == 1
    })
    .await;
    assert!(failed, "{}", agent.log());
    assert_eq!(
        journal_outcomes(&node),
        [("v1.2.3".to_owned(), "failure".to_owned())]
    );
    agent.terminate();
    assert!(agent.wait(Duration::from_secs(10)).is_some());

    std::fs::remove_file(&fail).unwrap();
    let out = agent_command(&node, &["retry", "v1.2.3", "--reason", "mirror fixed"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("one more run allowed"), "{stdout}");
    assert_eq!(status(&config).unwrap().retries_allowed.len(), 1);
    let shown = agent_command(&node, &["status"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("retry:       one more run allowed"),
        "{shown:?}"
    );
    let again = agent_command(&node, &["retry", "v1.2.3", "--reason", "again"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already allowed"),
        "{again:?}"
    );

    // The one more run.
    let mut agent = Agent::start(&node, &toml);
    let ran = wait_until(Duration::from_secs(20), || {
        journal_outcomes(&node).len() == 2
    })
    .await;
    assert!(ran, "{}", agent.log());
    assert_eq!(
        journal_outcomes(&node),
        [
            ("v1.2.3".to_owned(), "failure".to_owned()),
            ("v1.2.3".to_owned(), "success".to_owned())
        ]
    );
    assert_eq!(node.runs().len(), 2);
    assert!(status(&config).unwrap().retries_allowed.is_empty());
    agent.terminate();
    assert!(agent.wait(Duration::from_secs(10)).is_some());

    // After a success: refused, and nothing runs again.
    let refused = agent_command(&node, &["retry", "v1.2.3", "--reason", "once more"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("succeeded"),
        "{refused:?}"
    );
    let agent = Agent::start(&node, &toml);
    wait_deciding(&config, &agent).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(node.runs().len(), 2, "{}", agent.log());
}

/// A fresh node that knows no installed version (no `current_version`,
/// no `version_command`, nothing recorded) refuses upgrades even with
/// their quorum, and says why in `status` and the log; `version_command`
/// supplies the version, and the upgrade then runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_need_a_known_installed_version() {
    let relay = start_relay(false).await;
    let gov = [keys(1), keys(2), keys(3)];
    let voters: Vec<&Keys> = gov.iter().collect();
    let node = Node::default();
    let unknown = node
        .config_toml(&[&relay.url], &voters, 2, "", "")
        .replace("current_version = \"v0.0.1\"\n", "");
    assert!(!unknown.contains("current_version"), "{unknown}");
    let (mut agent, config) = start_and_vote(&node, &unknown, &relay.url, &gov).await;
    let refused = wait_until(Duration::from_secs(10), || {
        status(&config).is_some_and(|s| {
            s.proposals
                .iter()
                .any(|p| p.proposal.version == "v1.2.3" && p.standing == "installed_unknown")
        })
    })
    .await;
    assert!(refused, "{}", agent.log());
    let logged = wait_until(Duration::from_secs(5), || {
        agent
            .log()
            .contains("upgrades are refused while the installed version is unknown")
    })
    .await;
    assert!(logged, "{}", agent.log());
    assert!(node.runs().is_empty());
    agent.terminate();
    assert!(agent.wait(Duration::from_secs(10)).is_some());

    let version = node.dir.path().join("version.sh");
    std::fs::write(&version, "#!/bin/sh\necho v1.0.0\n").unwrap();
    std::fs::set_permissions(
        &version,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let known = unknown.replace(
        "node_id = \"pillar-test\"\n",
        &format!("node_id = \"pillar-test\"\nversion_command = [{version:?}]\n"),
    );
    let agent = Agent::start(&node, &known);
    let ran = wait_until(Duration::from_secs(15), || node.runs().len() == 1).await;
    assert!(ran, "{}", agent.log());
    assert!(
        agent
            .log()
            .contains("version_command: installed version 1.0.0"),
        "{}",
        agent.log()
    );
}

/// Writes a journal just over `ROTATE_BYTES` in the documented format: the
/// first run is `v1.2.3` with [`HASH`] (success), then failed runs of
/// `v0.N.0` with long errors. Returns its length in bytes.
fn write_full_journal(path: &Path) -> u64 {
    use qube_agent::state::journal::ROTATE_BYTES;
    use sha2::Digest;
    let mut out: Vec<u8> = Vec::new();
    let mut prev = [0u8; 32];
    let mut seq = 1u64;
    let long_error = "x".repeat(4000);
    let mut i = 0u64;
    while u64::try_from(out.len()).unwrap() <= ROTATE_BYTES + 8192 {
        let version = if i == 0 {
            "v1.2.3".to_owned()
        } else {
            format!("v0.{i}.0")
        };
        let started = serde_json::json!({"started": {"proposal": {
            "action": "upgrade", "network": "hqz", "version": version, "hash": HASH},
            "directive_ids": []}});
        let outcome = if i == 0 {
            serde_json::json!({"outcome": {"seq_started": seq, "status": "success"}})
        } else {
            serde_json::json!({"outcome": {"seq_started": seq, "status": "failure",
                "error": long_error}})
        };
        for entry in [started, outcome] {
            let line = serde_json::json!({"seq": seq, "prev": hex::encode(prev),
                "at": 1_700_000_000u64, "entry": entry})
            .to_string();
            prev = sha2::Sha256::digest(line.as_bytes()).into();
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            seq += 1;
        }
        i += 1;
    }
    std::fs::write(path, &out).unwrap();
    u64::try_from(out.len()).unwrap()
}

/// A full journal rotates into a checkpoint before the next run, the full
/// one kept beside it, and the checkpoint still refuses a proposal that
/// ran before the rotation (anti-rollback off, so only the journal stands
/// in the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_journal_rotates_and_still_refuses_what_ran_before() {
    let relay = start_relay(false).await;
    let gov = [keys(1), keys(2), keys(3)];
    let voters: Vec<&Keys> = gov.iter().collect();
    let node = Node::default();
    let state = node.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let full_len = write_full_journal(&state.join(qube_agent::state::JOURNAL_FILE));
    let toml = node.config_toml(
        &[&relay.url],
        &voters,
        2,
        "[policy]\nallow_downgrade = true",
        "",
    );
    let config = Config::from_toml_str(&toml).unwrap().0;
    let agent = Agent::start(&node, &toml);
    wait_deciding(&config, &agent).await;
    let publisher = keys(9);
    for g in &gov[..2] {
        let d = directive().version("v2.0.0").created_at(now()).sign(g);
        assert!(publish(&relay.url, &d, &publisher).await.0);
    }
    let ran = wait_until(Duration::from_secs(30), || node.runs().len() == 1).await;
    assert!(ran, "{}", agent.log());

    // The full journal is kept as it was; the new one verifies and starts
    // with the checkpoint.
    let kept: Vec<PathBuf> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("journal-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::metadata(&kept[0]).unwrap().len(), full_len);
    let journal = inspect(&state.join(qube_agent::state::JOURNAL_FILE)).unwrap();
    assert!(matches!(journal.records[0].entry, Entry::Checkpoint { .. }));
    assert!(journal.contains(
        &directive()
            .sign_directive(&gov[0], now())
            .proposal()
            .clone()
    ));
    let verify = agent_command(&node, &["journal", "--verify"]);
    assert!(verify.status.success(), "{verify:?}");

    // v1.2.3 ran before the rotation: its new quorum is refused.
    for (i, g) in gov[..2].iter().enumerate() {
        let d = directive()
            .version("v1.2.3")
            .created_at(now() + 1 + u64::try_from(i).unwrap())
            .sign(g);
        assert!(publish(&relay.url, &d, &publisher).await.0);
    }
    let done = wait_until(Duration::from_secs(10), || {
        status(&config).is_some_and(|s| {
            s.proposals.iter().any(|p| {
                p.proposal.version == "v1.2.3" && p.standing == "already_done" && p.votes == 2
            })
        })
    })
    .await;
    assert!(done, "{}", agent.log());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node.runs().len(), 1, "{:?}", node.runs());
}

/// Staged rollout (`docs/PROTOCOL.md` section 5.8): three agents on two
/// relays. A 10 % wave that also names node 2 runs on node 2 and on the
/// nodes its hash selects (the set is computed here with the same rule:
/// node 0, at position 6), and nowhere else; the others say "not in wave"
/// in `status`. Then the same
/// upgrade for everyone runs on the rest and not again where the wave ran
/// (anti-rollback off, so only the journal's "done in another wave" stands
/// in the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_wave_runs_only_where_it_selects_then_the_full_wave_on_the_rest() {
    let (a, b) = (start_relay(false).await, start_relay(false).await);
    let gov = [keys(1), keys(2), keys(3)];
    let voters: Vec<&Keys> = gov.iter().collect();
    let nodes: Vec<Node> = (0..3u8).map(|i| Node::numbered("", 50 + i)).collect();
    let relays_of: [Vec<&str>; 3] = [vec![&a.url], vec![&b.url], vec![&a.url, &b.url]];
    let mut agents = Vec::new();
    let mut configs = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        // Node 1 also sends heartbeats, to relay B.
        let top = if i == 1 {
            format!(
                "[heartbeat]\nrelays = [{:?}]\n\n[policy]\nallow_downgrade = true",
                b.url
            )
        } else {
            "[policy]\nallow_downgrade = true".to_owned()
        };
        let toml = node
            .config_toml(&relays_of[i], &voters, 2, &top, "")
            .replace(
                "node_id = \"pillar-test\"",
                &format!("node_id = \"pillar-{i}\""),
            );
        configs.push(Config::from_toml_str(&toml).unwrap().0);
        agents.push(Agent::start(node, &toml));
    }
    for (config, agent) in configs.iter().zip(&agents) {
        wait_deciding(config, agent).await;
    }
    let logs = || {
        agents
            .iter()
            .map(Agent::log)
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let named = hex::encode(nodes[2].node_keys.public_key());
    let wave = |created_at: u64| {
        directive()
            .created_at(created_at)
            .push_tag("crit", &["rollout", "node"])
            .push_tag("rollout", &["10"])
            .push_tag("node", &[&named])
    };
    let proposal = wave(now())
        .sign_directive(&gov[0], now())
        .proposal()
        .clone();
    let in_wave: Vec<bool> = nodes
        .iter()
        .map(|n| proposal.in_wave(&n.node_keys.public_key()))
        .collect();
    assert_eq!(
        in_wave,
        [true, false, true],
        "node 0 by its hash, node 2 named"
    );
    eprintln!(
        "wave of {proposal}: positions {:?}, in wave {in_wave:?}",
        nodes
            .iter()
            .map(|n| proposal.wave_position(&n.node_keys.public_key()))
            .collect::<Vec<_>>()
    );
    let publisher = keys(9);
    let t = now();
    for g in &gov[..2] {
        let d = wave(t).sign(g);
        for relay in [&a.url, &b.url] {
            assert!(publish(relay, &d, &publisher).await.0);
        }
    }
    let ran = wait_until(Duration::from_secs(15), || {
        nodes
            .iter()
            .zip(&in_wave)
            .all(|(n, &inside)| !inside || n.runs().len() == 1)
    })
    .await;
    assert!(ran, "the wave did not run:\n{}", logs());
    let outside_said_so = wait_until(Duration::from_secs(5), || {
        configs.iter().zip(&in_wave).all(|(c, &inside)| {
            inside
                || status(c).is_some_and(|s| {
                    s.proposals
                        .iter()
                        .any(|p| p.proposal == proposal && p.standing == "not_in_wave")
                })
        })
    })
    .await;
    assert!(outside_said_so, "{}", logs());
    // ... and in its heartbeat.
    let heartbeat_says = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let filter = qube_agent::Filter {
                kinds: vec![30078],
                authors: vec![nodes[1].node_keys.public_key()],
                ..qube_agent::Filter::default()
            };
            let beats = fetch_stored(&b.url, filter, Duration::from_secs(5)).await;
            let outside = beats.iter().find_map(|e| {
                let v: serde_json::Value = serde_json::from_str(&e.content).ok()?;
                let first = v["outside_wave"].get(0)?.clone();
                Some(first)
            });
            if let Some(first) = outside {
                return Some(first);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    };
    let first = heartbeat_says.await.unwrap_or_else(|| panic!("{}", logs()));
    assert_eq!(first["version"], "v1.2.3");
    assert_eq!(first["rollout"], 10);
    assert_eq!(
        first["position"],
        proposal.wave_position(&nodes[1].node_keys.public_key())
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (node, &inside) in nodes.iter().zip(&in_wave) {
        assert_eq!(node.runs().len(), usize::from(inside), "{:?}", node.runs());
    }

    // The same upgrade for every node.
    for g in &gov[..2] {
        let d = directive().created_at(t + 1).sign(g);
        for relay in [&a.url, &b.url] {
            assert!(publish(relay, &d, &publisher).await.0);
        }
    }
    let rest = wait_until(Duration::from_secs(15), || {
        nodes.iter().all(|n| n.runs().len() == 1)
    })
    .await;
    assert!(rest, "the full wave did not reach the rest:\n{}", logs());
    let wider_refused = wait_until(Duration::from_secs(5), || {
        configs.iter().zip(&in_wave).all(|(c, &inside)| {
            !inside
                || status(c).is_some_and(|s| {
                    s.proposals.iter().any(|p| {
                        p.proposal == proposal.without_wave() && p.standing == "already_done"
                    })
                })
        })
    })
    .await;
    assert!(wider_refused, "{}", logs());
    tokio::time::sleep(Duration::from_secs(1)).await;
    for node in &nodes {
        assert_eq!(node.runs().len(), 1, "{:?}", node.runs());
    }
}
