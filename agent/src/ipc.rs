//! The worker/monitor channel (`docs/PROTOCOL.md` section 9, SECURITY.md): length-prefixed frames
//! of a small closed set of messages, in each direction.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON
//! (one [`WorkerMessage`] or [`MonitorMessage`]). Lengths above
//! [`MAX_FRAME_BYTES`] are refused before anything is read or allocated, and
//! unknown message types or fields are errors: the monitor treats every frame
//! from the worker as hostile and ends the worker on the first bad one.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use crate::relay::RelayTarget;

/// Largest frame payload, in bytes: an event (64 KiB) plus JSON quoting.
pub const MAX_FRAME_BYTES: usize = 192 * 1024;

pub use crate::core::message::MAX_CHALLENGE_BYTES;

/// Worker to monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkerMessage {
    /// A directive the worker parsed, verified and filtered; the monitor
    /// verifies it again.
    Directive {
        /// Index of the relay it came from.
        relay: usize,
        /// The event as NIP-01 JSON.
        event: String,
    },
    /// A relay sent a NIP-42 challenge; the monitor may answer with
    /// [`MonitorMessage::Auth`].
    AuthRequest {
        /// Index of the relay.
        relay: usize,
        /// The challenge, at most [`MAX_CHALLENGE_BYTES`].
        challenge: String,
    },
    /// A relay answered a published event (NIP-01 `OK`).
    PublishResult {
        /// Index of the relay.
        relay: usize,
        /// The event id, 32 bytes (64 lowercase hex chars on the wire).
        #[serde(with = "hex32")]
        event_id: [u8; 32],
        /// Whether the relay stored it.
        accepted: bool,
        /// The relay's reason.
        message: String,
    },
    /// What the worker's sandbox enforces; sent once, right after start.
    Sandbox {
        /// How much of the sandbox the kernel enforces.
        enforcement: Enforcement,
        /// What exactly is enforced, in words.
        detail: String,
    },
    /// Every relay has sent its stored events (`EOSE`) or failed at least
    /// once, or the sync deadline passed: decisions may start. Sent once per
    /// worker.
    Synced {
        /// Relays that sent `EOSE` in time.
        relays_synced: usize,
    },
    /// What one relay sent so far (counters since the worker started); sent
    /// every [`RELAY_STATS_INTERVAL`].
    RelayStats {
        /// Index of the relay.
        relay: usize,
        /// The counters.
        counters: RelayCounters,
    },
    /// A relay connected or disconnected.
    RelayStatus {
        /// Index of the relay.
        relay: usize,
        /// Whether it is connected now.
        connected: bool,
        /// Why, in words (bounded).
        detail: String,
        /// When disconnected: milliseconds until the next attempt.
        #[serde(default)]
        retry_in_ms: Option<u64>,
    },
    /// The worker is about to connect to a relay whose host is a name: the
    /// monitor resolves it and answers with [`MonitorMessage::Resolved`]
    /// (the worker has no resolver files and no UDP).
    Resolve {
        /// Index of the relay.
        relay: usize,
    },
}

/// Monitor to worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MonitorMessage {
    /// Everything the worker needs; sent once, first.
    Start(StartParams),
    /// Publish this signed event (an acknowledgement) to every relay.
    Publish {
        /// The event as NIP-01 JSON.
        event: String,
    },
    /// Publish this signed event (a heartbeat) to these relays only.
    PublishTo {
        /// Indexes of the relays.
        relays: Vec<usize>,
        /// The event as NIP-01 JSON.
        event: String,
    },
    /// Send this signed kind 22242 event to one relay.
    Auth {
        /// Index of the relay.
        relay: usize,
        /// The event as NIP-01 JSON.
        event: String,
    },
    /// The answer to [`WorkerMessage::Resolve`]: the addresses of the
    /// relay's host (at most [`crate::relay::MAX_ADDRESSES`]; the port is
    /// the relay's own), or why there are none.
    Resolved {
        /// Index of the relay.
        relay: usize,
        /// IPv4 and IPv6 addresses, as text on the wire (`"192.0.2.1"`,
        /// `"2001:db8::1"`); empty when `error` is set.
        addresses: Vec<std::net::IpAddr>,
        /// Why the name did not resolve, in words.
        #[serde(default)]
        error: Option<String>,
    },
}

/// What the worker is told at start: no secrets, no paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartParams {
    /// Relays, in index order (the index is how later messages name them).
    pub relays: Vec<RelayTarget>,
    /// Voters' pubkeys, 32 bytes each (64 lowercase hex chars on the wire).
    #[serde(with = "hex32_vec")]
    pub voters: Vec<[u8; 32]>,
    /// Network id directives must carry.
    pub network: String,
    /// Expected `d` tag.
    pub d_tag: String,
    /// Allowed future skew of `created_at`, seconds.
    pub max_future_skew_secs: u64,
    /// Additional TLS trust anchors for `wss://` relays (`[tls]
    /// extra_roots`), DER certificates (hex on the wire); at most 64 KiB in
    /// all, so the frame stays under [`MAX_FRAME_BYTES`].
    #[serde(default, with = "hex_bytes_vec")]
    pub extra_roots: Vec<Vec<u8>>,
}

/// How often the worker reports [`WorkerMessage::RelayStats`].
pub const RELAY_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// What one relay sent, counted by the relay client
/// ([`crate::relay::RelayStats`]); all counts since the worker started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayCounters {
    /// Text frames received.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Frames that were not a relay message we accept.
    pub malformed: u64,
    /// Events outside the subscription's filter (no signature check).
    pub outside_filter: u64,
    /// Events already delivered by a relay (no signature check).
    pub duplicate: u64,
    /// Signature checks done.
    pub verified: u64,
    /// Events that did not verify (the relay was disconnected each time).
    pub invalid: u64,
    /// Events delivered to the worker's filter.
    pub delivered: u64,
    /// Notices (`NOTICE`, `CLOSED`, malformed frames) over the per-relay
    /// budget ([`crate::relay::NOTICE_BUDGET`]): counted, not reported.
    #[serde(default)]
    pub notices_suppressed: u64,
}

/// How much of the worker's sandbox the kernel enforces (`full`, `partial`
/// or `none` on the wire and in `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforcement {
    /// Every requested restriction.
    Full,
    /// Some (older kernel): the detail says which.
    Partial,
    /// None: the kernel has no Landlock, or the worker is not sandboxed.
    None,
}

impl Enforcement {
    /// `full`, `partial` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Full => "full",
            Enforcement::Partial => "partial",
            Enforcement::None => "none",
        }
    }
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serde for a 32-byte value as 64 lowercase hex chars; any other text is a
/// malformed frame.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    pub(super) fn parse(text: &str) -> Result<[u8; 32], String> {
        let mut out = [0u8; 32];
        let lower = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower || hex::decode_to_slice(text, &mut out).is_err() {
            return Err(format!(
                "expected 64 lowercase hex chars, got {} chars",
                text.chars().count()
            ));
        }
        Ok(out)
    }
}

/// [`hex32`] for a list.
mod hex32_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(keys: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(keys.len()))?;
        for key in keys {
            seq.serialize_element(&hex::encode(key))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let texts = <Vec<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        texts
            .iter()
            .map(|t| super::hex32::parse(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Serde for a list of byte strings as hex strings.
mod hex_bytes_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(items: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&hex::encode(item))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = <Vec<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        texts
            .iter()
            .map(|t| hex::decode(t.as_ref()).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Parses one frame's payload (without its length prefix) as `M`.
///
/// # Errors
/// [`IpcError::Malformed`] for anything that is not exactly one `M`.
pub fn decode<M: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<M, IpcError> {
    serde_json::from_slice(payload).map_err(|e| IpcError::Malformed(e.to_string()))
}

/// Why a frame could not be read or written.
#[derive(Debug)]
#[non_exhaustive]
pub enum IpcError {
    /// The peer closed the channel cleanly between frames.
    Closed,
    /// I/O failed (including a peer that closed mid-frame).
    Io(std::io::Error),
    /// The announced length exceeds [`MAX_FRAME_BYTES`].
    Oversized {
        /// Announced length, bytes.
        len: usize,
    },
    /// The payload is not one of the expected messages.
    Malformed(String),
}

impl std::fmt::Display for IpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpcError::Closed => f.write_str("channel closed"),
            IpcError::Io(e) => write!(f, "channel I/O: {e}"),
            IpcError::Oversized { len } => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte cap"
                )
            }
            IpcError::Malformed(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for IpcError {}

/// Writes one message as a frame and flushes.
///
/// # Errors
/// [`IpcError::Oversized`] if the message would exceed the cap (nothing is
/// written); [`IpcError::Io`].
pub async fn write_message<W, M>(writer: &mut W, message: &M) -> Result<(), IpcError>
where
    W: AsyncWrite + Unpin,
    M: Serialize,
{
    let payload = serde_json::to_vec(message).map_err(|e| IpcError::Malformed(e.to_string()))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME_BYTES)
        .ok_or(IpcError::Oversized { len: payload.len() })?;
    writer
        .write_all(&len.to_be_bytes())
        .await
        .map_err(IpcError::Io)?;
    writer.write_all(&payload).await.map_err(IpcError::Io)?;
    writer.flush().await.map_err(IpcError::Io)
}

/// Reads one frame and parses it as `M`.
///
/// # Errors
/// [`IpcError::Closed`] at a clean end of stream; [`IpcError::Oversized`]
/// before reading the payload; [`IpcError::Malformed`] for anything that is
/// not exactly one `M`; [`IpcError::Io`].
pub async fn read_message<R, M>(reader: &mut R) -> Result<M, IpcError>
where
    R: AsyncRead + Unpin,
    M: for<'de> Deserialize<'de>,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(IpcError::Closed),
        Err(e) => return Err(IpcError::Io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(IpcError::Oversized { len });
    }
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(IpcError::Io)?;
    decode(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_both_directions() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let w = WorkerMessage::AuthRequest {
            relay: 2,
            challenge: "c".into(),
        };
        write_message(&mut a, &w).await.unwrap();
        assert_eq!(read_message::<_, WorkerMessage>(&mut b).await.unwrap(), w);
        let m = MonitorMessage::Publish { event: "{}".into() };
        write_message(&mut b, &m).await.unwrap();
        assert_eq!(read_message::<_, MonitorMessage>(&mut a).await.unwrap(), m);
        drop(a);
        assert!(matches!(
            read_message::<_, WorkerMessage>(&mut b).await,
            Err(IpcError::Closed)
        ));
    }

    #[tokio::test]
    async fn oversized_unknown_and_extra_fields_are_refused() {
        use tokio::io::AsyncWriteExt;
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        a.write_all(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(matches!(
            read_message::<_, WorkerMessage>(&mut b).await,
            Err(IpcError::Oversized { .. })
        ));
        for bad in [
            r#"{"type":"sign_anything","data":"x"}"#,
            r#"{"type":"auth_request","relay":0,"challenge":"c","extra":1}"#,
            r#"{"type":"directive","relay":0}"#,
            "not json",
        ] {
            let (mut a, mut b) = tokio::io::duplex(1 << 20);
            a.write_all(&(bad.len() as u32).to_be_bytes())
                .await
                .unwrap();
            a.write_all(bad.as_bytes()).await.unwrap();
            assert!(
                matches!(
                    read_message::<_, WorkerMessage>(&mut b).await,
                    Err(IpcError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
