//! Sequential-read detection, per object rather than per handle: the streams of reads of
//! one object that all of its handles share.
//!
//! Why not per handle: readers of one object through the kernel's page cache share its
//! pages, so FUSE sees each handle read only what no other handle read first. Eight `dd`s
//! of one 512 MiB object made one stream of 1 MiB reads at the FUSE level (5, 6, 7 MiB...),
//! each from whichever handle got there first; every handle saw its own reads jump and
//! reset its window, 386 times: 676 requests, mostly of 512 KiB and 1 MiB (one reader: 262
//! of 2 MiB), and 96 MB/s on the oss-like link. A read that continues where another
//! handle's *proven* stream (two or more reads in a row) stands now continues that stream:
//! its window, and how far its read-ahead was started, so one planner moves the object's
//! read-ahead in whole requests, as for one reader.
//!
//! A handle keeps its own stream as long as its reads continue it (so one reader behaves
//! exactly as before); a read that continues neither its own stream nor a proven one of
//! another handle starts a new stream for the handle (a random read), leaving the old one
//! to the handles still on it. Only proven streams are shared: a random reader's reads are
//! each a stream of one read, and matching them across handles would make more random
//! reads look sequential and fetch a window for them.

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// One stream of sequential reads.
#[derive(Debug, Default)]
pub struct Sequential {
    pub next_offset: u64,
    /// Bytes read in a row, this run of sequential reads.
    pub run: u64,
    /// How far this stream's read-ahead has been started.
    pub ahead: u64,
}

impl Sequential {
    /// Does a read at `offset` continue this stream? At its end, or within `slack` of it
    /// (the kernel's read-ahead arrives as several reads at once, slightly out of order);
    /// offset 0 continues a stream nobody has read yet (a new reader from the start).
    fn continued_by(&self, offset: u64, slack: u64) -> bool {
        offset == self.next_offset
            || (self.next_offset > 0 && offset.abs_diff(self.next_offset) <= slack)
    }
}

pub type Stream = Arc<Mutex<Sequential>>;

/// The streams of one object (one cache entry), shared by its handles; each handle holds
/// the one it is on, this holds them weakly.
#[derive(Default)]
pub struct StreamSet {
    streams: Mutex<Vec<Weak<Mutex<Sequential>>>>,
}

impl StreamSet {
    /// A fresh stream, registered so that other handles can join it once it is proven.
    pub fn new_stream(&self) -> Stream {
        let s = Stream::default();
        let mut v = self.streams.lock();
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(&s));
        s
    }

    /// Run `f` on the stream a read at `offset` belongs to, with whether the read continues
    /// it (sequential) or starts it. `mine` is the handle's stream, replaced when the read
    /// joins another handle's stream or starts a new one.
    pub fn with_stream<R>(
        &self,
        mine: &Mutex<Stream>,
        offset: u64,
        slack: u64,
        f: impl FnOnce(&mut Sequential, bool) -> R,
    ) -> R {
        let own = mine.lock().clone();
        {
            let mut s = own.lock();
            if s.run > 0 && s.continued_by(offset, slack) {
                return f(&mut s, true);
            }
        }
        // Another handle's proven stream (not locked while `own` is: no lock order).
        let others: Vec<Stream> = self
            .streams
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| !Arc::ptr_eq(s, &own))
            .collect();
        for other in others {
            let mut s = other.lock();
            if s.run > 0 && s.continued_by(offset, slack) {
                *mine.lock() = other.clone();
                return f(&mut s, true);
            }
        }
        {
            // The handle's second read (or a first read at 0); or its own stream when the
            // handle is the only one on it: a random read resets it in place, as before.
            let mut s = own.lock();
            if s.continued_by(offset, slack) {
                return f(&mut s, true);
            }
            if Arc::strong_count(&own) <= 2 {
                *s = Sequential::default();
                return f(&mut s, false);
            }
        }
        let fresh = self.new_stream();
        *mine.lock() = fresh.clone();
        let mut s = fresh.lock();
        f(&mut s, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(set: &StreamSet, mine: &Mutex<Stream>, offset: u64, end: u64) -> bool {
        set.with_stream(mine, offset, 2 << 20, |s, seq| {
            if seq {
                s.run += end - offset;
            } else {
                s.run = 0;
            }
            s.next_offset = s.next_offset.max(end);
            seq
        })
    }

    #[test]
    fn handles_join_a_proven_stream_and_random_reads_do_not() {
        let set = StreamSet::default();
        let (a, b) = (Mutex::new(set.new_stream()), Mutex::new(set.new_stream()));
        const M: u64 = 1 << 20;
        assert!(read(&set, &a, 0, M));
        assert!(read(&set, &a, M, 2 * M));
        // b reads where a's stream stands (the page cache had everything before): it joins.
        assert!(read(&set, &b, 2 * M, 3 * M));
        assert!(Arc::ptr_eq(&a.lock(), &b.lock()));
        assert!(
            read(&set, &a, 3 * M, 4 * M),
            "a goes on where b left the stream"
        );
        // b jumps: a new stream for b; a's is untouched.
        assert!(!read(&set, &b, 100 * M, 100 * M + 4096));
        assert!(!Arc::ptr_eq(&a.lock(), &b.lock()));
        assert!(read(&set, &a, 4 * M, 5 * M));
        // A random read near b's one-read stream does not join it from another handle.
        let c = Mutex::new(set.new_stream());
        assert!(!read(&set, &c, 100 * M + 8192, 100 * M + 12288));
        // but b's own next read does continue it.
        assert!(read(&set, &b, 100 * M + 4096, 100 * M + 8192));
    }
}
