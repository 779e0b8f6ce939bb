//! Shared helpers of govctl's integration tests: running the binary with a
//! private key store, fixture files, and an in-process relay on loopback
//! that demands NIP-42 for writes (nostr-relay-builder's `LocalRelay`,
//! applying qubestr's publishing rules of DESIGN.md section 2).

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nostr_relay_builder::builder::{PolicyResult, WritePolicy};
use nostr_relay_builder::prelude::{
    LocalRelay, RelayBuilder, RelayBuilderNip42, RelayBuilderNip42Mode,
};

/// A temporary working directory with its own key store (`home/`).
pub struct Env {
    /// The directory; removed on drop.
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A fresh directory with a passphrase file `pass` ("correct horse").
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pass"), "correct horse\n").unwrap();
        std::fs::write(dir.path().join("wrong"), "wrong horse\n").unwrap();
        Env { dir }
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The key store directory.
    pub fn home(&self) -> PathBuf {
        self.path("home")
    }

    /// `govctl ARGS` in the directory, stdin empty (never a terminal).
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// `govctl ARGS` with `stdin` piped in.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_govctl"))
            .args(args)
            .current_dir(self.dir.path())
            .env("GOVCTL_HOME", self.home())
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).ok(); // govctl may exit before reading: its status says why
        child.wait_with_output().unwrap()
    }

    /// Runs and demands exit status 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_ok(&out, args);
        String::from_utf8(out.stdout).unwrap()
    }

    /// Makes key `name` (log_n 4, passphrase file `pass`); returns its npub.
    pub fn keygen(&self, name: &str) -> String {
        self.ok(&[
            "keygen",
            "--name",
            name,
            "--log-n",
            "4",
            "--passphrase-file",
            "pass",
        ])
        .trim()
        .to_owned()
    }

    /// Makes a plaintext key file at `file` (mode 0600); returns its npub.
    pub fn plain_key(&self, file: &str) -> String {
        self.ok(&["keygen", "--key", file, "--plaintext"])
            .trim()
            .to_owned()
    }
}

/// Panics with both streams unless `out` succeeded.
pub fn assert_ok(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "govctl {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sets a file's mode.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The hex public key of an npub.
pub fn npub_hex(npub: &str) -> String {
    hex::encode(qube_agent::nip19::decode_npub(npub).unwrap())
}

/// A 64-hex artifact hash.
pub const HASH: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// A running in-process relay and its `ws://127.0.0.1:PORT` URL.
pub struct TestRelay {
    /// The relay; dropping it shuts it down.
    pub relay: LocalRelay,
    /// Its URL.
    pub url: String,
}

/// Starts a relay on loopback applying [`QubestrPolicy`]; with
/// `nip42_writes`, publishing needs NIP-42 authentication (as on qubestr).
pub async fn start_relay(nip42_writes: bool) -> TestRelay {
    let mut builder = RelayBuilder::default()
        .addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .write_policy(QubestrPolicy);
    if nip42_writes {
        builder = builder.nip42(RelayBuilderNip42 {
            mode: RelayBuilderNip42Mode::Write,
        });
    }
    let relay = LocalRelay::new(builder);
    relay.run().await.expect("start in-process relay");
    let url = relay
        .url()
        .await
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    TestRelay { relay, url }
}

/// qubestr's publishing rules for kinds 33321 and 3333 (DESIGN.md section
/// 2); other kinds pass.
#[derive(Debug)]
pub struct QubestrPolicy;

fn qubestr_check(kind: u16, tags: &[Vec<String>], content: &str) -> Result<(), String> {
    let value = |name: &str| {
        tags.iter()
            .find(|t| t.first().map(String::as_str) == Some(name))
            .and_then(|t| t.get(1))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(format!("missing {name} tag"))
    };
    match kind {
        33321 => {
            if value("d")? != "hyperqube" {
                return Err("d tag must be hyperqube".into());
            }
            value("version")?;
            value("network")?;
            match value("action")? {
                "upgrade" => {}
                "reboot" => {
                    value("genesis_url")?;
                    value("required_by")?
                        .parse::<u64>()
                        .map_err(|_| "bad required_by")?;
                }
                other => return Err(format!("unknown action {other}")),
            }
        }
        3333 => {
            let a = value("a")?;
            if !a.starts_with("33321:") || !a.ends_with(":hyperqube") {
                return Err(format!("a tag {a} does not point at a directive"));
            }
            for name in ["version", "network", "action", "node_id", "action_at"] {
                value(name)?;
            }
            if value("status")? == "failure" {
                value("error")?;
            }
        }
        _ => return Ok(()),
    }
    if content.is_empty() {
        return Err("empty content".into());
    }
    Ok(())
}

impl WritePolicy for QubestrPolicy {
    fn admit_event<'a>(
        &'a self,
        event: &'a nostr_relay_builder::prelude::Event,
        _addr: &'a std::net::SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PolicyResult> + Send + 'a>> {
        let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        let verdict = match qubestr_check(event.kind.as_u16(), &tags, &event.content) {
            Ok(()) => PolicyResult::Accept,
            Err(e) => PolicyResult::Reject(format!("invalid: {e}")),
        };
        Box::pin(async move { verdict })
    }
}

/// An agent config for `relay` with these voters (name, npub) and quorum.
pub fn config_toml(relay: &str, voters: &[(&str, &str)], quorum: usize) -> String {
    let mut toml = format!(
        "# fleet config\nnetwork = \"hqz\"\nquorum = {quorum} # votes needed\nrelays = [\"{relay}\"]\nstate_dir = \"/var/lib/qube-agent\"\n"
    );
    for (name, npub) in voters {
        toml.push_str(&format!(
            "\n[[follows]]\nname = \"{name}\"\nnpub = \"{npub}\"\nrole = \"voter\"\n"
        ));
    }
    toml.push_str(
        "\n[upgrade]\ncommand = [\"/bin/true\"]\n\n[reboot]\ncommand = [\"/bin/true\"]\n",
    );
    toml
}
