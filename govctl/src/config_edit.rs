//! `govctl follows list|add|remove` and `govctl quorum set`: edits of an
//! agent config (`docs/qube-agent.example.toml`) that keep its comments and layout.
//!
//! Every edit is made on the TOML document with `toml_edit`, then the whole
//! result is checked with [`Config::from_toml_str`], the same rules
//! `qube-agent check-config` applies; a result that fails is refused and the
//! file is left untouched. A good result is written atomically: a temporary
//! file in the same directory with the original's mode, synced, renamed
//! over the original, and the directory synced.
//!
//! Comments: a new `[[follows]]` entry goes after the last one. Removing an
//! entry removes the lines inside it, but comment lines above its header are
//! kept (moved above whatever follows it), since they often introduce the
//! whole list.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nostr::nips::nip19::{FromBech32, Nip19Profile};
use qube_agent::config::{Config, Role, Warning, MAX_CONFIG_BYTES};
use qube_agent::core::nip19::{self, Nip19Error};
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

use crate::error::{warn, CliError, Result};

/// Loads an agent config with the agent's rules ([`Config::load`]) and
/// prints its warnings.
///
/// # Errors
/// The config error, with its advice as the hint.
pub fn load_config(path: &Path) -> Result<Config> {
    let (config, warnings) = Config::load(path).map_err(|e| config_error_with("", &e))?;
    show_warnings(warnings);
    Ok(config)
}

/// Prints the warnings that matter to governance. Those about hooks (a
/// missing section, a program looked up in PATH) concern the node that runs
/// them, not the follows and quorum govctl deals with, and are left to
/// `qube-agent check-config`.
fn show_warnings(warnings: Vec<Warning>) {
    for w in warnings {
        if !matches!(
            w,
            Warning::MissingHook { .. } | Warning::ProgramNotAbsolute { .. }
        ) {
            warn(w);
        }
    }
}

/// `govctl follows list`: name, role and npub of each follow.
pub fn list(path: &Path) -> Result<()> {
    let config = load_config(path)?;
    let width = config
        .follows()
        .iter()
        .map(|f| f.name().chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    println!("{:<width$}  {:<8}  NPUB", "NAME", "ROLE");
    for f in config.follows() {
        println!(
            "{:<width$}  {:<8}  {}",
            f.name(),
            f.role().as_str(),
            f.npub()
        );
    }
    let voters = config.voters().count();
    println!(
        "quorum {} of {voters} voter{}",
        config.quorum(),
        if voters == 1 { "" } else { "s" }
    );
    Ok(())
}

/// Parses a public key given as an npub, 64 hex characters or an nprofile.
///
/// # Errors
/// Anything else; an nsec is refused with advice.
pub fn parse_public_key(text: &str) -> Result<[u8; 32]> {
    if text.starts_with("nprofile1") {
        let profile = Nip19Profile::from_bech32(text)
            .map_err(|e| CliError::failure(format!("not a valid nprofile: {e}")))?;
        return Ok(profile.public_key.to_bytes());
    }
    nip19::parse_pubkey(text).map_err(|e| {
        let err = CliError::failure(format!("not a public key: {e}"));
        if e == Nip19Error::SecretKey {
            err.hint("give the npub instead (`govctl key show` prints it)")
        } else {
            err.hint("give an npub, an nprofile or 64 hex characters")
        }
    })
}

/// `govctl follows add`: appends a `[[follows]]` entry.
pub fn add(path: &Path, key: &str, name: &str, role: Role) -> Result<()> {
    let pubkey = parse_public_key(key)?;
    let npub = nip19::encode_npub(&pubkey);
    let original = read(path)?;
    let mut doc = parse(path, &original)?;
    let mut entry = Table::new();
    entry.insert("name", value(name));
    entry.insert("npub", value(npub.as_str()));
    entry.insert("role", value(role.as_str()));
    entry.decor_mut().set_prefix("\n");
    match doc.get_mut("follows") {
        None => {
            let mut follows = ArrayOfTables::new();
            follows.push(entry);
            doc.insert("follows", Item::ArrayOfTables(follows));
        }
        Some(Item::ArrayOfTables(follows)) => follows.push(entry),
        Some(_) => {
            return Err(CliError::failure(format!(
                "`follows` in {} is not written as [[follows]] tables",
                path.display()
            ))
            .hint("rewrite the follows as [[follows]] tables, as in docs/qube-agent.example.toml"))
        }
    }
    commit(path, &doc.to_string())?;
    eprintln!("added {role} {name:?} ({npub}) to {}", path.display());
    Ok(())
}

/// `govctl follows remove`: removes the entry whose key or name is `who`.
pub fn remove(path: &Path, who: &str) -> Result<()> {
    let key = parse_public_key(who).ok();
    let original = read(path)?;
    let mut doc = parse(path, &original)?;
    let Some(Item::ArrayOfTables(follows)) = doc.get_mut("follows") else {
        return Err(no_such_follow(path, who));
    };
    let matches = |t: &Table| {
        let name_matches = t.get("name").and_then(Item::as_str) == Some(who);
        let key_matches = key.is_some()
            && t.get("npub")
                .and_then(Item::as_str)
                .and_then(|s| nip19::parse_pubkey(s).ok())
                == key;
        name_matches || key_matches
    };
    let found: Vec<usize> = follows
        .iter()
        .enumerate()
        .filter(|(_, t)| matches(t))
        .map(|(i, _)| i)
        .collect();
    let index = match found.as_slice() {
        [index] => *index,
        [] => return Err(no_such_follow(path, who)),
        _ => {
            return Err(CliError::failure(format!(
                "{who:?} matches {} follows in {}",
                found.len(),
                path.display()
            ))
            .hint("give the follow's npub instead of its name"))
        }
    };
    let removed = follows
        .get(index)
        .map(|t| (t.position(), leading_comments(t)))
        .unwrap_or_default();
    follows.remove(index);
    if follows.is_empty() {
        doc.remove("follows");
    }
    if let (Some(position), Some(comments)) = removed {
        keep_comments(&mut doc, position, &comments);
    }
    let new_text = doc.to_string();
    commit(path, &new_text).map_err(|e| {
        if e.message().contains("quorum") {
            e.hint("lower the quorum first with `govctl quorum set N --config FILE`, then remove the voter")
        } else {
            e
        }
    })?;
    eprintln!("removed {who:?} from {}", path.display());
    Ok(())
}

fn no_such_follow(path: &Path, who: &str) -> CliError {
    CliError::failure(format!(
        "no follow named or keyed {who:?} in {}",
        path.display()
    ))
    .hint(format!(
        "`govctl follows list --config {}` shows them",
        path.display()
    ))
}

/// The comment block above a table's header, if it has comment lines.
fn leading_comments(table: &Table) -> Option<String> {
    let prefix = table.decor().prefix()?.as_str()?;
    prefix
        .lines()
        .any(|l| l.trim_start().starts_with('#'))
        .then(|| prefix.to_owned())
}

/// Puts `comments` above the first table after document position
/// `position`, or at the end of the document when there is none.
fn keep_comments(doc: &mut DocumentMut, position: isize, comments: &str) {
    let mut next: Option<(isize, &mut Table)> = None;
    for (_, item) in doc.iter_mut() {
        let tables: Vec<&mut Table> = match item {
            Item::Table(t) => vec![t],
            Item::ArrayOfTables(a) => a.iter_mut().collect(),
            _ => Vec::new(),
        };
        for t in tables {
            if let Some(p) = t.position().filter(|&p| p > position) {
                if next.as_ref().is_none_or(|(best, _)| p < *best) {
                    next = Some((p, t));
                }
            }
        }
    }
    let block = if comments.ends_with('\n') {
        comments.to_owned()
    } else {
        format!("{comments}\n")
    };
    match next {
        Some((_, table)) => {
            let old = table
                .decor()
                .prefix()
                .and_then(|p| p.as_str())
                .unwrap_or_default()
                .trim_start_matches(['\n', '\r'])
                .to_owned();
            table.decor_mut().set_prefix(format!("{block}{old}"));
        }
        None => {
            let trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
            doc.set_trailing(format!("{trailing}{block}"));
        }
    }
}

/// `govctl quorum set`: sets `quorum = N`, keeping the line's comment.
pub fn set_quorum(path: &Path, quorum: u64) -> Result<()> {
    let original = read(path)?;
    let mut doc = parse(path, &original)?;
    let n = i64::try_from(quorum)
        .map_err(|_| CliError::failure(format!("quorum {quorum} is too large")))?;
    let mut new_value = toml_edit::Value::from(n);
    match doc.get_mut("quorum") {
        // Replace the value only: the key keeps its comments, the value its
        // spacing and end-of-line comment.
        Some(Item::Value(old)) => {
            *new_value.decor_mut() = old.decor().clone();
            *old = new_value;
        }
        _ => {
            doc.insert("quorum", Item::Value(new_value));
        }
    }
    commit(path, &doc.to_string())?;
    eprintln!("quorum set to {quorum} in {}", path.display());
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| {
        CliError::io("read config file", path, &e).hint("check the path given to --config")
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::io("read config file", path, &e))?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_CONFIG_BYTES) {
        return Err(CliError::failure(format!(
            "config file {} is larger than {MAX_CONFIG_BYTES} bytes",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        CliError::failure(format!("config file {} is not UTF-8", path.display()))
            .hint("save the file as UTF-8")
    })
}

fn parse(path: &Path, text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| {
        CliError::failure(format!(
            "config file {} is not valid TOML: {}",
            path.display(),
            e.to_string().trim_end()
        ))
        .hint(format!(
            "`qube-agent check-config --config {}` explains it",
            path.display()
        ))
    })
}

/// A config error as a [`CliError`]: its first line as the message (with
/// `prefix` before it), its advice as the hint.
pub fn config_error_with(prefix: &str, e: &qube_agent::config::ConfigError) -> CliError {
    let text = e.to_string();
    let first = text.split("\nhint: ").next().unwrap_or_default();
    // Checked text has no file name: "config, line N: ..." reads as "line N: ...".
    let first = first.strip_prefix("config, ").unwrap_or(first);
    CliError::failure(format!("{prefix}{first}")).hint(e.advice())
}

/// Checks `new_text` with the agent's rules, then replaces the file
/// atomically, keeping its mode.
fn commit(path: &Path, new_text: &str) -> Result<()> {
    let warnings = match Config::from_toml_str(new_text) {
        Ok((_, warnings)) => warnings,
        Err(e) => {
            let prefix = format!(
                "refusing to change {}: the result would fail check-config: ",
                path.display()
            );
            return Err(config_error_with(&prefix, &e));
        }
    };
    show_warnings(warnings);
    let mode = std::fs::metadata(path)
        .map_err(|e| CliError::io("inspect", path, &e))?
        .permissions()
        .mode()
        & 0o7777;
    replace_file(path, new_text, mode)
}

/// Writes `text` to `path` atomically with permission bits `mode`: a
/// temporary file in the same directory, synced, renamed over `path`,
/// then the directory synced. A reader sees the old file or the new one.
///
/// # Errors
/// The temporary file cannot be made, written or renamed.
pub fn replace_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".govctl-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| CliError::io("create a temporary file in", dir, &e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| tmp.write_all(text.as_bytes()))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| CliError::io("write", tmp.path(), &e))?;
    tmp.persist(path)
        .map_err(|e| CliError::io("replace", path, &e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
