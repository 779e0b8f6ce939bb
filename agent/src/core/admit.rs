//! Admission: the one check that decides whether an event is a directive
//! this node may count (`docs/PROTOCOL.md` section 5.1).
//!
//! Every boundary that accepts a directive calls [`admit`]: the worker's
//! filter, the monitor's re-verification of what the worker forwards, the
//! load of persisted directives at start, and `govctl status`. The checks
//! run cheapest first, so a flood of events from strangers costs a set
//! lookup each:
//!
//! 1. the author is among the voters ([`Rejection::NotAVoter`]);
//! 2. the HyperQube rules of [`Directive::from_event_including_expired`]
//!    (kind, `d` tag, network, tags, future skew) ([`Rejection::Rules`]).
//!
//! The id and BIP-340 signature were checked when the [`Event`] was made:
//! only [`crate::core::event::UnverifiedEvent::verify`] produces one.
//! Expired directives are admitted: they still supersede their author's
//! older ones, and the quorum engine never counts them.

use std::collections::BTreeSet;
use std::fmt;

use crate::core::directive::{Directive, DirectiveError, DirectiveRules};
use crate::core::event::Event;

/// Whose directives may be admitted.
#[derive(Debug, Clone, Copy)]
pub enum Authors<'a> {
    /// Only these 32-byte x-only pubkeys (the config's voters, or for
    /// `govctl status` its follows).
    Only(&'a BTreeSet<[u8; 32]>),
    /// Anyone: for tools that show every author's directive (`govctl
    /// status` without a config). Never used by the agent.
    Any,
}

impl Authors<'_> {
    /// Whether `author` (32-byte x-only pubkey) may be admitted.
    pub fn contains(&self, author: &[u8; 32]) -> bool {
        match self {
            Authors::Only(set) => set.contains(author),
            Authors::Any => true,
        }
    }
}

/// Why an event was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The author is not among the admitted authors.
    NotAVoter {
        /// The event's pubkey, 32 bytes.
        author: [u8; 32],
    },
    /// The event breaks a HyperQube directive rule.
    Rules(DirectiveError),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NotAVoter { author } => {
                write!(f, "author {} is not a voter", hex::encode(author))
            }
            Rejection::Rules(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Rejection {}

/// Admits `event` as a directive of one of `authors` under `rules` at `now`
/// (unix seconds), expired or not. See the module documentation for the
/// order of the checks.
///
/// # Errors
/// [`Rejection::NotAVoter`] before any other check; then
/// [`Rejection::Rules`] with the first rule broken.
pub fn admit(
    event: Event,
    rules: &DirectiveRules,
    authors: Authors<'_>,
    now: u64,
) -> Result<Directive, Rejection> {
    if !authors.contains(&event.pubkey) {
        return Err(Rejection::NotAVoter {
            author: event.pubkey,
        });
    }
    Directive::from_event_including_expired(event, rules, now).map_err(Rejection::Rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::directive::tests::{keys, rules, sign, upgrade_tags, HASH, NOW};

    #[test]
    fn a_voter_with_a_valid_directive_is_admitted() {
        let voter = keys(1);
        let voters = BTreeSet::from([voter.public_key()]);
        let event = sign(&voter, NOW, upgrade_tags("v1.2.3", HASH));
        let d = admit(event, &rules(), Authors::Only(&voters), NOW).unwrap();
        assert_eq!(d.author(), &voter.public_key());
    }

    #[test]
    fn a_stranger_is_refused_before_the_rules_are_read() {
        let voters = BTreeSet::from([keys(1).public_key()]);
        let stranger = keys(2);
        // Wrong network too: the voter check must come first.
        let mut tags = upgrade_tags("v1.2.3", HASH);
        for t in &mut tags {
            if t.first().map(String::as_str) == Some("network") {
                t[1] = "other".into();
            }
        }
        let event = sign(&stranger, NOW, tags);
        assert_eq!(
            admit(event, &rules(), Authors::Only(&voters), NOW),
            Err(Rejection::NotAVoter {
                author: stranger.public_key()
            })
        );
    }

    #[test]
    fn a_voter_breaking_a_rule_is_refused_with_that_rule() {
        let voter = keys(1);
        let voters = BTreeSet::from([voter.public_key()]);
        let event = sign(&voter, NOW + 3600, upgrade_tags("v1.2.3", HASH));
        let err = admit(event, &rules(), Authors::Only(&voters), NOW).unwrap_err();
        assert!(
            matches!(err, Rejection::Rules(DirectiveError::FromFuture { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn any_admits_every_author_but_still_applies_the_rules() {
        let event = sign(&keys(3), NOW, upgrade_tags("v1.2.3", HASH));
        assert!(admit(event, &rules(), Authors::Any, NOW).is_ok());
        let late = sign(&keys(3), NOW + 3600, upgrade_tags("v1.2.3", HASH));
        assert!(admit(late, &rules(), Authors::Any, NOW).is_err());
    }
}
