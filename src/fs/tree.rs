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
//! Inodes live exactly as long as the kernel references them, so the table follows the
//! kernel's dentry cache instead of growing with every name ever listed (an `ls -lR` of a
//! million keys would otherwise pin a million inodes until unmount). Each inode counts the
//! kernel's references the FUSE way: +1 for every successful `lookup` reply and every
//! `readdirplus` entry the kernel receives (not `.`/`..`), -n for `forget(n)`; at zero it
//! is removed. Plain `readdir` only reports inode numbers (no reference), so the inodes it
//! had to create for that are swept when the directory handle is released, unless a lookup
//! took a reference meanwhile. Increments happen under the table's read lock and removal
//! under its write lock, so an inode cannot vanish between being found and being counted.
//! Inode numbers come from a 64-bit counter and are never reused: a number the kernel
//! still holds can only ever mean its own path, and a forgotten name that comes back gets
//! a new number (as on NFS or Mountpoint; `find` and `rsync` only compare numbers of
//! inodes the kernel holds, which stay stable). Directory listings are kept by name, not
//! by inode, so they survive the inodes of their entries being forgotten; a directory's
//! own listing goes with its inode (memory follows the kernel's cache, at the price of
//! one LIST when a forgotten directory is listed again within the TTL).
//!
//! Metadata caching, all governed by one TTL (`--metadata-ttl`, default 60 s, the value
//! Mountpoint uses when a cache is configured):
//! - a directory listing is kept for the TTL, so repeated `ls`, `find` and lookups inside
//!   a listed directory never touch the network; a lookup of a name absent from a fresh
//!   listing is answered ENOENT from memory;
//! - otherwise a lookup asks the store directly (HeadObject on `key` and a one-key
//!   ListObjectsV2 on `key/`, concurrently) and a miss goes to a negative cache
//!   ([`FsConfig::negative_cache_entries`] names, same TTL);
//! - file attributes are trusted for the TTL; `getattr` and `open` after that re-HEAD.
//!
//! Consistency of data: `open` remembers which ETag the previous open of the inode saw, and
//! allows the kernel to keep its page cache (FOPEN_KEEP_CACHE) only when the ETag did not
//! change. Every read is tied to the ETag seen at open (the cache's ranged GETs carry
//! `If-Match`), so a handle whose object changed gets [`FsError::Stale`] instead of mixed
//! bytes, and the inode's metadata is invalidated so the next open sees the new object.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::future::Future;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tracing::{debug, info, warn};

use super::error::FsError;
use crate::fetch::{Fetcher, ObjectHandle, ReadNow};
use crate::store::{ListRequest, ObjectMeta, ObjectStore, StoreError};

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
        }
    }
}

/// Where file bytes come from.
#[derive(Clone)]
pub enum DataPath {
    /// Through the on-disk part cache (the normal case).
    Cache(Arc<Fetcher>),
    /// Straight from the store, one ranged GET per read, `If-Match` the ETag seen at open.
    /// No cache, no read-ahead: for tests of the tree and as a diagnostic mode.
    Direct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Dir,
    File,
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

/// One entry of a directory read; `offset` is the cookie of the next entry.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub offset: u64,
    pub name: String,
    pub attr: Attr,
}

/// The result of `open`.
pub struct Opened {
    pub fh: u64,
    /// The ETag is the one the previous open saw: the kernel may keep its page cache.
    pub keep_cache: bool,
    /// The complete, verified local file of the object, when the cache has one.
    pub finalized: Option<std::fs::File>,
    /// Open with FOPEN_DIRECT_IO: a large object read through the part cache. The kernel
    /// then copies each reply into the reader's buffer instead of filling the mount's page
    /// cache with pages that are read once: on the 2-vCPU test VM a cold `cp` of 1 GiB ran
    /// at 478-572 MiB/s with 0.73-0.88 CPU s/GiB in the mount, against 341-509 MiB/s with
    /// 1.20-1.88 s/GiB through the page cache. The price: every read is a round trip
    /// through ossmount, so 4 KiB reads run at 163 MB/s instead of 619.
    pub direct_io: bool,
}

/// A read through [`Tree::read_now`].
pub enum Read {
    Ready(Result<Bytes, FsError>),
    Later(Pin<Box<dyn Future<Output = Result<Bytes, FsError>> + Send>>),
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

struct Inode {
    ino: u64,
    parent: u64,
    kind: Kind,
    /// Files: the full key. Directories: the prefix, ending in `/` unless it is the root of
    /// a whole bucket (empty).
    key: String,
    state: Mutex<InodeState>,
    /// Serializes listing refreshes of a directory: concurrent `ls` share one LIST walk.
    refresh: tokio::sync::Mutex<()>,
    /// The kernel's references (FUSE lookup count); see the module comment.
    lookups: AtomicU64,
}

#[derive(Default)]
struct InodeState {
    /// Files: size, ETag, mtime.
    meta: Option<ObjectMeta>,
    /// When `meta` (files) was last confirmed by the store; `None` forces a re-HEAD.
    validated: Option<Instant>,
    /// ETag the previous open of this file saw (for FOPEN_KEEP_CACHE).
    opened_etag: Option<String>,
    /// Directories: the cached listing.
    listing: Option<Arc<Listing>>,
}

/// A directory's entries as of `fetched`, sorted by name. Entries are names, not inodes:
/// an inode exists only while the kernel references it.
struct Listing {
    fetched: Instant,
    entries: Vec<ListEntry>,
    by_name: HashMap<String, usize>,
    /// Sum of the sizes of the files in it (for `statfs`).
    bytes: u64,
}

struct ListEntry {
    name: String,
    kind: Kind,
    /// Files: what the listing said about the object.
    meta: Option<ObjectMeta>,
}

type NameKey = (u64, String, Kind);

#[derive(Default)]
struct InodeTable {
    by_ino: HashMap<u64, Arc<Inode>>,
    by_name: HashMap<NameKey, u64>,
}

/// An open directory: a snapshot of its listing.
struct DirHandle {
    listing: Arc<Listing>,
    /// Unreferenced inodes plain `readdir` reported from it: swept on release.
    unreferenced: Mutex<Vec<u64>>,
}

enum Reader {
    Cache(Arc<ObjectHandle>),
    Direct(ObjectMeta),
}

struct OpenFile {
    ino: u64,
    reader: Reader,
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
    /// Sum of [`Listing::bytes`] over the listings directories hold now.
    listed_bytes: AtomicU64,
    next_fh: AtomicU64,
    /// Keys already reported as unusable or shadowed (one log line per key per mount).
    reported: Mutex<HashSet<String>>,
    pub counters: Counters,
}

/// The last component of an inode's key (`a/b/` and `a/b` both give `b`).
fn name_of(key: &str) -> &str {
    let k = key.strip_suffix('/').unwrap_or(key);
    k.rsplit('/').next().unwrap_or(k)
}

/// Why a name cannot be a file name, or `None` when it can.
fn invalid_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty path component")
    } else if name == "." || name == ".." {
        Some("component is . or ..")
    } else if name.len() > NAME_MAX {
        Some("component longer than 255 bytes")
    } else if name.contains('\0') {
        Some("component contains NUL")
    } else {
        None
    }
}

impl Tree {
    /// A tree over `store` rooted at `prefix` (`""` for the whole bucket; a missing
    /// trailing `/` is added).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        data: DataPath,
        config: FsConfig,
    ) -> Self {
        let mut root_key = prefix.trim_start_matches('/').to_string();
        if !root_key.is_empty() && !root_key.ends_with('/') {
            root_key.push('/');
        }
        let root = Arc::new(Inode {
            ino: ROOT_INO,
            parent: ROOT_INO,
            kind: Kind::Dir,
            key: root_key,
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
        Self {
            store,
            data,
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
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// TTL for the kernel's attribute and entry caches: the metadata TTL.
    pub fn ttl(&self) -> Duration {
        self.config.metadata_ttl
    }

    fn fresh(&self, at: Option<Instant>) -> bool {
        at.is_some_and(|t| t.elapsed() < self.config.metadata_ttl)
    }

    fn inode(&self, ino: u64) -> Result<Arc<Inode>, FsError> {
        self.table
            .read()
            .by_ino
            .get(&ino)
            .cloned()
            .ok_or(FsError::NotFound)
    }

    /// The inode for (parent, name, kind), created when missing, with `refs` kernel
    /// references added atomically with finding it (see the module comment). A new file
    /// inode takes `meta` (what a listing said at that instant); an existing one keeps its
    /// own, which is at least as fresh.
    fn intern(
        &self,
        parent: &Inode,
        name: &str,
        kind: Kind,
        meta: Option<(&ObjectMeta, Instant)>,
        refs: u64,
    ) -> Arc<Inode> {
        let id = (parent.ino, name.to_string(), kind);
        if let Some(inode) = self.find_and_ref(&id, refs) {
            return inode;
        }
        let mut table = self.table.write();
        if let Some(ino) = table.by_name.get(&id) {
            let inode = table.by_ino[ino].clone();
            inode.lookups.fetch_add(refs, Ordering::Relaxed);
            return inode;
        }
        let ino = self.next_ino.fetch_add(1, Ordering::Relaxed);
        let key = match kind {
            Kind::Dir => format!("{}{}/", parent.key, name),
            Kind::File => format!("{}{}", parent.key, name),
        };
        let state = InodeState {
            meta: meta.map(|(m, _)| m.clone()),
            validated: meta.map(|(_, at)| at),
            ..InodeState::default()
        };
        let inode = Arc::new(Inode {
            ino,
            parent: parent.ino,
            kind,
            key,
            state: Mutex::new(state),
            refresh: tokio::sync::Mutex::new(()),
            lookups: AtomicU64::new(refs),
        });
        table.by_ino.insert(ino, inode.clone());
        table.by_name.insert(id, ino);
        inode
    }

    /// The existing inode for `id`, with `refs` references added under the read lock.
    fn find_and_ref(&self, id: &NameKey, refs: u64) -> Option<Arc<Inode>> {
        // One guard: a second read lock while a writer waits would deadlock
        // (parking_lot's RwLock is fair).
        let table = self.table.read();
        let inode = table.by_ino.get(table.by_name.get(id)?)?.clone();
        inode.lookups.fetch_add(refs, Ordering::Relaxed);
        Some(inode)
    }

    /// The kernel dropped `n` references to each inode: remove those left with none.
    /// The root is never removed. An unknown number is ignored: the kernel forgets only
    /// what it was given, so that would mean a miscount, and ignoring it is the safe side.
    pub fn forget(&self, forgets: &[(u64, u64)]) {
        let mut removed = 0usize;
        let mut table = self.table.write();
        for &(ino, n) in forgets {
            if ino == ROOT_INO {
                continue;
            }
            let Some(inode) = table.by_ino.get(&ino) else {
                continue;
            };
            let left = inode.lookups.load(Ordering::Relaxed).saturating_sub(n);
            inode.lookups.store(left, Ordering::Relaxed);
            if left == 0 {
                self.remove_locked(&mut table, ino);
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::trace!(removed, left = table.by_ino.len(), "forgot inodes");
        }
    }

    /// Drop `ino` from the table (write lock held), with the listing it holds.
    fn remove_locked(&self, table: &mut InodeTable, ino: u64) {
        let Some(inode) = table.by_ino.remove(&ino) else {
            return;
        };
        let id = (inode.parent, name_of(&inode.key).to_string(), inode.kind);
        if table.by_name.get(&id) == Some(&ino) {
            table.by_name.remove(&id);
        }
        let listing = inode.state.lock().listing.take();
        if let Some(l) = listing {
            self.listed_bytes.fetch_sub(l.bytes, Ordering::Relaxed);
        }
    }

    /// Inodes in the table now (the root included): what the kernel references, plus
    /// unreferenced ones of directories being read with plain `readdir`.
    pub fn inode_count(&self) -> usize {
        self.table.read().by_ino.len()
    }

    fn attr_of(&self, inode: &Inode) -> Attr {
        match inode.kind {
            Kind::Dir => Attr {
                ino: inode.ino,
                kind: Kind::Dir,
                size: 0,
                mtime: self.mounted_at,
                perm: self.config.dir_mode as u16,
                nlink: 2,
                uid: self.config.uid,
                gid: self.config.gid,
                blksize: 4096,
            },
            Kind::File => {
                let st = inode.state.lock();
                let (size, mtime) = st
                    .meta
                    .as_ref()
                    .map_or((0, self.mounted_at), |m| (m.size, m.last_modified));
                Attr {
                    ino: inode.ino,
                    kind: Kind::File,
                    size,
                    mtime,
                    perm: self.config.file_mode as u16,
                    nlink: 1,
                    uid: self.config.uid,
                    gid: self.config.gid,
                    blksize: self.config.block_size,
                }
            }
        }
    }

    fn set_meta(&self, inode: &Inode, meta: ObjectMeta) {
        let mut st = inode.state.lock();
        st.meta = Some(meta);
        st.validated = Some(Instant::now());
    }

    /// Log once per mount that `key` is not shown, and why.
    fn report(&self, key: &str, why: &str) {
        if self.reported.lock().insert(key.to_string()) {
            warn!(key, "key not shown in the mount: {why}");
        }
    }

    // ----- directories -----

    /// The directory's listing, from memory when fresh, else one paged LIST walk.
    async fn listing(&self, dir: &Arc<Inode>) -> Result<Arc<Listing>, FsError> {
        if let Some(l) = dir.state.lock().listing.clone() {
            if self.fresh(Some(l.fetched)) {
                return Ok(l);
            }
        }
        let _guard = dir.refresh.lock().await;
        // Someone else may have refreshed it while we waited.
        if let Some(l) = dir.state.lock().listing.clone() {
            if self.fresh(Some(l.fetched)) {
                return Ok(l);
            }
        }
        let listing = Arc::new(self.fetch_listing(dir).await?);
        // Installed under the table lock, so a concurrent forget of `dir` cannot remove it
        // between our check and the install (which would leave its bytes counted).
        let table = self.table.read();
        if table.by_ino.contains_key(&dir.ino) {
            let old = dir.state.lock().listing.replace(listing.clone());
            self.listed_bytes
                .fetch_add(listing.bytes, Ordering::Relaxed);
            if let Some(old) = old {
                self.listed_bytes.fetch_sub(old.bytes, Ordering::Relaxed);
            }
        }
        drop(table);
        Ok(listing)
    }

    async fn fetch_listing(&self, dir: &Arc<Inode>) -> Result<Listing, FsError> {
        let prefix = dir.key.clone();
        let mut files: BTreeMap<String, ObjectMeta> = BTreeMap::new();
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        let mut token = None;
        let started = Instant::now();
        let mut pages = 0u32;
        loop {
            let req = ListRequest {
                prefix: prefix.clone(),
                delimiter: Some("/".to_string()),
                continuation_token: token.take(),
                max_keys: self.config.list_page_size,
            };
            self.counters.lists.fetch_add(1, Ordering::Relaxed);
            let page = self.store.list(&req).await?;
            pages += 1;
            for obj in page.objects {
                let Some(name) = obj.key.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if name.is_empty() {
                    // The directory's own `dir/` marker object.
                    continue;
                }
                if let Some(why) = invalid_name(name) {
                    self.report(&obj.key, why);
                    continue;
                }
                files.insert(name.to_string(), obj);
            }
            for cp in page.common_prefixes {
                let Some(rest) = cp.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let name = rest.strip_suffix('/').unwrap_or(rest);
                if let Some(why) = invalid_name(name) {
                    self.report(&cp, why);
                    continue;
                }
                dirs.insert(name.to_string());
            }
            match page.next_continuation_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        for name in &dirs {
            if let Some(shadowed) = files.remove(name) {
                self.report(
                    &shadowed.key,
                    "a directory of the same name hides this file",
                );
            }
        }
        debug!(prefix, pages, entries = files.len() + dirs.len(), elapsed = ?started.elapsed(), "listed");
        // Inodes the kernel holds for these files learn what the listing says.
        let known: Vec<(Arc<Inode>, ObjectMeta)> = {
            let table = self.table.read();
            files
                .iter()
                .filter_map(|(name, meta)| {
                    let ino = table.by_name.get(&(dir.ino, name.clone(), Kind::File))?;
                    Some((table.by_ino.get(ino)?.clone(), meta.clone()))
                })
                .collect()
        };
        for (inode, meta) in known {
            self.set_meta(&inode, meta);
        }
        let bytes = files.values().map(|m| m.size).sum();
        let mut entries = Vec::with_capacity(files.len() + dirs.len());
        for name in dirs {
            entries.push(ListEntry {
                name,
                kind: Kind::Dir,
                meta: None,
            });
        }
        for (name, meta) in files {
            entries.push(ListEntry {
                name,
                kind: Kind::File,
                meta: Some(meta),
            });
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let by_name = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        Ok(Listing {
            fetched: Instant::now(),
            entries,
            by_name,
            bytes,
        })
    }

    /// The inode of listing entry `e` of `dir`, with `refs` references added.
    fn entry_inode(&self, dir: &Inode, l: &Listing, e: &ListEntry, refs: u64) -> Arc<Inode> {
        let meta = e.meta.as_ref().map(|m| (m, l.fetched));
        self.intern(dir, &e.name, e.kind, meta, refs)
    }

    /// Look `name` up in directory `parent`. A success is one kernel reference to the
    /// returned inode (the kernel counts every lookup reply and forgets them later).
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let dir = self.inode(parent)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let name = name.to_str().ok_or(FsError::NotFound)?;
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if invalid_name(name).is_some() || name.contains('/') {
            return Err(FsError::NotFound);
        }
        // 1. A fresh listing of the parent answers both ways.
        let listing = dir.state.lock().listing.clone();
        if let Some(l) = listing.filter(|l| self.fresh(Some(l.fetched))) {
            return match l.by_name.get(name) {
                Some(&i) => Ok(self.attr_of(&self.entry_inode(&dir, &l, &l.entries[i], 1))),
                None => Err(FsError::NotFound),
            };
        }
        // 2. A recent miss.
        let nkey = (parent, name.to_string());
        if let Some(at) = self.negative.lock().get(&nkey).copied() {
            if self.fresh(Some(at)) {
                return Err(FsError::NotFound);
            }
        }
        // 3. An inode seen recently (directories are as fresh as the name; files carry their
        //    own validation time).
        let known_dir = self
            .table
            .read()
            .by_name
            .get(&(parent, name.to_string(), Kind::Dir))
            .copied();
        let known_file = self
            .table
            .read()
            .by_name
            .get(&(parent, name.to_string(), Kind::File))
            .copied();
        if let Some(ino) = known_file {
            let fresh = self
                .inode(ino)
                .is_ok_and(|i| self.fresh(i.state.lock().validated));
            if known_dir.is_none() && fresh {
                // Referenced only if it is still there (a forget may have just removed it).
                let id = (parent, name.to_string(), Kind::File);
                if let Some(inode) = self.find_and_ref(&id, 1) {
                    return Ok(self.attr_of(&inode));
                }
            }
        }
        // 4. Ask the store: is it a directory (anything under `name/`) or an object?
        self.remote_lookup(&dir, name).await
    }

    async fn remote_lookup(&self, dir: &Arc<Inode>, name: &str) -> Result<Attr, FsError> {
        let key = format!("{}{}", dir.key, name);
        let dir_req = ListRequest {
            prefix: format!("{key}/"),
            delimiter: Some("/".to_string()),
            continuation_token: None,
            max_keys: 1,
        };
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let (head, list) = tokio::join!(self.store.head(&key), self.store.list(&dir_req));
        let is_dir = match list {
            Ok(page) => !page.objects.is_empty() || !page.common_prefixes.is_empty(),
            Err(e) => return Err(e.into()),
        };
        if is_dir {
            if head.is_ok() {
                self.report(&key, "a directory of the same name hides this file");
            }
            let inode = self.intern(dir, name, Kind::Dir, None, 1);
            return Ok(self.attr_of(&inode));
        }
        match head {
            Ok(meta) => {
                let inode = self.intern(dir, name, Kind::File, Some((&meta, Instant::now())), 1);
                self.set_meta(&inode, meta);
                Ok(self.attr_of(&inode))
            }
            Err(StoreError::NoSuchKey(_)) => {
                self.negative
                    .lock()
                    .put((dir.ino, name.to_string()), Instant::now());
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Attributes of `ino`; a file whose metadata is older than the TTL is re-HEADed.
    pub async fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind == Kind::File && !self.fresh(inode.state.lock().validated) {
            self.revalidate(&inode).await?;
        }
        Ok(self.attr_of(&inode))
    }

    /// HEAD the file and record what the store says now.
    async fn revalidate(&self, inode: &Arc<Inode>) -> Result<ObjectMeta, FsError> {
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        let meta = self.store.head(&inode.key).await?;
        let old = inode.state.lock().meta.clone();
        if let Some(old) = old.filter(|o| o.etag != meta.etag) {
            info!(
                key = inode.key,
                old = old.etag,
                new = meta.etag,
                "object changed on the server"
            );
        }
        self.set_meta(inode, meta.clone());
        Ok(meta)
    }

    /// Start reading a directory: snapshot its listing so a multi-call `readdir` sees one
    /// consistent set of entries.
    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let dir = self.inode(ino)?;
        if dir.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let listing = self.listing(&dir).await?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = DirHandle {
            listing,
            unreferenced: Mutex::new(Vec::new()),
        };
        self.dir_handles.lock().insert(fh, Arc::new(handle));
        Ok(fh)
    }

    /// Entries of an open directory from cookie `offset` on (0 = start), `.` and `..` first.
    /// The caller stops adding when its reply buffer is full and asks again from the cookie
    /// of the last entry it kept. Convenience form of [`Tree::readdir_with`] for tests.
    pub fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Vec<DirEntry>, FsError> {
        let mut out = Vec::new();
        self.readdir_with(ino, fh, offset, false, &mut |e| {
            out.push(e);
            false
        })?;
        Ok(out)
    }

    /// Feed entries from cookie `offset` on to `add` until it returns `true` (buffer full).
    /// Work is proportional to what the caller takes, not to the directory: the kernel reads
    /// a 100k-entry directory in thousands of page-sized calls.
    ///
    /// `plus` (readdirplus): every entry `add` accepts, except `.` and `..`, is a kernel
    /// reference to its inode, as for a lookup; the entry that did not fit is not.
    pub fn readdir_with(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
        add: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<(), FsError> {
        let dir = self.inode(ino)?;
        let handle = self
            .dir_handles
            .lock()
            .get(&fh)
            .cloned()
            .ok_or(FsError::BadHandle(fh))?;
        // The parent is pinned by the kernel while a child is; fall back to the directory
        // itself rather than fail a readdir over `..`.
        let parent = self.inode(dir.parent).unwrap_or_else(|_| dir.clone());
        for (i, (name, inode)) in [(".", &dir), ("..", &parent)].into_iter().enumerate() {
            if (i as u64) >= offset {
                let e = DirEntry {
                    offset: i as u64 + 1,
                    name: name.to_string(),
                    attr: self.attr_of(inode),
                };
                if add(e) {
                    return Ok(());
                }
            }
        }
        let listing = &handle.listing;
        let skip = offset.saturating_sub(2) as usize;
        for (i, entry) in listing.entries.iter().enumerate().skip(skip) {
            let inode = self.entry_inode(&dir, listing, entry, u64::from(plus));
            if !plus && inode.lookups.load(Ordering::Relaxed) == 0 {
                handle.unreferenced.lock().push(inode.ino);
            }
            let e = DirEntry {
                offset: i as u64 + 3,
                name: entry.name.clone(),
                attr: self.attr_of(&inode),
            };
            if add(e) {
                if plus {
                    // Not sent: not a reference.
                    self.forget(&[(inode.ino, 1)]);
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Close a directory handle; inodes that plain `readdir` created for it and that the
    /// kernel has not looked up since are removed.
    pub fn releasedir(&self, fh: u64) {
        let Some(handle) = self.dir_handles.lock().remove(&fh) else {
            return;
        };
        let unreferenced = std::mem::take(&mut *handle.unreferenced.lock());
        if unreferenced.is_empty() {
            return;
        }
        let mut table = self.table.write();
        let mut swept = 0usize;
        for ino in unreferenced {
            let idle = table
                .by_ino
                .get(&ino)
                .is_some_and(|i| i.lookups.load(Ordering::Relaxed) == 0);
            if idle {
                self.remove_locked(&mut table, ino);
                swept += 1;
            }
        }
        tracing::trace!(
            swept,
            left = table.by_ino.len(),
            "swept unreferenced inodes"
        );
    }

    // ----- files -----

    /// Open a file for reading. `write` (any of O_WRONLY, O_RDWR, O_TRUNC, O_APPEND) is
    /// refused: the mount is read-only.
    pub async fn open(&self, ino: u64, write: bool) -> Result<Opened, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        if write {
            return Err(FsError::ReadOnly);
        }
        let (cached, validated) = {
            let st = inode.state.lock();
            (st.meta.clone(), st.validated)
        };
        let meta = match cached {
            Some(m) if self.fresh(validated) => m,
            _ => self.revalidate(&inode).await?,
        };
        let keep_cache = {
            let mut st = inode.state.lock();
            let same = st.opened_etag.as_deref() == Some(meta.etag.as_str());
            st.opened_etag = Some(meta.etag.clone());
            same
        };
        let size = meta.size;
        let (reader, finalized) = match &self.data {
            DataPath::Cache(cache) => {
                let handle = cache.object(&meta)?;
                let file = handle.finalized_file();
                (Reader::Cache(Arc::new(handle)), file)
            }
            DataPath::Direct => (Reader::Direct(meta), None),
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .insert(fh, Arc::new(OpenFile { ino, reader }));
        let direct_io = matches!(self.data, DataPath::Cache(_))
            && finalized.is_none()
            && self.config.direct_io_above.is_some_and(|min| size > min);
        Ok(Opened {
            fh,
            keep_cache,
            finalized,
            direct_io,
        })
    }

    /// Read up to `len` bytes at `offset` through open handle `fh`; short only at the end.
    pub async fn read(self: &Arc<Self>, fh: u64, offset: u64, len: u32) -> Result<Bytes, FsError> {
        match self.read_now(fh, offset, len) {
            Read::Ready(result) => result,
            Read::Later(rest) => rest.await,
        }
    }

    /// [`Self::read`] without waiting where it need not: `Ready` when the bytes were at
    /// hand (or the read failed at once), else the rest of the read to run on the runtime.
    /// Call it within the runtime's context: it may start fetches.
    pub fn read_now(self: &Arc<Self>, fh: u64, offset: u64, len: u32) -> Read {
        let file = match self.handles.lock().get(&fh).cloned() {
            Some(f) => f,
            None => return Read::Ready(Err(FsError::BadHandle(fh))),
        };
        let ino = file.ino;
        match &file.reader {
            Reader::Direct(meta) => {
                let (tree, meta) = (self.clone(), meta.clone());
                Read::Later(Box::pin(async move {
                    let result = tree.read_direct(&meta, offset, len).await;
                    tree.note_stale(ino, result)
                }))
            }
            Reader::Cache(h) => match h.read_now(offset, len as usize) {
                Ok(ReadNow::Ready(bytes)) => Read::Ready(Ok(bytes)),
                Err(e) => Read::Ready(self.note_stale(ino, Err(e.into()))),
                Ok(ReadNow::Wait(pending)) => {
                    let (tree, h) = (self.clone(), h.clone());
                    Read::Later(Box::pin(async move {
                        let result = h.read_later(pending).await.map_err(FsError::from);
                        tree.note_stale(ino, result)
                    }))
                }
            },
        }
    }

    /// Pass a read's result on; a stale one means the object changed: forget its metadata.
    fn note_stale(&self, ino: u64, result: Result<Bytes, FsError>) -> Result<Bytes, FsError> {
        if let Err(FsError::Stale) = &result {
            // The next open must HEAD again and see the new object.
            if let Ok(inode) = self.inode(ino) {
                let mut st = inode.state.lock();
                st.validated = None;
                st.opened_etag = None;
                warn!(key = inode.key, "object changed under an open handle");
            }
        }
        result
    }

    async fn read_direct(
        &self,
        meta: &ObjectMeta,
        offset: u64,
        len: u32,
    ) -> Result<Bytes, FsError> {
        let end = offset.saturating_add(len as u64).min(meta.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let range: Range<u64> = offset..end;
        let mut stream = self
            .store
            .get_range(&meta.key, range.clone(), Some(&meta.etag))
            .await?;
        let mut buf = BytesMut::with_capacity((end - offset) as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        if buf.len() as u64 != end - offset {
            return Err(FsError::Store(StoreError::Protocol(format!(
                "short body: {} of {} bytes",
                buf.len(),
                end - offset
            ))));
        }
        Ok(buf.freeze())
    }

    /// Forget handle `fh`; its cache entry may be evicted once no handle holds it.
    pub fn release(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
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
