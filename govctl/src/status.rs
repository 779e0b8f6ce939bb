//! `govctl status`: the fleet as the relays show it.
//!
//! Fetches the follows' directives (kind 33321, `#d`, authors = follows of
//! the config), keeps each author's current one exactly as the agent does,
//! tallies with the agent's own [`Engine`] (votes per proposal, who voted,
//! what is eligible, conflicts), then fetches the acknowledgements (kind
//! 3333, `#a` = the winning voters' directive addresses) and keeps the
//! latest one per `node_id` that names the winning proposal. The result is
//! a [`Report`], printed as tables or JSON.
//!
//! Without `--config` every author of a valid directive is counted as a
//! voter and the quorum is `--quorum`, else a majority of those authors:
//! a view for exploring, not what any agent decides.
//!
//! Acks are signed by node keys govctl does not know: `node_id` is what the
//! signer claims, so the signer is shown too.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use qube_agent::config::{Config, Role};
use qube_agent::core::ack::ACK_KIND;
use qube_agent::core::admit::{admit, Authors, Rejection};
use qube_agent::core::directive::{Directive, Proposal, DIRECTIVE_KIND};

use qube_agent::core::quorum::{Decision, Engine, QuorumConfig};
use qube_agent::relay::{RelayEvent, RelayPool, RelayTarget};
use qube_agent::{Event, Filter};
use tokio::time::Instant;

use crate::cli::{SourceArgs, StatusArgs};
use crate::error::{CliError, Result};
use crate::propose::rules;
use crate::relays;
use crate::show::printable;
use crate::status_report::{
    AckRow, DirectiveRow, ProposalRow, RefusedRow, RelayRow, Report, MAX_REFUSED_SHOWN,
};

/// Where `status` and `history` read, and what counts: from `--config`
/// and the options that override it.
pub(crate) struct Source {
    /// The agent config, when given.
    pub config: Option<Config>,
    /// The network.
    pub network: String,
    /// The relays to read.
    pub targets: Vec<RelayTarget>,
    /// The directive rules (`d` tag, network, skew).
    pub rules: qube_agent::core::directive::DirectiveRules,
    /// The config's follows: pubkey to (name, role).
    pub follows: BTreeMap<[u8; 32], (String, Role)>,
}

impl Source {
    /// Loads the config (if any) and resolves network, relays and rules.
    ///
    /// # Errors
    /// A bad config, no network, or a bad relay URL.
    pub(crate) fn resolve(args: &SourceArgs) -> Result<Source> {
        let (relays, d_tag) = (&args.relay, args.d_tag.as_str());
        let config = match &args.config {
            Some(path) => Some(crate::config_edit::load_config(path)?),
            None => None,
        };
        let network = match (args.network.as_deref(), &config) {
            (Some(n), _) => n.to_owned(),
            (None, Some(c)) => c.network().to_owned(),
            (None, None) => {
                return Err(CliError::usage("no network given")
                    .hint("add --network NAME (e.g. hqz) or --config FILE"))
            }
        };
        let relay_urls: Vec<String> = match (&config, relays.is_empty()) {
            (Some(c), true) => c.relays().iter().map(|r| r.as_str().to_owned()).collect(),
            _ => relays.to_vec(),
        };
        let allow_insecure = args.allow_insecure_ws
            || config
                .as_ref()
                .is_some_and(|c| c.policy().allow_insecure_ws());
        let targets = relays::targets(&relay_urls, allow_insecure)?;
        let mut rules = match &config {
            Some(c) => c.directive_rules(),
            None => rules(&network, d_tag),
        };
        rules.network.clone_from(&network);
        let follows = config
            .iter()
            .flat_map(|c| c.follows())
            .map(|f| (*f.pubkey(), (f.name().to_owned(), f.role())))
            .collect();
        Ok(Source {
            config,
            network,
            targets,
            rules,
            follows,
        })
    }
}

/// Runs `govctl status`.
///
/// # Errors
/// Bad options or config, no relay answered, or an impossible quorum.
pub fn run(args: &StatusArgs) -> Result<()> {
    let Source {
        config,
        network,
        targets,
        rules,
        follows,
    } = Source::resolve(&args.source)?;
    let timeout = Duration::from_secs(args.source.timeout);

    let runtime = relays::runtime()?;
    let directive_filter = Filter {
        kinds: vec![DIRECTIVE_KIND],
        authors: follows.keys().copied().collect(),
        tags: BTreeMap::from([('d', vec![rules.d_tag.clone()])]),
        ..Filter::default()
    };
    let (events, relay_rows) = runtime.block_on(fetch(targets.clone(), directive_filter, timeout));
    if relay_rows.iter().all(|r| !r.answered) {
        let reasons: Vec<String> = relay_rows
            .iter()
            .map(|r| format!("{}: {}", r.url, r.error.as_deref().unwrap_or("no answer")))
            .collect();
        return Err(CliError::failure("no relay answered").hint(format!(
            "{}; check the URLs, or raise --timeout",
            printable(&reasons.join("; "), 400)
        )));
    }

    // Every author's current directive, as the agent keeps them.
    let now = qube_agent::now();
    let mut current: BTreeMap<[u8; 32], Directive> = BTreeMap::new();
    let mut ignored = 0usize;
    // With a config, the follows (voters and observers, shown apart);
    // without one, every author a relay returned.
    let follow_keys: BTreeSet<[u8; 32]> = follows.keys().copied().collect();
    let authors = if config.is_some() {
        Authors::Only(&follow_keys)
    } else {
        Authors::Any
    };
    let mut refused = Vec::new();
    for event in events {
        let (id, author) = (event.id_hex(), event.pubkey);
        match admit(event, &rules, authors, now) {
            Ok(d) if current.get(d.author()).is_none_or(|c| d.supersedes(c)) => {
                current.insert(*d.author(), d);
            }
            Ok(_) => {}
            Err(why) => {
                ignored += 1;
                // A follow's directive the agent would not count: say why.
                if let Rejection::Rules(rule) = why {
                    if refused.len() < MAX_REFUSED_SHOWN {
                        refused.push(RefusedRow {
                            id,
                            author,
                            name: follows.get(&author).map(|(name, _)| name.clone()),
                            reason: rule.to_string(),
                        });
                    }
                }
            }
        }
    }
    let voters: BTreeSet<[u8; 32]> = match &config {
        Some(c) => c.voters().map(|f| *f.pubkey()).collect(),
        None => current.keys().copied().collect(),
    };
    let quorum = args
        .quorum
        .or(config.as_ref().map(Config::quorum))
        .unwrap_or(voters.len() / 2 + 1);
    let name_of = |key: &[u8; 32]| follows.get(key).map(|(name, _)| name.clone());

    let mut report = Report {
        network,
        d_tag: rules.d_tag.clone(),
        quorum,
        voters: voters.len(),
        from_config: config.is_some(),
        relays: relay_rows,
        ignored_events: ignored,
        refused,
        directives: current
            .values()
            .map(|d| DirectiveRow {
                author: *d.author(),
                name: name_of(d.author()),
                role: follows.get(d.author()).map_or(Role::Voter, |(_, r)| *r),
                id: d.event().id_hex(),
                created_at: d.event().created_at,
                expired: d.is_expired_at(now),
                proposal: d.proposal().clone(),
            })
            .collect(),
        without_directive: follows
            .iter()
            .filter(|(k, _)| !current.contains_key(*k))
            .map(|(_, (name, role))| (name.clone(), *role))
            .collect(),
        proposals: Vec::new(),
        decision: None,
        acks: Vec::new(),
        fleet: None,
    };

    if !voters.is_empty() {
        let installed = config
            .as_ref()
            .and_then(|c| c.current_version())
            .map(|v| v.semver().clone());
        let allow_downgrade = config
            .as_ref()
            .is_some_and(|c| c.policy().allow_downgrade());
        let engine = Engine::from_directives(
            QuorumConfig {
                require_installed: false,
                node: None,
                voters,
                quorum,
                allow_downgrade,
            },
            current.into_values(),
        )
        .map_err(|e| {
            CliError::failure(format!("cannot tally: {e}"))
                .hint("use --quorum N with 1 <= N <= the number of voters")
        })?;
        report.proposals = engine
            .tally(now, installed.as_ref(), &|_| false)
            .into_iter()
            .map(|s| ProposalRow {
                names: s.voters.iter().map(&name_of).collect(),
                voters: s.voters,
                eligible: s.standing.is_eligible(),
                standing: s.standing.to_string(),
                proposal: s.proposal,
            })
            .collect();
        let decision = engine.decide(now, installed.as_ref(), &|_| false);
        if let Decision::Run {
            proposal,
            directives,
        } = &decision
        {
            let addresses = directives
                .iter()
                .map(|d| {
                    format!(
                        "{DIRECTIVE_KIND}:{}:{}",
                        hex::encode(d.author()),
                        rules.d_tag
                    )
                })
                .collect();
            let filter = Filter {
                kinds: vec![ACK_KIND],
                tags: BTreeMap::from([('a', addresses)]),
                ..Filter::default()
            };
            let (events, _) = runtime.block_on(fetch(targets.clone(), filter, timeout));
            report.acks = latest_acks(&events, proposal);
        }
        report.decision = Some(decision);
    }

    // The fleet view: the roster and each node's heartbeat.
    let roster = args
        .source
        .fleet
        .as_deref()
        .map(crate::fleet::load)
        .transpose()?;
    let heartbeat_filter = Filter {
        kinds: vec![crate::fleet::HEARTBEAT_KIND],
        authors: roster.iter().flatten().map(|(_, key)| *key).collect(),
        limit: Some(1000),
        ..Filter::default()
    };
    let (beat_events, _) = runtime.block_on(fetch(targets, heartbeat_filter, timeout));
    let beats = crate::fleet::heartbeats(&beat_events, &report.network, now, args.stale_after);
    if roster.is_some() || !beats.is_empty() {
        let winner = match &report.decision {
            Some(Decision::Run { proposal, .. }) => Some(proposal.clone()),
            _ => None,
        };
        report.fleet = Some(crate::fleet::build(
            roster,
            beats,
            winner.as_ref(),
            &report.acks,
        ));
    }

    if let Some(path) = &args.html {
        crate::config_edit::replace_file(path, &crate::fleet_html::page(&report, now), 0o644)?;
    }
    if args.source.json {
        let text = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| CliError::failure(format!("cannot serialize: {e}")))?;
        println!("{text}");
    } else {
        report.print();
    }
    if let Some(fleet) = &report.fleet {
        if fleet.wave_complete == Some(false) {
            let inside = fleet
                .nodes
                .iter()
                .filter(|n| n.in_wave == Some(true))
                .count();
            let done = fleet
                .nodes
                .iter()
                .filter(|n| n.in_wave == Some(true))
                .filter(|n| n.ack.as_ref().is_some_and(|a| a.status == "success"))
                .count();
            return Err(CliError::incomplete(format!(
                "wave incomplete: {done} of {inside} node(s) in the wave acknowledged success"
            )));
        }
    }
    Ok(())
}

/// The latest ack per `node_id` that names `proposal` (action, version,
/// network, and hash when the ack carries one).
fn latest_acks(events: &[Event], proposal: &Proposal) -> Vec<AckRow> {
    let mut by_node: BTreeMap<String, AckRow> = BTreeMap::new();
    for event in events.iter().filter(|e| e.kind == ACK_KIND) {
        let tag = |name: &str| event.tag_value(name);
        let matches = tag("action") == Some(proposal.action.as_str())
            && tag("version") == Some(proposal.version.as_str())
            && tag("network") == Some(proposal.network.as_str())
            && tag("hash").is_none_or(|h| h.eq_ignore_ascii_case(&proposal.hash));
        let Some(node_id) = tag("node_id").filter(|_| matches) else {
            continue;
        };
        let row = AckRow {
            node_id: node_id.to_owned(),
            version: tag("version").unwrap_or_default().to_owned(),
            status: tag("status").unwrap_or_default().to_owned(),
            error: tag("error").map(str::to_owned),
            action_at: tag("action_at").and_then(|t| t.parse().ok()),
            signer: event.pubkey,
            id: event.id_hex(),
            created_at: event.created_at,
        };
        if by_node
            .get(node_id)
            .is_none_or(|old| row.created_at > old.created_at)
        {
            by_node.insert(row.node_id.clone(), row);
        }
    }
    by_node.into_values().collect()
}

/// Subscribes with `filter` until every relay has sent its stored events
/// (EOSE) or failed, or `timeout` passes; returns the events (verified by
/// the relay client, deduplicated) and what each relay did.
pub(crate) async fn fetch(
    targets: Vec<RelayTarget>,
    filter: Filter,
    timeout: Duration,
) -> (Vec<Event>, Vec<RelayRow>) {
    let mut rows: Vec<RelayRow> = targets
        .iter()
        .map(|t| RelayRow {
            url: t.url.clone(),
            answered: false,
            error: None,
        })
        .collect();
    let (pool, mut rx) = RelayPool::start(targets, vec![filter], relays::options(timeout));
    let deadline = Instant::now() + timeout;
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    while !rows.iter().all(|r| r.answered || r.error.is_some()) {
        let Ok(Some(report)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            break;
        };
        let (relay, error) = match report {
            RelayEvent::Event { event, .. } => {
                if seen.insert(event.id) {
                    events.push(event);
                }
                continue;
            }
            RelayEvent::EndOfStored { relay } => {
                if let Some(r) = rows.get_mut(relay) {
                    r.answered = true;
                }
                continue;
            }
            RelayEvent::Disconnected { relay, reason, .. } => (relay, reason),
            // The relay closed our subscription (e.g. auth-required).
            RelayEvent::Notice { relay, message } if message.starts_with("subscription ") => {
                (relay, message)
            }
            _ => continue,
        };
        if let Some(r) = rows.get_mut(relay).filter(|r| !r.answered) {
            r.error = Some(error);
        }
    }
    drop(pool);
    for r in rows.iter_mut().filter(|r| !r.answered && r.error.is_none()) {
        r.error = Some(format!("nothing within {} s", timeout.as_secs()));
    }
    (events, rows)
}
