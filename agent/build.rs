//! Build information for `qube-agent --version` (`docs/RELEASE.md`): git
//! commit and dirty state (`unknown` without git or outside the repository,
//! e.g. a source tarball), rustc (`$RUSTC`), target, profile, enabled
//! features, the Landlock ABI of `src/worker/sandbox.rs`, and a build date
//! only when `SOURCE_DATE_EPOCH` is set: no timestamp otherwise, so two
//! builds of one tree are the same.
//!
//! Reruns only when an input listed by `cargo:rerun-if-changed` changes: the
//! git HEAD, the branch it points to and the index (commits, checkouts,
//! staging), the package sources and manifests. So `cargo build` twice in a
//! row does no work the second time. The dirty flag is therefore as fresh
//! as the last change to one of those inputs: an unstaged edit elsewhere in
//! the repository (say govctl/) is only noticed at the next rerun.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `TARGET_ABI` is declared.
const SANDBOX_RS: &str = "src/worker/sandbox.rs";

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
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let date = source_date()?;
    let info = build_info(&manifest_dir, date.as_ref())?;
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
fn build_info(manifest_dir: &Path, date: Option<&Timestamp>) -> Result<String> {
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
        date.map(Timestamp::rfc3339)
    )?;
    writeln!(s, "const FEATURES: &[&str] = &{features:?};")?;
    Ok(s)
}
