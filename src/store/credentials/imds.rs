//! The EC2 instance profile: temporary credentials from the instance metadata service
//! (IMDS, `http://169.254.169.254`), as botocore's `InstanceMetadataFetcher` gets them:
//!
//! 1. IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds: 21600`
//!    -> a session token. When that is refused with 403, 404 or 405 (an IMDSv1-only
//!    service) the requests below go without it, unless `AWS_EC2_METADATA_V1_DISABLED=true`;
//!    any other failure (nothing answers, a timeout) is the error;
//! 2. `GET /latest/meta-data/iam/security-credentials/` -> the instance profile's role;
//! 3. `GET /latest/meta-data/iam/security-credentials/<role>` -> JSON `Code` ("Success"),
//!    `AccessKeyId`, `SecretAccessKey`, `Token`, `Expiration`.
//!
//! Steps 2 and 3 carry `X-aws-ec2-metadata-token`. The endpoint: `--metadata-endpoint` /
//! `OSSMOUNT_METADATA_ENDPOINT`, then the SDKs' `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else
//! `169.254.169.254` (`[fd00:ec2::254]` with `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
//! `AWS_EC2_METADATA_DISABLED=true` turns the source off. Timeouts: 2 s to connect, 5 s per
//! request (botocore: 1 s), never through a proxy, bodies capped at 64 KiB.

use super::web::{self, Net};
use super::{json_issued, json_object, json_success, CredentialsError, Issued, Provider, System};

pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
pub const DEFAULT_ENDPOINT_V6: &str = "http://[fd00:ec2::254]";
/// Lifetime asked for the session token: 21600 s (6 h), botocore's.
pub const TOKEN_TTL_SECONDS: u32 = 21600;
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

/// The metadata service's address; see the module doc.
pub fn endpoint(explicit: Option<&str>, sys: &dyn System) -> String {
    explicit
        .map(str::to_string)
        .filter(|e| !e.trim().is_empty())
        .or_else(|| sys.var("OSSMOUNT_METADATA_ENDPOINT"))
        .or_else(|| sys.var("AWS_EC2_METADATA_SERVICE_ENDPOINT"))
        .map(|e| web::base_url(&e, "http"))
        .unwrap_or_else(|| {
            let v6 = sys
                .var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("ipv6"));
            if v6 {
                DEFAULT_ENDPOINT_V6
            } else {
                DEFAULT_ENDPOINT
            }
            .to_string()
        })
}

/// `AWS_EC2_METADATA_DISABLED=true`.
pub fn disabled(sys: &dyn System) -> bool {
    sys.var("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

pub struct InstanceProfile {
    pub endpoint: String,
    pub v1_disabled: bool,
    client: reqwest::Client,
}

impl InstanceProfile {
    /// `net`: the CA files (an https endpoint in a private cloud); never a proxy.
    pub fn new(endpoint: String, sys: &dyn System, net: &Net) -> Self {
        InstanceProfile {
            endpoint,
            v1_disabled: sys
                .var("AWS_EC2_METADATA_V1_DISABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            client: net.metadata_client(),
        }
    }

    fn what(&self) -> String {
        format!("EC2 instance metadata service {}", self.endpoint)
    }

    async fn token(&self) -> Result<Option<String>, CredentialsError> {
        let resp = self
            .client
            .put(format!("{}/latest/api/token", self.endpoint))
            .header(
                "x-aws-ec2-metadata-token-ttl-seconds",
                TOKEN_TTL_SECONDS.to_string(),
            )
            .send()
            .await
            .map_err(|e| web::transport(&self.what(), e))?;
        let (status, body) = web::capped_text(resp, &self.what()).await?;
        match status {
            200..=299 if !body.trim().is_empty() => Ok(Some(body.trim().to_string())),
            200..=299 => Err(CredentialsError::Failed(format!(
                "{}: PUT /latest/api/token: an empty token",
                self.what()
            ))),
            403..=405 if !self.v1_disabled => {
                tracing::debug!(
                    "{}: no IMDSv2 token (HTTP {status}); asking without one (IMDSv1)",
                    self.what()
                );
                Ok(None)
            }
            _ => Err(CredentialsError::Failed(format!(
                "{}: PUT /latest/api/token: HTTP {status}{}",
                self.what(),
                if self.v1_disabled {
                    " (and AWS_EC2_METADATA_V1_DISABLED=true)"
                } else {
                    ""
                }
            ))),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let mut req = self.client.get(format!("{}{path}", self.endpoint));
        if let Some(t) = token {
            req = req.header("x-aws-ec2-metadata-token", t);
        }
        let hint = |status| match status {
            404 if path == CREDENTIALS_PATH => " (no instance profile on this instance)",
            404 => " (no such role in the instance profile)",
            401 => " (the IMDSv2 token was refused)",
            _ => "",
        };
        web::get_ok(req, &format!("{}: GET {path}", self.what()), hint).await
    }
}

/// The credentials document of step 3.
pub fn parse_credentials(body: &str, what: &str) -> Result<Issued, CredentialsError> {
    let v = json_object(body, what)?;
    json_success(&v, what)?;
    json_issued(&v, "SecretAccessKey", "Token", what)
}

#[async_trait::async_trait]
impl Provider for InstanceProfile {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let token = self.token().await?;
        let body = self.get(CREDENTIALS_PATH, token.as_deref()).await?;
        let Some(role) = body.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Err(CredentialsError::Failed(format!(
                "{}: no instance profile on this instance",
                self.what()
            )));
        };
        let path = format!(
            "{CREDENTIALS_PATH}{}",
            crate::store::sign_oss::uri_encode(role, true)
        );
        let body = self.get(&path, token.as_deref()).await?;
        parse_credentials(&body, &format!("{}, role {role:?}", self.what()))
    }

    fn describe(&self) -> String {
        format!("EC2 instance profile ({})", self.what())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;

    #[test]
    fn endpoint_rules() {
        assert_eq!(endpoint(None, &FakeSystem::default()), DEFAULT_ENDPOINT);
        let v6 = FakeSystem::with_vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]);
        assert_eq!(endpoint(None, &v6), DEFAULT_ENDPOINT_V6);
        let sdk =
            FakeSystem::with_vars(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://10.0.0.1/")]);
        assert_eq!(endpoint(None, &sdk), "http://10.0.0.1");
        let ours = FakeSystem::with_vars(&[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://10.0.0.1/"),
            ("OSSMOUNT_METADATA_ENDPOINT", "127.0.0.1:8"),
        ]);
        assert_eq!(endpoint(None, &ours), "http://127.0.0.1:8");
        assert_eq!(endpoint(Some("http://h:1/"), &ours), "http://h:1");
        assert!(disabled(&FakeSystem::with_vars(&[(
            "AWS_EC2_METADATA_DISABLED",
            "TRUE"
        )])));
        assert!(!disabled(&FakeSystem::default()));
    }

    #[test]
    fn credentials_document() {
        let ok = r#"{"Code":"Success","LastUpdated":"2026-12-02T04:00:00Z","Type":"AWS-HMAC",
            "AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-02T10:00:00Z"}"#;
        let i = parse_credentials(ok, "m").unwrap();
        assert_eq!(i.credentials.access_key_id, "ASIA1");
        let e = parse_credentials(r#"{"Code":"AssumeRoleUnauthorizedAccess"}"#, "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not \"Success\""), "{e}");
    }
}
