//! ECS task roles and EKS Pod Identity: temporary credentials from the container
//! credentials endpoint, as botocore's `ContainerProvider` fetches them.
//!
//! - `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (set by ECS): `http://169.254.170.2` + the
//!   path; or `AWS_CONTAINER_CREDENTIALS_FULL_URI` (EKS Pod Identity, Greengrass, tests),
//!   which must be https or a loopback / link-local container host, so a variable pointing
//!   at some other plain-http host cannot make us send the authorization token there
//!   (botocore's rule);
//! - the `Authorization` header is the contents of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`
//!   (read again at each refresh: EKS rotates it) or `AWS_CONTAINER_AUTHORIZATION_TOKEN`;
//! - `GET` answers JSON `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration",
//!   "RoleArn"}`.
//!
//! Timeouts: 2 s to connect, 5 s per request (botocore: 2 s), body capped at 64 KiB.

use super::web::{self, Net};
use super::{json_issued, json_object, CredentialsError, Issued, Provider, System};
use std::path::PathBuf;
use std::sync::Arc;

pub const ECS_HOST: &str = "http://169.254.170.2";
/// Plain-http hosts a full URI may name (botocore's list), besides loopback addresses.
const ALLOWED_HOSTS: &[&str] = &[
    "169.254.170.2",
    "169.254.170.23",
    "[fd00:ec2::23]",
    "localhost",
];

/// Where the token in the `Authorization` header comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthToken {
    None,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`, read at each fetch.
    File(PathBuf),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN` (the value is never shown).
    Value(String),
}

pub struct ContainerCredentials {
    pub url: String,
    pub token: AuthToken,
    pub sys: Arc<dyn System>,
    client: reqwest::Client,
}

/// The container endpoint from the environment: `Ok(None)` when neither variable is set.
/// `net`: the CA files (an https full URI); never a proxy (the endpoint is the task's or
/// node's own agent).
pub fn from_env(
    sys: Arc<dyn System>,
    net: &Net,
) -> Result<Option<ContainerCredentials>, CredentialsError> {
    let url = if let Some(rel) = sys.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        let rel = rel.trim();
        let sep = if rel.starts_with('/') { "" } else { "/" };
        format!("{ECS_HOST}{sep}{rel}")
    } else if let Some(full) = sys.var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let full = full.trim().to_string();
        check_full_uri(&full)?;
        full
    } else {
        return Ok(None);
    };
    let token = if let Some(f) = sys.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        AuthToken::File(PathBuf::from(f))
    } else if let Some(v) = sys.var("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
        AuthToken::Value(v)
    } else {
        AuthToken::None
    };
    Ok(Some(ContainerCredentials {
        url,
        token,
        sys,
        client: net.metadata_client(),
    }))
}

fn check_full_uri(full: &str) -> Result<(), CredentialsError> {
    let bad = |why: &str| {
        CredentialsError::Failed(format!("AWS_CONTAINER_CREDENTIALS_FULL_URI {full}: {why}"))
    };
    let url = reqwest::Url::parse(full).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "https" => return Ok(()),
        "http" => {}
        other => return Err(bad(&format!("scheme {other} (http or https)"))),
    }
    let host = url.host_str().unwrap_or("");
    let loopback = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if loopback || ALLOWED_HOSTS.contains(&host) {
        Ok(())
    } else {
        Err(bad(&format!(
            "plain http only to a loopback address or {} (else use https)",
            ALLOWED_HOSTS.join(", ")
        )))
    }
}

/// The credentials document of the container endpoint and of IMDS: `AccessKeyId`,
/// `SecretAccessKey`, `Token`, `Expiration`.
pub fn parse_document(body: &str, what: &str) -> Result<Issued, CredentialsError> {
    json_issued(&json_object(body, what)?, "SecretAccessKey", "Token", what)
}

impl ContainerCredentials {
    fn what(&self) -> String {
        format!("container credentials endpoint {}", self.url)
    }

    /// The `Authorization` value for this fetch.
    pub fn authorization(&self) -> Result<Option<String>, CredentialsError> {
        let value = match &self.token {
            AuthToken::None => return Ok(None),
            AuthToken::Value(v) => v.clone(),
            AuthToken::File(p) => self.sys.read_file(p).map_err(|e| {
                CredentialsError::Failed(format!(
                    "cannot read the container authorization token file {} \
                     (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE): {e}",
                    p.display()
                ))
            })?,
        };
        // botocore refuses a token with a line break; a file's trailing newline is trimmed.
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.contains(['\n', '\r']) || value.trim().is_empty() {
            return Err(CredentialsError::Failed(
                "the container authorization token is empty or has a line break".into(),
            ));
        }
        Ok(Some(value))
    }
}

#[async_trait::async_trait]
impl Provider for ContainerCredentials {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let mut req = self
            .client
            .get(&self.url)
            .header("accept", "application/json");
        if let Some(a) = self.authorization()? {
            req = req.header("authorization", a);
        }
        let hint = |status| match status {
            401 | 403 => " (the authorization token was refused)",
            _ => "",
        };
        let body = web::get_ok(req, &self.what(), hint).await?;
        parse_document(&body, &self.what())
    }

    fn describe(&self) -> String {
        format!("container credentials ({})", self.what())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<ContainerCredentials>, String> {
        from_env(Arc::new(FakeSystem::with_vars(pairs)), &Net::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn urls_and_tokens() {
        assert!(env(&[]).unwrap().is_none());
        let c = env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc",
            ),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/x"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.url, "http://169.254.170.2/v2/credentials/abc");
        assert_eq!(c.token, AuthToken::None);
        for ok in [
            "http://127.0.0.1:8/creds",
            "http://[::1]:8/",
            "http://169.254.170.23/v1/credentials",
            "https://example.com/creds",
        ] {
            env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", ok)])
                .unwrap()
                .unwrap();
        }
        let e = env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://example.com/")])
            .err()
            .unwrap();
        assert!(e.contains("plain http only to a loopback"), "{e}");
        let c = env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:8/"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "v"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/t"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.token, AuthToken::File("/t".into()));
        let e = c.authorization().unwrap_err().to_string();
        assert!(
            e.contains("cannot read the container authorization token file /t"),
            "{e}"
        );
    }

    #[test]
    fn token_file_is_read_at_each_fetch() {
        let sys = Arc::new(
            FakeSystem::with_vars(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:8/"),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/t"),
            ])
            .file("/t", "one\n"),
        );
        let c = from_env(sys.clone(), &Net::default()).unwrap().unwrap();
        assert_eq!(c.authorization().unwrap().as_deref(), Some("one"));
        sys.files.lock().insert("/t".into(), "two".into());
        assert_eq!(c.authorization().unwrap().as_deref(), Some("two"));
        sys.files.lock().insert("/t".into(), "a\nb".into());
        assert!(c.authorization().is_err());
    }

    #[test]
    fn documents() {
        let ok = r#"{"AccessKeyId":"ASIA1","SecretAccessKey":"SECRET-1","Token":"TOKEN-1",
            "Expiration":"2026-12-02T10:00:00Z","RoleArn":"arn:aws:iam::1:role/r"}"#;
        let i = parse_document(ok, "c").unwrap();
        assert_eq!(i.credentials.access_key_id, "ASIA1");
        assert_eq!(i.credentials.session_token.as_deref(), Some("TOKEN-1"));
        let e = parse_document(r#"{"AccessKeyId":"a","SecretAccessKey":"SECRET-1"}"#, "c")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Expiration is missing") && !e.contains("SECRET"),
            "{e}"
        );
        let e = parse_document("{\"AccessKeyId\": ", "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON"), "{e}");
    }
}
