//! The part cache on local disk. STUB: the API below is what `mount` and `download` use;
//! bodies pending.

pub mod checkpoint;
pub mod entry;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::{CacheCommand, Failure};
use crate::fetch::ObjectHandle;
use crate::store::{ObjectMeta, ObjectStore};

/// Settings of one cache directory.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    pub part_size: u64,
    pub jobs: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache directory {0} is in use by another ossmount process")]
    Locked(PathBuf),
    #[error("cache I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Entries by (namespace, key, etag), with a byte budget.
pub struct PartCache {}

impl PartCache {
    /// Open (and lock) the cache directory, rebuilding the accounting from what is there.
    /// `namespace` identifies (endpoint, bucket), see `StoreConfig::namespace`.
    pub fn open(
        _config: CacheConfig,
        _store: Arc<dyn ObjectStore>,
        _namespace: String,
    ) -> Result<Arc<Self>, CacheError> {
        todo!()
    }

    /// A handle on one version of one object; its entry is never evicted while a handle
    /// lives. An entry for another ETag or size of the same key is dropped.
    pub fn object(self: &Arc<Self>, _meta: &ObjectMeta) -> Result<ObjectHandle, CacheError> {
        todo!()
    }

    /// Write out pending checkpoints (on unmount / SIGTERM).
    pub fn flush(&self) {}
}

/// `ossmount cache status|verify|clean`.
pub fn run_command(_cmd: CacheCommand) -> Result<(), Failure> {
    todo!()
}
