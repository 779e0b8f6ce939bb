//! The agent's worker process for the end-to-end tests: the same entry
//! point as `qube-agent worker` (sandbox first, then IPC on stdin/stdout),
//! built inside this package so the tests can start it by path.
//!
//! Usage: `qube-worker [worker] [--port PORT]... [--allow-unsandboxed]`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut ports = Vec::new();
    let mut allow_unsandboxed = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "worker" => {}
            "--allow-unsandboxed" => allow_unsandboxed = true,
            "--port" => match args.next().and_then(|p| p.parse().ok()) {
                Some(port) => ports.push(port),
                None => return ExitCode::from(2),
            },
            _ => return ExitCode::from(2),
        }
    }
    qube_agent::worker::process_main(&ports, allow_unsandboxed)
}
