//! The ECS instance RAM role: temporary credentials from the instance metadata service
//! (`http://100.100.100.200`), as credentials-go (`providers/ecs_ram_role.go`) and ossfs 2.0
//! fetch them:
//!
//! 1. `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds: 21600` -> a
//!    token (the hardened mode, like IMDSv2). If that fails, the requests below go without
//!    it (v1), unless `ALIBABA_CLOUD_IMDSV1_DISABLED=true`;
//! 2. `GET /latest/meta-data/ram/security-credentials/` -> the role name, unless given
//!    (`--ram-role`, `ALIBABA_CLOUD_ECS_METADATA`, a profile's `role_name`);
//! 3. `GET /latest/meta-data/ram/security-credentials/<role>` -> JSON `Code` ("Success"),
//!    `AccessKeyId`, `AccessKeySecret`, `SecurityToken`, `Expiration`, `LastUpdated`.
//!
//! Steps 2 and 3 carry `X-aliyun-ecs-metadata-token`. The endpoint is `--metadata-endpoint`
//! / `OSSMOUNT_METADATA_ENDPOINT` when set (tests, private clouds). Timeouts: 2 s to connect,
//! 5 s per request (credentials-go: 1 s and 1 s), so a machine that is not an ECS instance
//! learns it in seconds.

use super::web::{self, Net};
use super::{json_issued, json_object, json_success, CredentialsError, Issued, Provider, System};

pub const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
/// Lifetime asked for the metadata token: 21600 s (6 h), credentials-go's.
pub const TOKEN_TTL_SECONDS: u32 = 21600;
const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

/// The metadata service's address: `explicit`, `OSSMOUNT_METADATA_ENDPOINT`, or the
/// link-local default.
pub fn endpoint(explicit: Option<&str>, sys: &dyn System) -> String {
    explicit
        .map(str::to_string)
        .filter(|e| !e.trim().is_empty())
        .or_else(|| sys.var("OSSMOUNT_METADATA_ENDPOINT"))
        .map(|e| web::base_url(&e, "http"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

pub struct EcsRamRole {
    pub endpoint: String,
    pub role: Option<String>,
    pub imdsv1_disabled: bool,
    client: reqwest::Client,
}

impl EcsRamRole {
    /// `net`: the CA files (a metadata endpoint may be https in a private cloud); never a
    /// proxy.
    pub fn new(endpoint: String, role: Option<String>, sys: &dyn System, net: &Net) -> Self {
        EcsRamRole {
            endpoint,
            role: role.filter(|r| !r.trim().is_empty()),
            imdsv1_disabled: sys
                .var("ALIBABA_CLOUD_IMDSV1_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            client: net.metadata_client(),
        }
    }

    fn what(&self) -> String {
        format!("metadata service {}", self.endpoint)
    }

    async fn token(&self) -> Result<Option<String>, CredentialsError> {
        let url = format!("{}/latest/api/token", self.endpoint);
        let result = self
            .client
            .put(&url)
            .header(
                "X-aliyun-ecs-metadata-token-ttl-seconds",
                TOKEN_TTL_SECONDS.to_string(),
            )
            .send()
            .await;
        let failure = match result {
            Ok(r) if r.status().is_success() => match web::body(r, &self.what()).await {
                Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_string())),
                Ok(_) => "an empty token".to_string(),
                Err(e) => e.to_string(),
            },
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) => {
                // Nothing listens: no point trying without a token.
                if e.is_connect() || e.is_timeout() {
                    return Err(web::transport(&self.what(), e));
                }
                web::transport(&self.what(), e).to_string()
            }
        };
        if self.imdsv1_disabled {
            return Err(CredentialsError::Failed(format!(
                "{}: no metadata token ({failure}) and ALIBABA_CLOUD_IMDSV1_DISABLED=true",
                self.what()
            )));
        }
        tracing::debug!(
            "{}: no metadata token ({failure}); asking without one",
            self.what()
        );
        Ok(None)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let url = format!("{}{path}", self.endpoint);
        let mut req = self.client.get(&url);
        if let Some(t) = token {
            req = req.header("X-aliyun-ecs-metadata-token", t);
        }
        let hint = |status| match status {
            404 if path == CREDENTIALS_PATH => " (no RAM role is attached to this instance)",
            404 => " (no such RAM role on this instance)",
            _ => "",
        };
        web::get_ok(req, &format!("{}: GET {path}", self.what()), hint).await
    }
}

/// The credentials document of step 3.
pub fn parse_credentials(body: &str, what: &str) -> Result<Issued, CredentialsError> {
    let v = json_object(body, what)?;
    json_success(&v, what)?;
    json_issued(&v, "AccessKeySecret", "SecurityToken", what)
}

#[async_trait::async_trait]
impl Provider for EcsRamRole {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let token = self.token().await?;
        let role = match &self.role {
            Some(r) => r.clone(),
            None => {
                let body = self.get(CREDENTIALS_PATH, token.as_deref()).await?;
                match body.lines().map(str::trim).find(|l| !l.is_empty()) {
                    Some(r) => r.to_string(),
                    None => {
                        return Err(CredentialsError::Failed(format!(
                            "{}: no RAM role is attached to this instance",
                            self.what()
                        )))
                    }
                }
            }
        };
        let path = format!(
            "{CREDENTIALS_PATH}{}",
            crate::store::sign_oss::uri_encode(&role, true)
        );
        let body = self.get(&path, token.as_deref()).await?;
        parse_credentials(&body, &format!("{}, role {role:?}", self.what()))
    }

    fn describe(&self) -> String {
        match &self.role {
            Some(r) => format!("ECS RAM role {r:?} ({})", self.what()),
            None => format!("ECS RAM role ({})", self.what()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;

    #[test]
    fn credentials_document() {
        let ok = r#"{"AccessKeyId":"STS.a","AccessKeySecret":"s","Expiration":"2026-12-02T10:00:00Z",
            "SecurityToken":"t","LastUpdated":"2026-12-02T04:00:00Z","Code":"Success"}"#;
        let i = parse_credentials(ok, "m").unwrap();
        assert_eq!(i.credentials.access_key_id, "STS.a");
        assert!(i.expires.is_some());
        let e = parse_credentials(r#"{"Code":"Failed"}"#, "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not \"Success\""), "{e}");
        let e = parse_credentials("<html>", "m").unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }

    #[test]
    fn endpoint_override() {
        assert_eq!(endpoint(None, &FakeSystem::default()), DEFAULT_ENDPOINT);
        let sys = FakeSystem::with_vars(&[("OSSMOUNT_METADATA_ENDPOINT", "127.0.0.1:8")]);
        assert_eq!(endpoint(None, &sys), "http://127.0.0.1:8");
        assert_eq!(endpoint(Some("http://h:1/"), &sys), "http://h:1");
    }
}
