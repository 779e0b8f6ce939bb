//! BIP-340 keys: verification of Schnorr signatures and a signing key that
//! never prints itself.

use secp256k1::{schnorr, Keypair, SecretKey, XOnlyPublicKey, SECP256K1};

use crate::core::error::Error;

/// Verifies a BIP-340 Schnorr signature.
///
/// `pubkey` is a 32-byte x-only public key, `msg` the 32-byte message (for
/// Nostr, the event id), `sig` the 64-byte signature.
///
/// # Errors
/// [`Error::InvalidPubkey`] when `pubkey` is not the x coordinate of a curve
/// point; [`Error::InvalidSignature`] when the signature does not verify.
pub fn verify_schnorr(pubkey: &[u8; 32], msg: &[u8; 32], sig: &[u8; 64]) -> Result<(), Error> {
    let pubkey = XOnlyPublicKey::from_byte_array(pubkey).map_err(|_| Error::InvalidPubkey)?;
    let sig = schnorr::Signature::from_byte_array(*sig);
    SECP256K1
        .verify_schnorr(&sig, msg, &pubkey)
        .map_err(|_| Error::InvalidSignature)
}

/// A secp256k1 key pair used for BIP-340 signatures (the node key, a
/// governance key).
///
/// Deliberately not `Debug`, `Display`, `Clone` or serializable; the secret
/// is erased from this value's memory on drop.
pub struct Keys {
    keypair: Keypair,
}

impl Keys {
    /// Generates a new key from 32 bytes of OS randomness.
    ///
    /// # Errors
    /// [`Error::Randomness`] if the OS generator fails.
    pub fn generate() -> Result<Keys, Error> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|_| Error::Randomness)?;
            let key = Keys::from_secret_bytes(&bytes);
            bytes.fill(0);
            // A uniformly random 32-byte string is a valid secret key with
            // probability 1 - 2^-128; retry on the rest.
            if let Some(keys) = key {
                return Ok(keys);
            }
        }
    }

    /// Builds keys from a 32-byte secret; `None` when it is zero or not below
    /// the curve order. The caller should erase its copy of `secret`.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Option<Keys> {
        let secret = SecretKey::from_byte_array(secret).ok()?;
        Some(Keys {
            keypair: Keypair::from_secret_key(SECP256K1, &secret),
        })
    }

    /// The 32-byte x-only public key (BIP-340), as used in Nostr `pubkey`.
    pub fn public_key(&self) -> [u8; 32] {
        self.keypair.x_only_public_key().0.serialize()
    }

    /// The 32-byte secret. Callers must keep it in zeroizing memory.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.keypair.secret_bytes()
    }

    /// Signs a 32-byte message (BIP-340 "Default Signing") with 32 bytes of
    /// fresh OS randomness as auxiliary data.
    ///
    /// # Errors
    /// [`Error::Randomness`] if the OS generator fails.
    pub(crate) fn sign_digest(&self, msg: &[u8; 32]) -> Result<[u8; 64], Error> {
        let mut aux = [0u8; 32];
        getrandom::fill(&mut aux).map_err(|_| Error::Randomness)?;
        Ok(self.sign_with_aux_rand(msg, &aux))
    }

    /// Signs a 32-byte message with caller-chosen auxiliary data; the output
    /// is deterministic. For test vectors only: reusing `aux` across messages
    /// weakens protection against side channels (BIP-340).
    pub fn sign_with_aux_rand(&self, msg: &[u8; 32], aux: &[u8; 32]) -> [u8; 64] {
        SECP256K1
            .sign_schnorr_with_aux_rand(msg, &self.keypair, aux)
            .to_byte_array()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.keypair.non_secure_erase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_reject_other_message() {
        let keys = Keys::generate().unwrap();
        let msg = [7u8; 32];
        let sig = keys.sign_digest(&msg).unwrap();
        verify_schnorr(&keys.public_key(), &msg, &sig).unwrap();
        assert_eq!(
            verify_schnorr(&keys.public_key(), &[8u8; 32], &sig),
            Err(Error::InvalidSignature)
        );
    }

    #[test]
    fn fresh_aux_randomness_gives_distinct_signatures() {
        let keys = Keys::generate().unwrap();
        let msg = [1u8; 32];
        assert_ne!(
            keys.sign_digest(&msg).unwrap(),
            keys.sign_digest(&msg).unwrap()
        );
    }

    #[test]
    fn zero_and_overflowing_secrets_are_refused() {
        assert!(Keys::from_secret_bytes(&[0u8; 32]).is_none());
        assert!(Keys::from_secret_bytes(&[0xffu8; 32]).is_none());
    }
}
