//! `--signer` values: a key (npub or hex, for `--unsigned` drafts), a
//! NIP-46 `bunker://` URI (the remote signer's connection token), or
//! `nostrconnect://?relay=...` (govctl makes the client-initiated URI and
//! shows it for the signer app to scan). Pure parsing, no I/O.
//!
//! Accepted forms (NIP-46, "Initiating a connection"):
//!
//! - `bunker://<remote-signer-pubkey, 64 hex>?relay=<ws(s) URL>[&relay=...][&secret=<text>]`,
//!   relay values percent-encoded or not; other parameters are ignored.
//! - `nostrconnect://?relay=<ws(s) URL>[&relay=...]`: govctl adds its own
//!   client key, a random `secret`, `perms=sign_event:33321` and
//!   `name=govctl` (and the older `metadata`, [`client_uri`]); a value that already carries a key,
//!   a secret or perms is refused.
//!
//! Every relay must be `wss://`, or `ws://` to a loopback host unless
//! `--allow-insecure-ws` (the rule of `--relay`). A connection secret never
//! appears in an error: URIs are echoed through [`redact`].

use qube_agent::core::relay_url::RelayUrl;
use qube_agent::relay::RelayTarget;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};
use crate::show;

/// Longest `--signer` value read, in bytes (a URI with a few relays is far
/// shorter).
pub const MAX_SIGNER_LEN: usize = 4096;

/// Most relays in one URI.
pub const MAX_SIGNER_RELAYS: usize = 8;

/// What `--signer` names.
pub enum SignerArg {
    /// A public key (npub, nprofile or hex): the key a draft is made for.
    Key([u8; 32]),
    /// A remote signer reached with a `bunker://` token.
    Bunker(Bunker),
    /// Pairing with a signer app through a `nostrconnect://` URI govctl makes.
    Pairing(Pairing),
}

/// A parsed `bunker://` URI. No `Debug`: it may hold a secret.
pub struct Bunker {
    /// The remote signer's key (not necessarily the user's key, NIP-46).
    pub signer: [u8; 32],
    /// Where it listens.
    pub relays: Vec<RelayTarget>,
    /// The optional one-time connection secret.
    pub secret: Option<Zeroizing<String>>,
}

/// A parsed `nostrconnect://?relay=...`: the relays the signer app is to use.
pub struct Pairing {
    /// The relays named, in order.
    pub relays: Vec<RelayTarget>,
}

/// `text` with the value of every `secret=` parameter replaced by
/// `<redacted>`, cut to 200 characters and escaped for a terminal: how a
/// `--signer` value appears in messages.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(256));
    let mut rest = text;
    loop {
        let found = rest
            .char_indices()
            .find(|&(i, _)| {
                let before = rest.get(..i).and_then(|s| s.chars().last());
                (i == 0 || matches!(before, Some('?' | '&' | '#')))
                    && rest
                        .get(i..i + 7)
                        .is_some_and(|p| p.eq_ignore_ascii_case("secret="))
            })
            .map(|(i, _)| i);
        let Some(start) = found else {
            out.push_str(rest);
            break;
        };
        let value_start = start + 7;
        out.push_str(rest.get(..value_start).unwrap_or_default());
        out.push_str("<redacted>");
        let tail = rest.get(value_start..).unwrap_or_default();
        let end = tail.find(['&', '#']).unwrap_or(tail.len());
        rest = tail.get(end..).unwrap_or_default();
    }
    show::quoted_short(&out, 200)
}

/// Parses a `--signer` value (see the module docs for the forms).
/// `allow_insecure_ws` lets relays be `ws://` to any host.
///
/// # Errors
/// Usage errors (exit status 2) naming what is wrong, the value redacted.
pub fn parse(text: &str, allow_insecure_ws: bool) -> Result<SignerArg> {
    if text.len() > MAX_SIGNER_LEN {
        return Err(CliError::usage(format!(
            "--signer is {} bytes long, more than {MAX_SIGNER_LEN}",
            text.len()
        )));
    }
    let lower = text.get(..15).unwrap_or(text).to_ascii_lowercase();
    if lower.starts_with("bunker:") {
        parse_bunker(text, allow_insecure_ws).map(SignerArg::Bunker)
    } else if lower.starts_with("nostrconnect:") {
        parse_pairing(text, allow_insecure_ws).map(SignerArg::Pairing)
    } else if text.contains("://") {
        Err(CliError::usage(format!(
            "--signer {}: not a signer govctl knows",
            redact(text)
        ))
        .hint("give a bunker://PUBKEY?relay=wss://... URI from your signer, nostrconnect://?relay=wss://... to pair with a signer app, or an npub with --unsigned"))
    } else {
        crate::config_edit::parse_public_key(text)
            .map(SignerArg::Key)
            .map_err(|e| {
                CliError::usage(format!("--signer: {}", e.message())).hint(
                    "give an npub or 64 hex characters (with --unsigned), or a bunker:// or nostrconnect:// URI",
                )
            })
    }
}

/// The query of a URI as (name, value) pairs, percent-decoded.
fn query(url: &nostr::types::url::Url) -> Vec<(String, Zeroizing<String>)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), Zeroizing::new(v.into_owned())))
        .collect()
}

fn bad_uri(text: &str, why: &str) -> CliError {
    CliError::usage(format!("--signer {}: {why}", redact(text)))
}

fn parse_url(text: &str) -> Result<nostr::types::url::Url> {
    if let Some(position) = text.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(bad_uri(
            text,
            &format!("it has a space or control character at byte {position}"),
        )
        .hint("copy the URI again from the signer, in one piece"));
    }
    nostr::types::url::Url::parse(text).map_err(|e| {
        bad_uri(text, &format!("not a valid URI ({e})"))
            .hint("copy the URI again from the signer, in one piece")
    })
}

fn relays(
    text: &str,
    pairs: &[(String, Zeroizing<String>)],
    allow_insecure_ws: bool,
) -> Result<Vec<RelayTarget>> {
    let mut out: Vec<RelayTarget> = Vec::new();
    for (_, value) in pairs.iter().filter(|(k, _)| k == "relay") {
        let url = RelayUrl::parse(value).map_err(|e| {
            bad_uri(
                text,
                &format!(
                    "relay {} is not a relay URL: {e}",
                    show::quoted_short(value, 80)
                ),
            )
            .hint("relays are wss://host[:port][/path]")
        })?;
        if !url.is_tls() && !url.is_loopback() && !allow_insecure_ws {
            return Err(bad_uri(
                text,
                &format!(
                    "relay {}: ws:// (unencrypted) is only allowed to a loopback host",
                    url.as_str()
                ),
            )
            .hint(
                "use wss://, or add --allow-insecure-ws (propose) for a trusted private network",
            ));
        }
        if out.iter().all(|t| t.url != url.as_str()) {
            out.push(RelayTarget::from(&url));
        }
    }
    if out.is_empty() {
        return Err(bad_uri(text, "it names no relay").hint(
            "NIP-46 needs at least one relay: add ?relay=wss://... (the signer app shows the full URI)",
        ));
    }
    if out.len() > MAX_SIGNER_RELAYS {
        return Err(bad_uri(
            text,
            &format!(
                "it names {} relays, more than {MAX_SIGNER_RELAYS}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

fn parse_bunker(text: &str, allow_insecure_ws: bool) -> Result<Bunker> {
    let url = parse_url(text)?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(bad_uri(text, "it names no remote signer key").hint(
            "a bunker URI is bunker://<64 hex>?relay=wss://...; copy it again from the signer",
        ));
    }
    let signer = crate::draft::parse_hex32(host).ok_or_else(|| {
        let err = bad_uri(
            text,
            &format!(
                "the remote signer key {} is not 64 hex characters",
                show::quoted_short(host, 80)
            ),
        );
        if host.starts_with("npub1") {
            err.hint("NIP-46 bunker URIs carry the key in hex; use the URI exactly as the signer shows it")
        } else {
            err.hint("a bunker URI is bunker://<64 hex>?relay=wss://...; copy it again from the signer")
        }
    })?;
    if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
        return Err(bad_uri(
            text,
            "it has a user, password or port beside the key",
        ));
    }
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(bad_uri(text, "it has a path or fragment after the key")
            .hint("a bunker URI is bunker://<64 hex>?relay=wss://...&secret=..."));
    }
    let pairs = query(&url);
    let relays = relays(text, &pairs, allow_insecure_ws)?;
    let mut secrets = pairs.into_iter().filter(|(k, _)| k == "secret");
    let secret = secrets.next().map(|(_, v)| v);
    if secrets.next().is_some() {
        return Err(bad_uri(text, "it has more than one secret"));
    }
    Ok(Bunker {
        signer,
        relays,
        secret: secret.filter(|s| !s.is_empty()),
    })
}

fn parse_pairing(text: &str, allow_insecure_ws: bool) -> Result<Pairing> {
    let url = parse_url(text)?;
    let govctl_makes = "govctl makes the client key, secret and perms itself: give only nostrconnect://?relay=wss://...";
    if url.host_str().is_some_and(|h| !h.is_empty()) || !matches!(url.path(), "" | "/") {
        return Err(bad_uri(text, "a nostrconnect:// value names no key here").hint(govctl_makes));
    }
    let pairs = query(&url);
    if let Some((name, _)) = pairs
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "relay" | "name" | "url" | "image"))
    {
        return Err(bad_uri(
            text,
            &format!("unexpected parameter {}", show::quoted_short(name, 40)),
        )
        .hint(govctl_makes));
    }
    Ok(Pairing {
        relays: relays(text, &pairs, allow_insecure_ws)?,
    })
}

/// The `nostrconnect://` URI for a signer app (NIP-46, "Direct connection
/// initiated by the client"): the client's hex key, each relay, the
/// secret, `perms=sign_event:33321` and `name=govctl`, values
/// percent-encoded; and `metadata={"name":"govctl"}`, the earlier form of
/// the name, without which signers built on rust-nostr 0.44 and before
/// refuse the URI (NIP-46 signers ignore parameters they do not know).
pub fn client_uri(client: &[u8; 32], relays: &[RelayTarget], secret: &str) -> Zeroizing<String> {
    let mut query = url_encoded();
    for relay in relays {
        query.append_pair("relay", &relay.url);
    }
    query.append_pair("secret", secret);
    query.append_pair(
        "perms",
        &format!("sign_event:{}", qube_agent::core::directive::DIRECTIVE_KIND),
    );
    query.append_pair("name", "govctl");
    query.append_pair("metadata", r#"{"name":"govctl"}"#);
    Zeroizing::new(format!(
        "nostrconnect://{}?{}",
        hex::encode(client),
        query.finish()
    ))
}

fn url_encoded() -> nostr::types::url::form_urlencoded::Serializer<'static, String> {
    nostr::types::url::form_urlencoded::Serializer::new(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "79dff8f82963424e0bb02708a22e44b4980893e3a4be0fa3cb60a43b946764e3";

    fn bunker(text: &str) -> Bunker {
        match parse(text, false) {
            Ok(SignerArg::Bunker(b)) => b,
            Ok(_) => panic!("{text}: not a bunker"),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn usage(text: &str) -> String {
        match parse(text, false) {
            Err(e) => {
                assert_eq!(e.code(), crate::error::EXIT_USAGE, "{e}");
                e.to_string()
            }
            Ok(_) => panic!("{text}: accepted"),
        }
    }

    #[test]
    fn bunker_uris_of_signer_apps_parse() {
        // nsec.app / nsecBunker style: one relay and a secret.
        let b = bunker(&format!(
            "bunker://{PK}?relay=wss://relay.nsec.app&secret=s3cr3t"
        ));
        assert_eq!(hex::encode(b.signer), PK);
        assert_eq!(b.relays.len(), 1);
        assert_eq!(b.relays[0].url, "wss://relay.nsec.app");
        assert_eq!(b.secret.as_deref().map(String::as_str), Some("s3cr3t"));
        // Amber style: percent-encoded relays, several of them, no secret.
        let b = bunker(&format!(
            "bunker://{PK}?relay=wss%3A%2F%2Frelay.one%2F&relay=wss%3A%2F%2Frelay.two%3A444"
        ));
        let urls: Vec<&str> = b.relays.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(urls, ["wss://relay.one", "wss://relay.two:444"]);
        assert!(b.secret.is_none());
        // Upper-case hex and scheme, and a loopback ws:// relay.
        let b = bunker(&format!(
            "BUNKER://{}?relay=ws://127.0.0.1:7777",
            PK.to_uppercase()
        ));
        assert_eq!(hex::encode(b.signer), PK);
    }

    #[test]
    fn bad_bunker_uris_are_usage_errors_without_the_secret() {
        for (text, why) in [
            (format!("bunker://{PK}?secret=hunter2"), "names no relay"),
            (format!("bunker://{PK}"), "names no relay"),
            (
                "bunker://?relay=wss://r.example&secret=hunter2".to_owned(),
                "names no remote signer key",
            ),
            (
                "bunker://npub1xyz?relay=wss://r.example&secret=hunter2".to_owned(),
                "in hex",
            ),
            (
                format!("bunker://{PK}?relay=ws://r.example&secret=hunter2"),
                "only allowed to a loopback host",
            ),
            (
                format!("bunker://{PK}?relay=https://r.example&secret=hunter2"),
                "not a relay URL",
            ),
            (
                format!("bunker://{PK}/x?relay=wss://r.example&secret=hunter2"),
                "path",
            ),
            (
                format!("bunker://{PK}?relay=wss://r.example&secret=hunter2&secret=b"),
                "more than one secret",
            ),
            (
                format!("bunker://{PK}?relay=wss://r.example&secret=hunter2 x"),
                "space or control",
            ),
            (
                "wss://r.example?secret=hunter2".to_owned(),
                "not a signer govctl knows",
            ),
        ] {
            let err = usage(&text);
            assert!(err.contains(why), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{text}: {err}");
        }
    }

    #[test]
    fn pairing_takes_relays_only() {
        match parse(
            "nostrconnect://?relay=wss://relay.example&relay=ws://localhost:9",
            false,
        ) {
            Ok(SignerArg::Pairing(p)) => {
                let urls: Vec<&str> = p.relays.iter().map(|t| t.url.as_str()).collect();
                assert_eq!(urls, ["wss://relay.example", "ws://localhost:9"]);
            }
            _ => panic!("not a pairing"),
        }
        for (text, why) in [
            (
                format!("nostrconnect://{PK}?relay=wss://r.example"),
                "names no key",
            ),
            (
                "nostrconnect://?relay=wss://r.example&secret=hunter2".to_owned(),
                "unexpected parameter \"secret\"",
            ),
            (
                "nostrconnect://?relay=wss://r.example&perms=sign_event".to_owned(),
                "unexpected parameter",
            ),
            ("nostrconnect://".to_owned(), "names no relay"),
        ] {
            let err = usage(&text);
            assert!(err.contains(why), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{text}: {err}");
        }
    }

    #[test]
    fn keys_keep_their_meaning() {
        let npub = qube_agent::core::nip19::encode_npub(&[7; 32]);
        assert!(matches!(parse(&npub, false), Ok(SignerArg::Key(k)) if k == [7; 32]));
        assert!(matches!(
            parse(&hex::encode([7; 32]), false),
            Ok(SignerArg::Key(_))
        ));
        assert!(usage("nsec1abc").contains("--signer"));
    }

    #[test]
    fn redact_hides_every_secret() {
        assert_eq!(
            redact("bunker://k?relay=wss://r&secret=abc&x=1&SECRET=def#f"),
            "\"bunker://k?relay=wss://r&secret=<redacted>&x=1&SECRET=<redacted>#f\""
        );
        assert_eq!(
            redact("bunker://k?secret="),
            "\"bunker://k?secret=<redacted>\""
        );
        assert_eq!(redact("npub1x"), "\"npub1x\"");
        // Not a parameter named secret.
        assert_eq!(redact("a?mysecret=1"), "\"a?mysecret=1\"");
    }

    #[test]
    fn client_uri_is_nip46_shaped() {
        let relays = vec![RelayTarget::from(
            &RelayUrl::parse("wss://relay.example").unwrap(),
        )];
        let uri = client_uri(&[1; 32], &relays, "0123abcd");
        assert_eq!(
            uri.as_str(),
            format!(
                "nostrconnect://{}?relay=wss%3A%2F%2Frelay.example&secret=0123abcd&perms=sign_event%3A33321&name=govctl&metadata=%7B%22name%22%3A%22govctl%22%7D",
                hex::encode([1; 32])
            )
        );
    }
}
