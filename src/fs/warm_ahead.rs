//! Reading a finalized object's file ahead of the readers the kernel serves from it.
//!
//! Why: a finalized object is read through FUSE passthrough, so the kernel reads its cache
//! file with the same read-ahead a local `cp` gets: one window (`read_ahead_kb`) at a time,
//! a shallow queue. The test VM's disk delivers much more to a deeper queue: a 1 GiB file
//! read with `dd bs=128K` after drop_caches ran at 546-766 MiB/s, and 1347-2104 with this
//! module's scheme running beside it (a Python prototype, 4+4 interleaved rounds). rclone
//! and s3fs, which serve their cache files through FUSE from several threads, get some of
//! that depth by accident; s3fs's warm `cp` beat a local `cp` in the full bench.
//!
//! How: with passthrough the mount never sees the reads, so it cannot know where a reader
//! is. The page cache tells it. The file is split into chunks ([`CHUNK`]); the first page
//! of each chunk is its probe. The chunks ahead of the reader are asked for with
//! `POSIX_FADV_WILLNEED` (asynchronous: the call queues the reads and returns), all but
//! their probe pages. When a reader gets to a chunk it faults the probe in (a one-page
//! read), and [`WarmAhead::step`] sees it with mincore(2) and asks for the chunks up to
//! [`LEAD`] beyond it. So the file is read at most [`LEAD`] plus a chunk ahead of the
//! furthest reader, and not at all for one that stops reading. Prefetching starts only once
//! two consecutive probes are in (a sequential reader 1-2 chunks in; a random reader rarely
//! hits two probes a chunk apart). A reader that starts far into the file past the probes
//! being watched gets the kernel's read-ahead only.
//!
//! One thread ([`Warmer`]) steps the files of all passthrough inodes, each polled every
//! 1 ms while its reader moves and backing off to [`MAX_POLL`] while it does not. The page
//! cache it fills is the kernel's to reclaim, not the mount's memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

/// Probe spacing and unit of prefetch: 32 MiB. A probe costs the reader one page read
/// from disk (a fraction of a millisecond) per chunk, 2-3 % of the time a chunk takes at
/// 1.5 GiB/s; with 16 MiB chunks (and a 64 MiB lead) the prototype ran at 1135-1522 MiB/s
/// against 1347-1987 with 32.
const CHUNK: u64 = 32 << 20;
/// How far ahead of the furthest reader the file is asked for: 128 MiB, four chunks in
/// flight.
const LEAD: u64 = 128 << 20;
/// A file's poll interval while its reader reached a new probe within [`BUSY`]. A poll
/// that comes late leaves the chunks asked for to drain with no new ones behind them: with
/// the interval doubling after every empty poll up to 1 s, warm `cp` of 1 GiB ran at
/// 904-1414 MiB/s against 1297-1830 with a 16 ms cap (6 interleaved rounds of
/// `scripts/bench/ab.sh`); this way, 1240-1725 against 1332-1625 (3 rounds).
const MIN_POLL: Duration = Duration::from_millis(1);
/// How long after its last new probe a file counts as being read: 100 ms, the time a chunk
/// takes at 320 MiB/s. A slower reader is not waiting on the disk, and its interval
/// doubles after each empty poll: its next probe is seen at most about a chunk's time
/// late, with four chunks of lead.
const BUSY: Duration = Duration::from_millis(100);
/// The longest poll interval, for files held open but not read: 1 s, so a thousand idle
/// handles cost a few thousand mincore calls a second.
const MAX_POLL: Duration = Duration::from_secs(1);

/// A read-only shared mapping of a file, for mincore(2) only: nothing is read through it,
/// so it faults nothing in.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is only passed to mincore and munmap, which any thread may call.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(file: &File, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a new read-only shared mapping of a descriptor we own; the pointer is
        // never dereferenced.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr, len })
    }

    /// Whether each page of `offset..offset + len` (page-aligned, within the file) is in
    /// the page cache: one byte per page, bit 0. All zero if mincore fails.
    fn residency(&self, offset: u64, len: u64) -> Vec<u8> {
        let mut vec = vec![0u8; len.div_ceil(page_size()) as usize];
        // SAFETY: a range of our mapping (offset + len <= self.len); mincore writes one
        // byte per page into `vec`, which has room for exactly that many.
        let rc = unsafe {
            libc::mincore(
                self.ptr.cast::<u8>().add(offset as usize).cast(),
                len as usize,
                vec.as_mut_ptr(),
            )
        };
        if rc != 0 {
            vec.fill(0);
        }
        vec
    }

    /// Whether the page at `offset` is in the page cache.
    fn resident(&self, offset: u64) -> bool {
        self.residency(offset, 1)[0] & 1 == 1
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped, once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The most one `POSIX_FADV_WILLNEED` reads. The kernel reads at most the larger of the
/// device's largest request (`max_sectors_kb`) and its read-ahead window (`read_ahead_kb`)
/// per call and drops the rest of the range, so each chunk is asked for in pieces of this
/// size. Both come from sysfs for the file's device (a partition's are its disk's); 128
/// KiB, the kernel's default window, when they cannot be read.
fn advice_size(file: &File) -> u64 {
    let Ok(meta) = file.metadata() else {
        return 128 << 10;
    };
    let dev = meta.dev();
    let base = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    let kib = |name: &str| {
        ["queue", "../queue"].iter().find_map(|q| {
            std::fs::read_to_string(format!("{base}/{q}/{name}"))
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let kb = kib("read_ahead_kb")
        .max(kib("max_sectors_kb"))
        .unwrap_or(128);
    (kb << 10).clamp(128 << 10, CHUNK)
}

/// What one [`WarmAhead::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A reader got further; more of the file was asked for.
    Advanced,
    /// No reader got to a new probe.
    Idle,
    /// The whole file has been asked for: nothing left to do.
    Done,
}

/// The read-ahead state of one finalized file.
pub struct WarmAhead {
    file: File,
    map: Mapping,
    size: u64,
    chunk: u64,
    /// [`LEAD`] in chunks.
    lead: u64,
    piece: u64,
    /// The furthest chunk whose probe, and the previous chunk's, a reader faulted in.
    seen: u64,
    /// Chunks below this have been asked for (all but their probe pages).
    front: u64,
}

impl WarmAhead {
    /// `None` for a file of fewer than three chunks: the kernel's own read-ahead has read
    /// most of it before two probes are in.
    pub fn new(file: File) -> io::Result<Option<Self>> {
        Self::with_geometry(file, CHUNK, LEAD)
    }

    fn with_geometry(file: File, chunk: u64, lead: u64) -> io::Result<Option<Self>> {
        let size = file.metadata()?.len();
        if size < 3 * chunk {
            return Ok(None);
        }
        let map = Mapping::new(&file, size)?;
        let piece = advice_size(&file).min(chunk);
        Ok(Some(Self {
            file,
            map,
            size,
            chunk,
            lead: lead / chunk,
            piece,
            seen: 0,
            front: 0,
        }))
    }

    fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk)
    }

    /// Looks at the probes a reader may have reached since the last step and asks for the
    /// file up to [`LEAD`] beyond the furthest.
    pub fn step(&mut self) -> Step {
        let n = self.chunks();
        if self.front >= n {
            return Step::Done;
        }
        let probe = |j: u64| self.map.resident(j * self.chunk);
        let last = (self.seen + self.lead + 2).min(n - 1);
        let Some(j) = (self.seen + 1..=last)
            .rev()
            .find(|&j| probe(j) && probe(j - 1))
        else {
            return Step::Idle;
        };
        self.seen = j;
        let to = (j + 1 + self.lead).min(n);
        for c in self.front.max(j)..to {
            self.advise(c);
        }
        self.front = self.front.max(to);
        Step::Advanced
    }

    /// Ask for chunk `c` but its probe page, skipping pieces already in the page cache:
    /// WILLNEED walks every page it is given, and a file read again while still cached
    /// (a hot `cp`) would pay that for nothing.
    fn advise(&self, c: u64) {
        let page = page_size();
        let start = c * self.chunk + page;
        let end = ((c + 1) * self.chunk).min(self.size);
        let cached = self.map.residency(start, end - start);
        let mut off = start;
        while off < end {
            let len = self.piece.min(end - off);
            let pages = &cached[((off - start) / page) as usize..][..len.div_ceil(page) as usize];
            if pages.iter().any(|p| p & 1 == 0) {
                // SAFETY: posix_fadvise on a descriptor we own; advice only.
                unsafe {
                    libc::posix_fadvise(
                        self.file.as_raw_fd(),
                        off as libc::off_t,
                        len as libc::off_t,
                        libc::POSIX_FADV_WILLNEED,
                    )
                };
            }
            off += len;
        }
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).unwrap_or(4096)
}

/// Stops its file's read-ahead when dropped (the last passthrough handle closed).
pub struct WarmGuard(Arc<AtomicBool>);

impl Drop for WarmGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// A file being read ahead, and when to look at its probes next.
struct Watched {
    w: WarmAhead,
    open: Arc<AtomicBool>,
    poll: Duration,
    next: Instant,
    /// When its reader last reached a new probe.
    moved: Instant,
}

/// The thread that steps the read-ahead of every file being read through passthrough.
pub struct Warmer {
    tx: Sender<Watched>,
}

impl Warmer {
    /// Starts the thread; it ends when the `Warmer` is dropped.
    pub fn new() -> Self {
        let (tx, rx) = channel::<Watched>();
        std::thread::Builder::new()
            .name("warm-ahead".into())
            .spawn(move || {
                let mut active: Vec<Watched> = Vec::new();
                loop {
                    let got = match active.iter().map(|f| f.next).min() {
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                        Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
                    };
                    match got {
                        Ok(f) => active.push(f),
                        // The adapter, and so every guard, is gone.
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                    let now = Instant::now();
                    active.retain_mut(|f| {
                        if !f.open.load(Ordering::Relaxed) {
                            return false;
                        }
                        if f.next > now {
                            return true;
                        }
                        match f.w.step() {
                            Step::Advanced => f.moved = now,
                            Step::Idle => {}
                            Step::Done => return false,
                        }
                        f.poll = if now - f.moved < BUSY {
                            MIN_POLL
                        } else {
                            (f.poll * 2).min(MAX_POLL)
                        };
                        f.next = now + f.poll;
                        true
                    });
                }
            })
            .expect("spawn the warm-ahead thread");
        Self { tx }
    }

    /// Read `file` ahead of its readers until the guard is dropped. `None` when the file is
    /// too small to need it or cannot be mapped (logged).
    pub fn start(&self, file: File) -> Option<WarmGuard> {
        let w = match WarmAhead::new(file) {
            Ok(w) => w?,
            Err(e) => {
                debug!("no read-ahead for a finalized file: {e}");
                return None;
            }
        };
        let open = Arc::new(AtomicBool::new(true));
        let watched = Watched {
            w,
            open: open.clone(),
            poll: MIN_POLL,
            next: Instant::now(),
            moved: Instant::now(),
        };
        self.tx.send(watched).ok()?;
        Some(WarmGuard(open))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    const MIB: u64 = 1 << 20;

    /// A 24 MiB file on a disk-backed filesystem (the build directory: /tmp may be tmpfs,
    /// whose pages cannot be dropped), written, synced and dropped from the page cache.
    fn cold_file() -> (tempfile::TempDir, File) {
        let base = concat!(env!("CARGO_MANIFEST_DIR"), "/target");
        std::fs::create_dir_all(base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![7u8; (24 * MIB) as usize]).unwrap();
        f.sync_all().unwrap();
        // SAFETY: advice on our own descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let f = File::open(&path).unwrap();
        // The test's reads fault in exactly their pages: no read-ahead on this descriptor.
        // SAFETY: as above.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        (dir, f)
    }

    /// Pages of `range` in the page cache.
    fn resident_pages(map: &Mapping, range: std::ops::Range<u64>) -> u64 {
        range.step_by(4096).filter(|&o| map.resident(o)).count() as u64
    }

    /// Waits up to 5 s for the asynchronous reads asked for to land: `want` pages of `range`.
    fn settle(map: &Mapping, range: std::ops::Range<u64>, want: u64) -> u64 {
        let t0 = Instant::now();
        loop {
            let got = resident_pages(map, range.clone());
            if got >= want || t0.elapsed() > Duration::from_secs(5) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_sequential_reader_gets_the_file_read_a_lead_ahead_and_no_further() {
        let (_dir, f) = cold_file();
        let reader = f.try_clone().unwrap();
        // 1 MiB chunks (256 pages), a 4 MiB lead: 24 chunks.
        let mut w = WarmAhead::with_geometry(f, MIB, 4 * MIB).unwrap().unwrap();
        let check = Mapping::new(&reader, 24 * MIB).unwrap();
        assert_eq!(
            resident_pages(&check, 0..24 * MIB),
            0,
            "the page cache was not dropped"
        );
        let mut page = [0u8; 4096];
        let mut read = |c: u64| reader.read_exact_at(&mut page, c * MIB).unwrap();

        // Nothing while a reader is in chunk 0, nor for a random read at one probe alone.
        read(0);
        assert_eq!(w.step(), Step::Idle);
        read(6);
        assert_eq!(w.step(), Step::Idle);
        assert_eq!(resident_pages(&check, 0..24 * MIB), 2);

        // The reader gets to chunk 1: chunks 1-5 are asked for, all but their probes.
        read(1);
        assert_eq!(w.step(), Step::Advanced);
        let want = 5 * 255;
        assert!(
            settle(&check, MIB..6 * MIB, want) >= want,
            "chunks 1-5 were not read"
        );
        for c in 2..6 {
            assert!(!check.resident(c * MIB), "probe {c} was read ahead");
        }
        assert_eq!(
            resident_pages(&check, 6 * MIB..24 * MIB),
            1,
            "read beyond the lead"
        );
        assert_eq!(w.step(), Step::Idle, "no reader moved");

        // The reader gets to chunk 4: the lead moves to chunk 8.
        for c in 2..=4 {
            read(c);
        }
        assert_eq!(w.step(), Step::Advanced);
        let want = 3 * 255 + 1;
        assert!(
            settle(&check, 6 * MIB..9 * MIB, want) >= want,
            "chunks 6-8 were not read"
        );
        assert_eq!(
            resident_pages(&check, 9 * MIB..24 * MIB),
            0,
            "read beyond the lead"
        );

        // Once the last chunk has been asked for, the file is done.
        for c in 5..24 {
            read(c);
        }
        while w.step() == Step::Advanced {}
        assert_eq!(w.step(), Step::Done);
    }

    #[test]
    fn small_files_get_no_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; (3 * MIB - 1) as usize]).unwrap();
        let f = File::open(&path).unwrap();
        assert!(WarmAhead::with_geometry(f, MIB, 4 * MIB).unwrap().is_none());
    }
}
