//! The inode table: which inodes exist, how many references the kernel holds to each, and
//! the attributes of files (trusted for the metadata TTL, then re-HEADed).
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tracing::info;

use super::listing::Listing;
use super::outage::Revalidated;
use super::{Attr, Kind, Tree, ROOT_INO};
use crate::fs::error::FsError;
use crate::store::ObjectMeta;

pub(super) struct Inode {
    pub(super) ino: u64,
    pub(super) parent: u64,
    pub(super) kind: Kind,
    /// Files: the full key. Directories: the prefix, ending in `/` unless it is the root of
    /// a whole bucket (empty).
    pub(super) key: String,
    pub(super) state: Mutex<InodeState>,
    /// Serializes listing refreshes of a directory: concurrent `ls` share one LIST walk.
    pub(super) refresh: tokio::sync::Mutex<()>,
    /// The kernel's references (FUSE lookup count); see the module comment.
    pub(super) lookups: AtomicU64,
}

#[derive(Default)]
pub(super) struct InodeState {
    /// Files: size, ETag, mtime.
    pub(super) meta: Option<ObjectMeta>,
    /// When `meta` (files) was last confirmed by the store; `None` forces a re-HEAD.
    pub(super) validated: Option<Instant>,
    /// ETag the previous open of this file saw (for FOPEN_KEEP_CACHE).
    pub(super) opened_etag: Option<String>,
    /// Files: the size in the attributes last handed to the kernel (`attr_of`). An open
    /// that binds to a version of another size must have the kernel drop its attributes,
    /// or the kernel ends reads at the old size (see `Opened::attrs_stale`).
    pub(super) told_size: Option<u64>,
    /// Directories: the cached listing.
    pub(super) listing: Option<Arc<Listing>>,
    /// Symbolic links: the `readlink` text (`tree/links.rs`).
    pub(super) link: Option<String>,
    /// When `meta` came from a HEAD (listings carry no user metadata and no CRC-64).
    pub(super) headed: Option<Instant>,
}

type NameKey = (u64, String, Kind);

#[derive(Default)]
pub(super) struct InodeTable {
    pub(super) by_ino: HashMap<u64, Arc<Inode>>,
    pub(super) by_name: HashMap<NameKey, u64>,
}

/// The last component of an inode's key (`a/b/` and `a/b` both give `b`).
fn name_of(key: &str) -> &str {
    let k = key.strip_suffix('/').unwrap_or(key);
    k.rsplit('/').next().unwrap_or(k)
}

impl Tree {
    pub(super) fn inode(&self, ino: u64) -> Result<Arc<Inode>, FsError> {
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
    pub(super) fn intern(
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
            Kind::File | Kind::Symlink => format!("{}{}", parent.key, name),
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
    pub(super) fn find_and_ref(&self, id: &NameKey, refs: u64) -> Option<Arc<Inode>> {
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
    pub(super) fn remove_locked(&self, table: &mut InodeTable, ino: u64) {
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

    pub(super) fn attr_of(&self, inode: &Inode) -> Attr {
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
                let mut st = inode.state.lock();
                let (size, mtime) = st
                    .meta
                    .as_ref()
                    .map_or((0, self.mounted_at), |m| (m.size, m.last_modified));
                st.told_size = Some(size);
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
            Kind::Symlink => Attr {
                ino: inode.ino,
                kind: Kind::Symlink,
                // st_size of a symbolic link is the length of its target text.
                size: inode
                    .state
                    .lock()
                    .link
                    .as_ref()
                    .map_or(0, |l| l.len() as u64),
                mtime: self.mounted_at,
                perm: 0o777,
                nlink: 1,
                uid: self.config.uid,
                gid: self.config.gid,
                blksize: 4096,
            },
        }
    }

    /// Record the `readlink` text of a symbolic link.
    pub(super) fn set_link(&self, inode: &Inode, text: &str) {
        let mut st = inode.state.lock();
        if st.link.as_deref() != Some(text) {
            st.link = Some(text.to_string());
        }
        st.validated = Some(Instant::now());
    }

    pub(super) fn set_meta(&self, inode: &Inode, meta: ObjectMeta) {
        let mut st = inode.state.lock();
        st.meta = Some(meta);
        st.validated = Some(Instant::now());
        st.headed = None;
    }

    /// A file's metadata as a HEAD within the TTL gave it (with user metadata and
    /// CRC-64), for its extended attributes; `None` for directories and links.
    pub async fn headed_meta(&self, ino: u64) -> Result<Option<ObjectMeta>, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::File {
            return Ok(None);
        }
        let (meta, headed) = {
            let st = inode.state.lock();
            (st.meta.clone(), st.headed)
        };
        match meta {
            Some(m) if self.fresh(headed) => Ok(Some(m)),
            _ => Ok(Some(self.revalidate(&inode).await?)),
        }
    }

    /// What the part cache holds of this version of the object (`None` without a cache).
    pub fn held(&self, meta: &ObjectMeta) -> Option<crate::cache::state::Held> {
        match &self.data {
            super::DataPath::Cache(f) => Some(f.cache().held(meta)),
            super::DataPath::Uncached => None,
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
    /// While the store is unreachable, the metadata held is the answer (stale-if-error,
    /// `outage.rs`): it is served as it was, and stays due for revalidation.
    pub(super) async fn revalidate(&self, inode: &Arc<Inode>) -> Result<ObjectMeta, FsError> {
        let stale = inode.state.lock().meta.clone();
        if let Some(m) = stale.as_ref().filter(|_| self.outage.down()) {
            return Ok(m.clone());
        }
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        let head = async { self.store.head(&inode.key).await.map_err(FsError::from) };
        let mut meta = match self.ask(stale.is_some(), head).await {
            Revalidated::Answer(r) => r?,
            Revalidated::Unreachable => return Ok(stale.expect("asked with a stale copy")),
        };
        if meta.is_symlink() {
            // A link shown as its target: the CRC-64 would be the link's (links.rs).
            meta.crc64 = None;
        }
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
        inode.state.lock().headed = Some(Instant::now());
        Ok(meta)
    }
}
