//! Stale-if-error: while the store is unreachable, what is cached keeps being served.
//!
//! Without this, once the metadata TTL has passed, every lookup, `getattr` and `open`
//! waited out the whole retry budget (~11 s expected, 22.6 s worst) and then failed, even
//! for objects whose verified copy is on disk. Now, when a revalidation fails for a network
//! reason ([`StoreError::is_retryable`]: network, timeout, 5xx, throttling; never a 404 or
//! 403, which are answers) or takes longer than [`STALE_GRACE`], the tree:
//! - serves the attributes and listings it already has, as they were (nothing cached is
//!   dropped), and a finalized object through its cached copy, since its ETag is unchanged
//!   as far as anyone can tell;
//! - logs one warning when the outage starts and one when it ends;
//! - while the outage lasts, does not ask the store at all on the request path: cached
//!   metadata is answered at once, and a lookup of something never seen fails at once
//!   (EIO) instead of after the retry budget. Reads of parts not cached still go to the
//!   store and fail with EIO after its retries (they have nothing else to serve);
//! - probes the store in the background (a one-key listing every [`PROBE_INTERVAL`]);
//!   the first answer ends the outage, and the next revalidation after the TTL sees
//!   whatever changed meanwhile.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{info, warn};

use crate::fs::error::FsError;
use crate::store::{ListRequest, ObjectStore, StoreError};

/// How long a revalidation may take when a cached answer is at hand: 5 s. A HEAD or a
/// listing page takes tens of milliseconds (OSS's slowest 0.1 % well under a second), so
/// 5 s without an answer means a store retrying or unreachable; the cached answer is served
/// and the outage begins (the probe ends it as soon as the store answers).
pub const STALE_GRACE: Duration = Duration::from_secs(5);

/// Between probes of an unreachable store: 2 s, so service resumes within a few seconds
/// of the store's return (plus the probe's own retries), at one tiny request per 2 s.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Listings of directories the kernel has forgotten: a listing lives in its directory's
/// inode, which goes when the kernel drops it (after an `ls -lR`, most do), and with the
/// store away there would be nothing to serve for it. The last listing of each directory
/// is kept here by key, least recently listed evicted first once they hold more than
/// [`STALE_LISTING_ENTRIES`] entries in all. Listings still held by an inode cost nothing
/// extra (shared `Arc`).
pub(super) struct StaleListings<L> {
    lru: lru::LruCache<String, (Arc<L>, usize)>,
    entries: usize,
}

/// Entries kept in [`StaleListings`]: 1,000,000 (about 300 MiB at worst; as much as one
/// directory may hold, `store::limits::MAX_LISTING_ENTRIES`).
pub const STALE_LISTING_ENTRIES: usize = 1_000_000;

impl<L> Default for StaleListings<L> {
    fn default() -> Self {
        Self {
            lru: lru::LruCache::unbounded(),
            entries: 0,
        }
    }
}

impl<L> StaleListings<L> {
    pub(super) fn put(&mut self, key: &str, listing: Arc<L>, entries: usize) {
        if let Some((_, n)) = self.lru.put(key.to_string(), (listing, entries)) {
            self.entries -= n;
        }
        self.entries += entries;
        while self.entries > STALE_LISTING_ENTRIES {
            match self.lru.pop_lru() {
                Some((_, (_, n))) => self.entries -= n,
                None => break,
            }
        }
    }

    pub(super) fn get(&mut self, key: &str) -> Option<Arc<L>> {
        self.lru.get(key).map(|(l, _)| l.clone())
    }
}

/// The outage state shared by the tree and its probe task.
#[derive(Default)]
pub(super) struct Outage {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Since when the store has been unreachable; `None`: it answers.
    since: Option<Instant>,
    /// Why, for the log and for fail-fast errors.
    why: String,
    probing: bool,
}

/// A revalidation's outcome as far as outages go.
pub(super) enum Revalidated<T> {
    /// The store answered (success or an answer such as 404).
    Answer(Result<T, FsError>),
    /// The store could not be reached: serve what is cached.
    Unreachable,
}

impl Outage {
    /// Is the store unreachable now?
    pub(super) fn down(&self) -> bool {
        self.inner.lock().since.is_some()
    }

    /// The error for something not cached while the store is unreachable.
    pub(super) fn fail_fast(&self, what: &str) -> FsError {
        let st = self.inner.lock();
        let secs = st.since.map_or(0, |t| t.elapsed().as_secs());
        FsError::Store(StoreError::Network(format!(
            "{what}: the store has been unreachable for {secs} s ({}); nothing cached to \
             serve",
            st.why
        )))
    }

    /// Ask the store with `fut` (which already holds its retries), knowing a cached answer
    /// exists when `have_stale`. Network failures and, with a cached answer, no answer
    /// within [`STALE_GRACE`] begin an outage; any answer ends one.
    pub(super) async fn revalidate<T>(
        self: &Arc<Self>,
        store: &Arc<dyn ObjectStore>,
        probe_prefix: &str,
        have_stale: bool,
        fut: impl Future<Output = Result<T, FsError>>,
    ) -> Revalidated<T> {
        let result = if have_stale {
            match tokio::time::timeout(STALE_GRACE, fut).await {
                Ok(r) => r,
                Err(_) => {
                    self.begin(
                        store,
                        probe_prefix,
                        format!("no answer within {STALE_GRACE:?}"),
                    );
                    return Revalidated::Unreachable;
                }
            }
        } else {
            fut.await
        };
        match result {
            Err(FsError::Store(e)) if e.is_retryable() => {
                self.begin(store, probe_prefix, e.to_string());
                if have_stale {
                    Revalidated::Unreachable
                } else {
                    Revalidated::Answer(Err(FsError::Store(e)))
                }
            }
            other => {
                self.end("it answered a request");
                Revalidated::Answer(other)
            }
        }
    }

    fn begin(self: &Arc<Self>, store: &Arc<dyn ObjectStore>, prefix: &str, why: String) {
        let mut st = self.inner.lock();
        if st.since.is_none() {
            warn!(
                "the store is unreachable ({why}); serving cached attributes, listings and \
                 objects until it answers again"
            );
            st.since = Some(Instant::now());
            st.why = why;
        }
        if !st.probing {
            st.probing = true;
            let (me, store, prefix) = (self.clone(), store.clone(), prefix.to_string());
            tokio::spawn(async move { me.probe(store, prefix).await });
        }
    }

    fn end(&self, how: &str) {
        let mut st = self.inner.lock();
        if let Some(t) = st.since.take() {
            info!(
                "the store is reachable again after {:.1?} ({how}); revalidating as usual",
                t.elapsed()
            );
        }
    }

    async fn probe(self: Arc<Self>, store: Arc<dyn ObjectStore>, prefix: String) {
        let req = ListRequest {
            prefix,
            delimiter: Some("/".into()),
            continuation_token: None,
            max_keys: 1,
        };
        loop {
            tokio::time::sleep(PROBE_INTERVAL).await;
            {
                // Checked and cleared under one lock, so an outage that begins now finds
                // `probing` false and starts a probe of its own.
                let mut st = self.inner.lock();
                if st.since.is_none() {
                    st.probing = false;
                    return;
                }
            }
            match store.list(&req).await {
                Ok(_) => self.end("a probe listing succeeded"),
                Err(e) if e.is_retryable() => {}
                // Any other answer is an answer: the store is there.
                Err(_) => self.end("a probe got an answer"),
            }
        }
    }
}
