//! Drafts: unsigned directives to be signed on another machine, and the
//! small-file helpers the commands share.
//!
//! A draft is a JSON object with exactly `id`, `pubkey` (the intended
//! signer), `created_at`, `kind`, `tags` and `content`: a NIP-01 event
//! without `sig`, whose `id` is already the NIP-01 id it will have once that
//! key signs it.

use std::path::Path;

use qube_agent::core::directive::DIRECTIVE_KIND;
use qube_agent::core::event::compute_id;
use qube_agent::UnsignedEvent;
use serde::Deserialize;

use crate::error::{CliError, Result};

/// Largest draft file read, in bytes.
const MAX_DRAFT_BYTES: u64 = 64 * 1024;

/// A draft: an unsigned event with its intended signer (see module docs).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    /// NIP-01 id the event has once `pubkey` signs it (64 hex).
    pub id: String,
    /// Intended signer (64 hex).
    pub pubkey: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Always 33321.
    pub kind: u16,
    /// Tags.
    pub tags: Vec<Vec<String>>,
    /// Content.
    pub content: String,
}

impl Draft {
    /// A draft of `unsigned` for `pubkey`.
    pub fn new(unsigned: &UnsignedEvent, pubkey: &[u8; 32]) -> Draft {
        let id = compute_id(
            pubkey,
            unsigned.created_at,
            unsigned.kind,
            &unsigned.tags,
            &unsigned.content,
        );
        Draft {
            id: hex::encode(id),
            pubkey: hex::encode(pubkey),
            created_at: unsigned.created_at,
            kind: unsigned.kind,
            tags: unsigned.tags.clone(),
            content: unsigned.content.clone(),
        }
    }

    /// Reads and checks a draft file: shape, kind, and that `id` matches.
    ///
    /// # Errors
    /// Unreadable, malformed, not a directive, or `id` does not match.
    pub fn load(path: &Path) -> Result<(Draft, [u8; 32], UnsignedEvent)> {
        let text = read_small(path, MAX_DRAFT_BYTES, "draft")?;
        let draft: Draft = serde_json::from_str(&text).map_err(|e| {
            CliError::failure(format!("{} is not a govctl draft: {e}", path.display()))
                .hint("a draft is made by `govctl propose ... --unsigned --signer NPUB --out FILE`")
        })?;
        if draft.kind != DIRECTIVE_KIND {
            return Err(CliError::failure(format!(
                "{} is a draft of kind {}, not a directive ({DIRECTIVE_KIND}); govctl signs only directives",
                path.display(),
                draft.kind
            )));
        }
        let pubkey = parse_hex32(&draft.pubkey)
            .ok_or_else(|| CliError::failure("the draft's pubkey is not 64 hex characters"))?;
        let unsigned = UnsignedEvent {
            created_at: draft.created_at,
            kind: draft.kind,
            tags: draft.tags.clone(),
            content: draft.content.clone(),
        };
        if Draft::new(&unsigned, &pubkey).id != draft.id {
            return Err(CliError::failure(format!(
                "the draft's id does not match its content: {} was changed after it was made",
                path.display()
            ))
            .hint("make the draft again; never edit one by hand"));
        }
        Ok((draft, pubkey, unsigned))
    }

    /// JSON for people to read: one field per line, one tag per line, and a
    /// final newline.
    pub fn to_json(&self) -> Result<String> {
        let tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| format!("    {}", compact(t)))
            .collect();
        Ok(format!(
            "{{\n  \"id\": {},\n  \"pubkey\": {},\n  \"created_at\": {},\n  \"kind\": {},\n  \"tags\": [\n{}\n  ],\n  \"content\": {}\n}}\n",
            compact(&self.id),
            compact(&self.pubkey),
            self.created_at,
            self.kind,
            tags.join(",\n"),
            compact(&self.content),
        ))
    }
}

/// Parses 64 hex characters.
pub fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex::decode_to_slice(text, &mut out).ok())
        .flatten()
        .map(|()| out)
}

/// Reads a small text file, at most `max` bytes.
///
/// # Errors
/// Unreadable, too large, or not UTF-8.
pub fn read_small(path: &Path, max: u64, what: &str) -> Result<String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| CliError::io(&format!("read {what}"), path, &e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::io(&format!("read {what}"), path, &e))?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > max) {
        return Err(CliError::failure(format!(
            "{what} {} is larger than {max} bytes",
            path.display()
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CliError::failure(format!("{what} {} is not UTF-8", path.display())))
}

/// Writes a new file (never overwriting one) and syncs it.
///
/// # Errors
/// The file exists, or writing fails.
pub fn write_new_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::failure(format!(
                    "{} already exists; refusing to overwrite it",
                    path.display()
                ))
                .hint("choose another --out FILE")
            } else {
                CliError::io("create", path, &e)
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::io("write", path, &e))
}

/// Compact JSON of a string or list of strings (which always serialize;
/// "null" keeps this total without a panic).
fn compact<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}
