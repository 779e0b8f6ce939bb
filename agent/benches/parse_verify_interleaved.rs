//! Parse+verify throughput ratios, measured interleaved: our event core
//! (`qube_agent::Event::from_json`: strict parse, canonical id via SHA-256,
//! BIP-340 verification) against rust-nostr's `Event::from_json` + `verify`
//! and against raw libsecp256k1 `verify_schnorr` alone, on the same events.
//!
//! Run: `cargo bench -p qube-agent --bench parse_verify_interleaved`.
//!
//! Settings (environment):
//! - `QUBE_BENCH_ROUNDS`: measured rounds, default 31 (at least 15 for a
//!   figure to judge the targets on);
//! - `QUBE_BENCH_EVENTS`: events each implementation checks per round,
//!   default 2000 (100-150 ms of work on a current x86-64 core);
//! - `QUBE_BENCH_CHUNK`: events per turn, default 50; with
//!   `QUBE_BENCH_CHUNK` = `QUBE_BENCH_EVENTS` each implementation does its
//!   whole round in one turn;
//! - `QUBE_BENCH_BREAKDOWN_ROUNDS`: rounds of the breakdown by stage
//!   printed last, default 11 (0 leaves it out).
//!
//! Targets (issue 10): the median over the rounds of ours/nostr at least
//! 1.00 and of ours/raw at least 0.90. Each ratio is a throughput ratio
//! within one round: the other implementation's time divided by ours, so
//! above 1 means ours is faster.
//!
//! Why interleaved: the criterion bench (`parse_verify`) runs its three
//! groups one after another for seconds each, so a change in the machine's
//! load between groups moves the ratios (two runs of it gave ours/nostr 1.41
//! and 0.84). Here a round checks the same events (`QUBE_BENCH_EVENTS`)
//! with each of the three implementations, taking turns a chunk
//! (`QUBE_BENCH_CHUNK`) at a time: each chunk goes through all three back to
//! back, in an order that cycles through the six permutations (so none is
//! always first or always follows another). Each implementation's time for the round is the sum of
//! its turns, and the ratios are taken within the round, so load that
//! changes slower than a turn (a few milliseconds) affects all three alike.
//! One warm-up round is discarded.
//!
//! Two clocks are read around every turn: `std::time::Instant` (wall time,
//! the judged figure) and the thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`),
//! which leaves out the time the thread waited for a core. On an idle
//! machine the two agree; on a loaded one the wall ratios spread more and
//! the CPU-time ratios show what the code itself costs.
//!
//! Printed: every round's wall time per implementation and both ratios on
//! both clocks; then, over the rounds, the median, interquartile range,
//! minimum and maximum of each ratio and of each implementation's time per
//! event, and whether the medians meet the targets. Last, the same way
//! interleaved, where each spends its time: parsing alone, the id alone and
//! the signature alone, for ours and for rust-nostr (on events parsed
//! beforehand), so a change to `agent/src/core/event.rs` or `json.rs` can
//! be judged by the stage it touches.
//!
//! Before timing, each implementation must reject an event with one
//! signature bit flipped; after every turn, it must have accepted every
//! event of the chunk. So none is measured on a failing or skipped path.
//!
//! Built and run by `cargo test --benches` (no `--bench` argument) it does
//! a short smoke (3 rounds of 20 events) that checks the same things and
//! judges nothing.

// Bench code: a panic is how a broken fixture shows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::ops::Range;
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};
use qube_agent::core::{event, keys};
use qube_agent::{Event, Limits, UnverifiedEvent};
use qube_e2e::{median, parse_verify_events};
use secp256k1::{schnorr, XOnlyPublicKey, SECP256K1};

const DEFAULT_ROUNDS: usize = 31;
/// Fewest rounds the issue accepts for a figure.
const MIN_ROUNDS: usize = 15;
const DEFAULT_EVENTS: usize = 2000;
const DEFAULT_CHUNK: usize = 50;
const DEFAULT_BREAKDOWN_ROUNDS: usize = 11;
/// The median ours/nostr must be at least this.
const TARGET_NOSTR: f64 = 1.00;
/// The median ours/raw must be at least this.
const TARGET_RAW: f64 = 0.90;

/// The same events in each implementation's input form.
struct Fixture {
    /// Event JSON, for ours and rust-nostr.
    json: Vec<String>,
    /// (pubkey, id, sig) of each event, for raw `verify_schnorr`.
    raw: Vec<([u8; 32], [u8; 32], [u8; 64])>,
    limits: Limits,
}

impl Fixture {
    fn new(events: usize) -> Fixture {
        let json = parse_verify_events(events);
        let limits = Limits::default();
        let raw = json
            .iter()
            .map(|j| {
                let e = Event::from_json(j.as_bytes(), &limits).unwrap();
                (e.pubkey, e.id, e.sig)
            })
            .collect();
        Fixture { json, raw, limits }
    }

    /// How many of the events in `range` our core accepts (parse, id,
    /// signature).
    fn ours(&self, range: Range<usize>) -> usize {
        let mut ok = 0usize;
        for j in &self.json[range] {
            let e = Event::from_json(black_box(j.as_bytes()), &self.limits);
            ok += usize::from(black_box(e).is_ok());
        }
        ok
    }

    /// How many of the events in `range` rust-nostr accepts (parse, id,
    /// signature).
    fn nostr(&self, range: Range<usize>) -> usize {
        let mut ok = 0usize;
        for j in &self.json[range] {
            let good = match nostr::prelude::Event::from_json(black_box(j)) {
                Ok(e) => {
                    let verified = e.verify().is_ok();
                    black_box(e);
                    verified
                }
                Err(_) => false,
            };
            ok += usize::from(good);
        }
        ok
    }

    /// How many of the signatures in `range` libsecp256k1 accepts (x-only
    /// key parse and BIP-340 verification).
    fn raw(&self, range: Range<usize>) -> usize {
        let mut ok = 0usize;
        for (pk, id, sig) in &self.raw[range] {
            let good = XOnlyPublicKey::from_byte_array(black_box(pk)).is_ok_and(|pk| {
                let sig = schnorr::Signature::from_byte_array(*black_box(sig));
                SECP256K1.verify_schnorr(&sig, black_box(id), &pk).is_ok()
            });
            ok += usize::from(good);
        }
        ok
    }
}

/// Something timed: checks the events in a range and says how many passed.
struct Stage<'a> {
    name: &'static str,
    check: Box<dyn Fn(Range<usize>) -> usize + 'a>,
}

impl<'a> Stage<'a> {
    fn new(name: &'static str, check: impl Fn(Range<usize>) -> usize + 'a) -> Stage<'a> {
        Stage {
            name,
            check: Box::new(check),
        }
    }
}

/// The order of the stages in turn `turn`: rotated by one each turn, and
/// reversed every other cycle. For three stages that is all six
/// permutations in six turns, so each stage is first, second and third
/// equally often and precedes each other one as often as it follows it.
fn order(turn: usize, stages: usize) -> Vec<usize> {
    let shift = turn % stages;
    let mut order: Vec<usize> = (0..stages).map(|i| (i + shift) % stages).collect();
    if (turn / stages) % 2 == 1 {
        order.reverse();
    }
    order
}

/// The calling thread's CPU time.
fn cpu_now() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .expect("CLOCK_THREAD_CPUTIME_ID")
}

/// Wall and CPU time of one round, per stage.
type Round = Vec<(Duration, Duration)>;

/// Runs a warm-up round and `rounds` measured ones of every stage over
/// `events` events, taking turns `chunk` events at a time; calls `report`
/// with each round (0 is the warm-up). Panics when a stage does not accept
/// every event of its turn.
fn interleave(
    stages: &[Stage<'_>],
    events: usize,
    chunk: usize,
    rounds: usize,
    mut report: impl FnMut(usize, &Round),
) {
    let mut turn = 0usize;
    for round in 0..=rounds {
        let mut times = vec![(Duration::ZERO, Duration::ZERO); stages.len()];
        for start in (0..events).step_by(chunk) {
            let range = start..(start + chunk).min(events);
            for i in order(turn, stages.len()) {
                let (stage, n) = (&stages[i], range.len());
                let (cpu0, wall0) = (cpu_now(), Instant::now());
                let ok = (stage.check)(range.clone());
                let (wall, cpu) = (wall0.elapsed(), cpu_now().saturating_sub(cpu0));
                assert_eq!(ok, n, "{} accepted only {ok} of {n} events", stage.name);
                times[i].0 += wall;
                times[i].1 += cpu;
            }
            turn += 1;
        }
        report(round, &times);
    }
}

/// Positive control: with one signature bit flipped, every implementation
/// must reject the event, so each is really verifying.
fn check_rejects_bad_signature(fx: &Fixture) {
    let mut bad = Fixture {
        json: fx.json[..1].to_vec(),
        raw: fx.raw[..1].to_vec(),
        limits: fx.limits,
    };
    bad.raw[0].2[0] ^= 1;
    let (good_hex, bad_hex) = (hex::encode(fx.raw[0].2), hex::encode(bad.raw[0].2));
    assert!(bad.json[0].contains(&good_hex));
    bad.json[0] = bad.json[0].replace(&good_hex, &bad_hex);
    type Check = fn(&Fixture, Range<usize>) -> usize;
    let checks: [(&str, Check); 3] = [
        ("ours", Fixture::ours),
        ("nostr", Fixture::nostr),
        ("raw", Fixture::raw),
    ];
    for (name, check) in checks {
        assert_eq!(check(&bad, 0..1), 0, "{name} accepted a bad signature");
        assert_eq!(check(fx, 0..1), 1, "{name} refused a good event");
    }
}

/// Linear-interpolation quantile (type 7) of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return f64::NAN;
    };
    let pos = q * last as f64;
    let (lo, frac) = (pos.floor() as usize, pos.fract());
    let hi = (lo + 1).min(last);
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Median, interquartile range, minimum and maximum of `values`.
fn summary(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile(&sorted, 0.25), quantile(&sorted, 0.75));
    format!(
        "median {:7.3}   IQR {:.3}..{:.3} (width {:.3})   min {:.3}   max {:.3}",
        median(values.to_vec()),
        q1,
        q3,
        q3 - q1,
        sorted.first().copied().unwrap_or(f64::NAN),
        sorted.last().copied().unwrap_or(f64::NAN),
    )
}

fn setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: want a non-negative integer")),
        Err(_) => default,
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    // cargo bench passes --bench; cargo test --benches does not.
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, events, chunk, breakdown_rounds) = if bench {
        (
            setting("QUBE_BENCH_ROUNDS", DEFAULT_ROUNDS),
            setting("QUBE_BENCH_EVENTS", DEFAULT_EVENTS),
            setting("QUBE_BENCH_CHUNK", DEFAULT_CHUNK),
            setting("QUBE_BENCH_BREAKDOWN_ROUNDS", DEFAULT_BREAKDOWN_ROUNDS),
        )
    } else {
        (3, 20, 5, 1)
    };
    assert!(
        rounds > 0 && events > 0 && chunk > 0,
        "rounds, events and chunk must be positive"
    );
    let chunk = chunk.min(events);

    let fx = Fixture::new(events);
    check_rejects_bad_signature(&fx);

    println!(
        "parse+verify interleaved: {rounds} rounds (+1 warm-up); per round each of 3 implementations \
         checks the same {events} events, taking turns {chunk} events at a time"
    );
    println!("load average before: {}", load_average());
    println!(
        "ratio = other's time / ours (above 1: ours faster); wall = Instant, cpu = thread CPU time"
    );
    println!();
    println!(
        "{:>5}  {:>8} {:>8} {:>8}  {:>10} {:>8}  {:>10} {:>8}",
        "round",
        "ours ms",
        "nostr ms",
        "raw ms",
        "ours/nostr",
        "ours/raw",
        "ours/nostr",
        "ours/raw"
    );
    println!(
        "{:>5}  {:>26}  {:>19}  {:>19}",
        "", "(wall)", "(wall)", "(cpu)"
    );

    let stages = [
        Stage::new("ours", |r| fx.ours(r)),
        Stage::new("nostr", |r| fx.nostr(r)),
        Stage::new("raw", |r| fx.raw(r)),
    ];
    // Per measured round: the four ratios, then us/event wall and cpu by stage.
    let (mut ratios, mut wall_us, mut cpu_us) = (
        vec![Vec::new(); 4],
        vec![Vec::new(); stages.len()],
        vec![Vec::new(); stages.len()],
    );
    interleave(&stages, events, chunk, rounds, |round, times| {
        let [(w_ours, c_ours), (w_nostr, c_nostr), (w_raw, c_raw)] =
            [0, 1, 2].map(|i| (secs(times[i].0), secs(times[i].1)));
        let r = [
            w_nostr / w_ours,
            w_raw / w_ours,
            c_nostr / c_ours,
            c_raw / c_ours,
        ];
        let label = if round == 0 {
            "warm".to_string()
        } else {
            round.to_string()
        };
        println!(
            "{label:>5}  {:>8.1} {:>8.1} {:>8.1}  {:>10.3} {:>8.3}  {:>10.3} {:>8.3}",
            w_ours * 1e3,
            w_nostr * 1e3,
            w_raw * 1e3,
            r[0],
            r[1],
            r[2],
            r[3],
        );
        if round > 0 {
            for (all, v) in ratios.iter_mut().zip(r) {
                all.push(v);
            }
            for (i, &(w, c)) in times.iter().enumerate() {
                wall_us[i].push(secs(w) * 1e6 / events as f64);
                cpu_us[i].push(secs(c) * 1e6 / events as f64);
            }
        }
    });

    println!();
    println!("load average after: {}", load_average());
    println!("over {rounds} rounds:");
    for (i, stage) in stages.iter().enumerate() {
        let name = stage.name;
        println!(
            "  {:<18} {}",
            format!("{name} us/event wall"),
            summary(&wall_us[i])
        );
        println!(
            "  {:<18} {}",
            format!("{name} us/event cpu"),
            summary(&cpu_us[i])
        );
    }
    let names = [
        "ours/nostr wall",
        "ours/raw   wall",
        "ours/nostr cpu",
        "ours/raw   cpu",
    ];
    for (name, all) in names.iter().zip(&ratios) {
        println!("  {name:<18} {}", summary(all));
    }

    if !bench {
        println!("smoke run (no --bench argument): nothing judged");
    } else if rounds < MIN_ROUNDS {
        println!("fewer than {MIN_ROUNDS} rounds: not a figure to judge the targets on");
    } else {
        let verdict = |m: f64, target: f64| if m >= target { "met" } else { "NOT met" };
        for (name, target, wall, cpu) in [
            ("ours/nostr", TARGET_NOSTR, &ratios[0], &ratios[2]),
            ("ours/raw  ", TARGET_RAW, &ratios[1], &ratios[3]),
        ] {
            let (w, c) = (median(wall.clone()), median(cpu.clone()));
            println!(
                "target {name} >= {target:.2}: wall median {w:.3} {}; cpu median {c:.3} {}",
                verdict(w, target),
                verdict(c, target)
            );
        }
    }

    if breakdown_rounds > 0 {
        breakdown(&fx, events, chunk, breakdown_rounds);
    }
}

/// Where the time goes, stage by stage, for ours and for rust-nostr; the
/// id and signature stages start from events parsed beforehand.
fn breakdown(fx: &Fixture, events: usize, chunk: usize, rounds: usize) {
    let ours: Vec<UnverifiedEvent> = fx
        .json
        .iter()
        .map(|j| UnverifiedEvent::from_json(j.as_bytes(), &fx.limits).unwrap())
        .collect();
    let theirs: Vec<nostr::prelude::Event> = fx
        .json
        .iter()
        .map(|j| nostr::prelude::Event::from_json(j).unwrap())
        .collect();
    let count = |r: Range<usize>, f: &dyn Fn(usize) -> bool| r.filter(|&i| f(i)).count();
    let stages = [
        Stage::new("ours: UnverifiedEvent::from_json", |r| {
            count(r, &|i| {
                let e = UnverifiedEvent::from_json(black_box(fx.json[i].as_bytes()), &fx.limits);
                black_box(e).is_ok()
            })
        }),
        Stage::new("ours: canonical_json", |r| {
            count(r, &|i| {
                let e = black_box(&ours[i]);
                !event::canonical_json(&e.pubkey, e.created_at, e.kind, &e.tags, &e.content)
                    .is_empty()
            })
        }),
        Stage::new("ours: compute_id (canonical_json + SHA-256)", |r| {
            count(r, &|i| {
                let e = black_box(&ours[i]);
                e.compute_id() == e.id
            })
        }),
        Stage::new("ours: keys::verify_schnorr", |r| {
            count(r, &|i| {
                let e = black_box(&ours[i]);
                keys::verify_schnorr(&e.pubkey, &e.id, &e.sig).is_ok()
            })
        }),
        Stage::new("nostr: Event::from_json", |r| {
            count(r, &|i| {
                black_box(nostr::prelude::Event::from_json(black_box(&fx.json[i]))).is_ok()
            })
        }),
        Stage::new("nostr: verify_id", |r| {
            count(r, &|i| black_box(&theirs[i]).verify_id())
        }),
        Stage::new("nostr: verify_signature", |r| {
            count(r, &|i| black_box(&theirs[i]).verify_signature())
        }),
    ];
    let mut cpu_us = vec![Vec::new(); stages.len()];
    interleave(&stages, events, chunk, rounds, |round, times| {
        if round > 0 {
            for (i, &(_, c)) in times.iter().enumerate() {
                cpu_us[i].push(secs(c) * 1e6 / events as f64);
            }
        }
    });
    println!();
    println!("breakdown by stage, us/event of thread CPU time over {rounds} interleaved rounds:");
    for (stage, all) in stages.iter().zip(&cpu_us) {
        println!("  {:<46} {}", stage.name, summary(all));
    }
}
