//! What the mount shows at `/metrics` besides the counters the layers keep: gauges read
//! when scraped (bytes in the cache and its budget, parts in flight, open handles), the
//! `ossmount_info` labels, and the `--metrics-addr` listener.
//!
//! The gauges hold the mount's parts weakly: a scrape during shutdown reads 0 rather than
//! keeping a cache directory (and its lock) alive.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use crate::fetch::Fetcher;
use crate::fs::tree::Tree;
use crate::metrics;

/// Register the mount's gauges and labels.
pub fn register(
    url: &str,
    mountpoint: &std::path::Path,
    tree: &Arc<Tree>,
    cache: Option<&Arc<Fetcher>>,
) {
    metrics::set_info(vec![
        ("url", url.to_string()),
        ("mountpoint", mountpoint.display().to_string()),
    ]);
    let started = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::register_gauge(
        "ossmount_start_time_seconds",
        "When the mount started, in seconds since the Unix epoch.",
        move || started,
    );
    let t: Weak<Tree> = Arc::downgrade(tree);
    metrics::register_gauge(
        "ossmount_open_handles",
        "Files open through the mount (FUSE handles).",
        move || t.upgrade().map_or(0, |t| t.open_handles()) as f64,
    );
    let Some(cache) = cache else { return };
    let budget = cache.cache().config().max_bytes;
    let floor = cache.cache().config().min_free_bytes;
    metrics::register_gauge(
        "ossmount_cache_budget_bytes",
        "The cache's byte budget (--cache-size).",
        move || budget as f64,
    );
    metrics::register_gauge(
        "ossmount_cache_min_free_bytes",
        "Free space the cache leaves on its filesystem (--cache-min-free).",
        move || floor as f64,
    );
    let f: Weak<Fetcher> = Arc::downgrade(cache);
    metrics::register_gauge(
        "ossmount_cache_used_bytes",
        "Bytes the cache's files occupy on disk (allocated blocks).",
        move || f.upgrade().map_or(0, |f| f.cache().used_bytes()) as f64,
    );
    let limit = cache.engine().memory().limit();
    metrics::register_gauge(
        "ossmount_memory_limit_bytes",
        "Most bytes of part data held in memory (--memory-limit).",
        move || limit as f64,
    );
    let f: Weak<Fetcher> = Arc::downgrade(cache);
    metrics::register_gauge(
        "ossmount_memory_used_bytes",
        "Bytes of part data held in memory now (being received, or kept for readers).",
        move || f.upgrade().map_or(0, |f| f.engine().memory().used()) as f64,
    );
    let f: Weak<Fetcher> = Arc::downgrade(cache);
    metrics::register_gauge(
        "ossmount_memory_peak_bytes",
        "Most bytes of part data held in memory at once since the mount started.",
        move || f.upgrade().map_or(0, |f| f.engine().memory().peak()) as f64,
    );
    let f: Weak<Fetcher> = Arc::downgrade(cache);
    metrics::register_gauge(
        "ossmount_parts_in_flight",
        "Parts being fetched from the store or written to the cache now.",
        move || f.upgrade().map_or(0, |f| f.engine().parts_in_flight()) as f64,
    );
}

/// Start `/metrics` on `addr` on the mount's runtime.
pub fn listen(rt: &tokio::runtime::Runtime, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    rt.block_on(metrics::exporter::serve(addr))
}
