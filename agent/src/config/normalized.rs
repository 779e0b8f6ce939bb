//! The effective config as TOML, what `qube-agent check-config` prints.

use super::{Config, NodeKeySource, RelayUrl};

impl Config {
    /// The effective config as TOML: every default filled in, public keys
    /// as npub, relays in canonical form, unset optional keys as comments.
    /// Parsing the output gives back an equal [`Config`].
    pub fn normalized_toml(&self) -> String {
        let mut out = String::from("# qube-agent effective configuration (defaults filled in)\n");
        fn kv(out: &mut String, key: &str, value: String) {
            out.push_str(key);
            out.push_str(" = ");
            out.push_str(&value);
            out.push('\n');
        }
        kv(&mut out, "network", quote(&self.network));
        kv(&mut out, "quorum", self.quorum.to_string());
        kv(
            &mut out,
            "relays",
            array(self.relays.iter().map(RelayUrl::as_str)),
        );
        kv(
            &mut out,
            "state_dir",
            quote(&self.state_dir.to_string_lossy()),
        );
        match &self.node_id {
            Some(id) => kv(&mut out, "node_id", quote(id)),
            None => out.push_str("# node_id: not set, derived from the node key\n"),
        }
        match &self.node_key {
            Some(NodeKeySource::File(path)) => {
                kv(&mut out, "node_key", quote(&path.to_string_lossy()));
            }
            Some(NodeKeySource::Env(var)) => kv(&mut out, "node_key", quote(&format!("env:{var}"))),
            None => out.push_str("# node_key: not set, state_dir/node.key\n"),
        }
        match &self.current_version {
            Some(v) => kv(&mut out, "current_version", quote(v.as_str())),
            None => out.push_str("# current_version: not set\n"),
        }
        kv(&mut out, "d_tag", quote(&self.d_tag));

        for follow in &self.follows {
            out.push_str("\n[[follows]]\n");
            kv(&mut out, "name", quote(&follow.name));
            kv(&mut out, "npub", quote(&follow.npub()));
            kv(&mut out, "role", quote(follow.role.as_str()));
        }

        out.push_str("\n[policy]\n");
        kv(
            &mut out,
            "max_future_skew_secs",
            self.policy.max_future_skew_secs.to_string(),
        );
        kv(
            &mut out,
            "allow_downgrade",
            self.policy.allow_downgrade.to_string(),
        );
        kv(
            &mut out,
            "allow_insecure_ws",
            self.policy.allow_insecure_ws.to_string(),
        );

        for (section, hook) in [("upgrade", &self.upgrade), ("reboot", &self.reboot)] {
            let Some(hook) = hook else {
                out.push_str(&format!("\n# [{section}]: not set\n"));
                continue;
            };
            out.push_str(&format!("\n[{section}]\n"));
            kv(
                &mut out,
                "command",
                array(hook.command.iter().map(String::as_str)),
            );
            kv(&mut out, "timeout_secs", hook.timeout_secs.to_string());
            if let Some(artifact) = &hook.artifact {
                kv(&mut out, "artifact", quote(artifact.as_str()));
            }
            for (key, argv) in [
                ("fetch", &hook.fetch),
                ("health", &hook.health),
                ("rollback", &hook.rollback),
            ] {
                if let Some(argv) = argv {
                    kv(&mut out, key, array(argv.iter().map(String::as_str)));
                }
            }
        }
        out
    }
}

/// A TOML basic string: `"` and `\` escaped, control characters as `\uXXXX`
/// (TOML 1.0, "String").
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of basic strings on one line.
fn array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(quote).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b\\c\n\u{7f}é"), "\"a\\\"b\\\\c\\u000A\\u007Fé\"");
        let doc = format!("k = {}", quote("a\"b\\c\n\u{7f}\u{1}é"));
        let v: toml::Table = toml::from_str(&doc).unwrap();
        assert_eq!(v["k"].as_str().unwrap(), "a\"b\\c\n\u{7f}\u{1}é");
    }
}
