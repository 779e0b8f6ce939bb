//! Relay URLs from the command line and the relay client settings govctl
//! uses: the agent's own client ([`qube_agent::relay`]) with short timeouts,
//! since a person is waiting.

use std::time::Duration;

use qube_agent::core::relay_url::RelayUrl;
use qube_agent::relay::{RelayOptions, RelayTarget};

use crate::error::{CliError, Result};

/// Parses `--relay` URLs into targets: `wss://`, or `ws://` to a loopback
/// host unless `allow_insecure_ws` (the agent's rule); duplicates dropped.
///
/// # Errors
/// A URL that does not parse or is not allowed; no URL at all.
pub fn targets(urls: &[String], allow_insecure_ws: bool) -> Result<Vec<RelayTarget>> {
    let mut out: Vec<RelayTarget> = Vec::new();
    for text in urls {
        let url = RelayUrl::parse(text).map_err(|e| {
            CliError::usage(format!("--relay {text:?} is not a relay URL: {e}"))
                .hint("write relays as wss://host[:port][/path]")
        })?;
        if !url.is_tls() && !url.is_loopback() && !allow_insecure_ws {
            return Err(CliError::usage(format!(
                "--relay {}: ws:// (unencrypted) is only allowed to a loopback host",
                url.as_str()
            ))
            .hint("use wss://, or add --allow-insecure-ws for a trusted private network"));
        }
        if out.iter().all(|t| t.url != url.as_str()) {
            out.push(RelayTarget::from(&url));
        }
    }
    if out.is_empty() {
        return Err(CliError::usage("no relay given").hint("add --relay wss://relay.example"));
    }
    Ok(out)
}

/// Relay client settings for a command that waits at most `timeout`.
pub fn options(timeout: Duration) -> RelayOptions {
    RelayOptions {
        connect_timeout: timeout.min(Duration::from_secs(10)),
        backoff_initial: Duration::from_millis(250),
        backoff_max: Duration::from_secs(2),
        ..RelayOptions::default()
    }
}

/// A single-threaded tokio runtime for one command.
///
/// # Errors
/// The runtime cannot be built.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))
}
