//! The checks beyond the TOML types (`docs/qube-agent.example.toml`): every raw value
//! becomes a typed one or a [`ConfigError`] naming its key and line.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::raw::{RawArgv, RawConfig, RawHealth, RawHook};
use super::{
    ArtifactTemplate, Config, ConfigError, ConfigErrorKind, Follow, Health, Hook, NodeKeySource,
    Policy, Problem, RelayUrl, Role, Version, Warning, DEFAULT_D_TAG, DEFAULT_HEALTH_INTERVAL_SECS,
    DEFAULT_HEALTH_SETTLE_SECS, DEFAULT_HEALTH_WINDOW_SECS, DEFAULT_HOOK_TIMEOUT_SECS,
    DEFAULT_MAX_FUTURE_SKEW_SECS, DEFAULT_REBOOT_GRACE_SECS, DEFAULT_STATE_DIR,
    DEFAULT_UPGRADE_GRACE_SECS, MAX_DEADLINE_GRACE_SECS, MAX_FUTURE_SKEW_SECS, MAX_HEALTH_SECS,
    MAX_HEALTH_TRIES, MAX_HOOK_TIMEOUT_SECS, MAX_NAME_LEN,
};
use crate::core::nip19;

/// Parses `text` and checks every value: the body of
/// [`Config::from_toml_str`], which documents the checks.
pub(super) fn from_toml_str(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| {
        let line = err.span().and_then(|span| Source(text).line(&span));
        ConfigError {
            file: None,
            line,
            kind: ConfigErrorKind::Toml(err.to_string()),
        }
    })?;
    let src = Source(text);
    let mut warnings = Vec::new();

    let network = src.text("network", raw.network, MAX_NAME_LEN)?;
    let d_tag = match raw.d_tag {
        Some(tag) => src.text("d_tag", tag, MAX_NAME_LEN)?,
        None => DEFAULT_D_TAG.to_owned(),
    };
    let node_id = raw
        .node_id
        .map(|id| src.text("node_id", id, MAX_NAME_LEN))
        .transpose()?;
    let state_dir = match &raw.state_dir {
        Some(dir) => src.absolute_path("state_dir", dir)?,
        None => PathBuf::from(DEFAULT_STATE_DIR),
    };
    let node_key = match &raw.node_key {
        None => None,
        Some(value) => match value.get_ref().strip_prefix("env:") {
            Some(var) => {
                let valid = var
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                    && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(src.invalid("node_key", &value.span(), Problem::EnvVar));
                }
                Some(NodeKeySource::Env(var.to_owned()))
            }
            None => Some(NodeKeySource::File(src.absolute_path("node_key", value)?)),
        },
    };
    let metrics_file = raw
        .metrics_file
        .as_ref()
        .map(|path| src.absolute_path("metrics_file", path))
        .transpose()?;
    let current_version = match &raw.current_version {
        None => None,
        Some(value) => Some(Version::parse(value.get_ref()).map_err(|err| {
            src.invalid(
                "current_version",
                &value.span(),
                Problem::Version(err.to_string()),
            )
        })?),
    };

    let policy = Policy {
        max_future_skew_secs: match &raw.policy.max_future_skew_secs {
            Some(v) => src.range("policy.max_future_skew_secs", v, 0, MAX_FUTURE_SKEW_SECS)?,
            None => DEFAULT_MAX_FUTURE_SKEW_SECS,
        },
        allow_downgrade: raw.policy.allow_downgrade.unwrap_or(false),
        allow_insecure_ws: raw.policy.allow_insecure_ws.unwrap_or(false),
    };

    let relays_span = raw.relays.span();
    let raw_relays = raw.relays.into_inner();
    if raw_relays.is_empty() {
        return Err(src.invalid("relays", &relays_span, Problem::Empty));
    }
    let mut relays: Vec<RelayUrl> = Vec::with_capacity(raw_relays.len());
    for (i, value) in raw_relays.iter().enumerate() {
        let key = format!("relays[{i}]");
        let url = RelayUrl::parse(value.get_ref())
            .map_err(|err| src.invalid(&key, &value.span(), Problem::Relay(err)))?;
        if !url.is_tls() && !url.is_loopback() {
            if !policy.allow_insecure_ws {
                return Err(src.invalid(&key, &value.span(), Problem::InsecureRelay));
            }
            warnings.push(Warning::InsecureRelay {
                url: url.as_str().to_owned(),
            });
        }
        if let Some(first) = relays.iter().position(|r| *r == url) {
            let first = format!("relays[{first}]");
            return Err(src.invalid(&key, &value.span(), Problem::DuplicateRelay { first }));
        }
        relays.push(url);
    }

    let mut follows: Vec<Follow> = Vec::with_capacity(raw.follows.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, raw_follow) in raw.follows.into_iter().enumerate() {
        let name_span = raw_follow.name.span();
        let name = src.text(&format!("follows[{i}].name"), raw_follow.name, MAX_NAME_LEN)?;
        if names.insert(name.clone(), i).is_some() {
            return Err(src.invalid(
                format!("follows[{i}].name"),
                &name_span,
                Problem::DuplicateName,
            ));
        }
        let key = format!("follows[{i}].npub");
        let span = raw_follow.npub.span();
        let pubkey = nip19::parse_pubkey(raw_follow.npub.get_ref())
            .map_err(|err| src.invalid(&key, &span, Problem::Pubkey(err)))?;
        if secp256k1::XOnlyPublicKey::from_byte_array(&pubkey).is_err() {
            return Err(src.invalid(&key, &span, Problem::NotOnCurve));
        }
        if let Some(first) = follows.iter().find(|f| f.pubkey == pubkey) {
            let first = first.name.clone();
            return Err(src.invalid(&key, &span, Problem::DuplicateFollow { first }));
        }
        follows.push(Follow {
            name,
            pubkey,
            role: raw_follow.role,
        });
    }

    // `docs/PROTOCOL.md` section 5.7.
    let voters = follows.iter().filter(|f| f.role == Role::Voter).count();
    let quorum_span = raw.quorum.span();
    let quorum_value = *raw.quorum.get_ref();
    let quorum = match usize::try_from(quorum_value) {
        Ok(q) if q >= 1 && q <= voters => q,
        Ok(q) if q >= 1 => {
            return Err(src.invalid(
                "quorum",
                &quorum_span,
                Problem::QuorumAboveVoters {
                    quorum: quorum_value,
                    voters,
                },
            ))
        }
        _ => {
            return Err(src.invalid(
                "quorum",
                &quorum_span,
                Problem::QuorumTooSmall {
                    quorum: quorum_value,
                },
            ))
        }
    };
    if quorum.saturating_mul(2) <= voters {
        warnings.push(Warning::WeakQuorum { quorum, voters });
    }

    let version_command = raw
        .version_command
        .map(|argv| src.argv("version_command", argv, &mut warnings))
        .transpose()?;
    let upgrade = raw
        .upgrade
        .map(|hook| src.hook("upgrade", hook, &mut warnings))
        .transpose()?;
    let reboot = raw
        .reboot
        .map(|hook| src.hook("reboot", hook, &mut warnings))
        .transpose()?;
    let tls_extra_roots = match raw.tls.and_then(|t| t.extra_roots) {
        None => None,
        Some(value) => {
            let path = src.absolute_path("tls.extra_roots", &value)?;
            let roots = super::tls::load_extra_roots(&path).map_err(|why| {
                src.invalid("tls.extra_roots", &value.span(), Problem::TlsRoots(why))
            })?;
            Some((path, roots))
        }
    };
    let heartbeat = match raw.heartbeat {
        None => super::HeartbeatConfig::default(),
        Some(hb) => {
            let mut indexes: Vec<usize> = Vec::new();
            for (i, value) in hb.relays.unwrap_or_default().iter().enumerate() {
                let key = format!("heartbeat.relays[{i}]");
                let url = RelayUrl::parse(value.get_ref())
                    .map_err(|err| src.invalid(&key, &value.span(), Problem::Relay(err)))?;
                let Some(index) = relays.iter().position(|r| *r == url) else {
                    return Err(src.invalid(&key, &value.span(), Problem::NotARelay));
                };
                if let Some(first) = indexes.iter().position(|x| *x == index) {
                    let first = format!("heartbeat.relays[{first}]");
                    return Err(src.invalid(
                        &key,
                        &value.span(),
                        Problem::DuplicateRelay { first },
                    ));
                }
                indexes.push(index);
            }
            super::HeartbeatConfig {
                relays: indexes,
                interval_secs: match &hb.interval_secs {
                    Some(v) => src.range(
                        "heartbeat.interval_secs",
                        v,
                        1,
                        super::MAX_HEARTBEAT_INTERVAL_SECS,
                    )?,
                    None => super::DEFAULT_HEARTBEAT_INTERVAL_SECS,
                },
            }
        }
    };
    let alert = match raw.alert {
        None => None,
        Some(a) => {
            let num = |key: &str, v: &Option<Spanned<i64>>, min, max, default| match v {
                Some(v) => src.range(key, v, min, max),
                None => Ok(default),
            };
            Some(super::AlertConfig {
                command: src.argv("alert.command", a.command, &mut warnings)?,
                timeout_secs: num(
                    "alert.timeout_secs",
                    &a.timeout_secs,
                    1,
                    MAX_HOOK_TIMEOUT_SECS,
                    super::DEFAULT_ALERT_TIMEOUT_SECS,
                )?,
                min_interval_secs: num(
                    "alert.min_interval_secs",
                    &a.min_interval_secs,
                    0,
                    86_400,
                    super::DEFAULT_ALERT_MIN_INTERVAL_SECS,
                )?,
                relays_down_secs: num(
                    "alert.relays_down_secs",
                    &a.relays_down_secs,
                    1,
                    86_400,
                    super::DEFAULT_ALERT_RELAYS_DOWN_SECS,
                )?,
                worker_restarts: num(
                    "alert.worker_restarts",
                    &a.worker_restarts,
                    1,
                    1_000_000,
                    super::DEFAULT_ALERT_WORKER_RESTARTS,
                )?,
            })
        }
    };
    if upgrade.is_none() {
        warnings.push(Warning::MissingHook { section: "upgrade" });
    }
    if reboot.is_none() {
        warnings.push(Warning::MissingHook { section: "reboot" });
    }

    Ok((
        Config {
            network,
            quorum,
            relays,
            state_dir,
            node_id,
            node_key,
            current_version,
            version_command,
            d_tag,
            metrics_file,
            follows,
            policy,
            upgrade,
            reboot,
            tls_extra_roots,
            heartbeat,
            alert,
            source_sha256: None,
        },
        warnings,
    ))
}

/// The source text, to turn byte spans into line numbers.
struct Source<'a>(&'a str);

impl Source<'_> {
    fn line(&self, span: &Range<usize>) -> Option<usize> {
        self.0
            .get(..span.start)
            .map(|before| before.bytes().filter(|&b| b == b'\n').count() + 1)
    }

    fn invalid(
        &self,
        key: impl Into<String>,
        span: &Range<usize>,
        problem: Problem,
    ) -> ConfigError {
        ConfigError {
            file: None,
            line: self.line(span),
            kind: ConfigErrorKind::Invalid {
                key: key.into(),
                problem,
            },
        }
    }

    /// A required short string: non-empty, bounded, printable.
    fn text(&self, key: &str, value: Spanned<String>, max: usize) -> Result<String, ConfigError> {
        let span = value.span();
        let value = value.into_inner();
        let problem = if value.is_empty() {
            Some(Problem::Empty)
        } else if value.len() > max {
            Some(Problem::TooLong {
                len: value.len(),
                max,
            })
        } else if value.chars().any(char::is_control) || value.trim() != value {
            Some(Problem::BadText)
        } else {
            None
        };
        match problem {
            Some(problem) => Err(self.invalid(key, &span, problem)),
            None => Ok(value),
        }
    }

    fn absolute_path(&self, key: &str, value: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        let text = value.get_ref();
        if text.contains('\0') {
            return Err(self.invalid(key, &value.span(), Problem::NulByte));
        }
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(self.invalid(key, &value.span(), Problem::NotAbsolute));
        }
        Ok(path)
    }

    fn range(
        &self,
        key: &str,
        value: &Spanned<i64>,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let found = *value.get_ref();
        match u64::try_from(found) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.invalid(key, &value.span(), Problem::OutOfRange { found, min, max })),
        }
    }

    fn argv(
        &self,
        key: &str,
        value: Spanned<RawArgv>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Vec<String>, ConfigError> {
        let span = value.span();
        let RawArgv(argv) = value.into_inner();
        let Some(program) = argv.first() else {
            return Err(self.invalid(key, &span, Problem::EmptyCommand));
        };
        if program.is_empty() {
            return Err(self.invalid(key, &span, Problem::EmptyProgram));
        }
        if argv.iter().any(|arg| arg.contains('\0')) {
            return Err(self.invalid(key, &span, Problem::NulByte));
        }
        if !Path::new(program).is_absolute() {
            warnings.push(Warning::ProgramNotAbsolute {
                key: key.to_owned(),
                program: program.clone(),
            });
        }
        Ok(argv)
    }

    fn hook(
        &self,
        section: &str,
        raw: RawHook,
        warnings: &mut Vec<Warning>,
    ) -> Result<Hook, ConfigError> {
        let key = |field: &str| format!("{section}.{field}");
        let command = self.argv(&key("command"), raw.command, warnings)?;
        let timeout_secs = match &raw.timeout_secs {
            Some(t) => self.range(&key("timeout_secs"), t, 1, MAX_HOOK_TIMEOUT_SECS)?,
            None => DEFAULT_HOOK_TIMEOUT_SECS,
        };
        let artifact = match &raw.artifact {
            None => None,
            Some(template) => {
                self.absolute_path(&key("artifact"), template)?;
                let text = template.get_ref();
                if text.replace("{version}", "").contains(['{', '}']) {
                    return Err(self.invalid(key("artifact"), &template.span(), Problem::Template));
                }
                Some(ArtifactTemplate(text.clone()))
            }
        };
        let mut optional = |field: &str, value: Option<Spanned<RawArgv>>| {
            value
                .map(|argv| self.argv(&key(field), argv, warnings))
                .transpose()
        };
        let fetch = optional("fetch", raw.fetch)?;
        let rollback = optional("rollback", raw.rollback)?;
        let health = raw
            .health
            .map(|health| self.health(section, health, warnings))
            .transpose()?;
        let deadline_grace_secs = match &raw.deadline_grace_secs {
            Some(g) => self.range(&key("deadline_grace_secs"), g, 0, MAX_DEADLINE_GRACE_SECS)?,
            None if section == "reboot" => DEFAULT_REBOOT_GRACE_SECS,
            None => DEFAULT_UPGRADE_GRACE_SECS,
        };
        Ok(Hook {
            deadline_grace_secs,
            command,
            timeout_secs,
            artifact,
            fetch,
            health,
            rollback,
        })
    }

    /// `SECTION.health`: the argv form (one check, no settle, no window)
    /// or the table, every number in its range.
    fn health(
        &self,
        section: &str,
        raw: Spanned<RawHealth>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Health, ConfigError> {
        let span = raw.span();
        let table = match raw.into_inner() {
            RawHealth::Argv(argv) => {
                let command = self.argv(
                    &format!("{section}.health"),
                    Spanned::new(span, argv),
                    warnings,
                )?;
                return Ok(Health {
                    command,
                    settle_secs: 0,
                    interval_secs: DEFAULT_HEALTH_INTERVAL_SECS,
                    window_secs: 0,
                    tries: 1,
                });
            }
            RawHealth::Table(table) => table,
        };
        let key = |field: &str| format!("{section}.health.{field}");
        let command = self.argv(&key("command"), table.command, warnings)?;
        let secs = |field: &str, value: &Option<Spanned<i64>>, min: u64, default: u64| match value {
            Some(v) => self.range(&key(field), v, min, MAX_HEALTH_SECS),
            None => Ok(default),
        };
        let settle_secs = secs(
            "settle_secs",
            &table.settle_secs,
            0,
            DEFAULT_HEALTH_SETTLE_SECS,
        )?;
        let interval_secs = secs(
            "interval_secs",
            &table.interval_secs,
            1,
            DEFAULT_HEALTH_INTERVAL_SECS,
        )?;
        let window_secs = secs(
            "window_secs",
            &table.window_secs,
            0,
            DEFAULT_HEALTH_WINDOW_SECS,
        )?;
        let tries = match &table.tries {
            Some(t) => self.range(&key("tries"), t, 1, MAX_HEALTH_TRIES)?,
            None => 1,
        };
        Ok(Health {
            command,
            settle_secs,
            interval_secs,
            window_secs,
            // At most MAX_HEALTH_TRIES, far below u32::MAX.
            tries: u32::try_from(tries).unwrap_or(u32::MAX),
        })
    }
}
