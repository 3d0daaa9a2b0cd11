//! The part cache on local disk: entries by (namespace, key), each holding one ETag of
//! its object, within a byte budget.
//!
//! Layout of a cache directory:
//! - `lock`: `flock`ed by the owning process; a second one gets [`CacheError::Locked`];
//! - `<hash>.data` + `<hash>.ckpt`: a partial entry (see [`entry`] and [`checkpoint`]);
//! - `<hash>.done` + `<hash>.meta`: a finalized entry, an ordinary complete file plus the
//!   identity (ETag, size, part CRCs) it was verified for.
//!
//! Disk trouble never fails a read: a part the disk refuses (ENOSPC, EIO, budget with
//! every entry in use) is handed to its readers from memory and not marked present, with
//! one warning; an object whose files cannot even be created gets a memory-only entry.
//! Nothing already cached is touched.
//!
//! The cache knows nothing of fetching: the fetcher sees it as the [`entry::EntryOwner`]
//! of the entries it fills (room for a part, a read, a dropped entry, a complete one).
//!
//! Lifetime: [`PartCache::flush_dirty`] records pending batches; its owner calls it every
//! `batch_interval` and after the last part writes, and dropping the cache records the
//! rest. A previous owner of the directory can hold the lock for a moment after its last
//! user let go (a flusher thread, an unmount recording its checkpoints), so
//! [`PartCache::open`] waits up to 5 s for the lock before reporting [`CacheError::Locked`].
//!
//! `<hash>` is the hex SHA-256 of `namespace \0 key`: one name per object, whatever its
//! ETag, so a changed object replaces its entry instead of leaving an orphan; the ETag lives
//! inside the checkpoint / sidecar and is compared on every open.
//!
//! Budget: `max_bytes` over allocated blocks (`st_blocks * 512`, not apparent size: sparse
//! data files cost only what was fetched) and a free-space floor (`statvfs`). When a part
//! would break either, whole entries are evicted least recently used first (the `lru`
//! crate), never one with open handles or fetches in flight (its `Arc` is shared). If
//! nothing can be evicted the part is served from memory and not cached. Accounting is
//! rebuilt at start-up by a `stat` of each file, without reading or wiping anything; the
//! LRU order starts from file modification times (finalized entries get their mtime touched
//! on open, so the order survives restarts).
//!
//! Defaults (see [`CacheConfig::default`]): 256 KiB parts, the cache's unit, sized for
//! random readers (issue 14); requests are sized apart by the fetcher (`fetch`'s module
//! comment: 1 MiB windows growing to 48 MiB, requests up to 2 MiB). Before, parts were
//! 8 MiB and each was one request, chosen by measurement on the dev box (2 shared cores,
//! load 5-11, so +-30 % noise; release build):
//!
//! - through the cache from MemoryStore (`cargo test --release --lib part_size_sweep --
//!   --ignored --nocapture`, 256 MiB sequential, jobs 8): 1 MiB 837, 4 MiB 867, 8 MiB 672,
//!   16 MiB 1001, 64 MiB 808 MiB/s: part size barely matters once latency is zero;
//! - `ossmount download` of 1 GiB from `ossmount serve`, jobs 8, seconds at 0 / 30 ms
//!   first-byte latency (`Faults { latency_ms }`, OSS's typical first byte): 1 MiB 4.4 / 5.8,
//!   4 MiB 3.8 / 4.5, 8 MiB 3.8 / 4.3, 16 MiB 4.2 / 2.7, 64 MiB 6.6 / 2.8. Small parts pay
//!   a round trip each *when each part is a request*; 64 MiB parts leave jobs idle at the
//!   tail without latency.
//! - but the cost of a random 4 KiB read was one part: 8 MiB, 1,405 bytes fetched per byte
//!   read over 100 reads of a 1 GiB object. With parts and requests apart, the round trips
//!   are the request's business and the part only sets what a random read moves: 256 KiB
//!   is at most 64x a 4 KiB read, and a request of 256 KiB costs one first byte plus 2.9 ms
//!   at 90 MB/s. Smaller would make the checkpoint bigger (8 bytes per present part: ~33 KB
//!   for a complete 1 GiB object at 256 KiB) and costs a channel, a buffer and a write per
//!   part. Downloads keep 8 MiB parts (`download.rs`): they have no random reader.

pub mod admin;
pub mod checkpoint;
pub mod entry;
pub mod partbuf;
pub mod private;
#[cfg(test)]
mod props;
pub mod state;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::store::ObjectMeta;
use checkpoint::{Identity, MAX_PART_SIZE, MIN_PART_SIZE};
use entry::{Dead, Entry, EntryOptions, EntryOwner, EntryPaths, Found, WriteStats};

/// `ossmount download`'s part (and request) size: 8 MiB, the flat middle of the part-size
/// sweep in this module's comment, among the SDKs' 6-10 MiB. A download reads every byte
/// in order, so it has no random reader to size parts for, unlike a mount.
pub const DOWNLOAD_PART_SIZE: u64 = 8 << 20;

/// `ossmount download`'s parallel requests: 8 x 8 MiB in flight; OSS serves ~100-200 MB/s
/// per connection on an internal endpoint, so 8 fill a 10 Gbit/s link.
pub const DOWNLOAD_JOBS: usize = 8;

/// Settings of one cache directory.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    pub part_size: u64,
    pub jobs: usize,
    /// Record present parts in the checkpoint after this many new bytes of parts...
    pub batch_bytes: u64,
    /// ...or after this long, whichever comes first.
    pub batch_interval: Duration,
    /// Objects up to this size are fetched whole, with one GET, on their first read.
    pub small_object_threshold: u64,
    /// Adjacent missing parts are coalesced into requests of at least this many bytes.
    pub min_request_bytes: u64,
    /// Largest read-ahead window of a sequential reader.
    pub max_readahead: u64,
    /// Fetched parts kept in memory for the readers about to ask for them.
    pub resident_bytes: u64,
    /// Bytes of part data the mount holds in memory at most, for all readers together:
    /// parts being received plus the resident set (`--memory-limit`, see `fetch/budget.rs`).
    pub memory_limit: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            dir: default_dir(),
            // 10 GiB: holds a few of the large objects this tool is for (VM images, BAMs,
            // model weights) without surprising a laptop; set --cache-size for more.
            max_bytes: 10 << 30,
            // 1 GiB floor: the cache never takes the last GiB of a disk from everyone else.
            min_free_bytes: 1 << 30,
            // 256 KiB: the cache unit, sized for random readers (see the module comment):
            // a random 4 KiB read fetches at most 64x its size. Requests are sized apart
            // (`min_request_bytes`, and a sequential reader's growing window in `fetch`).
            part_size: 256 << 10,
            // 64 requests in flight at most, for the whole mount: the readers decide how
            // many they need (64 threads each reading a small object wait on 64 GETs at
            // once; with 8, 2,000 x 128 KiB objects read by 16 threads over 20 ms of
            // latency got 0.33x of 16 plain HTTP clients). Read-ahead's share is bounded
            // by bytes (`max_readahead` / the request size: 24 requests of 2 MiB).
            jobs: 64,
            // 128 MiB or 1 s: one fdatasync + one checkpoint per batch (at 256 KiB parts,
            // up to ~33 KB for a complete 1 GiB object, 2.5e-4 of the data it vouches
            // for); a crash re-fetches at most one batch. Larger batches copy faster on a
            // disk whose cache flushes are slow (this VM: ~40 ms each, three per batch; a
            // cold 1 GiB cp on the oss-like link ran 390-397 MiB/s at 128 MiB, 427-463 at
            // 512 MiB), but the bench's kill -9 at half of a 256 MiB object then fetched
            // 1.64x its size in all (nothing recorded yet): resuming is what it is for.
            batch_bytes: 128 << 20,
            batch_interval: Duration::from_secs(1),
            // 16 MiB: below it a second request costs more (round trip, TLS, scheduling)
            // than the bytes it would save; the SDKs use 100 MiB for a whole-file download,
            // but a mount's random reader should not pay for 100 MiB to read 4 KiB.
            small_object_threshold: 16 << 20,
            // 2 MiB: the largest request of a sequential reader (its first ones are
            // smaller, see `fetch`). On an object-store link (first byte after ~20 ms,
            // ~90 MB/s per connection) a request of R bytes runs R / 90 MB/s + 20 ms, so
            // a window of W bytes in flight yields W / (R / 90 MB/s + 20 ms): with 2 MiB
            // requests the 48 MiB window gives 1.16 GB/s, more than OSS's 1 GB/s total,
            // where 8 MiB requests (6 in flight) gave 0.44 GB/s.
            min_request_bytes: 2 << 20,
            // 48 MiB (6 parts of 8 MiB): a sequential reader keeps 6 requests running,
            // 0.6-1.2 GB/s at OSS's 100-200 MB/s per connection (on loopback: the same
            // cold `cp` speed as 64 MiB). With `resident_bytes` it bounds the mount's
            // memory: 64/64 peaked at 120-139 MiB RSS in a cold 1 GiB `cp`, 48/48 at
            // 90-115 MiB.
            max_readahead: 48 << 20,
            // = the read-ahead window: a sequential reader's parts wait here from their
            // arrival until it reads them. Never smaller than the window (a fast network
            // would push parts out unread: with 16 MiB, 15 % of the mount's CPU went to
            // reading them back). Parts in flight plus parts waiting stay within the
            // window, so this does not add to one reader's peak. A part dropped from
            // memory costs a disk read, not a fetch.
            resident_bytes: 48 << 20,
            // 64 MiB: one sequential reader's whole window (48 MiB of read-ahead, kept
            // resident until read) plus 16 MiB for the reads that wait (a 1 MiB FUSE read
            // is 4 parts; a small object is fetched whole, up to 16 MiB) and the parts
            // being written. So one reader goes as fast as before, and several share one
            // 64 MiB instead of adding up (8 readers of 512 MiB objects peaked at 81-94 MiB
            // RSS before the budget). Measured figures: docs/mount.md, `--memory-limit`.
            memory_limit: 64 << 20,
        }
    }
}

/// The cache directory when none is given, for the mount and the cache commands alike:
/// `$XDG_CACHE_HOME/ossmount`, else `$HOME/.cache/ossmount`, else `/var/cache/ossmount`
/// (no HOME, or HOME is `/`: a mount from fstab at boot).
pub fn default_dir() -> PathBuf {
    default_dir_in(|name| std::env::var_os(name))
}

/// [`default_dir`] in the environment `var` describes.
fn default_dir_in(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    if let Some(x) = var("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("ossmount");
    }
    match var("HOME").filter(|v| !v.is_empty() && v != "/") {
        Some(h) => PathBuf::from(h).join(".cache").join("ossmount"),
        None => PathBuf::from("/var/cache/ossmount"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache directory {0} is in use by another ossmount process")]
    Locked(PathBuf),
    #[error("cache I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid cache configuration: {0}")]
    Config(String),
}

/// Validate a part size (the SDKs' bounds: 100 KiB to 5 GiB).
pub fn check_part_size(part_size: u64) -> Result<(), String> {
    if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        Ok(())
    } else {
        Err(format!(
            "part size {part_size} is out of range (100KiB to 5GiB)"
        ))
    }
}

struct Index {
    /// Entries with an open file: the map holds one `Arc`, so `strong_count > 1` means
    /// handles or fetches are using it (pinned).
    open: HashMap<String, Arc<Entry>>,
    /// Every entry on disk, least recently used last, with its allocated bytes.
    lru: LruCache<String, u64>,
    used: u64,
    over_budget_warned: bool,
}

/// Entries by (namespace, key), each for one ETag, within a byte budget.
pub struct PartCache {
    config: CacheConfig,
    namespace: String,
    index: Mutex<Index>,
    stats: Arc<WriteStats>,
    _lock: File,
}

/// Allocated bytes, mtime and the file names of each entry found in a cache directory.
fn scan(dir: &Path) -> io::Result<Vec<(String, u64, SystemTime)>> {
    let mut by_name: HashMap<String, (u64, SystemTime)> = HashMap::new();
    for de in fs::read_dir(dir)? {
        let de = de?;
        let fname = de.file_name().to_string_lossy().into_owned();
        if fname == "lock" {
            continue;
        }
        let Some((stem, _ext)) = fname.split_once('.') else {
            continue;
        };
        if stem.len() != 64 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if fname.ends_with(".tmp") {
            let _ = fs::remove_file(de.path());
            continue;
        }
        let Ok(m) = de.metadata() else { continue };
        let e = by_name
            .entry(stem.to_string())
            .or_insert((0, SystemTime::UNIX_EPOCH));
        e.0 += m.blocks() * 512;
        e.1 = e.1.max(m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
    }
    let mut v: Vec<_> = by_name.into_iter().map(|(k, (b, t))| (k, b, t)).collect();
    v.sort_by_key(|e| e.2);
    Ok(v)
}

fn paths_for(dir: &Path, name: &str) -> EntryPaths {
    EntryPaths {
        data: dir.join(format!("{name}.data")),
        ckpt: dir.join(format!("{name}.ckpt")),
        done: dir.join(format!("{name}.done")),
        meta: Some(dir.join(format!("{name}.meta"))),
    }
}

fn statvfs(dir: &Path) -> Option<libc::statvfs> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0).then_some(s)
}

/// Free bytes for unprivileged users on the filesystem of `dir`.
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    statvfs(dir).map(|s| s.f_bavail * s.f_frsize)
}

/// The free-space floor when none is given: 1 GiB (the default), or a tenth of the
/// filesystem holding `dir` when that is less, so a small cache filesystem (a 64 MiB tmpfs)
/// is still used instead of being all floor.
pub fn default_min_free(dir: &Path) -> u64 {
    let floor = CacheConfig::default().min_free_bytes;
    dir.ancestors()
        .find(|p| p.exists())
        .and_then(statvfs)
        .map_or(floor, |s| floor.min(s.f_blocks * s.f_frsize / 10))
}

/// Errors that mean "this disk cannot take more" rather than a bug or a permission problem.
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EIO) | Some(libc::EROFS)
    )
}

/// Take the directory's lock file, or say who has it.
pub(crate) fn lock_dir(dir: &Path) -> Result<File, CacheError> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(private::FILE_MODE)
        .open(dir.join("lock"))?;
    // A previous owner may be finishing: in this process, the flusher thread or a finalize
    // task holding the cache for a few milliseconds after its last user dropped it; in
    // another, a mount just unmounted, which waits for its part writes and flushes the
    // checkpoints before it exits (1.3-1.7 s measured after a 100 MiB read, debug build),
    // so `umount; mount` works. Wait up to 5 s before calling the directory taken; a
    // second mount of a live one still fails within seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e.into());
        }
        if std::time::Instant::now() >= deadline {
            return Err(CacheError::Locked(dir.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl PartCache {
    /// Open (and lock) the cache directory, rebuilding the accounting from what is there.
    /// `namespace` identifies (endpoint, bucket), see `StoreConfig::namespace`.
    pub fn open(config: CacheConfig, namespace: String) -> Result<Arc<Self>, CacheError> {
        check_part_size(config.part_size).map_err(CacheError::Config)?;
        private::create_cache_dir(&config.dir)?;
        let lock = lock_dir(&config.dir)?;
        let mut lru = LruCache::unbounded();
        let mut used = 0;
        for (name, bytes, _) in scan(&config.dir)? {
            used += bytes;
            lru.put(name, bytes);
        }
        tracing::debug!(
            "cache {}: {} entries, {used} bytes",
            config.dir.display(),
            lru.len()
        );
        Ok(Arc::new(PartCache {
            config,
            namespace,
            index: Mutex::new(Index {
                open: HashMap::new(),
                lru,
                used,
                over_budget_warned: false,
            }),
            stats: Arc::new(WriteStats::default()),
            _lock: lock,
        }))
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Entry file name for a key.
    pub fn entry_name(namespace: &str, key: &str) -> String {
        let mut h = Sha256::new();
        h.update(namespace.as_bytes());
        h.update([0u8]);
        h.update(key.as_bytes());
        hex::encode(h.finalize())
    }

    /// The entry of one version of one object; it is never evicted while a user holds
    /// it. An entry for another ETag or size of the same key is dropped.
    pub fn open_entry(&self, meta: &ObjectMeta) -> Result<Arc<Entry>, CacheError> {
        let entry = self.find_or_create(meta)?;
        // Checked outside the index lock: reading a small object back takes a while on a
        // cold disk, and other objects' opens need not wait for it.
        if entry.verify_unsynced() {
            return Ok(entry);
        }
        // Damaged: its files go, and the object is fetched again into a new entry.
        self.drop_entry(&entry, Dead::Corrupt);
        self.find_or_create(meta)
    }

    /// The entry of `meta`'s version: the open one, else from its files on disk, else new.
    fn find_or_create(&self, meta: &ObjectMeta) -> Result<Arc<Entry>, CacheError> {
        let name = Self::entry_name(&self.namespace, &meta.key);
        let identity = Identity::of(&self.namespace, meta);
        let mut idx = self.index.lock();
        if let Some(e) = idx.open.get(&name).cloned() {
            if e.identity.etag == meta.etag && e.identity.size == meta.size && e.dead().is_none() {
                idx.lru.promote(&name);
                return Ok(e);
            }
            if e.grows_into(&identity) && e.dead().is_none() && !e.memory_only {
                // An appendable object grew: handles on the old length keep reading it
                // (its bytes never change); the new entry takes its files and parts over.
                e.detach();
            } else {
                // Another version: handles on it get ESTALE, its files make room for this one.
                e.kill(Dead::Stale);
            }
            idx.open.remove(&name);
        }
        let opts = EntryOptions {
            part_size: self.config.part_size,
            batch_bytes: self.config.batch_bytes,
            batch_interval: self.config.batch_interval,
        };
        let paths = paths_for(&self.config.dir, &name);
        let (entry, found) =
            match Entry::open(paths.clone(), identity.clone(), &opts, self.stats.clone()) {
                Ok(v) => v,
                Err(e) if is_disk_full(&e) => {
                    // Serve from memory; the next open of the object tries the disk again.
                    tracing::warn!(
                        "cache {} cannot hold {} ({e}); reading it without caching",
                        self.config.dir.display(),
                        meta.key
                    );
                    let entry = Entry::memory_only(paths, identity, &opts, self.stats.clone())?;
                    return Ok(Arc::new(entry));
                }
                Err(e) => return Err(e.into()),
            };
        if found == Found::Finalized {
            if let Ok(f) = File::options().write(true).open(&entry.paths.done) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
        tracing::debug!("cache entry {name} for {}: {found:?}", meta.key);
        let entry = Arc::new(entry);
        let bytes = entry.allocated_bytes();
        let old = idx.lru.put(name.clone(), bytes).unwrap_or(0);
        idx.used = idx.used + bytes - old.min(idx.used + bytes);
        idx.open.insert(name, entry.clone());
        self.close_idle(&mut idx);
        drop(idx);
        // Complete already (zero-byte object, or finished before a crash): finalize now.
        if found != Found::Finalized && entry.present_count() == entry.n_parts {
            self.finalize_entry(&entry);
        }
        Ok(entry)
    }

    /// Keep at most this many idle entries open (each holds a file descriptor).
    const MAX_IDLE_OPEN: usize = 256;

    fn close_idle(&self, idx: &mut Index) {
        if idx.open.len() <= Self::MAX_IDLE_OPEN {
            return;
        }
        let idle: Vec<String> = idx
            .open
            .iter()
            .filter(|(_, e)| Arc::strong_count(e) == 1)
            .map(|(k, _)| k.clone())
            .collect();
        for name in idle.into_iter().take(idx.open.len() - Self::MAX_IDLE_OPEN) {
            if let Some(e) = idx.open.remove(&name) {
                let _ = e.flush();
            }
        }
    }

    /// Re-measure an entry's allocated size (after a flush or finalize).
    fn remeasure(&self, entry: &Entry) {
        let name = Self::entry_name(&self.namespace, &entry.identity.key);
        let now = entry.allocated_bytes();
        let mut idx = self.index.lock();
        if idx
            .open
            .get(&name)
            .is_some_and(|e| std::ptr::eq(&**e, entry))
        {
            if let Some(b) = idx.lru.peek_mut(&name) {
                let old = std::mem::replace(b, now);
                idx.used = (idx.used + now).saturating_sub(old);
            }
        }
    }

    /// Record the pending parts of every open entry (checkpoints). Its owner calls this
    /// every `batch_interval`, and after the last part writes when shutting down.
    pub fn flush_dirty(&self) {
        let dirty: Vec<Arc<Entry>> = self
            .index
            .lock()
            .open
            .values()
            .filter(|e| e.is_dirty())
            .cloned()
            .collect();
        for e in dirty {
            if e.flush_logged() {
                self.remeasure(&e);
            }
        }
    }

    /// Allocated bytes the cache accounts for.
    pub fn used_bytes(&self) -> u64 {
        self.index.lock().used
    }

    /// Data and checkpoint bytes written so far (for the durability-cost ratio).
    pub fn write_stats(&self) -> &WriteStats {
        &self.stats
    }
}

/// What the fetcher sees of the cache.
impl EntryOwner for PartCache {
    /// Move an entry to the front of the LRU order.
    fn touch(&self, entry: &Entry) {
        let name = Self::entry_name(&self.namespace, &entry.identity.key);
        self.index.lock().lru.promote(&name);
    }

    /// Drop `entry` (if it is still the current one for its key) and remove its files.
    fn drop_entry(&self, entry: &Arc<Entry>, why: Dead) {
        entry.kill(why);
        let name = Self::entry_name(&self.namespace, &entry.identity.key);
        let mut idx = self.index.lock();
        if idx.open.get(&name).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            idx.open.remove(&name);
            entry.paths.remove_all();
            if let Some(b) = idx.lru.pop(&name) {
                idx.used -= b.min(idx.used);
            }
        }
    }

    /// Room for `bytes` more of `entry`? Evicts unpinned entries, least recently used
    /// first, until the budget and the free-space floor allow it. False: serve from memory.
    fn reserve(&self, entry: &Arc<Entry>, bytes: u64) -> bool {
        let name = Self::entry_name(&self.namespace, &entry.identity.key);
        let mut idx = self.index.lock();
        loop {
            let over_budget = idx.used + bytes > self.config.max_bytes;
            let low_space = self.config.min_free_bytes > 0
                && free_bytes(&self.config.dir)
                    .is_some_and(|f| f < self.config.min_free_bytes + bytes);
            if !over_budget && !low_space {
                break;
            }
            let victim = idx
                .lru
                .iter()
                .rev()
                .map(|(k, _)| k)
                .find(|k| **k != name && idx.open.get(*k).is_none_or(|e| Arc::strong_count(e) == 1))
                .cloned();
            let Some(victim) = victim else {
                if !idx.over_budget_warned {
                    idx.over_budget_warned = true;
                    tracing::warn!(
                        "cache {} is full ({} bytes used, limit {}, free-space floor {}) and \
                         every entry is in use; serving from memory without caching",
                        self.config.dir.display(),
                        idx.used,
                        self.config.max_bytes,
                        self.config.min_free_bytes
                    );
                }
                return false;
            };
            tracing::debug!("evicting cache entry {victim}");
            crate::metrics::METRICS.evictions.inc();
            if let Some(e) = idx.open.remove(&victim) {
                e.kill(Dead::Stale);
            }
            paths_for(&self.config.dir, &victim).remove_all();
            if let Some(b) = idx.lru.pop(&victim) {
                idx.used -= b.min(idx.used);
            }
        }
        idx.used += bytes;
        match idx.lru.get_mut(&name) {
            Some(b) => *b += bytes,
            None => {
                idx.lru.put(name, bytes);
            }
        }
        true
    }

    /// Verify and finalize a complete entry; a CRC mismatch drops it.
    fn finalize_entry(&self, entry: &Arc<Entry>) {
        // No checkpoint first: finalize records every part in the sidecar. If it fails, the
        // parts stay pending and the next flush records them; a crash meanwhile loses at
        // most the batch, as anywhere else (this flush cost a small object 3 more syncs).
        match entry.finalize(entry.identity.crc64) {
            Ok(_) => {
                crate::metrics::METRICS.finalizations.inc();
                self.remeasure(entry)
            }
            Err(entry::FinalizeError::Mismatch { .. }) => {
                crate::metrics::METRICS.crc64_object_failures.inc();
                self.drop_entry(entry, Dead::Corrupt)
            }
            // Dead: dropped meanwhile. Incomplete: a part from an earlier process failed its
            // CRC-64 and was dropped (logged); the next read of it fetches it again.
            Err(entry::FinalizeError::Dead(_) | entry::FinalizeError::Incomplete) => {}
            Err(e) => tracing::warn!("cannot finalize cache entry of {}: {e}", entry.identity.key),
        }
    }
}

impl Drop for PartCache {
    /// Records what is pending (normally nothing: the owner flushed after the last write).
    fn drop(&mut self) {
        self.flush_dirty();
    }
}

#[cfg(test)]
mod tests;
