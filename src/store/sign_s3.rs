//! AWS Signature V4 in its S3 flavour: signing for the client, verification for
//! `ossmount serve`. STUB: the API below is fixed; the bodies are being written.

use std::time::SystemTime;

pub use crate::store::sign_oss::AuthError;
use crate::store::Credentials;

/// What gets signed. `path` is DECODED (`/bucket/dir/file name.bin`); S3 encodes it once.
#[derive(Clone, Debug, Default)]
pub struct S3Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Decoded `(name, value)` pairs.
    pub query: &'a [(String, String)],
    /// Request headers as sent, `host` included (any case). For verification they also
    /// carry `authorization` and `x-amz-date`.
    pub headers: &'a [(String, String)],
}

#[derive(Clone, Debug)]
pub struct Signed {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub authorization: String,
    /// `(name, value)` to add: x-amz-date, x-amz-content-sha256, x-amz-security-token
    /// (session credentials only), authorization.
    pub headers: Vec<(String, String)>,
}

/// Sign with header authentication. `payload_sha256` is the hex SHA-256 of the body
/// (empty body for GET/HEAD) or `UNSIGNED-PAYLOAD`.
pub fn sign_v4(
    _req: &S3Request<'_>,
    _creds: &Credentials,
    _region: &str,
    _service: &str,
    _payload_sha256: &str,
    _time: SystemTime,
) -> Signed {
    todo!("S3 SigV4 signing")
}

/// Verify a SigV4-signed request as a server would.
pub fn verify_v4(
    _req: &S3Request<'_>,
    _secret_for: &dyn Fn(&str) -> Option<String>,
    _now: SystemTime,
) -> Result<(), AuthError> {
    todo!("S3 SigV4 verification")
}
