//! The effective config as TOML, what `qube-agent check-config` prints.
//!
//! A borrowed [`Serialize`] view of the [`Config`] is written by the `toml`
//! crate, the same library that parses it back, so every string (quotes,
//! backslashes, control characters, any Unicode) is escaped by TOML's own
//! rules rather than by hand.

use std::borrow::Cow;

use serde::Serialize;

use super::{Config, Follow, Hook, NodeKeySource};

/// The first line of the output.
const HEADER: &str = "# qube-agent effective configuration (defaults filled in)\n";

impl Config {
    /// The effective config as TOML: every default filled in, public keys
    /// as npub, relays in canonical form, times in seconds, keys in the
    /// order of `docs/qube-agent.example.toml`. A comment block at the top names each
    /// optional key or hook section that is not set and what that means.
    ///
    /// Parsing the output gives back an equal [`Config`], and normalizing
    /// that gives the same text. Strings are written by the `toml` crate,
    /// which picks the quoting (basic `"..."`, literal `'...'` or
    /// multi-line) and escapes `"`, `\` and control characters; other
    /// Unicode is written as is.
    ///
    /// Never panics: see the invariant in the body.
    pub fn normalized_toml(&self) -> String {
        let mut out = String::from(HEADER);
        for note in self.unset_notes() {
            out.push_str("# ");
            out.push_str(note);
            out.push('\n');
        }
        out.push('\n');
        // Invariant: the view holds only strings, booleans, integers no
        // larger than one day in seconds or the number of follows, arrays
        // of strings and tables, with every `None` skipped. All of these are
        // representable in TOML; the serializer fails only on values that
        // are not (integers above `i64::MAX`, `None` inside an array,
        // non-string map keys).
        #[allow(clippy::expect_used)]
        let body =
            toml::to_string(&View::of(self)).expect("a Config view is representable in TOML");
        out.push_str(&body);
        out
    }

    /// One line per optional key or section that is not set, in file order.
    fn unset_notes(&self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if self.node_id.is_none() {
            notes.push("node_id: not set, derived from the node key");
        }
        if self.node_key.is_none() {
            notes.push("node_key: not set, state_dir/node.key");
        }
        if self.current_version.is_none() && self.version_command.is_none() {
            notes.push(
                "current_version, version_command: not set; upgrades are refused until an \
                 upgrade is recorded in state_dir",
            );
        } else if self.current_version.is_none() {
            notes.push("current_version: not set");
        }
        if self.metrics_file.is_none() {
            notes.push("metrics_file: not set, no metrics file");
        }
        if self.heartbeat.relays.is_empty() {
            notes.push("[heartbeat]: no relays, no heartbeats");
        }
        if self.alert.is_none() {
            notes.push("[alert]: not set, no alert hook");
        }
        if self.upgrade.is_none() {
            notes.push("[upgrade]: not set");
        }
        if self.reboot.is_none() {
            notes.push("[reboot]: not set");
        }
        notes
    }
}

/// The whole file, in the key order of `docs/qube-agent.example.toml`.
#[derive(Serialize)]
struct View<'a> {
    network: &'a str,
    quorum: usize,
    relays: Vec<&'a str>,
    state_dir: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_key: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_command: Option<&'a [String]>,
    d_tag: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_file: Option<Cow<'a, str>>,
    follows: Vec<FollowView<'a>>,
    policy: PolicyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    upgrade: Option<HookView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reboot: Option<HookView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat: Option<HeartbeatView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<AlertView<'a>>,
}

/// The `[alert]` section, defaults filled in.
#[derive(Serialize)]
struct AlertView<'a> {
    command: &'a [String],
    timeout_secs: u64,
    min_interval_secs: u64,
    relays_down_secs: u64,
    worker_restarts: u64,
}

/// The `[heartbeat]` section, when it is not the default.
#[derive(Serialize)]
struct HeartbeatView<'a> {
    relays: Vec<&'a str>,
    interval_secs: u64,
}

/// The `[tls]` section.
#[derive(Serialize)]
struct TlsView<'a> {
    extra_roots: Cow<'a, str>,
}

/// One `[[follows]]` entry, the key as an npub.
#[derive(Serialize)]
struct FollowView<'a> {
    name: &'a str,
    npub: String,
    role: &'static str,
}

/// The `[policy]` section, defaults filled in.
#[derive(Serialize)]
struct PolicyView {
    max_future_skew_secs: u64,
    allow_downgrade: bool,
    allow_insecure_ws: bool,
}

/// An `[upgrade]` or `[reboot]` section; unset optional argvs left out.
#[derive(Serialize)]
struct HookView<'a> {
    command: &'a [String],
    timeout_secs: u64,
    deadline_grace_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollback: Option<&'a [String]>,
    /// Last: written as the `[SECTION.health]` table, also for the argv
    /// form (which it is equivalent to).
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HealthView<'a>>,
}

/// A `[SECTION.health]` table, defaults filled in.
#[derive(Serialize)]
struct HealthView<'a> {
    command: &'a [String],
    settle_secs: u64,
    interval_secs: u64,
    window_secs: u64,
    tries: u32,
}

impl<'a> View<'a> {
    fn of(config: &'a Config) -> Self {
        View {
            network: &config.network,
            quorum: config.quorum,
            relays: config.relays.iter().map(|r| r.as_str()).collect(),
            // Paths come from TOML strings, so they are always UTF-8.
            state_dir: config.state_dir.to_string_lossy(),
            node_id: config.node_id.as_deref(),
            node_key: config.node_key.as_ref().map(|source| match source {
                NodeKeySource::File(path) => path.to_string_lossy(),
                NodeKeySource::Env(var) => Cow::Owned(format!("env:{var}")),
            }),
            current_version: config.current_version.as_ref().map(|v| v.as_str()),
            version_command: config.version_command.as_deref(),
            d_tag: &config.d_tag,
            metrics_file: config.metrics_file.as_ref().map(|p| p.to_string_lossy()),
            follows: config.follows.iter().map(FollowView::of).collect(),
            policy: PolicyView {
                max_future_skew_secs: config.policy.max_future_skew_secs,
                allow_downgrade: config.policy.allow_downgrade,
                allow_insecure_ws: config.policy.allow_insecure_ws,
            },
            upgrade: config.upgrade.as_ref().map(HookView::of),
            reboot: config.reboot.as_ref().map(HookView::of),
            tls: config.tls_extra_roots_path().map(|path| TlsView {
                extra_roots: path.to_string_lossy(),
            }),
            heartbeat: (config.heartbeat != super::HeartbeatConfig::default()).then(|| {
                HeartbeatView {
                    relays: config
                        .heartbeat
                        .relays
                        .iter()
                        .filter_map(|i| config.relays.get(*i))
                        .map(|r| r.as_str())
                        .collect(),
                    interval_secs: config.heartbeat.interval_secs,
                }
            }),
            alert: config.alert.as_ref().map(|a| AlertView {
                command: a.command(),
                timeout_secs: a.timeout_secs(),
                min_interval_secs: a.min_interval_secs(),
                relays_down_secs: a.relays_down_secs(),
                worker_restarts: a.worker_restarts(),
            }),
        }
    }
}

impl<'a> FollowView<'a> {
    fn of(follow: &'a Follow) -> Self {
        FollowView {
            name: &follow.name,
            npub: follow.npub(),
            role: follow.role.as_str(),
        }
    }
}

impl<'a> HookView<'a> {
    fn of(hook: &'a Hook) -> Self {
        HookView {
            command: hook.command(),
            timeout_secs: hook.timeout_secs(),
            deadline_grace_secs: hook.deadline_grace_secs(),
            artifact: hook.artifact().map(|a| a.as_str()),
            fetch: hook.fetch(),
            rollback: hook.rollback(),
            health: hook.health().map(|h| HealthView {
                command: h.command(),
                settle_secs: h.settle_secs(),
                interval_secs: h.interval_secs(),
                window_secs: h.window_secs(),
                tries: h.tries(),
            }),
        }
    }
}
