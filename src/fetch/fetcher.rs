//! A mount's reads: one cache directory and the engine that fills it. The engine sees the
//! cache only as the owner of its entries (held weakly, so fetches still running never
//! keep a directory locked); this is what holds both, opens handles, runs the flusher
//! thread and shuts the pair down in order (stop writing, wait for the writes, record).

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{Engine, EngineOptions, ObjectHandle};
use crate::cache::entry::EntryOwner;
use crate::cache::{CacheConfig, CacheError, PartCache};
use crate::store::{ObjectMeta, ObjectStore};

/// A cache directory and the engine that fills it: opens handles by asking the cache for
/// an entry, runs the flusher thread (every `batch_interval`: record pending parts, give
/// back spare buffers), and shuts down when its last user lets go (or on
/// [`Self::shutdown`]).
pub struct Fetcher {
    cache: Arc<PartCache>,
    engine: Arc<Engine>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Fetcher {
    /// Open (and lock) the cache directory of `config` and start its flusher thread.
    /// `namespace` identifies (endpoint, bucket), see `StoreConfig::namespace`.
    pub fn open(
        config: CacheConfig,
        store: Arc<dyn ObjectStore>,
        namespace: String,
    ) -> Result<Arc<Self>, CacheError> {
        let interval = config.batch_interval;
        let opts = EngineOptions {
            jobs: config.jobs,
            part_size: config.part_size,
            min_request_bytes: config.min_request_bytes,
            small_object_threshold: config.small_object_threshold,
            max_readahead: config.max_readahead,
            resident_bytes: config.resident_bytes,
            memory_limit: config.memory_limit,
            auto_finalize: true,
        };
        let cache = PartCache::open(config, namespace)?;
        let owner: Weak<dyn EntryOwner> = Arc::downgrade(&cache) as _;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let fetcher = Arc::new(Self {
            engine: Arc::new(Engine::new(store, opts, owner)),
            cache,
            stop: stop.clone(),
        });
        // Records batches of parts at least every `batch_interval`, so parts of an idle
        // reader do not wait for the next part to become durable.
        let weak = Arc::downgrade(&fetcher);
        std::thread::Builder::new()
            .name("ossmount-cache-flush".into())
            .spawn(move || loop {
                {
                    let (m, cv) = &*stop;
                    let mut stopped = m.lock();
                    if !*stopped {
                        cv.wait_for(&mut stopped, interval);
                    }
                    if *stopped {
                        return;
                    }
                }
                match weak.upgrade() {
                    Some(f) => {
                        f.cache.flush_dirty();
                        f.engine.trim_idle();
                    }
                    None => return,
                }
            })?;
        Ok(fetcher)
    }

    /// A handle on one version of one object; its entry is never evicted while a handle
    /// lives. An entry for another ETag or size of the same key is dropped.
    pub fn object(&self, meta: &ObjectMeta) -> Result<ObjectHandle, CacheError> {
        let entry = self.cache.open_entry(meta)?;
        Ok(ObjectHandle::new(meta.clone(), entry, self.engine.clone()))
    }

    /// Write out pending checkpoints (on unmount / SIGTERM), after the part writes that
    /// are running finish.
    pub fn flush(&self) {
        if !self.engine.wait_for_writes(Duration::from_secs(30)) {
            tracing::warn!("part writes still running after 30 s; recording what is done");
        }
        self.cache.flush_dirty();
    }

    /// Unmounting (and dropping): stop writing parts that arrive from now on, wait for the
    /// writes running, record them. Without the first step a flush waited for the
    /// read-ahead still on the network to land (and be retried), and the process kept the
    /// directory lock for seconds after the unmount: `umount; mount` failed with "in use".
    pub fn shutdown(&self) {
        self.engine.close();
        self.flush();
    }

    /// The part cache (budget, write counters).
    pub fn cache(&self) -> &Arc<PartCache> {
        &self.cache
    }

    /// The fetch engine (request counters).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock() = true;
        cv.notify_all();
        self.shutdown();
    }
}
