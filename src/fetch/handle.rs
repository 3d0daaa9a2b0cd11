//! One open handle on one object version: planning a read (which parts, which read-ahead),
//! answering it from memory or the data file, waiting for parts still arriving, and
//! per-handle sequential detection. `read_now` never waits, so the FUSE thread answers a
//! read that needs no network itself; `read_later` does the waiting on the runtime.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tracing::warn;

use super::engine::Need;
use super::streams::{Sequential, Stream, StreamSet};
use super::wait::{bytes_now, wait_bytes, wait_written, Held, PartData, PartFail, PartWatch};
use super::Engine;
use crate::cache::entry::{Dead, Entry};
use crate::metrics::{ReadSource, METRICS};
use crate::store::{ObjectMeta, StoreError};

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

/// The first read-ahead window of a sequential reader: 1 MiB (Mountpoint's first request
/// is 1 MiB + 128 KiB; the kernel's read-ahead on this mount is 1 MiB). The window then
/// grows to twice what the reader has read in a row, up to `max_readahead`, so a reader
/// that stops early leaves at most about twice what it read (plus 1 MiB) fetched unread.
pub const FIRST_WINDOW: u64 = 1 << 20;

/// How far from where the last read ended a read still counts as sequential: the kernel
/// sends its read-ahead of a sequential reader as several FUSE reads at once, which
/// arrive slightly out of order (1 MiB each here, see `fs/mount.rs`). At least one part.
const SEQ_SLACK: u64 = 2 << 20;

/// Read-ahead requests are a quarter of the window (at least one part, at most
/// `min_request_bytes`), so the window is several requests in flight at once: an object
/// store's per-connection rate, not one request, is what the window multiplies.
const REQUESTS_PER_WINDOW: u64 = 4;

/// One open handle on one object version: its own sequential-read detection and read-ahead
/// window, sharing the cache entry (and in-flight fetches) with every other handle.
pub struct ObjectHandle {
    meta: ObjectMeta,
    entry: Arc<Entry>,
    engine: Arc<Engine>,
    /// The streams of reads of this object, shared with its other handles, and the one
    /// this handle is on (see `streams.rs`).
    streams: Arc<StreamSet>,
    stream: Mutex<Stream>,
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
        let streams = engine.streams_of(&entry);
        let stream = Mutex::new(streams.new_stream());
        Self {
            meta,
            entry,
            engine,
            streams,
            stream,
        }
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
        if self.entry.is_finalized() {
            return self
                .assemble(offset, end, &memory, ReadSource::Memory)
                .map(Step::Done);
        }
        let small = size <= self.engine.small_object_threshold;
        if memory.len() == p1 - p0 + 1 {
            // A read answered from memory is a read too: it moves the sequential reader's
            // window (skipping it made the next read look like a jump, which reset the
            // window: 7-16 requests in flight instead of 24).
            if !small {
                if let Some((parts, per_request)) = self.advance(offset, end) {
                    drop(
                        self.engine
                            .ensure(&self.entry, parts, per_request, None, Need::Ahead),
                    );
                }
            }
            return self
                .assemble(offset, end, &memory, ReadSource::Memory)
                .map(Step::Done);
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
        let waits = if small {
            self.engine
                .ensure(&self.entry, 0..n, usize::MAX, None, Need::Demand)
        } else {
            let ahead = self.advance(offset, end);
            // A random reader is served first from where it reads.
            let tail_first = ahead.is_none().then_some(offset);
            let per_request = self.engine.request_parts(&self.entry);
            let waits = self.engine.ensure(
                &self.entry,
                p0..p1 + 1,
                per_request,
                tail_first,
                Need::Demand,
            );
            if let Some((parts, per_request)) = ahead {
                drop(
                    self.engine
                        .ensure(&self.entry, parts, per_request, None, Need::Ahead),
                );
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
            return self
                .assemble(offset, end, &memory, ReadSource::Memory)
                .map(Step::Done);
        }
        Ok(Step::Wait(Pending {
            offset,
            len,
            memory,
            waits: later,
        }))
    }

    /// Note a read of `offset..end` in the handle's sequential detection, and say which
    /// parts to read ahead (in requests of how many parts), if any: `None` for a random
    /// reader (a read not near where the last one ended), which then fetches only the
    /// parts it reads (one 256 KiB cache unit for a 4 KiB read, not a window).
    ///
    /// A sequential reader's window is twice what it read in a row (at least
    /// [`FIRST_WINDOW`], at most the engine's read-ahead), its requests a quarter of that
    /// (at most `min_request_bytes`), and read-ahead is started a whole request at a time:
    /// the window's end moves by one read (128 KiB-1 MiB), and a request per part would
    /// pay the store's first-byte latency for every 256 KiB.
    fn advance(&self, offset: u64, end: u64) -> Option<(std::ops::Range<usize>, usize)> {
        let ps = self.entry.part_size.max(1);
        self.streams.with_stream(
            &self.stream,
            offset,
            SEQ_SLACK.max(ps),
            |seq, sequential| {
                if !sequential {
                    *seq = Sequential {
                        next_offset: end,
                        ..Sequential::default()
                    };
                    return None;
                }
                // A stream several handles share gets their reads slightly out of order:
                // its end only moves forward.
                seq.next_offset = seq.next_offset.max(end);
                seq.run += end - offset;
                self.window(seq, end)
            },
        )
    }

    /// The read-ahead of a sequential stream that just read up to `end` (see [`Self::advance`]).
    fn window(&self, seq: &mut Sequential, end: u64) -> Option<(std::ops::Range<usize>, usize)> {
        let ps = self.entry.part_size.max(1);
        let size = self.entry.identity.size;
        let max = self.engine.readahead_bytes(&self.entry);
        let window = (2 * seq.run).max(FIRST_WINDOW).min(max);
        let request = (window / REQUESTS_PER_WINDOW)
            .min(self.engine.min_request_bytes)
            .max(ps);
        let target = (end + window).min(size);
        let from = seq.ahead.max(end);
        if target <= from || (target - from < request && target < size) {
            return None;
        }
        let parts = (from / ps) as usize..target.div_ceil(ps) as usize;
        // Within what the engine lets all readers have ahead; and never a short request
        // where the budget, not the object, ends: it waits for room for a whole one.
        // Counted from the first part nobody has fetched yet: parts another stream (or a
        // reader) already has are skipped, so requests start where they stop, whole.
        let per_request = request.div_ceil(ps) as usize;
        let room = self.engine.ahead_room(&self.entry, parts.clone());
        // Whole requests only, but at the object's end: a chunk of 2 MiB + one read was
        // one request of 2 MiB and one of a part (924 GETs for a 1 GiB cp, not ~520).
        let ra_end = if room.end == parts.end && target == size {
            room.end
        } else {
            room.start + (room.end - room.start) / per_request * per_request
        };
        // Everything before `room.start` is present or on its way.
        seq.ahead = seq.ahead.max((room.start as u64 * ps).min(size));
        if ra_end <= room.start {
            return None;
        }
        seq.ahead = (ra_end as u64 * ps).min(size);
        Some((room.start..ra_end, per_request))
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
        self.assemble(offset, end, &memory, ReadSource::Network)
    }

    /// Bytes `offset..end`, part by part from `memory` or else from the data file. A read
    /// within one part held in memory is a slice of it, without a copy. `None` when a part
    /// is in neither: the data file is read only for parts it holds (never its holes).
    /// Bytes from `memory` are counted as `held` (memory, or network for a read that
    /// waited for them), those from the file as the cache file's.
    fn assemble(
        &self,
        offset: u64,
        end: u64,
        memory: &[Held],
        held: ReadSource,
    ) -> Result<Option<Bytes>, ReadError> {
        let ps = self.entry.part_size;
        let (p0, p1) = ((offset / ps) as usize, ((end - 1) / ps) as usize);
        if !(p0..=p1).all(|p| memory.iter().any(|h| h.part == p) || self.entry.is_present(p)) {
            return Ok(None);
        }
        let from_file = |a: u64, b: u64| -> Result<Bytes, ReadError> {
            let mut buf = vec![0u8; (b - a) as usize];
            self.entry.read_at(a, &mut buf)?;
            METRICS.read_bytes(ReadSource::CacheFile, b - a);
            if !self.entry.is_finalized() {
                self.engine
                    .bytes_read_back
                    .fetch_add(b - a, Ordering::Relaxed);
            }
            Ok(Bytes::from(buf))
        };
        // Bytes read from the file count as served too: a part whose every byte its readers
        // had leaves the resident set (and the read-ahead budget) at once, however they
        // got them (a part written before its reader asked is read from the file).
        if memory.is_empty() {
            let bytes = from_file(offset, end)?;
            if !self.entry.is_finalized() {
                for p in p0..=p1 {
                    let r = self.entry.part_range(p);
                    let n = end.min(r.end) - offset.max(r.start);
                    self.engine.served_from_file(&self.entry, p, n);
                }
            }
            return Ok(Some(bytes));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for p in p0..=p1 {
            let r = self.entry.part_range(p);
            let (a, b) = (offset.max(r.start), end.min(r.end));
            let slice = match memory.iter().find(|h| h.part == p) {
                Some(h) => {
                    self.engine.served(&self.entry, p, b - a);
                    METRICS.read_bytes(held, b - a);
                    let at = (a - r.start) as usize - h.base;
                    h.bytes.slice(at..at + (b - a) as usize)
                }
                None => {
                    self.engine.served_from_file(&self.entry, p, b - a);
                    from_file(a, b)?
                }
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
            self.engine.request_parts(&self.entry)
        };
        let window = 4 * self.engine.jobs * per_request;
        let mut next = 0;
        let mut pending = std::collections::VecDeque::new();
        let mut failure = None;
        loop {
            while failure.is_none() && next < n && pending.len() < window {
                let end = (next + per_request).min(n);
                pending.extend(self.engine.ensure(
                    &self.entry,
                    next..end,
                    per_request,
                    None,
                    Need::Demand,
                ));
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
