//! Who may ask: OSS V4 (`OSS4-HMAC-SHA256`) and S3 SigV4 (`AWS4-HMAC-SHA256`) header
//! signatures, checked with the verifiers in `store::sign_oss` / `store::sign_s3`, against
//! the key pairs in the environment (either pair is valid for either scheme).
//!
//! The credential scope's region must be the server's `--region` (default `cn-hangzhou`):
//! a client that signs for another region is refused with a message saying which one is
//! expected, as OSS (InvalidArgument) and S3 (AuthorizationHeaderMalformed) do. V1/V2
//! signatures and presigned URLs are not accepted (AccessDenied saying so).
//!
//! With the credential testing aids on, the temporary key pairs they issued are accepted
//! too, until their token expires or is revoked ([`super::sts::Sessions::check`]).

use std::collections::HashMap;
use std::time::SystemTime;

use http::StatusCode;

use super::error::ApiError;
use super::sts::{credential_key_id, Sessions};
use crate::store::sign_oss::{self, AuthError, OssRequest};
use crate::store::sign_s3::{self, S3Request};

/// Which protocol a request speaks; decides error flavour and range semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Oss,
    S3,
}

impl Flavor {
    /// S3 when the request is SigV4-signed or carries any `x-amz-*` header.
    pub fn of(headers: &http::HeaderMap) -> Self {
        let auth = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if auth.starts_with("AWS4-HMAC-SHA256") || auth.starts_with("AWS ") {
            return Flavor::S3;
        }
        if auth.starts_with("OSS") {
            return Flavor::Oss;
        }
        if headers.keys().any(|k| k.as_str().starts_with("x-amz-")) {
            Flavor::S3
        } else {
            Flavor::Oss
        }
    }
}

/// Accepted access key id -> secret, plus the temporary ones the aids issued.
#[derive(Clone, Default)]
pub struct Keys(HashMap<String, String>, Option<std::sync::Arc<Sessions>>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Keys {
    /// From OSS_ACCESS_KEY_ID/OSS_ACCESS_KEY_SECRET and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
    pub fn from_env() -> Self {
        let mut keys = HashMap::new();
        for (id, secret) in [
            ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET"),
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
        ] {
            if let (Ok(id), Ok(secret)) = (std::env::var(id), std::env::var(secret)) {
                if !id.is_empty() && !secret.is_empty() {
                    keys.insert(id, secret);
                }
            }
        }
        Keys(keys, None)
    }

    /// Also accept the temporary credentials `sessions` issues.
    pub fn with_sessions(mut self, sessions: std::sync::Arc<Sessions>) -> Self {
        self.1 = Some(sessions);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn secret(&self, id: &str) -> Option<String> {
        self.0
            .get(id)
            .cloned()
            .or_else(|| self.1.as_ref().and_then(|s| s.secret(id)))
    }
}

/// What the verifiers need of one request.
pub struct Signed<'a> {
    pub method: &'a str,
    pub bucket: Option<&'a str>,
    pub key: Option<&'a str>,
    /// Decoded request path (S3 signs the path as sent).
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub authorization: Option<&'a str>,
}

/// Check one request's signature.
pub fn verify(
    keys: &Keys,
    region: &str,
    req: &Signed<'_>,
    now: SystemTime,
) -> Result<(), ApiError> {
    let secret_for = |id: &str| keys.secret(id);
    let Some(auth) = req.authorization else {
        if req.query.iter().any(|(n, _)| {
            n.eq_ignore_ascii_case("x-oss-signature")
                || n.eq_ignore_ascii_case("X-Amz-Signature")
                || n == "Signature"
        }) {
            return Err(ApiError::access_denied(
                "Presigned URLs are not supported by ossmount serve; sign the Authorization header (V4).",
            ));
        }
        return Err(ApiError::access_denied(
            "Anonymous access is forbidden: sign the request (OSS V4 or S3 SigV4), or start the server with --anonymous.",
        ));
    };
    let (flavor, result) = if auth.starts_with("OSS4-HMAC-SHA256") {
        let r = OssRequest {
            method: req.method,
            bucket: req.bucket,
            key: req.key,
            query: req.query,
            headers: req.headers,
            additional_headers: &[],
        };
        (Flavor::Oss, sign_oss::verify_v4(&r, &secret_for, now))
    } else if auth.starts_with("AWS4-HMAC-SHA256") {
        let r = S3Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
        };
        (Flavor::S3, sign_s3::verify_v4(&r, &secret_for, now))
    } else {
        return Err(ApiError::access_denied(
            "Only V4 signatures (OSS4-HMAC-SHA256, AWS4-HMAC-SHA256) are accepted by ossmount serve.",
        ));
    };
    result.map_err(|e| map_error(e, flavor))?;
    // The signature is good; now the scope must name this server's region.
    let scope_region = credential_region(auth).unwrap_or_default();
    if scope_region != region {
        let message = format!(
            "the region '{scope_region}' is wrong; expecting '{region}' (the server's --region)"
        );
        return Err(match flavor {
            Flavor::Oss => ApiError::invalid_argument(message),
            Flavor::S3 => ApiError::new(
                StatusCode::BAD_REQUEST,
                "AuthorizationHeaderMalformed",
                message,
            ),
        });
    }
    if let (Some(sessions), Some(id)) = (&keys.1, credential_key_id(auth)) {
        sessions.check(id, req.headers, flavor, now)?;
    }
    Ok(())
}

fn map_error(e: AuthError, flavor: Flavor) -> ApiError {
    match e {
        AuthError::Malformed(m) => match flavor {
            Flavor::Oss => ApiError::invalid_argument(format!("Authorization is malformed: {m}"))
                .ec("0002-00000202"),
            Flavor::S3 => ApiError::new(
                StatusCode::BAD_REQUEST,
                "AuthorizationHeaderMalformed",
                format!("The authorization header is malformed: {m}"),
            ),
        },
        AuthError::UnknownKey(id) => ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            format!("The access key id {id} does not exist."),
        ),
        AuthError::Mismatch { string_to_sign } => {
            let mut e = ApiError::new(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            )
            .ec("0002-00000201");
            e.string_to_sign = Some(string_to_sign);
            e
        }
        AuthError::Skewed => ApiError::new(
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        ),
    }
}

/// The region of `Credential=AK/date/region/service/terminator`.
fn credential_region(auth: &str) -> Option<&str> {
    let start = auth.find("Credential=")? + "Credential=".len();
    let value = auth[start..].split([',', ' ']).next()?;
    let mut it = value.rsplitn(5, '/');
    it.next()?;
    it.next()?;
    it.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_credential() {
        assert_eq!(
            credential_region("OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request,Signature=x"),
            Some("cn-hangzhou")
        );
        assert_eq!(
            credential_region("AWS4-HMAC-SHA256 Credential=a/b/c/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"),
            Some("us-east-1")
        );
    }
}
