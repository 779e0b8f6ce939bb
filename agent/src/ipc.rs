//! The worker/monitor channel (DESIGN.md section 5): length-prefixed frames
//! of a small closed set of messages, in each direction.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON
//! (one [`WorkerMessage`] or [`MonitorMessage`]). Lengths above
//! [`MAX_FRAME_BYTES`] are refused before anything is read or allocated, and
//! unknown message types or fields are errors: the monitor treats every frame
//! from the worker as hostile and ends the worker on the first bad one.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame payload, in bytes: an event (64 KiB) plus JSON quoting.
pub const MAX_FRAME_BYTES: usize = 192 * 1024;

/// Longest NIP-42 challenge the monitor will sign, in bytes.
pub const MAX_CHALLENGE_BYTES: usize = 256;

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
        /// The event id, 64 lowercase hex chars.
        event_id: String,
        /// Whether the relay stored it.
        accepted: bool,
        /// The relay's reason.
        message: String,
    },
    /// What the worker's sandbox enforces; sent once, right after start.
    Sandbox {
        /// `full`, `partial`, `none` or `in-process`.
        enforcement: String,
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
    /// A relay connected or disconnected.
    RelayStatus {
        /// Index of the relay.
        relay: usize,
        /// Whether it is connected now.
        connected: bool,
        /// Why, in words (bounded).
        detail: String,
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
    /// Send this signed kind 22242 event to one relay.
    Auth {
        /// Index of the relay.
        relay: usize,
        /// The event as NIP-01 JSON.
        event: String,
    },
}

/// What the worker is told at start: no secrets, no paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartParams {
    /// Relays, in index order.
    pub relays: Vec<RelayParams>,
    /// Voters' pubkeys, 64 lowercase hex chars each.
    pub voters: Vec<String>,
    /// Network id directives must carry.
    pub network: String,
    /// Expected `d` tag.
    pub d_tag: String,
    /// Allowed future skew of `created_at`, seconds.
    pub max_future_skew_secs: u64,
}

/// One relay as the worker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayParams {
    /// The URL as configured.
    pub url: String,
    /// Host to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `wss://`.
    pub tls: bool,
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
    serde_json::from_slice(&payload).map_err(|e| IpcError::Malformed(e.to_string()))
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
