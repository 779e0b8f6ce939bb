//! Shared helpers of govctl's integration tests: running the binary with a
//! private key store and fixture files; the in-process relay (NIP-42 for
//! writes, qubestr's publishing rules) comes from `qube-e2e`.

// Each test file uses a different subset of these helpers.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary working directory with its own key store (`home/`).
pub struct Env {
    /// The directory; removed on drop.
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A fresh directory with passphrase files `pass` ("correct horse") and
    /// `wrong`, mode 0600 (govctl refuses one others can read).
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("pass", "correct horse\n"), ("wrong", "wrong horse\n")] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            chmod(&path, 0o600);
        }
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
    hex::encode(qube_agent::core::nip19::decode_npub(npub).unwrap())
}

// The relay harness and qubestr's publishing rules are the end-to-end
// tests' own (`qube-e2e`), so govctl is tested against the same relay.
pub use qube_e2e::{start_relay, TestRelay, HASH};

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

/// A hook script in `env` that appends `$QUBE_VERSION` and a newline to
/// a marker file each time it runs: (marker, hook).
pub fn version_hook(env: &Env) -> (PathBuf, PathBuf) {
    let marker = env.path("hook-ran");
    let hook = env.path("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$QUBE_VERSION\" >> {}\n",
            marker.display()
        ),
    )
    .unwrap();
    chmod(&hook, 0o755);
    (marker, hook)
}

/// A multi-threaded runtime whose workers serve the relays and agents
/// while the test thread runs govctl.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Governance keys `names` in `env`'s key store: (name, npub).
pub fn voters(env: &Env, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), env.keygen(n)))
        .collect()
}

/// The (name, npub) pairs of `voters` as `config_toml` takes them.
pub fn pairs(voters: &[(String, String)]) -> Vec<(&str, &str)> {
    voters
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_str()))
        .collect()
}

/// `propose upgrade --version v1.2.3 --network hqz --hash HASH`, then
/// `extra`: the arguments most tests propose with.
pub fn propose_v123_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "propose",
        "upgrade",
        "--version",
        "v1.2.3",
        "--network",
        "hqz",
        "--hash",
        HASH,
    ];
    args.extend(extra);
    args
}

/// `govctl propose upgrade --version v1.2.3 --network hqz --hash HASH` by
/// key `name` (passphrase file `pass`), published to `relays`, with
/// `extra` arguments; panics unless it succeeds.
pub fn propose_v123(env: &Env, name: &str, relays: &[&str], extra: &[&str]) {
    let mut args = propose_v123_args(&["--name", name, "--passphrase-file", "pass"]);
    for relay in relays {
        args.extend(["--relay", relay]);
    }
    args.extend(extra);
    assert_ok(&env.run(&args), &["propose", name]);
}
