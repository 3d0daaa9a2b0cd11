//! How the kernel serves each open file: FUSE passthrough, ordinary FUSE reads through the
//! page cache, or FUSE direct I/O; the adapter asks [`IoModes`] at every open and release.
//!
//! These are the kernel's rules, not the filesystem's, and breaking one is an EIO for the
//! user's open(2): the core (`tree.rs`) says what an open file is (finalized or not,
//! unchanged since the last open, large), and this module turns that into what the kernel
//! accepts, keeping the count of every inode's open handles by mode that this needs.
//!
//! The kernel puts an inode either in "cached" I/O mode or in passthrough mode, and refuses
//! (EIO to the user) an open that disagrees with the inode's current mode, and a passthrough
//! open must reuse the inode's backing id. So a finalized object is handed to the kernel
//! with passthrough only when no cached-mode handle of that inode is open, and while
//! passthrough handles are open every further open reuses their backing file. Which open
//! flags go with which mode is the kernel's rule too: see [`open_flags`] (no
//! FOPEN_KEEP_CACHE with passthrough; the backing file's page cache serves instead). Where
//! passthrough is unavailable (old kernel, no CAP_SYS_ADMIN), opens fall back to ordinary
//! reads with one log line. While an inode is in passthrough mode its backing file is read
//! ahead of the kernel's reads (`warm_ahead.rs`).
//!
//! FUSE direct I/O is for the opens the core marks `direct_io` (`--direct-io`: large objects
//! not cached yet), and only where the kernel lets direct I/O files be mmap'd
//! (FUSE_DIRECT_IO_ALLOW_MMAP, kernel 6.6 on): elsewhere an mmap of such a file fails with
//! ENODEV, so those opens use the page cache instead.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::Arc;

use fuser::{BackingId, FopenFlags, InitFlags, KernelConfig};
use tracing::{debug, info, warn};

use super::tree::Opened;
use super::warm_ahead::{WarmGuard, Warmer};

/// Whether this process holds CAP_SYS_ADMIN in its effective set (bit 21 of `CapEff` in
/// /proc/self/status). Unknown counts as yes: the first passthrough open then tells.
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_none_or(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Open flags the kernel accepts together with FOPEN_PASSTHROUGH: `FOPEN_PASSTHROUGH_MASK`
/// in fs/fuse/iomode.c (kernel 6.9 on; the EIO seen here on 6.18 is this rule). `fuse_file_passthrough_open`
/// refuses any other flag with EINVAL, which `fuse_file_io_open` turns into EIO for the
/// user's open(2) ("Using incorrect open mode is a server mistake"). The kernel's comment
/// on the mask: "FOPEN_PASSTHROUGH mode should not co-exist with any users of the fuse
/// inode page cache, so FOPEN_KEEP_CACHE is a strange and undesired combination." That is
/// the EIO an earlier attempt here saw on 6.18.
const PASSTHROUGH_MASK: FopenFlags = FopenFlags::FOPEN_PASSTHROUGH
    .union(FopenFlags::FOPEN_DIRECT_IO)
    .union(FopenFlags::FOPEN_PARALLEL_DIRECT_WRITES)
    .union(FopenFlags::FOPEN_NOFLUSH);

/// Reply flags of a file open.
///
/// - FOPEN_NOFLUSH always: `flush` has nothing to do on a read-only mount, so `close(2)`
///   need not wait for a FLUSH round trip. Allowed in both modes.
/// - Cached mode: FOPEN_KEEP_CACHE when the object is unchanged since the previous open
///   (same ETag), so the kernel keeps the inode's page cache across opens; without it
///   `fuse_open` calls `invalidate_inode_pages2` (fs/fuse/file.c).
/// - Passthrough: never FOPEN_KEEP_CACHE (see [`PASSTHROUGH_MASK`]). Nothing is lost by
///   that: passthrough reads and mmaps go to the backing file, the finalized `.done` file
///   in the cache directory, so an unchanged object keeps *that* file's page cache across
///   opens; the FUSE inode's own page cache, which the open invalidates, is not used.
pub(super) fn open_flags(passthrough: bool, keep_cache: bool) -> FopenFlags {
    let mut flags = FopenFlags::FOPEN_NOFLUSH;
    if keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if passthrough {
        flags &= PASSTHROUGH_MASK;
    }
    flags
}

/// How the kernel is to serve one open file.
pub(super) enum OpenAs {
    /// FUSE passthrough: the kernel reads the backing file itself.
    Passthrough(Arc<BackingId>),
    /// Ordinary FUSE reads, through the inode's page cache.
    PageCache,
    /// FUSE direct I/O (FOPEN_DIRECT_IO): every read a FUSE request, no page cache.
    DirectIo,
    /// Refused with ESTALE: the object changed while passthrough handles of the old
    /// version are open.
    Stale,
}

/// Per-inode I/O mode as the kernel sees it.
#[derive(Default)]
struct IoMode {
    cached_opens: usize,
    passthrough: Option<PassthroughMode>,
}

struct PassthroughMode {
    backing: Arc<BackingId>,
    handles: usize,
    /// Reads the backing file ahead of the kernel's reads until the last handle closes.
    /// Not done for finalized objects read in cached mode: there the mount's CPU is the
    /// limit, and reading ahead made a warm `cp` slower (576-784 vs 967-970 MiB/s,
    /// `--no-passthrough`, 2 rounds of `scripts/bench/ab.sh`).
    _warm: Option<WarmGuard>,
}

/// The I/O mode of every open inode, and what the kernel granted at INIT.
pub(super) struct IoModes {
    /// Whether to try FUSE passthrough (`--no-passthrough` turns it off).
    want_passthrough: bool,
    /// Passthrough was negotiated at INIT and has not failed yet.
    passthrough_ok: bool,
    /// The kernel lets direct I/O files be mmap'd (FUSE_DIRECT_IO_ALLOW_MMAP, negotiated at
    /// INIT): only then are opens the core marks `direct_io` given FOPEN_DIRECT_IO.
    direct_io_ok: bool,
    by_ino: HashMap<u64, IoMode>,
    /// fh -> (ino, opened in passthrough mode)
    by_fh: HashMap<u64, (u64, bool)>,
    /// Reads finalized files ahead of their readers.
    warmer: Warmer,
}

impl IoModes {
    pub(super) fn new(want_passthrough: bool) -> Self {
        Self {
            want_passthrough,
            passthrough_ok: false,
            direct_io_ok: false,
            by_ino: HashMap::new(),
            by_fh: HashMap::new(),
            warmer: Warmer::new(),
        }
    }

    /// At INIT: ask the kernel for what direct I/O and passthrough need, and remember what
    /// it granted. `want_direct_io`: the mount opens large objects with direct I/O.
    pub(super) fn negotiate(&mut self, config: &mut KernelConfig, want_direct_io: bool) {
        let caps = config.capabilities();
        // Direct I/O files can be mmap'd shared only with this flag (kernel 6.6 on); without
        // it such an mmap fails with ENODEV, so every file then uses the page cache.
        self.direct_io_ok = caps.contains(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            && config
                .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
                .is_ok();
        match (want_direct_io, self.direct_io_ok) {
            (true, true) => info!("direct I/O for large objects not yet cached"),
            (true, false) => {
                warn!("--direct-io: this kernel cannot mmap direct I/O files; using the page cache")
            }
            (false, _) => {}
        }
        if self.want_passthrough && !has_cap_sys_admin() {
            // The kernel registers backing files only for CAP_SYS_ADMIN
            // (FUSE_DEV_IOC_BACKING_OPEN); a user mount would fail its first passthrough open.
            info!("FUSE passthrough needs CAP_SYS_ADMIN (a mount by root); using ordinary reads");
        } else if self.want_passthrough && caps.contains(InitFlags::FUSE_PASSTHROUGH) {
            // Depth 2 lets the backing files live on a stacked filesystem (overlayfs).
            match config
                .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
                .map_err(|_| ())
                .and_then(|_| config.set_max_stack_depth(2).map_err(|_| ()))
            {
                Ok(_) => {
                    self.passthrough_ok = true;
                    info!("FUSE passthrough enabled for finalized objects");
                }
                Err(()) => info!("FUSE passthrough not available; using ordinary reads"),
            }
        } else if self.want_passthrough {
            info!("kernel has no FUSE passthrough; using ordinary reads");
        }
    }

    /// Decide how the kernel serves `opened`, a new handle of inode `ino`, and count it.
    /// `open_backing` registers a finalized file with the kernel as a backing file.
    pub(super) fn open(
        &mut self,
        ino: u64,
        opened: &mut Opened,
        open_backing: impl FnOnce(&File) -> io::Result<BackingId>,
    ) -> OpenAs {
        let mode = self.by_ino.entry(ino).or_default();
        // The inode is already in passthrough mode: every open must join it, with the same
        // backing file. That is only right if this open is of the same finalized version.
        if let Some(pt) = &mut mode.passthrough {
            if opened.finalized.is_some() && opened.keep_cache {
                pt.handles += 1;
                self.by_fh.insert(opened.fh, (ino, true));
                return OpenAs::Passthrough(pt.backing.clone());
            }
            // A new version while old passthrough handles are open: the kernel cannot
            // mix modes on one inode, and serving the old file would be wrong.
            warn!(
                ino,
                "object changed while passthrough handles of the old version are open; close them first"
            );
            return OpenAs::Stale;
        }
        if let Some(file) = opened.finalized.take() {
            if self.passthrough_ok && mode.cached_opens == 0 {
                match open_backing(&file) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        mode.passthrough = Some(PassthroughMode {
                            backing: id.clone(),
                            handles: 1,
                            _warm: self.warmer.start(file),
                        });
                        self.by_fh.insert(opened.fh, (ino, true));
                        debug!(ino, "open with passthrough");
                        return OpenAs::Passthrough(id);
                    }
                    Err(e) => {
                        self.passthrough_ok = false;
                        warn!("FUSE passthrough failed ({e}); using ordinary reads from now on");
                    }
                }
            }
        }
        mode.cached_opens += 1;
        self.by_fh.insert(opened.fh, (ino, false));
        if opened.direct_io && self.direct_io_ok {
            OpenAs::DirectIo
        } else {
            OpenAs::PageCache
        }
    }

    /// Handle `fh` closed; the last passthrough handle of an inode closes its backing id.
    pub(super) fn release(&mut self, fh: u64) {
        let Some((ino, passthrough)) = self.by_fh.remove(&fh) else {
            return;
        };
        let Some(mode) = self.by_ino.get_mut(&ino) else {
            return;
        };
        if passthrough {
            if let Some(pt) = &mut mode.passthrough {
                pt.handles -= 1;
                if pt.handles == 0 {
                    // Dropping the last Arc closes the backing id.
                    mode.passthrough = None;
                }
            }
        } else {
            mode.cached_opens = mode.cached_opens.saturating_sub(1);
        }
        if mode.cached_opens == 0 && mode.passthrough.is_none() {
            self.by_ino.remove(&ino);
        }
    }

    /// Whether the inode's one open handle reads through its page cache: only then may
    /// pages behind that reader be dropped (`drop_behind.rs`).
    pub(super) fn sole_cached_open(&self, ino: u64) -> bool {
        self.by_ino
            .get(&ino)
            .is_some_and(|m| m.cached_opens == 1 && m.passthrough.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_opens_carry_only_flags_the_kernel_allows() {
        for keep in [false, true] {
            let pt = open_flags(true, keep) | FopenFlags::FOPEN_PASSTHROUGH;
            assert!(PASSTHROUGH_MASK.contains(pt), "{pt:?}");
            assert!(!pt.contains(FopenFlags::FOPEN_KEEP_CACHE));
        }
        assert!(open_flags(false, true).contains(FopenFlags::FOPEN_KEEP_CACHE));
        assert!(!open_flags(false, false).contains(FopenFlags::FOPEN_KEEP_CACHE));
    }

    fn opened(fh: u64, finalized: bool, direct_io: bool) -> Opened {
        Opened {
            fh,
            keep_cache: true,
            finalized: finalized.then(|| tempfile::tempfile().unwrap()),
            direct_io,
            attrs_stale: false,
        }
    }

    fn no_backing(_: &File) -> io::Result<BackingId> {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    }

    /// FOPEN_DIRECT_IO only where the kernel can mmap direct I/O files.
    #[test]
    fn direct_io_only_when_the_kernel_allows_its_mmap() {
        let mut io = IoModes::new(false);
        assert!(matches!(
            io.open(1, &mut opened(1, false, true), no_backing),
            OpenAs::PageCache
        ));
        io.direct_io_ok = true;
        assert!(matches!(
            io.open(2, &mut opened(2, false, true), no_backing),
            OpenAs::DirectIo
        ));
        assert!(matches!(
            io.open(3, &mut opened(3, false, false), no_backing),
            OpenAs::PageCache
        ));
    }

    /// A failed backing open serves that open from the page cache and turns passthrough off
    /// for the rest of the mount; no backing open is tried while a cached handle is open.
    #[test]
    fn failed_passthrough_falls_back_to_the_page_cache_for_good() {
        let mut io = IoModes::new(true);
        io.passthrough_ok = true;
        let mut tried = 0;
        let mut counting = |f: &File| {
            tried += 1;
            no_backing(f)
        };
        assert!(matches!(
            io.open(7, &mut opened(1, true, false), &mut counting),
            OpenAs::PageCache
        ));
        assert!(!io.passthrough_ok);
        assert!(matches!(
            io.open(8, &mut opened(2, true, false), &mut counting),
            OpenAs::PageCache
        ));
        assert_eq!(tried, 1);
    }

    /// Drop-behind asks whether a handle is its inode's only one; release counts down.
    #[test]
    fn sole_cached_open_follows_opens_and_releases() {
        let mut io = IoModes::new(false);
        io.open(5, &mut opened(1, false, false), no_backing);
        assert!(io.sole_cached_open(5));
        io.open(5, &mut opened(2, false, false), no_backing);
        assert!(!io.sole_cached_open(5));
        io.release(1);
        assert!(io.sole_cached_open(5));
        io.release(2);
        assert!(!io.sole_cached_open(5));
        assert!(io.by_ino.is_empty() && io.by_fh.is_empty());
    }
}
