//! `govctl verify FILE`: what a NIP-01 event says and whether the agent
//! would count it.
//!
//! The event is parsed strictly and its id and BIP-340 signature checked by
//! the agent's code, and checked again by rust-nostr as an independent
//! implementation. A directive (kind 33321) is then put through the agent's
//! rules ([`Directive::from_event`]) and, with `--config`, the voter check.
//!
//! An event over one of the agent's size limits is parsed again without them
//! (up to [`MAX_EXAMINED_EVENT_BYTES`]) so its signature is still checked,
//! and the verdict names the limit: "signature valid; exceeds the agent's
//! limit of 1024 bytes per tag value (...)". It is invalid all the same: no
//! agent parses it.

use std::path::Path;

use qube_agent::config::{Config, Role};
use qube_agent::core::directive::{Directive, DIRECTIVE_KIND};

use qube_agent::{Limits, UnverifiedEvent};

use crate::draft::read_small;
use crate::error::{CliError, Result};
use crate::keycmd::npub;
use crate::limits::{self, MAX_EXAMINED_EVENT_BYTES};
use crate::propose::rules;
use crate::show::{directive_fields, print_fields, printable, time};

/// Settings of `govctl verify`.
pub struct VerifyArgs<'a> {
    /// The event file.
    pub file: &'a Path,
    /// Agent config whose rules apply.
    pub config: Option<&'a Path>,
    /// Network to require (without a config; default: the event's own).
    pub network: Option<&'a str>,
    /// `d` tag to require (without a config).
    pub d_tag: &'a str,
}

/// Runs `govctl verify`: prints the event's fields and a verdict line.
///
/// # Errors
/// The event is not valid (the reason is the message), or the file or
/// config cannot be read.
pub fn run(args: &VerifyArgs<'_>) -> Result<()> {
    let config = match args.config {
        Some(path) => Some(crate::config_edit::load_config(path)?),
        None => None,
    };
    let max = u64::try_from(MAX_EXAMINED_EVENT_BYTES).unwrap_or(u64::MAX);
    let text = read_small(args.file, max, "event file")?;
    let mut fields = Vec::new();
    match judge(args, config.as_ref(), &text, &mut fields) {
        Ok(summary) => {
            fields.push(("verdict", format!("valid {summary}")));
            print_fields(&fields, false);
            Ok(())
        }
        Err(Invalid { reason, hint }) => {
            if !fields.is_empty() {
                fields.push(("verdict", format!("INVALID: {reason}")));
                print_fields(&fields, false);
            }
            let err = CliError::failure(format!("{} is not valid: {reason}", args.file.display()));
            Err(match hint {
                Some(hint) => err.hint(hint),
                None => err,
            })
        }
    }
}

/// Why an event is not valid, and what to do.
struct Invalid {
    reason: String,
    hint: Option<&'static str>,
}

impl Invalid {
    fn new(reason: impl Into<String>) -> Invalid {
        Invalid {
            reason: reason.into(),
            hint: None,
        }
    }
}

/// Checks the event, filling `fields` with what it says; `Ok` holds what
/// the verdict covers.
fn judge(
    args: &VerifyArgs<'_>,
    config: Option<&Config>,
    text: &str,
    fields: &mut Vec<(&'static str, String)>,
) -> std::result::Result<String, Invalid> {
    let not_nip01 = |e: &qube_agent::Error| Invalid::new(format!("not a NIP-01 event: {e}"));
    // Within the agent's limits, or over one of them but otherwise an event
    // (then `breach` names the limit and the signature is still checked).
    let (unverified, breach) = match UnverifiedEvent::from_json(text.as_bytes(), &Limits::default())
    {
        Ok(event) => (event, None),
        Err(e) => match limits::breach(&e) {
            Some(breach) => (
                UnverifiedEvent::from_json(text.as_bytes(), &limits::relaxed())
                    .map_err(|_| not_nip01(&e))?,
                Some(breach),
            ),
            None => return Err(not_nip01(&e)),
        },
    };
    fields.push(("id", unverified.id_hex()));
    fields.push(("kind", kind_name(unverified.kind)));
    fields.push(("author", author(&unverified.pubkey, config)));
    fields.push(("created_at", time(unverified.created_at)));
    let event = match (unverified.verify(), nostr_verdict(text)) {
        (Ok(event), Ok(())) => {
            fields.push((
                "signature",
                "valid (qube-agent and rust-nostr agree)".into(),
            ));
            event
        }
        (Err(e), _) => {
            fields.push(("signature", format!("INVALID: {e}")));
            return Err(Invalid {
                reason: e.to_string(),
                hint: Some(
                    "the event was changed after it was signed, or never signed by that key; get the file again from its signer",
                ),
            });
        }
        (Ok(_), Err(e)) => {
            fields.push(("signature", format!("qube-agent: valid; rust-nostr: {e}")));
            return Err(Invalid {
                reason: format!("the two implementations disagree (rust-nostr: {e})"),
                hint: Some("please report this event: the implementations must agree"),
            });
        }
    };

    if let Some(breach) = breach {
        return Err(Invalid {
            reason: format!("signature valid; exceeds {breach}"),
            hint: Some(
                "no agent parses this event, whoever signed it; sign a new one with shorter values",
            ),
        });
    }

    if event.kind != DIRECTIVE_KIND {
        if config.is_some() {
            return Err(Invalid::new(format!(
                "kind {} is not a directive ({DIRECTIVE_KIND}), so no agent counts it",
                event.kind
            )));
        }
        return Ok("signed event (not a directive)".to_owned());
    }

    let (rules, scope) = match (config, args.network) {
        (Some(config), _) => (
            config.directive_rules(),
            format!(
                "directive under {}",
                args.config
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        ),
        (None, Some(network)) => (
            rules(network, args.d_tag),
            format!("directive for network {network:?} (no --config: author not checked)"),
        ),
        (None, None) => {
            let network = event.tag_value("network").unwrap_or_default().to_owned();
            (
                rules(&network, args.d_tag),
                "directive (no --config: author and network not checked)".to_owned(),
            )
        }
    };
    let now = qube_agent::now();
    // Show the fields even of an expired directive, then judge.
    if let Ok(d) = Directive::from_event_including_expired(event.clone(), &rules, now) {
        fields.extend(directive_fields(&d));
    }
    let directive =
        Directive::from_event(event, &rules, now).map_err(|e| Invalid::new(e.to_string()))?;
    if let Some(config) = config {
        match config.follow(directive.author()) {
            Some(f) if f.role() == Role::Voter => {}
            Some(f) => {
                return Err(Invalid::new(format!(
                    "the author {:?} is an observer, not a voter: shown in status, never counted",
                    f.name()
                )))
            }
            None => return Err(Invalid {
                reason: format!(
                    "the author {} is not a follow in the config",
                    npub(directive.author())
                ),
                hint: Some(
                    "`govctl follows add NPUB --name NAME --role voter --config FILE` adds a voter",
                ),
            }),
        }
    }
    Ok(scope)
}

fn kind_name(kind: u16) -> String {
    match kind {
        DIRECTIVE_KIND => format!("{kind} (HyperQube directive)"),
        qube_agent::core::ack::ACK_KIND => format!("{kind} (HyperQube acknowledgement)"),
        qube_agent::core::message::AUTH_KIND => format!("{kind} (NIP-42 authentication)"),
        _ => kind.to_string(),
    }
}

fn author(pubkey: &[u8; 32], config: Option<&Config>) -> String {
    let npub = npub(pubkey);
    match config.and_then(|c| c.follow(pubkey)) {
        Some(f) => format!(
            "{npub} ({}, {})",
            printable(f.name(), 64),
            f.role().as_str()
        ),
        None if config.is_some() => format!("{npub} (not a follow)"),
        None => npub,
    }
}

/// rust-nostr's verdict on the same text: parse, then id and signature.
fn nostr_verdict(text: &str) -> std::result::Result<(), String> {
    let event = nostr::event::Event::from_json(text).map_err(|e| format!("cannot parse: {e}"))?;
    event.verify().map_err(|e| e.to_string())
}
