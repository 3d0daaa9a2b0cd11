//! A credentials URI: `ALIBABA_CLOUD_CREDENTIALS_URI`, a URL that answers temporary
//! credentials (a sidecar or an agent on the host hands them out), as credentials-go's
//! `URLCredentialsProvider` (`providers/uri.go`) and the Python library's
//! (`provider/uri.py`) ask it:
//!
//! `GET <uri>` -> 200 and JSON `{"Code": "Success", "AccessKeyId", "AccessKeySecret",
//! "SecurityToken", "Expiration": "2006-01-02T15:04:05Z"}` (the ECS metadata service's
//! document). All four credential fields are required; `Code`, when present, must be
//! `Success` (the Python library requires it, credentials-go ignores it, so we accept
//! both). Anything else is an error naming the URI without its query, which may carry a
//! secret.
//!
//! Timeouts: 5 s to connect, 15 s per request (the SDKs: 5 s and 10 s). Proxies as the SDKs
//! (Go's net/http) apply them: from the environment, but never for a loopback or
//! link-local URI ([`super::web`]). Refreshed like every temporary source
//! ([`super::holder`]).

use std::time::Duration;

use super::web::{self, Net};
use super::{json_issued, json_object, json_success, CredentialsError, Issued, Provider};

/// The variable the SDKs read.
pub const VAR: &str = "ALIBABA_CLOUD_CREDENTIALS_URI";

pub struct CredentialsUri {
    /// The URI as given (used for requests).
    uri: String,
    /// The URI without query or user info (shown in messages).
    shown: String,
    client: reqwest::Client,
}

impl CredentialsUri {
    pub fn new(uri: &str, net: &Net) -> Result<Self, CredentialsError> {
        let uri = uri.trim().to_string();
        let parsed = reqwest::Url::parse(&uri).map_err(|e| {
            CredentialsError::Failed(format!("{VAR} is not a URL ({e}): expected http(s)://..."))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CredentialsError::Failed(format!(
                "{VAR}: scheme {:?} is not http or https",
                parsed.scheme()
            )));
        }
        let mut shown = parsed.clone();
        shown.set_query(None);
        let _ = shown.set_password(None);
        let _ = shown.set_username("");
        let direct = web::is_local(&uri);
        Ok(CredentialsUri {
            client: net.client(Duration::from_secs(5), Duration::from_secs(15), direct),
            uri,
            shown: shown.to_string(),
        })
    }

    fn what(&self) -> String {
        format!("credentials URI {}", self.shown)
    }
}

/// The document a credentials URI answers.
pub fn parse(body: &str, what: &str) -> Result<Issued, CredentialsError> {
    let v = json_object(body, what)?;
    if v.get("Code").is_some() {
        json_success(&v, what)?;
    }
    json_issued(&v, "AccessKeySecret", "SecurityToken", what)
}

#[async_trait::async_trait]
impl Provider for CredentialsUri {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let body = web::get_ok(self.client.get(&self.uri), &self.what(), |_| "").await?;
        parse(&body, &self.what())
    }

    fn describe(&self) -> String {
        format!("{VAR} ({})", self.what())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::parse_time;

    #[test]
    fn documents() {
        let go = r#"{"AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t",
            "Expiration":"2026-12-02T10:00:00Z"}"#;
        let i = parse(go, "u").unwrap();
        assert_eq!(i.credentials.session_token.as_deref(), Some("t"));
        assert_eq!(i.expires, parse_time("2026-12-02T10:00:00Z"));
        let py = r#"{"Code":"Success","AccessKeyId":"STS.a","AccessKeySecret":"s",
            "SecurityToken":"t","Expiration":"2026-12-02T10:00:00Z"}"#;
        assert!(parse(py, "u").is_ok());
        let e = parse(
            r#"{"Code":"Forbidden","AccessKeyId":"a","AccessKeySecret":"SECRET-1",
            "SecurityToken":"t","Expiration":"2026-12-02T10:00:00Z"}"#,
            "u",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"Forbidden\"") && !e.contains("SECRET"), "{e}");
        let e = parse(
            r#"{"AccessKeyId":"a","AccessKeySecret":"s","Expiration":"2026-12-02T10:00:00Z"}"#,
            "u",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("SecurityToken is missing"), "{e}");
        let e = parse(r#"{"AccessKeySecret": "SECRET-2""#, "u")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid JSON") && !e.contains("SECRET"), "{e}");
    }

    #[test]
    fn the_uri_is_checked_and_shown_without_its_query() {
        let net = Net::default();
        let p = CredentialsUri::new("http://user:pw@127.0.0.1:9/c?token=SECRET-3", &net).unwrap();
        assert_eq!(p.what(), "credentials URI http://127.0.0.1:9/c");
        assert!(!p.describe().contains("SECRET") && !p.describe().contains("pw"));
        let e = CredentialsUri::new("127.0.0.1:9/c", &net)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(VAR), "{e}");
        let e = CredentialsUri::new("file:///etc/passwd", &net)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not http or https"), "{e}");
    }
}
