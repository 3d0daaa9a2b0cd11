//! `ossmount serve DIR`: the folders under DIR served as buckets over the subset of the
//! OSS and S3 HTTP APIs that ossmount reads with (GetObject with ranges and If-Match,
//! HeadObject, ListObjects V1 and V2, plus HeadBucket and ListBuckets), read-only, for demos,
//! tests and benchmarks.
//!
//! Built on hyper 1 (HTTP/1.1, keep-alive, TCP_NODELAY) on a multi-thread tokio runtime.
//! Object bodies stream from the file in 256 KiB `pread`s into recycled buffers
//! ([`body`]). On the shared 2-core box a 2 GiB object from the page cache goes to
//! `curl -o /dev/null` at 1.6-1.9 GB/s with the machine at load 4 from other builds, and
//! 0.9-1.1 GB/s at load 5-6 (`scripts/bench.sh`; nginx with sendfile measured 0.55-0.6
//! GB/s in the same runs).
//!
//! Requests are signed (OSS V4 or S3 SigV4, keys from the environment) unless
//! `--anonymous`; OSS-style requests get OSS error codes and the OSS range semantics,
//! S3-style ones (SigV4 or any `x-amz-*` header) S3's. ETag and CRC-64 are computed once
//! per file version ([`identity`]): lazily with single flight, and by a background
//! warm-up over the tree at start-up, so a 2 GiB file (about 3.5 s of MD5) is usually
//! ready before it is first asked for.
//!
//! Modules: [`resolve`] (addressing, keeping every path inside DIR), [`auth`] (OSS V4 and
//! S3 SigV4 verification), [`identity`] (ETag and CRC-64 once per file version),
//! [`object`] (ranges, conditions, headers), [`list`] (ListObjects V1 and V2), [`body`] (streaming,
//! exact byte counts, injected resets and stalls), [`stats`] (counters and fault switches),
//! [`link`] (an emulated object-store link: latency, rates, request quota), [`kinds`]
//! and [`versions`] (symlink, appendable and archived objects, user metadata, versions),
//! [`tls`] (HTTPS with `--tls-cert`/`--tls-key`), [`error`] (the XML error format).
//!
//! Testing aids, only with `--testing-aids` and unauthenticated by design (bind to
//! loopback; a warning says so otherwise): `GET /_ossmount/stats`,
//! `POST /_ossmount/stats/reset`, `GET|PUT /_ossmount/faults` (JSON, see
//! [`stats::Faults`]), and the object kinds and versions made from the tree ([`kinds`],
//! [`versions`]; off, the tree is served as the plain objects it is). The control
//! endpoints never count in the stats and never see injected faults. The
//! first line on stdout is `ossmount serve: listening on http://ADDR` (`https://` with
//! `--tls-cert`), flushed once the
//! socket is bound, so `--listen 127.0.0.1:0` can be used by scripts and tests.

pub mod auth;
pub mod aws_metadata;
pub mod aws_sts;
pub mod body;
pub mod error;
pub mod identity;
pub mod kinds;
pub mod link;
pub mod list;
pub mod metadata;
pub mod object;
#[cfg(test)]
mod props;
pub mod resolve;
pub mod stats;
pub mod sts;
pub mod tls;
pub mod versions;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::RwLock;
use serde::Serialize;

use crate::store::xml::{to_xml, CommonPrefix, Contents, ListBucketResult};
use auth::{Flavor, Keys};
use body::{Body, ConnIo, ConnShared};
use error::ApiError;
use identity::{Identities, Version};
use list::url_encode;
use resolve::{Root, Target};
use stats::{Faults, Stats};

/// Everything the request handlers share.
pub struct Server {
    pub root: Root,
    pub region: String,
    /// `None`: `--anonymous`, every request accepted unverified.
    pub keys: Option<Keys>,
    pub stats: Stats,
    pub faults: RwLock<Faults>,
    pub identities: Identities,
    /// Recent listings, shared by the pages of one ([`list::Listings`]).
    pub listings: list::Listings,
    /// `--testing-aids`: the `/_ossmount/` control endpoints answer. Off, such paths are
    /// ordinary (signed) requests for a bucket that cannot exist.
    pub testing_aids: bool,
    /// The emulated link's shared clocks ([`link`]).
    pub link: link::LinkState,
    /// `Some`: HTTPS only ([`tls`]).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    request_seq: AtomicU64,
    boot: u64,
}

impl Server {
    /// A server for the buckets under `root`; `keys: None` accepts unsigned requests.
    pub fn new(root: Root, region: String, keys: Option<Keys>, faults: Faults) -> Self {
        Server {
            root,
            region,
            keys,
            stats: Stats::default(),
            faults: RwLock::new(faults),
            identities: Identities::default(),
            listings: list::Listings::default(),
            testing_aids: false,
            link: link::LinkState::default(),
            tls: None,
            request_seq: AtomicU64::new(0),
            boot: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        }
    }
}

impl Server {
    /// Answer the `/_ossmount/` control endpoints (off by default).
    /// Answer the `/_ossmount/` control endpoints and emulate object kinds and versions
    /// ([`kinds`], [`versions`]): all testing aids, off by default.
    pub fn with_testing_aids(mut self, on: bool) -> Self {
        self.testing_aids = on;
        self.root.kinds = on;
        self
    }
}

/// Why the server stopped before SIGINT or SIGTERM asked it to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The bound socket cannot say its address.
    #[error("{0}")]
    Socket(std::io::Error),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// Accept connections on `addr` until SIGINT or SIGTERM; the first line on stdout names the
/// bound address, `announce` lines follow it (the testing aids' addresses).
pub async fn serve(
    server: Arc<Server>,
    addr: SocketAddr,
    announce: &[String],
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let local = listener.local_addr().map_err(ServeError::Socket)?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let scheme = if server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let _ = writeln!(out, "ossmount serve: listening on {scheme}://{local}");
        for line in announce {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    tracing::info!(
        "serving buckets under {} on {}://{local} ({})",
        server.root.dir.display(),
        if server.tls.is_some() {
            "https"
        } else {
            "http"
        },
        match &server.keys {
            None => "anonymous: signatures are not checked".to_string(),
            Some(k) => format!("{} key pair(s), region {}", k.len(), server.region),
        }
    );
    tokio::spawn(warm_up(server.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Signal)?;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnShared::with_tls(stream, server.clone(), server.tls.is_some());
        let server = server.clone();
        tokio::spawn(async move {
            let tls = server.tls.clone();
            let shared = conn.clone();
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(handle(server, conn, req).await) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.keep_alive(true);
            let served = match tls {
                None => http.serve_connection(ConnIo::new(shared), service).await,
                Some(acceptor) => match tls::accept(&acceptor, shared).await {
                    Ok(io) => http.serve_connection(io, service).await,
                    Err(e) => {
                        tracing::debug!("TLS handshake with {peer}: {e}");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    tracing::info!("shutting down");
    Ok(())
}

/// Compute identities of every file in the background, one at a time, so first requests
/// usually find them ready. Requests never wait for this walk, only (single-flight) for
/// the one file they need.
async fn warm_up(server: Arc<Server>) {
    let started = Instant::now();
    let Ok(buckets) = server.root.buckets() else {
        return;
    };
    let mut n = 0u64;
    for (name, _) in buckets {
        let Some(dir) = server.root.bucket_dir(&name) else {
            continue;
        };
        let params = list::ListParams {
            max_keys: u32::MAX,
            ..Default::default()
        };
        let page = {
            let server = server.clone();
            // Its own cache and counters: one walk of the whole bucket, not to be kept,
            // and not a request's.
            tokio::task::spawn_blocking(move || {
                let once = list::Listings::default();
                list::list_page(&server.root, &once, &Stats::default(), &dir, &params)
            })
            .await
        };
        let Ok(Ok(page)) = page else { continue };
        for f in page.objects {
            if let Ok(file) = std::fs::File::open(&f.path) {
                if let Ok(meta) = file.metadata() {
                    let _ = server
                        .identities
                        .get(&f.path, Version::of(&meta), &file, &server.stats)
                        .await;
                    n += 1;
                }
            }
        }
    }
    tracing::info!(
        "identities of {n} files ready after {:.1?}",
        started.elapsed()
    );
}

/// Per-request facts the error path needs.
struct Ctx {
    request_id: String,
    host: String,
    flavor: Flavor,
    head: bool,
}

async fn handle(
    server: Arc<Server>,
    conn: Arc<ConnShared>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path
        .strip_prefix("/_ossmount/")
        .filter(|_| server.testing_aids)
    {
        let rest = rest.to_string();
        return control(&server, req, &rest).await;
    }
    let seq = server.request_seq.fetch_add(1, Relaxed);
    let ctx = Ctx {
        request_id: format!("{:08X}{:016X}", server.boot as u32, seq),
        host: req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("ossmount")
            .to_string(),
        flavor: Flavor::of(req.headers()),
        head: req.method() == Method::HEAD,
    };
    let started = Instant::now();
    let method = req.method().clone();
    let mut resp = match route(&server, &conn, &ctx, req).await {
        Ok(r) => r,
        Err(e) => error_response(&ctx, &e),
    };
    let h = resp.headers_mut();
    let id = HeaderValue::from_str(&ctx.request_id).expect("hex");
    h.insert("x-oss-request-id", id.clone());
    if ctx.flavor == Flavor::S3 {
        h.insert("x-amz-request-id", id);
    }
    h.insert("server", HeaderValue::from_static("ossmount"));
    tracing::debug!(
        "{method} {path} -> {} in {:.1?}",
        resp.status(),
        started.elapsed()
    );
    resp
}

fn error_response(ctx: &Ctx, e: &ApiError) -> Response<Body> {
    let xml = e.to_xml(&ctx.request_id, &ctx.host, ctx.flavor == Flavor::Oss);
    let mut b = Response::builder()
        .status(e.status)
        .header("content-type", "application/xml");
    for (n, v) in &e.headers {
        b = b.header(*n, v.as_str());
    }
    if let Some(ec) = e.ec.filter(|_| ctx.flavor == Flavor::Oss) {
        b = b.header("x-oss-ec", ec);
    }
    if ctx.head {
        b.header("x-oss-err", ApiError::x_oss_err(&xml))
            .body(Body::Empty)
            .expect("valid response")
    } else {
        b.header("content-length", xml.len())
            .body(Body::full(xml))
            .expect("valid response")
    }
}

async fn route(
    server: &Arc<Server>,
    conn: &Arc<ConnShared>,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let st = &server.stats;
    Stats::inc(&st.requests);
    let raw_path = req.uri().path().to_string();
    let decoded = resolve::decode_path(&raw_path)?;
    let query = resolve::decode_query(req.uri().query())?;
    let vhost = server.root.vhost_bucket(&ctx.host);
    let target = server.root.target(&decoded, vhost)?;
    let method = req.method().clone();
    // V2 names itself with `list-type`; V1 is a plain GET on the bucket with at most its
    // own parameters (anything else, e.g. `?acl`, is another bucket API).
    let list_version = match (&target, &method) {
        (Target::Bucket(_), &Method::GET) if query.iter().any(|(n, _)| n == "list-type") => {
            Some(list::ListVersion::V2)
        }
        (Target::Bucket(_), &Method::GET)
            if query
                .iter()
                .all(|(n, _)| list::V1_PARAMS.contains(&n.as_str())) =>
        {
            Some(list::ListVersion::V1)
        }
        _ => None,
    };
    let is_list = list_version.is_some();
    match (&target, &method) {
        (Target::Object { .. }, &Method::GET) => Stats::inc(&st.get_requests),
        (Target::Object { .. }, &Method::HEAD) => Stats::inc(&st.head_requests),
        _ if is_list => Stats::inc(&st.list_requests),
        _ => {}
    }

    // Faults first: a throttled or slow server is slow for everyone, signed or not.
    let faults = server.faults.read().clone();
    let admitted = server.link.admit_request(faults.requests_per_s);
    if let Some(d) = faults.latency() {
        tokio::time::sleep(d).await;
    }
    if !admitted || stats::roll(faults.rate_503) {
        Stats::inc(&st.status_503);
        return Err(ApiError::slow_down());
    }

    if let Some(keys) = &server.keys {
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let (bucket, key) = match &target {
            Target::Service => (None, None),
            Target::Bucket(b) => (Some(b.as_str()), None),
            Target::Object { bucket, key } => (Some(bucket.as_str()), Some(key.as_str())),
        };
        let signed = auth::Signed {
            method: method.as_str(),
            bucket,
            key,
            path: &decoded,
            query: &query,
            headers: &headers,
            authorization: req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        };
        if let Err(e) = auth::verify(keys, &server.region, &signed, SystemTime::now()) {
            Stats::inc(&st.auth_failures);
            tracing::debug!("auth refused {method} {raw_path}: {e}");
            return Err(e);
        }
    }

    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::read_only(method.as_str()));
    }
    let head = method == Method::HEAD;
    match target {
        Target::Service => list_buckets(server),
        Target::Bucket(bucket) => {
            let dir = server
                .root
                .bucket_dir(&bucket)
                .ok_or_else(ApiError::no_such_bucket)?;
            if head {
                return Ok(Response::new(Body::Empty));
            }
            match list_version {
                Some(list::ListVersion::V2) => {
                    if query.iter().any(|(n, v)| n == "list-type" && v != "2") {
                        return Err(ApiError::invalid_argument(
                            "Only list-type=2 (ListObjectsV2) or no list-type (ListObjects) is supported.",
                        ));
                    }
                    list_objects(server, &bucket, &dir, &query, list::ListVersion::V2).await
                }
                Some(list::ListVersion::V1) => {
                    list_objects(server, &bucket, &dir, &query, list::ListVersion::V1).await
                }
                None => Err(ApiError::invalid_argument(
                    "ossmount serve answers only ListObjects and ListObjectsV2 on a bucket.",
                )),
            }
        }
        Target::Object { bucket, key } => {
            let dir = server
                .root
                .bucket_dir(&bucket)
                .ok_or_else(ApiError::no_such_bucket)?;
            // A symlink object answers for its target (see `kinds`); `versionId` picks
            // a version (see `versions`).
            let get_symlink = query.iter().any(|(n, _)| n == "symlink");
            let version_id = query
                .iter()
                .find(|(n, _)| n == "versionId")
                .map(|(_, v)| v.clone());
            let server2 = server.clone();
            let opened = tokio::task::spawn_blocking(move || {
                let latest = std::fs::symlink_metadata(dir.join(&key)).ok();
                let asked = versions::resolve(
                    &server2.root,
                    &dir,
                    &key,
                    version_id.as_deref(),
                    latest.as_ref(),
                )?;
                match asked {
                    versions::Asked::Latest(id) => {
                        kinds::open(&server2.root, &dir, &key, get_symlink).map(|o| (o, id))
                    }
                    versions::Asked::Older { path, file, id } if !get_symlink => Ok((
                        kinds::Opened::Object {
                            path,
                            file,
                            symlink: None,
                        },
                        Some(id),
                    )),
                    versions::Asked::Older { .. } => Err(ApiError::not_symlink()),
                }
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
            let (opened, version_id) = opened;
            let version_header = version_id
                .map(|id| {
                    let name = match ctx.flavor {
                        Flavor::S3 => "x-amz-version-id",
                        Flavor::Oss => "x-oss-version-id",
                    };
                    HeaderValue::from_str(&id)
                        .map(|v| (name, v))
                        .map_err(|e| ApiError::internal(e.to_string()))
                })
                .transpose()?;
            let (path, file, link) = match opened {
                kinds::Opened::GetSymlink(mut resp) => {
                    if let Some((n, v)) = version_header {
                        resp.headers_mut().insert(n, v);
                    }
                    return Ok(resp);
                }
                kinds::Opened::Object {
                    path,
                    file,
                    symlink,
                } => (path, file, symlink),
            };
            let meta = file
                .metadata()
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let version = Version::of(&meta);
            let id = server
                .identities
                .get(&path, version, &file, &server.stats)
                .await
                .map_err(|e| ApiError::internal(format!("reading the object: {e}")))?;
            let mut mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let kind = match link {
                None => kinds::Kind::of(&server.root, &file),
                Some(link_mtime) => {
                    mtime = mtime.max(link_mtime);
                    kinds::Kind::of_link(&file)
                }
            };
            let mut resp = object::respond(
                server,
                conn,
                req.headers(),
                !head,
                ctx.flavor == Flavor::S3,
                file,
                version,
                mtime,
                &id,
                &kind,
            )?;
            if let Some((n, v)) = version_header {
                resp.headers_mut().insert(n, v);
            }
            Ok(resp)
        }
    }
}

async fn list_objects(
    server: &Arc<Server>,
    bucket: &str,
    dir: &Path,
    query: &[(String, String)],
    version: list::ListVersion,
) -> Result<Response<Body>, ApiError> {
    let params = list::ListParams::from_query(query, version)?;
    let page = {
        let server = server.clone();
        let dir = dir.to_path_buf();
        let params = params.clone();
        tokio::task::spawn_blocking(move || {
            list::list_page(&server.root, &server.listings, &server.stats, &dir, &params)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??
    };
    let enc = |s: &str| {
        if params.url_encoding {
            url_encode(s)
        } else {
            s.to_string()
        }
    };
    let mut contents = Vec::with_capacity(page.objects.len());
    for f in &page.objects {
        if let Some(target) = &f.symlink {
            contents.push(Contents {
                key: enc(&f.key),
                last_modified: iso8601(f.meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
                etag: kinds::symlink_etag(target),
                object_type: Some("Symlink".into()),
                size: 0,
                storage_class: Some("Standard".into()),
                restore_info: None,
            });
            continue;
        }
        let file = match std::fs::File::open(&f.path) {
            Ok(file) => file,
            Err(_) => continue, // vanished since the walk
        };
        let meta = file.metadata().unwrap_or_else(|_| f.meta.clone());
        let id = server
            .identities
            .get(&f.path, Version::of(&meta), &file, &server.stats)
            .await
            .map_err(|e| ApiError::internal(format!("reading {}: {e}", f.key)))?;
        let kind = kinds::Kind::of(&server.root, &file);
        contents.push(Contents {
            key: enc(&f.key),
            last_modified: iso8601(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
            etag: id.etag,
            object_type: Some(kind.object_type.into()),
            size: meta.len(),
            storage_class: Some(kind.storage_class),
            restore_info: kind.restore,
        });
    }
    let common_prefixes = page
        .common_prefixes
        .iter()
        .map(|p| CommonPrefix { prefix: enc(p) })
        .collect();
    if version == list::ListVersion::V1 {
        return xml_response(&list::ListBucketResultV1 {
            name: bucket.to_string(),
            prefix: enc(&params.prefix),
            marker: params.start_after.as_deref().map(enc).unwrap_or_default(),
            max_keys: params.max_keys,
            delimiter: params.delimiter.as_deref().map(enc),
            encoding_type: params.url_encoding.then(|| "url".to_string()),
            is_truncated: page.next.is_some(),
            next_marker: list::next_marker_v1(&params, page.next.as_deref()).map(|m| enc(&m)),
            contents,
            common_prefixes,
        });
    }
    let key_count = (contents.len() + page.common_prefixes.len()) as u32;
    let result = ListBucketResult {
        name: bucket.to_string(),
        prefix: enc(&params.prefix),
        max_keys: params.max_keys,
        delimiter: params.delimiter.as_deref().map(enc),
        encoding_type: params.url_encoding.then(|| "url".to_string()),
        is_truncated: page.next.is_some(),
        continuation_token: params.continuation_token.as_deref().map(enc),
        next_continuation_token: page.next.as_deref().map(|m| enc(&list::encode_token(m))),
        key_count,
        contents,
        common_prefixes,
    };
    xml_response(&result)
}

#[derive(Serialize)]
#[serde(rename = "ListAllMyBucketsResult")]
struct ListAllMyBuckets {
    #[serde(rename = "Owner")]
    owner: Owner,
    #[serde(rename = "Buckets")]
    buckets: BucketList,
}

#[derive(Serialize)]
struct Owner {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "DisplayName")]
    display_name: String,
}

#[derive(Serialize)]
struct BucketList {
    #[serde(rename = "Bucket", default)]
    bucket: Vec<BucketEntry>,
}

#[derive(Serialize)]
struct BucketEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "CreationDate")]
    creation_date: String,
}

fn list_buckets(server: &Server) -> Result<Response<Body>, ApiError> {
    let buckets = server
        .root
        .buckets()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    xml_response(&ListAllMyBuckets {
        owner: Owner {
            id: "ossmount".into(),
            display_name: "ossmount".into(),
        },
        buckets: BucketList {
            bucket: buckets
                .into_iter()
                .map(|(name, meta)| BucketEntry {
                    name,
                    creation_date: iso8601(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
                })
                .collect(),
        },
    })
}

fn xml_response<T: Serialize>(v: &T) -> Result<Response<Body>, ApiError> {
    let xml = to_xml(v).map_err(|e| ApiError::internal(format!("XML: {e}")))?;
    Ok(Response::builder()
        .header("content-type", "application/xml")
        .header("content-length", xml.len())
        .body(Body::full(xml))
        .expect("valid response"))
}

/// `2020-05-18T05:45:47.000Z`
fn iso8601(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The unauthenticated control endpoints.
async fn control(server: &Server, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let json = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("content-length", body.len())
            .body(Body::full(body))
            .expect("valid response")
    };
    let method = req.method().clone();
    match (&method, rest) {
        (&Method::GET, "stats") => json(
            StatusCode::OK,
            serde_json::to_string(&server.stats.snapshot()).expect("plain struct"),
        ),
        (&Method::POST, "stats/reset") => {
            server.stats.reset();
            json(StatusCode::OK, "{}".into())
        }
        (&Method::GET, "faults") => json(
            StatusCode::OK,
            serde_json::to_string(&*server.faults.read()).expect("plain struct"),
        ),
        (&Method::PUT, "faults") => {
            // A faults document is a few hundred bytes; 64 KiB bounds what a client can
            // make the server hold.
            let body = match http_body_util::Limited::new(req.into_body(), 64 << 10)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => return json(StatusCode::BAD_REQUEST, format!("{{\"error\":{:?}}}", e.to_string())),
            };
            let parsed: Result<Faults, String> = if body.iter().all(u8::is_ascii_whitespace) {
                Ok(Faults::default())
            } else {
                serde_json::from_slice::<Faults>(&body).map_err(|e| e.to_string())
            };
            match parsed.and_then(link::resolve) {
                Ok(f) => {
                    tracing::info!("faults set: {f:?}");
                    *server.faults.write() = f;
                    json(
                        StatusCode::OK,
                        serde_json::to_string(&*server.faults.read()).expect("plain struct"),
                    )
                }
                Err(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": e }).to_string()),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": format!("no control endpoint {method} /_ossmount/{rest}; try GET stats, POST stats/reset, GET|PUT faults") }).to_string(),
        ),
    }
}
