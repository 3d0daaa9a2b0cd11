//! The fault and load suite: real FUSE mounts of `ossmount serve` with faults
//! injected by the server (`PUT /_ossmount/faults`) or done to the mount and its cache
//! (`kill -9`, flipped bytes, a full tmpfs, a second mount), driven by `cp`, `cmp`, `dd`,
//! `ls` and Python. Every test checks the bytes (cmp or hashes against the served file)
//! AND the server's counters (`GET /_ossmount/stats`), and prints one `TOTALS` line
//! (faults injected, operations run, bytes checked); run with `--nocapture` to see them.
//!
//! Already covered elsewhere, not repeated here:
//! - resets and 503s *together* on a 64 MiB cold `cp`: `tests/mount.rs`
//!   `cp_completes_through_resets_and_503s` (this file adds each fault alone, with
//!   counters that show the retries were resumptions and backed off);
//! - one `kill -9` at a third of a `cp`, then resume fetching only what was missing:
//!   `tests/mount.rs` `resume_after_kill_9_fetches_only_what_is_missing` (here: ten
//!   kills at random moments);
//! - an object replaced under an open handle read by `pread`: `tests/mount.rs`
//!   `replaced_object_gives_estale_to_the_old_handle_and_new_content_to_new_opens`
//!   (here: under a running `cp`);
//! - listing of odd names and 10k keys with `find`: `tests/mount.rs`
//!   `tree_ls_find_and_listing_cache` (here: the odd names' bytes, and 100k keys in one
//!   directory with `ls`);
//! - damaged checkpoints and a full disk for `ossmount download`: `tests/download.rs`.
//!
//! Sizes are picked so the whole file runs in under two minutes in a debug build on the
//! 2-core dev box (the stall test alone waits out the 30 s read timeout); the
//! `#[ignore]`d `*_long` variant uses a bigger object and more kills
//! (`cargo test --test faults -- --ignored`).
//!
//! Two tests began as pins of bugs this suite found, fixed since:
//! `flipped_bytes_in_a_recorded_part_are_reported_and_never_served` (a damaged part that the checkpoint
//! vouched for was served and even finalized; parts from an earlier process are now read
//! back against their CRC-64 first) and `cache_that_holds_nothing_still_fetches_each_part_once`
//! (parts the cache had no room for were fetched again by every read, 5-6x; read-ahead now
//! shrinks to what is kept in memory).
//!
//! Needs root (mounts, tmpfs) and /dev/fuse.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, run, same_file, Env, Mount, BUCKET};
use common::{write_pattern_file, Faults, Stats, Tmpfs};

const MIB: u64 = 1 << 20;

/// What a test did, printed as one line at its end: faults injected, operations run,
/// bytes checked, and the server's counters summed over the whole test (the tests reset
/// them between phases through [`Totals::reset`]).
struct Totals {
    name: &'static str,
    faults: u64,
    ops: u64,
    bytes_checked: u64,
    server: Stats,
    started: Instant,
}

impl Totals {
    fn new(name: &'static str) -> Self {
        Totals {
            name,
            faults: 0,
            ops: 0,
            bytes_checked: 0,
            server: Stats::default(),
            started: Instant::now(),
        }
    }

    /// `cmp a b` (must be equal), counted as one operation and `len(a)` bytes checked.
    fn cmp(&mut self, a: &Path, b: &Path) {
        same_file(a, b);
        self.ops += 1;
        self.bytes_checked += std::fs::metadata(a).unwrap().len();
    }

    fn add(&mut self, st: &Stats) {
        let s = &mut self.server;
        s.requests += st.requests;
        s.get_requests += st.get_requests;
        s.bytes_sent += st.bytes_sent;
        s.status_503 += st.status_503;
        s.status_412 += st.status_412;
        s.resets += st.resets;
        s.stalls += st.stalls;
    }

    /// Zero the server's counters, keeping what they said in the totals.
    fn reset(&mut self, env: &Env) {
        self.add(&env.serve.stats());
        env.serve.reset_stats();
    }

    fn print(&mut self, env: &Env) {
        self.add(&env.serve.stats());
        env.serve.reset_stats();
        let st = &self.server;
        eprintln!(
            "TOTALS {}: faults injected {}, operations {}, bytes checked {} ({} MiB); \
             server: {} requests, {} GETs, {} MiB sent, {} x 503, {} x 412, {} resets, \
             {} stalls; {:.1}s",
            self.name,
            self.faults,
            self.ops,
            self.bytes_checked,
            self.bytes_checked >> 20,
            st.requests,
            st.get_requests,
            st.bytes_sent >> 20,
            st.status_503,
            st.status_412,
            st.resets,
            st.stalls,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// `cp SRC DST` through the mount; returns its exit status and stderr.
fn cp(src: &Path, dst: &Path) -> (bool, String) {
    let out = Command::new("cp").arg(src).arg(dst).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Seeded xorshift64*, so a failing random schedule can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Wait until the server answers for `key` (it hashes a new file once, MD5 and CRC-64,
/// before it serves it; slow for large files in a debug build on a busy machine).
fn wait_until_served(env: &Env, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let out = Command::new(common::bin())
            .arg("cat")
            .arg(format!("oss://{BUCKET}/{key}"))
            .args(["--range", "0-0", "--endpoint", &env.serve.endpoint()])
            .args(["--region", "cn-hangzhou"])
            .env("OSS_ACCESS_KEY_ID", common::AK)
            .env("OSS_ACCESS_KEY_SECRET", common::SK)
            .output()
            .unwrap();
        if out.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server never answered for {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn seed() -> u64 {
    std::env::var("OSSMOUNT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

// ---------------------------------------------------------------------------------------
// 1. Connection resets every few MiB during a cold cp.

#[test]
fn cold_cp_survives_a_reset_every_few_mib_and_resumes_where_it_broke() {
    let mut t = Totals::new("resets");
    let size = 96 * MIB;
    let env = Env::with_objects(|b| write_pattern_file(&b.join("r.bin"), size, 21));
    // Default requests: a sequential reader's grow to 2 MiB (`min_request_bytes`), so
    // every one past the first few is longer than the reset point.
    let m = env.mount("mnt", &[]);
    let every = MIB;
    env.serve.set_faults(&Faults {
        reset_after_bytes: Some(every),
        ..Default::default()
    });
    t.reset(&env);
    let out = env.tmp.path().join("r.out");
    let (ok, err) = cp(&m.dir.join("r.bin"), &out);
    t.ops += 1;
    let st = env.serve.stats();
    env.serve.set_faults(&Faults::default());
    assert!(ok, "cp failed under resets: {err}; {st:?}");
    t.cmp(&env.object("r.bin"), &out);
    t.faults = st.resets;
    t.print(&env);
    // Every response longer than 3 MiB was cut, so there were many resets...
    assert!(st.resets >= size / (4 * MIB), "too few resets: {st:?}");
    // ...and each was resumed from the first byte not delivered, not re-fetched from the
    // start of its part: the server sent the object about once. Slack: bytes the kernel
    // accepted just before the RST that the client never read (a few KiB per reset).
    assert!(
        st.bytes_sent <= size + st.resets * 256 * 1024,
        "resets caused re-fetching: {} bytes sent for {size}; {st:?}",
        st.bytes_sent
    );
    drop(m);
}

// ---------------------------------------------------------------------------------------
// 2. 20 % of requests answered 503 SlowDown.

#[test]
fn cold_cp_through_20_percent_503_retries_with_backoff() {
    let mut t = Totals::new("503");
    let size = 64 * MIB;
    let env = Env::with_objects(|b| write_pattern_file(&b.join("s.bin"), size, 22));
    let jobs = 4u64;
    let m = env.mount("mnt", &["--part-size", "1MiB", "--jobs", &jobs.to_string()]);
    t.reset(&env);
    env.serve.set_faults(&Faults {
        rate_503: Some(0.2),
        ..Default::default()
    });
    // First every part once, in random order (a random reader fetches just the part it
    // touches: 64 GETs at least, so "some were refused" is not left to luck: P(none of
    // 64 at 20 %) = 6e-7), then the whole object with cp, served from the cache.
    let py = format!(
        r#"
import os, random
random.seed(5)
f = os.open("{via}", os.O_RDONLY)
g = os.open("{src}", os.O_RDONLY)
parts = list(range({size} // {PART}))
random.shuffle(parts)
for p in parts:
    assert os.pread(f, {PART}, p * {PART}) == os.pread(g, {PART}, p * {PART}), p
"#,
        via = m.dir.join("s.bin").display(),
        src = env.object("s.bin").display(),
    );
    run(Command::new("python3").arg("-c").arg(&py));
    t.ops += size / PART;
    t.bytes_checked += size;
    let out = env.tmp.path().join("s.out");
    let (ok, err) = cp(&m.dir.join("s.bin"), &out);
    t.ops += 1;
    let st = env.serve.stats();
    env.serve.set_faults(&Faults::default());
    assert!(ok, "cp failed under 20% 503: {err}; {st:?}");
    t.cmp(&env.object("s.bin"), &out);
    t.faults += st.status_503;
    // Retries happened: some requests were refused, yet every byte arrived, once (a 503
    // carries no body, so it costs no bytes).
    assert!(st.status_503 > 0, "no 503 was injected: {st:?}");
    assert_eq!(st.bytes_sent, size, "{st:?}");
    // About a fifth of the attempts were refused: retries are not hidden somewhere else
    // (a client that gave up on a 503 and re-requested a bigger range would show here).
    let rate = st.status_503 as f64 / st.requests as f64;
    assert!((0.05..=0.4).contains(&rate), "503 share {rate:.2}: {st:?}");

    // Backoff: a burst of 100 % 503 for 2 s in the middle of a cold read. Without backoff
    // each of the `jobs` fetchers would retry in a tight loop (thousands of requests on
    // loopback); with full-jitter exponential backoff from 200 ms each makes a handful
    // (expected sleeps 0.1, 0.2, 0.4, 0.8 s: about 5 attempts in 2 s).
    write_pattern_file(&env.object("s2.bin"), size, 23);
    let via = m.dir.join("s2.bin");
    assert_eq!(std::fs::metadata(&via).unwrap().len(), size);
    t.reset(&env);
    env.serve.set_faults(&Faults {
        rate_503: Some(1.0),
        ..Default::default()
    });
    let out2 = env.tmp.path().join("s2.out");
    let mut child = Command::new("cp").arg(&via).arg(&out2).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let burst = env.serve.stats();
    env.serve.set_faults(&Faults::default());
    let st2 = child.wait().unwrap();
    t.ops += 1;
    t.faults += burst.status_503;
    assert!(st2.success(), "cp failed after a 2 s burst of 503s");
    t.cmp(&env.object("s2.bin"), &out2);
    eprintln!("2 s of 100% 503: {burst:?}");
    assert!(burst.status_503 >= 1, "{burst:?}");
    assert!(
        burst.requests <= jobs * 12 + 4,
        "{} requests in 2 s of 503s from {jobs} fetchers: no backoff; {burst:?}",
        burst.requests
    );
    t.print(&env);
    drop(m);
}

// ---------------------------------------------------------------------------------------
// 3. A stalled response.

/// The mount has no timeout option: `HttpConfig::read_timeout` (src/store/http.rs) is
/// 30 s, a per-read idle timeout of the body. A body that stalls for 10 minutes must be
/// abandoned after ~30 s and resumed from the byte where it stopped.
#[test]
fn stalled_response_times_out_and_is_resumed() {
    let mut t = Totals::new("stall");
    let size = 48 * MIB;
    let env = Env::with_objects(|b| write_pattern_file(&b.join("t.bin"), size, 31));
    let m = env.mount("mnt", &["--part-size", "1MiB"]);
    t.reset(&env);
    env.serve.set_faults(&Faults {
        stall_rate: Some(1.0),
        stall_ms: Some(600_000),
        ..Default::default()
    });
    let out = env.tmp.path().join("t.out");
    let start = Instant::now();
    let mut child = Command::new("cp")
        .arg(m.dir.join("t.bin"))
        .arg(&out)
        .spawn()
        .unwrap();
    // Let the first responses stall, then stop stalling new ones: only a timeout can
    // free the ones already stalled.
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.serve.stats().stalls == 0 {
        assert!(Instant::now() < deadline, "nothing stalled");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    env.serve.set_faults(&Faults::default());
    let stalled = env.serve.stats().stalls;
    // If the stall outlasted every timeout, cp would hang here for 10 minutes.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "cp still hangs {:?} after a stall: no read timeout",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = start.elapsed();
    t.ops += 1;
    assert!(status.success(), "cp failed after a stall");
    t.cmp(&env.object("t.bin"), &out);
    let st = env.serve.stats();
    t.faults = st.stalls;
    t.print(&env);
    eprintln!("{stalled} stalled responses; cp took {took:?}");
    // It waited for the read timeout (30 s), not for the stall (600 s)...
    assert!(
        took >= Duration::from_secs(25),
        "cp finished in {took:?}: did anything stall?"
    );
    assert!(took < Duration::from_secs(100), "{took:?}");
    // ...and the stalled bodies were resumed, not fetched again from their start: the
    // first half of each stalled response had already arrived.
    assert!(
        st.bytes_sent <= size + MIB,
        "stalled responses re-fetched: {st:?}"
    );
    drop(m);
}

// ---------------------------------------------------------------------------------------
// 4. kill -9 of the mount at random moments of a cold cp.

/// Kill -9 the mount `kills` times during a cold `cp` (seeded: `OSSMOUNT_FAULT_SEED`
/// replays a schedule), remount and re-run `cp` each time, then require the final copy to
/// be right and the server to have sent less than 1.2x the object.
///
/// What one kill costs: the parts fetched but not yet recorded (a batch is 16 parts or
/// 1 s, and its fdatasync must finish before it counts) plus the bytes in flight (requests
/// are coalesced to 8 MiB, and loopback socket buffers hold MiBs more). Measured on the
/// dev box, 256 MiB in 1 MiB parts with 4 jobs: 10-15 MiB per kill, because a round between
/// two kills lasts only ~100 ms and the checkpoint's fdatasync rarely lands in it; that is
/// within the design's bound but 1.5x in total. With 256 KiB parts and one job a kill
/// costs ~5 MiB, so ten of them stay under 1.2x of 512 MiB with room to spare (measured
/// 1.07-1.11x).
fn kill_9_at_random_moments(size: u64, kills: usize) {
    let mut t = Totals::new("kill-9");
    let seed = seed();
    eprintln!("kill -9 schedule seed: {seed} (OSSMOUNT_FAULT_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let env = Env::with_objects(|b| write_pattern_file(&b.join("k.bin"), size, 41));
    // 4 MiB batches (16 parts of 256 KiB, the batch of the parts-counted checkpoints
    // this bound was set with; the default is 128 MiB or 1 s).
    let opts = [
        "--part-size",
        "256KiB",
        "--jobs",
        "1",
        "--checkpoint-batch",
        "4MiB",
    ];
    let src = env.object("k.bin");
    let out = env.tmp.path().join("k.out");
    // Kill points: `kills` random amounts of bytes sent by the server in total, between
    // 3 % and 90 % of the object. The total includes bytes re-fetched after earlier kills,
    // so every point comes before the copy can finish.
    let mut points: Vec<u64> = (0..kills)
        .map(|_| ((0.03 + 0.87 * rng.unit()) * size as f64) as u64)
        .collect();
    points.sort_unstable();
    // Make sure the server has hashed the object before the clock starts (its warm-up
    // of a GiB in a debug build can outlast the mount's 15 s start-up check).
    wait_until_served(&env, "k.bin");
    {
        let m = env.mount_fg("mnt", &opts);
        assert_eq!(std::fs::metadata(m.dir.join("k.bin")).unwrap().len(), size);
    }
    t.reset(&env);
    for (i, &point) in points.iter().enumerate() {
        let mut m = env.mount_fg("mnt", &opts);
        let at_mount = env.serve.stats().bytes_sent;
        // Each round does some fetching before it is killed.
        let point = point.max(at_mount + 256 * 1024);
        let mut child = Command::new("cp")
            .arg(m.dir.join("k.bin"))
            .arg(&out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if env.serve.stats().bytes_sent >= point {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "kill {i}: cp ended ({st}) before {point} bytes were sent; {:?}",
                    env.serve.stats()
                );
            }
            assert!(Instant::now() < deadline, "kill {i}: cp made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        m.kill_9();
        let st = child.wait().unwrap();
        assert!(
            !st.success(),
            "kill {i}: cp succeeded through a killed mount"
        );
        t.faults += 1;
        t.ops += 2; // the mount and the cp
        let status = run(Command::new(common::bin())
            .args(["cache", "status", "--cache-dir"])
            .arg(env.cache()));
        eprintln!(
            "kill {i} at {} MiB sent (point {} MiB); checkpoint holds {}",
            env.serve.stats().bytes_sent >> 20,
            point >> 20,
            String::from_utf8_lossy(&status.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or("?")
        );
    }
    let m = env.mount_fg("mnt", &opts);
    let (ok, err) = cp(&m.dir.join("k.bin"), &out);
    t.ops += 2;
    assert!(ok, "final cp: {err}");
    t.cmp(&src, &out);
    let st = env.serve.stats();
    t.print(&env);
    let ratio = st.bytes_sent as f64 / size as f64;
    eprintln!("fetched {ratio:.3} x the object over {kills} kills");
    // Each kill loses at most the parts not yet recorded in the checkpoint (a batch of
    // 4 MiB of 256 KiB parts, or 1 s) and the bytes in flight.
    assert!(
        ratio < 1.2,
        "fetched {} bytes for a {size}-byte object ({ratio:.3}x); seed {seed}",
        st.bytes_sent
    );
    drop(m);
}

#[test]
fn kill_9_at_ten_random_moments_of_a_cold_cp() {
    kill_9_at_random_moments(512 * MIB, 10);
}

#[test]
#[ignore = "1 GiB and 25 kills: minutes"]
fn kill_9_at_random_moments_long() {
    kill_9_at_random_moments(1 << 30, 25);
}

// ---------------------------------------------------------------------------------------
// 5. A partial cache entry damaged between mounts.

const PART: u64 = MIB;

/// Mount, read a few scattered 4 KiB pieces of `key` (a random reader fetches only the
/// parts it touches), unmount cleanly (which records them in the checkpoint), and return
/// the entry's `(data, ckpt)` paths.
fn make_partial_entry(env: &Env, key: &str, parts: &[u64]) -> (PathBuf, PathBuf) {
    let _ = std::fs::remove_dir_all(env.cache());
    let m = env.mount_fg("mnt", &["--part-size", "1MiB"]);
    let py = format!(
        r#"
import os
f = os.open("{via}", os.O_RDONLY)
g = os.open("{src}", os.O_RDONLY)
for p in [{parts}]:
    off = p * {PART} + 4096
    assert os.pread(f, 4096, off) == os.pread(g, 4096, off), p
print("ok")
"#,
        via = m.dir.join(key).display(),
        src = env.object(key).display(),
        parts = parts
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    let out = run(Command::new("python3").arg("-c").arg(&py));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    drop(m); // SIGTERM: unmount, flush the checkpoint
    let mut data = None;
    let mut ckpt = None;
    for e in std::fs::read_dir(env.cache()).unwrap() {
        let p = e.unwrap().path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("data") => data = Some(p),
            Some("ckpt") => ckpt = Some(p),
            _ => {}
        }
    }
    let (data, ckpt) = (data.expect("no data file"), ckpt.expect("no checkpoint"));
    // The parts read, and not the whole object, are recorded.
    let status = run(Command::new(common::bin())
        .args(["cache", "status", "--cache-dir"])
        .arg(env.cache()));
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("partial"), "{status}");
    (data, ckpt)
}

/// Overwrite `len` bytes at `offset` of `path` with their complement.
fn flip(path: &Path, offset: u64, len: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    for b in &mut buf {
        *b = !*b;
    }
    f.write_all_at(&buf, offset).unwrap();
    f.sync_all().unwrap();
}

/// Remount and `cp` the whole object; returns (cp succeeded, copy is identical, stats).
fn remount_and_copy(env: &Env, key: &str, t: &mut Totals) -> (bool, bool, Stats) {
    t.reset(env);
    let m = env.mount_fg("mnt", &["--part-size", "1MiB"]);
    let out = env.tmp.path().join("copy.out");
    let _ = std::fs::remove_file(&out);
    let (ok, err) = cp(&m.dir.join(key), &out);
    t.ops += 2;
    if !ok {
        eprintln!("cp failed: {err}");
    }
    let same = ok
        && Command::new("cmp")
            .arg(env.object(key))
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
    if same {
        t.bytes_checked += std::fs::metadata(&out).unwrap().len();
    }
    drop(m);
    (ok, same, env.serve.stats())
}

/// Damaged checkpoints and data files that the checkpoint cannot vouch for: discarded on
/// the next mount, everything fetched again, the copy correct.
#[test]
fn damaged_checkpoint_or_data_file_is_discarded_and_refetched() {
    let mut t = Totals::new("damaged-entry");
    let size = 32 * MIB;
    let key = "d.bin";
    let env = Env::with_objects(|b| write_pattern_file(&b.join(key), size, 51));
    let parts = [3u64, 7, 20];
    type Damage = fn(&Path, &Path);
    let cases: [(&str, Damage); 4] = [
        ("flipped checkpoint byte", |_, c| {
            let n = std::fs::metadata(c).unwrap().len();
            flip(c, n / 2, 1)
        }),
        ("truncated checkpoint", |_, c| {
            let n = std::fs::metadata(c).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(c)
                .unwrap()
                .set_len(n / 2)
                .unwrap()
        }),
        ("empty checkpoint", |_, c| std::fs::write(c, b"").unwrap()),
        ("truncated data file", |d, _| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(d)
                .unwrap()
                .set_len(16 * MIB)
                .unwrap()
        }),
    ];
    for (what, damage) in cases {
        let (data, ckpt) = make_partial_entry(&env, key, &parts);
        damage(&data, &ckpt);
        t.faults += 1;
        let (ok, same, st) = remount_and_copy(&env, key, &mut t);
        eprintln!("{what}: {st:?}");
        assert!(ok && same, "{what}: cp ok {ok}, identical {same}");
        // Nothing of the damaged entry was trusted: the whole object came again...
        assert_eq!(st.bytes_sent, size, "{what}: {st:?}");
        // ...and the mount said why, in its log.
        let log = std::fs::read_to_string(env.tmp.path().join("mnt.log")).unwrap();
        assert!(
            log.contains("discarding checkpoint"),
            "{what}: nothing logged: {log}"
        );
    }
    t.print(&env);
}

/// Flipped bytes inside a part the checkpoint vouches for. The checkpoint holds each
/// part's CRC-64, so this is detectable: `ossmount cache verify` reports it, and the mount
/// reads a part recorded by an earlier process back against its CRC-64 before its bytes
/// are first served (and before finalizing), so the flipped part is dropped and fetched
/// again. (It used to be served to `cp`, and the entry finalized with it: `finalize`
/// combined the *recorded* CRCs, which still matched.)
#[test]
fn flipped_bytes_in_a_recorded_part_are_reported_and_never_served() {
    let mut t = Totals::new("flipped-data");
    let size = 32 * MIB;
    let key = "v.bin";
    let env = Env::with_objects(|b| write_pattern_file(&b.join(key), size, 52));
    let (data, _) = make_partial_entry(&env, key, &[3, 7, 20]);
    flip(&data, 7 * PART + 100_000, 16);
    t.faults += 1;
    let out = Command::new(common::bin())
        .args(["cache", "verify", "--cache-dir"])
        .arg(env.cache())
        .output()
        .unwrap();
    t.ops += 1;
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "cache verify exit code");
    assert!(report.contains("BAD") && report.contains(key), "{report}");
    let (ok, same, st) = remount_and_copy(&env, key, &mut t);
    t.print(&env);
    assert!(
        ok && same,
        "cp failed or gave wrong bytes (part 7 of the cached entry was damaged); {st:?}"
    );
    // Parts 3 and 20 were good and are reused; part 7 and the never-cached rest are fetched.
    assert_eq!(st.bytes_sent, size - 2 * PART, "{st:?}");
}

// ---------------------------------------------------------------------------------------
// 6. The object replaced on the server during a cp.

#[test]
fn object_replaced_during_cp_fails_the_cp_without_mixing_and_a_new_cp_gets_it() {
    let mut t = Totals::new("replaced");
    let size = 160 * MIB;
    let env = Env::with_objects(|b| write_pattern_file(&b.join("c.bin"), size, 61));
    // Keep the old bytes for the checks, and stage the replacement on the same
    // filesystem, so swapping it in is one atomic rename (as an upload is).
    let old = env.tmp.path().join("old.bin");
    std::fs::copy(env.object("c.bin"), &old).unwrap();
    let staged = env.object(".staged");
    write_pattern_file(&staged, size, 62);
    let new = env.tmp.path().join("new.bin");
    std::fs::copy(&staged, &new).unwrap();
    let m = env.mount("mnt", &["--metadata-ttl", "1s", "--part-size", "1MiB"]);
    let via = m.dir.join("c.bin");
    assert_eq!(std::fs::metadata(&via).unwrap().len(), size);
    t.reset(&env);
    let out = env.tmp.path().join("c.out");
    let mut child = Command::new("cp")
        .arg(&via)
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Freeze cp a fifth of the way in, let the read-ahead in flight (at most 64 MiB)
    // settle, replace the object, and let cp go on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.serve.stats().bytes_sent < size / 5 {
        assert!(child.try_wait().unwrap().is_none(), "cp finished too soon");
        assert!(Instant::now() < deadline, "cp made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    run(Command::new("kill").args(["-STOP", &child.id().to_string()]));
    let mut sent = env.serve.stats().bytes_sent;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = env.serve.stats().bytes_sent;
        if now == sent {
            break;
        }
        sent = now;
    }
    assert!(sent < size, "the whole object was fetched before the swap");
    std::fs::rename(&staged, env.object("c.bin")).unwrap();
    t.faults += 1;
    run(Command::new("kill").args(["-CONT", &child.id().to_string()]));
    let result = child.wait_with_output().unwrap();
    t.ops += 1;
    let err = String::from_utf8_lossy(&result.stderr).into_owned();
    eprintln!("cp after the swap: {}: {err}", result.status);
    assert!(
        !result.status.success(),
        "cp succeeded across a replacement"
    );
    assert!(
        err.contains("Stale file handle") || err.contains("Input/output error"),
        "cp failed, but not with ESTALE or EIO: {err}"
    );
    // What cp wrote is a prefix of the old object: not one byte of the new one.
    let got = std::fs::metadata(&out).unwrap().len();
    run(Command::new("cmp")
        .args(["-n", &got.to_string()])
        .arg(&out)
        .arg(&old));
    t.ops += 1;
    t.bytes_checked += got;
    let st = env.serve.stats();
    assert!(st.status_412 > 0, "no If-Match refusal: {st:?}");

    // After the metadata TTL a new cp sees the new object, whole.
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, err) = cp(&via, &out);
    t.ops += 1;
    assert!(ok, "cp of the new object: {err}");
    t.cmp(&new, &out);
    t.print(&env);
    drop(m);
}

// ---------------------------------------------------------------------------------------
// 7. The cache on a small tmpfs.

/// Copy `key` twice through a fresh mount with the cache on `fs`; check both copies and
/// that the cache never held more than `limit` bytes (sampled with `du` during the first
/// copy). Returns the bytes the server sent for (first, second) copy.
fn copy_twice_on(env: &Env, fs: &Tmpfs, extra: &[&str], limit: u64, t: &mut Totals) -> (u64, u64) {
    let _ = std::fs::remove_dir_all(fs.0.join("cache"));
    let out = env.tmp.path().join("big.out");
    let mut sent = Vec::new();
    for _ in 0..2 {
        // A mount per copy, so the second is not served by the kernel's page cache.
        let m = env.mount_fg("mnt", extra);
        let via = m.dir.join("big.bin");
        t.reset(env);
        let mut child = Command::new("cp")
            .arg(&via)
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut peak = 0;
        while child.try_wait().unwrap().is_none() {
            peak = peak.max(fs.used());
            std::thread::sleep(Duration::from_millis(20));
        }
        let res = child.wait_with_output().unwrap();
        t.ops += 1;
        assert!(
            res.status.success(),
            "cp with the cache on a small tmpfs: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        t.cmp(&env.object("big.bin"), &out);
        peak = peak.max(fs.used());
        eprintln!(
            "cache on tmpfs, {extra:?}: peak {} KiB used (limit {} KiB), {} MiB fetched",
            peak >> 10,
            limit >> 10,
            env.serve.stats().bytes_sent >> 20
        );
        assert!(peak <= limit, "cache grew to {peak} bytes, limit {limit}");
        sent.push(env.serve.stats().bytes_sent);
        drop(m);
    }
    (sent[0], sent[1])
}

/// The parts the cache holds (allocated in the sparse data file, all recorded in the
/// checkpoint after a clean unmount) are, in a new mount, served without a GET: 4 KiB
/// preads in each, backwards so that no read looks sequential and triggers read-ahead.
/// At least `min_parts` must be held.
fn assert_cached_parts_reused(env: &Env, min_parts: u64, t: &mut Totals) {
    let data = std::fs::read_dir(env.cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "data"))
        .expect("no partial entry in the cache");
    let m = env.mount_fg("mnt", &["--part-size", "1MiB"]);
    t.reset(env);
    let py = format!(
        r#"
import os
d = os.open("{data}", os.O_RDONLY)
size = os.fstat(d).st_size
held = []
for p in range(1, size // {PART}):
    a = p * {PART}
    try:
        if os.lseek(d, a, os.SEEK_DATA) == a and os.lseek(d, a, os.SEEK_HOLE) >= a + {PART}:
            held.append(p)
    except OSError:
        pass
f = os.open("{via}", os.O_RDONLY)
g = os.open("{src}", os.O_RDONLY)
for p in reversed(held):
    off = p * {PART} + 8192
    assert os.pread(f, 4096, off) == os.pread(g, 4096, off), p
print(len(held))
"#,
        data = data.display(),
        via = m.dir.join("big.bin").display(),
        src = env.object("big.bin").display(),
    );
    let out = run(Command::new("python3").arg("-c").arg(&py));
    let held: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    t.ops += held;
    t.bytes_checked += held * 4096;
    let st = env.serve.stats();
    eprintln!("{held} cached parts read again: {st:?}");
    assert!(held >= min_parts, "only {held} parts cached");
    assert_eq!(st.get_requests, 0, "cached parts fetched again: {st:?}");
    drop(m);
}

#[test]
fn cache_on_a_small_tmpfs_stays_in_bounds_and_reads_stay_correct() {
    let mut t = Totals::new("small-tmpfs");
    let size = 96 * MIB;
    let mut env = Env::with_objects(|b| write_pattern_file(&b.join("big.bin"), size, 71));
    let part = ["--part-size", "1MiB"];

    // a) 64 MiB of tmpfs for a 96 MiB object, default floor: a tenth of so small a
    //    filesystem (6.4 MiB) rather than 1 GiB, so the cache fills to it and serves the
    //    rest from memory: correct and in bounds, and the second copy reuses what it cached.
    let small = Tmpfs::new(env.tmp.path().join("tmpfs64"), "64m");
    env.cache = small.0.join("cache");
    let (a1, a2) = copy_twice_on(&env, &small, &part, 64 * MIB, &mut t);
    t.faults += 1;
    assert!(a1 >= size && a2 < a1, "{a1} {a2}");
    drop(small);

    // b) A tmpfs with 64 MiB above a 1 GiB floor: the cache fills to the floor and stops, the
    //    open object is served from memory beyond it, and what was cached is reused by the
    //    next mount: the second copy fetches at least 48 of the 64 cached MiB less.
    //    Slack over 64 MiB: parts reserved concurrently all see the same free space
    //    (up to --jobs parts, 8 MiB) and the checkpoint, lock file and directory.
    let fits = Tmpfs::new(env.tmp.path().join("tmpfs-floor"), "1088m");
    env.cache = fits.0.join("cache");
    let (b1, b2) = copy_twice_on(
        &env,
        &fits,
        &["--part-size", "1MiB", "--cache-min-free", "1GiB"],
        72 * MIB + 64 * 1024,
        &mut t,
    );
    t.faults += 1;
    assert!(b1 >= size && b2 > 0, "{b1} {b2}");
    assert_cached_parts_reused(&env, 48, &mut t);

    // c) --cache-size smaller than the object (32 MiB for 96 MiB), floor not in the way:
    //    the budget is exact (accounted under one lock); slack only for the checkpoint,
    //    lock file and directory.
    let (c1, c2) = copy_twice_on(
        &env,
        &fits,
        &["--part-size", "1MiB", "--cache-size", "32MiB"],
        32 * MIB + 64 * 1024,
        &mut t,
    );
    t.faults += 1;
    assert!(c1 >= size && c2 > 0, "{c1} {c2}");
    assert_cached_parts_reused(&env, 24, &mut t);
    t.print(&env);
}

/// When the cache cannot hold a part (disk at its free-space floor, budget full of open
/// entries), the part is served from memory. Read-ahead then shrinks to what the mount
/// keeps in memory, so no part is dropped unread: before that, a sequential `cp` of 96 MiB
/// in 1 MiB parts with a cache that held nothing fetched 510-600 MiB (5-6x). The floor
/// (1 GiB on a 64 MiB tmpfs) leaves the cache no room at all.
#[test]
fn cache_that_holds_nothing_still_fetches_each_part_once() {
    let mut t = Totals::new("no-room-amplification");
    let size = 96 * MIB;
    let mut env = Env::with_objects(|b| write_pattern_file(&b.join("big.bin"), size, 72));
    let small = Tmpfs::new(env.tmp.path().join("tmpfs64"), "64m");
    env.cache = small.0.join("cache");
    let (a1, _) = copy_twice_on(
        &env,
        &small,
        &["--part-size", "1MiB", "--cache-min-free", "1GiB"],
        64 * MIB,
        &mut t,
    );
    t.print(&env);
    assert!(
        a1 <= size + size / 4,
        "one sequential cp fetched {a1} bytes of a {size}-byte object ({:.1}x)",
        a1 as f64 / size as f64
    );
}

// ---------------------------------------------------------------------------------------
// 8. Eight concurrent readers of one cold object.

#[test]
fn eight_concurrent_readers_of_overlapping_ranges_fetch_each_part_once() {
    let mut t = Totals::new("8-readers");
    let size = 64 * MIB;
    let env = Env::with_objects(|b| write_pattern_file(&b.join("p.bin"), size, 81));
    let m = env.mount("mnt", &["--part-size", "1MiB"]);
    let via = m.dir.join("p.bin");
    assert_eq!(std::fs::metadata(&via).unwrap().len(), size);
    t.reset(&env);
    // Reader i reads [i/8, i/8 + 1/4) of the object (clamped) in 128 KiB preads, all
    // starting together: every byte is read by two readers, most parts are wanted by
    // two at once, and the union is the whole object.
    let py = format!(
        r#"
import os, threading, hashlib
via, src, size = "{via}", "{src}", {size}
barrier = threading.Barrier(8)
errors, checked = [], []
def reader(i):
    start = i * size // 8
    end = min(size, start + size // 4)
    f = os.open(via, os.O_RDONLY)
    g = os.open(src, os.O_RDONLY)
    barrier.wait()
    a, b = hashlib.sha256(), hashlib.sha256()
    off = start
    while off < end:
        n = min(128 * 1024, end - off)
        x = os.pread(f, n, off)
        if len(x) != n:
            errors.append((i, off, len(x)))
            return
        a.update(x)
        b.update(os.pread(g, n, off))
        off += n
    if a.digest() != b.digest():
        errors.append((i, "mismatch"))
    checked.append(end - start)
ts = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
for x in ts: x.start()
for x in ts: x.join()
assert not errors, errors
print(sum(checked))
"#,
        via = via.display(),
        src = env.object("p.bin").display(),
    );
    let out = run(Command::new("python3").arg("-c").arg(&py));
    t.ops += 8;
    t.bytes_checked += String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u64>()
        .unwrap();
    let st = env.serve.stats();
    t.print(&env);
    // Each part once: the union of the ranges is the object, so the server sends it
    // exactly once. No slack is needed: a part wanted by two readers is one fetch (the
    // second waits for it), and read-ahead past a reader's range stays inside the object
    // and is de-duplicated the same way.
    assert_eq!(st.bytes_sent, size, "{st:?}");
    drop(m);
}

// ---------------------------------------------------------------------------------------
// 9. A second mount on the same cache directory.

#[test]
fn second_mount_on_the_same_cache_is_refused_and_the_first_keeps_working() {
    let mut t = Totals::new("second-mount");
    let env = Env::with_objects(|b| write_pattern_file(&b.join("o.bin"), 5 * MIB, 91));
    let first = env.mount_fg("first", &[]);
    let out = env.tmp.path().join("o.out");
    let (ok, err) = cp(&first.dir.join("o.bin"), &out);
    assert!(ok, "{err}");
    t.cmp(&env.object("o.bin"), &out);

    let second = env.mnt("second");
    let _guard = Mount {
        dir: second.clone(),
        child: None,
    };
    let started = Instant::now();
    let res = env
        .cmd(&format!("oss://{BUCKET}"), &second, &[])
        .output()
        .unwrap();
    t.ops += 1;
    t.faults += 1;
    let msg = String::from_utf8_lossy(&res.stderr).into_owned();
    eprintln!("second mount: {}: {msg}", res.status);
    assert_eq!(
        res.status.code(),
        Some(5),
        "exit code of a locked cache: {msg}"
    );
    assert!(
        msg.contains(env.cache().to_str().unwrap()) && msg.contains("in use"),
        "unclear message: {msg}"
    );
    assert_eq!(
        msg.matches(env.cache().to_str().unwrap()).count(),
        1,
        "the directory is named once: {msg}"
    );
    assert!(!is_mounted(&second), "second mount half-mounted");
    assert!(started.elapsed() < Duration::from_secs(10));

    // The first mount is untouched: a fresh read through it still works and is correct.
    std::fs::remove_file(&out).unwrap();
    let (ok, err) = cp(&first.dir.join("o.bin"), &out);
    t.ops += 1;
    assert!(ok, "first mount broken after the refused second: {err}");
    t.cmp(&env.object("o.bin"), &out);
    assert!(is_mounted(&first.dir));
    // The object was fetched once, by the first mount; the refused one fetched nothing.
    let st = env.serve.stats();
    assert_eq!(st.bytes_sent, 5 * MIB, "{st:?}");
    t.print(&env);
}

// ---------------------------------------------------------------------------------------
// 10. Bad input: odd keys, an empty bucket, sizes at part boundaries, many keys.

fn bad_input(many: usize) {
    let mut t = Totals::new("bad-input");
    let odd = [
        "sp ace.bin",
        "ünï cødé 日本.bin",
        "100%.bin",
        "%2F.bin",
        "%25%20.bin",
        "a+b.bin",
        "+lead.bin",
        "what?.bin",
        "q?x=1&y=2.bin",
        "hash#tag.bin",
        "#.bin",
        "semi;colon=eq.bin",
        "tab\tand'quote\".bin",
        "dir with space/and+plus/file%.bin",
    ];
    let sizes: [(&str, u64); 5] = [
        ("sizes/zero", 0),
        ("sizes/one-byte", 1),
        ("sizes/one-part", MIB),
        ("sizes/part-plus-one", MIB + 1),
        ("sizes/two-parts-minus-one", 2 * MIB - 1),
    ];
    let env = Env::with_objects(|b| {
        for (i, k) in odd.iter().enumerate() {
            write_pattern_file(&b.join(k), 1000 + i as u64, 100 + i as u64);
        }
        for (k, n) in sizes {
            write_pattern_file(&b.join(k), n, n + 7);
        }
        std::fs::create_dir_all(b.join("many")).unwrap();
        for i in 0..many {
            std::fs::write(b.join(format!("many/k{i:06}")), b"").unwrap();
        }
        std::fs::create_dir_all(b.parent().unwrap().join("empty-bkt")).unwrap();
    });
    let m = env.mount_fg("mnt", &["--part-size", "1MiB"]);
    // A 0-byte object, read first: no GET at all (a Range of nothing is not even
    // expressible, and there is nothing to fetch).
    t.reset(&env);
    let zero = std::fs::read(m.dir.join("sizes/zero")).unwrap();
    t.ops += 1;
    assert!(zero.is_empty());
    let st = env.serve.stats();
    assert_eq!(st.get_requests, 0, "GET for a 0-byte object: {st:?}");
    let out = env.tmp.path().join("x.out");
    for k in odd.iter().copied().chain(sizes.iter().map(|(k, _)| *k)) {
        let (ok, err) = cp(&m.dir.join(k), &out);
        t.ops += 1;
        assert!(ok, "cp of {k:?}: {err}");
        t.cmp(&env.object(k), &out);
    }

    // Many keys in one directory: ls sees every one (listed in pages of 1,000).
    t.reset(&env);
    let started = Instant::now();
    let ls = run(Command::new("ls").arg("-f").arg(m.dir.join("many")));
    t.ops += 1;
    let names = String::from_utf8_lossy(&ls.stdout)
        .lines()
        .filter(|l| *l != "." && *l != "..")
        .count();
    let st = env.serve.stats();
    eprintln!("ls of {many} keys: {:?}, {st:?}", started.elapsed());
    assert_eq!(names, many);
    assert!(st.list_requests >= (many as u64).div_ceil(1000), "{st:?}");
    // The pages share the server's walk of the directory; only pages within two seconds
    // of the directory's last change (just written above) walk it again.
    assert!(
        st.listings_built <= st.list_requests / 4,
        "a walk per page: {st:?}"
    );
    assert_eq!(st.get_requests, 0, "ls fetched object bytes: {st:?}");
    drop(m);

    // An empty bucket mounts and lists as an empty directory.
    let m = env.mount_fg_url("oss://empty-bkt", "empty", &[]);
    let entries = std::fs::read_dir(&m.dir).unwrap().count();
    t.ops += 1;
    assert_eq!(entries, 0);
    drop(m);
    t.print(&env);
}

/// 100k keys in one directory: `ls` pages through them 1,000 at a time, about
/// 10 s in a debug build since `serve` keeps one sorted walk for all the pages (a walk per
/// page made it minutes).
#[test]
fn bad_input_odd_keys_boundaries_empty_bucket_and_100k_keys() {
    bad_input(100_000);
}
