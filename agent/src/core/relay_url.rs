//! Relay URLs (`wss://` and `ws://`), parsed by the [`url`] crate (WHATWG
//! URL Standard) and then held to this agent's rules.
//!
//! This module does no URL parsing of its own: [`url::Url::parse`] decides
//! the scheme, host, port, path and query, and [`RelayUrl`] only refuses
//! what a relay URL must not have and keeps the parts the relay client,
//! the config policy and the sandbox need. Whatever connects to a relay
//! must use [`RelayUrl::as_str`] or [`RelayUrl::url`], never the text as
//! written, so that every part of the agent agrees on where it connects.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use url::{Host, ParseError, Url};

/// The longest accepted relay URL, in bytes, both as written and in
/// canonical form.
pub const MAX_RELAY_URL_LEN: usize = 2048;

/// A relay URL: `wss://` or `ws://`, a host, an optional port, an optional
/// path and query.
///
/// Parsed by [`url::Url::parse`] (WHATWG URL Standard), then checked:
///
/// * the text is at most [`MAX_RELAY_URL_LEN`] bytes of printable ASCII
///   with no backslash. The WHATWG parser would otherwise silently strip
///   surrounding spaces and every tab or newline, read `\` as `/`, and
///   map Unicode hosts through IDNA (fullwidth `ｌｏｃａｌｈｏｓｔ` becomes
///   `localhost`), so an internationalized host must be written in its
///   `xn--` form. The `url` crate is built without Unicode tables
///   (`idna_adapter` 1.0, see the workspace `Cargo.toml`): an `xn--` label
///   is kept as written, not decoded, so a malformed one (`xn--a`) is not
///   refused here; the resolver fails on it, as on any name that does not
///   exist;
/// * the scheme is `wss` or `ws` (any case);
/// * there is a host, and no user name or password (`user:pw@`) and no
///   fragment (`#...`, even empty);
/// * the port, explicit or the scheme's default (443 for `wss`, 80 for
///   `ws`), is not 0;
/// * a query (`?...`) is **accepted** and kept, as before this module used
///   the `url` crate: some relays select a mode with one. It is sent to the
///   relay in the handshake and shown in logs and `check-config` output,
///   so it must not carry secrets (relays authenticate with NIP-42).
///
/// The host is whatever the WHATWG parser makes of it: domain names are
/// lowercased (`-`, `_` and empty labels are allowed; the resolver decides),
/// and a host whose last label is numeric is an IPv4 address in any of the
/// WHATWG forms, so `127.1`, `0x7f.0.0.1`, `0177.0.0.1`, `2130706433` and
/// `127.0.0.1.` all become `127.0.0.1`, while `evil.127.0.0.1` is refused
/// and `127.0.0.1.evil.example` is a domain name. Percent-escapes in the
/// host are decoded first (`%31%32%37.0.0.1` is `127.0.0.1`).
///
/// Two URLs are equal when their canonical forms ([`RelayUrl::as_str`]) are.
#[derive(Debug, Clone)]
pub struct RelayUrl {
    url: Url,
    canonical: String,
    host: Host<String>,
    port: u16,
}

/// Why a string is not a relay URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayUrlError {
    /// Longer than [`MAX_RELAY_URL_LEN`] bytes, as written or in canonical
    /// form (the `url` crate percent-encodes some characters).
    TooLong {
        /// Length found, in bytes.
        len: usize,
    },
    /// A byte that is not printable ASCII (space, control, non-ASCII), or a
    /// backslash.
    Character {
        /// Byte offset of the first bad byte.
        position: usize,
    },
    /// No `scheme:` at all (e.g. `relay.example`).
    NoScheme,
    /// A scheme other than `ws` or `wss` (e.g. `http`).
    Scheme {
        /// The scheme found, lowercased, at most 16 characters.
        found: String,
    },
    /// A user name or password (`user:pw@`) before the host.
    UserInfo,
    /// A fragment (`#...`).
    Fragment,
    /// No host (`wss://`, `wss://:443`).
    MissingHost,
    /// The host is not a valid domain name, IPv4 address or bracketed IPv6
    /// address (e.g. `evil.127.0.0.1`, `[::1`, `relay<.example`).
    Host,
    /// The port is not a number from 1 to 65535.
    Port,
    /// Any other reason the `url` crate refused the text.
    Malformed,
}

/// How the canonical form is advised in error messages.
const SHAPE: &str = "wss://host[:port][/path]";

impl fmt::Display for RelayUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayUrlError::TooLong { len } => write!(
                f,
                "{len} bytes long, more than the {MAX_RELAY_URL_LEN} allowed; use a shorter URL"
            ),
            RelayUrlError::Character { position } => write!(
                f,
                "space, control, non-ASCII or backslash character at byte {position}; \
                 write the URL in plain ASCII (an internationalized host in its xn-- form)"
            ),
            RelayUrlError::NoScheme => write!(f, "no scheme; write it as {SHAPE}"),
            RelayUrlError::Scheme { found } => write!(
                f,
                "scheme \"{}\" is not a websocket scheme; use wss://, or ws:// to a loopback host",
                found.escape_debug()
            ),
            RelayUrlError::UserInfo => f.write_str(
                "user name or password before the host (`user@`); remove it, \
                 relays take no credentials in the URL",
            ),
            RelayUrlError::Fragment => {
                f.write_str("fragment (`#...`); remove it, a websocket URL has none")
            }
            RelayUrlError::MissingHost => write!(f, "no host; write it as {SHAPE}"),
            RelayUrlError::Host => f.write_str(
                "host is not a valid domain name, IPv4 address or bracketed IPv6 address \
                 (e.g. ws://[::1]:7000); check the spelling",
            ),
            RelayUrlError::Port => f.write_str(
                "port is not a number from 1 to 65535; leave it out for the default \
                 (443 for wss, 80 for ws)",
            ),
            RelayUrlError::Malformed => write!(f, "not a valid URL; write it as {SHAPE}"),
        }
    }
}

impl std::error::Error for RelayUrlError {}

impl From<ParseError> for RelayUrlError {
    fn from(err: ParseError) -> Self {
        match err {
            ParseError::RelativeUrlWithoutBase => RelayUrlError::NoScheme,
            ParseError::EmptyHost => RelayUrlError::MissingHost,
            ParseError::InvalidPort => RelayUrlError::Port,
            ParseError::IdnaError
            | ParseError::InvalidIpv4Address
            | ParseError::InvalidIpv6Address
            | ParseError::InvalidDomainCharacter => RelayUrlError::Host,
            _ => RelayUrlError::Malformed,
        }
    }
}

impl RelayUrl {
    /// Parses a relay URL (see the type's documentation for what is
    /// accepted).
    ///
    /// Whether a `ws://` URL is acceptable depends on the policy; see
    /// [`RelayUrl::is_tls`] and [`RelayUrl::is_loopback`].
    ///
    /// # Errors
    /// A [`RelayUrlError`] naming the first problem found.
    pub fn parse(s: &str) -> Result<RelayUrl, RelayUrlError> {
        if s.len() > MAX_RELAY_URL_LEN {
            return Err(RelayUrlError::TooLong { len: s.len() });
        }
        if let Some(position) = s.bytes().position(|b| !b.is_ascii_graphic() || b == b'\\') {
            return Err(RelayUrlError::Character { position });
        }
        let url = Url::parse(s)?;
        if !matches!(url.scheme(), "wss" | "ws") {
            let found = url.scheme().chars().take(16).collect();
            return Err(RelayUrlError::Scheme { found });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RelayUrlError::UserInfo);
        }
        if url.fragment().is_some() {
            return Err(RelayUrlError::Fragment);
        }
        let host = match url.host() {
            Some(Host::Domain("")) | None => return Err(RelayUrlError::MissingHost),
            Some(host) => host.to_owned(),
        };
        let port = match url.port_or_known_default() {
            Some(0) | None => return Err(RelayUrlError::Port),
            Some(port) => port,
        };
        let canonical = canonical_form(&url, &host);
        if canonical.len() > MAX_RELAY_URL_LEN {
            return Err(RelayUrlError::TooLong {
                len: canonical.len(),
            });
        }
        Ok(RelayUrl {
            url,
            canonical,
            host,
            port,
        })
    }

    /// The canonical form: the `url` crate's serialization (scheme and host
    /// lowercased, IPv4 in dotted-quad form, IPv6 compressed in brackets,
    /// the scheme's default port dropped, `.` and `..` path segments
    /// resolved, characters outside the URL alphabet percent-encoded),
    /// except that the lone `/` path WHATWG gives every `ws`/`wss` URL is
    /// left out: `wss://relay.example`, not `wss://relay.example/` (a
    /// websocket client requests `/` for an empty path either way).
    ///
    /// Parsing the canonical form gives back an equal [`RelayUrl`].
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The parsed URL, as the `url` crate serializes it (path `/` when
    /// none was written).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// `true` for `wss://` (TLS), `false` for `ws://`.
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "wss"
    }

    /// The host: a lowercased domain name, or an IP address (IPv6 without
    /// brackets), as the relay client resolves or connects to it.
    pub fn host(&self) -> String {
        match &self.host {
            Host::Domain(name) => name.clone(),
            Host::Ipv4(addr) => addr.to_string(),
            Host::Ipv6(addr) => addr.to_string(),
        }
    }

    /// The TCP port the relay client connects to: the one written, or the
    /// scheme's default (443 for `wss`, 80 for `ws`). Never 0.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is loopback: the domain name `localhost` exactly
    /// (any case, no trailing dot), an IPv4 address in 127.0.0.0/8 (in any
    /// WHATWG form, e.g. `127.1`), or `::1`. An IPv4-mapped address such as
    /// `[::ffff:127.0.0.1]` is not loopback, nor is any other domain name
    /// (`localhost.evil.example`, `127.0.0.1.evil.example`).
    pub fn is_loopback(&self) -> bool {
        match &self.host {
            Host::Domain(name) => name == "localhost",
            Host::Ipv4(addr) => addr.is_loopback(),
            Host::Ipv6(addr) => addr.is_loopback(),
        }
    }
}

/// The `url` crate's serialization without user info or fragment (both
/// refused) and without a lone `/` path: `scheme://host[:port][path][?query]`.
fn canonical_form(url: &Url, host: &Host<String>) -> String {
    // `Host`'s Display is the URL serialization (IPv6 in brackets).
    let mut out = format!("{}://{host}", url.scheme());
    // `Url::port` is `None` for the scheme's default port.
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    if url.path() != "/" {
        out.push_str(url.path());
    }
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl PartialEq for RelayUrl {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for RelayUrl {}

impl Hash for RelayUrl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl FromStr for RelayUrl {
    type Err = RelayUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RelayUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    fn relay(s: &str) -> Result<RelayUrl, RelayUrlError> {
        RelayUrl::parse(s)
    }

    /// The canonical form re-parses to an equal URL with the same parts,
    /// and differs from the `url` crate's serialization at most by the
    /// lone `/` path.
    fn assert_stable(r: &RelayUrl) {
        let again = relay(r.as_str()).unwrap();
        assert_eq!(again, *r);
        assert_eq!(again.url(), r.url(), "{r}");
        assert_eq!(
            (
                again.is_tls(),
                again.host(),
                again.port(),
                again.is_loopback()
            ),
            (r.is_tls(), r.host(), r.port(), r.is_loopback())
        );
        if r.url().path() == "/" {
            let with_slash = match r.url().query() {
                Some(q) => r.as_str().replacen(&format!("?{q}"), &format!("/?{q}"), 1),
                None => format!("{}/", r.as_str()),
            };
            assert_eq!(r.url().as_str(), with_slash);
        } else {
            assert_eq!(r.url().as_str(), r.as_str());
        }
    }

    #[test]
    fn canonical_forms() {
        let cases = [
            ("wss://relay.example", "wss://relay.example"),
            ("WSS://Relay.Example/", "wss://relay.example"),
            ("wss://relay.example:443", "wss://relay.example"),
            ("wss://relay.example:00443", "wss://relay.example"),
            ("wss://relay.example:", "wss://relay.example"),
            ("ws://relay.example:80/", "ws://relay.example"),
            ("ws://relay.example:443", "ws://relay.example:443"),
            ("wss://relay.example:80", "wss://relay.example:80"),
            (
                "wss://relay.example:444/x?y=1",
                "wss://relay.example:444/x?y=1",
            ),
            ("wss://relay.example/nostr/", "wss://relay.example/nostr/"),
            ("wss://relay.example/a/./b/../c", "wss://relay.example/a/c"),
            ("wss://relay.example/%7e<>", "wss://relay.example/%7e%3C%3E"),
            ("wss://relay.example?x", "wss://relay.example?x"),
            ("wss://relay.example/?x", "wss://relay.example?x"),
            ("wss://relay.example?", "wss://relay.example?"),
            ("ws://127.0.0.1:7777", "ws://127.0.0.1:7777"),
            ("ws://[0:0:0:0:0:0:0:1]:80/", "ws://[::1]"),
            ("ws://[::FFFF:127.0.0.1]", "ws://[::ffff:7f00:1]"),
            ("wss://xn--rel-bma.example", "wss://xn--rel-bma.example"),
            // No Unicode tables (idna_adapter 1.0): punycode labels are
            // kept as written, undecoded, even a malformed one.
            ("wss://xn--a.example", "wss://xn--a.example"),
            ("wss://XN--REL-BMA.example", "wss://xn--rel-bma.example"),
            // WHATWG leniencies the url crate applies.
            ("wss:relay.example", "wss://relay.example"),
            ("wss:////relay.example", "wss://relay.example"),
            ("wss://@relay.example", "wss://relay.example"),
            ("wss://-a_b..example", "wss://-a_b..example"),
        ];
        for (input, canonical) in cases {
            let r = relay(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.as_str(), canonical, "{input}");
            assert_eq!(r.to_string(), canonical, "{input}");
            assert_eq!(input.parse::<RelayUrl>().as_ref(), Ok(&r));
            assert_stable(&r);
        }
    }

    #[test]
    fn equality_is_on_the_canonical_form() {
        assert_eq!(
            relay("WSS://RELAY.example:443/").unwrap(),
            relay("wss://relay.example").unwrap()
        );
        assert_eq!(
            relay("ws://127.1:80").unwrap(),
            relay("ws://127.0.0.1").unwrap()
        );
        assert_ne!(
            relay("wss://relay.example").unwrap(),
            relay("ws://relay.example").unwrap()
        );
        assert_ne!(
            relay("wss://relay.example/a").unwrap(),
            relay("wss://relay.example/A").unwrap()
        );
        assert_ne!(
            relay("wss://relay.example").unwrap(),
            relay("wss://relay.example?").unwrap()
        );
    }

    #[test]
    fn ports_and_tls() {
        let cases = [
            ("wss://relay.example", true, 443),
            ("ws://relay.example", false, 80),
            ("wss://relay.example:7777", true, 7777),
            ("ws://localhost:1", false, 1),
            ("ws://[::1]:65535", false, 65535),
            ("wss://relay.example:80", true, 80),
        ];
        for (input, tls, port) in cases {
            let r = relay(input).unwrap();
            assert_eq!((r.is_tls(), r.port()), (tls, port), "{input}");
        }
    }

    #[test]
    fn hosts() {
        let cases = [
            ("wss://Relay.Example:7/x", "relay.example"),
            ("ws://127.1", "127.0.0.1"),
            ("ws://[::1]:7000", "::1"),
            ("ws://[0:0::1]", "::1"),
        ];
        for (input, host) in cases {
            assert_eq!(relay(input).unwrap().host(), host, "{input}");
        }
    }

    #[test]
    fn loopback() {
        for url in [
            "ws://localhost",
            "ws://LOCALHOST:7000",
            "ws://localhost/r",
            "ws://127.0.0.1",
            "ws://127.255.1.2:1",
            "ws://[::1]:7000",
            "ws://[0:0:0:0:0:0:0:1]",
            // WHATWG numeric hosts are normalized to dotted quads first.
            "ws://127.1",
            "ws://0x7f.0.0.1",
            "ws://0177.0.0.1",
            "ws://2130706433",
            "ws://0x7f000001",
            "ws://127.0.0.1.",
            "ws://%31%32%37.0.0.1",
        ] {
            let r = relay(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(r.is_loopback(), "{url}");
        }
        for (url, canonical) in [
            ("ws://127.1", "ws://127.0.0.1"),
            ("ws://0x7f.0.0.1:7777", "ws://127.0.0.1:7777"),
            ("ws://2130706433", "ws://127.0.0.1"),
            ("ws://127.0.0.1.", "ws://127.0.0.1"),
        ] {
            assert_eq!(relay(url).unwrap().as_str(), canonical, "{url}");
        }
        for url in [
            "ws://localhost.evil.example",
            "ws://127.0.0.1.evil.example",
            "ws://127.1.evil.example",
            "ws://evil.localhost",
            "ws://localhost.",
            "ws://localhost1",
            "ws://128.0.0.1",
            "ws://126.255.255.255",
            "ws://0.0.0.0",
            "ws://[::]",
            "ws://[::2]",
            "ws://[::ffff:127.0.0.1]",
            "ws://10.0.0.1",
            "ws://relay.example",
        ] {
            let r = relay(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(!r.is_loopback(), "{url}");
        }
        // The suffix trick is a domain name, resolved by DNS.
        let evil = relay("ws://127.0.0.1.evil.example").unwrap();
        assert_eq!(evil.host(), "127.0.0.1.evil.example");
        assert!(matches!(evil.url().host(), Some(Host::Domain(_))));
    }

    #[test]
    fn refusals() {
        use RelayUrlError as E;
        let scheme = |s: &str| E::Scheme { found: s.into() };
        let cases: &[(&str, RelayUrlError)] = &[
            ("http://relay.example", scheme("http")),
            ("https://relay.example", scheme("https")),
            ("HTTP://relay.example", scheme("http")),
            ("wssx://relay.example", scheme("wssx")),
            ("ftp://relay.example", scheme("ftp")),
            ("file:///etc/passwd", scheme("file")),
            ("mailto:relay@relay.example", scheme("mailto")),
            ("abcdefghijklmnopqrstuvwxyz://x", scheme("abcdefghijklmnop")),
            ("", E::NoScheme),
            ("relay.example", E::NoScheme),
            ("://relay.example", E::NoScheme),
            ("/relay", E::NoScheme),
            ("wss://", E::MissingHost),
            ("wss://:443", E::MissingHost),
            ("ws:///", E::MissingHost),
            ("wss://user@relay.example", E::UserInfo),
            ("wss://user:pw@relay.example", E::UserInfo),
            ("wss://:pw@relay.example", E::UserInfo),
            ("ws://127.0.0.1@evil.example", E::UserInfo),
            ("ws://localhost:7777@evil.example", E::UserInfo),
            ("wss://relay.example#frag", E::Fragment),
            ("wss://relay.example#", E::Fragment),
            ("wss://relay.example/x?y#z", E::Fragment),
            ("wss://relay.example:0", E::Port),
            ("wss://relay.example:65536", E::Port),
            ("wss://relay.example:99999", E::Port),
            ("wss://relay.example:+443", E::Port),
            ("wss://relay.example:44x", E::Port),
            ("ws://a:1:2", E::Port),
            ("ws://evil.127.0.0.1", E::Host),
            ("ws://256.0.0.1", E::Host),
            ("ws://1.2.3.4.5", E::Host),
            ("ws://[::1", E::Host),
            ("ws://[::1]x", E::Host),
            ("ws://[fe80::1%25eth0]", E::Host),
            ("wss://re%00lay.example", E::Host),
            ("wss://relay<.example", E::Host),
            ("wss://relay.example\\@x", E::Character { position: 19 }),
            ("wss://relay example", E::Character { position: 11 }),
            (" wss://relay.example", E::Character { position: 0 }),
            ("wss://relay.example ", E::Character { position: 19 }),
            ("wss://rel\tay.example", E::Character { position: 9 }),
            ("wss://relay.example\n", E::Character { position: 19 }),
            ("wss://relé.example", E::Character { position: 9 }),
            ("ws://ｌｏｃａｌｈｏｓｔ", E::Character { position: 5 }),
            ("wss://relay.example/\u{7f}", E::Character { position: 20 }),
        ];
        for (input, expected) in cases {
            assert_eq!(relay(input).as_ref(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn length_bounded() {
        let fits = format!("wss://relay.example/{}", "a".repeat(MAX_RELAY_URL_LEN - 20));
        assert_eq!(fits.len(), MAX_RELAY_URL_LEN);
        assert_eq!(relay(&fits).unwrap().as_str(), fits);

        let long = format!("wss://{}.example", "a".repeat(MAX_RELAY_URL_LEN));
        assert_eq!(
            relay(&long),
            Err(RelayUrlError::TooLong { len: long.len() })
        );
        // Short enough as written, too long once percent-encoded.
        let expands = format!("wss://relay.example/{}", "<".repeat(1000));
        assert_eq!(
            relay(&expands),
            Err(RelayUrlError::TooLong {
                len: "wss://relay.example/".len() + 3000
            })
        );
        // A huge input is refused before parsing.
        let huge = "w".repeat(10 * 1024 * 1024);
        assert_eq!(
            relay(&huge),
            Err(RelayUrlError::TooLong { len: huge.len() })
        );
    }

    #[test]
    fn errors_display_lower_case_with_advice() {
        let errors = [
            RelayUrlError::TooLong { len: 3000 },
            RelayUrlError::Character { position: 3 },
            RelayUrlError::NoScheme,
            RelayUrlError::Scheme {
                found: "http".into(),
            },
            RelayUrlError::UserInfo,
            RelayUrlError::Fragment,
            RelayUrlError::MissingHost,
            RelayUrlError::Host,
            RelayUrlError::Port,
            RelayUrlError::Malformed,
        ];
        for err in errors {
            let shown = err.to_string();
            let first = shown.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{shown}");
            assert!(shown.contains("; "), "no advice: {shown}");
            assert!(!shown.contains('\n'), "{shown}");
        }
        assert_eq!(
            RelayUrlError::Scheme {
                found: "h\"t".into()
            }
            .to_string(),
            "scheme \"h\\\"t\" is not a websocket scheme; use wss://, or ws:// to a loopback host"
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Never panics; whatever is accepted is stable under
            /// re-parsing and bounded.
            #[test]
            fn parse_total_and_stable(
                s in "(wss?|WSS?|http|)(:|://|:///)?([a-zA-Z0-9.@:%\\[\\]_~-]|/|\\?|#){0,40}"
            ) {
                if let Ok(r) = relay(&s) {
                    assert_stable(&r);
                    prop_assert!(r.as_str().len() <= MAX_RELAY_URL_LEN);
                    prop_assert!(r.port() != 0);
                    prop_assert!(r.url().username().is_empty());
                    prop_assert!(r.url().fragment().is_none());
                }
            }

            #[test]
            fn parse_total_any_text(s in "\\PC{0,64}") {
                let _ = relay(&s);
            }
        }
    }
}
