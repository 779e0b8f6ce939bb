//! Printing untrusted text and directives for people: control characters
//! escaped, long values cut, times in UTC.

use qube_agent::core::directive::Directive;

use crate::time::format_utc;

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
