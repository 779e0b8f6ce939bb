//! Everything derived from a [`Config`] that more than one program needs:
//! the agent's monitor, `qube-agent status` and `govctl status`/`verify`
//! all call these, so they can never tally with different voters, quorum or
//! rules than the running agent.

use std::collections::BTreeSet;

use super::Config;
use crate::core::directive::DirectiveRules;
use crate::core::quorum::QuorumConfig;
use crate::core::version::Version;

impl Config {
    /// The voters' pubkeys, 32-byte x-only keys (observers excluded).
    pub fn voter_keys(&self) -> BTreeSet<[u8; 32]> {
        self.voters().map(|f| *f.pubkey()).collect()
    }

    /// The quorum engine's configuration (`docs/PROTOCOL.md` sections 5.4 and 5.7).
    pub fn quorum_config(&self) -> QuorumConfig {
        QuorumConfig {
            voters: self.voter_keys(),
            quorum: self.quorum(),
            allow_downgrade: self.policy().allow_downgrade(),
            require_installed: true,
            node: None,
        }
    }

    /// The directive rules (`docs/PROTOCOL.md` section 5.1): `d` tag, network
    /// and allowed future skew.
    pub fn directive_rules(&self) -> DirectiveRules {
        DirectiveRules {
            d_tag: self.d_tag().to_owned(),
            network: self.network().to_owned(),
            max_future_skew_secs: self.policy().max_future_skew_secs(),
        }
    }

    /// The node id acks carry: `node_id` from the config, else
    /// [`default_node_id`] of the node's 32-byte pubkey.
    pub fn node_id_for(&self, node_pubkey: &[u8; 32]) -> String {
        self.node_id()
            .map_or_else(|| default_node_id(node_pubkey), str::to_owned)
    }

    /// The installed version anti-rollback compares against, given the
    /// version recorded after the last successful upgrade (as
    /// [`effective_installed`] combines them).
    pub fn effective_installed(&self, recorded: Option<&str>) -> Option<semver::Version> {
        effective_installed(self.current_version().map(Version::semver), recorded)
    }
}

/// The node id used when the config sets none: `node-` and the first 16 hex
/// chars of the node's 32-byte pubkey.
pub fn default_node_id(pubkey: &[u8; 32]) -> String {
    let hex = hex::encode(pubkey);
    format!("node-{}", hex.get(..16).unwrap_or(&hex))
}

/// The installed version anti-rollback compares against: the higher (SemVer
/// precedence) of the configured floor and the recorded version (a leading
/// `v` ignored; an unparsable recorded version is ignored).
pub fn effective_installed(
    configured: Option<&semver::Version>,
    recorded: Option<&str>,
) -> Option<semver::Version> {
    let recorded = recorded.and_then(|v| Version::parse(v).ok().map(Version::into_semver));
    match (recorded, configured.cloned()) {
        (Some(a), Some(b)) => Some(if a.cmp_precedence(&b).is_ge() { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        Version::parse(s).unwrap().into_semver()
    }

    #[test]
    fn effective_installed_takes_the_higher() {
        assert_eq!(effective_installed(None, None), None);
        assert_eq!(
            effective_installed(Some(&v("1.0.0")), None),
            Some(v("1.0.0"))
        );
        assert_eq!(effective_installed(None, Some("v1.1.0")), Some(v("1.1.0")));
        assert_eq!(
            effective_installed(Some(&v("1.2.0")), Some("v1.1.0")),
            Some(v("1.2.0"))
        );
        assert_eq!(
            effective_installed(Some(&v("1.0.0")), Some("v1.1.0")),
            Some(v("1.1.0"))
        );
        assert_eq!(
            effective_installed(Some(&v("1.0.0")), Some("garbage")),
            Some(v("1.0.0"))
        );
    }

    #[test]
    fn default_node_id_is_node_and_16_hex() {
        assert_eq!(default_node_id(&[0xab; 32]), "node-abababababababab");
    }
}
