//! The quorum engine: which proposal, if any, a quorum of voters agrees on
//! (`docs/PROTOCOL.md` sections 4 and 5).
//!
//! Pure: no I/O, no clock. The caller feeds it [`Directive`]s (already
//! verified and validated) with [`Engine::offer`], asks [`Engine::decide`]
//! after every accepted directive and when a timer for [`Engine::next_expiry`]
//! fires, and persists [`Engine::directives`] so that a restart cannot revive
//! a superseded vote ([`Engine::from_directives`]).
//!
//! Rules, as implemented:
//! * (2) one current directive per voter: greatest `created_at`, ties broken
//!   by lowest id; older or equal events are [`Offer::Stale`]. Only voters'
//!   directives are kept.
//! * (3) votes are counted per exact [`Proposal`] tuple, over current
//!   directives that have not expired at `now` (NIP-40, see
//!   [`Directive::is_expired_at`]).
//! * (4) a proposal is eligible when it has at least `quorum` votes, is not
//!   already done (the caller's journal), and, for an upgrade, its version is
//!   newer than the installed one unless `allow_downgrade`.
//! * (5) among eligible proposals the highest version (SemVer precedence,
//!   leading `v` and build metadata ignored) wins; two different eligible
//!   proposals with that version are a [`Decision::Conflict`] and nothing runs.
//! * (7) [`check_quorum`]: `1 <= quorum <= voters`, warning when
//!   `quorum <= voters / 2`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::core::directive::{Action, Directive, Proposal};

/// The engine's configuration: who votes and how many must agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumConfig {
    /// 32-byte x-only public keys of the follows with role `voter`.
    /// Observers are not listed: they never count.
    pub voters: BTreeSet<[u8; 32]>,
    /// Distinct voters that must sign the same proposal, `1..=voters.len()`.
    pub quorum: usize,
    /// Let an upgrade run that is not newer than the installed version
    /// (turns off anti-rollback).
    pub allow_downgrade: bool,
    /// Refuse every upgrade while the installed version is unknown
    /// ([`Standing::InstalledUnknown`]): the agent sets it, so that a
    /// fresh node never acts on the fleet's newest directive whatever it
    /// runs; a fleet view (govctl) that knows no node's version does not.
    pub require_installed: bool,
    /// This node's 32-byte pubkey: a proposal whose wave (`rollout`,
    /// `node` tags) leaves it out is [`Standing::NotInWave`] here. `None`
    /// (a fleet view) counts every wave.
    pub node: Option<[u8; 32]>,
}

/// A configuration the engine refuses (`docs/PROTOCOL.md` section 5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuorumError {
    /// No follow has role `voter`.
    NoVoters,
    /// `quorum` is not in `1..=voters`.
    OutOfRange {
        /// The configured quorum.
        quorum: usize,
        /// The number of voters.
        voters: usize,
    },
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuorumError::NoVoters => f.write_str("no follow has role \"voter\""),
            QuorumError::OutOfRange { quorum, voters } => write!(
                f,
                "quorum {quorum} is outside 1..={voters} (the number of voters)"
            ),
        }
    }
}

impl std::error::Error for QuorumError {}

/// Checks a quorum against the number of voters (`docs/PROTOCOL.md` section 5.7).
///
/// Returns the warnings (lower-case sentences) to show the operator: one when
/// `quorum <= voters / 2`, since two disjoint groups of voters could then
/// each reach quorum on conflicting proposals.
///
/// # Errors
/// [`QuorumError::NoVoters`] when `voters` is 0; [`QuorumError::OutOfRange`]
/// when `quorum` is 0 or more than `voters`.
pub fn check_quorum(quorum: usize, voters: usize) -> Result<Vec<String>, QuorumError> {
    if voters == 0 {
        return Err(QuorumError::NoVoters);
    }
    if quorum == 0 || quorum > voters {
        return Err(QuorumError::OutOfRange { quorum, voters });
    }
    let mut warnings = Vec::new();
    if quorum <= voters / 2 {
        warnings.push(format!(
            "quorum {quorum} of {voters} voters is not a majority: two groups of \
             voters can each reach quorum on conflicting proposals"
        ));
    }
    Ok(warnings)
}

/// What [`Engine::offer`] did with a directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// It is now its author's current directive; evaluate
    /// [`Engine::decide`] and persist [`Engine::directives`].
    Accepted {
        /// Id of the directive it replaced, if the author had one.
        replaced: Option<[u8; 32]>,
    },
    /// Its author is not a voter; it was dropped.
    NotAVoter,
    /// Its author's current directive is newer or the same event (NIP-01
    /// replaceable rule); it was dropped.
    Stale {
        /// Id of the author's current directive.
        current: [u8; 32],
    },
}

/// Where a proposal stands, as listed by [`Engine::tally`].
///
/// Reasons for not being eligible are reported in this priority: invalid
/// version, already done, not newer than installed, below quorum, outside
/// the wave, installed version unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Standing {
    /// Eligible and the unique highest version: this proposal runs.
    Runs,
    /// Eligible, but another eligible proposal has the same highest version
    /// (SemVer precedence): nothing runs.
    Conflict,
    /// Eligible, but an eligible proposal with a higher version wins.
    Outranked {
        /// The winning version (its SemVer precedence).
        by: semver::Version,
    },
    /// Below quorum.
    BelowQuorum {
        /// Distinct voters whose current, unexpired directive is this proposal.
        votes: usize,
        /// The configured quorum.
        quorum: usize,
    },
    /// The caller's journal says it was already carried out.
    AlreadyDone,
    /// An upgrade not newer than the installed version (anti-rollback).
    NotNewer {
        /// The installed version.
        installed: semver::Version,
    },
    /// The version is not SemVer (impossible for a proposal from a
    /// [`Directive`]).
    InvalidVersion,
    /// A proposal with its quorum whose wave (`rollout`, `node` tags)
    /// leaves this node out (`docs/PROTOCOL.md` section 5.8).
    NotInWave {
        /// The proposal's `rollout` percentage, if any.
        rollout: Option<u8>,
        /// This node's position for the proposal, 0 to 99.
        position: u8,
    },
    /// An upgrade with its quorum, refused because the installed version
    /// is unknown ([`QuorumConfig::require_installed`]): set
    /// `current_version` or `version_command`.
    InstalledUnknown,
}

impl Standing {
    /// Whether the proposal is eligible (rule 4), whether or not it runs.
    pub fn is_eligible(&self) -> bool {
        matches!(
            self,
            Standing::Runs | Standing::Conflict | Standing::Outranked { .. }
        )
    }
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Standing::Runs => f.write_str("runs"),
            Standing::Conflict => {
                f.write_str("conflict: another eligible proposal has the same version")
            }
            Standing::Outranked { by } => write!(f, "eligible, outranked by version {by}"),
            Standing::BelowQuorum { votes, quorum } => {
                write!(f, "{votes} of {quorum} votes needed")
            }
            Standing::AlreadyDone => f.write_str("already done"),
            Standing::NotNewer { installed } => write!(
                f,
                "not newer than the installed version {installed} (anti-rollback)"
            ),
            Standing::InvalidVersion => f.write_str("version is not a semantic version"),
            Standing::NotInWave { rollout, position } => match rollout {
                Some(percent) => write!(
                    f,
                    "outside the wave: rollout {percent}% takes positions below {percent}, this node is at {position} and not named"
                ),
                None => f.write_str("outside the wave: this node is not named"),
            },
            Standing::InstalledUnknown => f.write_str(
                "refused: the installed version is unknown (set current_version or version_command)",
            ),
        }
    }
}

/// One proposal in a [`Engine::tally`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalStatus {
    /// The exact tuple voted for.
    pub proposal: Proposal,
    /// Voters whose current, unexpired directive is this proposal, sorted.
    pub voters: Vec<[u8; 32]>,
    /// Whether it runs, and if not, why.
    pub standing: Standing,
}

/// What to do now (`docs/PROTOCOL.md` sections 5.4 and 5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No proposal is eligible.
    Nothing,
    /// Run this proposal.
    Run {
        /// The proposal that won.
        proposal: Proposal,
        /// Every voter's current directive for it (at least `quorum`),
        /// sorted by author pubkey: the ids and authors for the ack.
        directives: Vec<Directive>,
    },
    /// Two or more different eligible proposals share the highest version:
    /// nothing runs. Sorted by [`Proposal`]'s `Ord`.
    Conflict(Vec<Proposal>),
}

/// The quorum engine: the current directive of each voter and the rules to
/// count them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    config: QuorumConfig,
    current: BTreeMap<[u8; 32], Directive>,
}

impl Engine {
    /// An engine with no directives.
    ///
    /// # Errors
    /// The errors of [`check_quorum`] for `config.quorum` and the number of
    /// voters (warnings are for the caller to get from [`check_quorum`]).
    pub fn new(config: QuorumConfig) -> Result<Engine, QuorumError> {
        check_quorum(config.quorum, config.voters.len())?;
        Ok(Engine {
            config,
            current: BTreeMap::new(),
        })
    }

    /// An engine holding persisted directives, offered in the given order.
    ///
    /// Directives of authors who are no longer voters, and superseded ones,
    /// are dropped. The caller should re-verify each event and rebuild each
    /// directive with [`Directive::from_event_including_expired`], so that an
    /// expired but current directive keeps superseding its author's older
    /// ones.
    ///
    /// # Errors
    /// As [`Engine::new`].
    pub fn from_directives(
        config: QuorumConfig,
        directives: impl IntoIterator<Item = Directive>,
    ) -> Result<Engine, QuorumError> {
        let mut engine = Engine::new(config)?;
        for directive in directives {
            engine.offer(directive);
        }
        Ok(engine)
    }

    /// The configuration.
    pub fn config(&self) -> &QuorumConfig {
        &self.config
    }

    /// Offers a directive (`docs/PROTOCOL.md` section 5.2): it becomes its
    /// author's current directive if the author is a voter and it supersedes
    /// the current one ([`Directive::supersedes`]).
    ///
    /// An expired directive is accepted like any other (it supersedes older
    /// ones) but never counts as a vote.
    pub fn offer(&mut self, directive: Directive) -> Offer {
        let author = *directive.author();
        if !self.config.voters.contains(&author) {
            return Offer::NotAVoter;
        }
        let replaced = match self.current.get(&author) {
            Some(current) if !directive.supersedes(current) => {
                return Offer::Stale {
                    current: current.event().id,
                };
            }
            Some(current) => Some(current.event().id),
            None => None,
        };
        self.current.insert(author, directive);
        Offer::Accepted { replaced }
    }

    /// The current directive of `voter`, if any (expired or not).
    pub fn current(&self, voter: &[u8; 32]) -> Option<&Directive> {
        self.current.get(voter)
    }

    /// Every voter's current directive (expired ones included), sorted by
    /// author pubkey: what to persist.
    pub fn directives(&self) -> impl Iterator<Item = &Directive> + '_ {
        self.current.values()
    }

    /// The earliest `expiration` (unix seconds) after `now` among current
    /// directives: when to evaluate [`Engine::decide`] again for expiry.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        self.current
            .values()
            .filter_map(Directive::expiration)
            .filter(|&expiration| expiration > now)
            .min()
    }

    /// Every proposal with at least one vote at `now` (unix seconds), its
    /// voters and its [`Standing`], highest version first (then by
    /// [`Proposal`]'s `Ord`). For a `status` command; [`Engine::decide`] is
    /// this list's verdict.
    ///
    /// `installed` is the installed version (no anti-rollback floor when
    /// `None`); `already_done` says whether the journal holds a proposal.
    pub fn tally(
        &self,
        now: u64,
        installed: Option<&semver::Version>,
        already_done: &dyn Fn(&Proposal) -> bool,
    ) -> Vec<ProposalStatus> {
        self.evaluate(now, installed, already_done)
            .into_iter()
            .map(|entry| ProposalStatus {
                proposal: entry.proposal.clone(),
                voters: entry.directives.iter().map(|d| *d.author()).collect(),
                standing: entry.standing,
            })
            .collect()
    }

    /// What to do at `now` (unix seconds), `docs/PROTOCOL.md` sections 4 to 5.5.
    ///
    /// `installed` and `already_done` as in [`Engine::tally`].
    pub fn decide(
        &self,
        now: u64,
        installed: Option<&semver::Version>,
        already_done: &dyn Fn(&Proposal) -> bool,
    ) -> Decision {
        let entries = self.evaluate(now, installed, already_done);
        if let Some(winner) = entries.iter().find(|e| e.standing == Standing::Runs) {
            return Decision::Run {
                proposal: winner.proposal.clone(),
                directives: winner.directives.iter().map(|&d| d.clone()).collect(),
            };
        }
        let mut conflict: Vec<Proposal> = entries
            .iter()
            .filter(|e| e.standing == Standing::Conflict)
            .map(|e| e.proposal.clone())
            .collect();
        if conflict.is_empty() {
            return Decision::Nothing;
        }
        conflict.sort();
        Decision::Conflict(conflict)
    }

    /// Tallies and ranks every proposal; the single place rules 3 to 5 live.
    fn evaluate<'a>(
        &'a self,
        now: u64,
        installed: Option<&semver::Version>,
        already_done: &dyn Fn(&Proposal) -> bool,
    ) -> Vec<Entry<'a>> {
        // Rule 3: votes per exact tuple, from current, unexpired directives.
        // `current` is keyed by author, so each voter counts at most once and
        // the directive lists come out sorted by pubkey.
        let mut by_proposal: BTreeMap<&Proposal, Vec<&Directive>> = BTreeMap::new();
        for directive in self.current.values() {
            if !directive.is_expired_at(now) {
                by_proposal
                    .entry(directive.proposal())
                    .or_default()
                    .push(directive);
            }
        }

        // Rule 4: eligibility.
        let mut entries: Vec<Entry<'a>> = by_proposal
            .into_iter()
            .map(|(proposal, directives)| {
                let version = proposal.semver().ok();
                let standing = self.eligibility(
                    proposal,
                    version.as_ref(),
                    directives.len(),
                    installed,
                    already_done,
                );
                Entry {
                    proposal,
                    version,
                    directives,
                    standing,
                }
            })
            .collect();

        // Rule 5: the highest eligible version wins, unless it is shared.
        let top = entries
            .iter()
            .filter(|e| e.standing.is_eligible())
            .filter_map(|e| e.version.clone())
            .max_by(semver::Version::cmp_precedence);
        if let Some(top) = top {
            let at_top = |e: &Entry<'_>| {
                e.version
                    .as_ref()
                    .is_some_and(|v| v.cmp_precedence(&top) == Ordering::Equal)
            };
            let tied = entries
                .iter()
                .filter(|e| e.standing.is_eligible() && at_top(e))
                .count();
            for entry in entries.iter_mut().filter(|e| e.standing.is_eligible()) {
                entry.standing = if !at_top(entry) {
                    Standing::Outranked { by: top.clone() }
                } else if tied == 1 {
                    Standing::Runs
                } else {
                    Standing::Conflict
                };
            }
        }

        entries.sort_by(|a, b| {
            by_precedence_desc(a.version.as_ref(), b.version.as_ref())
                .then_with(|| a.proposal.cmp(b.proposal))
        });
        entries
    }

    /// Rule 4 for one proposal: [`Standing::Runs`] as a placeholder for
    /// "eligible", or the first reason it is not.
    fn eligibility(
        &self,
        proposal: &Proposal,
        version: Option<&semver::Version>,
        votes: usize,
        installed: Option<&semver::Version>,
        already_done: &dyn Fn(&Proposal) -> bool,
    ) -> Standing {
        let Some(version) = version else {
            return Standing::InvalidVersion;
        };
        if already_done(proposal) {
            return Standing::AlreadyDone;
        }
        if proposal.action == Action::Upgrade && !self.config.allow_downgrade {
            if let Some(installed) = installed {
                if version.cmp_precedence(installed) != Ordering::Greater {
                    return Standing::NotNewer {
                        installed: installed.clone(),
                    };
                }
            }
        }
        if votes < self.config.quorum {
            return Standing::BelowQuorum {
                votes,
                quorum: self.config.quorum,
            };
        }
        if let Some(node) = &self.config.node {
            if !proposal.in_wave(node) {
                return Standing::NotInWave {
                    rollout: proposal.rollout,
                    position: proposal.wave_position(node),
                };
            }
        }
        if proposal.action == Action::Upgrade
            && installed.is_none()
            && self.config.require_installed
        {
            return Standing::InstalledUnknown;
        }
        Standing::Runs
    }
}

/// A proposal being ranked.
struct Entry<'a> {
    proposal: &'a Proposal,
    version: Option<semver::Version>,
    directives: Vec<&'a Directive>,
    standing: Standing,
}

/// Highest precedence first; unparsable versions last.
fn by_precedence_desc(a: Option<&semver::Version>, b: Option<&semver::Version>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.cmp_precedence(a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directive::tests::{directive, keys, reboot_tags, upgrade_tags, HASH, NOW};

    const HASH_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn pk(n: u8) -> [u8; 32] {
        keys(n).public_key()
    }

    fn config(voters: &[u8], quorum: usize) -> QuorumConfig {
        QuorumConfig {
            require_installed: false,
            node: None,
            voters: voters.iter().map(|&n| pk(n)).collect(),
            quorum,
            allow_downgrade: false,
        }
    }

    fn never(_: &Proposal) -> bool {
        false
    }

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).unwrap()
    }

    fn with_expiration(mut tags: Vec<Vec<String>>, exp: u64) -> Vec<Vec<String>> {
        tags.push(vec!["expiration".into(), exp.to_string()]);
        tags
    }

    fn engine(voters: &[u8], quorum: usize, ds: Vec<Directive>) -> Engine {
        Engine::from_directives(config(voters, quorum), ds).unwrap()
    }

    fn run_voters(decision: &Decision) -> Vec<[u8; 32]> {
        match decision {
            Decision::Run { directives, .. } => directives.iter().map(|d| *d.author()).collect(),
            other => panic!("expected a run, got {other:?}"),
        }
    }

    #[test]
    fn check_quorum_bounds_and_warning() {
        assert_eq!(check_quorum(1, 0), Err(QuorumError::NoVoters));
        assert_eq!(
            check_quorum(0, 3),
            Err(QuorumError::OutOfRange {
                quorum: 0,
                voters: 3
            })
        );
        let err = check_quorum(4, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "quorum 4 is outside 1..=3 (the number of voters)"
        );
        assert_eq!(
            QuorumError::NoVoters.to_string(),
            "no follow has role \"voter\""
        );
        assert_eq!(check_quorum(3, 5).unwrap(), Vec::<String>::new());
        assert_eq!(check_quorum(3, 3).unwrap(), Vec::<String>::new());
        assert_eq!(check_quorum(1, 1).unwrap(), Vec::<String>::new());
        for (q, n) in [(2, 5), (2, 4), (1, 2), (3, 6)] {
            let warnings = check_quorum(q, n).unwrap();
            assert_eq!(warnings.len(), 1, "{q} of {n}");
            assert!(warnings[0].contains("not a majority"));
        }
        assert!(Engine::new(config(&[1, 2], 3)).is_err());
    }

    #[test]
    fn offer_keeps_one_current_directive_per_voter() {
        let mut e = Engine::new(config(&[1, 2], 1)).unwrap();
        let old = directive(1, NOW - 20, upgrade_tags("1.2.3", HASH));
        let new = directive(1, NOW - 10, upgrade_tags("1.2.4", HASH));
        assert_eq!(e.offer(old.clone()), Offer::Accepted { replaced: None });
        assert_eq!(
            e.offer(new.clone()),
            Offer::Accepted {
                replaced: Some(old.event().id)
            }
        );
        assert_eq!(
            e.offer(old),
            Offer::Stale {
                current: new.event().id
            }
        );
        assert_eq!(
            e.offer(new.clone()),
            Offer::Stale {
                current: new.event().id
            }
        );
        assert_eq!(e.current(&pk(1)), Some(&new));
        assert_eq!(e.directives().count(), 1);
        let observer = directive(3, NOW, upgrade_tags("1.2.3", HASH));
        assert_eq!(e.offer(observer), Offer::NotAVoter);
        assert_eq!(e.current(&pk(3)), None);
    }

    #[test]
    fn equal_created_at_lowest_id_wins_in_either_order() {
        let a = directive(1, NOW - 10, upgrade_tags("1.2.3", HASH));
        let b = directive(1, NOW - 10, upgrade_tags("2.0.0", HASH));
        let winner = if a.event().id < b.event().id { &a } else { &b };
        for order in [[&a, &b], [&b, &a]] {
            let e = engine(&[1], 1, order.iter().map(|d| (*d).clone()).collect());
            assert_eq!(e.current(&pk(1)), Some(winner));
        }
    }

    #[test]
    fn quorum_of_identical_tuples_runs() {
        let ds = (1..=3)
            .map(|n| directive(n, NOW - 10, upgrade_tags("v1.3.0", HASH)))
            .collect();
        let e = engine(&[1, 2, 3, 4], 3, ds);
        let decision = e.decide(NOW, Some(&v("1.2.0")), &never);
        let Decision::Run { proposal, .. } = &decision else {
            panic!("{decision:?}")
        };
        assert_eq!(proposal.version, "v1.3.0");
        let mut expected = vec![pk(1), pk(2), pk(3)];
        expected.sort();
        assert_eq!(run_voters(&decision), expected);
    }

    #[test]
    fn below_quorum_nothing_runs() {
        let ds = (1..=2)
            .map(|n| directive(n, NOW - 10, upgrade_tags("1.3.0", HASH)))
            .collect();
        let e = engine(&[1, 2, 3], 3, ds);
        assert_eq!(e.decide(NOW, None, &never), Decision::Nothing);
        let tally = e.tally(NOW, None, &never);
        assert_eq!(tally.len(), 1);
        assert_eq!(
            tally[0].standing,
            Standing::BelowQuorum {
                votes: 2,
                quorum: 3
            }
        );
        assert_eq!(tally[0].standing.to_string(), "2 of 3 votes needed");
    }

    #[test]
    fn different_hashes_and_v_prefix_never_add_up() {
        let ds = vec![
            directive(1, NOW - 10, upgrade_tags("1.3.0", HASH)),
            directive(2, NOW - 10, upgrade_tags("1.3.0", HASH_B)),
            directive(3, NOW - 10, upgrade_tags("v1.3.0", HASH)),
        ];
        let e = engine(&[1, 2, 3], 2, ds);
        assert_eq!(e.decide(NOW, None, &never), Decision::Nothing);
        assert_eq!(e.tally(NOW, None, &never).len(), 3);
    }

    #[test]
    fn same_version_different_tuples_with_quorum_conflict() {
        let ds = vec![
            directive(1, NOW - 10, upgrade_tags("1.3.0", HASH)),
            directive(2, NOW - 10, upgrade_tags("1.3.0", HASH)),
            directive(3, NOW - 10, upgrade_tags("v1.3.0", HASH)),
            directive(4, NOW - 10, upgrade_tags("v1.3.0", HASH)),
            directive(5, NOW - 10, upgrade_tags("1.1.0", HASH)),
        ];
        let e = engine(&[1, 2, 3, 4, 5], 2, ds.clone());
        let Decision::Conflict(proposals) = e.decide(NOW, None, &never) else {
            panic!()
        };
        let versions: Vec<&str> = proposals.iter().map(|p| p.version.as_str()).collect();
        assert_eq!(versions, ["1.3.0", "v1.3.0"]);
        let tally = e.tally(NOW, None, &never);
        assert_eq!(tally[0].standing, Standing::Conflict);
        assert_eq!(tally[1].standing, Standing::Conflict);
        assert_eq!(
            tally[2].standing,
            Standing::BelowQuorum {
                votes: 1,
                quorum: 2
            }
        );
        // Build metadata does not make a version higher: still a conflict.
        let ds = vec![
            directive(1, NOW - 10, upgrade_tags("1.3.0+a", HASH)),
            directive(2, NOW - 10, upgrade_tags("1.3.0+a", HASH)),
            directive(3, NOW - 10, upgrade_tags("1.3.0+b", HASH)),
            directive(4, NOW - 10, upgrade_tags("1.3.0+b", HASH)),
        ];
        let e = engine(&[1, 2, 3, 4], 2, ds);
        assert!(matches!(e.decide(NOW, None, &never), Decision::Conflict(p) if p.len() == 2));
    }

    #[test]
    fn highest_eligible_version_wins_and_lower_is_outranked() {
        let ds = vec![
            directive(1, NOW - 10, upgrade_tags("1.3.0", HASH)),
            directive(2, NOW - 10, upgrade_tags("1.3.0", HASH)),
            directive(3, NOW - 10, upgrade_tags("2.0.0-rc.1", HASH)),
            directive(4, NOW - 10, upgrade_tags("2.0.0-rc.1", HASH)),
            directive(5, NOW - 10, upgrade_tags("9.0.0", HASH)),
        ];
        let e = engine(&[1, 2, 3, 4, 5], 2, ds);
        let decision = e.decide(NOW, None, &never);
        let Decision::Run { proposal, .. } = &decision else {
            panic!("{decision:?}")
        };
        assert_eq!(proposal.version, "2.0.0-rc.1");
        let tally = e.tally(NOW, None, &never);
        let standings: Vec<_> = tally.iter().map(|s| s.standing.clone()).collect();
        assert_eq!(
            standings,
            [
                Standing::BelowQuorum {
                    votes: 1,
                    quorum: 2
                },
                Standing::Runs,
                Standing::Outranked {
                    by: v("2.0.0-rc.1")
                },
            ]
        );
        // Once the winner is done, the next eligible one runs.
        let done = |p: &Proposal| p.version == "2.0.0-rc.1";
        let Decision::Run { proposal, .. } = e.decide(NOW, None, &done) else {
            panic!()
        };
        assert_eq!(proposal.version, "1.3.0");
        assert_eq!(e.tally(NOW, None, &done)[1].standing, Standing::AlreadyDone);
    }

    #[test]
    fn anti_rollback_unless_allowed_and_reboots_exempt() {
        let ds: Vec<Directive> = (1..=2)
            .map(|n| directive(n, NOW - 10, upgrade_tags("v1.2.0", HASH)))
            .collect();
        let e = engine(&[1, 2], 2, ds.clone());
        for installed in ["1.2.0", "1.2.0+other", "1.3.0"] {
            assert_eq!(
                e.decide(NOW, Some(&v(installed)), &never),
                Decision::Nothing
            );
        }
        assert_eq!(
            e.tally(NOW, Some(&v("1.3.0")), &never)[0].standing,
            Standing::NotNewer {
                installed: v("1.3.0")
            }
        );
        assert!(matches!(
            e.decide(NOW, Some(&v("1.2.0-rc.1")), &never),
            Decision::Run { .. }
        ));
        assert!(matches!(e.decide(NOW, None, &never), Decision::Run { .. }));

        let mut allow = config(&[1, 2], 2);
        allow.allow_downgrade = true;
        let e = Engine::from_directives(allow, ds).unwrap();
        assert!(matches!(
            e.decide(NOW, Some(&v("1.3.0")), &never),
            Decision::Run { .. }
        ));

        let ds = (1..=2)
            .map(|n| directive(n, NOW - 10, reboot_tags()))
            .collect();
        let e = engine(&[1, 2], 2, ds);
        let Decision::Run { proposal, .. } = e.decide(NOW, Some(&v("5.0.0")), &never) else {
            panic!()
        };
        assert_eq!(proposal.action, Action::Reboot);
    }

    #[test]
    fn already_done_never_runs_again() {
        let ds = (1..=2)
            .map(|n| directive(n, NOW - 10, upgrade_tags("1.3.0", HASH)))
            .collect();
        let e = engine(&[1, 2], 2, ds);
        let all = |_: &Proposal| true;
        assert_eq!(e.decide(NOW, None, &all), Decision::Nothing);
        assert_eq!(e.tally(NOW, None, &all)[0].standing, Standing::AlreadyDone);
    }

    #[test]
    fn expired_directives_stop_counting_and_do_not_revive_older_votes() {
        let old: Vec<Directive> = (1..=2)
            .map(|n| directive(n, NOW - 100, upgrade_tags("1.3.0", HASH)))
            .collect();
        let newer_expiring = directive(
            1,
            NOW - 50,
            with_expiration(upgrade_tags("1.3.0", HASH), NOW + 30),
        );
        let mut e = engine(&[1, 2], 2, old.clone());
        assert!(matches!(e.offer(newer_expiring), Offer::Accepted { .. }));
        assert!(matches!(e.decide(NOW, None, &never), Decision::Run { .. }));
        assert_eq!(e.next_expiry(NOW), Some(NOW + 30));
        assert!(matches!(
            e.decide(NOW + 29, None, &never),
            Decision::Run { .. }
        ));
        assert_eq!(e.decide(NOW + 30, None, &never), Decision::Nothing);
        assert_eq!(e.next_expiry(NOW + 30), None);
        // The replayed older directive of voter 1 stays superseded.
        assert!(matches!(e.offer(old[0].clone()), Offer::Stale { .. }));
        assert_eq!(e.decide(NOW + 30, None, &never), Decision::Nothing);
        assert!(e.tally(NOW + 30, None, &never)[0].voters == vec![pk(2)]);
        // And after a reload from the persisted directives.
        let reloaded =
            Engine::from_directives(e.config().clone(), e.directives().cloned()).unwrap();
        assert_eq!(reloaded, e);
    }

    #[test]
    fn from_directives_drops_non_voters_and_superseded() {
        let ds = vec![
            directive(1, NOW - 10, upgrade_tags("1.3.0", HASH)),
            directive(1, NOW - 20, upgrade_tags("1.2.0", HASH)),
            directive(9, NOW - 10, upgrade_tags("1.3.0", HASH)),
        ];
        let e = engine(&[1, 2], 1, ds);
        let kept: Vec<&str> = e
            .directives()
            .map(|d| d.proposal().version.as_str())
            .collect();
        assert_eq!(kept, ["1.3.0"]);
    }

    #[test]
    fn standing_text() {
        assert_eq!(Standing::Runs.to_string(), "runs");
        assert_eq!(
            Standing::NotNewer {
                installed: v("1.2.3")
            }
            .to_string(),
            "not newer than the installed version 1.2.3 (anti-rollback)"
        );
    }

    #[test]
    fn a_node_outside_the_wave_sits_the_proposal_out() {
        let mut tags = upgrade_tags("1.3.0", HASH);
        tags.push(vec!["crit".into(), "rollout".into(), "node".into()]);
        tags.push(vec!["rollout".into(), "1".into()]);
        let d = directive(1, NOW - 10, tags);
        let proposal = d.proposal().clone();
        // Find a node inside (named) and one outside the 1 % wave.
        let outside = (0u8..=255)
            .map(|n| [n; 32])
            .find(|k| proposal.wave_position(k) >= 1)
            .unwrap();
        let mut cfg = config(&[1], 1);
        cfg.node = Some(outside);
        let e = Engine::from_directives(cfg, [d.clone()]).unwrap();
        assert_eq!(e.decide(NOW, Some(&v("1.2.0")), &never), Decision::Nothing);
        let standing = &e.tally(NOW, Some(&v("1.2.0")), &never)[0].standing;
        assert!(
            matches!(
                standing,
                Standing::NotInWave {
                    rollout: Some(1),
                    ..
                }
            ),
            "{standing:?}"
        );
        assert!(
            standing.to_string().starts_with("outside the wave"),
            "{standing}"
        );
        // A fleet view (no node) and a node in the wave run it.
        let e = Engine::from_directives(config(&[1], 1), [d.clone()]).unwrap();
        assert!(matches!(
            e.decide(NOW, Some(&v("1.2.0")), &never),
            Decision::Run { .. }
        ));
        let mut cfg = config(&[1], 1);
        cfg.node = Some([7; 32]);
        let mut tags = upgrade_tags("1.3.0", HASH);
        tags.push(vec!["crit".into(), "node".into()]);
        tags.push(vec!["node".into(), hex::encode([7u8; 32])]);
        let named = directive(1, NOW - 10, tags);
        let e = Engine::from_directives(cfg, [named]).unwrap();
        assert!(matches!(
            e.decide(NOW, Some(&v("1.2.0")), &never),
            Decision::Run { .. }
        ));
    }
}
