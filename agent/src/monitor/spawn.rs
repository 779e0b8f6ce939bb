//! Starting the worker (`docs/PROTOCOL.md` section 9,
//! SECURITY.md): this binary
//! re-executed as `qube-agent worker --port P...`, an empty environment, the
//! IPC frames on its stdin and stdout, the start parameters as its first
//! frame. The monitor's side of the channel lives here too: a reader task
//! per worker, so that a half-read frame is never lost to `select!`.

use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tracing::info;

use crate::core::backoff::Backoff;
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

/// The channel to the worker.
pub(crate) type ToWorker = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// Frames from the worker, as the reader task decoded them.
pub(crate) type FromWorker = mpsc::Receiver<Result<WorkerMessage, IpcError>>;

/// A running worker, to stop when it misbehaves or at shutdown.
pub(crate) enum WorkerHandle {
    Process(tokio::process::Child),
    #[cfg(any(test, feature = "test-support"))]
    Task(tokio::task::JoinHandle<()>),
}

impl WorkerHandle {
    /// Ends the worker (SIGKILL for a process); never waits.
    pub(crate) fn stop(&mut self) {
        match self {
            WorkerHandle::Process(child) => {
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
/// [`IpcError::Io`] when the process cannot be started or the start frame
/// not written.
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
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true);
            let mut child = command.spawn().map_err(IpcError::Io)?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                let _ = child.start_kill();
                return Err(IpcError::Malformed("worker pipes missing".into()));
            };
            let mut to_worker: ToWorker = Box::pin(stdin);
            ipc::write_message(&mut to_worker, &start).await?;
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
            let mut to_worker: ToWorker = Box::pin(our_write);
            ipc::write_message(&mut to_worker, &start).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_from_2_s_to_60_s() {
        let secs: Vec<u64> = (1..=8).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
