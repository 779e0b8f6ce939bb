//! NIP-46 remote signing: govctl as a NIP-46 *client* asks a remote signer
//! (a bunker, a phone app) that holds the governance key to sign a
//! directive. govctl never sees that key; it checks what comes back
//! ([`check_returned`]) as strictly as a relay's events.
//!
//! The protocol (NIP-46, "Nostr Remote Signing"): govctl makes a throwaway
//! client key per run; requests and responses are kind 24133 events that
//! `p`-tag the other side, their content a NIP-44 (v2) encrypted JSON-RPC
//! message `{"id","method","params"}` / `{"id","result","error"}`. A
//! `bunker://` token names the remote signer's key and relays, and govctl
//! sends `connect` ([`Session::bunker`]); with `nostrconnect://` govctl
//! shows its own URI and QR code and waits for the signer app's `connect`
//! answer carrying the URI's secret ([`Session::pair`], [`pairs_with`]). Then
//! `get_public_key` (the user's key, which may differ from the signer's
//! own) and `sign_event`.
//!
//! The transport is the agent's relay client ([`qube_agent::relay`]: rustls
//! with ring, bounded frames and events, every event's id and BIP-340
//! signature checked before it reaches us); the NIP-44 and NIP-46 types
//! are rust-nostr's (`nostr` 0.45, the workspace's). rust-nostr's
//! `nostr-connect` client is not used: every `nostr-sdk` 0.45 release it
//! depends on is yanked from crates.io, and 0.44 would link a second
//! libsecp256k1 (docs/RELEASE.md, "Dependency policy"). Its 0.44 signer
//! side is what `govctl/tests/remote_signer.rs` checks govctl against.
//!
//! Nothing a signer or relay sends can make govctl panic or write anything:
//! a malformed, undecryptable or foreign message is ignored; a refusal, a
//! wrong answer or silence past `--signer-timeout` is an error.

use std::time::Duration;

use nostr::nips::nip44;
use nostr::nips::nip46::NostrConnectMessage;
use qube_agent::core::message::AUTH_KIND;
use qube_agent::relay::{RelayEvent, RelayPool, RelayTarget};
use qube_agent::{Event, Filter, Keys, Limits, UnsignedEvent, UnverifiedEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};
use crate::keycmd::npub;
use crate::show::{printable, quoted_short};
use crate::signer_uri::{self, Bunker, Pairing};

/// NIP-46 request and response events.
pub const NIP46_KIND: u16 = 24133;

/// The permission govctl asks for: signing directives, nothing else.
pub fn requested_perms() -> String {
    format!("sign_event:{}", qube_agent::core::directive::DIRECTIVE_KIND)
}

/// A remote signer to ask, and how.
pub enum RemoteSigner {
    /// `bunker://`.
    Bunker(Bunker),
    /// `nostrconnect://`.
    Pairing(Pairing),
}

/// The keys a directive may be signed with, and the option that says so
/// (for messages).
pub struct Expected {
    /// 32-byte x-only public keys; never empty.
    pub keys: Vec<[u8; 32]>,
    /// What names them: `"--expect"`, `"the draft's key"`, or the voters
    /// of a config (`"a voter of PATH (--config)"` is how it is shown).
    pub source: String,
}

impl Expected {
    /// One key, named by `source`.
    pub fn key(key: [u8; 32], source: &str) -> Expected {
        Expected {
            keys: vec![key],
            source: source.to_owned(),
        }
    }

    /// Whether `key` may sign.
    pub fn allows(&self, key: &[u8; 32]) -> bool {
        self.keys.contains(key)
    }

    /// What was expected, for "X, not {this}": the npub and its source, or
    /// "a voter of PATH (--config)".
    pub fn describe(&self) -> String {
        match self.keys.as_slice() {
            [one] => format!("{} ({})", npub(one), self.source),
            _ => self.source.clone(),
        }
    }
}

/// Asks `signer` to sign `unsigned` and checks the answer: connects (or
/// pairs), asks `get_public_key`, refuses before asking to sign when that
/// key is not one `expect` allows (`--expect`, `--config`'s voters or the
/// draft's key), then `sign_event` and [`check_returned`]. Each wait
/// (relays, pairing, every answer) is bounded by `timeout`.
///
/// # Errors
/// No relay reachable, a timeout, a refusal by the signer, a key other
/// than `expect`, or an answer that fails [`check_returned`].
pub fn sign(
    signer: &RemoteSigner,
    unsigned: &UnsignedEvent,
    expect: Option<&Expected>,
    timeout: Duration,
) -> Result<Event> {
    crate::relays::runtime()?.block_on(async {
        let mut session = match signer {
            RemoteSigner::Bunker(b) => Session::bunker(b, timeout).await?,
            RemoteSigner::Pairing(p) => Session::pair(p, timeout).await?,
        };
        let user = session.get_public_key().await?;
        eprintln!(
            "remote signer {} signs as {}",
            npub(&session.signer),
            npub(&user)
        );
        if let Some(expect) = expect.filter(|e| !e.allows(&user)) {
            return Err(CliError::failure(format!(
                "the remote signer signs as {}, not {}; nothing was asked or signed",
                npub(&user),
                expect.describe()
            ))
            .hint(format!(
                "connect to the signer that holds the expected key, or check {}",
                expect.source
            )));
        }
        let started = Instant::now();
        let answer = session.sign_event(unsigned, &user).await?;
        let round_trip = started.elapsed();
        let event = check_returned(&answer, unsigned, &user)?;
        eprintln!(
            "the remote signer answered in {} ms",
            round_trip.as_millis()
        );
        Ok(event)
    })
}

/// Checks what a remote signer returned for `sign_event`: our own strict
/// parser and size limits ([`UnverifiedEvent::from_json`] with
/// [`Limits::default`]), then the NIP-01 id and BIP-340 signature, then
/// that it is exactly the event requested (kind, `created_at`, every tag
/// and the content), then that it is signed by `user` (the key the signer
/// reported with `get_public_key`). The agent's directive rules are the
/// caller's ([`crate::propose::check_signed`]).
///
/// # Errors
/// The first check that fails, as a failure (exit status 1) with advice.
pub fn check_returned(json: &str, requested: &UnsignedEvent, user: &[u8; 32]) -> Result<Event> {
    let refuse = |why: String| {
        CliError::failure(format!("refused the remote signer's answer: {why}; nothing was written or published"))
            .hint("the signer (or someone between) did not sign what was asked: check the signer, and do not reuse its answer")
    };
    let unverified = UnverifiedEvent::from_json(json.as_bytes(), &Limits::default())
        .map_err(|e| refuse(format!("not a NIP-01 event: {e}")))?;
    let event = unverified
        .verify()
        .map_err(|e| refuse(format!("its id or BIP-340 signature is invalid: {e}")))?;
    if event.kind != requested.kind {
        return Err(refuse(format!(
            "it is of kind {}, not {}",
            event.kind, requested.kind
        )));
    }
    if event.created_at != requested.created_at {
        return Err(refuse(format!(
            "its created_at is {}, not {}",
            event.created_at, requested.created_at
        )));
    }
    if event.tags != requested.tags {
        let index = event
            .tags
            .iter()
            .zip(&requested.tags)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| event.tags.len().min(requested.tags.len()));
        let show = |tags: &[Vec<String>]| {
            tags.get(index).map_or_else(
                || "nothing".to_owned(),
                |t| {
                    t.iter()
                        .map(|v| quoted_short(v, 80))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            )
        };
        return Err(refuse(format!(
            "it changed tag {index}: asked {}, signed {}",
            show(&requested.tags),
            show(&event.tags)
        )));
    }
    if event.content != requested.content {
        return Err(refuse(format!(
            "it changed the content to {}",
            quoted_short(&event.content, 80)
        )));
    }
    if &event.pubkey != user {
        return Err(refuse(format!(
            "it is signed by {}, but the signer reported {} (get_public_key)",
            npub(&event.pubkey),
            npub(user)
        )));
    }
    Ok(event)
}

/// The QR code of `text` for a terminal (Unicode half blocks, light on
/// dark with a quiet zone), or `None` when it does not fit a QR code.
pub fn qr_code(text: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::L).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Whether `message` from `from` completes a `nostrconnect://` pairing
/// whose one-time secret is `secret` (NIP-46, "Direct connection
/// initiated by the client").
///
/// Two forms are accepted, both only with the secret:
/// - the current one: a response whose `result` is the secret;
/// - the earlier one, still sent by signers built on rust-nostr 0.44 and
///   before: a `connect` request whose parameters are the signer's own key
///   (hex, the event's author) and the secret.
///
/// An `ack` or any other answer without the secret pairs nothing: the
/// secret is what keeps a third party that saw the URI's relay traffic
/// (but not the URI) from posing as the signer.
fn pairs_with(message: &NostrConnectMessage, from: &[u8; 32], secret: &str) -> bool {
    match message {
        NostrConnectMessage::Response {
            result: Some(result),
            error: None,
            ..
        } => result.as_str() == secret,
        NostrConnectMessage::Request { method, params, .. } => {
            method.to_string() == "connect"
                && params.first().map(String::as_str) == Some(hex::encode(from).as_str())
                && params.get(1).map(String::as_str) == Some(secret)
        }
        NostrConnectMessage::Response { .. } => false,
    }
}

/// One NIP-46 conversation: the relays, our throwaway client key, and the
/// remote signer's key once known. No `Debug`: it holds a secret key.
pub struct Session {
    pool: RelayPool,
    rx: mpsc::Receiver<RelayEvent>,
    urls: Vec<String>,
    client: Keys,
    client_secret: nostr::key::SecretKey,
    signer: [u8; 32],
    timeout: Duration,
    last_error: Option<String>,
}

impl Session {
    /// Connects to `bunker`'s relays and sends `connect` with its secret
    /// and `perms` ([`requested_perms`]); the answer must be `ack` or the
    /// secret.
    ///
    /// # Errors
    /// No relay reachable, a timeout, or a refusal.
    pub async fn bunker(bunker: &Bunker, timeout: Duration) -> Result<Session> {
        let mut session = Session::start(&bunker.relays, timeout).await?;
        session.signer = bunker.signer;
        let mut params = vec![hex::encode(bunker.signer)];
        if let Some(secret) = &bunker.secret {
            params.push(secret.to_string());
            params.push(requested_perms());
        }
        let params = Zeroizing::new(params);
        let answer = session.request("connect", params.to_vec()).await?;
        let secret_echo = bunker
            .secret
            .as_ref()
            .is_some_and(|s| s.as_str() == answer.as_str());
        if answer.as_str() != "ack" && !secret_echo {
            return Err(CliError::failure(format!(
                "the remote signer answered connect with {} instead of \"ack\"",
                quoted_short(&answer, 40)
            ))
            .hint("the bunker URI may be stale: ask the signer for a new one"));
        }
        Ok(session)
    }

    /// Client-initiated pairing (NIP-46 `nostrconnect://`): subscribes on
    /// `pairing`'s relays, prints the URI (with a new random secret) and its
    /// QR code on stderr, and waits for the signer's `connect` answer that
    /// carries that secret ([`pairs_with`]); its author is the remote
    /// signer. Answers without it (`ack` included) are ignored: the secret
    /// is what keeps another party from posing as the signer.
    ///
    /// # Errors
    /// No relay reachable, randomness unavailable, or no signer within the
    /// timeout.
    pub async fn pair(pairing: &Pairing, timeout: Duration) -> Result<Session> {
        let mut session = Session::start(&pairing.relays, timeout).await?;
        let mut bytes = Zeroizing::new([0u8; 16]);
        getrandom::fill(bytes.as_mut_slice()).map_err(|e| {
            CliError::failure(format!("cannot make a pairing secret: {e}"))
                .hint("the system random number generator failed; try again")
        })?;
        let secret = Zeroizing::new(hex::encode(bytes.as_slice()));
        let uri = signer_uri::client_uri(&session.client.public_key(), &pairing.relays, &secret);
        eprintln!("scan this with your signer app, or paste it there (it holds a one-time secret; share it with no one else):");
        eprintln!();
        eprintln!("{}", uri.as_str());
        eprintln!();
        if let Some(code) = qr_code(&uri) {
            eprintln!("{code}");
        }
        eprintln!(
            "waiting up to {} s for the signer app to connect through {} ...",
            timeout.as_secs(),
            session.urls.join(", ")
        );
        let deadline = Instant::now() + timeout;
        loop {
            let Some((from, message)) = session.next_message(deadline, None).await else {
                return Err(CliError::failure(format!(
                    "no signer app connected within {} s through {}",
                    timeout.as_secs(),
                    session.urls.join(", ")
                ))
                .hint("scan the URI with the signer app (it must reach the same relay), or give more time with --signer-timeout SECS"));
            };
            if pairs_with(&message, &from, &secret) {
                session.signer = from;
                eprintln!("paired with remote signer {}", npub(&from));
                return Ok(session);
            }
        }
    }

    /// Starts the relay pool, subscribed to kind 24133 events for a fresh
    /// client key, and waits until one relay has the subscription up.
    async fn start(relays: &[RelayTarget], timeout: Duration) -> Result<Session> {
        let client = Keys::generate().map_err(|e| {
            CliError::failure(format!("cannot generate a client key: {e}"))
                .hint("the system random number generator failed; try again")
        })?;
        let secret_bytes = Zeroizing::new(client.secret_bytes());
        let client_secret = nostr::key::SecretKey::from_slice(secret_bytes.as_slice())
            .map_err(|e| CliError::failure(format!("client key: {e}")))?;
        let filter = Filter {
            kinds: vec![NIP46_KIND],
            tags: [('p', vec![hex::encode(client.public_key())])].into(),
            since: Some(qube_agent::now().saturating_sub(60)),
            ..Filter::default()
        };
        let (pool, rx) = RelayPool::start(
            relays.to_vec(),
            vec![filter],
            crate::relays::options(timeout),
        );
        let mut session = Session {
            pool,
            rx,
            urls: relays.iter().map(|t| t.url.clone()).collect(),
            client,
            client_secret,
            signer: [0; 32],
            timeout,
            last_error: None,
        };
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, session.rx.recv()).await {
                Ok(Some(RelayEvent::EndOfStored { .. })) => return Ok(session),
                Ok(Some(other)) => session.housekeeping(other),
                Ok(None) | Err(_) => {
                    return Err(CliError::failure(format!(
                        "cannot reach the signer's relay {} within {} s{}",
                        session.urls.join(", "),
                        timeout.as_secs(),
                        session
                            .last_error
                            .as_deref()
                            .map_or_else(String::new, |e| format!(": {}", printable(e, 200)))
                    ))
                    .hint("check the relay in the signer URI and the network, or give more time with --signer-timeout SECS"));
                }
            }
        }
    }

    /// Relay reports that are not NIP-46 messages: NIP-42 challenges are
    /// answered with the client key; failures are remembered for messages.
    fn housekeeping(&mut self, report: RelayEvent) {
        match report {
            RelayEvent::AuthChallenge { relay, challenge } => {
                let Some(url) = self.urls.get(relay) else {
                    return;
                };
                let auth = self.client.sign(UnsignedEvent {
                    created_at: qube_agent::now(),
                    kind: AUTH_KIND,
                    tags: vec![
                        vec!["relay".to_owned(), url.clone()],
                        vec!["challenge".to_owned(), challenge],
                    ],
                    content: String::new(),
                });
                if let Ok(auth) = auth {
                    self.pool.authenticate(relay, auth);
                }
            }
            RelayEvent::Disconnected { relay, reason, .. } => {
                let url = self.urls.get(relay).cloned().unwrap_or_default();
                self.last_error = Some(format!("{url}: {reason}"));
            }
            _ => {}
        }
    }

    /// The next NIP-46 message to us before `deadline`, with its author;
    /// `from` narrows it to one author. Events that are not ours, do not
    /// decrypt or do not parse are skipped; a relay's refusal (`OK false`)
    /// of our request is remembered for the timeout message.
    async fn next_message(
        &mut self,
        deadline: Instant,
        from: Option<[u8; 32]>,
    ) -> Option<([u8; 32], NostrConnectMessage)> {
        loop {
            let report = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .ok()
                .flatten()?;
            let RelayEvent::Event { event, .. } = report else {
                if let RelayEvent::Ok {
                    accepted: false,
                    message,
                    relay,
                    ..
                } = &report
                {
                    let url = self.urls.get(*relay).cloned().unwrap_or_default();
                    self.last_error = Some(format!("{url} refused the request: {message}"));
                }
                self.housekeeping(report);
                continue;
            };
            if let Some(message) = self.open(&event, from) {
                return Some((event.pubkey, message));
            }
        }
    }

    /// Decrypts and parses one event addressed to us, if it is one.
    fn open(&self, event: &Event, from: Option<[u8; 32]>) -> Option<NostrConnectMessage> {
        let ours = hex::encode(self.client.public_key());
        if event.kind != NIP46_KIND
            || from.is_some_and(|f| f != event.pubkey)
            || !event
                .tags_named("p")
                .any(|t| t.get(1).is_some_and(|p| *p == ours))
        {
            return None;
        }
        let author = nostr::key::PublicKey::from_slice(&event.pubkey).ok()?;
        let plain =
            Zeroizing::new(nip44::decrypt(&self.client_secret, &author, &event.content).ok()?);
        NostrConnectMessage::from_json(plain.as_bytes()).ok()
    }

    /// Sends one request to the signer and returns its `result`.
    async fn request(&mut self, method: &str, params: Vec<String>) -> Result<Zeroizing<String>> {
        let mut id_bytes = [0u8; 8];
        getrandom::fill(&mut id_bytes)
            .map_err(|e| CliError::failure(format!("cannot make a request id: {e}")))?;
        let id = hex::encode(id_bytes);
        let json = Zeroizing::new(
            serde_json::json!({ "id": id, "method": method, "params": params }).to_string(),
        );
        drop(Zeroizing::new(params));
        let signer = nostr::key::PublicKey::from_slice(&self.signer)
            .map_err(|e| CliError::failure(format!("remote signer key: {e}")))?;
        let content = nip44::encrypt(
            &self.client_secret,
            &signer,
            json.as_bytes(),
            nip44::Version::V2,
        )
        .map_err(|e| CliError::failure(format!("cannot encrypt the request (NIP-44): {e}")))?;
        let event = self
            .client
            .sign(UnsignedEvent {
                created_at: qube_agent::now(),
                kind: NIP46_KIND,
                tags: vec![vec!["p".to_owned(), hex::encode(self.signer)]],
                content,
            })
            .map_err(|e| CliError::failure(format!("cannot sign the request: {e}")))?;
        self.pool.publish(&event);
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some((_, message)) = self.next_message(deadline, Some(self.signer)).await else {
                return Err(CliError::failure(format!(
                    "the remote signer did not answer {method} within {} s{}",
                    self.timeout.as_secs(),
                    self.last_error
                        .as_deref()
                        .map_or_else(String::new, |e| format!(" ({})", printable(e, 200)))
                ))
                .hint(format!(
                    "is it online and connected to {}? Approve the request in the signer app if it asks, or give more time with --signer-timeout SECS",
                    self.urls.join(", ")
                )));
            };
            let NostrConnectMessage::Response {
                id: rid,
                result,
                error,
            } = message
            else {
                continue;
            };
            if rid != id {
                continue;
            }
            match (result, error) {
                (Some(result), error) if result == "auth_url" => {
                    eprintln!(
                        "the remote signer asks you to approve govctl at: {}",
                        printable(error.as_deref().unwrap_or("(no URL given)"), 300)
                    );
                }
                (_, Some(error)) => {
                    return Err(CliError::failure(format!(
                        "the remote signer refused {method}: {}",
                        printable(&error, 200)
                    ))
                    .hint(format!(
                        "allow govctl ({}) in the signer app, then run the command again",
                        requested_perms()
                    )));
                }
                (Some(result), None) => return Ok(Zeroizing::new(result)),
                (None, None) => {
                    return Err(CliError::failure(format!(
                        "the remote signer answered {method} with neither a result nor an error"
                    )));
                }
            }
        }
    }

    /// `get_public_key`: the user's key, 64 hex characters.
    async fn get_public_key(&mut self) -> Result<[u8; 32]> {
        let answer = self.request("get_public_key", Vec::new()).await?;
        crate::draft::parse_hex32(&answer).ok_or_else(|| {
            CliError::failure(format!(
                "the remote signer's get_public_key answer {} is not 64 hex characters",
                quoted_short(&answer, 80)
            ))
        })
    }

    /// `sign_event` of `unsigned` (with `pubkey`, which signers built on
    /// rust-nostr require); the answer unchecked.
    async fn sign_event(
        &mut self,
        unsigned: &UnsignedEvent,
        user: &[u8; 32],
    ) -> Result<Zeroizing<String>> {
        let param = serde_json::json!({
            "pubkey": hex::encode(user),
            "created_at": unsigned.created_at,
            "kind": unsigned.kind,
            "tags": unsigned.tags,
            "content": unsigned.content,
        })
        .to_string();
        eprintln!("asked the remote signer to sign; approve it there if it asks");
        self.request("sign_event", vec![param]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsigned() -> UnsignedEvent {
        UnsignedEvent {
            created_at: 1_800_000_000,
            kind: 33321,
            tags: vec![
                vec!["d".to_owned(), "hyperqube".to_owned()],
                vec!["version".to_owned(), "v1.2.3".to_owned()],
            ],
            content: "c".to_owned(),
        }
    }

    #[test]
    fn check_returned_takes_exactly_what_was_asked() {
        let user = Keys::generate().unwrap();
        let good = user.sign(unsigned()).unwrap();
        let ok = check_returned(&good.to_json(), &unsigned(), &user.public_key()).unwrap();
        assert_eq!(ok, good);

        let refused = |json: &str, why: &str| {
            let err = check_returned(json, &unsigned(), &user.public_key()).unwrap_err();
            assert_eq!(err.code(), crate::error::EXIT_FAILURE);
            assert!(err.message().contains(why), "{why}: {err}");
            assert!(err.message().contains("nothing was written"), "{err}");
        };
        let other = Keys::generate().unwrap();
        refused(&other.sign(unsigned()).unwrap().to_json(), "signed by npub");
        let mut changed = unsigned();
        changed.tags[1][1] = "v6.6.6".to_owned();
        refused(
            &user.sign(changed).unwrap().to_json(),
            "changed tag 1: asked \"version\" \"v1.2.3\", signed \"version\" \"v6.6.6\"",
        );
        let mut extra = unsigned();
        extra.tags.push(vec!["x".to_owned()]);
        refused(
            &user.sign(extra).unwrap().to_json(),
            "changed tag 2: asked nothing",
        );
        let mut later = unsigned();
        later.created_at += 1;
        refused(&user.sign(later).unwrap().to_json(), "created_at");
        let mut kind = unsigned();
        kind.kind = 1;
        refused(&user.sign(kind).unwrap().to_json(), "kind 1");
        let mut content = unsigned();
        content.content = "other".to_owned();
        refused(&user.sign(content).unwrap().to_json(), "content");
        // A forged signature: the valid event with another event's sig.
        let forged = good.to_json().replace(
            &hex::encode(good.sig),
            &hex::encode(other.sign(unsigned()).unwrap().sig),
        );
        refused(&forged, "BIP-340");
        refused("{\"id\":1}", "not a NIP-01 event");
        refused(&"[".repeat(100_000), "not a NIP-01 event");
    }

    #[test]
    fn pairing_needs_the_secret_in_either_connect_form() {
        let from = [7u8; 32];
        let from_hex = hex::encode(from);
        let response = |result: Option<&str>, error: Option<&str>| NostrConnectMessage::Response {
            id: "1".to_owned(),
            result: result.map(str::to_owned),
            error: error.map(str::to_owned),
        };
        let request = |method: &str, params: &[&str]| {
            NostrConnectMessage::from_json(
                serde_json::json!({ "id": "2", "method": method, "params": params }).to_string(),
            )
            .unwrap()
        };
        assert!(pairs_with(&response(Some("s3cret"), None), &from, "s3cret"));
        assert!(pairs_with(
            &request("connect", &[&from_hex, "s3cret"]),
            &from,
            "s3cret"
        ));
        for refused in [
            response(Some("ack"), None),
            response(Some("other"), None),
            response(Some("s3cret"), Some("no")),
            response(None, Some("s3cret")),
            request("connect", &[&from_hex]),
            request("connect", &[&from_hex, "other"]),
            // The key in the request must be the author's.
            request("connect", &[&hex::encode([8u8; 32]), "s3cret"]),
            request("get_public_key", &[&from_hex, "s3cret"]),
        ] {
            assert!(!pairs_with(&refused, &from, "s3cret"), "{refused:?}");
        }
    }

    #[test]
    fn qr_code_renders_a_nostrconnect_uri() {
        let uri = format!(
            "nostrconnect://{}?relay=wss%3A%2F%2Frelay.example&secret={}&perms=sign_event%3A33321&name=govctl&metadata=%7B%22name%22%3A%22govctl%22%7D",
            "ab".repeat(32),
            "cd".repeat(16)
        );
        let code = qr_code(&uri).unwrap();
        assert!(code.lines().count() > 20, "{code}");
        assert!(code.contains('█') || code.contains('▀'), "{code}");
        assert!(qr_code(&"x".repeat(10_000)).is_none());
    }
}
