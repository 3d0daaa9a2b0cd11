//! An in-memory [`ObjectStore`] with fault injection and request counters, for tests of
//! everything above the store (cache, fetcher, mount, download).
//!
//! Why it exists: the cache's promises ("this read fetched exactly these parts", "a reset
//! mid-part resumes from the byte where it broke", "an ETag change mid-read gives ESTALE and
//! never mixed bytes") can only be tested against a store that fails on purpose, exactly
//! when told, and counts what it was asked. Real HTTP tests (`ossmount serve`) cover the
//! wire; this covers the logic, fast and deterministically.
//!
//! Behaviour mirrors OSS where the cache can observe it:
//! - ETag is the quoted upper-case hex MD5 of the content (OSS's ETag of a simple upload),
//!   CRC-64/XZ is computed at `put`, Last-Modified is the time of `put`;
//! - `get_range` checks `If-Match` (412 `PreconditionFailed`), the range (416
//!   `InvalidRange`), the key (404 `NoSuchKey`); an empty range reads a zero-byte object;
//! - `list` implements ListObjectsV2 prefix, delimiter (common prefixes) and paging with an
//!   opaque continuation token (the last key or prefix returned).
//!
//! Bodies are served in [`MemoryStore::CHUNK`]-byte chunks (64 KiB, a typical socket read),
//! so "break after K bytes" splits a chunk exactly at K like a reset connection would.
//!
//! Compiled for the crate's own tests only (`cfg(test)`); the binary does not carry it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use md5::{Digest, Md5};
use parking_lot::Mutex;

use super::{ByteStream, ListPage, ListRequest, ObjectMeta, ObjectStore, ServiceError, StoreError};

/// Kind of request, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    Head,
    Get,
    List,
}

/// What the store was asked and what it served since creation or [`MemoryStore::reset_counters`].
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub heads: u64,
    pub gets: u64,
    pub lists: u64,
    /// Every GET, in arrival order: key and requested range (including ones that failed).
    pub ranges: Vec<(String, Range<u64>)>,
    /// Body bytes handed to the caller.
    pub bytes_served: u64,
    /// Requests answered with an injected 503.
    pub injected_503: u64,
    /// Bodies broken on purpose.
    pub injected_breaks: u64,
    /// Requests refused with 412.
    pub precondition_failed: u64,
    /// GET bodies being served now (opened and not yet finished or dropped)...
    pub open_bodies: u64,
    /// ...and the most at once: the requests the caller had in flight.
    pub max_open_bodies: u64,
}

impl Counters {
    pub fn requests(&self, kind: RequestKind) -> u64 {
        match kind {
            RequestKind::Head => self.heads,
            RequestKind::Get => self.gets,
            RequestKind::List => self.lists,
        }
    }

    /// The ranges requested for one key, in arrival order.
    pub fn ranges_of(&self, key: &str) -> Vec<Range<u64>> {
        self.ranges
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

#[derive(Clone, Debug)]
struct Object {
    data: Bytes,
    meta: ObjectMeta,
}

/// A pending "replace this object once K more body bytes have been served".
struct PendingChange {
    key: String,
    after_bytes: u64,
    data: Bytes,
}

#[derive(Default)]
struct Faults {
    /// Answer the next N requests (any kind) with 503 SlowDown.
    fail_next: u64,
    /// Break bodies after this many bytes with `StoreError::Network`...
    break_after: Option<u64>,
    /// ...for this many bodies (None = every body).
    break_times: Option<u64>,
    /// Stall bodies for this long after this many bytes.
    stall: Option<(u64, Duration)>,
    /// Replace an object mid-read.
    change: Option<PendingChange>,
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Object>,
    faults: Faults,
    counters: Counters,
}

/// The in-memory store. Cheap to clone (shared state), so a test keeps one clone to drive
/// faults and read counters while the cache owns another.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

fn service_error(status: u16, code: &str, message: &str) -> ServiceError {
    ServiceError {
        status,
        code: code.to_string(),
        message: message.to_string(),
        request_id: Some("memory".to_string()),
        ec: None,
    }
}

fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode_upper(Md5::digest(data)))
}

impl MemoryStore {
    /// Body chunk size.
    pub const CHUNK: usize = 64 << 10;

    pub fn new() -> Self {
        Self::default()
    }

    /// Create or replace an object; returns its metadata (new ETag, CRC-64, Last-Modified).
    pub fn put(&self, key: &str, data: impl Into<Bytes>) -> ObjectMeta {
        let mut inner = self.inner.lock();
        Self::put_locked(&mut inner, key, data.into())
    }

    fn put_locked(inner: &mut Inner, key: &str, data: Bytes) -> ObjectMeta {
        let meta = ObjectMeta {
            key: key.to_string(),
            size: data.len() as u64,
            etag: etag_of(&data),
            last_modified: SystemTime::now(),
            crc64: Some(crate::crc64::checksum(&data)),
            object_type: Some("Normal".to_string()),
            storage_class: Some("Standard".to_string()),
            restore: None,
            user_meta: Vec::new(),
            version_id: None,
        };
        inner.objects.insert(
            key.to_string(),
            Object {
                data,
                meta: meta.clone(),
            },
        );
        meta
    }

    /// Override the CRC-64 the store reports for `key` (None: like an object without
    /// `x-oss-hash-crc64ecma`; a wrong value: to test verification failures).
    pub fn set_crc64(&self, key: &str, crc: Option<u64>) {
        if let Some(o) = self.inner.lock().objects.get_mut(key) {
            o.meta.crc64 = crc;
        }
    }

    /// Remove an object; returns whether it existed.
    pub fn remove(&self, key: &str) -> bool {
        self.inner.lock().objects.remove(key).is_some()
    }

    /// Current metadata of `key`.
    pub fn meta(&self, key: &str) -> Option<ObjectMeta> {
        self.inner.lock().objects.get(key).map(|o| o.meta.clone())
    }

    /// Answer the next `n` requests with 503 SlowDown (a throttling storm).
    pub fn fail_next(&self, n: u64) {
        self.inner.lock().faults.fail_next = n;
    }

    /// Break the next `times` bodies (None: all) after `after_bytes` bytes with
    /// `StoreError::Network`, like a reset connection. Bodies shorter than that are whole.
    pub fn break_bodies_after(&self, after_bytes: u64, times: Option<u64>) {
        let mut inner = self.inner.lock();
        inner.faults.break_after = Some(after_bytes);
        inner.faults.break_times = times;
    }

    /// Stall every body for `pause` once it has sent `after_bytes` bytes.
    pub fn stall_bodies(&self, after_bytes: u64, pause: Duration) {
        self.inner.lock().faults.stall = Some((after_bytes, pause));
    }

    /// Once `after_bytes` more body bytes (of any key) have been served, replace `key` with
    /// `data` (new ETag): later `If-Match` requests for the old ETag get 412. The body in
    /// flight finishes with the old bytes, as a real server's would.
    pub fn change_after_bytes(&self, key: &str, after_bytes: u64, data: impl Into<Bytes>) {
        self.inner.lock().faults.change = Some(PendingChange {
            key: key.to_string(),
            after_bytes,
            data: data.into(),
        });
    }

    /// Turn every fault off.
    pub fn clear_faults(&self) {
        self.inner.lock().faults = Faults::default();
    }

    pub fn counters(&self) -> Counters {
        self.inner.lock().counters.clone()
    }

    pub fn reset_counters(&self) {
        let mut inner = self.inner.lock();
        // Bodies still open stay counted: they end (and uncount themselves) later.
        let open = inner.counters.open_bodies;
        inner.counters = Counters {
            open_bodies: open,
            max_open_bodies: open,
            ..Counters::default()
        };
    }

    /// Count the request and apply the 503 fault.
    fn begin(&self, kind: RequestKind) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        match kind {
            RequestKind::Head => inner.counters.heads += 1,
            RequestKind::Get => inner.counters.gets += 1,
            RequestKind::List => inner.counters.lists += 1,
        }
        if inner.faults.fail_next > 0 {
            inner.faults.fail_next -= 1;
            inner.counters.injected_503 += 1;
            return Err(StoreError::Throttled(service_error(
                503,
                "SlowDown",
                "injected by MemoryStore",
            )));
        }
        Ok(())
    }

    /// Account `n` served bytes; apply a pending object change when its time has come.
    fn served(inner: &mut Inner, n: u64) {
        inner.counters.bytes_served += n;
        let due = match &mut inner.faults.change {
            Some(c) if c.after_bytes <= n => true,
            Some(c) => {
                c.after_bytes -= n;
                false
            }
            None => false,
        };
        if due {
            let c = inner.faults.change.take().unwrap();
            Self::put_locked(inner, &c.key, c.data);
        }
    }

    /// Answer a GET the way OSS would (404, 412, 416), or start its body with the faults it
    /// is to meet.
    fn open_body(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<Body, StoreError> {
        let mut inner = self.inner.lock();
        let Some(obj) = inner.objects.get(key).cloned() else {
            return Err(StoreError::NoSuchKey(service_error(
                404,
                "NoSuchKey",
                "The specified key does not exist.",
            )));
        };
        if if_match.is_some_and(|etag| etag != obj.meta.etag) {
            inner.counters.precondition_failed += 1;
            return Err(StoreError::PreconditionFailed(service_error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
            )));
        }
        if !satisfiable(&range, obj.data.len() as u64) {
            return Err(StoreError::InvalidRange(service_error(
                416,
                "InvalidRange",
                "The requested range cannot be satisfied.",
            )));
        }
        let data = obj.data.slice(range.start as usize..range.end as usize);
        let break_at = Self::pick_break(&mut inner, data.len());
        let c = &mut inner.counters;
        c.open_bodies += 1;
        c.max_open_bodies = c.max_open_bodies.max(c.open_bodies);
        Ok(Body {
            data,
            pos: 0,
            break_at,
            stall: inner.faults.stall,
            inner: self.inner.clone(),
            done: false,
        })
    }

    /// Where a body of `len` bytes breaks, if it is one of those to break.
    fn pick_break(inner: &mut Inner, len: usize) -> Option<usize> {
        let after = inner.faults.break_after.filter(|&k| k < len as u64)?;
        match &mut inner.faults.break_times {
            Some(0) => return None,
            Some(t) => *t -= 1,
            None => {}
        }
        inner.counters.injected_breaks += 1;
        Some(after as usize)
    }
}

/// A non-empty range must lie within the object; an empty one reads a zero-byte object.
fn satisfiable(range: &Range<u64>, size: u64) -> bool {
    if range.is_empty() {
        range.start == 0 && size == 0
    } else {
        range.end <= size
    }
}

/// A body being served: [`MemoryStore::CHUNK`]-byte chunks of `data`, with the stall and
/// break chosen when it started.
struct Body {
    data: Bytes,
    pos: usize,
    break_at: Option<usize>,
    stall: Option<(u64, Duration)>,
    inner: Arc<Mutex<Inner>>,
    done: bool,
}

impl Drop for Body {
    fn drop(&mut self) {
        let mut inner = self.inner.lock();
        inner.counters.open_bodies = inner.counters.open_bodies.saturating_sub(1);
    }
}

impl Body {
    /// The next item of the stream and the body left to serve (for `stream::unfold`).
    async fn next(mut self) -> Option<(Result<Bytes, StoreError>, Self)> {
        if self.done {
            return None;
        }
        if let Some((after, pause)) = self.stall {
            if self.pos as u64 >= after {
                self.stall = None;
                tokio::time::sleep(pause).await;
            }
        }
        let limit = self.break_at.unwrap_or(self.data.len());
        if self.pos >= limit {
            self.done = true;
            if self.break_at.is_some() {
                let reset =
                    StoreError::Network("connection reset (injected by MemoryStore)".into());
                return Some((Err(reset), self));
            }
            return None;
        }
        let chunk = self.data.slice(self.pos..self.chunk_end(limit));
        self.pos += chunk.len();
        MemoryStore::served(&mut self.inner.lock(), chunk.len() as u64);
        Some((Ok(chunk), self))
    }

    /// End of the next chunk: one [`MemoryStore::CHUNK`], cut short at `limit` and at a
    /// stall still to come, so the stall starts at its exact byte.
    fn chunk_end(&self, limit: usize) -> usize {
        let end = (self.pos + MemoryStore::CHUNK).min(limit);
        match self.stall {
            Some((after, _)) if (self.pos as u64) < after && after < end as u64 => after as usize,
            _ => end,
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError> {
        self.begin(RequestKind::Head)?;
        self.meta(key)
            .ok_or_else(|| StoreError::NoSuchKey(service_error(404, "NoSuchKey", key)))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<ByteStream, StoreError> {
        {
            let mut inner = self.inner.lock();
            inner.counters.ranges.push((key.to_string(), range.clone()));
        }
        self.begin(RequestKind::Get)?;
        let body = self.open_body(key, range, if_match)?;
        Ok(Box::pin(futures_util::stream::unfold(body, Body::next)))
    }

    async fn list(&self, req: &ListRequest) -> Result<ListPage, StoreError> {
        self.begin(RequestKind::List)?;
        let inner = self.inner.lock();
        let max = if req.max_keys == 0 {
            100
        } else {
            req.max_keys.min(1000)
        } as usize;
        let mut page = ListPage::default();
        let mut count = 0usize;
        let mut last: Option<String> = None;
        for (key, obj) in inner.objects.range(req.prefix.clone()..) {
            if !key.starts_with(&req.prefix) {
                break;
            }
            if let Some(token) = &req.continuation_token {
                if key.as_str() <= token.as_str() {
                    continue;
                }
            }
            let rest = &key[req.prefix.len()..];
            let item = match req.delimiter.as_deref().filter(|d| !d.is_empty()) {
                Some(d) => rest
                    .find(d)
                    .map(|i| format!("{}{}", req.prefix, &rest[..i + d.len()])),
                None => None,
            };
            if let Some(cp) = item {
                if page.common_prefixes.last() == Some(&cp) {
                    continue;
                }
                // Skip a prefix already returned on an earlier page.
                if req
                    .continuation_token
                    .as_deref()
                    .is_some_and(|t| t.starts_with(&cp))
                {
                    continue;
                }
                if count == max {
                    page.next_continuation_token = last;
                    return Ok(page);
                }
                count += 1;
                // Token past every key under the prefix.
                last = Some(format!("{cp}\u{10FFFF}"));
                page.common_prefixes.push(cp);
            } else {
                if count == max {
                    page.next_continuation_token = last;
                    return Ok(page);
                }
                count += 1;
                last = Some(key.clone());
                page.objects.push(obj.meta.clone());
            }
        }
        Ok(page)
    }

    fn describe(&self) -> String {
        "memory store".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::collect;

    #[tokio::test]
    async fn get_range_checks_and_counts() {
        let s = MemoryStore::new();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let m = s.put("a/b", data.clone());
        assert_eq!(m.crc64, Some(crate::crc64::checksum(&data)));
        assert!(m.etag.starts_with('"'));
        let (got, err) = collect(
            s.get_range("a/b", 10..150_000, Some(&m.etag))
                .await
                .unwrap(),
        )
        .await;
        assert!(err.is_none());
        assert_eq!(got, &data[10..150_000]);
        assert!(matches!(
            s.get_range("a/b", 0..10, Some("\"x\"")).await,
            Err(StoreError::PreconditionFailed(_))
        ));
        assert!(matches!(
            s.get_range("a/b", 0..200_001, None).await,
            Err(StoreError::InvalidRange(_))
        ));
        assert!(matches!(
            s.get_range("nope", 0..1, None).await,
            Err(StoreError::NoSuchKey(_))
        ));
        let c = s.counters();
        assert_eq!(c.gets, 4);
        assert_eq!(c.bytes_served, 149_990);
        assert_eq!(c.ranges_of("a/b")[0], 10..150_000);
        s.put("empty", Vec::new());
        let (got, _) = collect(s.get_range("empty", 0..0, None).await.unwrap()).await;
        assert!(got.is_empty());
    }

    #[tokio::test]
    async fn faults() {
        let s = MemoryStore::new();
        let data = vec![7u8; 300_000];
        let m = s.put("k", data.clone());
        s.fail_next(2);
        assert!(matches!(s.head("k").await, Err(StoreError::Throttled(_))));
        assert!(matches!(
            s.get_range("k", 0..1, None).await,
            Err(StoreError::Throttled(_))
        ));
        assert!(s.head("k").await.is_ok());
        s.break_bodies_after(100_000, Some(1));
        let (got, err) = collect(s.get_range("k", 0..300_000, None).await.unwrap()).await;
        assert_eq!(got.len(), 100_000);
        assert!(matches!(err, Some(StoreError::Network(_))));
        let (got, err) = collect(s.get_range("k", 0..300_000, None).await.unwrap()).await;
        assert_eq!(got.len(), 300_000);
        assert!(err.is_none());
        s.change_after_bytes("k", 1000, vec![1u8; 10]);
        let (got, _) = collect(s.get_range("k", 0..300_000, Some(&m.etag)).await.unwrap()).await;
        assert_eq!(got, data, "the body in flight finishes with the old bytes");
        assert!(matches!(
            s.get_range("k", 0..5, Some(&m.etag)).await,
            Err(StoreError::PreconditionFailed(_))
        ));
        assert_eq!(s.meta("k").unwrap().size, 10);
        s.stall_bodies(5, Duration::from_millis(50));
        let t = std::time::Instant::now();
        let (got, _) = collect(s.get_range("k", 0..10, None).await.unwrap()).await;
        assert_eq!(got.len(), 10);
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn list_prefix_delimiter_paging() {
        let s = MemoryStore::new();
        for k in ["a/1", "a/2", "a/d/x", "a/d/y", "a/e/z", "b", "a/3"] {
            s.put(k, b"x".to_vec());
        }
        let mut req = ListRequest {
            prefix: "a/".into(),
            delimiter: Some("/".into()),
            continuation_token: None,
            max_keys: 2,
        };
        let mut keys = Vec::new();
        let mut prefixes = Vec::new();
        loop {
            let p = s.list(&req).await.unwrap();
            assert!(p.objects.len() + p.common_prefixes.len() <= 2);
            keys.extend(p.objects.into_iter().map(|o| o.key));
            prefixes.extend(p.common_prefixes);
            match p.next_continuation_token {
                Some(t) => req.continuation_token = Some(t),
                None => break,
            }
        }
        assert_eq!(keys, ["a/1", "a/2", "a/3"]);
        assert_eq!(prefixes, ["a/d/", "a/e/"]);
        let all = s
            .list(&ListRequest {
                max_keys: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.objects.len(), 7);
        assert!(all.next_continuation_token.is_none());
    }
}
