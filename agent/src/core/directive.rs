//! HyperQube directives (kind 33321): a verified [`Event`] becomes a typed
//! [`Directive`] once, here, or is rejected with a [`DirectiveError`].
//!
//! Follows `docs/PROTOCOL.md` section 3 (the tags) and section 5.1: kind
//! and `d` tag match, `network` is ours, the tags satisfy the HyperQube
//! profile, `created_at` is not too far in the future, and (NIP-40) the
//! directive has not expired. Whether the author is a voter is the quorum
//! engine's question ([`crate::core::quorum::Engine::offer`]).
//!
//! Pure: no I/O, no clock; the current time is always an argument, in unix
//! seconds.
//!
//! # NIP-40 expiry
//! NIP-40 defines `expiration` as "a unix timestamp at which the message
//! SHOULD be considered expired". We read that literally and fail closed: a
//! directive counts while `now < expiration` and is expired from the second
//! `now >= expiration` on. (rust-nostr and nostr-tools treat the expiration
//! second itself as still valid; counting one second less is the safe side
//! for a vote.)

use std::fmt;

use crate::core::error::truncated;
use crate::core::event::Event;

/// Event kind of a HyperQube directive (addressable, NIP-01).
pub const DIRECTIVE_KIND: u16 = 33321;

/// Default `d` tag of HyperQube directives.
pub const DEFAULT_D_TAG: &str = "hyperqube";

/// Default limit on how far `created_at` may be ahead of our clock, in seconds.
pub const DEFAULT_MAX_FUTURE_SKEW_SECS: u64 = 600;

/// Longest attacker-chosen text quoted in an error message, in bytes.
const MAX_QUOTED: usize = 80;

/// The tags this agent implements that a `crit` tag may name
/// (`docs/PROTOCOL.md` section 3, critical tags).
pub const IMPLEMENTED_CRITICAL_TAGS: [&str; 2] = ["rollout", "node"];

/// Most `node` tags one directive may carry.
pub const MAX_NODE_TAGS: usize = 1000;

/// What a directive must match besides its signature: the local settings of
/// `docs/PROTOCOL.md` section 5.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveRules {
    /// Required value of the `d` tag; default [`DEFAULT_D_TAG`] (`hyperqube`).
    pub d_tag: String,
    /// Our network id (e.g. `hqz`); the `network` tag must equal it exactly.
    pub network: String,
    /// How far `created_at` may be ahead of `now`, in seconds; default
    /// [`DEFAULT_MAX_FUTURE_SKEW_SECS`] (600).
    pub max_future_skew_secs: u64,
}

impl DirectiveRules {
    /// Rules for `network` with the default `d` tag and future skew.
    pub fn new(network: impl Into<String>) -> Self {
        DirectiveRules {
            d_tag: DEFAULT_D_TAG.to_owned(),
            network: network.into(),
            max_future_skew_secs: DEFAULT_MAX_FUTURE_SKEW_SECS,
        }
    }
}

/// The action a directive asks for (tag `action`; `upgrade` or `reboot`
/// when serialized).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `upgrade`: install `version`; subject to anti-rollback.
    Upgrade,
    /// `reboot`: restart from `genesis_url` by `required_by`.
    Reboot,
}

impl Action {
    /// The tag value: `upgrade` or `reboot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Upgrade => "upgrade",
            Action::Reboot => "reboot",
        }
    }

    /// Parses the exact, lower-case tag value; `None` for anything else.
    pub fn from_tag(value: &str) -> Option<Action> {
        match value {
            "upgrade" => Some(Action::Upgrade),
            "reboot" => Some(Action::Reboot),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proposal: the exact tuple voters must agree on (`docs/PROTOCOL.md`
/// section 4).
///
/// Two directives vote for the same proposal only when every field is equal.
/// `version` is kept exactly as signed, so `v1.2.3` and `1.2.3` are different
/// proposals (they can conflict, never add up); [`Proposal::semver`] gives
/// the version for *ordering*. The derived `Ord` is a lexicographic order on
/// the fields, for use as a map key; it is not version precedence.
///
/// Serialized (journal, `status --json`) as an object with these field
/// names; `genesis_url`, `required_by`, `rollout` and `nodes` are left out
/// when absent (so a proposal without a wave serializes as before waves
/// existed).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// Tag `action`.
    pub action: Action,
    /// Tag `network`.
    pub network: String,
    /// Tag `version`, exactly as signed (an optional leading `v` kept).
    pub version: String,
    /// Tag `hash`: SHA-256 of the artifact as 64 lower-case hex chars.
    pub hash: String,
    /// Tag `genesis_url`, as signed; required for [`Action::Reboot`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_url: Option<String>,
    /// Tag `required_by`, unix seconds; required for [`Action::Reboot`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_by: Option<u64>,
    /// Tag `rollout`: the percentage of nodes in the wave, 1 to 100
    /// (`docs/PROTOCOL.md` section 5.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<u8>,
    /// Tags `node`: node pubkeys named in the wave, 64 lower-case hex each,
    /// sorted, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

impl Proposal {
    /// The version as a semantic version, one leading `v` ignored
    /// (`v1.2.3` and `1.2.3` both give 1.2.3).
    ///
    /// Compare with [`semver::Version::cmp_precedence`] (SemVer 2.0 section
    /// 11: build metadata does not count).
    ///
    /// # Errors
    /// The `semver` parse error when `version` is not SemVer 2.0; never for a
    /// proposal taken from a [`Directive`].
    pub fn semver(&self) -> Result<semver::Version, semver::Error> {
        parse_version(&self.version)
    }

    /// Whether the proposal limits who acts (`rollout` or `node` tags).
    pub fn has_wave(&self) -> bool {
        self.rollout.is_some() || !self.nodes.is_empty()
    }

    /// The same proposal for every node: `rollout` and `nodes` removed.
    pub fn without_wave(&self) -> Proposal {
        Proposal {
            rollout: None,
            nodes: Vec::new(),
            ..self.clone()
        }
    }

    /// Where the node with 32-byte pubkey `node` falls for this proposal,
    /// 0 to 99 (`docs/PROTOCOL.md` section 5.8): the first 8 bytes of
    /// SHA-256(`<node pubkey hex>|<action>|<network>|<version as
    /// signed>|<hash>`) as a big-endian u64, mod 100.
    pub fn wave_position(&self, node: &[u8; 32]) -> u8 {
        use sha2::{Digest, Sha256};
        let text = format!(
            "{}|{}|{}|{}|{}",
            hex::encode(node),
            self.action.as_str(),
            self.network,
            self.version,
            self.hash.to_ascii_lowercase()
        );
        let digest = Sha256::digest(text.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0u8; 8]));
        // < 100, so it fits.
        u8::try_from(u64::from_be_bytes(first) % 100).unwrap_or(u8::MAX)
    }

    /// Whether the node with 32-byte pubkey `node` is in this proposal's
    /// wave: always without `rollout` and `node` tags; otherwise when it is
    /// named, or when [`Proposal::wave_position`] is below `rollout`.
    pub fn in_wave(&self, node: &[u8; 32]) -> bool {
        if !self.has_wave() {
            return true;
        }
        let hex = hex::encode(node);
        self.nodes.contains(&hex)
            || self
                .rollout
                .is_some_and(|percent| self.wave_position(node) < percent)
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} hash {} on {:?}",
            self.action, self.version, self.hash, self.network
        )?;
        if let Some(url) = &self.genesis_url {
            write!(f, " genesis {url:?}")?;
        }
        if let Some(t) = self.required_by {
            write!(f, " required by {t}")?;
        }
        if let Some(percent) = self.rollout {
            write!(f, " rollout {percent}%")?;
        }
        if !self.nodes.is_empty() {
            let short: Vec<&str> = self
                .nodes
                .iter()
                .map(|n| n.get(..12).unwrap_or(n))
                .collect();
            write!(f, " nodes {}", short.join(","))?;
        }
        Ok(())
    }
}

/// A verified HyperQube directive (kind 33321) that passed every check of
/// `docs/PROTOCOL.md` sections 3 and 5.1, except the voter check.
///
/// Only [`Directive::from_event`] and [`Directive::from_event_including_expired`]
/// make one, so holding a `Directive` means its proposal is exactly what its
/// verified event says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Directive {
    event: Event,
    proposal: Proposal,
    expiration: Option<u64>,
}

impl Directive {
    /// Validates a verified event as a directive that counts at `now` (unix
    /// seconds).
    ///
    /// Checks, reporting the first failure in this order: kind 33321; tags
    /// `d`, `action`, `version`, `hash`, `network` present, and each of them
    /// checked as it is read: `d` equals `rules.d_tag`, `action` is `upgrade`
    /// or `reboot`, `version` is SemVer 2.0 after one optional leading `v`,
    /// `hash` is 64 hex chars (either case, stored lower-case), `network`
    /// equals `rules.network`; then the optional `genesis_url`, and
    /// `required_by` and `expiration` as unix seconds in decimal digits; a
    /// reboot has `genesis_url` and `required_by`; content is non-empty;
    /// `created_at <= now + rules.max_future_skew_secs`; and last, the
    /// directive has not expired (`now < expiration`, see the module docs).
    /// Every one of these eight tags must appear at most once, with a
    /// non-empty value. Then the wave and critical tags
    /// (`docs/PROTOCOL.md` sections 3 and 5.8): at most one `crit` tag,
    /// whose names must all be in [`IMPLEMENTED_CRITICAL_TAGS`]; an
    /// optional `rollout` (1 to 100, decimal, no leading zero); up to
    /// [`MAX_NODE_TAGS`] `node` tags (64 hex each); and `rollout` and
    /// `node`, when present, must be named in `crit`. Other tags are
    /// ignored, as are tag elements after the value.
    ///
    /// # Errors
    /// The first failed check, as a [`DirectiveError`].
    pub fn from_event(
        event: Event,
        rules: &DirectiveRules,
        now: u64,
    ) -> Result<Directive, DirectiveError> {
        let directive = Directive::from_event_including_expired(event, rules, now)?;
        match directive.expiration {
            Some(expiration) if directive.is_expired_at(now) => {
                Err(DirectiveError::Expired { expiration })
            }
            _ => Ok(directive),
        }
    }

    /// Like [`Directive::from_event`] but accepts a directive that has
    /// already expired.
    ///
    /// An expired directive never counts as a vote, but it is still its
    /// author's latest word: offered to [`crate::core::quorum::Engine::offer`] it
    /// supersedes the author's older directives, so a replayed older event
    /// cannot revive a vote the author replaced (`docs/PROTOCOL.md`
    /// section 5.2). Use this when feeding the engine, and when re-verifying persisted
    /// directives at start.
    ///
    /// # Errors
    /// Every error of [`Directive::from_event`] except
    /// [`DirectiveError::Expired`].
    pub fn from_event_including_expired(
        event: Event,
        rules: &DirectiveRules,
        now: u64,
    ) -> Result<Directive, DirectiveError> {
        if event.kind != DIRECTIVE_KIND {
            return Err(DirectiveError::WrongKind(event.kind));
        }
        let d = required(&event, "d")?;
        if d != rules.d_tag {
            return Err(DirectiveError::WrongDTag {
                found: truncated(d, MAX_QUOTED),
                expected: rules.d_tag.clone(),
            });
        }
        let action_tag = required(&event, "action")?;
        let action = Action::from_tag(action_tag)
            .ok_or_else(|| DirectiveError::UnknownAction(truncated(action_tag, MAX_QUOTED)))?;
        let version = required(&event, "version")?;
        if let Err(e) = parse_version(version) {
            return Err(DirectiveError::InvalidVersion {
                found: truncated(version, MAX_QUOTED),
                reason: e.to_string(),
            });
        }
        let hash_tag = required(&event, "hash")?;
        let hash = parse_sha256_hex(hash_tag)
            .ok_or_else(|| DirectiveError::InvalidHash(truncated(hash_tag, MAX_QUOTED)))?;
        let network = required(&event, "network")?;
        if network != rules.network {
            return Err(DirectiveError::WrongNetwork {
                found: truncated(network, MAX_QUOTED),
                expected: rules.network.clone(),
            });
        }
        let genesis_url = optional(&event, "genesis_url")?;
        let required_by = optional(&event, "required_by")?
            .map(|v| parse_unix_seconds("required_by", v))
            .transpose()?;
        let expiration = optional(&event, "expiration")?
            .map(|v| parse_unix_seconds("expiration", v))
            .transpose()?;
        if action == Action::Reboot {
            if genesis_url.is_none() {
                return Err(DirectiveError::MissingTag("genesis_url"));
            }
            if required_by.is_none() {
                return Err(DirectiveError::MissingTag("required_by"));
            }
        }
        let (rollout, nodes) = wave(&event)?;
        if event.content.is_empty() {
            return Err(DirectiveError::EmptyContent);
        }
        if event.created_at > now.saturating_add(rules.max_future_skew_secs) {
            return Err(DirectiveError::FromFuture {
                ahead_secs: event.created_at.saturating_sub(now),
                limit_secs: rules.max_future_skew_secs,
            });
        }
        let proposal = Proposal {
            action,
            network: network.to_owned(),
            version: version.to_owned(),
            hash,
            genesis_url: genesis_url.map(str::to_owned),
            required_by,
            rollout,
            nodes,
        };
        Ok(Directive {
            event,
            proposal,
            expiration,
        })
    }

    /// The verified event this directive was read from.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The proposal this directive votes for.
    pub fn proposal(&self) -> &Proposal {
        &self.proposal
    }

    /// The NIP-40 `expiration`, unix seconds, if the directive has one.
    pub fn expiration(&self) -> Option<u64> {
        self.expiration
    }

    /// The author's 32-byte x-only public key.
    pub fn author(&self) -> &[u8; 32] {
        &self.event.pubkey
    }

    /// Whether the directive has expired at `now` (unix seconds): true when
    /// it has an `expiration` and `now >= expiration` (NIP-40, see the module
    /// docs).
    pub fn is_expired_at(&self, now: u64) -> bool {
        self.expiration.is_some_and(|expiration| now >= expiration)
    }

    /// Whether this directive replaces `other` under the NIP-01 replaceable
    /// rule: greater `created_at`, or equal `created_at` and lower id (ids
    /// compared as bytes, which is the order of their lower-case hex). An
    /// event never supersedes itself. Authors are not compared.
    pub fn supersedes(&self, other: &Directive) -> bool {
        (self.event.created_at, std::cmp::Reverse(self.event.id))
            > (other.event.created_at, std::cmp::Reverse(other.event.id))
    }

    /// Gives back the event, e.g. to persist it.
    pub fn into_event(self) -> Event {
        self.event
    }
}

/// Why an event is not a directive that counts (`docs/PROTOCOL.md` sections 3
/// and 5.1).
///
/// Every variant is a property of the event (and of `now`), never of our
/// state. `Display` gives a lower-case sentence naming what was wrong;
/// attacker-chosen text in it is truncated and escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DirectiveError {
    /// The event's kind is not 33321.
    WrongKind(u16),
    /// A tag the directive needs is absent (for a reboot, `genesis_url` and
    /// `required_by` too).
    MissingTag(&'static str),
    /// A known tag appears more than once: ambiguous, so rejected.
    DuplicateTag {
        /// Tag name.
        name: &'static str,
        /// How many times it appears.
        count: usize,
    },
    /// A known tag has no value or an empty one.
    EmptyTag(&'static str),
    /// The `d` tag is not ours.
    WrongDTag {
        /// Value found (truncated).
        found: String,
        /// Value required ([`DirectiveRules::d_tag`]).
        expected: String,
    },
    /// `action` is neither `upgrade` nor `reboot` (truncated).
    UnknownAction(String),
    /// `version` is not a SemVer 2.0 version after one optional leading `v`.
    InvalidVersion {
        /// Value found (truncated).
        found: String,
        /// The semver parser's reason.
        reason: String,
    },
    /// `hash` is not 64 hex characters (truncated).
    InvalidHash(String),
    /// `network` is not ours.
    WrongNetwork {
        /// Value found (truncated).
        found: String,
        /// Value required ([`DirectiveRules::network`]).
        expected: String,
    },
    /// `required_by` or `expiration` is not unix seconds as decimal digits
    /// fitting in 64 bits.
    InvalidTimestamp {
        /// Tag name.
        tag: &'static str,
        /// Value found (truncated).
        found: String,
    },
    /// `content` is empty (qubestr rejects such directives).
    EmptyContent,
    /// `created_at` is more than the allowed skew ahead of `now`.
    FromFuture {
        /// How far ahead of `now`, in seconds.
        ahead_secs: u64,
        /// The allowed skew, in seconds.
        limit_secs: u64,
    },
    /// The NIP-40 `expiration` (unix seconds) has been reached.
    Expired {
        /// The directive's `expiration`, unix seconds.
        expiration: u64,
    },
    /// `crit` names a tag this agent does not implement (truncated): the
    /// directive must not count here.
    UnknownCritical(String),
    /// `rollout` or `node` is present but not named in `crit`, so an agent
    /// that does not know it would act on every node.
    NotCritical(&'static str),
    /// `rollout` is not a whole percentage 1 to 100 (truncated).
    InvalidRollout(String),
    /// A `node` value is not 64 hex characters (truncated).
    InvalidNode(String),
    /// More than [`MAX_NODE_TAGS`] `node` tags.
    TooManyNodes(usize),
}

impl fmt::Display for DirectiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectiveError::WrongKind(kind) => {
                write!(
                    f,
                    "kind {kind} is not a directive (expected {DIRECTIVE_KIND})"
                )
            }
            DirectiveError::MissingTag(name) => write!(f, "missing tag `{name}`"),
            DirectiveError::DuplicateTag { name, count } => {
                write!(f, "tag `{name}` appears {count} times, it must appear once")
            }
            DirectiveError::EmptyTag(name) => write!(f, "tag `{name}` has no value"),
            DirectiveError::WrongDTag { found, expected } => {
                write!(f, "wrong `d` tag {found:?}, expected {expected:?}")
            }
            DirectiveError::UnknownAction(found) => write!(
                f,
                "unknown action {found:?}, expected \"upgrade\" or \"reboot\""
            ),
            DirectiveError::InvalidVersion { found, reason } => {
                write!(f, "version {found:?} is not a semantic version: {reason}")
            }
            DirectiveError::InvalidHash(found) => write!(
                f,
                "hash {found:?} is not a SHA-256 in hex (64 hex characters)"
            ),
            DirectiveError::WrongNetwork { found, expected } => {
                write!(f, "wrong network {found:?}, expected {expected:?}")
            }
            DirectiveError::InvalidTimestamp { tag, found } => write!(
                f,
                "tag `{tag}` value {found:?} is not unix seconds (decimal digits)"
            ),
            DirectiveError::EmptyContent => f.write_str("content is empty"),
            DirectiveError::FromFuture {
                ahead_secs,
                limit_secs,
            } => write!(
                f,
                "directive dated {ahead_secs} s in the future (limit {limit_secs} s)"
            ),
            DirectiveError::Expired { expiration } => write!(f, "expired at {expiration}"),
            DirectiveError::UnknownCritical(name) => write!(
                f,
                "critical tag {name:?} is not implemented by this agent, so the directive does not count"
            ),
            DirectiveError::NotCritical(name) => write!(
                f,
                "tag `{name}` is not named in a `crit` tag (an agent that does not know it would act on every node)"
            ),
            DirectiveError::InvalidRollout(found) => {
                write!(f, "rollout {found:?} is not a percentage from 1 to 100")
            }
            DirectiveError::InvalidNode(found) => {
                write!(f, "node {found:?} is not a pubkey in hex (64 hex characters)")
            }
            DirectiveError::TooManyNodes(count) => {
                write!(f, "{count} `node` tags, at most {MAX_NODE_TAGS}")
            }
        }
    }
}

impl std::error::Error for DirectiveError {}

/// The value of the only tag named `name`, if there is one.
fn optional<'a>(event: &'a Event, name: &'static str) -> Result<Option<&'a str>, DirectiveError> {
    let mut tags = event.tags_named(name);
    let Some(tag) = tags.next() else {
        return Ok(None);
    };
    let others = tags.count();
    if others > 0 {
        return Err(DirectiveError::DuplicateTag {
            name,
            count: others.saturating_add(1),
        });
    }
    match tag.get(1) {
        Some(value) if !value.is_empty() => Ok(Some(value)),
        _ => Err(DirectiveError::EmptyTag(name)),
    }
}

/// The wave of a directive (`rollout`, `node` tags) after its `crit` tag is
/// checked (`docs/PROTOCOL.md` sections 3 and 5.8).
fn wave(event: &Event) -> Result<(Option<u8>, Vec<String>), DirectiveError> {
    let mut crits = event.tags_named("crit");
    let critical: Vec<&str> = match (crits.next(), crits.count()) {
        (None, _) => Vec::new(),
        (Some(tag), 0) => {
            let names: Vec<&str> = tag.iter().skip(1).map(String::as_str).collect();
            if names.is_empty() || names.iter().any(|n| n.is_empty()) {
                return Err(DirectiveError::EmptyTag("crit"));
            }
            if let Some(unknown) = names
                .iter()
                .find(|n| !IMPLEMENTED_CRITICAL_TAGS.contains(n))
            {
                return Err(DirectiveError::UnknownCritical(truncated(
                    unknown, MAX_QUOTED,
                )));
            }
            names
        }
        (Some(_), others) => {
            return Err(DirectiveError::DuplicateTag {
                name: "crit",
                count: others.saturating_add(1),
            })
        }
    };
    let rollout = optional(event, "rollout")?
        .map(|v| {
            let canonical = v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0');
            canonical
                .then(|| v.parse::<u8>().ok())
                .flatten()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| DirectiveError::InvalidRollout(truncated(v, MAX_QUOTED)))
        })
        .transpose()?;
    let count = event.tags_named("node").count();
    if count > MAX_NODE_TAGS {
        return Err(DirectiveError::TooManyNodes(count));
    }
    let mut nodes = Vec::with_capacity(count);
    for tag in event.tags_named("node") {
        let value = tag.get(1).map(String::as_str).unwrap_or_default();
        if value.is_empty() {
            return Err(DirectiveError::EmptyTag("node"));
        }
        let node = parse_sha256_hex(value)
            .ok_or_else(|| DirectiveError::InvalidNode(truncated(value, MAX_QUOTED)))?;
        nodes.push(node);
    }
    nodes.sort();
    nodes.dedup();
    if rollout.is_some() && !critical.contains(&"rollout") {
        return Err(DirectiveError::NotCritical("rollout"));
    }
    if !nodes.is_empty() && !critical.contains(&"node") {
        return Err(DirectiveError::NotCritical("node"));
    }
    Ok((rollout, nodes))
}

/// The value of the only tag named `name`, which must be there.
fn required<'a>(event: &'a Event, name: &'static str) -> Result<&'a str, DirectiveError> {
    optional(event, name)?.ok_or(DirectiveError::MissingTag(name))
}

/// SemVer 2.0 after stripping one optional leading `v`.
fn parse_version(version: &str) -> Result<semver::Version, semver::Error> {
    crate::core::version::Version::parse(version).map(crate::core::version::Version::into_semver)
}

/// 64 hex chars of either case, returned lower-case.
fn parse_sha256_hex(value: &str) -> Option<String> {
    (value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| value.to_ascii_lowercase())
}

/// Unix seconds as 1 to 20 decimal digits (no sign, no space) fitting in u64.
fn parse_unix_seconds(tag: &'static str, value: &str) -> Result<u64, DirectiveError> {
    let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    digits_only
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| DirectiveError::InvalidTimestamp {
            tag,
            found: truncated(value, MAX_QUOTED),
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::event::UnsignedEvent;
    use crate::core::keys::Keys;

    pub(crate) const NOW: u64 = 1_700_000_000;
    pub(crate) const HASH: &str =
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    pub(crate) fn rules() -> DirectiveRules {
        DirectiveRules::new("hqz")
    }

    pub(crate) fn keys(n: u8) -> Keys {
        Keys::from_secret_bytes(&[n; 32]).unwrap()
    }

    pub(crate) fn upgrade_tags(version: &str, hash: &str) -> Vec<Vec<String>> {
        [
            ["d", "hyperqube"],
            ["action", "upgrade"],
            ["version", version],
            ["hash", hash],
            ["network", "hqz"],
        ]
        .iter()
        .map(|t| t.iter().map(|s| (*s).to_owned()).collect())
        .collect()
    }

    pub(crate) fn reboot_tags() -> Vec<Vec<String>> {
        let mut tags = upgrade_tags("v1.2.3", HASH);
        tags[1][1] = "reboot".to_owned();
        tags.push(vec![
            "genesis_url".into(),
            "https://g.example/genesis.json".into(),
        ]);
        tags.push(vec!["required_by".into(), "1700003600".into()]);
        tags
    }

    pub(crate) fn sign(keys: &Keys, created_at: u64, tags: Vec<Vec<String>>) -> Event {
        keys.sign(UnsignedEvent {
            created_at,
            kind: DIRECTIVE_KIND,
            tags,
            content: "upgrade the fleet".to_owned(),
        })
        .unwrap()
    }

    /// A directive by key `n` at `created_at` (expired ones allowed).
    pub(crate) fn directive(n: u8, created_at: u64, tags: Vec<Vec<String>>) -> Directive {
        Directive::from_event_including_expired(sign(&keys(n), created_at, tags), &rules(), NOW)
            .unwrap()
    }

    fn check(tags: Vec<Vec<String>>) -> Result<Directive, DirectiveError> {
        Directive::from_event(sign(&keys(1), NOW, tags), &rules(), NOW)
    }

    fn set(mut tags: Vec<Vec<String>>, name: &str, value: &str) -> Vec<Vec<String>> {
        let tag = tags.iter_mut().find(|t| t[0] == name).unwrap();
        tag.truncate(1);
        tag.push(value.to_owned());
        tags
    }

    fn without(mut tags: Vec<Vec<String>>, name: &str) -> Vec<Vec<String>> {
        tags.retain(|t| t[0] != name);
        tags
    }

    fn with(mut tags: Vec<Vec<String>>, tag: &[&str]) -> Vec<Vec<String>> {
        tags.push(tag.iter().map(|s| (*s).to_owned()).collect());
        tags
    }

    #[test]
    fn valid_upgrade_parses_into_the_exact_tuple() {
        let d = check(upgrade_tags("v1.2.3", &HASH.to_uppercase())).unwrap();
        assert_eq!(
            d.proposal(),
            &Proposal {
                action: Action::Upgrade,
                network: "hqz".into(),
                version: "v1.2.3".into(),
                hash: HASH.into(),
                genesis_url: None,
                required_by: None,
                rollout: None,
                nodes: Vec::new(),
            }
        );
        assert_eq!(
            d.proposal().semver().unwrap(),
            semver::Version::new(1, 2, 3)
        );
        assert_eq!(d.expiration(), None);
        assert_eq!(d.author(), &keys(1).public_key());
    }

    #[test]
    fn valid_reboot_keeps_genesis_and_deadline() {
        let d = check(reboot_tags()).unwrap();
        assert_eq!(d.proposal().action, Action::Reboot);
        assert_eq!(
            d.proposal().genesis_url.as_deref(),
            Some("https://g.example/genesis.json")
        );
        assert_eq!(d.proposal().required_by, Some(1_700_003_600));
    }

    #[test]
    fn unknown_tags_and_extra_tag_elements_are_ignored() {
        let tags = with(upgrade_tags("1.2.3", HASH), &["alt", "HyperQube upgrade"]);
        let mut tags = with(tags, &["p", "abc"]);
        tags[2].push("ignored".into());
        assert_eq!(check(tags).unwrap().proposal().version, "1.2.3");
    }

    #[test]
    fn v_prefix_is_a_different_proposal_with_the_same_precedence() {
        let a = check(upgrade_tags("v1.2.3", HASH)).unwrap();
        let b = check(upgrade_tags("1.2.3", HASH)).unwrap();
        assert_ne!(a.proposal(), b.proposal());
        assert_eq!(
            a.proposal().semver().unwrap(),
            b.proposal().semver().unwrap()
        );
    }

    #[test]
    fn wrong_kind() {
        let event = keys(1)
            .sign(UnsignedEvent {
                created_at: NOW,
                kind: 1,
                tags: upgrade_tags("1.2.3", HASH),
                content: "x".into(),
            })
            .unwrap();
        let err = Directive::from_event(event, &rules(), NOW).unwrap_err();
        assert_eq!(err, DirectiveError::WrongKind(1));
        assert_eq!(
            err.to_string(),
            "kind 1 is not a directive (expected 33321)"
        );
    }

    #[test]
    fn missing_required_tags() {
        for name in ["d", "action", "version", "hash", "network"] {
            let err = check(without(upgrade_tags("1.2.3", HASH), name)).unwrap_err();
            assert_eq!(err, DirectiveError::MissingTag(name));
            assert_eq!(err.to_string(), format!("missing tag `{name}`"));
        }
    }

    #[test]
    fn reboot_requires_genesis_url_and_required_by() {
        assert_eq!(
            check(without(reboot_tags(), "genesis_url")).unwrap_err(),
            DirectiveError::MissingTag("genesis_url")
        );
        assert_eq!(
            check(without(reboot_tags(), "required_by")).unwrap_err(),
            DirectiveError::MissingTag("required_by")
        );
    }

    #[test]
    fn duplicate_tags_are_ambiguous() {
        let err = check(with(upgrade_tags("1.2.3", HASH), &["hash", HASH])).unwrap_err();
        assert_eq!(
            err,
            DirectiveError::DuplicateTag {
                name: "hash",
                count: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "tag `hash` appears 2 times, it must appear once"
        );
        // Optional tags too, even with equal values.
        let tags = with(reboot_tags(), &["required_by", "1700003600"]);
        assert_eq!(
            check(tags).unwrap_err(),
            DirectiveError::DuplicateTag {
                name: "required_by",
                count: 2
            }
        );
        let tags = with(upgrade_tags("1.2.3", HASH), &["d", "hyperqube"]);
        assert_eq!(
            check(tags).unwrap_err(),
            DirectiveError::DuplicateTag {
                name: "d",
                count: 2
            }
        );
    }

    #[test]
    fn empty_tag_values() {
        let mut tags = upgrade_tags("1.2.3", HASH);
        tags[3].truncate(1);
        let err = check(tags).unwrap_err();
        assert_eq!(err, DirectiveError::EmptyTag("hash"));
        assert_eq!(err.to_string(), "tag `hash` has no value");
        let tags = set(reboot_tags(), "genesis_url", "");
        assert_eq!(
            check(tags).unwrap_err(),
            DirectiveError::EmptyTag("genesis_url")
        );
    }

    #[test]
    fn wrong_d_tag() {
        let err = check(set(upgrade_tags("1.2.3", HASH), "d", "other")).unwrap_err();
        assert_eq!(
            err,
            DirectiveError::WrongDTag {
                found: "other".into(),
                expected: "hyperqube".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "wrong `d` tag \"other\", expected \"hyperqube\""
        );
    }

    #[test]
    fn configurable_d_tag() {
        let rules = DirectiveRules {
            d_tag: "other".into(),
            ..rules()
        };
        let tags = set(upgrade_tags("1.2.3", HASH), "d", "other");
        Directive::from_event(sign(&keys(1), NOW, tags), &rules, NOW).unwrap();
    }

    #[test]
    fn unknown_action() {
        for action in ["Upgrade", "downgrade", " upgrade"] {
            let err = check(set(upgrade_tags("1.2.3", HASH), "action", action)).unwrap_err();
            assert_eq!(err, DirectiveError::UnknownAction(action.into()));
        }
        assert_eq!(
            DirectiveError::UnknownAction("x".into()).to_string(),
            "unknown action \"x\", expected \"upgrade\" or \"reboot\""
        );
    }

    #[test]
    fn invalid_versions() {
        for version in [
            "1.2", "vv1.2.3", "V1.2.3", "01.2.3", "1.2.3 ", "latest", "v",
        ] {
            let err = check(upgrade_tags(version, HASH)).unwrap_err();
            let DirectiveError::InvalidVersion { found, reason } = &err else {
                panic!("{version}: {err:?}");
            };
            assert_eq!(found, version);
            assert!(!reason.is_empty());
            assert!(err
                .to_string()
                .starts_with(&format!("version {version:?} is not a semantic version: ")));
        }
        // Pre-release and build metadata are SemVer.
        check(upgrade_tags("v2.0.0-rc.1+build.5", HASH)).unwrap();
    }

    #[test]
    fn invalid_hashes() {
        let bad_char = format!("{}g", &HASH[..63]);
        for hash in [&HASH[..63], &format!("{HASH}0"), &bad_char, "sha256:abc"] {
            let err = check(upgrade_tags("1.2.3", hash)).unwrap_err();
            assert_eq!(err, DirectiveError::InvalidHash(hash.to_owned()));
        }
        assert_eq!(
            DirectiveError::InvalidHash("zz".into()).to_string(),
            "hash \"zz\" is not a SHA-256 in hex (64 hex characters)"
        );
    }

    #[test]
    fn wrong_network() {
        let err = check(set(upgrade_tags("1.2.3", HASH), "network", "x")).unwrap_err();
        assert_eq!(
            err,
            DirectiveError::WrongNetwork {
                found: "x".into(),
                expected: "hqz".into()
            }
        );
        assert_eq!(err.to_string(), "wrong network \"x\", expected \"hqz\"");
    }

    #[test]
    fn invalid_timestamps() {
        for value in [
            "-1",
            "+5",
            "1.5",
            " 1",
            "1e9",
            "18446744073709551616",
            "soon",
        ] {
            let err = check(set(reboot_tags(), "required_by", value)).unwrap_err();
            assert_eq!(
                err,
                DirectiveError::InvalidTimestamp {
                    tag: "required_by",
                    found: value.into()
                }
            );
            let tags = with(upgrade_tags("1.2.3", HASH), &["expiration", value]);
            assert_eq!(
                check(tags).unwrap_err(),
                DirectiveError::InvalidTimestamp {
                    tag: "expiration",
                    found: value.into()
                }
            );
        }
        assert_eq!(
            DirectiveError::InvalidTimestamp {
                tag: "expiration",
                found: "x".into()
            }
            .to_string(),
            "tag `expiration` value \"x\" is not unix seconds (decimal digits)"
        );
    }

    #[test]
    fn empty_content() {
        let event = keys(1)
            .sign(UnsignedEvent {
                created_at: NOW,
                kind: DIRECTIVE_KIND,
                tags: upgrade_tags("1.2.3", HASH),
                content: String::new(),
            })
            .unwrap();
        let err = Directive::from_event(event, &rules(), NOW).unwrap_err();
        assert_eq!(err, DirectiveError::EmptyContent);
        assert_eq!(err.to_string(), "content is empty");
    }

    #[test]
    fn future_skew_boundary() {
        let ok = sign(&keys(1), NOW + 600, upgrade_tags("1.2.3", HASH));
        Directive::from_event(ok, &rules(), NOW).unwrap();
        let late = sign(&keys(1), NOW + 3600, upgrade_tags("1.2.3", HASH));
        let err = Directive::from_event(late, &rules(), NOW).unwrap_err();
        assert_eq!(
            err,
            DirectiveError::FromFuture {
                ahead_secs: 3600,
                limit_secs: 600
            }
        );
        assert_eq!(
            err.to_string(),
            "directive dated 3600 s in the future (limit 600 s)"
        );
        let just_over = sign(&keys(1), NOW + 601, upgrade_tags("1.2.3", HASH));
        assert!(matches!(
            Directive::from_event(just_over, &rules(), NOW),
            Err(DirectiveError::FromFuture {
                ahead_secs: 601,
                ..
            })
        ));
        // No overflow near u64::MAX.
        let far = sign(&keys(1), u64::MAX, upgrade_tags("1.2.3", HASH));
        Directive::from_event(far, &rules(), u64::MAX - 1).unwrap();
    }

    #[test]
    fn expiry_boundary_is_nip40_at_the_timestamp() {
        let tags = |exp: u64| {
            with(
                upgrade_tags("1.2.3", HASH),
                &["expiration", &exp.to_string()],
            )
        };
        let live = check(tags(NOW + 1)).unwrap();
        assert_eq!(live.expiration(), Some(NOW + 1));
        assert!(!live.is_expired_at(NOW));
        assert!(live.is_expired_at(NOW + 1));

        let err = check(tags(NOW)).unwrap_err();
        assert_eq!(err, DirectiveError::Expired { expiration: NOW });
        assert_eq!(err.to_string(), "expired at 1700000000");

        let kept = Directive::from_event_including_expired(
            sign(&keys(1), NOW - 10, tags(NOW - 5)),
            &rules(),
            NOW,
        )
        .unwrap();
        assert!(kept.is_expired_at(NOW));
    }

    #[test]
    fn supersedes_is_the_nip01_replaceable_rule() {
        let a = directive(1, NOW - 10, upgrade_tags("1.2.3", HASH));
        let b = directive(1, NOW - 5, upgrade_tags("1.2.3", HASH));
        assert!(b.supersedes(&a));
        assert!(!a.supersedes(&b));
        assert!(!a.supersedes(&a));
        let c = directive(1, NOW - 5, upgrade_tags("2.0.0", HASH));
        let (low, high) = if b.event().id < c.event().id {
            (&b, &c)
        } else {
            (&c, &b)
        };
        assert!(low.supersedes(high));
        assert!(!high.supersedes(low));
    }

    #[test]
    fn error_text_from_the_wire_is_truncated_and_escaped() {
        let long = "x\"\n".repeat(100);
        let err = check(set(upgrade_tags("1.2.3", HASH), "network", &long)).unwrap_err();
        let text = err.to_string();
        assert!(text.len() < 400, "{text}");
        assert!(!text.contains('\n'));
        assert!(text.contains("\\n"));
    }

    #[test]
    fn critical_tags_gate_the_wave_tags() {
        let base = upgrade_tags("v1.2.3", HASH);
        // An unknown critical tag: the directive does not count.
        let unknown = with(base.clone(), &["crit", "rollout", "no-such-tag"]);
        assert_eq!(
            check(unknown).unwrap_err(),
            DirectiveError::UnknownCritical("no-such-tag".into())
        );
        // Wave tags must be named in crit.
        let bare = with(base.clone(), &["rollout", "10"]);
        assert_eq!(
            check(bare).unwrap_err(),
            DirectiveError::NotCritical("rollout")
        );
        let node = "ab".repeat(32);
        let named = with(with(base.clone(), &["crit", "rollout"]), &["node", &node]);
        assert_eq!(
            check(named).unwrap_err(),
            DirectiveError::NotCritical("node")
        );
        assert_eq!(
            check(with(base.clone(), &["crit"])).unwrap_err(),
            DirectiveError::EmptyTag("crit")
        );
        let twice = with(with(base.clone(), &["crit", "node"]), &["crit", "rollout"]);
        assert!(matches!(
            check(twice).unwrap_err(),
            DirectiveError::DuplicateTag {
                name: "crit",
                count: 2
            }
        ));
        // crit naming what it implements, with or without the tags.
        let d = check(with(base.clone(), &["crit", "rollout", "node"])).unwrap();
        assert!(!d.proposal().has_wave());
        let tags = with(
            with(base.clone(), &["crit", "rollout", "node"]),
            &["rollout", "10"],
        );
        let tags = with(
            with(tags, &["node", &node.to_uppercase()]),
            &["node", &"01".repeat(32)],
        );
        let tags = with(tags, &["node", &node]);
        let d = check(tags).unwrap();
        assert_eq!(d.proposal().rollout, Some(10));
        assert_eq!(d.proposal().nodes, vec!["01".repeat(32), node.clone()]);
    }

    #[test]
    fn rollout_is_a_canonical_percentage_and_nodes_are_pubkeys() {
        let base = with(upgrade_tags("v1.2.3", HASH), &["crit", "rollout", "node"]);
        for bad in ["0", "101", "010", "+5", "5.0", "1e1", " 5", "256"] {
            assert_eq!(
                check(with(base.clone(), &["rollout", bad])).unwrap_err(),
                DirectiveError::InvalidRollout(bad.into()),
                "{bad}"
            );
        }
        for good in [1u8, 9, 50, 100] {
            let d = check(with(base.clone(), &["rollout", &good.to_string()])).unwrap();
            assert_eq!(d.proposal().rollout, Some(good));
        }
        assert_eq!(
            check(with(base.clone(), &["node", "abc"])).unwrap_err(),
            DirectiveError::InvalidNode("abc".into())
        );
        assert_eq!(
            check(with(base.clone(), &["node", ""])).unwrap_err(),
            DirectiveError::EmptyTag("node")
        );
        let mut many = base;
        for i in 0..=MAX_NODE_TAGS {
            many.push(vec!["node".into(), format!("{i:064x}")]);
        }
        assert_eq!(
            check(many).unwrap_err(),
            DirectiveError::TooManyNodes(MAX_NODE_TAGS + 1)
        );
    }

    #[test]
    fn waves_are_part_of_the_tuple_and_pick_nodes_by_hash() {
        let base = with(
            upgrade_tags("v1.2.3", &"1".repeat(64)),
            &["crit", "rollout", "node"],
        );
        let all = check(base.clone()).unwrap().proposal().clone();
        let ten = check(with(base.clone(), &["rollout", "10"]))
            .unwrap()
            .proposal()
            .clone();
        assert_ne!(all, ten, "10 % and 100 % never add up");
        assert_eq!(ten.without_wave(), all);
        // docs/PROTOCOL.md section 5.8, the worked example.
        let g: [u8; 32] =
            hex::decode("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap()
                .try_into()
                .unwrap();
        let g2: [u8; 32] =
            hex::decode("c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(all.wave_position(&g), 26);
        assert_eq!(all.wave_position(&g2), 86);
        assert!(
            all.in_wave(&g) && all.in_wave(&g2),
            "no wave tags: everyone"
        );
        let thirty = check(with(base.clone(), &["rollout", "30"]))
            .unwrap()
            .proposal()
            .clone();
        assert!(thirty.in_wave(&g), "26 < 30");
        assert!(!thirty.in_wave(&g2), "86 >= 30");
        assert!(!check(with(base.clone(), &["rollout", "26"]))
            .unwrap()
            .proposal()
            .in_wave(&g));
        let named = check(with(
            with(base, &["rollout", "30"]),
            &["node", &hex::encode(g2)],
        ))
        .unwrap()
        .proposal()
        .clone();
        assert!(named.in_wave(&g) && named.in_wave(&g2), "named or selected");
        let text = named.to_string();
        assert!(text.ends_with("rollout 30% nodes c6047f9441ed"), "{text}");
    }
}
