//! Printing untrusted text and directives for people: control characters
//! escaped, long values cut, times in UTC; and, before anything is signed,
//! the whole directive with nothing cut ([`review`]).

use qube_agent::core::directive::Directive;

use crate::time::{format_utc, MAX_TIME};

pub use qube_agent::core::text::printable;

/// Unix seconds as `2025-03-01T12:00:00Z (1740830400)`.
pub fn time(secs: u64) -> String {
    format!("{} ({secs})", format_utc(secs))
}

/// Label and value of each field of a directive, for display.
pub fn directive_fields(directive: &Directive) -> Vec<(&'static str, String)> {
    let p = directive.proposal();
    let mut fields = vec![
        ("action", p.action.as_str().to_owned()),
        ("version", printable(&p.version, 80)),
        ("hash", p.hash.clone()),
        ("network", printable(&p.network, 80)),
    ];
    if let Some(url) = &p.genesis_url {
        fields.push(("genesis_url", printable(url, 200)));
    }
    if let Some(t) = p.required_by {
        fields.push(("required_by", time(t)));
    }
    if let Some(t) = directive.expiration() {
        fields.push(("expiration", time(t)));
    }
    fields.push((
        "content",
        format!("\"{}\"", printable(&directive.event().content, 500)),
    ));
    fields
}

/// Prints `label: value` lines, values aligned, to stdout or stderr.
pub fn print_fields(fields: &[(&str, String)], to_stderr: bool) {
    let width = fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0) + 1;
    for (label, value) in fields {
        let label = format!("{label}:");
        if to_stderr {
            eprintln!("{label:<width$} {value}");
        } else {
            println!("{label:<width$} {value}");
        }
    }
}

/// A tag value longer than this many characters gets a warning before it is
/// signed (documented in `govctl sign --help` and `propose upgrade --help`,
/// whose text says 512: change both together; a unit test checks).
/// Every value the agent reads is far shorter; a long one hides its tail
/// below the screen, so it is read in full or not signed.
pub const LONG_VALUE_CHARS: usize = 512;

/// The tags the agent reads (`docs/PROTOCOL.md` section 3); any other tag
/// is ignored by every agent, yet signed.
const DIRECTIVE_TAGS: [&str; 8] = [
    "d",
    "action",
    "version",
    "hash",
    "network",
    "genesis_url",
    "required_by",
    "expiration",
];

/// Characters that would act on the terminal or hide text instead of being
/// seen: controls, zero-width and bidi controls, line and paragraph
/// separators, BOM (as [`printable`] escapes them).
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `text` between double quotes, in full: `"` and `\` escaped with a
/// backslash, hidden characters ([`is_hidden`]) as `\n`, `\r`, `\t` or
/// `\u{..}`, everything else as itself. Two different values never look
/// the same, and nothing in one can move the cursor.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_hidden(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// [`quoted`], but of the first `max_chars` characters only, with `...`
/// after the closing quote when cut: for naming a value in a message.
pub fn quoted_short(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", quoted(text.get(..end).unwrap_or_default())),
        None => quoted(text),
    }
}

/// How a directive looks before it is signed: `lines` to print, then one
/// `warnings` line each (without the `warning: ` prefix).
pub struct Review {
    /// `tags:` and `content:` lines, every value in full, escaped.
    pub lines: Vec<String>,
    /// What deserves a second look (see [`review`]).
    pub warnings: Vec<String>,
}

/// Shows every tag of a directive, each value in full and escaped
/// ([`quoted`]), then its content, and warns about: a tag no agent reads;
/// extra values the agent ignores; a name or value that starts with `-`
/// (a program given it as an argument could take it for an option), holds
/// hidden characters, or is longer than [`LONG_VALUE_CHARS`] characters;
/// hidden characters in the content.
pub fn review(tags: &[Vec<String>], content: &str) -> Review {
    let known = |name: &str| DIRECTIVE_TAGS.contains(&name);
    let shown_name = |name: &str| {
        if known(name) {
            name.to_owned()
        } else {
            quoted(name)
        }
    };
    let width = tags
        .iter()
        .filter_map(|t| t.first())
        .map(|n| shown_name(n).chars().count())
        .max()
        .unwrap_or(0)
        .min(16);
    let mut lines = vec![format!("tags:       {}, every value in full:", tags.len())];
    let mut warnings = Vec::new();
    for (index, tag) in tags.iter().enumerate() {
        let Some((name, values)) = tag.split_first() else {
            lines.push(format!("  (tag {index} is empty)"));
            continue;
        };
        // Warnings name a tag by index and a short escaped name.
        let id = format!("tag {index} {}", quoted_short(name, 40));
        let mut line = format!("  {:<width$}", shown_name(name));
        for value in values {
            line.push(' ');
            line.push_str(&quoted(value));
        }
        if matches!(name.as_str(), "required_by" | "expiration") {
            if let Some(secs) = values
                .first()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&t| t <= MAX_TIME)
            {
                line.push_str(&format!(" = {}", format_utc(secs)));
            }
        }
        if !known(name) {
            line.push_str("  <- no agent reads this tag");
            warnings.push(format!(
                "{id} is not a directive tag: no agent reads it, but it is signed with the rest"
            ));
        } else if values.len() > 1 {
            line.push_str("  <- the agent reads only the first value");
            warnings.push(format!(
                "{id} has {} values; the agent reads only the first, the others are signed too",
                values.len()
            ));
        }
        lines.push(line);
        for (position, text) in tag.iter().enumerate() {
            let what = if position == 0 {
                format!("{id} name")
            } else {
                format!("{id} value {position}")
            };
            if text.starts_with('-') {
                warnings.push(format!(
                    "{what} starts with \"-\": a program given it as an argument could take it for an option"
                ));
            }
            if text.chars().any(is_hidden) {
                warnings.push(format!(
                    "{what} contains control or invisible characters (shown escaped above)"
                ));
            }
            let chars = text.chars().count();
            if chars > LONG_VALUE_CHARS {
                warnings.push(format!(
                    "{what} is {chars} characters long (more than {LONG_VALUE_CHARS}): read it in full above"
                ));
            }
        }
    }
    lines.push(format!("content:    {}", quoted(content)));
    if content.chars().any(is_hidden) {
        warnings.push(
            "the content contains control or invisible characters (shown escaped above)".to_owned(),
        );
    }
    Review { lines, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|t| t.iter().map(|s| (*s).to_owned()).collect())
            .collect()
    }

    #[test]
    fn quoted_escapes_what_could_mislead() {
        assert_eq!(quoted("hqz"), "\"hqz\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(
            quoted("x\u{1b}[2K\r\ny\u{202e}z\u{7f}"),
            "\"x\\u{1b}[2K\\r\\ny\\u{202e}z\\u{7f}\""
        );
        assert_eq!(quoted("héllo 🎉"), "\"héllo 🎉\"");
        let long = "a".repeat(5000);
        assert_eq!(quoted(&long).len(), 5002, "never cut");
        assert_eq!(quoted_short("a\u{1b}bc", 2), "\"a\\u{1b}\"...");
        assert_eq!(quoted_short("ab", 2), "\"ab\"");
    }

    #[test]
    fn review_shows_everything_and_warns() {
        let long = format!("https://g.example/{}", "a".repeat(600));
        let r = review(
            &tags(&[
                &["d", "hyperqube"],
                &["network", "hq\u{1b}z"],
                &["genesis_url", &long],
                &["expiration", "4102444800"],
                &["version", "v1", "extra"],
                &["x-note", "-rf"],
            ]),
            "line\nbreak",
        );
        let text = r.lines.join("\n");
        assert!(
            text.contains("tags:       6, every value in full:"),
            "{text}"
        );
        assert!(text.contains(&format!("\"{long}\"")), "{text}");
        assert!(text.contains("\"hq\\u{1b}z\""), "{text}");
        assert!(
            text.contains("\"4102444800\" = 2100-01-01T00:00:00Z"),
            "{text}"
        );
        assert!(
            text.contains("\n  \"x-note\"    \"-rf\"  <- no agent reads this tag"),
            "{text}"
        );
        assert!(text.contains("content:    \"line\\nbreak\""), "{text}");
        assert_eq!(
            r.warnings,
            [
                "tag 1 \"network\" value 1 contains control or invisible characters (shown escaped above)",
                "tag 2 \"genesis_url\" value 1 is 618 characters long (more than 512): read it in full above",
                "tag 4 \"version\" has 2 values; the agent reads only the first, the others are signed too",
                "tag 5 \"x-note\" is not a directive tag: no agent reads it, but it is signed with the rest",
                "tag 5 \"x-note\" value 1 starts with \"-\": a program given it as an argument could take it for an option",
                "the content contains control or invisible characters (shown escaped above)",
            ]
        );
    }

    #[test]
    fn help_states_the_long_value_threshold() {
        use clap::CommandFactory;
        let mut cli = crate::cli::Cli::command();
        for path in [["sign", ""], ["propose", "upgrade"], ["propose", "reboot"]] {
            let mut cmd = &mut cli;
            for name in path.iter().filter(|n| !n.is_empty()) {
                cmd = cmd.find_subcommand_mut(name).unwrap();
            }
            let help = cmd.render_help().to_string();
            assert!(
                help.contains(&format!("longer than {LONG_VALUE_CHARS} characters")),
                "{path:?}: {help}"
            );
        }
    }

    #[test]
    fn review_of_a_plain_directive_has_no_warnings() {
        let r = review(
            &tags(&[
                &["d", "hyperqube"],
                &["action", "upgrade"],
                &["version", "v1.2.3"],
                &["hash", &"1".repeat(64)],
                &["network", "hqz"],
                &["expiration", "1796864122"],
            ]),
            "Upgrade hqz to version v1.2.3.",
        );
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }
}
