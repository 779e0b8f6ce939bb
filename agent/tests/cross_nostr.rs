//! Cross-implementation checks against rust-nostr (`nostr` 0.45): events full
//! of the characters that trip canonical serialization, signed by one
//! implementation and verified by the other; ids must agree byte for byte.

// Test code: a panic is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use nostr::prelude::{EventBuilder, FinalizeEvent, Kind, Tag, Timestamp};
use qube_agent::{Event, Keys, Limits, UnsignedEvent};

/// Events generated in each direction.
const EVENTS_PER_DIRECTION: usize = 10_000;

/// splitmix64: a fixed, seedable generator so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every control character, the JSON specials, and the non-ASCII cases that
/// implementations have disagreed on.
fn palette() -> Vec<char> {
    let mut p: Vec<char> = (0u32..0x20).filter_map(char::from_u32).collect();
    p.extend([
        '"', '\\', '/', '\u{7f}', '\u{80}', '\u{2028}', '\u{2029}', '\u{feff}', '\u{fffd}',
        '\u{ffff}', '😀', '🏳', '\u{200d}', '🌈', 'é', 'ß', '中', 'a', 'z', '0', ' ', '[', ']', '{',
        '}', ',', ':', 'u',
    ]);
    p
}

fn text(rng: &mut Rng, palette: &[char]) -> String {
    // One string in eight is empty.
    let len = if rng.below(8) == 0 { 0 } else { rng.below(24) };
    (0..len)
        .map(|_| palette[rng.below(palette.len() as u64) as usize])
        .collect()
}

fn unsigned(rng: &mut Rng, palette: &[char]) -> UnsignedEvent {
    let tags = (0..rng.below(6))
        .map(|_| (0..1 + rng.below(5)).map(|_| text(rng, palette)).collect())
        .collect();
    UnsignedEvent {
        created_at: match rng.below(4) {
            0 => 0,
            1 => rng.next(),
            _ => 1_700_000_000 + rng.below(100_000_000),
        },
        kind: rng.below(65_536) as u16,
        tags,
        content: text(rng, palette),
    }
}

#[test]
fn events_signed_by_nostr_verify_with_ours() {
    let palette = palette();
    let mut rng = Rng(1);
    let limits = Limits::default();
    for n in 0..EVENTS_PER_DIRECTION {
        let keys = nostr::prelude::Keys::generate();
        let u = unsigned(&mut rng, &palette);
        let theirs = EventBuilder::new(Kind::from(u.kind), u.content.clone())
            .tags(u.tags.iter().map(|t| Tag::parse(t.clone()).unwrap()))
            .custom_created_at(Timestamp::from_secs(u.created_at))
            .finalize(&keys)
            .unwrap();
        let json = theirs.as_json();
        let ours = Event::from_json(json.as_bytes(), &limits)
            .unwrap_or_else(|e| panic!("event {n}: {e}\n{json}"));
        assert_eq!(ours.id, theirs.id.to_bytes(), "event {n}: {json}");
        assert_eq!(ours.pubkey, keys.public_key().to_bytes());
        assert_eq!(ours.created_at, u.created_at);
        assert_eq!(ours.kind, u.kind);
        assert_eq!(ours.tags, u.tags, "event {n}");
        assert_eq!(ours.content, u.content, "event {n}");
    }
}

#[test]
fn events_signed_by_ours_verify_with_nostr() {
    let palette = palette();
    let mut rng = Rng(2);
    for n in 0..EVENTS_PER_DIRECTION {
        let keys = Keys::generate().unwrap();
        let u = unsigned(&mut rng, &palette);
        let ours = keys.sign(u.clone()).unwrap();
        let json = ours.to_json();
        let theirs = nostr::prelude::Event::from_json(&json)
            .unwrap_or_else(|e| panic!("event {n}: {e}\n{json}"));
        theirs
            .verify()
            .unwrap_or_else(|e| panic!("event {n}: nostr rejects ours: {e}\n{json}"));
        assert_eq!(theirs.id.to_bytes(), ours.id, "event {n}: {json}");
        assert_eq!(theirs.pubkey.to_bytes(), keys.public_key());
        let their_tags: Vec<Vec<String>> =
            theirs.tags.iter().map(|t| t.as_slice().to_vec()).collect();
        assert_eq!(their_tags, u.tags, "event {n}");
        assert_eq!(theirs.content, u.content, "event {n}");
        // And back: nostr's serialization of our event parses to the same event.
        let again = Event::from_json(theirs.as_json().as_bytes(), &Limits::default()).unwrap();
        assert_eq!(again, ours, "event {n}");
    }
}

#[test]
fn generator_covers_every_control_character_and_the_hard_cases() {
    let palette = palette();
    let mut rng = Rng(1);
    let mut seen = std::collections::BTreeSet::new();
    let mut empty_content = 0;
    for _ in 0..EVENTS_PER_DIRECTION {
        let u = unsigned(&mut rng, &palette);
        empty_content += usize::from(u.content.is_empty());
        seen.extend(u.content.chars());
        seen.extend(
            u.tags
                .iter()
                .flatten()
                .flat_map(|v| v.chars().collect::<Vec<_>>()),
        );
    }
    for c in &palette {
        assert!(seen.contains(c), "U+{:04X} never generated", u32::from(*c));
    }
    assert!(empty_content > 100, "only {empty_content} empty contents");
}
