//! Shared harness for the end-to-end tests in `tests/tests/`: real relays on
//! loopback (nostr-relay-builder's `LocalRelay`), a hostile relay that sends
//! garbage, a port where nothing listens, and key and directive fixtures.

#![forbid(unsafe_code)]
// Test harness: a panic is how a broken fixture shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::builder::{PolicyResult, WritePolicy};
use nostr_relay_builder::prelude::{
    LocalRelay, RelayBuilder, RelayBuilderNip42, RelayBuilderNip42Mode,
};
use qube_agent::relay::{RelayEvent, RelayOptions, RelayTarget};
use qube_agent::{Event, Keys, UnsignedEvent};
use tokio::net::TcpListener;
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
    let mut builder = RelayBuilder::default()
        .addr(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .write_policy(QubestrPolicy);
    if nip42_writes {
        builder = builder.nip42(RelayBuilderNip42 {
            mode: RelayBuilderNip42Mode::Write,
        });
    }
    let relay = LocalRelay::new(builder);
    relay.run().await.expect("start in-process relay");
    let url = relay
        .url()
        .await
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    TestRelay { relay, url }
}

/// The publishing rules of the qubestr relay for HyperQube events (DESIGN.md
/// section 2), so that what our tests publish is what qubestr would accept.
/// Other kinds pass.
#[derive(Debug)]
pub struct QubestrPolicy;

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
        let verdict = match qubestr_check(event.kind.as_u16(), &tags, &event.content) {
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

/// Fast timings for tests.
pub fn fast_options() -> RelayOptions {
    RelayOptions {
        connect_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..RelayOptions::default()
    }
}

/// Keys number `n` (1..), fixed so failures reproduce.
pub fn keys(n: u8) -> Keys {
    Keys::from_secret_bytes(&[n; 32]).expect("fixed test key")
}

/// A kind 33321 upgrade directive signed by `keys`.
pub fn directive(keys: &Keys, created_at: u64, version: &str, hash: &str, network: &str) -> Event {
    keys.sign(UnsignedEvent {
        created_at,
        kind: 33321,
        tags: vec![
            vec!["d".into(), "hyperqube".into()],
            vec!["action".into(), "upgrade".into()],
            vec!["version".into(), version.into()],
            vec!["hash".into(), hash.into()],
            vec!["network".into(), network.into()],
        ],
        content: format!("upgrade to {version}"),
    })
    .expect("sign directive")
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
