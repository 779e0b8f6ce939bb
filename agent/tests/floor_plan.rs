//! The floor plan of `agent/src/lib.rs`, checked: which folder may import
//! what. A new `use` that crosses the privilege boundary (the sandboxed
//! worker reaching into the monitor, the pure core touching the filesystem,
//! govctl importing the monitor) fails here, with the file and line.

// A test: a missing source folder may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no Rust files below {}", dir.display());
    out
}

/// Lines of the files below `dir` (relative to the agent crate) that
/// contain any of `forbidden`, as `file:line: text`.
fn offenders(dir: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for file in rust_files(&root.join(dir)) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(root).unwrap_or(&file).display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn core_is_pure() {
    let found = offenders(
        "src/core",
        &[
            "tokio",
            "std::fs",
            "std::net",
            "std::process",
            "std::env",
            "SystemTime",
            "crate::now",
            "crate::monitor",
            "crate::worker",
            "crate::state",
            "crate::config",
            "crate::report",
            "crate::relay",
            "crate::ipc",
        ],
    );
    assert!(
        found.is_empty(),
        "core must stay pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_worker_reaches_only_core_ipc_and_the_relay_client() {
    let found = offenders(
        "src/worker",
        &[
            "crate::monitor",
            "crate::state",
            "crate::config",
            "crate::report",
            "crate::artifact",
            // The worker's environment is empty by design; its files are
            // denied by Landlock (the sandbox probe opens some to prove it).
            "std::env",
        ],
    );
    assert!(
        found.is_empty(),
        "the sandboxed worker must not import monitor-side code:\n{}",
        found.join("\n")
    );
    let found = offenders(
        "src",
        &["crate::worker::", "use crate::worker"]
            .into_iter()
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .filter(|l| !l.starts_with("src/worker/") && !l.starts_with("src/monitor/spawn.rs"))
    .collect::<Vec<_>>();
    assert!(
        found.is_empty(),
        "only the worker itself and the spawner use worker code:\n{}",
        found.join("\n")
    );
}

#[test]
fn report_config_and_state_never_import_the_monitor() {
    for dir in ["src/report", "src/config", "src/state"] {
        let found = offenders(dir, &["crate::monitor", "crate::worker"]);
        assert!(found.is_empty(), "{dir}:\n{}", found.join("\n"));
    }
}

#[test]
fn govctl_never_imports_the_monitor_or_the_worker() {
    let found = offenders(
        "../govctl/src",
        &[
            "qube_agent::monitor",
            "qube_agent::worker",
            "qube_agent::ipc",
            "monitor::",
            "exec::",
        ],
    );
    assert!(
        found.is_empty(),
        "govctl signs and reads; it never executes:\n{}",
        found.join("\n")
    );
}
