//! The mount's side of its control socket (see [`crate::cmd::control`] for where it lives
//! and what is said on it): `status` answered from the counters, `warm` handed to
//! [`super::warm`]. Runs on the mount's runtime; nothing here touches the read path.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::warm;
use crate::cmd::control::{self, Request, Status};
use crate::fetch::Fetcher;
use crate::fs::tree::Tree;
use crate::metrics::METRICS;
use crate::store::ObjectStore;

/// How often the store's request totals are sampled for "in the last minute": 5 s, so the
/// window is 60-65 s wide. The samples are a dozen integers.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(60);

/// What the control socket knows of its mount.
pub struct Mount {
    pub url: String,
    pub mountpoint: PathBuf,
    pub started: SystemTime,
    pub cache: Option<Arc<Fetcher>>,
    pub tree: Arc<Tree>,
    pub store: Arc<dyn ObjectStore>,
    /// The tree's root key (`""` or ending with `/`).
    pub prefix: String,
    /// (endpoint, bucket), as the cache names entries.
    pub namespace: String,
    pub metrics_addr: Option<SocketAddr>,
    /// (when, requests, errors) every [`SAMPLE_EVERY`], the last minute of them.
    samples: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl Mount {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        url: String,
        mountpoint: PathBuf,
        cache: Option<Arc<Fetcher>>,
        tree: Arc<Tree>,
        store: Arc<dyn ObjectStore>,
        prefix: String,
        namespace: String,
        metrics_addr: Option<SocketAddr>,
    ) -> Self {
        Self {
            url,
            mountpoint,
            started: SystemTime::now(),
            cache,
            tree,
            store,
            prefix,
            namespace,
            metrics_addr,
            // The counters started with the process, moments ago.
            samples: Mutex::new(VecDeque::from([(Instant::now(), 0, 0)])),
        }
    }

    fn sample(&self) {
        let (req, err) = METRICS.store_totals();
        let now = Instant::now();
        let mut s = self.samples.lock();
        s.push_back((now, req, err));
        while s.len() > 1 && s.front().is_some_and(|f| now - f.0 > WINDOW) {
            s.pop_front();
        }
    }

    pub fn status(&self) -> Status {
        let (requests_total, errors_total) = METRICS.store_totals();
        let (_, req0, err0) = *self.samples.lock().front().expect("one sample at least");
        let (read_hits, read_misses) = METRICS.hit_totals();
        let reads = read_hits + read_misses;
        let since = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let (credentials, expires) =
            crate::metrics::credentials().unwrap_or_else(|| ("unknown".to_string(), None));
        let (cache_dir, used, budget) = match &self.cache {
            Some(f) => (
                Some(f.cache().config().dir.clone()),
                f.cache().used_bytes(),
                f.cache().config().max_bytes,
            ),
            None => (None, 0, 0),
        };
        let memory = self.cache.as_ref().map(|f| f.engine().memory());
        let (memory_limit_bytes, memory_used_bytes, memory_peak_bytes) =
            memory.map_or((0, 0, 0), |m| (m.limit(), m.used(), m.peak()));
        Status {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            url: self.url.clone(),
            mountpoint: self.mountpoint.clone(),
            started: since(self.started).as_secs(),
            uptime_seconds: self.started.elapsed().unwrap_or_default().as_secs(),
            cache_dir,
            cache_used_bytes: used,
            cache_budget_bytes: budget,
            memory_limit_bytes,
            memory_used_bytes,
            memory_peak_bytes,
            read_hits,
            read_misses,
            hit_ratio: (reads > 0).then(|| read_hits as f64 / reads as f64),
            requests_last_minute: requests_total.saturating_sub(req0),
            errors_last_minute: errors_total.saturating_sub(err0),
            requests_total,
            errors_total,
            fetched_bytes_total: METRICS.fetched_bytes.get(),
            open_handles: self.tree.open_handles() as u64,
            credentials,
            credentials_expire: expires.map(|s| {
                chrono::DateTime::<chrono::Utc>::from_timestamp(s as i64, 0)
                    .map_or_else(|| s.to_string(), |t| t.to_rfc3339())
            }),
            metrics_addr: self.metrics_addr.map(|a| a.to_string()),
        }
    }
}

/// The socket of this process, removed when dropped (at unmount).
pub struct Socket(PathBuf);

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Bind this mount's control socket and serve it on `rt`.
pub fn listen(rt: &tokio::runtime::Runtime, mount: Arc<Mount>) -> std::io::Result<Socket> {
    let dir = control::prepare_socket_dir()?;
    let path = control::socket_path(&dir, std::process::id());
    // Left by an earlier process with our pid (a reboot, a pid wrapped around).
    let _ = std::fs::remove_file(&path);
    let listener = {
        let _enter = rt.enter();
        UnixListener::bind(&path)?
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let sampler = mount.clone();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            sampler.sample();
        }
    });
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_one(stream, mount.clone()));
                }
                Err(e) => {
                    tracing::debug!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    tracing::debug!(socket = %path.display(), "control socket");
    Ok(Socket(path))
}

async fn serve_one(stream: UnixStream, mount: Arc<Mount>) {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    // One request per connection, of a few hundred bytes; a client that sends no newline
    // within 10 s is dropped.
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(rd.take(1 << 20)).read_line(&mut line),
    )
    .await;
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        return;
    }
    match serde_json::from_str::<Request>(line.trim_end()) {
        Ok(Request::Status) => {
            let mut reply = serde_json::to_string(&mount.status()).unwrap_or_default();
            reply.push('\n');
            let _ = wr.write_all(reply.as_bytes()).await;
        }
        Ok(Request::Warm { paths, dry_run }) => warm::run(mount, paths, dry_run, wr).await,
        Err(e) => {
            let msg = serde_json::json!({ "error": format!("bad request: {e}") });
            let _ = wr.write_all(format!("{msg}\n").as_bytes()).await;
        }
    }
}
