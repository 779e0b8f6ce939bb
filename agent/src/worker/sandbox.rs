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
//!   abstract unix sockets scoped to the sandbox (ABI 6 and later);
//! * then a seccomp-bpf allowlist ([`crate::worker::seccomp`]): inet stream
//!   sockets only, no exec, fork, memfd, ptrace or `TIOCSTI`; a filter that
//!   cannot be installed is refused like Landlock below.
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
pub use crate::worker::seccomp::SeccompState;

/// What [`confine_worker`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxReport {
    /// Landlock enforcement.
    pub landlock: Enforcement,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
    /// TCP ports `connect` may reach.
    pub tcp_connect: Vec<u16>,
    /// The seccomp allowlist ([`crate::worker::seccomp`]).
    pub seccomp: SeccompState,
}

impl SandboxReport {
    /// The level reported to the monitor and shown by `status`: `Full`
    /// only when Landlock is fully enforced and the seccomp filter is in
    /// force, `None` when neither is, `Partial` otherwise.
    pub fn enforcement(&self) -> Enforcement {
        match (self.landlock, &self.seccomp) {
            (Enforcement::Full, SeccompState::Enforced) => Enforcement::Full,
            (Enforcement::None, SeccompState::Off(_)) => Enforcement::None,
            _ => Enforcement::Partial,
        }
    }
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
        )?;
        write!(f, "; {}", self.seccomp)
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
    /// The seccomp filter could not be built or installed and
    /// `--allow-unsandboxed` was not given.
    Seccomp(crate::worker::seccomp::SeccompError),
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
            SandboxError::Seccomp(e) => write!(
                f,
                "{e}, so the network-facing worker would run without its syscall allowlist; \
                 enable CONFIG_SECCOMP_FILTER or, knowingly, pass --allow-unsandboxed"
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
/// Landlock first, then the seccomp filter ([`crate::worker::seccomp::install`]),
/// which must come last: it forbids the syscalls the steps before it use.
///
/// # Errors
/// [`SandboxError::NotEnforced`] when Landlock is unavailable and
/// [`SandboxError::Seccomp`] when the filter cannot be installed, each only
/// when `allow_unsandboxed` is false; [`SandboxError::Harden`] and
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

    let mut report = SandboxReport {
        landlock: match status.ruleset {
            RulesetStatus::FullyEnforced => Enforcement::Full,
            RulesetStatus::PartiallyEnforced => Enforcement::Partial,
            RulesetStatus::NotEnforced => Enforcement::None,
        },
        no_new_privs: status.no_new_privs,
        tcp_connect,
        seccomp: SeccompState::Enforced,
    };
    if report.landlock == Enforcement::None && !allow_unsandboxed {
        return Err(SandboxError::NotEnforced);
    }
    match crate::worker::seccomp::install() {
        // seccompiler sets no_new_privs before it installs the filter.
        Ok(()) => report.no_new_privs = true,
        Err(e) if allow_unsandboxed => report.seccomp = SeccompState::Off(e.to_string()),
        Err(e) => return Err(SandboxError::Seccomp(e)),
    }
    Ok(report)
}

pub use super::probe::{probe, probe_main, Attempt, ProbeOp, ProbeRequest};
