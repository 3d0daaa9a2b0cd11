//! Robust against servers that misbehave and networks that go away (issue 16): no FUSE
//! request waits forever (`--request-deadline`), listings from a broken server end with an
//! error, and (with stale-if-error) what is cached keeps being served while the store is
//! unreachable.
//!
//! Needs root and /dev/fuse, like every mount test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, run, Env};
use common::{pattern, Faults};

/// A server that takes ten minutes to answer anything stands for one that never answers:
/// every read and every lookup that needs it gets EIO within the deadline, the reader is
/// not stuck, and the mount unmounts at once.
#[test]
fn requests_to_a_server_that_never_answers_fail_with_eio_within_the_deadline() {
    let env = Env::with_objects(|b| {
        std::fs::write(b.join("open-me"), pattern(3 << 20, 1)).unwrap();
        std::fs::create_dir_all(b.join("sub")).unwrap();
        std::fs::write(b.join("sub/never-seen"), pattern(1000, 2)).unwrap();
    });
    let deadline = Duration::from_secs(3);
    let mut m = env.mount_fg("m", &["--request-deadline", "3s"]);
    // A reader with the file open before the server goes quiet; it reads when told to.
    let py = format!(
        "import os, sys\n\
         fd = os.open({:?}, os.O_RDONLY)\n\
         print('open', flush=True)\n\
         sys.stdin.readline()\n\
         try:\n    os.pread(fd, 4096, 0); print('read ok', flush=True)\n\
         except OSError as e:\n    print('errno', e.errno, flush=True)\n",
        m.dir.join("open-me").display()
    );
    let mut reader = Command::new("python3")
        .arg("-c")
        .arg(&py)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open");
    env.serve.set_faults(&Faults {
        latency_ms: Some(600_000),
        ..Default::default()
    });

    // The read: EIO (5) after the deadline, not ten minutes.
    let t = Instant::now();
    writeln!(reader.stdin.as_mut().unwrap()).unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    let took = t.elapsed();
    assert_eq!(line.trim(), "errno 5", "the read's answer");
    assert!(
        took >= deadline - Duration::from_millis(100) && took < deadline + Duration::from_secs(10),
        "read answered after {took:?}"
    );
    reader.wait().unwrap();

    // A lookup that needs the store (a directory never listed): EIO within the deadline.
    let t = Instant::now();
    let st = Command::new("stat")
        .arg(m.dir.join("sub/never-seen"))
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        !st.status.success(),
        "stat succeeded against a silent server"
    );
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(err.contains("Input/output error"), "{err}");
    assert!(
        took < deadline + Duration::from_secs(10),
        "stat took {took:?}"
    );

    // The log says why, once per request.
    let log = std::fs::read_to_string(env.tmp.path().join("m.log")).unwrap();
    assert!(
        log.contains("read of 4096 bytes at 0") && log.contains("request deadline (3s)"),
        "{log}"
    );
    assert!(log.contains("lookup of \"sub\""), "{log}");

    // Nothing is stuck: the mount goes at once, the server still silent.
    let t = Instant::now();
    run(Command::new("fusermount3").arg("-u").arg(&m.dir));
    let mut child = m.child.take().unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "mount did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!is_mounted(&m.dir));
}

/// How the misbehaving listing server answers.
#[derive(Clone, Copy, Debug)]
enum BadListing {
    /// Every page is truncated with the same continuation token.
    SameToken,
    /// Tokens a, b, a, b...: moving, but round in circles.
    Cycle,
    /// The XML stops in the middle of an element.
    TruncatedXml,
    /// Twice as many entries as max-keys asked for.
    OversizedPage,
}

/// A tiny HTTP/1.1 server answering every request with a listing page that misbehaves as
/// `mode` says (one thread per connection, `Connection: close`), the first page always
/// valid and of at most max-keys entries so a mount's bucket check passes. Returns its
/// address; it lives as long as the test process.
fn bad_listing_server(mode: BadListing) -> String {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
                let param = |name: &str| {
                    query.split('&').find_map(|kv| {
                        let (k, v) = kv.split_once('=')?;
                        (k == name).then(|| v.to_string())
                    })
                };
                let max_keys: usize = param("max-keys")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                let token = param("continuation-token");
                let first = token.is_none();
                let n = match mode {
                    BadListing::OversizedPage if !first => max_keys * 2,
                    _ => max_keys.min(2),
                };
                let next = match (mode, token.as_deref()) {
                    (BadListing::SameToken, _) => "same",
                    (BadListing::Cycle, Some("a")) => "b",
                    (BadListing::Cycle, _) => "a",
                    _ => "more",
                };
                let tag = token.clone().unwrap_or_default();
                let contents: String = (0..n)
                    .map(|i| {
                        format!(
                            "<Contents><Key>k{tag}{i}</Key><Size>1</Size><ETag>\"e\"</ETag>\
                             <LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents>"
                        )
                    })
                    .collect();
                let mut body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>bkt</Name>\
                     <IsTruncated>true</IsTruncated><NextContinuationToken>{next}</NextContinuationToken>\
                     {contents}</ListBucketResult>"
                );
                if matches!(mode, BadListing::TruncatedXml) && !first {
                    body.truncate(body.len() / 2);
                }
                let _ = write!(
                    sock,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

fn ls_against(addr: &str) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let out = Command::new(common::bin())
        .args([
            "ls",
            "oss://bkt/",
            "--no-sign-request",
            "--region",
            "cn-hangzhou",
        ])
        .args(["--endpoint", &format!("http://{addr}"), "--path-style"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out, t.elapsed())
}

#[test]
fn listings_from_a_misbehaving_server_end_with_an_error() {
    for (mode, want) in [
        (BadListing::SameToken, "twice"),
        (BadListing::Cycle, "twice"),
        (BadListing::TruncatedXml, "unparsable listing XML"),
        (
            BadListing::OversizedPage,
            "a page of 2000 entries for max-keys 1000",
        ),
    ] {
        let addr = bad_listing_server(mode);
        let (out, took) = ls_against(&addr);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{mode:?}: ls succeeded");
        assert!(err.contains(want), "{mode:?}: {err}");
        assert!(took < Duration::from_secs(20), "{mode:?}: took {took:?}");
    }
}

#[test]
fn a_mount_of_a_server_whose_listing_never_moves_answers_eio() {
    let env = Env::new();
    let addr = bad_listing_server(BadListing::SameToken);
    let dir = env.mnt("m");
    let log = env.tmp.path().join("m.log");
    let child = Command::new(common::bin())
        .args(["mount", "oss://bkt"])
        .arg(&dir)
        .args([
            "--no-sign-request",
            "--region",
            "cn-hangzhou",
            "--path-style",
        ])
        .args(["--endpoint", &format!("http://{addr}")])
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("--foreground")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _m = common::mount::Mount {
        dir: dir.clone(),
        child: Some(child),
    };
    let t = Instant::now();
    while !is_mounted(&dir) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not mounted: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let out = Command::new("ls").arg(&dir).output().unwrap();
    assert!(
        !out.status.success(),
        "ls of a never-ending listing succeeded"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Input/output error"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("twice"), "{log}");
}

fn cmp_ok(a: &std::path::Path, b: &std::path::Path) -> bool {
    Command::new("cmp")
        .arg(a)
        .arg(b)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `dd` of `len` bytes at `offset` of `path`: the bytes, or stderr.
fn dd(path: &std::path::Path, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let out = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["bs=64k", "iflag=skip_bytes,count_bytes"])
        .arg(format!("skip={offset}"))
        .arg(format!("count={len}"))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The test: read some objects fully and one partly, stop the server; `ls -lR`
/// and `cat` of the complete ones still work, quickly, with the right bytes; the partial
/// one gives EIO only for its missing parts; restart the server, and a changed object is
/// seen after the TTL.
#[test]
fn with_the_store_gone_what_is_cached_is_served_and_a_change_is_seen_once_it_returns() {
    const MIB: u64 = 1 << 20;
    let mut env = Env::with_objects(|b| {
        std::fs::write(b.join("one.txt"), pattern(200_000, 1)).unwrap();
        std::fs::write(b.join("two.bin"), pattern(3 << 20, 2)).unwrap();
        std::fs::create_dir_all(b.join("sub")).unwrap();
        std::fs::write(b.join("sub/three"), pattern(5000, 3)).unwrap();
        // Over the 16 MiB whole-object threshold: read in 8 MiB parts.
        common::write_pattern_file(&b.join("partial.bin"), 64 * MIB, 4);
    });
    let m = env.mount_fg("m", &["--metadata-ttl", "2s"]);
    let full = ["one.txt", "two.bin", "sub/three"];
    for k in full {
        assert!(cmp_ok(&m.dir.join(k), &env.object(k)), "{k}");
    }
    let src = std::fs::read(env.object("partial.bin")).unwrap();
    // One small read in the middle: one part (8 MiB) fetched, no read-ahead.
    let (at, len) = (17 * MIB, 4096u64);
    let cached_part = &src[at as usize..(at + len) as usize];
    assert!(dd(&m.dir.join("partial.bin"), at, len).unwrap() == cached_part);
    let cache = env.cache();
    let finalized = || {
        std::fs::read_dir(&cache)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "meta")
            })
            .count()
    };
    let t = Instant::now();
    while finalized() < full.len() {
        assert!(t.elapsed() < Duration::from_secs(30), "not finalized");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = run(Command::new("ls").arg("-lR").arg(&m.dir)).stdout;

    env.serve.stop();
    // Past the TTL: everything is due for revalidation, and nobody answers.
    std::thread::sleep(Duration::from_millis(2500));
    let round = |label: &str| {
        let t = Instant::now();
        let now = run(Command::new("ls").arg("-lR").arg(&m.dir)).stdout;
        assert_eq!(
            String::from_utf8_lossy(&now),
            String::from_utf8_lossy(&before),
            "{label}: ls -lR"
        );
        for k in full {
            assert!(cmp_ok(&m.dir.join(k), &env.object(k)), "{label}: {k}");
        }
        assert!(
            dd(&m.dir.join("partial.bin"), at, len).unwrap() == cached_part,
            "{label}: the cached part"
        );
        t.elapsed()
    };
    // The first round finds the store gone (one revalidation waits up to 5 s, the
    // stale grace); the next ones ask nobody.
    let first = round("first");
    let second = round("second");
    println!("outage: first round {first:?}, second {second:?}");
    assert!(first < Duration::from_secs(15), "first round {first:?}");
    assert!(second < Duration::from_secs(3), "second round {second:?}");
    // A part never fetched: EIO after the retry budget, within the request deadline.
    let t = Instant::now();
    let e = dd(&m.dir.join("partial.bin"), 49 * MIB, len).unwrap_err();
    assert!(e.contains("Input/output error"), "{e}");
    println!("uncached part: EIO after {:?}", t.elapsed());
    let log = std::fs::read_to_string(env.tmp.path().join("m.log")).unwrap();
    assert_eq!(
        log.matches("the store is unreachable").count(),
        1,
        "one warning per outage: {log}"
    );

    // Back on the same port, with one.txt changed: seen once the TTL has passed.
    std::fs::write(env.object("one.txt"), pattern(123_456, 9)).unwrap();
    env.serve.restart();
    let t = Instant::now();
    while !cmp_ok(&m.dir.join("one.txt"), &env.object("one.txt")) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the change was never seen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("change seen {:?} after the restart", t.elapsed());
    assert!(
        dd(&m.dir.join("partial.bin"), 49 * MIB, len).unwrap()
            == src[49 * MIB as usize..(49 * MIB + len) as usize],
        "the missing part, once the store is back"
    );
    let log = std::fs::read_to_string(env.tmp.path().join("m.log")).unwrap();
    assert!(log.contains("reachable again"), "{log}");
}
