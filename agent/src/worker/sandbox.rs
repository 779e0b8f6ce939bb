//! Confinement of the worker process (`docs/PROTOCOL.md` section 9, SECURITY.md) and hardening of
//! both processes.
//!
//! The worker calls [`confine_worker`] first thing, before the tokio runtime
//! or any other thread exists (Landlock restricts the calling thread and
//! the threads it creates afterwards, not threads that already run):
//!
//! * no core dumps (`RLIMIT_CORE` 0) and not dumpable (`PR_SET_DUMPABLE` 0),
//!   so no other process of the same user can read its memory;
//! * `no_new_privs`;
//! * Landlock: every filesystem access right the kernel knows is handled
//!   and none is granted (the worker opens no file: the monitor resolves
//!   relay host names for it and the TLS roots are compiled in); TCP
//!   `connect` only to the relay ports, `bind` nowhere; signals and
//!   abstract unix sockets scoped to the sandbox (ABI 6 and later).
//!
//! Best effort across kernels, as the landlock crate intends, with one
//! exception: a ruleset that is `NotEnforced` is refused unless the operator
//! passed `--allow-unsandboxed`.

use std::fmt;

use landlock::{
    Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, ABI,
};

/// The Landlock ABI this code is written for; older kernels get what they
/// support.
const TARGET_ABI: ABI = ABI::V6;

pub use crate::ipc::Enforcement;

/// What [`confine_worker`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxReport {
    /// Landlock enforcement.
    pub landlock: Enforcement,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
    /// TCP ports `connect` may reach.
    pub tcp_connect: Vec<u16>,
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "landlock {} (ABI target {}): no file access; TCP connect to ports {:?} only; no bind; signals and abstract sockets scoped; no_new_privs {}; no core dumps",
            self.landlock.as_str(),
            TARGET_ABI as i32,
            self.tcp_connect,
            self.no_new_privs
        )
    }
}

/// Why the sandbox could not be set up.
#[derive(Debug)]
#[non_exhaustive]
pub enum SandboxError {
    /// Setting a resource limit or process attribute failed.
    Harden(String),
    /// Building or applying the Landlock ruleset failed.
    Landlock(String),
    /// The kernel enforces no Landlock rule and `--allow-unsandboxed` was
    /// not given.
    NotEnforced,
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::Harden(e) => write!(f, "cannot harden the process: {e}"),
            SandboxError::Landlock(e) => write!(f, "cannot apply the Landlock sandbox: {e}"),
            SandboxError::NotEnforced => f.write_str(
                "this kernel enforces no Landlock rule, so the network-facing worker would run unconfined; \
                 enable Landlock (CONFIG_SECURITY_LANDLOCK and lsm=...,landlock) or, knowingly, pass --allow-unsandboxed",
            ),
        }
    }
}

impl std::error::Error for SandboxError {}

/// No core dumps and not dumpable: for the monitor (which holds the node
/// key) and the worker.
///
/// # Errors
/// [`SandboxError::Harden`] when a syscall fails.
pub fn harden_process() -> Result<(), SandboxError> {
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| SandboxError::Harden(format!("RLIMIT_CORE: {e}")))?;
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| SandboxError::Harden(format!("PR_SET_DUMPABLE: {e}")))?;
    Ok(())
}

/// Makes the calling process the leader of a new session and process group
/// (`setsid(2)`): it loses any controlling terminal (so no `TIOCSTI` into
/// the operator's shell), and the monitor can end it and everything it
/// started with one `killpg`. Call it first, before any thread exists.
///
/// # Errors
/// [`SandboxError::Harden`] when `setsid` fails (the process already leads
/// a process group).
pub fn detach_session() -> Result<(), SandboxError> {
    nix::unistd::setsid()
        .map(|_| ())
        .map_err(|e| SandboxError::Harden(format!("setsid: {e}")))
}

/// Hardens and confines the calling process for the worker role; call it
/// before any thread is started. `relay_ports` are the TCP ports of the
/// configured relays.
///
/// # Errors
/// [`SandboxError::NotEnforced`] when Landlock is unavailable and
/// `allow_unsandboxed` is false; [`SandboxError::Harden`] and
/// [`SandboxError::Landlock`] when a step fails.
pub fn confine_worker(
    relay_ports: &[u16],
    allow_unsandboxed: bool,
) -> Result<SandboxReport, SandboxError> {
    harden_process()?;
    let mut tcp_connect: Vec<u16> = relay_ports.to_vec();
    tcp_connect.sort_unstable();
    tcp_connect.dedup();

    let landlock = |e: landlock::RulesetError| SandboxError::Landlock(e.to_string());
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(landlock)?
        .handle_access(AccessNet::ConnectTcp | AccessNet::BindTcp)
        .map_err(landlock)?
        .scope(Scope::from_all(TARGET_ABI))
        .map_err(landlock)?
        .create()
        .map_err(landlock)?
        .add_rules(tcp_connect.iter().map(|&port| {
            Ok::<_, landlock::RulesetError>(NetPort::new(port, AccessNet::ConnectTcp))
        }))
        .map_err(landlock)?
        .restrict_self()
        .map_err(landlock)?;

    let report = SandboxReport {
        landlock: match status.ruleset {
            RulesetStatus::FullyEnforced => Enforcement::Full,
            RulesetStatus::PartiallyEnforced => Enforcement::Partial,
            RulesetStatus::NotEnforced => Enforcement::None,
        },
        no_new_privs: status.no_new_privs,
        tcp_connect,
    };
    if report.landlock == Enforcement::None && !allow_unsandboxed {
        return Err(SandboxError::NotEnforced);
    }
    Ok(report)
}

/// One attempted operation of [`probe`], for confinement tests and for an
/// operator checking a kernel: what was tried and what the kernel said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    /// `read`, `write`, `exec`, `connect` or `signal`.
    pub op: String,
    /// The path, port or pid.
    pub target: String,
    /// Whether the operation succeeded.
    pub allowed: bool,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// What [`probe`] tries, inside the sandbox.
#[derive(Debug, Clone, Default)]
pub struct ProbeRequest {
    /// Files to open for reading.
    pub read: Vec<std::path::PathBuf>,
    /// Files to create for writing.
    pub write: Vec<std::path::PathBuf>,
    /// Programs to execute.
    pub exec: Vec<std::path::PathBuf>,
    /// Loopback TCP ports to connect to.
    pub connect: Vec<u16>,
    /// Processes to send SIGCONT (harmless) to.
    pub signal: Vec<i32>,
}

/// Tries each operation of `request` (after the caller confined itself) and
/// reports the outcome of each.
pub fn probe(request: &ProbeRequest) -> Vec<Attempt> {
    let mut out = Vec::new();
    let mut record = |op: &str, target: String, result: Result<(), String>| {
        out.push(Attempt {
            op: op.to_owned(),
            target,
            allowed: result.is_ok(),
            error: result.err(),
        });
    };
    for path in &request.read {
        let result = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]))
            .map(|_| ())
            .map_err(|e| e.to_string());
        record("read", path.display().to_string(), result);
    }
    for path in &request.write {
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(|_| ())
            .map_err(|e| e.to_string());
        record("write", path.display().to_string(), result);
    }
    for path in &request.exec {
        let result = std::process::Command::new(path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|_| ())
            .map_err(|e| e.to_string());
        record("exec", path.display().to_string(), result);
    }
    for port in &request.connect {
        let result = std::net::TcpStream::connect(("127.0.0.1", *port))
            .map(|_| ())
            .map_err(|e| e.to_string());
        record("connect", port.to_string(), result);
    }
    for pid in &request.signal {
        let result = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGCONT,
        )
        .map_err(|e| e.to_string());
        record("signal", pid.to_string(), result);
    }
    out
}
