//! Reading an object through the part cache: which parts a read needs, which of them to
//! fetch, and how.
//!
//! - Present parts are read from the entry's data file (`pread`).
//! - Missing parts are fetched with ranged GETs carrying `If-Match: <etag>`; adjacent
//!   missing parts share one request up to `min_request_bytes` (with the default 8 MiB
//!   parts that is one part per request, which keeps `jobs` requests busy; with small parts
//!   it stops request overhead from dominating). An object at or below
//!   `small_object_threshold` is fetched whole by its first read, in one GET.
//! - Every part being fetched has one `watch` channel in the entry's `inflight` map: a
//!   second reader of the same part waits on it instead of fetching again.
//! - Requests run as tasks holding one of `jobs` semaphore permits, so they complete even if
//!   the reader that started them goes away, and the store sees at most `jobs` at a time.
//! - Bodies are streamed: each chunk goes to the data file at its offset while its part's
//!   CRC-64 is computed. A part's chunks are kept (reference-counted, no copy) until the part
//!   is complete so a reader can still be served from memory when the disk refuses the
//!   write: memory is bounded by `jobs` x `part_size`.
//! - Per handle, sequential reads grow a read-ahead window (1, 2, 4, ... parts, up to
//!   `max_readahead` bytes); a non-sequential read resets it, so random readers fetch only
//!   the parts they touch.
//! - 412 (the object changed) kills the entry; every waiter and every later read of the
//!   handle gets [`ReadError::Stale`], and no byte of another version is ever mixed in
//!   because all requests of an entry carry its ETag.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{watch, Semaphore};

use crate::cache::entry::{Dead, Entry, PartData, PartFail, PartResult, PartWatch};
use crate::cache::PartCache;
use crate::crc64;
use crate::store::{ObjectMeta, ObjectStore, StoreError};

/// The shared fetch machinery of one cache (or one download).
pub struct Engine {
    pub store: Arc<dyn ObjectStore>,
    pub sem: Arc<Semaphore>,
    pub jobs: usize,
    pub min_request_bytes: u64,
    pub small_object_threshold: u64,
    pub max_readahead: u64,
    /// Finalize an entry (verify, rename to done) as soon as its last part lands.
    pub auto_finalize: bool,
    /// The cache that owns the budget, if any (None for `download`).
    pub cache: Weak<PartCache>,
    disk_warned: AtomicBool,
    /// Body bytes received from the store.
    pub bytes_fetched: AtomicU64,
    pub requests: AtomicU64,
}

impl Engine {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        jobs: usize,
        min_request_bytes: u64,
        small_object_threshold: u64,
        max_readahead: u64,
        auto_finalize: bool,
        cache: Weak<PartCache>,
    ) -> Self {
        let jobs = jobs.max(1);
        Self {
            store,
            sem: Arc::new(Semaphore::new(jobs)),
            jobs,
            min_request_bytes,
            small_object_threshold,
            max_readahead,
            auto_finalize,
            cache,
            disk_warned: AtomicBool::new(false),
            bytes_fetched: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn warn_disk(&self, what: &str, e: &io::Error) {
        if !self.disk_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cache cannot write ({what}: {e}); serving fetched bytes from memory without \
                 caching them (this warning is shown once)"
            );
        }
    }

    /// Make sure every part in `parts` is present or being fetched; returns the channels of
    /// those being fetched. Missing parts are grouped into requests of adjacent parts.
    pub fn ensure(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        parts: std::ops::Range<usize>,
        whole_request: bool,
    ) -> Vec<(usize, PartWatch)> {
        let mut waits = Vec::new();
        let mut runs: Vec<Vec<(usize, watch::Sender<Option<PartResult>>)>> = Vec::new();
        {
            let mut st = entry.state.lock();
            let mut prev: Option<usize> = None;
            for i in parts {
                if st.parts[i].is_some() {
                    continue;
                }
                if let Some(rx) = st.inflight.get(&i) {
                    waits.push((i, rx.clone()));
                    continue;
                }
                let (tx, rx) = watch::channel(None);
                st.inflight.insert(i, rx.clone());
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
            let mut it = run.into_iter().peekable();
            while it.peek().is_some() {
                let group: Vec<_> = it.by_ref().take(per_request).collect();
                let engine = self.clone();
                let entry = entry.clone();
                tokio::spawn(async move { engine.fetch_run(entry, group).await });
            }
        }
        waits
    }

    /// Fetch adjacent parts with one ranged GET, streaming them into the data file.
    async fn fetch_run(
        self: Arc<Self>,
        entry: Arc<Entry>,
        group: Vec<(usize, watch::Sender<Option<PartResult>>)>,
    ) {
        let mut senders = std::collections::VecDeque::from(group);
        let _permit = self.sem.clone().acquire_owned().await;
        let first = senders.front().unwrap().0;
        let last = senders.back().unwrap().0;
        let range = entry.part_range(first).start..entry.part_range(last).end;
        let finish =
            |entry: &Entry, i: usize, tx: watch::Sender<Option<PartResult>>, r: PartResult| {
                entry.state.lock().inflight.remove(&i);
                let _ = tx.send(Some(r));
            };
        let fail_all = |senders: &mut std::collections::VecDeque<(
            usize,
            watch::Sender<Option<PartResult>>,
        )>,
                        f: PartFail| {
            for (i, tx) in senders.drain(..) {
                finish(&entry, i, tx, Err(f.clone()));
            }
        };
        if entry.dead().is_some() {
            fail_all(&mut senders, PartFail::Stale);
            return;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let stream = self
            .store
            .get_range(
                &entry.identity.key,
                range.clone(),
                Some(&entry.identity.etag),
            )
            .await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                let f = self.store_failure(&entry, e);
                fail_all(&mut senders, f);
                return;
            }
        };
        // State of the part being received.
        let mut pos = range.start;
        let mut hasher = crc64::Hasher::default();
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut to_disk = self.reserve(&entry, senders.front().unwrap().0);
        loop {
            let item = stream.next().await;
            let mut chunk = match item {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    let f = self.store_failure(&entry, e);
                    fail_all(&mut senders, f);
                    return;
                }
                None => {
                    fail_all(
                        &mut senders,
                        PartFail::Store(Arc::new(StoreError::Protocol(format!(
                            "body of {} ended at byte {pos}, expected {}",
                            entry.identity.key, range.end
                        )))),
                    );
                    return;
                }
            };
            self.bytes_fetched
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            while !chunk.is_empty() {
                let Some(i) = senders.front().map(|(i, _)| *i) else {
                    // More bytes than asked for: the store broke the protocol; ignore them.
                    return;
                };
                let part_end = entry.part_range(i).end;
                let take = ((part_end - pos) as usize).min(chunk.len());
                let piece = chunk.split_to(take);
                hasher.update(&piece);
                if to_disk {
                    if let Err(e) = entry.write_at(pos, &piece) {
                        self.warn_disk("writing part", &e);
                        to_disk = false;
                    }
                }
                chunks.push(piece);
                pos += take as u64;
                if pos == part_end {
                    let (i, tx) = senders.pop_front().unwrap();
                    let crc = hasher.finish();
                    hasher = crc64::Hasher::default();
                    let parts = std::mem::take(&mut chunks);
                    if to_disk {
                        let (flush, all) = entry.complete_part(i, crc);
                        finish(&entry, i, tx, Ok(PartData::OnDisk));
                        self.after_part(&entry, flush, all);
                    } else {
                        finish(&entry, i, tx, Ok(PartData::Memory(concat(parts))));
                    }
                    if let Some((next, _)) = senders.front() {
                        to_disk = self.reserve(&entry, *next);
                    }
                }
            }
            if senders.is_empty() {
                break;
            }
        }
    }

    fn store_failure(&self, entry: &Arc<Entry>, e: StoreError) -> PartFail {
        // 412: another ETag. 404 on a key this handle was opened for: deleted since. Either
        // way the version this handle reads is gone: ESTALE, and its cache entry goes too.
        if matches!(
            e,
            StoreError::PreconditionFailed(_) | StoreError::NoSuchKey(_)
        ) {
            tracing::info!(
                "{} changed on the server ({e}; ETag was {}); dropping its cache entry",
                entry.identity.key,
                entry.identity.etag
            );
            match self.cache.upgrade() {
                Some(cache) => cache.drop_entry(entry, Dead::Stale),
                None => entry.kill(Dead::Stale),
            }
            PartFail::Stale
        } else {
            PartFail::Store(Arc::new(e))
        }
    }

    /// May part `i` be written to disk? Asks the cache's budget (evicting if needed).
    fn reserve(&self, entry: &Arc<Entry>, i: usize) -> bool {
        if entry.memory_only || entry.dead().is_some() {
            return false;
        }
        match self.cache.upgrade() {
            Some(cache) => {
                let r = entry.part_range(i);
                cache.reserve(entry, r.end - r.start)
            }
            None => true,
        }
    }

    fn after_part(self: &Arc<Self>, entry: &Arc<Entry>, flush: bool, all: bool) {
        if all && self.auto_finalize {
            let entry = entry.clone();
            let cache = self.cache.clone();
            tokio::task::spawn_blocking(move || {
                if let Some(cache) = cache.upgrade() {
                    cache.finalize_entry(&entry);
                }
            });
        } else if flush {
            let entry = entry.clone();
            let engine = self.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = entry.flush() {
                    engine.warn_disk("writing checkpoint", &e);
                }
            });
        }
    }
}

fn concat(parts: Vec<Bytes>) -> Bytes {
    if parts.len() == 1 {
        return parts.into_iter().next().unwrap();
    }
    let mut b = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        b.extend_from_slice(&p);
    }
    b.freeze()
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

/// Wait for a part's fetch to finish.
pub(crate) async fn wait_part(mut rx: PartWatch) -> PartResult {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap(),
        Err(_) => Err(PartFail::Io(
            io::ErrorKind::Other,
            "part fetch ended without a result".into(),
        )),
    }
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
        self.check_alive()?;
        let size = self.entry.identity.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + len as u64).min(size);
        if let Some(cache) = self.engine.cache.upgrade() {
            cache.touch(&self.entry);
        }
        if self.entry.is_finalized() {
            return self.read_file(offset, end).await;
        }
        let ps = self.entry.part_size;
        let n = self.entry.n_parts;
        let p0 = (offset / ps) as usize;
        let p1 = ((end - 1) / ps) as usize;
        let small = size <= self.engine.small_object_threshold;
        let waits = if small {
            self.engine.ensure(&self.entry, 0..n, true)
        } else {
            // Read-ahead window, in parts.
            let ra = {
                let mut seq = self.seq.lock();
                // Within a part of where the last read ended counts as sequential: the
                // kernel's parallel read-ahead requests arrive slightly out of order.
                if offset == seq.next_offset
                    || (seq.next_offset > 0 && offset.abs_diff(seq.next_offset) <= ps)
                {
                    let max = (self.engine.max_readahead / ps).max(1) as usize;
                    seq.window_parts = (seq.window_parts * 2).clamp(1, max);
                } else {
                    seq.window_parts = 0;
                }
                seq.next_offset = end;
                seq.window_parts
            };
            let waits = self.engine.ensure(&self.entry, p0..p1 + 1, false);
            if ra > 0 && p1 + 1 < n {
                let ra_end = (p1 + 1 + ra).min(n);
                drop(self.engine.ensure(&self.entry, p1 + 1..ra_end, false));
            }
            waits
        };
        let mut memory: Vec<(usize, Bytes)> = Vec::new();
        let mut failure = None;
        for (i, rx) in waits {
            if i < p0 || i > p1 {
                continue;
            }
            match wait_part(rx).await {
                Ok(PartData::OnDisk) => {}
                Ok(PartData::Memory(b)) => memory.push((i, b)),
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        if let Some(f) = failure {
            return Err(f.into());
        }
        self.check_alive()?;
        if memory.is_empty() {
            return self.read_file(offset, end).await;
        }
        // Assemble from the file and from memory, part by part.
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for p in p0..=p1 {
            let r = self.entry.part_range(p);
            let (a, b) = (offset.max(r.start), end.min(r.end));
            if let Some((_, bytes)) = memory.iter().find(|(i, _)| *i == p) {
                out.extend_from_slice(&bytes[(a - r.start) as usize..(b - r.start) as usize]);
            } else {
                let start = out.len();
                out.resize(start + (b - a) as usize, 0);
                self.entry.read_at(a, &mut out[start..])?;
            }
        }
        Ok(out.freeze())
    }

    async fn read_file(&self, offset: u64, end: u64) -> Result<Bytes, ReadError> {
        let mut buf = vec![0u8; (end - offset) as usize];
        self.entry.read_at(offset, &mut buf)?;
        Ok(Bytes::from(buf))
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
                pending.extend(self.engine.ensure(&self.entry, next..end, one_request));
                next = end;
            }
            let Some((_, rx)) = pending.pop_front() else {
                break;
            };
            match wait_part(rx).await {
                Ok(PartData::OnDisk) => {}
                Ok(PartData::Memory(_)) => {
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
        match failure {
            Some(f) => Err(f.into()),
            None => self.check_alive(),
        }
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
