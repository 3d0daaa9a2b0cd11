//! Directory read-ahead. A walk (`ls -R`, `find`, `du`, `rsync`) reads a directory's
//! subdirectories one after another, in name order, and each costs a paged LIST: on an
//! object-store link (first byte after ~20 ms) 1,000 directories of 100 keys took 25-28 s
//! to walk, where the same 100,000 keys come in 3.4 s as one flat listing. So when a
//! directory is opened, the listings of its first subdirectories and of the siblings that
//! follow it are fetched in the background, a bounded number at a time, into the listings
//! kept by key (`stale_listings`): the walk finds them fresh when it gets there, and a
//! reader that opens one while it is still being fetched waits for that fetch instead of
//! asking again. Nothing is fetched while the store is unreachable, and errors are left
//! for the reader's own listing to report.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tracing::debug;

use super::listing::Listing;
use super::Tree;

/// Keys being read ahead, and the bound on the LISTs they may have in flight.
pub(super) struct DirAhead {
    /// Per key being fetched: held locked by its fetch until the listing is kept.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    permits: Arc<Semaphore>,
    /// Most keys waiting or being fetched: four rounds of `in_flight`. Past it a walker
    /// that opens directories faster than they are listed (or many `ls` of wide
    /// directories) reads nothing more ahead until the queue drains, so what is queued
    /// stays near what the walk will open next.
    max_queued: usize,
}

impl DirAhead {
    pub(super) fn new(in_flight: usize) -> Self {
        Self {
            fetching: Mutex::default(),
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            max_queued: 4 * in_flight.max(1),
        }
    }
}

/// The key of the directory holding directory `key` (`a/b/` -> `a/`, `a/` -> ``).
fn parent_key(key: &str) -> Option<&str> {
    let trimmed = key.strip_suffix('/')?;
    Some(trimmed.rfind('/').map_or("", |i| &trimmed[..=i]))
}

impl Tree {
    /// Directory `key` was opened with `listing`: read ahead its first subdirectories and
    /// the subdirectories of its parent after it (the next ones a walk opens).
    pub(super) fn read_ahead_dirs(&self, key: &str, listing: &Listing) {
        let n = self.config.dir_read_ahead;
        if n == 0 || self.outage.down() {
            return;
        }
        let mut keys: Vec<String> = listing
            .subdirs_after(None)
            .take(n)
            .map(|name| format!("{key}{name}/"))
            .collect();
        if key != self.root_key {
            let siblings = parent_key(key).and_then(|p| Some((p, self.fresh_listing_by_key(p)?)));
            if let Some((parent, l)) = siblings {
                let name = key[parent.len()..].trim_end_matches('/');
                keys.extend(
                    l.subdirs_after(Some(name))
                        .take(n)
                        .map(|s| format!("{parent}{s}/")),
                );
            }
        }
        for k in keys {
            self.read_ahead_dir(k);
        }
    }

    fn read_ahead_dir(&self, key: String) {
        if self.fresh_listing_by_key(&key).is_some() {
            return;
        }
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let held = lock.clone().try_lock_owned().expect("a new lock is free");
        {
            let mut fetching = self.dir_ahead.fetching.lock();
            if fetching.len() >= self.dir_ahead.max_queued || fetching.contains_key(&key) {
                return;
            }
            fetching.insert(key.clone(), lock);
        }
        let permits = self.dir_ahead.permits.clone();
        tokio::spawn(async move {
            let _held = held;
            if let Ok(_permit) = permits.acquire_owned().await {
                if me.fresh_listing_by_key(&key).is_none() && !me.outage.down() {
                    match me.fetch_listing(&key, None).await {
                        Ok(l) => {
                            let n = l.len();
                            me.stale_listings.lock().put(&key, Arc::new(l), n);
                        }
                        Err(e) => debug!(key, "directory read-ahead failed: {e}"),
                    }
                }
            }
            me.dir_ahead.fetching.lock().remove(&key);
        });
    }

    /// If directory `key` is being read ahead, wait until that fetch is done.
    pub(super) async fn wait_for_read_ahead(&self, key: &str) {
        let pending = self.dir_ahead.fetching.lock().get(key).cloned();
        if let Some(lock) = pending {
            drop(lock.lock().await);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parent_key;

    #[test]
    fn parent_keys() {
        assert_eq!(parent_key("a/b/"), Some("a/"));
        assert_eq!(parent_key("a/"), Some(""));
        assert_eq!(parent_key("x/y/z/"), Some("x/y/"));
        assert_eq!(parent_key(""), None);
    }
}
