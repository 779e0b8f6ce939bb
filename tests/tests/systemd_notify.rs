//! systemd readiness and watchdog (`Type=notify`, design section 8b): the
//! monitor, run as its own process (`qube-monitor`, what `qube-agent run`
//! runs) under a fake `NOTIFY_SOCKET` this test binds, says `READY=1` only
//! after its worker reported its sandbox, then feeds the watchdog at half
//! of `WATCHDOG_USEC`; the worker inherits neither variable.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qube_e2e::*;

/// The monitor process; ended (SIGTERM, then waited for) when dropped.
struct Monitor(Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.0.wait();
    }
}

/// Every datagram that arrives on `socket` within `within`.
fn receive_for(socket: &UnixDatagram, within: Duration) -> Vec<String> {
    receive(socket, within, None)
}

/// Datagrams until one contains `line` (a whole line), at most `within`.
fn receive_until(socket: &UnixDatagram, line: &str, within: Duration) -> Vec<String> {
    receive(socket, within, Some(line))
}

/// Datagrams for at most `within`, stopping after one that contains
/// `until` (a whole line) when given.
fn receive(socket: &UnixDatagram, within: Duration, until: Option<&str>) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok(n) = socket.recv(&mut buf) else { break };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = until.is_some_and(|line| text.lines().any(|l| l == line));
        got.push(text);
        if done {
            break;
        }
    }
    got
}

fn has_line(messages: &[String], line: &str) -> bool {
    messages.iter().any(|m| m.lines().any(|l| l == line))
}

#[test]
fn ready_only_after_the_sandbox_report_then_periodic_watchdog() {
    let gov: Vec<qube_agent::Keys> = (1..=3).map(keys).collect();
    let node = Node::default();
    let dir = node.dir.path();
    let config = dir.join("config.toml");
    let toml = node.config_toml(
        &["ws://127.0.0.1:9"],
        &[&gov[0], &gov[1], &gov[2]],
        2,
        "",
        "",
    );
    std::fs::write(&config, toml).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let gate = dir.join("gate");
    let envfile = dir.join("worker.env");
    let log = dir.join("monitor.log");
    let program = worker_program();
    let _monitor = Monitor(
        Command::new(program.with_file_name("qube-monitor"))
            .arg(&config)
            .arg(program.with_file_name("fake-worker"))
            .arg("gated")
            .arg(&gate)
            .arg(&envfile)
            .env("NOTIFY_SOCKET", &socket_path)
            // 400 ms: a ping every 200 ms.
            .env("WATCHDOG_USEC", "400000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The worker is up (it wrote its environment) but has not reported its
    // sandbox: the watchdog is fed, READY=1 is not sent.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !envfile.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(envfile.exists(), "the worker never started:\n{}", log());
    let before = receive_for(&socket, Duration::from_millis(1500));
    assert!(!has_line(&before, "READY=1"), "ready too early: {before:?}");
    assert!(
        has_line(&before, "WATCHDOG=1"),
        "no watchdog before ready: {before:?}\n{}",
        log()
    );
    // The worker's environment is cleared: it cannot notify systemd.
    let env = std::fs::read_to_string(&envfile).unwrap();
    for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert!(!env.lines().any(|l| l == name), "{name} inherited: {env}");
    }

    // The sandbox report and the sync: READY=1, with a status line.
    std::fs::write(&gate, "").unwrap();
    let until_ready = receive_until(&socket, "READY=1", Duration::from_secs(10));
    let ready = until_ready
        .iter()
        .find(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1: {until_ready:?}\n{}", log()));
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=") && l.contains("sandbox none")),
        "{ready:?}"
    );

    // Then the watchdog keeps coming.
    let after = receive_for(&socket, Duration::from_millis(1500));
    let pings = after
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    assert!(pings >= 3, "{pings} pings in 1.5 s: {after:?}");
    assert!(!has_line(&after, "READY=1"), "READY=1 twice: {after:?}");
    assert!(Path::new(&socket_path).exists());
}
