//! Alibaba Cloud STS: `AssumeRole` (a key pair assuming a RAM role, signed with
//! [`super::rpc_sign`]) and `AssumeRoleWithOIDC` (RRSA on ACK: a Kubernetes service-account
//! token exchanged for a role's credentials, unsigned).
//!
//! Wire format as credentials-go sends it (`providers/ram_role_arn.go`, `providers/oidc.go`):
//! `POST https://<endpoint>/?Action=...&Version=2015-04-01&Format=JSON&Timestamp=...` with
//! the role parameters in an `application/x-www-form-urlencoded` body; the answer is JSON
//! `{"RequestId", "Credentials": {"AccessKeyId", "AccessKeySecret", "SecurityToken",
//! "Expiration"}, "AssumedRoleUser": {...}}`, or `{"Code", "Message", "RequestId"}` on error.
//!
//! The endpoint ([`endpoint`]): `--sts-endpoint` / `OSSMOUNT_STS_ENDPOINT`, else
//! `sts[-vpc].<region>.aliyuncs.com` from the profile's `sts_region` or
//! `ALIBABA_CLOUD_STS_REGION` (`-vpc` with `enable_vpc` or
//! `ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED=true`), else `sts.aliyuncs.com`; https unless the
//! URL says otherwise.
//!
//! The OIDC token file is read again at every call: Kubernetes rotates the projected token
//! (ACK: lifetime 3600 s), and a token read once at start would be refused after an hour.

use std::path::PathBuf;
use std::sync::Arc;

use rand::Rng;

use super::rpc_sign::{encode_pairs, signature};
use super::web::{self, Net};
use super::{json_issued, json_object, CredentialsError, Issued, Provider, System};
use crate::store::Credentials;

/// STS API version of both actions.
pub const VERSION: &str = "2015-04-01";
/// Requested lifetime: 3600 s, the SDKs' default (STS accepts 900 up to the role's maximum).
pub const DEFAULT_DURATION_SECONDS: u64 = 3600;

/// Where STS requests go; see the module doc.
pub fn endpoint(
    explicit: Option<&str>,
    region: Option<&str>,
    vpc: bool,
    sys: &dyn System,
) -> String {
    if let Some(e) = explicit.filter(|e| !e.trim().is_empty()) {
        return web::base_url(e, "https");
    }
    if let Some(e) = sys.var("OSSMOUNT_STS_ENDPOINT") {
        return web::base_url(&e, "https");
    }
    let vpc = vpc
        || sys
            .var("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let prefix = if vpc { "sts-vpc" } else { "sts" };
    let region = region
        .map(str::to_string)
        .filter(|r| !r.trim().is_empty())
        .or_else(|| sys.var("ALIBABA_CLOUD_STS_REGION"));
    match region {
        Some(r) => format!("https://{prefix}.{}.aliyuncs.com", r.trim()),
        None => "https://sts.aliyuncs.com".to_string(),
    }
}

/// Decoded `(name, value)` parameters.
pub type Params = Vec<(String, String)>;

/// The role and session a request asks for.
#[derive(Clone, Debug)]
pub struct Role {
    pub role_arn: String,
    pub session_name: String,
    pub duration_seconds: u64,
    pub policy: Option<String>,
    pub external_id: Option<String>,
}

impl Role {
    pub fn new(role_arn: &str, session_name: Option<String>, sys: &dyn System) -> Self {
        let session_name = session_name
            .filter(|s| !s.trim().is_empty())
            .or_else(|| sys.var("ALIBABA_CLOUD_ROLE_SESSION_NAME"))
            .unwrap_or_else(|| {
                let secs = sys
                    .now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                format!("ossmount-{secs}")
            });
        Role {
            role_arn: role_arn.trim().to_string(),
            session_name,
            duration_seconds: DEFAULT_DURATION_SECONDS,
            policy: None,
            external_id: None,
        }
    }

    fn form(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("RoleArn".to_string(), self.role_arn.clone()),
            ("RoleSessionName".to_string(), self.session_name.clone()),
            (
                "DurationSeconds".to_string(),
                self.duration_seconds.to_string(),
            ),
        ];
        if let Some(p) = &self.policy {
            f.push(("Policy".into(), p.clone()));
        }
        if let Some(e) = &self.external_id {
            f.push(("ExternalId".into(), e.clone()));
        }
        f
    }
}

fn timestamp(sys: &dyn System) -> String {
    chrono::DateTime::<chrono::Utc>::from(sys.now())
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// POST one STS call and read its credentials.
async fn call(
    client: &reqwest::Client,
    endpoint: &str,
    query: &[(String, String)],
    form: &[(String, String)],
    what: &str,
) -> Result<Issued, CredentialsError> {
    let url = format!("{endpoint}/?{}", encode_pairs(query));
    let what = format!("{what} at {endpoint}");
    let (status, body) =
        web::post_form(client, &url, Vec::new(), encode_pairs(form), &what).await?;
    parse_reply(status, &body, &what)
}

/// An STS answer as credentials, or its error code and message.
pub fn parse_reply(status: u16, body: &str, what: &str) -> Result<Issued, CredentialsError> {
    if !(200..300).contains(&status) {
        let detail = match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) if v.get("Code").is_some() => format!(
                "{}: {}",
                v["Code"].as_str().unwrap_or("?"),
                v.get("Message").and_then(|m| m.as_str()).unwrap_or("")
            ),
            _ => web::snippet(body, 200),
        };
        return Err(CredentialsError::Failed(format!(
            "{what}: HTTP {status}: {detail}"
        )));
    }
    let v = json_object(body, what)?;
    let Some(c) = v.get("Credentials") else {
        return Err(CredentialsError::Failed(format!(
            "{what}: the answer has no Credentials"
        )));
    };
    json_issued(c, "AccessKeySecret", "SecurityToken", what)
}

/// `AssumeRole` with the credentials of another provider (a key pair from a file, or any
/// source in a chained profile).
pub struct AssumeRole {
    pub source: Arc<dyn Provider>,
    pub role: Role,
    pub endpoint: String,
    pub sys: Arc<dyn System>,
    client: reqwest::Client,
}

impl AssumeRole {
    pub fn new(
        source: Arc<dyn Provider>,
        role: Role,
        endpoint: String,
        sys: Arc<dyn System>,
        net: &Net,
    ) -> Self {
        AssumeRole {
            source,
            role,
            endpoint,
            sys,
            client: net.sts_client(),
        }
    }

    /// Query parameters and form of one signed call with `creds`, `Signature` included.
    pub fn signed_request(&self, creds: &Credentials, nonce: &str) -> (Params, Params) {
        let mut query: Vec<(String, String)> = [
            ("Action", "AssumeRole"),
            ("Version", VERSION),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        query.push(("Timestamp".into(), timestamp(&*self.sys)));
        query.push(("SignatureNonce".into(), nonce.to_string()));
        query.push(("AccessKeyId".into(), creds.access_key_id.clone()));
        if let Some(t) = &creds.session_token {
            query.push(("SecurityToken".into(), t.clone()));
        }
        let form = self.role.form();
        let mut all = query.clone();
        all.extend(form.iter().cloned());
        let sig = signature("POST", &all, &creds.access_key_secret);
        query.push(("Signature".into(), sig));
        (query, form)
    }
}

#[async_trait::async_trait]
impl Provider for AssumeRole {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let source = self.source.fetch().await?;
        let nonce = format!("{:032x}", rand::thread_rng().gen::<u128>());
        let (query, form) = self.signed_request(&source.credentials, &nonce);
        call(
            &self.client,
            &self.endpoint,
            &query,
            &form,
            &format!("STS AssumeRole {}", self.role.role_arn),
        )
        .await
    }

    fn describe(&self) -> String {
        format!(
            "RAM role {} assumed with {} (STS {})",
            self.role.role_arn,
            self.source.describe(),
            self.endpoint
        )
    }
}

/// `AssumeRoleWithOIDC` (RRSA).
pub struct AssumeRoleWithOidc {
    pub role: Role,
    pub provider_arn: String,
    pub token_file: PathBuf,
    pub endpoint: String,
    pub sys: Arc<dyn System>,
    client: reqwest::Client,
}

impl AssumeRoleWithOidc {
    pub fn new(
        role: Role,
        provider_arn: String,
        token_file: PathBuf,
        endpoint: String,
        sys: Arc<dyn System>,
        net: &Net,
    ) -> Self {
        AssumeRoleWithOidc {
            role,
            provider_arn,
            token_file,
            endpoint,
            sys,
            client: net.sts_client(),
        }
    }

    /// Query and form of one call, the token file read now.
    pub fn request(&self) -> Result<(Params, Params), CredentialsError> {
        let token = self.sys.read_file(&self.token_file).map_err(|e| {
            CredentialsError::Failed(format!(
                "cannot read the OIDC token file {} (ALIBABA_CLOUD_OIDC_TOKEN_FILE): {e}",
                self.token_file.display()
            ))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(CredentialsError::Failed(format!(
                "the OIDC token file {} is empty",
                self.token_file.display()
            )));
        }
        let query = vec![
            ("Action".to_string(), "AssumeRoleWithOIDC".to_string()),
            ("Version".to_string(), VERSION.to_string()),
            ("Format".to_string(), "JSON".to_string()),
            ("Timestamp".to_string(), timestamp(&*self.sys)),
        ];
        let mut form = self.role.form();
        form.push(("OIDCProviderArn".into(), self.provider_arn.clone()));
        form.push(("OIDCToken".into(), token.to_string()));
        Ok((query, form))
    }
}

#[async_trait::async_trait]
impl Provider for AssumeRoleWithOidc {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let (query, form) = self.request()?;
        call(
            &self.client,
            &self.endpoint,
            &query,
            &form,
            &format!("STS AssumeRoleWithOIDC {}", self.role.role_arn),
        )
        .await
    }

    fn describe(&self) -> String {
        format!(
            "RRSA/OIDC: role {} with the token in {} (STS {})",
            self.role.role_arn,
            self.token_file.display(),
            self.endpoint
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::parse_time;
    use crate::store::credentials::rpc_sign::string_to_sign;
    use crate::store::credentials::system::FakeSystem;
    use crate::store::credentials::Fixed;

    #[test]
    fn endpoint_rules() {
        let none = FakeSystem::default();
        assert_eq!(
            endpoint(None, None, false, &none),
            "https://sts.aliyuncs.com"
        );
        assert_eq!(
            endpoint(None, Some("cn-beijing"), false, &none),
            "https://sts.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            endpoint(None, Some("cn-beijing"), true, &none),
            "https://sts-vpc.cn-beijing.aliyuncs.com"
        );
        let env = FakeSystem::with_vars(&[
            ("ALIBABA_CLOUD_STS_REGION", "cn-shanghai"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "TRUE"),
        ]);
        assert_eq!(
            endpoint(None, None, false, &env),
            "https://sts-vpc.cn-shanghai.aliyuncs.com"
        );
        let ours = FakeSystem::with_vars(&[("OSSMOUNT_STS_ENDPOINT", "http://127.0.0.1:9/")]);
        assert_eq!(endpoint(None, None, false, &ours), "http://127.0.0.1:9");
        assert_eq!(
            endpoint(Some("sts.example.com"), None, false, &ours),
            "https://sts.example.com"
        );
    }

    #[test]
    fn assume_role_is_signed_over_query_and_form() {
        let sys: Arc<dyn System> = Arc::new(FakeSystem::default());
        let creds = Credentials {
            access_key_id: "testid".into(),
            access_key_secret: "testsecret".into(),
            session_token: None,
        };
        let mut role = Role::new("acs:ram::1:role/r", Some("s".into()), &*sys);
        role.policy = Some("{\"Statement\": []}".into());
        let p = AssumeRole::new(
            Arc::new(Fixed {
                issued: Issued::fixed(creds.clone()),
                source: "x".into(),
            }),
            role,
            "http://x".into(),
            sys,
            &Net::default(),
        );
        let (query, form) = p.signed_request(&creds, "nonce");
        let sig = query
            .iter()
            .find(|(k, _)| k == "Signature")
            .unwrap()
            .1
            .clone();
        let mut all: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "Signature")
            .cloned()
            .collect();
        all.extend(form.iter().cloned());
        assert!(string_to_sign("POST", &all).contains("Policy%3D%257B%2522Statement"));
        assert_eq!(sig, signature("POST", &all, "testsecret"));
        for k in [
            "AccessKeyId",
            "SignatureNonce",
            "Timestamp",
            "SignatureMethod",
        ] {
            assert!(query.iter().any(|(n, _)| n == k), "{k}");
        }
        assert!(form
            .iter()
            .any(|(k, v)| k == "DurationSeconds" && v == "3600"));
    }

    #[test]
    fn replies() {
        let ok = r#"{"RequestId":"r","AssumedRoleUser":{"Arn":"a","AssumedRoleId":"i"},
            "Credentials":{"SecurityToken":"tok","AccessKeyId":"STS.id","AccessKeySecret":"sec",
            "Expiration":"2026-12-02T10:00:00Z"}}"#;
        let i = parse_reply(200, ok, "t").unwrap();
        assert_eq!(i.credentials.session_token.as_deref(), Some("tok"));
        assert_eq!(i.expires, parse_time("2026-12-02T10:00:00Z"));
        let e = parse_reply(
            400,
            r#"{"RequestId":"r","Code":"InvalidParameter.OIDCToken","Message":"expired"}"#,
            "t",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("InvalidParameter.OIDCToken: expired"),
            "{e}"
        );
        let e = parse_reply(200, "{oops", "t").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }

    #[test]
    fn oidc_token_is_read_at_each_call() {
        let sys = Arc::new(FakeSystem::default().file("/t", "one\n"));
        let p = AssumeRoleWithOidc::new(
            Role::new("arn", None, &*sys),
            "parn".into(),
            "/t".into(),
            "http://x".into(),
            sys.clone(),
            &Net::default(),
        );
        let token = |p: &AssumeRoleWithOidc| {
            p.request()
                .unwrap()
                .1
                .into_iter()
                .find(|(k, _)| k == "OIDCToken")
                .unwrap()
                .1
        };
        assert_eq!(token(&p), "one");
        sys.files.lock().insert("/t".into(), "two".into());
        assert_eq!(token(&p), "two");
        sys.files.lock().clear();
        let e = p.request().unwrap_err().to_string();
        assert!(e.contains("cannot read the OIDC token file /t"), "{e}");
    }
}
