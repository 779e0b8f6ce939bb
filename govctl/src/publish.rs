//! `govctl publish`: sends signed events to relays, answers NIP-42
//! challenges with a publisher key, and reports each relay's `OK`.
//!
//! qubestr requires NIP-42 AUTH to publish directives and checks that the
//! authenticated key is whitelisted, not that it signed the event
//! (`docs/PROTOCOL.md` section 3): a directive signed offline is published with a
//! separate online key (`--auth-key`). A challenge is answered as soon as it
//! arrives (kind 22242, tags `relay` and `challenge`); an event refused with
//! `auth-required:` is sent once more after the AUTH. No relay is trusted to
//! answer the AUTH itself (nostr-rs-relay does not).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use qube_agent::core::directive::{Directive, DIRECTIVE_KIND};
use qube_agent::core::message::AUTH_KIND;
use qube_agent::relay::{RelayEvent, RelayPool, RelayTarget};
use qube_agent::{Event, Filter, Keys, Limits, UnsignedEvent};
use tokio::time::Instant;

use crate::draft::read_small;
use crate::error::{CliError, Result};
use crate::propose::rules;
use crate::relays;
use crate::show::printable;

/// A relay's answer to one event.
#[derive(Clone)]
pub enum Answer {
    /// `OK true` and the relay's message.
    Accepted(String),
    /// `OK false` and the relay's reason.
    Rejected(String),
    /// No `OK` before the deadline; why, as far as known.
    Silent(String),
}

/// Reads and verifies a signed event file (NIP-01 JSON; id and signature
/// checked). A directive must also pass the agent's rules for its own
/// network, so nothing the agents would ignore is published.
///
/// # Errors
/// Unreadable, not a valid signed event, or a directive the agent would
/// not count.
pub fn load_event(path: &std::path::Path) -> Result<Event> {
    let limits = Limits::default();
    let max = u64::try_from(limits.max_event_bytes).unwrap_or(u64::MAX);
    let text = read_small(path, max, "event file")?;
    let event = Event::from_json(text.as_bytes(), &limits).map_err(|e| {
        CliError::failure(format!(
            "{} is not a valid signed event: {e}",
            path.display()
        ))
        .hint(format!(
            "`govctl verify {}` shows what is wrong",
            path.display()
        ))
    })?;
    if event.kind == DIRECTIVE_KIND {
        let network = event.tag_value("network").unwrap_or_default().to_owned();
        let d_tag = event.tag_value("d").unwrap_or_default().to_owned();
        Directive::from_event(event.clone(), &rules(&network, &d_tag), qube_agent::now()).map_err(
            |e| {
                CliError::failure(format!(
                    "{}: the agents would not count this directive: {e}",
                    path.display()
                ))
            },
        )?;
    }
    Ok(event)
}

/// `govctl publish`: loads every file, then publishes them all.
///
/// # Errors
/// A file is invalid (nothing is sent then), or some event was accepted by
/// no relay.
pub fn run(
    files: &[PathBuf],
    targets: Vec<RelayTarget>,
    auth: Option<&Keys>,
    timeout: Duration,
) -> Result<()> {
    let mut events: Vec<Event> = Vec::new();
    for file in files {
        let event = load_event(file)?;
        // The same event twice would wait for a second answer that never comes.
        if events.iter().all(|e| e.id != event.id) {
            events.push(event);
        }
    }
    publish_and_report(&events, targets, auth, timeout)
}

/// Publishes `events` and prints one line per event and relay:
/// `ID URL accepted|rejected: REASON|no answer: REASON`.
///
/// # Errors
/// Some event was accepted by no relay.
pub fn publish_and_report(
    events: &[Event],
    targets: Vec<RelayTarget>,
    auth: Option<&Keys>,
    timeout: Duration,
) -> Result<()> {
    let urls: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
    let answers = relays::runtime()?.block_on(publish(events, targets, auth, timeout));
    let mut unaccepted = Vec::new();
    let mut auth_wanted = false;
    for (event, per_relay) in events.iter().zip(&answers) {
        let mut accepted = false;
        for (url, answer) in urls.iter().zip(per_relay) {
            let text = match answer {
                Answer::Accepted(m) if m.is_empty() => "accepted".to_owned(),
                Answer::Accepted(m) => format!("accepted: {}", printable(m, 200)),
                Answer::Rejected(m) => format!("rejected: {}", printable(m, 200)),
                Answer::Silent(m) => format!("no answer: {}", printable(m, 200)),
            };
            accepted |= matches!(answer, Answer::Accepted(_));
            auth_wanted |= matches!(answer, Answer::Rejected(m) if m.starts_with("auth-required:"));
            println!("{}  {url}  {text}", event.id_hex());
        }
        if !accepted {
            unaccepted.push(event.id_hex());
        }
    }
    if unaccepted.is_empty() {
        return Ok(());
    }
    let err = CliError::failure(format!(
        "no relay accepted {}",
        match unaccepted.as_slice() {
            [one] => format!("event {one}"),
            many => format!("{} events", many.len()),
        }
    ));
    Err(if auth_wanted && auth.is_none() {
        err.hint("the relay wants NIP-42 authentication: pass --auth-key KEYFILE with a key the relay allows to publish")
    } else {
        err.hint("check the relay URLs and the reasons above; the signed files can be published again later")
    })
}

/// Publishes `events` to every target; returns `[event][relay]` answers.
pub async fn publish(
    events: &[Event],
    targets: Vec<RelayTarget>,
    auth: Option<&Keys>,
    timeout: Duration,
) -> Vec<Vec<Answer>> {
    let relay_count = targets.len();
    let urls: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
    // A subscription that matches nothing: the pool always subscribes, and
    // its EOSE tells us the connection is up.
    let nothing = Filter {
        kinds: vec![1],
        authors: vec![[0; 32]],
        ..Filter::default()
    };
    let (pool, mut rx) = RelayPool::start(targets, vec![nothing], relays::options(timeout));
    let index: HashMap<[u8; 32], usize> =
        events.iter().enumerate().map(|(i, e)| (e.id, i)).collect();
    let mut answers: Vec<Vec<Option<Answer>>> = vec![vec![None; relay_count]; events.len()];
    let mut up = vec![false; relay_count];
    let mut last_error: Vec<Option<String>> = vec![None; relay_count];
    let mut authenticated = vec![false; relay_count];
    let mut waiting_for_auth: Vec<Vec<usize>> = vec![Vec::new(); relay_count];
    let mut retried: HashSet<(usize, usize)> = HashSet::new();
    let mut published = false;
    let start = Instant::now();
    let deadline = start + timeout;
    let connect_deadline = start + timeout.min(Duration::from_secs(5));

    let unanswered = |answers: &Vec<Vec<Option<Answer>>>, relay: usize| -> Vec<usize> {
        (0..answers.len())
            .filter(|&e| {
                answers
                    .get(e)
                    .and_then(|a| a.get(relay))
                    .is_some_and(Option::is_none)
            })
            .collect()
    };
    loop {
        let done = answers.iter().all(|a| a.iter().all(Option::is_some));
        if done {
            break;
        }
        let settled = (0..relay_count)
            .all(|r| up.get(r) == Some(&true) || last_error.get(r).is_some_and(Option::is_some));
        if !published && (settled || Instant::now() >= connect_deadline) {
            for event in events {
                pool.publish(event);
            }
            published = true;
        }
        let wake = if published {
            deadline
        } else {
            connect_deadline.min(deadline)
        };
        let Ok(Some(report)) = tokio::time::timeout_at(wake, rx.recv()).await else {
            if published || Instant::now() >= deadline {
                break;
            }
            continue;
        };
        match report {
            RelayEvent::EndOfStored { relay } => {
                if let Some(u) = up.get_mut(relay) {
                    *u = true;
                }
                if published {
                    // A reconnect: what this relay has not answered is resent.
                    for e in unanswered(&answers, relay) {
                        if let Some(event) = events.get(e) {
                            pool.publish(event);
                        }
                    }
                }
            }
            RelayEvent::Disconnected { relay, reason, .. } => {
                if let Some(u) = up.get_mut(relay) {
                    *u = false;
                }
                if let Some(slot) = last_error.get_mut(relay) {
                    *slot = Some(reason);
                }
                if let Some(a) = authenticated.get_mut(relay) {
                    *a = false;
                }
            }
            RelayEvent::AuthChallenge { relay, challenge } => {
                let (Some(keys), Some(url)) = (auth, urls.get(relay)) else {
                    continue;
                };
                if let Some(auth_event) = auth_event(keys, url, challenge) {
                    pool.authenticate(relay, auth_event);
                    if let Some(a) = authenticated.get_mut(relay) {
                        *a = true;
                    }
                    for e in waiting_for_auth
                        .get_mut(relay)
                        .map(std::mem::take)
                        .unwrap_or_default()
                    {
                        if let Some(event) = events.get(e) {
                            pool.publish(event);
                        }
                    }
                }
            }
            RelayEvent::Ok {
                relay,
                event_id,
                accepted,
                message,
            } => {
                let Some(&e) = index.get(&event_id) else {
                    continue; // e.g. the relay's answer to our AUTH event
                };
                let Some(slot) = answers.get_mut(e).and_then(|a| a.get_mut(relay)) else {
                    continue;
                };
                if slot.is_some() {
                    continue;
                }
                if !accepted
                    && message.starts_with("auth-required:")
                    && auth.is_some()
                    && retried.insert((e, relay))
                {
                    if authenticated.get(relay) == Some(&true) {
                        if let Some(event) = events.get(e) {
                            pool.publish(event);
                        }
                    } else if let Some(w) = waiting_for_auth.get_mut(relay) {
                        w.push(e);
                    }
                    continue;
                }
                *slot = Some(if accepted {
                    Answer::Accepted(message)
                } else {
                    Answer::Rejected(message)
                });
            }
            _ => {}
        }
    }
    drop(pool);
    answers
        .into_iter()
        .map(|per_relay| {
            per_relay
                .into_iter()
                .enumerate()
                .map(|(r, a)| {
                    a.unwrap_or_else(|| {
                        Answer::Silent(
                            last_error.get(r).cloned().flatten().unwrap_or_else(|| {
                                format!("nothing within {} s", timeout.as_secs())
                            }),
                        )
                    })
                })
                .collect()
        })
        .collect()
}

/// A signed NIP-42 AUTH event (kind 22242) for `relay_url` and `challenge`.
fn auth_event(keys: &Keys, relay_url: &str, challenge: String) -> Option<Event> {
    keys.sign(UnsignedEvent {
        created_at: qube_agent::now(),
        kind: AUTH_KIND,
        tags: vec![
            vec!["relay".to_owned(), relay_url.to_owned()],
            vec!["challenge".to_owned(), challenge],
        ],
        content: String::new(),
    })
    .ok()
}
