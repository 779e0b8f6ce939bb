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

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

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

type Result<T> = std::result::Result<T, Box<dyn Error>>;

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

    let date = source_date()?;
    let assets_dir = out_dir.join("assets");
    if assets_dir.exists() {
        std::fs::remove_dir_all(&assets_dir)?;
    }
    let mut assets = Vec::new();
    man_pages(&assets_dir, date.as_ref(), &mut assets)?;
    config_page(&manifest_dir, &assets_dir, date.as_ref(), &mut assets)?;
    completions(&assets_dir, &mut assets)?;

    let info = build_info(&manifest_dir, date.as_ref(), &assets)?;
    std::fs::write(out_dir.join("build_info.rs"), info)?;
    Ok(())
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).map_err(|e| format!("{name}: {e}").into())
}

/// `SOURCE_DATE_EPOCH` as a UTC date and time, when set. A malformed value
/// fails the build, as reproducible-builds.org asks.
fn source_date() -> Result<Option<Timestamp>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("SOURCE_DATE_EPOCH: {e}").into()),
        Ok(s) => {
            let secs: i64 = s
                .trim()
                .parse()
                .map_err(|e| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds: {e}"))?;
            Ok(Some(Timestamp::from_unix(secs)))
        }
    }
}

/// A UTC date and time, enough for `SOURCE_DATE_EPOCH`.
struct Timestamp {
    year: i64,
    month: u32,
    day: u32,
    secs_of_day: i64,
}

impl Timestamp {
    /// Days to civil date: H. Hinnant's `civil_from_days`, proleptic
    /// Gregorian calendar.
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let secs_of_day = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Timestamp {
            year,
            month: u32::try_from(month).unwrap_or(1),
            day: u32::try_from(day).unwrap_or(1),
            secs_of_day,
        }
    }

    fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn rfc3339(&self) -> String {
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            self.date(),
            self.secs_of_day / 3600,
            self.secs_of_day / 60 % 60,
            self.secs_of_day % 60
        )
    }
}

/// Writes `contents` to `assets_dir/rel` and records it.
fn put(assets_dir: &Path, rel: &str, contents: &[u8], assets: &mut Vec<String>) -> Result<()> {
    let path = assets_dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, contents)?;
    assets.push(rel.to_owned());
    Ok(())
}

/// The `.TH` line, written by hand: roff cannot quote an empty argument,
/// and the date is empty unless `SOURCE_DATE_EPOCH` is set. Then `.nh`: no
/// hyphenation, which would split paths and option names.
fn title_line(title: &str, section: &str, date: Option<&Timestamp>) -> String {
    format!(
        ".TH {} {section} \"{}\" \"{NAME} {}\" \"{NAME} manual\"\n.nh\n",
        title.to_uppercase(),
        date.map(Timestamp::date).unwrap_or_default(),
        env!("CARGO_PKG_VERSION"),
    )
}

/// The roff preamble every rendering starts with (it defines `\*(Aq`).
fn preamble() -> String {
    Roff::new().render()
}

/// Renders one section with a clap_mangen `render_*` method, without the
/// preamble it repeats each time.
fn section(render: impl Fn(&mut Vec<u8>) -> std::io::Result<()>, preamble: &str) -> Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8(buf)?;
    Ok(text
        .strip_prefix(preamble)
        .map(str::to_owned)
        .unwrap_or(text))
}

/// `qube-agent(1)` and `qube-agent-COMMAND(1)` for every public command.
fn man_pages(assets_dir: &Path, date: Option<&Timestamp>, assets: &mut Vec<String>) -> Result<()> {
    // No `help` command in the pages: it has nothing `--help` does not say.
    let mut cmd = cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let public: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect();

    let mut see_also: Vec<String> = public.iter().map(|s| format!("{NAME}-{s}(1)")).collect();
    see_also.push(format!("{NAME}.toml(5)"));
    let page = man_page(&cmd, date, &see_also, true)?;
    put(
        assets_dir,
        &format!("man/man1/{NAME}.1"),
        page.as_bytes(),
        assets,
    )?;

    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{NAME}-{}", sub.get_name());
        let see_also = [format!("{NAME}(1)"), format!("{NAME}.toml(5)")];
        let page = man_page(sub, date, &see_also, false)?;
        put(
            assets_dir,
            &format!("man/man1/{name}.1"),
            page.as_bytes(),
            assets,
        )?;
    }
    Ok(())
}

fn man_page(
    cmd: &clap::Command,
    date: Option<&Timestamp>,
    see_also: &[String],
    top: bool,
) -> Result<String> {
    let title = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned();
    let man = clap_mangen::Man::new(cmd.clone());
    let pre = preamble();
    let mut page = pre.clone();
    page.push_str(&title_line(&title, "1", date));
    page.push_str(&section(|w| man.render_name_section(w), &pre)?);
    page.push_str(&section(|w| man.render_synopsis_section(w), &pre)?);
    page.push_str(&section(|w| man.render_description_section(w), &pre)?);
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.push_str(&section(|w| man.render_options_section(w), &pre)?);
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        page.push_str(&section(|w| man.render_subcommands_section(w), &pre)?);
    }

    let mut extra = Roff::new();
    if let Some(after) = cmd.get_after_help() {
        let after = after.to_string();
        extra.control("SH", ["EXAMPLE"]);
        extra.control("RS", ["4"]);
        extra.control("nf", []);
        for line in after.lines() {
            extra.text([roman(line.strip_prefix("Example: ").unwrap_or(line))]);
        }
        extra.control("fi", []);
        extra.control("RE", []);
    }
    if top {
        extra.control("SH", ["FILES"]);
        extra.control("TP", []);
        extra.text([italic("/etc/qube-agent/config.toml")]);
        extra.text([
            roman("The configuration, by convention (every command takes "),
            bold("--config"),
            roman("); see "),
            bold(format!("{NAME}.toml")),
            roman("(5)."),
        ]);
        extra.control("TP", []);
        extra.text([italic("/var/lib/qube-agent")]);
        extra.text([roman(
            "The state directory (state_dir): node key, current votes, journal, acknowledgement outbox.",
        )]);
    }
    extra.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, r) in see_also.iter().enumerate() {
        if i > 0 {
            refs.push(roman(", "));
        }
        let (name, section) = r.split_once('(').unwrap_or((r, ""));
        refs.push(bold(name));
        refs.push(roman(format!("({section}")));
    }
    extra.text(refs);
    page.push_str(&section(|w| extra.to_writer(w), &pre)?);
    Ok(page)
}

/// `qube-agent.toml(5)`, written from `docs/qube-agent.example.toml`: its
/// comment blocks become the page's text, each key with the comment just
/// above it an entry, each table a section; then the example itself, without
/// the comments.
fn config_page(
    manifest_dir: &Path,
    assets_dir: &Path,
    date: Option<&Timestamp>,
    assets: &mut Vec<String>,
) -> Result<()> {
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

    let pre = preamble();
    let mut page = pre.clone();
    page.push_str(&title_line(&format!("{NAME}.toml"), "5", date));
    page.push_str(&section(|w| roff.to_writer(w), &pre)?);
    put(
        assets_dir,
        &format!("man/man5/{NAME}.toml.5"),
        page.as_bytes(),
        assets,
    )
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

/// bash, zsh and fish completions of the public commands.
fn completions(assets_dir: &Path, assets: &mut Vec<String>) -> Result<()> {
    use clap_complete::{Generator, Shell};
    // clap_complete also completes hidden commands; build a command without
    // them (no API removes a subcommand).
    let full = cli::Cli::command();
    let mut public = clap::Command::new(NAME)
        .disable_version_flag(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        public = public.about(about.clone());
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut public, NAME, &mut buf);
        let mut script = String::from_utf8(buf)?;
        if shell == Shell::Bash {
            // clap_complete 4.6 spells the state of a subcommand of a
            // hyphenated program two ways (`qube__agent__subcmd__run` in the
            // loop, `qube__subcmd__agent__subcmd__run` in the case arms), so
            // no option of a command ever completes: clap-rs/clap#6421.
            // Spell the arms as the loop does; a no-op once that is fixed.
            let wrong = NAME.replace('-', "__subcmd__");
            let right = NAME.replace('-', "__");
            script = script.replace(&format!("{wrong}__subcmd__"), &format!("{right}__subcmd__"));
        }
        let rel = format!("completions/{}", shell.file_name(NAME));
        put(assets_dir, &rel, script.as_bytes(), assets)?;
    }
    Ok(())
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
fn build_info(manifest_dir: &Path, date: Option<&Timestamp>, assets: &[String]) -> Result<String> {
    let (commit, dirty) = git_state(manifest_dir);
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_lowercase().replace('_', "-"))
        })
        .collect();
    features.sort();
    let out_dir = env("OUT_DIR")?;

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
        date.map(Timestamp::rfc3339)
    )?;
    writeln!(s, "const FEATURES: &[&str] = &{features:?};")?;
    writeln!(s, "const ASSETS: &[(&str, &[u8])] = &[")?;
    for rel in assets {
        let path = Path::new(&out_dir).join("assets").join(rel);
        writeln!(
            s,
            "    ({rel:?}, include_bytes!({:?})),",
            path.display().to_string()
        )?;
    }
    writeln!(s, "];")?;
    Ok(s)
}
