//! `ossmount --version` names the commit the binary was built from, and the build script's
//! fallbacks work where there is no git checkout (a tarball): each case of
//! build/version.rs is run against a real git repository or a real unpacked `git archive`.

#[path = "../build/version.rs"]
#[allow(dead_code)]
mod version;

use std::path::Path;
use std::process::Command;

use version::Source;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A repository holding a crate-like tree with the archival file, one commit.
fn repo() -> (tempfile::TempDir, String) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    git(d, &["init", "-q", "-b", "main"]);
    std::fs::create_dir(d.join("src")).unwrap();
    std::fs::write(d.join("src/lib.rs"), "// v1\n").unwrap();
    std::fs::write(d.join("README.md"), "hi\n").unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.git_archival.txt"),
        d.join(".git_archival.txt"),
    )
    .unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.gitattributes"),
        d.join(".gitattributes"),
    )
    .unwrap();
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "one"]);
    let head = git(d, &["rev-parse", "HEAD"]);
    (t, head)
}

#[test]
fn the_binary_names_its_version_and_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_ossmount"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!("ossmount {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text:?}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Built from this checkout (unless a packager said otherwise): its commit, short.
    if std::env::var_os("OSSMOUNT_GIT_COMMIT").is_none() {
        if let Source::Git { commit, .. } = version::detect(dir, None) {
            assert!(
                text.contains(&commit[..version::SHORT]),
                "{text:?} lacks {commit}"
            );
        }
    }
}

#[test]
fn a_checkout_gives_its_commit_and_says_when_sources_differ() {
    let (t, head) = repo();
    let d = t.path();
    let s = version::detect(d, None);
    assert_eq!(
        s,
        Source::Git {
            commit: head.clone(),
            modified: false
        }
    );
    assert_eq!(s.describe(), format!("commit {}", &head[..12]));
    // A file outside the binary's sources does not count; one inside does.
    std::fs::write(d.join("README.md"), "changed\n").unwrap();
    assert!(matches!(
        version::detect(d, None),
        Source::Git {
            modified: false,
            ..
        }
    ));
    std::fs::write(d.join("src/lib.rs"), "// v2\n").unwrap();
    let s = version::detect(d, None);
    assert!(matches!(s, Source::Git { modified: true, .. }));
    assert!(s.describe().ends_with("-modified"), "{}", s.describe());
    // The build script watches the branch ref, so a commit reruns it.
    let watched = version::watch_paths(d);
    assert!(watched.iter().any(|p| p.ends_with("HEAD")), "{watched:?}");
    assert!(
        watched.iter().any(|p| p.ends_with("refs/heads/main")),
        "{watched:?}"
    );
}

#[test]
fn a_packager_can_name_the_commit() {
    let (t, _) = repo();
    assert_eq!(
        version::detect(t.path(), Some("abcdef0123456789")),
        Source::Env("abcdef0123456789".into())
    );
    assert_eq!(
        Source::Env("abcdef0123456789".into()).describe(),
        "commit abcdef012345"
    );
}

#[test]
fn a_git_archive_tarball_knows_its_commit_from_the_archival_file() {
    let (t, head) = repo();
    let out = tempfile::tempdir().unwrap();
    let tar = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive --format=tar HEAD | tar -x -C '{}'",
            t.path().display(),
            out.path().display()
        ))
        .status()
        .unwrap();
    assert!(tar.success());
    assert!(!out.path().join(".git").exists());
    assert_eq!(version::detect(out.path(), None), Source::Archive(head));
}

#[test]
fn a_plain_tarball_says_unknown_even_inside_another_repository() {
    // Unpacked inside some other checkout: that checkout's commit is not ours.
    let (t, _) = repo();
    let inner = t.path().join("vendor/ossmount");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(inner.join(".git_archival.txt"), "node: $Format:%H$\n").unwrap();
    let s = version::detect(&inner, None);
    assert_eq!(s, Source::Unknown);
    assert_eq!(
        s.describe(),
        "commit unknown: not built from a git checkout"
    );
    assert!(version::watch_paths(tempfile::tempdir().unwrap().path()).is_empty());
}
