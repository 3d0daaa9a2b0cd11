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
