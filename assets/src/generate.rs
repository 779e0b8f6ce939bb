//! Build time: man pages and shell completions from a `clap::Command`
//! (clap_mangen, clap_complete), for a build script.
//!
//! ```text
//! let mut assets = Assets::new(&out_dir, "govctl", env!("CARGO_PKG_VERSION"), source_date()?)?;
//! assets.man_pages(cli::Cli::command(), &["qube-agent(1)"], None)?;
//! assets.completions(&cli::Cli::command())?;
//! std::fs::write(out_dir.join("assets.rs"), assets.table())?;
//! ```
//!
//! Nothing here reads the clock: a page carries a date only when
//! `SOURCE_DATE_EPOCH` is set ([`source_date`]), so two builds of one tree
//! write the same bytes.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_mangen::roff::{bold, roman, Roff};

pub use crate::Timestamp;
pub use clap_mangen::roff;

/// What a build script returns.
pub type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The environment variable `name`, or an error that names it.
///
/// # Errors
/// `name` is unset or not Unicode.
pub fn env(name: &str) -> Result<String> {
    std::env::var(name).map_err(|e| format!("{name}: {e}").into())
}

/// `SOURCE_DATE_EPOCH` as a UTC date and time, when set. A malformed value
/// fails the build, as reproducible-builds.org asks. A build script that
/// calls this should also print
/// `cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH`.
///
/// # Errors
/// Set, but not a whole number of seconds.
pub fn source_date() -> Result<Option<Timestamp>> {
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

/// The generated files of one program, below `OUT_DIR/assets/`.
pub struct Assets {
    program: String,
    version: String,
    date: Option<Timestamp>,
    dir: PathBuf,
    files: Vec<String>,
}

impl Assets {
    /// Starts afresh in `out_dir/assets` (what an earlier run wrote there is
    /// removed) for `program` at `version`; `date` goes on every page.
    ///
    /// # Errors
    /// The old directory cannot be removed.
    pub fn new(
        out_dir: &Path,
        program: &str,
        version: &str,
        date: Option<Timestamp>,
    ) -> Result<Self> {
        let dir = out_dir.join("assets");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(Assets {
            program: program.to_owned(),
            version: version.to_owned(),
            date,
            dir,
            files: Vec::new(),
        })
    }

    /// The date of the pages, from `SOURCE_DATE_EPOCH`.
    pub fn date(&self) -> Option<&Timestamp> {
        self.date.as_ref()
    }

    /// The paths written so far, relative to the assets directory.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Writes `contents` to `rel` below the assets directory and records it.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn put(&mut self, rel: &str, contents: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        self.files.push(rel.to_owned());
        Ok(())
    }

    /// Writes the page `man/manSECTION/TITLE.SECTION`: the title line, then
    /// `body`.
    ///
    /// # Errors
    /// The page cannot be rendered or written.
    pub fn page(&mut self, title: &str, section: &str, body: &Roff) -> Result<()> {
        let page = self.page_text(title, section, &[render(|w| body.to_writer(w))?])?;
        self.put(
            &format!("man/man{section}/{title}.{section}"),
            page.as_bytes(),
        )
    }

    /// The roff preamble, the `.TH` line, then the parts.
    ///
    /// The `.TH` line is written by hand: roff cannot quote an empty
    /// argument, and the date is empty unless `SOURCE_DATE_EPOCH` is set.
    /// Then `.nh`: no hyphenation, which would split paths and option names.
    fn page_text(&self, title: &str, section: &str, parts: &[String]) -> Result<String> {
        let mut page = preamble();
        writeln!(
            page,
            ".TH {} {section} \"{}\" \"{program} {}\" \"{program} manual\"\n.nh",
            title.to_uppercase(),
            self.date.as_ref().map(Timestamp::date).unwrap_or_default(),
            self.version,
            program = self.program,
        )?;
        for part in parts {
            page.push_str(part);
        }
        Ok(page)
    }

    /// `PROGRAM(1)` and a page `PROGRAM-COMMAND[-SUBCOMMAND](1)` for every
    /// public command at every level. Hidden commands and `help` get none.
    /// Each page's SEE ALSO names its parent, its commands' pages and
    /// `see_also` (e.g. `qube-agent.toml(5)`); `files`, when given, is the
    /// top page's FILES section.
    ///
    /// # Errors
    /// A page cannot be rendered or written.
    pub fn man_pages(
        &mut self,
        cmd: Command,
        see_also: &[&str],
        files: Option<&Roff>,
    ) -> Result<()> {
        // No `help` command: it has nothing `--help` does not say.
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        self.man_tree(&cmd, None, see_also, files)
    }

    fn man_tree(
        &mut self,
        cmd: &Command,
        parent: Option<&str>,
        see_also: &[&str],
        files: Option<&Roff>,
    ) -> Result<()> {
        let name = page_name(cmd);
        let mut refs: Vec<String> = parent.map(|p| format!("{p}(1)")).into_iter().collect();
        refs.extend(public(cmd).map(|s| format!("{}(1)", page_name(s))));
        refs.extend(see_also.iter().map(|s| (*s).to_owned()));
        self.man_page(cmd, &name, &refs, files)?;
        for sub in public(cmd) {
            self.man_tree(sub, Some(&name), see_also, None)?;
        }
        Ok(())
    }

    fn man_page(
        &mut self,
        cmd: &Command,
        name: &str,
        see_also: &[String],
        files: Option<&Roff>,
    ) -> Result<()> {
        let man = clap_mangen::Man::new(cmd.clone());
        let mut parts = vec![
            render(|w| man.render_name_section(w))?,
            render(|w| man.render_synopsis_section(w))?,
            render(|w| man.render_description_section(w))?,
        ];
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            parts.push(render(|w| man.render_options_section(w))?);
        }
        if public(cmd).next().is_some() {
            parts.push(render(|w| man.render_subcommands_section(w))?);
        }
        let mut extra = Roff::new();
        if let Some(after) = cmd.get_after_help() {
            after_help(&mut extra, &after.to_string());
        }
        parts.push(render(|w| extra.to_writer(w))?);
        if let Some(files) = files {
            parts.push(render(|w| files.to_writer(w))?);
        }
        let mut tail = Roff::new();
        tail.control("SH", ["SEE ALSO"]);
        let mut refs = Vec::new();
        for (i, r) in see_also.iter().enumerate() {
            if i > 0 {
                refs.push(roman(", "));
            }
            let (page, section) = r.split_once('(').unwrap_or((r, ""));
            refs.push(bold(page));
            refs.push(roman(format!("({section}")));
        }
        tail.text(refs);
        parts.push(render(|w| tail.to_writer(w))?);
        let page = self.page_text(name, "1", &parts)?;
        self.put(&format!("man/man1/{name}.1"), page.as_bytes())
    }

    /// bash, zsh and fish completions of the public commands, as
    /// `completions/PROGRAM.bash`, `completions/_PROGRAM` and
    /// `completions/PROGRAM.fish`.
    ///
    /// # Errors
    /// A script cannot be written.
    pub fn completions(&mut self, full: &Command) -> Result<()> {
        use clap_complete::{Generator, Shell};
        // clap_complete also completes hidden commands; build a command
        // without them (no API removes a subcommand).
        let mut public = Command::new(self.program.clone())
            .disable_version_flag(full.is_disable_version_flag_set())
            .args(full.get_arguments().cloned())
            .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        if let Some(version) = full.get_version() {
            public = public.version(version.to_owned());
        }
        if let Some(about) = full.get_about() {
            public = public.about(about.clone());
        }
        let name = self.program.clone();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut public, &name, &mut buf);
            let mut script = String::from_utf8(buf)?;
            if shell == Shell::Bash {
                // clap_complete 4.6 spells the state of a subcommand of a
                // hyphenated program two ways (`qube__agent__subcmd__run` in
                // the loop, `qube__subcmd__agent__subcmd__run` in the case
                // arms), so no option of a command ever completes:
                // clap-rs/clap#6421. Spell the arms as the loop does; a no-op
                // for a name without a hyphen, and once that is fixed.
                let wrong = name.replace('-', "__subcmd__");
                let right = name.replace('-', "__");
                script =
                    script.replace(&format!("{wrong}__subcmd__"), &format!("{right}__subcmd__"));
            }
            let rel = format!("completions/{}", shell.file_name(&name));
            self.put(&rel, script.as_bytes())?;
        }
        Ok(())
    }

    /// Rust source for the binary to `include!`: `const ASSETS: &[(&str,
    /// &[u8])]`, each file written so far with `include_bytes!`.
    pub fn table(&self) -> String {
        let mut s = String::from("const ASSETS: &[(&str, &[u8])] = &[\n");
        for rel in &self.files {
            let path = self.dir.join(rel).display().to_string();
            s.push_str(&format!("    ({rel:?}, include_bytes!({path:?})),\n"));
        }
        s.push_str("];\n");
        s
    }
}

/// The public subcommands of `cmd`: neither hidden nor `help`.
fn public(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// The page of a built command: `qube-agent`, `govctl-key-show`.
fn page_name(cmd: &Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_owned()
}

/// A command's `after_help`: lines `Example: ...` as an EXAMPLE section
/// (verbatim, without the label), anything else as NOTES paragraphs.
fn after_help(roff: &mut Roff, text: &str) {
    if text.starts_with("Example: ") {
        roff.control("SH", ["EXAMPLE"]);
        roff.control("RS", ["4"]);
        roff.control("nf", []);
        for line in text.lines() {
            roff.text([roman(line.strip_prefix("Example: ").unwrap_or(line))]);
        }
        roff.control("fi", []);
        roff.control("RE", []);
    } else {
        roff.control("SH", ["NOTES"]);
        for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
            roff.control("PP", []);
            roff.text([roman(paragraph.trim())]);
        }
    }
}

/// The roff preamble every rendering starts with (it defines `\*(Aq`).
fn preamble() -> String {
    Roff::new().render()
}

/// Renders a section without the preamble each rendering repeats.
fn render(render: impl Fn(&mut Vec<u8>) -> std::io::Result<()>) -> Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    let text = String::from_utf8(buf)?;
    let pre = preamble();
    Ok(text.strip_prefix(&pre).map(str::to_owned).unwrap_or(text))
}
