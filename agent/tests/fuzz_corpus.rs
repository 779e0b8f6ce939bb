//! Replays every committed fuzz input (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the same checks the cargo-fuzz
//! targets run, on stable, so that a crash found once stays fixed.

// Test code: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let files = inputs(target);
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("fuzz input {} fails its checks", path.display());
        }
    }
    files.len()
}

#[test]
fn event_corpus() {
    let n = replay("event", checks::check_event);
    assert!(
        n >= 8,
        "only {n} event inputs: is fuzz/corpus/event committed?"
    );
}

#[test]
fn relay_message_corpus() {
    let n = replay("relay_message", checks::check_relay_message);
    assert!(
        n >= 12,
        "only {n} relay message inputs: is fuzz/corpus/relay_message committed?"
    );
}

#[test]
fn worker_frame_corpus() {
    let n = replay("worker_frame", checks::check_worker_frame);
    assert!(
        n >= 8,
        "only {n} worker frame inputs: is fuzz/corpus/worker_frame committed?"
    );
}
