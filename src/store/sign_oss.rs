//! OSS signature V4 (`OSS4-HMAC-SHA256`): signing for the client, verification for
//! `ossmount serve`. STUB: the API below is fixed; the bodies are being written.

use std::time::SystemTime;

use crate::store::Credentials;

/// What gets signed, with bucket, key and query DECODED (the canonical form encodes them).
#[derive(Clone, Debug, Default)]
pub struct OssRequest<'a> {
    pub method: &'a str,
    /// `None` for service-level requests (canonical URI `/`).
    pub bucket: Option<&'a str>,
    /// `None` for bucket-level requests (canonical URI `/bucket/`).
    pub key: Option<&'a str>,
    /// Decoded `(name, value)` pairs; a valueless parameter has an empty value.
    pub query: &'a [(String, String)],
    /// Request headers as they will be sent (any case). For verification they also carry
    /// `authorization` and `x-oss-date`.
    pub headers: &'a [(String, String)],
    /// Extra header names to sign (AdditionalHeaders), any case.
    pub additional_headers: &'a [String],
}

/// The result of signing: the intermediate strings (for tests and debugging) and the
/// headers to add to the request.
#[derive(Clone, Debug)]
pub struct Signed {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signing_key: [u8; 32],
    pub authorization: String,
    /// `(name, value)` to add: x-oss-date, x-oss-content-sha256, x-oss-security-token
    /// (STS only), authorization.
    pub headers: Vec<(String, String)>,
}

/// Sign with header authentication.
pub fn sign_v4(
    _req: &OssRequest<'_>,
    _creds: &Credentials,
    _region: &str,
    _product: &str,
    _time: SystemTime,
) -> Signed {
    todo!("OSS V4 signing")
}

/// Why a request's signature was refused, mapped by the server to OSS error codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or malformed Authorization / x-oss-date: AccessDenied or InvalidArgument.
    #[error("malformed authorization: {0}")]
    Malformed(String),
    /// InvalidAccessKeyId.
    #[error("unknown access key id {0}")]
    UnknownKey(String),
    /// SignatureDoesNotMatch, with the server's string to sign for the client's debugging.
    #[error("signature does not match")]
    Mismatch { string_to_sign: String },
    /// RequestTimeTooSkewed (more than 15 minutes from the server's clock).
    #[error("request time too skewed")]
    Skewed,
}

/// Verify a V4-signed request as a server would. `secret_for(access_key_id)` returns the
/// secret of a known key. Region and product are taken from the credential scope.
pub fn verify_v4(
    _req: &OssRequest<'_>,
    _secret_for: &dyn Fn(&str) -> Option<String>,
    _now: SystemTime,
) -> Result<(), AuthError> {
    todo!("OSS V4 verification")
}
