//! `ossmount download` over real HTTP against `ossmount serve`: kill -9 and resume, damaged
//! checkpoints, a full disk, an object changed between runs, a missing key.
//!
//! The big object is 1 GiB (`OSSMOUNT_TEST_BIG_MIB` overrides); the `#[ignore]`d variant
//! uses 4 GiB.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bin, write_pattern_file, Serve, Tmpfs, AK, SK};

const PART: u64 = 4 << 20;
const JOBS: u64 = 4;
/// `CacheConfig::default().batch_bytes`: the most bytes of parts recorded per batch.
const BATCH_BYTES: u64 = 128 << 20;

/// A temp dir whose `srv/bkt/KEY` holds `size` pattern bytes (`seed`), served by a fresh
/// `ossmount serve`: (the dir, the served file, the server).
fn serve_one(key: &str, size: u64, seed: u64) -> (tempfile::TempDir, std::path::PathBuf, Serve) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("srv/bkt").join(key);
    write_pattern_file(&src, size, seed);
    let serve = Serve::start(&tmp.path().join("srv"));
    (tmp, src, serve)
}

fn download_cmd(serve: &Serve, key: &str, local: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.arg("download")
        .arg(format!("oss://bkt/{key}"))
        .arg(local)
        .args([
            "--endpoint",
            &serve.endpoint(),
            "--region",
            "cn-hangzhou",
            "-q",
        ])
        .args([
            "--part-size",
            &PART.to_string(),
            "--jobs",
            &JOBS.to_string(),
        ])
        .args(extra)
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .stdin(Stdio::null());
    c
}

fn run(serve: &Serve, key: &str, local: &Path, extra: &[&str]) -> Output {
    download_cmd(serve, key, local, extra)
        .output()
        .expect("run ossmount download")
}

fn same_file(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .arg(a)
        .arg(b)
        .status()
        .unwrap()
        .success()
}

/// Start a download and kill -9 it once the server has sent `at` more bytes.
fn kill_after(serve: &Serve, key: &str, local: &Path, at: u64, extra: &[&str]) {
    let start = serve.stats().bytes_sent;
    let mut child: Child = download_cmd(serve, key, local, extra)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("download finished ({st}) before it could be killed at {at}");
        }
        if serve.stats().bytes_sent - start >= at {
            break;
        }
        assert!(Instant::now() < deadline, "download too slow");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Start a download with slow responses (100 ms each), so it is still running when its
/// first checkpoint appears in `watch` (1 s at the latest), and kill -9 it then.
fn kill_at_first_checkpoint(
    serve: &Serve,
    key: &str,
    local: &Path,
    watch: &Path,
    extra: &[&str],
) -> std::path::PathBuf {
    serve.set_faults(&common::Faults {
        latency_ms: Some(100),
        ..Default::default()
    });
    let mut child = download_cmd(serve, key, local, extra)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let ckpt = loop {
        let found = std::fs::read_dir(watch).ok().and_then(|d| {
            d.map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(".ossmount-ckpt"))
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before a checkpoint"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    serve.set_faults(&common::Faults::default());
    ckpt
}

fn kill_and_resume(size_mib: u64) {
    let size = size_mib << 20;
    let (tmp, src, serve) = serve_one("big.bin", size, 42);
    let local = tmp.path().join("out/big.bin");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    serve.reset_stats();
    let kills = [size / 5, size / 4, size / 3];
    for at in kills {
        kill_after(&serve, "big.bin", &local, at, &[]);
        assert!(!local.exists(), "LOCAL must appear only when complete");
    }
    let out = run(&serve, "big.bin", &local, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(same_file(&local, &src));
    let sent = serve.stats().bytes_sent;
    // Lost per kill: the parts in flight (jobs x part) and the parts completed but not yet
    // recorded (at most one batch: parts are written with O_DIRECT, so the batch's
    // fdatasync has no dirty pages to wait for and few parts complete while it runs).
    let per_kill = JOBS * PART + BATCH_BYTES;
    eprintln!(
        "{size} byte object, {} kills: server sent {sent} bytes, {} more than the object \
         (bound {} per kill)",
        kills.len(),
        sent - size,
        per_kill
    );
    assert!(
        sent < size + kills.len() as u64 * per_kill,
        "fetched {sent} bytes for a {size} byte object"
    );
}

#[test]
fn kill_9_at_several_points_then_resume() {
    let mib = std::env::var("OSSMOUNT_TEST_BIG_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    kill_and_resume(mib);
}

#[test]
#[ignore = "4 GiB: minutes"]
fn kill_9_at_several_points_then_resume_4gib() {
    kill_and_resume(4096);
}

#[test]
fn damaged_checkpoint_changed_object_and_missing_key() {
    let size = 96 << 20;
    let (tmp, src, serve) = serve_one("obj.bin", size, 7);
    let local = tmp.path().join("obj.bin");
    let ckpt_dir = tmp.path().join("ckpt");
    let ck = ckpt_dir.to_str().unwrap();

    // Damaged checkpoint between runs: still identical.
    let ckpt = kill_at_first_checkpoint(
        &serve,
        "obj.bin",
        &local,
        &ckpt_dir,
        &["--checkpoint-dir", ck],
    );
    let mut b = std::fs::read(&ckpt).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&ckpt, b).unwrap();
    let out = run(&serve, "obj.bin", &local, &["--checkpoint-dir", ck]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unusable"),
        "says why it starts over: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(same_file(&local, &src));

    // Changed between runs: starts over, says why, ends with the new bytes.
    std::fs::remove_file(&local).unwrap();
    kill_at_first_checkpoint(&serve, "obj.bin", &local, tmp.path(), &[]);
    write_pattern_file(&src, size + 12345, 8);
    let out = run(&serve, "obj.bin", &local, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("changed since the interrupted download"),
        "{err}"
    );
    assert!(same_file(&local, &src));

    // Missing key: exit STORE, naming the object.
    let out = run(&serve, "nope.bin", &tmp.path().join("nope"), &[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("oss://bkt/nope.bin"), "{err}");
}

/// Bytes of the temp file damaged between runs, in parts the checkpoint records: the rerun
/// reads recorded parts back against their CRC-64, fetches the damaged ones again, says so,
/// and the result is identical.
#[test]
fn damaged_bytes_in_recorded_parts_are_fetched_again() {
    use std::os::unix::fs::FileExt;
    let size = 96 << 20;
    let (tmp, src, serve) = serve_one("obj.bin", size, 13);
    let local = tmp.path().join("obj.bin");
    kill_at_first_checkpoint(&serve, "obj.bin", &local, tmp.path(), &[]);
    let part_file = tmp.path().join("obj.bin.ossmount-part");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&part_file)
        .unwrap();
    for p in 0..size / PART {
        f.write_all_at(b"\xff\xfe", p * PART + 1000).unwrap();
    }
    drop(f);
    let out = run(&serve, "obj.bin", &local, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("damaged on disk"), "{err}");
    assert!(same_file(&local, &src));
}

/// The object replaced on the server (atomically, as OSS does) while the download runs:
/// the download stops with exit STORE and says the object changed, LOCAL is never written
/// (no mix of old and new bytes), and the same command afterwards gets the new object.
#[test]
fn an_object_replaced_during_the_download_is_never_mixed() {
    let size = 64 << 20;
    let (tmp, src, serve) = serve_one("obj.bin", size, 11);
    let local = tmp.path().join("obj.bin");
    // The new version is ready before the download starts: only the rename is timed.
    let next = tmp.path().join("srv/bkt/.obj.bin.new");
    write_pattern_file(&next, size, 12);
    // 500 ms per response: 16 parts / 4 jobs take 2 s, ample time to replace it.
    serve.set_faults(&common::Faults {
        latency_ms: Some(500),
        ..Default::default()
    });
    serve.reset_stats();
    let child = download_cmd(&serve, "obj.bin", &local, &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while serve.stats().bytes_sent == 0 {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::rename(&next, &src).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("replaced mid-download: {err}");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("changed"), "{err}");
    assert!(
        !local.exists(),
        "LOCAL must not exist after a failed download"
    );
    serve.set_faults(&common::Faults::default());
    let out = run(&serve, "obj.bin", &local, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(same_file(&local, &src));
}

/// A download into a 16 MiB tmpfs of a 64 MiB object fails cleanly with exit LOCAL and a
/// message, and leaves nothing half-written under the target name. Needs root for mount.
#[test]
fn full_disk_fails_cleanly_with_exit_local() {
    let (tmp, _src, serve) = serve_one("obj.bin", 64 << 20, 9);
    let small = Tmpfs::new(tmp.path().join("small"), "16m");
    let local = small.0.join("obj.bin");
    let out = run(&serve, "obj.bin", &local, &[]);
    let local_exists = local.exists();
    drop(small);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("full disk: {err}");
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("cannot write"), "{err}");
    assert!(!local_exists);
}

/// The checkpoint directory on a filesystem with no space left: the download cannot be
/// made resumable but still completes, identical, and says why it is not resumable.
#[test]
fn a_full_checkpoint_dir_still_completes_the_download() {
    let (tmp, src, serve) = serve_one("obj.bin", 48 << 20, 10);
    let small = Tmpfs::new(tmp.path().join("ckpt"), "1m");
    // Fill it to the last byte.
    let fill = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", small.0.join("fill").display()))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!fill.success(), "dd should have hit ENOSPC");
    let local = tmp.path().join("out.bin");
    let ckpt_arg = format!("--checkpoint-dir={}", small.0.display());
    // Slow responses: 12 parts / 4 jobs x 500 ms lasts past the 1 s checkpoint interval,
    // so checkpoints are attempted (and fail) while the download runs.
    serve.set_faults(&common::Faults {
        latency_ms: Some(500),
        ..Default::default()
    });
    let out = run(&serve, "obj.bin", &local, &[&ckpt_arg]);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("full checkpoint dir: {err}");
    assert!(out.status.success(), "{err}");
    assert!(same_file(&local, &src));
    assert!(
        err.contains("checkpoint"),
        "no warning about the checkpoint: {err}"
    );
}

/// Connection resets every 3 MiB and 30 % of requests answered 503: the download still
/// completes, identical, and resumed bodies do not re-fetch what already arrived.
#[test]
fn resets_and_503s_are_survived_without_refetching() {
    let size = 64u64 << 20;
    let (tmp, src, serve) = serve_one("obj.bin", size, 11);
    serve.set_faults(&common::Faults {
        reset_after_bytes: Some(3 << 20),
        rate_503: Some(0.3),
        ..Default::default()
    });
    serve.reset_stats();
    let local = tmp.path().join("obj.bin");
    let out = run(&serve, "obj.bin", &local, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(same_file(&local, &src));
    let st = serve.stats();
    eprintln!("resets and 503s: {st:?}");
    assert!(st.resets > 0 && st.status_503 > 0, "{st:?}");
    // Bytes in flight when a connection is reset may be lost and sent again; whole parts
    // never are.
    assert!(st.bytes_sent < size + size / 10, "{st:?}");
}

/// `--version-id` in a versioning-enabled bucket (serve's emulation: older versions under
/// `.ossmount-versions/KEY/ID`, the file itself the latest): an old version while a newer
/// one exists; killed and resumed with the same version (resumes, identical); resumed
/// with another version or with the latest (the checkpoint is discarded, with a line
/// saying so, and the result is that version); an unknown version (exit STORE, the
/// server's NoSuchVersion named, nothing left behind); the same over S3.
#[test]
fn a_named_version_downloads_resumes_and_never_mixes() {
    let size = 96u64 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let bkt = tmp.path().join("srv/bkt");
    let versions = bkt.join(".ossmount-versions/obj.bin");
    let (v1, v2, latest) = (
        versions.join("v1"),
        versions.join("v2"),
        bkt.join("obj.bin"),
    );
    write_pattern_file(&v1, size, 21);
    write_pattern_file(&v2, size - 777, 22);
    write_pattern_file(&latest, size + 4321, 23);
    let serve = Serve::start(&tmp.path().join("srv"));
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let local = out_dir.join("obj.bin");
    let ok = |out: &Output| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let v1_args = ["--version-id", "v1"];

    // The old version while a newer one exists.
    ok(&run(&serve, "obj.bin", &local, &v1_args));
    assert!(same_file(&local, &v1));
    std::fs::remove_file(&local).unwrap();

    // Killed mid-way, resumed with the same version: only what is missing is fetched.
    kill_at_first_checkpoint(&serve, "obj.bin", &local, &out_dir, &v1_args);
    assert!(!local.exists());
    serve.reset_stats();
    ok(&run(&serve, "obj.bin", &local, &v1_args));
    assert!(same_file(&local, &v1));
    let sent = serve.stats().bytes_sent;
    assert!(sent < size, "the resume fetched {sent} of {size} bytes");
    std::fs::remove_file(&local).unwrap();

    // Killed with v1, run with v2: the checkpoint of v1 is discarded.
    kill_at_first_checkpoint(&serve, "obj.bin", &local, &out_dir, &v1_args);
    let err = ok(&run(&serve, "obj.bin", &local, &["--version-id", "v2"]));
    assert!(
        err.contains("was of version v1, this one is of version v2"),
        "{err}"
    );
    assert!(same_file(&local, &v2));
    std::fs::remove_file(&local).unwrap();

    // Killed with v2, run for the latest: discarded too.
    kill_at_first_checkpoint(&serve, "obj.bin", &local, &out_dir, &["--version-id", "v2"]);
    let err = ok(&run(&serve, "obj.bin", &local, &[]));
    assert!(
        err.contains("was of version v2, this one is of the latest version"),
        "{err}"
    );
    assert!(same_file(&local, &latest));

    // An unknown version: exit STORE, the server's code named, nothing left behind.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&serve, "obj.bin", &empty.join("x"), &["--version-id", "v9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("NoSuchVersion") && err.contains("oss://bkt/obj.bin (version v9)"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // S3: the same `versionId`, signed with SigV4.
    let s3_local = out_dir.join("s3.bin");
    let s3 = |version: &str| {
        Command::new(bin())
            .arg("download")
            .arg("s3://bkt/obj.bin")
            .arg(&s3_local)
            .args(["--endpoint", &serve.endpoint(), "--region", "cn-hangzhou"])
            .args(["-q", "--version-id", version])
            .env("AWS_ACCESS_KEY_ID", AK)
            .env("AWS_SECRET_ACCESS_KEY", SK)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    ok(&s3("v2"));
    assert!(same_file(&s3_local, &v2));
    let out = s3("v9");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
