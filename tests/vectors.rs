//! Every vector in `tests/data/vectors/` (from the official OSS SDKs and botocore) through
//! ossmount's signers and CRC-64. A missing vector file is a FAILURE, not a skip, and each
//! section asserts that it checked as many vectors as the file holds.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use ossmount::crc64;
use ossmount::store::sign_oss::{self, OssRequest};
use ossmount::store::sign_s3::{self, S3Request};
use ossmount::store::Credentials;
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "signing vectors are required: cannot read {} ({e})",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: bad JSON: {e}", path.display()))
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector {}: field {field} is not a string", v["name"]))
}

fn opt_s<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

fn pairs(v: &Value, field: &str) -> Vec<(String, String)> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("vector {}: {field} is not a list", v["name"]))
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn headers(v: &Value) -> Vec<(String, String)> {
    v["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("vector {}: headers is not an object", v["name"]))
        .iter()
        .map(|(k, x)| (k.clone(), x.as_str().unwrap().to_string()))
        .collect()
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn time(iso: &str) -> SystemTime {
    let t = chrono::DateTime::parse_from_rfc3339(iso).expect("ISO-8601 datetime");
    t.with_timezone(&chrono::Utc).into()
}

fn creds(v: &Value, ak: &str, sk: &str, token_field: &str) -> Credentials {
    Credentials {
        access_key_id: ak.to_string(),
        access_key_secret: sk.to_string(),
        session_token: opt_s(v, token_field).map(str::to_string),
    }
}

fn count(doc: &Value, section: &str) -> usize {
    doc[section]
        .as_array()
        .unwrap_or_else(|| panic!("section {section} missing"))
        .len()
}

#[test]
fn oss_v4_header_vectors() {
    let doc = load("oss_v4.json");
    let mut checked = 0;
    for v in doc["v4_header_vectors"].as_array().unwrap() {
        let name = s(v, "name");
        assert_eq!(s(v, "auth_method"), "header", "{name}");
        let query = pairs(v, "query");
        let hdrs = headers(v);
        let additional = strings(v, "additional_headers");
        let req = OssRequest {
            method: s(v, "method"),
            bucket: opt_s(v, "bucket"),
            key: opt_s(v, "key"),
            query: &query,
            headers: &hdrs,
            additional_headers: &additional,
        };
        let c = creds(
            v,
            s(v, "access_key_id"),
            s(v, "access_key_secret"),
            "security_token",
        );
        let signed = sign_oss::sign_v4(
            &req,
            &c,
            s(v, "region"),
            s(v, "product"),
            time(s(v, "datetime")),
        );
        assert_eq!(
            signed.canonical_request,
            s(v, "expected_canonical_request"),
            "{name}: canonical request"
        );
        assert_eq!(
            signed.string_to_sign,
            s(v, "expected_string_to_sign"),
            "{name}: string to sign"
        );
        assert_eq!(
            hex::encode(signed.signing_key),
            s(v, "expected_signing_key_hex"),
            "{name}: signing key"
        );
        assert_eq!(
            signed.authorization,
            s(v, "expected_authorization"),
            "{name}: authorization"
        );
        // What the SDK sent and what ossmount would send both decode to the signed pairs.
        assert_eq!(decode_query(s(v, "raw_query")), query, "{name}: raw query");
        assert_eq!(
            decode_query(&sign_oss::encode_query(&query)),
            query,
            "{name}: encode_query round trip"
        );
        // The signer's headers, added to the request, verify on the server side.
        let mut sent: Vec<(String, String)> = hdrs
            .iter()
            .filter(|(n, _)| {
                !signed
                    .headers
                    .iter()
                    .any(|(a, _)| a.eq_ignore_ascii_case(n))
            })
            .cloned()
            .collect();
        sent.extend(signed.headers.iter().cloned());
        let server_req = OssRequest {
            headers: &sent,
            additional_headers: &[],
            ..req
        };
        let secret = s(v, "access_key_secret").to_string();
        let ak = s(v, "access_key_id").to_string();
        let lookup = move |k: &str| (k == ak).then(|| secret.clone());
        assert_eq!(
            sign_oss::verify_v4(&server_req, &lookup, time(s(v, "datetime"))),
            Ok(()),
            "{name}: verify"
        );
        checked += 1;
    }
    assert_eq!(checked, count(&doc, "v4_header_vectors"));
    assert_eq!(checked, 15, "the OSS V4 file holds 15 header vectors");
}

#[test]
fn oss_v4_presign_vectors() {
    let doc = load("oss_v4.json");
    let mut checked = 0;
    for v in doc["v4_presign_vectors"].as_array().unwrap() {
        let name = s(v, "name");
        assert_eq!(s(v, "auth_method"), "query", "{name}");
        let query = pairs(v, "input_query");
        let hdrs = headers(v);
        let additional = strings(v, "additional_headers");
        let req = OssRequest {
            method: s(v, "method"),
            bucket: opt_s(v, "bucket"),
            key: opt_s(v, "key"),
            query: &query,
            headers: &hdrs,
            additional_headers: &additional,
        };
        let c = creds(
            v,
            s(v, "access_key_id"),
            s(v, "access_key_secret"),
            "security_token",
        );
        let expires = Duration::from_secs(v["expires_seconds"].as_u64().unwrap());
        let p = sign_oss::presign_v4(
            &req,
            &c,
            s(v, "region"),
            s(v, "product"),
            time(s(v, "datetime")),
            expires,
        );
        assert_eq!(
            p.canonical_request,
            s(v, "expected_canonical_request"),
            "{name}: canonical request"
        );
        assert_eq!(
            p.string_to_sign,
            s(v, "expected_string_to_sign"),
            "{name}: string to sign"
        );
        assert_eq!(p.signature, s(v, "expected_signature"), "{name}: signature");
        let url = s(v, "signed_url");
        let (_, sdk_query) = url.split_once('?').expect("signed_url has a query");
        assert_eq!(
            sign_oss::encode_query(&p.query),
            sdk_query,
            "{name}: signed URL query"
        );
        checked += 1;
    }
    assert_eq!(checked, count(&doc, "v4_presign_vectors"));
    assert_eq!(checked, 3);
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .expect("UTF-8 query")
        .into_owned()
}

/// Decoded pairs of an encoded query string (`+` is literal, as in RFC 3986).
fn decode_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, x) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(n), percent_decode(x))
        })
        .collect()
}

#[test]
fn oss_v1_vectors() {
    let doc = load("oss_v4.json");
    let mut checked = 0;
    for v in doc["v1_vectors"].as_array().unwrap() {
        let name = s(v, "name");
        // V1 vectors carry their query only inside the URL.
        let query: Vec<(String, String)> = match s(v, "url").split_once('?') {
            None => Vec::new(),
            Some((_, q)) => decode_query(q),
        };
        let hdrs = headers(v);
        let req = OssRequest {
            method: s(v, "method"),
            bucket: opt_s(v, "bucket"),
            key: opt_s(v, "key"),
            query: &query,
            headers: &hdrs,
            additional_headers: &[],
        };
        let c = creds(
            v,
            s(v, "access_key_id"),
            s(v, "access_key_secret"),
            "security_token",
        );
        let signed = sign_oss::sign_v1(&req, &c, SystemTime::UNIX_EPOCH);
        assert_eq!(
            signed.string_to_sign,
            s(v, "expected_string_to_sign"),
            "{name}: string to sign"
        );
        assert_eq!(
            signed.authorization,
            s(v, "expected_authorization"),
            "{name}: authorization"
        );
        checked += 1;
    }
    assert_eq!(checked, count(&doc, "v1_vectors"));
    assert_eq!(checked, 4);
}

fn parse_hex_u64(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex crc")
}

#[test]
fn crc64_vectors() {
    let doc = load("oss_v4.json");
    let mut checked = 0;
    for v in doc["crc64_vectors"].as_array().unwrap() {
        if let Some(c) = v.get("combine") {
            let a = crc64::checksum(s(c, "crc1_of").as_bytes());
            let b_data = s(c, "crc2_of").as_bytes();
            let b = crc64::checksum(b_data);
            let len2 = c["len2"].as_u64().unwrap();
            assert_eq!(len2, b_data.len() as u64);
            let combined = crc64::combine(a, b, len2);
            assert_eq!(combined, parse_hex_u64(s(c, "result_hex")), "combine");
            let whole = [s(c, "crc1_of"), s(c, "crc2_of")].concat();
            assert_eq!(
                combined,
                crc64::checksum(whole.as_bytes()),
                "combine = crc(A||B)"
            );
            assert_eq!(crc64::combine(a, 0, 0), a, "combine with an empty B");
        } else {
            let data = s(v, "data_utf8");
            let crc = crc64::checksum(data.as_bytes());
            assert_eq!(crc, parse_hex_u64(s(v, "crc64_hex")), "crc64 of {data:?}");
            assert_eq!(
                crc.to_string(),
                s(v, "x-oss-hash-crc64ecma"),
                "header form of {data:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, count(&doc, "crc64_vectors"));
    assert_eq!(checked, 6);
}

#[test]
fn s3_sigv4_vectors() {
    let doc = load("s3_sigv4.json");
    let ak = s(&doc, "access_key_id").to_string();
    let sk = s(&doc, "secret_access_key").to_string();
    let when = time(s(&doc, "datetime"));
    let mut checked = 0;
    for v in doc["vectors"].as_array().unwrap() {
        let name = s(v, "name");
        let query = pairs(v, "query");
        let mut hdrs = headers(v);
        hdrs.push(("Host".to_string(), s(v, "host").to_string()));
        let req = S3Request {
            method: s(v, "method"),
            path: s(v, "path_unencoded"),
            query: &query,
            headers: &hdrs,
        };
        let c = creds(v, &ak, &sk, "session_token");
        // The payload hash botocore actually sent (the SHA-256 of the empty body).
        let payload = v["headers_added_by_signer"]["X-Amz-Content-SHA256"]
            .as_str()
            .expect("X-Amz-Content-SHA256 in headers_added_by_signer");
        let signed = sign_s3::sign_v4(&req, &c, s(v, "region"), s(v, "service"), payload, when);
        assert_eq!(
            signed.canonical_request,
            s(v, "expected_canonical_request"),
            "{name}: canonical request"
        );
        assert_eq!(
            signed.string_to_sign,
            s(v, "expected_string_to_sign"),
            "{name}: string to sign"
        );
        assert_eq!(
            signed.authorization,
            s(v, "expected_authorization"),
            "{name}: authorization"
        );
        // The URL botocore built carries the same path and query.
        let url = s(v, "url");
        let after_host = url.split_once("://").unwrap().1;
        let path_and_query = &after_host[after_host.find('/').unwrap_or(after_host.len())..];
        let (path, q) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        assert_eq!(
            sign_s3::canonical_uri(s(v, "path_unencoded")),
            if path.is_empty() { "/" } else { path },
            "{name}: path"
        );
        assert_eq!(decode_query(q), query, "{name}: query");

        let mut sent = hdrs.clone();
        sent.extend(signed.headers.iter().cloned());
        let server_req = S3Request {
            headers: &sent,
            ..req
        };
        let (ak2, sk2) = (ak.clone(), sk.clone());
        let lookup = move |k: &str| (k == ak2).then(|| sk2.clone());
        assert_eq!(
            sign_s3::verify_v4(&server_req, &lookup, when),
            Ok(()),
            "{name}: verify"
        );
        checked += 1;
    }
    assert_eq!(checked, count(&doc, "vectors"));
    assert_eq!(checked, 5);
}
