//! Error answers in the OSS/S3 wire format: an `<Error>` XML body (serialized from the
//! shared [`crate::store::xml::ErrorBody`], so the client's parser and this server cannot
//! drift apart) and, for HEAD, the same XML base64-encoded in `x-oss-err`.

use base64::Engine as _;
use http::{HeaderValue, StatusCode};

use crate::store::xml::{to_xml, ErrorBody};

/// One failed request, before it becomes a response.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// OSS error code (EC); only the documented ones are filled in.
    pub ec: Option<&'static str>,
    pub string_to_sign: Option<String>,
    /// Extra response headers (Content-Range of a 416, Allow of a 405).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            ec: None,
            string_to_sign: None,
            headers: Vec::new(),
        }
    }

    pub fn ec(mut self, ec: &'static str) -> Self {
        self.ec = Some(ec);
        self
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn no_such_key() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
        .ec("0026-00000001")
    }

    /// GetObject of an Archive / ColdArchive / DeepColdArchive object that is not
    /// restored (OSS EC 0016-00000404).
    pub fn invalid_object_state(restoring: bool) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "InvalidObjectState",
            if restoring {
                "The operation is not valid for the object's state: the restore is in progress."
            } else {
                "The operation is not valid for the object's state: restore it first (RestoreObject)."
            },
        )
        .ec("0016-00000404")
    }

    /// GetObject / HeadObject of a symlink whose target does not exist.
    pub fn symlink_target_not_exist() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "SymlinkTargetNotExist",
            "The object is a symbolic link, and the target object that the link points to does not exist.",
        )
    }

    /// GetObject / HeadObject of a symlink whose target is a symlink too.
    pub fn invalid_target_type() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidTargetType",
            "The object is a symbolic link, and the target object is also a symbolic link.",
        )
    }

    /// GetSymlink of an object that is not a symlink.
    pub fn not_symlink() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "NotSymlink",
            "The specified object is not a symlink.",
        )
    }

    /// GetObject / HeadObject with a `versionId` the object does not have: 404
    /// NoSuchVersion, as OSS and S3 answer (OSS EC 0012-00000203, "the version the
    /// versionId parameter names does not exist").
    pub fn no_such_version() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchVersion",
            "The specified version does not exist.",
        )
        .ec("0012-00000203")
    }

    pub fn no_such_bucket() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist.",
        )
        .ec("0015-00000101")
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }

    pub fn precondition_failed() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
        )
    }

    pub fn invalid_range(size: u64) -> Self {
        Self::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            "The requested range cannot be satisfied",
        )
        .header("content-range", format!("bytes */{size}"))
    }

    pub fn slow_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate. (fault injected by ossmount serve)",
        )
    }

    pub fn read_only(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The specified method is not allowed against this resource: ossmount serve is read-only ({method})."),
        )
        .header("allow", "GET, HEAD".into())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// The XML body; `oss` selects whether the OSS-only `EC` element is included.
    pub fn to_xml(&self, request_id: &str, host_id: &str, oss: bool) -> String {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            request_id: Some(request_id.to_string()),
            host_id: Some(host_id.to_string()),
            ec: if oss {
                self.ec.map(str::to_string)
            } else {
                None
            },
            string_to_sign: self.string_to_sign.clone(),
        };
        to_xml(&body).unwrap_or_else(|e| {
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>unserializable: {e}</Message></Error>", self.code)
        })
    }

    /// `x-oss-err`: the XML, base64, for HEAD answers that cannot carry a body.
    pub fn x_oss_err(xml: &str) -> HeaderValue {
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml.as_bytes());
        HeaderValue::from_str(&b64).expect("base64 is a valid header value")
    }
}
