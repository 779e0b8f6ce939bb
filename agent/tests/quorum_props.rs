//! Property tests of the quorum engine (`docs/PROTOCOL.md` sections 5.2 to 5.5)
//! against a brute-force reference model, with real signed directives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use qube_agent::core::directive::{Action, Directive, Proposal};
use qube_agent::core::quorum::{Decision, Engine, Offer, QuorumConfig};
use qube_agent::Keys;
use qube_e2e::{directive, keys, EventBuilder};

const NOW: u64 = 1_700_000_000;
/// Size of the fixed key pool: secret keys [1; 32] ..= [5; 32].
const POOL: u8 = 5;
const HASHES: [&str; 3] = [
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
    "fd61a03af4f77d870fc21e05e7e80678095c92d808cfb3b5c279ee04c74aca13",
];
/// Proposals to vote for: (action, version as signed, index into HASHES).
/// Chosen to collide: same version with another hash, with a `v`, with build
/// metadata, a reboot at the same version, a pre-release, older and newer.
const MENU: [(&str, &str, usize); 8] = [
    ("upgrade", "1.2.3", 0),
    ("upgrade", "v1.2.3", 0),
    ("upgrade", "1.2.3", 1),
    ("upgrade", "2.0.0", 0),
    ("upgrade", "1.0.0", 0),
    ("reboot", "1.2.3", 0),
    ("upgrade", "2.0.0-rc.1", 2),
    ("upgrade", "1.2.3+build.5", 0),
];
const INSTALLED: [&str; 3] = ["1.0.0", "1.2.3", "2.0.0"];

/// Key `i` of the pool (0-based): secret key `[i + 1; 32]`.
fn pool_key(i: u8) -> Keys {
    keys(i + 1)
}

fn pubkey(i: u8) -> [u8; 32] {
    pool_key(i).public_key()
}

/// MENU entry `menu`, with an `expiration` tag if given.
fn menu_directive(menu: usize, expiration: Option<u64>) -> EventBuilder {
    let (action, version, hash) = MENU[menu];
    proposal_directive(action, version, HASHES[hash], expiration)
}

/// A directive for this proposal; a reboot gets its genesis URL and
/// deadline, then comes the expiration if given.
fn proposal_directive(
    action: &str,
    version: &str,
    hash: &str,
    expiration: Option<u64>,
) -> EventBuilder {
    let mut builder = directive().action(action).version(version).hash(hash);
    if action == "reboot" {
        builder = builder
            .genesis_url("https://g.example/genesis.json")
            .required_by(NOW + 3600);
    }
    if let Some(expiration) = expiration {
        builder = builder.expiration(expiration);
    }
    builder
}

/// Signs and validates a directive as of NOW (expired ones kept, as the
/// monitor does so that they still supersede).
fn signed(key: u8, created_at: u64, builder: EventBuilder, note: u8) -> Directive {
    builder
        .created_at(created_at)
        .content(&format!("directive {note}"))
        .sign_directive(&pool_key(key), NOW)
}

/// One generated directive.
#[derive(Debug, Clone)]
struct Spec {
    key: u8,
    menu: usize,
    /// created_at = NOW - 10 + age: few values, so ties on created_at happen.
    age: u64,
    /// 0: none, 1: already expired at NOW, 2: expires at NOW + 5.
    expiry: u8,
    /// Distinguishes contents; few values, so identical ids happen too.
    note: u8,
}

impl Spec {
    fn sign(&self) -> Directive {
        let expiration = match self.expiry {
            1 => Some(NOW - 1),
            2 => Some(NOW + 5),
            _ => None,
        };
        signed(
            self.key,
            NOW - 10 + self.age,
            menu_directive(self.menu, expiration),
            self.note,
        )
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (0..POOL, 0..MENU.len(), 0u64..4, 0u8..3, 0u8..2).prop_map(|(key, menu, age, expiry, note)| {
        Spec {
            key,
            menu,
            age,
            expiry,
            note,
        }
    })
}

/// Engine configuration and decision inputs.
#[derive(Debug, Clone)]
struct Setup {
    voters: Vec<u8>,
    quorum: usize,
    allow_downgrade: bool,
    installed: Option<semver::Version>,
    done: Vec<Proposal>,
    now: u64,
}

impl Setup {
    fn config(&self) -> QuorumConfig {
        QuorumConfig {
            require_installed: false,
            node: None,
            voters: self.voters.iter().map(|&k| pubkey(k)).collect(),
            quorum: self.quorum,
            allow_downgrade: self.allow_downgrade,
        }
    }

    fn engine(&self, directives: impl IntoIterator<Item = Directive>) -> Engine {
        Engine::from_directives(self.config(), directives).unwrap()
    }

    fn decide(&self, engine: &Engine) -> Decision {
        engine.decide(self.now, self.installed.as_ref(), &|p| {
            self.done.contains(p)
        })
    }
}

fn menu_proposal(menu: usize) -> Proposal {
    // Any spec signed with this menu entry carries exactly this proposal.
    signed(0, NOW - 100, menu_directive(menu, None), 0)
        .proposal()
        .clone()
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1u8..(1 << POOL),
        1usize..=POOL as usize,
        any::<bool>(),
        prop::option::of(0..INSTALLED.len()),
        prop_oneof![Just(0u8), any::<u8>()],
        prop_oneof![Just(NOW), Just(NOW + 10)],
    )
        .prop_map(|(mask, quorum, allow_downgrade, installed, done, now)| {
            let voters: Vec<u8> = (0..POOL).filter(|k| mask & (1 << k) != 0).collect();
            Setup {
                quorum: 1 + (quorum - 1) % voters.len(),
                voters,
                allow_downgrade,
                installed: installed.map(|i| semver::Version::parse(INSTALLED[i]).unwrap()),
                done: (0..MENU.len())
                    .filter(|m| done & (1 << m) != 0)
                    .map(menu_proposal)
                    .collect(),
                now,
            }
        })
}

// ---- the reference model ---------------------------------------------------

/// SemVer precedence key: leading `v` and build metadata ignored.
fn precedence(p: &Proposal) -> (u64, u64, u64, semver::Prerelease) {
    let v = semver::Version::parse(p.version.strip_prefix('v').unwrap_or(&p.version)).unwrap();
    (v.major, v.minor, v.patch, v.pre)
}

/// `docs/PROTOCOL.md` sections 5.2 to 5.5, by brute force over every directive
/// ever seen, in no particular order.
fn reference(all: &[Directive], setup: &Setup) -> Decision {
    // Rule 2: a voter's current directive is the one no other of theirs beats.
    let beats = |x: &Directive, y: &Directive| {
        x.event().created_at > y.event().created_at
            || (x.event().created_at == y.event().created_at && x.event().id < y.event().id)
    };
    let mut live: Vec<&Directive> = Vec::new();
    for voter in &setup.voters {
        let mine: Vec<&Directive> = all
            .iter()
            .filter(|d| d.event().pubkey == pubkey(*voter))
            .collect();
        let current = mine
            .iter()
            .find(|x| mine.iter().all(|y| !beats(y, x)))
            .copied();
        // NIP-40: counts while now < expiration.
        if let Some(current) = current {
            if current.expiration().is_none_or(|e| setup.now < e) {
                live.push(current);
            }
        }
    }
    // Rules 3 and 4.
    let proposals: BTreeSet<&Proposal> = live.iter().map(|d| d.proposal()).collect();
    let mut eligible: Vec<(&Proposal, Vec<&Directive>)> = Vec::new();
    for p in proposals {
        let mut supporters: Vec<&Directive> =
            live.iter().copied().filter(|d| d.proposal() == p).collect();
        supporters.sort_by_key(|d| d.event().pubkey);
        let policy_ok = p.action == Action::Reboot
            || setup.allow_downgrade
            || setup
                .installed
                .as_ref()
                .is_none_or(|i| precedence(p) > (i.major, i.minor, i.patch, i.pre.clone()));
        if supporters.len() >= setup.quorum && !setup.done.contains(p) && policy_ok {
            eligible.push((p, supporters));
        }
    }
    // Rule 5.
    let Some(top) = eligible.iter().map(|(p, _)| precedence(p)).max() else {
        return Decision::Nothing;
    };
    let mut tops: Vec<(&Proposal, Vec<&Directive>)> = eligible
        .into_iter()
        .filter(|(p, _)| precedence(p) == top)
        .collect();
    if tops.len() == 1 {
        let (proposal, directives) = tops.pop().unwrap();
        return Decision::Run {
            proposal: proposal.clone(),
            directives: directives.into_iter().cloned().collect(),
        };
    }
    let mut proposals: Vec<Proposal> = tops.into_iter().map(|(p, _)| p.clone()).collect();
    proposals.sort();
    Decision::Conflict(proposals)
}

/// A decision with each directive reduced to (author, id): two copies of one
/// event may carry different (equally valid) BIP-340 signatures.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    Nothing,
    Run(Proposal, Vec<([u8; 32], [u8; 32])>),
    Conflict(Vec<Proposal>),
}

fn shape(d: &Decision) -> Shape {
    match d {
        Decision::Nothing => Shape::Nothing,
        Decision::Run {
            proposal,
            directives,
        } => Shape::Run(
            proposal.clone(),
            directives
                .iter()
                .map(|d| (d.event().pubkey, d.event().id))
                .collect(),
        ),
        Decision::Conflict(ps) => Shape::Conflict(ps.clone()),
    }
}

fn ids(engine: &Engine) -> Vec<([u8; 32], [u8; 32])> {
    engine
        .directives()
        .map(|d| (d.event().pubkey, d.event().id))
        .collect()
}

/// Every voter votes for one of `choices` (by index); `quorum` needed.
/// Checks that only voters with the very same tuple add up.
fn check_split_vote(
    choices: &[usize],
    quorum: usize,
    directive_of: impl Fn(usize) -> EventBuilder,
) {
    let setup = Setup {
        voters: (0..POOL).collect(),
        quorum,
        allow_downgrade: false,
        installed: None,
        done: Vec::new(),
        now: NOW,
    };
    let directives: Vec<Directive> = choices
        .iter()
        .zip(0..POOL)
        .map(|(&choice, key)| signed(key, NOW - 10, directive_of(choice), 0))
        .collect();
    let mut counts = std::collections::BTreeMap::<usize, usize>::new();
    for &c in choices {
        *counts.entry(c).or_default() += 1;
    }
    let reaching: Vec<usize> = counts
        .iter()
        .filter(|&(_, &n)| n >= quorum)
        .map(|(&c, _)| c)
        .collect();
    let decision = setup.decide(&setup.engine(directives.clone()));
    match (reaching.as_slice(), &decision) {
        ([], Decision::Nothing) => {}
        (
            [c],
            Decision::Run {
                directives: ds,
                proposal,
            },
        ) => {
            assert_eq!(ds.len(), counts[c]);
            for d in ds {
                assert_eq!(d.proposal(), proposal);
            }
            let expected: &Proposal = directives
                .iter()
                .zip(choices)
                .find(|(_, &choice)| choice == *c)
                .map(|(d, _)| d.proposal())
                .unwrap();
            assert_eq!(proposal, expected);
        }
        (several, Decision::Conflict(ps)) if several.len() >= 2 => {
            assert_eq!(ps.len(), several.len());
        }
        (reaching, decision) => {
            panic!("choices {choices:?} quorum {quorum}: reaching {reaching:?}, got {decision:?}")
        }
    }
    assert_eq!(shape(&decision), shape(&reference(&directives, &setup)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Rule 2-5 as a whole: any order of the same directives, with any
    /// duplicates (replays), gives the reference model's decision and the
    /// same current directives.
    #[test]
    fn any_order_and_duplication_give_the_reference_decision(
        setup in setup(),
        specs in prop::collection::vec(spec(), 0..14),
        order in prop::collection::vec(any::<u32>(), 14),
        replays in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let directives: Vec<Directive> = specs.iter().map(Spec::sign).collect();
        let mut shuffled: Vec<Directive> = directives.clone();
        if !directives.is_empty() {
            shuffled.extend(replays.iter().map(|i| i.get(&directives).clone()));
        }
        let mut keyed: Vec<(u32, Directive)> = shuffled
            .into_iter()
            .enumerate()
            .map(|(i, d)| (order[i % order.len()].wrapping_add(i as u32), d))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        let shuffled: Vec<Directive> = keyed.into_iter().map(|(_, d)| d).collect();

        let a = setup.engine(directives.clone());
        let b = setup.engine(shuffled);
        let expected = shape(&reference(&directives, &setup));
        prop_assert_eq!(&shape(&setup.decide(&a)), &expected);
        prop_assert_eq!(&shape(&setup.decide(&b)), &expected);
        prop_assert_eq!(ids(&a), ids(&b));
        let done = |p: &Proposal| setup.done.contains(p);
        prop_assert_eq!(
            a.tally(setup.now, setup.installed.as_ref(), &done),
            b.tally(setup.now, setup.installed.as_ref(), &done)
        );
    }

    /// Rule 4: a run, and each side of a conflict, has at least `quorum`
    /// distinct voters whose current, unexpired directive is that exact tuple.
    #[test]
    fn no_proposal_is_decided_with_fewer_than_quorum_distinct_voters(
        setup in setup(),
        specs in prop::collection::vec(spec(), 0..14),
    ) {
        let engine = setup.engine(specs.iter().map(Spec::sign));
        let voters = setup.config().voters;
        let supporters = |p: &Proposal| -> BTreeSet<[u8; 32]> {
            engine
                .directives()
                .filter(|d| d.proposal() == p && !d.is_expired_at(setup.now))
                .map(|d| d.event().pubkey)
                .collect()
        };
        match setup.decide(&engine) {
            Decision::Run { proposal, directives } => {
                let authors: BTreeSet<[u8; 32]> =
                    directives.iter().map(|d| d.event().pubkey).collect();
                prop_assert_eq!(authors.len(), directives.len());
                prop_assert!(authors.len() >= setup.quorum);
                prop_assert!(authors.is_subset(&voters));
                prop_assert_eq!(&authors, &supporters(&proposal));
                for d in &directives {
                    prop_assert_eq!(d.proposal(), &proposal);
                    prop_assert!(!d.is_expired_at(setup.now));
                    prop_assert_eq!(Some(d), engine.current(&d.event().pubkey));
                }
                prop_assert!(!setup.done.contains(&proposal));
            }
            Decision::Conflict(proposals) => {
                prop_assert!(proposals.len() >= 2);
                let first = precedence(&proposals[0]);
                for p in &proposals {
                    prop_assert!(supporters(p).len() >= setup.quorum);
                    prop_assert_eq!(precedence(p), first.clone());
                }
            }
            Decision::Nothing => {}
        }
    }

    /// Rule 2: a voter's later directive replaces the earlier one, and the
    /// earlier one (or anything else already seen) replayed afterwards is
    /// stale and changes nothing.
    #[test]
    fn later_directive_replaces_earlier_and_replays_change_nothing(
        setup in setup(),
        background in prop::collection::vec(spec(), 0..10),
        voter in any::<prop::sample::Index>(),
        old_menu in 0..MENU.len(),
        new_menu in 0..MENU.len(),
        old_age in 0u64..5,
    ) {
        let voter = *voter.get(&setup.voters);
        let mut engine = setup.engine(background.iter().map(Spec::sign));
        // Background directives are dated NOW - 10 ..= NOW - 7.
        let old = signed(voter, NOW - 30 + old_age, menu_directive(old_menu, None), 1);
        let new = signed(voter, NOW, menu_directive(new_menu, None), 2);
        engine.offer(old.clone());
        let before = engine.current(&pubkey(voter)).cloned();
        let offered = engine.offer(new.clone());
        prop_assert_eq!(
            offered,
            Offer::Accepted { replaced: before.map(|d| d.event().id) }
        );
        prop_assert_eq!(engine.current(&pubkey(voter)), Some(&new));

        let decision = shape(&setup.decide(&engine));
        let state = ids(&engine);
        let mut everything: Vec<Directive> = background.iter().map(Spec::sign).collect();
        everything.push(old.clone());
        everything.push(new.clone());
        prop_assert_eq!(&decision, &shape(&reference(&everything, &setup)));

        prop_assert_eq!(engine.offer(old), Offer::Stale { current: new.event().id });
        for d in everything {
            let offered = engine.offer(d);
            prop_assert!(
                !matches!(offered, Offer::Accepted { .. }),
                "a replay was accepted: {:?}",
                offered
            );
        }
        prop_assert_eq!(shape(&setup.decide(&engine)), decision);
        prop_assert_eq!(ids(&engine), state);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Rule 3: voters naming different artifacts for the same version never
    /// add up.
    #[test]
    fn different_hashes_for_the_same_version_never_add_up(
        choices in prop::collection::vec(0..HASHES.len(), POOL as usize),
        quorum in 1..=POOL as usize,
    ) {
        check_split_vote(&choices, quorum, |c| proposal_directive("upgrade", "1.2.3", HASHES[c], None));
    }

    /// Rule 3: `v1.2.3` and `1.2.3` are different proposals: they never add
    /// up, and can only conflict.
    #[test]
    fn v_prefixed_and_bare_versions_never_add_up(
        choices in prop::collection::vec(0..2usize, POOL as usize),
        quorum in 1..=POOL as usize,
    ) {
        check_split_vote(&choices, quorum, |c| {
            proposal_directive("upgrade", ["1.2.3", "v1.2.3"][c], HASHES[0], None)
        });
    }
}
