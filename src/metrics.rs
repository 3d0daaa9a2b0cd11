//! The mount's counters, as Prometheus reads them: a leaf every layer may increment with
//! one line, and the text exposition format (version 0.0.4) written from them.
//!
//! Cost on the read path: a counter is one relaxed `fetch_add` on a static atomic; a
//! histogram observation is a bucket search over 16 bounds and three `fetch_add`s. No lock
//! is taken, nothing is allocated. Label sets are fixed enums (operation, status, source,
//! reason), so every series is an element of a static array: no map to look a label up in.
//! What cannot be counted as it happens (bytes in the cache, parts in flight, open handles)
//! is read when scraped, through [`register_gauge`] callbacks that the mount registers;
//! those may take the owner's lock for a moment, once per scrape, never per read.
//!
//! Written by hand rather than with `prometheus-client` (or `prometheus`): their labelled
//! families keep series in a map behind a `RwLock` (read-locked on every increment, written
//! on a series' first use), which is a lock per read where this is one atomic; their
//! registries would also be a second place where each metric is named. The format itself is
//! small (HELP, TYPE, `name{labels} value` lines; histograms as cumulative `_bucket{le=}`
//! plus `_sum` and `_count`), and the test parses our output with the reference parser
//! (Python `prometheus_client`), which is what a scraper runs.
//!
//! Counters are process-wide (`static`): a mount is one process. Unit tests in one process
//! share them, so they assert differences, never absolute values.
//!
//! Not counted, and cannot be: reads the kernel answers itself, from its page cache or
//! through FUSE passthrough from a finalized cache file; they never reach ossmount.

pub mod exporter;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A monotonically increasing count.
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// Upper bounds of the latency buckets, in seconds as Prometheus prints them, and in
/// nanoseconds. 100 us to 10 s: a FUSE read answered from memory takes tens of
/// microseconds, a ranged GET on loopback a millisecond, one to OSS 10-50 ms to the first
/// byte, and a retried one seconds.
const BOUNDS: [(&str, u64); 16] = [
    ("0.0001", 100_000),
    ("0.00025", 250_000),
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

/// A latency histogram: per-bucket counts (cumulated when written out), sum, count.
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BOUNDS.len() + 1],
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let i = BOUNDS
            .iter()
            .position(|(_, b)| ns <= *b)
            .unwrap_or(BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// A store operation, as `operation=` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    GetObject,
    HeadObject,
    ListObjects,
}

impl StoreOp {
    const ALL: [StoreOp; 3] = [
        StoreOp::GetObject,
        StoreOp::HeadObject,
        StoreOp::ListObjects,
    ];

    /// The operation of an HTTP request: HEAD, GET of a key, GET of the bucket (a listing).
    pub fn of(method: &str, has_key: bool) -> Self {
        match (method, has_key) {
            ("HEAD", _) => StoreOp::HeadObject,
            (_, true) => StoreOp::GetObject,
            (_, false) => StoreOp::ListObjects,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StoreOp::GetObject => "GetObject",
            StoreOp::HeadObject => "HeadObject",
            StoreOp::ListObjects => "ListObjects",
        }
    }
}

/// Status codes that get a series of their own; any other is `other`, and a request that
/// got no response at all (refused, reset, timed out) is `error`.
const STATUSES: [u16; 14] = [
    200, 206, 304, 400, 403, 404, 408, 412, 416, 429, 500, 502, 503, 504,
];
const STATUS_OTHER: usize = STATUSES.len();
const STATUS_ERROR: usize = STATUSES.len() + 1;
const N_STATUS: usize = STATUSES.len() + 2;

fn status_slot(status: Option<u16>) -> usize {
    match status {
        None => STATUS_ERROR,
        Some(s) => STATUSES
            .iter()
            .position(|&c| c == s)
            .unwrap_or(STATUS_OTHER),
    }
}

fn status_label(slot: usize) -> String {
    match slot {
        STATUS_OTHER => "other".into(),
        STATUS_ERROR => "error".into(),
        i => STATUSES[i].to_string(),
    }
}

/// Whether a status counts as an error in `ossmount status`: no response, 403, 429, 5xx.
/// 404, 412 and 304 are answers a mount expects (a negative lookup, a changed object).
fn is_error_slot(slot: usize) -> bool {
    slot == STATUS_ERROR
        || STATUSES
            .get(slot)
            .is_some_and(|&s| s == 403 || s == 429 || s >= 500)
}

/// Where the bytes a reader got came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadSource {
    /// Parts held in memory (received moments ago, or kept for the reader).
    Memory,
    /// The cache's data file or finalized file, read by ossmount.
    CacheFile,
    /// A read that had to wait for the store (or, under --no-cache, went to it).
    Network,
}

impl ReadSource {
    const ALL: [ReadSource; 3] = [
        ReadSource::Memory,
        ReadSource::CacheFile,
        ReadSource::Network,
    ];
    fn name(self) -> &'static str {
        match self {
            ReadSource::Memory => "memory",
            ReadSource::CacheFile => "cache_file",
            ReadSource::Network => "network",
        }
    }
}

/// Why a request was retried (or a broken body resumed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// 503 SlowDown, 429 and OSS's QPS/bandwidth limit codes.
    Throttled,
    /// Other 5xx.
    ServerError,
    Timeout,
    /// Refused, reset, broken body.
    Network,
    /// 408 and anything else retryable.
    Other,
}

impl RetryReason {
    const ALL: [RetryReason; 5] = [
        RetryReason::Throttled,
        RetryReason::ServerError,
        RetryReason::Timeout,
        RetryReason::Network,
        RetryReason::Other,
    ];
    fn name(self) -> &'static str {
        match self {
            RetryReason::Throttled => "throttled",
            RetryReason::ServerError => "server_error",
            RetryReason::Timeout => "timeout",
            RetryReason::Network => "network",
            RetryReason::Other => "other",
        }
    }
}

/// A FUSE request type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FuseOp {
    Lookup,
    Forget,
    Getattr,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Open,
    Read,
    Release,
    Flush,
    Fsync,
    Statfs,
    /// Everything refused (writes: EROFS; xattrs, lseek, poll, ioctl: not implemented).
    Refused,
}

impl FuseOp {
    const ALL: [FuseOp; 14] = [
        FuseOp::Lookup,
        FuseOp::Forget,
        FuseOp::Getattr,
        FuseOp::Opendir,
        FuseOp::Readdir,
        FuseOp::Readdirplus,
        FuseOp::Releasedir,
        FuseOp::Open,
        FuseOp::Read,
        FuseOp::Release,
        FuseOp::Flush,
        FuseOp::Fsync,
        FuseOp::Statfs,
        FuseOp::Refused,
    ];
    fn name(self) -> &'static str {
        match self {
            FuseOp::Lookup => "lookup",
            FuseOp::Forget => "forget",
            FuseOp::Getattr => "getattr",
            FuseOp::Opendir => "opendir",
            FuseOp::Readdir => "readdir",
            FuseOp::Readdirplus => "readdirplus",
            FuseOp::Releasedir => "releasedir",
            FuseOp::Open => "open",
            FuseOp::Read => "read",
            FuseOp::Release => "release",
            FuseOp::Flush => "flush",
            FuseOp::Fsync => "fsync",
            FuseOp::Statfs => "statfs",
            FuseOp::Refused => "refused",
        }
    }
}

/// Every counter of the process.
pub struct Metrics {
    store_requests: [[Counter; N_STATUS]; 3],
    store_latency: [Histogram; 3],
    /// Body bytes of GetObject responses received from the store.
    pub fetched_bytes: Counter,
    read_bytes: [Counter; 3],
    /// FUSE reads answered with bytes at hand (memory or cache file).
    pub cache_hits: Counter,
    /// FUSE reads that waited for the store.
    pub cache_misses: Counter,
    retries: [Counter; 5],
    /// Replies that said "slow down" (503 SlowDown, 429, OSS's limit codes).
    pub throttled: Counter,
    pub evictions: Counter,
    pub finalizations: Counter,
    /// Whole objects whose CRC-64 did not match `x-oss-hash-crc64ecma` (or their parts').
    pub crc64_object_failures: Counter,
    /// Parts recorded by an earlier process that failed their CRC-64 when read back.
    pub crc64_part_failures: Counter,
    /// Hook for the credentials provider: every refresh of temporary credentials.
    pub credential_refreshes: Counter,
    pub credential_refresh_failures: Counter,
    fuse_requests: [Histogram; 14],
}

impl Metrics {
    pub const fn new() -> Self {
        Self {
            store_requests: [const { [const { Counter::new() }; N_STATUS] }; 3],
            store_latency: [const { Histogram::new() }; 3],
            fetched_bytes: Counter::new(),
            read_bytes: [const { Counter::new() }; 3],
            cache_hits: Counter::new(),
            cache_misses: Counter::new(),
            retries: [const { Counter::new() }; 5],
            throttled: Counter::new(),
            evictions: Counter::new(),
            finalizations: Counter::new(),
            crc64_object_failures: Counter::new(),
            crc64_part_failures: Counter::new(),
            credential_refreshes: Counter::new(),
            credential_refresh_failures: Counter::new(),
            fuse_requests: [const { Histogram::new() }; 14],
        }
    }

    /// One store request answered with `status` (`None`: no response) after `elapsed`
    /// (to the response's headers).
    pub fn store_request(&self, op: StoreOp, status: Option<u16>, elapsed: Duration) {
        let o = op as usize;
        self.store_requests[o][status_slot(status)].inc();
        self.store_latency[o].observe(elapsed);
    }

    pub fn read_bytes(&self, source: ReadSource, n: u64) {
        self.read_bytes[source as usize].add(n);
    }

    pub fn retry(&self, reason: RetryReason) {
        self.retries[reason as usize].inc();
    }

    /// Time one FUSE request: counted and observed when the returned guard drops (move
    /// it into the task that replies).
    pub fn fuse(&'static self, op: FuseOp) -> FuseTimer {
        FuseTimer {
            hist: &self.fuse_requests[op as usize],
            start: Instant::now(),
        }
    }

    /// Store requests so far, and those of them that count as errors (see `status`).
    pub fn store_totals(&self) -> (u64, u64) {
        let (mut all, mut errors) = (0, 0);
        for per_op in &self.store_requests {
            for (slot, c) in per_op.iter().enumerate() {
                let n = c.get();
                all += n;
                if is_error_slot(slot) {
                    errors += n;
                }
            }
        }
        (all, errors)
    }

    /// (hits, misses) of FUSE reads.
    pub fn hit_totals(&self) -> (u64, u64) {
        (self.cache_hits.get(), self.cache_misses.get())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The process's counters.
pub static METRICS: Metrics = Metrics::new();

/// Records one FUSE request when dropped.
pub struct FuseTimer {
    hist: &'static Histogram,
    start: Instant,
}

impl Drop for FuseTimer {
    fn drop(&mut self) {
        self.hist.observe(self.start.elapsed());
    }
}

/// A value read when scraped.
struct Gauge {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> f64 + Send + Sync>,
}

static GAUGES: Mutex<Vec<Gauge>> = Mutex::new(Vec::new());
/// `ossmount_info`'s labels, set once by the mount.
static INFO: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

/// Register a gauge read at every scrape (`name` with its unit, e.g.
/// `ossmount_cache_used_bytes`). A second registration of a name replaces the first.
pub fn register_gauge(
    name: &'static str,
    help: &'static str,
    read: impl Fn() -> f64 + Send + Sync + 'static,
) {
    let mut g = GAUGES.lock();
    g.retain(|x| x.name != name);
    g.push(Gauge {
        name,
        help,
        read: Box::new(read),
    });
}

/// Where the credentials come from and when they expire (seconds since the epoch), for
/// `ossmount status`. The credentials provider sets it at start and on every refresh.
static CREDENTIALS: Mutex<Option<(String, Option<u64>)>> = Mutex::new(None);

/// Hook for the credentials provider: `source` (e.g. `environment (OSS_ACCESS_KEY_ID)`,
/// `ECS RAM role myrole`) and the expiry of temporary credentials, when known.
pub fn set_credentials(source: String, expires_unix: Option<u64>) {
    *CREDENTIALS.lock() = Some((source, expires_unix));
}

/// What [`set_credentials`] was last told.
pub fn credentials() -> Option<(String, Option<u64>)> {
    CREDENTIALS.lock().clone()
}

/// Set the labels of `ossmount_info` (version is added).
pub fn set_info(labels: Vec<(&'static str, String)>) {
    *INFO.lock() = labels;
}

/// A label value escaped as the text format wants it (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cum = 0;
    let sep = if labels.is_empty() { "" } else { "," };
    for (i, (le, _)) in BOUNDS.iter().enumerate() {
        cum += h.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}");
    }
    cum += h.buckets[BOUNDS.len()].load(Ordering::Relaxed);
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
    let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let braces = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{{{s}}}")
        }
    };
    let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
    // The count is the buckets' total, so the two always agree within one scrape.
    let _ = writeln!(out, "{name}_count{} {cum}", braces(labels));
}

fn counter(out: &mut String, name: &str, help: &str, c: &Counter) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", c.get());
}

/// The text exposition of every metric.
pub fn render() -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(16 << 10);

    header(
        &mut out,
        "ossmount_info",
        "gauge",
        "The mount: source URL, mountpoint, version (always 1).",
    );
    let mut labels = vec![format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))];
    for (k, v) in INFO.lock().iter() {
        labels.push(format!("{k}=\"{}\"", escape(v)));
    }
    let _ = writeln!(out, "ossmount_info{{{}}} 1", labels.join(","));

    header(
        &mut out,
        "ossmount_store_requests_total",
        "counter",
        "Requests sent to the store, by operation and HTTP status (error: no response: \
         refused, reset, timed out; other: a status without a series of its own).",
    );
    for op in StoreOp::ALL {
        for slot in 0..N_STATUS {
            let n = m.store_requests[op as usize][slot].get();
            if n > 0 {
                let _ = writeln!(
                    out,
                    "ossmount_store_requests_total{{operation=\"{}\",status=\"{}\"}} {n}",
                    op.name(),
                    status_label(slot)
                );
            }
        }
    }
    header(
        &mut out,
        "ossmount_store_request_duration_seconds",
        "histogram",
        "Time from sending a store request to its response headers (first byte), by \
         operation; bodies stream after it.",
    );
    for op in StoreOp::ALL {
        histogram(
            &mut out,
            "ossmount_store_request_duration_seconds",
            &format!("operation=\"{}\"", op.name()),
            &m.store_latency[op as usize],
        );
    }
    counter(
        &mut out,
        "ossmount_store_fetched_bytes_total",
        "Body bytes of GetObject responses received from the store.",
        &m.fetched_bytes,
    );
    header(
        &mut out,
        "ossmount_store_retries_total",
        "counter",
        "Requests retried and broken bodies resumed, by the reason of the failure.",
    );
    for r in RetryReason::ALL {
        let _ = writeln!(
            out,
            "ossmount_store_retries_total{{reason=\"{}\"}} {}",
            r.name(),
            m.retries[r as usize].get()
        );
    }
    counter(
        &mut out,
        "ossmount_store_throttled_total",
        "Replies asking to slow down: 503 SlowDown, 429, OSS's QPS and bandwidth limit codes.",
        &m.throttled,
    );
    header(
        &mut out,
        "ossmount_read_bytes_total",
        "counter",
        "Bytes served to FUSE readers by ossmount, by source: memory (parts held in \
         memory), cache_file (read from the cache's files), network (reads that waited for \
         the store). Reads the kernel answers itself are not counted, and cannot be: its \
         page cache, and FUSE passthrough of finalized objects, never reach ossmount.",
    );
    for s in ReadSource::ALL {
        let _ = writeln!(
            out,
            "ossmount_read_bytes_total{{source=\"{}\"}} {}",
            s.name(),
            m.read_bytes[s as usize].get()
        );
    }
    counter(
        &mut out,
        "ossmount_cache_hits_total",
        "FUSE reads answered at once from memory or the cache file (page cache and \
         passthrough reads are not seen).",
        &m.cache_hits,
    );
    counter(
        &mut out,
        "ossmount_cache_misses_total",
        "FUSE reads that had to wait for the store.",
        &m.cache_misses,
    );
    counter(
        &mut out,
        "ossmount_cache_evictions_total",
        "Cache entries evicted to stay within the budget or the free-space floor.",
        &m.evictions,
    );
    counter(
        &mut out,
        "ossmount_cache_finalizations_total",
        "Objects completed in the cache, verified and renamed to an ordinary file.",
        &m.finalizations,
    );
    header(
        &mut out,
        "ossmount_crc64_failures_total",
        "counter",
        "CRC-64 mismatches: check=object (a complete object against \
         x-oss-hash-crc64ecma; the entry is dropped), check=part (a part recorded by an \
         earlier process, damaged on disk since; fetched again).",
    );
    let _ = writeln!(
        out,
        "ossmount_crc64_failures_total{{check=\"object\"}} {}",
        m.crc64_object_failures.get()
    );
    let _ = writeln!(
        out,
        "ossmount_crc64_failures_total{{check=\"part\"}} {}",
        m.crc64_part_failures.get()
    );
    counter(
        &mut out,
        "ossmount_credential_refreshes_total",
        "Refreshes of temporary credentials (0 with static credentials).",
        &m.credential_refreshes,
    );
    counter(
        &mut out,
        "ossmount_credential_refresh_failures_total",
        "Failed refreshes of temporary credentials.",
        &m.credential_refresh_failures,
    );
    header(
        &mut out,
        "ossmount_fuse_request_duration_seconds",
        "histogram",
        "FUSE requests by type, from their arrival to the reply (its _count is the number \
         of requests). Requests the kernel answers from its caches never arrive.",
    );
    for op in FuseOp::ALL {
        histogram(
            &mut out,
            "ossmount_fuse_request_duration_seconds",
            &format!("operation=\"{}\"", op.name()),
            &m.fuse_requests[op as usize],
        );
    }
    for g in GAUGES.lock().iter() {
        header(&mut out, g.name, "gauge", g.help);
        let _ = writeln!(out, "{} {}", g.name, (g.read)());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_agree_with_their_count() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        histogram(&mut out, "x", "a=\"b\"", &h);
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
        assert!(out.contains("x_sum{a=\"b\"} 60.00305"), "{out}");
    }

    #[test]
    fn statuses_and_errors() {
        let m = Metrics::new();
        m.store_request(StoreOp::GetObject, Some(206), Duration::from_millis(1));
        m.store_request(StoreOp::HeadObject, Some(404), Duration::from_millis(1));
        m.store_request(StoreOp::GetObject, Some(503), Duration::from_millis(1));
        m.store_request(StoreOp::ListObjects, None, Duration::from_millis(1));
        m.store_request(StoreOp::ListObjects, Some(418), Duration::from_millis(1));
        assert_eq!(m.store_totals(), (5, 2));
        assert_eq!(status_label(status_slot(Some(418))), "other");
        assert_eq!(StoreOp::of("GET", false), StoreOp::ListObjects);
        assert_eq!(StoreOp::of("HEAD", true), StoreOp::HeadObject);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
