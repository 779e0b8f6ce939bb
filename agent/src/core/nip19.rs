//! NIP-19 public keys: `npub` bech32 strings and their hex form.
//!
//! An `npub` is the BIP-173 bech32 encoding (not BIP-350 bech32m) of a
//! 32-byte BIP-340 x-only public key under the human-readable part `npub`:
//! `npub1` followed by 52 data characters and a 6-character checksum, 63
//! characters in all. Decoding here is strict: the prefix must be exactly
//! `npub` (an `nsec`, `nprofile` or anything else is refused, an `nsec` with
//! a warning that it is a secret), the checksum must be bech32, the payload
//! exactly 32 bytes, and the string canonical (zero padding bits). As BIP-173
//! requires, an all-uppercase string is accepted and a mixed-case one is not.
//!
//! Only the encoding is checked here; whether the 32 bytes are a point on
//! secp256k1 is the caller's question (see [`crate::core::keys`]).

use std::fmt;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Bech32m, ByteIterExt, Fe32IterExt, Hrp};

/// The NIP-19 human-readable part of a public key.
const NPUB_HRP: Hrp = Hrp::parse_unchecked("npub");

/// BIP-173's limit on the length of a bech32 string, in characters. An npub
/// is 63; anything past 90 is refused before the decoder sees it.
pub const MAX_BECH32_LEN: usize = 90;

/// Why a string is not an `npub` (or, for [`parse_pubkey`], not a hex public
/// key either).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nip19Error {
    /// The string is longer than [`MAX_BECH32_LEN`] characters (BIP-173).
    TooLong {
        /// Length found, in bytes.
        len: usize,
    },
    /// Not a well-formed bech32 string (no `1` separator, a character
    /// outside the bech32 alphabet, mixed case, ...) or its checksum is
    /// wrong. The text is the bech32 decoder's.
    Bech32(String),
    /// The checksum is bech32m (BIP-350); NIP-19 uses bech32 (BIP-173).
    Bech32m,
    /// The string is an `nsec`: a secret key, which must never be given
    /// where a public key is expected.
    SecretKey,
    /// The human-readable part is not `npub` (e.g. `nprofile`, `note`).
    WrongPrefix {
        /// The prefix found, lowercased and truncated to 16 characters.
        found: String,
    },
    /// The payload is not exactly 32 bytes.
    Length {
        /// Payload length found, in bytes.
        found: usize,
    },
    /// The padding bits after the 32 bytes are not zero: another string
    /// encodes the same key, and NIP-19 strings are canonical.
    NonCanonical,
    /// For [`parse_pubkey`]: neither an `npub` nor exactly 64 hex characters.
    NotAPubkey,
}

impl fmt::Display for Nip19Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nip19Error::TooLong { len } => write!(
                f,
                "{len} characters is too long for an npub (63 characters, at most {MAX_BECH32_LEN} for bech32)"
            ),
            Nip19Error::Bech32(detail) => write!(f, "not a valid bech32 string: {detail}"),
            Nip19Error::Bech32m => {
                f.write_str("checksum is bech32m, but NIP-19 npub strings use bech32")
            }
            Nip19Error::SecretKey => f.write_str(
                "this is an nsec, a SECRET key, not an npub: remove it and consider the key compromised",
            ),
            Nip19Error::WrongPrefix { found } => write!(
                f,
                "prefix is \"{}\", expected \"npub\" (NIP-19 public key)",
                found.escape_debug()
            ),
            Nip19Error::Length { found } => {
                write!(f, "npub holds {found} bytes, a public key is 32")
            }
            Nip19Error::NonCanonical => {
                f.write_str("npub is not canonical (non-zero padding bits)")
            }
            Nip19Error::NotAPubkey => f.write_str(
                "expected an npub1... string (NIP-19) or 64 hex characters (a 32-byte x-only public key)",
            ),
        }
    }
}

impl std::error::Error for Nip19Error {}

/// Decodes a NIP-19 `npub` into a 32-byte x-only public key.
///
/// Strict: bech32 checksum (not bech32m), prefix exactly `npub`, payload
/// exactly 32 bytes, canonical padding, at most [`MAX_BECH32_LEN`]
/// characters; lower- or all-uppercase (BIP-173), never mixed.
///
/// # Errors
/// A [`Nip19Error`] naming what is wrong; [`Nip19Error::SecretKey`] for an
/// `nsec`.
pub fn decode_npub(s: &str) -> Result<[u8; 32], Nip19Error> {
    if s.len() > MAX_BECH32_LEN {
        return Err(Nip19Error::TooLong { len: s.len() });
    }
    let checked = match CheckedHrpstring::new::<Bech32>(s) {
        Ok(checked) => checked,
        Err(err) => {
            if CheckedHrpstring::new::<Bech32m>(s).is_ok() {
                return Err(Nip19Error::Bech32m);
            }
            return Err(Nip19Error::Bech32(err.to_string()));
        }
    };
    let hrp = checked.hrp().to_lowercase();
    if hrp == "nsec" {
        return Err(Nip19Error::SecretKey);
    }
    if hrp != "npub" {
        let found = hrp.chars().take(16).collect();
        return Err(Nip19Error::WrongPrefix { found });
    }
    // The data part is at most 90 characters, so this is at most 56 bytes.
    let bytes: Vec<u8> = checked.byte_iter().collect();
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| Nip19Error::Length { found: bytes.len() })?;
    // 32 bytes take 52 characters, whose last 4 bits are padding; they must
    // be zero, which holds exactly when re-encoding gives the input back.
    if !encode_npub(&key).eq_ignore_ascii_case(s) {
        return Err(Nip19Error::NonCanonical);
    }
    Ok(key)
}

/// Encodes a 32-byte x-only public key as a lowercase NIP-19 `npub` (63
/// characters, bech32 checksum).
pub fn encode_npub(pubkey: &[u8; 32]) -> String {
    pubkey
        .iter()
        .copied()
        .bytes_to_fes()
        .with_checksum::<Bech32>(&NPUB_HRP)
        .chars()
        .collect()
}

/// Parses a public key given either as an `npub` (see [`decode_npub`]) or as
/// exactly 64 hex characters (lowercase or uppercase; the NIP-01 wire form
/// is lowercase, but a key pasted from elsewhere may not be).
///
/// A non-empty string of hex digits is read as hex and must be exactly 64
/// of them; any other string containing the bech32 separator `1` is read as
/// an npub. No whitespace is trimmed.
///
/// # Errors
/// The [`decode_npub`] error for a string read as an npub, else
/// [`Nip19Error::NotAPubkey`].
pub fn parse_pubkey(s: &str) -> Result<[u8; 32], Nip19Error> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        hex::decode_to_slice(s, &mut key).map_err(|_| Nip19Error::NotAPubkey)?;
        return Ok(key);
    }
    if s.contains('1') {
        return decode_npub(s);
    }
    Err(Nip19Error::NotAPubkey)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const NPUB: &str = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";
    const HEX: &str = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";
    const NSEC: &str = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5";

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// The vectors file shipped in `testdata/vectors/nip19.json`.
    #[test]
    fn vectors_file() {
        let text = include_str!("../../../testdata/vectors/nip19.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let npubs = doc["npub"].as_array().unwrap();
        assert!(!npubs.is_empty());
        for v in npubs {
            let bech = v["bech32"].as_str().unwrap();
            let key = hex32(v["hex"].as_str().unwrap());
            assert_eq!(decode_npub(bech).unwrap(), key);
            assert_eq!(encode_npub(&key), bech);
            assert_eq!(parse_pubkey(bech).unwrap(), key);
        }
        for v in doc["nsec"].as_array().unwrap() {
            let bech = v["bech32"].as_str().unwrap();
            assert_eq!(decode_npub(bech), Err(Nip19Error::SecretKey));
            assert_eq!(parse_pubkey(bech), Err(Nip19Error::SecretKey));
        }
    }

    #[test]
    fn round_trip() {
        for key in [[0u8; 32], [0xff; 32], hex32(HEX)] {
            let s = encode_npub(&key);
            assert_eq!(s.len(), 63);
            assert!(s.starts_with("npub1"));
            assert_eq!(decode_npub(&s).unwrap(), key);
        }
    }

    #[test]
    fn uppercase_accepted_mixed_case_refused() {
        assert_eq!(decode_npub(&NPUB.to_ascii_uppercase()).unwrap(), hex32(HEX));
        let mixed = format!("NPUB{}", &NPUB[4..]);
        assert!(matches!(decode_npub(&mixed), Err(Nip19Error::Bech32(_))));
    }

    #[test]
    fn nsec_refused_as_secret() {
        assert_eq!(decode_npub(NSEC), Err(Nip19Error::SecretKey));
        assert!(Nip19Error::SecretKey.to_string().contains("SECRET"));
    }

    #[test]
    fn other_prefix_refused() {
        let note: String = hex32(HEX)
            .iter()
            .copied()
            .bytes_to_fes()
            .with_checksum::<Bech32>(&Hrp::parse_unchecked("note"))
            .chars()
            .collect();
        assert_eq!(
            decode_npub(&note),
            Err(Nip19Error::WrongPrefix {
                found: "note".into()
            })
        );
    }

    #[test]
    fn bad_checksum_refused() {
        // Flip the last character.
        let mut bad = NPUB.to_owned();
        bad.pop();
        bad.push('q');
        assert!(matches!(decode_npub(&bad), Err(Nip19Error::Bech32(_))));
        // Change one data character.
        let bad = NPUB.replacen("0elf", "0elg", 1);
        assert!(matches!(decode_npub(&bad), Err(Nip19Error::Bech32(_))));
    }

    #[test]
    fn bech32m_refused() {
        let m: String = hex32(HEX)
            .iter()
            .copied()
            .bytes_to_fes()
            .with_checksum::<Bech32m>(&NPUB_HRP)
            .chars()
            .collect();
        assert_eq!(decode_npub(&m), Err(Nip19Error::Bech32m));
    }

    #[test]
    fn wrong_length_refused() {
        for len in [0usize, 20, 31, 33, 40] {
            let data = vec![7u8; len];
            let s: String = data
                .iter()
                .copied()
                .bytes_to_fes()
                .with_checksum::<Bech32>(&NPUB_HRP)
                .chars()
                .collect();
            assert_eq!(
                decode_npub(&s),
                Err(Nip19Error::Length { found: len }),
                "{len}"
            );
        }
    }

    #[test]
    fn non_zero_padding_refused() {
        use bech32::Fe32;
        // 52 field elements whose last one has a non-zero low bit.
        let mut fes: Vec<Fe32> = hex32(HEX).iter().copied().bytes_to_fes().collect();
        assert_eq!(fes.len(), 52);
        let last = fes.pop().unwrap();
        fes.push(Fe32::try_from(last.to_u8() | 1).unwrap());
        let s: String = fes
            .into_iter()
            .with_checksum::<Bech32>(&NPUB_HRP)
            .chars()
            .collect();
        assert_eq!(decode_npub(&s), Err(Nip19Error::NonCanonical));
    }

    #[test]
    fn too_long_refused() {
        let s = format!("npub1{}", "q".repeat(100));
        assert_eq!(decode_npub(&s), Err(Nip19Error::TooLong { len: 105 }));
    }

    #[test]
    fn parse_pubkey_hex_both_cases() {
        assert_eq!(parse_pubkey(HEX).unwrap(), hex32(HEX));
        assert_eq!(parse_pubkey(&HEX.to_ascii_uppercase()).unwrap(), hex32(HEX));
        assert_eq!(parse_pubkey(NPUB).unwrap(), hex32(HEX));
    }

    #[test]
    fn parse_pubkey_refuses_other_shapes() {
        assert_eq!(parse_pubkey(""), Err(Nip19Error::NotAPubkey));
        assert_eq!(parse_pubkey(&HEX[..62]), Err(Nip19Error::NotAPubkey));
        assert_eq!(
            parse_pubkey(&format!("{HEX}00")),
            Err(Nip19Error::NotAPubkey)
        );
        let bad_hex = format!("{}g", &HEX[..63]);
        assert!(parse_pubkey(&bad_hex).is_err());
        assert_eq!(parse_pubkey(" npub"), Err(Nip19Error::NotAPubkey));
        assert!(parse_pubkey(&format!(" {NPUB}")).is_err());
    }
}
