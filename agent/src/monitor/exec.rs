//! Running the operator's hooks under the execution contract (`docs/PROTOCOL.md`
//! section 12).
//!
//! [`execute`] runs one `[upgrade]` or `[reboot]` section for a proposal
//! that won the quorum, in this order:
//!
//! 1. the optional `fetch` argv;
//! 2. when `artifact` is set, the check SHA-256(artifact) == voted hash
//!    (a mismatch is a failure with error `hash mismatch`, and `command`
//!    never runs);
//! 3. the `command` argv;
//! 4. the optional health window ([`Health`]: settle, then checks that
//!    must all pass), and when it fails the optional `rollback` argv
//!    followed by the health window again.
//!
//! Each argv runs through [`run_step`]: executed directly (never through a
//! shell), with an environment of only the `QUBE_*` variables of
//! [`ExecEnv`] plus a fixed `PATH` ([`HOOK_PATH`]), stdin from `/dev/null`,
//! working directory `/`, stdout and stderr captured concurrently and
//! bounded ([`MAX_CAPTURE_BYTES`] each), in a process group of its own that
//! is killed as a whole (SIGKILL) when the time limit passes.
//!
//! The [`Outcome`] carries a short error for the acknowledgement's `error`
//! tag. That tag is published to relays, so it never contains hook output
//! (only exit statuses, signal numbers, I/O error messages and the
//! configured artifact path); the output goes to the log and stays in the
//! [`StepResult`]s.
//!
//! Limits: a hook process that leaves its process group (`setsid`,
//! `setpgid`) or is started by a service manager escapes the kill on
//! timeout; a process the hook leaves running after it exits successfully is
//! not killed (a hook may legitimately start a long-running service).

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::config::{ArtifactTemplate, Health, Hook, HEALTH_RETRY_PAUSE_SECS};
use crate::core::directive::Proposal;
use crate::core::text::printable;

/// The only `PATH` a hook sees; a relative program name in an argv is also
/// looked up in it.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of each of a step's stdout and stderr is kept, in bytes
/// (64 KiB). The rest is read and discarded, so a chatty hook never blocks
/// on a full pipe; [`StepResult::stdout_truncated`] and
/// [`StepResult::stderr_truncated`] say when that happened.
pub const MAX_CAPTURE_BYTES: usize = 64 * 1024;

/// The longest [`Outcome::error`], in bytes (the acknowledgement's `error`
/// tag).
pub const MAX_ERROR_BYTES: usize = 256;

/// How long output is still read after a step's process has exited (or was
/// killed), in seconds. Only a process that escaped or outlived the step
/// and still holds the pipes makes this wait last; after it the pipes are
/// closed.
pub const OUTPUT_GRACE_SECS: u64 = 2;

/// How long to wait for a killed process to be reaped, in seconds, before
/// leaving it to tokio's background reaping.
const REAP_GRACE_SECS: u64 = 5;

/// How much of each stream one log line shows, in bytes (the first and the
/// last half).
const LOG_OUTPUT_BYTES: usize = 2048;

/// The size of each read from a pipe or the artifact, in bytes.
const CHUNK_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------

/// The `QUBE_*` environment of every hook step (`docs/PROTOCOL.md` section 12).
///
/// | variable | value |
/// |---|---|
/// | `QUBE_ACTION` | `upgrade` or `reboot` |
/// | `QUBE_VERSION` | the `version` tag exactly as signed (`v1.2.3` stays `v1.2.3`) |
/// | `QUBE_HASH` | the voted SHA-256, 64 lowercase hex characters |
/// | `QUBE_NETWORK` | the `network` tag |
/// | `QUBE_GENESIS_URL` | the `genesis_url` tag; the empty string when absent (upgrades) |
/// | `QUBE_REQUIRED_BY` | the `required_by` tag in decimal unix seconds; the empty string when absent (upgrades) |
/// | `QUBE_DIRECTIVE_IDS` | the ids of the directives that formed the quorum, 64 lowercase hex characters each, comma-separated, in the order given |
/// | `QUBE_NODE_ID` | this node's `node_id` (as in its acks) |
///
/// A value containing a NUL byte cannot be passed to a process: every step
/// then fails to start ([`StepStatus::SpawnFailed`]). Values from a
/// verified directive are printable text in practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEnv {
    vars: Vec<(&'static str, String)>,
}

impl ExecEnv {
    /// Builds the environment for `proposal`, the ids of the directives
    /// that voted for it (32-byte NIP-01 event ids), and this node's id.
    pub fn new(proposal: &Proposal, directive_ids: &[[u8; 32]], node_id: &str) -> ExecEnv {
        let ids = directive_ids
            .iter()
            .map(hex::encode)
            .collect::<Vec<_>>()
            .join(",");
        let vars = vec![
            ("QUBE_ACTION", proposal.action.as_str().to_owned()),
            ("QUBE_VERSION", proposal.version.clone()),
            ("QUBE_HASH", proposal.hash.to_ascii_lowercase()),
            ("QUBE_NETWORK", proposal.network.clone()),
            (
                "QUBE_GENESIS_URL",
                proposal.genesis_url.clone().unwrap_or_default(),
            ),
            (
                "QUBE_REQUIRED_BY",
                proposal
                    .required_by
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ),
            ("QUBE_DIRECTIVE_IDS", ids),
            ("QUBE_NODE_ID", node_id.to_owned()),
        ];
        ExecEnv { vars }
    }

    /// An environment of exactly `vars` (names should start with `QUBE_`),
    /// for hooks that act on no proposal: the alert hook
    /// (`QUBE_ALERT`, `QUBE_ALERT_MESSAGE`, ...; README.md, "Telemetry").
    pub fn from_vars(vars: Vec<(&'static str, String)>) -> ExecEnv {
        ExecEnv { vars }
    }

    /// The variables as `(name, value)` pairs, in the order of the table
    /// above (`PATH` is not among them; [`run_step`] adds [`HOOK_PATH`]).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// Sets `name` to `value`, replacing an earlier value (the step
    /// variables of [`execute`]).
    fn set(&mut self, name: &'static str, value: String) {
        match self.vars.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.vars.push((name, value)),
        }
    }

    /// The value of one variable, `None` for a name not in the table.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------
// One step
// ---------------------------------------------------------------------------

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepStatus {
    /// The process exited with this code (0 is success).
    Exited(i32),
    /// The process was ended by this signal number (not by the agent).
    Signaled(i32),
    /// The time limit passed; the whole process group was killed (SIGKILL)
    /// and the process reaped.
    TimedOut,
    /// The process could not be started (missing program, not executable,
    /// empty argv, NUL byte in an argument or variable): the I/O error
    /// message.
    SpawnFailed(String),
    /// Waiting for the process failed (should not happen); its process
    /// group was killed. The I/O error message.
    WaitFailed(String),
}

impl fmt::Display for StepStatus {
    /// `exit status N`, `killed by signal N`, `timeout`, `spawn failed:
    /// MESSAGE` or `wait failed: MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepStatus::Exited(code) => write!(f, "exit status {code}"),
            StepStatus::Signaled(signal) => write!(f, "killed by signal {signal}"),
            StepStatus::TimedOut => f.write_str("timeout"),
            StepStatus::SpawnFailed(e) => write!(f, "spawn failed: {e}"),
            StepStatus::WaitFailed(e) => write!(f, "wait failed: {e}"),
        }
    }
}

/// What one argv did: how it ended, its captured output, how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The program as configured (`argv[0]`); empty for an empty argv.
    pub argv0: String,
    /// How it ended.
    pub status: StepStatus,
    /// The first [`MAX_CAPTURE_BYTES`] bytes of its stdout.
    pub stdout: Vec<u8>,
    /// Whether stdout was longer than [`MAX_CAPTURE_BYTES`] (or output
    /// still arriving [`OUTPUT_GRACE_SECS`] after the exit was cut off).
    pub stdout_truncated: bool,
    /// The first [`MAX_CAPTURE_BYTES`] bytes of its stderr.
    pub stderr: Vec<u8>,
    /// Whether stderr was longer than [`MAX_CAPTURE_BYTES`] (or cut off
    /// like stdout).
    pub stderr_truncated: bool,
    /// The time limit it ran under.
    pub timeout: Duration,
    /// Wall time from spawn to the end of output capture.
    pub duration: Duration,
}

impl StepResult {
    /// `true` when the process exited with code 0.
    pub fn success(&self) -> bool {
        self.status == StepStatus::Exited(0)
    }

    /// Why the step failed, `None` on success: `exit status N`, `killed by
    /// signal N`, `timeout after N s` (N the time limit in seconds),
    /// `spawn failed: MESSAGE` or `wait failed: MESSAGE`. Never contains
    /// the step's output.
    pub fn error(&self) -> Option<String> {
        match &self.status {
            StepStatus::Exited(0) => None,
            StepStatus::TimedOut => Some(format!("timeout after {} s", secs(self.timeout))),
            other => Some(other.to_string()),
        }
    }
}

/// Runs one argv under the execution contract and waits for it, at most
/// `timeout` (plus up to [`OUTPUT_GRACE_SECS`] for output, and the time to
/// reap a killed process).
///
/// * `argv[0]` is executed directly (never a shell); a relative name is
///   looked up in [`HOOK_PATH`].
/// * The environment is cleared, then holds only `env`'s `QUBE_*`
///   variables and `PATH=`[`HOOK_PATH`].
/// * stdin is `/dev/null`; the working directory is `/`.
/// * stdout and stderr are read concurrently; the first
///   [`MAX_CAPTURE_BYTES`] of each are kept and the rest drained.
/// * The process leads a new process group. When `timeout` passes the
///   whole group gets SIGKILL (so do children it spawned in the background)
///   and the process is reaped. If the returned future is dropped early the
///   process itself gets SIGKILL (`kill_on_drop`).
///
/// Never fails and never panics: a program that cannot be started is
/// [`StepStatus::SpawnFailed`]. The outcome and a bounded excerpt of the
/// output are logged (`tracing`, target `qube_agent::exec`).
pub async fn run_step(argv: &[String], env: &ExecEnv, timeout: Duration) -> StepResult {
    let started = Instant::now();
    let argv0 = argv.first().cloned().unwrap_or_default();
    let mut result = StepResult {
        argv0,
        status: StepStatus::SpawnFailed("empty argv".to_owned()),
        stdout: Vec::new(),
        stdout_truncated: false,
        stderr: Vec::new(),
        stderr_truncated: false,
        timeout,
        duration: Duration::ZERO,
    };
    let Some((program, args)) = argv.split_first() else {
        log_step(&result);
        return result;
    };

    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.vars())
        .env("PATH", HOOK_PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match spawn_retrying_busy(&mut command).await {
        Ok(child) => child,
        Err(e) => {
            result.status = StepStatus::SpawnFailed(e.to_string());
            result.duration = started.elapsed();
            log_step(&result);
            return result;
        }
    };
    // The child leads its own group: its pid is the group id. It stays
    // valid until the child is reaped, which happens only below.
    let pgid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    // `stop` tells the readers to give up once the grace period after the
    // exit has passed; `stop_tx.closed()` says both readers have finished.
    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = async {
        let status = wait_or_kill(&mut child, pgid, timeout).await;
        tokio::select! {
            () = stop_tx.closed() => {}
            () = tokio::time::sleep(Duration::from_secs(OUTPUT_GRACE_SECS)) => {
                tracing::warn!(
                    program = %result.argv0,
                    "hook output still open {OUTPUT_GRACE_SECS} s after exit; closing it"
                );
                // No receiver left means the readers already stopped.
                let _ = stop_tx.send(true);
            }
        }
        status
    };
    let (status, out, err) = tokio::join!(
        wait,
        capture(stdout, stop_rx.clone()),
        capture(stderr, stop_rx)
    );

    result.status = status;
    result.stdout = out.bytes;
    result.stdout_truncated = out.truncated;
    result.stderr = err.bytes;
    result.stderr_truncated = err.truncated;
    result.duration = started.elapsed();
    log_step(&result);
    result
}

/// Waits for `child` at most `timeout`; on timeout (or a wait error) kills
/// its process group and reaps it.
async fn wait_or_kill(child: &mut Child, pgid: Option<u32>, timeout: Duration) -> StepStatus {
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => return exit_status(status),
        Ok(Err(e)) => StepStatus::WaitFailed(e.to_string()),
        Err(_elapsed) => StepStatus::TimedOut,
    };
    kill_group(child, pgid);
    let reap = Duration::from_secs(REAP_GRACE_SECS);
    match tokio::time::timeout(reap, child.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "reaping a killed hook failed"),
        Err(_) => tracing::warn!(
            "killed hook not reaped after {REAP_GRACE_SECS} s; leaving it to background reaping"
        ),
    }
    status
}

/// SIGKILL to the whole process group `pgid`, and to the child itself.
fn kill_group(child: &mut Child, pgid: Option<u32>) {
    // Never 0 (our own group) or 1 (every process we may signal): only a
    // real child pid names the group we created.
    match pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
        Some(raw) => {
            if let Err(e) = killpg(Pid::from_raw(raw), Signal::SIGKILL) {
                tracing::warn!(pgid = raw, error = %e, "killing the hook's process group failed");
            }
        }
        None => tracing::warn!("hook has no process id; killing the process only"),
    }
    // Harmless if the group kill already got it; an error only means it is
    // gone already.
    let _ = child.start_kill();
}

fn exit_status(status: ExitStatus) -> StepStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => StepStatus::Exited(code),
        (None, Some(signal)) => StepStatus::Signaled(signal),
        (None, None) => StepStatus::WaitFailed(format!("unrecognised wait status {status}")),
    }
}

/// The kept start of one output stream.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Captured {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_CAPTURE_BYTES.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend(data.iter().take(room));
    }
}

/// Reads `reader` to its end (or until `stop` turns true), keeping the
/// first [`MAX_CAPTURE_BYTES`].
async fn capture<R: AsyncRead + Unpin>(
    reader: Option<R>,
    mut stop: watch::Receiver<bool>,
) -> Captured {
    let mut captured = Captured::default();
    let Some(mut reader) = reader else {
        return captured;
    };
    let mut chunk = vec![0u8; CHUNK_BYTES];
    loop {
        if *stop.borrow() {
            captured.truncated = true;
            break;
        }
        tokio::select! {
            read = reader.read(&mut chunk) => match read {
                Ok(0) => break,
                Ok(n) => captured.push(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "reading hook output failed");
                    break;
                }
            },
            // A change (or the sender gone) both mean: stop now.
            _ = stop.changed() => {
                captured.truncated = true;
                break;
            }
        }
    }
    captured
}

fn log_step(step: &StepResult) {
    let stdout = excerpt(&step.stdout, step.stdout_truncated);
    let stderr = excerpt(&step.stderr, step.stderr_truncated);
    let duration_ms = u64::try_from(step.duration.as_millis()).unwrap_or(u64::MAX);
    if step.success() {
        tracing::info!(
            program = %step.argv0, status = %step.status, duration_ms, %stdout, %stderr,
            "hook step succeeded"
        );
    } else {
        tracing::warn!(
            program = %step.argv0,
            status = %step.status,
            error = step.error().unwrap_or_default(),
            duration_ms,
            %stdout,
            %stderr,
            "hook step failed"
        );
    }
}

/// At most [`LOG_OUTPUT_BYTES`] of `bytes` (the first and last halves),
/// lossily decoded, escaped ([`printable`]) and quoted, for one log line.
fn excerpt(bytes: &[u8], truncated: bool) -> String {
    let half = LOG_OUTPUT_BYTES / 2;
    let quoted = |b: &[u8]| format!("\"{}\"", printable(&String::from_utf8_lossy(b), usize::MAX));
    let mut text = if bytes.len() <= LOG_OUTPUT_BYTES {
        quoted(bytes)
    } else {
        let head = bytes.get(..half).unwrap_or_default();
        let tail = bytes
            .get(bytes.len().saturating_sub(half)..)
            .unwrap_or_default();
        format!(
            "{} ... {} bytes ... {}",
            quoted(head),
            bytes.len().saturating_sub(2 * half),
            quoted(tail)
        )
    };
    if truncated {
        text.push_str(" (truncated)");
    }
    text
}

fn secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        format!("{:.3}", d.as_secs_f64())
    }
}

// ---------------------------------------------------------------------------
// Artifact hash
// ---------------------------------------------------------------------------

/// Spawns `command`, retrying briefly while the program file is busy
/// (`ETXTBSY`: another process, such as a deploy tool writing the hook, or a
/// concurrent fork that inherited its write descriptor, still has it open
/// for writing). Up to 10 attempts, 50 ms apart.
async fn spawn_retrying_busy(command: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && attempts < 9 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return result,
        }
    }
}

/// Checks SHA-256(artifact) == the voted hash (`docs/PROTOCOL.md` section 12).
///
/// # Errors
/// The outcome error: `hash mismatch`, `artifact missing: PATH`,
/// `artifact unreadable: PATH: MESSAGE`, or an unusable version.
async fn verify_artifact(template: &ArtifactTemplate, proposal: &Proposal) -> Result<(), String> {
    let Some(path) = template.expand(&proposal.version) else {
        return Err(format!(
            "artifact path: version {:?} cannot be used in a path",
            proposal.version
        ));
    };
    let task_path = path.clone();
    let digest =
        tokio::task::spawn_blocking(move || crate::artifact::sha256_file(&task_path)).await;
    match digest {
        Ok(Ok(digest)) => {
            let actual = hex::encode(digest);
            if actual == proposal.hash.to_ascii_lowercase() {
                tracing::info!(artifact = %path.display(), hash = %actual, "artifact hash verified");
                Ok(())
            } else {
                tracing::warn!(
                    artifact = %path.display(),
                    expected = %proposal.hash,
                    actual = %actual,
                    "artifact hash mismatch; the hook will not run"
                );
                Err("hash mismatch".to_owned())
            }
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
            Err(format!("artifact missing: {}", path.display()))
        }
        Ok(Err(e)) => Err(format!("artifact unreadable: {}: {e}", path.display())),
        Err(e) => Err(format!("artifact unreadable: {}: {e}", path.display())),
    }
}

/// Runs `version_command` (`argv`, under the execution contract of
/// [`run_step`] with no `QUBE_*` variables, at most `timeout`) and reads
/// the installed version from its standard output: the whole output,
/// trimmed, must be a semantic version (a leading `v` allowed).
///
/// # Errors
/// Why no version was read, for the log: the step's error (`exit status
/// N`, `timeout after N s`, ...), or `output is not a version: "..."`
/// (escaped, cut at 80 characters).
pub async fn installed_version(
    argv: &[String],
    timeout: Duration,
) -> Result<semver::Version, String> {
    let step = run_step(argv, &ExecEnv::from_vars(Vec::new()), timeout).await;
    if let Some(e) = step.error() {
        return Err(e);
    }
    let text = String::from_utf8_lossy(&step.stdout);
    let text = text.trim();
    crate::core::version::Version::parse(text)
        .map(crate::core::version::Version::into_semver)
        .map_err(|_| format!("output is not a version: \"{}\"", printable(text, 80)))
}

// ---------------------------------------------------------------------------
// A whole hook section
// ---------------------------------------------------------------------------

pub use crate::core::ack::Status;

/// One step of a run as the journal and the log record it: which step, how
/// it ended, when, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSummary {
    /// `fetch`, `artifact` (the hash check), `command`, `health`,
    /// `rollback`, or `health after rollback`.
    pub name: &'static str,
    /// `None` when it passed; otherwise the step's error
    /// ([`StepResult::error`] for a process; for `artifact` the outcome
    /// error such as `hash mismatch`). Never hook output.
    pub error: Option<String>,
    /// When the step started, unix seconds (for a health step: when its
    /// settle time started).
    pub started_at: u64,
    /// Wall time of the whole step in milliseconds (for a health step:
    /// settle time, window and every check).
    pub duration_ms: u64,
    /// Processes run: 1 for `fetch`, `command` and `rollback`, 0 for
    /// `artifact`, every attempt of every check for a health step.
    pub runs: u32,
}

impl StepSummary {
    /// `ok`, or the error: the value of the step's `QUBE_<STEP>_RESULT`.
    pub fn result(&self) -> &str {
        self.error.as_deref().unwrap_or("ok")
    }
}

/// What [`execute`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Success or failure.
    pub status: Status,
    /// `None` on success; on failure a short reason for the ack's `error`
    /// tag, at most [`MAX_ERROR_BYTES`] bytes, no control characters, never
    /// hook output. One of:
    ///
    /// * `fetch failed: REASON`
    /// * `hash mismatch`
    /// * `artifact missing: PATH`, `artifact unreadable: PATH: MESSAGE`
    /// * `REASON` of `command` (see [`StepResult::error`]: `exit status N`,
    ///   `killed by signal N`, `timeout after N s`, `spawn failed: ...`)
    /// * `health check failed: REASON` (no `rollback` configured)
    /// * `rolled back`: health failed, `rollback` succeeded and health
    ///   then passed again
    /// * `rollback failed`: health failed, then `rollback` failed or
    ///   health failed again after it (which one, and why, is in
    ///   [`Outcome::summary`], the journal and the log)
    pub error: Option<String>,
    /// The processes that ran, in order (fetch, command, health,
    /// rollback, health): all of them except that each health step keeps
    /// only its last check (the one that failed, or the last that passed).
    pub steps: Vec<StepResult>,
    /// Every step that ran, in order, with how it ended and when.
    pub summary: Vec<StepSummary>,
}

impl Outcome {
    fn success(steps: Vec<StepResult>, summary: Vec<StepSummary>) -> Outcome {
        Outcome {
            status: Status::Success,
            error: None,
            steps,
            summary,
        }
    }

    fn failure(error: String, steps: Vec<StepResult>, summary: Vec<StepSummary>) -> Outcome {
        Outcome {
            status: Status::Failure,
            error: Some(bound_error(&error)),
            steps,
            summary,
        }
    }

    /// A failure before any step ran (`deadline passed`, a missing hook
    /// section): `error` bounded as [`Outcome::error`] says, no steps.
    pub fn refused(error: String) -> Outcome {
        Outcome::failure(error, Vec::new(), Vec::new())
    }

    /// `true` when the status is [`Status::Success`].
    pub fn is_success(&self) -> bool {
        self.status == Status::Success
    }
}

/// `error` with control characters replaced by `?`, cut to at most
/// [`MAX_ERROR_BYTES`] bytes on a character boundary (ending in `...` when
/// cut).
fn bound_error(error: &str) -> String {
    const MARK: &str = "...";
    let clean: String = error
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.len() <= MAX_ERROR_BYTES {
        return clean;
    }
    let mut out = String::with_capacity(MAX_ERROR_BYTES);
    for c in clean.chars() {
        if out.len() + c.len_utf8() + MARK.len() > MAX_ERROR_BYTES {
            break;
        }
        out.push(c);
    }
    out.push_str(MARK);
    out
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The steps of one run so far: the processes, the summaries, and the
/// environment later steps see (`QUBE_<STEP>_RESULT`, `QUBE_<STEP>_AT`).
#[derive(Debug)]
struct Run {
    env: ExecEnv,
    steps: Vec<StepResult>,
    summary: Vec<StepSummary>,
}

impl Run {
    /// Records a finished step: logs it, adds it to the summary and sets
    /// its variables for the steps after it.
    fn record(&mut self, summary: StepSummary) {
        let vars = match summary.name {
            "fetch" => Some(("QUBE_FETCH_RESULT", "QUBE_FETCH_AT")),
            "artifact" => Some(("QUBE_ARTIFACT_RESULT", "QUBE_ARTIFACT_AT")),
            "command" => Some(("QUBE_COMMAND_RESULT", "QUBE_COMMAND_AT")),
            "health" => Some(("QUBE_HEALTH_RESULT", "QUBE_HEALTH_AT")),
            "rollback" => Some(("QUBE_ROLLBACK_RESULT", "QUBE_ROLLBACK_AT")),
            _ => None,
        };
        let ended_at = summary
            .started_at
            .saturating_add(summary.duration_ms / 1000);
        if let Some((result, at)) = vars {
            self.env.set(result, summary.result().to_owned());
            self.env.set(at, ended_at.to_string());
        }
        tracing::info!(
            step = summary.name,
            result = summary.result(),
            started_at = summary.started_at,
            duration_ms = summary.duration_ms,
            runs = summary.runs,
            "hook step done"
        );
        self.summary.push(summary);
    }

    /// Checks the artifact's hash (when `hook` has an `artifact`) as step
    /// `artifact` and records it; returns its error.
    async fn artifact(&mut self, hook: &Hook, proposal: &Proposal) -> Result<(), String> {
        let Some(template) = hook.artifact() else {
            return Ok(());
        };
        let started_at = crate::now();
        let began = Instant::now();
        let checked = verify_artifact(template, proposal).await;
        self.record(StepSummary {
            name: "artifact",
            error: checked.as_ref().err().cloned(),
            started_at,
            duration_ms: millis(began.elapsed()),
            runs: 0,
        });
        checked
    }

    /// Runs one argv as step `name` and records it; returns its error.
    async fn process(
        &mut self,
        name: &'static str,
        argv: &[String],
        timeout: Duration,
    ) -> Option<String> {
        let started_at = crate::now();
        let step = run_step(argv, &self.env, timeout).await;
        let error = step.error();
        self.record(StepSummary {
            name,
            error: error.clone(),
            started_at,
            duration_ms: millis(step.duration),
            runs: 1,
        });
        self.steps.push(step);
        error
    }

    /// Runs the health window as step `name` and records it; returns its
    /// error (that of the check that failed).
    ///
    /// Waits `settle_secs`, then checks at the start of the window, every
    /// `interval_secs` after (start to start; a check that runs longer
    /// delays the next) and once more when `window_secs` have passed since
    /// the first check. Each check is up to `tries` runs of the command,
    /// [`HEALTH_RETRY_PAUSE_SECS`] apart; the first check whose every
    /// attempt fails ends the window. Every wait is bounded by the
    /// configured seconds (at most a day each).
    async fn health(
        &mut self,
        name: &'static str,
        health: &Health,
        timeout: Duration,
    ) -> Option<String> {
        let started_at = crate::now();
        let began = Instant::now();
        if health.settle_secs() > 0 {
            tracing::info!(
                step = name,
                settle_secs = health.settle_secs(),
                window_secs = health.window_secs(),
                "waiting before the first health check"
            );
            tokio::time::sleep(Duration::from_secs(health.settle_secs())).await;
        }
        let window_start = tokio::time::Instant::now();
        let window_end = window_start + Duration::from_secs(health.window_secs());
        let interval = Duration::from_secs(health.interval_secs());
        let mut next = window_start;
        let mut runs = 0u32;
        let mut checks = 0u32;
        let (error, last) = loop {
            tokio::time::sleep_until(next).await;
            let check_started = tokio::time::Instant::now();
            checks = checks.saturating_add(1);
            let mut attempt = 0u32;
            let step = loop {
                attempt = attempt.saturating_add(1);
                runs = runs.saturating_add(1);
                let step = run_step(health.command(), &self.env, timeout).await;
                if step.success() || attempt >= health.tries() {
                    break step;
                }
                tracing::warn!(
                    step = name,
                    check = checks,
                    attempt,
                    tries = health.tries(),
                    "health check attempt failed; trying again in {HEALTH_RETRY_PAUSE_SECS} s"
                );
                tokio::time::sleep(Duration::from_secs(HEALTH_RETRY_PAUSE_SECS)).await;
            };
            if let Some(error) = step.error() {
                tracing::warn!(
                    step = name,
                    check = checks,
                    into_window_ms = millis(check_started.duration_since(window_start)),
                    %error,
                    "health check failed"
                );
                break (Some(error), step);
            }
            if check_started >= window_end {
                break (None, step);
            }
            next = (next + interval).min(window_end);
        };
        self.steps.push(last);
        self.record(StepSummary {
            name,
            error: error.clone(),
            started_at,
            duration_ms: millis(began.elapsed()),
            runs,
        });
        error
    }
}

/// A run whose pre-staging passed: `fetch` (if set) ran and the artifact
/// (if set) has the voted hash. [`act`] carries it on from `command`.
/// Made by [`prestage`].
#[derive(Debug)]
pub struct Staged {
    run: Run,
}

impl Staged {
    /// The pre-staging steps, in order (`fetch`, `artifact`); empty when
    /// the section has neither.
    pub fn summary(&self) -> &[StepSummary] {
        &self.run.summary
    }
}

/// Pre-stages `hook` for `proposal` (`docs/PROTOCOL.md` section 12): runs
/// `fetch` (if set; each process under `hook.timeout_secs()` seconds), then
/// checks SHA-256 of `artifact` (if set) against `proposal.hash`.
///
/// These steps may run more than once for one proposal (a scheduled action
/// pre-stages as soon as its quorum holds, and again after a restart before
/// its deadline), so they need no `started` record; `command` and what
/// follows run only from [`act`], after one.
///
/// # Errors
/// The failed run as an [`Outcome`]: `fetch failed: REASON`, or an
/// artifact error (`hash mismatch`, `artifact missing: PATH`, ...).
pub async fn prestage(hook: &Hook, proposal: &Proposal, env: &ExecEnv) -> Result<Staged, Outcome> {
    let timeout = Duration::from_secs(hook.timeout_secs());
    let mut run = Run {
        env: env.clone(),
        steps: Vec::new(),
        summary: Vec::new(),
    };
    if let Some(fetch) = hook.fetch() {
        if let Some(e) = run.process("fetch", fetch, timeout).await {
            return Err(Outcome::failure(
                format!("fetch failed: {e}"),
                run.steps,
                run.summary,
            ));
        }
    }
    if let Err(e) = run.artifact(hook, proposal).await {
        return Err(Outcome::failure(e, run.steps, run.summary));
    }
    Ok(Staged { run })
}

/// Runs `hook`'s action for a pre-staged `proposal`: `command`, then the
/// health window (if `health` is set, see [`Health`]) and, when it fails,
/// `rollback` (if set) followed by the same health window again. A failed
/// health window is a failure even when the rollback succeeded. See
/// [`Outcome::error`] for the messages; the outcome's steps and summary
/// start with the pre-staging ones.
///
/// With `recheck`, the artifact's hash is checked again first (a scheduled
/// action, whose pre-staging may be hours old); `command` never runs when
/// it no longer matches.
///
/// **At-most-once**: the caller must have made the journal's `started`
/// record for this proposal durable (fsync) before calling this, and
/// records the outcome after it returns. Dropping the future kills the
/// running step's process (not its group) and leaves the proposal
/// `started`, which is acknowledged as `interrupted` at the next start.
pub async fn act(hook: &Hook, proposal: &Proposal, staged: Staged, recheck: bool) -> Outcome {
    let timeout = Duration::from_secs(hook.timeout_secs());
    let mut run = staged.run;
    tracing::info!(%proposal, "running hook");
    if recheck {
        if let Err(e) = run.artifact(hook, proposal).await {
            return Outcome::failure(e, run.steps, run.summary);
        }
    }

    if let Some(e) = run.process("command", hook.command(), timeout).await {
        return Outcome::failure(e, run.steps, run.summary);
    }

    if let Some(health) = hook.health() {
        if let Some(health_error) = run.health("health", health, timeout).await {
            let Some(rollback) = hook.rollback() else {
                return Outcome::failure(
                    format!("health check failed: {health_error}"),
                    run.steps,
                    run.summary,
                );
            };
            tracing::warn!(error = %health_error, "health check failed; rolling back");
            run.env.set("QUBE_FAILED_STEP", "health".to_owned());
            let error = match run.process("rollback", rollback, timeout).await {
                Some(_) => "rollback failed",
                None => match run.health("health after rollback", health, timeout).await {
                    None => "rolled back",
                    Some(_) => "rollback failed",
                },
            };
            tracing::error!(%proposal, "{error}");
            return Outcome::failure(error.to_owned(), run.steps, run.summary);
        }
    }

    tracing::info!(%proposal, "hook succeeded");
    Outcome::success(run.steps, run.summary)
}

/// Runs `hook` for `proposal` under the execution contract
/// (`docs/PROTOCOL.md` section 12) and says what happened: [`prestage`]
/// then [`act`], at once. Every process runs under `hook.timeout_secs()`
/// seconds ([`run_step`]).
///
/// Order: `fetch` (if set; failure ends here), the artifact hash check
/// (if `artifact` is set; `command` never runs unless SHA-256 of
/// `artifact` with `{version}` expanded to `proposal.version` equals
/// `proposal.hash`), `command`, then the health window and rollback as
/// [`act`] says. See [`Outcome::error`] for the messages.
///
/// Every step after the first sees, besides `env`, `QUBE_<STEP>_RESULT`
/// (`ok` or the step's error) and `QUBE_<STEP>_AT` (unix seconds when it
/// ended) for each step before it, `<STEP>` one of `FETCH`, `ARTIFACT`,
/// `COMMAND`, `HEALTH`, `ROLLBACK`; `rollback` and the health window after
/// it also see `QUBE_FAILED_STEP=health`.
///
/// The whole run takes at most the sum of its processes' time limits plus
/// the health settle times, windows and retry pauses: every wait is
/// bounded.
///
/// `env` should be [`ExecEnv::new`] of the same `proposal`.
///
/// **At-most-once**: as for [`act`]; here the `started` record must be
/// durable before `fetch`.
pub async fn execute(hook: &Hook, proposal: &Proposal, env: &ExecEnv) -> Outcome {
    match prestage(hook, proposal, env).await {
        Ok(staged) => act(hook, proposal, staged, false).await,
        Err(outcome) => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_bounded_on_a_char_boundary_and_cleaned() {
        assert_eq!(bound_error("a\nb"), "a?b");
        let long = "é".repeat(300);
        let bounded = bound_error(&long);
        assert!(bounded.len() <= MAX_ERROR_BYTES);
        assert!(bounded.ends_with("..."));
        assert_eq!(bound_error(&"x".repeat(256)).len(), 256);
    }

    #[test]
    fn capture_keeps_the_first_bytes() {
        let mut c = Captured::default();
        c.push(&[1; MAX_CAPTURE_BYTES - 1]);
        assert!(!c.truncated);
        c.push(&[2, 3]);
        assert!(c.truncated);
        assert_eq!(c.bytes.len(), MAX_CAPTURE_BYTES);
        assert_eq!(c.bytes.last(), Some(&2));
    }

    #[test]
    fn excerpt_is_bounded_and_escaped() {
        let text = excerpt(&[b'\n'; 10_000], true);
        assert!(text.len() < 2 * LOG_OUTPUT_BYTES + 100, "{}", text.len());
        assert!(!text.contains('\n'));
        assert!(text.ends_with("(truncated)"));
    }

    #[test]
    fn seconds_are_whole_when_possible() {
        assert_eq!(secs(Duration::from_secs(3)), "3");
        assert_eq!(secs(Duration::from_millis(1500)), "1.500");
    }
}
