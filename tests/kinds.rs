//! OSS object kinds against a real `ossmount serve` (its emulation, `serve/kinds.rs`):
//! symlink objects, appendable objects, archive storage classes and restores, user
//! metadata; through the HTTP client (signed OSS V4) and through real FUSE mounts driven
//! by `readlink`, `cat`, `ls -l`, `find -L`, `cmp` and `getfattr`.
//!
//! Run: `cargo test --test kinds`. Needs root (or fusermount3) and /dev/fuse; the xattr
//! tests need `getfattr` (Debian package `attr`).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ossmount::config;
use ossmount::store::config::{Auth, Scheme, StoreConfig};
use ossmount::store::{Credentials, ListRequest, ObjectStore, StoreError};

use common::mount::{run, Env, BUCKET};
use common::{Serve, AK, SK};

fn store_of(serve: &Serve) -> Arc<dyn ObjectStore> {
    store_of_version(serve, None)
}

/// A store whose object requests name `version` (`versionId`), as `download --version-id`.
fn store_of_version(serve: &Serve, version: Option<&str>) -> Arc<dyn ObjectStore> {
    config::connect(&StoreConfig {
        scheme: Scheme::Oss,
        bucket: BUCKET.into(),
        endpoint: serve.endpoint(),
        region: "cn-hangzhou".into(),
        path_style: true,
        auth: Auth::with_keys(
            Scheme::Oss,
            Credentials {
                access_key_id: AK.into(),
                access_key_secret: SK.into(),
                session_token: None,
            },
        ),
        version_id: version.map(str::to_string),
    })
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn read_all(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>, StoreError> {
    use futures_util::StreamExt;
    let meta = store.head(key).await?;
    let mut s = store.get_range(key, 0..meta.size, Some(&meta.etag)).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// A bucket with links: in the same directory, up a level, from the top, dangling, a
/// loop, and one out of the prefix `d/`.
fn links_bucket(b: &Path) {
    std::fs::create_dir_all(b.join("d/sub")).unwrap();
    std::fs::write(b.join("d/file.txt"), "hello file\n").unwrap();
    std::fs::write(b.join("other.txt"), "outside d\n").unwrap();
    symlink("file.txt", b.join("d/link")).unwrap();
    symlink("../file.txt", b.join("d/sub/uplink")).unwrap();
    symlink("d/file.txt", b.join("top")).unwrap();
    symlink("missing", b.join("d/dangling")).unwrap();
    symlink("../other.txt", b.join("d/outlink")).unwrap();
    symlink("loop2", b.join("loop1")).unwrap();
    symlink("loop1", b.join("loop2")).unwrap();
}

#[test]
fn symlink_objects_over_http() {
    let env = Env::with_objects(links_bucket);
    let store = store_of(&env.serve);
    rt().block_on(async {
        // GetSymlink gives the target key; HEAD and GET answer for the target.
        assert_eq!(store.get_symlink("d/link").await.unwrap(), "d/file.txt");
        assert_eq!(
            store.get_symlink("d/sub/uplink").await.unwrap(),
            "d/file.txt"
        );
        assert_eq!(store.get_symlink("d/dangling").await.unwrap(), "d/missing");
        let m = store.head("d/link").await.unwrap();
        let target = store.head("d/file.txt").await.unwrap();
        assert!(m.is_symlink(), "{m:?}");
        assert_eq!((m.size, &m.etag, m.crc64), (11, &target.etag, None));
        assert!(target.crc64.is_some());
        assert_eq!(read_all(&*store, "d/link").await.unwrap(), b"hello file\n");
        // GetSymlink of a plain object is refused; a dangling link reads as missing.
        let e = store.get_symlink("d/file.txt").await.unwrap_err();
        assert!(format!("{e}").contains("NotSymlink"), "{e}");
        match store.head("d/dangling").await {
            Err(StoreError::NoSuchKey(e)) => assert_eq!(e.code, "SymlinkTargetNotExist"),
            other => panic!("{other:?}"),
        }
        // A link to a link is refused, as OSS refuses it.
        match store.head("loop1").await {
            Err(StoreError::Other(e)) => assert_eq!(e.code, "InvalidTargetType"),
            other => panic!("{other:?}"),
        }
        // Listings report the type.
        let page = store
            .list(&ListRequest {
                prefix: "d/".into(),
                delimiter: Some("/".into()),
                max_keys: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let ty = |k: &str| {
            page.objects
                .iter()
                .find(|o| o.key == k)
                .and_then(|o| o.object_type.clone())
        };
        assert_eq!(ty("d/link").as_deref(), Some("Symlink"));
        assert_eq!(ty("d/dangling").as_deref(), Some("Symlink"));
        assert_eq!(ty("d/file.txt").as_deref(), Some("Normal"));
        assert_eq!(ty("d/outlink").as_deref(), Some("Symlink"));
    });
}

fn readlink(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()))
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn symlinks_in_the_mount() {
    let env = Env::with_objects(links_bucket);
    let m = env.mount_fg("mnt", &[]);
    let d = &m.dir;
    // readlink: relative to the link's directory.
    assert_eq!(readlink(&d.join("d/link")), "file.txt");
    assert_eq!(readlink(&d.join("d/sub/uplink")), "../file.txt");
    assert_eq!(readlink(&d.join("top")), "d/file.txt");
    assert_eq!(readlink(&d.join("d/dangling")), "missing");
    // Reading through the link reads the target.
    for l in ["d/link", "d/sub/uplink", "top"] {
        assert_eq!(std::fs::read(d.join(l)).unwrap(), b"hello file\n", "{l}");
    }
    let meta = std::fs::symlink_metadata(d.join("d/link")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.len(), "file.txt".len() as u64);
    // ls -l shows the arrow.
    let ls = run(Command::new("ls").arg("-l").arg(d.join("d")));
    let ls = String::from_utf8_lossy(&ls.stdout).to_string();
    assert!(
        ls.lines()
            .any(|l| l.starts_with('l') && l.ends_with("link -> file.txt")),
        "{ls}"
    );
    assert!(ls.contains("dangling -> missing"), "{ls}");
    // find -L follows the links: each resolves to a regular file (the dangling one and
    // the loop are reported by find and skipped).
    let out = Command::new("find")
        .arg("-L")
        .arg(d)
        .args(["-type", "f"])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&out.stdout).to_string();
    for f in ["d/link", "d/sub/uplink", "top", "d/file.txt", "d/outlink"] {
        assert!(
            found.lines().any(|l| l == d.join(f).to_str().unwrap()),
            "{f} not in {found}"
        );
    }
    assert!(!found.contains("dangling"), "{found}");
    // Dangling: ENOENT when followed. Loop: ELOOP from the kernel.
    let e = std::fs::read(d.join("d/dangling")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
    let e = std::fs::read(d.join("loop1")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
    // Mounting the whole bucket, other.txt is inside: outlink is a link too.
    assert!(std::fs::symlink_metadata(d.join("d/outlink"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(readlink(&d.join("d/outlink")), "../other.txt");
}

#[test]
fn links_out_of_the_prefix_show_as_files_and_follow_symlinks_shows_all_so() {
    let env = Env::with_objects(links_bucket);
    // Mounting only d/: outlink points at other.txt, outside the prefix.
    let m = env.mount_fg_url(&format!("oss://{BUCKET}/d/"), "sub", &[]);
    let out = m.dir.join("outlink");
    let meta = std::fs::symlink_metadata(&out).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.len(), 10);
    assert_eq!(std::fs::read(&out).unwrap(), b"outside d\n");
    assert_eq!(readlink(&m.dir.join("link")), "file.txt");
    drop(m);

    let m = env.mount_fg("follow", &["--follow-symlinks"]);
    let link = m.dir.join("d/link");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_file(), "{meta:?}");
    assert_eq!(meta.len(), 11);
    assert_eq!(std::fs::read(&link).unwrap(), b"hello file\n");
    // A dangling link has no file to show: it stays a (dangling) link.
    assert!(std::fs::symlink_metadata(m.dir.join("d/dangling"))
        .unwrap()
        .file_type()
        .is_symlink());
}

fn setfattr(path: &Path, name: &str, value: &str) {
    run(Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(path));
}

/// Wait (30 s: a loaded CI box) until `f` holds.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn archived_objects_over_http() {
    let env = Env::with_objects(|b| {
        std::fs::write(b.join("cold.bin"), "frozen bytes").unwrap();
        std::fs::write(b.join("warm.bin"), "plain bytes").unwrap();
    });
    let cold = env.object("cold.bin");
    setfattr(&cold, "user.oss.storage-class", "ColdArchive");
    let store = store_of(&env.serve);
    rt().block_on(async {
        let m = store.head("cold.bin").await.unwrap();
        assert_eq!(m.storage_class.as_deref(), Some("ColdArchive"));
        assert_eq!(m.restore, None);
        match read_all(&*store, "cold.bin").await {
            Err(StoreError::InvalidObjectState(e)) => {
                assert_eq!(e.status, 403);
                assert!(e.message.contains("RestoreObject"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        setfattr(&cold, "user.oss.restore", "ongoing");
        let m = store.head("cold.bin").await.unwrap();
        assert_eq!(m.restore.as_deref(), Some("ongoing-request=\"true\""));
        assert!(read_all(&*store, "cold.bin").await.is_err());
        setfattr(&cold, "user.oss.restore", "restored");
        let m = store.head("cold.bin").await.unwrap();
        assert!(m
            .restore
            .as_deref()
            .unwrap()
            .starts_with("ongoing-request=\"false\", expiry-date=\""));
        assert_eq!(
            read_all(&*store, "cold.bin").await.unwrap(),
            b"frozen bytes"
        );
        // The listing carries StorageClass and RestoreInfo.
        let page = store
            .list(&ListRequest {
                max_keys: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let c = page.objects.iter().find(|o| o.key == "cold.bin").unwrap();
        assert_eq!(c.storage_class.as_deref(), Some("ColdArchive"));
        assert_eq!(c.restore, m.restore);
        let w = page.objects.iter().find(|o| o.key == "warm.bin").unwrap();
        assert_eq!(w.storage_class.as_deref(), Some("Standard"));
        assert_eq!(w.restore, None);
    });
}

#[test]
fn archived_objects_in_the_mount_need_a_restore() {
    let env = Env::with_objects(|b| {
        std::fs::write(b.join("cold.bin"), "frozen bytes").unwrap();
    });
    let cold = env.object("cold.bin");
    setfattr(&cold, "user.oss.storage-class", "Archive");
    let m = env.mount_fg("mnt", &["--metadata-ttl", "1s"]);
    let log = env.tmp.path().join("mnt.log");
    let via = m.dir.join("cold.bin");
    // Listed and stat-able, but not readable: EACCES, and the log says what to do.
    assert_eq!(std::fs::metadata(&via).unwrap().len(), 12);
    let e = std::fs::read(&via).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("cold.bin")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("RestoreObject") && lines[0].contains("Archive"),
        "{text}"
    );
    // A restore in progress says so.
    setfattr(&cold, "user.oss.restore", "ongoing");
    wait_for("the restore in progress to be logged", || {
        let _ = std::fs::read(&via);
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("restore is in progress")
    });
    assert_eq!(
        std::fs::read(&via).unwrap_err().raw_os_error(),
        Some(libc::EACCES)
    );
    // Restored: reads normally.
    setfattr(&cold, "user.oss.restore", "restored");
    wait_for("the restored object to read", || {
        std::fs::read(&via).is_ok_and(|b| b == b"frozen bytes")
    });
    // The restore expired: archived again.
    setfattr(&cold, "user.oss.restore", "restored:1000");
    wait_for("the expired restore to refuse reads", || {
        std::fs::read(&via).is_err_and(|e| e.raw_os_error() == Some(libc::EACCES))
    });
}

fn getfattr(path: &Path, name: &str) -> Result<String, String> {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn extended_attributes_show_the_object_and_the_cache() {
    let data = common::pattern(3 << 20, 9);
    let env = Env::with_objects(|b| {
        std::fs::write(b.join("obj.bin"), &data).unwrap();
        std::fs::write(b.join("cold.bin"), "frozen").unwrap();
    });
    setfattr(&env.object("obj.bin"), "user.owner", "alice");
    setfattr(&env.object("obj.bin"), "user.project", "x y");
    setfattr(
        &env.object("cold.bin"),
        "user.oss.storage-class",
        "DeepColdArchive",
    );
    let store = store_of(&env.serve);
    let head = rt().block_on(store.head("obj.bin")).unwrap();
    let m = env.mount_fg("mnt", &[]);
    let f = m.dir.join("obj.bin");
    // getfattr -d dumps every user attribute.
    let dump = run(Command::new("getfattr").arg("-d").arg(&f));
    let dump = String::from_utf8_lossy(&dump.stdout).to_string();
    for name in [
        "user.oss.etag=",
        "user.oss.crc64=",
        "user.oss.object-type=\"Normal\"",
        "user.oss.storage-class=\"Standard\"",
        "user.oss.meta.owner=\"alice\"",
        "user.oss.meta.project=\"x y\"",
        "user.ossmount.cached-bytes=\"0\"",
        "user.ossmount.finalized=\"no\"",
    ] {
        assert!(dump.contains(name), "{name} not in {dump}");
    }
    assert_eq!(getfattr(&f, "user.oss.etag").unwrap(), head.etag);
    assert_eq!(
        getfattr(&f, "user.oss.crc64").unwrap(),
        head.crc64.unwrap().to_string()
    );
    // Read it all: the cache holds it, verified.
    assert_eq!(std::fs::read(&f).unwrap(), data);
    wait_for("the object to be finalized", || {
        getfattr(&f, "user.ossmount.finalized").as_deref() == Ok("yes")
    });
    assert_eq!(
        getfattr(&f, "user.ossmount.cached-bytes").unwrap(),
        (3u64 << 20).to_string()
    );
    // Unknown names, directories, and changes.
    let e = getfattr(&f, "user.nothing").unwrap_err();
    assert!(e.contains("No such attribute"), "{e}");
    let dir_dump = run(Command::new("getfattr").arg("-d").arg(&m.dir));
    assert!(dir_dump.stdout.is_empty());
    let out = Command::new("setfattr")
        .args(["-n", "user.x", "-v", "1"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{out:?}"
    );
    // An archived object says so.
    let cold = m.dir.join("cold.bin");
    assert_eq!(
        getfattr(&cold, "user.oss.storage-class").unwrap(),
        "DeepColdArchive"
    );
    assert_eq!(
        getfattr(&cold, "user.oss.restore-state").unwrap(),
        "archived"
    );
}

fn append(path: &Path, data: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(data).unwrap();
}

#[test]
fn appendable_objects_over_http_and_through_the_mount() {
    let first = common::pattern(1 << 20, 3);
    let more = common::pattern(100 << 10, 4);
    let env = Env::with_objects(|b| std::fs::write(b.join("log.txt"), &first).unwrap());
    let src = env.object("log.txt");
    setfattr(&src, "user.oss.object-type", "Appendable");
    let store = store_of(&env.serve);
    let before = rt().block_on(store.head("log.txt")).unwrap();
    assert!(before.is_appendable(), "{before:?}");
    assert_eq!(before.size, 1 << 20);

    let m = env.mount_fg("mnt", &["--metadata-ttl", "1s"]);
    let via = m.dir.join("log.txt");
    assert_eq!(std::fs::read(&via).unwrap(), first);
    assert_eq!(
        getfattr(&via, "user.oss.object-type").unwrap(),
        "Appendable"
    );

    // AppendObject: a new length, ETag and CRC-64; the bytes before stay.
    append(&src, &more);
    let after = rt().block_on(store.head("log.txt")).unwrap();
    assert!(after.is_appendable());
    assert_eq!(after.size, (1 << 20) + (100 << 10));
    assert_ne!(after.etag, before.etag);
    assert_ne!(after.crc64, before.crc64);
    // A reader that reopens (tail -F style) sees the new length after the TTL, and the
    // whole object matches.
    wait_for("the mount to see the appended length", || {
        std::fs::metadata(&via).is_ok_and(|md| md.len() == after.size)
    });
    common::mount::same_file(&via, &src);
}

fn download(env: &Env, key: &str, local: &Path) -> std::process::Output {
    Command::new(common::bin())
        .arg("download")
        .arg(format!("oss://{BUCKET}/{key}"))
        .arg(local)
        .args([
            "--endpoint",
            &env.serve.endpoint(),
            "--region",
            "cn-hangzhou",
        ])
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .output()
        .unwrap()
}

#[test]
fn download_follows_a_symlink_and_verifies_the_target() {
    let data = common::pattern(3 << 20, 5);
    let env = Env::with_objects(|b| {
        std::fs::create_dir_all(b.join("d")).unwrap();
        std::fs::write(b.join("d/data.bin"), &data).unwrap();
        symlink("data.bin", b.join("d/link")).unwrap();
        symlink("gone", b.join("d/dangling")).unwrap();
        std::fs::write(b.join("log.txt"), &data[..1 << 20]).unwrap();
    });
    setfattr(&env.object("log.txt"), "user.oss.object-type", "Appendable");
    let local = env.tmp.path().join("out.bin");
    let out = download(&env, "d/link", &local);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("symlink to \"d/data.bin\""), "{err}");
    assert!(!err.contains("cannot be verified"), "{err}");
    assert_eq!(std::fs::read(&local).unwrap(), data);
    // A dangling link fails clearly.
    let out = download(&env, "d/dangling", &env.tmp.path().join("x"));
    assert!(!out.status.success());
    // An appendable object: the length at the HEAD, verified.
    let local = env.tmp.path().join("log.out");
    let out = download(&env, "log.txt", &local);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cannot be verified"));
    assert_eq!(std::fs::read(&local).unwrap(), &data[..1 << 20]);
}

#[test]
fn appended_objects_keep_their_cached_parts_and_open_handles_keep_reading() {
    const MIB: usize = 1 << 20;
    let first = common::pattern(20 * MIB, 6);
    let more = common::pattern(100 << 10, 7);
    let env = Env::with_objects(|b| std::fs::write(b.join("log.bin"), &first).unwrap());
    let src = env.object("log.bin");
    setfattr(&src, "user.oss.object-type", "Appendable");
    let m = env.mount_fg("mnt", &["--metadata-ttl", "1s", "--part-size", "1MiB"]);
    let via = m.dir.join("log.bin");

    // A handle opened before the append reads its first MiB...
    use std::io::Read;
    let mut old = std::fs::File::open(&via).unwrap();
    let mut head = vec![0u8; MIB];
    old.read_exact(&mut head).unwrap();
    assert_eq!(head, first[..MIB]);
    append(&src, &more);
    // ...another reader opens the grown object after the TTL and reads all of it...
    wait_for("the mount to see the appended length", || {
        std::fs::metadata(&via).is_ok_and(|md| md.len() as usize == first.len() + more.len())
    });
    common::mount::same_file(&via, &src);
    // ...and the old handle reads on, with no ESTALE: at least to the length it saw (the
    // kernel may give it the appended bytes too, as for a local file being appended to:
    // its page cache is the inode's), every byte what the object holds.
    let mut rest = Vec::new();
    old.read_to_end(&mut rest).unwrap();
    assert!(rest.len() >= first.len() - MIB, "{}", rest.len());
    let now = std::fs::read(&src).unwrap();
    assert_eq!(rest, now[MIB..MIB + rest.len()]);
    drop(old);

    // Everything is cached now; append again: only the new bytes (and the old short last
    // part) cross the network.
    wait_for("the object to be finalized", || {
        getfattr(&via, "user.ossmount.finalized").as_deref() == Ok("yes")
    });
    env.serve.reset_stats();
    append(&src, &more);
    let len = first.len() + 2 * more.len();
    wait_for("the second append to show", || {
        std::fs::metadata(&via).is_ok_and(|md| md.len() as usize == len)
    });
    common::mount::same_file(&via, &src);
    let sent = env.serve.stats().bytes_sent;
    assert!(
        sent <= (2 * more.len()) as u64,
        "{sent} bytes sent for a {}-byte append",
        more.len()
    );
    assert!(sent >= more.len() as u64, "{sent}");
}

/// The kinds and versions are testing aids: without `--testing-aids` serve is the plain
/// file tree (issue 16: aids only when asked for). A symlink reads as the bytes it points
/// to, a dangling one is no object, attributes are ignored, the versions directory is
/// ordinary keys and every object has the one version `null`. The same tree with the aids
/// shows the kinds and versions.
#[test]
fn without_testing_aids_the_tree_is_plain_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let b = data.join(BUCKET);
    std::fs::create_dir_all(&b).unwrap();
    links_bucket(&b);
    let cold = b.join("cold.bin");
    std::fs::write(&cold, "frozen").unwrap();
    setfattr(&cold, "user.oss.storage-class", "ColdArchive");
    setfattr(&cold, "user.owner", "alice");
    let old = b.join(".ossmount-versions/d/file.txt/v1");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, "old file\n").unwrap();
    let list = |store: &Arc<dyn ObjectStore>| {
        rt().block_on(store.list(&ListRequest {
            max_keys: 1000,
            ..Default::default()
        }))
        .unwrap()
        .objects
    };

    let plain = Serve::start_without_aids(&data, &[]);
    let store = store_of(&plain);
    rt().block_on(async {
        let m = store.head("d/link").await.unwrap();
        let target = store.head("d/file.txt").await.unwrap();
        assert_eq!(m.object_type.as_deref(), Some("Normal"), "{m:?}");
        assert_eq!((m.size, &m.etag), (11, &target.etag));
        assert!(m.crc64.is_some() && m.version_id.is_none(), "{m:?}");
        assert_eq!(read_all(&*store, "d/link").await.unwrap(), b"hello file\n");
        let e = store.get_symlink("d/link").await.unwrap_err();
        assert!(format!("{e}").contains("NotSymlink"), "{e}");
        let c = store.head("cold.bin").await.unwrap();
        assert_eq!(c.storage_class.as_deref(), Some("Standard"), "{c:?}");
        assert!(c.user_meta.is_empty(), "{c:?}");
        assert_eq!(read_all(&*store, "cold.bin").await.unwrap(), b"frozen");
        match store_of_version(&plain, Some("v1"))
            .head("d/file.txt")
            .await
        {
            Err(StoreError::NoSuchKey(e)) => assert_eq!(e.code, "NoSuchVersion"),
            other => panic!("{other:?}"),
        }
        let n = store_of_version(&plain, Some("null"));
        assert_eq!(read_all(&*n, "d/file.txt").await.unwrap(), b"hello file\n");
    });
    let keys: Vec<String> = list(&store).into_iter().map(|o| o.key).collect();
    assert!(
        keys.contains(&".ossmount-versions/d/file.txt/v1".to_string()),
        "{keys:?}"
    );
    assert!(!keys.contains(&"d/dangling".to_string()), "{keys:?}");
    drop(plain);

    let aids = Serve::start(&data);
    let store = store_of(&aids);
    let objects = list(&store);
    assert!(
        objects
            .iter()
            .all(|o| !o.key.starts_with(".ossmount-versions")),
        "{objects:?}"
    );
    assert!(objects.iter().any(|o| o.key == "d/dangling"), "{objects:?}");
    rt().block_on(async {
        assert!(store.head("d/link").await.unwrap().is_symlink());
        let c = store.head("cold.bin").await.unwrap();
        assert_eq!(c.storage_class.as_deref(), Some("ColdArchive"), "{c:?}");
        let latest = store.head("d/file.txt").await.unwrap();
        let id = latest
            .version_id
            .clone()
            .expect("the latest names its version");
        let v1 = store_of_version(&aids, Some("v1"));
        let m = v1.head("d/file.txt").await.unwrap();
        assert_eq!(m.version_id.as_deref(), Some("v1"));
        assert_ne!(m.etag, latest.etag);
        assert_eq!(read_all(&*v1, "d/file.txt").await.unwrap(), b"old file\n");
        let by_id = store_of_version(&aids, Some(&id));
        assert_eq!(
            read_all(&*by_id, "d/file.txt").await.unwrap(),
            b"hello file\n"
        );
        match store.head(".ossmount-versions/d/file.txt/v1").await {
            Err(StoreError::NoSuchKey(_)) => {}
            other => panic!("{other:?}"),
        }
    });
}
