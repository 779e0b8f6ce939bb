//! The Prometheus metrics file (`metrics_file`): what the monitor knows,
//! in the text exposition format that node_exporter's textfile collector
//! reads, written atomically whenever a value changes. No listening socket.
//!
//! The text is encoded by `prometheus-client` (the Prometheus project's Rust
//! client) from a fresh registry per [`Snapshot`], so a proposal that lost
//! its votes disappears from the file instead of lingering. Only gauges are
//! used: node_exporter parses the file with the classic text
//! parser (Prometheus text format 0.0.4), which has no `info` or `stateset`
//! type and would refuse the whole file. Counts are gauges too:
//! `prometheus-client` writes OpenMetrics text, where a counter family
//! `NAME` has samples `NAME_total`, which the classic parser reads as an
//! untyped family `NAME_total` without help text (`promtool check metrics`
//! refuses that); they restart from 0 with the agent. The closing `# EOF` is a comment to that parser.
//!
//! Metric names (prefix `qube_agent_`), labels and units are listed in
//! README.md, "Telemetry"; `deploy/prometheus-alerts.yml` alerts on them.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::core::ack::Status;
use crate::core::directive::Proposal;
use crate::ipc::{Enforcement, RelayCounters};

/// The file is rewritten at least this often even when nothing changed,
/// so `qube_agent_metrics_updated_timestamp_seconds` (and the file's
/// mtime) tell a live agent from a dead one.
pub(crate) const METRICS_REFRESH: Duration = Duration::from_secs(60);

/// Label set of a family: `(name, value)` pairs.
type Labels = Vec<(String, String)>;

/// How directives offered to the quorum engine fared since the agent
/// started (`qube_agent_directives_total{result}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DirectiveCounts {
    /// Newer than the voter's current directive: stored and counted.
    pub(crate) accepted: u64,
    /// Not newer than the voter's current directive.
    pub(crate) stale: u64,
    /// Dated further ahead than `policy.max_future_skew_secs` allows by the
    /// monitor's clock.
    pub(crate) future_dated: u64,
}

/// The last hook run (from this process, or the journal at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastAction {
    /// What ran.
    pub(crate) proposal: Proposal,
    /// How it ended.
    pub(crate) status: Status,
    /// Why it failed (the ack's `error`).
    pub(crate) error: Option<String>,
    /// When the outcome was recorded, unix seconds.
    pub(crate) at: u64,
}

/// One relay as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelaySample {
    /// The URL as configured.
    pub(crate) url: String,
    /// Connected now.
    pub(crate) connected: bool,
    /// What the current worker counted for it.
    pub(crate) counters: RelayCounters,
}

/// Everything the metrics file shows, taken from the monitor at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// This program's version (`CARGO_PKG_VERSION`).
    pub(crate) agent_version: String,
    /// The configured network.
    pub(crate) network: String,
    /// This node's `node_id`.
    pub(crate) node: String,
    /// The node key, 64 hex characters.
    pub(crate) node_pubkey: String,
    /// When the agent started, unix seconds.
    pub(crate) start_time: u64,
    /// Each configured relay, in config order.
    pub(crate) relays: Vec<RelaySample>,
    /// Directives offered to the engine, by result.
    pub(crate) directives: DirectiveCounts,
    /// The configured quorum.
    pub(crate) quorum: usize,
    /// Every proposal with at least one current vote, and its votes.
    pub(crate) votes: Vec<(Proposal, usize)>,
    /// The last hook run, if any.
    pub(crate) last_action: Option<LastAction>,
    /// The proposal waiting for its deadline and that deadline (unix
    /// seconds), if any.
    pub(crate) scheduled: Option<(Proposal, u64)>,
    /// Worker restarts since the agent started.
    pub(crate) worker_restarts: u32,
    /// The current worker's sandbox, once it said.
    pub(crate) sandbox: Option<Enforcement>,
    /// Acknowledgements in the outbox, not yet stored by a relay.
    pub(crate) outbox_pending: usize,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

/// A gauge far beyond any count or time here saturates instead of wrapping.
fn int(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

/// The labels naming a proposal: its whole tuple (`docs/PROTOCOL.md`
/// section 4), so two proposals never share a series.
fn proposal_labels(p: &Proposal) -> Labels {
    labels(&[
        ("action", p.action.as_str()),
        ("network", &p.network),
        ("version", &p.version),
        ("hash", &p.hash),
        ("genesis_url", p.genesis_url.as_deref().unwrap_or("")),
        (
            "required_by",
            &p.required_by.map(|t| t.to_string()).unwrap_or_default(),
        ),
    ])
}

/// The registry for `s`: every metric of README.md, "Telemetry".
fn registry(s: &Snapshot) -> Registry {
    let mut r = Registry::with_prefix("qube_agent");

    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&labels(&[
        ("version", &s.agent_version),
        ("network", &s.network),
        ("node", &s.node),
        ("pubkey", &s.node_pubkey),
    ]))
    .set(1);
    r.register(
        "build_info",
        "Always 1; the labels say which agent version runs, for which network and node",
        info,
    );
    r.register(
        "start_time_seconds",
        "When the agent started, unix seconds",
        gauge(int(s.start_time)),
    );

    let connected = Family::<Labels, Gauge>::default();
    let events = Family::<Labels, Gauge>::default();
    for relay in &s.relays {
        connected
            .get_or_create(&labels(&[("relay", &relay.url)]))
            .set(i64::from(relay.connected));
        let c = &relay.counters;
        for (kind, value) in [
            ("delivered", c.delivered),
            ("duplicate", c.duplicate),
            ("invalid_signature", c.invalid),
            ("outside_filter", c.outside_filter),
            ("malformed", c.malformed),
        ] {
            events
                .get_or_create(&labels(&[("relay", &relay.url), ("kind", kind)]))
                .set(int(value));
        }
    }
    r.register(
        "relay_connected",
        "1 while the worker is connected to the relay, else 0",
        connected,
    );
    r.register(
        "relay_events",
        "Events a relay sent, by what the worker made of them, since the worker started",
        events,
    );

    let directives = Family::<Labels, Gauge>::default();
    for (result, value) in [
        ("accepted", s.directives.accepted),
        ("stale", s.directives.stale),
        ("future_dated", s.directives.future_dated),
    ] {
        directives
            .get_or_create(&labels(&[("result", result)]))
            .set(int(value));
    }
    r.register(
        "directives",
        "Directives the worker forwarded, by what the monitor did with them, since the agent started",
        directives,
    );

    r.register(
        "quorum",
        "Distinct voters needed for a proposal",
        gauge(int(s.quorum)),
    );
    let votes = Family::<Labels, Gauge>::default();
    for (proposal, count) in &s.votes {
        votes
            .get_or_create(&proposal_labels(proposal))
            .set(int(*count));
    }
    r.register(
        "proposal_votes",
        "Voters whose current, unexpired directive is this proposal",
        votes,
    );

    if let Some(last) = &s.last_action {
        let l = labels(&[
            ("action", last.proposal.action.as_str()),
            ("version", &last.proposal.version),
        ]);
        let at = Family::<Labels, Gauge>::default();
        at.get_or_create(&l).set(int(last.at));
        r.register(
            "last_action_timestamp_seconds",
            "When the last hook run ended, unix seconds",
            at,
        );
        let success = Family::<Labels, Gauge>::default();
        success
            .get_or_create(&l)
            .set(i64::from(last.status == Status::Success));
        r.register(
            "last_action_success",
            "1 if the last hook run succeeded, 0 if it failed",
            success,
        );
    }

    if let Some((proposal, at)) = &s.scheduled {
        let l = labels(&[
            ("action", proposal.action.as_str()),
            ("version", &proposal.version),
        ]);
        let scheduled = Family::<Labels, Gauge>::default();
        scheduled.get_or_create(&l).set(int(*at));
        r.register(
            "scheduled_action_timestamp_seconds",
            "When the scheduled action starts (its required_by), unix seconds",
            scheduled,
        );
    }

    r.register(
        "worker_restarts",
        "Times the sandboxed worker was started again since the agent started",
        gauge(i64::from(s.worker_restarts)),
    );
    if let Some(level) = s.sandbox {
        let sandbox = Family::<Labels, Gauge>::default();
        for l in [Enforcement::Full, Enforcement::Partial, Enforcement::None] {
            sandbox
                .get_or_create(&labels(&[("level", l.as_str())]))
                .set(i64::from(l == level));
        }
        r.register(
            "worker_sandbox",
            "1 for the level of sandboxing the kernel enforces on the current worker (full, partial, none)",
            sandbox,
        );
    }
    r.register(
        "outbox_pending",
        "Acknowledgements no relay has stored yet",
        gauge(int(s.outbox_pending)),
    );
    r
}

/// The metrics of `snapshot` in text format, without the update time
/// and the closing `# EOF` ([`finish`] adds them).
///
/// # Errors
/// Only if writing to a `String` fails (it does not).
pub(crate) fn render(snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    encode_registry(&mut body, &registry(snapshot))?;
    Ok(body)
}

/// `body` with `qube_agent_metrics_updated_timestamp_seconds` = `now`
/// and the closing `# EOF`.
fn finish(mut body: String, now: u64) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("qube_agent");
    r.register(
        "metrics_updated_timestamp_seconds",
        "When the agent last wrote this file, unix seconds (at least every minute)",
        gauge(int(now)),
    );
    encode_registry(&mut body, &r)?;
    encode_eof(&mut body)?;
    Ok(body)
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same
/// directory, mode 0644 (node_exporter runs as another user), renamed over
/// `path`. A reader sees the old file or the new one, never a part.
///
/// # Errors
/// Any failed step; the temporary file is then removed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("/"),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".qube_agent.prom.")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `body`'s lines, sorted: equal for two encodings of the same values.
fn canonical(body: &str) -> String {
    let mut lines: Vec<&str> = body.lines().collect();
    lines.sort_unstable();
    lines.join("\n")
}

/// The metrics file: written when its content changes, or
/// [`METRICS_REFRESH`] after the last write.
#[derive(Debug)]
pub(crate) struct MetricsFile {
    path: PathBuf,
    /// What was last written, without the update time, lines sorted.
    last_body: Option<String>,
    last_write: Option<Instant>,
    /// The last write failed (its error was logged).
    failing: bool,
}

impl MetricsFile {
    /// A file at `path` (`metrics_file`), written at the first
    /// [`MetricsFile::update`].
    pub(crate) fn new(path: PathBuf) -> MetricsFile {
        MetricsFile {
            path,
            last_body: None,
            last_write: None,
            failing: false,
        }
    }

    /// When the file must be written again even if nothing changes.
    pub(crate) fn refresh_at(&self) -> Option<Instant> {
        self.last_write.map(|t| t + METRICS_REFRESH)
    }

    /// Writes the file if `snapshot` differs from what was written last or
    /// [`METRICS_REFRESH`] passed; `now` is the unix time for the update
    /// gauge. A failed write is logged at warn level once, until a write
    /// succeeds again, and retried at the next call.
    pub(crate) fn update(&mut self, snapshot: &Snapshot, now: u64) {
        let body = match render(snapshot) {
            Ok(body) => body,
            Err(e) => {
                warn!("cannot encode the metrics: {e}");
                return;
            }
        };
        let due = self
            .last_write
            .is_none_or(|t| t.elapsed() >= METRICS_REFRESH);
        // A family keeps its series in a hash map, so their order differs
        // from one encoding to the next: compare the sorted lines.
        let canonical = canonical(&body);
        if !due && self.last_body.as_deref() == Some(canonical.as_str()) {
            return;
        }
        let text = match finish(body, now) {
            Ok(text) => text,
            Err(e) => {
                warn!("cannot encode the metrics: {e}");
                return;
            }
        };
        match write_atomic(&self.path, text.as_bytes()) {
            Ok(()) => {
                if self.failing {
                    info!("metrics file {} written again", self.path.display());
                }
                self.failing = false;
                self.last_body = Some(canonical);
                self.last_write = Some(Instant::now());
            }
            Err(e) => {
                if !self.failing {
                    warn!(
                        "cannot write the metrics file {}: {e} (retrying; the unit's ReadWritePaths= must include its directory)",
                        self.path.display()
                    );
                }
                self.failing = true;
                // Retry at the next change or refresh, not at every event.
                self.last_write = Some(Instant::now());
                self.last_body = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::core::directive::Action;

    fn proposal(version: &str) -> Proposal {
        Proposal {
            action: Action::Upgrade,
            network: "hqz".into(),
            version: version.into(),
            hash: "ab".repeat(32),
            genesis_url: None,
            required_by: None,
            rollout: None,
            nodes: Vec::new(),
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            agent_version: "0.1.0".into(),
            network: "hqz".into(),
            node: "pillar \"eu\"".into(),
            node_pubkey: "00".repeat(32),
            start_time: 1_700_000_000,
            relays: vec![RelaySample {
                url: "wss://r.example".into(),
                connected: true,
                counters: RelayCounters::default(),
            }],
            directives: DirectiveCounts::default(),
            quorum: 2,
            votes: vec![(proposal("v1.2.3"), 1)],
            last_action: None,
            scheduled: None,
            worker_restarts: 0,
            sandbox: None,
            outbox_pending: 0,
        }
    }

    #[test]
    fn only_types_the_classic_text_parser_knows() {
        let text = finish(render(&snapshot()).unwrap(), 5).unwrap();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let kind = line.rsplit(' ').next().unwrap();
            assert_eq!(kind, "gauge", "{line}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("node=\"pillar \\\"eu\\\"\""), "{text}");
    }

    #[test]
    fn a_scheduled_action_shows_its_deadline() {
        let mut s = snapshot();
        let text = finish(render(&s).unwrap(), 5).unwrap();
        assert!(!text.contains("scheduled_action"), "{text}");
        s.scheduled = Some((proposal("v1.3.0"), 1_800_000_000));
        let text = finish(render(&s).unwrap(), 5).unwrap();
        assert!(
            text.contains(
                "qube_agent_scheduled_action_timestamp_seconds{action=\"upgrade\",version=\"v1.3.0\"} 1800000000"
            ),
            "{text}"
        );
    }

    #[test]
    fn writes_on_change_and_not_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        let mut file = MetricsFile::new(path.clone());
        let mut s = snapshot();
        file.update(&s, 1);
        let first = std::fs::read_to_string(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        file.update(&s, 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "unchanged");
        s.worker_restarts = 3;
        file.update(&s, 3);
        let second = std::fs::read_to_string(&path).unwrap();
        assert!(second.contains("qube_agent_worker_restarts 3"), "{second}");
        assert!(second.contains("qube_agent_metrics_updated_timestamp_seconds 3"));
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
