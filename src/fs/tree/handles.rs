//! Open files and their reads: `open` (which decides `keep_cache` and `direct_io`), reads
//! through the part cache or straight from the store, and `release`.
//!
//! Consistency of data: `open` remembers which ETag the previous open of the inode saw, and
//! allows the kernel to keep its page cache (FOPEN_KEEP_CACHE) only when the ETag did not
//! change. Every read is tied to the ETag seen at open (the cache's ranged GETs carry
//! `If-Match`), so a handle whose object changed gets [`FsError::Stale`] instead of mixed
//! bytes, and the inode's metadata is invalidated so the next open sees the new object.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::{DataPath, Kind, Tree};
use crate::fetch::{read_uncached, ObjectHandle, ReadNow};
use crate::fs::error::FsError;
use crate::metrics::{ReadSource, METRICS};
use crate::store::{ObjectMeta, RestoreState};

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
    /// The kernel holds attributes of another version than the one this handle reads (a
    /// listing or lookup within the TTL told it the old size; this open revalidated and
    /// found a new object). The adapter must invalidate the inode's attributes before it
    /// answers: the kernel ends page-cache reads at the size it holds, so a grown object
    /// would read as the new version's bytes cut at the old version's length.
    pub attrs_stale: bool,
}

/// What [`Tree::read_now`] has for the caller: the answer itself, or the rest of the read
/// to wait for. (Named apart from the fetch layer's `ReadNow`, one layer down, and from
/// `std::io::Read`.)
pub enum ReadAnswer {
    /// The bytes were at hand, or the read failed at once.
    Ready(Result<Bytes, FsError>),
    /// The rest of the read, to run on the runtime.
    Later(Pin<Box<dyn Future<Output = Result<Bytes, FsError>> + Send>>),
}

/// Where an open file's bytes come from, as [`DataPath`] said at open.
enum Source {
    /// The object's entry in the part cache.
    Cached(Arc<ObjectHandle>),
    /// The store itself, for the version seen at open.
    Uncached(ObjectMeta),
}

pub(super) struct OpenFile {
    ino: u64,
    source: Source,
}

/// An Archive, ColdArchive or DeepColdArchive object must be restored before it can be
/// read: refuse the open (EACCES, one log line at the FUSE boundary) with what to do,
/// instead of letting every read fail with 403 InvalidObjectState. A restored object
/// opens until its restore's expiry date; the metadata TTL bounds how late an expiry or
/// a finished restore is noticed, and a read refused by the server after all gives the
/// same error.
fn refuse_unrestored(key: &str, meta: &ObjectMeta) -> Result<(), FsError> {
    let state = meta.restore_state(std::time::SystemTime::now());
    let class = meta.storage_class.as_deref().unwrap_or("Archive");
    match state {
        RestoreState::Archived => Err(FsError::Archived(format!(
            "{key:?} is in storage class {class} and not restored: restore it first with \
             RestoreObject (e.g. `ossutil restore oss://BUCKET/{key}`), then read it while \
             the restore lasts"
        ))),
        RestoreState::Restoring => Err(FsError::Archived(format!(
            "{key:?} is in storage class {class} and its restore is in progress (x-oss-restore: \
             ongoing-request=\"true\"); it can be read once the restore completes"
        ))),
        RestoreState::NotArchived | RestoreState::Restored { .. } => Ok(()),
    }
}

impl Tree {
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
        refuse_unrestored(&inode.key, &meta)?;
        let (keep_cache, attrs_stale) = {
            let mut st = inode.state.lock();
            let same = st.opened_etag.as_deref() == Some(meta.etag.as_str());
            st.opened_etag = Some(meta.etag.clone());
            (same, st.told_size.is_some_and(|told| told != meta.size))
        };
        let size = meta.size;
        let (source, finalized) = match &self.data {
            DataPath::Cache(cache) => {
                let handle = cache.object(&meta)?;
                let file = handle.finalized_file();
                (Source::Cached(Arc::new(handle)), file)
            }
            DataPath::Uncached => (Source::Uncached(meta), None),
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .insert(fh, Arc::new(OpenFile { ino, source }));
        let direct_io = matches!(self.data, DataPath::Cache(_))
            && finalized.is_none()
            && self.config.direct_io_above.is_some_and(|min| size > min);
        Ok(Opened {
            fh,
            keep_cache,
            finalized,
            direct_io,
            attrs_stale,
        })
    }

    /// Read up to `len` bytes at `offset` through open handle `fh`; short only at the end.
    pub async fn read(self: &Arc<Self>, fh: u64, offset: u64, len: u32) -> Result<Bytes, FsError> {
        match self.read_now(fh, offset, len) {
            ReadAnswer::Ready(result) => result,
            ReadAnswer::Later(rest) => rest.await,
        }
    }

    /// [`Self::read`] without waiting where it need not: `Ready` when the bytes were at
    /// hand (or the read failed at once), else the rest of the read to run on the runtime.
    /// Call it within the runtime's context: it may start fetches.
    pub fn read_now(self: &Arc<Self>, fh: u64, offset: u64, len: u32) -> ReadAnswer {
        let file = match self.handles.lock().get(&fh).cloned() {
            Some(f) => f,
            None => return ReadAnswer::Ready(Err(FsError::BadHandle(fh))),
        };
        let ino = file.ino;
        match &file.source {
            Source::Uncached(meta) => {
                let (tree, meta) = (self.clone(), meta.clone());
                ReadAnswer::Later(Box::pin(async move {
                    let result = read_uncached(&*tree.store, &meta, offset, len as usize)
                        .await
                        .map_err(FsError::from);
                    if let Ok(b) = &result {
                        METRICS.read_bytes(ReadSource::Network, b.len() as u64);
                    }
                    tree.note_stale(ino, result)
                }))
            }
            Source::Cached(h) => match h.read_now(offset, len as usize) {
                Ok(ReadNow::Ready(bytes)) => ReadAnswer::Ready(Ok(bytes)),
                Err(e) => ReadAnswer::Ready(self.note_stale(ino, Err(e.into()))),
                Ok(ReadNow::Wait(pending)) => {
                    let (tree, h) = (self.clone(), h.clone());
                    ReadAnswer::Later(Box::pin(async move {
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

    /// Forget handle `fh`; its cache entry may be evicted once no handle holds it.
    pub fn release(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    pub fn open_handles(&self) -> usize {
        self.handles.lock().len()
    }
}
