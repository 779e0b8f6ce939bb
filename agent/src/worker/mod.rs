//! The worker half of the agent (`docs/PROTOCOL.md` section 9, SECURITY.md): relay I/O, parsing,
//! verification and filtering. It holds no secret and reads no file at
//! all: everything it needs arrives in [`MonitorMessage::Start`], and the
//! monitor resolves the relays' host names for it
//! ([`WorkerMessage::Resolve`]).
//!
//! It forwards to the monitor only what could count: verified kind 33321
//! events from a voter that pass the directive rules, newer than what it
//! already forwarded for that voter, each id once across all relays.

mod probe;
pub mod sandbox;
pub mod seccomp;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use crate::core::admit::{admit, Authors};
use crate::core::directive::{Directive, DirectiveRules, DIRECTIVE_KIND};
use crate::core::error::truncated;
use crate::core::event::Event;
use crate::core::message::is_signable_challenge;
use crate::core::message::Filter;
use crate::core::text::printable;
use crate::ipc::{
    self, Enforcement, IpcError, MonitorMessage, StartParams, WorkerMessage, MAX_CHALLENGE_BYTES,
};
use crate::relay::{RelayEvent, RelayOptions, RelayPool, ResolveRequest, Resolver};

/// Ids remembered for cross-relay deduplication before the set is reset.
const SEEN_IDS_CAP: usize = 16_384;

/// Longest wait for every relay's stored events before decisions start.
pub const SYNC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Entry point of the worker process (`qube-agent worker --port P...`):
/// starts its own session ([`crate::worker::sandbox::detach_session`]),
/// confines itself ([`crate::worker::sandbox::confine_worker`]) before any thread
/// exists, then serves the monitor over stdin and stdout on a
/// single-threaded runtime. Exit status 0 when the monitor closed the
/// channel, 1 on an IPC error, 3 when the sandbox could not be applied.
pub fn process_main(relay_ports: &[u16], allow_unsandboxed: bool) -> std::process::ExitCode {
    use std::process::ExitCode;
    if let Err(e) = crate::worker::sandbox::detach_session() {
        if !allow_unsandboxed {
            tracing::error!("worker: {e}");
            return ExitCode::from(3);
        }
        tracing::error!("worker: {e}; going on (--allow-unsandboxed)");
    }
    let sandbox = match crate::worker::sandbox::confine_worker(relay_ports, allow_unsandboxed) {
        Ok(report) => {
            match report.enforcement() {
                crate::worker::sandbox::Enforcement::Full => debug!("worker sandbox: {report}"),
                crate::worker::sandbox::Enforcement::Partial => {
                    warn!("worker sandbox only partly enforced by this kernel: {report}")
                }
                crate::worker::sandbox::Enforcement::None => tracing::error!(
                    "WORKER RUNNING UNSANDBOXED (--allow-unsandboxed): neither Landlock nor the seccomp filter is in force; {report}"
                ),
            }
            report
        }
        Err(e) => {
            tracing::error!("worker: {e}");
            return ExitCode::from(3);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("worker: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = (sandbox.enforcement(), sandbox.to_string());
    match runtime.block_on(run_with(
        tokio::io::stdin(),
        tokio::io::stdout(),
        Some(report),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the worker until the monitor closes the channel, unsandboxed (tests
/// only, feature `test-support`: production runs [`process_main`]).
///
/// # Errors
/// [`IpcError`] when the channel fails or the monitor sends something that
/// is not a [`MonitorMessage`] (the first message must be `Start`).
#[cfg(any(test, feature = "test-support"))]
pub async fn run<R, W>(from_monitor: R, to_monitor: W) -> Result<(), IpcError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send,
{
    run_with(from_monitor, to_monitor, None).await
}

/// [`run`], reporting `sandbox` (enforcement, detail) to the monitor first.
async fn run_with<R, W>(
    mut from_monitor: R,
    mut to_monitor: W,
    sandbox: Option<(Enforcement, String)>,
) -> Result<(), IpcError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send,
{
    let start = match ipc::read_message::<_, MonitorMessage>(&mut from_monitor).await? {
        MonitorMessage::Start(start) => start,
        other => {
            return Err(IpcError::Malformed(format!(
                "expected start parameters first, got {}",
                message_name(&other)
            )))
        }
    };
    let (enforcement, detail) = sandbox.unwrap_or_else(|| {
        (
            Enforcement::None,
            "in-process: the worker runs as a task of the monitor, not sandboxed".to_owned(),
        )
    });
    ipc::write_message(
        &mut to_monitor,
        &WorkerMessage::Sandbox {
            enforcement,
            detail,
        },
    )
    .await?;
    let filter = directive_filter(&start);
    let rules = DirectiveRules {
        d_tag: start.d_tag.clone(),
        network: start.network.clone(),
        max_future_skew_secs: start.max_future_skew_secs,
    };
    let voters: BTreeSet<[u8; 32]> = start.voters.iter().copied().collect();
    // Host names are resolved by the monitor: the sandbox has no resolver
    // files and no UDP.
    let (resolve_tx, mut resolve_requests) = tokio::sync::mpsc::channel(start.relays.len().max(1));
    let mut resolving: HashMap<usize, Vec<ResolveRequest>> = HashMap::new();
    let options = RelayOptions {
        extra_roots: start.extra_roots.clone(),
        resolver: Resolver::Delegated(resolve_tx),
        ..RelayOptions::default()
    };
    let (pool, mut events) = RelayPool::start(start.relays.clone(), vec![filter], options);
    let mut state = Filtering {
        rules,
        voters,
        seen: HashSet::new(),
        newest: BTreeMap::new(),
        settled: vec![Settled::No; start.relays.len()],
        synced_sent: false,
        challenge_warned: HashSet::new(),
        down: HashSet::new(),
    };
    let sync_deadline = tokio::time::Instant::now() + SYNC_DEADLINE;
    let mut stats_timer = tokio::time::interval_at(
        tokio::time::Instant::now() + ipc::RELAY_STATS_INTERVAL,
        ipc::RELAY_STATS_INTERVAL,
    );

    // Frames from the monitor are read by their own task so that a
    // half-read frame is never dropped by `select!`.
    let (cmd_tx, mut commands) = tokio::sync::mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let msg = ipc::read_message::<_, MonitorMessage>(&mut from_monitor).await;
            let stop = msg.is_err();
            if cmd_tx.send(msg).await.is_err() || stop {
                return;
            }
        }
    });

    let result = loop {
        tokio::select! {
            () = tokio::time::sleep_until(sync_deadline), if !state.synced_sent => {
                let msg = state.synced();
                if let Err(e) = ipc::write_message(&mut to_monitor, &msg).await {
                    break Err(e);
                }
            }
            _ = stats_timer.tick() => {
                let mut failed = None;
                for relay in 0..pool.targets().len() {
                    let Some(stats) = pool.stats(relay) else { continue };
                    let msg = WorkerMessage::RelayStats { relay, counters: stats.snapshot() };
                    if let Err(e) = ipc::write_message(&mut to_monitor, &msg).await {
                        failed = Some(e);
                        break;
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
            }
            event = events.recv() => {
                let Some(event) = event else { break Ok(()) };
                if let Some(msg) = state.handle(&pool, event) {
                    if let Err(e) = ipc::write_message(&mut to_monitor, &msg).await {
                        break Err(e);
                    }
                }
                if !state.synced_sent && state.settled.iter().all(|s| *s != Settled::No) {
                    let msg = state.synced();
                    if let Err(e) = ipc::write_message(&mut to_monitor, &msg).await {
                        break Err(e);
                    }
                }
            }
            Some(request) = resolve_requests.recv() => {
                // One question per relay at a time; the answer goes to every
                // task waiting for that relay.
                let relay = request.relay;
                let waiting = resolving.entry(relay).or_default();
                waiting.push(request);
                if waiting.len() == 1 {
                    if let Err(e) = ipc::write_message(&mut to_monitor, &WorkerMessage::Resolve { relay }).await {
                        break Err(e);
                    }
                }
            }
            cmd = commands.recv() => {
                match cmd {
                    Some(Ok(MonitorMessage::Resolved { relay, addresses, error })) => {
                        let result = match error {
                            Some(e) => Err(printable(&e, 256)),
                            None => Ok(addresses),
                        };
                        for waiting in resolving.remove(&relay).unwrap_or_default() {
                            let _ = waiting.reply.send(result.clone());
                        }
                    }
                    None | Some(Err(IpcError::Closed)) => break Ok(()),
                    Some(Err(e)) => break Err(e),
                    Some(Ok(MonitorMessage::Publish { event })) => match parse_own(&event) {
                        Ok(event) => pool.publish(&event),
                        Err(e) => warn!("monitor sent an unusable event to publish: {e}"),
                    },
                    Some(Ok(MonitorMessage::PublishTo { relays, event })) => match parse_own(&event) {
                        Ok(event) => pool.publish_to(&event, &relays),
                        Err(e) => warn!("monitor sent an unusable event to publish: {e}"),
                    },
                    Some(Ok(MonitorMessage::Auth { relay, event })) => match parse_own(&event) {
                        Ok(event) => pool.authenticate(relay, event),
                        Err(e) => warn!("monitor sent an unusable AUTH event: {e}"),
                    },
                    Some(Ok(MonitorMessage::Start(_))) => {
                        break Err(IpcError::Malformed("start parameters sent twice".into()))
                    }
                }
            }
        }
    };
    reader.abort();
    result
}

fn message_name(m: &MonitorMessage) -> &'static str {
    match m {
        MonitorMessage::Start(_) => "start",
        MonitorMessage::Publish { .. } => "publish",
        MonitorMessage::PublishTo { .. } => "publish_to",
        MonitorMessage::Auth { .. } => "auth",
        MonitorMessage::Resolved { .. } => "resolved",
    }
}

fn parse_own(json: &str) -> Result<Event, crate::Error> {
    Event::from_json(json.as_bytes(), &crate::Limits::default())
}

/// The directive subscription: kind 33321, the voters as authors, `#d` =
/// the configured d tag (`docs/PROTOCOL.md` section 2).
fn directive_filter(start: &StartParams) -> Filter {
    let mut tags = BTreeMap::new();
    tags.insert('d', vec![start.d_tag.clone()]);
    Filter {
        kinds: vec![DIRECTIVE_KIND],
        authors: start.voters.clone(),
        tags,
        ..Filter::default()
    }
}

/// Whether a relay's stored events are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    No,
    Eose,
    Failed,
}

struct Filtering {
    /// Per relay: stored events received (`EOSE`) or failed once.
    settled: Vec<Settled>,
    synced_sent: bool,
    rules: DirectiveRules,
    voters: BTreeSet<[u8; 32]>,
    seen: HashSet<[u8; 32]>,
    /// The newest directive forwarded per voter.
    newest: BTreeMap<[u8; 32], Directive>,
    /// Relays already warned about for an unsignable AUTH challenge.
    challenge_warned: HashSet<usize>,
    /// Relays that are down and were warned about.
    down: HashSet<usize>,
}

impl Filtering {
    fn synced(&mut self) -> WorkerMessage {
        self.synced_sent = true;
        let relays_synced = self.settled.iter().filter(|s| **s == Settled::Eose).count();
        info!(
            "{relays_synced} of {} relays sent their stored directives",
            self.settled.len()
        );
        WorkerMessage::Synced { relays_synced }
    }

    fn settle(&mut self, relay: usize, how: Settled) {
        if let Some(s) = self.settled.get_mut(relay) {
            if *s == Settled::No || how == Settled::Eose {
                *s = how;
            }
        }
    }

    fn handle(&mut self, pool: &RelayPool, event: RelayEvent) -> Option<WorkerMessage> {
        let url = |relay: usize| {
            pool.targets()
                .get(relay)
                .map_or("?", |t| t.url.as_str())
                .to_owned()
        };
        match event {
            RelayEvent::Event { relay, event } => self.filter(relay, event),
            RelayEvent::AuthChallenge { relay, challenge } => {
                self.auth_challenge(relay, challenge, &url(relay))
            }
            RelayEvent::Ok {
                relay,
                event_id,
                accepted,
                message,
            } => Some(WorkerMessage::PublishResult {
                relay,
                event_id,
                accepted,
                message: truncated(&message, 512),
            }),
            RelayEvent::Connected { relay } => {
                if self.down.remove(&relay) {
                    info!("{}: reconnected", url(relay));
                }
                debug!("{}: connected", url(relay));
                Some(WorkerMessage::RelayStatus {
                    relay,
                    connected: true,
                    detail: "connected".into(),
                    retry_in_ms: None,
                })
            }
            RelayEvent::Disconnected {
                relay,
                reason,
                retry_in,
            } => {
                self.settle(relay, Settled::Failed);
                let reason = printable(&reason, 512);
                // A warning when a relay goes down, then quiet while it
                // stays down (one line per retry would flood the log).
                if self.down.insert(relay) {
                    warn!(
                        "{}: {reason}; retrying in {} ms (further failures at debug level until it reconnects)",
                        url(relay),
                        retry_in.as_millis()
                    );
                } else {
                    debug!(
                        "{}: {reason}; retrying in {} ms",
                        url(relay),
                        retry_in.as_millis()
                    );
                }
                Some(WorkerMessage::RelayStatus {
                    relay,
                    connected: false,
                    detail: reason,
                    retry_in_ms: Some(u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX)),
                })
            }
            RelayEvent::EndOfStored { relay } => {
                self.settle(relay, Settled::Eose);
                debug!("{}: end of stored events", url(relay));
                None
            }
            RelayEvent::Notice { relay, message } => {
                info!("{}: {}", url(relay), printable(&message, 512));
                None
            }
        }
    }

    /// A relay's NIP-42 challenge: forwarded when the monitor may sign it
    /// ([`is_signable_challenge`]); otherwise it is the relay's fault,
    /// dropped here and never forwarded (the monitor would count it as the
    /// worker's). One warning per relay, then debug lines.
    fn auth_challenge(
        &mut self,
        relay: usize,
        challenge: String,
        url: &str,
    ) -> Option<WorkerMessage> {
        if is_signable_challenge(&challenge) {
            return Some(WorkerMessage::AuthRequest { relay, challenge });
        }
        let why = format!(
            "{url}: NIP-42 challenge ignored ({} bytes; must be 1 to {MAX_CHALLENGE_BYTES} without control characters): {}",
            challenge.len(),
            printable(&challenge, 64)
        );
        if self.challenge_warned.insert(relay) {
            warn!("{why}; further ones from this relay are logged at debug level");
        } else {
            debug!("{why}");
        }
        None
    }

    fn filter(&mut self, relay: usize, event: Event) -> Option<WorkerMessage> {
        if self.seen.len() >= SEEN_IDS_CAP {
            self.seen.clear();
        }
        if !self.seen.insert(event.id) {
            return None;
        }
        // Expired directives are forwarded: they still supersede the
        // voter's older ones (the monitor never counts them).
        let id = event.id_hex();
        let directive = match admit(
            event,
            &self.rules,
            Authors::Only(&self.voters),
            crate::now(),
        ) {
            Ok(d) => d,
            Err(e) => {
                debug!("dropped {id}: {e}");
                return None;
            }
        };
        // NIP-01 replaceable rule (`docs/PROTOCOL.md` section 5.2).
        if let Some(newest) = self.newest.get(directive.author()) {
            if !directive.supersedes(newest) {
                return None;
            }
        }
        let json = directive.event().to_json();
        self.newest.insert(*directive.author(), directive);
        Some(WorkerMessage::Directive { relay, event: json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::UnsignedEvent;
    use crate::core::keys::Keys;

    fn directive(keys: &Keys, created_at: u64, version: &str) -> Event {
        keys.sign(UnsignedEvent {
            created_at,
            kind: DIRECTIVE_KIND,
            tags: vec![
                vec!["d".into(), "hyperqube".into()],
                vec!["action".into(), "upgrade".into()],
                vec!["version".into(), version.into()],
                vec!["hash".into(), "ab".repeat(32)],
                vec!["network".into(), "hqz".into()],
            ],
            content: "upgrade".into(),
        })
        .unwrap()
    }

    fn filtering(voter: &Keys) -> Filtering {
        Filtering {
            settled: vec![Settled::No],
            synced_sent: false,
            rules: DirectiveRules {
                d_tag: "hyperqube".into(),
                network: "hqz".into(),
                max_future_skew_secs: 600,
            },
            voters: [voter.public_key()].into_iter().collect(),
            seen: HashSet::new(),
            newest: BTreeMap::new(),
            challenge_warned: HashSet::new(),
            down: HashSet::new(),
        }
    }

    fn forwarded(msg: Option<WorkerMessage>) -> Option<String> {
        match msg {
            Some(WorkerMessage::Directive { event, .. }) => Some(event),
            None => None,
            Some(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn forwards_each_id_once_and_only_newer_directives_from_voters() {
        let voter = Keys::from_secret_bytes(&[1; 32]).unwrap();
        let stranger = Keys::from_secret_bytes(&[2; 32]).unwrap();
        let mut f = filtering(&voter);
        let t = crate::now() - 100;
        let first = directive(&voter, t, "v1.0.0");
        assert_eq!(forwarded(f.filter(0, first.clone())), Some(first.to_json()));
        // The same event from a second relay.
        assert_eq!(forwarded(f.filter(1, first.clone())), None);
        // An older directive of the same voter.
        assert_eq!(
            forwarded(f.filter(0, directive(&voter, t - 1, "v0.9.0"))),
            None
        );
        // A non-voter.
        assert_eq!(
            forwarded(f.filter(0, directive(&stranger, t, "v1.0.0"))),
            None
        );
        // Wrong network.
        let mut other = directive(&voter, t + 5, "v1.0.0")
            .into_unverified()
            .into_data();
        other.tags[4][1] = "testnet".into();
        other.id = other.compute_id();
        other.sig = voter.sign_with_aux_rand(&other.id, &[0; 32]);
        let other = crate::UnverifiedEvent::from_data(other).verify().unwrap();
        assert_eq!(forwarded(f.filter(0, other)), None);
        // A newer one goes through.
        let newer = directive(&voter, t + 1, "v1.1.0");
        assert_eq!(forwarded(f.filter(2, newer.clone())), Some(newer.to_json()));
    }

    #[test]
    fn synced_once_every_relay_settled() {
        let voter = Keys::from_secret_bytes(&[1; 32]).unwrap();
        let mut f = filtering(&voter);
        f.settled = vec![Settled::No, Settled::No];
        f.settle(0, Settled::Eose);
        assert!(f.settled.contains(&Settled::No));
        f.settle(1, Settled::Failed);
        // A later EOSE upgrades a failure; a failure never downgrades EOSE.
        f.settle(0, Settled::Failed);
        f.settle(1, Settled::Eose);
        assert_eq!(f.synced(), WorkerMessage::Synced { relays_synced: 2 });
        assert!(f.synced_sent);
    }

    #[test]
    fn unsignable_challenges_are_dropped_by_the_worker() {
        let voter = Keys::generate().unwrap();
        let mut state = filtering(&voter);
        for bad in [
            String::new(),
            "hello\u{7}".to_owned(),
            "line\nbreak".to_owned(),
            "c".repeat(MAX_CHALLENGE_BYTES + 1),
        ] {
            assert_eq!(
                state.auth_challenge(0, bad.clone(), "ws://r"),
                None,
                "{bad:?}"
            );
        }
        assert!(state.challenge_warned.contains(&0));
        // Positive control: the longest signable one is forwarded.
        let good = "c".repeat(MAX_CHALLENGE_BYTES);
        assert_eq!(
            state.auth_challenge(0, good.clone(), "ws://r"),
            Some(WorkerMessage::AuthRequest {
                relay: 0,
                challenge: good
            })
        );
    }
}
