//! Testing aid: the AWS STS query API (version 2011-06-15) on the aid listeners, as the
//! `s3://` chain and botocore call it: `POST /` with a form body.
//!
//! - `AssumeRole` must carry a SigV4 signature for service `sts` by one of serve's key
//!   pairs (or a key it issued), checked with [`crate::store::sign_s3::verify_v4`]; the
//!   payload hash is the body's SHA-256 (botocore sends no `x-amz-content-sha256`; when a
//!   client does, it must match the body);
//! - `AssumeRoleWithWebIdentity` is unsigned; with `--web-identity-token-file` the token
//!   must be that file's contents (read at each call, so a test can rotate it), else any
//!   non-empty token is taken. A digest of each distinct token is kept for the counters.
//!
//! Both answer `<ActionResponse><ActionResult><Credentials>` with an `ASIA...` key pair
//! valid for `--credential-lifetime`, or `<ErrorResponse><Error>` with AWS's codes
//! (`InvalidClientTokenId`, `SignatureDoesNotMatch`, `InvalidIdentityToken`,
//! `ValidationError`, `InvalidAction`).

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use http::StatusCode;
use sha2::{Digest, Sha256};

use super::sts::{random, Sessions, StsReply};
use crate::store::credentials::format_time;
use crate::store::sign_oss::AuthError;
use crate::store::sign_s3::{self, S3Request};

pub use crate::store::credentials::aws_sts::VERSION;

/// What one call brought.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Query and form parameters together, decoded.
    pub params: &'a [(String, String)],
    /// The query parameters alone (they are signed; the form is in the payload hash).
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error(status: StatusCode, code: &str, message: &str, request_id: &str) -> StsReply {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    StsReply {
        status,
        body: format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/{VERSION}/\">\n  <Error>\n    \
             <Type>{kind}</Type>\n    <Code>{code}</Code>\n    <Message>{}</Message>\n  \
             </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
            xml_escape(message)
        ),
    }
}

/// Answer one AWS STS call. `secret_for`: serve's key pairs and the ones it issued.
pub fn answer(
    sessions: &Sessions,
    call: &Call<'_>,
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> StsReply {
    let request_id = format!(
        "{}-{}-{}",
        random(8).to_lowercase(),
        random(4).to_lowercase(),
        random(12).to_lowercase()
    );
    let get = |k: &str| {
        call.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let fail = |status: StatusCode, code: &str, message: &str| {
        sessions.stats.sts_errors.fetch_add(1, Relaxed);
        error(status, code, message, &request_id)
    };
    if let Some(status) = sessions.faults.lock().status {
        return fail(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "InternalFailure",
            "fault injected by ossmount serve",
        );
    }
    let action = get("Action").unwrap_or("");
    let Some(role_arn) = get("RoleArn") else {
        return fail(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
        );
    };
    let Some(session) = get("RoleSessionName") else {
        return fail(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null",
        );
    };
    if let Some(d) = get("DurationSeconds") {
        if d.parse::<u64>()
            .map_or(true, |d| !(900..=43200).contains(&d))
        {
            return fail(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "The requested DurationSeconds is out of range (900 to 43200).",
            );
        }
    }
    let (result, source) = match action {
        "AssumeRole" => {
            if let Err(e) = verify(call, secret_for, now) {
                return match e {
                    AuthError::UnknownKey(_) => fail(
                        StatusCode::FORBIDDEN,
                        "InvalidClientTokenId",
                        "The security token included in the request is invalid.",
                    ),
                    AuthError::Mismatch { .. } => fail(
                        StatusCode::FORBIDDEN,
                        "SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you provided.",
                    ),
                    other => fail(StatusCode::BAD_REQUEST, "IncompleteSignature", &other.to_string()),
                };
            }
            sessions.stats.aws_assume_role.fetch_add(1, Relaxed);
            ("AssumeRoleResult", None)
        }
        "AssumeRoleWithWebIdentity" => {
            let Some(token) = get("WebIdentityToken") else {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "ValidationError",
                    "1 validation error detected: Value null at 'webIdentityToken' failed to satisfy constraint: Member must not be null",
                );
            };
            if let Some(path) = &sessions.cfg.web_identity_token_file {
                let expected = std::fs::read_to_string(path).unwrap_or_default();
                if expected.trim().is_empty() || expected.trim() != token.trim() {
                    return fail(
                        StatusCode::BAD_REQUEST,
                        "InvalidIdentityToken",
                        "The web identity token that was passed could not be validated by AWS. Get a new identity token from the identity provider and then retry the request.",
                    );
                }
            }
            sessions.note_oidc_token(token);
            sessions
                .stats
                .aws_assume_role_web_identity
                .fetch_add(1, Relaxed);
            (
                "AssumeRoleWithWebIdentityResult",
                Some("system:serviceaccount:default:ossmount"),
            )
        }
        other => {
            return fail(
                StatusCode::BAD_REQUEST,
                "InvalidAction",
                &format!("Could not find operation {other} for version {VERSION} (ossmount serve answers AssumeRole and AssumeRoleWithWebIdentity)"),
            )
        }
    };
    let g = sessions.issue_aws(now);
    let account = role_arn.split(':').nth(4).unwrap_or("000000000000");
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    let response = result.trim_end_matches("Result");
    let subject = source
        .map(|s| {
            format!(
                "    <SubjectFromWebIdentityToken>{s}</SubjectFromWebIdentityToken>\n    \
                 <Audience>sts.amazonaws.com</Audience>\n    <Provider>ossmount-serve</Provider>\n"
            )
        })
        .unwrap_or_default();
    StsReply {
        status: StatusCode::OK,
        body: format!(
            "<{response}Response xmlns=\"https://sts.amazonaws.com/doc/{VERSION}/\">\n  \
             <{result}>\n{subject}    <AssumedRoleUser>\n      \
             <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>\n      \
             <AssumedRoleId>AROA{}:{session}</AssumedRoleId>\n    </AssumedRoleUser>\n    \
             <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      \
             <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      \
             <Expiration>{}</Expiration>\n    </Credentials>\n  </{result}>\n  \
             <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  \
             </ResponseMetadata>\n</{response}Response>\n",
            random(17).to_ascii_uppercase(),
            g.id,
            g.secret,
            xml_escape(&g.token),
            format_time(g.expires),
            session = xml_escape(session),
            role_name = xml_escape(role_name),
        ),
    }
}

/// The SigV4 signature of an `AssumeRole` call, service `sts`.
fn verify(
    call: &Call<'_>,
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<(), AuthError> {
    let body_hash = hex::encode(Sha256::digest(call.body));
    let mut headers = call.headers.to_vec();
    match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-content-sha256"))
    {
        Some((_, v)) if v.trim() != body_hash => {
            return Err(AuthError::Malformed(
                "x-amz-content-sha256 is not the SHA-256 of the body".into(),
            ))
        }
        Some(_) => {}
        None => headers.push(("x-amz-content-sha256".into(), body_hash)),
    }
    if let Some(auth) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    {
        if !auth.1.contains("/sts/aws4_request") {
            return Err(AuthError::Malformed(
                "the credential scope is not for service sts".into(),
            ));
        }
    }
    let req = S3Request {
        method: call.method,
        path: call.path,
        query: call.query,
        headers: &headers,
    };
    sign_s3::verify_v4(&req, secret_for, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::sts::AidConfig;
    use crate::store::credentials::aws_sts::{parse_reply, AssumeRole, StsEndpoint};
    use crate::store::credentials::system::FakeSystem;
    use crate::store::credentials::{Fixed, Issued, System};
    use crate::store::Credentials;
    use std::sync::Arc;

    fn params(body: &str) -> Vec<(String, String)> {
        crate::serve::resolve::decode_query(Some(body)).unwrap()
    }

    #[test]
    fn web_identity_answers_parse_with_the_client() {
        let s = Sessions::new(AidConfig::default());
        let body = "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123%3Arole%2Fr&RoleSessionName=s&WebIdentityToken=tok";
        let p = params(body);
        let call = Call {
            method: "POST",
            path: "/",
            params: &p,
            query: &[],
            headers: &[],
            body: body.as_bytes(),
        };
        let r = answer(&s, &call, &|_| None, SystemTime::now());
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let i = parse_reply(200, &r.body, "t").unwrap();
        assert!(i.credentials.access_key_id.starts_with("ASIA"));
        assert_eq!(s.snapshot().aws_assume_role_web_identity, 1);
        let p = params("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=s&WebIdentityToken=t");
        let call = Call { params: &p, ..call };
        let r = answer(&s, &call, &|_| None, SystemTime::now());
        let e = parse_reply(r.status.as_u16(), &r.body, "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HTTP 400: ValidationError"), "{e}");
    }

    #[test]
    fn assume_role_checks_the_sigv4_signature() {
        let s = Sessions::new(AidConfig::default());
        let sys: Arc<dyn System> = Arc::new(FakeSystem::default());
        let sign = |secret: &str| {
            let creds = Credentials {
                access_key_id: "AK".into(),
                access_key_secret: secret.into(),
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
                &crate::store::credentials::web::Net::default(),
            );
            p.signed_request(&creds).unwrap()
        };
        let secret_for = |id: &str| (id == "AK").then(|| "SK".to_string());
        for (secret, code) in [("SK", None), ("wrong", Some("SignatureDoesNotMatch"))] {
            let (body, signed) = sign(secret);
            let mut headers = vec![
                ("host".to_string(), "127.0.0.1:9".to_string()),
                (
                    "content-type".to_string(),
                    "application/x-www-form-urlencoded".to_string(),
                ),
            ];
            headers.extend(signed);
            let p = params(&body);
            let call = Call {
                method: "POST",
                path: "/",
                params: &p,
                query: &[],
                headers: &headers,
                body: body.as_bytes(),
            };
            let r = answer(&s, &call, &secret_for, SystemTime::now());
            match code {
                None => assert_eq!(r.status, StatusCode::OK, "{}", r.body),
                Some(c) => assert!(r.body.contains(c), "{}", r.body),
            }
            // A body changed after signing is refused.
            let other = body.replace("RoleSessionName=s", "RoleSessionName=t");
            let call = Call {
                body: other.as_bytes(),
                ..call
            };
            let r = answer(&s, &call, &secret_for, SystemTime::now());
            assert_ne!(r.status, StatusCode::OK, "{}", r.body);
        }
    }
}
