//! How the kernel serves each open file: FUSE passthrough, or ordinary FUSE reads.
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

use std::collections::HashMap;
use std::sync::Arc;

use fuser::{BackingId, FopenFlags};

use super::warm_ahead::WarmGuard;

/// Whether this process holds CAP_SYS_ADMIN in its effective set (bit 21 of `CapEff` in
/// /proc/self/status). Unknown counts as yes: the first passthrough open then tells.
pub(super) fn has_cap_sys_admin() -> bool {
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

/// Per-inode I/O mode as the kernel sees it.
#[derive(Default)]
pub(super) struct IoMode {
    pub(super) cached_opens: usize,
    pub(super) passthrough: Option<PassthroughMode>,
}

pub(super) struct PassthroughMode {
    pub(super) backing: Arc<BackingId>,
    pub(super) handles: usize,
    /// Reads the backing file ahead of the kernel's reads until the last handle closes.
    /// Not done for finalized objects read in cached mode: there the mount's CPU is the
    /// limit, and reading ahead made a warm `cp` slower (576-784 vs 967-970 MiB/s,
    /// `--no-passthrough`, 2 rounds of `scripts/bench/ab.sh`).
    pub(super) _warm: Option<WarmGuard>,
}

#[derive(Default)]
pub(super) struct Passthrough {
    pub(super) by_ino: HashMap<u64, IoMode>,
    /// fh -> (ino, opened in passthrough mode)
    pub(super) by_fh: HashMap<u64, (u64, bool)>,
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
}
