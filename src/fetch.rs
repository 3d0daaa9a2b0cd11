//! Reading an object through the part cache. STUB: API fixed, bodies pending.

use bytes::Bytes;

use crate::store::{ObjectMeta, StoreError};

/// One open handle on one object version: its own sequential-read detection and read-ahead
/// window, sharing the cache entry (and in-flight fetches) with every other handle.
pub struct ObjectHandle {}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The object changed on the server (412 on If-Match, or another ETag): ESTALE.
    #[error("object changed on the server")]
    Stale,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ObjectHandle {
    pub fn meta(&self) -> &ObjectMeta {
        todo!()
    }

    /// Read up to `len` bytes at `offset`; shorter only at end of object.
    pub async fn read(&self, _offset: u64, _len: usize) -> Result<Bytes, ReadError> {
        todo!()
    }

    /// The finalized, verified, complete file of this object, if there is one (for FUSE
    /// passthrough and direct reads).
    pub fn finalized_file(&self) -> Option<std::fs::File> {
        None
    }
}
