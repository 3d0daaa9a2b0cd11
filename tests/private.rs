//! Other users on the same machine (issue 16, part 3): the cache directory and its files
//! are the owner's alone, `ossmount download` keeps its temp file and checkpoint private
//! and refuses to run twice for one LOCAL, and `ossmount serve` has no unauthenticated
//! control endpoints unless `--testing-aids` is given.
//!
//! The "other user" is `nobody`, reached with `setpriv` (util-linux), so these tests need
//! root, as every FUSE test here does.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::{run, same_file, Env};
use common::{bin, pattern, write_pattern_file, Serve, AK, SK};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `cat PATH` as user nobody: did it read anything?
fn nobody_can_read(p: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
        .arg(p)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

#[test]
fn the_cache_is_private_to_its_owner() {
    let env = Env::with_objects(|b| {
        std::fs::write(b.join("small.txt"), pattern(100_000, 1)).unwrap();
        // Above the 16 MiB whole-object threshold: a 4 KiB read leaves a partial entry.
        write_pattern_file(&b.join("big.bin"), 24 << 20, 2);
    });
    // Everything above the cache is open to others, so only the cache's own modes can keep
    // nobody out.
    std::fs::set_permissions(env.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = env.cache();
    {
        let m = env.mount_fg("m", &[]);
        same_file(&m.dir.join("small.txt"), &env.object("small.txt"));
        run(Command::new("dd")
            .arg(format!("if={}", m.dir.join("big.bin").display()))
            .args(["of=/dev/null", "bs=4k", "count=1"]));
        wait_for("small.txt finalized", || {
            !files_ending(&cache, ".meta").is_empty()
        });
    }
    assert_eq!(mode(&cache), 0o700, "cache directory");
    let mut kinds = Vec::new();
    for e in std::fs::read_dir(&cache).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        kinds.push(name.rsplit('.').next().unwrap().to_string());
    }
    kinds.sort();
    kinds.dedup();
    // big.bin's 4 KiB read leaves a partial entry (a .ckpt) unless the read-ahead of a
    // loaded box finished the object first; either way every file was checked above.
    kinds.retain(|k| k != "ckpt");
    assert_eq!(kinds, ["data", "done", "lock", "meta"], "the cache's files");
    let done = files_ending(&cache, ".done").pop().unwrap();
    let data = files_ending(&cache, ".data").pop().unwrap();
    assert!(!nobody_can_read(&done), "nobody read a cached object");
    // The test's own check works: nobody can read a file that is open to it.
    let open = env.tmp.path().join("open.txt");
    std::fs::write(&open, "x").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        nobody_can_read(&open),
        "setpriv as nobody cannot read at all"
    );

    // A directory opened to others (as an older ossmount made it, or by hand) keeps the
    // files private, and the next mount warns about the directory.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in [&done, &data] {
        assert!(!nobody_can_read(p), "nobody read {}", p.display());
    }
    {
        let m = env.mount_fg("m2", &[]);
        same_file(&m.dir.join("small.txt"), &env.object("small.txt"));
    }
    let log = std::fs::read_to_string(env.tmp.path().join("m2.log")).unwrap();
    assert!(
        log.contains("has mode 0755") && log.contains(&cache.display().to_string()),
        "no warning about the open cache directory: {log}"
    );
    assert_eq!(mode(&cache), 0o755, "an existing directory is not chmod'ed");
}

fn download(serve: &Serve, local: &Path) -> Command {
    let mut c = Command::new(bin());
    c.arg("download")
        .arg("oss://bkt/obj")
        .arg(local)
        .args([
            "--endpoint",
            &serve.endpoint(),
            "--region",
            "cn-hangzhou",
            "-q",
        ])
        .args(["--part-size", "1MiB", "--jobs", "2"])
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .stdin(Stdio::null());
    c
}

/// The process umask, from /proc/self/status.
fn umask() -> u32 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let v = s.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap();
    u32::from_str_radix(v.trim(), 8).unwrap()
}

#[test]
fn a_second_download_to_the_same_local_exits_5_and_harms_neither() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("srv/bkt/obj");
    write_pattern_file(&src, 40 << 20, 3);
    let serve = Serve::start(&tmp.path().join("srv"));
    // Slow enough that the first run is still going when the second starts.
    serve.set_faults(&common::Faults {
        latency_ms: Some(150),
        ..Default::default()
    });
    let out_dir = tmp.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let local = out_dir.join("obj");
    let mut first = download(&serve, &local)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let part = out_dir.join("obj.ossmount-part");
    wait_for("the first run's temp file", || part.exists());
    wait_for("the first run's checkpoint", || {
        !files_ending(&out_dir, ".ossmount-ckpt").is_empty()
    });
    assert_eq!(mode(&part), 0o600, "temp file");
    for c in files_ending(&out_dir, ".ossmount-ckpt") {
        assert_eq!(mode(&c), 0o600, "checkpoint {}", c.display());
    }
    let second = download(&serve, &local).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(5), "second run: {err}");
    assert!(err.contains("another ossmount download"), "{err}");
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run ended before the second was refused: the test proves nothing"
    );
    serve.set_faults(&common::Faults::default());
    let st = first.wait().unwrap();
    let mut ferr = String::new();
    first
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut ferr)
        .unwrap();
    assert!(st.success(), "first run: {st}: {ferr}");
    same_file(&local, &src);
    assert_eq!(
        mode(&local),
        0o666 & !umask(),
        "LOCAL gets an ordinary file's mode"
    );
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["obj"], "temp file, checkpoint and lock are gone");
    // With the first one done, the same command runs again (and finds LOCAL complete).
    let again = download(&serve, &local).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    same_file(&local, &src);
}

/// One HTTP/1.1 request; the status code and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

#[test]
fn serve_has_no_testing_aids_unless_asked() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("bkt")).unwrap();
    std::fs::write(t.path().join("bkt/k"), "hello").unwrap();
    for extra in [&[][..], &["--anonymous"][..]] {
        let s = Serve::start_without_aids(t.path(), extra);
        let (st, body) = http(&s.addr, "GET", "/_ossmount/stats", "");
        assert_ne!(st, 200, "stats answered without --testing-aids: {body}");
        assert!(!body.contains("bytes_sent"), "{body}");
        let (st, body) = http(&s.addr, "PUT", "/_ossmount/faults", "{\"rate_503\": 1.0}");
        assert_ne!(st, 200, "faults changed without --testing-aids: {body}");
        if extra.is_empty() {
            // Signed mode: the control paths are ordinary requests, refused unsigned.
            assert_eq!(st, 403, "{body}");
        } else {
            // Still serving, not throttled: the PUT changed nothing.
            assert_eq!(http(&s.addr, "GET", "/bkt/k", "").0, 200);
        }
    }
    // With the flag they answer (the tests' own servers rely on it).
    let s = Serve::start_with(t.path(), &["--anonymous"]);
    assert_eq!(http(&s.addr, "GET", "/_ossmount/stats", "").0, 200);

    // Fault flags need the flag too.
    let out = Command::new(bin())
        .arg("serve")
        .arg(t.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--anonymous",
            "--fault-503-rate",
            "0.5",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--testing-aids"), "{err}");
}

#[test]
fn serve_warns_when_anonymous_on_a_non_loopback_address() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("bkt")).unwrap();
    let mut child = Command::new(bin())
        .arg("serve")
        .arg(t.path())
        .args(["--listen", "0.0.0.0:0", "--anonymous"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let found = loop {
        match lines.next() {
            Some(Ok(l)) => {
                let hit = l.contains("--anonymous") && l.contains("0.0.0.0:0");
                seen.push(l);
                if hit {
                    break true;
                }
                // The warning comes before the server says it is up.
                if seen.len() > 20 || seen.last().unwrap().contains("serving buckets") {
                    break false;
                }
            }
            _ => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(found, "no warning naming the address: {seen:?}");
}
