//! Build-time assets and build information for the `qube-agent` binary
//! (`docs/RELEASE.md`).
//!
//! * Man pages and shell completions, written from the clap types of
//!   `src/cli.rs` (this script compiles that very file), so they cannot drift
//!   from `--help`: `qube-agent(1)`, one page per public command,
//!   `qube-agent.toml(5)` from the comments of `docs/qube-agent.example.toml`,
//!   and bash, zsh and fish completions. They go to `$OUT_DIR/assets/`; the
//!   binary embeds them and `qube-agent generate-assets --out DIR` writes
//!   them out for packaging.
//! * What `--version` reports: git commit and dirty state (`unknown` without
//!   git or outside the repository, e.g. a source tarball), rustc (`$RUSTC`),
//!   target, profile, enabled features, the Landlock ABI of
//!   `src/worker/sandbox.rs`, and a build date only when `SOURCE_DATE_EPOCH`
//!   is set: no timestamp otherwise, so two builds of one tree are the same.
//!
//! Reruns only when an input listed by `cargo:rerun-if-changed` changes: the
//! git HEAD, the branch it points to and the index (commits, checkouts,
//! staging), the package sources and manifests, the example config. So
//! `cargo build` twice in a row does no work the second time. The dirty flag
//! is therefore as fresh as the last change to one of those inputs: an
//! unstaged edit elsewhere in the repository (say govctl/) is only noticed
//! at the next rerun.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use qube_assets::generate::roff::{bold, italic, roman, Inline, Roff};
use qube_assets::generate::{env, source_date, Assets, Result};

// The binary's own command line; its fields are only read by the binary.
#[allow(dead_code)]
#[path = "src/cli.rs"]
mod cli;

/// Where the example configuration lives, relative to this package.
const EXAMPLE_CONFIG: &str = "../docs/qube-agent.example.toml";
/// Where `TARGET_ABI` is declared.
const SANDBOX_RS: &str = "src/worker/sandbox.rs";
/// The program name.
const NAME: &str = "qube-agent";

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);

    for path in [
        "build.rs",
        "src",
        "Cargo.toml",
        "../Cargo.toml",
        "../Cargo.lock",
        EXAMPLE_CONFIG,
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let mut assets = Assets::new(&out_dir, NAME, env!("CARGO_PKG_VERSION"), source_date()?)?;
    assets.man_pages(
        cli::Cli::command(),
        &[&format!("{NAME}.toml(5)")],
        Some(&files_section()),
    )?;
    config_page(&manifest_dir, &mut assets)?;
    assets.completions(&cli::Cli::command())?;

    let info = build_info(&manifest_dir, &assets)?;
    std::fs::write(out_dir.join("build_info.rs"), info)?;
    Ok(())
}

/// The FILES section of `qube-agent(1)`.
fn files_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([italic("/etc/qube-agent/config.toml")]);
    roff.text([
        roman("The configuration, by convention (every command takes "),
        bold("--config"),
        roman("); see "),
        bold(format!("{NAME}.toml")),
        roman("(5)."),
    ]);
    roff.control("TP", []);
    roff.text([italic("/var/lib/qube-agent")]);
    roff.text([roman(
        "The state directory (state_dir): node key, current votes, journal, acknowledgement outbox.",
    )]);
    roff
}

/// `qube-agent.toml(5)`, written from `docs/qube-agent.example.toml`: its
/// comment blocks become the page's text, each key with the comment just
/// above it an entry, each table a section; then the example itself, without
/// the comments.
fn config_page(manifest_dir: &Path, assets: &mut Assets) -> Result<()> {
    let path = manifest_dir.join(EXAMPLE_CONFIG);
    let example = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;

    let mut roff = Roff::new();
    roff.control("SH", ["NAME"]);
    roff.text([roman(format!("{NAME}.toml - configuration file of {NAME}"))]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([italic("/etc/qube-agent/config.toml")]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([
        bold(NAME),
        roman("(1) reads one TOML file, named by "),
        bold("--config"),
        roman(". This page is written from the documented example configuration, "),
        italic("docs/qube-agent.example.toml"),
        roman(" in the source; its text follows."),
    ]);

    let mut comments: Vec<String> = Vec::new();
    let mut seen_tables: Vec<String> = Vec::new();
    // Keys of a table seen before (a second [[follows]]) are not repeated.
    let mut repeat_table = false;
    let mut keys_heading = false;
    // The file's first line is the example's own title, not configuration text.
    for line in example.lines().skip(1) {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            comments.push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
        } else if line.is_empty() {
            if !repeat_table {
                paragraphs(&mut roff, &comments);
            }
            comments.clear();
        } else if line.starts_with('[') {
            let table = line.to_owned();
            repeat_table = seen_tables.contains(&table);
            if !repeat_table {
                roff.control("SH", [table.as_str()]);
                paragraphs(&mut roff, &comments);
                seen_tables.push(table);
            }
            comments.clear();
        } else if let Some((key, _)) = line.split_once('=') {
            if !repeat_table {
                if seen_tables.is_empty() && !keys_heading {
                    roff.control("SH", ["KEYS"]);
                    keys_heading = true;
                }
                // The key alone as the tag, as in sshd_config(5): the value
                // is in EXAMPLE, the default in the text.
                roff.control("TP", []);
                roff.text([bold(key.trim())]);
                paragraph(&mut roff, &comments);
            }
            comments.clear();
        } else {
            return Err(format!("{EXAMPLE_CONFIG}: cannot document the line {line:?}").into());
        }
    }

    roff.control("SH", ["EXAMPLE"]);
    roff.control("RS", ["4"]);
    roff.control("nf", []);
    let mut blank = true;
    for line in example.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let is_blank = line.trim().is_empty();
        if !(is_blank && blank) {
            roff.text([roman(line)]);
        }
        blank = is_blank;
    }
    roff.control("fi", []);
    roff.control("RE", []);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold(NAME),
        roman("(1), "),
        bold(format!("{NAME}-check-config")),
        roman("(1)"),
    ]);

    assets.page(&format!("{NAME}.toml"), "5", &roff)
}

/// Comment lines as paragraphs: an empty comment line separates two.
fn paragraphs(roff: &mut Roff, comments: &[String]) {
    for lines in comments.split(|l| l.trim().is_empty()) {
        if !lines.is_empty() {
            roff.control("PP", []);
            paragraph(roff, lines);
        }
    }
}

/// Comment lines as text: `code` in bold, and a line `Label:   command`
/// (aligned with spaces) as the label and the command on a line of its own.
fn paragraph(roff: &mut Roff, lines: &[String]) {
    let mut text = String::new();
    for line in lines {
        match line.split_once(":  ") {
            Some((label, command)) => {
                text.push_str(label);
                text.push(':');
                roff.text(code_spans(&text));
                text.clear();
                roff.control("RS", ["4"]);
                roff.control("nf", []);
                roff.text([roman(command.trim())]);
                roff.control("fi", []);
                roff.control("RE", []);
            }
            None => {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(line);
            }
        }
    }
    if !text.is_empty() {
        roff.text(code_spans(&text));
    }
}

/// Text with its `code` spans in bold.
fn code_spans(text: &str) -> Vec<Inline> {
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

/// Output of `git -C dir ARGS`, trimmed, or `None` if git is missing or
/// fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout)
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Commit and dirty state, and the git files to watch; `None` unless this
/// package is in the root of a git work tree of its own (not, say, an
/// unpacked tarball inside some other repository).
fn git_state(manifest_dir: &Path) -> (Option<String>, Option<bool>) {
    let Some(top) = git(manifest_dir, &["rev-parse", "--show-toplevel"]) else {
        return (None, None);
    };
    let ours = manifest_dir
        .parent()
        .and_then(|root| root.canonicalize().ok())
        .is_some_and(|root| Path::new(&top).canonicalize().ok() == Some(root));
    if !ours {
        return (None, None);
    }
    // Rerun on commits, checkouts and staging: HEAD, the branch it points
    // to (loose or packed), the index.
    let mut watch = vec![
        "HEAD".to_owned(),
        "index".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(p) = git(manifest_dir, &["rev-parse", "--git-path", &name]) {
            let p = manifest_dir.join(p);
            // A missing file would make cargo rerun every time.
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    let commit = git(manifest_dir, &["rev-parse", "--short=12", "HEAD"]);
    // Tracked files only, like `git describe --dirty`; no optional locks,
    // so a concurrent git command is not disturbed.
    let dirty = git(
        manifest_dir,
        &[
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
    )
    .map(|s| !s.is_empty());
    let dirty = if commit.is_some() { dirty } else { None };
    (commit, dirty)
}

/// `rustc --version` of the compiler cargo uses, without the `rustc `.
fn rustc_version() -> Option<String> {
    let rustc = std::env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    Some(text.strip_prefix("rustc ").unwrap_or(text).to_owned())
}

/// The `N` of `const TARGET_ABI: ABI = ABI::VN;` in the sandbox. Missing is
/// a build error, not `unknown`: the sandbox is this crate's own code.
fn landlock_abi(manifest_dir: &Path) -> Result<u32> {
    let path = manifest_dir.join(SANDBOX_RS);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("const TARGET_ABI: ABI = ABI::V")?
                .strip_suffix(';')?
                .parse()
                .ok()
        })
        .ok_or_else(|| {
            format!(
                "{SANDBOX_RS} has no `const TARGET_ABI: ABI = ABI::V<n>;`: update agent/build.rs"
            )
            .into()
        })
}

/// `$OUT_DIR/build_info.rs`, included by `src/build_info.rs`.
fn build_info(manifest_dir: &Path, assets: &Assets) -> Result<String> {
    let (commit, dirty) = git_state(manifest_dir);
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_lowercase().replace('_', "-"))
        })
        .collect();
    features.sort();

    let mut s = String::from("// Generated by agent/build.rs.\n");
    writeln!(s, "const GIT_COMMIT: Option<&str> = {commit:?};")?;
    writeln!(s, "const GIT_DIRTY: Option<bool> = {dirty:?};")?;
    writeln!(s, "const RUSTC: Option<&str> = {:?};", rustc_version())?;
    writeln!(s, "const TARGET: &str = {:?};", env("TARGET")?)?;
    writeln!(s, "const PROFILE: &str = {:?};", env("PROFILE")?)?;
    writeln!(
        s,
        "const LANDLOCK_ABI: u32 = {};",
        landlock_abi(manifest_dir)?
    )?;
    writeln!(
        s,
        "const BUILD_DATE: Option<&str> = {:?};",
        assets.date().map(|d| d.rfc3339())
    )?;
    writeln!(s, "const FEATURES: &[&str] = &{features:?};")?;
    s.push_str(&assets.table());
    Ok(s)
}
