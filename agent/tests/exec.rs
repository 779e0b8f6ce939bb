//! The execution contract (`docs/PROTOCOL.md` section 12): hooks run directly with only
//! the `QUBE_*` environment, bounded output, a process-group kill on
//! timeout, the artifact hash check before `command`, and health/rollback.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use qube_agent::artifact::sha256_file;
use qube_agent::config::{Config, Hook};
use qube_agent::core::directive::{Action, Proposal};
use qube_agent::monitor::exec::{
    execute, run_step, ExecEnv, Status, StepStatus, HOOK_PATH, MAX_CAPTURE_BYTES, MAX_ERROR_BYTES,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// x(G), a valid BIP-340 public key, as the one voter.
const VOTER_HEX: &str = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const NODE_ID: &str = "pillar-test-1";
const ID_A: [u8; 32] = [0xab; 32];
const ID_B: [u8; 32] = [0x01; 32];

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn upgrade(version: &str, hash: &str) -> Proposal {
    Proposal {
        action: Action::Upgrade,
        network: "hqz".into(),
        version: version.into(),
        hash: hash.into(),
        genesis_url: None,
        required_by: None,
        rollout: None,
        nodes: Vec::new(),
    }
}

fn reboot() -> Proposal {
    Proposal {
        action: Action::Reboot,
        network: "hqz".into(),
        version: "v1.2.3".into(),
        hash: sha256_hex(b"x").to_uppercase(),
        genesis_url: Some("https://g.example/genesis.json".into()),
        required_by: Some(1_700_003_600),
        rollout: None,
        nodes: Vec::new(),
    }
}

fn env_for(proposal: &Proposal) -> ExecEnv {
    ExecEnv::new(proposal, &[ID_A, ID_B], NODE_ID)
}

/// Writes an executable `/bin/sh` script `name` into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

fn argv(program: &str) -> Vec<String> {
    vec![program.to_owned()]
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

/// An `[upgrade]` hook from the given TOML lines, through the real config
/// parser.
fn hook(lines: &str) -> Hook {
    let text = format!(
        r#"network = "hqz"
quorum = 1
relays = ["wss://relay.example"]

[[follows]]
name = "voter"
npub = "{VOTER_HEX}"
role = "voter"

[upgrade]
{lines}
"#
    );
    let (config, _warnings) = Config::from_toml_str(&text).unwrap();
    config.upgrade().unwrap().clone()
}

fn path(dir: &TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn env_lines(bytes: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn exec_env_documents_every_variable() {
    let env = env_for(&upgrade("v1.2.3", &sha256_hex(b"x").to_uppercase()));
    let names: Vec<&str> = env.vars().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "QUBE_ACTION",
            "QUBE_VERSION",
            "QUBE_HASH",
            "QUBE_NETWORK",
            "QUBE_GENESIS_URL",
            "QUBE_REQUIRED_BY",
            "QUBE_DIRECTIVE_IDS",
            "QUBE_NODE_ID"
        ]
    );
    assert_eq!(env.get("QUBE_ACTION"), Some("upgrade"));
    assert_eq!(env.get("QUBE_VERSION"), Some("v1.2.3"));
    assert_eq!(env.get("QUBE_HASH"), Some(sha256_hex(b"x").as_str()));
    assert_eq!(env.get("QUBE_GENESIS_URL"), Some(""));
    assert_eq!(env.get("QUBE_REQUIRED_BY"), Some(""));
    assert_eq!(
        env.get("QUBE_DIRECTIVE_IDS"),
        Some(format!("{},{}", "ab".repeat(32), "01".repeat(32)).as_str())
    );
    assert_eq!(env.get("PATH"), None);
    let none = ExecEnv::new(&upgrade("1.0.0", "00"), &[], NODE_ID);
    assert_eq!(none.get("QUBE_DIRECTIVE_IDS"), Some(""));
}

#[tokio::test]
async fn hook_sees_only_the_qube_variables_and_path() {
    // Something secret-looking in the agent's own environment must not leak.
    std::env::set_var("NSEC_TEST_SECRET", "nsec1doesnotleak");
    std::env::set_var("HOME", "/root-should-not-leak");
    let proposal = reboot();
    let env = env_for(&proposal);
    // `env` itself as the hook: a shell would add variables of its own.
    let outcome = execute(&hook(r#"command = ["/usr/bin/env"]"#), &proposal, &env).await;
    assert_eq!(outcome.status, Status::Success, "{outcome:?}");
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.steps.len(), 1);
    let seen = env_lines(&outcome.steps[0].stdout);
    let expected: BTreeMap<String, String> = [
        ("PATH", HOOK_PATH.to_owned()),
        ("QUBE_ACTION", "reboot".to_owned()),
        ("QUBE_VERSION", "v1.2.3".to_owned()),
        ("QUBE_HASH", sha256_hex(b"x")),
        ("QUBE_NETWORK", "hqz".to_owned()),
        (
            "QUBE_GENESIS_URL",
            "https://g.example/genesis.json".to_owned(),
        ),
        ("QUBE_REQUIRED_BY", "1700003600".to_owned()),
        (
            "QUBE_DIRECTIVE_IDS",
            format!("{},{}", "ab".repeat(32), "01".repeat(32)),
        ),
        ("QUBE_NODE_ID", NODE_ID.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn hook_script_sees_the_values_stdin_is_empty_and_cwd_is_root() {
    let dir = TempDir::new().unwrap();
    let out = path(&dir, "out");
    let program = script(
        dir.path(),
        "hook",
        &format!(
            r#"exec > "{out}"
echo "version=$QUBE_VERSION"
echo "hash=$QUBE_HASH"
echo "genesis=[$QUBE_GENESIS_URL]"
echo "required_by=[$QUBE_REQUIRED_BY]"
echo "stdin=$(readlink /proc/self/fd/0)"
echo "read=[$(cat)]"
echo "cwd=$(pwd)""#,
            out = out.display()
        ),
    );
    let proposal = upgrade("1.2.3", &sha256_hex(b"y"));
    let outcome = execute(
        &hook(&format!("command = [{}]", toml_str(&program))),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert!(outcome.is_success(), "{outcome:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        format!(
            "version=1.2.3\nhash={}\ngenesis=[]\nrequired_by=[]\nstdin=/dev/null\nread=[]\ncwd=/\n",
            sha256_hex(b"y")
        )
    );
}

#[tokio::test]
async fn relative_program_is_found_in_the_fixed_path() {
    let proposal = upgrade("1.2.3", &sha256_hex(b"y"));
    let step = run_step(
        &["true".to_owned()],
        &env_for(&proposal),
        Duration::from_secs(2),
    )
    .await;
    assert!(step.success(), "{step:?}");
    assert_eq!(step.argv0, "true");
}

#[tokio::test]
async fn non_zero_exit_is_a_failure_with_the_status_and_output_captured() {
    let dir = TempDir::new().unwrap();
    let program = script(dir.path(), "hook", "echo out; echo err >&2; exit 3");
    let proposal = upgrade("1.2.3", &sha256_hex(b"y"));
    let outcome = execute(
        &hook(&format!("command = [{}]", toml_str(&program))),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.status.as_str(), "failure");
    assert_eq!(outcome.error.as_deref(), Some("exit status 3"));
    let step = &outcome.steps[0];
    assert_eq!(step.status, StepStatus::Exited(3));
    assert!(!step.success());
    assert_eq!(step.stdout, b"out\n");
    assert_eq!(step.stderr, b"err\n");
    assert!(!step.stdout_truncated && !step.stderr_truncated);
}

#[tokio::test]
async fn killed_by_a_signal() {
    let dir = TempDir::new().unwrap();
    let program = script(dir.path(), "hook", "kill -9 $$");
    let proposal = upgrade("1.2.3", &sha256_hex(b"y"));
    let outcome = execute(
        &hook(&format!("command = [{}]", toml_str(&program))),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(outcome.error.as_deref(), Some("killed by signal 9"));
    assert_eq!(outcome.steps[0].status, StepStatus::Signaled(9));
}

fn pid_alive(pid: &str) -> bool {
    // A zombie is dead for our purpose: it runs no code.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next();
            !matches!(state, Some("Z" | "X"))
        }
    }
}

#[tokio::test]
async fn timeout_kills_the_hook_and_its_background_grandchild() {
    let dir = TempDir::new().unwrap();
    let marker = path(&dir, "grandchild-ran");
    let pidfile = path(&dir, "grandchild.pid");
    let program = script(
        dir.path(),
        "hook",
        &format!(
            r#"( sleep 2; touch "{marker}" ) &
echo $! > "{pidfile}"
echo started
sleep 30"#,
            marker = marker.display(),
            pidfile = pidfile.display()
        ),
    );
    let proposal = upgrade("1.2.3", &sha256_hex(b"y"));
    let started = Instant::now();
    let outcome = execute(
        &hook(&format!(
            "command = [{}]\ntimeout_secs = 1",
            toml_str(&program)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(outcome.error.as_deref(), Some("timeout after 1 s"));
    assert_eq!(outcome.steps[0].status, StepStatus::TimedOut);
    // Output written before the kill is kept.
    assert_eq!(outcome.steps[0].stdout, b"started\n");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(1);
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "grandchild {pid} survived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Past the moment the grandchild would have written its marker.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!marker.exists(), "the grandchild ran after the timeout");
}

#[tokio::test]
async fn large_output_is_truncated_without_blocking_the_hook() {
    let dir = TempDir::new().unwrap();
    // stderr first: reading only stdout to its end would deadlock.
    let program = script(
        dir.path(),
        "hook",
        "head -c 1000000 /dev/zero >&2\nhead -c 1000000 /dev/zero\necho done >&2",
    );
    let proposal = upgrade("1.2.3", &sha256_hex(b"y"));
    let step = run_step(&argv(&program), &env_for(&proposal), Duration::from_secs(2)).await;
    assert!(step.success(), "{:?}", step.status);
    assert_eq!(step.stdout.len(), MAX_CAPTURE_BYTES);
    assert_eq!(step.stderr.len(), MAX_CAPTURE_BYTES);
    assert!(step.stdout_truncated && step.stderr_truncated);
    assert!(step.stdout.iter().all(|b| *b == 0));
    assert!(step.duration < Duration::from_secs(2));
}

#[tokio::test]
async fn hash_mismatch_never_runs_the_command() {
    let dir = TempDir::new().unwrap();
    let marker = path(&dir, "command-ran");
    let program = script(
        dir.path(),
        "hook",
        &format!("touch \"{}\"", marker.display()),
    );
    std::fs::write(path(&dir, "znnd-v1.2.3"), b"tampered").unwrap();
    let template = format!("{}/znnd-{{version}}", dir.path().display());
    let proposal = upgrade("v1.2.3", &sha256_hex(b"genuine"));
    let outcome = execute(
        &hook(&format!(
            "command = [{}]\nartifact = {}",
            toml_str(&program),
            toml_str(&template)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.error.as_deref(), Some("hash mismatch"));
    assert!(outcome.steps.is_empty());
    assert!(!marker.exists());
}

#[tokio::test]
async fn matching_artifact_lets_the_command_run() {
    let dir = TempDir::new().unwrap();
    let marker = path(&dir, "command-ran");
    let program = script(
        dir.path(),
        "hook",
        &format!("touch \"{}\"", marker.display()),
    );
    std::fs::write(path(&dir, "znnd-v1.2.3"), b"genuine").unwrap();
    let template = format!("{}/znnd-{{version}}", dir.path().display());
    // The voted hash is compared case-insensitively.
    let proposal = upgrade("v1.2.3", &sha256_hex(b"genuine").to_uppercase());
    let outcome = execute(
        &hook(&format!(
            "command = [{}]\nartifact = {}",
            toml_str(&program),
            toml_str(&template)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert!(marker.exists());
}

#[tokio::test]
async fn fetch_runs_before_the_check_and_can_create_the_artifact() {
    let dir = TempDir::new().unwrap();
    let artifact = path(&dir, "znnd-v2.0.0");
    let marker = path(&dir, "command-ran");
    let fetch = script(
        dir.path(),
        "fetch",
        &format!(
            "test \"$QUBE_VERSION\" = v2.0.0 || exit 9\nprintf genuine > \"{}\"",
            artifact.display()
        ),
    );
    let program = script(
        dir.path(),
        "hook",
        &format!("touch \"{}\"", marker.display()),
    );
    let template = format!("{}/znnd-{{version}}", dir.path().display());
    let proposal = upgrade("v2.0.0", &sha256_hex(b"genuine"));
    let outcome = execute(
        &hook(&format!(
            "command = [{}]\nfetch = [{}]\nartifact = {}",
            toml_str(&program),
            toml_str(&fetch),
            toml_str(&template)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.steps.len(), 2);
    assert_eq!(outcome.steps[0].argv0, fetch);
    assert!(marker.exists());
}

#[tokio::test]
async fn fetch_failure_stops_before_the_command() {
    let dir = TempDir::new().unwrap();
    let marker = path(&dir, "command-ran");
    let fetch = script(dir.path(), "fetch", "exit 4");
    let program = script(
        dir.path(),
        "hook",
        &format!("touch \"{}\"", marker.display()),
    );
    let proposal = upgrade("v2.0.0", &sha256_hex(b"genuine"));
    let outcome = execute(
        &hook(&format!(
            "command = [{}]\nfetch = [{}]",
            toml_str(&program),
            toml_str(&fetch)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("fetch failed: exit status 4")
    );
    assert_eq!(outcome.steps.len(), 1);
    assert!(!marker.exists());
}

#[tokio::test]
async fn missing_artifact_is_named_and_the_command_never_runs() {
    let dir = TempDir::new().unwrap();
    let marker = path(&dir, "command-ran");
    let program = script(
        dir.path(),
        "hook",
        &format!("touch \"{}\"", marker.display()),
    );
    let template = format!("{}/znnd-{{version}}", dir.path().display());
    let proposal = upgrade("v1.2.3", &sha256_hex(b"genuine"));
    let outcome = execute(
        &hook(&format!(
            "command = [{}]\nartifact = {}",
            toml_str(&program),
            toml_str(&template)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(
        outcome.error,
        Some(format!(
            "artifact missing: {}/znnd-v1.2.3",
            dir.path().display()
        ))
    );
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_directory_as_artifact_is_refused() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(path(&dir, "znnd-v1.2.3")).unwrap();
    let template = format!("{}/znnd-{{version}}", dir.path().display());
    let proposal = upgrade("v1.2.3", &sha256_hex(b""));
    let outcome = execute(
        &hook(&format!(
            "command = [\"/bin/true\"]\nartifact = {}",
            toml_str(&template)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    let error = outcome.error.unwrap();
    assert!(error.starts_with("artifact unreadable: "), "{error}");
    assert!(outcome.steps.is_empty());
}

#[tokio::test]
async fn long_errors_are_bounded() {
    let dir = TempDir::new().unwrap();
    let long = "d".repeat(200);
    std::fs::create_dir(path(&dir, &long)).unwrap();
    let template = format!("{}/{long}/{long}-{{version}}", dir.path().display());
    let proposal = upgrade("v1.2.3", &sha256_hex(b""));
    let outcome = execute(
        &hook(&format!(
            "command = [\"/bin/true\"]\nartifact = {}",
            toml_str(&template)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    let error = outcome.error.unwrap();
    assert!(error.starts_with("artifact missing: "), "{error}");
    assert!(error.len() <= MAX_ERROR_BYTES, "{}", error.len());
    assert!(error.ends_with("..."));
}

#[tokio::test]
async fn health_failure_triggers_rollback() {
    let dir = TempDir::new().unwrap();
    let rolled = path(&dir, "rolled-back");
    let program = script(dir.path(), "hook", "exit 0");
    // Healthy once the rollback has run.
    let health = script(
        dir.path(),
        "health",
        &format!("test -e \"{}\"", rolled.display()),
    );
    let rollback = script(
        dir.path(),
        "rollback",
        &format!(
            "echo \"$QUBE_VERSION $QUBE_FAILED_STEP $QUBE_HEALTH_RESULT $QUBE_COMMAND_RESULT\" > \"{}\"",
            rolled.display()
        ),
    );
    let proposal = upgrade("v1.2.3", &sha256_hex(b"y"));
    let outcome = execute(
        &hook(&format!(
            "command = [{}]\nhealth = [{}]\nrollback = [{}]",
            toml_str(&program),
            toml_str(&health),
            toml_str(&rollback)
        )),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.error.as_deref(), Some("rolled back"));
    let programs: Vec<&str> = outcome.steps.iter().map(|s| s.argv0.as_str()).collect();
    assert_eq!(programs, [&program, &health, &rollback, &health]);
    assert_eq!(
        std::fs::read_to_string(&rolled).unwrap(),
        "v1.2.3 health exit status 1 ok\n"
    );
}

#[tokio::test]
async fn failed_rollback_and_missing_rollback_are_reported() {
    let dir = TempDir::new().unwrap();
    let program = script(dir.path(), "hook", "exit 0");
    let health = script(dir.path(), "health", "exit 1");
    let rollback = script(dir.path(), "rollback", "exit 2");
    let proposal = upgrade("v1.2.3", &sha256_hex(b"y"));
    let env = env_for(&proposal);

    let with_rollback = hook(&format!(
        "command = [{}]\nhealth = [{}]\nrollback = [{}]",
        toml_str(&program),
        toml_str(&health),
        toml_str(&rollback)
    ));
    let outcome = execute(&with_rollback, &proposal, &env).await;
    assert_eq!(outcome.error.as_deref(), Some("rollback failed"));
    assert_eq!(outcome.steps.len(), 3);
    assert_eq!(
        outcome.summary[2].error.as_deref(),
        Some("exit status 2"),
        "{:?}",
        outcome.summary
    );

    // The rollback itself succeeds but health still fails after it.
    let ok = script(dir.path(), "ok", "exit 0");
    let useless_rollback = hook(&format!(
        "command = [{}]\nhealth = [{}]\nrollback = [{}]",
        toml_str(&program),
        toml_str(&health),
        toml_str(&ok)
    ));
    let outcome = execute(&useless_rollback, &proposal, &env).await;
    assert_eq!(outcome.error.as_deref(), Some("rollback failed"));
    let names: Vec<&str> = outcome.summary.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["command", "health", "rollback", "health after rollback"]
    );
    assert_eq!(outcome.summary[2].error, None);
    assert_eq!(outcome.summary[3].error.as_deref(), Some("exit status 1"));

    let without_rollback = hook(&format!(
        "command = [{}]\nhealth = [{}]",
        toml_str(&program),
        toml_str(&health)
    ));
    let outcome = execute(&without_rollback, &proposal, &env).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("health check failed: exit status 1")
    );
    assert_eq!(outcome.steps.len(), 2);

    let healthy = script(dir.path(), "healthy", "exit 0");
    let passing = hook(&format!(
        "command = [{}]\nhealth = [{}]\nrollback = [{}]",
        toml_str(&program),
        toml_str(&healthy),
        toml_str(&rollback)
    ));
    let outcome = execute(&passing, &proposal, &env).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.steps.len(), 2);
}

// --- the health window --------------------------------------------------------

/// A "service" the hooks start: a real background `sleep` whose pid they
/// write to `service.pid`. Killed (only that pid) when the test ends.
struct Service {
    dir: TempDir,
}

impl Service {
    fn new() -> Service {
        Service {
            dir: TempDir::new().unwrap(),
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// A script that logs `label` (with `$QUBE_FAILED_STEP` and
    /// `$QUBE_HEALTH_RESULT` when set) and starts the service for
    /// `lifetime_secs`, then exits with `exit`.
    fn starter(&self, name: &str, label: &str, lifetime_secs: u64, exit: i32) -> String {
        script(
            self.dir.path(),
            name,
            &format!(
                "echo \"{label}${{QUBE_FAILED_STEP:+ failed=$QUBE_FAILED_STEP}}${{QUBE_HEALTH_RESULT:+ health=$QUBE_HEALTH_RESULT}}\" >> \"{log}\"\n\
                 sleep {lifetime_secs} </dev/null >/dev/null 2>&1 &\n\
                 echo $! > \"{pid}\"\n\
                 exit {exit}",
                log = self.file("log"),
                pid = self.file("service.pid"),
            ),
        )
    }

    /// A health check: passes while the service process is alive (not a
    /// zombie), logging `health ok` or `health dead`.
    fn check(&self) -> String {
        script(
            self.dir.path(),
            "health",
            &format!(
                "pid=$(cat \"{pid}\")\n\
                 state=$(cut -d' ' -f3 \"/proc/$pid/stat\" 2>/dev/null)\n\
                 if [ -n \"$state\" ] && [ \"$state\" != Z ]; then echo 'health ok' >> \"{log}\"; exit 0; fi\n\
                 echo 'health dead' >> \"{log}\"\n\
                 exit 1",
                log = self.file("log"),
                pid = self.file("service.pid"),
            ),
        )
    }

    fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.file("log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The log with runs of the same line collapsed to one.
    fn log_collapsed(&self) -> Vec<String> {
        let mut lines = self.log();
        lines.dedup();
        lines
    }

    /// `[upgrade]` with `command`, `rollback` and a `[upgrade.health]`
    /// window of `settle_secs` 1, `interval_secs` 1, `window_secs` 5.
    fn hook(&self, command: &str, rollback: &str) -> Hook {
        hook(&format!(
            "command = [{}]\nrollback = [{}]\ntimeout_secs = 10\n\n[upgrade.health]\ncommand = [{}]\nsettle_secs = 1\ninterval_secs = 1\nwindow_secs = 5",
            toml_str(command),
            toml_str(rollback),
            toml_str(&self.check())
        ))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // The last service the hooks started, by its pid: it is this test's.
        if let Ok(text) = std::fs::read_to_string(self.file("service.pid")) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

#[tokio::test]
async fn health_window_catches_a_service_that_dies_after_3_s_and_rolls_back() {
    let service = Service::new();
    let command = service.starter("upgrade", "upgrade", 3, 0);
    let rollback = service.starter("rollback", "rollback", 60, 0);
    let proposal = upgrade("v1.2.3", &sha256_hex(b"y"));
    let started = Instant::now();
    let outcome = execute(
        &service.hook(&command, &rollback),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.error.as_deref(), Some("rolled back"), "{outcome:?}");
    assert_eq!(
        service.log_collapsed(),
        [
            "upgrade",
            "health ok",
            "health dead",
            "rollback failed=health health=exit status 1",
            "health ok",
        ]
    );
    let names: Vec<&str> = outcome.summary.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["command", "health", "rollback", "health after rollback"]
    );
    let health = &outcome.summary[1];
    assert_eq!(health.error.as_deref(), Some("exit status 1"));
    // Caught inside the window (settle 1 s + window 5 s), after it passed
    // at least once.
    assert!(health.runs >= 2, "{health:?}");
    assert!(health.duration_ms >= 2_000, "{health:?}");
    assert!(health.duration_ms < 6_000, "{health:?}");
    // After the rollback the whole window ran again and passed.
    let again = &outcome.summary[3];
    assert_eq!(again.error, None);
    assert!(again.runs >= 2, "{again:?}");
    assert!(again.duration_ms >= 6_000, "{again:?}");
    assert!(started.elapsed() >= Duration::from_secs(8));
}

#[tokio::test]
async fn health_window_passes_a_healthy_service() {
    let service = Service::new();
    let command = service.starter("upgrade", "upgrade", 60, 0);
    let rollback = service.starter("rollback", "rollback", 60, 0);
    let proposal = upgrade("v1.2.3", &sha256_hex(b"y"));
    let outcome = execute(
        &service.hook(&command, &rollback),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(service.log_collapsed(), ["upgrade", "health ok"]);
    let health = &outcome.summary[1];
    assert_eq!((health.name, health.error.as_deref()), ("health", None));
    // Settle 1 s, then checks from 0 to 5 s.
    assert!(health.duration_ms >= 6_000, "{health:?}");
    let checks = service.log().iter().filter(|l| *l == "health ok").count();
    assert!(checks >= 2, "{checks} checks");
    assert_eq!(outcome.steps.len(), 2);
}

#[tokio::test]
async fn health_window_reports_a_failing_rollback() {
    let service = Service::new();
    let command = service.starter("upgrade", "upgrade", 3, 0);
    // The rollback starts nothing useful and fails.
    let rollback = script(
        service.dir.path(),
        "rollback",
        &format!(
            "echo \"rollback $QUBE_ROLLBACK_RESULT\" >> \"{}\"\nexit 2",
            service.file("log")
        ),
    );
    let proposal = upgrade("v1.2.3", &sha256_hex(b"y"));
    let outcome = execute(
        &service.hook(&command, &rollback),
        &proposal,
        &env_for(&proposal),
    )
    .await;
    assert_eq!(outcome.status, Status::Failure);
    assert_eq!(outcome.error.as_deref(), Some("rollback failed"));
    assert_eq!(
        service.log_collapsed(),
        ["upgrade", "health ok", "health dead", "rollback "]
    );
    let names: Vec<&str> = outcome.summary.iter().map(|s| s.name).collect();
    assert_eq!(names, ["command", "health", "rollback"]);
    assert_eq!(outcome.summary[2].error.as_deref(), Some("exit status 2"));
}

#[tokio::test]
async fn health_tries_retry_a_check_before_it_fails() {
    let dir = TempDir::new().unwrap();
    let count = path(&dir, "count");
    let program = script(dir.path(), "hook", "exit 0");
    // Fails on its first two runs, passes from the third.
    let flaky = script(
        dir.path(),
        "flaky",
        &format!(
            "echo x >> \"{c}\"\n[ \"$(wc -l < \"{c}\")\" -ge 3 ]",
            c = count.display()
        ),
    );
    let proposal = upgrade("v1.2.3", &sha256_hex(b"y"));
    let with_tries = |tries: u32| {
        hook(&format!(
            "command = [{}]\n\n[upgrade.health]\ncommand = [{}]\nsettle_secs = 0\nwindow_secs = 0\ntries = {tries}",
            toml_str(&program),
            toml_str(&flaky)
        ))
    };
    let outcome = execute(&with_tries(2), &proposal, &env_for(&proposal)).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("health check failed: exit status 1")
    );
    assert_eq!(outcome.summary[1].runs, 2);
    std::fs::remove_file(&count).unwrap();
    let outcome = execute(&with_tries(3), &proposal, &env_for(&proposal)).await;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.summary[1].runs, 3);
}

#[tokio::test]
async fn missing_program_is_a_spawn_failure_not_a_panic() {
    let dir = TempDir::new().unwrap();
    let missing = path(&dir, "no-such-program");
    let proposal = upgrade("v1.2.3", &sha256_hex(b"y"));
    let env = env_for(&proposal);
    let step = run_step(
        &argv(missing.to_str().unwrap()),
        &env,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        matches!(step.status, StepStatus::SpawnFailed(_)),
        "{:?}",
        step.status
    );
    assert!(!step.success());
    assert!(step.error().unwrap().starts_with("spawn failed: "));

    let outcome = execute(
        &hook(&format!(
            "command = [{}]",
            toml_str(missing.to_str().unwrap())
        )),
        &proposal,
        &env,
    )
    .await;
    assert_eq!(outcome.status, Status::Failure);
    assert!(outcome.error.unwrap().starts_with("spawn failed: "));

    let empty = run_step(&[], &env, Duration::from_secs(1)).await;
    assert!(matches!(empty.status, StepStatus::SpawnFailed(_)));
}

#[test]
fn sha256_file_streams_and_refuses_non_files() {
    let dir = TempDir::new().unwrap();
    let abc = path(&dir, "abc");
    std::fs::write(&abc, b"abc").unwrap();
    assert_eq!(
        hex::encode(sha256_file(&abc).unwrap()),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let big: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
    let big_path = path(&dir, "big");
    std::fs::write(&big_path, &big).unwrap();
    assert_eq!(
        hex::encode(sha256_file(&big_path).unwrap()),
        sha256_hex(&big)
    );

    let missing = sha256_file(&path(&dir, "missing")).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    let is_dir = sha256_file(dir.path()).unwrap_err();
    assert_eq!(is_dir.kind(), std::io::ErrorKind::InvalidInput);
    // A FIFO with no writer must not block.
    let fifo = path(&dir, "fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = sha256_file(&fifo).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
