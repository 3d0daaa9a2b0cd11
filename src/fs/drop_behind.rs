//! Dropping the kernel's page cache behind a sequential reader.
//!
//! Why: a cold `cp` of a large object through the page cache leaves every byte of it in
//! the FUSE inode's page cache, where nothing will read it again soon: the bytes are in
//! the part cache on disk, and once the object is finalized its opens go to that file
//! (passthrough), not to these pages. Filling gigabytes of fresh page cache is also what
//! made the mount's cold `cp` expensive on the test VM: the kernel allocates a new page for
//! every 4 KiB it copies in. Dropping pages a little behind the reader (FUSE_NOTIFY_INVAL_INODE
//! for the range) lets the kernel reuse them: in a by-hand trial (`posix_fadvise DONTNEED`
//! 32 MiB behind `cp`'s offset) the mount's CPU per GiB halved, 2.6 to 1.2-1.3 s, and
//! cold `cp` went 14-55 % faster, with the page cache of the copy bounded by the distance.
//!
//! What counts as a sequential reader: one open handle (in page-cache mode, the only one
//! of its inode) whose reads continue where the previous ones ended, give or take the
//! kernel's read-ahead reordering ([`SLACK`]). A jump forward starts a new run, and nothing
//! before the start of the current run is ever dropped, so a random reader keeps its
//! pages. A read behind the run's end changes nothing: it is either a reader going back,
//! whose pages before the run's start are kept anyway, or a late one of the sequential
//! reader's own (a FUSE thread can be preempted between a reply and its `on_read`, while
//! the others answer 20 MiB more: seen in 1 of 8 test runs, when a jump back restarted the
//! run and nothing more was dropped). The
//! kernel's read-ahead runs at most a few MiB ahead of the reader (1 MiB `read_ahead_kb`,
//! twice that after `POSIX_FADV_SEQUENTIAL`), far inside [`KEEP`].
//!
//! The notification is written to /dev/fuse by one worker thread, never by a FUSE thread:
//! the kernel invalidates the range in the writer's context and may wait there for pages
//! under read, whose replies come from the FUSE threads.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, OnceLock};

use fuser::{INodeNo, Notifier};
use parking_lot::Mutex;

/// Bytes kept in the page cache behind the furthest read of a run: 32 MiB, ten times the
/// kernel's read-ahead, as in the trial above.
const KEEP: u64 = 32 << 20;
/// Pages are dropped in steps of 16 MiB: one notification per 16 MiB read.
const STEP: u64 = 16 << 20;
/// A read starting within 16 MiB past the run's furthest end continues the run (read-ahead
/// requests of several FUSE threads arrive slightly out of order).
const SLACK: u64 = 16 << 20;

/// One handle's sequential run.
#[derive(Default)]
struct Run {
    /// The furthest byte read in this run.
    end: u64,
    /// Everything before this has been dropped, or was before the run began.
    dropped: u64,
}

impl Run {
    /// A read of `offset..offset + len`: the range whose pages are now due to be dropped.
    fn on_read(&mut self, offset: u64, len: u64) -> Option<Range<u64>> {
        let end = offset + len;
        if offset > self.end + SLACK {
            *self = Run {
                end,
                dropped: offset,
            };
            return None;
        }
        self.end = self.end.max(end);
        let upto = self.end.saturating_sub(KEEP);
        (upto >= self.dropped + STEP).then(|| {
            let due = self.dropped..upto;
            self.dropped = upto;
            due
        })
    }
}

/// The runs of open page-cache handles, and the worker that drops their pages.
pub struct DropBehind {
    runs: Mutex<HashMap<u64, (u64, Run)>>,
    /// (inode, byte range) to invalidate. Bounded: when the worker falls behind, drops are
    /// skipped (pages stay cached, as without this), never queued without end.
    tx: SyncSender<(u64, Range<u64>)>,
}

impl DropBehind {
    /// Starts the worker. It sends nothing until `notifier` is set (after the mount).
    pub fn new(notifier: Arc<OnceLock<Notifier>>) -> Self {
        let (tx, rx) = sync_channel::<(u64, Range<u64>)>(64);
        std::thread::Builder::new()
            .name("drop-behind".into())
            .spawn(move || {
                for (ino, r) in rx {
                    let Some(n) = notifier.get() else { continue };
                    let (off, len) = (r.start as i64, (r.end - r.start) as i64);
                    if let Err(e) = n.inval_inode(INodeNo(ino), off, len) {
                        // The kernel forgot the inode (ENOENT) or the mount is going.
                        tracing::debug!(ino, off, len, "page cache drop not sent: {e}");
                    }
                }
            })
            .expect("spawn the drop-behind thread");
        Self {
            runs: Mutex::new(HashMap::new()),
            tx,
        }
    }

    /// Follow handle `fh` of inode `ino`, opened in page-cache mode.
    pub fn track(&self, fh: u64, ino: u64) {
        self.runs.lock().insert(fh, (ino, Run::default()));
    }

    pub fn untrack(&self, fh: u64) {
        self.runs.lock().remove(&fh);
    }

    /// A read on `fh`. `sole_reader(ino)` is asked only when a drop is due: pages of an
    /// inode with other open handles are left alone (they may be behind this one).
    pub fn on_read(&self, fh: u64, offset: u64, len: u64, sole_reader: impl FnOnce(u64) -> bool) {
        let due = {
            let mut runs = self.runs.lock();
            let Some((ino, run)) = runs.get_mut(&fh) else {
                return;
            };
            run.on_read(offset, len).map(|r| (*ino, r))
        };
        if let Some((ino, r)) = due {
            if sole_reader(ino) {
                let _ = self.tx.try_send((ino, r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Feed 1 MiB reads at `offsets` (in MiB); collect the ranges due, in MiB.
    fn drops(offsets: impl IntoIterator<Item = u64>) -> Vec<Range<u64>> {
        let mut run = Run::default();
        offsets
            .into_iter()
            .filter_map(|o| run.on_read(o * MIB, MIB))
            .map(|r| r.start / MIB..r.end / MIB)
            .collect()
    }

    #[test]
    fn a_sequential_reader_has_pages_dropped_keep_behind_in_steps() {
        // Reads of 0..100 MiB: at 48 MiB read, 0..16 is due; then every 16 MiB.
        assert_eq!(drops(0..100), vec![0..16, 16..32, 32..48, 48..64]);
    }

    #[test]
    fn read_ahead_reordering_continues_the_run() {
        let mut offsets: Vec<u64> = (0..60).collect();
        for pair in offsets.chunks_mut(4) {
            pair.reverse(); // 3 2 1 0 7 6 5 4 ...
        }
        assert_eq!(drops(offsets), vec![0..16]);
    }

    #[test]
    fn a_jump_starts_a_new_run_and_nothing_before_it_is_dropped() {
        // 0..40 MiB, then a jump to 500 MiB and 60 MiB from there.
        let got = drops((0..40).chain(500..560));
        assert_eq!(got, vec![500..516]);
        // Reads behind the run's end neither restart it nor drop anything...
        let got = drops((100..150).chain(10..60));
        assert_eq!(got, vec![100..116]);
        // ...and a late read 20 MiB behind does not break the run.
        let got = drops((0..70).chain([48]).chain(70..100));
        assert_eq!(got, vec![0..16, 16..32, 32..48, 48..64]);
    }

    #[test]
    fn random_reads_drop_nothing() {
        let mut x = 7u64;
        let offsets = (0..2000).map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % 4096
        });
        assert_eq!(drops(offsets), vec![]);
    }
}
