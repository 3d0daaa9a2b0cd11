//! GetObject and HeadObject: conditions, ranges, headers.
//!
//! Range semantics (OSS's GetObject documentation and S3's RFC 9110 behaviour), for an
//! object of `size` bytes:
//! - `x-oss-range-behavior: standard`, and every S3 request: 206 for a range that starts
//!   inside the object (its end clamped to the last byte), 416 InvalidRange when it
//!   starts at or past the end (any range of an empty object, `bytes=-0`).
//! - OSS without that header (legacy): 206 only when the whole range is inside the
//!   object; anything reaching past the end gives 200 and the whole object.
//! - A malformed or multi-range header is ignored (200, whole object), as HTTP says.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::body::{Body, ConnShared, ObjectBody};
use super::error::ApiError;
use super::identity::{Identity, Version};
use super::kinds::Kind;
use super::stats::{self, Stats};
use super::Server;

/// A parsed `Range: bytes=...` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// `a-b` (inclusive) or `a-` (`None`).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

pub fn parse_range(value: &str) -> Option<RangeSpec> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if a.is_empty() {
        return num(b).map(RangeSpec::Suffix);
    }
    let first = num(a)?;
    if b.is_empty() {
        return Some(RangeSpec::From(first, None));
    }
    let last = num(b)?;
    (last >= first).then_some(RangeSpec::From(first, Some(last)))
}

/// What to send: the whole object, a slice (half-open), or 416.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    Whole,
    Partial(u64, u64),
    Unsatisfiable,
}

pub fn resolve_range(spec: Option<RangeSpec>, size: u64, standard: bool) -> Resolved {
    let Some(spec) = spec else {
        return Resolved::Whole;
    };
    let (start, end_incl) = match spec {
        RangeSpec::From(a, b) => (a, b),
        RangeSpec::Suffix(n) => {
            if n == 0 || size == 0 {
                return if standard {
                    Resolved::Unsatisfiable
                } else {
                    Resolved::Whole
                };
            }
            (size.saturating_sub(n), None)
        }
    };
    if start >= size {
        return if standard {
            Resolved::Unsatisfiable
        } else {
            Resolved::Whole
        };
    }
    match end_incl {
        Some(e) if e >= size && !standard => Resolved::Whole,
        Some(e) => Resolved::Partial(start, e.min(size - 1) + 1),
        None => Resolved::Partial(start, size),
    }
}

fn etag_matches(list: &str, etag: &str) -> bool {
    let bare = etag.trim_matches('"');
    list.split(',').map(str::trim).any(|t| {
        let t = t.strip_prefix("W/").unwrap_or(t);
        t == "*" || t.trim_matches('"').eq_ignore_ascii_case(bare)
    })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Answer a GET (`get == true`) or HEAD of an open file.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    server: &Arc<Server>,
    conn: &Arc<ConnShared>,
    headers: &HeaderMap,
    get: bool,
    s3: bool,
    file: std::fs::File,
    version: Version,
    mtime: SystemTime,
    id: &Identity,
    kind: &Kind,
) -> Result<Response<Body>, ApiError> {
    let size = version.size;
    if get && !kind.readable {
        return Err(ApiError::invalid_object_state(kind.restore.is_some()));
    }
    // Conditions, in RFC 9110 order.
    if let Some(im) = header(headers, "if-match") {
        if !etag_matches(im, &id.etag) {
            Stats::inc(&server.stats.status_412);
            return Err(ApiError::precondition_failed());
        }
    } else if let Some(t) =
        header(headers, "if-unmodified-since").and_then(|v| httpdate::parse_http_date(v).ok())
    {
        if truncate_secs(mtime) > t {
            Stats::inc(&server.stats.status_412);
            return Err(ApiError::precondition_failed());
        }
    }
    let not_modified = if let Some(inm) = header(headers, "if-none-match") {
        etag_matches(inm, &id.etag)
    } else if let Some(t) =
        header(headers, "if-modified-since").and_then(|v| httpdate::parse_http_date(v).ok())
    {
        truncate_secs(mtime) <= t
    } else {
        false
    };

    let mut resp = Response::builder();
    let h = resp.headers_mut().expect("fresh builder");
    h.insert("etag", HeaderValue::from_str(&id.etag).expect("hex etag"));
    h.insert(
        "last-modified",
        HeaderValue::from_str(&httpdate::fmt_http_date(mtime)).expect("date"),
    );
    // A symlink's own metadata has no CRC of the target's bytes (see `kinds`).
    if kind.object_type != "Symlink" {
        h.insert("x-oss-hash-crc64ecma", HeaderValue::from(id.crc64));
    }
    h.insert(
        "x-oss-object-type",
        HeaderValue::from_static(kind.object_type),
    );
    if kind.object_type == "Appendable" {
        h.insert("x-oss-next-append-position", HeaderValue::from(size));
    }
    if let Ok(v) = HeaderValue::from_str(&kind.storage_class) {
        h.insert("x-oss-storage-class", v);
    }
    if let Some(v) = kind
        .restore
        .as_deref()
        .and_then(|r| HeaderValue::from_str(r).ok())
    {
        h.insert("x-oss-restore", v);
    }
    let meta_prefix = if s3 { "x-amz-meta-" } else { "x-oss-meta-" };
    for (name, value) in &kind.user_meta {
        let name = http::HeaderName::from_bytes(format!("{meta_prefix}{name}").as_bytes());
        if let (Ok(n), Ok(v)) = (name, HeaderValue::from_bytes(value.as_bytes())) {
            h.append(n, v);
        }
    }
    h.insert("accept-ranges", HeaderValue::from_static("bytes"));
    if not_modified {
        return Ok(resp
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::Empty)
            .expect("valid response"));
    }
    h.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );

    let standard = s3
        || header(headers, "x-oss-range-behavior")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("standard"));
    let spec = header(headers, "range").and_then(parse_range);
    let (status, start, end) = match resolve_range(spec, size, standard) {
        Resolved::Whole => (StatusCode::OK, 0, size),
        Resolved::Partial(a, b) => {
            h.insert(
                "content-range",
                HeaderValue::from_str(&format!("bytes {a}-{}/{size}", b - 1)).expect("ascii"),
            );
            (StatusCode::PARTIAL_CONTENT, a, b)
        }
        Resolved::Unsatisfiable => return Err(ApiError::invalid_range(size)),
    };
    let len = end - start;
    h.insert("content-length", HeaderValue::from(len));
    let body = if get && len > 0 {
        let faults = server.faults.read().clone();
        let stall = stats::roll(faults.stall_rate).then(|| (len / 2, faults.stall()));
        Body::Object(Box::new(ObjectBody::new(
            file,
            start,
            len,
            faults.reset_after_bytes,
            stall,
            server.link.pacer(&faults),
            conn.clone(),
        )))
    } else {
        Body::Empty
    };
    Ok(resp.status(status).body(body).expect("valid response"))
}

/// HTTP dates have whole seconds; compare at that precision.
fn truncate_secs(t: SystemTime) -> SystemTime {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeSpec::*;
    use Resolved::*;

    #[test]
    fn range_parsing() {
        assert_eq!(parse_range("bytes=0-499"), Some(From(0, Some(499))));
        assert_eq!(parse_range("bytes=500-"), Some(From(500, None)));
        assert_eq!(parse_range("bytes=-10"), Some(Suffix(10)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("byte=0-1"), None);
        assert_eq!(parse_range("bytes=0-1,5-9"), None);
        assert_eq!(parse_range("bytes=-"), None);
    }

    #[test]
    fn oss_table_of_1000_bytes() {
        let r = |s: &str, std| resolve_range(parse_range(s), 1000, std);
        assert_eq!(r("bytes=0-499", false), Partial(0, 500));
        assert_eq!(r("bytes=0-499", true), Partial(0, 500));
        assert_eq!(r("bytes=500-2000", false), Whole);
        assert_eq!(r("bytes=500-2000", true), Partial(500, 1000));
        assert_eq!(r("bytes=1000-2000", false), Whole);
        assert_eq!(r("bytes=1000-", true), Unsatisfiable);
        assert_eq!(r("bytes=1000-", false), Whole);
        assert_eq!(r("byte=0-1", true), Whole);
        assert_eq!(r("bytes=-100", true), Partial(900, 1000));
        assert_eq!(r("bytes=-5000", true), Partial(0, 1000));
        assert_eq!(r("bytes=-0", true), Unsatisfiable);
        assert_eq!(
            resolve_range(parse_range("bytes=0-"), 0, true),
            Unsatisfiable
        );
        assert_eq!(resolve_range(parse_range("bytes=0-"), 0, false), Whole);
    }

    #[test]
    fn etag_lists() {
        assert!(etag_matches("\"ABC\"", "\"ABC\""));
        assert!(etag_matches("abc", "\"ABC\""));
        assert!(etag_matches("\"x\", \"ABC\"", "\"ABC\""));
        assert!(etag_matches("*", "\"ABC\""));
        assert!(!etag_matches("\"ABD\"", "\"ABC\""));
    }
}
