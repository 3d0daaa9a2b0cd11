//! Testing aid: temporary credentials. [`Sessions`] issues STS-style key pairs with a
//! session token and a lifetime chosen by `--credential-lifetime` (20 s in the refresh
//! tests), and the object listener's signature check ([`super::auth`]) accepts them until
//! they expire or are revoked. Refusals use the real services' codes and XML:
//!
//! | case | OSS | S3 |
//! |---|---|---|
//! | token past its expiry | 403 `SecurityTokenExpired` | 400 `ExpiredToken` |
//! | revoked, unknown or missing token for an STS key | 403 `InvalidAccessKeyId` | 400 `InvalidToken` |
//!
//! It also answers the STS API (`POST /?Action=...`, JSON, version 2015-04-01) on the
//! aid listeners ([`super::metadata`]): `AssumeRole`, whose HMAC-SHA1 RPC signature is
//! checked against serve's own key pairs with the same [`rpc_sign`] code the client signs
//! with (pinned by vectors from the SDKs), and `AssumeRoleWithOIDC`, unsigned, which takes
//! any non-empty token and remembers a digest of each token seen, so a test can tell that
//! a rotated token file was read again. Real STS refuses `DurationSeconds` below 900; so
//! does this one, and the lifetime it actually grants is `--credential-lifetime`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::StatusCode;
use parking_lot::Mutex;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::auth::Flavor;
use super::error::ApiError;
use crate::store::credentials::rpc_sign;
use crate::store::credentials::{format_time, key_id_tail};

/// How the credential aids behave.
#[derive(Clone, Debug)]
pub struct AidConfig {
    /// Lifetime of every credential issued: 3600 s, the default `DurationSeconds` of STS and
    /// what the ECS metadata service typically hands out (tests pass 20 s).
    pub lifetime: Duration,
    /// The RAM role the fake metadata service says the instance has.
    pub role: String,
    /// Refuse metadata requests without a token (ALIBABA_CLOUD_IMDSV1_DISABLED on the
    /// server side). Off, as on real ECS instances by default.
    pub require_token: bool,
    /// AWS `AssumeRoleWithWebIdentity` accepts only the token this file holds (read at
    /// each call, so a test rotates it); `None`: any non-empty token.
    pub web_identity_token_file: Option<std::path::PathBuf>,
    /// The container endpoint accepts only this file's contents as `Authorization`
    /// (read at each request); `None`: no check (an ECS task endpoint without a token).
    pub container_authorization_file: Option<std::path::PathBuf>,
}

impl Default for AidConfig {
    fn default() -> Self {
        AidConfig {
            lifetime: Duration::from_secs(3600),
            role: "ossmount-serve-role".into(),
            require_token: false,
            web_identity_token_file: None,
            container_authorization_file: None,
        }
    }
}

struct Session {
    secret: String,
    token: String,
    expires: SystemTime,
    revoked: bool,
}

/// Counters of the credential aids, served as JSON on `GET /_ossmount/credentials`.
#[derive(Debug, Default)]
pub struct AidStats {
    /// Credentials issued, by any route.
    pub issued: AtomicU64,
    pub metadata_tokens: AtomicU64,
    pub metadata_credentials: AtomicU64,
    /// Metadata requests without a token (v1).
    pub metadata_v1: AtomicU64,
    pub assume_role: AtomicU64,
    pub assume_role_oidc: AtomicU64,
    /// Documents served on the credentials URI path.
    pub credentials_uri: AtomicU64,
    pub sts_errors: AtomicU64,
    /// IMDSv2 session tokens and instance-profile credentials handed out.
    pub imds_tokens: AtomicU64,
    pub imds_credentials: AtomicU64,
    /// Container-endpoint credentials handed out, and requests refused for their token.
    pub container_credentials: AtomicU64,
    pub container_refused: AtomicU64,
    /// AWS STS calls answered with credentials.
    pub aws_assume_role: AtomicU64,
    pub aws_assume_role_web_identity: AtomicU64,
    /// Object requests refused for an expired token.
    pub refused_expired: AtomicU64,
    /// Object requests refused for a revoked, unknown or missing token.
    pub refused_invalid: AtomicU64,
    /// Object requests signed with an issued (temporary) key and accepted.
    pub accepted: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct AidStatsSnapshot {
    pub issued: u64,
    pub metadata_tokens: u64,
    pub metadata_credentials: u64,
    pub metadata_v1: u64,
    pub assume_role: u64,
    pub assume_role_oidc: u64,
    pub credentials_uri: u64,
    pub sts_errors: u64,
    pub imds_tokens: u64,
    pub imds_credentials: u64,
    pub container_credentials: u64,
    pub container_refused: u64,
    pub aws_assume_role: u64,
    pub aws_assume_role_web_identity: u64,
    pub refused_expired: u64,
    pub refused_invalid: u64,
    pub accepted: u64,
    pub revoked: u64,
    /// Hex SHA-256 of each distinct OIDC or web identity token seen, in order.
    pub oidc_tokens_sha256: Vec<String>,
    pub lifetime_seconds: f64,
}

/// Faults of the credential aids (`PUT /_ossmount/credentials/faults`), absent = off.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AidFaults {
    /// Answer every metadata and STS request with this status (e.g. 500).
    pub status: Option<u16>,
    /// Answer credential requests with a document that is not JSON.
    pub malformed: bool,
}

/// The temporary credentials issued so far, and the aids' settings.
pub struct Sessions {
    pub cfg: AidConfig,
    map: Mutex<HashMap<String, Session>>,
    oidc_tokens: Mutex<Vec<String>>,
    revoked: AtomicU64,
    pub stats: AidStats,
    pub faults: Mutex<AidFaults>,
}

/// Issued key pairs expired longer than this are forgotten (then answered as unknown).
const KEEP_EXPIRED: Duration = Duration::from_secs(3600);

pub(crate) fn random(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// One issued credential, as the aids answer it.
pub struct Grant {
    pub id: String,
    pub secret: String,
    pub token: String,
    pub expires: SystemTime,
}

impl Grant {
    /// A metadata-service token: 48 random characters.
    pub fn token_text() -> String {
        random(48)
    }
}

impl Sessions {
    pub fn new(cfg: AidConfig) -> Self {
        Sessions {
            cfg,
            map: Mutex::new(HashMap::new()),
            oidc_tokens: Mutex::new(Vec::new()),
            revoked: AtomicU64::new(0),
            stats: AidStats::default(),
            faults: Mutex::new(AidFaults::default()),
        }
    }

    /// A new key pair and token valid for the configured lifetime, shaped as Alibaba
    /// Cloud STS issues them (`STS.` key id, `CAIS` token).
    pub fn issue(&self, now: SystemTime) -> Grant {
        self.issue_shaped(now, format!("STS.{}", random(24)), "CAIS")
    }

    /// The same, shaped as AWS STS issues them (`ASIA` key id, `IQoJ` token).
    pub fn issue_aws(&self, now: SystemTime) -> Grant {
        let id = format!("ASIA{}", random(16).to_ascii_uppercase());
        self.issue_shaped(now, id, "IQoJ")
    }

    fn issue_shaped(&self, now: SystemTime, id: String, token_prefix: &str) -> Grant {
        let token_bytes: Vec<u8> = (0..96).map(|_| rand::random::<u8>()).collect();
        let grant = Grant {
            id,
            secret: random(40),
            token: format!(
                "{token_prefix}{}",
                base64::engine::general_purpose::STANDARD.encode(token_bytes)
            ),
            expires: now + self.cfg.lifetime,
        };
        let mut map = self.map.lock();
        map.retain(|_, s| s.expires + KEEP_EXPIRED > now);
        map.insert(
            grant.id.clone(),
            Session {
                secret: grant.secret.clone(),
                token: grant.token.clone(),
                expires: grant.expires,
                revoked: false,
            },
        );
        self.stats.issued.fetch_add(1, Relaxed);
        tracing::debug!(
            key_id = %key_id_tail(&grant.id),
            expires = %format_time(grant.expires),
            "issued temporary credentials"
        );
        grant
    }

    /// Revoke every credential issued so far; returns how many were live.
    pub fn revoke_all(&self) -> usize {
        let mut map = self.map.lock();
        let mut n = 0;
        for s in map.values_mut() {
            if !s.revoked {
                s.revoked = true;
                n += 1;
            }
        }
        self.revoked.fetch_add(n as u64, Relaxed);
        n
    }

    /// The secret of an issued key id (expired or revoked ones too, so that the signature
    /// verifies and the refusal names the token, as OSS does).
    pub fn secret(&self, id: &str) -> Option<String> {
        self.map.lock().get(id).map(|s| s.secret.clone())
    }

    /// After the signature of a request by `key_id` verified: refuse it when `key_id` is an
    /// issued key whose token is missing, wrong, revoked or expired.
    pub fn check(
        &self,
        key_id: &str,
        headers: &[(String, String)],
        flavor: Flavor,
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let map = self.map.lock();
        let Some(s) = map.get(key_id) else {
            return Ok(());
        };
        let header = match flavor {
            Flavor::Oss => "x-oss-security-token",
            Flavor::S3 => "x-amz-security-token",
        };
        let token = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(header))
            .map(|(_, v)| v.trim());
        if token != Some(s.token.as_str()) || s.revoked {
            self.stats.refused_invalid.fetch_add(1, Relaxed);
            return Err(invalid_token(flavor));
        }
        if s.expires <= now {
            self.stats.refused_expired.fetch_add(1, Relaxed);
            return Err(expired_token(flavor));
        }
        self.stats.accepted.fetch_add(1, Relaxed);
        Ok(())
    }

    pub fn note_oidc_token(&self, token: &str) {
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        let mut seen = self.oidc_tokens.lock();
        if !seen.contains(&digest) {
            seen.push(digest);
        }
    }

    pub fn snapshot(&self) -> AidStatsSnapshot {
        let s = &self.stats;
        AidStatsSnapshot {
            issued: s.issued.load(Relaxed),
            metadata_tokens: s.metadata_tokens.load(Relaxed),
            metadata_credentials: s.metadata_credentials.load(Relaxed),
            metadata_v1: s.metadata_v1.load(Relaxed),
            assume_role: s.assume_role.load(Relaxed),
            assume_role_oidc: s.assume_role_oidc.load(Relaxed),
            credentials_uri: s.credentials_uri.load(Relaxed),
            sts_errors: s.sts_errors.load(Relaxed),
            imds_tokens: s.imds_tokens.load(Relaxed),
            imds_credentials: s.imds_credentials.load(Relaxed),
            container_credentials: s.container_credentials.load(Relaxed),
            container_refused: s.container_refused.load(Relaxed),
            aws_assume_role: s.aws_assume_role.load(Relaxed),
            aws_assume_role_web_identity: s.aws_assume_role_web_identity.load(Relaxed),
            refused_expired: s.refused_expired.load(Relaxed),
            refused_invalid: s.refused_invalid.load(Relaxed),
            accepted: s.accepted.load(Relaxed),
            revoked: self.revoked.load(Relaxed),
            oidc_tokens_sha256: self.oidc_tokens.lock().clone(),
            lifetime_seconds: self.cfg.lifetime.as_secs_f64(),
        }
    }
}

fn expired_token(flavor: Flavor) -> ApiError {
    match flavor {
        Flavor::Oss => ApiError::new(
            StatusCode::FORBIDDEN,
            "SecurityTokenExpired",
            "The security token you provided has expired.",
        )
        .ec("0002-00000040"),
        Flavor::S3 => ApiError::new(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "The provided token has expired.",
        ),
    }
}

fn invalid_token(flavor: Flavor) -> ApiError {
    match flavor {
        Flavor::Oss => ApiError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
        )
        .ec("0002-00000902"),
        Flavor::S3 => ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidToken",
            "The provided token is malformed or otherwise invalid.",
        ),
    }
}

/// The key id of `Credential=ID/...` in an Authorization header.
pub fn credential_key_id(auth: &str) -> Option<&str> {
    let start = auth.find("Credential=")? + "Credential=".len();
    auth[start..].split('/').next()
}

/// An STS answer: status and JSON body.
pub struct StsReply {
    pub status: StatusCode,
    pub body: String,
}

fn sts_error(status: StatusCode, code: &str, message: &str, request_id: &str) -> StsReply {
    StsReply {
        status,
        body: serde_json::json!({
            "RequestId": request_id,
            "HostId": "sts.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": "https://api.aliyun.com/troubleshoot?q=".to_string() + code,
        })
        .to_string(),
    }
}

/// Answer one STS call with `params` (query and form together, decoded). `secret_for`
/// gives the secret of serve's own key pairs (and of issued ones) for `AssumeRole`.
pub fn answer(
    sessions: &Sessions,
    method: &str,
    params: &[(String, String)],
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> StsReply {
    let request_id = format!("{:08X}-{}", rand::random::<u32>(), random(12));
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let fail = |status: StatusCode, code: &str, message: &str| {
        sessions.stats.sts_errors.fetch_add(1, Relaxed);
        sts_error(status, code, message, &request_id)
    };
    if let Some(status) = sessions.faults.lock().status {
        return fail(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "InternalError",
            "fault injected by ossmount serve",
        );
    }
    let action = get("Action").unwrap_or("");
    if get("Version") != Some(crate::store::credentials::sts::VERSION) {
        return fail(
            StatusCode::BAD_REQUEST,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        );
    }
    let Some(role_arn) = get("RoleArn") else {
        return fail(
            StatusCode::BAD_REQUEST,
            "MissingRoleArn",
            "RoleArn is mandatory for this action.",
        );
    };
    if let Some(d) = get("DurationSeconds") {
        if d.parse::<u64>().map_or(true, |d| d < 900) {
            return fail(
                StatusCode::BAD_REQUEST,
                "InvalidParameter.DurationSeconds",
                "The parameter DurationSeconds is out of range (900 or more).",
            );
        }
    }
    let session = get("RoleSessionName").unwrap_or("ossmount");
    match action {
        "AssumeRole" => {
            let Some(id) = get("AccessKeyId") else {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "MissingAccessKeyId",
                    "AccessKeyId is mandatory for this action.",
                );
            };
            let Some(secret) = secret_for(id) else {
                return fail(
                    StatusCode::NOT_FOUND,
                    "InvalidAccessKeyId.NotFound",
                    "Specified access key is not found.",
                );
            };
            if get("SignatureMethod") != Some("HMAC-SHA1") {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "InvalidSignatureMethod",
                    "Specified signature method is not valid (HMAC-SHA1).",
                );
            }
            let signed: Vec<(String, String)> = params
                .iter()
                .filter(|(n, _)| n != "Signature")
                .cloned()
                .collect();
            let expected = rpc_sign::signature(method, &signed, &secret);
            if get("Signature") != Some(expected.as_str()) {
                let sts = rpc_sign::string_to_sign(method, &signed);
                return fail(
                    StatusCode::BAD_REQUEST,
                    "SignatureDoesNotMatch",
                    &format!(
                        "Specified signature is not matched with our calculation. server string to sign is:{sts}"
                    ),
                );
            }
            sessions.stats.assume_role.fetch_add(1, Relaxed);
        }
        "AssumeRoleWithOIDC" => {
            if get("OIDCProviderArn").is_none() {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "MissingOIDCProviderArn",
                    "OIDCProviderArn is mandatory for this action.",
                );
            }
            let Some(token) = get("OIDCToken") else {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "MissingOIDCToken",
                    "OIDCToken is mandatory for this action.",
                );
            };
            sessions.note_oidc_token(token);
            sessions.stats.assume_role_oidc.fetch_add(1, Relaxed);
        }
        other => {
            return fail(
                StatusCode::BAD_REQUEST,
                "InvalidAction.NotFound",
                &format!("Specified api {other:?} is not found (ossmount serve answers AssumeRole and AssumeRoleWithOIDC)."),
            )
        }
    }
    let g = sessions.issue(now);
    let role_id = format!("3{:017}", rand::random::<u64>() % 100_000_000_000_000_000);
    StsReply {
        status: StatusCode::OK,
        body: serde_json::json!({
            "RequestId": request_id,
            "AssumedRoleUser": {
                "AssumedRoleId": format!("{role_id}:{session}"),
                "Arn": format!("{role_arn}/{session}"),
            },
            "Credentials": {
                "SecurityToken": g.token,
                "AccessKeyId": g.id,
                "AccessKeySecret": g.secret,
                "Expiration": format_time(g.expires),
            },
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::sts::parse_reply;

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn issued_credentials_expire_and_are_revoked() {
        let s = Sessions::new(AidConfig {
            lifetime: Duration::from_secs(20),
            ..Default::default()
        });
        let t0 = SystemTime::now();
        let g = s.issue(t0);
        let h = |t: &str| vec![("x-oss-security-token".to_string(), t.to_string())];
        assert!(s.check(&g.id, &h(&g.token), Flavor::Oss, t0).is_ok());
        let e = s.check(
            &g.id,
            &h(&g.token),
            Flavor::Oss,
            t0 + Duration::from_secs(21),
        );
        assert_eq!(e.unwrap_err().code, "SecurityTokenExpired");
        let e = s.check(&g.id, &h("other"), Flavor::Oss, t0).unwrap_err();
        assert_eq!(e.code, "InvalidAccessKeyId");
        assert_eq!(
            s.check(&g.id, &[], Flavor::S3, t0).unwrap_err().code,
            "InvalidToken"
        );
        assert!(
            s.check("LTAIfixed", &[], Flavor::Oss, t0).is_ok(),
            "not ours to judge"
        );
        assert_eq!(s.revoke_all(), 1);
        assert_eq!(
            s.check(&g.id, &h(&g.token), Flavor::Oss, t0)
                .unwrap_err()
                .code,
            "InvalidAccessKeyId"
        );
        let e = expired_token(Flavor::S3);
        assert_eq!((e.status.as_u16(), e.code), (400, "ExpiredToken"));
    }

    #[test]
    fn sts_answers_parse_with_the_client() {
        let s = Sessions::new(AidConfig::default());
        let none = |_: &str| None;
        let p = params(&[
            ("Action", "AssumeRoleWithOIDC"),
            ("Version", "2015-04-01"),
            ("RoleArn", "acs:ram::1:role/r"),
            ("OIDCProviderArn", "acs:ram::1:oidc-provider/p"),
            ("OIDCToken", "tok"),
            ("DurationSeconds", "3600"),
        ]);
        let r = answer(&s, "POST", &p, &none, SystemTime::now());
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let issued = parse_reply(200, &r.body, "t").unwrap();
        assert!(issued.credentials.access_key_id.starts_with("STS."));
        assert_eq!(s.snapshot().oidc_tokens_sha256.len(), 1);
        let mut short = p.clone();
        short.retain(|(k, _)| k != "DurationSeconds");
        short.push(("DurationSeconds".into(), "60".into()));
        let r = answer(&s, "POST", &short, &none, SystemTime::now());
        let e = parse_reply(r.status.as_u16(), &r.body, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("InvalidParameter.DurationSeconds"), "{e}");
    }

    #[test]
    fn assume_role_checks_the_rpc_signature() {
        let s = Sessions::new(AidConfig::default());
        let secret_for = |id: &str| (id == "AK").then(|| "SK".to_string());
        let mut p = params(&[
            ("Action", "AssumeRole"),
            ("Version", "2015-04-01"),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "n"),
            ("Timestamp", "2026-12-02T10:00:00Z"),
            ("AccessKeyId", "AK"),
            ("RoleArn", "acs:ram::1:role/r"),
            ("RoleSessionName", "s"),
        ]);
        let sig = rpc_sign::signature("POST", &p, "SK");
        let mut bad = p.clone();
        bad.push(("Signature".into(), "x".into()));
        p.push(("Signature".into(), sig));
        let r = answer(&s, "POST", &p, &secret_for, SystemTime::now());
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = answer(&s, "POST", &bad, &secret_for, SystemTime::now());
        assert!(r.body.contains("SignatureDoesNotMatch"), "{}", r.body);
    }
}
