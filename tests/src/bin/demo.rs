//! The main job on real input, as a newcomer runs it:
//! `cargo run -p qube-e2e --bin demo`.
//!
//! Starts a real relay (nostr-relay-builder) on loopback that demands NIP-42
//! for writes and applies qubestr's rules, makes three governance keys with
//! `govctl keygen`, runs the `qube-agent` binary with quorum 2 and a demo
//! hook that writes a file, signs upgrade directives from two of the keys
//! with `govctl propose --out` and publishes them with `govctl publish
//! --auth-key`, and shows the hook running once and the acknowledgement
//! arriving on the relay. Everything lives in a temporary directory that is
//! removed at the end.

#![forbid(unsafe_code)]
// A demo: printing is its job, and a broken step ends it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use qube_agent::{Filter, Keys};
use qube_e2e::{fetch_one, start_relay};

/// Builds `qube-agent` and `govctl` next to this binary (same profile, same
/// target directory) and returns their paths.
fn binaries() -> Result<(PathBuf, PathBuf), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "qube-agent",
            "-p",
            "govctl",
            "--bins",
        ])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building qube-agent and govctl failed".into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no target directory")?;
    Ok((dir.join("qube-agent"), dir.join("govctl")))
}

/// Runs govctl with its key store in `home`; returns stdout, or the error.
fn govctl(exe: &std::path::Path, home: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(exe)
        .env("GOVCTL_HOME", home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run govctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "govctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => {
            println!("\ndemo finished: the hook ran once and the acknowledgement is on the relay");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<(), String> {
    let (agent_exe, govctl_exe) = binaries()?;
    let dir = tempfile::Builder::new()
        .prefix("qube-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let relay = start_relay(true).await;
    println!("relay (NIP-42 for writes, qubestr rules): {}", relay.url);

    // Governance keys, NIP-49 encrypted, made by govctl.
    let home = dir.path().join("govctl");
    let pass = dir.path().join("passphrase");
    std::fs::write(&pass, "demo passphrase\n").map_err(|e| e.to_string())?;
    // govctl refuses a passphrase file that group or others can read.
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    let pass = pass.display().to_string();
    let mut npubs = Vec::new();
    for i in 1..=3 {
        let name = format!("governor-{i}");
        let npub = govctl(
            &govctl_exe,
            &home,
            &["keygen", "--name", &name, "--passphrase-file", &pass],
        )?;
        println!("govctl keygen --name {name}: {npub}");
        npubs.push(npub);
    }
    let publisher = dir.path().join("publisher.key").display().to_string();
    govctl(
        &govctl_exe,
        &home,
        &["keygen", "--key", &publisher, "--plaintext"],
    )?;

    let marker = dir.path().join("upgraded-to");
    let hook = dir.path().join("demo-upgrade-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$QUBE_ACTION to $QUBE_VERSION (artifact $QUBE_HASH) on $QUBE_NODE_ID\" >> '{}'\n",
            marker.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;

    let mut config = format!(
        "network = \"hqz\"\nquorum = 2\nrelays = [\"{}\"]\nstate_dir = \"{}\"\nnode_id = \"demo-pillar\"\ncurrent_version = \"v1.0.0\"\n",
        relay.url,
        dir.path().join("state").display()
    );
    for (i, npub) in npubs.iter().enumerate() {
        config.push_str(&format!(
            "\n[[follows]]\nname = \"governor-{}\"\nnpub = \"{npub}\"\nrole = \"voter\"\n",
            i + 1
        ));
    }
    config.push_str(&format!(
        "\n[upgrade]\ncommand = [\"{}\"]\ntimeout_secs = 30\n",
        hook.display()
    ));
    let config_path = dir.path().join("qube-agent.toml");
    std::fs::write(&config_path, &config).map_err(|e| e.to_string())?;
    println!("agent config: quorum 2 of 3 voters\n");

    let mut agent = Command::new(&agent_exe)
        .args(["run", "-v", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", agent_exe.display()))?;
    let result = drive(
        &relay.url,
        &govctl_exe,
        &home,
        &pass,
        &publisher,
        &marker,
        dir.path(),
    )
    .await;
    let _ = agent.kill();
    let _ = agent.wait();
    relay.relay.shutdown();
    result
}

async fn drive(
    url: &str,
    govctl_exe: &std::path::Path,
    home: &std::path::Path,
    pass: &str,
    publisher: &str,
    marker: &std::path::Path,
    state: &std::path::Path,
) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hash = "ab".repeat(32);
    for i in 1..=2 {
        let name = format!("governor-{i}");
        let signed = state
            .join(format!("upgrade-{i}.json"))
            .display()
            .to_string();
        // Signed offline (no network), then published with a separate
        // publisher key that answers the relay's NIP-42 challenge.
        govctl(
            govctl_exe,
            home,
            &[
                "propose",
                "upgrade",
                "--version",
                "v1.2.3",
                "--network",
                "hqz",
                "--hash",
                &hash,
                "--name",
                &name,
                "--passphrase-file",
                pass,
                "--out",
                &signed,
            ],
        )?;
        let answer = govctl(
            govctl_exe,
            home,
            &["publish", &signed, "--relay", url, "--auth-key", publisher],
        )?;
        println!("{name} signed upgrade v1.2.3 with govctl; govctl publish: {answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let runs = loop {
        let runs = std::fs::read_to_string(marker).unwrap_or_default();
        if !runs.is_empty() || tokio::time::Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if runs.lines().count() != 1 {
        return Err(format!("the hook ran {} times", runs.lines().count()));
    }
    println!("\nthe hook ran once: {}", runs.trim_end());

    let node_key_hex =
        std::fs::read_to_string(state.join("state").join("node.key")).map_err(|e| e.to_string())?;
    let mut node = [0u8; 32];
    hex::decode_to_slice(node_key_hex.trim(), &mut node).map_err(|e| e.to_string())?;
    let node_pk = Keys::from_secret_bytes(&node)
        .ok_or("bad node key")?
        .public_key();
    let ack = fetch_one(
        url,
        Filter {
            kinds: vec![3333],
            authors: vec![node_pk],
            ..Filter::default()
        },
        Duration::from_secs(30),
    )
    .await
    .ok_or("no acknowledgement arrived on the relay")?;
    println!(
        "acknowledgement on the relay (kind {}), id {}:",
        ack.kind,
        ack.id_hex()
    );
    for tag in &ack.tags {
        println!("  {}", tag.join(" "));
    }
    println!("  content: {}", ack.content);
    Ok(())
}
