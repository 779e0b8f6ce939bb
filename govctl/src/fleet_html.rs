//! `govctl status --html FILE`: the fleet table as one self-contained page.
//!
//! No external resources and no script: inline CSS only, so it opens from
//! a file, an e-mail attachment or a CI artifact as it is. Every text that
//! came from a relay (names, errors, versions) is HTML-escaped
//! (`html-escape`); a colour per acknowledgement status, stale heartbeats
//! marked.

use std::fmt::Write as _;

use html_escape::encode_text as esc;
use qube_agent::core::quorum::Decision;

use crate::fleet::FleetNode;
use crate::keycmd::npub;
use crate::status_report::Report;
use crate::time::format_utc;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}code{font-size:.9em}.success{background:#d9f2d9}.failure{background:#f8d0d0}\
.pending{background:#fff1c2}.outside{color:#777}.stale{background:#ffe0b3;font-weight:bold}\
.summary{font-size:1.1em;margin:1em 0}.complete{color:#1a7f1a}.incomplete{color:#b00020}";

/// The page for `report` (generated at `now`, unix seconds).
pub fn page(report: &Report, now: u64) -> String {
    let mut out = String::new();
    let winner = match &report.decision {
        Some(Decision::Run { proposal, .. }) => Some(proposal),
        _ => None,
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>qube fleet: {network}</title><style>{STYLE}</style></head><body>\n\
         <h1>Fleet on network <code>{network}</code></h1>\n<p>Generated {generated} by govctl; \
         quorum {quorum} of {voters} voter(s).</p>\n",
        network = esc(&report.network),
        generated = esc(&format_utc(now)),
        quorum = report.quorum,
        voters = report.voters,
    );
    match winner {
        Some(p) => {
            let _ = writeln!(
                out,
                "<p id=\"proposal\">Winning proposal: <code>{}</code></p>",
                esc(&p.to_string())
            );
        }
        None => out.push_str("<p id=\"proposal\">No proposal runs now.</p>\n"),
    }
    let Some(fleet) = &report.fleet else {
        out.push_str("<p>No roster: give --fleet FILE, or enable heartbeats.</p></body></html>\n");
        return out;
    };
    match fleet.wave_complete {
        Some(true) => out.push_str(
            "<p class=\"summary complete\" id=\"wave\">Wave complete: every node in the wave acknowledged success.</p>\n",
        ),
        Some(false) => out.push_str(
            "<p class=\"summary incomplete\" id=\"wave\">Wave incomplete: not every node in the wave acknowledged success.</p>\n",
        ),
        None => {}
    }
    let _ = writeln!(
        out,
        "<table id=\"fleet\"><thead><tr><th>Node</th><th>Key</th><th>Wave</th><th>Ack</th>\
         <th>Error</th><th>Acted at</th><th>Agent</th><th>Installed</th><th>Journal</th>\
         <th>Heartbeat</th></tr></thead><tbody>\n<!-- {} node(s) from the {} -->",
        fleet.nodes.len(),
        fleet.source
    );
    for node in &fleet.nodes {
        row(&mut out, node);
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

/// One node's row: `data-status` is `success`, `failure`, `pending` (in
/// the wave, no ack) or `outside`.
fn row(out: &mut String, n: &FleetNode) {
    let status = match (&n.ack, n.in_wave) {
        (Some(a), _) if a.status == "success" => "success",
        (Some(_), _) => "failure",
        (None, Some(false)) => "outside",
        (None, _) => "pending",
    };
    let key = npub(&n.pubkey);
    let wave = match (n.in_wave, n.position) {
        (Some(true), Some(p)) => format!("in (position {p})"),
        (Some(false), Some(p)) => format!("outside (position {p})"),
        _ => "-".to_owned(),
    };
    let ack_text = n.ack.as_ref().map_or(status, |a| a.status.as_str());
    let error = n
        .ack
        .as_ref()
        .and_then(|a| a.error.as_deref())
        .unwrap_or("");
    let acted = n
        .ack
        .as_ref()
        .and_then(|a| a.action_at)
        .map_or_else(String::new, format_utc);
    let (agent, installed, journal, beat, beat_class) = match &n.heartbeat {
        Some(h) => (
            h.agent_version.clone().unwrap_or_default(),
            h.installed_version.clone().unwrap_or_default(),
            h.journal_seq.map_or_else(String::new, |s| {
                format!(
                    "{s} ({})",
                    h.journal_head
                        .as_deref()
                        .map_or("", |x| x.get(..12).unwrap_or(x))
                )
            }),
            format!(
                "{} s ago{}",
                h.age_secs,
                if h.stale { " (stale)" } else { "" }
            ),
            if h.stale { " class=\"stale\"" } else { "" },
        ),
        None => (
            String::new(),
            String::new(),
            String::new(),
            "none".to_owned(),
            " class=\"stale\"",
        ),
    };
    let _ = writeln!(
        out,
        "<tr class=\"{status}\" data-node=\"{key}\" data-status=\"{status}\"><td>{name}</td>\
         <td><code>{short}</code></td><td>{wave}</td><td class=\"ack\">{ack}</td><td>{error}</td>\
         <td>{acted}</td><td>{agent}</td><td>{installed}</td><td>{journal}</td>\
         <td{beat_class}>{beat}</td></tr>",
        key = esc(&key),
        name = esc(n.name.as_deref().unwrap_or("?")),
        short = esc(key.get(..16).unwrap_or(&key)),
        wave = esc(&wave),
        ack = esc(ack_text),
        error = esc(error),
        acted = esc(&acted),
        agent = esc(&agent),
        installed = esc(&installed),
        journal = esc(&journal),
        beat = esc(&beat),
    );
}
