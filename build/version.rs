//! Which commit a build comes from, for `ossmount --version`. Shared by `build.rs` and
//! `tests/version.rs` (which checks every fallback without building a second tree).
//!
//! In order of trust:
//! 1. `OSSMOUNT_GIT_COMMIT` in the environment: a packager building from a tarball who knows
//!    the commit says so.
//! 2. The git checkout the crate is in, only if the crate's directory *is* the top of that
//!    checkout (a tarball unpacked inside some other repository must not borrow that
//!    repository's commit). A checkout whose sources of the binary ([`SOURCES`]) differ from
//!    that commit says `-modified`.
//! 3. `.git_archival.txt`, which `git archive` fills in (`export-subst` in .gitattributes),
//!    so GitHub's source tarballs still know their commit.
//! 4. Otherwise "unknown": the build still succeeds and says so instead of guessing.

use std::path::Path;
use std::process::Command;

/// Hex digits of a commit shown by `--version`: enough to be unique in any repository of
/// this size, short enough to read aloud (git's own `--short` grows to about this).
pub const SHORT: usize = 12;

/// What the binary is built from. Only these count for `-modified`, and only these make
/// cargo run the build script again: each rerun rebuilds the whole package, so watching
/// tests/ or docs/ would recompile the library after every edit of a test.
pub const SOURCES: &[&str] = &["src", "build", "build.rs", "Cargo.toml", "Cargo.lock"];

/// Where the commit came from, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env(String),
    Git { commit: String, modified: bool },
    Archive(String),
    Unknown,
}

impl Source {
    /// The text after the version in `ossmount --version`.
    pub fn describe(&self) -> String {
        match self {
            Source::Env(c) => format!("commit {}", short(c)),
            Source::Git { commit, modified } => format!(
                "commit {}{}",
                short(commit),
                if *modified { "-modified" } else { "" }
            ),
            Source::Archive(c) => format!("commit {}", short(c)),
            Source::Unknown => "commit unknown: not built from a git checkout".to_string(),
        }
    }
}

fn short(c: &str) -> &str {
    &c[..c.len().min(SHORT)]
}

fn is_commit(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit of the crate in `dir`, given `OSSMOUNT_GIT_COMMIT`'s value.
pub fn detect(dir: &Path, env: Option<&str>) -> Source {
    if let Some(c) = env.map(str::trim).filter(|c| !c.is_empty()) {
        return Source::Env(c.to_string());
    }
    if let Some(top) = git(dir, &["rev-parse", "--show-toplevel"]) {
        let same = match (Path::new(&top).canonicalize(), dir.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            if let Some(commit) = git(dir, &["rev-parse", "HEAD"]).filter(|c| is_commit(c)) {
                // Exit status 1: the sources differ from HEAD (`git diff`, unlike
                // `diff-index`, refreshes stale stat data instead of reporting it).
                let modified = Command::new("git")
                    .arg("-C")
                    .arg(dir)
                    .args(["diff", "--quiet", "HEAD", "--"])
                    .args(SOURCES)
                    .status()
                    .map(|s| s.code() == Some(1))
                    .unwrap_or(false);
                return Source::Git { commit, modified };
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join(".git_archival.txt")) {
        for line in text.lines() {
            if let Some(c) = line.strip_prefix("node:").map(str::trim) {
                if is_commit(c) {
                    return Source::Archive(c.to_string());
                }
            }
        }
    }
    Source::Unknown
}

/// Files whose change means the commit may have changed: the git directory's HEAD, the
/// branch it names and packed refs (not the index: `git add` would rebuild the package).
/// Empty outside git.
pub fn watch_paths(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) else {
        return out;
    };
    let git_dir = std::path::PathBuf::from(git_dir);
    let common = git(dir, &["rev-parse", "--git-common-dir"])
        .map(|c| {
            let p = std::path::PathBuf::from(c);
            if p.is_absolute() {
                p
            } else {
                dir.join(p)
            }
        })
        .unwrap_or_else(|| git_dir.clone());
    out.push(git_dir.join("HEAD"));
    out.push(common.join("packed-refs"));
    if let Some(r) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        out.push(common.join(r));
    }
    out
}
