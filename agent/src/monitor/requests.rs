//! The monitor's request table (OpenSSH `monitor.c` style): what a worker
//! may send, in which state, and what it becomes. Pure: no I/O, no clock
//! (the caller passes `now`), so every row is unit-tested without
//! processes.
//!
//! | message | before `sandbox` | before `synced` | after `synced` |
//! |---|---|---|---|
//! | `sandbox` | accepted once | violation (twice) | violation (twice) |
//! | `synced` | violation | accepted once | violation (twice) |
//! | `directive` | violation | re-verified | re-verified |
//! | `auth_request` | violation | checked | checked |
//! | `publish_result` | violation | checked | checked |
//! | `relay_status` | violation | checked | checked |
//! | `relay_stats` | violation | checked | checked |
//! | `resolve` | violation | checked | checked |
//!
//! "Checked" means: the relay index names a configured relay, and the
//! message's own bounds hold (an AUTH challenge is 1 to
//! [`crate::ipc::MAX_CHALLENGE_BYTES`] bytes with no control character). A forwarded
//! directive is parsed, verified and admitted again
//! ([`crate::core::admit::admit`]) as if the worker had done nothing; only a
//! directive dated too far ahead is dropped quietly (the worker read its
//! clock a moment earlier). Anything else is a [`Violation`]: the worker is
//! ended and restarted with backoff.
//!
//! A frame that does not decode at all (unknown type, extra field, an id that
//! is not 64 lowercase hex chars) is a violation before this table is
//! consulted; [`check_frame`] covers both steps for tests.

use std::collections::BTreeSet;

use crate::core::admit::{admit, Authors, Rejection};
use crate::core::directive::{Directive, DirectiveError, DirectiveRules};
use crate::core::event::{Event, Limits};
use crate::core::message::is_signable_challenge;
#[cfg(test)]
use crate::ipc::MAX_CHALLENGE_BYTES;
use crate::ipc::{Enforcement, RelayCounters, WorkerMessage};

/// How far the current worker has got (messages it must send once, in
/// order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Started; its sandbox report is due first.
    Started,
    /// It reported its sandbox; the relays' stored directives are coming.
    Sandboxed,
    /// It said the relays' stored directives are in.
    Synced,
}

/// Longest relay retry delay a worker may report, milliseconds (its relay
/// backoff stops at 60 s; one hour leaves room without letting `status`
/// show a date years away).
pub(crate) const MAX_RETRY_IN_MS: u64 = 3_600_000;

/// What the monitor checks a worker message against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permits<'a> {
    /// The current worker's phase.
    pub(crate) phase: Phase,
    /// Number of configured relays (valid indexes are `0..relays`).
    pub(crate) relays: usize,
    /// Directive rules from the config.
    pub(crate) rules: &'a DirectiveRules,
    /// Voters' 32-byte pubkeys.
    pub(crate) voters: &'a BTreeSet<[u8; 32]>,
    /// Unix seconds, for the directive rules.
    pub(crate) now: u64,
}

/// A permitted request, with its values parsed and checked.
#[derive(Debug)]
pub(crate) enum Request {
    /// A directive that passed re-verification.
    Directive {
        /// Relay index, `< relays`.
        relay: usize,
        /// The admitted directive (boxed: it is most of the enum's size).
        directive: Box<Directive>,
    },
    /// A forwarded directive dropped for a reason the worker could not have
    /// seen (its clock); not a violation.
    Dropped {
        /// Why, for the log.
        reason: String,
    },
    /// Sign a NIP-42 AUTH event for this relay and challenge.
    Auth {
        /// Relay index, `< relays`.
        relay: usize,
        /// 1 to [`crate::ipc::MAX_CHALLENGE_BYTES`] bytes, no control characters.
        challenge: String,
    },
    /// A relay's answer to a published event.
    PublishResult {
        /// Relay index, `< relays`.
        relay: usize,
        /// Event id, 32 bytes.
        event_id: [u8; 32],
        /// Whether the relay stored it.
        accepted: bool,
        /// The relay's reason (untrusted text: escape before logging).
        message: String,
    },
    /// The worker's sandbox report; moves to [`Phase::Sandboxed`].
    Sandbox {
        /// What the kernel enforces.
        enforcement: Enforcement,
        /// Details (untrusted text).
        detail: String,
    },
    /// The relays' stored directives are in; moves to [`Phase::Synced`].
    Synced {
        /// Relays that sent `EOSE` in time.
        relays_synced: usize,
    },
    /// A relay's counters.
    RelayStats {
        /// Relay index, `< relays`.
        relay: usize,
        /// What it sent, as the worker counted.
        counters: RelayCounters,
    },
    /// A relay connected or disconnected.
    RelayStatus {
        /// Relay index, `< relays`.
        relay: usize,
        /// Connected now.
        connected: bool,
        /// Why (untrusted text).
        detail: String,
        /// When disconnected: milliseconds until the next attempt, at most
        /// [`MAX_RETRY_IN_MS`].
        retry_in_ms: Option<u64>,
    },
    /// Resolve the host name of this configured relay.
    Resolve {
        /// Relay index, `< relays`.
        relay: usize,
    },
}

/// A message a correct worker never sends; the reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation(pub(crate) String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks one worker message against the table in the module docs.
///
/// # Errors
/// [`Violation`] with the reason, for every row marked so.
pub(crate) fn check(msg: WorkerMessage, permits: &Permits<'_>) -> Result<Request, Violation> {
    let phase = permits.phase;
    if phase == Phase::Started && !matches!(msg, WorkerMessage::Sandbox { .. }) {
        return Err(Violation(format!(
            "{} sent before the sandbox report",
            name(&msg)
        )));
    }
    let relay_index = |relay: usize| {
        if relay < permits.relays {
            Ok(relay)
        } else {
            Err(Violation(format!("relay index {relay} out of range")))
        }
    };
    match msg {
        WorkerMessage::Directive { relay, event } => {
            let relay = relay_index(relay)?;
            match reverify(&event, permits)? {
                Some(directive) => Ok(Request::Directive {
                    relay,
                    directive: Box::new(directive),
                }),
                None => Ok(Request::Dropped {
                    reason: "dated ahead of the allowed clock skew".into(),
                }),
            }
        }
        WorkerMessage::AuthRequest { relay, challenge } => {
            let relay = relay_index(relay)?;
            if !is_signable_challenge(&challenge) {
                return Err(Violation("AUTH challenge out of bounds".into()));
            }
            Ok(Request::Auth { relay, challenge })
        }
        WorkerMessage::PublishResult {
            relay,
            event_id,
            accepted,
            message,
        } => Ok(Request::PublishResult {
            relay: relay_index(relay)?,
            event_id,
            accepted,
            message,
        }),
        WorkerMessage::Sandbox {
            enforcement,
            detail,
        } => {
            if phase != Phase::Started {
                return Err(Violation("sandbox state sent twice".into()));
            }
            Ok(Request::Sandbox {
                enforcement,
                detail,
            })
        }
        WorkerMessage::Synced { relays_synced } => {
            if phase == Phase::Synced {
                return Err(Violation("synced sent twice".into()));
            }
            Ok(Request::Synced { relays_synced })
        }
        WorkerMessage::RelayStats { relay, counters } => Ok(Request::RelayStats {
            relay: relay_index(relay)?,
            counters,
        }),
        WorkerMessage::RelayStatus {
            relay,
            connected,
            detail,
            retry_in_ms,
        } => {
            if retry_in_ms.is_some_and(|ms| ms > MAX_RETRY_IN_MS) {
                return Err(Violation("relay retry delay out of bounds".into()));
            }
            Ok(Request::RelayStatus {
                relay: relay_index(relay)?,
                connected,
                detail,
                retry_in_ms,
            })
        }
        WorkerMessage::Resolve { relay } => Ok(Request::Resolve {
            relay: relay_index(relay)?,
        }),
    }
}

impl Request {
    /// The worker's phase after this request was carried out.
    pub(crate) fn next_phase(&self, phase: Phase) -> Phase {
        match self {
            Request::Sandbox { .. } => phase.max(Phase::Sandboxed),
            Request::Synced { .. } => Phase::Synced,
            _ => phase,
        }
    }
}

/// Decodes one frame payload and checks it: what the serve loop does with
/// each frame, in one call.
///
/// # Errors
/// [`Violation`] for a frame that does not decode, or as [`check`].
pub(crate) fn check_frame(payload: &[u8], permits: &Permits<'_>) -> Result<Request, Violation> {
    let msg: WorkerMessage = crate::ipc::decode(payload)
        .map_err(|e| Violation(format!("worker sent a bad frame: {e}")))?;
    check(msg, permits)
}

/// Fuzzing entry (`fuzz/fuzz_targets/worker_frame.rs`, and the corpus
/// replay in `agent/tests/fuzz_corpus.rs`): one worker frame payload through
/// [`check_frame`] in every [`Phase`], with two configured relays, network
/// `hqz`, `d` tag `hyperqube` and the voters whose secret keys are 32 bytes
/// of 1, 2 and 3, at unix time 1 700 000 000.
///
/// # Panics
/// When a permitted request breaks what the table promises: a directive
/// not admissible under those rules, an AUTH challenge the monitor must not
/// sign, a relay index out of range, or a phase moved backwards.
pub(crate) fn fuzz_frame(payload: &[u8]) {
    use std::sync::OnceLock;
    static VOTERS: OnceLock<BTreeSet<[u8; 32]>> = OnceLock::new();
    let voters = VOTERS.get_or_init(|| {
        (1u8..=3)
            .filter_map(|n| crate::core::keys::Keys::from_secret_bytes(&[n; 32]))
            .map(|k| k.public_key())
            .collect()
    });
    let rules = DirectiveRules::new("hqz");
    let now = 1_700_000_000;
    for phase in [Phase::Started, Phase::Sandboxed, Phase::Synced] {
        let permits = Permits {
            phase,
            relays: 2,
            rules: &rules,
            voters,
            now,
        };
        let Ok(request) = check_frame(payload, &permits) else {
            continue;
        };
        // Invariants of the table: a fuzzer reports a panic.
        #[allow(clippy::panic)]
        match &request {
            Request::Directive { relay, directive } => {
                let again = admit(
                    directive.event().clone(),
                    &rules,
                    Authors::Only(voters),
                    now,
                );
                if *relay >= 2 || again.is_err() || phase == Phase::Started {
                    panic!("permitted a directive it must refuse: {request:?}");
                }
            }
            Request::Auth { relay, challenge } => {
                if *relay >= 2 || !is_signable_challenge(challenge) || phase == Phase::Started {
                    panic!("permitted an AUTH request it must refuse: {request:?}");
                }
            }
            Request::PublishResult { relay, .. }
            | Request::RelayStatus { relay, .. }
            | Request::RelayStats { relay, .. }
            | Request::Resolve { relay } => {
                if *relay >= 2 || phase == Phase::Started {
                    panic!("permitted a request it must refuse: {request:?}");
                }
            }
            Request::Sandbox { .. } | Request::Synced { .. } | Request::Dropped { .. } => {}
        }
        #[allow(clippy::panic)]
        if request.next_phase(phase) < phase {
            panic!("phase moved backwards from {phase:?}: {request:?}");
        }
    }
}

/// Parses, verifies and admits a forwarded directive as if the worker did
/// nothing. `None`: dropped for a reason the worker could not have seen.
fn reverify(json: &str, permits: &Permits<'_>) -> Result<Option<Directive>, Violation> {
    let event = Event::from_json(json.as_bytes(), &Limits::default())
        .map_err(|e| Violation(format!("forwarded an invalid event: {e}")))?;
    let id = event.id_hex();
    match admit(
        event,
        permits.rules,
        Authors::Only(permits.voters),
        permits.now,
    ) {
        Ok(d) => Ok(Some(d)),
        Err(Rejection::Rules(DirectiveError::FromFuture { .. })) => Ok(None),
        Err(Rejection::NotAVoter { .. }) => {
            Err(Violation(format!("forwarded {id} from a non-voter")))
        }
        Err(e) => Err(Violation(format!(
            "forwarded a directive that breaks the rules: {e}"
        ))),
    }
}

/// The message's type as on the wire, for logs.
fn name(msg: &WorkerMessage) -> &'static str {
    match msg {
        WorkerMessage::Directive { .. } => "directive",
        WorkerMessage::AuthRequest { .. } => "auth_request",
        WorkerMessage::PublishResult { .. } => "publish_result",
        WorkerMessage::Sandbox { .. } => "sandbox",
        WorkerMessage::Synced { .. } => "synced",
        WorkerMessage::RelayStatus { .. } => "relay_status",
        WorkerMessage::RelayStats { .. } => "relay_stats",
        WorkerMessage::Resolve { .. } => "resolve",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directive::tests::{keys, rules, sign, upgrade_tags, HASH, NOW};
    use crate::core::event::UnverifiedEvent;

    const PHASES: [Phase; 3] = [Phase::Started, Phase::Sandboxed, Phase::Synced];

    fn voters() -> BTreeSet<[u8; 32]> {
        BTreeSet::from([keys(1).public_key(), keys(2).public_key()])
    }

    fn directive_json(n: u8, created_at: u64) -> String {
        sign(&keys(n), created_at, upgrade_tags("v1.2.3", HASH)).to_json()
    }

    /// One well-formed message of each type.
    fn one_of_each() -> Vec<WorkerMessage> {
        vec![
            WorkerMessage::Sandbox {
                enforcement: Enforcement::Full,
                detail: "landlock".into(),
            },
            WorkerMessage::Synced { relays_synced: 2 },
            WorkerMessage::Directive {
                relay: 0,
                event: directive_json(1, NOW),
            },
            WorkerMessage::AuthRequest {
                relay: 1,
                challenge: "challenge-1".into(),
            },
            WorkerMessage::PublishResult {
                relay: 0,
                event_id: [7; 32],
                accepted: true,
                message: String::new(),
            },
            WorkerMessage::RelayStatus {
                relay: 1,
                connected: false,
                detail: "closed".into(),
                retry_in_ms: Some(1500),
            },
            WorkerMessage::RelayStats {
                relay: 0,
                counters: RelayCounters {
                    frames: 3,
                    ..RelayCounters::default()
                },
            },
            WorkerMessage::Resolve { relay: 1 },
        ]
    }

    fn run(msg: WorkerMessage, phase: Phase) -> Result<Request, Violation> {
        let (rules, voters) = (rules(), voters());
        check(
            msg,
            &Permits {
                phase,
                relays: 2,
                rules: &rules,
                voters: &voters,
                now: NOW,
            },
        )
    }

    fn frame(json: &str, phase: Phase) -> Result<Request, Violation> {
        let (rules, voters) = (rules(), voters());
        check_frame(
            json.as_bytes(),
            &Permits {
                phase,
                relays: 2,
                rules: &rules,
                voters: &voters,
                now: NOW,
            },
        )
    }

    /// The expected verdict of the table in the module docs.
    fn permitted(msg: &WorkerMessage, phase: Phase) -> bool {
        match (msg, phase) {
            (WorkerMessage::Sandbox { .. }, p) => p == Phase::Started,
            (_, Phase::Started) => false,
            (WorkerMessage::Synced { .. }, p) => p == Phase::Sandboxed,
            _ => true,
        }
    }

    #[test]
    fn every_message_type_in_every_phase_follows_the_table() {
        let mut seen = 0;
        for phase in PHASES {
            for msg in one_of_each() {
                let what = format!("{} in {phase:?}", name(&msg));
                let expected = permitted(&msg, phase);
                let got = run(msg.clone(), phase);
                assert_eq!(got.is_ok(), expected, "{what}: {got:?}");
                if let Ok(request) = got {
                    // The request carries the message's values, checked.
                    match (&msg, &request) {
                        (
                            WorkerMessage::Directive { .. },
                            Request::Directive { relay, directive },
                        ) => {
                            assert_eq!(*relay, 0);
                            assert_eq!(directive.author(), &keys(1).public_key());
                        }
                        (WorkerMessage::AuthRequest { .. }, Request::Auth { relay, challenge }) => {
                            assert_eq!((*relay, challenge.as_str()), (1, "challenge-1"));
                        }
                        (
                            WorkerMessage::PublishResult { .. },
                            Request::PublishResult {
                                event_id, accepted, ..
                            },
                        ) => {
                            assert_eq!((*event_id, *accepted), ([7; 32], true));
                        }
                        (WorkerMessage::Sandbox { .. }, Request::Sandbox { enforcement, .. }) => {
                            assert_eq!(*enforcement, Enforcement::Full);
                        }
                        (WorkerMessage::Synced { .. }, Request::Synced { relays_synced }) => {
                            assert_eq!(*relays_synced, 2);
                        }
                        (
                            WorkerMessage::RelayStatus { .. },
                            Request::RelayStatus {
                                relay,
                                connected,
                                retry_in_ms,
                                ..
                            },
                        ) => {
                            assert_eq!((*relay, *connected, *retry_in_ms), (1, false, Some(1500)));
                        }
                        (
                            WorkerMessage::RelayStats { .. },
                            Request::RelayStats { relay, counters },
                        ) => {
                            assert_eq!((*relay, counters.frames), (0, 3));
                        }
                        (WorkerMessage::Resolve { .. }, Request::Resolve { relay }) => {
                            assert_eq!(*relay, 1);
                        }
                        other => panic!("{what}: wrong request {other:?}"),
                    }
                    seen += 1;
                }
            }
        }
        // 1 permitted before the sandbox report, 7 before synced, 6 after.
        assert_eq!(seen, 14);
    }

    #[test]
    fn before_the_sandbox_report_only_the_report_is_permitted() {
        let err = run(one_of_each().remove(2), Phase::Started).unwrap_err();
        assert_eq!(err.0, "directive sent before the sandbox report");
        assert!(run(one_of_each().remove(0), Phase::Started).is_ok());
    }

    #[test]
    fn sandbox_and_synced_sent_twice_are_violations() {
        let msgs = one_of_each();
        let mut phase = Phase::Started;
        let first = run(msgs[0].clone(), phase).unwrap();
        phase = first.next_phase(phase);
        assert_eq!(phase, Phase::Sandboxed);
        assert_eq!(
            run(msgs[0].clone(), phase).unwrap_err().0,
            "sandbox state sent twice"
        );
        let synced = run(msgs[1].clone(), phase).unwrap();
        phase = synced.next_phase(phase);
        assert_eq!(phase, Phase::Synced);
        assert_eq!(
            run(msgs[1].clone(), phase).unwrap_err().0,
            "synced sent twice"
        );
        // Other messages do not move the phase and may repeat.
        for _ in 0..2 {
            let r = run(msgs[2].clone(), phase).unwrap();
            assert_eq!(r.next_phase(phase), Phase::Synced);
        }
    }

    #[test]
    fn forwarded_directives_are_verified_again() {
        for phase in [Phase::Sandboxed, Phase::Synced] {
            // A voter's event with a broken signature.
            let good = sign(&keys(1), NOW, upgrade_tags("v1.2.3", HASH));
            let mut data = good.into_unverified().into_data();
            data.content = "tampered".into();
            let forged = UnverifiedEvent::from_data(data).to_json();
            let forged = run(
                WorkerMessage::Directive {
                    relay: 0,
                    event: forged,
                },
                phase,
            );
            assert!(forged
                .unwrap_err()
                .0
                .starts_with("forwarded an invalid event"));
            // A valid directive from a non-voter.
            let stranger = run(
                WorkerMessage::Directive {
                    relay: 0,
                    event: directive_json(9, NOW),
                },
                phase,
            );
            assert!(stranger.unwrap_err().0.ends_with("from a non-voter"));
            // A voter's directive for another network.
            let mut tags = upgrade_tags("v1.2.3", HASH);
            tags[4][1] = "other".into();
            let other = sign(&keys(2), NOW, tags).to_json();
            let other = run(
                WorkerMessage::Directive {
                    relay: 0,
                    event: other,
                },
                phase,
            );
            assert!(other.unwrap_err().0.contains("breaks the rules"));
            // Dated ahead of the skew: dropped quietly (clock race), not a
            // violation.
            let ahead = run(
                WorkerMessage::Directive {
                    relay: 0,
                    event: directive_json(1, NOW + 3600),
                },
                phase,
            );
            assert!(matches!(ahead, Ok(Request::Dropped { .. })), "{ahead:?}");
            // Not JSON at all.
            let junk = run(
                WorkerMessage::Directive {
                    relay: 0,
                    event: "{".into(),
                },
                phase,
            );
            assert!(junk.is_err());
            // A relay index out of range, with a valid directive.
            let far = run(
                WorkerMessage::Directive {
                    relay: 2,
                    event: directive_json(1, NOW),
                },
                phase,
            );
            assert_eq!(far.unwrap_err().0, "relay index 2 out of range");
            // Positive control: the second voter's valid directive.
            let ok = run(
                WorkerMessage::Directive {
                    relay: 1,
                    event: directive_json(2, NOW),
                },
                phase,
            );
            assert!(
                matches!(ok, Ok(Request::Directive { relay: 1, .. })),
                "{ok:?}"
            );
        }
    }

    #[test]
    fn auth_requests_are_bounded() {
        let auth = |relay, challenge: &str| {
            run(
                WorkerMessage::AuthRequest {
                    relay,
                    challenge: challenge.to_owned(),
                },
                Phase::Synced,
            )
        };
        let out_of_bounds = "AUTH challenge out of bounds";
        assert_eq!(auth(0, "").unwrap_err().0, out_of_bounds);
        let long = "c".repeat(MAX_CHALLENGE_BYTES + 1);
        assert_eq!(auth(0, &long).unwrap_err().0, out_of_bounds);
        assert_eq!(auth(0, "hello\u{7}").unwrap_err().0, out_of_bounds);
        assert_eq!(auth(0, "a\nb").unwrap_err().0, out_of_bounds);
        assert_eq!(auth(99, "c").unwrap_err().0, "relay index 99 out of range");
        // Positive controls: the longest allowed, and printable Unicode.
        assert!(auth(1, &"c".repeat(MAX_CHALLENGE_BYTES)).is_ok());
        assert!(auth(0, "défi-🎲").is_ok());
    }

    #[test]
    fn publish_results_need_a_well_formed_id_and_relay() {
        let good = format!(
            r#"{{"type":"publish_result","relay":1,"event_id":"{}","accepted":false,"message":"blocked"}}"#,
            "ab".repeat(32)
        );
        for phase in [Phase::Sandboxed, Phase::Synced] {
            let ok = frame(&good, phase).unwrap();
            assert!(
                matches!(ok, Request::PublishResult { relay: 1, event_id, accepted: false, .. } if event_id == [0xab; 32]),
                "{ok:?}"
            );
            for bad_id in [
                "AB".repeat(32),
                "ab".repeat(31),
                "ab".repeat(33),
                "zz".repeat(32),
                String::new(),
            ] {
                let bad = good.replace(&"ab".repeat(32), &bad_id);
                let err = frame(&bad, phase).unwrap_err();
                assert!(
                    err.0.starts_with("worker sent a bad frame"),
                    "{bad_id}: {err}"
                );
            }
            let far = good.replace(r#""relay":1"#, r#""relay":5"#);
            assert_eq!(
                frame(&far, phase).unwrap_err().0,
                "relay index 5 out of range"
            );
        }
        // Before the sandbox report even a good one is a violation.
        assert!(frame(&good, Phase::Started).is_err());
    }

    #[test]
    fn frames_outside_the_closed_set_are_violations() {
        for bad in [
            r#"{"type":"sign_event","kind":1,"content":"pay me"}"#,
            r#"{"type":"synced","relays_synced":1,"extra":true}"#,
            r#"{"type":"sandbox","enforcement":"in-process","detail":""}"#,
            "[]",
            "",
        ] {
            for phase in PHASES {
                assert!(frame(bad, phase).is_err(), "{bad} in {phase:?}");
            }
        }
        // Positive control through the same path.
        assert!(frame(
            r#"{"type":"sandbox","enforcement":"partial","detail":"abi 3"}"#,
            Phase::Started
        )
        .is_ok());
    }

    #[test]
    fn relay_status_needs_a_configured_relay() {
        let status = |relay| {
            run(
                WorkerMessage::RelayStatus {
                    relay,
                    connected: true,
                    detail: String::new(),
                    retry_in_ms: None,
                },
                Phase::Sandboxed,
            )
        };
        assert!(status(1).is_ok());
        assert_eq!(status(2).unwrap_err().0, "relay index 2 out of range");
        let retry = |ms| {
            run(
                WorkerMessage::RelayStatus {
                    relay: 0,
                    connected: false,
                    detail: String::new(),
                    retry_in_ms: Some(ms),
                },
                Phase::Synced,
            )
        };
        assert!(retry(MAX_RETRY_IN_MS).is_ok());
        assert_eq!(
            retry(MAX_RETRY_IN_MS + 1).unwrap_err().0,
            "relay retry delay out of bounds"
        );
    }

    #[test]
    fn resolve_needs_a_configured_relay() {
        let resolve = |relay| run(WorkerMessage::Resolve { relay }, Phase::Synced);
        assert!(matches!(resolve(1), Ok(Request::Resolve { relay: 1 })));
        assert_eq!(resolve(2).unwrap_err().0, "relay index 2 out of range");
        // No host name crosses IPC from the worker: only an index.
        assert!(frame(
            r#"{"type":"resolve","relay":0,"host":"evil.example"}"#,
            Phase::Synced
        )
        .unwrap_err()
        .0
        .contains("unknown field"));
    }
}
