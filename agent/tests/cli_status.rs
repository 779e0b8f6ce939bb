//! `qube-agent status` and `qube-agent journal`, run as processes against a
//! state directory built with the library: the tally (already done, below
//! quorum, conflict), the outbox, the journal verdict, and the read-only
//! contract (no lock, nothing created or written, no secret printed).

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qube_agent::core::nip19::encode_npub;
use qube_agent::state::journal::{Journal, Status};
use qube_agent::state::{StateDir, NODE_KEY_FILE};
use qube_agent::Keys;
use qube_e2e::{ack, directive, keys};
use serde_json::Value;

const NOW: u64 = 1_700_000_000;
const HASH_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const HASH_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn npub(n: u8) -> String {
    encode_npub(&keys(n).public_key())
}

/// A temporary directory with `state/` (made by the library) and
/// `config.toml`.
struct Fixture {
    dir: tempfile::TempDir,
    state: StateDir,
}

impl Fixture {
    /// `voters` follows named alice, bob, ... (keys 1, 2, ...) and one
    /// observer (key 7).
    fn new(voters: u8, quorum: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path().join("state")).unwrap();
        let fixture = Fixture { dir, state };
        fixture.write_config(voters, quorum, &fixture.state_path());
        fixture
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn write_config(&self, voters: u8, quorum: usize, state_dir: &Path) {
        let mut text = format!(
            "network = \"hqz\"\nquorum = {quorum}\nrelays = [\"wss://relay.example.com\"]\n\
             state_dir = \"{}\"\ncurrent_version = \"v1.0.0\"\n",
            state_dir.display()
        );
        for n in 1..=voters {
            text.push_str(&format!(
                "\n[[follows]]\nname = \"{}\"\nnpub = \"{}\"\nrole = \"voter\"\n",
                NAMES[usize::from(n - 1)],
                npub(n)
            ));
        }
        text.push_str(&format!(
            "\n[[follows]]\nname = \"olivia\"\nnpub = \"{}\"\nrole = \"observer\"\n",
            npub(7)
        ));
        text.push_str(
            "\n[upgrade]\ncommand = [\"/usr/local/libexec/pillar-upgrade\"]\n\n[reboot]\ncommand = [\"/usr/local/libexec/pillar-reboot\"]\n",
        );
        fs::write(self.config_path(), text).unwrap();
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        run(args, &self.config_path())
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let (code, stdout, stderr) = self.run(args);
        let value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr: {stderr}"));
        (code, value)
    }

    fn journal_path(&self) -> PathBuf {
        self.state.journal_path()
    }
}

/// Runs `qube-agent ARGS --config CONFIG`.
fn run(args: &[&str], config: &Path) -> (i32, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_qube-agent"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The tally entry whose proposal has `version` and `hash`.
fn proposal<'a>(report: &'a Value, version: &str, hash: &str) -> &'a Value {
    report["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["proposal"]["version"] == version && p["proposal"]["hash"] == hash)
        .unwrap_or_else(|| panic!("no proposal {version} {hash} in {report:#}"))
}

fn names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Every file in `dir` with its mode and content.
fn snapshot(dir: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode();
            (
                e.file_name().to_string_lossy().into_owned(),
                (mode, fs::read(e.path()).unwrap()),
            )
        })
        .collect()
}

/// 3 voters, quorum 2: alice and bob voted v1.2.3 (journaled: started and
/// success, installed), carol alone v1.4.0; one ack in the outbox; node key
/// generated.
fn journaled_fixture() -> (Fixture, Keys) {
    let f = Fixture::new(3, 2);
    let node = f.state.node_key(None).unwrap();
    let a = directive()
        .created_at(NOW)
        .version("v1.2.3")
        .hash(HASH_A)
        .sign_directive(&keys(1), NOW);
    let b = directive()
        .created_at(NOW + 10)
        .version("v1.2.3")
        .hash(HASH_A)
        .sign_directive(&keys(2), NOW);
    let c = directive()
        .created_at(NOW + 20)
        .version("v1.4.0")
        .hash(HASH_B)
        .sign_directive(&keys(3), NOW);
    f.state.save_directives([&a, &b, &c]).unwrap();
    let mut journal = Journal::open(f.journal_path()).unwrap();
    let ids = [a.event().id, b.event().id];
    let seq = journal
        .append_started(a.proposal(), &ids, NOW + 60)
        .unwrap();
    journal
        .append_outcome(seq, Status::Success, None, NOW + 100)
        .unwrap();
    f.state.set_installed_version("v1.2.3").unwrap();
    f.state
        .outbox()
        .unwrap()
        .push(
            ack().created_at(NOW + 120).version("v1.2.3").sign(&node),
            NOW + 120,
        )
        .unwrap();
    (f, node)
}

#[test]
fn status_text_shows_already_done_below_quorum_outbox_and_journal() {
    let (f, node) = journaled_fixture();
    let (code, out, err) = f.run(&["status"]);
    assert_eq!(code, 0, "stderr: {err}\n{out}");
    assert_eq!(err, "");
    let node_npub = encode_npub(&node.public_key());
    for expected in [
        format!("node npub:   {node_npub}\n"),
        format!(
            "node id:     {}\n",
            qube_agent::config::default_node_id(&node.public_key())
        ),
        "network:     hqz\n".to_owned(),
        "quorum:      2 of 3 voters\n".to_owned(),
        "installed:   1.2.3 (config current_version: v1.0.0; recorded: v1.2.3)\n".to_owned(),
        format!("  olivia  {}  observer\n", npub(7)),
        format!("  alice   {}  voter\n", npub(1)),
        "  alice   2023-11-14T22:13:20Z (1700000000)  id ".to_owned(),
        format!("upgrade \"v1.2.3\" hash {HASH_A} on \"hqz\"\n      votes:    2 ("),
        "      standing: already done".to_owned(),
        format!(
            "upgrade \"v1.4.0\" hash {HASH_B} on \"hqz\"\n      votes:    1 (carol)\n      \
             standing: below quorum: 1 of 2 votes\n"
        ),
        "outbox: 1 pending acknowledgement(s):\n  ack ".to_owned(),
        "  status success  upgrade v1.2.3  attempts 0  next attempt 2023-11-14T22:15:20Z (1700000120), due\n"
            .to_owned(),
        "journal: 2 record(s):\n".to_owned(),
        format!("      1  2023-11-14T22:14:20Z  started  upgrade \"v1.2.3\" hash {HASH_A} on \"hqz\" (2 directives)\n"),
        "      2  2023-11-14T22:15:00Z  outcome  success  of seq 1: upgrade \"v1.2.3\"".to_owned(),
        "chain: verified: 2 record(s), head ".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected:?} not in:\n{out}");
    }
    assert!(!out.contains("CONFLICT"), "{out}");
    // The secret is never printed.
    assert!(!out.contains(&hex::encode(node.secret_bytes())));
}

#[test]
fn status_json_has_the_documented_fields_and_values() {
    let (f, node) = journaled_fixture();
    let (code, r) = f.json(&["status", "--json"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["network"], "hqz");
    assert_eq!(r["quorum"], 2);
    assert_eq!(r["voter_count"], 3);
    assert_eq!(r["node"]["npub"], encode_npub(&node.public_key()));
    assert_eq!(r["node"]["pubkey"], hex::encode(node.public_key()));
    assert_eq!(r["node"]["key"], "ok");
    assert!(r["node"]["key_error"].is_null());
    assert_eq!(r["installed_version"]["effective"], "1.2.3");
    assert_eq!(r["installed_version"]["configured"], "v1.0.0");
    assert_eq!(r["installed_version"]["recorded"], "v1.2.3");
    assert_eq!(r["state_dir"], f.state_path().display().to_string());

    let follows = r["follows"].as_array().unwrap();
    assert_eq!(follows.len(), 4);
    assert_eq!(follows[3]["name"], "olivia");
    assert_eq!(follows[3]["role"], "observer");
    assert_eq!(follows[0]["npub"], npub(1));

    let directives = r["directives"].as_array().unwrap();
    assert_eq!(directives.len(), 3);
    assert_eq!(directives[1]["voter"], "bob");
    let d = &directives[1]["directive"];
    assert_eq!(d["created_at"], NOW + 10);
    assert_eq!(d["created_at_utc"], "2023-11-14T22:13:30Z");
    assert_eq!(d["expired"], false);
    assert!(d["expiration"].is_null());
    assert_eq!(d["proposal"]["version"], "v1.2.3");
    assert_eq!(d["proposal"]["action"], "upgrade");
    assert_eq!(d["id"].as_str().unwrap().len(), 64);

    let done = proposal(&r, "v1.2.3", HASH_A);
    assert_eq!(done["standing"], "already_done");
    assert_eq!(done["votes"], 2);
    assert_eq!(names(&done["voters"]), ["alice", "bob"]);
    let below = proposal(&r, "v1.4.0", HASH_B);
    assert_eq!(below["standing"], "below_quorum");
    assert_eq!(below["votes"], 1);
    assert_eq!(names(&below["voters"]), ["carol"]);
    assert_eq!(below["standing_text"], "below quorum: 1 of 2 votes");
    // Highest version first.
    assert_eq!(r["proposals"][0]["proposal"]["version"], "v1.4.0");
    assert!(r["conflict"].is_null());

    let outbox = r["outbox"].as_array().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["status"], "success");
    assert_eq!(outbox[0]["attempts"], 0);
    assert_eq!(outbox[0]["next_attempt_at"], NOW + 120);
    assert_eq!(outbox[0]["due"], true);

    let journal = &r["journal"];
    assert_eq!(journal["verdict"], "verified");
    assert_eq!(journal["verified"], true);
    assert_eq!(journal["exists"], true);
    assert_eq!(journal["record_count"], 2);
    assert_eq!(journal["head"].as_str().unwrap().len(), 64);
    let records = journal["records"].as_array().unwrap();
    assert_eq!(records[0]["entry"], "started");
    assert_eq!(records[0]["awaiting_outcome"], false);
    assert_eq!(records[0]["directive_ids"].as_array().unwrap().len(), 2);
    assert_eq!(records[1]["entry"], "outcome");
    assert_eq!(records[1]["seq_started"], 1);
    assert_eq!(records[1]["status"], "success");
    assert!(records[1]["error"].is_null());
    assert_eq!(records[1]["proposal"]["version"], "v1.2.3");
    assert_eq!(records[1]["at"], NOW + 100);
    assert!(r["warnings"].as_array().unwrap().is_empty(), "{r:#}");
}

#[test]
fn status_shows_only_the_last_ten_journal_records() {
    let f = Fixture::new(3, 2);
    let mut journal = Journal::open(f.journal_path()).unwrap();
    for minor in 0..6u64 {
        let d = directive()
            .created_at(NOW)
            .version(&format!("v1.{minor}.0"))
            .hash(HASH_A)
            .sign_directive(&keys(1), NOW);
        let seq = journal
            .append_started(d.proposal(), &[d.event().id], NOW + minor)
            .unwrap();
        journal
            .append_outcome(seq, Status::Failure, Some("exit status 3"), NOW + minor)
            .unwrap();
    }
    let (code, r) = f.json(&["status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(r["journal"]["record_count"], 12);
    let records = r["journal"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 10);
    assert_eq!(records[0]["seq"], 3);
    assert_eq!(records[9]["seq"], 12);
    assert_eq!(records[9]["error"], "exit status 3");
    let (_, out, _) = f.run(&["status"]);
    assert!(out.contains("journal: last 10 of 12 records:\n"), "{out}");
    assert!(out.contains("  error: exit status 3"), "{out}");
    let (code, r) = f.json(&["journal", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(r["records"].as_array().unwrap().len(), 12);
}

#[test]
fn conflict_is_an_explicit_line_in_text_and_a_standing_in_json() {
    let f = Fixture::new(4, 2);
    let ds = [
        directive()
            .created_at(NOW)
            .version("v1.3.0")
            .hash(HASH_A)
            .sign_directive(&keys(1), NOW),
        directive()
            .created_at(NOW)
            .version("v1.3.0")
            .hash(HASH_A)
            .sign_directive(&keys(2), NOW),
        directive()
            .created_at(NOW)
            .version("v1.3.0")
            .hash(HASH_B)
            .sign_directive(&keys(3), NOW),
        directive()
            .created_at(NOW)
            .version("v1.3.0")
            .hash(HASH_B)
            .sign_directive(&keys(4), NOW),
    ];
    f.state.save_directives(&ds).unwrap();

    let (code, out, err) = f.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("CONFLICT: "))
        .unwrap_or_else(|| panic!("no CONFLICT line in:\n{out}"));
    assert!(
        line.contains("2 different proposals for version 1.3.0"),
        "{line}"
    );
    assert!(line.contains("nothing runs"), "{line}");
    assert!(out.contains("quorum:      2 of 4 voters\n"), "{out}");
    // Voter names in config order.
    assert!(out.contains("      votes:    2 (carol, dave)\n"), "{out}");

    let (code, r) = f.json(&["status", "--json"]);
    assert_eq!(code, 0);
    for (hash, voters) in [(HASH_A, ["alice", "bob"]), (HASH_B, ["carol", "dave"])] {
        let p = proposal(&r, "v1.3.0", hash);
        assert_eq!(p["standing"], "conflict");
        assert_eq!(p["votes"], 2);
        assert_eq!(names(&p["voters"]), voters);
    }
    assert_eq!(r["conflict"]["version"], "1.3.0");
    let hashes: Vec<&str> = r["conflict"]["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hash"].as_str().unwrap())
        .collect();
    assert_eq!(hashes.len(), 2);
    assert!(hashes.contains(&HASH_A) && hashes.contains(&HASH_B));
    // Quorum 2 of 4 is not a majority: the config warning is reported.
    let warnings = r["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("quorum 2 is at most half")),
        "{warnings:?}"
    );
}

/// Journal with three records: started v1.2.3, its success, started v1.3.0.
fn three_record_journal(f: &Fixture) {
    let mut journal = Journal::open(f.journal_path()).unwrap();
    let a = directive()
        .created_at(NOW)
        .version("v1.2.3")
        .hash(HASH_A)
        .sign_directive(&keys(1), NOW);
    let b = directive()
        .created_at(NOW)
        .version("v1.3.0")
        .hash(HASH_A)
        .sign_directive(&keys(1), NOW);
    let seq = journal
        .append_started(a.proposal(), &[a.event().id], NOW + 60)
        .unwrap();
    journal
        .append_outcome(seq, Status::Success, None, NOW + 100)
        .unwrap();
    journal
        .append_started(b.proposal(), &[b.event().id], NOW + 200)
        .unwrap();
}

#[test]
fn journal_verify_exits_0_then_1_after_a_flipped_byte_in_a_middle_line() {
    let f = Fixture::new(3, 2);
    three_record_journal(&f);

    let (code, out, err) = f.run(&["journal", "--verify"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.starts_with("verified: 3 record(s), head "), "{out}");
    assert_eq!(out.lines().count(), 1, "only the verdict: {out}");

    let (code, out, _) = f.run(&["journal"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].contains("  started  upgrade \"v1.2.3\""), "{out}");
    assert!(lines[1].contains("  outcome  success  of seq 1: "), "{out}");
    assert!(
        lines[2].ends_with("[no outcome yet: running, or interrupted]"),
        "{out}"
    );
    assert!(lines[3].starts_with("verified: 3 record(s)"), "{out}");

    let (code, r) = f.json(&["journal", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(r["verified"], true);
    assert_eq!(r["records"].as_array().unwrap().len(), 3);
    assert_eq!(r["records"][2]["awaiting_outcome"], true);
    let (code, r) = f.json(&["journal", "--verify", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(r["verdict"], "verified");
    assert!(r.get("records").is_none(), "{r:#}");

    // Flip one digit of line 2's `at`: line 2 still parses, line 3's `prev`
    // no longer matches it.
    let text = fs::read_to_string(f.journal_path()).unwrap();
    let start = text.find('\n').unwrap() + 1;
    let at = start + text[start..].find("\"at\":").unwrap() + "\"at\":".len();
    let mut bytes = text.into_bytes();
    assert_eq!(bytes[at], b'1');
    bytes[at] = b'2';
    fs::write(f.journal_path(), &bytes).unwrap();

    let (code, out, err) = f.run(&["journal", "--verify"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out,
        format!(
            "corrupt: {} does not verify at line 3\n",
            f.journal_path().display()
        )
    );
    assert!(err.starts_with("error: journal "), "{err}");
    assert!(err.contains("does not verify at line 3"), "{err}");
    assert!(err.contains("line 2 was changed"), "{err}");

    let (code, r) = f.json(&["journal", "--verify", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(r["verified"], false);
    assert_eq!(r["verdict"], "corrupt");
    assert_eq!(r["error_line"], 3);
    assert!(r["error"].as_str().unwrap().contains("line 2 was changed"));

    // status still reports everything, and exits 1.
    let (code, out, err) = f.run(&["status"]);
    assert_eq!(code, 1);
    assert!(out.contains("chain: corrupt: "), "{out}");
    assert!(
        out.contains("journal: records not shown (it does not verify)"),
        "{out}"
    );
    assert!(err.contains("does not verify at line 3"), "{err}");
}

#[test]
fn torn_last_line_is_reported_with_its_line_and_offset() {
    let f = Fixture::new(3, 2);
    three_record_journal(&f);
    let len = fs::metadata(f.journal_path()).unwrap().len();
    let mut text = fs::read(f.journal_path()).unwrap();
    text.extend_from_slice(b"{\"seq\":4,\"prev\":\"");
    fs::write(f.journal_path(), &text).unwrap();

    let (code, out, err) = f.run(&["journal", "--verify"]);
    assert_eq!(code, 1);
    assert!(out.starts_with("torn: "), "{out}");
    assert!(out.contains("at line 4"), "{out}");
    assert!(err.contains("torn line 4"), "{err}");
    assert!(err.contains(&format!("truncate -s {len} ")), "{err}");
    // The verified records are still listed.
    let (code, r) = f.json(&["journal", "--json"]);
    assert_eq!(code, 1);
    assert_eq!(r["verdict"], "torn");
    assert_eq!(r["records"].as_array().unwrap().len(), 3);
}

#[test]
fn no_journal_yet_exits_0_and_nothing_is_created() {
    let f = Fixture::new(3, 2);
    f.state
        .save_directives([&directive()
            .created_at(NOW)
            .version("v1.2.3")
            .hash(HASH_A)
            .sign_directive(&keys(1), NOW)])
        .unwrap();
    let before = snapshot(&f.state_path());

    let (code, out, err) = f.run(&["journal", "--verify"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.starts_with("no journal yet: "), "{out}");
    let (code, out, _) = f.run(&["journal"]);
    assert_eq!(code, 0);
    assert!(out.contains("no journal yet"), "{out}");

    let (code, out, err) = f.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("chain: no journal yet"), "{out}");
    assert!(out.contains("\njournal: no records\n"), "{out}");
    // No node key yet: status never generates one.
    assert!(
        out.contains("node npub:   unknown (node key not created yet"),
        "{out}"
    );
    assert!(out.contains("node id:     unknown\n"), "{out}");
    let (_, r) = f.json(&["status", "--json"]);
    assert_eq!(r["journal"]["verdict"], "no_journal");
    assert_eq!(r["journal"]["exists"], false);
    assert_eq!(r["node"]["key"], "not_created");
    assert!(r["node"]["npub"].is_null());

    assert_eq!(snapshot(&f.state_path()), before);
    assert!(!f.journal_path().exists());
    assert!(!f.state_path().join(NODE_KEY_FILE).exists());
}

#[test]
fn status_runs_while_the_agent_holds_the_lock_and_writes_nothing() {
    let (f, _node) = journaled_fixture();
    let _lock = f.state.lock().unwrap();
    let before = snapshot(&f.state_path());
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["journal"],
        &["journal", "--verify"],
    ] {
        let (code, out, err) = f.run(args);
        assert_eq!(code, 0, "{args:?}: {err}\n{out}");
    }
    assert_eq!(snapshot(&f.state_path()), before);
    // Still ours: a second lock attempt in this process fails.
    assert!(f.state.lock().is_err());
}

#[test]
fn unreadable_node_key_is_unknown_and_never_printed() {
    let (f, node) = journaled_fixture();
    // Group-readable: refused as a key, as the agent would refuse it.
    let key_path = f.state_path().join(NODE_KEY_FILE);
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();
    let secret = hex::encode(node.secret_bytes());

    let (code, out, err) = f.run(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("node npub:   unknown (node key not readable)\n"),
        "{out}"
    );
    assert!(out.contains("permissions 0640"), "{out}");
    assert!(out.contains("node id:     unknown\n"), "{out}");
    assert!(!out.contains(&secret) && !err.contains(&secret));

    let (code, r) = f.json(&["status", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(r["node"]["key"], "not_readable");
    assert!(r["node"]["npub"].is_null());
    assert!(r["node"]["id"].is_null());
    assert!(r["node"]["key_error"]
        .as_str()
        .unwrap()
        .contains("permissions 0640"));
    assert!(!r.to_string().contains(&secret));
    // Untouched.
    assert_eq!(
        fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn expired_directive_is_shown_and_not_counted() {
    let f = Fixture::new(3, 2);
    let ds = [
        directive()
            .created_at(NOW)
            .version("v1.2.3")
            .hash(HASH_A)
            .sign_directive(&keys(1), NOW),
        directive()
            .created_at(NOW)
            .version("v1.2.3")
            .hash(HASH_A)
            .expiration(NOW + 500)
            .sign_directive(&keys(2), NOW),
    ];
    f.state.save_directives(&ds).unwrap();
    let (code, out, _) = f.run(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("EXPIRED at 2023-11-14T22:21:40Z (1700000500), not counted"),
        "{out}"
    );
    assert!(out.contains("  carol   no directive\n"), "{out}");
    let (_, r) = f.json(&["status", "--json"]);
    assert_eq!(r["directives"][1]["directive"]["expired"], true);
    assert_eq!(r["directives"][1]["directive"]["expiration"], NOW + 500);
    assert!(r["directives"][2]["directive"].is_null());
    let p = proposal(&r, "v1.2.3", HASH_A);
    assert_eq!(p["standing"], "below_quorum");
    assert_eq!(p["votes"], 1);
}

#[test]
fn missing_state_dir_exits_1_and_is_not_created() {
    let f = Fixture::new(3, 2);
    let missing = f.dir.path().join("no-such-state");
    f.write_config(3, 2, &missing);
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["journal", "--verify"],
    ] {
        let (code, out, err) = f.run(args);
        assert_eq!((code, out.as_str()), (1, ""), "{args:?}");
        assert_eq!(
            err.lines().next().unwrap(),
            format!(
                "error: state directory {} does not exist (nothing was created): the agent has \
                 not started with this config yet, or `state_dir` in the config points elsewhere",
                missing.display()
            )
        );
        assert!(!missing.exists());
    }
}

#[test]
fn corrupt_state_file_exits_1() {
    let f = Fixture::new(3, 2);
    fs::write(f.state_path().join("directives.json"), "{not json").unwrap();
    let (code, out, err) = f.run(&["status"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("directives.json is corrupt"), "{err}");
}
