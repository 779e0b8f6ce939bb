//! `govctl history`: the audit trail of proposals, from relays.
//!
//! Reads every directive (kind 33321, `#d`, the config's follows or any
//! author) and every acknowledgement (kind 3333) created in
//! `[since, until]`, and lists each proposal the directives name, expired
//! ones included: who voted for it (and whether that vote has expired or
//! been replaced), and each node's latest ack of it (status, error, when it
//! acted). Relays keep one directive per author (kind 33321 is
//! addressable), so a vote its author replaced is gone, and a relay that
//! honours NIP-40 drops expired directives; acknowledgements of proposals
//! whose directives are gone are listed apart, by what they name.

use std::collections::BTreeMap;
use std::time::Duration;

use qube_agent::core::ack::ACK_KIND;
use qube_agent::core::directive::{Directive, Proposal, DIRECTIVE_KIND};
use qube_agent::{Event, Filter};
use serde_json::{json, Value};

use crate::cli::HistoryArgs;
use crate::error::Result;
use crate::keycmd::npub;
use crate::relays;
use crate::show::printable;
use crate::status::{fetch, Source};
use crate::time::format_utc;

/// Most events read per kind and relay.
const FETCH_LIMIT: u64 = 5000;

/// One vote in the history.
struct Vote {
    author: [u8; 32],
    name: Option<String>,
    created_at: u64,
    expiration: Option<u64>,
    id: String,
}

/// One node's latest ack of a proposal.
struct NodeAck {
    node_id: String,
    signer: [u8; 32],
    status: String,
    error: Option<String>,
    action_at: Option<u64>,
    created_at: u64,
}

/// What an ack names: action, version, network, hash (lowercase, or empty
/// when the ack has none).
type AckKey = (String, String, String, String);

fn ack_key(event: &Event) -> Option<AckKey> {
    Some((
        event.tag_value("action")?.to_owned(),
        event.tag_value("version")?.to_owned(),
        event.tag_value("network")?.to_owned(),
        event
            .tag_value("hash")
            .map(str::to_ascii_lowercase)
            .unwrap_or_default(),
    ))
}

fn names(proposal: &Proposal, key: &AckKey) -> bool {
    proposal.action.as_str() == key.0
        && proposal.version == key.1
        && proposal.network == key.2
        && (key.3.is_empty() || key.3 == proposal.hash)
}

/// The latest ack per signer among `acks`.
fn latest_per_node<'a>(acks: impl Iterator<Item = &'a Event>) -> Vec<NodeAck> {
    crate::fleet::latest_per_author(acks)
        .into_values()
        .map(|e| NodeAck {
            node_id: e.tag_value("node_id").unwrap_or("?").to_owned(),
            signer: e.pubkey,
            status: e.tag_value("status").unwrap_or("?").to_owned(),
            error: e.tag_value("error").map(str::to_owned),
            action_at: e.tag_value("action_at").and_then(|t| t.parse().ok()),
            created_at: e.created_at,
        })
        .collect()
}

fn ack_json(a: &NodeAck) -> Value {
    json!({
        "node_id": a.node_id, "signer": npub(&a.signer), "status": a.status,
        "error": a.error, "action_at": a.action_at, "created_at": a.created_at,
    })
}

fn print_acks(acks: &[NodeAck]) {
    if acks.is_empty() {
        println!("    acks: none");
    }
    for a in acks {
        println!(
            "    ack {:<20} {:<8} {}{}",
            printable(&a.node_id, 64),
            printable(&a.status, 16),
            a.action_at.map_or_else(|| "-".to_owned(), format_utc),
            a.error
                .as_deref()
                .map_or_else(String::new, |e| format!("  error: {}", printable(e, 120)))
        );
    }
}

/// Runs `govctl history`.
///
/// # Errors
/// Bad options or config; a relay that cannot be reached is reported in
/// the output, not as an error.
/// `since` and `until` are unix seconds (`--since`, `--until` parsed).
pub fn run(args: &HistoryArgs, since: u64, until: Option<u64>) -> Result<()> {
    let source = Source::resolve(&args.source)?;
    let timeout = Duration::from_secs(args.source.timeout);
    let roster = args
        .source
        .fleet
        .as_deref()
        .map(crate::fleet::load)
        .transpose()?;
    let now = qube_agent::now();
    let runtime = relays::runtime()?;
    let window = |kind: u16| Filter {
        kinds: vec![kind],
        since: Some(since),
        until,
        limit: Some(FETCH_LIMIT),
        ..Filter::default()
    };
    let directive_filter = Filter {
        authors: source.follows.keys().copied().collect(),
        tags: BTreeMap::from([('d', vec![source.rules.d_tag.clone()])]),
        ..window(DIRECTIVE_KIND)
    };
    let (directive_events, relay_rows) =
        runtime.block_on(fetch(source.targets.clone(), directive_filter, timeout));
    let (ack_events, _) =
        runtime.block_on(fetch(source.targets.clone(), window(ACK_KIND), timeout));

    // Proposals and their votes, expired and replaced ones included.
    let mut proposals: BTreeMap<Proposal, Vec<Vote>> = BTreeMap::new();
    for event in directive_events {
        if source.config.is_some() && !source.follows.contains_key(&event.pubkey) {
            continue;
        }
        let Ok(d) = Directive::from_event_including_expired(event, &source.rules, now) else {
            continue;
        };
        proposals
            .entry(d.proposal().clone())
            .or_default()
            .push(Vote {
                author: *d.author(),
                name: source.follows.get(d.author()).map(|(n, _)| n.clone()),
                created_at: d.event().created_at,
                expiration: d.expiration(),
                id: d.event().id_hex(),
            });
    }
    let acks: Vec<(AckKey, Event)> = ack_events
        .into_iter()
        .filter(|e| e.kind == ACK_KIND)
        .filter_map(|e| Some((ack_key(&e)?, e)))
        .filter(|(k, _)| k.2 == source.network)
        .collect();
    let mut rows: Vec<(Proposal, Vec<Vote>, Vec<NodeAck>)> = proposals
        .into_iter()
        .map(|(p, votes)| {
            let node_acks =
                latest_per_node(acks.iter().filter(|(k, _)| names(&p, k)).map(|(_, e)| e));
            (p, votes, node_acks)
        })
        .collect();
    rows.sort_by_key(|(_, votes, _)| {
        std::cmp::Reverse(votes.iter().map(|v| v.created_at).max().unwrap_or(0))
    });
    // Roster nodes in each proposal's wave that have not answered.
    let silent = |p: &Proposal, node_acks: &[NodeAck]| -> Option<Vec<String>> {
        let roster = roster.as_ref()?;
        Some(
            roster
                .iter()
                .filter(|(_, key)| p.in_wave(key) && !node_acks.iter().any(|a| a.signer == *key))
                .map(|(name, _)| name.clone())
                .collect(),
        )
    };
    // Acks of proposals whose directives the relays no longer hold.
    let mut orphans: BTreeMap<AckKey, Vec<&Event>> = BTreeMap::new();
    for (key, event) in &acks {
        if !rows.iter().any(|(p, _, _)| names(p, key)) {
            orphans.entry(key.clone()).or_default().push(event);
        }
    }

    if args.source.json {
        let value = json!({
            "network": source.network,
            "since": since,
            "until": until,
            "relays": relay_rows.iter().map(|r| json!({
                "url": r.url, "answered": r.answered, "error": r.error,
            })).collect::<Vec<_>>(),
            "proposals": rows.iter().map(|(p, votes, node_acks)| json!({
                "proposal": crate::status_report::proposal_json(p),
                "votes": votes.iter().map(|v| json!({
                    "author": npub(&v.author), "name": v.name, "id": v.id,
                    "created_at": v.created_at, "expiration": v.expiration,
                    "expired": v.expiration.is_some_and(|x| now >= x),
                })).collect::<Vec<_>>(),
                "acks": node_acks.iter().map(ack_json).collect::<Vec<_>>(),
                "not_answered": silent(p, node_acks),
                "wave": roster.as_ref().map(|r| r.iter().map(|(name, key)| json!({
                    "name": name, "npub": npub(key), "in_wave": p.in_wave(key),
                    "position": p.wave_position(key),
                })).collect::<Vec<_>>()),
            })).collect::<Vec<_>>(),
            "acks_without_directives": orphans.iter().map(|(k, events)| json!({
                "action": k.0, "version": k.1, "network": k.2, "hash": k.3,
                "acks": latest_per_node(events.iter().copied()).iter().map(ack_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| crate::error::CliError::failure(format!("cannot serialize: {e}")))?;
        println!("{text}");
        return Ok(());
    }

    println!(
        "history of network {} since {}{}",
        printable(&source.network, 64),
        format_utc(since),
        until.map_or_else(String::new, |u| format!(" until {}", format_utc(u)))
    );
    for r in relay_rows.iter().filter(|r| !r.answered) {
        println!(
            "  relay {} did not answer: {}",
            r.url,
            printable(r.error.as_deref().unwrap_or("no answer"), 200)
        );
    }
    if rows.is_empty() {
        println!("\n(no directives in that window)");
    }
    for (p, votes, node_acks) in &rows {
        println!("\n{}", printable(&p.to_string(), 400));
        for v in votes {
            let state = match v.expiration {
                Some(x) if now >= x => format!("expired {}", format_utc(x)),
                Some(x) => format!("expires {}", format_utc(x)),
                None => "no expiry".to_owned(),
            };
            println!(
                "    vote {:<20} signed {} ({state})",
                printable(v.name.as_deref().unwrap_or(&npub(&v.author)), 64),
                format_utc(v.created_at)
            );
        }
        print_acks(node_acks);
        if let Some(names) = silent(p, node_acks) {
            if names.is_empty() {
                println!("    every node of the fleet file in its wave answered");
            } else {
                println!(
                    "    not answered (in its wave): {}",
                    printable(&names.join(", "), 400)
                );
            }
        }
    }
    for (k, events) in &orphans {
        println!(
            "\n{} {} on {} hash {} (directives no longer on the relays)",
            printable(&k.0, 16),
            printable(&k.1, 64),
            printable(&k.2, 64),
            if k.3.is_empty() { "?" } else { &k.3 }
        );
        print_acks(&latest_per_node(events.iter().copied()));
    }
    Ok(())
}
