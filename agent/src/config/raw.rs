//! The file's shape as serde reads it: every section `deny_unknown_fields`,
//! so a misspelt key is an error naming the key and its line, and values
//! kept [`Spanned`] so later checks can name the line too. Nothing here is
//! checked beyond its TOML type; `validate` does that.

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::Role;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) network: Spanned<String>,
    pub(super) quorum: Spanned<i64>,
    pub(super) relays: Spanned<Vec<Spanned<String>>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) node_id: Option<Spanned<String>>,
    pub(super) node_key: Option<Spanned<String>>,
    pub(super) current_version: Option<Spanned<String>>,
    pub(super) version_command: Option<Spanned<RawArgv>>,
    pub(super) d_tag: Option<Spanned<String>>,
    pub(super) metrics_file: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) follows: Vec<RawFollow>,
    #[serde(default)]
    pub(super) policy: RawPolicy,
    pub(super) upgrade: Option<RawHook>,
    pub(super) reboot: Option<RawHook>,
    pub(super) tls: Option<RawTls>,
    pub(super) heartbeat: Option<RawHeartbeat>,
    pub(super) alert: Option<RawAlert>,
}

/// The `[alert]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    pub(super) command: Spanned<RawArgv>,
    pub(super) timeout_secs: Option<Spanned<i64>>,
    pub(super) min_interval_secs: Option<Spanned<i64>>,
    pub(super) relays_down_secs: Option<Spanned<i64>>,
    pub(super) worker_restarts: Option<Spanned<i64>>,
}

/// The `[heartbeat]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeartbeat {
    pub(super) relays: Option<Vec<Spanned<String>>>,
    pub(super) interval_secs: Option<Spanned<i64>>,
}

/// The `[tls]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) extra_roots: Option<Spanned<String>>,
}

/// One `[[follows]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFollow {
    pub(super) name: Spanned<String>,
    pub(super) npub: Spanned<String>,
    pub(super) role: Role,
}

/// The `[policy]` section; every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) max_future_skew_secs: Option<Spanned<i64>>,
    pub(super) allow_downgrade: Option<bool>,
    pub(super) allow_insecure_ws: Option<bool>,
}

/// An `[upgrade]` or `[reboot]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    pub(super) command: Spanned<RawArgv>,
    pub(super) timeout_secs: Option<Spanned<i64>>,
    pub(super) artifact: Option<Spanned<String>>,
    pub(super) fetch: Option<Spanned<RawArgv>>,
    pub(super) health: Option<Spanned<RawHealth>>,
    pub(super) rollback: Option<Spanned<RawArgv>>,
    pub(super) deadline_grace_secs: Option<Spanned<i64>>,
}

/// `health`: an argv (one check right after `command`, the older form) or
/// a `[SECTION.health]` table (the health window).
pub(super) enum RawHealth {
    Argv(RawArgv),
    Table(RawHealthTable),
}

/// A `[upgrade.health]` or `[reboot.health]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthTable {
    pub(super) command: Spanned<RawArgv>,
    pub(super) settle_secs: Option<Spanned<i64>>,
    pub(super) interval_secs: Option<Spanned<i64>>,
    pub(super) window_secs: Option<Spanned<i64>>,
    pub(super) tries: Option<Spanned<i64>>,
}

/// What `health` must be; the TOML type error quotes it. It contains
/// [`ARGV_EXPECTED`], so the argv advice applies to it too.
pub(super) const HEALTH_EXPECTED: &str = "an array of strings (argv: program then arguments; a shell command line is not accepted), or a table with `command` and optional `settle_secs`, `interval_secs`, `window_secs`, `tries`";

impl<'de> Deserialize<'de> for RawHealth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HealthVisitor;
        impl<'de> Visitor<'de> for HealthVisitor {
            type Value = RawHealth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(HEALTH_EXPECTED)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawHealth, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(RawHealth::Argv(RawArgv(argv)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHealth, A::Error> {
                RawHealthTable::deserialize(MapAccessDeserializer::new(map)).map(RawHealth::Table)
            }
        }
        deserializer.deserialize_any(HealthVisitor)
    }
}

/// What a hook command must be; the TOML type error quotes it.
pub(super) const ARGV_EXPECTED: &str =
    "an array of strings (argv: program then arguments; a shell command line is not accepted)";

/// An argv array. A string is a type error whose message says why.
pub(super) struct RawArgv(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for RawArgv {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgvVisitor;
        impl<'de> Visitor<'de> for ArgvVisitor {
            type Value = RawArgv;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ARGV_EXPECTED)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawArgv, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(RawArgv(argv))
            }
        }
        deserializer.deserialize_seq(ArgvVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_type_error_gets_the_argv_advice() {
        // ConfigError::advice matches on ARGV_EXPECTED.
        assert!(HEALTH_EXPECTED.contains(ARGV_EXPECTED));
    }
}
