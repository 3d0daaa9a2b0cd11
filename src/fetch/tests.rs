//! The fetcher and the cache it fills against [`MemoryStore`]: what is fetched, what
//! survives a restart, what is evicted, what happens when the store or the disk misbehaves.

#![allow(clippy::single_range_in_vec_init)] // ranges requested, compared as lists

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::cache::{free_bytes, lock_dir, CacheConfig, PartCache};
use crate::store::memory::MemoryStore;
use crate::store::{ObjectMeta, ObjectStore, StoreError};

const PS: u64 = 128 << 10;
const NS: &str = "mem://bucket";

fn cfg(dir: &Path) -> CacheConfig {
    CacheConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 40,
        min_free_bytes: 0,
        part_size: PS,
        jobs: 4,
        batch_bytes: 4 * PS,
        batch_interval: Duration::from_secs(1),
        small_object_threshold: 0,
        min_request_bytes: PS,
        max_readahead: 4 * PS,
        resident_bytes: 4 * PS,
        memory_limit: 1 << 30,
    }
}

const MIB: u64 = 1 << 20;

/// [`cfg`] with 1 MiB parts, deep enough for a read to land past [`crate::fetch::SPLIT_MIN`].
fn mib_parts(dir: &Path) -> CacheConfig {
    CacheConfig {
        part_size: MIB,
        min_request_bytes: MIB,
        max_readahead: 2 * MIB,
        resident_bytes: 2 * MIB,
        ..cfg(dir)
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed as u32) as u8
                ^ (i >> 13) as u8
        })
        .collect()
}

fn open(dir: &Path, store: &MemoryStore, c: CacheConfig) -> Arc<Fetcher> {
    let _ = dir;
    Fetcher::open(c, Arc::new(store.clone()), NS.to_string()).unwrap()
}

/// Wait until `n` parts of the handle's entry are in its data file (a read returns as
/// soon as its own bytes arrived; the rest of its part is written after).
async fn wait_present(h: &ObjectHandle, n: usize) {
    // Up to 30 s: writes run in the background, and a loaded CI box is slow.
    for _ in 0..3000 {
        if h.entry().present_count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {} parts present", h.entry().present_count());
}

fn part(i: u64) -> Range<u64> {
    i * PS..(i + 1) * PS
}

async fn wait_finalized(h: &ObjectHandle) {
    for _ in 0..3000 {
        if h.finalized_file().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("entry never finalized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_fetches_exactly_the_parts_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(10 * PS as usize, 1);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();

    // A random read touching parts 3, 4 and 5: those three, nothing else.
    let got = h.read(3 * PS + 10, 2 * PS as usize).await.unwrap();
    assert_eq!(&got[..], &d[(3 * PS + 10) as usize..(5 * PS + 10) as usize]);
    let mut r = s.counters().ranges_of("obj");
    r.sort_by_key(|r| r.start);
    assert_eq!(r, [part(3), part(4), part(5)]);
    for r in s.counters().ranges {
        assert!(r.1.end - r.1.start <= PS);
    }
    // Again (another random reader): served from the data file.
    let h = cache.object(&m).unwrap();
    h.read(3 * PS, PS as usize).await.unwrap();
    assert_eq!(s.counters().gets, 3);

    // Sequential from 0 (a new reader): part 0, plus read-ahead of what is missing in
    // its window (4 parts here: `max_readahead`).
    s.reset_counters();
    let h = cache.object(&m).unwrap();
    h.read(0, PS as usize).await.unwrap();
    h.read(PS, PS as usize).await.unwrap();
    // The read-ahead is a background request: wait for it (a loaded box may take seconds).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while s.counters().ranges_of("obj").len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut got: Vec<_> = s.counters().ranges_of("obj");
    got.sort_by_key(|r| r.start);
    assert_eq!(
        got,
        [part(0), part(1), part(2)],
        "part 3 was present already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjacent_missing_parts_are_coalesced_and_small_objects_take_one_get() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(10 * PS as usize, 2);
    let m = s.put("obj", d.clone());
    let small = s.put("small", data(3 * PS as usize + 5, 3));
    let mut c = cfg(dir.path());
    c.min_request_bytes = 4 * PS;
    c.small_object_threshold = 4 * PS;
    let cache = open(dir.path(), &s, c);
    let h = cache.object(&m).unwrap();
    h.read(PS * 2, 10).await.unwrap(); // part 2 alone: a first read not at 0 is random
                                       // Another reader, sequential from 0.
    let h2 = cache.object(&m).unwrap();
    let got = h2.read(0, 6 * PS as usize).await.unwrap();
    assert_eq!(&got[..], &d[..6 * PS as usize]);
    // 0..2 in one request; 3..6 in one request; anything else is read-ahead past the read.
    let mut r = s.counters().ranges_of("obj");
    r.sort_by_key(|r| r.start);
    let (read, ahead): (Vec<_>, Vec<_>) = r.into_iter().partition(|r| r.start < 6 * PS);
    assert_eq!(read, [0..2 * PS, part(2), 3 * PS..6 * PS]);
    assert!(ahead.iter().all(|r| r.end - r.start <= 4 * PS), "{ahead:?}");
    let hs = cache.object(&small).unwrap();
    hs.read(PS + 1, 1).await.unwrap();
    assert_eq!(s.counters().ranges_of("small"), [0..small.size]);
    assert_eq!(hs.read(0, 1 << 30).await.unwrap().len() as u64, small.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_keeps_the_parts_before_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(4 * PS as usize, 4);
    let m = s.put("obj", d.clone());
    let mut c = cfg(dir.path());
    c.min_request_bytes = 4 * PS;
    let cache = open(dir.path(), &s, c);
    let h = cache.object(&m).unwrap();
    // Without the retrying layer the body breaks in part 2; parts 0 and 1 arrived whole and
    // are kept, and the read fetches once more only what it still lacks.
    s.break_bodies_after(2 * PS + PS / 2, Some(1));
    let got = h.read(0, 4 * PS as usize).await.unwrap();
    assert_eq!(&got[..], &d[..]);
    assert_eq!(s.counters().ranges_of("obj"), [0..4 * PS, 2 * PS..4 * PS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_storm_fails_the_read_and_the_next_one_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(2 * PS as usize, 5);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    // One failed fetch per part (no retrying layer here): the read fetches once more.
    s.fail_next(2);
    assert_eq!(&h.read(0, 2 * PS as usize).await.unwrap()[..], &d[..]);
    assert_eq!(s.counters().injected_503, 2);
    // Two in a row: the read fails, and the next one succeeds.
    let h = cache.object(&s.put("obj2", d.clone())).unwrap();
    s.fail_next(4);
    let err = h.read(0, 2 * PS as usize).await.unwrap_err();
    assert!(
        matches!(err, ReadError::Store(StoreError::Throttled(_))),
        "{err:?}"
    );
    let got = h.read(0, 2 * PS as usize).await.unwrap();
    assert_eq!(&got[..], &d[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etag_change_mid_read_is_stale_and_never_mixes_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let old = data(6 * PS as usize, 6);
    let new = data(6 * PS as usize, 7);
    let m = s.put("obj", old.clone());
    let mut c = cfg(dir.path());
    c.jobs = 1;
    let cache = open(dir.path(), &s, c);
    let h = cache.object(&m).unwrap();
    s.change_after_bytes("obj", PS + 1, new.clone());
    let err = h.read(0, 6 * PS as usize).await.unwrap_err();
    assert!(matches!(err, ReadError::Stale), "{err:?}");
    assert!(s.counters().precondition_failed >= 1);
    // Every later read of the old handle is stale too, even of parts it had.
    assert!(matches!(h.read(0, 10).await, Err(ReadError::Stale)));
    // A deleted object is stale too.
    let hd = cache.object(&s.meta("obj").unwrap()).unwrap();
    s.remove("obj");
    assert!(matches!(hd.read(0, 10).await, Err(ReadError::Stale)));
    s.put("obj", new.clone());
    // A new open sees the new object, all of it new.
    let m2 = s.meta("obj").unwrap();
    let h2 = cache.object(&m2).unwrap();
    let got = h2.read(0, 6 * PS as usize).await.unwrap();
    assert_eq!(&got[..], &new[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_another_etag_drops_the_old_entry() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let m = s.put("obj", data(2 * PS as usize, 8));
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    h.read(0, 10).await.unwrap();
    let new = data(3 * PS as usize, 9);
    let m2 = s.put("obj", new.clone());
    let h2 = cache.object(&m2).unwrap();
    assert!(matches!(h.read(0, 10).await, Err(ReadError::Stale)));
    s.reset_counters();
    assert_eq!(&h2.read(0, 1 << 20).await.unwrap()[..], &new[..]);
    assert_eq!(
        s.counters().gets,
        3,
        "nothing of the old version was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_readers_of_one_part_share_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(2 * PS as usize, 10);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h1 = cache.object(&m).unwrap();
    let h2 = cache.object(&m).unwrap();
    s.stall_bodies(1000, Duration::from_millis(200));
    let (a, b) = tokio::join!(h1.read(100, 1000), h2.read(5000, 1000));
    assert_eq!(&a.unwrap()[..], &d[100..1100]);
    assert_eq!(&b.unwrap()[..], &d[5000..6000]);
    assert_eq!(s.counters().ranges_of("obj"), [part(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_fetches_only_the_missing_parts() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(8 * PS as usize, 11);
    let m = s.put("obj", d.clone());
    {
        let cache = open(dir.path(), &s, cfg(dir.path()));
        // Two random readers (a first read not at offset 0): no read-ahead.
        let h = cache.object(&m).unwrap();
        h.read(PS, 1).await.unwrap();
        let h2 = cache.object(&m).unwrap();
        h2.read(5 * PS, PS as usize + 1).await.unwrap();
        wait_present(&h, 3).await;
        // dropped: handle, then cache (flushes the pending checkpoint)
    }
    s.reset_counters();
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    let got = h.read(0, 8 * PS as usize).await.unwrap();
    assert_eq!(&got[..], &d[..]);
    let mut r = s.counters().ranges_of("obj");
    r.sort_by_key(|r| r.start);
    assert_eq!(r, [part(0), part(2), part(3), part(4), part(7)]);
    wait_finalized(&h).await;
    drop(h);
    drop(cache);
    // Finalized: a third start reads everything locally.
    s.reset_counters();
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    assert_eq!(&h.read(0, 1 << 30).await.unwrap()[..], &d[..]);
    assert_eq!(s.counters().gets, 0);
    let mut f = h.finalized_file().unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut all).unwrap();
    assert_eq!(all, d);
}

fn entry_file(dir: &Path, key: &str, ext: &str) -> PathBuf {
    dir.join(format!("{}.{ext}", PartCache::entry_name(NS, key)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_means_fetching_again_and_correct_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(4 * PS as usize, 12);
    let m = s.put("obj", d.clone());
    type Damage = (&'static str, fn(&Path));
    let damage: [Damage; 4] = [
        ("flipped bit", |p| {
            let mut b = fs::read(p).unwrap();
            b[40] ^= 0x10;
            fs::write(p, b).unwrap();
        }),
        ("truncated", |p| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() / 2]).unwrap();
        }),
        ("unknown version", |p| {
            let mut b = fs::read(p).unwrap();
            b[8] = 99;
            fs::write(p, b).unwrap();
        }),
        ("data file of the wrong size", |p| {
            let data = p.with_extension("data");
            fs::OpenOptions::new()
                .write(true)
                .open(data)
                .unwrap()
                .set_len(7)
                .unwrap();
        }),
    ];
    for (what, f) in damage {
        {
            let cache = open(dir.path(), &s, cfg(dir.path()));
            let h = cache.object(&m).unwrap();
            // Parts 0 and 1 only: a first read not at 0 reads no further ahead.
            h.read(1, 2 * PS as usize - 1).await.unwrap();
            // Scribble over the data file's bytes of part 0 as well: if the damaged
            // checkpoint were trusted, these would be served.
        }
        // The flusher thread may hold the cache (and its last flush) a moment longer.
        drop(lock_dir(dir.path()).unwrap());
        let ckpt = entry_file(dir.path(), "obj", "ckpt");
        assert!(ckpt.exists(), "{what}: checkpoint written");
        let datafile = entry_file(dir.path(), "obj", "data");
        fs::OpenOptions::new()
            .write(true)
            .open(&datafile)
            .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &[0xAA; 100], 0))
            .unwrap();
        f(&ckpt);
        s.reset_counters();
        let cache = open(dir.path(), &s, cfg(dir.path()));
        let h = cache.object(&m).unwrap();
        let got = h.read(1, 2 * PS as usize - 1).await.unwrap();
        assert_eq!(&got[..], &d[1..2 * PS as usize], "{what}");
        let r = s.counters().ranges_of("obj");
        assert!(
            r.contains(&part(0)) && r.contains(&part(1)),
            "{what}: {r:?}"
        );
        drop(h);
        drop(cache);
        drop(lock_dir(dir.path()).unwrap());
        let _ = fs::remove_file(&ckpt); // a last flush may still be on its way: fine
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crc_mismatch_discards_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let m = s.put("obj", data(2 * PS as usize, 13));
    s.set_crc64("obj", Some(12345));
    let m = ObjectMeta {
        crc64: Some(12345),
        ..m
    };
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    // Its bytes, or already the CRC-64 failure: finalize runs as soon as the last part is
    // written, which may be before this read is answered.
    match h.read(0, 2 * PS as usize).await {
        Ok(_) | Err(ReadError::Io(_)) => {}
        Err(e) => panic!("{e}"),
    }
    // The entry is marked dead first, then its files are removed: wait for both.
    for _ in 0..3000 {
        if h.entry().dead().is_some()
            && !entry_file(dir.path(), "obj", "done").exists()
            && !entry_file(dir.path(), "obj", "data").exists()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(h.read(0, 1).await, Err(ReadError::Io(_))));
    assert!(!entry_file(dir.path(), "obj", "done").exists());
    assert!(!entry_file(dir.path(), "obj", "data").exists());
    assert!(h.finalized_file().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_byte_objects_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let m = s.put("empty", Vec::new());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    assert!(h.read(0, 100).await.unwrap().is_empty());
    let f = h.finalized_file().unwrap();
    assert_eq!(f.metadata().unwrap().len(), 0);
    assert_eq!(s.counters().gets, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_is_lru_and_spares_open_entries() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let size = 4 * PS as usize;
    let ma = s.put("a", data(size, 14));
    let mb = s.put("b", data(size, 15));
    let mc = s.put("c", data(size, 16));
    let mut c = cfg(dir.path());
    // Room for two objects and their small files, not three.
    c.max_bytes = 2 * size as u64 + (64 << 10);
    let cache = open(dir.path(), &s, c);
    let ha = cache.object(&ma).unwrap(); // stays open
    ha.read(0, size).await.unwrap();
    {
        let hb = cache.object(&mb).unwrap();
        hb.read(0, size).await.unwrap();
        wait_finalized(&hb).await;
    }
    wait_finalized(&ha).await;
    // Let the finalize tasks drop their references (they pin the entries meanwhile).
    tokio::time::sleep(Duration::from_millis(200)).await;
    // a is least recently used, but open: b goes.
    let hc = cache.object(&mc).unwrap();
    assert_eq!(&hc.read(0, size).await.unwrap()[..], &data(size, 16)[..]);
    assert!(entry_file(dir.path(), "a", "done").exists());
    assert!(!entry_file(dir.path(), "b", "done").exists());
    assert!(!entry_file(dir.path(), "b", "data").exists());
    assert!(cache.cache().used_bytes() <= cache.cache().config().max_bytes);
    // Accounting is rebuilt from the directory on restart.
    drop((ha, hc));
    let used = cache.cache().used_bytes();
    drop(cache);
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let again = cache.cache().used_bytes();
    assert!(again.abs_diff(used) <= 64 << 10, "{again} vs {used}");
    assert!(again >= 2 * size as u64);
}

/// A tmpfs mounted on a temporary directory with `opts`, unmounted on drop. `None` (with a
/// message) when it cannot be mounted, i.e. not running as root.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(opts: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipping: cannot mount a tmpfs (not root?)");
            return None;
        }
        Some(Tmpfs(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

/// Reads stay correct when the cache's disk is full: a 4 MiB tmpfs, a 12 MiB object.
/// Needs root (mount); skipped with a message otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_still_serves_correct_bytes() {
    let Some(dir) = Tmpfs::mount("size=4m") else {
        return;
    };
    let s = MemoryStore::new();
    let small = data(2 * PS as usize, 17);
    let big = data(12 << 20, 18);
    let ms = s.put("small", small.clone());
    let mb = s.put("big", big.clone());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let hs = cache.object(&ms).unwrap();
    assert_eq!(&hs.read(0, 1 << 30).await.unwrap()[..], &small[..]);
    wait_finalized(&hs).await;
    let hb = cache.object(&mb).unwrap();
    let mut off = 0;
    while off < big.len() {
        let got = hb.read(off as u64, 1 << 20).await.unwrap();
        assert_eq!(&got[..], &big[off..off + got.len()], "at {off}");
        off += got.len();
    }
    // Reading again (partly from disk, partly fetched again) is still right.
    let got = hb.read(0, big.len()).await.unwrap();
    assert!(got[..] == big[..]);
    // What was cached before is intact.
    let mut f = hs.finalized_file().unwrap();
    let mut all = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut all).unwrap();
    assert_eq!(all, small);
}

/// Durability cost: checkpoint bytes written per data byte with the default batching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_to_data_write_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let size = 64 << 20;
    let m = s.put("obj", data(size, 19));
    let mut c = cfg(dir.path());
    c.part_size = 1 << 20;
    c.min_request_bytes = 1 << 20;
    c.batch_bytes = CacheConfig::default().batch_bytes;
    let cache = open(dir.path(), &s, c);
    let h = cache.object(&m).unwrap();
    let mut off = 0;
    while off < size {
        off += h.read(off as u64, 1 << 20).await.unwrap().len();
    }
    wait_finalized(&h).await;
    let st = cache.cache().write_stats();
    let ck = st
        .checkpoint_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let da = st.data_bytes.load(std::sync::atomic::Ordering::Relaxed);
    let ratio = ck as f64 / da as f64;
    eprintln!(
        "checkpoint bytes {ck} / data bytes {da} = {ratio:.2e} ({} checkpoints, {} fdatasyncs, 1 MiB parts)",
        st.checkpoints.load(std::sync::atomic::Ordering::Relaxed),
        st.fdatasyncs.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(da, size as u64);
    assert!(ratio < 1e-3);
}

fn retrying(s: &MemoryStore) -> Arc<dyn ObjectStore> {
    use crate::store::retry::{RetryConfig, RetryingStore};
    Arc::new(RetryingStore::new(
        Arc::new(s.clone()),
        RetryConfig {
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            ..RetryConfig::default()
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_retrying_store_resets_resume_from_the_byte_where_they_broke() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(2 * PS as usize, 20);
    let m = s.put("obj", d.clone());
    let cache = Fetcher::open(cfg(dir.path()), retrying(&s), NS.into()).unwrap();
    let h = cache.object(&m).unwrap();
    s.break_bodies_after(50_000, Some(3));
    let got = h.read(PS, PS as usize).await.unwrap();
    assert_eq!(&got[..], &d[PS as usize..]);
    let c = s.counters();
    assert_eq!(
        c.ranges_of("obj"),
        [PS..2 * PS, PS + 50_000..2 * PS, PS + 100_000..2 * PS]
    );
    assert_eq!(c.bytes_served, PS, "not one byte fetched twice");
    // A 503 storm is ridden out.
    s.fail_next(5);
    assert_eq!(&h.read(0, 10).await.unwrap()[..], &d[..10]);
    assert_eq!(s.counters().injected_503, 5);
}

/// A part fetched tail first through resets: each piece resumes where its body broke, the
/// reader gets the right bytes, and the part is cached byte-exact with its CRC-64 right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_first_part_survives_resets_in_both_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(2 * MIB as usize, 37);
    let m = s.put("obj", d.clone());
    let cache = Fetcher::open(mib_parts(dir.path()), retrying(&s), NS.into()).unwrap();
    let h = cache.object(&m).unwrap();
    // Bodies break after 200 KiB, four times: once in the 324 KiB tail, three times in
    // the 700 KiB head.
    s.break_bodies_after(200 << 10, Some(4));
    let at = 700 << 10;
    let got = h.read(at, 4096).await.unwrap();
    assert_eq!(&got[..], &d[at as usize..at as usize + 4096]);
    wait_present(&h, 1).await;
    let k = 200 << 10;
    assert_eq!(
        s.counters().ranges_of("obj"),
        [at..MIB, at + k..MIB, 0..at, k..at, 2 * k..at, 3 * k..at],
        "tail, its resumption, head, its resumptions"
    );
    assert_eq!(s.counters().bytes_served, MIB, "not one byte fetched twice");
    h.fetch_all().await.unwrap();
    wait_finalized(&h).await;
    assert_eq!(std::fs::read(&h.entry().paths.done).unwrap(), d);
}

/// Four sequential readers at once, slower than the store: together they may only have as
/// much fetched ahead of them as the resident set holds, so what they read comes from
/// memory, not back from the data file (with a full window each they had 4x that ahead,
/// and the resident set dropped most parts before their reader got to them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sequential_readers_are_not_served_from_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let parts = 24u64;
    // Room for the four parts being read and two ahead; a window of 4 parts each, and
    // 8 requests at a time (the defaults: 6 parts in memory, 6-part windows, 8 jobs).
    let c = CacheConfig {
        resident_bytes: 6 * PS,
        jobs: 8,
        ..cfg(dir.path())
    };
    let cache = open(dir.path(), &s, c);
    let mut tasks = Vec::new();
    for k in 0..4u8 {
        let d = data((parts * PS) as usize, 40 + k);
        let h = cache.object(&s.put(&format!("o{k}"), d.clone())).unwrap();
        tasks.push(tokio::spawn(async move {
            let step = 32 << 10;
            for off in (0..parts * PS).step_by(step) {
                let got = h.read(off, step).await.unwrap();
                assert_eq!(&got[..], &d[off as usize..off as usize + step]);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let back = cache
        .engine()
        .bytes_read_back
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "read back from the data file: {back} of {} bytes",
        4 * parts * PS
    );
    // With the budget: 0-64 KiB alone, up to 1 MiB beside the other tests (a reader's own
    // part, fetched on demand, may still push one being read out); without: 5-6.3 MB.
    assert!(
        back <= 4 * parts * PS / 8,
        "{back} bytes read back from the data file"
    );
}

/// Part size by measurement: read a 256 MiB object sequentially through the cache with
/// several part sizes. `cargo test --release --lib part_size_sweep -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn part_size_sweep() {
    let s = MemoryStore::new();
    let size = 256 << 20;
    let m = s.put("obj", data(size, 24));
    for ps in [1u64 << 20, 4 << 20, 8 << 20, 16 << 20, 64 << 20] {
        let dir = tempfile::tempdir_in(".").unwrap();
        let mut c = cfg(dir.path());
        c.part_size = ps;
        c.min_request_bytes = ps;
        c.jobs = 8;
        c.max_readahead = 8 * ps;
        c.batch_bytes = 16 * ps;
        let cache = open(dir.path(), &s, c);
        let h = cache.object(&m).unwrap();
        let t = std::time::Instant::now();
        let mut off = 0;
        while off < size {
            off += h.read(off as u64, 1 << 20).await.unwrap().len();
        }
        let secs = t.elapsed().as_secs_f64();
        // A random 4 KiB read costs one part.
        eprintln!(
            "part {:>3} MiB: {:>7.1} MiB/s sequential, {} requests, {} checkpoints; a random 4 KiB read fetches {} KiB",
            ps >> 20,
            size as f64 / secs / (1 << 20) as f64,
            cache.engine().requests.load(std::sync::atomic::Ordering::Relaxed),
            cache.cache().write_stats().checkpoints.load(std::sync::atomic::Ordering::Relaxed),
            ps >> 10
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_spares_entries_with_fetches_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let size = 4 * PS as usize;
    let ma = s.put("a", data(size, 25));
    let mb = s.put("b", data(size, 26));
    let mut c = cfg(dir.path());
    c.max_bytes = size as u64 + PS;
    c.jobs = 8; // a's stalled fetches must not hold every permit
                // Every read of b must go to the store (and ask the budget for room), not to b's parts
                // kept in memory.
    c.resident_bytes = 0;
    let cache = open(dir.path(), &s, c);
    {
        // A read of a whose fetch stalls; the reader gives up, the fetch goes on.
        let ha = cache.object(&ma).unwrap();
        s.stall_bodies(1, Duration::from_millis(2000));
        let r = tokio::time::timeout(Duration::from_millis(50), ha.read(0, 10)).await;
        assert!(r.is_err(), "the read should still be waiting");
    }
    // No handle on a, but a fetch in flight: b must not evict it, so b is served from memory.
    let hb = cache.object(&mb).unwrap();
    s.clear_faults();
    let t = std::time::Instant::now();
    assert_eq!(&hb.read(0, size).await.unwrap()[..], &data(size, 26)[..]);
    assert!(
        entry_file(dir.path(), "a", "data").exists(),
        "{:?} after {:?}; {:?}",
        fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        t.elapsed(),
        s.counters()
    );
    // Once a's fetches are done it is evictable again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let hb2 = cache.object(&mb).unwrap();
    for _ in 0..50 {
        // (the flusher thread can pin a for an instant while it records a's parts)
        hb2.read(0, size).await.unwrap();
        if !entry_file(dir.path(), "a", "data").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!entry_file(dir.path(), "a", "data").exists());
}

/// A cache directory that cannot take even one more file (a tmpfs out of inodes): objects
/// are still read correctly, from memory. Needs root (mount); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_cannot_create_files_still_serves_reads() {
    let Some(dir) = Tmpfs::mount("size=4m,nr_inodes=2") else {
        return;
    };
    let s = MemoryStore::new();
    let d = data(5 * PS as usize + 7, 27);
    let m = s.put("obj", d.clone());
    // The root and the lock file take both inodes.
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    assert!(h.entry().memory_only);
    assert_eq!(&h.read(0, d.len()).await.unwrap()[..], &d[..]);
    assert_eq!(
        &h.read(PS + 3, 100).await.unwrap()[..],
        &d[PS as usize + 3..PS as usize + 103]
    );
    assert!(h.finalized_file().is_none());
}

/// Filesystem type of `dir` (`statfs` f_type).
fn fs_type(dir: &Path) -> i64 {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut s) }, 0);
    s.f_type as i64
}

/// Parts reach the data file with O_DIRECT where the filesystem takes it (ext4 and xfs, as
/// under the build directory here) and through the page cache where it may not (tmpfs);
/// the cached bytes are the same either way, including the unaligned tail of the last part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_written_with_o_direct_where_the_filesystem_allows() {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let tmpfs = Tmpfs::mount("size=64m");
    let dirs: Vec<&Path> = [Some(disk.path()), tmpfs.as_ref().map(Tmpfs::path)]
        .into_iter()
        .flatten()
        .collect();
    for dir in dirs {
        let s = MemoryStore::new();
        // Larger than SYNCLESS_MAX: a smaller object goes through the page cache.
        let d = data(9 * PS as usize + 13, 33);
        let m = s.put("obj", d.clone());
        let cache = open(dir, &s, cfg(dir));
        let h = cache.object(&m).unwrap();
        assert_eq!(&h.read(0, 1 << 30).await.unwrap()[..], &d[..]);
        wait_finalized(&h).await;
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut h.finalized_file().unwrap(), &mut all).unwrap();
        assert!(all == d, "cached bytes differ in {}", dir.display());
        let st = cache.cache().write_stats();
        let odirect = st.odirect_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let total = st.data_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let fs = fs_type(dir);
        eprintln!(
            "{} (f_type {fs:#x}): {odirect} of {total} bytes with O_DIRECT",
            dir.display()
        );
        assert_eq!(total, d.len() as u64);
        if fs == EXT4 || fs == XFS {
            // Everything but the 13-byte tail, which is not a whole block.
            assert_eq!(odirect, 9 * PS);
        }
    }
}

/// An entry of at most SYNCLESS_MAX bytes is finalized without fsyncs, through the page
/// cache; what a crash can leave of it (here: a hole of zeros where a part was, and the
/// bytes of another object under its sidecar) is read back against its CRC-64s when it is
/// opened from disk, discarded, and fetched again. An intact one is served as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_entry_finalized_without_syncs_is_checked_when_opened_from_disk() {
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let s = MemoryStore::new();
    let d = data(3 * PS as usize + 5, 41);
    let m = s.put("obj", d.clone());
    let fill = || async {
        let cache = open(dir.path(), &s, cfg(dir.path()));
        let h = cache.object(&m).unwrap();
        assert!(h.read(0, 1 << 30).await.unwrap() == d);
        wait_finalized(&h).await;
        let odirect = cache
            .cache()
            .write_stats()
            .odirect_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            odirect, 0,
            "a small entry's parts go through the page cache"
        );
        drop(h);
        drop(cache);
        drop(lock_dir(dir.path()).unwrap());
    };
    let done = entry_file(dir.path(), "obj", "done");
    let other = data(d.len(), 42);
    type Damage<'a> = (&'static str, Box<dyn Fn(&Path) + 'a>);
    let damage: [Damage; 2] = [
        (
            "a hole where part 1 was",
            Box::new(|p: &Path| {
                let f = fs::OpenOptions::new().write(true).open(p).unwrap();
                std::os::unix::fs::FileExt::write_all_at(&f, &vec![0; PS as usize], PS).unwrap();
            }),
        ),
        (
            "another object's bytes",
            Box::new(|p: &Path| fs::write(p, &other).unwrap()),
        ),
    ];
    for (what, f) in damage {
        fill().await;
        assert!(done.exists(), "{what}: finalized");
        f(&done);
        s.reset_counters();
        let cache = open(dir.path(), &s, cfg(dir.path()));
        let h = cache.object(&m).unwrap();
        assert!(
            h.read(0, 1 << 30).await.unwrap() == d,
            "{what}: exact bytes"
        );
        assert!(
            !s.counters().ranges_of("obj").is_empty(),
            "{what}: fetched again, not served from the damaged file"
        );
        wait_finalized(&h).await;
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut h.finalized_file().unwrap(), &mut all).unwrap();
        assert!(all == d, "{what}: the new finalized file holds the object");
        drop(h);
        drop(cache);
        drop(lock_dir(dir.path()).unwrap());
    }
    // Intact: opened from disk, checked, and served without a request.
    s.reset_counters();
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    assert!(h.finalized_file().is_some());
    assert!(h.read(0, 1 << 30).await.unwrap() == d);
    assert!(s.counters().ranges_of("obj").is_empty());
}

/// The free-space floor: on a 32 MiB tmpfs with a 20 MiB floor, a 24 MiB object is read
/// correctly while the cache leaves at least the floor free (less the parts whose room
/// was checked at the same moment, `jobs` at most).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_space_floor_is_kept() {
    let Some(dir) = Tmpfs::mount("size=32m") else {
        return;
    };
    let s = MemoryStore::new();
    let d = data(24 << 20, 34);
    let m = s.put("obj", d.clone());
    let mut c = cfg(dir.path());
    c.min_free_bytes = 20 << 20;
    let jobs = c.jobs as u64;
    let cache = open(dir.path(), &s, c);
    let h = cache.object(&m).unwrap();
    let mut off = 0;
    while off < d.len() {
        let got = h.read(off as u64, 1 << 20).await.unwrap();
        assert!(got[..] == d[off..off + got.len()], "at {off}");
        off += got.len();
    }
    cache.flush();
    let free = free_bytes(dir.path()).unwrap();
    let cached = h.entry().present_bytes();
    eprintln!(
        "free {free} bytes (floor {}), {cached} bytes cached",
        20 << 20
    );
    assert!(
        free + jobs * PS >= 20 << 20,
        "free {free} is below the floor"
    );
    assert!(cached > 0, "the room above the floor was used");
    assert!(cached < d.len() as u64, "the floor stopped caching");
    // Reading again is still right (cached parts from disk, the rest fetched again).
    assert!(h.read(0, d.len()).await.unwrap()[..] == d[..]);
}

/// A read needs only its own bytes of a part: it is answered as soon as they arrived, while
/// the rest of the part is still on its way (here: stalled for 4 s after the first 64 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_answered_before_its_whole_part_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(4 * PS as usize, 35);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    s.stall_bodies(64 << 10, Duration::from_secs(4));
    let t = std::time::Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(3), h.read(1000, 4096))
        .await
        .expect("the read waited for the whole part")
        .unwrap();
    assert_eq!(&got[..], &d[1000..5096]);
    eprintln!("answered after {:?}", t.elapsed());
    // A read past what has arrived waits; once the stall ends the part completes and is
    // cached as usual, from the same single request.
    s.clear_faults();
    assert_eq!(
        &h.read(0, PS as usize).await.unwrap()[..],
        &d[..PS as usize]
    );
    assert_eq!(s.counters().ranges_of("obj")[0], part(0));
}

/// A random read deep inside a missing part is answered from a request that starts at its
/// page, not after the part's head has arrived (each body stalls for 4 s after 64 KiB, so
/// waiting for the head times out); the head follows in a second request, and the part is
/// cached with the right CRC-64 (finalizing checks the parts' CRCs against the object's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_random_read_deep_in_a_part_gets_its_bytes_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(3 * MIB as usize, 36);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, mib_parts(dir.path()));
    let h = cache.object(&m).unwrap();
    s.stall_bodies(64 << 10, Duration::from_secs(4));
    let at = MIB + 600 * 1024 + 10;
    let got = tokio::time::timeout(Duration::from_secs(3), h.read(at, 4096))
        .await
        .expect("the random read waited for the head of its part")
        .unwrap();
    assert_eq!(&got[..], &d[at as usize..at as usize + 4096]);
    s.clear_faults();
    wait_present(&h, 1).await;
    let page = MIB + 600 * 1024;
    assert_eq!(s.counters().ranges_of("obj"), [page..2 * MIB, MIB..page]);
    // Near the start of a part (under SPLIT_MIN) a random read takes the part in order.
    h.read(2 * MIB + 4096, 4096).await.unwrap();
    assert_eq!(s.counters().ranges_of("obj")[2], 2 * MIB..3 * MIB);
    assert_eq!(
        &h.read(MIB, MIB as usize).await.unwrap()[..],
        &d[MIB as usize..2 * MIB as usize]
    );
    h.fetch_all().await.unwrap();
    wait_finalized(&h).await;
    assert_eq!(std::fs::read(&h.entry().paths.done).unwrap(), d);
}

/// A cache shut down while a part is still arriving (its reader was answered early) lets
/// go of its directory for good: the fetch ends without writing the part or a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_after_the_cache_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(4 * PS as usize, 36);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    // Stalled past the 1 s batch interval: a write after the drop would be due a flush.
    s.stall_bodies(64 << 10, Duration::from_millis(1200));
    assert_eq!(&h.read(0, 10).await.unwrap()[..], &d[..10]);
    drop(h);
    drop(cache);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(s.counters().ranges_of("obj").contains(&part(0)));
    for ext in ["ckpt", "done"] {
        assert!(
            !entry_file(dir.path(), "obj", ext).exists(),
            "{ext} written"
        );
    }
}

/// Stress for the rule that the data file is read only for parts it holds: a cache disk
/// with no room (parts live only in a small resident set that keeps dropping them), four
/// sequential readers with read-ahead racing over one object. Every byte must be right;
/// a part dropped from memory between a read's planning and its assembly used to be
/// read from the file's hole (zeros) under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parts_only_in_memory_are_never_read_from_the_file() {
    let Some(dir) = Tmpfs::mount("size=64k") else {
        return;
    };
    let s = MemoryStore::new();
    let d = Arc::new(data(32 * PS as usize, 37));
    let m = s.put("obj", d.to_vec());
    let mut c = cfg(dir.path());
    c.resident_bytes = 2 * PS;
    let cache = open(dir.path(), &s, c);
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let h = cache.object(&m).unwrap();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..3u64 {
                let mut off = (t * 7 + round * 3) * PS / 2 % (d.len() as u64);
                while off < d.len() as u64 {
                    let got = h.read(off, 96 << 10).await.unwrap();
                    let o = off as usize;
                    assert!(
                        got[..] == d[o..o + got.len()],
                        "reader {t} round {round} at {off}"
                    );
                    off += got.len() as u64;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// `read_now`, the FUSE thread's path: a cold read starts its fetch and is left to
/// `read_later`; bytes already in memory or in the data file are answered at once, with no
/// new request. (Current-thread runtime: the fetch cannot complete before `read_now`
/// returns, so the first answer must be `Wait`.)
#[tokio::test]
async fn read_now_answers_at_once_only_what_is_at_hand() {
    use crate::fetch::ReadNow;
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let d = data(4 * PS as usize, 9);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, cfg(dir.path()));
    let h = cache.object(&m).unwrap();
    let want = |a: u64, n: usize| d[a as usize..a as usize + n].to_vec();

    let Ok(ReadNow::Wait(pending)) = h.read_now(PS + 5, 100) else {
        panic!("a cold read was answered without waiting for its fetch");
    };
    assert_eq!(&h.read_later(pending).await.unwrap()[..], want(PS + 5, 100));
    // The same part again (other random readers), from memory or the data file: no
    // waiting, no request.
    for _ in 0..2 {
        let h = cache.object(&m).unwrap();
        let Ok(ReadNow::Ready(b)) = h.read_now(PS + 300, 1000) else {
            panic!("a read of a fetched part waited");
        };
        assert_eq!(&b[..], want(PS + 300, 1000));
        wait_present(&h, 1).await;
    }
    assert_eq!(s.counters().ranges_of("obj"), [part(1)]);
    // A read reaching into a part not fetched yet waits again.
    assert!(matches!(h.read_now(2 * PS - 10, 20), Ok(ReadNow::Wait(_))));
}

/// The defaults of a mount, in `dir`.
fn mount_defaults(dir: &Path) -> CacheConfig {
    CacheConfig {
        dir: dir.to_path_buf(),
        min_free_bytes: 0,
        ..CacheConfig::default()
    }
}

/// Wait until the store serves no body (read-ahead started by reads already answered).
async fn wait_bodies_done(s: &MemoryStore) {
    for _ in 0..3000 {
        if s.counters().open_bodies == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} bodies still open", s.counters().open_bodies);
}

/// 4 KiB-aligned offsets of 4 KiB blocks of an object of `size`, from a fixed LCG.
fn random_blocks(size: u64, n: usize, mut x: u64) -> Vec<u64> {
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((x >> 33) % (size / 4096)) * 4096
        })
        .collect()
}

/// Issue 14: a random 4 KiB read fetches one 256 KiB cache unit (64x), not a whole
/// request-sized part (an 8 MiB part was 1,405x over 100 reads of a 1 GiB object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_small_reads_fetch_one_cache_unit_each() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let size = 64u64 << 20;
    let d = data(size as usize, 30);
    let m = s.put("obj", d.clone());
    let cache = open(dir.path(), &s, mount_defaults(dir.path()));
    let h = cache.object(&m).unwrap();
    let offsets = random_blocks(size, 100, 7);
    for &off in &offsets {
        let got = h.read(off, 4096).await.unwrap();
        assert_eq!(&got[..], &d[off as usize..off as usize + 4096]);
    }
    wait_bodies_done(&s).await;
    let c = s.counters();
    let unit = CacheConfig::default().part_size;
    assert!(
        c.ranges.iter().all(|(_, r)| r.end - r.start <= unit),
        "{:?}",
        c.ranges
    );
    let per_byte = c.bytes_served as f64 / (offsets.len() * 4096) as f64;
    eprintln!(
        "100 random 4 KiB reads: {} GETs, {per_byte:.1} bytes fetched per byte read",
        c.gets
    );
    assert!(per_byte <= 64.0, "{per_byte} bytes fetched per byte read");
}

/// Issue 14: a sequential reader's first requests are small (a reader that stops early
/// wastes little), then grow to `min_request_bytes` with many in flight at once (an
/// object store's per-connection rate times requests in flight is what a reader gets),
/// and every byte is fetched once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_reader_starts_small_then_keeps_many_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let size = 96u64 << 20;
    let d = data(size as usize, 31);
    let m = s.put("obj", d.clone());
    let defaults = mount_defaults(dir.path());
    let cache = open(dir.path(), &s, defaults.clone());
    // A first byte after 20 ms, as from an object store.
    s.stall_bodies(0, Duration::from_millis(20));

    // A reader that stops after 1 MiB (128 KiB reads, as the kernel sends them).
    let h = cache.object(&m).unwrap();
    for off in (0..MIB).step_by(128 << 10) {
        h.read(off, 128 << 10).await.unwrap();
    }
    wait_bodies_done(&s).await;
    let c = s.counters();
    let first = &c.ranges[0].1;
    assert!(first.end - first.start <= MIB, "first request {first:?}");
    assert!(
        c.bytes_served <= 4 * MIB,
        "stopped after 1 MiB: {} fetched",
        c.bytes_served
    );
    drop(h);

    // A reader of the whole object, much faster than the store (1 MiB reads, 300 ms to
    // each first byte): the window fills with requests in flight (30-32 seen), not with
    // parts waiting for their reader.
    s.stall_bodies(0, Duration::from_millis(300));
    let h = cache.object(&m).unwrap();
    let mut off = 0;
    while off < size {
        let got = h.read(off, 1 << 20).await.unwrap();
        assert_eq!(&got[..], &d[off as usize..off as usize + got.len()]);
        off += got.len() as u64;
    }
    wait_bodies_done(&s).await;
    let c = s.counters();
    let largest = c.ranges.iter().map(|(_, r)| r.end - r.start).max().unwrap();
    eprintln!(
        "sequential 96 MiB: {} GETs, largest {largest}, at most {} in flight, {} bytes fetched",
        c.gets, c.max_open_bodies, c.bytes_served
    );
    assert_eq!(largest, defaults.min_request_bytes);
    assert_eq!(c.bytes_served, size, "every byte once");
    // 48 MiB window / 2 MiB requests: up to 24 at once; a loaded box reaches fewer.
    assert!(
        c.max_open_bodies >= 12,
        "{} requests in flight at most",
        c.max_open_bodies
    );
}

/// Issue 14: eight readers of one object at once (GPU ranks loading one model file)
/// fetch each byte once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_readers_of_one_object_fetch_each_byte_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let size = 48u64 << 20;
    let d = Arc::new(data(size as usize, 32));
    let m = s.put("obj", (*d).clone());
    let cache = open(dir.path(), &s, mount_defaults(dir.path()));
    s.stall_bodies(0, Duration::from_millis(5));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let h = cache.object(&m).unwrap();
            let d = d.clone();
            tokio::spawn(async move {
                let mut off = 0;
                while off < size {
                    let got = h.read(off, 1 << 20).await.unwrap();
                    assert_eq!(&got[..], &d[off as usize..off as usize + got.len()]);
                    off += got.len() as u64;
                }
            })
        })
        .collect();
    for r in readers {
        r.await.unwrap();
    }
    wait_bodies_done(&s).await;
    assert_eq!(s.counters().bytes_served, size, "8 readers, 1.0x");
}

/// Issue 14: concurrency follows the readers. 48 readers of small objects each wait on
/// their own whole-object GET, all in flight together (a fixed 8 capped it), one GET per
/// object and no HEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_small_objects_have_their_gets_in_flight_together() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let metas: Vec<_> = (0..48)
        .map(|i| s.put(&format!("small/{i}"), data(128 << 10, i as u8)))
        .collect();
    let cache = open(dir.path(), &s, mount_defaults(dir.path()));
    s.stall_bodies(0, Duration::from_millis(300));
    let readers: Vec<_> = metas
        .iter()
        .map(|m| {
            let h = cache.object(m).unwrap();
            tokio::spawn(async move { h.read(0, 128 << 10).await.unwrap().len() })
        })
        .collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), 128 << 10);
    }
    let c = s.counters();
    assert_eq!((c.gets, c.heads), (48, 0));
    assert!(
        c.max_open_bodies >= 40,
        "{} GETs in flight at most",
        c.max_open_bodies
    );
}

/// Issue 14 changed the default part (cache unit) from 8 MiB to 256 KiB. An entry
/// checkpointed with 8 MiB parts (same format, version 1) keeps its part size and resumes:
/// the parts it vouches for are not fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_checkpointed_with_8_mib_parts_resumes_under_the_new_unit() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let size = 24u64 << 20;
    let d = data(size as usize, 33);
    let m = s.put("obj", d.clone());
    {
        let mut old = mount_defaults(dir.path());
        old.part_size = 8 << 20;
        old.min_request_bytes = 8 << 20;
        let cache = open(dir.path(), &s, old);
        let h = cache.object(&m).unwrap();
        h.read((8 << 20) + 5, 10).await.unwrap(); // part 1 of 3, random
        wait_present(&h, 1).await;
    }
    drop(lock_dir(dir.path()).unwrap());
    s.reset_counters();
    let cache = open(dir.path(), &s, mount_defaults(dir.path()));
    let h = cache.object(&m).unwrap();
    assert_eq!(h.entry().part_size, 8 << 20);
    assert_eq!(&h.read(0, size as usize).await.unwrap()[..], &d[..]);
    wait_bodies_done(&s).await;
    let r = s.counters().ranges_of("obj");
    assert!(
        r.iter().all(|r| r.end <= 8 << 20 || r.start >= 16 << 20),
        "part 1 fetched again: {r:?}"
    );
    wait_finalized(&h).await;
}

/// Several sequential readers of different objects share one memory budget: the bytes of
/// part data reserved never exceed it (demand requests are split to fit, read-ahead waits),
/// every reader gets its exact bytes, and every reservation comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_readers_stay_within_the_memory_budget_and_get_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    const LIMIT: u64 = 6 * PS;
    let c = CacheConfig {
        memory_limit: LIMIT,
        max_readahead: 8 * PS,
        resident_bytes: 8 * PS,
        min_request_bytes: 2 * PS,
        jobs: 8,
        ..cfg(dir.path())
    };
    let cache = open(dir.path(), &s, c);
    let mut tasks = Vec::new();
    for r in 0..8u8 {
        let d = data((40 * PS) as usize + 1234, r);
        let meta = s.put(&format!("obj{r}"), d.clone());
        let h = cache.object(&meta).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut off = 0u64;
            // Reads spanning parts (3 parts' worth), as the kernel's 1 MiB reads do.
            while off < d.len() as u64 {
                let b = h.read(off, (3 * PS) as usize).await.unwrap();
                assert!(!b.is_empty());
                off += b.len() as u64;
                got.extend_from_slice(&b);
            }
            assert!(got == d, "reader {r} got other bytes");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mem = cache.engine().memory();
    assert!(mem.peak() > 0, "the budget saw the fetches");
    assert!(
        mem.peak() <= LIMIT,
        "peak {} over the limit {LIMIT}",
        mem.peak()
    );
    // Every reservation comes back once the writes are done and the resident set empties.
    assert!(cache.engine().wait_for_writes(Duration::from_secs(30)));
    while cache.engine().make_room_for_test() {}
    assert_eq!(mem.used(), 0, "reservations leaked");
}
