//! BIP-340 reference test vectors 0-14 (`testdata/vectors/bip340-test-vectors.csv`,
//! the final BIP-340 vectors): verification result for every row, and for
//! rows with a secret key, signing with the given aux_rand reproduces the
//! signature exactly.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use qube_agent::core::keys::{verify_schnorr, Keys};
use qube_agent::Error;

const CSV: &str = include_str!("../../testdata/vectors/bip340-test-vectors.csv");

struct Row {
    index: u32,
    secret: Option<[u8; 32]>,
    pubkey: Vec<u8>,
    aux: Option<[u8; 32]>,
    msg: Vec<u8>,
    sig: [u8; 64],
    valid: bool,
    comment: String,
}

fn decode(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

fn rows() -> Vec<Row> {
    CSV.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.splitn(8, ',').collect();
            assert_eq!(f.len(), 8, "row {line:?}");
            Row {
                index: f[0].parse().unwrap(),
                secret: (!f[1].is_empty()).then(|| decode(f[1]).try_into().unwrap()),
                pubkey: decode(f[2]),
                aux: (!f[3].is_empty()).then(|| decode(f[3]).try_into().unwrap()),
                msg: decode(f[4]),
                sig: decode(f[5]).try_into().unwrap(),
                valid: match f[6] {
                    "TRUE" => true,
                    "FALSE" => false,
                    other => panic!("verification result {other:?}"),
                },
                comment: f[7].to_owned(),
            }
        })
        .collect()
}

#[test]
fn all_fifteen_rows_are_present() {
    let rows = rows();
    assert_eq!(rows.len(), 15);
    assert_eq!(
        rows.iter().map(|r| r.index).collect::<Vec<_>>(),
        (0..15).collect::<Vec<_>>()
    );
}

#[test]
fn verification_matches_every_row() {
    let mut checked = 0;
    for row in rows() {
        let pubkey: [u8; 32] = row.pubkey.clone().try_into().unwrap();
        let msg: [u8; 32] = row.msg.clone().try_into().unwrap();
        let result = verify_schnorr(&pubkey, &msg, &row.sig);
        assert_eq!(
            result.is_ok(),
            row.valid,
            "row {} ({}): got {result:?}",
            row.index,
            row.comment
        );
        if !row.valid {
            assert!(
                matches!(result, Err(Error::InvalidPubkey | Error::InvalidSignature)),
                "row {}: {result:?}",
                row.index
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 15);
}

#[test]
fn signing_reproduces_every_signature_with_a_secret_key() {
    let mut signed = 0;
    for row in rows() {
        let Some(secret) = row.secret else { continue };
        let keys = Keys::from_secret_bytes(&secret).expect("vector secret key");
        assert_eq!(keys.public_key().to_vec(), row.pubkey, "row {}", row.index);
        let msg: [u8; 32] = row.msg.clone().try_into().unwrap();
        let aux = row.aux.expect("aux_rand beside a secret key");
        assert_eq!(
            keys.sign_with_aux_rand(&msg, &aux),
            row.sig,
            "row {}",
            row.index
        );
        signed += 1;
    }
    // Rows 0-3 carry secret keys in the published vectors.
    assert_eq!(signed, 4);
}
