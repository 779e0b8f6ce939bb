//! The monitor: the privileged half of the agent (`docs/PROTOCOL.md`
//! section 9, SECURITY.md; OpenSSH-style privilege separation). It holds the config,
//! the node key and the state; it runs the quorum engine, the hooks, the
//! journal, and signs acknowledgements, NIP-42 AUTH events and its own
//! heartbeats, nothing else.
//! It trusts nothing the worker says: every message goes through the request
//! table ([`requests`]), every forwarded directive is parsed, verified and
//! admitted again, and a worker that sends something malformed or not
//! permitted is ended and started again with backoff.
//!
//! * this file: start-up and the serve loop;
//! * [`spawn`]: starting the sandboxed worker process and reading its frames;
//! * [`requests`]: the request table, pure;
//! * `resolve`: relay host names resolved for the worker;
//! * `act`: decide, journal, run the hook, acknowledge;
//! * `schedule`: proposals with a deadline (`required_by`): pre-stage, then
//!   act at the deadline;
//! * [`exec`]: running hooks under the execution contract;
//! * `telemetry`, `metrics`, `systemd`, `heartbeat`, `alert`: telling the
//!   operator (the metrics file, systemd readiness and watchdog, signed
//!   heartbeats, the alert hook).

mod act;
mod alert;
pub mod exec;
mod heartbeat;
mod metrics;
pub(crate) mod requests;
mod reset;
mod resolve;
mod retry;
mod schedule;
mod spawn;
mod systemd;
mod telemetry;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tracing::{debug, error, info, warn};

use self::requests::{Permits, Phase, Request, Violation};
pub use self::reset::{reset, MAX_REASON_CHARS};
use self::resolve::Resolutions;
pub use self::retry::retry;
pub use self::spawn::WorkerMode;
use self::spawn::{restart_delay, spawn_worker, ToWorker};
use self::telemetry::Telemetry;
use crate::config::Config;
use crate::core::directive::{DirectiveRules, Proposal};
use crate::core::event::UnsignedEvent;
use crate::core::keys::Keys;
use crate::core::message::AUTH_KIND;
use crate::core::quorum::{Engine, Offer};
use crate::core::text::printable as escape;
use crate::ipc::{
    Enforcement, IpcError, MonitorMessage, RelayCounters, RelayTarget, StartParams, WorkerMessage,
};
use crate::state::journal::Journal;
use crate::state::{Delivery, Outbox, StateDir};

pub use crate::state::RUNTIME_FILE;

/// Runs one worker-to-monitor frame payload (without its 4-byte length)
/// through the monitor's request table in every state and checks the
/// table's promises; for the cargo-fuzz target `worker_frame` and its
/// corpus replay. Pure: no I/O.
///
/// # Panics
/// When the table permits something it must refuse (a bug).
#[doc(hidden)]
pub fn fuzz_worker_frame(payload: &[u8]) {
    requests::fuzz_frame(payload);
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tally and log what would run; run no hook, publish nothing, record
    /// nothing.
    pub dry_run: bool,
    /// Where the worker runs.
    pub worker: WorkerMode,
}

/// Where a relay connection is, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum RelayState {
    /// Not connected yet (the worker is connecting).
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// Connected, and the relay accepted our NIP-42 AUTH.
    Authenticated,
    /// Disconnected; the next attempt is at `retry_at`.
    BackingOff,
}

/// One relay as `runtime.json` records it for `status`.
#[derive(Debug, Clone, serde::Serialize)]
struct RelayRuntime {
    /// The URL as configured.
    url: String,
    /// Connected now.
    connected: bool,
    /// The connection's state.
    state: RelayState,
    /// When backing off: the next attempt, unix seconds.
    retry_at: Option<u64>,
    /// Since when connected or disconnected, unix seconds; `None` before
    /// the first report.
    since: Option<u64>,
    /// Why it last disconnected (escaped, at most 256 characters).
    last_error: Option<String>,
    /// What it sent, counted by the worker.
    counters: RelayCounters,
}

/// The action whose hook runs now (its `started` record is in the journal).
#[derive(Debug)]
struct Running {
    /// The journal sequence number of its `started` record.
    seq: u64,
    proposal: Proposal,
    /// The directives that made the quorum, for the acknowledgement.
    directives: Vec<crate::core::directive::Directive>,
}

/// What the monitor's own tasks send it: a hook's outcome, a pre-staging
/// result.
struct Inbox {
    finished: tokio::sync::mpsc::Receiver<exec::Outcome>,
    prestaged: tokio::sync::mpsc::Receiver<schedule::Prestaged>,
}

/// Why the agent stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum MonitorError {
    /// State could not be opened, read or written.
    State(crate::state::StateError),
    /// The journal could not be opened or written (never run a hook then).
    Journal(crate::state::journal::JournalError),
    /// The quorum configuration was refused.
    Quorum(crate::core::quorum::QuorumError),
    /// Signing failed (the system random number generator).
    Sign(crate::Error),
    /// The state directory has saved directives, acks or an installed
    /// version but no journal: the agent cannot know what already ran.
    JournalMissing(std::path::PathBuf),
    /// `reset` was asked for a state directory that has a journal.
    JournalExists(std::path::PathBuf),
    /// `retry` could not tell which proposal was meant.
    Retry(String),
}

impl std::fmt::Display for MonitorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MonitorError::State(e) => write!(f, "state: {e}"),
            MonitorError::Journal(e) => write!(f, "journal: {e}"),
            MonitorError::Quorum(e) => write!(f, "quorum: {e}"),
            MonitorError::Sign(e) => write!(f, "signing: {e}"),
            MonitorError::JournalMissing(path) => write!(
                f,
                "the journal {} is missing, but the state directory holds saved directives, \
                 acknowledgements or an installed version: without the journal this node cannot \
                 know what already ran here and could run the last voted action again, so it \
                 refuses to start. Restore the journal from a backup, or run \
                 `qube-agent reset --config FILE --reason TEXT`, which starts a new journal that \
                 marks every proposal of the saved directives as never to run on this node",
                path.display()
            ),
            MonitorError::Retry(why) => f.write_str(why),
            MonitorError::JournalExists(path) => write!(
                f,
                "the journal {} exists: reset only starts a journal that is missing (it never \
                 replaces one; check it with `qube-agent journal --verify`)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for MonitorError {}

impl From<crate::state::StateError> for MonitorError {
    fn from(e: crate::state::StateError) -> Self {
        MonitorError::State(e)
    }
}
impl From<crate::state::journal::JournalError> for MonitorError {
    fn from(e: crate::state::journal::JournalError) -> Self {
        MonitorError::Journal(e)
    }
}

struct Monitor {
    config: Config,
    options: RunOptions,
    state: StateDir,
    keys: Keys,
    node_id: String,
    rules: DirectiveRules,
    voters: BTreeSet<[u8; 32]>,
    engine: Engine,
    /// The journal; `None` in a dry run, which must not write it.
    journal: Option<Journal>,
    /// The journal as read at start: consulted instead of the journal in a
    /// dry run.
    journaled: Option<crate::state::journal::Inspection>,
    outbox: Outbox,
    installed: Option<semver::Version>,
    /// Proposals announced in dry-run mode or as conflicts, so each is logged
    /// once.
    announced: HashSet<String>,
    /// The current worker's sandbox enforcement, once it said.
    sandbox: Option<Enforcement>,
    /// How far the current worker has got (the request table's state).
    phase: Phase,
    /// Each relay's state as the current worker reported it, in config
    /// order, for `status`.
    relays: Vec<RelayRuntime>,
    /// Worker restarts since the agent started.
    restarts: u32,
    /// The current worker's host name lookups.
    resolutions: Resolutions,
    /// The action running now; `None` when no hook runs.
    running: Option<Running>,
    /// Where the running hook's task sends its outcome.
    finished: tokio::sync::mpsc::Sender<exec::Outcome>,
    /// The proposal waiting for its deadline; never while a hook runs.
    scheduled: Option<schedule::Scheduled>,
    /// The last schedule's token (tells its pre-staging result from an
    /// aborted one's).
    next_schedule_token: u64,
    /// Where a pre-staging task sends its result.
    prestaged: tokio::sync::mpsc::Sender<schedule::Prestaged>,
    /// Proposals with a quorum whose wave leaves this node out, as last
    /// seen (a change sends a heartbeat).
    outside: Vec<Proposal>,
    /// Ids of the NIP-42 AUTH events signed for the current worker, with
    /// their relay: an `OK true` for one marks the relay authenticated.
    auth_sent: HashMap<[u8; 32], usize>,
    /// Whether decisions may run: the current worker delivered the relays'
    /// stored directives, or [`SYNC_FALLBACK`] passed. Until then nothing
    /// runs, so that what runs does not depend on the order in which stored
    /// events happened to arrive.
    deciding: bool,
    /// Metrics (design section 8b).
    telemetry: Telemetry,
}

/// The wake-up when nothing is due (a day): events, not a ticker, drive
/// decisions.
const IDLE_WAKE: Duration = Duration::from_secs(86_400);

/// A worker that ran this long before it was ended resets the restart
/// backoff (the longest restart delay).
const HEALTHY_WORKER: Duration = Duration::from_secs(60);

/// Longest the monitor waits for the worker's `synced` before deciding
/// anyway (a worker that never says it is synced only delays, as it could
/// by withholding directives).
const SYNC_FALLBACK: Duration = Duration::from_secs(30);

/// Runs the agent until SIGINT or SIGTERM.
///
/// # Errors
/// [`MonitorError`] when state, journal or key cannot be used; relay
/// trouble never ends the agent.
pub async fn run(config: Config, options: RunOptions) -> Result<(), MonitorError> {
    // A dry run may run beside the agent: it creates nothing, takes no lock
    // and never generates the node key.
    let (state, _lock) = if options.dry_run {
        (StateDir::open_existing(config.state_dir())?, None)
    } else {
        let state = StateDir::open(config.state_dir())?;
        let lock = state.lock()?;
        (state, Some(lock))
    };
    if !options.dry_run && !state.journal_path().exists() && state.has_history() {
        return Err(MonitorError::JournalMissing(state.journal_path()));
    }
    let keys = if options.dry_run && state.node_public_key(config.node_key())?.is_none() {
        info!("dry run: no node key yet; NIP-42 uses a throwaway key");
        Keys::generate().map_err(MonitorError::Sign)?
    } else {
        state.node_key(config.node_key())?
    };
    let node_id = config.node_id_for(&keys.public_key());
    let rules = config.directive_rules();
    let voters = config.voter_keys();
    let now = crate::now();
    let (directives, dropped) = state.load_directives(&rules, now, &voters)?;
    for why in dropped {
        warn!("dropped a saved directive: {why}");
    }
    let quorum_config = crate::core::quorum::QuorumConfig {
        node: Some(keys.public_key()),
        ..config.quorum_config()
    };
    let engine =
        Engine::from_directives(quorum_config, directives).map_err(MonitorError::Quorum)?;
    // A dry run reads the journal without opening it for appends (which
    // creates it and repairs a torn tail).
    let (journal, journaled) = if options.dry_run {
        let inspection = crate::state::journal::inspect(&state.journal_path())?;
        (None, Some(inspection))
    } else {
        (Some(Journal::open(state.journal_path())?), None)
    };
    let outbox = state.outbox()?;
    let installed = installed_version(&config, &state).await?;
    info!(
        "node {node_id} ({}), {} voters, quorum {}, installed {}{}",
        crate::core::nip19::encode_npub(&keys.public_key()),
        voters.len(),
        config.quorum(),
        installed
            .as_ref()
            .map_or("unknown".into(), |v| v.to_string()),
        if options.dry_run { ", DRY RUN" } else { "" }
    );
    let (finished_tx, finished_rx) = tokio::sync::mpsc::channel(1);
    let (prestaged_tx, prestaged_rx) = tokio::sync::mpsc::channel(1);
    let telemetry = Telemetry::new(&config, journal.as_ref(), options.dry_run);
    let mut monitor = Monitor {
        telemetry,
        config,
        options,
        state,
        keys,
        node_id,
        rules,
        voters,
        engine,
        journal,
        journaled,
        outbox,
        installed,
        announced: HashSet::new(),
        deciding: false,
        phase: Phase::Started,
        relays: Vec::new(),
        sandbox: None,
        restarts: 0,
        resolutions: Resolutions::new().0,
        auth_sent: HashMap::new(),
        running: None,
        finished: finished_tx,
        scheduled: None,
        next_schedule_token: 0,
        prestaged: prestaged_tx,
        outside: Vec::new(),
    };
    monitor.acknowledge_interrupted()?;
    monitor
        .serve(Inbox {
            finished: finished_rx,
            prestaged: prestaged_rx,
        })
        .await
}

/// Runs the agent as the `qube-agent run` process does, after it parsed
/// its command line and loaded the config: [`run`] on a multi-thread tokio
/// runtime of two threads until SIGINT or SIGTERM, then returns the exit
/// status `run` documents: 0 after a signal, 1 with `error: ...` on stderr
/// when the runtime cannot start or [`run`] fails. The binary and the tests
/// that need the monitor as a process of its own (with a fake worker) share
/// it, so they stop the same way.
pub fn run_process(config: Config, options: RunOptions) -> std::process::ExitCode {
    use std::io::Write;
    use std::process::ExitCode;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The installed version: the highest of `current_version` in the config,
/// the version recorded after the last successful upgrade, and what
/// `version_command` prints (run now; when it fails, the reason is logged
/// and the others count). `None` when none is known: upgrades are then
/// refused (`docs/PROTOCOL.md` section 5.4).
async fn installed_version(
    config: &Config,
    state: &StateDir,
) -> Result<Option<semver::Version>, MonitorError> {
    let recorded = state.installed_version()?;
    let known = config.effective_installed(recorded.as_deref());
    let Some(argv) = config.version_command() else {
        if known.is_none()
            && config
                .hook(crate::core::directive::Action::Upgrade)
                .is_some()
        {
            warn!(
                "the installed version is unknown: upgrades are refused until current_version \
                 or version_command is set in the config (or an upgrade is recorded)"
            );
        }
        return Ok(known);
    };
    let timeout = Duration::from_secs(crate::config::VERSION_COMMAND_TIMEOUT_SECS);
    match exec::installed_version(argv, timeout).await {
        Ok(v) => {
            info!("version_command: installed version {v}");
            Ok(Some(match known {
                Some(k) if k.cmp_precedence(&v).is_ge() => k,
                _ => v,
            }))
        }
        Err(e) => {
            error!(
                "version_command failed: {e}; {}",
                known.as_ref().map_or_else(
                    || "the installed version is unknown, so upgrades are refused".to_owned(),
                    |k| format!("going on with {k} (current_version or the recorded version)")
                )
            );
            Ok(known)
        }
    }
}

impl Monitor {
    /// Every configured relay, not connected, nothing counted.
    fn fresh_relays(&self) -> Vec<RelayRuntime> {
        self.config
            .relays()
            .iter()
            .map(|r| RelayRuntime {
                url: r.as_str().to_owned(),
                connected: false,
                state: RelayState::Connecting,
                retry_at: None,
                since: None,
                last_error: None,
                counters: RelayCounters::default(),
            })
            .collect()
    }

    fn start_params(&self) -> StartParams {
        StartParams {
            relays: self.config.relays().iter().map(RelayTarget::from).collect(),
            voters: self.voters.iter().copied().collect(),
            network: self.rules.network.clone(),
            d_tag: self.rules.d_tag.clone(),
            max_future_skew_secs: self.rules.max_future_skew_secs,
            extra_roots: self.config.tls_extra_roots().to_vec(),
        }
    }

    async fn serve(&mut self, mut inbox: Inbox) -> Result<(), MonitorError> {
        // Failures in a row: the restart backoff. A worker that stayed up
        // for HEALTHY_WORKER resets it; `self.restarts` counts them all.
        let mut failures: u32 = 0;
        let mut shutdown = Box::pin(shutdown_signal());
        loop {
            let spawned = spawn_worker(&self.options.worker, self.start_params()).await;
            let (mut to_worker, mut from_worker, mut worker) = match spawned {
                Ok(w) => w,
                Err(e) => {
                    error!("cannot start the worker: {e}");
                    failures = failures.saturating_add(1);
                    self.restarts = self.restarts.saturating_add(1);
                    self.write_runtime();
                    self.telemetry_tick();
                    if self
                        .wait_for_restart(restart_delay(failures), &mut shutdown, &mut inbox)
                        .await?
                    {
                        return Ok(());
                    }
                    continue;
                }
            };
            let started = tokio::time::Instant::now();
            self.deciding = false;
            self.phase = Phase::Started;
            self.sandbox = None;
            self.relays = self.fresh_relays();
            let (resolutions, mut resolved) = Resolutions::new();
            self.resolutions = resolutions;
            self.auth_sent.clear();
            let sync_fallback = tokio::time::Instant::now() + SYNC_FALLBACK;
            self.flush_outbox(&to_worker, true);
            let ended = loop {
                let wake = self.next_wake();
                let telemetry_at = self.next_telemetry_tick();
                let deadline_at = self.schedule_wake();
                tokio::select! {
                    () = sleep_until_some(telemetry_at) => {}
                    () = sleep_until_some(deadline_at) => self.deadline_reached()?,
                    Some(done) = inbox.prestaged.recv() => {
                        self.prestaged(done)?;
                        self.flush_outbox(&to_worker, true);
                        self.evaluate()?;
                    }
                    () = tokio::time::sleep_until(sync_fallback), if !self.deciding => {
                        warn!("the worker did not report the relays' stored directives within {} s; deciding anyway", SYNC_FALLBACK.as_secs());
                        self.deciding = true;
                        self.write_runtime();
                        self.evaluate()?;
                    }
                    () = &mut shutdown => {
                        worker.stop();
                        self.drain(&mut inbox.finished).await?;
                        return Ok(());
                    }
                    () = tokio::time::sleep(wake) => {
                        self.evaluate()?;
                        self.flush_outbox(&to_worker, false);
                    }
                    Some(outcome) = inbox.finished.recv() => {
                        self.finish(outcome)?;
                        self.flush_outbox(&to_worker, true);
                        self.evaluate()?;
                    }
                    why = to_worker.failed() => break why,
                    Some(answer) = resolved.recv() => {
                        // A full queue ends the worker through `ToWorker::failed`.
                        to_worker.send(self.resolutions.answered(answer));
                    }
                    msg = from_worker.recv() => {
                        match msg {
                            None | Some(Err(IpcError::Closed)) => break "worker closed its channel".to_owned(),
                            Some(Err(e)) => break format!("worker sent a bad frame: {e}"),
                            Some(Ok(msg)) => match self.handle(msg, &mut to_worker) {
                                Ok(()) => {}
                                Err(HandleError::Violation(why)) => break why.to_string(),
                                Err(HandleError::Fatal(e)) => {
                                    worker.stop();
                                    return Err(e);
                                }
                            },
                        }
                    }
                }
                self.telemetry_tick();
                self.publish_heartbeat_if_due(&to_worker);
            };
            worker.stop();
            if started.elapsed() >= HEALTHY_WORKER {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            self.restarts = self.restarts.saturating_add(1);
            self.write_runtime();
            self.telemetry_tick();
            let delay = restart_delay(failures);
            error!(
                "ending the worker: {ended}; restart {} in {} s",
                self.restarts,
                delay.as_secs()
            );
            if self
                .wait_for_restart(delay, &mut shutdown, &mut inbox)
                .await?
            {
                return Ok(());
            }
        }
    }

    /// Waits `delay` before the next worker while acting on a hook that
    /// finishes, on pre-staging and deadlines, and on SIGTERM. `true`:
    /// shut down now.
    async fn wait_for_restart(
        &mut self,
        delay: Duration,
        shutdown: &mut std::pin::Pin<Box<impl std::future::Future<Output = ()>>>,
        inbox: &mut Inbox,
    ) -> Result<bool, MonitorError> {
        let until = tokio::time::Instant::now() + delay;
        loop {
            let deadline_at = self.schedule_wake();
            tokio::select! {
                () = self.telemetry.while_running("starting the worker again", tokio::time::sleep_until(until)) => return Ok(false),
                () = sleep_until_some(deadline_at) => self.deadline_reached()?,
                Some(done) = inbox.prestaged.recv() => self.prestaged(done)?,
                Some(outcome) = inbox.finished.recv() => self.finish(outcome)?,
                () = &mut *shutdown => {
                    self.drain(&mut inbox.finished).await?;
                    return Ok(true);
                }
            }
        }
    }

    /// SIGTERM or SIGINT: take no new work; when a hook runs, let it finish
    /// (each step is bounded by its `timeout_secs`) and journal its real
    /// outcome, whose ack goes out at the next start. A second signal
    /// abandons the hook: its step is killed and the next start
    /// acknowledges it as interrupted.
    async fn drain(
        &mut self,
        finished: &mut tokio::sync::mpsc::Receiver<exec::Outcome>,
    ) -> Result<(), MonitorError> {
        let Some(running) = &self.running else {
            info!("shutting down");
            return Ok(());
        };
        let (step_secs, window_secs) = self.hook_limits_secs(running.proposal.action);
        warn!(
            "shutting down after the running {} hook for {} finishes (each step at most {} s, a health window {} s); signal again to abandon it",
            running.proposal.action.as_str(),
            running.proposal,
            step_secs,
            window_secs,
        );
        tokio::select! {
            outcome = finished.recv() => {
                if let Some(outcome) = outcome {
                    self.finish(outcome)?;
                }
                info!("shutting down");
            }
            () = shutdown_signal() => {
                warn!("second signal: abandoning the running hook; the next start acknowledges it as interrupted");
            }
        }
        Ok(())
    }

    /// The step timeout of `action`'s hook and its health wait
    /// (`settle_secs` + `window_secs`, which a stop also waits out), in
    /// seconds; 0 for what is not configured.
    fn hook_limits_secs(&self, action: crate::core::directive::Action) -> (u64, u64) {
        let hook = self.config.hook(action);
        let window = hook
            .and_then(crate::config::Hook::health)
            .map_or(0, |h| h.settle_secs().saturating_add(h.window_secs()));
        (hook.map_or(0, crate::config::Hook::timeout_secs), window)
    }

    /// Records what `status` shows about the running agent (worker
    /// restarts, sandbox) in `runtime.json`; best effort, never in a dry run.
    fn write_runtime(&self) {
        if self.options.dry_run {
            return;
        }
        let runtime = serde_json::json!({
            "pid": std::process::id(),
            "updated_at": crate::now(),
            "worker_restarts": self.restarts,
            "worker_sandbox": self.sandbox,
            "deciding": self.deciding,
            "running": self.running.as_ref().map(|r| r.proposal.to_string()),
            "scheduled": self.scheduled_runtime(),
            "relays": self.relays,
        });
        if let Err(e) = self
            .state
            .write_atomic(RUNTIME_FILE, runtime.to_string().as_bytes())
        {
            warn!("cannot record the runtime state: {e}");
        }
    }

    /// How long until something is due without a message arriving: the
    /// earliest of a directive's expiry and an acknowledgement's retry
    /// (at least 200 ms). No ticker: with nothing due it sleeps a day.
    fn next_wake(&self) -> Duration {
        let now = crate::now();
        let due = [self.engine.next_expiry(now), self.outbox.next_attempt_at()]
            .into_iter()
            .flatten()
            .min();
        match due {
            Some(at) => Duration::from_secs(at.saturating_sub(now)).max(Duration::from_millis(200)),
            None => IDLE_WAKE,
        }
    }

    /// Carries out one worker message, after the request table
    /// ([`requests::check`]) permitted it.
    fn handle(&mut self, msg: WorkerMessage, to_worker: &mut ToWorker) -> Result<(), HandleError> {
        let permits = Permits {
            phase: self.phase,
            relays: self.config.relays().len(),
            rules: &self.rules,
            voters: &self.voters,
            now: crate::now(),
        };
        let request = requests::check(msg, &permits)?;
        self.phase = request.next_phase(self.phase);
        match request {
            Request::Directive { relay, directive } => {
                let url = self.relay_url(relay);
                let id = directive.event().id_hex();
                match self.engine.offer(*directive) {
                    Offer::Accepted { .. } => {
                        self.telemetry.directives.accepted += 1;
                        info!("directive {id} from {url} accepted");
                        if !self.options.dry_run {
                            self.state
                                .save_directives(self.engine.directives())
                                .map_err(|e| HandleError::Fatal(e.into()))?;
                        }
                        self.evaluate().map_err(HandleError::Fatal)?;
                    }
                    Offer::Stale { .. } => {
                        self.telemetry.directives.stale += 1;
                        debug!("directive {id} from {url} is not newer");
                    }
                    // Unreachable while the engine and the request table
                    // share the config's voters; a violation if they ever
                    // disagree.
                    Offer::NotAVoter => {
                        return Err(violation(format!("forwarded {id} from a non-voter")))
                    }
                }
            }
            Request::Dropped { reason } => {
                self.telemetry.directives.future_dated += 1;
                debug!("dropped a forwarded directive: {reason}");
            }
            Request::Auth { relay, challenge } => {
                let url = self.relay_url(relay);
                let auth = self
                    .keys
                    .sign(UnsignedEvent {
                        created_at: crate::now(),
                        kind: AUTH_KIND,
                        tags: vec![
                            vec!["relay".into(), url.clone()],
                            vec!["challenge".into(), challenge],
                        ],
                        content: String::new(),
                    })
                    .map_err(|e| HandleError::Fatal(MonitorError::Sign(e)))?;
                debug!("answering {url}'s NIP-42 challenge");
                // Bounded: a relay that never answers its AUTH events must
                // not grow this.
                if self.auth_sent.len() >= 64 {
                    self.auth_sent.clear();
                }
                self.auth_sent.insert(auth.id, relay);
                let msg = MonitorMessage::Auth {
                    relay,
                    event: auth.to_json(),
                };
                // A full queue ends the worker through `ToWorker::failed`.
                to_worker.send(msg);
                // Acks refused for want of authentication go out again.
                self.flush_outbox(to_worker, true);
                self.resend_heartbeat(relay, to_worker);
            }
            Request::PublishResult {
                relay,
                event_id,
                accepted,
                message,
            } => {
                if self.heartbeat_answered(relay, &event_id, accepted, &message) {
                    return Ok(());
                }
                let url = self.relay_url(relay);
                let id = hex::encode(event_id);
                if self.auth_sent.get(&event_id) == Some(&relay) {
                    self.auth_sent.remove(&event_id);
                    if accepted {
                        debug!("{url} accepted our NIP-42 AUTH");
                        if let Some(r) = self.relays.get_mut(relay) {
                            if r.connected && r.state != RelayState::Authenticated {
                                r.state = RelayState::Authenticated;
                                self.write_runtime();
                            }
                        }
                    } else {
                        warn!("{url} refused our NIP-42 AUTH: {}", escape(&message, 512));
                    }
                } else if accepted {
                    let relays: Vec<&str> =
                        self.config.relays().iter().map(|r| r.as_str()).collect();
                    match self
                        .outbox
                        .delivered(&event_id, &url, &relays)
                        .map_err(|e| HandleError::Fatal(e.into()))?
                    {
                        Delivery::Complete => {
                            info!("acknowledgement {id} stored by {url}; every relay has it");
                        }
                        Delivery::Partial => info!("acknowledgement {id} stored by {url}"),
                        Delivery::NotQueued => {}
                    }
                } else if message.starts_with("auth-required:") {
                    // NIP-42: the relay asks for AUTH first; the ack goes
                    // out again after we answer its challenge.
                    info!(
                        "{url} wants NIP-42 AUTH before storing {id}; it is sent again after AUTH"
                    );
                } else {
                    warn!("{url} refused {id}: {}", escape(&message, 512));
                }
            }
            Request::Sandbox {
                enforcement,
                detail,
            } => {
                let detail = escape(&detail, 1024);
                match enforcement {
                    Enforcement::Full => info!("worker sandbox: {detail}"),
                    Enforcement::Partial | Enforcement::None => {
                        self.alert_sandbox(enforcement.as_str(), &detail);
                    }
                }
                self.sandbox = Some(enforcement);
                self.write_runtime();
            }
            Request::Synced { relays_synced } => {
                if !self.deciding {
                    info!("{relays_synced} relays synced; deciding");
                    self.deciding = true;
                    self.write_runtime();
                    self.evaluate().map_err(HandleError::Fatal)?;
                }
            }
            Request::RelayStatus {
                relay,
                connected,
                detail,
                retry_in_ms,
            } => {
                let url = self.relay_url(relay);
                let now = crate::now();
                let mut changed = false;
                if let Some(r) = self.relays.get_mut(relay) {
                    if r.connected != connected || r.since.is_none() {
                        r.since = Some(now);
                        changed = true;
                    }
                    r.connected = connected;
                    let (state, retry_at) = if connected {
                        (RelayState::Connected, None)
                    } else {
                        let secs = retry_in_ms.unwrap_or(0).div_ceil(1000);
                        (RelayState::BackingOff, Some(now.saturating_add(secs)))
                    };
                    changed |= r.state != state || r.retry_at != retry_at;
                    r.state = state;
                    r.retry_at = retry_at;
                    if !connected {
                        let error = Some(escape(&detail, 256));
                        changed |= r.last_error != error;
                        r.last_error = error;
                    }
                }
                if connected {
                    info!("{url}: connected");
                    self.flush_outbox(to_worker, true);
                    self.resend_heartbeat(relay, to_worker);
                } else {
                    debug!("{url}: {}", escape(&detail, 512));
                }
                // A relay that stays down reports every retry: record (an
                // fsynced write) only what changed.
                if changed {
                    self.write_runtime();
                }
            }
            Request::Resolve { relay } => {
                let Some(url) = self.config.relays().get(relay) else {
                    return Ok(());
                };
                let target = RelayTarget::from(url);
                debug!("resolving {} for the worker", target.host);
                if let Some(answer) = self.resolutions.ask(relay, &target.host, target.port) {
                    to_worker.send(answer);
                }
            }
            Request::RelayStats { relay, counters } => {
                if let Some(r) = self.relays.get_mut(relay) {
                    r.counters = counters;
                }
                // The worker sends every relay's counters in one burst:
                // record once per burst.
                if relay + 1 == self.relays.len() {
                    self.write_runtime();
                }
            }
        }
        Ok(())
    }

    /// The configured URL of relay `relay` (an index the request table
    /// checked).
    fn relay_url(&self, relay: usize) -> String {
        self.config
            .relays()
            .get(relay)
            .map_or_else(|| format!("relay {relay}"), |r| r.as_str().to_owned())
    }
}

enum HandleError {
    Violation(Violation),
    Fatal(MonitorError),
}

impl From<Violation> for HandleError {
    fn from(v: Violation) -> Self {
        HandleError::Violation(v)
    }
}

fn violation(why: String) -> HandleError {
    HandleError::Violation(Violation(why))
}

/// Sleeps until `at`, forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
