//! Telling the operator (design section 8b), end to end: the metrics file
//! a run leaves behind, read back by an independent Prometheus text-format
//! parser (`prometheus-parse`), and the example alerting rules in
//! `deploy/`.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use qube_agent::monitor::{self, RunOptions, WorkerMode};
use qube_agent::Keys;
use qube_e2e::*;

/// The metrics file parsed by `prometheus-parse`; `None` while it does
/// not exist. Every sample line must come back as a sample (the parser
/// skips what it cannot read, so a dropped line would go unnoticed).
fn scrape(path: &Path) -> Option<prometheus_parse::Scrape> {
    let text = std::fs::read_to_string(path).ok()?;
    let samples = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(scrape.samples.len(), samples, "lines not parsed:\n{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    Some(scrape)
}

/// The value of the one sample named `metric` whose labels include
/// `labels`; `None` when there is none. Panics on two matches.
fn value(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    let sample = found.next()?;
    assert!(found.next().is_none(), "two samples {metric} {labels:?}");
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        ref other => panic!("{metric}: unexpected {other:?}"),
    }
}

/// Polls the metrics file until `ok` holds for a parse of it.
async fn wait_metrics(
    path: &Path,
    within: Duration,
    ok: impl Fn(&prometheus_parse::Scrape) -> bool,
) -> bool {
    wait_until(within, || scrape(path).is_some_and(|s| ok(&s))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_holds_what_the_run_produced() {
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    // The hook records its run, then fails.
    let node = Node::with_hook("exit 3");
    let metrics = node.dir.path().join("textfile").join("qube_agent.prom");
    std::fs::create_dir(metrics.parent().unwrap()).unwrap();
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        &format!("metrics_file = {metrics:?}"),
        "",
    );
    let agent = start_agent(config);
    let votes = [("action", "upgrade"), ("version", "v1.2.3"), ("hash", HASH)];

    // Before any vote: the agent, its relay and its worker.
    assert!(
        wait_metrics(&metrics, Duration::from_secs(20), |s| {
            value(s, "qube_agent_relay_connected", &[("relay", &relay.url)]) == Some(1.0)
                && value(s, "qube_agent_worker_sandbox", &[("level", "full")]).is_some()
        })
        .await,
        "relay or sandbox never shown: {:?}",
        std::fs::read_to_string(&metrics)
    );
    let s = scrape(&metrics).unwrap();
    assert_eq!(
        value(
            &s,
            "qube_agent_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("network", "hqz"),
                ("node", "pillar-test"),
                ("pubkey", &hex::encode(node.node_keys.public_key())),
            ]
        ),
        Some(1.0)
    );
    assert_eq!(value(&s, "qube_agent_quorum", &[]), Some(2.0));
    assert_eq!(value(&s, "qube_agent_proposal_votes", &votes), None);
    assert_eq!(value(&s, "qube_agent_last_action_success", &[]), None);
    assert_eq!(value(&s, "qube_agent_worker_restarts", &[]), Some(0.0));
    assert_eq!(value(&s, "qube_agent_outbox_pending", &[]), Some(0.0));

    // One vote: counted, nothing runs.
    let d1 = directive()
        .created_at(now())
        .version("v1.2.3")
        .sign(&gov[0]);
    assert!(publish(&relay.url, &d1, &keys(9)).await.0);
    assert!(
        wait_metrics(&metrics, Duration::from_secs(20), |s| {
            value(s, "qube_agent_proposal_votes", &votes) == Some(1.0)
        })
        .await,
        "one vote never shown: {:?}",
        std::fs::read_to_string(&metrics)
    );
    let s = scrape(&metrics).unwrap();
    assert_eq!(
        value(&s, "qube_agent_directives", &[("result", "accepted")]),
        Some(1.0)
    );

    // The second vote: quorum, the hook runs and fails.
    let d2 = directive()
        .created_at(now())
        .version("v1.2.3")
        .sign(&gov[1]);
    assert!(publish(&relay.url, &d2, &keys(9)).await.0);
    let last = [("action", "upgrade"), ("version", "v1.2.3")];
    assert!(
        wait_metrics(&metrics, Duration::from_secs(20), |s| {
            value(s, "qube_agent_last_action_success", &last).is_some()
        })
        .await,
        "the action never shown: {:?}",
        std::fs::read_to_string(&metrics)
    );
    assert_eq!(node.runs(), ["upgrade v1.2.3 pillar-test"]);
    let s = scrape(&metrics).unwrap();
    assert_eq!(
        value(&s, "qube_agent_last_action_success", &last),
        Some(0.0)
    );
    let at = value(&s, "qube_agent_last_action_timestamp_seconds", &last).unwrap();
    assert!((at - now() as f64).abs() < 60.0, "{at}");
    assert_eq!(value(&s, "qube_agent_proposal_votes", &votes), Some(2.0));
    assert_eq!(
        value(&s, "qube_agent_directives", &[("result", "accepted")]),
        Some(2.0)
    );
    assert_eq!(value(&s, "qube_agent_worker_restarts", &[]), Some(0.0));
    let updated = value(&s, "qube_agent_metrics_updated_timestamp_seconds", &[]).unwrap();
    assert!((updated - now() as f64).abs() < 60.0, "{updated}");
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_counts_worker_restarts() {
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let metrics = node.dir.path().join("qube_agent.prom");
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        1,
        &format!("metrics_file = {metrics:?}"),
        "",
    );
    // A worker that sends a message type the protocol does not have: it is
    // ended and started again, over and over.
    let options = RunOptions {
        dry_run: false,
        worker: WorkerMode::Process {
            program: worker_program().with_file_name("fake-worker"),
            args: vec!["unknown".into()],
        },
    };
    let agent = tokio::spawn(async move { monitor::run(config, options).await.unwrap() });
    assert!(
        wait_metrics(&metrics, Duration::from_secs(20), |s| {
            value(s, "qube_agent_worker_restarts", &[]).is_some_and(|v| v >= 2.0)
        })
        .await,
        "restarts never shown: {:?}",
        std::fs::read_to_string(&metrics)
    );
    // The fake worker reports no sandbox enforcement.
    let s = scrape(&metrics).unwrap();
    let restarts = value(&s, "qube_agent_worker_restarts", &[]).unwrap();
    assert!(restarts >= 2.0 && restarts <= worker_restarts(&node) as f64);
    agent.abort();
}

/// The alerting rules shipped in `deploy/` parse as YAML and hold the
/// three alerts the README names, each with an expression over metrics
/// the agent writes. (`promtool check rules` does more; it is not on
/// every machine.)
#[test]
fn the_example_alerting_rules_parse_and_name_the_documented_alerts() {
    let text = include_str!("../../deploy/prometheus-alerts.yml");
    let doc: serde_norway::Value = serde_norway::from_str(text).unwrap();
    let groups = doc["groups"].as_sequence().expect("groups");
    let rules: Vec<&serde_norway::Value> = groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .collect();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "QubeAgentActionFailed",
            "QubeAgentRelayDown",
            "QubeAgentStale"
        ]
    );
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        assert!(expr.contains("qube_agent_"), "{expr}");
        assert!(rule["annotations"]["summary"].as_str().is_some());
    }
}

/// `promtool` (Debian package `prometheus`) accepts the shipped rules and
/// the metrics file of a run: `check metrics` parses it with the Go text
/// parser node_exporter uses, and lints the names.
/// Skipped, with a message, where promtool is not installed, unless
/// `QUBE_REQUIRE_PROMTOOL` is set (as `.ci/run` does, after fetching it),
/// so in CI it always runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_rules_and_the_metrics_file() {
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("QUBE_REQUIRE_PROMTOOL").is_none(),
            "promtool is missing although QUBE_REQUIRE_PROMTOOL is set (.ci/run fetches it from Debian's prometheus package)"
        );
        eprintln!("skipped: promtool not installed (Debian package prometheus)");
        return;
    }
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus-alerts.yml");
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool");
    assert!(out.status.success(), "{out:?}");

    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = Node::with_hook("exit 3");
    let metrics = node.dir.path().join("qube_agent.prom");
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        1,
        &format!("metrics_file = {metrics:?}"),
        "",
    );
    let agent = start_agent(config);
    let d1 = directive().created_at(now()).sign(&gov[0]);
    assert!(publish(&relay.url, &d1, &keys(9)).await.0);
    assert!(
        wait_metrics(&metrics, Duration::from_secs(20), |s| {
            value(s, "qube_agent_last_action_success", &[]).is_some()
        })
        .await
    );
    agent.abort();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process this test started; sent SIGTERM and waited for when ended
/// or dropped (a failing test leaves nothing running).
struct Ended(std::process::Child);

impl Ended {
    fn end(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.0.wait();
    }
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.end();
    }
}

/// The latest heartbeat of `node` on `url`, checked by rust-nostr (an
/// independent implementation): its id and BIP-340 signature verify.
async fn heartbeat_on(
    url: &str,
    node: &[u8; 32],
) -> Option<(qube_agent::Event, serde_json::Value)> {
    use nostr_relay_builder::prelude::JsonUtil;
    let filter = qube_agent::Filter {
        kinds: vec![30078],
        authors: vec![*node],
        ..qube_agent::Filter::default()
    };
    let event = fetch_one(url, filter, Duration::from_secs(2)).await?;
    let theirs = nostr_relay_builder::prelude::Event::from_json(event.to_json()).unwrap();
    theirs.verify().expect("rust-nostr verifies the heartbeat");
    let content = serde_json::from_str(&event.content).unwrap();
    Some((event, content))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_reach_a_relay_that_takes_them_and_skip_one_that_refuses() {
    // `strict` takes only qubestr's kinds; `open` takes kind 30078 too.
    let strict = start_strict_relay().await;
    let open = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let dir = node.dir.path();
    let config = dir.join("config.toml");
    let heartbeat = format!(
        "[heartbeat]\nrelays = [{:?}, {:?}]\ninterval_secs = 2\n",
        strict.url, open.url
    );
    let toml = node.config_toml(
        &[&strict.url, &open.url],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        &heartbeat,
        "",
    );
    std::fs::write(&config, &toml).unwrap();
    let config_sha256 = hex::encode(qube_agent::artifact::sha256_file(&config).unwrap());
    let log = dir.join("monitor.log");
    let program = worker_program();
    // The monitor as its own process, with the real sandboxed worker, so
    // the test can read its log.
    let mut monitor = Ended(
        std::process::Command::new(program.with_file_name("qube-monitor"))
            .arg(&config)
            .arg(&program)
            .args(["worker", "--allow-unsandboxed"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log).unwrap_or_default();
    let node_pk = node.node_keys.public_key();

    // At start: a heartbeat with an empty journal and the config's hash.
    let mut first = None;
    for _ in 0..40 {
        first = heartbeat_on(&open.url, &node_pk).await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (event, content) = first.unwrap_or_else(|| panic!("no heartbeat:\n{}", log()));
    assert_eq!(
        tag_values(&event, "d"),
        [format!("qube-agent/hqz/{}", hex::encode(node_pk))]
    );
    assert_eq!(content["network"], "hqz");
    assert_eq!(content["node_id"], "pillar-test");
    assert_eq!(content["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(content["config_sha256"], config_sha256.as_str());
    assert!(
        matches!(
            content["sandbox"].as_str(),
            Some("full" | "partial" | "none")
        ),
        "{content}"
    );
    assert_eq!(content["journal"]["entries"], 0);
    assert_eq!(content["last_action"], serde_json::Value::Null);

    // An upgrade runs: the next heartbeat carries the new version and the
    // journal's head.
    for voter in &gov[..2] {
        let d = directive().created_at(now()).version("v1.2.3").sign(voter);
        assert!(publish(&open.url, &d, &keys(9)).await.0);
    }
    assert!(
        wait_until(Duration::from_secs(20), || !node.runs().is_empty()).await,
        "the hook never ran:\n{}",
        log()
    );
    let mut after = None;
    for _ in 0..40 {
        after = heartbeat_on(&open.url, &node_pk)
            .await
            .filter(|(_, c)| c["installed_version"] == "1.2.3");
        if after.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, content) =
        after.unwrap_or_else(|| panic!("no heartbeat after the upgrade:\n{}", log()));
    let journal =
        qube_agent::state::journal::inspect(&dir.join("state").join("journal.jsonl")).unwrap();
    assert_eq!(journal.records.len(), 2, "started and outcome");
    assert_eq!(content["journal"]["entries"], 2);
    assert_eq!(content["journal"]["seq"], 2);
    assert_eq!(
        content["journal"]["head"],
        hex::encode(journal.head).as_str()
    );
    assert_eq!(content["last_action"]["version"], "v1.2.3");
    assert_eq!(content["last_action"]["status"], "success");

    // A few intervals later: the strict relay refused the kind once, was
    // logged once and skipped since; it stores no heartbeat.
    tokio::time::sleep(Duration::from_secs(5)).await;
    monitor.end();
    let log = log();
    let refusals = log
        .lines()
        .filter(|l| l.contains("refused the heartbeat"))
        .collect::<Vec<_>>();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(refusals[0].contains(&strict.url), "{log}");
    let published = log
        .lines()
        .filter(|l| l.contains("heartbeat ") && l.contains(" published"))
        .count();
    assert!(published >= 3, "{published} heartbeats:\n{log}");
    assert!(heartbeat_on(&strict.url, &node_pk).await.is_none());
    // The acknowledgement still reached the strict relay: it was not
    // skipped for anything else.
    assert!(
        fetch_one(&strict.url, ack_filter(&node_pk), Duration::from_secs(5))
            .await
            .is_some()
    );
}

/// Lines the alert hook wrote, one per run:
/// `QUBE_ALERT|QUBE_NODE_ID|QUBE_NETWORK|QUBE_ACTION|QUBE_VERSION|QUBE_HASH|QUBE_ERROR|other variables|QUBE_ALERT_MESSAGE`.
fn alert_runs(path: &Path, kind: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect::<Vec<_>>())
        .filter(|f| f[0] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_hook_runs_once_per_failed_action_and_conflict_and_is_rate_limited() {
    let relay = start_relay(false).await;
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    // Every upgrade fails.
    let node = Node::with_hook("exit 3");
    let dir = node.dir.path();
    let alerts = dir.join("alerts");
    let script = dir.join("alert.sh");
    // The variables, and how many others than QUBE_*, PATH and what sh
    // itself sets there are (none expected: a clean environment).
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nother=$(env | grep -c -v -e '^QUBE_' -e '^PATH=' -e '^PWD=' -e '^SHLVL=' -e '^_=')\n\
             printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$QUBE_ALERT\" \"$QUBE_NODE_ID\" \"$QUBE_NETWORK\" \
             \"$QUBE_ACTION\" \"$QUBE_VERSION\" \"$QUBE_HASH\" \"$QUBE_ERROR\" \"$other\" \"$QUBE_ALERT_MESSAGE\" >> {}\n",
            alerts.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &script,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let config = node.config_with(
        &[&relay.url],
        &[&gov[0], &gov[1], &gov[2]],
        1,
        "",
        &format!("\n[alert]\ncommand = [{script:?}]\nmin_interval_secs = 3600\n"),
    );
    let publisher = keys(9);
    // A conflict: two proposals for v1.3.0 with different hashes, each
    // with a quorum of one, stored before the agent starts (it decides
    // only once the relays' stored directives are in).
    let a = directive()
        .created_at(now())
        .version("v1.3.0")
        .sign(&gov[1]);
    let b = directive()
        .created_at(now())
        .version("v1.3.0")
        .hash(&"2".repeat(64))
        .sign(&gov[2]);
    assert!(publish(&relay.url, &a, &publisher).await.0);
    assert!(publish(&relay.url, &b, &publisher).await.0);
    let agent = start_agent(config);
    assert!(
        wait_until(Duration::from_secs(20), || {
            alert_runs(&alerts, "conflict").len() == 1
        })
        .await,
        "no alert for the conflict"
    );
    let run = &alert_runs(&alerts, "conflict")[0];
    assert_eq!(run[1..3], ["pillar-test", "hqz"]);
    assert_eq!(run[7], "0", "{run:?}");
    assert!(run[8].contains("v1.3.0"), "{run:?}");
    assert!(node.runs().is_empty(), "{:?}", node.runs());

    // A failed upgrade: one alert, its own kind, with the proposal's
    // variables.
    let d = directive()
        .created_at(now())
        .version("v1.3.1")
        .sign(&gov[0]);
    assert!(publish(&relay.url, &d, &publisher).await.0);
    assert!(
        wait_until(Duration::from_secs(20), || {
            alert_runs(&alerts, "action_failed").len() == 1
        })
        .await,
        "no alert for the failed action; hook runs {:?}",
        node.runs()
    );
    let run = &alert_runs(&alerts, "action_failed")[0];
    assert_eq!(
        run[..8],
        [
            "action_failed",
            "pillar-test",
            "hqz",
            "upgrade",
            "v1.3.1",
            HASH,
            "exit status 3",
            "0"
        ]
    );
    assert!(run[8].contains("v1.3.1"), "{run:?}");

    // A second failure within min_interval_secs: logged, the hook not run.
    let d = directive()
        .created_at(now() + 1)
        .version("v1.3.2")
        .sign(&gov[0]);
    assert!(publish(&relay.url, &d, &publisher).await.0);
    assert!(
        wait_until(Duration::from_secs(20), || node.runs().len() == 2).await,
        "the second upgrade never ran: {:?}",
        node.runs()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(alert_runs(&alerts, "action_failed").len(), 1);
    assert_eq!(alert_runs(&alerts, "conflict").len(), 1);
    agent.abort();
}
