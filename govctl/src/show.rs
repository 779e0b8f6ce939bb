//! Printing untrusted text and directives for people: control characters
//! escaped, long values cut, times in UTC.

use qube_agent::core::directive::Directive;

use crate::time::format_utc;

/// `text` with control and other invisible characters escaped (so an
/// event's content cannot move the cursor or fake lines), cut to
/// `max_chars` characters with `...` appended.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push_str("...");
            break;
        }
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_cuts() {
        assert_eq!(printable("a\nb\u{1b}[2J", 80), "a\\nb\\u{1b}[2J");
        assert_eq!(printable("abcdef", 3), "abc...");
        assert_eq!(printable("h\u{202e}x", 80), "h\\u{202e}x");
        assert_eq!(printable("naïve 🚀", 80), "naïve 🚀");
    }
}
