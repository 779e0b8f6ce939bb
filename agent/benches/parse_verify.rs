//! Parse+verify throughput of our event core next to rust-nostr's
//! `Event::from_json` + `verify` and raw libsecp256k1 BIP-340 verification,
//! on the same events in one run: three criterion groups, one after another.
//!
//! Run: `cargo bench -p qube-agent --bench parse_verify`.
//!
//! Each group measures for several seconds before the next starts, so ratios
//! taken between groups drift with the machine's load; the ratios the
//! targets are judged on (issue 10) come from `parse_verify_interleaved`,
//! which alternates the three in short rounds.

// Bench code: a panic is how a broken fixture shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use qube_agent::{Event, Limits};
use qube_e2e::parse_verify_events;
use secp256k1::{schnorr, XOnlyPublicKey, SECP256K1};

/// Events per iteration: directive-shaped, with escapes in the content.
const EVENTS: usize = 100;

fn bench(c: &mut Criterion) {
    let events = parse_verify_events(EVENTS);
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
