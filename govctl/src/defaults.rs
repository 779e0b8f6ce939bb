//! The defaults and limits that `--help` shows, kept apart so that
//! `build.rs` can compile `cli.rs` (std and clap only, nothing else of the
//! crate) for the man pages and completions. [`crate::keystore`],
//! [`crate::relays`] and `govctl status` use them from here.

/// Highest NIP-49 scrypt cost accepted, for decryption and for `keygen`:
/// 2^20 iterations need 1 GiB of memory and about a second or two. NIP-49
/// allows more; such a key must be re-encrypted elsewhere first.
pub const MAX_LOG_N: u8 = 20;

/// The scrypt cost `keygen` and `key import` use unless told otherwise
/// (64 MiB, NIP-49's suggested minimum).
pub const DEFAULT_LOG_N: u8 = 16;

/// Default time to wait for relays, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// A heartbeat older than this is marked stale by `govctl status`, in
/// seconds (twice the agent's default heartbeat interval).
pub const DEFAULT_STALE_SECS: u64 = 7200;

/// Default time to wait for a NIP-46 remote signer, in seconds: for its
/// relay, for pairing, and for each answer (a person may have to approve
/// the request on a phone).
pub const DEFAULT_SIGNER_TIMEOUT_SECS: u64 = 120;
