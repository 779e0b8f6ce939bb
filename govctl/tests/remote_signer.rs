//! NIP-46 remote signing, end to end: the real govctl binary asks a remote
//! signer that runs in this test, on the in-process relay, and holds a
//! governance key govctl never sees.
//!
//! Two kinds of signer answer NIP-46 requests (kind 24133, NIP-44 v2):
//! rust-nostr's own remote signer (`nostr-connect` 0.44's
//! `NostrConnectRemoteSigner`, a signer written by others, for the quorum
//! test and a pairing), and signers written here on rust-nostr's NIP-46
//! types, which can misbehave: sign with another key or change a tag.
//! govctl must refuse those before it writes or publishes anything, and a
//! running qube-agent must count what the honest ones sign.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{runtime, start_relay, stderr, stdout, Env};
use nostr::event::SignEvent;
use nostr::nips::nip44;
use nostr::nips::nip46::{NostrConnectMessage, NostrConnectRequest};
use qube_agent::relay::{RelayEvent, RelayPool};
use qube_agent::{Filter, Keys, UnsignedEvent};

/// How the test signer answers `sign_event`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Behaviour {
    /// Signs exactly what was asked, with the user's key (rust-nostr).
    Honest,
    /// Signs what was asked, with a key other than the one it reports.
    OtherKey,
    /// Signs with the user's key after changing the `version` tag.
    AlterTag,
}

/// A NIP-46 remote signer on the test relay: written here
/// ([`start_signer`]) or rust-nostr's ([`start_rust_nostr_signer`]).
struct Signer {
    /// The remote signer's own key (in the bunker URI).
    signer: Keys,
    /// The governance key it signs with (reported by get_public_key).
    user: Keys,
    /// Methods of the requests it received, in order.
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Signer {
    /// `bunker://SIGNER?relay=URL&secret=SECRET`.
    fn bunker_uri(&self, relay: &str, secret: &str) -> String {
        format!(
            "bunker://{}?relay={relay}&secret={secret}",
            hex::encode(self.signer.public_key())
        )
    }

    fn user_npub(&self) -> String {
        qube_agent::core::nip19::encode_npub(&self.user.public_key())
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Signer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn nostr_secret(keys: &Keys) -> nostr::key::SecretKey {
    nostr::key::SecretKey::from_slice(&keys.secret_bytes()).unwrap()
}

fn nostr_public(key: &[u8; 32]) -> nostr::key::PublicKey {
    nostr::key::PublicKey::from_slice(key).unwrap()
}

/// A NIP-46 message from `from` to `to`: kind 24133, `p`-tagged, NIP-44.
fn envelope(from: &Keys, to: &[u8; 32], message: &NostrConnectMessage) -> qube_agent::Event {
    let content = nip44::encrypt(
        &nostr_secret(from),
        &nostr_public(to),
        message.as_json(),
        nip44::Version::V2,
    )
    .unwrap();
    from.sign(UnsignedEvent {
        created_at: qube_agent::now(),
        kind: 24133,
        tags: vec![vec!["p".to_owned(), hex::encode(to)]],
        content,
    })
    .unwrap()
}

/// The answer of the signer to one request, by behaviour.
fn answer(
    behaviour: Behaviour,
    user: &Keys,
    secret: Option<&str>,
    signer_hex: &str,
    message: NostrConnectMessage,
) -> (String, Option<String>, Option<String>) {
    let NostrConnectMessage::Request { id, method, params } = message.clone() else {
        panic!("not a request");
    };
    let method_name = method.to_string();
    let (result, error) = match method_name.as_str() {
        "connect" => {
            let ok = params.first().map(String::as_str) == Some(signer_hex)
                && params.get(1).map(String::as_str) == secret;
            if ok {
                (Some("ack".to_owned()), None)
            } else {
                (None, Some("invalid secret".to_owned()))
            }
        }
        "get_public_key" => (Some(hex::encode(user.public_key())), None),
        "sign_event" => {
            // rust-nostr parses the request exactly as its signer would.
            let Ok(NostrConnectRequest::SignEvent(unsigned)) = message.to_request() else {
                panic!("sign_event request rust-nostr cannot parse: {params:?}");
            };
            let json = match behaviour {
                Behaviour::Honest => nostr::key::Keys::new(nostr_secret(user))
                    .sign_event(unsigned)
                    .unwrap()
                    .as_json(),
                Behaviour::OtherKey | Behaviour::AlterTag => {
                    let mut request: UnsignedEvent = UnsignedEvent {
                        created_at: unsigned.created_at.as_secs(),
                        kind: unsigned.kind.as_u16(),
                        tags: unsigned
                            .tags
                            .iter()
                            .map(|t| t.as_slice().to_vec())
                            .collect(),
                        content: unsigned.content.clone(),
                    };
                    let key = if behaviour == Behaviour::OtherKey {
                        Keys::generate().unwrap()
                    } else {
                        for tag in &mut request.tags {
                            if tag[0] == "version" {
                                tag[1] = "v6.6.6".to_owned();
                            }
                        }
                        Keys::from_secret_bytes(&user.secret_bytes()).unwrap()
                    };
                    key.sign(request).unwrap().to_json()
                }
            };
            (Some(json), None)
        }
        other => (None, Some(format!("{other} is not supported"))),
    };
    (id, result, error)
}

/// Starts a remote signer on `relay` (subscribed before this returns);
/// with `pairing` = (client key, secret) it first sends the `connect`
/// response of a `nostrconnect://` URI.
async fn start_signer(
    relay: &str,
    behaviour: Behaviour,
    secret: Option<&str>,
    pairing: Option<([u8; 32], String)>,
) -> Signer {
    let signer = Keys::generate().unwrap();
    let user = Keys::generate().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let filter = Filter {
        kinds: vec![24133],
        tags: [('p', vec![hex::encode(signer.public_key())])].into(),
        since: Some(qube_agent::now() - 10),
        ..Filter::default()
    };
    let (pool, mut rx) = RelayPool::start(
        vec![qube_e2e::target(relay)],
        vec![filter],
        qube_e2e::fast_options(),
    );
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(RelayEvent::EndOfStored { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("signer relay: {other:?}"),
        }
    }
    if let Some((client, secret)) = &pairing {
        let connect = NostrConnectMessage::Response {
            id: "pairing-1".to_owned(),
            result: Some(secret.clone()),
            error: None,
        };
        pool.publish(&envelope(&signer, client, &connect));
    }
    let (signer_copy, user_copy) = (
        Keys::from_secret_bytes(&signer.secret_bytes()).unwrap(),
        Keys::from_secret_bytes(&user.secret_bytes()).unwrap(),
    );
    let secret = secret.map(str::to_owned);
    let seen_copy = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let signer_hex = hex::encode(signer_copy.public_key());
        while let Some(report) = rx.recv().await {
            let RelayEvent::Event { event, .. } = report else {
                continue;
            };
            let Ok(plain) = nip44::decrypt(
                &nostr_secret(&signer_copy),
                &nostr_public(&event.pubkey),
                &event.content,
            ) else {
                continue;
            };
            let Ok(message) = NostrConnectMessage::from_json(plain) else {
                continue;
            };
            if let NostrConnectMessage::Request { method, .. } = &message {
                seen_copy.lock().unwrap().push(method.to_string());
            } else {
                continue;
            }
            let (id, result, error) = answer(
                behaviour,
                &user_copy,
                secret.as_deref(),
                &signer_hex,
                message,
            );
            let response = NostrConnectMessage::Response { id, result, error };
            pool.publish(&envelope(&signer_copy, &event.pubkey, &response));
        }
    });
    Signer {
        signer,
        user,
        seen,
        task,
    }
}

/// Approves everything, as a user tapping "allow" would, and keeps the
/// methods asked.
struct ApproveAll(Arc<Mutex<Vec<String>>>);

impl nostr_connect::prelude::NostrConnectSignerActions for ApproveAll {
    fn approve(
        &self,
        _client: &nostr_connect::prelude::PublicKey,
        request: &nostr_connect::prelude::NostrConnectRequest,
    ) -> bool {
        self.0.lock().unwrap().push(request.method().to_string());
        true
    }
}

/// The rust-nostr (0.44) form of a key.
fn rust_nostr_keys(keys: &Keys) -> nostr_connect::prelude::Keys {
    nostr_connect::prelude::Keys::parse(&hex::encode(keys.secret_bytes())).unwrap()
}

/// Starts rust-nostr's own remote signer (`nostr-connect` 0.44, the
/// signer side of signer apps built on rust-nostr) on `relay`, approving
/// every request: for a bunker URI with
/// `secret` when `client_uri` is `None`, else paired with the
/// `nostrconnect://` URI a client printed. For a bunker, returns once the
/// signer answers a `ping` (its subscription is up: NIP-46 events are
/// ephemeral, a request sent before would be lost); the ping is not in
/// `seen`.
async fn start_rust_nostr_signer(
    relay: &str,
    secret: Option<&str>,
    client_uri: Option<&str>,
) -> Signer {
    use nostr_connect::prelude::{NostrConnectKeys, NostrConnectRemoteSigner, NostrConnectURI};
    let signer = Keys::generate().unwrap();
    let user = Keys::generate().unwrap();
    let keys = NostrConnectKeys {
        signer: rust_nostr_keys(&signer),
        user: rust_nostr_keys(&user),
    };
    let remote = match client_uri {
        None => NostrConnectRemoteSigner::new(keys, [relay], secret.map(str::to_owned), None),
        Some(uri) => NostrConnectRemoteSigner::from_uri(
            NostrConnectURI::parse(uri).unwrap(),
            keys,
            secret.map(str::to_owned),
            None,
        ),
    }
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let actions = ApproveAll(Arc::clone(&seen));
    let task = tokio::spawn(async move {
        remote.serve(actions).await.unwrap();
    });
    if client_uri.is_none() {
        wait_for_pong(relay, &signer).await;
        seen.lock().unwrap().clear();
    }
    Signer {
        signer,
        user,
        seen,
        task,
    }
}

/// Sends `ping` requests to `signer` from a throwaway key until one is
/// answered `pong` (10 s at most).
async fn wait_for_pong(relay: &str, signer: &Keys) {
    let probe = Keys::generate().unwrap();
    let (pool, mut rx) = RelayPool::start(
        vec![qube_e2e::target(relay)],
        vec![Filter {
            kinds: vec![24133],
            tags: [('p', vec![hex::encode(probe.public_key())])].into(),
            ..Filter::default()
        }],
        qube_e2e::fast_options(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let ping =
        NostrConnectMessage::from_json(r#"{"id":"probe","method":"ping","params":[]}"#).unwrap();
    while Instant::now() < deadline {
        pool.publish(&envelope(&probe, &signer.public_key(), &ping));
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                report = rx.recv() => {
                    let Some(RelayEvent::Event { event, .. }) = report else { continue };
                    let Ok(plain) = nip44::decrypt(
                        &nostr_secret(&probe),
                        &nostr_public(&event.pubkey),
                        &event.content,
                    ) else {
                        continue;
                    };
                    if plain.contains("pong") {
                        return;
                    }
                }
            }
        }
    }
    panic!("rust-nostr's signer never answered ping");
}

/// `propose upgrade v1.2.3 --hash HASH --signer-timeout 20` arguments
/// with `extra` after them.
fn propose_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = common::propose_v123_args(&["--signer-timeout", "20"]);
    args.extend(extra);
    args
}

/// The directives the relay holds.
fn stored_directives(rt: &tokio::runtime::Runtime, url: &str) -> Vec<qube_agent::Event> {
    rt.block_on(qube_e2e::fetch_stored(
        url,
        Filter {
            kinds: vec![33321],
            ..Filter::default()
        },
        Duration::from_secs(10),
    ))
}

/// The round trip govctl reports ("the remote signer answered in N ms").
fn round_trip_ms(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("the remote signer answered in "))
        .unwrap_or_else(|| panic!("no round trip in:\n{stderr}"));
    line.trim_end_matches(" ms").parse().unwrap()
}

/// The acceptance test: a directive signed by a remote signer and one
/// signed with a key file make a 2-of-3 quorum on a running agent, whose
/// hook runs once; one of them alone does not.
#[test]
fn bunker_signed_directive_counts_toward_the_quorum() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    // rust-nostr's own remote signer, not one written for this test.
    let signer = rt.block_on(start_rust_nostr_signer(
        &relay.url,
        Some("s3cr3t-one"),
        None,
    ));
    let files = common::voters(&env, &["ann", "ben"]);
    let carol = signer.user_npub();
    let voters = [
        (files[0].0.as_str(), files[0].1.as_str()),
        (files[1].0.as_str(), files[1].1.as_str()),
        ("carol", carol.as_str()),
    ];

    // A running agent: quorum 2 of ann, ben and carol (the remote key).
    let (marker, hook) = common::version_hook(&env);
    let mut toml = format!(
        "network = \"hqz\"\nquorum = 2\nrelays = [\"{}\"]\nstate_dir = {:?}\ncurrent_version = \"v0.0.1\"\n",
        relay.url,
        env.path("agent-state")
    );
    for (name, npub) in voters {
        toml.push_str(&format!(
            "[[follows]]\nname = \"{name}\"\nnpub = \"{npub}\"\nrole = \"voter\"\n"
        ));
    }
    toml.push_str(&format!("[upgrade]\ncommand = [{hook:?}]\n"));
    let config = qube_agent::config::Config::from_toml_str(&toml).unwrap().0;
    let agent = {
        let _runtime = rt.enter();
        qube_e2e::start_agent_in_process(config)
    };

    // carol's vote, signed by the remote signer and published by govctl.
    let uri = signer.bunker_uri(&relay.url, "s3cr3t-one");
    let out = env.run(&propose_args(&[
        "--signer", &uri, "--expect", &carol, "--relay", &relay.url,
    ]));
    let err = stderr(&out);
    common::assert_ok(&out, &["propose", "--signer", "bunker"]);
    assert!(stdout(&out).contains("accepted"), "{}", stdout(&out));
    // The review is shown for remote signing too, every tag in full.
    assert!(err.contains("about to sign this directive"), "{err}");
    assert!(err.contains("tags:       6, every value in full:"), "{err}");
    assert!(err.contains("  version    \"v1.2.3\""), "{err}");
    assert!(err.contains(&format!("signs as {carol}")), "{err}");
    assert!(!err.contains("s3cr3t-one"), "the secret leaked:\n{err}");
    assert_eq!(
        signer.seen(),
        ["connect", "get_public_key", "sign_event"],
        "{err}"
    );
    let rtt = round_trip_ms(&err);
    println!("NIP-46 sign_event round trip on loopback: {rtt} ms");

    let stored = stored_directives(&rt, &relay.url);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].pubkey, signer.user.public_key());

    // One vote of two: the hook does not run.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!marker.exists(), "the agent acted on one vote of two");

    // ann's file-key vote for the same upgrade completes the quorum.
    common::propose_v123(&env, "ann", &[&relay.url], &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "the agent did not count the remote-signed directive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "v1.2.3\n");
    agent.abort();
}

/// A signer that signs with another key, or changes a tag, is refused
/// before anything is written or published; so is one whose key is not
/// `--expect` (before it is asked to sign). Each case has an honest
/// control on the same relay.
#[test]
fn misbehaving_signers_are_refused_before_anything_is_written_or_published() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    for (behaviour, why) in [
        (Behaviour::OtherKey, "refused the remote signer's answer: it is signed by npub1"),
        (
            Behaviour::AlterTag,
            "refused the remote signer's answer: it changed tag 2: asked \"version\" \"v1.2.3\", signed \"version\" \"v6.6.6\"",
        ),
    ] {
        let signer = rt.block_on(start_signer(&relay.url, behaviour, Some("pw"), None));
        let uri = signer.bunker_uri(&relay.url, "pw");
        // Publishing: nothing reaches the relay.
        let out = env.run(&propose_args(&["--signer", &uri, "--relay", &relay.url]));
        assert_eq!(out.status.code(), Some(1), "{behaviour:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{behaviour:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("nothing was written or published"));
        assert!(!stdout(&out).contains("accepted"), "{}", stdout(&out));
        assert_eq!(signer.seen().last().map(String::as_str), Some("sign_event"));
        assert!(stored_directives(&rt, &relay.url).is_empty(), "{behaviour:?}: published");
        // Offline: no file.
        let file = format!("{behaviour:?}.json");
        let out = env.run(&propose_args(&["--signer", &uri, "--out", &file]));
        assert_eq!(out.status.code(), Some(1), "{behaviour:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{behaviour:?}: {}", stderr(&out));
        assert!(!env.path(&file).exists(), "{behaviour:?}: file written");
    }

    // A signer whose key is not --expect is not even asked to sign.
    let honest = rt.block_on(start_signer(
        &relay.url,
        Behaviour::Honest,
        Some("pw"),
        None,
    ));
    let uri = honest.bunker_uri(&relay.url, "pw");
    let stranger = qube_agent::core::nip19::encode_npub(&[3; 32]);
    let out = env.run(&propose_args(&[
        "--signer",
        &uri,
        "--expect",
        &stranger,
        "--out",
        "expect.json",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "the remote signer signs as {}, not {stranger} (--expect); nothing was asked or signed",
            honest.user_npub()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(honest.seen(), ["connect", "get_public_key"]);
    assert!(!env.path("expect.json").exists());

    // A wrong connection secret is refused by the signer, and said so.
    let out = env.run(&propose_args(&[
        "--signer",
        &honest.bunker_uri(&relay.url, "not-the-secret"),
        "--out",
        "wrong-secret.json",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the remote signer refused connect: invalid secret"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("not-the-secret"), "{}", stderr(&out));

    // Positive control: the honest signer's directive is written, and
    // verifies as carol's.
    let out = env.run(&propose_args(&[
        "--signer",
        &uri,
        "--expect",
        &honest.user_npub(),
        "--out",
        "honest.json",
    ]));
    common::assert_ok(&out, &["propose", "honest"]);
    let verified = env.ok(&["verify", "honest.json", "--network", "hqz"]);
    assert!(verified.contains(&honest.user_npub()), "{verified}");

    // govctl sign: a draft for the remote key, signed remotely; the
    // tag-altering signer is refused and writes nothing.
    env.ok(&common::propose_v123_args(&[
        "--unsigned",
        "--signer",
        &honest.user_npub(),
        "--out",
        "draft.json",
    ]));
    let out = env.run(&[
        "sign",
        "draft.json",
        "--out",
        "signed.json",
        "--yes",
        "--signer",
        &uri,
    ]);
    common::assert_ok(&out, &["sign", "--signer"]);
    let draft: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.path("draft.json")).unwrap()).unwrap();
    assert_eq!(stdout(&out).trim(), draft["id"].as_str().unwrap());
    // A signer for another key than the draft's is refused before signing.
    let other = rt.block_on(start_signer(
        &relay.url,
        Behaviour::Honest,
        Some("pw"),
        None,
    ));
    let out = env.run(&[
        "sign",
        "draft.json",
        "--out",
        "other.json",
        "--yes",
        "--signer",
        &other.bunker_uri(&relay.url, "pw"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(the draft's key); nothing was asked or signed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(other.seen(), ["connect", "get_public_key"]);
    assert!(!env.path("other.json").exists());
}

/// Silence is a clear error within --signer-timeout, naming the relay.
#[test]
fn a_silent_signer_times_out_with_advice() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let nobody = hex::encode(Keys::generate().unwrap().public_key());
    let started = Instant::now();
    let out = env.run(&common::propose_v123_args(&[
        "--signer",
        &format!("bunker://{nobody}?relay={}&secret=zzz", relay.url),
        "--signer-timeout",
        "2",
        "--out",
        "never.json",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(15));
    let err = stderr(&out);
    assert!(
        err.contains("error: the remote signer did not answer connect within 2 s"),
        "{err}"
    );
    assert!(
        err.contains(&format!("is it online and connected to {}?", relay.url)),
        "{err}"
    );
    assert!(!err.contains("zzz"), "{err}");
    assert!(!env.path("never.json").exists());
}

/// `nostrconnect://` pairing: govctl prints the URI and a QR code; the
/// test plays the signer app (a spoofed connect with the wrong secret is
/// ignored first), and the directive is signed by the app's key.
#[test]
fn nostrconnect_pairing_signs_through_the_signer_app() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let (child, mut lines, before, uri) = spawn_pairing(&env, &relay.url);
    assert!(before.contains("about to sign this directive"), "{before}");
    // The QR code follows, then the wait.
    let mut after = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        after.push_str(&line);
        after.push('\n');
        if line.starts_with("waiting up to") {
            break;
        }
    }
    assert!(
        after.contains('█') || after.contains('▀'),
        "no QR code:\n{after}"
    );

    let parsed = nostr::types::url::Url::parse(&uri).unwrap();
    let client: [u8; 32] = hex::decode(parsed.host_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {uri}"))
    };
    assert_eq!(get("relay"), relay.url);
    assert_eq!(get("perms"), "sign_event:33321");
    assert_eq!(get("name"), "govctl");
    let secret = get("secret");
    assert_eq!(secret.len(), 32, "{uri}");

    // Someone else answers first, without the secret: ignored.
    let spoofer = Keys::generate().unwrap();
    rt.block_on(async {
        let (pool, mut rx) = RelayPool::start(
            vec![qube_e2e::target(&relay.url)],
            vec![Filter {
                kinds: vec![1],
                authors: vec![[0; 32]],
                ..Filter::default()
            }],
            qube_e2e::fast_options(),
        );
        while !matches!(rx.recv().await, Some(RelayEvent::EndOfStored { .. })) {}
        for result in ["ack", "wrong-secret"] {
            let m = NostrConnectMessage::Response {
                id: "x".to_owned(),
                result: Some(result.to_owned()),
                error: None,
            };
            pool.publish(&envelope(&spoofer, &client, &m));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    });

    // The signer app connects with the secret, then signs.
    let app = rt.block_on(start_signer(
        &relay.url,
        Behaviour::Honest,
        None,
        Some((client, secret)),
    ));
    assert_paired(&env, &app, child, lines, &format!("{before}{after}"));
}

/// An `--out` file that exists is refused before the remote signer is
/// contacted: nobody approves a signature that would then not be written.
#[test]
fn an_existing_out_file_is_refused_before_the_signer_is_asked() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let signer = rt.block_on(start_signer(
        &relay.url,
        Behaviour::Honest,
        Some("pw"),
        None,
    ));
    let uri = signer.bunker_uri(&relay.url, "pw");
    std::fs::write(env.path("taken.json"), "keep me\n").unwrap();
    let out = env.run(&propose_args(&["--signer", &uri, "--out", "taken.json"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("taken.json already exists; refusing to overwrite it"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(signer.seen().is_empty(), "asked: {:?}", signer.seen());
    assert_eq!(
        std::fs::read_to_string(env.path("taken.json")).unwrap(),
        "keep me\n"
    );
}

/// `--config`: the signature must be a voter's of that agent config, for a
/// remote signer (refused before it is asked to sign) and for a key file
/// (refused before it signs).
#[test]
fn config_voters_are_the_expected_signers() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let signer = rt.block_on(start_signer(
        &relay.url,
        Behaviour::Honest,
        Some("pw"),
        None,
    ));
    let uri = signer.bunker_uri(&relay.url, "pw");
    let files = common::voters(&env, &["ann", "ben"]);
    let carol = signer.user_npub();
    let without_carol = common::config_toml(&relay.url, &common::pairs(&files), 2);
    let with_carol = common::config_toml(
        &relay.url,
        &[
            (files[0].0.as_str(), files[0].1.as_str()),
            ("carol", &carol),
        ],
        2,
    );
    std::fs::write(env.path("without.toml"), without_carol).unwrap();
    std::fs::write(env.path("with.toml"), with_carol).unwrap();

    // The remote signer's key is not a voter: refused before sign_event.
    let out = env.run(&propose_args(&[
        "--signer",
        &uri,
        "--config",
        "without.toml",
        "--out",
        "a.json",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "the remote signer signs as {carol}, not a voter of without.toml (--config); nothing was asked or signed"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(signer.seen(), ["connect", "get_public_key"]);
    assert!(!env.path("a.json").exists());

    // It is one: signed.
    let out = env.run(&propose_args(&[
        "--signer",
        &uri,
        "--config",
        "with.toml",
        "--out",
        "b.json",
    ]));
    common::assert_ok(&out, &["propose", "--config", "with.toml"]);
    assert_eq!(signer.seen().last().map(String::as_str), Some("sign_event"));
    let out = env.run(&["verify", "b.json", "--config", "with.toml"]);
    common::assert_ok(&out, &["verify", "b.json", "--config", "with.toml"]);

    // A key file that is not a voter of the config (ben in with.toml).
    let out = env.run(&propose_args(&[
        "--name",
        "ben",
        "--passphrase-file",
        "pass",
        "--config",
        "with.toml",
        "--out",
        "c.json",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "the key is {}, not a voter of with.toml (--config); nothing signed",
            files[1].1
        )),
        "{}",
        stderr(&out)
    );
    assert!(!env.path("c.json").exists());
    // --expect and --config name the same thing twice.
    let out = env.run(&propose_args(&[
        "--signer",
        &uri,
        "--config",
        "with.toml",
        "--expect",
        &carol,
        "--out",
        "d.json",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `nostrconnect://` pairing with rust-nostr's own signer, which pairs
/// with the earlier form of the answer (a `connect` request carrying the
/// secret): govctl prints the URI, the signer app reads it, pairs, and
/// signs a directive that verifies.
#[test]
fn nostrconnect_pairing_works_with_rust_nostrs_signer() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let (child, lines, _, uri) = spawn_pairing(&env, &relay.url);
    let secret = nostr::types::url::Url::parse(&uri)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let app = rt.block_on(start_rust_nostr_signer(
        &relay.url,
        Some(&secret),
        Some(&uri),
    ));
    assert_paired(&env, &app, child, lines, "");
}

/// `govctl propose ... --signer nostrconnect://?relay=RELAY --out
/// paired.json` as a child; returns it, its stderr lines after the URI,
/// what it printed before the URI, and the URI.
fn spawn_pairing(
    env: &Env,
    relay: &str,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
    String,
    String,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_govctl"))
        .args(propose_args(&[
            "--signer",
            &format!("nostrconnect://?relay={relay}"),
            "--out",
            "paired.json",
        ]))
        .current_dir(env.dir.path())
        .env("GOVCTL_HOME", env.home())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = String::new();
    let uri = loop {
        let line = lines
            .next()
            .expect("govctl ended before printing the URI")
            .unwrap();
        if line.starts_with("nostrconnect://") {
            break line;
        }
        before.push_str(&line);
        before.push('\n');
    };
    (child, lines, before, uri)
}

/// Waits for the pairing govctl of [`spawn_pairing`] and checks that it
/// paired with `app`, had it sign as its user (asking only
/// `get_public_key` and `sign_event` after pairing), and wrote a directive
/// that `govctl verify` accepts. `shown` is what govctl printed before, for
/// failure messages.
fn assert_paired(
    env: &Env,
    app: &Signer,
    mut child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStderr>>,
    shown: &str,
) {
    let rest: String = lines.map(|l| l.unwrap() + "\n").collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{shown}{rest}");
    let paired = format!(
        "paired with remote signer {}",
        qube_agent::core::nip19::encode_npub(&app.signer.public_key())
    );
    assert!(rest.contains(&paired), "{rest}");
    assert!(
        rest.contains(&format!("signs as {}", app.user_npub())),
        "{rest}"
    );
    assert_eq!(app.seen(), ["get_public_key", "sign_event"]);
    let text = std::fs::read_to_string(env.path("paired.json")).unwrap();
    let event =
        qube_agent::Event::from_json(text.as_bytes(), &qube_agent::Limits::default()).unwrap();
    assert_eq!(event.pubkey, app.user.public_key());
    assert_eq!(event.tag_value("version"), Some("v1.2.3"));
    let out = env.run(&["verify", "paired.json", "--network", "hqz"]);
    common::assert_ok(&out, &["verify", "paired.json"]);
}

/// The NIP-46 `sign_event` round trip on loopback, as govctl reports it
/// (request sent to answer read, relay and both sides' NIP-44 included),
/// over 20 runs of the real binary. A measurement, not a check:
/// `cargo test -p govctl --test remote_signer -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: prints the loopback round trip, asserts nothing about time"]
fn measure_loopback_round_trip() {
    let rt = runtime();
    let relay = rt.block_on(start_relay(false));
    let env = Env::new();
    let signer = rt.block_on(start_signer(&relay.url, Behaviour::Honest, Some("m"), None));
    let uri = signer.bunker_uri(&relay.url, "m");
    let mut samples: Vec<u64> = (0..20)
        .map(|i| {
            let file = format!("m{i}.json");
            let out = env.run(&propose_args(&["--signer", &uri, "--out", &file]));
            common::assert_ok(&out, &["propose", "measure"]);
            round_trip_ms(&stderr(&out))
        })
        .collect();
    samples.sort_unstable();
    println!(
        "NIP-46 sign_event round trip on loopback over {} runs: min {} ms, median {} ms, max {} ms",
        samples.len(),
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
}
