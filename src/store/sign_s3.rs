//! AWS Signature V4 in its S3 flavour (`AWS4-HMAC-SHA256`): signing for the client's S3
//! mode, verification for `ossmount serve`.
//!
//! Why it is built this way:
//! - It reproduces botocore's S3 signer, checked against `tests/data/vectors/s3_sigv4.json`:
//!   the canonical URI is the decoded path encoded ONCE with the RFC 3986 encoder shared
//!   with OSS ([`uri_encode`], `/` kept, no dot-segment normalisation: S3 keys may contain
//!   `..`); the canonical query is sorted by encoded name then value and always writes
//!   `name=` (unlike OSS's bare name); header values are trimmed with inner whitespace runs
//!   collapsed to one space.
//! - Like botocore it signs every header it is given except a short blacklist
//!   ([`UNSIGNED_HEADERS`]: `authorization`, `user-agent`, `expect`, `transfer-encoding`,
//!   `x-amzn-trace-id`), so `host`, `range`, `if-match` and all `x-amz-*` are covered.
//!   Headers the transport adds later are not in `S3Request::headers` and so unsigned.
//! - `x-amz-content-sha256` is whatever the caller passes (botocore sends the SHA-256 of
//!   the empty body for GET/HEAD, as the vectors show; `UNSIGNED-PAYLOAD` is also valid).
//!   The verifier signs the header's value and does not hash bodies: the server is
//!   read-only and GET/HEAD carry none.
//! - Time format, skew limit (15 minutes), Authorization field parsing and the
//!   constant-time comparison are shared with [`crate::store::sign_oss`].

use std::collections::BTreeMap;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::store::sign_oss::{
    format_time, hmac_sha256, one_header, parse_auth_fields, parse_credential, parse_signature,
    parse_time, signature_matches, skewed,
};
pub use crate::store::sign_oss::{uri_encode, AuthError};
use crate::store::Credentials;

/// The SigV4 algorithm name.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// SHA-256 of the empty body: the payload hash botocore sends for GET and HEAD.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Header names never signed (botocore's blacklist, plus `authorization` itself).
pub const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "user-agent",
    "expect",
    "transfer-encoding",
    "x-amzn-trace-id",
];

/// What gets signed. `path` is DECODED (`/bucket/dir/file name.bin`); S3 encodes it once.
#[derive(Clone, Debug, Default)]
pub struct S3Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// Decoded `(name, value)` pairs.
    pub query: &'a [(String, String)],
    /// Request headers as sent, `host` included (any case). For verification they also
    /// carry `authorization` and `x-amz-date`.
    pub headers: &'a [(String, String)],
}

#[derive(Clone, Debug)]
pub struct Signed {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub authorization: String,
    /// `(name, value)` to add: x-amz-date, x-amz-content-sha256, x-amz-security-token
    /// (session credentials only), authorization.
    pub headers: Vec<(String, String)>,
}

/// The decoded path encoded once, `/` kept; an empty path is `/`.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        uri_encode(path, false)
    }
}

/// Encoded pairs sorted by name then value, each `name=value` (`name=` when empty).
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(n, v)| (uri_encode(n, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The query string to send: `name=value` pairs in the given order, strictly encoded.
pub fn encode_query(query: &[(String, String)]) -> String {
    query
        .iter()
        .map(|(n, v)| format!("{}={}", uri_encode(n, true), uri_encode(v, true)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trim and collapse runs of whitespace to one space (botocore `' '.join(v.split())`).
fn canonical_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Canonical header lines for `names` (lower-case, in the given order) and the
/// `;`-joined list. Repeated headers are joined with `,`.
fn canonical_headers(headers: &[(String, String)], names: &[String]) -> String {
    let mut out = String::new();
    for name in names {
        let values: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| canonical_value(v))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

fn canonical_request(
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    signed_names: &[String],
    payload_sha256: &str,
) -> String {
    format!(
        "{method}\n{}\n{}\n{}\n{}\n{payload_sha256}",
        canonical_uri(path),
        canonical_query(query),
        canonical_headers(headers, signed_names),
        signed_names.join(";"),
    )
}

/// `YYYYMMDD/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

fn string_to_sign(datetime: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM}\n{datetime}\n{scope}\n{hash}")
}

/// "AWS4"+secret, date, region, service, "aws4_request".
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// Sign with header authentication. `payload_sha256` is the hex SHA-256 of the body
/// (empty body for GET/HEAD) or `UNSIGNED-PAYLOAD`.
///
/// Any `authorization`, `x-amz-date`, `x-amz-content-sha256` (and, with session
/// credentials, `x-amz-security-token`) already in `req.headers` is superseded by
/// [`Signed::headers`]: send those instead (replace, not append).
pub fn sign_v4(
    req: &S3Request<'_>,
    creds: &Credentials,
    region: &str,
    service: &str,
    payload_sha256: &str,
    time: SystemTime,
) -> Signed {
    let (datetime, date) = format_time(time);
    let mut added: Vec<(String, String)> = vec![
        ("x-amz-date".into(), datetime.clone()),
        ("x-amz-content-sha256".into(), payload_sha256.to_string()),
    ];
    if let Some(token) = creds.session_token.as_deref().filter(|t| !t.is_empty()) {
        added.push(("x-amz-security-token".into(), token.to_string()));
    }
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| !added.iter().any(|(a, _)| n.trim().eq_ignore_ascii_case(a)))
        .cloned()
        .collect();
    headers.extend(added.iter().cloned());

    let names: Vec<String> = headers
        .iter()
        .map(|(n, _)| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty() && !UNSIGNED_HEADERS.contains(&n.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let canonical_request = canonical_request(
        req.method,
        req.path,
        req.query,
        &headers,
        &names,
        payload_sha256,
    );
    let scope = scope(&date, region, service);
    let string_to_sign = string_to_sign(&datetime, &scope, &canonical_request);
    let key = signing_key(&creds.access_key_secret, &date, region, service);
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={signature}",
        creds.access_key_id,
        names.join(";")
    );
    added.push(("authorization".into(), authorization.clone()));
    Signed {
        canonical_request,
        string_to_sign,
        authorization,
        headers: added,
    }
}

/// Verify a SigV4-signed request as a server would.
///
/// The signed headers are the Authorization header's SignedHeaders list, used as given
/// (lower-cased); it must name `host` and `x-amz-date`, must not name `authorization`,
/// and every name in it must be present in the request (else Malformed). The payload hash
/// is the request's `x-amz-content-sha256`, which is required. Checks run in the order
/// syntax, key id, date, skew, signature, as in `sign_oss::verify_v4`.
pub fn verify_v4(
    req: &S3Request<'_>,
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<(), AuthError> {
    let auth = one_header(req.headers, "authorization")?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for (name, value) in parse_auth_fields(auth, ALGORITHM)? {
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            other => {
                return Err(AuthError::Malformed(format!(
                    "authorization: unknown field {other}"
                )))
            }
        }
    }
    let missing = |f: &str| AuthError::Malformed(format!("authorization: missing {f}"));
    let cred = parse_credential(
        credential.ok_or_else(|| missing("Credential"))?,
        "aws4_request",
    )?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = parse_signature(signature.ok_or_else(|| missing("Signature"))?)?;
    let names: Vec<String> = signed_headers
        .split(';')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(AuthError::Malformed("empty name in SignedHeaders".into()));
    }
    for required in ["host", "x-amz-date"] {
        if !names.iter().any(|n| n == required) {
            return Err(AuthError::Malformed(format!(
                "SignedHeaders must include {required}"
            )));
        }
    }

    let secret = secret_for(cred.access_key_id)
        .ok_or_else(|| AuthError::UnknownKey(cred.access_key_id.to_string()))?;

    let datetime = one_header(req.headers, "x-amz-date")?;
    let time = parse_time(datetime).ok_or_else(|| {
        AuthError::Malformed(format!("x-amz-date {datetime:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if &datetime[..8] != cred.date {
        return Err(AuthError::Malformed(
            "x-amz-date does not match the credential scope date".into(),
        ));
    }
    if skewed(time, now) {
        return Err(AuthError::Skewed);
    }
    let payload = one_header(req.headers, "x-amz-content-sha256")?;
    let mut present: BTreeMap<String, ()> = BTreeMap::new();
    for (n, _) in req.headers {
        present.insert(n.trim().to_ascii_lowercase(), ());
    }
    for name in &names {
        if name == "authorization" {
            return Err(AuthError::Malformed(
                "authorization cannot be signed".into(),
            ));
        }
        if !present.contains_key(name) {
            return Err(AuthError::Malformed(format!(
                "signed header {name} is missing from the request"
            )));
        }
    }

    let canonical = canonical_request(
        req.method,
        req.path,
        req.query,
        req.headers,
        &names,
        payload,
    );
    let scope = scope(cred.date, cred.region, cred.service);
    let string_to_sign = string_to_sign(datetime, &scope, &canonical);
    let key = signing_key(&secret, cred.date, cred.region, cred.service);
    if signature_matches(&key, &string_to_sign, &signature) {
        Ok(())
    } else {
        Err(AuthError::Mismatch { string_to_sign })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::sign_oss::MAX_SKEW;

    const AK: &str = "AKIDTEST";
    const SK: &str = "secret/with+chars";

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            session_token: token.map(str::to_string),
        }
    }

    fn lookup(k: &str) -> Option<String> {
        (k == AK).then(|| SK.to_string())
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_710_491_400)
    }

    fn sent(req: &S3Request<'_>, c: &Credentials, t: SystemTime) -> Vec<(String, String)> {
        let signed = sign_v4(req, c, "us-east-1", "s3", EMPTY_SHA256, t);
        let mut out = req.headers.to_vec();
        out.extend(signed.headers);
        out
    }

    #[test]
    fn encoding_rules() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/b/a b+c~*.txt"), "/b/a%20b%2Bc~%2A.txt");
        assert_eq!(
            canonical_uri("/b/%41"),
            "/b/%2541",
            "encoded once, never decoded"
        );
        let q = h(&[("prefix", "a/b c"), ("acl", ""), ("b", "2"), ("b", "1")]);
        assert_eq!(canonical_query(&q), "acl=&b=1&b=2&prefix=a%2Fb%20c");
        assert_eq!(encode_query(&q), "prefix=a%2Fb%20c&acl=&b=2&b=1");
        assert_eq!(canonical_value("  a   b \t c "), "a b c");
    }

    #[test]
    fn signs_every_header_but_the_blacklist() {
        let headers = h(&[
            ("Host", "h"),
            ("User-Agent", "ua"),
            ("Range", "bytes=0-1"),
            ("Content-Type", "text/plain"),
            ("X-Amz-Meta-A", " x  y "),
        ]);
        let req = S3Request {
            method: "GET",
            path: "/b/k",
            headers: &headers,
            ..Default::default()
        };
        let s = sign_v4(
            &req,
            &creds(Some("tok")),
            "us-east-1",
            "s3",
            EMPTY_SHA256,
            t0(),
        );
        assert!(s.authorization.contains(
            "SignedHeaders=content-type;host;range;x-amz-content-sha256;x-amz-date;x-amz-meta-a;x-amz-security-token,"
        ));
        assert!(s.canonical_request.contains("\nx-amz-meta-a:x y\n"));
        let names: Vec<&str> = s.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-amz-date",
                "x-amz-content-sha256",
                "x-amz-security-token",
                "authorization"
            ]
        );
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = t0();
        for path in [
            "/b/plain",
            "/b/dir one/a+b%c",
            "/b/视频/naïve~*(1)!.mp4",
            "/b",
            "/",
        ] {
            for token in [None, Some("FQo//tok+en==")] {
                let query = h(&[("versionId", "x y/+"), ("acl", "")]);
                let headers = h(&[("Host", "127.0.0.1:9000"), ("Range", "bytes=5-9")]);
                let req = S3Request {
                    method: "GET",
                    path,
                    query: &query,
                    headers: &headers,
                };
                let all = sent(&req, &creds(token), t);
                let server = S3Request {
                    headers: &all,
                    ..req.clone()
                };
                assert_eq!(verify_v4(&server, &lookup, t), Ok(()), "{path} {token:?}");
            }
        }

        let query = h(&[("list-type", "2")]);
        let headers = h(&[("Host", "h:1"), ("Range", "bytes=0-9")]);
        let req = S3Request {
            method: "GET",
            path: "/b/a b",
            query: &query,
            headers: &headers,
        };
        let all = sent(&req, &creds(None), t);
        let server = S3Request {
            headers: &all,
            ..req.clone()
        };
        assert_eq!(verify_v4(&server, &lookup, t), Ok(()));

        let wrong = |k: &str| (k == AK).then(|| "nope".to_string());
        match verify_v4(&server, &wrong, t) {
            Err(AuthError::Mismatch { string_to_sign }) => {
                assert!(string_to_sign.starts_with(
                    "AWS4-HMAC-SHA256\n20240315T083000Z\n20240315/us-east-1/s3/aws4_request\n"
                ))
            }
            other => panic!("expected Mismatch, got {other:?}"),
        }
        assert_eq!(
            verify_v4(&server, &|_: &str| None, t),
            Err(AuthError::UnknownKey(AK.into()))
        );
        let mismatch =
            |r: &S3Request<'_>| matches!(verify_v4(r, &lookup, t), Err(AuthError::Mismatch { .. }));
        assert!(mismatch(&S3Request {
            path: "/b/a+b",
            ..server.clone()
        }));
        assert!(mismatch(&S3Request {
            path: "/b/a%20b",
            ..server.clone()
        }));
        assert!(mismatch(&S3Request {
            method: "HEAD",
            ..server.clone()
        }));
        let q2 = h(&[("list-type", "1")]);
        assert!(mismatch(&S3Request {
            query: &q2,
            ..server.clone()
        }));
        for (name, value) in [
            ("Range", "bytes=0-8"),
            ("Host", "h:2"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ] {
            let tampered: Vec<(String, String)> = all
                .iter()
                .map(|(n, v)| {
                    if n == name {
                        (n.clone(), value.to_string())
                    } else {
                        (n.clone(), v.clone())
                    }
                })
                .collect();
            assert!(
                mismatch(&S3Request {
                    headers: &tampered,
                    ..server.clone()
                }),
                "{name}"
            );
        }
        // A header outside SignedHeaders may be added.
        let mut extra = all.clone();
        extra.push(("X-Amz-Meta-Late".into(), "1".into()));
        assert_eq!(
            verify_v4(
                &S3Request {
                    headers: &extra,
                    ..server.clone()
                },
                &lookup,
                t
            ),
            Ok(())
        );
        // Skew.
        assert_eq!(verify_v4(&server, &lookup, t + MAX_SKEW), Ok(()));
        assert_eq!(
            verify_v4(&server, &lookup, t + MAX_SKEW + Duration::from_secs(1)),
            Err(AuthError::Skewed)
        );
        assert_eq!(
            verify_v4(&server, &lookup, t - MAX_SKEW - Duration::from_secs(1)),
            Err(AuthError::Skewed)
        );
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let t = t0();
        let headers = h(&[("Host", "h"), ("Range", "bytes=0-9")]);
        let req = S3Request {
            method: "GET",
            path: "/b/k",
            headers: &headers,
            ..Default::default()
        };
        let good = sent(&req, &creds(None), t);
        let auth = good
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1
            .clone();
        let sig = auth.rsplit_once("Signature=").unwrap().1.to_string();
        let cred = format!("Credential={AK}/20240315/us-east-1/s3/aws4_request");
        let garbage = [
            String::new(),
            "AWS4-HMAC-SHA256".into(),
            "OSS4-HMAC-SHA256 Credential=a/b/c/d/aliyun_v4_request,Signature=00".into(),
            format!("AWS4-HMAC-SHA256 {cred}, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;x-amz-date"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;;x-amz-date, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=range;x-amz-date, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;range, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;x-amz-date;if-match, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=authorization;host;x-amz-date, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;x-amz-date, Signature=zz{}", &sig[2..]),
            format!("AWS4-HMAC-SHA256 {cred}, SignedHeaders=host;x-amz-date, Signature={sig}, Extra=1"),
            format!("AWS4-HMAC-SHA256 Credential={AK}/20240315/us-east-1/s3/aliyun_v4_request, SignedHeaders=host;x-amz-date, Signature={sig}"),
            format!("AWS4-HMAC-SHA256 Credential={AK}/20240316/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"),
        ];
        for g in &garbage {
            let mut hs: Vec<(String, String)> = good
                .iter()
                .filter(|(n, _)| n != "authorization")
                .cloned()
                .collect();
            hs.push(("Authorization".into(), g.clone()));
            let r = S3Request {
                headers: &hs,
                ..req.clone()
            };
            let got = verify_v4(&r, &lookup, t);
            assert!(
                matches!(got, Err(AuthError::Malformed(_))),
                "{g:?} gave {got:?}"
            );
        }
        for missing in ["authorization", "x-amz-date", "x-amz-content-sha256"] {
            let hs: Vec<(String, String)> =
                good.iter().filter(|(n, _)| n != missing).cloned().collect();
            let r = S3Request {
                headers: &hs,
                ..req.clone()
            };
            assert!(
                matches!(verify_v4(&r, &lookup, t), Err(AuthError::Malformed(_))),
                "{missing}"
            );
        }
    }
}
