//! Where the keys a store signs with come from, and how they stay valid for a mount that
//! lives for weeks.
//!
//! # The chain
//!
//! [`chain::resolve`] picks one source; the first that yields wins (docs/credentials.md has
//! the table). For `oss://`:
//!
//! 1. an explicit choice: `--credential-process CMD`, `--ram-role NAME`, or `--profile NAME`
//!    / `ALIBABA_CLOUD_PROFILE` (a profile of the files in 4). An explicit source that fails
//!    is an error, never a fall-through to something the user did not ask for;
//! 2. the environment: `OSS_ACCESS_KEY_ID` / `OSS_ACCESS_KEY_SECRET` / `OSS_SESSION_TOKEN`,
//!    then `ALIBABA_CLOUD_ACCESS_KEY_ID` / `..._SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN`;
//! 3. RRSA: `ALIBABA_CLOUD_ROLE_ARN` + `ALIBABA_CLOUD_OIDC_PROVIDER_ARN` +
//!    `ALIBABA_CLOUD_OIDC_TOKEN_FILE` -> STS `AssumeRoleWithOIDC` ([`sts`]);
//! 4. files, in credentials-go's order: the aliyun CLI's `~/.aliyun/config.json`
//!    (`ALIBABA_CLOUD_CONFIG_FILE`, its `current` profile), then `~/.alibabacloud/credentials`
//!    (`ALIBABA_CLOUD_CREDENTIALS_FILE`, profile `default`) ([`files`]); their profiles may
//!    name any source below;
//! 5. (`ram_role_arn` profiles: a key pair assuming a role with STS `AssumeRole`, signed by
//!    [`rpc_sign`]);
//! 6. the ECS instance RAM role from the metadata service ([`ecs`]), unless
//!    `ALIBABA_CLOUD_ECS_METADATA_DISABLED=true`;
//! 7. a credentials URI, `ALIBABA_CLOUD_CREDENTIALS_URI` ([`uri`]), after the ECS RAM role
//!    as in credentials-go's and the Python library's default chains (credential
//!    processes come from `--credential-process` or a CLI `External` profile, [`process`]);
//! 8. nothing: a one-line error naming everything tried (`--no-sign-request` is the only
//!    way to anonymous requests).
//!
//! `s3://` follows botocore: the `AWS_*` keys, a `role_arn` + `source_profile` profile
//! ([`aws_sts`] `AssumeRole`), web identity ([`aws_sts`] `AssumeRoleWithWebIdentity`),
//! the profile's static keys or `credential_process`, the container endpoint
//! ([`container`]), the EC2 instance profile ([`imds`]); the variables of one family
//! never sign the other's requests.
//!
//! # Refresh
//!
//! The store's signers read [`CredentialHolder::current`]: an `Arc` clone under a lock held
//! for nanoseconds, never across an await, never a network call. Temporary credentials are
//! replaced by a background thread ([`holder`]) with its own small runtime, so refreshing
//! never competes with reads and works the same for every command.
//!
//! Rule: refresh once the remaining lifetime is at most
//! `max(lifetime / 5, min(180 s, lifetime / 2))`, where lifetime is expiry minus fetch
//! time. The OSS Go SDK v2 refreshes at one fifth of the lifetime left; credentials-go
//! (and the Python library) at 180 s left. One fifth gives 12 minutes of slack for the
//! usual one-hour STS token (time to ride out an STS or metadata-service outage of several
//! minutes, retrying); the 180 s floor keeps the SDKs' margin for short tokens, capped at
//! half the lifetime so a 20 s test token is refreshed every 10 s rather than constantly.
//!
//! A failed refresh keeps the current credentials (still valid until their expiry),
//! logs one warning per failed attempt and retries after 1, 2, 4 ... 30 s. Once they have
//! expired one error line says so; requests are refused by the store until a refresh
//! succeeds, which is logged too. A request refused because its token expired or was
//! revoked (OSS `SecurityTokenExpired`, `InvalidAccessKeyId` with a token, S3
//! `ExpiredToken`/`InvalidToken`) asks for one immediate refresh and is retried once
//! ([`super::retry`]).
//!
//! # Secrets
//!
//! Secrets and tokens never reach logs, errors or `Debug` output: [`super::Credentials`]
//! redacts them, errors name sources, files and key ids (at most their last four
//! characters), never values, and the JSON of services and processes is parsed field by
//! field so a parser error cannot quote a secret.
//!
//! Everything outside the process (environment, files, clock) is reached through
//! [`System`], so unit tests never touch the process environment.

pub mod aws_sts;
pub mod chain;
pub mod container;
pub mod ecs;
pub mod env;
pub mod files;
pub mod holder;
pub mod imds;
pub mod process;
pub mod rpc_sign;
pub mod sts;
pub mod system;
pub mod uri;
pub mod web;

use std::fmt;
use std::time::SystemTime;

pub use chain::{resolve, ChainOptions};
pub use holder::{CredentialHolder, RefreshPolicy};
pub use system::{RealSystem, System};

use super::Credentials;

/// Reads one environment variable: `|name| std::env::var(name).ok()` outside tests.
pub type Env<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Credentials as one source handed them out, with their expiry if they are temporary.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub credentials: Credentials,
    /// `None`: long-lived (never refreshed).
    pub expires: Option<SystemTime>,
}

impl Issued {
    pub fn fixed(credentials: Credentials) -> Self {
        Issued {
            credentials,
            expires: None,
        }
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("key_id", &key_id_tail(&self.credentials.access_key_id))
            .field("expires", &self.expires.map(format_time))
            .finish()
    }
}

/// `...WXYZ`: the last four characters of a key id, as much as logs and `auth check` show.
pub fn key_id_tail(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("...{tail}")
}

/// `2026-12-02T10:00:00Z`.
pub fn format_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Parse the expiry formats the services and processes use: `2006-01-02T15:04:05Z` (STS,
/// the metadata service), with fractional seconds or an offset (RFC 3339, processes).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc).into());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|n| n.and_utc().into())
}

/// Why a source gave no credentials. The message never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The source is not set up here (variables unset, no file): the chain moves on.
    #[error("{0}")]
    NotConfigured(String),
    /// The source is set up and failed: the message says how.
    #[error("{0}")]
    Failed(String),
}

/// A source of credentials: asked once at start and again at each refresh.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    async fn fetch(&self) -> Result<Issued, CredentialsError>;
    /// What `auth check` and `--debug` print: the source and where it reads from.
    fn describe(&self) -> String;
}

/// A provider that always hands out the same long-lived keys.
pub struct Fixed {
    pub issued: Issued,
    pub source: String,
}

#[async_trait::async_trait]
impl Provider for Fixed {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        Ok(self.issued.clone())
    }

    fn describe(&self) -> String {
        self.source.clone()
    }
}

/// The value of a JSON string field, or a message naming the field (never its value).
pub(crate) fn json_str(
    v: &serde_json::Value,
    field: &str,
    what: &str,
) -> Result<String, CredentialsError> {
    match v.get(field) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(serde_json::Value::String(_)) => Err(CredentialsError::Failed(format!(
            "{what}: field {field} is empty"
        ))),
        Some(_) => Err(CredentialsError::Failed(format!(
            "{what}: field {field} is not a string"
        ))),
        None => Err(CredentialsError::Failed(format!(
            "{what}: field {field} is missing"
        ))),
    }
}

/// A temporary key from the fields of a credentials document: `AccessKeyId`, the secret
/// and token fields (`AccessKeySecret`/`SecurityToken` at Alibaba Cloud,
/// `SecretAccessKey`/`Token` at AWS) and `Expiration`.
pub(crate) fn json_issued(
    v: &serde_json::Value,
    secret_field: &str,
    token_field: &str,
    what: &str,
) -> Result<Issued, CredentialsError> {
    let expiration = json_str(v, "Expiration", what)?;
    let expires = parse_time(&expiration).ok_or_else(|| {
        CredentialsError::Failed(format!(
            "{what}: Expiration {expiration:?} is not a time like 2006-01-02T15:04:05Z"
        ))
    })?;
    Ok(Issued {
        credentials: Credentials {
            access_key_id: json_str(v, "AccessKeyId", what)?,
            access_key_secret: json_str(v, secret_field, what)?,
            session_token: Some(json_str(v, token_field, what)?),
        },
        expires: Some(expires),
    })
}

/// The metadata services' `"Code": "Success"`, or a message naming the code.
pub(crate) fn json_success(v: &serde_json::Value, what: &str) -> Result<(), CredentialsError> {
    let code = json_str(v, "Code", what)?;
    if code != "Success" {
        return Err(CredentialsError::Failed(format!(
            "{what}: Code is {code:?}, not \"Success\""
        )));
    }
    Ok(())
}

/// Parse `text` as a JSON object without ever quoting it in the error.
pub(crate) fn json_object(text: &str, what: &str) -> Result<serde_json::Value, CredentialsError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(CredentialsError::Failed(format!(
            "{what}: expected a JSON object"
        ))),
        Err(e) => Err(CredentialsError::Failed(format!(
            "{what}: not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_hold_no_secret() {
        let issued = Issued {
            credentials: Credentials {
                access_key_id: "STS.NUgYrLnoC37mZZCNnAbez2".into(),
                access_key_secret: "SECRET-VALUE-123".into(),
                session_token: Some("TOKEN-VALUE-456".into()),
            },
            expires: parse_time("2026-12-02T10:00:00Z"),
        };
        let text = format!("{issued:?} {:?}", issued.credentials);
        assert!(
            !text.contains("SECRET-VALUE") && !text.contains("TOKEN-VALUE"),
            "{text}"
        );
        assert!(
            !format!("{issued:?}").contains("NUgYrLnoC37mZZCNnAbez2"),
            "{text}"
        );
        assert!(
            text.contains("...bez2") && text.contains("2026-12-02T10:00:00Z"),
            "{text}"
        );
        // A JSON document with a secret in a wrong place: the error names the field only.
        let v = json_object(r#"{"AccessKeyId":"a","AccessKeySecret":12345678}"#, "x").unwrap();
        let e = json_str(&v, "AccessKeySecret", "x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("12345678"), "{e}");
        let e = json_object(r#"{"AccessKeySecret":"SECRET-VALUE-123""#, "x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn time_formats() {
        let t = parse_time("2026-12-02T10:00:00Z").unwrap();
        assert_eq!(format_time(t), "2026-12-02T10:00:00Z");
        assert_eq!(parse_time("2026-12-02T10:00:00.000Z"), Some(t));
        assert_eq!(parse_time("2026-12-02T18:00:00+08:00"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(key_id_tail("ab"), "...ab");
    }
}
