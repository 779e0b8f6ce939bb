//! Shared harness for the end-to-end tests in `tests/tests/`: real relays on
//! loopback (nostr-relay-builder's `LocalRelay`), hostile relays (one that
//! sends garbage, and [`raw_relay`]s that misbehave below the websocket
//! layer), a port where nothing listens, and key and directive fixtures.

#![forbid(unsafe_code)]
// Test harness: a panic is how a broken fixture shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::builder::{PolicyResult, WritePolicy};
use nostr_relay_builder::prelude::{
    LocalRelay, RelayBuilder, RelayBuilderNip42, RelayBuilderNip42Mode,
};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use qube_agent::config::Config;
use qube_agent::core::ack::ACK_KIND;
use qube_agent::core::directive::{Directive, DirectiveRules, DIRECTIVE_KIND};
use qube_agent::monitor::{self, RunOptions};
use qube_agent::relay::{RelayEvent, RelayOptions, RelayTarget};
use qube_agent::Filter;
use qube_agent::{Event, Keys, UnsignedEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A running in-process relay and its `ws://127.0.0.1:PORT` URL.
pub struct TestRelay {
    /// The relay; dropping it shuts it down.
    pub relay: LocalRelay,
    /// Its URL.
    pub url: String,
}

/// Starts an in-process relay on loopback that applies qubestr's publishing
/// rules ([`QubestrPolicy`]); with `nip42_writes`, publishing needs NIP-42
/// authentication (as on qubestr).
pub async fn start_relay(nip42_writes: bool) -> TestRelay {
    start_relay_with(None, nip42_writes, false).await
}

/// [`start_relay`] on `port` when given (for a relay that comes back at the
/// URL it had, e.g. one reserved with [`dead_port_url`]).
pub async fn start_relay_on(port: Option<u16>, nip42_writes: bool) -> TestRelay {
    start_relay_with(port, nip42_writes, false).await
}

/// Starts an in-process relay on loopback that takes only what qubestr
/// takes: kinds 33321 and 3333 under [`QubestrPolicy`]'s rules; any other
/// kind is refused (`OK false`, "blocked: ...").
pub async fn start_strict_relay() -> TestRelay {
    start_relay_with(None, false, true).await
}

async fn start_relay_with(port: Option<u16>, nip42_writes: bool, strict: bool) -> TestRelay {
    // nostr-relay-builder picks a random port without asking the kernel, so
    // on a busy machine it can pick one in use: try again, a few times.
    let mut attempt = 0;
    let relay = loop {
        let mut builder = RelayBuilder::default()
            .addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .write_policy(QubestrPolicy { strict });
        if let Some(port) = port {
            builder = builder.port(port);
        }
        if nip42_writes {
            builder = builder.nip42(RelayBuilderNip42 {
                mode: RelayBuilderNip42Mode::Write,
            });
        }
        let relay = LocalRelay::new(builder);
        match relay.run().await {
            Ok(()) => break relay,
            Err(e) if attempt < 20 && format!("{e:?}").contains("AddrInUse") => attempt += 1,
            Err(e) => panic!("start in-process relay: {e:?}"),
        }
    };
    let url = relay
        .url()
        .await
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    TestRelay { relay, url }
}

/// The publishing rules of the qubestr relay for HyperQube events (`docs/PROTOCOL.md`
/// section 3), so that what our tests publish is what qubestr would accept.
/// Other kinds pass.
#[derive(Debug)]
pub struct QubestrPolicy {
    /// Refuse every kind but 33321 and 3333, as qubestr does.
    pub strict: bool,
}

/// Checks one event against qubestr's rules; `Err` names the first problem.
pub fn qubestr_check(kind: u16, tags: &[Vec<String>], content: &str) -> Result<(), String> {
    let value = |name: &str| {
        tags.iter()
            .find(|t| t.first().map(String::as_str) == Some(name))
            .and_then(|t| t.get(1))
            .map(String::as_str)
    };
    let require = |name: &str| {
        value(name)
            .filter(|v| !v.is_empty())
            .ok_or(format!("missing {name} tag"))
    };
    match kind {
        33321 => {
            if require("d")? != "hyperqube" {
                return Err("d tag must be hyperqube".into());
            }
            let action = require("action")?;
            require("version")?;
            require("network")?;
            if action == "reboot" {
                require("genesis_url")?;
                require("required_by")?
                    .parse::<u64>()
                    .map_err(|_| "bad required_by")?;
            } else if action != "upgrade" {
                return Err(format!("unknown action {action}"));
            }
        }
        3333 => {
            // qubestr checks the first `a` tag.
            let a = require("a")?;
            if !a.starts_with("33321:") || !a.ends_with(":hyperqube") {
                return Err(format!("a tag {a} does not point at a directive"));
            }
            for name in ["version", "network", "action", "node_id"] {
                require(name)?;
            }
            require("action_at")?
                .parse::<u64>()
                .map_err(|_| "bad action_at")?;
            match require("status")? {
                "success" => {}
                "failure" => {
                    require("error")?;
                }
                other => return Err(format!("bad status {other}")),
            }
        }
        _ => return Ok(()),
    }
    if content.is_empty() {
        return Err("empty content".into());
    }
    Ok(())
}

impl WritePolicy for QubestrPolicy {
    fn admit_event<'a>(
        &'a self,
        event: &'a nostr_relay_builder::prelude::Event,
        _addr: &'a std::net::SocketAddr,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PolicyResult> + Send + 'a>> {
        let tags: Vec<Vec<String>> = event.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        let kind = event.kind.as_u16();
        if self.strict && kind != 33321 && kind != 3333 {
            let verdict = PolicyResult::Reject(format!("blocked: kind {kind} is not accepted"));
            return Box::pin(async move { verdict });
        }
        let verdict = match qubestr_check(kind, &tags, &event.content) {
            Ok(()) => PolicyResult::Accept,
            Err(e) => PolicyResult::Reject(format!("invalid: {e}")),
        };
        Box::pin(async move { verdict })
    }
}

/// A `RelayTarget` for a `ws://HOST:PORT` URL.
pub fn target(url: &str) -> RelayTarget {
    let rest = url.strip_prefix("ws://").expect("ws:// URL");
    let (host, port) = rest.rsplit_once(':').expect("host:port");
    RelayTarget {
        url: url.to_owned(),
        host: host.to_owned(),
        port: port.trim_end_matches('/').parse().expect("port"),
        tls: false,
    }
}

/// A loopback port with nothing listening on it.
pub async fn dead_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("ws://127.0.0.1:{port}")
}

/// A hostile relay: accepts websocket connections and answers every frame
/// with `frames` (malformed JSON, wrong shapes, forged events, binary),
/// then keeps the connection open. Returns its URL.
pub async fn garbage_relay(frames: Vec<Message>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let frames = frames.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(_)) = ws.next().await {
                    for f in &frames {
                        if ws.send(f.clone()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    url
}

/// What a [`raw_relay`] does with each connection. Built on a bare
/// `TcpListener`, with the websocket handshake and frames written by hand,
/// for misbehaviour that tungstenite's server cannot express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawBehaviour {
    /// Accepts TCP, reads the client's handshake and never answers it; the
    /// connection stays open until the client gives up.
    NoHandshake,
    /// Completes the handshake, then sends a text frame announcing 60,000
    /// bytes (under the agent's message cap) at one byte per second, so
    /// the frame never ends; it reads and ignores what the client sends.
    Slowloris,
    /// Answers every `REQ` with a text frame that is not UTF-8: a stray
    /// 0xff, an overlong `/` (0xc0 0xaf) and an encoded surrogate
    /// (0xed 0xa0 0x80), the last two accepted by lenient decoders.
    InvalidUtf8,
    /// Answers every `REQ` with a `NOTICE` and never with `EOSE`; the
    /// connection stays up and pings are answered.
    NoEose,
    /// Closes the connection after every `REQ`: with a close frame on even
    /// connections, by dropping the TCP connection (no close frame) on odd
    /// ones.
    CloseAfterReq,
}

/// A running [`raw_relay`]: its URL and what it saw, so a test can show its
/// misbehaviour was met.
#[derive(Debug, Clone)]
pub struct RawRelay {
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    connections: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    reqs: Arc<AtomicUsize>,
}

impl RawRelay {
    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Websocket handshakes answered so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// `REQ` messages received so far.
    pub fn reqs(&self) -> usize {
        self.reqs.load(Ordering::SeqCst)
    }
}

/// Starts a hostile relay on loopback that behaves as `behaviour` says on
/// every connection, until the test ends.
pub async fn raw_relay(behaviour: RawBehaviour) -> RawRelay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = RawRelay {
        url: format!("ws://{}", listener.local_addr().unwrap()),
        connections: Arc::default(),
        handshakes: Arc::default(),
        reqs: Arc::default(),
    };
    let seen = relay.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let n = seen.connections.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                // The client hanging up ends the connection; nothing to report.
                let _ = raw_connection(tcp, behaviour, n, &seen).await;
            });
        }
    });
    relay
}

/// One connection of a [`raw_relay`]; `n` counts connections from 0.
async fn raw_connection(
    mut tcp: TcpStream,
    behaviour: RawBehaviour,
    n: usize,
    seen: &RawRelay,
) -> std::io::Result<()> {
    if behaviour == RawBehaviour::NoHandshake {
        let mut sink = [0u8; 1024];
        while tcp.read(&mut sink).await? > 0 {}
        return Ok(());
    }
    let key = read_handshake(&mut tcp).await?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tcp.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    seen.handshakes.fetch_add(1, Ordering::SeqCst);
    if behaviour == RawBehaviour::Slowloris {
        let (mut read, mut write) = tcp.into_split();
        tokio::spawn(async move {
            let mut sink = [0u8; 1024];
            while matches!(read.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let len: u16 = 60_000;
        let mut frame = vec![0x81, 126];
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(br#"["NOTICE",""#);
        frame.resize(4 + usize::from(len), b'z');
        for byte in frame {
            write.write_all(&[byte]).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        return Ok(());
    }
    loop {
        let (opcode, payload) = read_client_frame(&mut tcp).await?;
        match opcode {
            OP_CLOSE => return Ok(()),
            OP_PING => write_server_frame(&mut tcp, OP_PONG, &payload).await?,
            OP_TEXT if is_req(&payload) => {
                seen.reqs.fetch_add(1, Ordering::SeqCst);
                match behaviour {
                    RawBehaviour::InvalidUtf8 => {
                        write_server_frame(
                            &mut tcp,
                            OP_TEXT,
                            b"[\"NOTICE\",\"\xff \xc0\xaf \xed\xa0\x80\"]",
                        )
                        .await?;
                    }
                    RawBehaviour::NoEose => {
                        write_server_frame(
                            &mut tcp,
                            OP_TEXT,
                            br#"["NOTICE","stored events follow, some day"]"#,
                        )
                        .await?;
                    }
                    RawBehaviour::CloseAfterReq => {
                        if n % 2 == 0 {
                            // Status 1000, normal closure.
                            write_server_frame(&mut tcp, OP_CLOSE, &[0x03, 0xe8]).await?;
                        }
                        return Ok(());
                    }
                    RawBehaviour::NoHandshake | RawBehaviour::Slowloris => {}
                }
            }
            _ => {}
        }
    }
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

/// Whether a client's text message is a NIP-01 `REQ`.
fn is_req(payload: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get(0).and_then(|t| t.as_str()).map(|t| t == "REQ"))
        .unwrap_or(false)
}

/// Reads a client's HTTP upgrade request; returns its `Sec-WebSocket-Key`.
async fn read_handshake(tcp: &mut TcpStream) -> std::io::Result<String> {
    let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned());
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        if request.len() > 16 * 1024 {
            return Err(bad("handshake too long"));
        }
        tcp.read_exact(&mut byte).await?;
        request.extend_from_slice(&byte);
    }
    let request = String::from_utf8(request).map_err(|_| bad("handshake not UTF-8"))?;
    request
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, key)| key.trim().to_owned())
        .ok_or_else(|| bad("no Sec-WebSocket-Key"))
}

/// Reads one (masked) client frame: its opcode and unmasked payload.
async fn read_client_frame(tcp: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await?;
    let [first, second] = head;
    let len = match second & 0x7f {
        126 => u64::from(tcp.read_u16().await?),
        127 => tcp.read_u64().await?,
        n => u64::from(n),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= 1 << 20)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "frame too long"))?;
    let mut mask = [0u8; 4];
    if second & 0x80 != 0 {
        tcp.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await?;
    for (byte, m) in payload.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
    Ok((first & 0x0f, payload))
}

/// Writes one unmasked, final server frame.
async fn write_server_frame(
    tcp: &mut TcpStream,
    opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = vec![0x80 | opcode];
    match (u8::try_from(payload.len()), u16::try_from(payload.len())) {
        (Ok(n), _) if n < 126 => frame.push(n),
        (_, Ok(n)) => {
            frame.push(126);
            frame.extend_from_slice(&n.to_be_bytes());
        }
        _ => {
            frame.push(127);
            frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    tcp.write_all(&frame).await
}

/// Fast timings for tests.
pub fn fast_options() -> RelayOptions {
    RelayOptions {
        connect_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..RelayOptions::default()
    }
}

/// Keys number `n` (1..), fixed so failures reproduce: the secret key is
/// 32 bytes of `n`.
pub fn keys(n: u8) -> Keys {
    Keys::from_secret_bytes(&[n; 32]).expect("fixed test key")
}

/// The fixed `created_at` of events built here unless a test sets one
/// (2023-11-14T22:13:20Z).
pub const T0: u64 = 1_700_000_000;

/// The network of the test fleets, in directives, acks and agent configs.
pub const NETWORK: &str = "hqz";

/// The one builder for the events the tests sign: directives
/// ([`directive`]), acknowledgements ([`ack`]) and any other kind
/// ([`event`]).
///
/// Setters of a named tag ([`EventBuilder::tag`] and the shorthands such as
/// [`EventBuilder::version`]) change the first tag of that name where it is
/// and append a new one at the end otherwise, so the order of the tags is
/// the order of the defaults followed by the order of the calls. Signing
/// borrows the builder, so one builder can sign for several keys.
///
/// ```
/// use qube_e2e::{directive, keys};
/// let event = directive()
///     .version("v2.0.0")
///     .created_at(1_700_000_100)
///     .expiration(1_700_003_600)
///     .sign(&keys(1));
/// assert_eq!(event.tag_value("version"), Some("v2.0.0"));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct EventBuilder {
    kind: u16,
    created_at: u64,
    tags: Vec<Vec<String>>,
    content: Option<String>,
}

/// A kind 33321 upgrade directive: tags `d`=`hyperqube`, `action`=`upgrade`,
/// `version`=`v1.2.3`, `hash`=[`HASH`], `network`=[`NETWORK`] in that order,
/// `created_at` [`T0`], and content `ACTION to VERSION` unless set.
pub fn directive() -> EventBuilder {
    EventBuilder {
        kind: DIRECTIVE_KIND,
        created_at: T0,
        tags: Vec::new(),
        content: None,
    }
    .tag("d", "hyperqube")
    .tag("action", "upgrade")
    .tag("version", "v1.2.3")
    .tag("hash", HASH)
    .tag("network", NETWORK)
}

/// A kind 3333 acknowledgement as the state tests store it: tags
/// `version`=`v1.2.3`, `network`=[`NETWORK`], `action`=`upgrade`,
/// `status`=`success` in that order, `created_at` [`T0`], and content
/// `ACTIONd to VERSION` ("upgraded to v1.2.3") unless set. It has no `a`,
/// `node_id` or `action_at` tag: the agent's real acks come from
/// `qube_agent::core::ack::Ack`.
pub fn ack() -> EventBuilder {
    EventBuilder {
        kind: ACK_KIND,
        created_at: T0,
        tags: Vec::new(),
        content: None,
    }
    .version("v1.2.3")
    .network(NETWORK)
    .action("upgrade")
    .tag("status", "success")
}

/// An event of `kind` with no tags, empty content and `created_at` [`T0`].
pub fn event(kind: u16) -> EventBuilder {
    EventBuilder {
        kind,
        created_at: T0,
        tags: Vec::new(),
        content: Some(String::new()),
    }
}

impl EventBuilder {
    /// Sets the `action` tag (`upgrade`, `reboot`, or anything to test).
    pub fn action(self, action: &str) -> Self {
        self.tag("action", action)
    }

    /// Sets the `version` tag, exactly as signed.
    pub fn version(self, version: &str) -> Self {
        self.tag("version", version)
    }

    /// Sets the `hash` tag.
    pub fn hash(self, hash: &str) -> Self {
        self.tag("hash", hash)
    }

    /// Sets the `network` tag.
    pub fn network(self, network: &str) -> Self {
        self.tag("network", network)
    }

    /// Sets the NIP-40 `expiration` tag.
    pub fn expiration(self, at: u64) -> Self {
        self.tag("expiration", &at.to_string())
    }

    /// Sets the `genesis_url` tag of a reboot.
    pub fn genesis_url(self, url: &str) -> Self {
        self.tag("genesis_url", url)
    }

    /// Sets the `required_by` tag of a reboot.
    pub fn required_by(self, at: u64) -> Self {
        self.tag("required_by", &at.to_string())
    }

    /// Sets `created_at`.
    pub fn created_at(mut self, created_at: u64) -> Self {
        self.created_at = created_at;
        self
    }

    /// Sets the content.
    pub fn content(mut self, content: &str) -> Self {
        self.content = Some(content.to_owned());
        self
    }

    /// Sets tag `name` to `[name, value]`: the first tag of that name is
    /// replaced where it stands, otherwise the tag is appended.
    pub fn tag(mut self, name: &str, value: &str) -> Self {
        let tag = vec![name.to_owned(), value.to_owned()];
        match self
            .tags
            .iter_mut()
            .find(|t| t.first().map(String::as_str) == Some(name))
        {
            Some(existing) => *existing = tag,
            None => self.tags.push(tag),
        }
        self
    }

    /// Appends the tag `[name, values...]` (after any of the same name):
    /// repeatable tags such as `node`, and `crit` with several names.
    pub fn push_tag(mut self, name: &str, values: &[&str]) -> Self {
        let mut tag = vec![name.to_owned()];
        tag.extend(values.iter().map(|v| (*v).to_owned()));
        self.tags.push(tag);
        self
    }

    /// Removes every tag named `name`.
    pub fn without_tag(mut self, name: &str) -> Self {
        self.tags
            .retain(|t| t.first().map(String::as_str) != Some(name));
        self
    }

    /// The value of the first tag named `name`, if any.
    fn value(&self, name: &str) -> &str {
        self.tags
            .iter()
            .find(|t| t.first().map(String::as_str) == Some(name))
            .and_then(|t| t.get(1))
            .map_or("", String::as_str)
    }

    /// The event to sign.
    pub fn unsigned(&self) -> UnsignedEvent {
        let content = match (&self.content, self.kind) {
            (Some(content), _) => content.clone(),
            (None, DIRECTIVE_KIND) => {
                format!("{} to {}", self.value("action"), self.value("version"))
            }
            (None, _) => format!("{}d to {}", self.value("action"), self.value("version")),
        };
        UnsignedEvent {
            created_at: self.created_at,
            kind: self.kind,
            tags: self.tags.clone(),
            content,
        }
    }

    /// Signs the event with `keys`.
    pub fn sign(&self, keys: &Keys) -> Event {
        keys.sign(self.unsigned()).expect("sign test event")
    }

    /// Signs the directive with `keys` and validates it as an agent on
    /// [`NETWORK`] does at `now`, keeping it if expired (as the monitor does,
    /// so that it still supersedes); panics if it is not a valid directive.
    pub fn sign_directive(&self, keys: &Keys, now: u64) -> Directive {
        Directive::from_event_including_expired(self.sign(keys), &DirectiveRules::new(NETWORK), now)
            .expect("a valid test directive")
    }
}

/// Waits up to `within` for the first event `pick` accepts; panics with
/// everything seen otherwise.
pub async fn wait_for<T>(
    rx: &mut mpsc::Receiver<RelayEvent>,
    within: Duration,
    mut pick: impl FnMut(&RelayEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                if let Some(t) = pick(&ev) {
                    return t;
                }
                seen.push(ev);
            }
            Ok(None) => panic!("relay pool stopped; saw {seen:#?}"),
            Err(_) => panic!("timed out after {within:?}; saw {seen:#?}"),
        }
    }
}

/// Current unix time in seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Publishes `event` to the relay at `url`, answering a NIP-42 challenge
/// with `auth` when the relay asks; returns the relay's final `OK`
/// (accepted, message).
pub async fn publish(url: &str, event: &Event, auth: &Keys) -> (bool, String) {
    use qube_agent::relay::RelayPool;
    let (pool, mut rx) = RelayPool::start(
        vec![target(url)],
        vec![qube_agent::Filter {
            kinds: vec![1],
            authors: vec![[0; 32]],
            ..qube_agent::Filter::default()
        }],
        fast_options(),
    );
    let within = Duration::from_secs(10);
    wait_for(&mut rx, within, |e| {
        matches!(e, RelayEvent::EndOfStored { .. }).then_some(())
    })
    .await;
    pool.publish(event);
    let mut challenge: Option<String> = None;
    let mut authed = false;
    loop {
        let got = wait_for(&mut rx, within, |e| match e {
            RelayEvent::Ok { event_id, .. } if *event_id == event.id => Some(e.clone()),
            RelayEvent::AuthChallenge { .. } => Some(e.clone()),
            _ => None,
        })
        .await;
        match got {
            RelayEvent::AuthChallenge { challenge: c, .. } => challenge = Some(c),
            RelayEvent::Ok {
                accepted, message, ..
            } => {
                if accepted || authed || !message.starts_with("auth-required:") {
                    return (accepted, message);
                }
                // Wait for the challenge if it has not come yet.
                let c = match challenge.take() {
                    Some(c) => c,
                    None => {
                        wait_for(&mut rx, within, |e| match e {
                            RelayEvent::AuthChallenge { challenge, .. } => Some(challenge.clone()),
                            _ => None,
                        })
                        .await
                    }
                };
                let auth_event = crate::event(22242)
                    .created_at(now())
                    .tag("relay", url)
                    .tag("challenge", &c)
                    .sign(auth);
                pool.authenticate(0, auth_event);
                authed = true;
                pool.publish(event);
            }
            _ => {}
        }
    }
}

/// Subscribes to `url` with `filter` and returns the first event that
/// arrives within `within`, stored or live.
pub async fn fetch_one(url: &str, filter: qube_agent::Filter, within: Duration) -> Option<Event> {
    use qube_agent::relay::RelayPool;
    let (_pool, mut rx) = RelayPool::start(vec![target(url)], vec![filter], fast_options());
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(RelayEvent::Event { event, .. })) => return Some(event),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Every event the relay at `url` holds for `filter`: those it sent before
/// its EOSE, within `within` (empty when it never got that far).
pub async fn fetch_stored(url: &str, filter: qube_agent::Filter, within: Duration) -> Vec<Event> {
    use qube_agent::relay::RelayPool;
    let (_pool, mut rx) = RelayPool::start(vec![target(url)], vec![filter], fast_options());
    let deadline = tokio::time::Instant::now() + within;
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(RelayEvent::Event { event, .. })) => events.push(event),
            Ok(Some(RelayEvent::EndOfStored { .. })) => return events,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Vec::new(),
        }
    }
}

/// A new file holding `contents` in the system's temporary directory, named
/// `qube-test-RANDOM-name` and removed when the handle is dropped.
pub fn temp_file(name: &str, contents: impl AsRef<[u8]>) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .prefix("qube-test-")
        .suffix(&format!("-{name}"))
        .tempfile()
        .expect("create a temporary file");
    std::fs::write(file.path(), contents).expect("write the temporary file");
    file
}

/// A 64-hex artifact hash for directives.
pub const HASH: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// A node under test: a temporary directory with a node key, a hook that
/// appends a line to a marker file per run, and the agent config.
pub struct Node {
    /// The temporary directory (state, hook, marker).
    pub dir: tempfile::TempDir,
    /// The node key.
    pub node_keys: Keys,
    /// File the hook appends `ACTION VERSION NODE_ID` to.
    pub marker: PathBuf,
}

impl Default for Node {
    /// A fresh node whose upgrade hook only records the run.
    fn default() -> Node {
        Node::with_hook("")
    }
}

impl Node {
    /// A fresh node whose upgrade hook records the run, then runs `extra`.
    pub fn with_hook(extra: &str) -> Node {
        Node::numbered(extra, 42)
    }

    /// As [`Node::with_hook`], with node key [`keys`]`(n)`: nodes of one
    /// fleet on one host.
    pub fn numbered(extra: &str, n: u8) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let node_keys = keys(n);
        let key_path = dir.path().join("node.key");
        std::fs::write(
            &key_path,
            format!("{}\n", hex::encode(node_keys.secret_bytes())),
        )
        .unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let marker = dir.path().join("hook-ran");
        let hook = dir.path().join("upgrade.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\necho \"$QUBE_ACTION $QUBE_VERSION $QUBE_NODE_ID\" >> {}\n{extra}\n",
                marker.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        Node {
            dir,
            node_keys,
            marker,
        }
    }

    /// Config TOML for these relays and voters, plus `extra` lines in
    /// `[upgrade]` and `top` lines at the top level; `current_version` is
    /// v0.0.1 unless `top` sets it.
    pub fn config_toml(
        &self,
        relays: &[&str],
        voters: &[&Keys],
        quorum: usize,
        top: &str,
        upgrade_extra: &str,
    ) -> String {
        let relays: Vec<String> = relays.iter().map(|r| format!("{r:?}")).collect();
        // A known installed version, without which upgrades are refused.
        let installed = if top.contains("current_version") {
            ""
        } else {
            "current_version = \"v0.0.1\"\n"
        };
        let mut toml = format!(
            "network = \"hqz\"\nquorum = {quorum}\nrelays = [{}]\nstate_dir = {:?}\nnode_id = \"pillar-test\"\nnode_key = {:?}\n{installed}{top}\n",
            relays.join(", "),
            self.dir.path().join("state"),
            self.dir.path().join("node.key"),
        );
        for (i, v) in voters.iter().enumerate() {
            toml.push_str(&format!(
                "\n[[follows]]\nname = \"gov{i}\"\nnpub = \"{}\"\nrole = \"voter\"\n",
                hex::encode(v.public_key())
            ));
        }
        toml.push_str(&format!(
            "\n[upgrade]\ncommand = [{:?}]\n{}{upgrade_extra}\n\n[reboot]\ncommand = [\"/bin/false\"]\n",
            self.dir.path().join("upgrade.sh"),
            if upgrade_extra.contains("timeout_secs") { "" } else { "timeout_secs = 10\n" },
        ));
        toml
    }

    /// The parsed config for these relays and voters.
    pub fn config(&self, relays: &[&str], voters: &[&Keys], quorum: usize) -> Config {
        self.config_with(relays, voters, quorum, "", "")
    }

    /// The parsed config with extra top-level and `[upgrade]` lines.
    pub fn config_with(
        &self,
        relays: &[&str],
        voters: &[&Keys],
        quorum: usize,
        top: &str,
        upgrade_extra: &str,
    ) -> Config {
        let toml = self.config_toml(relays, voters, quorum, top, upgrade_extra);
        Config::from_toml_str(&toml)
            .unwrap_or_else(|e| panic!("{e}\n{toml}"))
            .0
    }

    /// Lines the hook wrote so far, one per run.
    pub fn runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.marker)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// The worker restarts the agent running on `node` recorded in its
/// `runtime.json` (0 before any).
pub fn worker_restarts(node: &Node) -> u64 {
    let path = node.dir.path().join("state").join("runtime.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("worker_restarts").and_then(serde_json::Value::as_u64))
        .unwrap_or(0)
}

/// The wall clock in nanoseconds since 1970, as the benches' hooks print
/// it (`date +%s%N`).
pub fn nanos_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The median of `values` (the mean of the middle two for an even count);
/// `NaN` for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let at = |i: usize| values.get(i).copied().unwrap_or(f64::NAN);
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => at(n / 2),
        _ => (at(n / 2 - 1) + at(n / 2)) / 2.0,
    }
}

/// `n` directive events as relays send them (JSON), each signed by a fresh
/// key, with escapes (`\"`, `\n`, `\t`) in the content: the fixture of the
/// parse+verify benches (`agent/benches/parse_verify*.rs`), so every
/// implementation they compare checks the same events.
pub fn parse_verify_events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            directive()
                .version("v1.2.3")
                .hash(&"ab".repeat(32))
                .expiration(1_900_000_000)
                .created_at(T0 + i as u64)
                .content(&format!(
                    "Upgrade to v1.2.3 (\"Aurora\")\nrelease #{i}\tsee notes"
                ))
                .sign(&Keys::generate().expect("OS randomness"))
                .to_json()
        })
        .collect()
}

/// Polls `ok` every 50 ms for up to `within`.
pub async fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ok()
}

/// Filter for the acknowledgements of node `node`.
pub fn ack_filter(node: &[u8; 32]) -> Filter {
    Filter {
        kinds: vec![3333],
        authors: vec![*node],
        ..Filter::default()
    }
}

/// Values (element 1) of every tag named `name`.
pub fn tag_values<'a>(event: &'a Event, name: &'a str) -> Vec<&'a str> {
    event
        .tags_named(name)
        .filter_map(|t| t.get(1).map(String::as_str))
        .collect()
}

/// The sandboxed worker program built by this package (`qube-worker`),
/// next to the test or bench binary's `deps/` directory.
pub fn worker_program() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    dir.join("qube-worker")
}

/// Options for running the agent as in production: the monitor in this
/// process, the worker as a separate, sandboxed process.
pub fn split_options(dry_run: bool) -> RunOptions {
    RunOptions {
        dry_run,
        // These tests are about behaviour, not confinement (see the agent's
        // sandbox tests): on a kernel without Landlock they still run.
        worker: monitor::WorkerMode::Process {
            program: worker_program(),
            args: vec!["worker".into(), "--allow-unsandboxed".into()],
        },
    }
}

/// Runs the agent until aborted: the monitor as a task of this process, the
/// worker as its own sandboxed process (as `qube-agent run` does).
pub fn start_agent(config: Config) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        monitor::run(config, split_options(false)).await.unwrap();
    })
}

/// Runs the agent until aborted with its worker as a task of this process
/// (no process split, no sandbox): for other packages' tests, which cannot
/// build this package's `qube-worker` (feature `in-process`).
#[cfg(feature = "in-process")]
pub fn start_agent_in_process(config: Config) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let options = RunOptions {
            dry_run: false,
            worker: monitor::WorkerMode::InProcess,
        };
        monitor::run(config, options).await.unwrap();
    })
}

/// A certificate authority for the `wss://` tests: a fresh key and a
/// self-signed CA certificate.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

/// A leaf certificate and its key, DER.
pub struct TestLeaf {
    /// The certificate, DER.
    pub cert: Vec<u8>,
    /// Its PKCS#8 private key, DER.
    pub key: Vec<u8>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { key, cert }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate as DER.
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A server certificate for `names`, valid from 2020 to 2100, or with
    /// `expired`, only during 2020.
    pub fn leaf(&self, names: &[&str], expired: bool) -> TestLeaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("leaf params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = if expired {
            rcgen::date_time_ymd(2020, 12, 31)
        } else {
            rcgen::date_time_ymd(2100, 1, 1)
        };
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        TestLeaf {
            cert: cert.der().to_vec(),
            key: key.serialize_der(),
        }
    }
}

/// A TLS terminator on loopback in front of the `ws://` relay at
/// `backend`: it presents `leaf` and forwards the bytes. Returns
/// `wss://localhost:PORT`.
pub async fn tls_terminator(backend: &str, leaf: &TestLeaf) -> String {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let backend = backend
        .strip_prefix("ws://")
        .expect("a ws:// backend")
        .trim_end_matches('/')
        .to_owned();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.cert.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone())),
        )
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(&backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    format!("wss://localhost:{port}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(super::median(Vec::new()).is_nan());
    }
}
