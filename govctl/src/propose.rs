//! `govctl propose upgrade|reboot` and `govctl sign`: HyperQube directives
//! (kind 33321, `docs/PROTOCOL.md` section 3), built, checked against the agent's own
//! rules ([`Directive::from_event`]) before any key is touched, signed, and
//! then saved (`--out`, no network) or published.
//!
//! `--unsigned --signer NPUB --out FILE` writes a [`Draft`] instead, for
//! `govctl sign DRAFT --out FILE` on another machine, which shows it,
//! checks it, asks, and signs it unchanged.
//!
//! Before any signature, the directive is shown on stderr with every tag
//! and every value in full, escaped, with `warning:` lines for what
//! deserves a second look ([`show::review`]). Beyond the agent's rules,
//! govctl refuses to sign a directive no agent would parse (over
//! [`Limits::default`], see [`crate::limits`]) and a `genesis_url` that is
//! not an `https://` URL ([`check_genesis_url`]).

use std::path::Path;
use std::time::Duration;

use qube_agent::core::directive::{Action, Directive, DirectiveRules, DIRECTIVE_KIND};
use qube_agent::relay::RelayTarget;
use qube_agent::{Event, Keys, Limits, UnsignedEvent, UnverifiedEvent};

use crate::draft::{write_new_file, Draft};
use crate::error::{warn, CliError, Result};
use crate::keycmd::{npub, KeyChoice};
use crate::remote::{self, Expected, RemoteSigner};
use crate::show::{self, print_fields};
use crate::time::format_utc;
use crate::{keystore, limits, publish};

/// What to propose.
pub struct Spec {
    /// Upgrade or reboot.
    pub action: Action,
    /// Version as it will be signed (an optional leading `v` is kept).
    pub version: String,
    /// Network id.
    pub network: String,
    /// SHA-256 of the artifact, 64 lowercase hex characters.
    pub hash: String,
    /// Reboot only: where the genesis comes from.
    pub genesis_url: Option<String>,
    /// Deadline (a reboot, required) or activation time (an upgrade,
    /// optional), unix seconds: nodes act at this time
    /// (`docs/PROTOCOL.md` section 12, "Deadlines").
    pub required_by: Option<u64>,
    /// NIP-40 expiration, unix seconds.
    pub expiration: Option<u64>,
    /// Staged rollout: the percentage of nodes in the wave, 1 to 100.
    pub rollout: Option<u8>,
    /// Staged rollout: nodes named in the wave (32-byte pubkeys).
    pub nodes: Vec<[u8; 32]>,
    /// Content; a sentence is made up when `None`.
    pub content: Option<String>,
    /// `d` tag.
    pub d_tag: String,
}

/// The artifact hash from `--hash` (checked, lowercased) or `--artifact`
/// (computed).
///
/// # Errors
/// Not 64 hex characters, or the artifact cannot be read.
pub fn resolve_hash(hash: Option<&str>, artifact: Option<&Path>) -> Result<String> {
    match (hash, artifact) {
        (Some(hash), None) => {
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(hash.to_ascii_lowercase())
            } else {
                Err(CliError::failure(format!(
                    "--hash {:?} is not a SHA-256 (64 hex characters)",
                    show::printable(hash, 80)
                ))
                .hint(
                    "`govctl hash FILE` prints the SHA-256 of an artifact; or pass --artifact FILE",
                ))
            }
        }
        (None, Some(path)) => qube_agent::artifact::sha256_file(path)
            .map(hex::encode)
            .map_err(|e| CliError::io("read artifact", path, &e)),
        _ => Err(CliError::usage(
            "give exactly one of --hash HASH and --artifact FILE",
        )),
    }
}

/// The unsigned directive, tags in `docs/PROTOCOL.md` section 3 order.
pub fn build(spec: &Spec, created_at: u64) -> UnsignedEvent {
    let mut tags = vec![
        vec!["d".to_owned(), spec.d_tag.clone()],
        vec!["action".to_owned(), spec.action.as_str().to_owned()],
        vec!["version".to_owned(), spec.version.clone()],
        vec!["hash".to_owned(), spec.hash.clone()],
        vec!["network".to_owned(), spec.network.clone()],
    ];
    if let Some(url) = &spec.genesis_url {
        tags.push(vec!["genesis_url".to_owned(), url.clone()]);
    }
    if let Some(t) = spec.required_by {
        tags.push(vec!["required_by".to_owned(), t.to_string()]);
    }
    if let Some(t) = spec.expiration {
        tags.push(vec!["expiration".to_owned(), t.to_string()]);
    }
    // Wave tags narrow who acts: always named in `crit`, so an agent that
    // does not know them refuses the directive instead of acting
    // everywhere (docs/PROTOCOL.md section 3).
    let mut critical = vec!["crit".to_owned()];
    if spec.rollout.is_some() {
        critical.push("rollout".to_owned());
    }
    if !spec.nodes.is_empty() {
        critical.push("node".to_owned());
    }
    if critical.len() > 1 {
        tags.push(critical);
    }
    if let Some(percent) = spec.rollout {
        tags.push(vec!["rollout".to_owned(), percent.to_string()]);
    }
    for node in &spec.nodes {
        tags.push(vec!["node".to_owned(), hex::encode(node)]);
    }
    let content = spec
        .content
        .clone()
        .unwrap_or_else(|| default_content(spec));
    UnsignedEvent {
        created_at,
        kind: DIRECTIVE_KIND,
        tags,
        content,
    }
}

fn default_content(spec: &Spec) -> String {
    match spec.action {
        Action::Upgrade => format!(
            "Upgrade {} to version {}{} (artifact sha256 {}).",
            spec.network,
            spec.version,
            spec.required_by
                .map_or_else(String::new, |t| format!(" at {}", format_utc(t))),
            spec.hash
        ),
        Action::Reboot => format!(
            "Reboot {} with version {} from {}, required by {} (artifact sha256 {}).",
            spec.network,
            spec.version,
            spec.genesis_url.as_deref().unwrap_or("?"),
            spec.required_by.map_or_else(|| "?".to_owned(), format_utc),
            spec.hash
        ),
    }
}

/// Checks an unsigned directive against the agent's rules before any real
/// key is used: it is signed with a throwaway key, parsed back with the
/// agent's size limits ([`Limits::default`]) and run through
/// [`Directive::from_event`] (everything but the voter check).
///
/// # Errors
/// The first rule it breaks.
pub fn check_unsigned(
    unsigned: &UnsignedEvent,
    rules: &DirectiveRules,
    now: u64,
) -> Result<Directive> {
    let throwaway = Keys::generate().map_err(|e| {
        CliError::failure(format!("cannot generate a key: {e}"))
            .hint("the system random number generator failed; try again")
    })?;
    let event = throwaway.sign(unsigned.clone()).map_err(|e| {
        CliError::failure(format!("not a valid event: {e}")).hint("every tag needs at least a name")
    })?;
    // The same length as the real signed event: only key and signature differ.
    if let Err(e) = UnverifiedEvent::from_json(event.to_json().as_bytes(), &Limits::default()) {
        let why = limits::breach(&e).map_or_else(|| e.to_string(), |b| format!("it exceeds {b}"));
        return Err(
            CliError::failure(format!("no agent would accept this event: {why}")).hint(
                "shorten the value named above: agents drop the whole event unread, signature and all",
            ),
        );
    }
    check_signed(event, rules, now)
}

/// Checks a `genesis_url`: `https://` (either case), then a host with no
/// `user@` part (it can disguise the real host), and no space, control or
/// invisible character anywhere. Nodes download the genesis from it; only
/// TLS keeps it from being swapped on the way.
///
/// # Errors
/// Why the URL is refused, as a clause.
pub fn check_genesis_url(url: &str) -> std::result::Result<(), &'static str> {
    let rest = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .and_then(|_| url.get(8..))
        .ok_or("it does not start with https://")?;
    if url.chars().any(|c| c.is_whitespace() || show::is_hidden(c)) {
        return Err("it contains a space, a control or an invisible character");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("it names no host");
    }
    if authority.contains('@') {
        return Err("it has a user@ part before the host, which can disguise the real host");
    }
    Ok(())
}

/// Prints the directive as it will be signed (stderr), and its warnings.
fn show_before_signing(header: &[(&str, String)], unsigned: &UnsignedEvent) {
    eprintln!("about to sign this directive (kind {DIRECTIVE_KIND}):");
    print_fields(header, true);
    let review = show::review(&unsigned.tags, &unsigned.content);
    for line in &review.lines {
        eprintln!("{line}");
    }
    for warning in &review.warnings {
        warn(warning);
    }
}

/// Checks a signed directive against the agent's rules.
///
/// # Errors
/// The first rule it breaks.
pub fn check_signed(event: Event, rules: &DirectiveRules, now: u64) -> Result<Directive> {
    Directive::from_event(event, rules, now).map_err(|e| {
        CliError::failure(format!("the agent would not count this directive: {e}"))
            .hint("fix the value named above; every agent applies exactly this rule")
    })
}

/// Rules for a directive on `network` with `d_tag` and the default skew.
pub fn rules(network: &str, d_tag: &str) -> DirectiveRules {
    let mut rules = DirectiveRules::new(network);
    d_tag.clone_into(&mut rules.d_tag);
    rules
}

/// Signs with `keys`, checks the result again, returns the event.
///
/// # Errors
/// Signing fails or the signed event breaks a rule.
pub fn sign(
    keys: &Keys,
    unsigned: UnsignedEvent,
    rules: &DirectiveRules,
    now: u64,
) -> Result<Event> {
    let event = keys
        .sign(unsigned)
        .map_err(|e| CliError::failure(format!("signing failed: {e}")))?;
    Ok(check_signed(event, rules, now)?.into_event())
}

/// Who signs: a key file, or a NIP-46 remote signer ([`crate::remote`]),
/// and the key the signature must be made with.
pub struct Signing<'a> {
    /// `--key`, `--name`, `--passphrase-file` (unused with a remote signer).
    pub key: KeyChoice<'a>,
    /// `--signer bunker://...` or `nostrconnect://...`.
    pub remote: Option<RemoteSigner>,
    /// `--expect NPUB`, or `--config`'s voters.
    pub expect: Option<Expected>,
    /// `--signer-timeout`.
    pub timeout: Duration,
}

impl Signing<'_> {
    /// Signs `unsigned` and checks the result with `rules`: with the key
    /// file (checked against `expect` before signing), or through the
    /// remote signer ([`remote::sign`], whose answer is checked by
    /// [`remote::check_returned`] and then here). Returns the event and,
    /// for a key file, its keys (they answer NIP-42 when publishing).
    ///
    /// # Errors
    /// The key cannot be unlocked, is not `expect`, the remote signer
    /// fails or answers wrongly, or the event breaks a rule.
    pub fn sign(
        &self,
        unsigned: UnsignedEvent,
        rules: &DirectiveRules,
    ) -> Result<(Event, Option<Keys>)> {
        if let Some(remote) = &self.remote {
            let event = remote::sign(remote, &unsigned, self.expect.as_ref(), self.timeout)?;
            let directive = check_signed(event, rules, qube_agent::now())?;
            return Ok((directive.into_event(), None));
        }
        let keys = self.key.unlock()?.keys()?;
        if let Some(expect) = self
            .expect
            .as_ref()
            .filter(|e| !e.allows(&keys.public_key()))
        {
            return Err(CliError::failure(format!(
                "the key is {}, not {}; nothing signed",
                npub(&keys.public_key()),
                expect.describe()
            ))
            .hint(format!(
                "choose the expected key with --key or --name, or check {}",
                expect.source
            )));
        }
        let event = sign(&keys, unsigned, rules, qube_agent::now())?;
        Ok((event, Some(keys)))
    }
}

/// Refuses an `--out` file that exists, before anything is signed (the
/// write itself refuses too: [`write_new_file`] creates the file new).
///
/// # Errors
/// `path` exists (or is a dangling symlink).
fn refuse_existing(path: &Path) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        return Err(CliError::failure(format!(
            "{} already exists; refusing to overwrite it",
            path.display()
        ))
        .hint("choose another --out FILE"));
    }
    Ok(())
}

/// Where a proposal goes.
pub struct Destination<'a> {
    /// `--out FILE`: write there, touch no network.
    pub out: Option<&'a Path>,
    /// `--unsigned --signer KEY`: write a draft for this signer.
    pub unsigned_for: Option<[u8; 32]>,
    /// `--relay`: publish there (when no `--out`).
    pub relays: Vec<RelayTarget>,
    /// `--auth-key FILE` (default: the signing key).
    pub auth_key: Option<&'a Path>,
    /// `--auth-passphrase-file FILE`.
    pub auth_passphrase_file: Option<&'a Path>,
    /// How long to wait for relays.
    pub timeout: Duration,
}

/// `govctl propose upgrade|reboot`.
///
/// # Errors
/// The directive breaks a rule (before any key is read), the key cannot be
/// unlocked, the file cannot be written, or no relay accepted it.
pub fn run(spec: &Spec, signing: &Signing<'_>, dest: &Destination<'_>) -> Result<()> {
    let now = qube_agent::now();
    let unsigned = build(spec, now);
    let rules = rules(&spec.network, &spec.d_tag);
    check_unsigned(&unsigned, &rules, now)?;
    // Before a passphrase is asked or a remote signer approves anything.
    if let Some(out) = dest.out {
        refuse_existing(out)?;
    }
    if let Some(pubkey) = dest.unsigned_for {
        let out = dest
            .out
            .ok_or_else(|| CliError::usage("--unsigned needs --out FILE"))?;
        let draft = Draft::new(&unsigned, &pubkey);
        write_new_file(out, &draft.to_json()?)?;
        eprintln!(
            "wrote a draft for {} to {}; sign it with `govctl sign {} --out FILE`",
            npub(&pubkey),
            out.display(),
            out.display()
        );
        println!("{}", draft.id);
        return Ok(());
    }
    show_before_signing(
        &[("created_at", show::time(unsigned.created_at))],
        &unsigned,
    );
    let (event, keys) = signing.sign(unsigned, &rules)?;
    eprintln!("signed:");
    print_fields(
        &[("id", event.id_hex()), ("signer", npub(&event.pubkey))],
        true,
    );
    if let Some(out) = dest.out {
        write_new_file(out, &format!("{}\n", event.to_json()))?;
        eprintln!(
            "wrote {}; publish it with `govctl publish {} --relay URL --auth-key KEYFILE`",
            out.display(),
            out.display()
        );
        println!("{}", event.id_hex());
        return Ok(());
    }
    let auth_keys = match dest.auth_key {
        Some(path) => Some(keystore::unlock(path, dest.auth_passphrase_file)?.keys()?),
        None => None,
    };
    // A remote signer is asked to sign the directive only: NIP-42 is
    // answered with --auth-key then, or not at all.
    let auth = auth_keys.as_ref().or(keys.as_ref());
    publish::publish_and_report(&[event], dest.relays.clone(), auth, dest.timeout)
}

/// `govctl sign DRAFT --out FILE`: shows the draft on stderr (every tag in
/// full, with warnings), checks it, asks unless `yes`, and signs it
/// unchanged with the key the draft names.
///
/// # Errors
/// A bad draft (including one over the agent's limits or with a
/// `genesis_url` that is not https), a refusal, the wrong key, or the file
/// cannot be written.
pub fn run_sign(
    draft_path: &Path,
    out: &Path,
    signing: &Signing<'_>,
    d_tag: &str,
    yes: bool,
) -> Result<()> {
    let (draft, pubkey, unsigned) = Draft::load(draft_path)?;
    if let Some(expect) = signing.expect.as_ref().filter(|e| !e.allows(&pubkey)) {
        return Err(CliError::failure(format!(
            "the draft is for {}, not {}",
            npub(&pubkey),
            expect.describe()
        ))
        .hint(format!(
            "sign the draft made for the expected key, or check {}",
            expect.source
        )));
    }
    let network = unsigned
        .tags
        .iter()
        .find(|t| t.first().is_some_and(|n| n == "network"))
        .and_then(|t| t.get(1))
        .cloned()
        .unwrap_or_default();
    let rules = rules(&network, d_tag);
    let now = qube_agent::now();
    refuse_existing(out)?;
    // Shown first, whatever is wrong with it: the signer sees what was asked.
    show_before_signing(
        &[
            ("id", draft.id.clone()),
            ("signer", npub(&pubkey)),
            ("created_at", show::time(unsigned.created_at)),
        ],
        &unsigned,
    );
    check_unsigned(&unsigned, &rules, now)?;
    for tag in unsigned
        .tags
        .iter()
        .filter(|t| t.first().is_some_and(|n| n == "genesis_url"))
    {
        let url = tag.get(1).map_or("", String::as_str);
        check_genesis_url(url).map_err(|why| {
            CliError::failure(format!(
                "the draft's genesis_url {} is not an https:// URL: {why}",
                show::quoted_short(url, 80)
            ))
            .hint("ask its author for a draft with an https:// genesis_url; govctl signs no other")
        })?;
    }
    if !yes && !crate::prompt::confirm("sign it?", "--yes to sign without asking")? {
        return Err(CliError::failure("not signed").hint("run it again and answer y to sign"));
    }
    let event = if let Some(remote) = &signing.remote {
        // The remote signer must sign as the draft's key (checked before it
        // is asked to sign), and return exactly the draft.
        let event = remote::sign(
            remote,
            &unsigned,
            Some(&Expected::key(pubkey, "the draft's key")),
            signing.timeout,
        )?;
        check_signed(event, &rules, qube_agent::now())?.into_event()
    } else {
        let keys = signing.key.unlock()?.keys()?;
        if keys.public_key() != pubkey {
            return Err(CliError::failure(format!(
                "the draft is for {}, but the key is {}",
                npub(&pubkey),
                npub(&keys.public_key())
            ))
            .hint("sign with the key the draft names (--key or --name), or make a new draft with --signer"));
        }
        sign(&keys, unsigned, &rules, now)?
    };
    if event.id_hex() != draft.id {
        return Err(CliError::failure(
            "the signed event's id differs from the draft's; nothing written",
        ));
    }
    write_new_file(out, &format!("{}\n", event.to_json()))?;
    eprintln!("wrote {}", out.display());
    println!("{}", event.id_hex());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_url_must_be_https_to_a_host() {
        for ok in [
            "https://genesis.example/g.json",
            "HTTPS://genesis.example",
            "https://genesis.example:8443/a?b=c#d",
            "https://[2001:db8::1]/g",
        ] {
            assert_eq!(check_genesis_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            (
                "http://genesis.example/g.json",
                "does not start with https://",
            ),
            ("ftp://x", "does not start with https://"),
            ("https:/x", "does not start with https://"),
            ("", "does not start with https://"),
            ("https://", "names no host"),
            ("https:///path", "names no host"),
            ("https://a@b.example/", "user@"),
            ("https://b.example/ x", "space"),
            ("https://b.example/\u{1b}[2K", "control"),
            ("https://b.example/\u{202e}", "invisible"),
        ] {
            let err = check_genesis_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
