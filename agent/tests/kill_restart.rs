//! At-most-once across a real crash: the `qube-agent` binary is killed with
//! SIGKILL while its hook runs, then started again. The hook must not run a
//! second time, and the agent must acknowledge the run as `failure` with
//! error `interrupted` (`docs/PROTOCOL.md` section 12).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nostr_relay_builder::prelude::{LocalRelay, RelayBuilder};
use qube_agent::relay::{RelayEvent, RelayOptions, RelayPool};
use qube_agent::{Filter, Keys};
use qube_e2e::{directive, keys, target};

async fn next(
    rx: &mut tokio::sync::mpsc::Receiver<RelayEvent>,
    pick: impl Fn(&RelayEvent) -> bool,
) -> RelayEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("timed out waiting for the relay")
            .expect("relay pool stopped");
        if pick(&ev) {
            return ev;
        }
    }
}

fn spawn_agent(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_qube-agent"))
        .args(["run", "-v", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_the_hook_never_runs_it_twice_and_acks_interrupted() {
    let relay = LocalRelay::new(RelayBuilder::default().addr(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    relay.run().await.unwrap();
    let url = relay
        .url()
        .await
        .to_string()
        .trim_end_matches('/')
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let node = keys(42);
    let key_file = dir.path().join("node.key");
    std::fs::write(&key_file, hex::encode(node.secret_bytes())).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let marker = dir.path().join("runs");
    let pgid_file = dir.path().join("hook.pid");
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho $$ > {}\necho run >> {}\nsleep 30\n",
            pgid_file.display(),
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let gov: Vec<Keys> = (1..=3).map(keys).collect();
    let mut config = format!(
        "network = \"hqz\"\nquorum = 2\nrelays = [\"{url}\"]\nstate_dir = {:?}\nnode_key = {:?}\nnode_id = \"killed\"\ncurrent_version = \"v0.0.1\"\n",
        dir.path().join("state"),
        key_file
    );
    for (i, g) in gov.iter().enumerate() {
        config.push_str(&format!(
            "[[follows]]\nname = \"g{i}\"\nnpub = \"{}\"\nrole = \"voter\"\n",
            hex::encode(g.public_key())
        ));
    }
    config.push_str(&format!(
        "[upgrade]\ncommand = [{:?}]\ntimeout_secs = 60\n",
        hook
    ));
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("agent.log");

    let mut agent = spawn_agent(&config_path, &log);
    let (pool, mut rx) = RelayPool::start(
        vec![target(&url)],
        vec![Filter {
            kinds: vec![3333],
            authors: vec![node.public_key()],
            ..Filter::default()
        }],
        RelayOptions::default(),
    );
    next(&mut rx, |e| matches!(e, RelayEvent::EndOfStored { .. })).await;
    for g in &gov[..2] {
        let d = directive()
            .created_at(qube_agent::now())
            .version("v1.2.3")
            .hash(&"ab".repeat(32))
            .sign(g);
        pool.publish(&d);
        next(
            &mut rx,
            |e| matches!(e, RelayEvent::Ok { event_id, accepted: true, .. } if *event_id == d.id),
        )
        .await;
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines(&marker) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hook never started:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGKILL: no destructor, no outcome record.
    agent.kill().unwrap();
    agent.wait().unwrap();
    // The orphaned hook keeps its own process group; end it for tidiness.
    if let Some(pgid) = std::fs::read_to_string(&pgid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|&p| p > 1)
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    let mut agent = spawn_agent(&config_path, &log);
    let ack = match next(&mut rx, |e| matches!(e, RelayEvent::Event { .. })).await {
        RelayEvent::Event { event, .. } => event,
        other => panic!("{other:?}"),
    };
    let value = |name: &str| ack.tag_value(name).map(str::to_owned);
    assert_eq!(value("status").as_deref(), Some("failure"));
    assert_eq!(value("error").as_deref(), Some("interrupted"));
    assert_eq!(value("version").as_deref(), Some("v1.2.3"));
    assert_eq!(ack.tags_named("a").count(), 2, "{ack:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(lines(&marker), 1, "the hook ran again after the restart");
    agent.kill().unwrap();
    agent.wait().unwrap();
}
