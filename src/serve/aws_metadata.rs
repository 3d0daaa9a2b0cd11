//! Testing aid: the AWS credential endpoints of the aid listeners, as botocore and the
//! `s3://` chain ask them:
//!
//! - IMDSv2 (EC2 instance profile), token required as with `HttpTokens=required`:
//!   `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1..=21600) gives
//!   a session token; `GET /latest/meta-data/iam/security-credentials/` (the role name,
//!   `--metadata-role`) and `.../<role>` (JSON `Code`, `LastUpdated`, `Type`,
//!   `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`) need
//!   `X-aws-ec2-metadata-token`, else 401 as EC2 answers;
//! - the container endpoint (ECS task role `/v2/credentials/<id>`, EKS Pod Identity
//!   `/v1/credentials`): JSON `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`,
//!   `RoleArn`; with `--container-authorization-file` the `Authorization` header must be
//!   that file's contents (read at each request), else 401.
//!
//! The `{"malformed": true}` fault makes both answer a document that is not JSON.

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use http::{Method, StatusCode};

use super::metadata::Aids;
use crate::store::credentials::format_time;

/// An answer: status and body (JSON or text).
pub type Answer = (StatusCode, &'static str, String);

const MALFORMED: &str = "{\"Code\": \"Success\", \"AccessKeyId\": ";

fn text(status: StatusCode, body: &str) -> Answer {
    (status, "text/plain", body.to_string())
}

/// IMDSv2's `PUT /latest/api/token`, when the request carries the AWS TTL header.
pub fn imds_token(aids: &Aids, method: &Method, ttl: &str) -> Answer {
    if method != Method::PUT {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use PUT");
    }
    if !ttl.parse::<u32>().is_ok_and(|t| (1..=21600).contains(&t)) {
        return text(
            StatusCode::BAD_REQUEST,
            "X-aws-ec2-metadata-token-ttl-seconds must be 1..21600",
        );
    }
    let t = format!("AQAE{}", super::sts::random(52));
    aids.imds_tokens.lock().insert(t.clone());
    aids.sessions.stats.imds_tokens.fetch_add(1, Relaxed);
    text(StatusCode::OK, &t)
}

/// `GET /latest/meta-data/iam/security-credentials/[ROLE]` (`rest` is after the last
/// `/`, decoded).
pub fn imds_credentials(aids: &Aids, method: &Method, token: Option<&str>, role: &str) -> Answer {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    // IMDSv2 only: no token or an unknown one is 401, EC2's answer.
    if !token.is_some_and(|t| aids.imds_tokens.lock().contains(t)) {
        return text(StatusCode::UNAUTHORIZED, "");
    }
    let sessions = &aids.sessions;
    if role.is_empty() {
        return text(StatusCode::OK, &sessions.cfg.role);
    }
    if role != sessions.cfg.role {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }
    if sessions.faults.lock().malformed {
        return text(StatusCode::OK, MALFORMED);
    }
    let now = SystemTime::now();
    let g = sessions.issue_aws(now);
    sessions.stats.imds_credentials.fetch_add(1, Relaxed);
    let doc = serde_json::json!({
        "Code": "Success",
        "LastUpdated": format_time(now),
        "Type": "AWS-HMAC",
        "AccessKeyId": g.id,
        "SecretAccessKey": g.secret,
        "Token": g.token,
        "Expiration": format_time(g.expires),
    });
    (StatusCode::OK, "text/plain", doc.to_string())
}

/// Whether `path` is one of the container endpoint's.
pub fn is_container_path(path: &str) -> bool {
    path.starts_with("/v2/credentials/") || path == "/v1/credentials"
}

/// The container endpoint.
pub fn container_credentials(aids: &Aids, method: &Method, authorization: Option<&str>) -> Answer {
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    let sessions = &aids.sessions;
    if let Some(path) = &sessions.cfg.container_authorization_file {
        let expected = std::fs::read_to_string(path).unwrap_or_default();
        let expected = expected.trim_end_matches(['\n', '\r']);
        if expected.is_empty() || authorization != Some(expected) {
            sessions.stats.container_refused.fetch_add(1, Relaxed);
            return (
                StatusCode::UNAUTHORIZED,
                "application/json",
                "{\"code\":\"AccessDeniedException\",\"message\":\"Authorization token is missing or invalid\"}".into(),
            );
        }
    }
    if sessions.faults.lock().malformed {
        return text(StatusCode::OK, MALFORMED);
    }
    let g = sessions.issue_aws(SystemTime::now());
    sessions.stats.container_credentials.fetch_add(1, Relaxed);
    let doc = serde_json::json!({
        "RoleArn": format!("arn:aws:iam::000000000000:role/{}", sessions.cfg.role),
        "AccessKeyId": g.id,
        "SecretAccessKey": g.secret,
        "Token": g.token,
        "Expiration": format_time(g.expires),
    });
    (StatusCode::OK, "application/json", doc.to_string())
}
