//! AWS STS for `s3://`: `AssumeRoleWithWebIdentity` (EKS IRSA and any OIDC provider: a
//! token file exchanged for a role's credentials, unsigned) and `AssumeRole` (a
//! `role_arn` + `source_profile` profile: the source profile's keys assume a role, the
//! call signed with SigV4 for service `sts` by [`crate::store::sign_s3`]).
//!
//! Wire format as botocore sends it (the query protocol, API version 2011-06-15):
//! `POST /` with an `application/x-www-form-urlencoded` body `Action=...&Version=2011-06-15
//! &RoleArn=...&RoleSessionName=...` (plus `WebIdentityToken`, or `ExternalId` /
//! `DurationSeconds`); the answer is XML
//! `<ActionResponse><ActionResult><Credentials><AccessKeyId/><SecretAccessKey/>
//! <SessionToken/><Expiration/></Credentials>...`, or `<ErrorResponse><Error><Code/>
//! <Message/></Error>` on error.
//!
//! The endpoint ([`endpoint`]): `--sts-endpoint` / `OSSMOUNT_STS_ENDPOINT`, then the SDKs'
//! `AWS_ENDPOINT_URL_STS` and `AWS_ENDPOINT_URL`, else the regional
//! `https://sts.<AWS_REGION>.amazonaws.com` (botocore's default since 2024), else the
//! global `https://sts.amazonaws.com`. The signing region is `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, else `us-east-1`.
//!
//! The web identity token file is read again at every call: Kubernetes rotates the
//! projected service-account token (EKS: every hour or so), and one read at start would
//! be refused once it lapses.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::web::{self, Net};
use super::{parse_time, CredentialsError, Issued, Provider, System};
use crate::store::sign_s3::{self, S3Request};
use crate::store::Credentials;

/// The STS query API version.
pub const VERSION: &str = "2011-06-15";

/// Where AWS STS calls go and the region they are signed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsEndpoint {
    pub url: String,
    pub region: String,
}

/// See the module doc.
pub fn endpoint(explicit: Option<&str>, sys: &dyn System) -> StsEndpoint {
    let region = sys
        .var("AWS_REGION")
        .or_else(|| sys.var("AWS_DEFAULT_REGION"))
        .map(|r| r.trim().to_string());
    let url = explicit
        .filter(|e| !e.trim().is_empty())
        .map(str::to_string)
        .or_else(|| sys.var("OSSMOUNT_STS_ENDPOINT"))
        .or_else(|| sys.var("AWS_ENDPOINT_URL_STS"))
        .or_else(|| sys.var("AWS_ENDPOINT_URL"))
        .map(|e| web::base_url(&e, "https"))
        .unwrap_or_else(|| match &region {
            Some(r) => format!("https://sts.{r}.amazonaws.com"),
            None => "https://sts.amazonaws.com".to_string(),
        });
    StsEndpoint {
        url,
        region: region.unwrap_or_else(|| "us-east-1".to_string()),
    }
}

/// `botocore-session-<secs>` is botocore's default; ours names us.
fn pick_session_name(explicit: Option<String>, sys: &dyn System) -> String {
    explicit
        .filter(|s| !s.trim().is_empty())
        .or_else(|| sys.var("AWS_ROLE_SESSION_NAME"))
        .unwrap_or_else(|| {
            let secs = sys
                .now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            format!("ossmount-{secs}")
        })
}

#[derive(Deserialize)]
struct XmlCredentials {
    #[serde(rename = "AccessKeyId")]
    access_key_id: Option<String>,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Option<String>,
    #[serde(rename = "SessionToken")]
    session_token: Option<String>,
    #[serde(rename = "Expiration")]
    expiration: Option<String>,
}

#[derive(Deserialize)]
struct XmlResult {
    #[serde(rename = "Credentials")]
    credentials: Option<XmlCredentials>,
}

#[derive(Deserialize)]
struct XmlResponse {
    #[serde(rename = "AssumeRoleWithWebIdentityResult", alias = "AssumeRoleResult")]
    result: Option<XmlResult>,
}

#[derive(Deserialize)]
struct XmlError {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct XmlErrorResponse {
    #[serde(rename = "Error")]
    error: Option<XmlError>,
}

/// An STS answer as credentials, or its error code and message. Parser errors are not
/// quoted (they could hold a piece of the body, which holds secrets).
pub fn parse_reply(status: u16, body: &str, what: &str) -> Result<Issued, CredentialsError> {
    let failed = |m: String| CredentialsError::Failed(format!("{what}: {m}"));
    if !(200..300).contains(&status) {
        let detail = match crate::store::xml::from_xml::<XmlErrorResponse>(body) {
            Ok(XmlErrorResponse { error: Some(e) }) => format!(
                "{}: {}",
                e.code.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or("")
            ),
            _ => web::snippet(body, 200),
        };
        return Err(failed(format!("HTTP {status}: {detail}")));
    }
    let parsed = crate::store::xml::from_xml::<XmlResponse>(body)
        .map_err(|_| failed("the answer is not STS XML".into()))?;
    let Some(c) = parsed.result.and_then(|r| r.credentials) else {
        return Err(failed("the answer has no Credentials".into()));
    };
    let need = |v: Option<String>, field: &str| {
        v.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| failed(format!("Credentials has no {field}")))
    };
    let expiration = need(c.expiration, "Expiration")?;
    let expires = parse_time(&expiration)
        .ok_or_else(|| failed(format!("Expiration {expiration:?} is not a time")))?;
    Ok(Issued {
        credentials: Credentials {
            access_key_id: need(c.access_key_id, "AccessKeyId")?,
            access_key_secret: need(c.secret_access_key, "SecretAccessKey")?,
            session_token: Some(need(c.session_token, "SessionToken")?),
        },
        expires: Some(expires),
    })
}

/// `application/x-www-form-urlencoded` as botocore writes it (RFC 3986 unreserved kept).
fn form(pairs: &[(String, String)]) -> String {
    sign_s3::encode_query(pairs)
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: Vec<(String, String)>,
    body: String,
    what: &str,
) -> Result<Issued, CredentialsError> {
    let (status, text) = web::post_form(client, url, headers, body, what).await?;
    parse_reply(status, &text, what)
}

/// `AssumeRoleWithWebIdentity`: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, or a
/// profile's `web_identity_token_file` + `role_arn`.
pub struct AssumeRoleWithWebIdentity {
    pub role_arn: String,
    pub token_file: PathBuf,
    pub session_name: String,
    pub duration_seconds: Option<u64>,
    pub endpoint: StsEndpoint,
    pub sys: Arc<dyn System>,
    client: reqwest::Client,
}

impl AssumeRoleWithWebIdentity {
    pub fn new(
        role_arn: &str,
        token_file: PathBuf,
        session_name: Option<String>,
        endpoint: StsEndpoint,
        sys: Arc<dyn System>,
        net: &Net,
    ) -> Self {
        AssumeRoleWithWebIdentity {
            role_arn: role_arn.trim().to_string(),
            token_file,
            session_name: pick_session_name(session_name, &*sys),
            duration_seconds: None,
            endpoint,
            sys,
            client: net.sts_client(),
        }
    }

    /// The form of one call, the token file read now.
    pub fn request(&self) -> Result<Vec<(String, String)>, CredentialsError> {
        let token = self.sys.read_file(&self.token_file).map_err(|e| {
            CredentialsError::Failed(format!(
                "cannot read the web identity token file {} (AWS_WEB_IDENTITY_TOKEN_FILE): {e}",
                self.token_file.display()
            ))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(CredentialsError::Failed(format!(
                "the web identity token file {} is empty",
                self.token_file.display()
            )));
        }
        let mut f: Vec<(String, String)> = vec![
            ("Action".into(), "AssumeRoleWithWebIdentity".into()),
            ("Version".into(), VERSION.into()),
            ("RoleArn".into(), self.role_arn.clone()),
            ("RoleSessionName".into(), self.session_name.clone()),
            ("WebIdentityToken".into(), token.to_string()),
        ];
        if let Some(d) = self.duration_seconds {
            f.push(("DurationSeconds".into(), d.to_string()));
        }
        Ok(f)
    }
}

#[async_trait::async_trait]
impl Provider for AssumeRoleWithWebIdentity {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let body = form(&self.request()?);
        let what = format!(
            "STS AssumeRoleWithWebIdentity {} at {}",
            self.role_arn, self.endpoint.url
        );
        post(&self.client, &self.endpoint.url, Vec::new(), body, &what).await
    }

    fn describe(&self) -> String {
        format!(
            "web identity: role {} with the token in {} (STS {})",
            self.role_arn,
            self.token_file.display(),
            self.endpoint.url
        )
    }
}

/// `AssumeRole` with the keys of another provider (a profile's `source_profile`).
pub struct AssumeRole {
    pub source: Arc<dyn Provider>,
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
    pub duration_seconds: Option<u64>,
    pub endpoint: StsEndpoint,
    pub sys: Arc<dyn System>,
    client: reqwest::Client,
}

impl AssumeRole {
    pub fn new(
        source: Arc<dyn Provider>,
        role_arn: &str,
        session_name: Option<String>,
        endpoint: StsEndpoint,
        sys: Arc<dyn System>,
        net: &Net,
    ) -> Self {
        AssumeRole {
            source,
            role_arn: role_arn.trim().to_string(),
            session_name: pick_session_name(session_name, &*sys),
            external_id: None,
            duration_seconds: None,
            endpoint,
            sys,
            client: net.sts_client(),
        }
    }

    /// The body and the headers to send (SigV4 for service `sts` with `creds`).
    pub fn signed_request(
        &self,
        creds: &Credentials,
    ) -> Result<(String, Vec<(String, String)>), CredentialsError> {
        let mut f: Vec<(String, String)> = vec![
            ("Action".into(), "AssumeRole".into()),
            ("Version".into(), VERSION.into()),
            ("RoleArn".into(), self.role_arn.clone()),
            ("RoleSessionName".into(), self.session_name.clone()),
        ];
        if let Some(e) = &self.external_id {
            f.push(("ExternalId".into(), e.clone()));
        }
        if let Some(d) = self.duration_seconds {
            f.push(("DurationSeconds".into(), d.to_string()));
        }
        let body = form(&f);
        let url = reqwest::Url::parse(&self.endpoint.url).map_err(|e| {
            CredentialsError::Failed(format!("STS endpoint {}: {e}", self.endpoint.url))
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(CredentialsError::Failed(format!(
                    "STS endpoint {} has no host",
                    self.endpoint.url
                )))
            }
        };
        let headers = vec![
            ("host".to_string(), host),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        let path = percent_encoding::percent_decode_str(url.path())
            .decode_utf8_lossy()
            .into_owned();
        let signed = sign_s3::sign_v4(
            &S3Request {
                method: "POST",
                path: &path,
                query: &[],
                headers: &headers,
            },
            creds,
            &self.endpoint.region,
            "sts",
            &hex::encode(Sha256::digest(body.as_bytes())),
            self.sys.now(),
        );
        Ok((body, signed.headers))
    }
}

#[async_trait::async_trait]
impl Provider for AssumeRole {
    async fn fetch(&self) -> Result<Issued, CredentialsError> {
        let source = self.source.fetch().await?;
        let (body, headers) = self.signed_request(&source.credentials)?;
        let what = format!("STS AssumeRole {} at {}", self.role_arn, self.endpoint.url);
        post(&self.client, &self.endpoint.url, headers, body, &what).await
    }

    fn describe(&self) -> String {
        format!(
            "IAM role {} assumed with {} (STS {})",
            self.role_arn,
            self.source.describe(),
            self.endpoint.url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;
    use crate::store::credentials::Fixed;

    #[test]
    fn endpoint_rules() {
        let e = endpoint(None, &FakeSystem::default());
        assert_eq!(e.url, "https://sts.amazonaws.com");
        assert_eq!(e.region, "us-east-1");
        let sys = FakeSystem::with_vars(&[("AWS_REGION", "eu-west-1")]);
        assert_eq!(
            endpoint(None, &sys).url,
            "https://sts.eu-west-1.amazonaws.com"
        );
        let sys = FakeSystem::with_vars(&[
            ("AWS_DEFAULT_REGION", "eu-west-2"),
            ("AWS_ENDPOINT_URL", "http://all:1"),
            ("AWS_ENDPOINT_URL_STS", "http://sts:2/"),
        ]);
        let e = endpoint(None, &sys);
        assert_eq!(
            (e.url.as_str(), e.region.as_str()),
            ("http://sts:2", "eu-west-2")
        );
        assert_eq!(
            endpoint(Some("127.0.0.1:9"), &sys).url,
            "https://127.0.0.1:9"
        );
    }

    const OK: &str = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/r/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>SECRET-VALUE</SecretAccessKey>
      <SessionToken>TOKEN-VALUE</SessionToken>
      <Expiration>2026-12-02T10:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn replies() {
        let i = parse_reply(200, OK, "t").unwrap();
        assert_eq!(i.credentials.access_key_id, "ASIAEXAMPLE");
        assert_eq!(i.credentials.session_token.as_deref(), Some("TOKEN-VALUE"));
        assert_eq!(i.expires, parse_time("2026-12-02T10:00:00Z"));
        let assume = OK.replace("AssumeRoleWithWebIdentity", "AssumeRole");
        assert!(parse_reply(200, &assume, "t").is_ok());
        let err = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
            <Code>InvalidIdentityToken</Code><Message>No OpenIDConnect provider found</Message></Error>
            <RequestId>r</RequestId></ErrorResponse>"#;
        let e = parse_reply(400, err, "t").unwrap_err().to_string();
        assert!(
            e.contains("HTTP 400: InvalidIdentityToken: No OpenIDConnect"),
            "{e}"
        );
        let broken = OK.replace("<SessionToken>TOKEN-VALUE</SessionToken>", "");
        let e = parse_reply(200, &broken, "t").unwrap_err().to_string();
        assert!(
            e.contains("no SessionToken") && !e.contains("SECRET"),
            "{e}"
        );
        let e = parse_reply(200, "<oops SECRET-VALUE", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not STS XML") && !e.contains("SECRET"), "{e}");
    }

    #[test]
    fn token_file_is_read_at_each_call() {
        let sys = Arc::new(FakeSystem::default().file("/t", "one\n"));
        let p = AssumeRoleWithWebIdentity::new(
            "arn:aws:iam::1:role/r",
            "/t".into(),
            Some("s".into()),
            endpoint(Some("http://x"), &*sys),
            sys.clone(),
            &Net::default(),
        );
        let token = |p: &AssumeRoleWithWebIdentity| {
            let f = p.request().unwrap();
            f.into_iter()
                .find(|(k, _)| k == "WebIdentityToken")
                .unwrap()
                .1
        };
        assert_eq!(token(&p), "one");
        sys.files.lock().insert("/t".into(), "two".into());
        assert_eq!(token(&p), "two");
        sys.files.lock().clear();
        let e = p.request().unwrap_err().to_string();
        assert!(
            e.contains("cannot read the web identity token file /t"),
            "{e}"
        );
    }

    #[test]
    fn assume_role_is_signed_for_sts_and_verifies() {
        let sys: Arc<dyn System> = Arc::new(FakeSystem::default());
        let creds = Credentials {
            access_key_id: "AKIDSOURCE".into(),
            access_key_secret: "source/secret".into(),
            session_token: None,
        };
        let p = AssumeRole::new(
            Arc::new(Fixed {
                issued: Issued::fixed(creds.clone()),
                source: "x".into(),
            }),
            "arn:aws:iam::1:role/r",
            Some("s".into()),
            StsEndpoint {
                url: "http://127.0.0.1:9".into(),
                region: "us-east-1".into(),
            },
            sys.clone(),
            &Net::default(),
        );
        let (body, headers) = p.signed_request(&creds).unwrap();
        assert!(
            body.starts_with("Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws"),
            "{body}"
        );
        let auth = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(auth.contains("/us-east-1/sts/aws4_request"), "{auth}");
        let mut all = vec![
            ("host".to_string(), "127.0.0.1:9".to_string()),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
        ];
        all.extend(headers);
        let lookup = |id: &str| (id == "AKIDSOURCE").then(|| "source/secret".to_string());
        let req = S3Request {
            method: "POST",
            path: "/",
            query: &[],
            headers: &all,
        };
        sign_s3::verify_v4(&req, &lookup, sys.now()).unwrap();
    }
}
