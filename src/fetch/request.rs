//! One request: a ranged GET (with `If-Match: <etag>`) of adjacent parts, each received
//! into one page-aligned buffer with its CRC-64 computed on the way, handed to its readers
//! as it arrives and when complete, then written to the data file on a blocking thread.
//! Also the tail-first fetch of a part a random reader lands deep inside, and what a
//! failed request means (412 or 404: the object changed, the entry goes).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::budget::Reservation;
use super::engine::{part_len, Engine, Fetch, RunningWrite};
use super::uncached::receive_range;
use super::wait::{receiving, PartData, PartFail, PartTx};
use crate::cache::entry::{Dead, Entry};
use crate::cache::partbuf::ALIGN;
use crate::crc64;
use crate::store::StoreError;

impl Engine {
    /// Fetch adjacent parts with one ranged GET, each received into one buffer and handed
    /// to [`Self::part_received`] when complete; or, with `split` (an offset inside the
    /// group's only part), that part from `split` to its end first, then its head.
    ///
    /// `reserved`: the group's bytes in the memory budget, reserved by read-ahead; none
    /// for a demand fetch, which waits for them here, before it takes a `jobs` permit
    /// (a fetch holding a permit never waits for memory, so the memory it waits for is
    /// always given back). Each part takes its share along when complete; what is left
    /// after a failure goes back when this returns.
    pub(super) async fn fetch_run(
        self: Arc<Self>,
        entry: Arc<Entry>,
        group: Vec<Fetch>,
        split: Option<u64>,
        keep: bool,
        reserved: Option<Reservation>,
    ) {
        let mut senders = VecDeque::from(group);
        let mut reserved = match reserved {
            Some(r) => r,
            None => {
                let bytes = senders.iter().map(|f| part_len(&entry, f.0) as u64).sum();
                self.budget.reserve(bytes, || self.make_room()).await
            }
        };
        let _permit = self.sem.clone().acquire_owned().await;
        // Disk writes of the parts received so far: awaited before the permit is given
        // back, so a disk slower than the network slows the fetching instead of filling
        // memory with parts waiting to be written.
        let mut writes = Vec::new();
        let result = if entry.dead().is_some() {
            Err(PartFail::Stale)
        } else if let Some(at) = split {
            self.fetch_split(&entry, &mut senders, at, keep, &mut reserved, &mut writes)
                .await
        } else {
            self.fetch_in_order(&entry, &mut senders, keep, &mut reserved, &mut writes)
                .await
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
        keep: bool,
        reserved: &mut Reservation,
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
                let mine = reserved.split(bytes.len() as u64);
                writes.extend(self.part_received(entry, i, tx, crc, bytes, to_disk, keep, mine));
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
        keep: bool,
        reserved: &mut Reservation,
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
        let mine = reserved.split(part_len(entry, i) as u64);
        writes.extend(self.part_received(entry, i, tx, crc, buf.freeze(), to_disk, keep, mine));
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
        let id = &entry.identity;
        let appendable_len = id.appendable.then_some(id.size);
        receive_range(
            &*self.store,
            &id.key,
            &id.etag,
            appendable_len,
            range,
            |chunk| {
                self.bytes_fetched
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                sink(chunk)
            },
        )
        .await
        .map_err(|e| self.store_failure(entry, e))
    }

    /// A part is complete in memory: its readers get the bytes now, and it is written to
    /// the data file on a blocking thread (returned) when `to_disk` (the cache had room).
    /// Its channel stays in `inflight` until the write is done, so nobody fetches it again
    /// meanwhile. Kept in the resident set when `keep` (a sequential reader will ask for
    /// it; a random reader's part is read once, and kept it would only push out parts a
    /// sequential reader is about to read, and count against the read-ahead budget) or
    /// when it cannot go to disk. `reserved`, its bytes in the memory budget, is shared
    /// by the resident set and the write, and given back when both let go of the part.
    #[allow(clippy::too_many_arguments)]
    fn part_received(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        i: usize,
        tx: PartTx,
        crc: u64,
        bytes: Bytes,
        to_disk: bool,
        keep: bool,
        reserved: Reservation,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.fetching
            .fetch_sub(bytes.len() as u64, Ordering::Relaxed);
        let reserved = Arc::new(reserved);
        if keep || !to_disk {
            self.resident
                .lock()
                .insert((entry.uid, i), bytes.clone(), reserved.clone());
            // A demand read waiting for memory may drop it now (see `budget.rs`).
            self.budget.droppable();
        }
        if !to_disk || self.closed.load(Ordering::Relaxed) {
            entry.release(i);
            self.inflight.lock().remove(&(entry.uid, i));
            let _ = tx.send(Some(Ok(PartData::Unwritten(bytes))));
            return None;
        }
        // Counted before any reader hears of the part: a flush that waits for the writes
        // (unmount) then never misses this one.
        let write = RunningWrite::start(self);
        let _ = tx.send(Some(Ok(PartData::Writing(bytes.clone()))));
        let entry = entry.clone();
        Some(tokio::task::spawn_blocking(move || {
            let _reserved = reserved;
            let engine = write.engine();
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
}

/// A random read this far or farther into a missing part has the part fetched tail first
/// (from the read's 4 KiB page on, then the head): 256 KiB. Nearer the start, waiting for
/// the bytes before it costs less than a second request (on loopback about 0.25 ms for
/// 256 KiB). Isolated 4 KiB reads missing 8 MiB parts of a 1 GiB object, 27 per run, two
/// runs each: median 0.94-0.98 ms vs 2.79-3.09 in order, worst 2.65-4.22 vs 12.5-19.6.
pub const SPLIT_MIN: u64 = 256 << 10;

/// Where to split part `part` for a reader starting at `at`: its 4 KiB page, when that is
/// at least [`SPLIT_MIN`] into the part.
pub fn split_point(part: std::ops::Range<u64>, at: u64) -> Option<u64> {
    let page = at - at % ALIGN as u64;
    (part.contains(&at) && page - part.start >= SPLIT_MIN).then_some(page)
}
