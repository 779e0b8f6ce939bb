//! The monitor of `qube-agent run` as a process of its own, with a worker
//! program of the test's choice, for tests that signal the monitor process
//! while a fake worker misbehaves.
//!
//! Usage: `qube-monitor CONFIG WORKER [ARG]...`.
//!
//! It does what `qube-agent run -v` does after its command line (harden the
//! process, log at info level to stderr, load the config, then
//! `qube_agent::monitor::run_process`, which builds the same runtime and
//! returns the same exit status); only the worker differs: `run` always
//! re-executes its own binary as the worker, and offers no way to name
//! another program, which is as it should be in production.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use qube_agent::config::Config;
use qube_agent::monitor::{RunOptions, WorkerMode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(config), Some(program)) = (args.next(), args.next()) else {
        let _ = writeln!(
            std::io::stderr(),
            "usage: qube-monitor CONFIG WORKER [ARG]..."
        );
        return ExitCode::from(2);
    };
    let worker_args: Option<Vec<String>> = args.map(|a| a.into_string().ok()).collect();
    let Some(worker_args) = worker_args else {
        let _ = writeln!(std::io::stderr(), "error: worker arguments must be UTF-8");
        return ExitCode::from(2);
    };
    if let Err(e) = qube_agent::worker::sandbox::harden_process() {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_ansi(false)
        .init();
    let config = match Config::load(std::path::Path::new(&config)) {
        Ok((config, _warnings)) => config,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = RunOptions {
        dry_run: false,
        worker: WorkerMode::Process {
            program: program.into(),
            args: worker_args,
        },
    };
    qube_agent::monitor::run_process(config, options)
}
