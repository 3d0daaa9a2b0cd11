//! The engine: which parts to fetch, and when. It turns "a reader needs parts a..b" into
//! requests (adjacent missing parts coalesced up to `min_request_bytes`, at most `jobs`
//! at a time), asks the entries' owner for room on disk part by part, keeps one channel
//! per part in flight so readers share fetches, and bounds read-ahead by what the
//! resident set can hold. The requests themselves run in `request.rs`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex};
use tokio::sync::{watch, Semaphore};

use super::budget::{MemoryBudget, Reservation};
use super::request::split_point;
use super::resident::Resident;
use super::streams::StreamSet;
use super::wait::{Held, PartData, PartTx, PartWatch};
use super::PartKey;
use crate::cache::entry::{Entry, EntryOwner, Unbudgeted};
use crate::cache::partbuf::PartPool;
use crate::store::ObjectStore;

/// Settings of an [`Engine`]; see [`crate::cache::CacheConfig`] for what each is for.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub jobs: usize,
    /// The usual part size (buffers of this size are recycled).
    pub part_size: u64,
    pub min_request_bytes: u64,
    pub small_object_threshold: u64,
    pub max_readahead: u64,
    /// Bytes of fetched parts kept in memory for readers (the resident set, see `resident.rs`).
    pub resident_bytes: u64,
    /// Bytes of part data in memory at most: fetches plus the resident set (see `budget.rs`).
    pub memory_limit: u64,
    /// Finalize an entry (verify, rename to done) as soon as its last part lands.
    pub auto_finalize: bool,
}

/// A part to fetch: its index, its channel, and whether the cache gave it room on disk.
pub type Fetch = (usize, PartTx, bool);

/// Why parts are wanted: a reader waits for them (or a download, a warm), or read-ahead.
/// Read-ahead reserves its memory at once and is not started without it; a demand fetch
/// waits for its memory in its task (see `budget.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Demand,
    Ahead,
}

/// The shared fetch machinery of one cache (or one download).
pub struct Engine {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) sem: Arc<Semaphore>,
    pub(super) jobs: usize,
    pub(super) min_request_bytes: u64,
    pub(super) small_object_threshold: u64,
    max_readahead: u64,
    auto_finalize: bool,
    /// The owner of the entries (their cache), the engine's one view of it: weak, so that
    /// fetches still running do not keep a cache directory locked after its user let go.
    /// Gone, or none (a download): [`Unbudgeted`].
    owner: Weak<dyn EntryOwner>,
    /// Parts being fetched: every reader of one part waits on the same channel. A part
    /// leaves once it is in the data file (after the entry counts it present), in memory
    /// only, or failed.
    pub(super) inflight: Mutex<HashMap<PartKey, PartWatch>>,
    /// Entries the cache refused room for their last part, so read-ahead shrinks while
    /// their parts can only be kept in memory (see [`Engine::reserve`]). Entries gone
    /// meanwhile are swept when another is added.
    no_room: Mutex<HashMap<u64, Weak<Entry>>>,
    /// The streams of reads of each entry with handles, by entry (see `streams.rs`).
    streams: Mutex<HashMap<u64, Weak<StreamSet>>>,
    pub(super) pool: Arc<PartPool>,
    pub(super) resident: Mutex<Resident>,
    /// The bytes of part data in memory: fetches and the resident set (see `budget.rs`).
    pub(super) budget: Arc<MemoryBudget>,
    /// Part writes running on blocking threads (see [`Engine::wait_for_writes`]).
    writes: Mutex<usize>,
    writes_done: Condvar,
    pub(super) closed: AtomicBool,
    disk_warned: AtomicBool,
    /// Body bytes received from the store.
    pub bytes_fetched: AtomicU64,
    pub requests: AtomicU64,
    /// Bytes of the parts being fetched (see [`Engine::ahead_room`]).
    pub(super) fetching: AtomicU64,
    /// Bytes of fetched parts read back from the data file for a reader before the
    /// object was complete (parts the resident set had dropped, or written by an earlier
    /// process).
    pub bytes_read_back: AtomicU64,
}

impl Engine {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        opts: EngineOptions,
        owner: Weak<dyn EntryOwner>,
    ) -> Self {
        let jobs = opts.jobs.max(1);
        let ps = opts.part_size.max(1);
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
            streams: Mutex::new(HashMap::new()),
            // As many spares as can be live at once (parts in flight, parts kept for
            // readers, within the memory budget): reuse, not growth; `trim_idle` frees
            // them when the engine idles.
            pool: PartPool::new(
                opts.part_size,
                (jobs + (opts.resident_bytes / ps) as usize)
                    .min((opts.memory_limit / ps).max(1).min(usize::MAX as u64) as usize),
            ),
            resident: Mutex::new(Resident::new(opts.resident_bytes)),
            budget: MemoryBudget::new(opts.memory_limit),
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

    pub(super) fn warn_disk(&self, e: &io::Error) {
        if !self.disk_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cache cannot write parts ({e}); serving fetched bytes from memory without \
                 caching them (this warning is shown once)"
            );
        }
    }

    /// Ask the owner of the entries, or [`Unbudgeted`] once it is gone or when there is none.
    pub(super) fn with_owner<R>(&self, ask: impl FnOnce(&dyn EntryOwner) -> R) -> R {
        match self.owner.upgrade() {
            Some(owner) => ask(&*owner),
            None => ask(&Unbudgeted),
        }
    }

    /// Parts of `entry` in `parts` that are held in memory.
    pub(super) fn resident_parts(
        &self,
        entry: &Entry,
        parts: std::ops::RangeInclusive<usize>,
    ) -> Vec<Held> {
        let r = self.resident.lock();
        parts
            .filter_map(|i| {
                r.get(&(entry.uid, i))
                    .map(|bytes| Held::from(i, 0, bytes.clone()))
            })
            .collect()
    }

    /// Make sure every part in `parts` is present, in memory or being fetched; returns the
    /// channels of those being fetched. Missing parts are grouped into requests of up to
    /// `per_request` adjacent parts. `tail_first`: a random reader's offset; a missing part
    /// it falls in the middle of, alone in its request, is fetched from there on first (see
    /// [`super::SPLIT_MIN`]).
    ///
    /// `need`: read-ahead ([`Need::Ahead`]) reserves each new part's memory here and
    /// stops at the first part the budget has no room for; a demand fetch reserves its
    /// request's memory in its task, waiting for it. No request is larger than the
    /// budget, so a demand request always fits once the others give theirs back.
    pub(super) fn ensure(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        parts: std::ops::Range<usize>,
        per_request: usize,
        tail_first: Option<u64>,
        need: Need,
    ) -> Vec<(usize, PartWatch)> {
        let mut waits = Vec::new();
        let mut runs: Vec<Vec<(usize, PartTx, Option<Reservation>)>> = Vec::new();
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
                if let Some(bytes) = resident.get(&(entry.uid, i)) {
                    let data = PartData::Unwritten(bytes.clone());
                    waits.push((i, watch::channel(Some(Ok(data))).1));
                    continue;
                }
                let reserved = match need {
                    Need::Demand => None,
                    Need::Ahead => match self.budget.try_reserve(part_len(entry, i) as u64) {
                        Some(r) => Some(r),
                        None => break,
                    },
                };
                let (tx, rx) = watch::channel(None);
                inflight.insert((entry.uid, i), rx.clone());
                self.fetching
                    .fetch_add(part_len(entry, i) as u64, Ordering::Relaxed);
                waits.push((i, rx));
                match runs.last_mut() {
                    Some(run) if prev == Some(i - 1) => run.push((i, tx, reserved)),
                    _ => runs.push(vec![(i, tx, reserved)]),
                }
                prev = Some(i);
            }
        }
        // No request larger than the memory budget (a small object's one GET, a
        // download's window), so a demand request always fits once others are done.
        let per_request = per_request
            .min((self.budget.limit() / entry.part_size.max(1)).max(1) as usize)
            .max(1);
        for run in runs {
            // Room in the cache is asked for now, part by part, and each part given room
            // gets its blocks at once: back to back, in file order, before any fetch
            // completes (see `Entry::preallocate`), and before the next part's free-space
            // check, which then sees them.
            let run: Vec<(Fetch, Option<Reservation>)> = run
                .into_iter()
                .map(|(i, tx, reserved)| {
                    let room = self.reserve(entry, i);
                    if room {
                        entry.preallocate(entry.part_range(i));
                    }
                    ((i, tx, room), reserved)
                })
                .collect();
            let mut it = run.into_iter().peekable();
            while it.peek().is_some() {
                let mut reserved: Option<Reservation> = None;
                let group: Vec<Fetch> = it
                    .by_ref()
                    .take(per_request)
                    .map(|(fetch, r)| {
                        match (&mut reserved, r) {
                            (Some(all), Some(r)) => all.merge(r),
                            (all, r) => *all = all.take().or(r),
                        }
                        fetch
                    })
                    .collect();
                let split = match &group[..] {
                    [(i, _, _)] => tail_first.and_then(|at| split_point(entry.part_range(*i), at)),
                    _ => None,
                };
                let engine = self.clone();
                let entry = entry.clone();
                // A random reader's parts are not kept in memory for it (see
                // `part_received`).
                let keep = tail_first.is_none();
                tokio::spawn(
                    async move { engine.fetch_run(entry, group, split, keep, reserved).await },
                );
            }
        }
        waits
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

    /// Which of `parts` read-ahead may start now: from the first part that is neither
    /// present nor being fetched, up to where the budget stops it. New fetches are started
    /// only while the bytes fetched ahead of their readers (parts being fetched, plus
    /// received parts not yet read, which is what the resident set holds) fit in the
    /// resident set. Beyond that the resident set drops parts before their reader gets to
    /// them, and they are read back from the data file: four concurrent cold `cp`s of
    /// 512 MiB objects made the mount read 957-1427 MiB of their 2048 back from disk. One
    /// sequential reader's window (`max_readahead`, the same 48 MiB by default) is what
    /// this leaves it.
    pub(super) fn ahead_room(
        &self,
        entry: &Entry,
        parts: std::ops::Range<usize>,
    ) -> std::ops::Range<usize> {
        let (held, cap) = {
            let r = self.resident.lock();
            (r.held(), r.cap())
        };
        let used = self.fetching.load(Ordering::Relaxed) + held;
        // And within the memory budget, which all readers share (see `budget.rs`).
        let mut room = cap
            .max(self.max_readahead)
            .saturating_sub(used)
            .min(self.budget.available());
        let inflight = self.inflight.lock();
        let taken = |i: usize| entry.is_present(i) || inflight.contains_key(&(entry.uid, i));
        let start = parts.clone().find(|&i| !taken(i)).unwrap_or(parts.end);
        for i in start..parts.end {
            if taken(i) {
                continue;
            }
            let len = part_len(entry, i) as u64;
            if len > room {
                return start..i;
            }
            room -= len;
        }
        start..parts.end
    }

    /// The streams of reads of `entry`, shared by all of its handles (see `streams.rs`).
    pub(super) fn streams_of(&self, entry: &Entry) -> Arc<StreamSet> {
        let mut map = self.streams.lock();
        if let Some(set) = map.get(&entry.uid).and_then(Weak::upgrade) {
            return set;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let set = Arc::new(StreamSet::default());
        map.insert(entry.uid, Arc::downgrade(&set));
        set
    }

    /// Largest read-ahead window of `entry`, in bytes (whole parts of it, at least one).
    /// While the cache has no room for the entry, read-ahead parts live only in the
    /// resident set, so the window is what that set holds beside the part being read:
    /// more would be dropped unread and fetched again (5-6x the object with a full cache,
    /// as the fault suite measured).
    pub(super) fn readahead_bytes(&self, entry: &Entry) -> u64 {
        let ps = entry.part_size.max(1);
        let max = (self.max_readahead / ps).max(1);
        let parts = if self.no_room.lock().contains_key(&entry.uid) {
            let cap = self.resident.lock().cap() / ps;
            max.min(cap.saturating_sub(1)).max(1)
        } else {
            max
        };
        parts * ps
    }

    /// Parts of `entry` per request of a sequential reader or a download: up to
    /// `min_request_bytes`, at least one part.
    pub(super) fn request_parts(&self, entry: &Entry) -> usize {
        self.min_request_bytes
            .div_ceil(entry.part_size.max(1))
            .max(1) as usize
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
    /// `batch_interval` by the [`super::Fetcher`]'s flusher thread).
    pub fn trim_idle(&self) {
        self.pool.trim();
    }

    /// Count bytes of part `i` served from memory (the resident set, see `resident.rs`).
    pub(super) fn served(&self, entry: &Entry, i: usize, n: u64) {
        self.resident.lock().served((entry.uid, i), n);
    }

    /// Count bytes of part `i` served from the data file, if the resident set holds it.
    pub(super) fn served_from_file(&self, entry: &Entry, i: usize, n: u64) {
        self.resident.lock().served_if_held((entry.uid, i), n);
    }

    /// After part writes: finalize a complete entry, or record a due batch. Runs on the
    /// write's blocking thread, inside its count in `writes`, so that a cache shutting
    /// down waits for it too.
    pub(super) fn after_write(&self, entry: &Arc<Entry>, flush: bool, all: bool) {
        if all && self.auto_finalize {
            self.with_owner(|o| o.finalize_entry(entry));
        } else if flush {
            entry.flush_logged();
        }
    }

    /// The memory budget of part data: limit, bytes held now, most held at once (for the
    /// metrics and `ossmount status`).
    pub fn memory(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Room in the memory budget for a demand fetch: drop the oldest resident part.
    /// False when none is left.
    pub(super) fn make_room(&self) -> bool {
        self.resident.lock().drop_oldest()
    }

    #[cfg(test)]
    pub(super) fn make_room_for_test(&self) -> bool {
        self.make_room()
    }

    /// Parts being fetched or written now (for the metrics, read when scraped).
    pub fn parts_in_flight(&self) -> usize {
        self.inflight.lock().len()
    }

    /// The owner is shutting down: parts received from now on are not written (they are
    /// fetched again next time), so nothing touches the cache directory after
    /// [`Self::wait_for_writes`] returns.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

/// A part write counted in `writes` (see [`Engine::wait_for_writes`]) from its start
/// until this is dropped: when the write is done, also if it panics or never runs.
pub(super) struct RunningWrite(Arc<Engine>);

impl RunningWrite {
    pub(super) fn start(engine: &Arc<Engine>) -> Self {
        *engine.writes.lock() += 1;
        Self(engine.clone())
    }

    pub(super) fn engine(&self) -> &Arc<Engine> {
        &self.0
    }
}

impl Drop for RunningWrite {
    fn drop(&mut self) {
        *self.0.writes.lock() -= 1;
        self.0.writes_done.notify_all();
    }
}

/// Bytes of part `i` of `entry`.
pub fn part_len(entry: &Entry, i: usize) -> usize {
    let r = entry.part_range(i);
    (r.end - r.start) as usize
}
