//! Parse+verify throughput of our event core next to rust-nostr's
//! `Event::from_json` + `verify` and raw libsecp256k1 BIP-340 verification,
//! on the same events in one run.
//!
//! Run: `cargo bench -p qube-agent --bench parse_verify`.

// Bench code: a panic is how a broken fixture shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use qube_agent::{Event, Keys, Limits};
use qube_e2e::directive;
use secp256k1::{schnorr, XOnlyPublicKey, SECP256K1};

/// Events per iteration: directive-shaped, with escapes in the content.
const EVENTS: usize = 100;

fn fixtures() -> Vec<String> {
    (0..EVENTS)
        .map(|i| {
            directive()
                .version("v1.2.3")
                .hash(&"ab".repeat(32))
                .expiration(1_900_000_000)
                .created_at(1_700_000_000 + i as u64)
                .content(&format!(
                    "Upgrade to v1.2.3 (\"Aurora\")\nrelease #{i}\tsee notes"
                ))
                .sign(&Keys::generate().unwrap())
                .to_json()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let events = fixtures();
    let limits = Limits::default();
    let raw: Vec<([u8; 32], [u8; 32], [u8; 64])> = events
        .iter()
        .map(|j| {
            let e = Event::from_json(j.as_bytes(), &limits).unwrap();
            (e.pubkey, e.id, e.sig)
        })
        .collect();

    let mut group = c.benchmark_group("parse_verify");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("qube_agent Event::from_json (parse+id+BIP-340)", |b| {
        b.iter(|| {
            for j in &events {
                black_box(Event::from_json(black_box(j.as_bytes()), &limits).unwrap());
            }
        })
    });
    group.bench_function("nostr Event::from_json + verify", |b| {
        b.iter(|| {
            for j in &events {
                let e = nostr::prelude::Event::from_json(black_box(j)).unwrap();
                e.verify().unwrap();
                black_box(e);
            }
        })
    });
    group.bench_function("secp256k1 verify_schnorr only", |b| {
        b.iter(|| {
            for (pk, id, sig) in &raw {
                let pk = XOnlyPublicKey::from_byte_array(pk).unwrap();
                let sig = schnorr::Signature::from_byte_array(*sig);
                SECP256K1.verify_schnorr(&sig, black_box(id), &pk).unwrap();
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
