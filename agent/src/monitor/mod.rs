//! The monitor half of the agent (DESIGN.md section 5): config, node key,
//! state, quorum engine, hooks, journal, acknowledgements and NIP-42
//! signing. It trusts nothing the worker says: every forwarded directive is
//! parsed and verified again, and a worker that sends something malformed or
//! not permitted is ended and started again with backoff.
//!
//! The worker runs as a task of this process, connected by an in-memory pipe
//! carrying the same length-prefixed frames a process boundary will carry.

pub mod exec;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use self::exec::ExecEnv;
use crate::config::Config;
use crate::core::ack::{Ack, AckStatus};
use crate::core::directive::{Action, Directive, DirectiveError, DirectiveRules, Proposal};
use crate::core::event::{Event, Limits, UnsignedEvent};
use crate::core::keys::Keys;
use crate::core::quorum::{Decision, Engine, Offer};
use crate::ipc::{self, IpcError, MonitorMessage, RelayParams, StartParams, WorkerMessage};
use crate::state::journal::{Entry, Journal, Status as JournalStatus};
use crate::state::{Outbox, StateDir};

/// File in the state directory where the running agent records worker
/// restarts and the sandbox state for `status`.
pub const RUNTIME_FILE: &str = "runtime.json";

/// Kind of a NIP-42 authentication event.
pub const AUTH_KIND: u16 = 22242;

/// How the agent runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Tally and log what would run; run no hook, publish nothing, record
    /// nothing.
    pub dry_run: bool,
    /// Where the worker runs.
    pub worker: WorkerMode,
}

/// Where the worker half runs.
#[derive(Debug, Clone, Default)]
pub enum WorkerMode {
    /// A task of this process, over an in-memory pipe (tests, and kernels
    /// where a second process is not wanted). No sandbox.
    #[default]
    InProcess,
    /// A separate, sandboxed process: `program args... --port P...`, with the
    /// IPC frames on its stdin and stdout, stderr inherited for its logs, an
    /// empty environment, and nothing else (DESIGN.md section 5).
    Process {
        /// The program, normally this binary (`qube-agent`).
        program: std::path::PathBuf,
        /// Arguments before the `--port` list, normally `["worker"]`.
        args: Vec<String>,
    },
}

/// The channel to the worker.
type ToWorker = std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>;

/// A running worker, to stop when it misbehaves or at shutdown.
enum WorkerHandle {
    Task(tokio::task::JoinHandle<()>),
    Process(tokio::process::Child),
}

impl WorkerHandle {
    fn stop(&mut self) {
        match self {
            WorkerHandle::Task(task) => task.abort(),
            WorkerHandle::Process(child) => {
                let _ = child.start_kill();
            }
        }
    }
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
}

impl std::fmt::Display for MonitorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MonitorError::State(e) => write!(f, "state: {e}"),
            MonitorError::Journal(e) => write!(f, "journal: {e}"),
            MonitorError::Quorum(e) => write!(f, "quorum: {e}"),
            MonitorError::Sign(e) => write!(f, "signing: {e}"),
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
    /// Proposals the journal says started: consulted instead of the journal
    /// in a dry run.
    journaled: HashSet<Proposal>,
    outbox: Outbox,
    installed: Option<semver::Version>,
    /// Proposals announced in dry-run mode or as conflicts, so each is logged
    /// once.
    announced: HashSet<String>,
    /// The current worker's sandbox enforcement, once it said.
    sandbox: Option<String>,
    /// Worker restarts since the agent started.
    restarts: u32,
    /// Whether the current worker has delivered the relays' stored
    /// directives. Until then nothing runs, so that what runs does not
    /// depend on the order in which stored events happened to arrive.
    synced: bool,
}

/// Longest the monitor waits for the worker's `synced` before deciding
/// anyway (a worker that never says it is synced only delays, as it could
/// by withholding directives).
const SYNC_FALLBACK: Duration = Duration::from_secs(30);

/// A worker message that ends the worker.
struct Violation(String);

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
    let engine = Engine::from_directives(config.quorum_config(), directives)
        .map_err(MonitorError::Quorum)?;
    // A dry run reads the journal without opening it for appends (which
    // creates it and repairs a torn tail).
    let (journal, journaled) = if options.dry_run {
        let inspection = crate::state::journal::inspect(&state.journal_path())?;
        let started = inspection
            .records
            .into_iter()
            .filter_map(|r| match r.entry {
                Entry::Started { proposal, .. } => Some(proposal),
                Entry::Outcome { .. } => None,
            })
            .collect();
        (None, started)
    } else {
        (Some(Journal::open(state.journal_path())?), HashSet::new())
    };
    let outbox = state.outbox()?;
    let installed = installed_version(&config, &state)?;
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
    let mut monitor = Monitor {
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
        synced: false,
        sandbox: None,
        restarts: 0,
    };
    monitor.acknowledge_interrupted()?;
    monitor.serve().await
}

/// The installed version: the higher of `current_version` in the config
/// and the version recorded after the last successful upgrade.
fn installed_version(
    config: &Config,
    state: &StateDir,
) -> Result<Option<semver::Version>, MonitorError> {
    let recorded = state.installed_version()?;
    Ok(config.effective_installed(recorded.as_deref()))
}

type FromWorker = mpsc::Receiver<Result<WorkerMessage, IpcError>>;

impl Monitor {
    fn start_params(&self) -> StartParams {
        StartParams {
            relays: self
                .config
                .relays()
                .iter()
                .map(|r| RelayParams {
                    url: r.as_str().to_owned(),
                    host: r.host(),
                    port: r.port(),
                    tls: r.is_tls(),
                })
                .collect(),
            voters: self.voters.iter().map(hex::encode).collect(),
            network: self.rules.network.clone(),
            d_tag: self.rules.d_tag.clone(),
            max_future_skew_secs: self.rules.max_future_skew_secs,
        }
    }

    /// Starts a worker; returns the channel to it, its messages and a
    /// handle to stop it.
    async fn spawn_worker(&self) -> Result<(ToWorker, FromWorker, WorkerHandle), IpcError> {
        let start = MonitorMessage::Start(self.start_params());
        match &self.options.worker {
            WorkerMode::InProcess => {
                let (ours, theirs) = tokio::io::duplex(1 << 20);
                let (their_read, their_write) = tokio::io::split(theirs);
                let worker = tokio::spawn(async move {
                    if let Err(e) = crate::worker::run(their_read, their_write).await {
                        error!("worker stopped: {e}");
                    }
                });
                let (our_read, our_write) = tokio::io::split(ours);
                let mut to_worker: ToWorker = Box::pin(our_write);
                ipc::write_message(&mut to_worker, &start).await?;
                Ok((
                    to_worker,
                    spawn_reader(our_read),
                    WorkerHandle::Task(worker),
                ))
            }
            WorkerMode::Process { program, args } => {
                let mut ports: Vec<u16> = self.config.relays().iter().map(|r| r.port()).collect();
                ports.sort_unstable();
                ports.dedup();
                let mut command = tokio::process::Command::new(program);
                command
                    .args(args)
                    .args(
                        ports
                            .iter()
                            .flat_map(|p| ["--port".to_owned(), p.to_string()]),
                    )
                    .env_clear()
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::inherit())
                    .kill_on_drop(true);
                let mut child = command.spawn().map_err(IpcError::Io)?;
                let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                    let _ = child.start_kill();
                    return Err(IpcError::Malformed("worker pipes missing".into()));
                };
                let mut to_worker: ToWorker = Box::pin(stdin);
                ipc::write_message(&mut to_worker, &start).await?;
                info!("worker started as process {}", child.id().unwrap_or(0));
                Ok((
                    to_worker,
                    spawn_reader(stdout),
                    WorkerHandle::Process(child),
                ))
            }
        }
    }

    async fn serve(&mut self) -> Result<(), MonitorError> {
        let mut restarts: u32 = 0;
        let mut shutdown = Box::pin(shutdown_signal());
        loop {
            let (mut to_worker, mut from_worker, mut worker) = match self.spawn_worker().await {
                Ok(w) => w,
                Err(e) => {
                    error!("cannot start the worker: {e}");
                    restarts += 1;
                    self.restarts = restarts;
                    self.write_runtime();
                    tokio::time::sleep(restart_delay(restarts)).await;
                    continue;
                }
            };
            self.synced = false;
            self.sandbox = None;
            let sync_fallback = tokio::time::Instant::now() + SYNC_FALLBACK;
            self.flush_outbox(&mut to_worker, true).await;
            let ended = loop {
                let wake = self.next_wake();
                tokio::select! {
                    () = tokio::time::sleep_until(sync_fallback), if !self.synced => {
                        warn!("the worker did not report the relays' stored directives within {} s; deciding anyway", SYNC_FALLBACK.as_secs());
                        self.synced = true;
                        self.evaluate(&mut to_worker).await?;
                    }
                    () = &mut shutdown => {
                        info!("shutting down");
                        worker.stop();
                        return Ok(());
                    }
                    () = tokio::time::sleep(wake) => {
                        self.evaluate(&mut to_worker).await?;
                        self.flush_outbox(&mut to_worker, false).await;
                    }
                    msg = from_worker.recv() => {
                        match msg {
                            None | Some(Err(IpcError::Closed)) => break "worker closed its channel".to_owned(),
                            Some(Err(e)) => break format!("worker sent a bad frame: {e}"),
                            Some(Ok(msg)) => match self.handle(msg, &mut to_worker).await {
                                Ok(()) => {}
                                Err(HandleError::Violation(Violation(why))) => break why,
                                Err(HandleError::Fatal(e)) => {
                                    worker.stop();
                                    return Err(e);
                                }
                            },
                        }
                    }
                }
            };
            worker.stop();
            restarts += 1;
            self.restarts = restarts;
            self.write_runtime();
            let delay = restart_delay(restarts);
            error!(
                "ending the worker: {ended}; restart {restarts} in {} s",
                delay.as_secs()
            );
            tokio::time::sleep(delay).await;
        }
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
        });
        if let Err(e) = self
            .state
            .write_atomic(RUNTIME_FILE, runtime.to_string().as_bytes())
        {
            warn!("cannot record the runtime state: {e}");
        }
    }

    fn next_wake(&self) -> Duration {
        let now = crate::now();
        let mut at = now + 60;
        if let Some(e) = self.engine.next_expiry(now) {
            at = at.min(e.max(now));
        }
        if let Some(o) = self.outbox.next_attempt_at() {
            at = at.min(o.max(now));
        }
        Duration::from_secs(at.saturating_sub(now)).max(Duration::from_millis(200))
    }

    async fn handle(
        &mut self,
        msg: WorkerMessage,
        to_worker: &mut ToWorker,
    ) -> Result<(), HandleError> {
        match msg {
            WorkerMessage::Directive { relay, event } => {
                let Some(directive) = self.reverify(&event)? else {
                    return Ok(());
                };
                let url = self.relay_url(relay)?.to_owned();
                let id = directive.event().id_hex();
                match self.engine.offer(directive) {
                    Offer::Accepted { .. } => {
                        info!("directive {id} from {url} accepted");
                        if !self.options.dry_run {
                            self.state
                                .save_directives(self.engine.directives())
                                .map_err(|e| HandleError::Fatal(e.into()))?;
                        }
                        self.evaluate(to_worker).await.map_err(HandleError::Fatal)?;
                    }
                    Offer::Stale { .. } => debug!("directive {id} from {url} is not newer"),
                    Offer::NotAVoter => {
                        return Err(violation(format!("forwarded {id} from a non-voter")))
                    }
                }
            }
            WorkerMessage::AuthRequest { relay, challenge } => {
                let url = self.relay_url(relay)?.to_owned();
                if challenge.is_empty()
                    || challenge.len() > ipc::MAX_CHALLENGE_BYTES
                    || challenge.chars().any(char::is_control)
                {
                    return Err(violation("AUTH challenge out of bounds".into()));
                }
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
                let msg = MonitorMessage::Auth {
                    relay,
                    event: auth.to_json(),
                };
                if let Err(e) = ipc::write_message(to_worker, &msg).await {
                    return Err(violation(format!("cannot reach the worker: {e}")));
                }
                // Acks refused for want of authentication go out again.
                self.flush_outbox(to_worker, true).await;
            }
            WorkerMessage::PublishResult {
                relay,
                event_id,
                accepted,
                message,
            } => {
                let url = self.relay_url(relay)?.to_owned();
                let mut id = [0u8; 32];
                if hex::decode_to_slice(&event_id, &mut id).is_err() {
                    return Err(violation("publish result with a malformed id".into()));
                }
                if accepted {
                    if self
                        .outbox
                        .remove(&id)
                        .map_err(|e| HandleError::Fatal(e.into()))?
                    {
                        info!("acknowledgement {event_id} stored by {url}");
                    }
                } else {
                    warn!("{url} refused {event_id}: {message}");
                }
            }
            WorkerMessage::Sandbox {
                enforcement,
                detail,
            } => {
                if self.sandbox.is_some() {
                    return Err(violation("sandbox state sent twice".into()));
                }
                match enforcement.as_str() {
                    "full" => info!("worker sandbox: {detail}"),
                    "in-process" => debug!("worker: {detail}"),
                    _ => warn!("worker sandbox {enforcement}: {detail}"),
                }
                self.sandbox = Some(enforcement);
                self.write_runtime();
            }
            WorkerMessage::Synced { relays_synced } => {
                if self.synced {
                    return Err(violation("synced sent twice".into()));
                }
                info!("{relays_synced} relays synced; deciding");
                self.synced = true;
                self.evaluate(to_worker).await.map_err(HandleError::Fatal)?;
            }
            WorkerMessage::RelayStatus {
                relay,
                connected,
                detail,
            } => {
                let url = self.relay_url(relay)?.to_owned();
                if connected {
                    info!("{url}: connected");
                    self.flush_outbox(to_worker, true).await;
                } else {
                    debug!("{url}: {detail}");
                }
            }
        }
        Ok(())
    }

    fn relay_url(&self, relay: usize) -> Result<&str, Violation> {
        self.config
            .relays()
            .get(relay)
            .map(|r| r.as_str())
            .ok_or_else(|| Violation(format!("relay index {relay} out of range")))
    }

    /// Parses, verifies and checks a forwarded directive as if the worker
    /// did nothing. `None`: dropped for a reason the worker could not have
    /// seen (its clock read a moment earlier).
    fn reverify(&self, json: &str) -> Result<Option<Directive>, Violation> {
        let event = Event::from_json(json.as_bytes(), &Limits::default())
            .map_err(|e| Violation(format!("forwarded an invalid event: {e}")))?;
        if !self.voters.contains(&event.pubkey) {
            return Err(Violation(format!(
                "forwarded {} from a non-voter",
                event.id_hex()
            )));
        }
        match Directive::from_event_including_expired(event, &self.rules, crate::now()) {
            Ok(d) => Ok(Some(d)),
            Err(e @ DirectiveError::FromFuture { .. }) => {
                debug!("dropped a forwarded directive: {e}");
                Ok(None)
            }
            Err(e) => Err(Violation(format!(
                "forwarded a directive that breaks the rules: {e}"
            ))),
        }
    }

    async fn evaluate(&mut self, to_worker: &mut ToWorker) -> Result<(), MonitorError> {
        if !self.synced {
            return Ok(());
        }
        let now = crate::now();
        let (journal, journaled) = (&self.journal, &self.journaled);
        let decision = self
            .engine
            .decide(now, self.installed.as_ref(), &|p: &Proposal| {
                journal
                    .as_ref()
                    .map_or_else(|| journaled.contains(p), |j| j.contains(p))
            });
        match decision {
            Decision::Nothing => Ok(()),
            Decision::Conflict(proposals) => {
                let key = format!("{proposals:?}");
                if self.announced.insert(key) {
                    let list: Vec<String> = proposals.iter().map(ToString::to_string).collect();
                    error!("conflict: quorums for different proposals at the same version, nothing runs: {}", list.join(" | "));
                }
                Ok(())
            }
            Decision::Run {
                proposal,
                directives,
            } => {
                if self.options.dry_run {
                    if self.announced.insert(proposal.to_string()) {
                        info!(
                            "dry run: quorum of {} reached for {proposal}; would run the {} hook",
                            directives.len(),
                            proposal.action.as_str()
                        );
                    }
                    return Ok(());
                }
                self.act(proposal, directives, to_worker).await
            }
        }
    }

    /// Runs the hook for a proposal exactly once: the `started` record is
    /// durable before the hook starts.
    async fn act(
        &mut self,
        proposal: Proposal,
        directives: Vec<Directive>,
        to_worker: &mut ToWorker,
    ) -> Result<(), MonitorError> {
        let ids: Vec<[u8; 32]> = directives.iter().map(|d| d.event().id).collect();
        let authors: Vec<[u8; 32]> = directives.iter().map(|d| *d.author()).collect();
        info!(
            "quorum of {} reached for {proposal}; running the {} hook",
            directives.len(),
            proposal.action.as_str()
        );
        let Some(journal) = self.journal.as_mut() else {
            // Dry run: `evaluate` never gets here; never act without a journal.
            return Ok(());
        };
        let seq = journal.append_started(&proposal, &ids, crate::now())?;
        let hook = match proposal.action {
            Action::Upgrade => self.config.upgrade(),
            Action::Reboot => self.config.reboot(),
        };
        let (status, error) = match hook {
            Some(hook) => {
                let env = ExecEnv::new(&proposal, &ids, &self.node_id);
                let outcome = exec::execute(hook, &proposal, &env).await;
                if outcome.is_success() {
                    (AckStatus::Success, None)
                } else {
                    (AckStatus::Failure, outcome.error)
                }
            }
            None => (
                AckStatus::Failure,
                Some(format!("no [{}] hook configured", proposal.action.as_str())),
            ),
        };
        let action_at = crate::now();
        let journal_status = match status {
            AckStatus::Success => JournalStatus::Success,
            AckStatus::Failure => JournalStatus::Failure,
        };
        if let Some(journal) = self.journal.as_mut() {
            journal.append_outcome(seq, journal_status, error.as_deref(), action_at)?;
        }
        match (&status, &error) {
            (AckStatus::Success, _) => info!("{proposal}: success"),
            (AckStatus::Failure, e) => {
                error!("{proposal}: failure: {}", e.as_deref().unwrap_or("unknown"))
            }
        }
        if status == AckStatus::Success && proposal.action == Action::Upgrade {
            self.state.set_installed_version(&proposal.version)?;
            if let Ok(v) = proposal.semver() {
                self.installed = Some(v);
            }
        }
        let sources: Vec<([u8; 32], [u8; 32])> = {
            let mut v: Vec<_> = authors.into_iter().zip(ids).collect();
            v.sort();
            v
        };
        self.queue_ack(&proposal, sources, status, error.as_deref(), action_at)?;
        self.flush_outbox(to_worker, true).await;
        Ok(())
    }

    fn queue_ack(
        &mut self,
        proposal: &Proposal,
        directives: Vec<([u8; 32], [u8; 32])>,
        status: AckStatus,
        error: Option<&str>,
        action_at: u64,
    ) -> Result<(), MonitorError> {
        let ack = Ack {
            proposal,
            directives,
            d_tag: &self.rules.d_tag,
            status,
            error,
            node_id: &self.node_id,
            action_at,
        };
        let event = self
            .keys
            .sign(ack.to_unsigned(crate::now()))
            .map_err(MonitorError::Sign)?;
        info!("acknowledgement {} queued", event.id_hex());
        self.outbox.push(event, crate::now())?;
        Ok(())
    }

    /// A `started` record without an outcome means the agent died while a
    /// hook ran: never run it again, acknowledge it as interrupted.
    fn acknowledge_interrupted(&mut self) -> Result<(), MonitorError> {
        let Some(interrupted) = self.journal.as_ref().map(Journal::interrupted) else {
            return Ok(());
        };
        for (seq, proposal) in interrupted {
            if self.options.dry_run {
                warn!("dry run: {proposal} was interrupted; would acknowledge it as a failure");
                continue;
            }
            warn!("{proposal} was interrupted (started, no outcome): acknowledging it as a failure, not running it again");
            let record = self.journal.as_ref().and_then(|j| j.record(seq));
            let ids: Vec<[u8; 32]> = match record.map(|r| &r.entry) {
                Some(Entry::Started { directive_ids, .. }) => directive_ids.clone(),
                _ => Vec::new(),
            };
            // The authors come from the saved directives, which a restart
            // keeps unless a newer directive replaced them.
            let mut sources: Vec<([u8; 32], [u8; 32])> = self
                .engine
                .directives()
                .filter(|d| ids.contains(&d.event().id))
                .map(|d| (*d.author(), d.event().id))
                .collect();
            sources.sort();
            let at = crate::now();
            if let Some(journal) = self.journal.as_mut() {
                journal.append_outcome(seq, JournalStatus::Failure, Some("interrupted"), at)?;
            }
            self.queue_ack(
                &proposal,
                sources,
                AckStatus::Failure,
                Some("interrupted"),
                at,
            )?;
        }
        Ok(())
    }

    /// Hands queued acks to the worker: all of them with `all`, otherwise
    /// those due for a retry (which are then rescheduled).
    async fn flush_outbox(&mut self, to_worker: &mut ToWorker, all: bool) {
        if self.options.dry_run {
            return;
        }
        let now = crate::now();
        let entries = if all {
            self.outbox.entries().to_vec()
        } else {
            self.outbox.due(now)
        };
        for entry in entries {
            let msg = MonitorMessage::Publish {
                event: entry.event.to_json(),
            };
            if ipc::write_message(to_worker, &msg).await.is_err() {
                return;
            }
            if !all {
                if let Err(e) = self.outbox.mark_failed(&entry.event.id, now) {
                    warn!(
                        "cannot reschedule acknowledgement {}: {e}",
                        entry.event.id_hex()
                    );
                }
            }
        }
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

/// Reads frames from the worker on a task of its own, so a half-read frame
/// is never lost to `select!`.
fn spawn_reader<R: AsyncRead + Unpin + Send + 'static>(mut reader: R) -> FromWorker {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let msg = ipc::read_message::<_, WorkerMessage>(&mut reader).await;
            let stop = msg.is_err();
            if tx.send(msg).await.is_err() || stop {
                return;
            }
        }
    });
    rx
}

/// 1 s doubling to 60 s.
fn restart_delay(restarts: u32) -> Duration {
    Duration::from_secs(1u64 << restarts.min(6)).min(Duration::from_secs(60))
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
