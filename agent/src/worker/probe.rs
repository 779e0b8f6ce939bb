//! The sandbox probe (`qube-agent sandbox-probe`, hidden): a process that
//! confines itself exactly as the worker does ([`super::process_main`]:
//! [`detach_session`], then [`confine_worker`], Landlock and seccomp), then
//! tries each operation it was asked to and prints one JSON line per
//! attempt: what was tried, whether the kernel allowed it and, when not,
//! the errno. For confinement tests and for an operator checking a kernel.
//!
//! Each attempt uses a safe wrapper (std or nix); the crate forbids
//! `unsafe`. One operation has no safe wrapper anywhere: `TIOCSTI` (nix
//! and rustix only offer it through unsafe `ioctl` calls), so the terminal
//! probe ([`ProbeOp::Tty`]) makes the requests that have one: `TCGETS`
//! (allowed) and `TCSETS` and `TCFLSH` (refused, as every request outside
//! [`crate::worker::seccomp::IOCTL_REQUESTS`] is, `TIOCSTI` included; the
//! seccomp module's tests run the compiled filter on `TIOCSTI` itself).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::sandbox::{confine_worker, detach_session};

/// One attempted operation of [`probe`]: what was tried and what the kernel
/// said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    /// The operation: `read`, `write`, `exec` (spawn a program), `connect`,
    /// `signal`, `unix`, `ptrace`, `exec-in-place`, or a [`ProbeOp`] name
    /// (`tty` makes three: `tty-get`, `tty-set`, `tty-flush`).
    pub op: String,
    /// The path, port or pid; empty for a [`ProbeOp`].
    pub target: String,
    /// Whether the operation succeeded.
    pub allowed: bool,
    /// The error, when it failed.
    pub error: Option<String>,
    /// Its errno, when it failed with one.
    pub errno: Option<i32>,
}

/// Operations without a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeOp {
    /// Start a thread and join it (must succeed: tokio's blocking pool).
    Thread,
    /// `fork` without `exec` (glibc's `daemon(3)` with both flags set,
    /// which forks once; the thread id tells whether it did).
    Fork,
    /// `socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)`.
    Netlink,
    /// A UDP socket bound to 127.0.0.1, port 0.
    Udp,
    /// An inet stream socket, then `listen` without `bind` (the kernel
    /// binds a port itself).
    TcpListen,
    /// An inet stream socket, then `bind` to 127.0.0.1, port 0.
    TcpBind,
    /// `memfd_create`.
    Memfd,
    /// `ptrace(PTRACE_TRACEME)`.
    Traceme,
    /// ioctls on standard input, which must be a terminal: `TCGETS`
    /// (`tty-get`), `TCSETS` with the attributes just read (`tty-set`) and
    /// `TCFLSH` of the input queue (`tty-flush`).
    Tty,
}

impl ProbeOp {
    /// Every operation, in the order [`probe`] tries them.
    pub const ALL: [ProbeOp; 9] = [
        ProbeOp::Thread,
        ProbeOp::Netlink,
        ProbeOp::Udp,
        ProbeOp::TcpListen,
        ProbeOp::TcpBind,
        ProbeOp::Memfd,
        ProbeOp::Traceme,
        ProbeOp::Tty,
        ProbeOp::Fork,
    ];

    /// The command-line and JSON name.
    pub fn name(self) -> &'static str {
        match self {
            ProbeOp::Thread => "thread",
            ProbeOp::Fork => "fork",
            ProbeOp::Netlink => "netlink",
            ProbeOp::Udp => "udp",
            ProbeOp::TcpListen => "tcp-listen",
            ProbeOp::TcpBind => "tcp-bind",
            ProbeOp::Memfd => "memfd",
            ProbeOp::Traceme => "traceme",
            ProbeOp::Tty => "tty",
        }
    }
}

impl std::str::FromStr for ProbeOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ProbeOp::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ProbeOp::ALL.iter().map(|op| op.name()).collect();
                format!("unknown probe {s:?}; one of {}", names.join(", "))
            })
    }
}

/// What [`probe`] tries, inside the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ProbeRequest {
    /// Files to open for reading.
    pub read: Vec<PathBuf>,
    /// Files to create for writing.
    pub write: Vec<PathBuf>,
    /// Programs to start (`fork`/`clone` and `exec`, as
    /// `std::process::Command` does).
    pub exec: Vec<PathBuf>,
    /// Loopback TCP ports to connect to.
    pub connect: Vec<u16>,
    /// Processes to send SIGCONT (harmless) to.
    pub signal: Vec<i32>,
    /// Named unix sockets to connect to.
    pub unix: Vec<PathBuf>,
    /// Processes to `PTRACE_ATTACH` to (and detach from at once).
    pub ptrace: Vec<i32>,
    /// Operations without a target, tried in [`ProbeOp::ALL`]'s order.
    pub ops: Vec<ProbeOp>,
    /// A program to `execve` in place of the probe, without a fork: tried
    /// last, as on success the probe is gone.
    pub exec_in_place: Option<PathBuf>,
}

fn io(result: std::io::Result<()>) -> Result<(), (String, Option<i32>)> {
    result.map_err(|e| (e.to_string(), e.raw_os_error()))
}

fn nix(result: nix::Result<()>) -> Result<(), (String, Option<i32>)> {
    result.map_err(|e| (e.desc().to_owned(), Some(e as i32)))
}

/// Tries each operation of `request` (after the caller confined itself) and
/// hands each outcome to `out` as soon as it is known. An
/// [`ProbeRequest::exec_in_place`] that succeeds does not return.
pub fn probe_each(request: &ProbeRequest, mut out: impl FnMut(Attempt)) {
    let mut record = |op: &str, target: String, result: Result<(), (String, Option<i32>)>| {
        let (error, errno) = match result {
            Ok(()) => (None, None),
            Err((error, errno)) => (Some(error), errno),
        };
        out(Attempt {
            op: op.to_owned(),
            target,
            allowed: error.is_none(),
            error,
            errno,
        });
    };
    for path in &request.read {
        let result = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]))
            .map(|_| ());
        record("read", path.display().to_string(), io(result));
    }
    for path in &request.write {
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(|_| ());
        record("write", path.display().to_string(), io(result));
    }
    for path in &request.exec {
        // Inherited descriptors: `Stdio::null()` would open /dev/null first
        // and fail there, before any process is created.
        let result = std::process::Command::new(path)
            .stdin(std::process::Stdio::inherit())
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .status()
            .map(|_| ());
        record("exec", path.display().to_string(), io(result));
    }
    for port in &request.connect {
        let result = std::net::TcpStream::connect(("127.0.0.1", *port)).map(|_| ());
        record("connect", port.to_string(), io(result));
    }
    for pid in &request.signal {
        let result = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGCONT,
        );
        record("signal", pid.to_string(), nix(result));
    }
    for path in &request.unix {
        let result = std::os::unix::net::UnixStream::connect(path).map(|_| ());
        record("unix", path.display().to_string(), io(result));
    }
    for pid in &request.ptrace {
        let pid = nix::unistd::Pid::from_raw(*pid);
        let result = nix::sys::ptrace::attach(pid);
        if result.is_ok() {
            let _ = nix::sys::ptrace::detach(pid, None);
        }
        record("ptrace", pid.to_string(), nix(result));
    }
    for op in ProbeOp::ALL {
        if request.ops.contains(&op) {
            try_op(op, &mut record);
        }
    }
    if let Some(path) = &request.exec_in_place {
        let error = std::os::unix::process::CommandExt::exec(&mut std::process::Command::new(path));
        record("exec-in-place", path.display().to_string(), io(Err(error)));
    }
}

fn try_op(op: ProbeOp, record: &mut impl FnMut(&str, String, Result<(), (String, Option<i32>)>)) {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockProtocol, SockType};
    use std::os::fd::{AsFd, AsRawFd};

    let name = op.name();
    let inet_stream = || {
        socket::socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
    };
    match op {
        ProbeOp::Thread => {
            let result = std::thread::Builder::new()
                .name("probe".into())
                .spawn(|| 42)
                .and_then(|handle| {
                    handle
                        .join()
                        .map_err(|_| std::io::Error::other("the thread panicked"))
                })
                .map(|_| ());
            record(name, String::new(), io(result));
        }
        ProbeOp::Fork => {
            // gettid, not getpid: the filter refuses getpid.
            let before = nix::unistd::gettid();
            let result = nix::unistd::daemon(true, true);
            let after = nix::unistd::gettid();
            // daemon() forked if the thread id changed: this is the child,
            // the parent has exited.
            let result = if after == before { nix(result) } else { Ok(()) };
            record(name, String::new(), result);
        }
        ProbeOp::Netlink => {
            let result = socket::socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkRoute,
            )
            .map(|_| ());
            record(name, String::new(), nix(result));
        }
        ProbeOp::Udp => {
            let result = std::net::UdpSocket::bind(("127.0.0.1", 0)).map(|_| ());
            record(name, String::new(), io(result));
        }
        ProbeOp::TcpListen => {
            let result = inet_stream().and_then(|fd| {
                socket::listen(
                    &fd,
                    socket::Backlog::new(8).unwrap_or(socket::Backlog::MAXCONN),
                )
            });
            record(name, String::new(), nix(result));
        }
        ProbeOp::TcpBind => {
            let result = inet_stream().and_then(|fd| {
                socket::bind(fd.as_raw_fd(), &socket::SockaddrIn::new(127, 0, 0, 1, 0))
            });
            record(name, String::new(), nix(result));
        }
        ProbeOp::Memfd => {
            let result = nix::sys::memfd::memfd_create(
                c"qube-probe",
                nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
            )
            .map(|_| ());
            record(name, String::new(), nix(result));
        }
        ProbeOp::Traceme => {
            record(name, String::new(), nix(nix::sys::ptrace::traceme()));
        }
        ProbeOp::Tty => {
            use nix::sys::termios;
            let stdin = std::io::stdin();
            let attributes = termios::tcgetattr(stdin.as_fd());
            let set = match &attributes {
                Ok(attributes) => {
                    termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, attributes)
                }
                Err(e) => Err(*e),
            };
            record("tty-get", String::new(), nix(attributes.map(|_| ())));
            record("tty-set", String::new(), nix(set));
            let flush = termios::tcflush(stdin.as_fd(), termios::FlushArg::TCIFLUSH);
            record("tty-flush", String::new(), nix(flush));
        }
    }
}

/// Tries each operation of `request` (after the caller confined itself) and
/// reports the outcome of each.
pub fn probe(request: &ProbeRequest) -> Vec<Attempt> {
    let mut out = Vec::new();
    probe_each(request, |attempt| out.push(attempt));
    out
}

/// The probe process: starts its own session and confines itself as the
/// worker does (without `--allow-unsandboxed`), prints a `sandbox` line
/// (target: the Landlock level) and a `seccomp` line (target `enforced`),
/// then one [`Attempt`] per line as JSON on stdout, each as soon as it is
/// made. Exit status 0, or 3 when the sandbox could not be applied (the
/// reason on stderr), as the worker's.
pub fn probe_main(relay_ports: &[u16], request: &ProbeRequest) -> ExitCode {
    let report = match detach_session().and_then(|()| confine_worker(relay_ports, false)) {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::from(3);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut print = |attempt: &Attempt| {
        if let Ok(line) = serde_json::to_string(attempt) {
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        }
    };
    print(&Attempt {
        op: "sandbox".into(),
        target: report.landlock.as_str().into(),
        allowed: true,
        error: None,
        errno: None,
    });
    print(&Attempt {
        op: "seccomp".into(),
        target: match &report.seccomp {
            super::seccomp::SeccompState::Enforced => "enforced".into(),
            super::seccomp::SeccompState::Off(why) => format!("off: {why}"),
        },
        allowed: true,
        error: None,
        errno: None,
    });
    probe_each(request, |attempt| print(&attempt));
    ExitCode::SUCCESS
}
