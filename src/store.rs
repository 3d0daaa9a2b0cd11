//! The object store as the rest of ossmount sees it: a bucket you can HEAD, read ranges
//! from, and list.
//!
//! Everything above this trait (cache, fetcher, mount, download) is written against
//! `dyn ObjectStore`, so it runs unchanged against the HTTP client (OSS V4, S3 SigV4 or
//! anonymous), against `ossmount serve`, and against the in-memory store with fault
//! injection that the cache tests use. `async_trait` makes the trait object-safe; one boxed
//! future per request is noise next to an HTTP round trip.
//!
//! A store is bound to one bucket. Implementations make exactly one attempt per call;
//! retries, backoff and resuming a broken body live in [`retry`], once, for every store.

pub mod config;
pub mod credentials;
pub mod endpoint;
pub mod http;
pub mod limits;
#[cfg(test)]
pub mod memory;
#[cfg(test)]
mod props;
pub mod retry;
pub mod sign_oss;
pub mod sign_s3;
pub mod tls;
pub mod xml;

#[cfg(test)]
pub(crate) mod test_util {
    use futures_util::StreamExt;

    use super::{ByteStream, StoreError};

    /// Drain a body: the bytes received and the error that ended it early, if any.
    pub async fn collect(mut s: ByteStream) -> (Vec<u8>, Option<StoreError>) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }
}

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;

/// Size, identity and type of one object, from HeadObject or a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Full key, decoded.
    pub key: String,
    pub size: u64,
    /// ETag exactly as the server sent it, quotes included: an opaque change detector.
    pub etag: String,
    pub last_modified: SystemTime,
    /// Whole-object CRC-64/XZ from `x-oss-hash-crc64ecma`, when the server sends one.
    pub crc64: Option<u64>,
    /// `x-oss-object-type` (Normal, Multipart, Appendable, Symlink), when known.
    pub object_type: Option<String>,
    /// `x-oss-storage-class` (Standard, IA, Archive, ColdArchive, ...), when known.
    pub storage_class: Option<String>,
    /// Restore state of an archived object: `x-oss-restore` (HEAD) or `RestoreInfo`
    /// (listing), e.g. `ongoing-request="false", expiry-date="Sun, 16 Apr 2017 08:12:33
    /// GMT"`. See [`RestoreState`].
    pub restore: Option<String>,
    /// User metadata (`x-oss-meta-*`, `x-amz-meta-*`): names lower-case without the
    /// prefix, in the order the server sent them. HEAD only; listings carry none.
    pub user_meta: Vec<(String, String)>,
    /// `x-oss-version-id` / `x-amz-version-id`: the version HEAD answered for, in a
    /// versioning-enabled bucket (HEAD only; `None` elsewhere).
    pub version_id: Option<String>,
}

impl ObjectMeta {
    /// `x-oss-object-type` is `Appendable`: the object grows by appends, and bytes below a
    /// length once seen never change while it stays appendable.
    pub fn is_appendable(&self) -> bool {
        self.object_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("Appendable"))
    }

    /// `x-oss-object-type` is `Symlink`.
    pub fn is_symlink(&self) -> bool {
        self.object_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("Symlink"))
    }

    /// Whether the data can be read now, as far as the storage class and restore state
    /// tell; see [`RestoreState`].
    pub fn restore_state(&self, now: SystemTime) -> RestoreState {
        RestoreState::of(self.storage_class.as_deref(), self.restore.as_deref(), now)
    }
}

/// What an object's storage class and restore header say about reading it now.
///
/// Archive, ColdArchive and DeepColdArchive objects must be restored (RestoreObject)
/// before GetObject succeeds; OSS answers 403 InvalidObjectState until then. A restore
/// in progress is `ongoing-request="true"`; a done one is `ongoing-request="false",
/// expiry-date="<RFC 1123>"`, readable until that date (OSS documentation of HeadObject
/// and RestoreObject). Classes compare case-insensitively (some SDK mocks send `ARCHIVE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreState {
    /// Standard or IA (or unknown): readable.
    NotArchived,
    /// Archived, no restore asked for (or the last one expired).
    Archived,
    /// Archived, a restore is running.
    Restoring,
    /// Archived and restored: readable until `expiry` (when the server gave one).
    Restored { expiry: Option<SystemTime> },
}

impl RestoreState {
    pub fn of(class: Option<&str>, restore: Option<&str>, now: SystemTime) -> Self {
        let archived = class.is_some_and(|c| {
            ["Archive", "ColdArchive", "DeepColdArchive"]
                .iter()
                .any(|a| c.eq_ignore_ascii_case(a))
        });
        if !archived {
            return RestoreState::NotArchived;
        }
        let Some(r) = restore else {
            return RestoreState::Archived;
        };
        let field = |name: &str| -> Option<String> {
            let i = r.find(name)?;
            let rest = r[i + name.len()..]
                .trim_start()
                .strip_prefix('=')?
                .trim_start();
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        };
        if field("ongoing-request").as_deref() == Some("true") {
            return RestoreState::Restoring;
        }
        let expiry = field("expiry-date").and_then(|d| httpdate::parse_http_date(&d).ok());
        match expiry {
            Some(e) if e <= now => RestoreState::Archived,
            expiry => RestoreState::Restored { expiry },
        }
    }

    /// GetObject would succeed.
    pub fn readable(&self) -> bool {
        matches!(
            self,
            RestoreState::NotArchived | RestoreState::Restored { .. }
        )
    }

    /// A short name for logs and extended attributes.
    pub fn name(&self) -> &'static str {
        match self {
            RestoreState::NotArchived => "not-archived",
            RestoreState::Archived => "archived",
            RestoreState::Restoring => "restoring",
            RestoreState::Restored { .. } => "restored",
        }
    }
}

/// One page of ListObjectsV2 with keys and prefixes already URL-decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes ("directories"), each ending with the delimiter.
    pub common_prefixes: Vec<String>,
    /// Token for the next page; `None` when this was the last page.
    pub next_continuation_token: Option<String>,
}

/// Arguments of one ListObjectsV2 call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub continuation_token: Option<String>,
    /// 1..=1000; OSS defaults to 100 when absent, so callers should set it.
    pub max_keys: u32,
}

/// A response body: chunks in order. An `Err` item means the body broke; the bytes
/// before it were good and [`retry::RetryingStore`] resumes after them.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// Long-lived credentials or STS credentials (with a session token).
///
/// `Debug` never prints the secret or the token: credentials must not reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// HeadObject.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StoreError>;

    /// GetObject of `range` (half-open, `range.start < range.end <= size`), sent as
    /// `Range: bytes=a-b` with `x-oss-range-behavior: standard`, and `If-Match` when
    /// `if_match` is given. The implementation checks 206 and `Content-Range`. An empty
    /// range (zero-byte object) is read without a Range header.
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<ByteStream, StoreError>;

    /// GetSymlink (`GET key?symlink`): the key a symlink object points to, decoded.
    /// Stores without symlinks (S3, the in-memory test store) answer `NotSymlink`.
    async fn get_symlink(&self, key: &str) -> Result<String, StoreError> {
        Err(StoreError::Other(ServiceError {
            status: 400,
            code: "NotSymlink".into(),
            message: format!("{key:?}: this store has no symlink objects"),
            ..Default::default()
        }))
    }

    /// One page of ListObjectsV2.
    async fn list(&self, req: &ListRequest) -> Result<ListPage, StoreError>;

    /// A short description for logs and messages, e.g. `oss://bucket at http://127.0.0.1:9000`.
    fn describe(&self) -> String;
}

/// The parsed XML error body (or `x-oss-err` header for HEAD) of a failed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub ec: Option<String>,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        if let Some(ec) = &self.ec {
            write!(f, " (EC {ec})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a store, typed by what a caller does about it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such key: {0}")]
    NoSuchKey(ServiceError),
    #[error("no such bucket: {0}")]
    NoSuchBucket(ServiceError),
    #[error("access denied: {0}")]
    AccessDenied(ServiceError),
    #[error("invalid access key id (check the credentials: ossmount auth check URL): {0}")]
    InvalidAccessKeyId(ServiceError),
    #[error("signature does not match (check the secret and the region): {0}")]
    SignatureDoesNotMatch(ServiceError),
    #[error("request time too skewed (check the clock): {0}")]
    RequestTimeTooSkewed(ServiceError),
    #[error("object is archived and not restored (restore it first): {0}")]
    InvalidObjectState(ServiceError),
    #[error("object changed (ETag no longer matches): {0}")]
    PreconditionFailed(ServiceError),
    #[error("range not satisfiable: {0}")]
    InvalidRange(ServiceError),
    #[error("throttled by the server: {0}")]
    Throttled(ServiceError),
    #[error("server error: {0}")]
    Server(ServiceError),
    #[error("request failed: {0}")]
    Other(ServiceError),
    /// Connection refused or reset, DNS failure, TLS failure, body broken midway.
    #[error("network error: {0}")]
    Network(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server's TLS certificate was refused (unknown issuer, another name, expired):
    /// not retried, since asking again gets the same certificate.
    #[error(
        "TLS certificate refused (trust its CA with --ca-bundle, or check the endpoint name): {0}"
    )]
    Tls(String),
    /// The server answered something that breaks the protocol (wrong Content-Range,
    /// missing ETag, unparsable XML, short body).
    #[error("bad response from server: {0}")]
    Protocol(String),
}

impl StoreError {
    /// Map a service error to its typed variant by status and code.
    pub fn from_service(e: ServiceError) -> Self {
        match e.code.as_str() {
            // A symlink object whose target is missing reads as a missing key; the code
            // stays in the error for those who ask (fs/tree/links.rs).
            // A version that does not exist (`versionId=ID`, OSS and S3 alike) is as missing
            // as a key that does not; the code stays in the message.
            "NoSuchKey" | "SymlinkTargetNotExist" | "NoSuchVersion" => Self::NoSuchKey(e),
            "NoSuchBucket" => Self::NoSuchBucket(e),
            "AccessDenied" => Self::AccessDenied(e),
            "InvalidAccessKeyId" => Self::InvalidAccessKeyId(e),
            "SignatureDoesNotMatch" => Self::SignatureDoesNotMatch(e),
            "RequestTimeTooSkewed" => Self::RequestTimeTooSkewed(e),
            "InvalidObjectState" => Self::InvalidObjectState(e),
            // Temporary credentials past their expiry or revoked: refused, like a bad key.
            "SecurityTokenExpired" | "ExpiredToken" | "InvalidToken" | "InvalidSecurityToken" => {
                Self::AccessDenied(e)
            }
            "PreconditionFailed" => Self::PreconditionFailed(e),
            "InvalidRange" => Self::InvalidRange(e),
            "SlowDown"
            | "Throttling"
            | "TotalQpsLimitExceeded"
            | "ActiveRequestLimitExceeded"
            | "DownloadTrafficRateLimitExceeded"
            | "MetaOperationQpsLimitExceeded" => Self::Throttled(e),
            _ => match e.status {
                404 if e.code.is_empty() => Self::NoSuchKey(e),
                403 if e.code.is_empty() => Self::AccessDenied(e),
                412 => Self::PreconditionFailed(e),
                416 => Self::InvalidRange(e),
                429 => Self::Throttled(e),
                503 => Self::Throttled(e),
                500..=599 => Self::Server(e),
                _ => Self::Other(e),
            },
        }
    }

    /// The store refused the request's temporary credentials: their token expired or was
    /// revoked (OSS `SecurityTokenExpired`, S3 `ExpiredToken` / `InvalidToken`), or, for a
    /// request that carried a token (`with_token`), the temporary key id is no longer known
    /// (`InvalidAccessKeyId`). New credentials may succeed where a plain retry cannot.
    pub fn is_credentials_refused(&self, with_token: bool) -> bool {
        match self {
            Self::AccessDenied(e) => matches!(
                e.code.as_str(),
                "SecurityTokenExpired" | "ExpiredToken" | "InvalidToken" | "InvalidSecurityToken"
            ),
            Self::InvalidAccessKeyId(_) => with_token,
            _ => false,
        }
    }

    /// Worth another attempt: throttling, 5xx, 408, timeouts and network errors
    /// (the SDKs' retry list). RequestTimeTooSkewed is not: retrying with the same
    /// clock fails again, and the message tells the user what to fix.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Throttled(_) | Self::Server(_) | Self::Network(_) | Self::Timeout(_) => true,
            Self::Other(e) => e.status == 408,
            _ => false,
        }
    }
}
