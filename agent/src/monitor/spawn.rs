//! Starting the worker (`docs/PROTOCOL.md` section 9, SECURITY.md): this
//! binary re-executed as `qube-agent worker --port P...`, an empty
//! environment, the IPC frames on its stdin and stdout, its stderr a pipe,
//! the start parameters as its first frame. The worker makes itself a
//! session and process group leader (`setsid`), so it has no controlling
//! terminal and stopping it kills every process it started.
//!
//! The monitor's side of the channel lives here too, and never waits on the
//! worker: a reader task per worker (a half-read frame is never lost to
//! `select!`), a writer task with a bounded queue and a per-frame deadline
//! ([`ToWorker`]), and a task that relays the worker's stderr to the log,
//! escaped, bounded per line and rate-limited.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::core::backoff::Backoff;
use crate::core::text::printable;
use crate::ipc::{self, IpcError, MonitorMessage, StartParams, WorkerMessage};

/// Where the worker half runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WorkerMode {
    /// A separate, sandboxed process: `program args... --port P...`, with the
    /// IPC frames on its stdin and stdout, stderr inherited for its logs, an
    /// empty environment, and nothing else.
    Process {
        /// The program, normally this binary (`qube-agent`).
        program: std::path::PathBuf,
        /// Arguments before the `--port` list, normally `["worker"]`.
        args: Vec<String>,
    },
    /// Tests only (feature `test-support`): the worker as a task of this
    /// process over an in-memory pipe, with no process split and no sandbox.
    #[cfg(any(test, feature = "test-support"))]
    InProcess,
}

/// Frames that may wait for the worker to read them; one more is an
/// overrun (the worker is not reading), which ends it.
pub(crate) const TO_WORKER_QUEUE: usize = 512;

/// Longest one frame may take to reach the worker's pipe; longer ends it.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Longest stderr line of the worker that is logged, bytes; the rest of
/// the line is cut.
const STDERR_LINE_BYTES: usize = 1024;

/// Worker stderr lines logged per [`STDERR_WINDOW`]; more are counted and
/// dropped.
const STDERR_LINES_PER_WINDOW: u32 = 100;

/// The rate-limit window of the worker's stderr.
const STDERR_WINDOW: Duration = Duration::from_secs(10);

/// The channel to the worker: a queue drained by a writer task, so the
/// monitor never blocks on a worker that stops reading.
pub(crate) struct ToWorker {
    frames: mpsc::Sender<MonitorMessage>,
    failure_tx: mpsc::Sender<String>,
    failure: mpsc::Receiver<String>,
}

impl ToWorker {
    /// Queues `msg` for the worker without waiting. `false` when it was not
    /// queued: the queue is full (reported through [`ToWorker::failed`]) or
    /// the writer already failed.
    pub(crate) fn send(&self, msg: MonitorMessage) -> bool {
        match self.frames.try_send(msg) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = self.failure_tx.try_send(format!(
                    "the worker is not reading its channel ({TO_WORKER_QUEUE} frames queued)"
                ));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Resolves when the channel to the worker failed (an overrun, a write
    /// past [`WRITE_DEADLINE`], an I/O error), with the reason; pending
    /// forever otherwise.
    pub(crate) async fn failed(&mut self) -> String {
        self.failure
            .recv()
            .await
            .unwrap_or_else(|| "the channel to the worker closed".to_owned())
    }
}

/// Starts the writer task for `writer`.
fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(mut writer: W) -> ToWorker {
    let (frames, mut queue) = mpsc::channel::<MonitorMessage>(TO_WORKER_QUEUE);
    let (failure_tx, failure) = mpsc::channel(4);
    let report = failure_tx.clone();
    tokio::spawn(async move {
        while let Some(msg) = queue.recv().await {
            let why =
                match tokio::time::timeout(WRITE_DEADLINE, ipc::write_message(&mut writer, &msg))
                    .await
                {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => format!("cannot write to the worker: {e}"),
                    Err(_) => format!(
                        "the worker did not read a frame within {} s",
                        WRITE_DEADLINE.as_secs()
                    ),
                };
            let _ = report.try_send(why);
            return;
        }
    });
    ToWorker {
        frames,
        failure_tx,
        failure,
    }
}

/// Relays the worker's stderr to the log as `worker: LINE`: control
/// characters escaped, each line cut at [`STDERR_LINE_BYTES`], at most
/// [`STDERR_LINES_PER_WINDOW`] lines per [`STDERR_WINDOW`].
fn spawn_stderr_relay<R: AsyncRead + Unpin + Send + 'static>(stderr: R) {
    tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::with_capacity(STDERR_LINE_BYTES, stderr);
        let mut line = Vec::with_capacity(STDERR_LINE_BYTES);
        let mut window_start = tokio::time::Instant::now();
        let (mut logged, mut dropped) = (0u32, 0u64);
        loop {
            line.clear();
            // Read one line, keeping at most STDERR_LINE_BYTES of it.
            let mut cut = false;
            loop {
                let chunk = match reader.fill_buf().await {
                    Ok([]) | Err(_) => return,
                    Ok(chunk) => chunk,
                };
                let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => (i, true),
                    None => (chunk.len(), false),
                };
                let room = STDERR_LINE_BYTES.saturating_sub(line.len());
                line.extend_from_slice(chunk.get(..take.min(room)).unwrap_or_default());
                cut |= take > room;
                let consumed = if end { take.saturating_add(1) } else { take };
                reader.consume(consumed);
                if end {
                    break;
                }
            }
            if window_start.elapsed() >= STDERR_WINDOW {
                if dropped > 0 {
                    warn!("worker: {dropped} stderr lines dropped (more than {STDERR_LINES_PER_WINDOW} in {} s)", STDERR_WINDOW.as_secs());
                }
                window_start = tokio::time::Instant::now();
                (logged, dropped) = (0, 0);
            }
            if logged >= STDERR_LINES_PER_WINDOW {
                dropped = dropped.saturating_add(1);
                continue;
            }
            logged += 1;
            let text = String::from_utf8_lossy(&line);
            let (level, message) = worker_log_line(text.trim_end_matches('\r'));
            let text = printable(message, STDERR_LINE_BYTES);
            let cut = if cut { " [cut]" } else { "" };
            match level {
                Some(tracing::Level::ERROR) => tracing::error!("worker: {text}{cut}"),
                Some(tracing::Level::WARN) => warn!("worker: {text}{cut}"),
                Some(tracing::Level::DEBUG | tracing::Level::TRACE) => {
                    tracing::debug!("worker: {text}{cut}")
                }
                _ => info!("worker: {text}{cut}"),
            }
        }
    });
}

/// Frames from the worker, as the reader task decoded them.
pub(crate) type FromWorker = mpsc::Receiver<Result<WorkerMessage, IpcError>>;

/// A running worker, to stop when it misbehaves or at shutdown.
pub(crate) enum WorkerHandle {
    Process(tokio::process::Child),
    #[cfg(any(test, feature = "test-support"))]
    Task(tokio::task::JoinHandle<()>),
}

impl Drop for WorkerHandle {
    /// A dropped handle (the agent stopping, a task aborted) ends the
    /// worker's whole process group, not only the worker.
    fn drop(&mut self) {
        self.stop();
    }
}

impl WorkerHandle {
    /// Ends the worker (SIGKILL for a process); never waits. Safe to call
    /// more than once: Linux does not reuse a pid while a process group of
    /// that id still has members, so the group signalled is always the
    /// worker's.
    pub(crate) fn stop(&mut self) {
        match self {
            WorkerHandle::Process(child) => {
                // The worker leads its own process group (it calls setsid),
                // so this ends whatever it started too.
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.start_kill();
            }
            #[cfg(any(test, feature = "test-support"))]
            WorkerHandle::Task(task) => task.abort(),
        }
    }
}

/// Worker restarts back off from 2 s, doubling, to 60 s.
const RESTART_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(60),
};

/// The wait before restart number `restarts` (1-based).
pub(crate) fn restart_delay(restarts: u32) -> Duration {
    RESTART_BACKOFF.delay(restarts)
}

/// Starts a worker in `mode` and sends it `start`; returns the channel to
/// it, its messages and a handle to stop it.
///
/// # Errors
/// [`IpcError::Io`] when the process cannot be started.
pub(crate) async fn spawn_worker(
    mode: &WorkerMode,
    start: StartParams,
) -> Result<(ToWorker, FromWorker, WorkerHandle), IpcError> {
    let mut ports: Vec<u16> = start.relays.iter().map(|r| r.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let start = MonitorMessage::Start(start);
    match mode {
        WorkerMode::Process { program, args } => {
            let mut command = tokio::process::Command::new(program);
            command
                .args(args)
                .args(
                    ports
                        .iter()
                        .flat_map(|p| ["--port".to_owned(), p.to_string()]),
                )
                .env_clear()
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            let mut child = command.spawn().map_err(IpcError::Io)?;
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                let _ = child.start_kill();
                return Err(IpcError::Malformed("worker pipes missing".into()));
            };
            spawn_stderr_relay(stderr);
            let to_worker = spawn_writer(stdin);
            to_worker.send(start);
            info!("worker started as process {}", child.id().unwrap_or(0));
            Ok((
                to_worker,
                spawn_reader(stdout),
                WorkerHandle::Process(child),
            ))
        }
        #[cfg(any(test, feature = "test-support"))]
        WorkerMode::InProcess => {
            let (ours, theirs) = tokio::io::duplex(1 << 20);
            let (their_read, their_write) = tokio::io::split(theirs);
            let worker = tokio::spawn(async move {
                if let Err(e) = crate::worker::run(their_read, their_write).await {
                    tracing::error!("worker stopped: {e}");
                }
            });
            let (our_read, our_write) = tokio::io::split(ours);
            let to_worker = spawn_writer(our_write);
            to_worker.send(start);
            Ok((
                to_worker,
                spawn_reader(our_read),
                WorkerHandle::Task(worker),
            ))
        }
    }
}

/// Reads frames from the worker on a task of its own, so a half-read frame
/// is never lost to `select!`.
fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(mut reader: R) -> FromWorker {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let msg = ipc::read_message::<_, WorkerMessage>(&mut reader).await;
            let stop = msg.is_err();
            if tx.send(msg).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// The level and message of one line the worker logged (`TIMESTAMP LEVEL
/// message`, as `tracing_subscriber::fmt` writes without colours), so the
/// monitor logs it at the same level; a line in another shape is the
/// message itself, at no particular level. The worker is untrusted: this
/// only picks a log level, and the message is escaped by the caller.
fn worker_log_line(line: &str) -> (Option<tracing::Level>, &str) {
    let Some((_timestamp, rest)) = line.trim_start().split_once(char::is_whitespace) else {
        return (None, line);
    };
    let rest = rest.trim_start();
    let (level, message) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match level.parse::<tracing::Level>() {
        Ok(level) => (Some(level), message.trim_start()),
        Err(_) => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_from_2_s_to_60_s() {
        let secs: Vec<u64> = (1..=8).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn worker_lines_keep_their_level() {
        assert_eq!(
            worker_log_line("2026-12-03T00:00:00.000001Z  WARN ws://r: NIP-42 challenge ignored"),
            (
                Some(tracing::Level::WARN),
                "ws://r: NIP-42 challenge ignored"
            )
        );
        assert_eq!(
            worker_log_line("2026-12-03T00:00:00Z ERROR worker: cannot start"),
            (Some(tracing::Level::ERROR), "worker: cannot start")
        );
        assert_eq!(
            worker_log_line("panicked at src/x.rs"),
            (None, "panicked at src/x.rs")
        );
        assert_eq!(worker_log_line("one"), (None, "one"));
    }
}
