//! The agent's on-disk state and write-ahead journal (`docs/PROTOCOL.md`
//! section 12): the state directory's mode and ownership, atomic writes, the node
//! key, the persisted directives, the installed version, the ack outbox, and
//! the hash-chained journal with its tamper, truncation and crash cases.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use qube_agent::config::NodeKeySource;
use qube_agent::core::directive::{Action, DirectiveRules, Proposal};
use qube_agent::state::journal::{
    self, Corruption, Entry, Journal, JournalError, Status, StepRecord, GENESIS_PREV,
};
use qube_agent::state::{
    backoff_secs, StateDir, StateError, DIRECTIVES_FILE, LOCK_FILE, NODE_KEY_FILE, OUTBOX_FILE,
};
use qube_e2e::{ack, directive, keys, EventBuilder};

const NOW: u64 = 1_700_000_000;
const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The directives of these tests: upgrades to HASH, signed with this content.
fn upgrade() -> EventBuilder {
    directive().hash(HASH).content("upgrade the fleet")
}

fn proposal(version: &str) -> Proposal {
    Proposal {
        action: Action::Upgrade,
        network: "hqz".into(),
        version: version.into(),
        hash: HASH.into(),
        genesis_url: None,
        required_by: None,
        rollout: None,
        nodes: Vec::new(),
    }
}

fn reboot_proposal() -> Proposal {
    Proposal {
        action: Action::Reboot,
        network: "hqz".into(),
        version: "v2.0.0".into(),
        hash: HASH.into(),
        genesis_url: Some("https://g.example/genesis.json".into()),
        required_by: Some(NOW + 3600),
        rollout: None,
        nodes: Vec::new(),
    }
}

/// Names of files in `dir` that look like temporary files.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".tmp"))
        .collect()
}

fn state() -> (tempfile::TempDir, StateDir) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path().join("state")).unwrap();
    (dir, state)
}

// ---------------------------------------------------------------------------
// State directory and atomic writes
// ---------------------------------------------------------------------------

#[test]
fn state_dir_is_created_0700() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let state = StateDir::open(&path).unwrap();
    assert_eq!(state.path(), path);
    assert!(path.is_dir());
    assert_eq!(mode(&path), 0o700);
    // Opening again is fine.
    StateDir::open(&path).unwrap();
}

#[test]
fn group_accessible_state_dir_is_fixed_to_0700() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    fs::create_dir(&path).unwrap();
    set_mode(&path, 0o755);
    StateDir::open(&path).unwrap();
    assert_eq!(mode(&path), 0o700);
}

#[test]
fn state_dir_path_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    fs::write(&path, "x").unwrap();
    let err = StateDir::open(&path).unwrap_err();
    assert!(matches!(err, StateError::NotADirectory(_)), "{err}");
}

#[test]
fn state_dir_owned_by_another_uid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let euid = nix::unistd::geteuid();
    // Root (as in CI) gives a fresh directory away; an unprivileged user
    // cannot, so it points the agent at `/`, which exists and belongs to
    // another uid. Either way the refusal comes before any change.
    let (path, owner) = if euid.is_root() {
        let path = dir.path().join("state");
        fs::create_dir(&path).unwrap();
        set_mode(&path, 0o700);
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        (path, 4242)
    } else {
        let path = PathBuf::from("/");
        let owner = fs::metadata(&path).unwrap().uid();
        assert_ne!(
            owner,
            euid.as_raw(),
            "this uid owns /: no directory of another uid to test with"
        );
        (path, owner)
    };
    let before = mode(&path);
    let err = StateDir::open(&path).unwrap_err();
    assert!(
        matches!(err, StateError::NotOwned { owner: o, .. } if o == owner),
        "{err}"
    );
    assert!(err.to_string().contains("refusing to use it"), "{err}");
    assert_eq!(mode(&path), before);
}

#[test]
fn atomic_write_replaces_an_existing_file_and_leaves_no_temp_files() {
    let (_dir, state) = state();
    let target = state.path().join("example");
    state.write_atomic("example", b"first").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"first");
    assert_eq!(mode(&target), 0o600);
    // Replacing an existing file, even one with looser permissions.
    set_mode(&target, 0o644);
    state.write_atomic("example", b"second, longer").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"second, longer");
    assert_eq!(mode(&target), 0o600);
    assert_eq!(temp_files(state.path()), Vec::<String>::new());
    let names: Vec<_> = fs::read_dir(state.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["example"]);
}

#[test]
fn lock_is_exclusive_and_removes_leftover_temp_files() {
    let (_dir, state) = state();
    fs::write(state.path().join(".tmp-qube-crashed"), "half").unwrap();
    let lock = state.lock().unwrap();
    assert_eq!(temp_files(state.path()), Vec::<String>::new());
    assert_eq!(mode(&state.path().join(LOCK_FILE)), 0o600);
    let err = state.lock().unwrap_err();
    assert!(matches!(err, StateError::Locked(_)), "{err}");
    assert!(err.to_string().contains("another qube-agent"), "{err}");
    drop(lock);
    state.lock().unwrap();
}

// ---------------------------------------------------------------------------
// Node key
// ---------------------------------------------------------------------------

#[test]
fn node_key_is_generated_0600_at_first_start_and_loaded_next_time() {
    let (dir, state) = state();
    let path = state.path().join(NODE_KEY_FILE);
    assert!(!path.exists());
    let first = state.node_key(None).unwrap();
    assert_eq!(mode(&path), 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    assert!(text[..64]
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert_eq!(text[..64], hex::encode(first.secret_bytes()));
    assert_eq!(temp_files(state.path()), Vec::<String>::new());

    // Next start: same directory, same key.
    drop(state);
    let state = StateDir::open(dir.path().join("state")).unwrap();
    let second = state.node_key(None).unwrap();
    assert_eq!(second.public_key(), first.public_key());
    assert_eq!(fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn group_or_world_accessible_key_file_is_refused_with_chmod_advice() {
    let (_dir, state) = state();
    let path = state.path().join(NODE_KEY_FILE);
    let secret = "07".repeat(32);
    fs::write(&path, format!("{secret}\n")).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o660, 0o602] {
        set_mode(&path, bad);
        let err = state.node_key(None).err().unwrap();
        assert!(
            matches!(err, StateError::KeyPermissions { mode, .. } if mode == bad),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("chmod 600 {}", path.display())),
            "{text}"
        );
        assert!(text.contains(&format!("{bad:04o}")), "{text}");
        assert!(!text.contains(&secret), "{text}");
    }
    // The same check for a configured key file.
    let source = NodeKeySource::File(path.clone());
    set_mode(&path, 0o644);
    let err = state.node_key(Some(&source)).err().unwrap();
    assert!(matches!(err, StateError::KeyPermissions { .. }), "{err}");
    // Fixed as advised, it loads.
    set_mode(&path, 0o600);
    let keys = state.node_key(Some(&source)).unwrap();
    assert_eq!(keys.secret_bytes(), [7u8; 32]);
    set_mode(&path, 0o400);
    state.node_key(None).unwrap();
}

#[test]
fn configured_key_file_is_loaded_and_never_generated() {
    let (dir, state) = state();
    let path = dir.path().join("node.hex");
    let source = NodeKeySource::File(path.clone());
    let err = state.node_key(Some(&source)).err().unwrap();
    assert!(matches!(err, StateError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!path.exists());
    assert!(!state.path().join(NODE_KEY_FILE).exists());

    fs::write(&path, "0B".repeat(32)).unwrap();
    set_mode(&path, 0o600);
    let keys = state.node_key(Some(&source)).unwrap();
    assert_eq!(keys.secret_bytes(), [0x0b; 32]);
}

#[test]
fn malformed_key_file_error_names_the_file_and_never_the_content() {
    let (dir, state) = state();
    let path = dir.path().join("node.hex");
    let source = NodeKeySource::File(path.clone());
    let almost = format!("{}zz", "5a".repeat(31));
    for text in [
        almost.clone(),
        "5a".repeat(31),
        "5a".repeat(33),
        "5a".repeat(100),
    ] {
        fs::write(&path, &text).unwrap();
        set_mode(&path, 0o600);
        let err = state.node_key(Some(&source)).err().unwrap();
        assert!(matches!(err, StateError::MalformedKey(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(!message.contains("5a5a"), "{message}");
        assert!(!format!("{err:?}").contains("5a5a"));
    }
    fs::write(&path, "00".repeat(32)).unwrap();
    let err = state.node_key(Some(&source)).err().unwrap();
    assert!(matches!(err, StateError::InvalidKey(_)), "{err}");
    // A directory is not a key file.
    let source = NodeKeySource::File(dir.path().to_path_buf());
    set_mode(dir.path(), 0o700);
    let err = state.node_key(Some(&source)).err().unwrap();
    assert!(matches!(err, StateError::NotARegularFile(_)), "{err}");
}

#[test]
fn env_key_is_read_and_errors_never_print_the_value() {
    let (_dir, state) = state();
    let ok = "QUBE_AGENT_TEST_NODE_KEY_OK";
    std::env::set_var(ok, format!("{}\n", "0c".repeat(32)));
    let keys = state
        .node_key(Some(&NodeKeySource::Env(ok.into())))
        .unwrap();
    assert_eq!(keys.secret_bytes(), [0x0c; 32]);
    // Nothing is written to the state directory.
    assert!(!state.path().join(NODE_KEY_FILE).exists());

    let unset = "QUBE_AGENT_TEST_NODE_KEY_UNSET";
    std::env::remove_var(unset);
    let err = state
        .node_key(Some(&NodeKeySource::Env(unset.into())))
        .err()
        .unwrap();
    assert!(matches!(err, StateError::EnvKeyUnset(_)), "{err}");
    assert!(err.to_string().contains(unset), "{err}");

    let bad = "QUBE_AGENT_TEST_NODE_KEY_BAD";
    let value = format!("{}xy", "3d".repeat(31));
    std::env::set_var(bad, &value);
    let err = state
        .node_key(Some(&NodeKeySource::Env(bad.into())))
        .err()
        .unwrap();
    assert!(matches!(err, StateError::MalformedKey(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("environment variable {bad}")),
        "{message}"
    );
    assert!(!message.contains("3d3d"), "{message}");
    assert!(!format!("{err:?}").contains("3d3d"));
}

// ---------------------------------------------------------------------------
// Directives and installed version
// ---------------------------------------------------------------------------

fn voters(ns: &[u8]) -> BTreeSet<[u8; 32]> {
    ns.iter().map(|&n| keys(n).public_key()).collect()
}

#[test]
fn directives_round_trip() {
    let (_dir, state) = state();
    let saved = vec![
        upgrade()
            .created_at(NOW - 10)
            .version("v1.2.3")
            .sign_directive(&keys(1), NOW),
        upgrade()
            .created_at(NOW - 5)
            .version("1.2.3")
            .sign_directive(&keys(2), NOW),
    ];
    state.save_directives(&saved).unwrap();
    let path = state.path().join(DIRECTIVES_FILE);
    assert_eq!(mode(&path), 0o600);
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["id"], saved[0].event().id_hex());

    let rules = DirectiveRules::new("hqz");
    let (loaded, warnings) = state
        .load_directives(&rules, NOW, &voters(&[1, 2]))
        .unwrap();
    assert_eq!(warnings, Vec::<String>::new());
    assert_eq!(loaded, saved);

    // Empty set, and an engine's iterator.
    state.save_directives(&[]).unwrap();
    let (loaded, _) = state.load_directives(&rules, NOW, &voters(&[1])).unwrap();
    assert!(loaded.is_empty());
    state.save_directives(saved.iter()).unwrap();
    assert_eq!(
        state
            .load_directives(&rules, NOW, &voters(&[1, 2]))
            .unwrap()
            .0,
        saved
    );
}

#[test]
fn tampered_saved_directive_is_dropped_with_a_warning() {
    let (_dir, state) = state();
    let saved = vec![
        upgrade()
            .created_at(NOW - 10)
            .version("v1.2.3")
            .sign_directive(&keys(1), NOW),
        upgrade()
            .created_at(NOW - 5)
            .version("v1.2.3")
            .sign_directive(&keys(2), NOW),
    ];
    state.save_directives(&saved).unwrap();
    let path = state.path().join(DIRECTIVES_FILE);
    let text = fs::read_to_string(&path).unwrap();
    // Change voter 2's version: the signature no longer matches.
    let tampered_line = text.lines().nth(2).unwrap().replace("v1.2.3", "v9.9.9");
    let lines: Vec<&str> = text.lines().collect();
    let tampered = [lines[0], lines[1], &tampered_line, lines[3]].join("\n");
    fs::write(&path, tampered).unwrap();

    let (loaded, warnings) = state
        .load_directives(&DirectiveRules::new("hqz"), NOW, &voters(&[1, 2]))
        .unwrap();
    assert_eq!(loaded, saved[..1]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("entry 2"), "{warnings:?}");
    assert!(warnings[0].contains("does not verify"), "{warnings:?}");
}

#[test]
fn saved_directives_that_no_longer_count_are_dropped_with_warnings() {
    let (_dir, state) = state();
    let expired = directive()
        .created_at(NOW - 100)
        .version("1.0.0")
        .hash(HASH)
        .expiration(NOW - 1)
        .content("old")
        .sign_directive(&keys(3), NOW);
    let saved = vec![
        upgrade()
            .created_at(NOW - 10)
            .version("1.0.0")
            .sign_directive(&keys(1), NOW),
        upgrade()
            .created_at(NOW - 10)
            .version("1.0.0")
            .sign_directive(&keys(2), NOW),
        expired.clone(),
    ];
    state.save_directives(&saved).unwrap();
    // Voter 2 was removed from the config; 3's directive expired but stays
    // (it still supersedes older ones).
    let (loaded, warnings) = state
        .load_directives(&DirectiveRules::new("hqz"), NOW, &voters(&[1, 3]))
        .unwrap();
    assert_eq!(loaded, vec![saved[0].clone(), expired]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("is not a voter"), "{warnings:?}");
    // The network changed: nothing counts any more.
    let (loaded, warnings) = state
        .load_directives(&DirectiveRules::new("other"), NOW, &voters(&[1, 2, 3]))
        .unwrap();
    assert!(loaded.is_empty());
    assert_eq!(warnings.len(), 3);
    assert!(warnings[0].contains("wrong network"), "{warnings:?}");
}

#[test]
fn missing_directives_file_is_empty_and_a_corrupt_one_is_an_error() {
    let (_dir, state) = state();
    let rules = DirectiveRules::new("hqz");
    let (loaded, warnings) = state.load_directives(&rules, NOW, &voters(&[1])).unwrap();
    assert!(loaded.is_empty() && warnings.is_empty());
    let path = state.path().join(DIRECTIVES_FILE);
    for corrupt in ["", "[", "{}", "[1,", "not json"] {
        fs::write(&path, corrupt).unwrap();
        let err = state
            .load_directives(&rules, NOW, &voters(&[1]))
            .unwrap_err();
        assert!(
            matches!(err, StateError::Corrupt { .. }),
            "{corrupt:?}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("refusing to start"), "{text}");
    }
}

#[test]
fn installed_version_round_trip() {
    let (_dir, state) = state();
    assert_eq!(state.installed_version().unwrap(), None);
    state.set_installed_version("v0.0.8").unwrap();
    assert_eq!(
        state.installed_version().unwrap().as_deref(),
        Some("v0.0.8")
    );
    state.set_installed_version("1.0.0-rc.1").unwrap();
    assert_eq!(
        state.installed_version().unwrap().as_deref(),
        Some("1.0.0-rc.1")
    );
    for bad in ["", "V1.0.0", "1.0", "1.0.0\nx"] {
        assert!(matches!(
            state.set_installed_version(bad),
            Err(StateError::InvalidVersion { .. })
        ));
    }
    assert_eq!(
        state.installed_version().unwrap().as_deref(),
        Some("1.0.0-rc.1")
    );
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

#[test]
fn outbox_backs_off_and_removes_acknowledged_acks() {
    let (_dir, state) = state();
    let mut outbox = state.outbox().unwrap();
    assert!(outbox.is_empty());
    let a = ack().created_at(NOW).version("v1.0.0").sign(&keys(9));
    let b = ack().created_at(NOW).version("v2.0.0").sign(&keys(9));
    outbox.push(a.clone(), NOW).unwrap();
    outbox.push(b.clone(), NOW).unwrap();
    outbox.push(a.clone(), NOW + 1).unwrap(); // already queued: no change
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox.due(NOW).len(), 2);
    assert_eq!(mode(&state.path().join(OUTBOX_FILE)), 0o600);

    // a fails twice: 5 s, then 10 s.
    assert!(outbox.mark_failed(&a.id, NOW).unwrap());
    assert_eq!(outbox.entries()[0].attempts, 1);
    assert_eq!(outbox.entries()[0].next_attempt_at, NOW + 5);
    let due: Vec<_> = outbox.due(NOW).into_iter().map(|e| e.event.id).collect();
    assert_eq!(due, [b.id]);
    assert_eq!(outbox.due(NOW + 5).len(), 2);
    assert!(outbox.mark_failed(&a.id, NOW + 5).unwrap());
    assert_eq!(outbox.entries()[0].next_attempt_at, NOW + 15);
    assert_eq!(outbox.next_attempt_at(), Some(NOW));
    assert!(!outbox.mark_failed(&[0u8; 32], NOW).unwrap());

    // Persisted: a restart sees the same queue.
    let reloaded = state.outbox().unwrap();
    assert_eq!(reloaded.entries(), outbox.entries());

    // b got OK true.
    assert!(outbox.remove(&b.id).unwrap());
    assert!(!outbox.remove(&b.id).unwrap());
    assert_eq!(outbox.len(), 1);
    assert_eq!(state.outbox().unwrap().len(), 1);
    assert!(outbox.remove(&a.id).unwrap());
    assert!(state.outbox().unwrap().is_empty());
    assert_eq!(temp_files(state.path()), Vec::<String>::new());

    // Backoff reaches the one-hour cap.
    let mut last = 0;
    for attempts in 1..=20 {
        let delay = backoff_secs(attempts);
        assert!(delay >= last && delay <= 3600);
        last = delay;
    }
    assert_eq!(last, 3600);
}

#[test]
fn outbox_keeps_an_ack_until_every_relay_stored_it_or_seven_days_passed() {
    use qube_agent::state::{Delivery, OUTBOX_DELIVERY_SECS};
    let (_dir, state) = state();
    let mut outbox = state.outbox().unwrap();
    let a = ack().created_at(NOW).version("v1.0.0").sign(&keys(9));
    let b = ack().created_at(NOW).version("v2.0.0").sign(&keys(9));
    outbox.push(a.clone(), NOW).unwrap();
    outbox.push(b.clone(), NOW + 10).unwrap();
    let relays = ["ws://r1", "ws://r2"];
    assert_eq!(
        outbox.delivered(&a.id, "ws://r1", &relays).unwrap(),
        Delivery::Partial
    );
    // The same relay again changes nothing.
    assert_eq!(
        outbox.delivered(&a.id, "ws://r1", &relays).unwrap(),
        Delivery::Partial
    );
    assert_eq!(outbox.entries()[0].delivered, ["ws://r1"]);
    // Persisted with the delivery record.
    assert_eq!(state.outbox().unwrap().entries(), outbox.entries());
    assert_eq!(
        outbox.delivered(&a.id, "ws://r2", &relays).unwrap(),
        Delivery::Complete
    );
    assert_eq!(
        outbox.delivered(&a.id, "ws://r2", &relays).unwrap(),
        Delivery::NotQueued
    );
    assert_eq!(outbox.len(), 1);
    // b is retried for 7 days from when it was queued, then dropped.
    assert!(outbox
        .expire(NOW + 10 + OUTBOX_DELIVERY_SECS)
        .unwrap()
        .is_empty());
    let expired = outbox.expire(NOW + 11 + OUTBOX_DELIVERY_SECS).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].event.id, b.id);
    assert!(state.outbox().unwrap().is_empty());
}

#[test]
fn outbox_accepts_only_acks_and_refuses_a_corrupt_file() {
    let (_dir, state) = state();
    let mut outbox = state.outbox().unwrap();
    let err = outbox
        .push(
            upgrade().created_at(NOW).version("1.0.0").sign(&keys(1)),
            NOW,
        )
        .unwrap_err();
    assert!(matches!(err, StateError::NotAnAck { kind: 33321 }), "{err}");
    assert!(outbox.is_empty());
    outbox
        .push(ack().created_at(NOW).version("v1.0.0").sign(&keys(9)), NOW)
        .unwrap();

    let path = state.path().join(OUTBOX_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("upgraded to", "downgraded to")).unwrap();
    let err = state.outbox().unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("entry 1"), "{err}");
    fs::write(&path, "[{\"event\":1}]").unwrap();
    assert!(matches!(
        state.outbox().unwrap_err(),
        StateError::Corrupt { .. }
    ));
}

#[test]
fn state_file_over_the_size_bound_is_refused() {
    let (_dir, state) = state();
    let path = state.path().join(OUTBOX_FILE);
    let file = fs::File::create(&path).unwrap();
    file.set_len(16 * 1024 * 1024 + 1).unwrap();
    let err = state.outbox().unwrap_err();
    assert!(matches!(err, StateError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("16777216"), "{err}");
}

// ---------------------------------------------------------------------------
// Journal
// ---------------------------------------------------------------------------

/// A journal with four records: started 1.0.0, its outcome, started a
/// reboot, its failure.
fn four_records(path: &Path) -> Journal {
    let mut journal = Journal::open(path).unwrap();
    let ids = [[1u8; 32], [2u8; 32]];
    let s1 = journal
        .append_started(&proposal("v1.0.0"), &ids, NOW)
        .unwrap();
    journal
        .append_outcome(s1, Status::Success, None, NOW + 60)
        .unwrap();
    let s2 = journal
        .append_started(&reboot_proposal(), &ids[..1], NOW + 100)
        .unwrap();
    journal
        .append_outcome(s2, Status::Failure, Some("exit status 3"), NOW + 160)
        .unwrap();
    journal
}

fn journal_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    (dir, path)
}

fn corrupt_line(result: Result<Journal, JournalError>) -> (u64, Corruption, String) {
    match result {
        Err(err @ JournalError::Corrupt { .. }) => {
            let text = err.to_string();
            let JournalError::Corrupt { line, problem, .. } = err else {
                unreachable!()
            };
            (line, problem, text)
        }
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("expected Corrupt, the journal opened"),
    }
}

#[test]
fn journal_chain_verifies_and_has_the_documented_shape() {
    let (_dir, path) = journal_path();
    let journal = four_records(&path);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(journal.verify().unwrap(), 4);
    let records = journal.records();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(records[0].prev, GENESIS_PREV);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
    }
    assert_eq!(journal.head(), (4, records[3].hash));

    let text = fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["at"], NOW);
    let started = &first["entry"]["started"];
    assert_eq!(started["proposal"]["action"], "upgrade");
    assert_eq!(started["proposal"]["version"], "v1.0.0");
    assert_eq!(started["proposal"]["hash"], HASH);
    assert!(started["proposal"].get("genesis_url").is_none());
    assert_eq!(started["directive_ids"][1], hex::encode([2u8; 32]));
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    use sha2::Digest;
    assert_eq!(
        second["prev"],
        hex::encode(sha2::Sha256::digest(lines[0].as_bytes()))
    );
    assert_eq!(
        second["entry"]["outcome"],
        serde_json::json!({"seq_started": 1, "status": "success"})
    );
    let third: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(
        third["entry"]["started"]["proposal"]["required_by"],
        NOW + 3600
    );
    let fourth: serde_json::Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(fourth["entry"]["outcome"]["error"], "exit status 3");

    // The read-only inspection agrees.
    let inspection = journal::inspect(&path).unwrap();
    assert_eq!(inspection.records, records);
    assert_eq!(inspection.head, records[3].hash);
    assert_eq!(inspection.torn_tail, None);
}

#[test]
fn reopening_continues_the_chain() {
    let (_dir, path) = journal_path();
    let journal = four_records(&path);
    let head = journal.head();
    drop(journal);
    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.head(), head);
    assert_eq!(journal.recovered_tail(), None);
    assert!(journal.contains(&proposal("v1.0.0")));
    assert!(journal.contains(&reboot_proposal()));
    let seq = journal
        .append_started(&proposal("v3.0.0"), &[], NOW + 500)
        .unwrap();
    assert_eq!(seq, 5);
    assert_eq!(journal.records()[4].prev, head.1);
    journal
        .append_outcome(seq, Status::Success, None, NOW + 600)
        .unwrap();
    drop(journal);
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.records().len(), 6);
    assert_eq!(journal.verify().unwrap(), 6);
    assert!(journal.interrupted().is_empty());
}

#[test]
fn started_without_outcome_is_interrupted_and_never_runs_again() {
    let (_dir, path) = journal_path();
    let mut journal = Journal::open(&path).unwrap();
    let s1 = journal
        .append_started(&proposal("v1.0.0"), &[[1u8; 32]], NOW)
        .unwrap();
    journal
        .append_outcome(s1, Status::Success, None, NOW + 1)
        .unwrap();
    let ids = [[5u8; 32], [6u8; 32]];
    let s3 = journal
        .append_started(&proposal("v2.0.0"), &ids, NOW + 2)
        .unwrap();
    assert_eq!(s3, 3);
    // The agent dies while the hook runs.
    drop(journal);

    let mut journal = Journal::open(&path).unwrap();
    assert_eq!(journal.interrupted(), vec![(3, proposal("v2.0.0"))]);
    assert!(journal.contains(&proposal("v2.0.0")));
    assert!(journal.contains(&proposal("v1.0.0")));
    assert!(!journal.contains(&proposal("v3.0.0")));
    // Different proposals: the version string as signed, the hash.
    assert!(!journal.contains(&proposal("2.0.0")));
    let Entry::Started { directive_ids, .. } = &journal.record(3).unwrap().entry else {
        panic!("record 3 is not a started record");
    };
    assert_eq!(directive_ids, &ids);
    // At-most-once: it cannot start again.
    assert!(matches!(
        journal.append_started(&proposal("v2.0.0"), &[], NOW + 10),
        Err(JournalError::AlreadyStarted { seq: 3 })
    ));
    // Acknowledged as interrupted.
    journal
        .append_outcome(3, Status::Failure, Some("interrupted"), NOW + 10)
        .unwrap();
    assert!(journal.interrupted().is_empty());
    drop(journal);
    let journal = Journal::open(&path).unwrap();
    assert!(journal.interrupted().is_empty());
    assert!(journal.contains(&proposal("v2.0.0")));
}

#[test]
fn flipping_any_byte_of_a_middle_record_is_detected_at_its_line() {
    let (_dir, path) = journal_path();
    drop(four_records(&path));
    let original = fs::read(&path).unwrap();
    let line2_start = original.iter().position(|&b| b == b'\n').unwrap() + 1;
    let line2_end = line2_start
        + original[line2_start..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap();
    for offset in line2_start..line2_end {
        let mut bytes = original.clone();
        bytes[offset] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let (line, problem, text) = corrupt_line(Journal::open(&path));
        // Either line 2 no longer parses or verifies, or line 3's `prev`
        // no longer matches it; the message names line 2 either way.
        match line {
            2 => {}
            3 => assert_eq!(problem, Corruption::Prev { previous_line: 2 }),
            other => panic!("byte {offset}: detected at line {other}: {text}"),
        }
        assert!(text.contains("line 2"), "byte {offset}: {text}");
        assert!(text.contains("refusing to start"), "{text}");
        assert!(matches!(
            journal::inspect(&path),
            Err(JournalError::Corrupt { .. })
        ));
    }
}

#[test]
fn changed_value_in_a_middle_record_is_reported_with_its_line_number() {
    let (_dir, path) = journal_path();
    drop(four_records(&path));
    // One more record, so that the one edited below is in the middle.
    let mut journal = Journal::open(&path).unwrap();
    journal
        .append_started(&proposal("v5.0.0"), &[], NOW + 900)
        .unwrap();
    drop(journal);
    // A plausible edit: the second run "succeeded".
    let text = fs::read_to_string(&path).unwrap();
    let edited = text.replacen(
        "\"status\":\"failure\",\"error\":\"exit status 3\"",
        "\"status\":\"success\"",
        1,
    );
    assert_ne!(edited, text);
    fs::write(&path, edited).unwrap();
    let (line, problem, message) = corrupt_line(Journal::open(&path));
    assert_eq!(line, 5);
    assert_eq!(problem, Corruption::Prev { previous_line: 4 });
    assert!(message.contains("line 4 was changed"), "{message}");
}

#[test]
fn deleting_a_middle_line_is_detected() {
    let (_dir, path) = journal_path();
    drop(four_records(&path));
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for removed in 0..3 {
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != removed)
            .map(|(_, l)| *l)
            .collect();
        fs::write(&path, kept.join("\n") + "\n").unwrap();
        let (line, problem, message) = corrupt_line(Journal::open(&path));
        let line_no = u64::try_from(removed + 1).unwrap();
        assert_eq!(line, line_no, "{message}");
        assert_eq!(
            problem,
            Corruption::Seq {
                expected: line_no,
                found: line_no + 1
            },
            "{message}"
        );
        assert!(message.contains(&format!("line {line_no}")), "{message}");
    }
    // Swapping two lines is detected too.
    let swapped = [lines[0], lines[2], lines[1], lines[3]].join("\n") + "\n";
    fs::write(&path, swapped).unwrap();
    assert_eq!(corrupt_line(Journal::open(&path)).0, 2);
}

#[test]
fn torn_final_line_is_reported_distinctly_and_a_complete_one_is_kept() {
    let (_dir, path) = journal_path();
    drop(four_records(&path));
    let mut journal = Journal::open(&path).unwrap();
    journal
        .append_started(&proposal("v7.0.0"), &[], NOW + 1000)
        .unwrap();
    drop(journal);
    let full = fs::read(&path).unwrap();
    let line5_start = full[..full.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;

    // Cut in the middle of record 5: refused, but not as tampering.
    let cut = &full[..line5_start + 40];
    fs::write(&path, cut).unwrap();
    let err = Journal::open(&path).unwrap_err();
    let JournalError::TornTail {
        line, offset, len, ..
    } = &err
    else {
        panic!("expected TornTail, got {err}");
    };
    assert_eq!((*line, *offset, *len), (5, line5_start as u64, 40));
    let message = err.to_string();
    assert!(message.contains("torn line 5"), "{message}");
    assert!(
        message.contains(&format!("truncate -s {line5_start} {}", path.display())),
        "{message}"
    );
    // The read-only inspection shows the four good records and the tear.
    let inspection = journal::inspect(&path).unwrap();
    assert_eq!(inspection.records.len(), 4);
    assert_eq!(inspection.torn_tail.unwrap().line, 5);
    // Nothing was changed by either.
    assert_eq!(fs::read(&path).unwrap(), cut);

    // Complete record, only the newline missing: kept as started.
    fs::write(&path, &full[..full.len() - 1]).unwrap();
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.recovered_tail(), Some(5));
    assert_eq!(journal.interrupted(), vec![(5, proposal("v7.0.0"))]);
    assert!(journal.contains(&proposal("v7.0.0")));
    assert_eq!(fs::read(&path).unwrap(), full);
    assert_eq!(journal.verify().unwrap(), 5);
}

#[test]
fn journal_verify_notices_changes_made_while_open() {
    let (_dir, path) = journal_path();
    let journal = four_records(&path);
    let text = fs::read_to_string(&path).unwrap();
    // Dropping the last record keeps a valid chain, but not ours.
    let shorter: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
    fs::write(&path, shorter).unwrap();
    assert!(matches!(
        journal.verify(),
        Err(JournalError::ChangedOnDisk { .. })
    ));
    fs::write(&path, text.replacen("\"seq\":2", "\"seq\":7", 1)).unwrap();
    assert!(matches!(
        journal.verify(),
        Err(JournalError::Corrupt { line: 2, .. })
    ));
}

#[test]
fn inspect_never_creates_a_journal() {
    let (_dir, path) = journal_path();
    let inspection = journal::inspect(&path).unwrap();
    assert!(inspection.records.is_empty());
    assert_eq!(inspection.head, GENESIS_PREV);
    assert!(!path.exists());
    let journal = Journal::open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(journal.head(), (0, GENESIS_PREV));
    assert!(journal.interrupted().is_empty());
}

#[test]
fn outcome_steps_are_kept_bounded_and_optional() {
    let (_dir, path) = journal_path();
    // A journal of records without steps, as older agents wrote them.
    drop(four_records(&path));
    let mut journal = Journal::open(&path).unwrap();
    let seq = journal
        .append_started(&proposal("v1.1.0"), &[[3u8; 32]], NOW + 200)
        .unwrap();
    let step = |name: &str, result: &str, at: u64, ms: u64, runs: u32| StepRecord {
        name: name.into(),
        result: result.into(),
        at,
        ms,
        runs,
    };
    let steps = vec![
        step("command", "ok", NOW + 200, 1_500, 1),
        step("health", "exit status 1", NOW + 202, 4_010, 4),
        step("rollback", &"x".repeat(1000), NOW + 206, 20, 1),
        step("health after rollback", "ok", NOW + 206, 6_000, 6),
    ];
    journal
        .append_outcome_with_steps(seq, Status::Failure, Some("rolled back"), &steps, NOW + 212)
        .unwrap();
    drop(journal);

    let journal = Journal::open(&path).unwrap();
    let records = journal.records();
    // The older records read with no steps.
    assert!(matches!(
        &records[1].entry,
        Entry::Outcome { steps, .. } if steps.is_empty()
    ));
    let Entry::Outcome {
        status,
        error,
        steps: read,
        ..
    } = &records[5].entry
    else {
        panic!("{:?}", records[5]);
    };
    assert_eq!(
        (*status, error.as_deref()),
        (Status::Failure, Some("rolled back"))
    );
    let names: Vec<&str> = read.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["command", "health", "rollback", "health after rollback"]
    );
    assert_eq!(read[1], steps[1]);
    assert_eq!(
        read[2].result,
        format!("{}…", "x".repeat(journal::MAX_STEP_TEXT_BYTES))
    );
    let line = fs::read_to_string(&path).unwrap();
    assert!(
        line.contains(
            r#""steps":[{"name":"command","result":"ok","at":1700000200,"ms":1500,"runs":1}"#
        ),
        "{line}"
    );
    // Records without steps are written as before: no `steps` key.
    assert_eq!(line.matches("\"steps\"").count(), 1);
}
