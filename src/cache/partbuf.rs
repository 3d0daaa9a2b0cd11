//! Page-aligned part buffers, recycled through a small pool.
//!
//! Why: a part is received into one contiguous, 4 KiB-aligned buffer so that
//! - it can be written to the data file with `O_DIRECT` (the buffer, the offset and the
//!   length must be block-aligned): no second copy into the page cache and no writeback of
//!   dirty pages, which on the dev box's virtio disk ran at 225-614 MB/s against 1.0 GB/s
//!   for direct writes (`dd bs=8M count=128 conv=fdatasync` vs `oflag=direct`);
//! - a reader waiting for the part is answered with a slice of it ([`bytes::Bytes`], no
//!   copy) instead of reading it back from the file.
//!
//! A part may be received tail first ([`PartPool::get_split`]): a random read in the middle
//! of a missing part is answered from a request that starts where it reads, and the part's
//! head arrives after it (see `fetch.rs`).
//!
//! Fresh memory costs a page fault and a zeroed page per 4 KiB (THP is `madvise` on
//! common distributions): with only one spare buffer, faults and memcg charging took 9 %
//! of the mount's CPU in a cold `cp`. The pool keeps up to `max_free` freed buffers of the
//! usual size, which does not raise the peak (a spare buffer was a live one a moment
//! before), and [`PartPool::trim`] gives them back once they went unused for a while, so
//! an idle mount holds none.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Alignment for `O_DIRECT`: 4 KiB satisfies every common logical block size.
pub const ALIGN: usize = 4096;

/// Buffers of one capacity kept for reuse.
pub struct PartPool {
    capacity: usize,
    max_free: usize,
    free: Mutex<Vec<Raw>>,
    /// A buffer was taken since the last [`PartPool::trim`].
    used: std::sync::atomic::AtomicBool,
}

/// An allocation of `cap` bytes aligned to [`ALIGN`].
struct Raw {
    ptr: NonNull<u8>,
    cap: usize,
}

// SAFETY: `Raw` owns its allocation exclusively; it is plain memory.
unsafe impl Send for Raw {}
unsafe impl Sync for Raw {}

impl Raw {
    /// Anonymous memory straight from `mmap`, not from malloc: a freed part goes back to
    /// the kernel at once instead of lingering (fragmented) in one of malloc's per-thread
    /// arenas, which made the mount's peak RSS vary by 50 MiB between identical runs.
    fn new(cap: usize) -> Self {
        // SAFETY: a private anonymous mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            alloc::handle_alloc_error(Layout::from_size_align(cap, ALIGN).expect("layout"));
        }
        Self {
            ptr: NonNull::new(p.cast()).expect("mmap returned null"),
            cap,
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: mapped in `Raw::new` with this length.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.cap) };
    }
}

impl PartPool {
    /// A pool recycling buffers that hold `part_size` bytes, keeping up to `max_free`.
    pub fn new(part_size: u64, max_free: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: round_up(part_size as usize),
            max_free,
            free: Mutex::new(Vec::new()),
            used: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// An empty buffer for a part of `len` bytes, received in order (no memory for 0).
    pub fn get(self: &Arc<Self>, len: usize) -> PartBuf {
        self.get_split(len, len)
    }

    /// An empty buffer for a part of `len` bytes received tail first: bytes `split..len`,
    /// then `0..split` (pushes fill them in that order).
    pub fn get_split(self: &Arc<Self>, len: usize, split: usize) -> PartBuf {
        assert!(split <= len, "split {split} past the part's {len} bytes");
        if len == 0 {
            return PartBuf::from_raw(None, None, 0, 0);
        }
        let cap = round_up(len);
        self.used.store(true, std::sync::atomic::Ordering::Relaxed);
        let raw = if cap == self.capacity {
            self.free.lock().pop().unwrap_or_else(|| Raw::new(cap))
        } else {
            Raw::new(cap)
        };
        PartBuf::from_raw(Some(raw), Some(self.clone()), len, split)
    }

    fn put(&self, raw: Raw) {
        if raw.cap == self.capacity {
            let mut free = self.free.lock();
            if free.len() < self.max_free {
                free.push(raw);
            }
        }
    }

    /// Free the spare buffers if none was taken since the last call (call it every second
    /// or so: buffers survive a burst's pauses, not an idle mount).
    pub fn trim(&self) {
        if !self.used.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.free.lock().clear();
        }
    }

    /// Buffers waiting for reuse (for tests).
    pub fn free_count(&self) -> usize {
        self.free.lock().len()
    }
}

fn round_up(len: usize) -> usize {
    len.div_ceil(ALIGN).max(1) * ALIGN
}

/// The memory of one part, shared by its writer (the fetch) and its readers. The part's
/// bytes `split..part_len` (the tail) are received first, then `0..split` (the head); a
/// part received in order has `split == part_len`, an empty tail.
struct Shared {
    raw: Option<Raw>,
    part_len: usize,
    split: usize,
    /// Bytes of the head written so far (from 0); they never change afterwards.
    head: AtomicUsize,
    /// Bytes of the tail written so far (from `split`); never changed afterwards either.
    tail: AtomicUsize,
    grown: Notify,
    pool: Option<Arc<PartPool>>,
}

// SAFETY: one writer appends past `head` or `tail` (through `PartBuf`, which is not Clone);
// readers only look at bytes below a `head` (or `split + tail`) they loaded with Acquire,
// which the writer stored with Release after writing them. The two never touch the same
// bytes.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// Bytes `range` of the part; they must have been seen written (see the note above).
    fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        match &self.raw {
            // SAFETY: written and never changed again, see the Send/Sync note.
            Some(raw) => unsafe {
                std::slice::from_raw_parts(raw.ptr.as_ptr().add(range.start), range.len())
            },
            None => &[],
        }
    }

    /// Have bytes `a..b` of the part arrived? (Across the split only once the head is in.)
    fn has(&self, a: usize, b: usize) -> bool {
        let head = self.head.load(Ordering::Acquire);
        let tail_from = if head == self.split { 0 } else { self.split };
        b <= head || (a >= tail_from && b <= self.split + self.tail.load(Ordering::Acquire))
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let (Some(raw), Some(pool)) = (self.raw.take(), self.pool.take()) {
            pool.put(raw);
        }
    }
}

/// A part being received: appended to by the fetch while [`PartView`]s already read the
/// bytes that arrived (a reader needs the first KiB of a part, not all 8 MiB of it), then
/// frozen into [`Bytes`]. The memory returns to the pool when the last user lets go.
pub struct PartBuf {
    shared: Arc<Shared>,
}

impl PartBuf {
    fn from_raw(raw: Option<Raw>, pool: Option<Arc<PartPool>>, len: usize, split: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                raw,
                part_len: len,
                split,
                head: AtomicUsize::new(0),
                tail: AtomicUsize::new(0),
                grown: Notify::new(),
                pool,
            }),
        }
    }

    /// Append `data` to the tail until it is complete, then to the head; panics if it does
    /// not fit in the part (or straddles the two: the tail and the head come from separate
    /// requests).
    pub fn push(&mut self, data: &[u8]) {
        let sh = &self.shared;
        let tail = sh.tail.load(Ordering::Relaxed);
        let (at, end, counter) = if sh.split + tail < sh.part_len {
            (sh.split + tail, sh.part_len, &sh.tail)
        } else {
            (sh.head.load(Ordering::Relaxed), sh.split, &sh.head)
        };
        let Some(raw) = sh.raw.as_ref().filter(|_| at + data.len() <= end) else {
            assert!(data.is_empty(), "part buffer overflow");
            return;
        };
        // SAFETY: in bounds (checked above), past every byte a reader may look at.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), raw.ptr.as_ptr().add(at), data.len());
        }
        counter.fetch_add(data.len(), Ordering::Release);
        sh.grown.notify_waiters();
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.shared.head.load(Ordering::Relaxed) + self.shared.tail.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A handle for readers of the bytes received so far (and to come).
    pub fn view(&self) -> PartView {
        PartView {
            shared: self.shared.clone(),
        }
    }

    /// The whole part; panics unless every byte is in.
    pub fn freeze(self) -> Bytes {
        let len = self.shared.part_len;
        assert_eq!(self.len(), len, "part frozen before all of it arrived");
        Bytes::from_owner(Window {
            shared: self.shared,
            range: 0..len,
        })
    }
}

/// Bytes of a part that have arrived, as an owner for [`Bytes`].
struct Window {
    shared: Arc<Shared>,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        self.shared.bytes(self.range.clone())
    }
}

/// A reader's view of a part still being received (the bytes that arrived so far).
#[derive(Clone)]
pub struct PartView {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PartView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sh = &self.shared;
        write!(
            f,
            "PartView({} of {} head bytes, {} of {} tail bytes)",
            sh.head.load(Ordering::Relaxed),
            sh.split,
            sh.tail.load(Ordering::Relaxed),
            sh.part_len - sh.split
        )
    }
}

impl PartView {
    /// Bytes `range` of the part, without a copy, once they have all arrived.
    pub fn window(&self, range: std::ops::Range<usize>) -> Option<Bytes> {
        self.shared.has(range.start, range.end).then(|| {
            Bytes::from_owner(Window {
                shared: self.shared.clone(),
                range,
            })
        })
    }

    /// Resolves after more bytes arrive. Create it before calling [`Self::window`]:
    /// it sees every `notify_waiters` from its creation on, polled or not (tokio's
    /// guarantee), so bytes arriving in between are not missed.
    pub fn grown(&self) -> tokio::sync::futures::Notified<'_> {
        self.shared.grown.notified()
    }
}

/// Is `bytes` laid out so that `O_DIRECT` can write it (aligned start)?
pub fn is_aligned(bytes: &[u8]) -> bool {
    (bytes.as_ptr() as usize) % ALIGN == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_filled_and_recycled() {
        let pool = PartPool::new(3 * ALIGN as u64 - 7, 1);
        let mut a = pool.get(3 * ALIGN - 7);
        assert!(a.is_empty());
        a.push(b"hello ");
        a.push(b"world");
        assert_eq!(a.len(), 11);
        a.push(&vec![b'.'; 3 * ALIGN - 7 - 11]);
        let frozen = a.freeze();
        assert_eq!(frozen.len(), 3 * ALIGN - 7);
        assert_eq!(&frozen[..12], b"hello world.");
        assert!(is_aligned(&frozen));
        let slice = frozen.slice(6..11);
        drop(frozen);
        assert_eq!(pool.free_count(), 0, "a slice still holds the buffer");
        assert_eq!(&slice[..], b"world");
        drop(slice);
        assert_eq!(pool.free_count(), 1);
        // Reused, and the pool never grows past max_free.
        let b = pool.get(3 * ALIGN);
        assert_eq!(pool.free_count(), 0);
        let c = pool.get(2 * ALIGN + 1);
        drop(b);
        drop(c);
        assert_eq!(pool.free_count(), 1);
        // Another size is not pooled.
        drop(pool.get(100 * ALIGN));
        assert_eq!(pool.free_count(), 1);
        // Trimmed only after a quiet interval.
        pool.trim();
        assert_eq!(pool.free_count(), 1, "used since the last trim");
        pool.trim();
        assert_eq!(pool.free_count(), 0);
    }

    #[tokio::test]
    async fn readers_see_the_bytes_received_so_far_and_are_woken_by_more() {
        let pool = PartPool::new(6, 1);
        let mut w = pool.get(6);
        let r = w.view();
        assert!(r.window(0..1).is_none());
        w.push(b"abc");
        let early = r.window(0..3).unwrap();
        assert_eq!(&early[..], b"abc");
        assert!(r.window(2..4).is_none());
        let grown = r.grown();
        let waiter = tokio::spawn({
            let r = r.clone();
            async move {
                loop {
                    let g = r.grown();
                    if let Some(b) = r.window(0..6) {
                        return b;
                    }
                    g.await;
                }
            }
        });
        w.push(b"def");
        grown.await; // created before the push: not missed
        assert_eq!(&waiter.await.unwrap()[..], b"abcdef");
        let whole = w.freeze();
        assert_eq!(&whole[..], b"abcdef");
        assert_eq!(&early[..], b"abc", "an early prefix never changes");
        drop((whole, early, r));
        assert_eq!(pool.free_count(), 1, "the memory went back to the pool");
        assert!(pool.get(0).is_empty());
    }

    #[test]
    fn a_part_received_tail_first_serves_its_tail_before_its_head() {
        let pool = PartPool::new(2 * ALIGN as u64, 1);
        let mut w = pool.get_split(10, 4);
        let r = w.view();
        w.push(b"efg");
        assert_eq!(&r.window(4..7).unwrap()[..], b"efg");
        assert_eq!(&r.window(5..6).unwrap()[..], b"f");
        assert!(r.window(0..1).is_none(), "the head has not arrived");
        assert!(r.window(6..8).is_none(), "past what arrived of the tail");
        w.push(b"hij");
        w.push(b"ab");
        assert!(
            r.window(0..5).is_none(),
            "a window across head and tail needs both"
        );
        w.push(b"cd");
        assert_eq!(&r.window(0..10).unwrap()[..], b"abcdefghij");
        assert_eq!(&w.freeze()[..], b"abcdefghij");
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn a_push_across_the_end_of_the_tail_is_caught() {
        let pool = PartPool::new(ALIGN as u64, 1);
        let mut a = pool.get_split(10, 4);
        a.push(b"efghijab");
    }

    #[test]
    #[should_panic(expected = "before all of it arrived")]
    fn an_incomplete_part_cannot_be_frozen() {
        let pool = PartPool::new(ALIGN as u64, 1);
        let mut a = pool.get_split(10, 4);
        a.push(b"efghij");
        a.freeze();
    }

    #[test]
    #[should_panic(expected = "overflow")]
    fn overflow_is_caught() {
        let pool = PartPool::new(ALIGN as u64, 1);
        let mut a = pool.get(ALIGN);
        a.push(&vec![0u8; ALIGN + 1]);
    }
}
