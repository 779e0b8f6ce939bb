//! The worker's seccomp-bpf allowlist (seccomp(2), `SECCOMP_SET_MODE_FILTER`),
//! installed by [`crate::worker::sandbox::confine_worker`] after Landlock and
//! before the worker starts a thread or sends a network byte.
//!
//! Landlock decides *which* files and ports; this filter decides *which
//! kernel interfaces* the worker may use at all. What the worker does after
//! confinement is small: a current-thread tokio runtime (epoll, an eventfd,
//! timers), blocking-pool threads for stdin and stdout (the IPC pipes),
//! non-blocking TCP connections to relays (rustls and the websocket framing
//! run in user space), `getrandom`, and tracing lines on stderr. Everything
//! else fails with `EPERM`.
//!
//! # What is allowed, and why
//!
//! Without condition (see [`UNCONDITIONAL`] for the list):
//!
//! * I/O on descriptors it already holds: `read`, `write`, `readv`, `writev`,
//!   `recvfrom`, `sendto`, `close`, `shutdown`; `connect`, `getpeername`,
//!   `getsockname` (Landlock restricts `connect` to the relay ports);
//! * the runtime: `epoll_create1`, `epoll_ctl`, `epoll_pwait` (and
//!   `epoll_wait` on x86_64), `eventfd2`, `futex`, `sched_yield`,
//!   `sched_getaffinity`, clocks (`clock_gettime`, `clock_getres`,
//!   `gettimeofday`: the vDSO's fallbacks), `getrandom`;
//! * memory: `brk`, `munmap`, `mremap`, `madvise`;
//! * threads and signals as glibc's `pthread_create` and thread exit use them:
//!   `set_robust_list`, `rseq`, `gettid`, `rt_sigaction`, `rt_sigprocmask`,
//!   `rt_sigreturn`, `sigaltstack`, `restart_syscall`, `exit`, `exit_group`.
//!
//! With a condition on the arguments (all others fail with `EPERM`):
//!
//! * `socket` only with domain `AF_INET` or `AF_INET6`, type `SOCK_STREAM`
//!   (ignoring `SOCK_NONBLOCK` and `SOCK_CLOEXEC`) and protocol 0 or
//!   `IPPROTO_TCP`: no UDP, no raw, netlink, packet or unix sockets, no
//!   MPTCP;
//! * `socketpair` only `AF_UNIX` stream: tokio's I/O driver makes one for
//!   its signal handling whether or not signals are used. The pair is
//!   connected to itself, so it reaches nothing outside the worker;
//! * `clone` only with `CLONE_THREAD` in its flags and no `CLONE_NEW*`
//!   namespace flag: threads, never a new process (`fork`, `vfork` and
//!   `posix_spawn` all reach `clone` without `CLONE_THREAD`);
//! * `clone3` fails with `ENOSYS` rather than `EPERM`: a BPF filter cannot
//!   read the flags inside `clone3`'s `struct clone_args`, and glibc falls
//!   back to `clone` only on `ENOSYS`. This is a second, one-rule filter
//!   ([`install`] puts it in first): the kernel runs every filter and keeps
//!   the result of highest precedence (seccomp(2): an errno wins over
//!   allow), so the allowlist lets `clone3` through to it;
//! * `mmap` and `mprotect` only without `PROT_EXEC`: no new executable
//!   memory (the worker loads no code after it is confined);
//! * `ioctl` only with the requests `FIONBIO` and `FIOCLEX` (std and mio on
//!   sockets) and `TCGETS` (`isatty`): never `TIOCSTI` (type into a
//!   terminal), `TIOCLINUX` or any other. The request is compared as the
//!   32-bit value the kernel uses;
//! * `fcntl` only with `F_GETFD`, `F_SETFD`, `F_GETFL`, `F_SETFL` (debug builds
//!   of std check a descriptor with `F_GETFD` before closing it) and
//!   `F_DUPFD_CLOEXEC` (tokio's I/O driver duplicates its epoll descriptor;
//!   a duplicate grants nothing the original does not);
//! * `getsockopt` only `SOL_SOCKET`/`SO_ERROR` (the result of a non-blocking
//!   connect) and `setsockopt` only `IPPROTO_TCP`/`TCP_NODELAY`;
//! * `prctl` only `PR_SET_NAME` (thread names).
//!
//! Not in the list, so refused among everything else: `execve`, `execveat`,
//! `fork`, `vfork`, `memfd_create`, `ptrace`, `process_vm_readv`,
//! `process_vm_writev`, `bpf`, `keyctl`, `add_key`, `mount`, `unshare`,
//! `setns`, `open`, `openat`, `openat2` (Landlock also denies every file),
//! `bind`, `listen`, `accept`, `kill`, `tgkill`, `seccomp` itself, `io_uring_*`,
//! `userfaultfd`, `perf_event_open`.
//!
//! # The mismatch action: `EPERM`, not kill
//!
//! A syscall outside the list returns `EPERM` (`SECCOMP_RET_ERRNO`) rather
//! than killing the worker (`SECCOMP_RET_KILL_PROCESS`). Both deny the call
//! the same way; the difference is what happens next. With an errno, a
//! rarely used path that a library update starts taking (a new syscall in
//! glibc, tokio or std) becomes an I/O error that the worker's code already
//! handles (a relay connection fails, with the reason in the log), not a
//! crash loop; glibc's own fallbacks work, as they key on errnos; and the
//! probe (`qube-agent sandbox-probe`) can try every forbidden operation in
//! one process and report the errno of each, which is how the tests show
//! the filter works. A compromised worker gains nothing from learning that
//! a call was refused. A foreign architecture's syscall convention (for
//! example 32-bit x86 entry on x86_64) does kill the process, as
//! seccompiler's architecture check does.
//!
//! # Architectures
//!
//! x86_64 and aarch64: the syscall numbers are `libc`'s for the target the
//! agent was built for. On another architecture [`install`] returns
//! [`SeccompError::UnsupportedArch`], and the worker refuses to start unless
//! `--allow-unsandboxed`, as for Landlock.
//!
//! Named unix sockets: Landlock (ABI 6, this crate's target) scopes abstract
//! unix sockets but not a `connect` to a socket file; that needs
//! `LANDLOCK_ACCESS_FS_RESOLVE_UNIX` (Landlock ABI 9, Linux 7.1; the
//! `landlock` crate has it as `AccessFs::ResolveUnix` from 0.4.7). Here the
//! filter closes that gap on every kernel: `socket` cannot make an
//! `AF_UNIX` socket, and the one `socketpair` allows is already connected
//! (`connect` on it fails with `EISCONN`).

use std::collections::BTreeMap;
use std::fmt;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// The errno of a refused syscall.
pub const REFUSED: i32 = libc::EPERM;

/// The errno of `clone3`, so that glibc falls back to `clone`.
pub const CLONE3_ERRNO: i32 = libc::ENOSYS;

/// Syscalls allowed with any arguments: name and number for the target.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub const UNCONDITIONAL: &[(&str, i64)] = &[
    ("read", libc::SYS_read),
    ("write", libc::SYS_write),
    ("readv", libc::SYS_readv),
    ("writev", libc::SYS_writev),
    ("recvfrom", libc::SYS_recvfrom),
    ("sendto", libc::SYS_sendto),
    ("close", libc::SYS_close),
    ("shutdown", libc::SYS_shutdown),
    ("connect", libc::SYS_connect),
    ("getpeername", libc::SYS_getpeername),
    ("getsockname", libc::SYS_getsockname),
    ("epoll_create1", libc::SYS_epoll_create1),
    ("epoll_ctl", libc::SYS_epoll_ctl),
    ("epoll_pwait", libc::SYS_epoll_pwait),
    #[cfg(target_arch = "x86_64")]
    ("epoll_wait", libc::SYS_epoll_wait),
    ("eventfd2", libc::SYS_eventfd2),
    ("futex", libc::SYS_futex),
    ("sched_yield", libc::SYS_sched_yield),
    ("sched_getaffinity", libc::SYS_sched_getaffinity),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("clock_getres", libc::SYS_clock_getres),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("getrandom", libc::SYS_getrandom),
    ("brk", libc::SYS_brk),
    ("munmap", libc::SYS_munmap),
    ("mremap", libc::SYS_mremap),
    ("madvise", libc::SYS_madvise),
    ("set_robust_list", libc::SYS_set_robust_list),
    ("rseq", libc::SYS_rseq),
    ("gettid", libc::SYS_gettid),
    ("rt_sigaction", libc::SYS_rt_sigaction),
    ("rt_sigprocmask", libc::SYS_rt_sigprocmask),
    ("rt_sigreturn", libc::SYS_rt_sigreturn),
    ("sigaltstack", libc::SYS_sigaltstack),
    ("restart_syscall", libc::SYS_restart_syscall),
    ("exit", libc::SYS_exit),
    ("exit_group", libc::SYS_exit_group),
];

/// Empty: this architecture has no allowlist ([`install`] refuses).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const UNCONDITIONAL: &[(&str, i64)] = &[];

/// Syscalls allowed only with the arguments described in the module
/// documentation.
pub const CONDITIONAL: &[&str] = &[
    "socket",
    "socketpair",
    "clone",
    "mmap",
    "mprotect",
    "ioctl",
    "fcntl",
    "getsockopt",
    "setsockopt",
    "prctl",
];

/// `ioctl` requests the worker may make.
// libc's `Ioctl` is `c_ulong` with glibc but `c_int` with musl.
#[allow(clippy::unnecessary_cast)]
pub const IOCTL_REQUESTS: &[(&str, u64)] = &[
    ("FIONBIO", libc::FIONBIO as u64),
    ("FIOCLEX", libc::FIOCLEX as u64),
    ("TCGETS", libc::TCGETS as u64),
];

/// Every `CLONE_NEW*` namespace flag; none may be combined with a thread.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWTIME) as u64;

/// Why the filter could not be built or installed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SeccompError {
    /// This build's architecture has no allowlist (x86_64 and aarch64 do).
    UnsupportedArch,
    /// seccompiler refused the rules (a bug of ours).
    Build(String),
    /// The kernel refused the filter (no `CONFIG_SECCOMP_FILTER`, or a
    /// thread that could not be synchronized).
    Install(String),
}

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeccompError::UnsupportedArch => f.write_str(
                "no seccomp allowlist for this architecture (x86_64 and aarch64 have one)",
            ),
            SeccompError::Build(e) => write!(f, "cannot build the seccomp filter: {e}"),
            SeccompError::Install(e) => write!(f, "the kernel refused the seccomp filter: {e}"),
        }
    }
}

impl std::error::Error for SeccompError {}

/// Whether the filter is in force, for [`crate::worker::sandbox::SandboxReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompState {
    /// Installed: [`UNCONDITIONAL`] and [`CONDITIONAL`] allowed, `EPERM`
    /// for the rest.
    Enforced,
    /// Not installed (only with `--allow-unsandboxed`), and why.
    Off(String),
}

impl fmt::Display for SeccompState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeccompState::Enforced => write!(
                f,
                "seccomp allowlist enforced ({} syscalls, {} with argument checks; inet stream sockets only; no exec, fork, memfd, ptrace, TIOCSTI; EPERM for the rest)",
                UNCONDITIONAL.len() + CONDITIONAL.len(),
                CONDITIONAL.len()
            ),
            SeccompState::Off(why) => write!(f, "seccomp OFF ({why})"),
        }
    }
}

/// The two BPF programs, in the order [`install`] installs them: the
/// `clone3` filter (`ENOSYS` for `clone3`, allow the rest, which the
/// allowlist judges), then the allowlist (mismatch `EPERM`; `clone3`
/// allowed, so the first filter's `ENOSYS` is the result). The allowlist
/// must come last: it refuses the `prctl` and `seccomp` calls that
/// installing a filter takes.
///
/// # Errors
/// [`SeccompError::Build`] if seccompiler refuses the rules. (On an
/// architecture without an allowlist, `programs` always returns
/// [`SeccompError::UnsupportedArch`].)
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn programs() -> Result<[BpfProgram; 2], SeccompError> {
    #[cfg(target_arch = "x86_64")]
    let arch = seccompiler::TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    let arch = seccompiler::TargetArch::aarch64;
    let build = |e: seccompiler::BackendError| SeccompError::Build(e.to_string());

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = UNCONDITIONAL
        .iter()
        .map(|&(_, nr)| (nr, Vec::new()))
        .collect();
    for (nr, conditional) in conditional_rules().map_err(build)? {
        rules.insert(nr, conditional);
    }
    // Decided by the clone3 filter: ENOSYS.
    rules.insert(libc::SYS_clone3, Vec::new());
    let allowlist = SeccompFilter::new(
        rules,
        SeccompAction::Errno(REFUSED.unsigned_abs()),
        SeccompAction::Allow,
        arch,
    )
    .map_err(build)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(CLONE3_ERRNO.unsigned_abs()),
        arch,
    )
    .map_err(build)?;
    Ok([
        clone3.try_into().map_err(build)?,
        allowlist.try_into().map_err(build)?,
    ])
}

/// See the other `programs`.
///
/// # Errors
/// Always [`SeccompError::UnsupportedArch`].
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn programs() -> Result<[BpfProgram; 2], SeccompError> {
    Err(SeccompError::UnsupportedArch)
}

/// Installs both programs of [`programs`] on every thread of the process
/// (`SECCOMP_FILTER_FLAG_TSYNC`; the worker has one thread at this point).
/// seccompiler sets `no_new_privs` first, as the kernel requires of an
/// unprivileged caller. Irreversible: a filter cannot be removed, and the
/// allowlist forbids installing another.
///
/// # Errors
/// [`SeccompError`] when the filters cannot be built or the kernel refuses
/// one; the process is then unchanged, or has only the `clone3` filter if
/// the allowlist failed (threads still start, through `clone`).
pub fn install() -> Result<(), SeccompError> {
    for program in programs()? {
        seccompiler::apply_filter_all_threads(&program)
            .map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

/// A condition on argument `index` (`Dword`: the low 32 bits, for `int`
/// and `unsigned int` arguments; `Qword` for `unsigned long`).
fn arg(
    index: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(index, len, op, value)
}

/// Rules that allow `nr` when argument `index` equals one of `values`.
fn one_of(index: u8, values: &[u64]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    values
        .iter()
        .map(|&v| {
            SeccompRule::new(vec![arg(
                index,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                v,
            )?])
        })
        .collect()
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn conditional_rules() -> Result<Vec<(i64, Vec<SeccompRule>)>, seccompiler::BackendError> {
    use SeccompCmpArgLen::{Dword, Qword};
    use SeccompCmpOp::{Eq, MaskedEq};

    // socket(domain, type, protocol): inet or inet6, stream, TCP.
    let type_mask = !((libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u32);
    let mut socket = Vec::new();
    for domain in [libc::AF_INET, libc::AF_INET6] {
        for protocol in [0, libc::IPPROTO_TCP] {
            socket.push(SeccompRule::new(vec![
                arg(0, Dword, Eq, domain as u64)?,
                arg(
                    1,
                    Dword,
                    MaskedEq(u64::from(type_mask)),
                    libc::SOCK_STREAM as u64,
                )?,
                arg(2, Dword, Eq, protocol as u64)?,
            ])?);
        }
    }

    // socketpair(domain, type, protocol, sv): a unix stream pair.
    let socketpair = vec![SeccompRule::new(vec![
        arg(0, Dword, Eq, libc::AF_UNIX as u64)?,
        arg(
            1,
            Dword,
            MaskedEq(u64::from(type_mask)),
            libc::SOCK_STREAM as u64,
        )?,
    ])?];

    // clone(flags, ...) on x86_64 and aarch64: a thread, in no new namespace.
    let thread = libc::CLONE_THREAD as u64;
    let clone = vec![SeccompRule::new(vec![
        arg(0, Qword, MaskedEq(thread), thread)?,
        arg(0, Qword, MaskedEq(CLONE_NAMESPACES), 0)?,
    ])?];

    // mmap(addr, len, prot, ...) and mprotect(addr, len, prot): never PROT_EXEC.
    let no_exec = || -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        Ok(vec![SeccompRule::new(vec![arg(
            2,
            Dword,
            MaskedEq(libc::PROT_EXEC as u64),
            0,
        )?])?])
    };

    let ioctl: Vec<u64> = IOCTL_REQUESTS.iter().map(|&(_, r)| r).collect();
    let fcntl = [
        libc::F_GETFD,
        libc::F_SETFD,
        libc::F_GETFL,
        libc::F_SETFL,
        libc::F_DUPFD_CLOEXEC,
    ]
    .map(|c| c as u64);

    let sockopt = |level: i32, name: i32| -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        Ok(vec![SeccompRule::new(vec![
            arg(1, Dword, Eq, level as u64)?,
            arg(2, Dword, Eq, name as u64)?,
        ])?])
    };

    Ok(vec![
        (libc::SYS_socket, socket),
        (libc::SYS_socketpair, socketpair),
        (libc::SYS_clone, clone),
        (libc::SYS_mmap, no_exec()?),
        (libc::SYS_mprotect, no_exec()?),
        (libc::SYS_ioctl, one_of(1, &ioctl)?),
        (libc::SYS_fcntl, one_of(1, &fcntl)?),
        (
            libc::SYS_getsockopt,
            sockopt(libc::SOL_SOCKET, libc::SO_ERROR)?,
        ),
        (
            libc::SYS_setsockopt,
            sockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY)?,
        ),
        (libc::SYS_prctl, one_of(0, &[libc::PR_SET_NAME as u64])?),
    ])
}

/// The compiled programs, run on `struct seccomp_data` values by a small
/// classic-BPF evaluator (the instructions seccompiler emits), combined as
/// the kernel combines stacked filters: every filter runs and the result
/// of highest precedence wins (seccomp(2)). This checks calls no safe
/// wrapper can make, `TIOCSTI` first; the probe tests in
/// `tests/tests/sandbox_probe.rs` check the installed filter in a real
/// process.
#[cfg(test)]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
// libc's `Ioctl` is `c_ulong` with glibc but `c_int` with musl.
#[allow(clippy::unnecessary_cast)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xC000_00B7;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    const KILL_PROCESS: u32 = 0x8000_0000;
    const ERRNO: u32 = 0x0005_0000;
    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = ERRNO | REFUSED.unsigned_abs();
    const ENOSYS: u32 = ERRNO | CLONE3_ERRNO.unsigned_abs();

    /// `struct seccomp_data`: nr, arch, instruction pointer, six arguments.
    fn data(arch: u32, nr: i64, args: &[u64]) -> [u8; 64] {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&(nr as i32).to_le_bytes());
        d[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        d
    }

    fn run(program: &BpfProgram, data: &[u8; 64]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            let k = i.k;
            pc += 1;
            match i.code {
                // BPF_LD | BPF_W | BPF_ABS
                0x20 => {
                    let k = k as usize;
                    a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                // BPF_ALU | BPF_AND | BPF_K
                0x54 => a &= k,
                // BPF_JMP | BPF_JA
                0x05 => pc += k as usize,
                // BPF_JMP | BPF_JEQ, JGT, JGE, JSET | BPF_K
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let taken = match i.code {
                        0x15 => a == k,
                        0x25 => a > k,
                        0x35 => a >= k,
                        _ => a & k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                // BPF_RET | BPF_K
                0x06 => return k,
                other => panic!("instruction {other:#x} not in this evaluator"),
            }
        }
    }

    /// What the kernel returns for this syscall with both filters.
    fn verdict_on(arch: u32, nr: i64, args: &[u64]) -> u32 {
        let d = data(arch, nr, args);
        programs()
            .unwrap()
            .iter()
            .rev() // the last installed runs first
            .map(|p| run(p, &d))
            .fold(ALLOW, |best, r| {
                let action = |v: u32| (v & 0xffff_0000) as i32;
                if action(r) < action(best) {
                    r
                } else {
                    best
                }
            })
    }

    fn verdict(nr: i64, args: &[u64]) -> u32 {
        verdict_on(AUDIT_ARCH, nr, args)
    }

    #[test]
    fn tiocsti_tioclinux_and_every_unlisted_ioctl_are_refused() {
        for request in [
            libc::TIOCSTI as u64,
            libc::TIOCLINUX as u64,
            libc::TCSETS as u64,
            libc::TIOCSWINSZ as u64,
            libc::TIOCSCTTY as u64,
            // The kernel takes the request as 32 bits: high bits hide nothing.
            libc::TIOCSTI as u64 | 1 << 32,
        ] {
            assert_eq!(
                verdict(libc::SYS_ioctl, &[0, request]),
                EPERM,
                "{request:#x}"
            );
        }
        // Positive control: the requests the runtime uses.
        for (name, request) in IOCTL_REQUESTS {
            assert_eq!(verdict(libc::SYS_ioctl, &[0, *request]), ALLOW, "{name}");
        }
    }

    #[test]
    fn only_inet_tcp_stream_sockets() {
        let flags = (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64;
        let stream = libc::SOCK_STREAM as u64;
        for (domain, kind, protocol) in [
            (libc::AF_INET, libc::SOCK_DGRAM as u64, 0),
            (libc::AF_INET6, libc::SOCK_DGRAM as u64 | flags, 0),
            (libc::AF_INET, libc::SOCK_RAW as u64, libc::IPPROTO_ICMP),
            (libc::AF_INET, stream, libc::IPPROTO_MPTCP),
            (libc::AF_INET, libc::SOCK_SEQPACKET as u64, 0),
            (libc::AF_UNIX, stream | flags, 0),
            (libc::AF_NETLINK, libc::SOCK_RAW as u64, 0),
            (libc::AF_PACKET, libc::SOCK_RAW as u64, 0),
            (libc::AF_VSOCK, stream, 0),
        ] {
            assert_eq!(
                verdict(libc::SYS_socket, &[domain as u64, kind, protocol as u64]),
                EPERM,
                "socket({domain}, {kind:#x}, {protocol})"
            );
        }
        for (domain, kind, protocol) in [
            (libc::AF_INET, stream | flags, 0),
            (libc::AF_INET6, stream | flags, 0),
            (libc::AF_INET, stream, libc::IPPROTO_TCP),
            (
                libc::AF_INET6,
                stream | libc::SOCK_CLOEXEC as u64,
                libc::IPPROTO_TCP,
            ),
        ] {
            assert_eq!(
                verdict(libc::SYS_socket, &[domain as u64, kind, protocol as u64]),
                ALLOW,
                "socket({domain}, {kind:#x}, {protocol})"
            );
        }
        // socketpair: unix stream pairs only.
        let unix = libc::AF_UNIX as u64;
        assert_eq!(
            verdict(libc::SYS_socketpair, &[unix, stream | flags, 0]),
            ALLOW
        );
        assert_eq!(
            verdict(libc::SYS_socketpair, &[unix, libc::SOCK_DGRAM as u64, 0]),
            EPERM
        );
        assert_eq!(
            verdict(libc::SYS_socketpair, &[libc::AF_INET as u64, stream, 0]),
            EPERM
        );
    }

    #[test]
    fn threads_but_no_processes_and_clone3_says_enosys() {
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(verdict(libc::SYS_clone, &[thread]), ALLOW);
        let sigchld = libc::SIGCHLD as u64;
        let fork = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID) as u64 | sigchld;
        let vfork = (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | sigchld;
        for flags in [
            fork,
            vfork,
            thread | libc::CLONE_NEWNET as u64,
            thread | libc::CLONE_NEWUSER as u64,
            thread | libc::CLONE_NEWNS as u64,
        ] {
            assert_eq!(verdict(libc::SYS_clone, &[flags]), EPERM, "{flags:#x}");
        }
        assert_eq!(verdict(libc::SYS_clone3, &[0, 88]), ENOSYS);
    }

    #[test]
    fn the_named_dangerous_syscalls_are_refused() {
        let mut refused = vec![
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_memfd_create,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_bpf,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_openat,
            libc::SYS_openat2,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_accept4,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_seccomp,
            libc::SYS_io_uring_setup,
            libc::SYS_userfaultfd,
            libc::SYS_perf_event_open,
            libc::SYS_getpid,
        ];
        #[cfg(target_arch = "x86_64")]
        refused.extend([
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_open,
            libc::SYS_accept,
        ]);
        for nr in refused {
            assert_eq!(verdict(nr, &[]), EPERM, "syscall {nr}");
        }
        // fcntl and prctl only for what the runtime does.
        assert_eq!(verdict(libc::SYS_fcntl, &[0, libc::F_SETOWN as u64]), EPERM);
        assert_eq!(verdict(libc::SYS_fcntl, &[0, libc::F_GETFD as u64]), ALLOW);
        assert_eq!(
            verdict(libc::SYS_prctl, &[libc::PR_SET_NO_NEW_PRIVS as u64, 0]),
            EPERM
        );
        assert_eq!(verdict(libc::SYS_prctl, &[libc::PR_SET_NAME as u64]), ALLOW);
        let tcp = libc::IPPROTO_TCP as u64;
        assert_eq!(
            verdict(libc::SYS_setsockopt, &[3, tcp, libc::TCP_ULP as u64]),
            EPERM
        );
        assert_eq!(
            verdict(libc::SYS_setsockopt, &[3, tcp, libc::TCP_NODELAY as u64]),
            ALLOW
        );
    }

    #[test]
    fn no_executable_memory() {
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        let rx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        for nr in [libc::SYS_mmap, libc::SYS_mprotect] {
            assert_eq!(verdict(nr, &[0, 4096, rx]), EPERM);
            assert_eq!(verdict(nr, &[0, 4096, rw]), ALLOW);
        }
    }

    #[test]
    fn every_listed_syscall_is_allowed_and_other_conventions_are_killed() {
        for (name, nr) in UNCONDITIONAL {
            assert_eq!(verdict(*nr, &[]), ALLOW, "{name}");
        }
        // A 32-bit call on x86_64 (or any foreign convention) ends the process.
        assert_eq!(
            verdict_on(AUDIT_ARCH_I386, libc::SYS_read, &[]),
            KILL_PROCESS
        );
        // x32 numbers carry the same arch value and match no listed number.
        assert_eq!(verdict(libc::SYS_read | 0x4000_0000, &[]), EPERM);
    }
}
