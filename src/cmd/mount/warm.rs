//! `ossmount warm`, the mount's side: fetch objects into the cache and finalize them,
//! through the same fetch engine as reads, so the bytes go from the socket into part
//! buffers and onto disk with O_DIRECT, never through the page cache or the caller.
//!
//! - The paths (relative to the mountpoint; a trailing `/` is a directory, walked with
//!   ListObjectsV2 without a delimiter) become objects; each is HEADed first, so it is
//!   fetched with its current ETag and verified against its CRC-64 when finalized.
//! - Objects run `jobs` at a time (the mount's `--jobs`); their parts share the engine's
//!   `jobs` request permits with the mount's readers, so a warm never sends more requests
//!   at once than the mount would.
//! - Resumable: an object already complete in the cache for the ETag listed costs
//!   nothing (a rerun over 1,000 finalized objects is one listing); a partial one fetches
//!   only the parts its checkpoint lacks. Parts are recorded as they land, so
//!   an interrupted warm (the client went away: the warm stops) loses at most a batch.
//! - Bounded by the budget: objects are warmed in order while everything this warm holds
//!   (the objects it fetched and those it found cached) fits in `--cache-size`; the next
//!   one that would not is where it stops, and says so, since going on would only evict
//!   what it just warmed. At the end, an object it warmed that is no longer complete (the
//!   free-space floor evicted it, or a reader's object did) is reported too.
//! - `dry_run`: the plan and each object that would be fetched; nothing is fetched or
//!   created.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::control::Mount;
use crate::cache::admin::cached_bytes;
use crate::cache::checkpoint::Identity;
use crate::cache::entry::Entry;
use crate::cmd::control::WarmEvent;
use crate::store::{ListRequest, ObjectMeta, StoreError};

/// How often progress is reported: 4 times a second is smooth on a progress bar and a few
/// hundred bytes a second on the socket.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// How long a warmed object may take to be finalized after its last part landed (the
/// whole-object CRC-64 is combined from the parts' CRCs, then one rename).
const FINALIZE_WAIT: Duration = Duration::from_secs(30);

/// Counters of one warm, read by the progress ticker.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    /// Bytes fetched by objects that are done.
    fetched: AtomicU64,
    /// Objects being fetched: their entry and the bytes it had when opened.
    active: Mutex<Vec<(Arc<Entry>, u64)>>,
}

impl Progress {
    fn fetched_now(&self) -> u64 {
        let active: u64 = self
            .active
            .lock()
            .iter()
            .map(|(e, before)| e.present_bytes().saturating_sub(*before))
            .sum();
        self.fetched.load(Ordering::Relaxed) + active
    }

    fn event(&self) -> WarmEvent {
        WarmEvent::Progress {
            done_objects: self.done.load(Ordering::Relaxed),
            fetched_bytes: self.fetched_now(),
        }
    }
}

async fn send(wr: &mut OwnedWriteHalf, ev: &WarmEvent) -> std::io::Result<()> {
    let mut line = serde_json::to_string(ev).map_err(std::io::Error::other)?;
    line.push('\n');
    wr.write_all(line.as_bytes()).await
}

/// Run one warm and report on `wr` until done, or until the client goes away (then the
/// warm stops; what landed is kept).
pub async fn run(mount: Arc<Mount>, paths: Vec<String>, dry_run: bool, mut wr: OwnedWriteHalf) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let progress = Arc::new(Progress::default());
    let job = tokio::spawn(warm(mount, paths, dry_run, tx, progress.clone()));
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            _ = tick.tick() => progress.event(),
        };
        let last = matches!(ev, WarmEvent::Done { .. });
        if send(&mut wr, &ev).await.is_err() {
            tracing::info!("warm: the client went away; stopping");
            job.abort();
            return;
        }
        if last {
            break;
        }
    }
    let _ = job.await;
}

/// An object to warm, with its path in the mount.
struct Target {
    path: String,
    meta: ObjectMeta,
    /// `meta` came from a HEAD (with the CRC-64), not from a listing.
    headed: bool,
}

async fn warm(
    mount: Arc<Mount>,
    paths: Vec<String>,
    dry_run: bool,
    tx: mpsc::UnboundedSender<WarmEvent>,
    progress: Arc<Progress>,
) {
    let done = |failed: u64, stopped: Option<String>, progress: &Progress| WarmEvent::Done {
        done_objects: progress.done.load(Ordering::Relaxed),
        fetched_bytes: progress.fetched_now(),
        failed,
        stopped,
    };
    let Some(fetcher) = mount.cache.clone() else {
        let _ = tx.send(done(
            0,
            Some("the mount has no cache (--no-cache)".into()),
            &progress,
        ));
        return;
    };
    let mut failed = 0;
    let mut targets = Vec::new();
    for p in &paths {
        match walk(&mount, p).await {
            Ok(found) if found.is_empty() => {
                failed += 1;
                let _ = tx.send(WarmEvent::Failed {
                    path: p.clone(),
                    error: "no such file or directory in the bucket".into(),
                });
            }
            Ok(found) => targets.extend(found),
            Err(e) => {
                failed += 1;
                let _ = tx.send(WarmEvent::Failed {
                    path: p.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    // Overlapping arguments (a directory and a file in it) warm each object once.
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert(t.meta.key.clone()));

    let cache = fetcher.cache().clone();
    let dir = cache.config().dir.clone();
    let cached: Vec<u64> = targets
        .iter()
        .map(|t| cached_bytes(&dir, &Identity::of(&mount.namespace, &t.meta)))
        .collect();
    let bytes: u64 = targets.iter().map(|t| t.meta.size).sum();
    let _ = tx.send(WarmEvent::Plan {
        objects: targets.len() as u64,
        bytes,
        cached_objects: targets
            .iter()
            .zip(&cached)
            .filter(|(t, c)| **c == t.meta.size)
            .count() as u64,
        to_fetch_bytes: targets
            .iter()
            .zip(&cached)
            .map(|(t, c)| t.meta.size - c)
            .sum(),
    });
    if dry_run {
        for (t, c) in targets.iter().zip(&cached) {
            if *c < t.meta.size {
                let _ = tx.send(WarmEvent::WouldFetch {
                    path: t.path.clone(),
                    bytes: t.meta.size - c,
                });
            }
        }
        let _ = tx.send(done(failed, None, &progress));
        return;
    }

    // The budget: objects in order while all of them fit (allocated in 4 KiB blocks).
    let budget = cache.config().max_bytes;
    let mut held = 0u64;
    let fit = targets
        .iter()
        .take_while(|t| {
            held += t.meta.size.div_ceil(4096) * 4096;
            held <= budget
        })
        .count();
    let mut stopped = (fit < targets.len()).then(|| {
        format!(
            "stopped after {fit} of {} objects: the next would not fit in the cache budget \
             ({} bytes, --cache-size) beside what this warm holds, and would only evict it",
            targets.len(),
            budget
        )
    });
    targets.truncate(fit);

    let small = cache.config().small_object_threshold;
    let jobs = cache.config().jobs.max(1);
    let warmed = Mutex::new(Vec::new());
    futures_util::stream::iter(targets.iter().zip(&cached))
        .for_each_concurrent(jobs, |(t, &cached)| {
            let (mount, fetcher, progress, tx) =
                (mount.clone(), fetcher.clone(), progress.clone(), tx.clone());
            let warmed = &warmed;
            async move {
                // Complete in the cache for the ETag just listed: verified when it was
                // finalized, nothing to ask the store.
                let result = if cached == t.meta.size {
                    progress.done.fetch_add(1, Ordering::Relaxed);
                    Ok(t.meta.clone())
                } else {
                    warm_one(&mount, &fetcher, t, small, &progress).await
                };
                match result {
                    Ok(meta) => warmed.lock().push(meta),
                    Err(e) => {
                        let _ = tx.send(WarmEvent::Failed {
                            path: t.path.clone(),
                            error: e,
                        });
                    }
                }
            }
        })
        .await;
    let warmed = warmed.into_inner();
    failed += (targets.len() - warmed.len()) as u64;
    // Anything this warm completed that the cache let go of again.
    let evicted = warmed
        .iter()
        .filter(|m| cached_bytes(&dir, &Identity::of(&mount.namespace, m)) < m.size)
        .count();
    if evicted > 0 && stopped.is_none() {
        stopped = Some(format!(
            "{evicted} warmed objects were evicted again (the free-space floor, \
             --cache-min-free, or other readers needed the room)"
        ));
    }
    let _ = tx.send(done(failed, stopped, &progress));
}

/// The objects under one path: a file (HEAD) or, with a trailing `/`, everything below a
/// directory (a recursive listing, then a HEAD per object when it is warmed).
async fn walk(mount: &Mount, path: &str) -> Result<Vec<Target>, StoreError> {
    let key = format!("{}{}", mount.prefix, path.trim_start_matches('/'));
    if !(path.is_empty() || path.ends_with('/')) {
        return match mount.store.head(&key).await {
            Ok(meta) => Ok(vec![Target {
                path: path.to_string(),
                meta,
                headed: true,
            }]),
            Err(StoreError::NoSuchKey(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
    }
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = mount
            .store
            .list(&ListRequest {
                prefix: key.clone(),
                delimiter: None,
                continuation_token: token.take(),
                max_keys: 1000,
            })
            .await?;
        for meta in page.objects {
            // Directory markers are not files; neither are keys the mount cannot show.
            if meta.key.ends_with('/') || meta.key.contains("//") {
                continue;
            }
            let rel = meta.key[mount.prefix.len().min(meta.key.len())..].to_string();
            out.push(Target {
                path: rel,
                meta,
                headed: false,
            });
        }
        match page.next_continuation_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Fetch one object's missing parts and wait until it is finalized; returns the version
/// warmed.
async fn warm_one(
    mount: &Mount,
    fetcher: &crate::fetch::Fetcher,
    target: &Target,
    small: u64,
    progress: &Progress,
) -> Result<ObjectMeta, String> {
    // Its current version, with the CRC-64 the finalized file is checked against.
    let meta = if target.headed {
        target.meta.clone()
    } else {
        match mount.store.head(&target.meta.key).await {
            Ok(m) => m,
            Err(StoreError::NoSuchKey(_)) => return Err("deleted since it was listed".into()),
            Err(e) => return Err(e.to_string()),
        }
    };
    let handle = fetcher.object(&meta).map_err(|e| e.to_string())?;
    let entry = handle.entry().clone();
    let before = entry.present_bytes();
    progress.active.lock().push((entry.clone(), before));
    let result = handle.fetch_all_with(meta.size <= small).await;
    // Finalizing runs on the last part write's thread: wait for it.
    let deadline = tokio::time::Instant::now() + FINALIZE_WAIT;
    while result.is_ok()
        && !entry.is_finalized()
        && entry.dead().is_none()
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fetched = entry.present_bytes().saturating_sub(before);
    progress
        .active
        .lock()
        .retain(|(e, _)| !Arc::ptr_eq(e, &entry));
    progress.fetched.fetch_add(fetched, Ordering::Relaxed);
    result.map_err(|e| e.to_string())?;
    if let Some(why) = entry.dead() {
        return Err(format!("dropped from the cache: {why:?}"));
    }
    if !entry.is_finalized() {
        return Err("complete, but not finalized within 30 s".into());
    }
    progress.done.fetch_add(1, Ordering::Relaxed);
    Ok(meta)
}
