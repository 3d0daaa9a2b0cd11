//! Reading an object through the part cache: which parts a read needs, which of them to
//! fetch, and how.
//!
//! - Missing parts are fetched with ranged GETs carrying `If-Match: <etag>`; adjacent
//!   missing parts share one request up to `min_request_bytes` (with the default 8 MiB
//!   parts that is one part per request, which keeps `jobs` requests busy; with small parts
//!   it stops request overhead from dominating). An object at or below
//!   `small_object_threshold` is fetched whole by its first read, in one GET.
//! - Every part being fetched has one `watch` channel in the engine's `inflight` map (by
//!   entry and part): a second reader of the same part waits on it instead of fetching again.
//! - Requests run as tasks holding one of `jobs` semaphore permits, so they complete even if
//!   the reader that started them goes away, and the store sees at most `jobs` at a time.
//! - Each part is received into one page-aligned buffer (its CRC-64 computed on the way).
//!   A reader waiting for it is answered as soon as the bytes it asked for have arrived
//!   (`PartData::Receiving`): the first read of a cold object waits for its first KiB, not
//!   for a whole 8 MiB part (about 10 ms on loopback). Complete, the part goes to its
//!   waiting readers at once, as [`Bytes`] slices of that buffer,
//!   and is written to the data file with `O_DIRECT` on a blocking thread; it counts as
//!   present (and is recorded by the next checkpoint) once written. A disk that refuses
//!   the write (full, EIO, no budget) only means the part stays in memory.
//! - Recently received parts stay in memory (the `Resident` set, `resident_bytes`), so the
//!   sequential reader that asked for them moments ago is answered without reading back
//!   the file; everything else is read from the data file (`pread`). Measured on a cold
//!   1 GiB `cp` through the mount: 2.0-2.5 CPU s/GiB with per-chunk `pwrite` + `pread`,
//!   1.0-1.2 with this (`perf`: the page-cache copies, writeback and zeroed read buffers
//!   are gone; what is left is the socket copy, the copy into the part buffer and the
//!   kernel's copy of each FUSE reply).
//! - Per handle, sequential reads grow a read-ahead window (1, 2, 4, ... parts, up to
//!   `max_readahead` bytes); a non-sequential read resets it, so random readers fetch only
//!   the parts they touch. All readers together get no more read-ahead than the resident
//!   set can hold until they read it ([`Engine::ahead_end`]).
//! - A non-sequential read deep inside a missing part (at least [`SPLIT_MIN`] into it) has
//!   the part fetched tail first: one GET from the read's page to the part's end, then one
//!   for the head, into the same buffer. The reader waits for its own bytes, not for
//!   megabytes before them; the part is cached whole as usual (CRC-64s of the two pieces
//!   combined).
//! - 412 (the object changed) kills the entry; every waiter and every later read of the
//!   handle gets [`ReadError::Stale`], and no byte of another version is ever mixed in
//!   because all requests of an entry carry its ETag.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use parking_lot::{Condvar, Mutex};
use tokio::sync::{watch, Semaphore};
use tracing::warn;

use crate::cache::entry::{Dead, Entry, EntryOwner, Unbudgeted};
use crate::cache::partbuf::{PartBuf, PartPool, PartReader, ALIGN};
use crate::cache::{CacheConfig, CacheError, PartCache};
use crate::crc64;
use crate::store::{ObjectMeta, ObjectStore, StoreError};

/// Settings of an [`Engine`]; see [`crate::cache::CacheConfig`] for what each is for.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub jobs: usize,
    /// The usual part size (buffers of this size are recycled).
    pub part_size: u64,
    pub min_request_bytes: u64,
    pub small_object_threshold: u64,
    pub max_readahead: u64,
    /// Bytes of fetched parts kept in memory for readers (see [`Resident`]).
    pub resident_bytes: u64,
    /// Finalize an entry (verify, rename to done) as soon as its last part lands.
    pub auto_finalize: bool,
}

/// How a part reaches its readers. A part's channel says [`Self::Receiving`] while its
/// bytes arrive (a reader takes what it needs as soon as that has arrived), then
/// [`Self::Writing`] (complete), then [`Self::OnDisk`] or [`Self::Unwritten`].
#[derive(Clone, Debug)]
pub enum PartData {
    /// Being received: the bytes so far can be read.
    Receiving(PartReader),
    /// Received and being written to the data file.
    Writing(Bytes),
    /// In the data file (and marked present).
    OnDisk,
    /// Only in memory: the cache could not write it (disk full, budget exhausted).
    Unwritten(Bytes),
}

impl PartData {
    /// The bytes, when the part is (also) in memory.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            PartData::Writing(b) | PartData::Unwritten(b) => Some(b),
            PartData::OnDisk | PartData::Receiving(_) => None,
        }
    }
}

/// Why a fetch of a part failed, cloneable so every waiter gets it.
#[derive(Clone, Debug)]
pub enum PartFail {
    Stale,
    Store(Arc<StoreError>),
    Io(io::ErrorKind, String),
}

pub type PartResult = Result<PartData, PartFail>;
pub type PartWatch = watch::Receiver<Option<PartResult>>;

/// A part of an entry: (`Entry::uid`, part index).
type PartKey = (u64, usize);

/// The channel a part's fetch reports on.
type PartTx = watch::Sender<Option<PartResult>>;
/// A part to fetch: its index, its channel, and whether the cache gave it room on disk.
type Fetch = (usize, PartTx, bool);

/// The shared fetch machinery of one cache (or one download).
pub struct Engine {
    pub store: Arc<dyn ObjectStore>,
    pub sem: Arc<Semaphore>,
    pub jobs: usize,
    pub min_request_bytes: u64,
    pub small_object_threshold: u64,
    pub max_readahead: u64,
    pub auto_finalize: bool,
    /// The owner of the entries (their cache), the engine's one view of it: weak, so that
    /// fetches still running do not keep a cache directory locked after its user let go.
    /// Gone, or none (a download): [`Unbudgeted`].
    owner: Weak<dyn EntryOwner>,
    /// Parts being fetched: every reader of one part waits on the same channel. A part
    /// leaves once it is in the data file (after the entry counts it present), in memory
    /// only, or failed.
    inflight: Mutex<HashMap<PartKey, PartWatch>>,
    /// Entries the cache refused room for their last part, so read-ahead shrinks while
    /// their parts can only be kept in memory (see [`Engine::reserve`]). Entries gone
    /// meanwhile are swept when another is added.
    no_room: Mutex<HashMap<u64, Weak<Entry>>>,
    pool: Arc<PartPool>,
    resident: Mutex<Resident>,
    /// Part writes running on blocking threads (see [`Engine::wait_for_writes`]).
    writes: Mutex<usize>,
    writes_done: Condvar,
    closed: AtomicBool,
    disk_warned: AtomicBool,
    /// Body bytes received from the store.
    pub bytes_fetched: AtomicU64,
    pub requests: AtomicU64,
    /// Bytes of the parts being fetched (see [`Engine::ahead_end`]).
    fetching: AtomicU64,
    /// Bytes of fetched parts read back from the data file for a reader before the
    /// object was complete (parts the resident set had dropped, or written by an earlier
    /// process).
    pub bytes_read_back: AtomicU64,
}

/// Parts kept in memory after they were fetched, so the reader that is about to ask for
/// them (a sequential reader is up to a read-ahead window behind the fetches) gets a slice
/// of the buffer they were received into instead of a `pread` of the file they were just
/// written to. Bounded by bytes, oldest dropped first; a part is also dropped once all of
/// its bytes have been served (the kernel's page cache has them then), counting the reads
/// answered while it was still arriving. Dropping only costs a disk read.
struct Resident {
    parts: HashMap<(u64, usize), ResidentPart>,
    /// Insertion order (may hold keys removed since; they are skipped).
    order: VecDeque<(u64, usize)>,
    /// Bytes served of parts still arriving (credited when they are inserted).
    early: HashMap<(u64, usize), u64>,
    bytes: u64,
    cap: u64,
}

struct ResidentPart {
    bytes: Bytes,
    served: u64,
}

impl Resident {
    fn insert(&mut self, key: (u64, usize), bytes: Bytes) {
        let served = self.early.remove(&key).unwrap_or(0);
        if self.cap == 0 || served >= bytes.len() as u64 {
            return;
        }
        self.bytes += bytes.len() as u64;
        if let Some(old) = self.parts.insert(key, ResidentPart { bytes, served }) {
            self.bytes -= old.bytes.len() as u64;
        }
        self.order.push_back(key);
        while self.bytes > self.cap {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            self.remove(k);
        }
        if self.order.len() > 4 * self.parts.len() + 64 {
            let parts = &self.parts;
            self.order.retain(|k| parts.contains_key(k));
        }
    }

    fn remove(&mut self, key: (u64, usize)) {
        if let Some(p) = self.parts.remove(&key) {
            self.bytes -= p.bytes.len() as u64;
        }
    }

    /// Count `n` bytes of part `key` as served; drops the part once all of it was.
    fn served(&mut self, key: (u64, usize), n: u64) {
        match self.parts.get_mut(&key) {
            Some(p) => {
                p.served += n;
                if p.served >= p.bytes.len() as u64 {
                    self.remove(key);
                }
            }
            None => {
                // Still arriving (or already dropped). Parts that never arrive (failed
                // fetches) would linger here: a bound keeps that harmless.
                if self.early.len() >= 4096 {
                    self.early.clear();
                }
                *self.early.entry(key).or_default() += n;
            }
        }
    }
}

impl Engine {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        opts: EngineOptions,
        owner: Weak<dyn EntryOwner>,
    ) -> Self {
        let jobs = opts.jobs.max(1);
        Self {
            store,
            sem: Arc::new(Semaphore::new(jobs)),
            jobs,
            min_request_bytes: opts.min_request_bytes,
            small_object_threshold: opts.small_object_threshold,
            max_readahead: opts.max_readahead,
            auto_finalize: opts.auto_finalize,
            owner,
            inflight: Mutex::new(HashMap::new()),
            no_room: Mutex::new(HashMap::new()),
            // As many spares as can be live at once (parts in flight, parts kept for
            // readers): reuse, not growth; `trim_idle` frees them when the engine idles.
            pool: PartPool::new(
                opts.part_size,
                jobs + (opts.resident_bytes / opts.part_size.max(1)) as usize,
            ),
            resident: Mutex::new(Resident {
                parts: HashMap::new(),
                order: VecDeque::new(),
                early: HashMap::new(),
                bytes: 0,
                cap: opts.resident_bytes,
            }),
            writes: Mutex::new(0),
            writes_done: Condvar::new(),
            closed: AtomicBool::new(false),
            disk_warned: AtomicBool::new(false),
            bytes_fetched: AtomicU64::new(0),
            fetching: AtomicU64::new(0),
            bytes_read_back: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn warn_disk(&self, e: &io::Error) {
        if !self.disk_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cache cannot write parts ({e}); serving fetched bytes from memory without \
                 caching them (this warning is shown once)"
            );
        }
    }

    /// Ask the owner of the entries, or [`Unbudgeted`] once it is gone or when there is none.
    fn with_owner<R>(&self, ask: impl FnOnce(&dyn EntryOwner) -> R) -> R {
        match self.owner.upgrade() {
            Some(owner) => ask(&*owner),
            None => ask(&Unbudgeted),
        }
    }

    /// Parts of `entry` in `parts` that are held in memory.
    fn resident_parts(&self, entry: &Entry, parts: std::ops::RangeInclusive<usize>) -> Vec<Held> {
        let r = self.resident.lock();
        parts
            .filter_map(|i| {
                r.parts
                    .get(&(entry.uid, i))
                    .map(|p| Held::from(i, 0, p.bytes.clone()))
            })
            .collect()
    }

    /// Make sure every part in `parts` is present, in memory or being fetched; returns the
    /// channels of those being fetched. Missing parts are grouped into requests of adjacent
    /// parts. `tail_first`: a random reader's offset; a missing part it falls in the middle
    /// of, alone in its request, is fetched from there on first (see [`SPLIT_MIN`]).
    pub fn ensure(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        parts: std::ops::Range<usize>,
        whole_request: bool,
        tail_first: Option<u64>,
    ) -> Vec<(usize, PartWatch)> {
        let mut waits = Vec::new();
        let mut runs: Vec<Vec<(usize, PartTx)>> = Vec::new();
        {
            // Held while a part is looked up: a part written meanwhile is counted present
            // by its entry before it leaves `inflight`, so it is seen as one or the other.
            let mut inflight = self.inflight.lock();
            let resident = self.resident.lock();
            let mut prev: Option<usize> = None;
            for i in parts {
                if entry.is_present(i) {
                    continue;
                }
                // Being fetched, or received and being written: its channel says which.
                // (Checked first: a part being written is resident too, but it is not
                // one the disk refused.)
                if let Some(rx) = inflight.get(&(entry.uid, i)) {
                    waits.push((i, rx.clone()));
                    continue;
                }
                // In memory only (the disk had no room): hand the caller the bytes, held
                // from here on, since the resident set may drop them at any moment.
                if let Some(p) = resident.parts.get(&(entry.uid, i)) {
                    let data = PartData::Unwritten(p.bytes.clone());
                    waits.push((i, watch::channel(Some(Ok(data))).1));
                    continue;
                }
                let (tx, rx) = watch::channel(None);
                inflight.insert((entry.uid, i), rx.clone());
                self.fetching
                    .fetch_add(part_len(entry, i) as u64, Ordering::Relaxed);
                waits.push((i, rx));
                match runs.last_mut() {
                    Some(run) if prev == Some(i - 1) => run.push((i, tx)),
                    _ => runs.push(vec![(i, tx)]),
                }
                prev = Some(i);
            }
        }
        let per_request = if whole_request {
            usize::MAX
        } else {
            self.min_request_bytes.div_ceil(entry.part_size).max(1) as usize
        };
        for run in runs {
            // Room in the cache is asked for now, part by part, and each part given room
            // gets its blocks at once: back to back, in file order, before any fetch
            // completes (see `Entry::preallocate`), and before the next part's free-space
            // check, which then sees them.
            let run: Vec<Fetch> = run
                .into_iter()
                .map(|(i, tx)| {
                    let room = self.reserve(entry, i);
                    if room {
                        entry.preallocate(entry.part_range(i));
                    }
                    (i, tx, room)
                })
                .collect();
            let mut it = run.into_iter().peekable();
            while it.peek().is_some() {
                let group: Vec<_> = it.by_ref().take(per_request).collect();
                let split = match &group[..] {
                    [(i, _, _)] => tail_first.and_then(|at| split_point(entry.part_range(*i), at)),
                    _ => None,
                };
                let engine = self.clone();
                let entry = entry.clone();
                tokio::spawn(async move { engine.fetch_run(entry, group, split).await });
            }
        }
        waits
    }

    /// Fetch adjacent parts with one ranged GET, each received into one buffer and handed
    /// to [`Self::part_received`] when complete; or, with `split` (an offset inside the
    /// group's only part), that part from `split` to its end first, then its head.
    async fn fetch_run(self: Arc<Self>, entry: Arc<Entry>, group: Vec<Fetch>, split: Option<u64>) {
        let mut senders = VecDeque::from(group);
        let _permit = self.sem.clone().acquire_owned().await;
        // Disk writes of the parts received so far: awaited before the permit is given
        // back, so a disk slower than the network slows the fetching instead of filling
        // memory with parts waiting to be written.
        let mut writes = Vec::new();
        let result = if entry.dead().is_some() {
            Err(PartFail::Stale)
        } else if let Some(at) = split {
            self.fetch_split(&entry, &mut senders, at, &mut writes)
                .await
        } else {
            self.fetch_in_order(&entry, &mut senders, &mut writes).await
        };
        if let Err(f) = result {
            for (i, tx, room) in senders.drain(..) {
                self.fetching
                    .fetch_sub(part_len(&entry, i) as u64, Ordering::Relaxed);
                if room {
                    entry.release(i);
                }
                self.inflight.lock().remove(&(entry.uid, i));
                let _ = tx.send(Some(Err(f.clone())));
            }
        }
        for w in writes {
            let _ = w.await;
        }
    }

    /// The parts in `senders`, in order, from one GET; each leaves `senders` when complete.
    async fn fetch_in_order(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        senders: &mut VecDeque<Fetch>,
        writes: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), PartFail> {
        let first = senders.front().unwrap().0;
        let last = senders.back().unwrap().0;
        let range = entry.part_range(first).start..entry.part_range(last).end;
        // State of the part being received.
        let mut pos = range.start;
        let mut hasher = crc64::Hasher::default();
        let mut buf = self.pool.get(part_len(entry, first));
        receiving(&senders.front().unwrap().1, &buf);
        self.receive(entry, range, |mut chunk| {
            while let Some(&(i, _, _)) = senders.front() {
                let part_end = entry.part_range(i).end;
                let take = ((part_end - pos) as usize).min(chunk.len());
                let (piece, rest) = chunk.split_at(take);
                chunk = rest;
                hasher.update(piece);
                buf.push(piece);
                pos += take as u64;
                if pos < part_end {
                    break;
                }
                let (i, tx, to_disk) = senders.pop_front().unwrap();
                let crc = std::mem::take(&mut hasher).finish();
                let next = senders.front().map_or(0, |f| part_len(entry, f.0));
                let bytes = std::mem::replace(&mut buf, self.pool.get(next)).freeze();
                writes.extend(self.part_received(entry, i, tx, crc, bytes, to_disk));
                if let Some((_, tx, _)) = senders.front() {
                    receiving(tx, &buf);
                }
            }
        })
        .await
    }

    /// The one part in `senders`, tail first: bytes `at..end` from one GET, then `start..at`
    /// from another, into one buffer whose readers are answered from either as it arrives.
    async fn fetch_split(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        senders: &mut VecDeque<Fetch>,
        at: u64,
        writes: &mut Vec<tokio::task::JoinHandle<()>>,
    ) -> Result<(), PartFail> {
        let i = senders.front().unwrap().0;
        let r = entry.part_range(i);
        let mut buf = self
            .pool
            .get_split(part_len(entry, i), (at - r.start) as usize);
        receiving(&senders.front().unwrap().1, &buf);
        let (mut tail, mut head) = (crc64::Hasher::default(), crc64::Hasher::default());
        self.receive(entry, at..r.end, |chunk| {
            tail.update(chunk);
            buf.push(chunk);
        })
        .await?;
        self.receive(entry, r.start..at, |chunk| {
            head.update(chunk);
            buf.push(chunk);
        })
        .await?;
        let crc = crc64::combine(head.finish(), tail.finish(), r.end - at);
        let (i, tx, to_disk) = senders.pop_front().unwrap();
        writes.extend(self.part_received(entry, i, tx, crc, buf.freeze(), to_disk));
        Ok(())
    }

    /// One ranged GET of `range` (with the entry's ETag), its body handed to `sink` piece by
    /// piece: exactly the bytes of `range` (more than asked for is ignored), or an error.
    async fn receive(
        &self,
        entry: &Arc<Entry>,
        range: std::ops::Range<u64>,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), PartFail> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut stream = self
            .store
            .get_range(
                &entry.identity.key,
                range.clone(),
                Some(&entry.identity.etag),
            )
            .await
            .map_err(|e| self.store_failure(entry, e))?;
        let mut pos = range.start;
        while pos < range.end {
            let chunk = match stream.next().await {
                Some(Ok(c)) => c,
                Some(Err(e)) => return Err(self.store_failure(entry, e)),
                None => {
                    return Err(PartFail::Store(Arc::new(StoreError::Protocol(format!(
                        "body of {} ended at byte {pos}, expected {}",
                        entry.identity.key, range.end
                    )))))
                }
            };
            self.bytes_fetched
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let take = ((range.end - pos) as usize).min(chunk.len());
            sink(&chunk[..take]);
            pos += take as u64;
        }
        Ok(())
    }

    /// A part is complete in memory: its readers get the bytes now, and it is written to
    /// the data file on a blocking thread (returned) when `to_disk` (the cache had room).
    /// Its channel stays in `inflight` until the write is done, so nobody fetches it again
    /// meanwhile.
    fn part_received(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        i: usize,
        tx: PartTx,
        crc: u64,
        bytes: Bytes,
        to_disk: bool,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.fetching
            .fetch_sub(bytes.len() as u64, Ordering::Relaxed);
        self.resident.lock().insert((entry.uid, i), bytes.clone());
        if !to_disk || self.closed.load(Ordering::Relaxed) {
            entry.release(i);
            self.inflight.lock().remove(&(entry.uid, i));
            let _ = tx.send(Some(Ok(PartData::Unwritten(bytes))));
            return None;
        }
        // Counted before any reader hears of the part: a flush that waits for the writes
        // (unmount) then never misses this one.
        *self.writes.lock() += 1;
        let _ = tx.send(Some(Ok(PartData::Writing(bytes.clone()))));
        let engine = self.clone();
        let entry = entry.clone();
        Some(tokio::task::spawn_blocking(move || {
            let _done = WriteDone(&engine);
            match entry.write_part(entry.part_range(i).start, &bytes) {
                Ok(()) => {
                    let (flush, all) = entry.complete_part(i, crc);
                    engine.inflight.lock().remove(&(entry.uid, i));
                    let _ = tx.send(Some(Ok(PartData::OnDisk)));
                    engine.after_write(&entry, flush, all);
                }
                Err(e) => {
                    engine.warn_disk(&e);
                    entry.release(i);
                    engine.inflight.lock().remove(&(entry.uid, i));
                    let _ = tx.send(Some(Ok(PartData::Unwritten(bytes))));
                }
            }
        }))
    }

    fn store_failure(&self, entry: &Arc<Entry>, e: StoreError) -> PartFail {
        // 412: another ETag. 404 on a key this handle was opened for: deleted since. Either
        // way the version this handle reads is gone: ESTALE, and its cache entry goes too.
        if matches!(
            e,
            StoreError::PreconditionFailed(_) | StoreError::NoSuchKey(_)
        ) {
            if entry.dead().is_some() {
                // Another request of this entry found out first and said so.
                return PartFail::Stale;
            }
            tracing::info!(
                "{} changed on the server ({e}; ETag was {}); dropping its cache entry",
                entry.identity.key,
                entry.identity.etag
            );
            self.with_owner(|o| o.drop_entry(entry, Dead::Stale));
            PartFail::Stale
        } else {
            PartFail::Store(Arc::new(e))
        }
    }

    /// May part `i` be written to disk? Asks the cache's budget (evicting if needed).
    /// Remembers a refusal (`no_room`): read-ahead shrinks while parts can only be kept
    /// in memory.
    fn reserve(&self, entry: &Arc<Entry>, i: usize) -> bool {
        let r = entry.part_range(i);
        let ok = !entry.memory_only
            && entry.dead().is_none()
            && self.with_owner(|o| o.reserve(entry, r.end - r.start));
        let mut refused = self.no_room.lock();
        if ok {
            refused.remove(&entry.uid);
        } else if !refused.contains_key(&entry.uid) {
            refused.retain(|_, e| e.strong_count() > 0);
            refused.insert(entry.uid, Arc::downgrade(entry));
        }
        ok
    }

    /// Where read-ahead over `parts` stops: new fetches are started only while the bytes
    /// fetched ahead of their readers (parts being fetched, plus received parts not yet
    /// read, which is what the resident set holds) fit in the resident set. Beyond that
    /// the resident set drops parts before their reader gets to them, and they are read
    /// back from the data file: four concurrent cold `cp`s of 512 MiB objects made the
    /// mount read 957-1427 MiB of their 2048 back from disk. One sequential reader's
    /// window (`max_readahead`, the same 48 MiB by default) is what this leaves it.
    fn ahead_end(&self, entry: &Entry, parts: std::ops::Range<usize>) -> usize {
        let (held, cap) = {
            let r = self.resident.lock();
            (r.bytes, r.cap)
        };
        let used = self.fetching.load(Ordering::Relaxed) + held;
        let mut room = cap.max(self.max_readahead).saturating_sub(used);
        let inflight = self.inflight.lock();
        for i in parts.clone() {
            if entry.is_present(i) || inflight.contains_key(&(entry.uid, i)) {
                continue;
            }
            let len = part_len(entry, i) as u64;
            if len > room {
                return i;
            }
            room -= len;
        }
        parts.end
    }

    /// Largest read-ahead window, in parts of `entry`. While the cache has no room for
    /// the entry, read-ahead parts live only in the resident set, so the window is what
    /// that set holds beside the part being read: more would be dropped unread and fetched
    /// again (5-6x the object with a full cache, as the fault suite measured).
    fn readahead_parts(&self, entry: &Entry) -> usize {
        let ps = entry.part_size.max(1);
        let max = (self.max_readahead / ps).max(1) as usize;
        if self.no_room.lock().contains_key(&entry.uid) {
            let cap = (self.resident.lock().cap / ps) as usize;
            max.min(cap.saturating_sub(1)).max(1)
        } else {
            max
        }
    }

    /// Wait (up to `timeout`) until no part write is running, so that a flush after it
    /// records every part received (unmount, shutdown). False on timeout.
    pub fn wait_for_writes(&self, timeout: std::time::Duration) -> bool {
        let mut n = self.writes.lock();
        let deadline = std::time::Instant::now() + timeout;
        while *n > 0 {
            if self.writes_done.wait_until(&mut n, deadline).timed_out() {
                return false;
            }
        }
        true
    }

    /// Give spare part buffers back to the kernel if none was needed lately (called every
    /// `batch_interval` by the [`Fetcher`]'s flusher thread).
    pub fn trim_idle(&self) {
        self.pool.trim();
    }

    /// Count bytes of part `i` served from memory (see [`Resident`]).
    fn served(&self, entry: &Entry, i: usize, n: u64) {
        self.resident.lock().served((entry.uid, i), n);
    }

    /// After part writes: finalize a complete entry, or record a due batch. Runs on the
    /// write's blocking thread, inside its count in `writes`, so that a cache shutting
    /// down waits for it too.
    fn after_write(&self, entry: &Arc<Entry>, flush: bool, all: bool) {
        if all && self.auto_finalize {
            self.with_owner(|o| o.finalize_entry(entry));
        } else if flush {
            entry.flush_logged();
        }
    }

    /// The owner is shutting down: parts received from now on are not written (they are
    /// fetched again next time), so nothing touches the cache directory after
    /// [`Self::wait_for_writes`] returns.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// Counts a part write as finished when dropped (also when the write panics).
struct WriteDone<'a>(&'a Engine);

impl Drop for WriteDone<'_> {
    fn drop(&mut self) {
        *self.0.writes.lock() -= 1;
        self.0.writes_done.notify_all();
    }
}

pub(crate) fn clone_store_error(e: &StoreError) -> StoreError {
    use StoreError::*;
    match e {
        NoSuchKey(s) => NoSuchKey(s.clone()),
        NoSuchBucket(s) => NoSuchBucket(s.clone()),
        AccessDenied(s) => AccessDenied(s.clone()),
        InvalidAccessKeyId(s) => InvalidAccessKeyId(s.clone()),
        SignatureDoesNotMatch(s) => SignatureDoesNotMatch(s.clone()),
        RequestTimeTooSkewed(s) => RequestTimeTooSkewed(s.clone()),
        InvalidObjectState(s) => InvalidObjectState(s.clone()),
        PreconditionFailed(s) => PreconditionFailed(s.clone()),
        InvalidRange(s) => InvalidRange(s.clone()),
        Throttled(s) => Throttled(s.clone()),
        Server(s) => Server(s.clone()),
        Other(s) => Other(s.clone()),
        Network(s) => Network(s.clone()),
        Timeout(s) => Timeout(s.clone()),
        Protocol(s) => Protocol(s.clone()),
    }
}

impl From<PartFail> for ReadError {
    fn from(f: PartFail) -> Self {
        match f {
            PartFail::Stale => ReadError::Stale,
            PartFail::Store(e) => ReadError::Store(clone_store_error(&e)),
            PartFail::Io(kind, msg) => ReadError::Io(io::Error::new(kind, msg)),
        }
    }
}

/// The fetch of a part ended (its channel closed) without saying how.
fn fetch_gone() -> PartFail {
    PartFail::Io(
        io::ErrorKind::Other,
        "part fetch ended without a result".into(),
    )
}

/// A random read this far or farther into a missing part has the part fetched tail first
/// (from the read's 4 KiB page on, then the head): 256 KiB. Nearer the start, waiting for
/// the bytes before it costs less than a second request (on loopback about 0.25 ms for
/// 256 KiB). Isolated 4 KiB reads missing 8 MiB parts of a 1 GiB object, 27 per run, two
/// runs each: median 0.94-0.98 ms vs 2.79-3.09 in order, worst 2.65-4.22 vs 12.5-19.6.
pub const SPLIT_MIN: u64 = 256 << 10;

/// Where to split part `part` for a reader starting at `at`: its 4 KiB page, when that is
/// at least [`SPLIT_MIN`] into the part.
fn split_point(part: std::ops::Range<u64>, at: u64) -> Option<u64> {
    let page = at - at % ALIGN as u64;
    (part.contains(&at) && page - part.start >= SPLIT_MIN).then_some(page)
}

fn part_len(entry: &Entry, i: usize) -> usize {
    let r = entry.part_range(i);
    (r.end - r.start) as usize
}

/// Tell a part's readers it is arriving and where to find its bytes so far.
fn receiving(tx: &PartTx, buf: &PartBuf) {
    let _ = tx.send(Some(Ok(PartData::Receiving(buf.reader()))));
}

/// Wait until a part's fetch is over: written to the data file, kept in memory only, or
/// failed.
async fn wait_written(mut rx: PartWatch) -> PartResult {
    let done = |v: &Option<PartResult>| {
        !matches!(
            v,
            None | Some(Ok(PartData::Receiving(_) | PartData::Writing(_)))
        )
    };
    match rx.wait_for(done).await {
        Ok(v) => v.clone().unwrap(),
        Err(_) => Err(fetch_gone()),
    }
}

/// Bytes of one part in hand for a read: `bytes` are the part's bytes from `base` on.
struct Held {
    part: usize,
    base: usize,
    bytes: Bytes,
}

impl Held {
    fn from(part: usize, base: usize, bytes: Bytes) -> Self {
        Self { part, base, bytes }
    }
}

/// What [`wait_bytes`] would return at once when that is a success, else `None`.
fn bytes_now(part: usize, rx: &PartWatch, need: &std::ops::Range<usize>) -> Option<Option<Held>> {
    match &*rx.borrow() {
        None | Some(Err(_)) => None,
        Some(Ok(PartData::Receiving(r))) => r
            .window(need.clone())
            .map(|bytes| Some(Held::from(part, need.start, bytes))),
        Some(Ok(data)) => Some(data.bytes().map(|b| Held::from(part, 0, b.clone()))),
    }
}

/// Wait until bytes `need` of part `part` can be read: the bytes holding them when they
/// are in memory, `None` when the part is on disk.
async fn wait_bytes(
    part: usize,
    mut rx: PartWatch,
    need: std::ops::Range<usize>,
) -> Result<Option<Held>, PartFail> {
    loop {
        let now = rx.borrow_and_update().clone();
        match now {
            None => {}
            Some(Err(f)) => return Err(f),
            Some(Ok(PartData::Receiving(r))) => {
                let grown = r.grown();
                if let Some(bytes) = r.window(need.clone()) {
                    return Ok(Some(Held::from(part, need.start, bytes)));
                }
                tokio::select! {
                    _ = grown => continue,
                    changed = rx.changed() => {
                        changed.map_err(|_| fetch_gone())?;
                        continue;
                    }
                }
            }
            Some(Ok(data)) => return Ok(data.bytes().map(|b| Held::from(part, 0, b.clone()))),
        }
        rx.changed().await.map_err(|_| fetch_gone())?;
    }
}

/// A mount's reads: the part cache of one directory and the engine that fills it, tied
/// together. The engine sees the cache only as the [`EntryOwner`] of its entries; this
/// opens handles by asking the cache for an entry, runs the flusher thread (every
/// `batch_interval`: record pending parts, give back spare buffers), and shuts down when
/// its last user lets go (or on [`Self::shutdown`]).
pub struct Fetcher {
    cache: Arc<PartCache>,
    engine: Arc<Engine>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Fetcher {
    /// Open (and lock) the cache directory of `config` and start its flusher thread.
    /// `namespace` identifies (endpoint, bucket), see `StoreConfig::namespace`.
    pub fn open(
        config: CacheConfig,
        store: Arc<dyn ObjectStore>,
        namespace: String,
    ) -> Result<Arc<Self>, CacheError> {
        let interval = config.batch_interval;
        let opts = EngineOptions {
            jobs: config.jobs,
            part_size: config.part_size,
            min_request_bytes: config.min_request_bytes,
            small_object_threshold: config.small_object_threshold,
            max_readahead: config.max_readahead,
            resident_bytes: config.resident_bytes,
            auto_finalize: true,
        };
        let cache = PartCache::open(config, namespace)?;
        let owner: Weak<dyn EntryOwner> = Arc::downgrade(&cache) as _;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let fetcher = Arc::new(Self {
            engine: Arc::new(Engine::new(store, opts, owner)),
            cache,
            stop: stop.clone(),
        });
        // Records batches of parts at least every `batch_interval`, so parts of an idle
        // reader do not wait for the next part to become durable.
        let weak = Arc::downgrade(&fetcher);
        std::thread::Builder::new()
            .name("ossmount-cache-flush".into())
            .spawn(move || loop {
                {
                    let (m, cv) = &*stop;
                    let mut stopped = m.lock();
                    if !*stopped {
                        cv.wait_for(&mut stopped, interval);
                    }
                    if *stopped {
                        return;
                    }
                }
                match weak.upgrade() {
                    Some(f) => {
                        f.cache.flush_dirty();
                        f.engine.trim_idle();
                    }
                    None => return,
                }
            })?;
        Ok(fetcher)
    }

    /// A handle on one version of one object; its entry is never evicted while a handle
    /// lives. An entry for another ETag or size of the same key is dropped.
    pub fn object(&self, meta: &ObjectMeta) -> Result<ObjectHandle, CacheError> {
        let entry = self.cache.open_entry(meta)?;
        Ok(ObjectHandle::new(meta.clone(), entry, self.engine.clone()))
    }

    /// Write out pending checkpoints (on unmount / SIGTERM), after the part writes that
    /// are running finish.
    pub fn flush(&self) {
        if !self
            .engine
            .wait_for_writes(std::time::Duration::from_secs(30))
        {
            tracing::warn!("part writes still running after 30 s; recording what is done");
        }
        self.cache.flush_dirty();
    }

    /// Unmounting (and dropping): stop writing parts that arrive from now on, wait for the
    /// writes running, record them. Without the first step a flush waited for the
    /// read-ahead still on the network to land (and be retried), and the process kept the
    /// directory lock for seconds after the unmount: `umount; mount` failed with "in use".
    pub fn shutdown(&self) {
        self.engine.close();
        self.flush();
    }

    /// The part cache (budget, write counters).
    pub fn cache(&self) -> &Arc<PartCache> {
        &self.cache
    }

    /// The fetch engine (request counters).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock() = true;
        cv.notify_all();
        self.shutdown();
    }
}

/// How often a read is planned again when parts it counted on left the cache meanwhile.
const READ_ATTEMPTS: usize = 4;

/// What [`ObjectHandle::read_now`] could do without waiting.
pub enum ReadNow {
    Ready(Bytes),
    /// Parts are still arriving: hand this to [`ObjectHandle::read_later`].
    Wait(Pending),
}

/// A planned read waiting for parts being fetched (the fetches are already started).
pub struct Pending {
    offset: u64,
    len: usize,
    /// Parts already in hand.
    memory: Vec<Held>,
    /// (part, bytes of it needed, its channel)
    waits: Vec<(usize, std::ops::Range<usize>, PartWatch)>,
}

enum Step {
    Done(Option<Bytes>),
    Wait(Pending),
}

/// Sequential-read detection of one handle.
#[derive(Debug, Default)]
struct Sequential {
    next_offset: u64,
    window_parts: usize,
}

/// One open handle on one object version: its own sequential-read detection and read-ahead
/// window, sharing the cache entry (and in-flight fetches) with every other handle.
pub struct ObjectHandle {
    meta: ObjectMeta,
    pub(crate) entry: Arc<Entry>,
    pub(crate) engine: Arc<Engine>,
    seq: Mutex<Sequential>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The object changed on the server (412 on If-Match, or another ETag): ESTALE.
    #[error("object changed on the server")]
    Stale,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ObjectHandle {
    pub(crate) fn new(meta: ObjectMeta, entry: Arc<Entry>, engine: Arc<Engine>) -> Self {
        Self {
            meta,
            entry,
            engine,
            seq: Mutex::new(Sequential::default()),
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    /// The cache entry behind this handle (for `download` and tests).
    pub fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }

    fn check_alive(&self) -> Result<(), ReadError> {
        match self.entry.dead() {
            None => Ok(()),
            Some(Dead::Stale) => Err(ReadError::Stale),
            Some(Dead::Corrupt) => Err(ReadError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: the fetched object failed its CRC-64 check",
                    self.meta.key
                ),
            ))),
        }
    }

    /// Read up to `len` bytes at `offset`; shorter only at end of object.
    pub async fn read(&self, offset: u64, len: usize) -> Result<Bytes, ReadError> {
        match self.read_now(offset, len)? {
            ReadNow::Ready(bytes) => Ok(bytes),
            ReadNow::Wait(pending) => self.read_later(pending).await,
        }
    }

    /// The part of [`Self::read`] that never waits: plans the read (fetches, read-ahead)
    /// and answers it at once when its bytes are at hand (in memory, or in the data file).
    /// The FUSE adapter calls this on its own thread, so a read that needs no network is
    /// answered without a hand-over to the runtime (a cross-CPU wake-up per read, about
    /// 20 us on a VM). Must run inside the runtime's context (it may start fetch tasks).
    pub fn read_now(&self, offset: u64, len: usize) -> Result<ReadNow, ReadError> {
        // A part counted present can stop being so (a failed fdatasync forgets unrecorded
        // parts, a suspect part fails its CRC-64): then the read is planned again.
        for _ in 0..READ_ATTEMPTS {
            match self.plan(offset, len)? {
                Step::Done(Some(bytes)) => return Ok(ReadNow::Ready(bytes)),
                Step::Done(None) => {}
                Step::Wait(pending) => return Ok(ReadNow::Wait(pending)),
            }
        }
        Err(self.kept_disappearing(offset))
    }

    /// The rest of a read [`Self::read_now`] could not answer at once. A fetch that failed
    /// for a reason worth retrying (network, 5xx, after the store's own retries) is started
    /// once more before the read fails: with the kernel's page cache in front, its
    /// synchronous re-read of a failed read-ahead did that; with direct I/O nobody else will.
    pub async fn read_later(&self, mut pending: Pending) -> Result<Bytes, ReadError> {
        let mut fetched_again = false;
        for _ in 0..READ_ATTEMPTS {
            let (offset, len) = (pending.offset, pending.len);
            match self.finish(pending).await {
                Ok(Some(bytes)) => return Ok(bytes),
                Ok(None) => {}
                Err(ReadError::Store(e)) if e.is_retryable() && !fetched_again => {
                    warn!(
                        key = self.meta.key,
                        offset, "read failed: {e}; fetching again"
                    );
                    fetched_again = true;
                }
                Err(e) => return Err(e),
            }
            match self.read_now(offset, len)? {
                ReadNow::Ready(bytes) => return Ok(bytes),
                ReadNow::Wait(next) => pending = next,
            }
        }
        Err(self.kept_disappearing(pending.offset))
    }

    fn kept_disappearing(&self, offset: u64) -> ReadError {
        ReadError::Io(io::Error::other(format!(
            "{}: parts at {offset} kept disappearing from the cache",
            self.meta.key
        )))
    }

    /// One attempt of a read, up to the point where it would wait: `Done(None)` if a part
    /// it planned to read from the data file was not there after all.
    fn plan(&self, offset: u64, len: usize) -> Result<Step, ReadError> {
        self.check_alive()?;
        let size = self.entry.identity.size;
        if offset >= size || len == 0 {
            return Ok(Step::Done(Some(Bytes::new())));
        }
        let end = (offset + len as u64).min(size);
        self.engine.with_owner(|o| o.touch(&self.entry));
        let ps = self.entry.part_size;
        let n = self.entry.n_parts;
        let p0 = (offset / ps) as usize;
        let p1 = ((end - 1) / ps) as usize;
        // Parts in memory are held (cloned) from here on, whatever is evicted meanwhile.
        let mut memory = self.engine.resident_parts(&self.entry, p0..=p1);
        if memory.len() == p1 - p0 + 1 || self.entry.is_finalized() {
            return self.assemble(offset, end, &memory).map(Step::Done);
        }
        // Parts recorded by an earlier process are read back against their CRC-64 before
        // their bytes are first served; a damaged one is dropped and fetched below.
        if self.entry.has_suspects() {
            for p in p0..=p1 {
                if !memory.iter().any(|h| h.part == p) {
                    self.entry.verify_part(p)?;
                }
            }
        }
        let small = size <= self.engine.small_object_threshold;
        let waits = if small {
            self.engine.ensure(&self.entry, 0..n, true, None)
        } else {
            // Read-ahead window, in parts.
            let ra = {
                let mut seq = self.seq.lock();
                // Within a part of where the last read ended counts as sequential: the
                // kernel's parallel read-ahead requests arrive slightly out of order.
                if offset == seq.next_offset
                    || (seq.next_offset > 0 && offset.abs_diff(seq.next_offset) <= ps)
                {
                    let max = self.engine.readahead_parts(&self.entry);
                    seq.window_parts = (seq.window_parts * 2).clamp(1, max);
                } else {
                    seq.window_parts = 0;
                }
                seq.next_offset = end;
                seq.window_parts
            };
            // A random reader is served first from where it reads.
            let tail_first = (ra == 0).then_some(offset);
            let waits = self
                .engine
                .ensure(&self.entry, p0..p1 + 1, false, tail_first);
            if ra > 0 && p1 + 1 < n {
                let ra_end = (p1 + 1 + ra).min(n);
                let ra_end = self.engine.ahead_end(&self.entry, p1 + 1..ra_end);
                drop(self.engine.ensure(&self.entry, p1 + 1..ra_end, false, None));
            }
            waits
        };
        let mut later = Vec::new();
        for (i, rx) in waits {
            if i < p0 || i > p1 {
                continue;
            }
            // Only the bytes of the part this read needs.
            let r = self.entry.part_range(i);
            let need =
                (offset.max(r.start) - r.start) as usize..(end.min(r.end) - r.start) as usize;
            // A failed fetch is left to `finish` too, which decides whether to fetch again.
            match bytes_now(i, &rx, &need) {
                Some(held) => memory.extend(held),
                None => later.push((i, need, rx)),
            }
        }
        if later.is_empty() {
            self.check_alive()?;
            return self.assemble(offset, end, &memory).map(Step::Done);
        }
        Ok(Step::Wait(Pending {
            offset,
            len,
            memory,
            waits: later,
        }))
    }

    /// Wait for the parts a [`Pending`] read still needs, then answer it.
    async fn finish(&self, pending: Pending) -> Result<Option<Bytes>, ReadError> {
        let Pending {
            offset,
            len,
            mut memory,
            waits,
        } = pending;
        let mut failure = None;
        for (i, need, rx) in waits {
            match wait_bytes(i, rx, need).await {
                Ok(held) => memory.extend(held),
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        if let Some(f) = failure {
            return Err(f.into());
        }
        self.check_alive()?;
        let end = (offset + len as u64).min(self.entry.identity.size);
        self.assemble(offset, end, &memory)
    }

    /// Bytes `offset..end`, part by part from `memory` or else from the data file. A read
    /// within one part held in memory is a slice of it, without a copy. `None` when a part
    /// is in neither: the data file is read only for parts it holds (never its holes).
    fn assemble(&self, offset: u64, end: u64, memory: &[Held]) -> Result<Option<Bytes>, ReadError> {
        let ps = self.entry.part_size;
        let (p0, p1) = ((offset / ps) as usize, ((end - 1) / ps) as usize);
        if !(p0..=p1).all(|p| memory.iter().any(|h| h.part == p) || self.entry.is_present(p)) {
            return Ok(None);
        }
        let from_file = |a: u64, b: u64| -> Result<Bytes, ReadError> {
            let mut buf = vec![0u8; (b - a) as usize];
            self.entry.read_at(a, &mut buf)?;
            if !self.entry.is_finalized() {
                self.engine
                    .bytes_read_back
                    .fetch_add(b - a, Ordering::Relaxed);
            }
            Ok(Bytes::from(buf))
        };
        if memory.is_empty() {
            return from_file(offset, end).map(Some);
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for p in p0..=p1 {
            let r = self.entry.part_range(p);
            let (a, b) = (offset.max(r.start), end.min(r.end));
            let slice = match memory.iter().find(|h| h.part == p) {
                Some(h) => {
                    self.engine.served(&self.entry, p, b - a);
                    let at = (a - r.start) as usize - h.base;
                    h.bytes.slice(at..at + (b - a) as usize)
                }
                None => from_file(a, b)?,
            };
            if p0 == p1 {
                return Ok(Some(slice));
            }
            out.extend_from_slice(&slice);
        }
        Ok(Some(out.freeze()))
    }

    /// Fetch every missing part (for `download` and prefetching); returns once all are
    /// present or one failed. Parts that could only be held in memory count as failures.
    pub async fn fetch_all(&self) -> Result<(), ReadError> {
        self.fetch_all_with(false).await
    }

    /// [`Self::fetch_all`], with every missing part in one GET when `one_request`.
    pub async fn fetch_all_with(&self, one_request: bool) -> Result<(), ReadError> {
        self.check_alive()?;
        let n = self.entry.n_parts;
        // A sliding window of requests (4 x jobs) rather than all parts at once: a huge
        // object does not become a million queued tasks, and after a failure no new
        // request starts while the ones in flight finish (and get recorded).
        let per_request = if one_request {
            n.max(1)
        } else {
            self.engine
                .min_request_bytes
                .div_ceil(self.entry.part_size)
                .max(1) as usize
        };
        let window = 4 * self.engine.jobs * per_request;
        let mut next = 0;
        let mut pending = std::collections::VecDeque::new();
        let mut failure = None;
        loop {
            while failure.is_none() && next < n && pending.len() < window {
                let end = (next + per_request).min(n);
                pending.extend(
                    self.engine
                        .ensure(&self.entry, next..end, one_request, None),
                );
                next = end;
            }
            let Some((_, rx)) = pending.pop_front() else {
                break;
            };
            match wait_written(rx).await {
                Ok(PartData::OnDisk) => {}
                Ok(_) => {
                    failure.get_or_insert(PartFail::Io(
                        io::ErrorKind::StorageFull,
                        "a part could not be written to disk".into(),
                    ));
                }
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        if let Some(f) = failure {
            return Err(f.into());
        }
        self.check_alive()?;
        // Parts held in memory were skipped above; the file must have every one.
        if self.entry.present_count() < n {
            return Err(ReadError::Io(io::Error::new(
                io::ErrorKind::StorageFull,
                "a part could not be written to disk",
            )));
        }
        Ok(())
    }

    /// The finalized, verified, complete file of this object, if there is one (for FUSE
    /// passthrough and direct reads).
    pub fn finalized_file(&self) -> Option<std::fs::File> {
        if self.entry.is_finalized() && self.entry.dead().is_none() {
            std::fs::File::open(&self.entry.paths.done).ok()
        } else {
            None
        }
    }
}
