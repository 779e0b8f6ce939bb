//! The agent's worker process for the end-to-end tests: the same entry
//! point as `qube-agent worker` (sandbox first, then IPC on stdin/stdout),
//! built inside this package so the tests can start it by path.
//!
//! Usage: `qube-worker [worker] [--port PORT]... [--allow-unsandboxed]`.
//!
//! Or `qube-worker sandbox-probe [--port PORT]... --request JSON`: the
//! probe of `qube-agent sandbox-probe` (the worker's session and sandbox,
//! then the attempts of the JSON `ProbeRequest`), for
//! `tests/sandbox_probe.rs`.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use qube_agent::worker::sandbox::ProbeRequest;

fn main() -> ExitCode {
    let mut ports = Vec::new();
    let mut allow_unsandboxed = false;
    let mut probe: Option<ProbeRequest> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "worker" | "sandbox-probe" => {}
            "--allow-unsandboxed" => allow_unsandboxed = true,
            "--port" => match args.next().and_then(|p| p.parse().ok()) {
                Some(port) => ports.push(port),
                None => return ExitCode::from(2),
            },
            "--request" => match args.next().and_then(|r| serde_json::from_str(&r).ok()) {
                Some(request) => probe = Some(request),
                None => return ExitCode::from(2),
            },
            _ => return ExitCode::from(2),
        }
    }
    match probe {
        Some(request) => qube_agent::worker::sandbox::probe_main(&ports, &request),
        None => qube_agent::worker::process_main(&ports, allow_unsandboxed),
    }
}
