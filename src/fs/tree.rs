//! The filesystem core: inodes, lookups, directory listings, open handles and reads, with
//! no FUSE types anywhere, so every rule below is unit-tested against an in-memory store.
//!
//! Shape of the namespace. A directory is a key prefix ending in `/` (the mount's root is
//! the prefix given on the command line, possibly empty). Its entries come from
//! ListObjectsV2 with delimiter `/`: objects are files, common prefixes (which include
//! `dir/` marker objects) are directories. Keys that cannot be file names (an empty
//! component as in `a//b`, `.`, `..`, more than 255 bytes) are skipped with one log line
//! per key per mount. A name that is both an object and a prefix is shown as the
//! directory (the file would hide everything below it), and the shadowed file is logged.
//!
//! One [`Tree`] serves every FUSE thread. Its methods live in one file per job:
//! - `tree/inodes.rs`: the inode table (numbers, the kernel's references, `forget`) and
//!   file attributes;
//! - `tree/listing.rs`: directory listings and their TTL, the negative cache, `lookup` and
//!   `readdir`;
//! - `tree/handles.rs`: open files and their reads;
//! - `tree/links.rs`: symlink objects, what each shows as, and `readlink`;
//! - `tree/outage.rs`: stale-if-error, serving what is cached while the store is
//!   unreachable.
//!
//! This file holds the `Tree` itself, its settings ([`FsConfig`], [`DataPath`]) and the
//! types every part shares ([`Kind`], [`Attr`]), and answers `statfs`.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

use crate::fetch::Fetcher;
use crate::fs::error::FsError;
use crate::store::ObjectStore;

mod dir_ahead;
mod handles;
mod inodes;
mod links;
mod listing;
mod outage;

use handles::OpenFile;
pub use handles::{Opened, ReadAnswer};
use inodes::{Inode, InodeState, InodeTable};
pub use listing::DirEntry;
use listing::DirHandle;

/// The root directory's inode number (FUSE_ROOT_ID).
pub const ROOT_INO: u64 = 1;

/// Longest file name Linux accepts (NAME_MAX).
const NAME_MAX: usize = 255;

/// Settings of the filesystem core.
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits of files: 0444, read-only for everyone, as the mount is read-only.
    pub file_mode: u32,
    /// Permission bits of directories: 0555.
    pub dir_mode: u32,
    /// How long attributes, listings and negative lookups are trusted: 60 s, long enough that
    /// an interactive session (`ls`, `cd`, `ls -l`) costs one LIST per directory, short
    /// enough that a new upload shows up within a minute.
    pub metadata_ttl: Duration,
    /// Keys per ListObjectsV2 page: 1000, the most OSS and S3 return.
    pub list_page_size: u32,
    /// Names remembered as absent: 100,000 (about 10 MiB), enough for a build tool probing
    /// every path it knows without evicting what it probes next.
    pub negative_cache_entries: usize,
    /// `st_blksize` reported for files, which `cp`, `cat` and stdio size their buffer by
    /// (coreutils: the larger of it and 128 KiB). Default 128 KiB: the buffer stays in the
    /// CPU cache between the read and the write. Through the page cache and passthrough the
    /// buffer does not set the FUSE request size (kernel readahead does). Against 1 MiB,
    /// 1 GiB, interleaved rounds (`scripts/bench/ab.sh`): warm cp 627-1268 vs 392-409 MiB/s,
    /// cold unchanged, hot 3088-3507 vs 4426-4563 (local `dd` shows the same hot gap between
    /// the two buffer sizes). Under direct I/O each read is one FUSE request, so
    /// `--direct-io` mounts report [`DIRECT_IO_BLOCK_SIZE`].
    pub block_size: u32,
    /// Objects larger than this that are not fully cached yet are opened with FUSE direct
    /// I/O (see [`Opened::direct_io`]); `None`: never. Default `None`: in the full bench
    /// direct I/O made one cold `cp` faster (2 GiB: 623 vs 463 MiB/s) but four parallel
    /// ones slower (329 vs 543 MiB/s, each reader's read and write no longer overlap) and
    /// 4 KiB reads 4x slower, so it is for mounts that mostly copy single large objects
    /// out (`--direct-io`: above 16 MiB, the cache's small-object threshold).
    pub direct_io_above: Option<u64>,
    /// Show every symlink object whose target exists as the file it points to, instead of
    /// as a symbolic link (`--follow-symlinks`). Default off: a link is shown as a link
    /// (ossfs's `enable_symlink`), so `find`, `rsync -l` and `cp -a` see what is stored.
    pub follow_symlinks: bool,
    /// Longest a FUSE request waits on the network before it answers EIO (`fs::deadline`).
    /// 60 s: above what a request that recovers needs (the retry budget's worst-case
    /// backoff, 22.6 s, plus one attempt stalled for the 30 s read timeout), and half the
    /// kernel's 120 s hung-task report, so a dead store gives errors, never processes
    /// stuck in D state. A FUSE read is at most 1 MiB, so 60 s still allows a 17 KiB/s link.
    pub request_deadline: Duration,
    /// Subdirectory listings read ahead when a directory is opened (its first ones and
    /// the siblings after it, see `tree/dir_ahead.rs`); 0: none. 16: on the oss-like link a
    /// walk of 1,000 directories then waits for about one LIST round trip per 16 of them.
    /// At most this many LISTs of read-ahead are in flight for the whole mount.
    pub dir_read_ahead: usize,
}

impl Default for FsConfig {
    fn default() -> Self {
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Self {
            uid,
            gid,
            file_mode: 0o444,
            dir_mode: 0o555,
            metadata_ttl: Duration::from_secs(60),
            list_page_size: 1000,
            negative_cache_entries: 100_000,
            block_size: 128 << 10,
            direct_io_above: None,
            follow_symlinks: false,
            request_deadline: Duration::from_secs(60),
            dir_read_ahead: 16,
        }
    }
}

/// Where file bytes come from.
#[derive(Clone)]
pub enum DataPath {
    /// Through the on-disk part cache (the normal case).
    Cache(Arc<Fetcher>),
    /// Straight from the store, one ranged GET per read, `If-Match` the ETag seen at open.
    /// No cache, no read-ahead: for tests of the tree and as a diagnostic mode
    /// (`--no-cache`). Not to be confused with FUSE direct I/O (`direct_io`), which is about
    /// the kernel's page cache, not ours.
    Uncached,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Dir,
    File,
    /// A symlink object shown as a symbolic link (`tree/links.rs`).
    Symlink,
}

/// Attributes of one inode, in the terms the adapter needs to fill a `FileAttr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: SystemTime,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub blksize: u32,
}

/// `st_blksize` for mounts that read large objects with direct I/O: 1 MiB, one FUSE request
/// of the kernel's default max_pages (256). A cold 1 GiB cp with `--direct-io` ran at
/// 485-540 MiB/s with it and 373-467 with 128 KiB reads (4 interleaved rounds), 0.65-0.81
/// vs 0.76-0.96 CPU s/GiB.
pub const DIRECT_IO_BLOCK_SIZE: u32 = 1 << 20;

/// Unit of the `statfs` block counts: 4 KiB, so sizes are exact to the page and `df -h`
/// rounds the way it does for local disks. (`bsize`, the preferred I/O size, stays at
/// [`FsConfig::block_size`].)
const STATFS_FRSIZE: u32 = 4096;

/// Filesystem totals for `statfs`, chosen so `df` shows the mount and says something true.
///
/// Peers report a made-up capacity: s3fs (and ossfs, its fork) a fixed 256 TiB free
/// (`s3fs_statfs`), Mountpoint `u64::MAX / 1024` free blocks and inodes, both because they
/// are writable and tools refuse to write to a disk that reports no space. This mount is
/// read-only, so it reports what it knows instead, like an ISO image or squashfs does:
/// - size = used = the bytes of the objects in the directory listings held now (so after
///   `ls -R` or `du`, the size of what was walked), never 0 blocks: GNU `df` hides
///   file systems with 0 blocks unless named on its command line;
/// - free = available = 0: nothing can be written;
/// - files = the inodes the kernel references now (what `df -i` calls used), free 0.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Request counters of the core, for tests and `--debug` summaries.
#[derive(Debug, Default)]
pub struct Counters {
    pub lists: AtomicU64,
    pub heads: AtomicU64,
}

/// The filesystem core. All methods take `&self`; it is shared by every FUSE thread.
pub struct Tree {
    store: Arc<dyn ObjectStore>,
    data: DataPath,
    config: FsConfig,
    mounted_at: SystemTime,
    table: RwLock<InodeTable>,
    next_ino: AtomicU64,
    negative: Mutex<lru::LruCache<(u64, String), Instant>>,
    handles: Mutex<HashMap<u64, Arc<OpenFile>>>,
    dir_handles: Mutex<HashMap<u64, Arc<DirHandle>>>,
    /// Sum of [`Listing::bytes`](listing::Listing::bytes) over the listings directories hold now.
    listed_bytes: AtomicU64,
    next_fh: AtomicU64,
    /// Keys already reported as unusable or shadowed (one log line per key per mount).
    reported: Mutex<HashSet<String>>,
    /// Whether the store is unreachable now (stale-if-error, `tree/outage.rs`).
    outage: Arc<outage::Outage>,
    /// The last listing of each directory, kept after its inode is forgotten.
    stale_listings: Mutex<outage::StaleListings<listing::Listing>>,
    /// Listings being read ahead (`tree/dir_ahead.rs`).
    dir_ahead: dir_ahead::DirAhead,
    /// The mount's root directory's key (`""` for the whole bucket).
    root_key: String,
    /// This tree, for the tasks it spawns (read-ahead).
    me: Weak<Tree>,
    pub counters: Counters,
}

impl Tree {
    /// A tree over `store` rooted at `prefix` (`""` for the whole bucket; a missing
    /// trailing `/` is added).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        data: DataPath,
        config: FsConfig,
    ) -> Arc<Self> {
        let mut root_key = prefix.trim_start_matches('/').to_string();
        if !root_key.is_empty() && !root_key.ends_with('/') {
            root_key.push('/');
        }
        let root = Arc::new(Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            kind: Kind::Dir,
            key: root_key.clone(),
            state: Mutex::new(InodeState::default()),
            refresh: tokio::sync::Mutex::new(()),
            // The kernel holds the root for the life of the mount; it is never removed.
            lookups: AtomicU64::new(1),
        });
        let mut table = InodeTable::default();
        table.by_ino.insert(ROOT_INO, root);
        let negative = lru::LruCache::new(
            NonZeroUsize::new(config.negative_cache_entries.max(1)).expect("non-zero"),
        );
        Arc::new_cyclic(|me| Self {
            store,
            data,
            dir_ahead: dir_ahead::DirAhead::new(config.dir_read_ahead),
            config,
            mounted_at: SystemTime::now(),
            table: RwLock::new(table),
            next_ino: AtomicU64::new(ROOT_INO + 1),
            negative: Mutex::new(negative),
            handles: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            listed_bytes: AtomicU64::new(0),
            next_fh: AtomicU64::new(1),
            reported: Mutex::new(HashSet::new()),
            outage: Arc::default(),
            stale_listings: Mutex::default(),
            root_key,
            me: me.clone(),
            counters: Counters::default(),
        })
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// Is the store unreachable now (cached metadata served as it was)?
    pub fn store_unreachable(&self) -> bool {
        self.outage.down()
    }

    /// Ask the store through `fut` as a revalidation (see `tree/outage.rs`).
    async fn ask<T>(
        &self,
        have_stale: bool,
        fut: impl std::future::Future<Output = Result<T, FsError>>,
    ) -> outage::Revalidated<T> {
        let root = self.table.read().by_ino[&ROOT_INO].key.clone();
        self.outage
            .revalidate(&self.store, &root, have_stale, fut)
            .await
    }

    /// TTL for the kernel's attribute and entry caches: the metadata TTL.
    pub fn ttl(&self) -> Duration {
        self.config.metadata_ttl
    }

    fn fresh(&self, at: Option<Instant>) -> bool {
        at.is_some_and(|t| t.elapsed() < self.config.metadata_ttl)
    }

    /// Totals for `df`; see [`StatFs`].
    pub fn statfs(&self) -> StatFs {
        let files = self.inode_count() as u64;
        let bytes = self.listed_bytes.load(Ordering::Relaxed);
        StatFs {
            blocks: bytes.div_ceil(STATFS_FRSIZE as u64).max(1),
            bfree: 0,
            bavail: 0,
            files,
            ffree: 0,
            bsize: self.config.block_size,
            namelen: NAME_MAX as u32,
            frsize: STATFS_FRSIZE,
        }
    }
}

#[cfg(test)]
mod tests;
