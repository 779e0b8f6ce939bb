//! The relay client: one task per relay, on tokio-tungstenite with TLS from
//! rustls (ring provider, webpki roots).
//!
//! Each task connects, subscribes with the configured filter, and turns what
//! the relay sends into [`RelayEvent`]s: everything a relay says is bounded
//! and typed, and an event leaves the task only after these checks, cheapest
//! first: size and strict parse, our subscription id, the subscription's
//! filter (kind, authors, `#d`), an id not already delivered by any relay of
//! the pool, then the id and BIP-340 signature. An event that fails the
//! last check is the relay's fault (an honest relay verifies what it
//! stores): the task disconnects from that relay and backs off. A relay that
//! is down, slow or hostile affects only its own task: it is disconnected
//! and retried with exponential backoff and jitter, and the other relays go
//! on. Per-relay counters ([`RelayPool::stats`]) say what each relay sent and
//! what was dropped, and why.
//!
//! Fairness: one relay's traffic cannot delay another's. Each relay is
//! read, parsed and verified by its own task (tokio runs ready tasks in
//! turn), and what a task reports is bounded: events only after the cheap
//! checks above, notices at most [`NOTICE_BUDGET`] per [`NOTICE_WINDOW`]. The
//! tasks share one bounded report channel whose slots tokio hands out first
//! come, first served, so a flooding relay holds at most one waiting report
//! at a time and is slowed by its own backpressure (TCP), not the others.
//!
//! Host names are resolved through [`RelayOptions::resolver`]: the system
//! resolver, or (in the sandboxed worker) the monitor over IPC.
//!
//! What to do with events (filtering by author and kind, deduplication
//! across relays, quorum) is the caller's business; so is answering NIP-42
//! challenges, which need the node key: the task reports
//! [`RelayEvent::AuthChallenge`] and sends whatever AUTH event it is handed.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::core::backoff::Backoff;
use crate::core::event::{Event, Limits};
use crate::core::message::{ClientMessage, Filter, RelayMessage};
use crate::core::relay_url::RelayUrl;

/// Subscription id used for the directive subscription on every relay.
pub const SUBSCRIPTION_ID: &str = "qube-directives";

/// Where a relay is: the URL as configured (used in NIP-42 `relay` tags and
/// logs) and what to connect to. The monitor hands these to the worker over
/// IPC ([`crate::ipc::StartParams`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayTarget {
    /// The relay URL, `ws://` or `wss://`.
    pub url: String,
    /// Host name or IP literal to connect to (no brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS (`wss://`).
    pub tls: bool,
}

impl From<&RelayUrl> for RelayTarget {
    fn from(url: &RelayUrl) -> Self {
        RelayTarget {
            url: url.as_str().to_owned(),
            host: url.host(),
            port: url.port(),
            tls: url.is_tls(),
        }
    }
}

/// Timing and size settings of relay connections.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Limits on events and relay messages (see [`Limits`]); the websocket
    /// message and frame caps are derived from `max_message_bytes`.
    pub limits: Limits,
    /// TCP connect plus TLS and websocket handshake, at most. Default 10 s.
    pub connect_timeout: Duration,
    /// A websocket ping is sent after this much silence. Default 30 s.
    pub ping_interval: Duration,
    /// The connection is dropped after this much silence (no frame at all,
    /// pongs included). Default 90 s.
    pub idle_timeout: Duration,
    /// First reconnect delay; doubles per failure. Default 1 s.
    pub backoff_initial: Duration,
    /// Largest reconnect delay. Default 60 s.
    pub backoff_max: Duration,
    /// DER certificates trusted for `wss://` in addition to the Mozilla
    /// roots of webpki-roots (`[tls] extra_roots`). Default none.
    pub extra_roots: Vec<Vec<u8>>,
    /// How host names become addresses. Default [`Resolver::System`].
    pub resolver: Resolver,
}

/// Most [`RelayEvent::Notice`]s one relay may cause per
/// [`NOTICE_WINDOW`]; the rest are only counted
/// ([`RelayStats::notices_suppressed`]), so a relay that floods `NOTICE`s
/// or garbage cannot crowd the shared event channel or the log.
pub const NOTICE_BUDGET: u32 = 20;

/// The window of [`NOTICE_BUDGET`].
pub const NOTICE_WINDOW: Duration = Duration::from_secs(10);

/// Most addresses tried per connection attempt (the rest are ignored).
pub const MAX_ADDRESSES: usize = 16;

/// How a relay task turns a relay's host name into addresses. An IP literal
/// host is used as it is, without asking.
#[derive(Debug, Clone, Default)]
pub enum Resolver {
    /// The system resolver (`getaddrinfo` through tokio): govctl and tests.
    #[default]
    System,
    /// Ask whoever holds the receiver (the sandboxed worker asks the
    /// monitor, `docs/PROTOCOL.md` section 9): the worker then needs no
    /// resolver file and no UDP.
    Delegated(mpsc::Sender<ResolveRequest>),
}

/// One question to a [`Resolver::Delegated`] resolver: the addresses of
/// relay `relay`'s host (the port is the relay's own).
#[derive(Debug)]
pub struct ResolveRequest {
    /// Index of the relay in the pool.
    pub relay: usize,
    /// Where the answer goes: at most [`MAX_ADDRESSES`] addresses, or why
    /// there are none. Dropping it answers "no resolver".
    pub reply: oneshot::Sender<Result<Vec<IpAddr>, String>>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            extra_roots: Vec::new(),
            resolver: Resolver::System,
        }
    }
}

/// What a relay task reports. `relay` is always the index of the relay in
/// the list given to [`RelayPool::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayEvent {
    /// Connected and subscribed.
    Connected {
        /// Relay index.
        relay: usize,
    },
    /// The connection ended or could not be made; a retry follows after
    /// `retry_in`.
    Disconnected {
        /// Relay index.
        relay: usize,
        /// Why, in words.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// A parsed and verified event for our subscription.
    Event {
        /// Relay index.
        relay: usize,
        /// The event; its id and signature have been checked.
        event: Event,
    },
    /// Stored events have all been sent (NIP-01 `EOSE`).
    EndOfStored {
        /// Relay index.
        relay: usize,
    },
    /// The relay answered a published event (NIP-01 `OK`).
    Ok {
        /// Relay index.
        relay: usize,
        /// 32-byte id of the event answered.
        event_id: [u8; 32],
        /// Whether the relay stored it.
        accepted: bool,
        /// The relay's reason, e.g. `auth-required: ...`.
        message: String,
    },
    /// The relay wants NIP-42 authentication.
    AuthChallenge {
        /// Relay index.
        relay: usize,
        /// The challenge to sign into a kind 22242 event.
        challenge: String,
    },
    /// The relay said something we only log: `NOTICE`, `CLOSED`, or a frame
    /// we could not parse (the connection stays up unless it is abusive).
    Notice {
        /// Relay index.
        relay: usize,
        /// What it said or what was wrong with it.
        message: String,
    },
}

/// What one relay sent, counted by its task (monotonic since the pool
/// started).
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Text frames received.
    pub frames: AtomicU64,
    /// Bytes of those frames.
    pub bytes: AtomicU64,
    /// Frames that were not a relay message we accept (malformed, over a
    /// limit, unknown type).
    pub malformed: AtomicU64,
    /// Events outside our subscription's filter or subscription id: dropped
    /// before any signature check.
    pub outside_filter: AtomicU64,
    /// Events whose id a relay of the pool already delivered: dropped
    /// before any signature check.
    pub duplicate: AtomicU64,
    /// Signature checks done (id and BIP-340).
    pub verified: AtomicU64,
    /// Events whose id or signature did not verify (the relay was then
    /// disconnected).
    pub invalid: AtomicU64,
    /// Events delivered to the caller.
    pub delivered: AtomicU64,
    /// Notices over [`NOTICE_BUDGET`], dropped without a report.
    pub notices_suppressed: AtomicU64,
}

impl RelayStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// All counters at once, as they cross IPC.
    pub fn snapshot(&self) -> crate::ipc::RelayCounters {
        let get = Self::get;
        crate::ipc::RelayCounters {
            frames: get(&self.frames),
            bytes: get(&self.bytes),
            malformed: get(&self.malformed),
            outside_filter: get(&self.outside_filter),
            duplicate: get(&self.duplicate),
            verified: get(&self.verified),
            invalid: get(&self.invalid),
            delivered: get(&self.delivered),
            notices_suppressed: get(&self.notices_suppressed),
        }
    }

    /// A counter's current value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Ids of events delivered by any relay of a pool (only verified ones, so a
/// forged event cannot shadow the real one), bounded: cleared when full.
#[derive(Debug, Default)]
struct SeenIds(Mutex<HashSet<[u8; 32]>>);

/// Ids remembered across relays before the set is cleared.
const SEEN_IDS_CAP: usize = 16_384;

impl SeenIds {
    fn contains(&self, id: &[u8; 32]) -> bool {
        self.0.lock().map(|s| s.contains(id)).unwrap_or(false)
    }

    fn insert(&self, id: [u8; 32]) {
        if let Ok(mut set) = self.0.lock() {
            if set.len() >= SEEN_IDS_CAP {
                set.clear();
            }
            set.insert(id);
        }
    }
}

/// A command to one relay task.
#[derive(Debug, Clone)]
enum Command {
    Publish(Event),
    Auth(Event),
}

/// Handle on the running relay tasks.
#[derive(Debug)]
pub struct RelayPool {
    targets: Vec<RelayTarget>,
    commands: Vec<mpsc::Sender<Command>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stats: Vec<Arc<RelayStats>>,
}

impl RelayPool {
    /// Starts one task per relay; they subscribe with `filters` and report
    /// on the returned receiver. Must be called inside a tokio runtime.
    pub fn start(
        targets: Vec<RelayTarget>,
        filters: Vec<Filter>,
        options: RelayOptions,
    ) -> (RelayPool, mpsc::Receiver<RelayEvent>) {
        let (events_tx, events_rx) = mpsc::channel(256);
        let tls = Arc::new(tls_config(&options.extra_roots));
        let filters = Arc::new(filters);
        let seen = Arc::new(SeenIds::default());
        let mut commands = Vec::with_capacity(targets.len());
        let mut tasks = Vec::with_capacity(targets.len());
        let mut stats = Vec::with_capacity(targets.len());
        for (index, target) in targets.iter().enumerate() {
            let (cmd_tx, cmd_rx) = mpsc::channel(64);
            commands.push(cmd_tx);
            let counters = Arc::new(RelayStats::default());
            stats.push(Arc::clone(&counters));
            let task = RelayTask {
                index,
                target: target.clone(),
                filters: Arc::clone(&filters),
                options: options.clone(),
                tls: Arc::clone(&tls),
                events: events_tx.clone(),
                commands: cmd_rx,
                seen: Arc::clone(&seen),
                stats: counters,
                notices: (Instant::now(), 0),
            };
            tasks.push(tokio::spawn(task.run()));
        }
        (
            RelayPool {
                targets,
                commands,
                tasks,
                stats,
            },
            events_rx,
        )
    }

    /// The relays, in index order.
    pub fn targets(&self) -> &[RelayTarget] {
        &self.targets
    }

    /// The counters of relay `relay` (an index into [`RelayPool::targets`]).
    pub fn stats(&self, relay: usize) -> Option<&RelayStats> {
        self.stats.get(relay).map(AsRef::as_ref)
    }

    /// Sends `event` to every relay (NIP-01 `EVENT`). Relays that are not
    /// connected drop it; answers arrive as [`RelayEvent::Ok`].
    pub fn publish(&self, event: &Event) {
        for tx in &self.commands {
            // A full queue means the relay is stuck; the caller's outbox
            // retries later.
            let _ = tx.try_send(Command::Publish(event.clone()));
        }
    }

    /// Sends `event` to the relays at `relays` (indexes into
    /// [`RelayPool::targets`]; others are ignored), as [`RelayPool::publish`].
    pub fn publish_to(&self, event: &Event, relays: &[usize]) {
        for relay in relays {
            if let Some(tx) = self.commands.get(*relay) {
                let _ = tx.try_send(Command::Publish(event.clone()));
            }
        }
    }

    /// Sends a signed NIP-42 AUTH event to relay `relay`.
    pub fn authenticate(&self, relay: usize, event: Event) {
        if let Some(tx) = self.commands.get(relay) {
            let _ = tx.try_send(Command::Auth(event));
        }
    }
}

impl Drop for RelayPool {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// rustls client configuration: ring provider, TLS 1.2 and 1.3, Mozilla's
/// roots from webpki-roots plus `extra_roots` (DER; one that is not a
/// usable trust anchor is skipped, as the monitor checked them already).
fn tls_config(extra_roots: &[Vec<u8>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        let _ = roots.add(rustls::pki_types::CertificateDer::from(der.clone()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // The ring provider supports the default versions; this branch only
        // keeps the function total.
        Err(_) => rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct RelayTask {
    index: usize,
    target: RelayTarget,
    filters: Arc<Vec<Filter>>,
    options: RelayOptions,
    tls: Arc<rustls::ClientConfig>,
    events: mpsc::Sender<RelayEvent>,
    commands: mpsc::Receiver<Command>,
    seen: Arc<SeenIds>,
    stats: Arc<RelayStats>,
    /// Start of the current [`NOTICE_WINDOW`] and notices sent in it.
    notices: (Instant, u32),
}

impl RelayTask {
    async fn run(mut self) {
        let schedule = Backoff {
            initial: self.options.backoff_initial,
            max: self.options.backoff_max,
        };
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            let reason = match self.connect().await {
                Ok(ws) => {
                    if self
                        .events
                        .send(RelayEvent::Connected { relay: self.index })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    self.session(ws).await
                }
                Err(reason) => reason,
            };
            // A connection that lived a while earns a fresh backoff.
            if started.elapsed() > self.options.backoff_max {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            let retry_in = jitter(schedule.delay(failures));
            let report = RelayEvent::Disconnected {
                relay: self.index,
                reason,
                retry_in,
            };
            if self.events.send(report).await.is_err() {
                return;
            }
            // Commands sent while disconnected are dropped: the outbox
            // retries them.
            let wake = Instant::now() + retry_in;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => break,
                    cmd = self.commands.recv() => if cmd.is_none() { return },
                }
            }
        }
    }

    async fn connect(&self) -> Result<WebSocketStream<Box<dyn Stream>>, String> {
        let target = &self.target;
        let attempt = async {
            let tcp = self.connect_tcp().await?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = if target.tls {
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("invalid TLS server name {}: {e}", target.host))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls));
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake: {e}"))?,
                )
            } else {
                Box::new(tcp)
            };
            let max = self.options.limits.max_message_bytes;
            let config = WebSocketConfig::default()
                .max_message_size(Some(max))
                .max_frame_size(Some(max));
            let (ws, _response) = tokio_tungstenite::client_async_with_config(
                target.url.as_str(),
                stream,
                Some(config),
            )
            .await
            .map_err(|e| format!("websocket handshake: {e}"))?;
            Ok(ws)
        };
        match timeout(self.options.connect_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "connection not established within {} s",
                self.options.connect_timeout.as_secs()
            )),
        }
    }

    /// The relay's addresses: the host itself when it is an IP literal,
    /// else what the resolver answers.
    async fn addresses(&self) -> Result<Vec<IpAddr>, String> {
        let host = self.target.host.as_str();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let mut addresses: Vec<IpAddr> = match &self.options.resolver {
            Resolver::System => tokio::net::lookup_host((host, self.target.port))
                .await
                .map_err(|e| format!("resolve {host}: {e}"))?
                .map(|a| a.ip())
                .collect(),
            Resolver::Delegated(ask) => {
                let (reply, answer) = oneshot::channel();
                let request = ResolveRequest {
                    relay: self.index,
                    reply,
                };
                ask.send(request)
                    .await
                    .map_err(|_| format!("resolve {host}: no resolver"))?;
                answer
                    .await
                    .map_err(|_| format!("resolve {host}: no resolver"))?
                    .map_err(|e| format!("resolve {host}: {e}"))?
            }
        };
        addresses.truncate(MAX_ADDRESSES);
        if addresses.is_empty() {
            return Err(format!("resolve {host}: no address"));
        }
        Ok(addresses)
    }

    /// A TCP connection to the first of the relay's addresses that accepts.
    async fn connect_tcp(&self) -> Result<TcpStream, String> {
        let port = self.target.port;
        let mut last = String::new();
        for ip in self.addresses().await? {
            let address = SocketAddr::new(ip, port);
            match TcpStream::connect(address).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) if self.target.host.parse::<IpAddr>().is_ok() => {
                    last = format!("connect to {address}: {e}");
                }
                Err(e) => last = format!("connect to {} ({address}): {e}", self.target.host),
            }
        }
        Err(last)
    }

    fn subscription(&self) -> Result<String, String> {
        ClientMessage::Req {
            subscription_id: SUBSCRIPTION_ID,
            filters: &self.filters,
        }
        .to_json()
        .map_err(|e| format!("cannot build subscription: {e}"))
    }

    /// Runs one connection until it ends; returns why it ended.
    async fn session(&mut self, mut ws: WebSocketStream<Box<dyn Stream>>) -> String {
        let req = match self.subscription() {
            Ok(req) => req,
            Err(e) => return e,
        };
        if let Err(e) = ws.send(Message::text(req.clone())).await {
            return format!("send subscription: {e}");
        }
        let mut last_heard = Instant::now();
        let mut ping_sent = false;
        // Set when the relay closed our subscription for want of NIP-42
        // authentication: the REQ is sent again after our AUTH.
        let mut resubscribe_after_auth = false;
        loop {
            let idle_deadline = last_heard + self.options.idle_timeout;
            let ping_at = last_heard + self.options.ping_interval;
            tokio::select! {
                frame = ws.next() => {
                    let frame = match frame {
                        None => return "connection closed".into(),
                        Some(Err(e)) => return format!("websocket: {e}"),
                        Some(Ok(frame)) => frame,
                    };
                    last_heard = Instant::now();
                    ping_sent = false;
                    match frame {
                        Message::Text(text) => {
                            RelayStats::add(&self.stats.frames, 1);
                            RelayStats::add(&self.stats.bytes, text.len() as u64);
                            match self.handle_text(text.as_bytes(), &mut resubscribe_after_auth).await {
                                Ok(()) => {}
                                Err(Stop::Receiver) => return "shutting down".into(),
                                Err(Stop::Misbehaved(why)) => return why,
                            }
                        }
                        Message::Binary(_) => {
                            self.notice("binary frame ignored (NIP-01 is text only)".into()).await;
                        }
                        Message::Close(frame) => {
                            return match frame {
                                Some(f) => format!("relay closed the connection: {} {}", f.code, crate::core::error::truncated(&f.reason, 200)),
                                None => "relay closed the connection".into(),
                            };
                        }
                        // tungstenite answers pings itself; pongs only
                        // prove liveness.
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                () = tokio::time::sleep_until(ping_at), if !ping_sent => {
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return format!("send ping: {e}");
                    }
                    ping_sent = true;
                }
                () = tokio::time::sleep_until(idle_deadline) => {
                    return format!("no frame for {} s", self.options.idle_timeout.as_secs());
                }
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else { return "shutting down".into() };
                    let (text, is_auth) = match &cmd {
                        Command::Publish(event) => (ClientMessage::Event(event).to_json(), false),
                        Command::Auth(event) => (ClientMessage::Auth(event).to_json(), true),
                    };
                    let text = match text {
                        Ok(text) => text,
                        Err(e) => {
                            self.notice(format!("cannot serialize command: {e}")).await;
                            continue;
                        }
                    };
                    if let Err(e) = ws.send(Message::text(text)).await {
                        return format!("send: {e}");
                    }
                    if is_auth && resubscribe_after_auth {
                        resubscribe_after_auth = false;
                        if let Err(e) = ws.send(Message::text(req.clone())).await {
                            return format!("send subscription: {e}");
                        }
                    }
                }
            }
        }
    }

    /// Whether one more notice fits this relay's budget (and counts it).
    fn notice_allowed(&mut self) -> bool {
        let (start, sent) = &mut self.notices;
        if start.elapsed() >= NOTICE_WINDOW {
            *start = Instant::now();
            *sent = 0;
        }
        if *sent < NOTICE_BUDGET {
            *sent += 1;
            true
        } else {
            RelayStats::add(&self.stats.notices_suppressed, 1);
            false
        }
    }

    async fn notice(&mut self, message: String) {
        if !self.notice_allowed() {
            return;
        }
        let _ = self
            .events
            .send(RelayEvent::Notice {
                relay: self.index,
                message,
            })
            .await;
    }

    async fn handle_text(&mut self, text: &[u8], resubscribe: &mut bool) -> Result<(), Stop> {
        let relay = self.index;
        let report = match RelayMessage::from_json(text, &self.options.limits) {
            Err(e) => {
                RelayStats::add(&self.stats.malformed, 1);
                RelayEvent::Notice {
                    relay,
                    message: format!("dropped a malformed message: {e}"),
                }
            }
            Ok(RelayMessage::Event {
                subscription_id,
                event,
            }) => {
                // Cheap before expensive: an event outside what we asked for
                // (another subscription, kind or author) or already
                // delivered by a relay of the pool costs no signature check,
                // and no log line per event.
                if subscription_id != SUBSCRIPTION_ID
                    || !self.filters.iter().any(|f| f.matches(&event))
                {
                    RelayStats::add(&self.stats.outside_filter, 1);
                    return Ok(());
                }
                if self.seen.contains(&event.id) {
                    RelayStats::add(&self.stats.duplicate, 1);
                    return Ok(());
                }
                RelayStats::add(&self.stats.verified, 1);
                match event.verify() {
                    Ok(event) => {
                        self.seen.insert(event.id);
                        RelayStats::add(&self.stats.delivered, 1);
                        RelayEvent::Event { relay, event }
                    }
                    Err(e) => {
                        // An honest relay verifies what it stores: this one
                        // is faulty or hostile. Disconnect and back off.
                        RelayStats::add(&self.stats.invalid, 1);
                        return Err(Stop::Misbehaved(format!(
                            "sent an event that does not verify ({e}); disconnecting"
                        )));
                    }
                }
            }
            Ok(RelayMessage::Eose { .. }) => RelayEvent::EndOfStored { relay },
            Ok(RelayMessage::Ok {
                event_id,
                accepted,
                message,
            }) => RelayEvent::Ok {
                relay,
                event_id,
                accepted,
                message,
            },
            Ok(RelayMessage::Auth { challenge }) => RelayEvent::AuthChallenge { relay, challenge },
            Ok(RelayMessage::Closed {
                subscription_id,
                message,
            }) => {
                if subscription_id == SUBSCRIPTION_ID && message.starts_with("auth-required:") {
                    *resubscribe = true;
                }
                RelayEvent::Notice {
                    relay,
                    message: format!("subscription {subscription_id} closed: {message}"),
                }
            }
            Ok(RelayMessage::Notice { message }) => RelayEvent::Notice {
                relay,
                message: format!("NOTICE: {message}"),
            },
        };
        if matches!(report, RelayEvent::Notice { .. }) && !self.notice_allowed() {
            return Ok(());
        }
        self.events.send(report).await.map_err(|_| Stop::Receiver)
    }
}

enum Stop {
    /// The caller dropped its receiver: shut down.
    Receiver,
    /// The relay sent something only a faulty relay sends: disconnect, with
    /// this reason.
    Misbehaved(String),
}

/// `delay` scaled by a random factor in [0.5, 1.0): reconnecting relays
/// spread out instead of retrying in lockstep.
fn jitter(delay: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let r = match getrandom::fill(&mut byte) {
        Ok(()) => u16::from_le_bytes(byte),
        Err(_) => u16::MAX / 2,
    };
    let factor = 0.5 + f64::from(r) / (2.0 * f64::from(u16::MAX) + 2.0);
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(8));
            assert!(
                d >= Duration::from_secs(4) && d < Duration::from_secs(8),
                "{d:?}"
            );
        }
    }

    #[test]
    fn tls_config_has_roots_and_ring() {
        let config = tls_config(&[]);
        // ring's TLS 1.3 suites are all there; no aws-lc provider sneaked in.
        let suites = &config.crypto_provider().cipher_suites;
        assert!(suites
            .iter()
            .any(|s| s.suite() == rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256));
        assert!(config.alpn_protocols.is_empty());
        // The verifier really holds every webpki root (the fallback branch
        // has none). rustls exposes the store only through Debug, as
        // `RootCertStore { roots: "(N roots)" }`; a change of that format
        // fails here rather than passing.
        let shown = format!("{config:?}");
        let counts: Vec<usize> = shown
            .match_indices("RootCertStore { roots: \"(")
            .filter_map(|(at, m)| {
                let rest = shown.get(at + m.len()..)?;
                rest.split(' ').next()?.parse().ok()
            })
            .collect();
        assert_eq!(
            counts,
            [webpki_roots::TLS_SERVER_ROOTS.len()],
            "root stores in {shown}"
        );
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100);
    }
}
