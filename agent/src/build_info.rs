//! What `qube-agent --version` prints, and the man pages and completions
//! `qube-agent generate-assets` writes: both made by `build.rs` at build
//! time (`docs/RELEASE.md`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

// GIT_COMMIT, GIT_DIRTY, RUSTC, TARGET, PROFILE, LANDLOCK_ABI, BUILD_DATE,
// FEATURES and ASSETS.
include!(concat!(env!("OUT_DIR"), "/build_info.rs"));

/// The crate version.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `--version --json`, fields in this order.
#[derive(serde::Serialize)]
struct Json {
    name: &'static str,
    version: &'static str,
    git_commit: Option<&'static str>,
    git_dirty: Option<bool>,
    rustc: Option<&'static str>,
    target: &'static str,
    profile: &'static str,
    landlock_abi: u32,
    build_date: Option<&'static str>,
    features: &'static [&'static str],
}

/// `--version`: a short block of `key: value` lines after the usual first
/// line `qube-agent VERSION`, or with `--json` one JSON object. Unknown git
/// facts (no git, a source tarball) are `unknown` in the text and `null`
/// in the JSON; `built` is there only when `SOURCE_DATE_EPOCH` was set.
pub fn print_version(json: bool) -> ExitCode {
    let text = if json {
        let value = Json {
            name: "qube-agent",
            version: VERSION,
            git_commit: GIT_COMMIT,
            git_dirty: GIT_DIRTY,
            rustc: RUSTC,
            target: TARGET,
            profile: PROFILE,
            landlock_abi: LANDLOCK_ABI,
            build_date: BUILD_DATE,
            features: FEATURES,
        };
        match serde_json::to_string(&value) {
            Ok(line) => format!("{line}\n"),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        version_text()
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn version_text() -> String {
    let commit = match (GIT_COMMIT, GIT_DIRTY) {
        (Some(c), Some(true)) => format!("{c} (dirty)"),
        (Some(c), Some(false)) => format!("{c} (clean)"),
        (Some(c), None) => format!("{c} (dirty state unknown)"),
        (None, _) => "unknown".to_owned(),
    };
    let mut lines = vec![
        format!("qube-agent {VERSION}"),
        format!("commit:       {commit}"),
        format!("rustc:        {}", RUSTC.unwrap_or("unknown")),
        format!("target:       {TARGET}"),
        format!("profile:      {PROFILE}"),
        format!("landlock ABI: {LANDLOCK_ABI}"),
    ];
    if let Some(date) = BUILD_DATE {
        lines.push(format!("built:        {date}"));
    }
    if !FEATURES.is_empty() {
        lines.push(format!("features:     {}", FEATURES.join(", ")));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// `generate-assets --out DIR`: writes every generated file below `dir`
/// (`man/man1/`, `man/man5/`, `completions/`) and lists them on stdout.
pub fn write_assets(dir: &Path) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match qube_assets::write(dir, ASSETS, |path| {
        let _ = writeln!(stdout, "{}", path.display());
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}
