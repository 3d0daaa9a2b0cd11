//! OSS request signing: V4 (`OSS4-HMAC-SHA256`) header auth for the HTTP client,
//! verification of it for `ossmount serve`, plus V4 presigned URLs and legacy V1
//! (HMAC-SHA1) so that every vector in `tests/data/vectors/oss_v4.json` (produced with the
//! official OSS Python SDKs) is checked.
//!
//! Why it is built this way:
//! - Signing is a pure function of (request parts, credentials, time). No clock, no I/O,
//!   no HTTP types: the client, the server and the vector tests call the same code, and a
//!   captured vector replays byte for byte.
//! - The client and the server share one canonicalisation ([`canonical_request`]), so a
//!   request this module signs is one this module accepts, and the server's
//!   `SignatureDoesNotMatch` carries the exact string to sign the client should compare.
//! - Inputs are DECODED (bucket, key, query pairs). The canonical form encodes them with
//!   [`uri_encode`] (RFC 3986: keep `A-Za-z0-9-_.~`, upper-case hex). Send the query built
//!   by [`encode_query`] so that what goes on the wire is exactly what was signed
//!   (never let a form encoder turn a space into `+`: the server signs `%20`, and the
//!   request fails with SignatureDoesNotMatch).
//! - Header values are trimmed and repeated headers joined with `,` (Go SDK behaviour);
//!   names are lower-cased. Signed headers: every `x-oss-*`, `content-type`,
//!   `content-md5`, plus the AdditionalHeaders the caller asks for (filtered to names that
//!   are present and not signed anyway, lower-cased, sorted). `authorization` is never
//!   signed.
//! - Verification compares the HMAC in constant time (`Mac::verify_slice`) and never
//!   panics on hostile input: every parse failure is [`AuthError::Malformed`].
//! - Time skew limit is 15 minutes ([`MAX_SKEW`]), the OSS service's own limit
//!   (`RequestTimeTooSkewed`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::store::Credentials;

type HmacSha256 = Hmac<Sha256>;

/// The V4 algorithm name, first token of the Authorization header.
pub const ALGORITHM_V4: &str = "OSS4-HMAC-SHA256";
/// The only payload hash OSS accepts in `x-oss-content-sha256`.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Largest accepted difference between a request's `x-oss-date` and the server clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Percent-encode UTF-8 bytes per RFC 3986: keep `A-Z a-z 0-9 - _ . ~` (and `/` unless
/// `encode_slash`), everything else becomes `%XX` with upper-case hex. Space is `%20`,
/// never `+`. Canonical URIs use `encode_slash = false`, query names and values `true`.
pub fn uri_encode(input: &str, encode_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len() + input.len() / 2);
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0x0f)] as char);
        }
    }
    out
}

/// The query string to SEND for decoded pairs, in the given order: `name=value`, or the
/// bare `name` when the value is empty, names and values encoded with [`uri_encode`]
/// (`/` included). The server decodes it back to the same pairs the client signed.
pub fn encode_query(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in query {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&uri_encode(name, true));
        if !value.is_empty() {
            out.push('=');
            out.push_str(&uri_encode(value, true));
        }
    }
    out
}

/// `"/" + bucket + "/" + key`, encoded keeping `/`; `/bucket/` without a key, `/` without
/// a bucket. The bucket is part of the URI whatever the addressing style.
pub fn canonical_uri(bucket: Option<&str>, key: Option<&str>) -> String {
    let mut uri = String::from("/");
    if let Some(bucket) = bucket {
        uri.push_str(bucket);
        uri.push('/');
    }
    if let Some(key) = key {
        uri.push_str(key);
    }
    uri_encode(&uri, false)
}

/// Encoded pairs sorted by encoded name (then value, so duplicates are deterministic),
/// `name=value` or bare `name` for an empty value, joined with `&`.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(n, v)| (uri_encode(n, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&name);
        if !value.is_empty() {
            out.push('=');
            out.push_str(&value);
        }
    }
    out
}

fn is_default_signed(lower: &str) -> bool {
    lower.starts_with("x-oss-") || lower == "content-type" || lower == "content-md5"
}

/// Trimmed values of every header named `lower` (case-insensitive), in order.
fn header_values<'h>(headers: &'h [(String, String)], lower: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(lower))
        .map(|(_, v)| v.trim())
        .collect()
}

fn header_present(headers: &[(String, String)], lower: &str) -> bool {
    header_values(headers, lower).iter().any(|v| !v.is_empty())
}

/// The AdditionalHeaders list as the SDKs compute it: lower-cased, without names that are
/// signed anyway (x-oss-*, content-type, content-md5) or absent/empty in the request,
/// without `authorization`, de-duplicated, sorted.
pub fn additional_headers_list(headers: &[(String, String)], requested: &[String]) -> Vec<String> {
    let mut list: Vec<String> = requested
        .iter()
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| {
            !n.is_empty()
                && !is_default_signed(n)
                && n != "authorization"
                && header_present(headers, n)
        })
        .collect();
    list.sort();
    list.dedup();
    list
}

/// The V4 canonical request. `additional` is the AdditionalHeaders list exactly as it
/// appears in the Authorization header (see [`additional_headers_list`]). The payload hash
/// line is the request's `x-oss-content-sha256`, or `UNSIGNED-PAYLOAD` without one
/// (presigned URLs).
pub fn canonical_request(
    method: &str,
    bucket: Option<&str>,
    key: Option<&str>,
    query: &[(String, String)],
    headers: &[(String, String)],
    additional: &[String],
) -> String {
    let mut signed: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers {
        let lower = name.trim().to_ascii_lowercase();
        if lower == "authorization" {
            continue;
        }
        if is_default_signed(&lower) || additional.contains(&lower) {
            signed.entry(lower).or_default().push(value.trim());
        }
    }
    let payload = header_values(headers, "x-oss-content-sha256")
        .into_iter()
        .find(|v| !v.is_empty())
        .unwrap_or(UNSIGNED_PAYLOAD);

    let mut out = String::with_capacity(256);
    out.push_str(method);
    out.push('\n');
    out.push_str(&canonical_uri(bucket, key));
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for (name, values) in &signed {
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&additional.join(";"));
    out.push('\n');
    out.push_str(payload);
    out
}

/// `YYYYMMDD/region/product/aliyun_v4_request`.
pub fn scope(date: &str, region: &str, product: &str) -> String {
    format!("{date}/{region}/{product}/aliyun_v4_request")
}

/// `OSS4-HMAC-SHA256\n<datetime>\n<scope>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(datetime: &str, scope: &str, canonical_request: &str) -> String {
    let hash = hex::encode(Sha256::digest(canonical_request.as_bytes()));
    format!("{ALGORITHM_V4}\n{datetime}\n{scope}\n{hash}")
}

pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The signing key chain: "aliyun_v4"+secret, date, region, product, "aliyun_v4_request".
/// It depends only on these four inputs, so a caller may cache it for the day.
pub fn signing_key(secret: &str, date: &str, region: &str, product: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("aliyun_v4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_product = hmac_sha256(&k_region, product.as_bytes());
    hmac_sha256(&k_product, b"aliyun_v4_request")
}

/// `(YYYYMMDDTHHMMSSZ, YYYYMMDD)` in UTC.
pub(crate) fn format_time(time: SystemTime) -> (String, String) {
    let t: DateTime<Utc> = time.into();
    (
        t.format("%Y%m%dT%H%M%SZ").to_string(),
        t.format("%Y%m%d").to_string(),
    )
}

/// Parse a strict `YYYYMMDDTHHMMSSZ` (x-oss-date / x-amz-date).
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    if !shape_ok {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok()?;
    Some(naive.and_utc().into())
}

/// Is `t` more than [`MAX_SKEW`] away from `now`?
pub(crate) fn skewed(t: SystemTime, now: SystemTime) -> bool {
    let diff = match now.duration_since(t) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    diff > MAX_SKEW
}

/// Split `ALGO field=v,field=v` / `ALGO field=v, field=v` into fields (any order).
/// Duplicate or unnamed fields are malformed.
pub(crate) fn parse_auth_fields<'a>(
    value: &'a str,
    algorithm: &str,
) -> Result<Vec<(&'a str, &'a str)>, AuthError> {
    let rest = value.trim().strip_prefix(algorithm).ok_or_else(|| {
        AuthError::Malformed(format!("authorization does not start with {algorithm}"))
    })?;
    if !rest.starts_with([' ', '\t']) {
        return Err(AuthError::Malformed(format!(
            "authorization: expected a space after {algorithm}"
        )));
    }
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(AuthError::Malformed("authorization: empty field".into()));
        }
        let (name, val) = part.split_once('=').ok_or_else(|| {
            AuthError::Malformed(format!("authorization: field without '=': {part}"))
        })?;
        let name = name.trim();
        if fields.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::Malformed(format!(
                "authorization: duplicate field {name}"
            )));
        }
        fields.push((name, val.trim()));
    }
    Ok(fields)
}

/// The single value of a header the server requires, or `Malformed`.
pub(crate) fn one_header<'h>(
    headers: &'h [(String, String)],
    lower: &str,
) -> Result<&'h str, AuthError> {
    match header_values(headers, lower).as_slice() {
        [] => Err(AuthError::Malformed(format!("missing {lower} header"))),
        [v] => Ok(v),
        _ => Err(AuthError::Malformed(format!(
            "more than one {lower} header"
        ))),
    }
}

/// Decode a 64-hex-digit signature.
pub(crate) fn parse_signature(hex_sig: &str) -> Result<[u8; 32], AuthError> {
    let mut out = [0u8; 32];
    if hex_sig.len() != 64 || hex::decode_to_slice(hex_sig, &mut out).is_err() {
        return Err(AuthError::Malformed(
            "signature is not 64 hex digits".into(),
        ));
    }
    Ok(out)
}

/// Constant-time check of `HMAC(key, string_to_sign) == signature`.
pub(crate) fn signature_matches(
    key: &[u8; 32],
    string_to_sign: &str,
    signature: &[u8; 32],
) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(signature).is_ok()
}

/// What gets signed, with bucket, key and query DECODED (the canonical form encodes them).
#[derive(Clone, Debug, Default)]
pub struct OssRequest<'a> {
    pub method: &'a str,
    /// `None` for service-level requests (canonical URI `/`).
    pub bucket: Option<&'a str>,
    /// `None` for bucket-level requests (canonical URI `/bucket/`).
    pub key: Option<&'a str>,
    /// Decoded `(name, value)` pairs; a valueless parameter has an empty value.
    pub query: &'a [(String, String)],
    /// Request headers as they will be sent (any case). For verification they also carry
    /// `authorization` and `x-oss-date`.
    pub headers: &'a [(String, String)],
    /// Extra header names to sign (AdditionalHeaders), any case.
    pub additional_headers: &'a [String],
}

/// The result of signing: the intermediate strings (for tests and debugging) and the
/// headers to add to the request.
#[derive(Clone, Debug)]
pub struct Signed {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub signing_key: [u8; 32],
    pub authorization: String,
    /// `(name, value)` to add: x-oss-date, x-oss-content-sha256, x-oss-security-token
    /// (STS only), authorization.
    pub headers: Vec<(String, String)>,
}

/// Sign with header authentication.
///
/// Any `authorization`, `x-oss-date`, `x-oss-content-sha256` (and, with STS credentials,
/// `x-oss-security-token`) already in `req.headers` is ignored and superseded by the
/// values in [`Signed::headers`]: the client must send those instead (replace, not append).
pub fn sign_v4(
    req: &OssRequest<'_>,
    creds: &Credentials,
    region: &str,
    product: &str,
    time: SystemTime,
) -> Signed {
    let (datetime, date) = format_time(time);
    let token = creds.session_token.as_deref().filter(|t| !t.is_empty());

    let mut added: Vec<(String, String)> = vec![
        ("x-oss-date".into(), datetime.clone()),
        ("x-oss-content-sha256".into(), UNSIGNED_PAYLOAD.into()),
    ];
    if let Some(token) = token {
        added.push(("x-oss-security-token".into(), token.to_string()));
    }
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("authorization")
                && !added.iter().any(|(a, _)| n.eq_ignore_ascii_case(a))
        })
        .cloned()
        .collect();
    headers.extend(added.iter().cloned());

    let additional = additional_headers_list(&headers, req.additional_headers);
    let canonical_request = canonical_request(
        req.method,
        req.bucket,
        req.key,
        req.query,
        &headers,
        &additional,
    );
    let scope = scope(&date, region, product);
    let string_to_sign = string_to_sign(&datetime, &scope, &canonical_request);
    let signing_key = signing_key(&creds.access_key_secret, &date, region, product);
    let signature = hex::encode(hmac_sha256(&signing_key, string_to_sign.as_bytes()));

    let mut authorization = format!("{ALGORITHM_V4} Credential={}/{scope}", creds.access_key_id);
    if !additional.is_empty() {
        authorization.push_str(",AdditionalHeaders=");
        authorization.push_str(&additional.join(";"));
    }
    authorization.push_str(",Signature=");
    authorization.push_str(&signature);

    added.push(("authorization".into(), authorization.clone()));
    Signed {
        canonical_request,
        string_to_sign,
        signing_key,
        authorization,
        headers: added,
    }
}

/// A V4 presigned URL's pieces (query authentication).
#[derive(Clone, Debug)]
pub struct Presigned {
    pub canonical_request: String,
    pub string_to_sign: String,
    /// Lower-case hex, also the value of `x-oss-signature` in [`Presigned::query`].
    pub signature: String,
    /// The full decoded query to send: the request's own pairs, then
    /// `x-oss-signature-version`, `x-oss-date`, `x-oss-expires`, `x-oss-credential`,
    /// `x-oss-security-token` (STS), `x-oss-additional-headers` (if any), and last the
    /// unsigned `x-oss-signature`. Encode it with [`encode_query`].
    pub query: Vec<(String, String)>,
}

/// Presign with query authentication, valid for `expires` after `time`. The signed
/// headers (x-oss-*, content-type, content-md5, additional) must be sent with the URL.
/// No x-oss-date or x-oss-content-sha256 header is added; the payload is unsigned.
pub fn presign_v4(
    req: &OssRequest<'_>,
    creds: &Credentials,
    region: &str,
    product: &str,
    time: SystemTime,
    expires: Duration,
) -> Presigned {
    let (datetime, date) = format_time(time);
    let scope = scope(&date, region, product);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    let additional = additional_headers_list(&headers, req.additional_headers);

    let mut query: Vec<(String, String)> = req.query.to_vec();
    query.push(("x-oss-signature-version".into(), ALGORITHM_V4.into()));
    query.push(("x-oss-date".into(), datetime.clone()));
    query.push(("x-oss-expires".into(), expires.as_secs().to_string()));
    query.push((
        "x-oss-credential".into(),
        format!("{}/{scope}", creds.access_key_id),
    ));
    if let Some(token) = creds.session_token.as_deref().filter(|t| !t.is_empty()) {
        query.push(("x-oss-security-token".into(), token.to_string()));
    }
    if !additional.is_empty() {
        query.push(("x-oss-additional-headers".into(), additional.join(";")));
    }

    let canonical_request = canonical_request(
        req.method,
        req.bucket,
        req.key,
        &query,
        &headers,
        &additional,
    );
    let string_to_sign = string_to_sign(&datetime, &scope, &canonical_request);
    let key = signing_key(&creds.access_key_secret, &date, region, product);
    let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
    query.push(("x-oss-signature".into(), signature.clone()));
    Presigned {
        canonical_request,
        string_to_sign,
        signature,
        query,
    }
}

/// Why a request's signature was refused, mapped by the server to OSS error codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or malformed Authorization / x-oss-date: AccessDenied or InvalidArgument.
    #[error("malformed authorization: {0}")]
    Malformed(String),
    /// InvalidAccessKeyId.
    #[error("unknown access key id {0}")]
    UnknownKey(String),
    /// SignatureDoesNotMatch, with the server's string to sign for the client's debugging.
    #[error("signature does not match")]
    Mismatch { string_to_sign: String },
    /// RequestTimeTooSkewed (more than 15 minutes from the server's clock).
    #[error("request time too skewed")]
    Skewed,
}

/// A parsed V4 `Credential=AK/date/region/product/terminator` value.
pub(crate) struct Credential<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Parse `AK/YYYYMMDD/region/service/<terminator>`. The key id is everything before the
/// last four segments.
pub(crate) fn parse_credential<'a>(
    value: &'a str,
    terminator: &str,
) -> Result<Credential<'a>, AuthError> {
    let bad = || {
        AuthError::Malformed(format!(
            "credential is not AK/date/region/service/{terminator}"
        ))
    };
    let mut it = value.rsplitn(5, '/');
    let term = it.next().ok_or_else(bad)?;
    let service = it.next().ok_or_else(bad)?;
    let region = it.next().ok_or_else(bad)?;
    let date = it.next().ok_or_else(bad)?;
    let access_key_id = it.next().ok_or_else(bad)?;
    if term != terminator
        || access_key_id.is_empty()
        || region.is_empty()
        || service.is_empty()
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    Ok(Credential {
        access_key_id,
        date,
        region,
        service,
    })
}

/// Verify a V4-signed request as a server would. `secret_for(access_key_id)` returns the
/// secret of a known key. Region and product are taken from the credential scope.
///
/// Order of checks: Authorization syntax (Malformed), key id (UnknownKey), x-oss-date
/// present, well-formed and on the scope date (Malformed), clock skew (Skewed),
/// `x-oss-content-sha256: UNSIGNED-PAYLOAD` and every AdditionalHeaders name present
/// (Malformed), then the signature (Mismatch). `req.additional_headers` is ignored: the
/// list that counts is the one in the Authorization header.
pub fn verify_v4(
    req: &OssRequest<'_>,
    secret_for: &dyn Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<(), AuthError> {
    let auth = one_header(req.headers, "authorization")?;
    let fields = parse_auth_fields(auth, ALGORITHM_V4)?;
    let (mut credential, mut signature, mut additional) = (None, None, None);
    for (name, value) in fields {
        match name {
            "Credential" => credential = Some(value),
            "Signature" => signature = Some(value),
            "AdditionalHeaders" => additional = Some(value),
            other => {
                return Err(AuthError::Malformed(format!(
                    "authorization: unknown field {other}"
                )))
            }
        }
    }
    let credential = credential
        .ok_or_else(|| AuthError::Malformed("authorization: missing Credential".into()))?;
    let signature =
        signature.ok_or_else(|| AuthError::Malformed("authorization: missing Signature".into()))?;
    let cred = parse_credential(credential, "aliyun_v4_request")?;
    let signature = parse_signature(signature)?;
    let additional: Vec<String> = match additional {
        None => Vec::new(),
        Some(list) => {
            let names: Vec<String> = list
                .split(';')
                .map(|n| n.trim().to_ascii_lowercase())
                .collect();
            if names.iter().any(|n| n.is_empty()) {
                return Err(AuthError::Malformed(
                    "empty name in AdditionalHeaders".into(),
                ));
            }
            names
        }
    };

    let secret = secret_for(cred.access_key_id)
        .ok_or_else(|| AuthError::UnknownKey(cred.access_key_id.to_string()))?;

    let datetime = one_header(req.headers, "x-oss-date")?;
    let time = parse_time(datetime).ok_or_else(|| {
        AuthError::Malformed(format!("x-oss-date {datetime:?} is not YYYYMMDDTHHMMSSZ"))
    })?;
    if &datetime[..8] != cred.date {
        return Err(AuthError::Malformed(
            "x-oss-date does not match the credential scope date".into(),
        ));
    }
    if skewed(time, now) {
        return Err(AuthError::Skewed);
    }
    if one_header(req.headers, "x-oss-content-sha256")? != UNSIGNED_PAYLOAD {
        return Err(AuthError::Malformed(
            "x-oss-content-sha256 must be UNSIGNED-PAYLOAD".into(),
        ));
    }
    for name in &additional {
        if name == "authorization" {
            return Err(AuthError::Malformed(
                "authorization cannot be signed".into(),
            ));
        }
        if !header_present(req.headers, name) {
            return Err(AuthError::Malformed(format!(
                "AdditionalHeaders names {name}, which the request does not carry"
            )));
        }
    }

    let canonical = canonical_request(
        req.method,
        req.bucket,
        req.key,
        req.query,
        req.headers,
        &additional,
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

/// Query parameters that V1 signs (the Python v2 SDK's `_subresource_key_set`, which is
/// the Go SDK's list plus `resourceGroup`); names starting with `x-oss-` are signed too.
const V1_SUBRESOURCES: &[&str] = &[
    "acl",
    "append",
    "bucketInfo",
    "callback",
    "callback-var",
    "cloudboxes",
    "continuation-token",
    "delete",
    "location",
    "objectMeta",
    "partNumber",
    "position",
    "regionList",
    "resourceGroup",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "stat",
    "symlink",
    "tagging",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
];

/// The result of V1 signing.
#[derive(Clone, Debug)]
pub struct SignedV1 {
    pub string_to_sign: String,
    /// `OSS <AccessKeyId>:<base64 HMAC-SHA1>`.
    pub authorization: String,
    /// `(name, value)` to add: `date` (only when the request had neither `Date` nor
    /// `x-oss-date`), `x-oss-security-token` (STS), `authorization`.
    pub headers: Vec<(String, String)>,
}

/// Legacy V1 header signing (HMAC-SHA1). Kept so the V1 vectors are checked; use V4.
///
/// The Date slot takes `x-oss-date` if the request has one (as the Python SDK does),
/// else its `Date` header, else `time` in RFC 1123 form (then added as `date`). The
/// canonical resource is `/bucket/key` NOT encoded, plus whitelisted sub-resources.
pub fn sign_v1(req: &OssRequest<'_>, creds: &Credentials, time: SystemTime) -> SignedV1 {
    let mut added: Vec<(String, String)> = Vec::new();
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    if let Some(token) = creds.session_token.as_deref().filter(|t| !t.is_empty()) {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("x-oss-security-token"));
        headers.push(("x-oss-security-token".into(), token.to_string()));
        added.push(("x-oss-security-token".into(), token.to_string()));
    }
    let first = |name: &str| header_values(&headers, name).first().map(|v| v.to_string());
    let date = match first("x-oss-date").or_else(|| first("date")) {
        Some(d) => d,
        None => {
            let d = httpdate::fmt_http_date(time);
            added.insert(0, ("date".into(), d.clone()));
            d
        }
    };

    let mut oss_headers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, value) in &headers {
        let lower = name.trim().to_ascii_lowercase();
        if lower.starts_with("x-oss-") {
            oss_headers.entry(lower).or_default().push(value.trim());
        }
    }

    let mut resource = String::from("/");
    if let Some(bucket) = req.bucket {
        resource.push_str(bucket);
        resource.push('/');
    }
    if let Some(key) = req.key {
        resource.push_str(key);
    }
    let mut params: Vec<&(String, String)> = req
        .query
        .iter()
        .filter(|(n, _)| V1_SUBRESOURCES.contains(&n.as_str()) || n.starts_with("x-oss-"))
        .collect();
    params.sort();
    for (i, (name, value)) in params.into_iter().enumerate() {
        resource.push(if i == 0 { '?' } else { '&' });
        resource.push_str(name);
        if !value.is_empty() {
            resource.push('=');
            resource.push_str(value);
        }
    }

    let mut sts = String::new();
    sts.push_str(req.method);
    sts.push('\n');
    sts.push_str(&first("content-md5").unwrap_or_default());
    sts.push('\n');
    sts.push_str(&first("content-type").unwrap_or_default());
    sts.push('\n');
    sts.push_str(&date);
    sts.push('\n');
    for (name, values) in &oss_headers {
        sts.push_str(name);
        sts.push(':');
        sts.push_str(&values.join(","));
        sts.push('\n');
    }
    sts.push_str(&resource);

    let mut mac = Hmac::<Sha1>::new_from_slice(creds.access_key_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(sts.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let authorization = format!("OSS {}:{signature}", creds.access_key_id);
    added.push(("authorization".into(), authorization.clone()));
    SignedV1 {
        string_to_sign: sts,
        authorization,
        headers: added,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AK: &str = "LTAI5tTestKey";
    const SK: &str = "TestSecret0123456789";

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            session_token: token.map(str::to_string),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
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

    /// Sign `req` and return the headers as the server receives them.
    fn sent(req: &OssRequest<'_>, c: &Credentials, t: SystemTime) -> Vec<(String, String)> {
        let signed = sign_v4(req, c, "cn-hangzhou", "oss", t);
        let mut out: Vec<(String, String)> = req.headers.to_vec();
        out.extend(signed.headers);
        out
    }

    #[test]
    fn encoder_keeps_only_unreserved() {
        assert_eq!(uri_encode("AZaz09-_.~", true), "AZaz09-_.~");
        assert_eq!(uri_encode("a b+c*d%e/f", false), "a%20b%2Bc%2Ad%25e/f");
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
        assert_eq!(uri_encode("naïve 文", false), "na%C3%AFve%20%E6%96%87");
        assert_eq!(
            uri_encode("()!'=&?#;:", true),
            "%28%29%21%27%3D%26%3F%23%3B%3A"
        );
        assert_eq!(uri_encode("\u{0}\u{7f}", true), "%00%7F");
        assert_eq!(uri_encode("", true), "");
    }

    #[test]
    fn canonical_uri_forms() {
        assert_eq!(canonical_uri(None, None), "/");
        assert_eq!(canonical_uri(Some("b"), None), "/b/");
        assert_eq!(canonical_uri(Some("b"), Some("a b/c+d")), "/b/a%20b/c%2Bd");
    }

    #[test]
    fn canonical_query_sorts_encoded_names_and_drops_empty_equals() {
        let q = h(&[
            ("prefix", "a/b "),
            ("acl", ""),
            ("+x", "1"),
            ("list-type", "2"),
        ]);
        assert_eq!(
            canonical_query(&q),
            "%2Bx=1&acl&list-type=2&prefix=a%2Fb%20"
        );
        assert_eq!(encode_query(&q), "prefix=a%2Fb%20&acl&%2Bx=1&list-type=2");
    }

    #[test]
    fn additional_headers_are_filtered_lowercased_sorted() {
        let headers = h(&[
            ("Range", "bytes=0-1"),
            ("If-Match", "\"e\""),
            ("Empty", " "),
        ]);
        let asked: Vec<String> = [
            "range",
            "X-Oss-Foo",
            "If-Match",
            "content-type",
            "Missing",
            "empty",
            "RANGE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            additional_headers_list(&headers, &asked),
            ["if-match", "range"]
        );
    }

    #[test]
    fn time_parsing_is_strict() {
        assert_eq!(parse_time("20240315T083000Z"), Some(at(1_710_491_400)));
        for bad in [
            "",
            "2024315T083000Z",
            "20240315T083000",
            "20241315T083000Z",
            "2024031ST083000Z",
            "20240315T08300éZ",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trip_accepts_awkward_keys_and_queries() {
        let t = at(1_710_491_400);
        for key in [
            "plain.txt",
            "dir one/a b.txt",
            "a+b%20c",
            "视频/naïve.mp4",
            "tilde~star*(1)!",
            "a/../b",
            "",
        ] {
            let query = h(&[("versionId", "v+1/="), ("acl", ""), ("x", "a b")]);
            let headers = h(&[
                ("Range", "bytes=0-9"),
                ("x-oss-range-behavior", "standard"),
                ("If-Match", "\"abc\""),
            ]);
            let additional = vec!["Range".to_string(), "if-match".to_string()];
            for token in [None, Some("sts+token/==")] {
                let c = creds(token);
                let req = OssRequest {
                    method: "GET",
                    bucket: Some("bucket"),
                    key: Some(key),
                    query: &query,
                    headers: &headers,
                    additional_headers: &additional,
                };
                let all = sent(&req, &c, t);
                let server = OssRequest {
                    headers: &all,
                    additional_headers: &[],
                    ..req.clone()
                };
                assert_eq!(verify_v4(&server, &lookup, t), Ok(()), "{key:?} {token:?}");
            }
        }
        // Service and bucket level.
        for (bucket, key) in [(None, None), (Some("bucket"), None)] {
            let req = OssRequest {
                method: "GET",
                bucket,
                key,
                ..Default::default()
            };
            let all = sent(&req, &creds(None), t);
            let server = OssRequest {
                headers: &all,
                ..req.clone()
            };
            assert_eq!(verify_v4(&server, &lookup, t), Ok(()));
        }
    }

    #[test]
    fn oss2_layout_with_spaces_and_additional_headers_last_is_accepted() {
        let t = at(1_710_491_400);
        let headers = h(&[("Range", "bytes=0-9")]);
        let additional = vec!["range".to_string()];
        let req = OssRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            headers: &headers,
            additional_headers: &additional,
            ..Default::default()
        };
        let signed = sign_v4(&req, &creds(None), "cn-hangzhou", "oss", t);
        let sig = signed.authorization.rsplit_once("Signature=").unwrap().1;
        let cred = signed
            .authorization
            .split_once("Credential=")
            .unwrap()
            .1
            .split(',')
            .next()
            .unwrap();
        let oss2 =
            format!("OSS4-HMAC-SHA256 Credential={cred}, Signature={sig}, AdditionalHeaders=range");
        let mut all = headers.clone();
        all.extend(
            signed
                .headers
                .into_iter()
                .filter(|(n, _)| n != "authorization"),
        );
        all.push(("Authorization".into(), oss2));
        let server = OssRequest {
            headers: &all,
            ..req
        };
        assert_eq!(verify_v4(&server, &lookup, t), Ok(()));
    }

    #[test]
    fn refusals() {
        let t = at(1_710_491_400);
        let query = h(&[("versionId", "1")]);
        let headers = h(&[("x-oss-meta-a", "1"), ("Range", "bytes=0-9")]);
        let additional = vec!["range".to_string()];
        let req = OssRequest {
            method: "GET",
            bucket: Some("bucket"),
            key: Some("dir/a b+c.txt"),
            query: &query,
            headers: &headers,
            additional_headers: &additional,
        };
        let all = sent(&req, &creds(None), t);
        let server = OssRequest {
            headers: &all,
            ..req.clone()
        };
        assert_eq!(verify_v4(&server, &lookup, t), Ok(()));

        // Wrong secret: Mismatch carrying the server's string to sign.
        let wrong = |k: &str| (k == AK).then(|| "not-the-secret".to_string());
        match verify_v4(&server, &wrong, t) {
            Err(AuthError::Mismatch { string_to_sign }) => {
                assert_eq!(
                    string_to_sign,
                    sign_v4(&req, &creds(None), "cn-hangzhou", "oss", t).string_to_sign
                )
            }
            other => panic!("expected Mismatch, got {other:?}"),
        }
        // Unknown key.
        assert_eq!(
            verify_v4(&server, &|_: &str| None, t),
            Err(AuthError::UnknownKey(AK.into()))
        );
        let mismatch = |r: &OssRequest<'_>| {
            matches!(verify_v4(r, &lookup, t), Err(AuthError::Mismatch { .. }))
        };
        // Tampered key, bucket, method, query, signed header, additional header.
        assert!(mismatch(&OssRequest {
            key: Some("dir/a b+c.txT"),
            ..server.clone()
        }));
        assert!(mismatch(&OssRequest {
            key: Some("dir/a%20b+c.txt"),
            ..server.clone()
        }));
        assert!(mismatch(&OssRequest {
            bucket: Some("other"),
            ..server.clone()
        }));
        assert!(mismatch(&OssRequest {
            method: "HEAD",
            ..server.clone()
        }));
        let q2 = h(&[("versionId", "2")]);
        assert!(mismatch(&OssRequest {
            query: &q2,
            ..server.clone()
        }));
        let q3 = h(&[("versionId", "1"), ("acl", "")]);
        assert!(mismatch(&OssRequest {
            query: &q3,
            ..server.clone()
        }));
        for (name, value) in [("x-oss-meta-a", "2"), ("Range", "bytes=0-10")] {
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
                mismatch(&OssRequest {
                    headers: &tampered,
                    ..server.clone()
                }),
                "{name}"
            );
        }
        // An added x-oss-* header is signed by default, so adding one breaks the signature.
        let mut extra = all.clone();
        extra.push(("x-oss-meta-b".into(), "1".into()));
        assert!(mismatch(&OssRequest {
            headers: &extra,
            ..server.clone()
        }));
        // Unsigned headers may change freely.
        let mut free = all.clone();
        free.push(("User-Agent".into(), "x".into()));
        free.push(("Date".into(), "whatever".into()));
        assert_eq!(
            verify_v4(
                &OssRequest {
                    headers: &free,
                    ..server.clone()
                },
                &lookup,
                t
            ),
            Ok(())
        );

        // Skew: 15 minutes is fine, a second more is not, both directions.
        assert_eq!(verify_v4(&server, &lookup, t + MAX_SKEW), Ok(()));
        assert_eq!(verify_v4(&server, &lookup, t - MAX_SKEW), Ok(()));
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
        let t = at(1_710_491_400);
        let req = OssRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
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
        let scope_part = format!("Credential={AK}/20240315/cn-hangzhou/oss/aliyun_v4_request");
        let garbage = [
            String::new(),
            "OSS4-HMAC-SHA256".into(),
            "OSS4-HMAC-SHA256 ".into(),
            "OSS4-HMAC-SHA256Credential=x".into(),
            "OSS ak:sig".into(),
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00".into(),
            "OSS4-HMAC-SHA256 Credential=,Signature=".into(),
            format!("OSS4-HMAC-SHA256 Signature={sig}"),
            format!("OSS4-HMAC-SHA256 {scope_part}"),
            format!("OSS4-HMAC-SHA256 {scope_part},Signature=xyz"),
            format!("OSS4-HMAC-SHA256 {scope_part},Signature={sig}0"),
            format!("OSS4-HMAC-SHA256 {scope_part},Signature=é{}", &sig[2..]),
            format!("OSS4-HMAC-SHA256 {scope_part},,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 {scope_part},Signature={sig},Signature={sig}"),
            format!("OSS4-HMAC-SHA256 {scope_part},AdditionalHeaders=,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 {scope_part},AdditionalHeaders=range,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 {scope_part},Foo=bar,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={AK}/2024/cn-hangzhou/oss/aliyun_v4_request,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={AK}/20240315/cn-hangzhou/oss/aws4_request,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential=/20240315/cn-hangzhou/oss/aliyun_v4_request,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential=20240315/cn-hangzhou/oss/aliyun_v4_request,Signature={sig}"),
        ];
        for g in &garbage {
            let mut headers: Vec<(String, String)> = good
                .iter()
                .filter(|(n, _)| n != "authorization")
                .cloned()
                .collect();
            headers.push(("Authorization".into(), g.clone()));
            let r = OssRequest {
                headers: &headers,
                ..req.clone()
            };
            assert!(
                matches!(verify_v4(&r, &lookup, t), Err(AuthError::Malformed(_))),
                "{g:?} gave {:?}",
                verify_v4(&r, &lookup, t)
            );
        }
        // Missing/duplicate Authorization, missing or odd x-oss-date, other date, bad sha256.
        let without = |name: &str| -> Vec<(String, String)> {
            good.iter().filter(|(n, _)| n != name).cloned().collect()
        };
        let with = |name: &str, value: &str| -> Vec<(String, String)> {
            let mut v = without(name);
            v.push((name.to_string(), value.to_string()));
            v
        };
        let mut twice = good.clone();
        twice.push(("Authorization".into(), auth.clone()));
        let cases = [
            without("authorization"),
            twice,
            without("x-oss-date"),
            with("x-oss-date", "20240315T083000"),
            with("x-oss-date", "Fri, 15 Mar 2024 08:30:00 GMT"),
            with("x-oss-date", "20240316T083000Z"),
            without("x-oss-content-sha256"),
            with(
                "x-oss-content-sha256",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ];
        for headers in &cases {
            let r = OssRequest {
                headers,
                ..req.clone()
            };
            assert!(
                matches!(verify_v4(&r, &lookup, t), Err(AuthError::Malformed(_))),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn signer_replaces_its_own_headers() {
        let t = at(1_710_491_400);
        let headers = h(&[
            ("X-Oss-Date", "stale"),
            ("authorization", "old"),
            ("x-oss-content-sha256", "x"),
        ]);
        let req = OssRequest {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            headers: &headers,
            ..Default::default()
        };
        let signed = sign_v4(&req, &creds(Some("tok")), "cn-hangzhou", "oss", t);
        assert!(signed
            .canonical_request
            .contains("x-oss-date:20240315T083000Z\n"));
        assert!(!signed.canonical_request.contains("stale"));
        assert!(signed.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
        let names: Vec<&str> = signed.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-oss-date",
                "x-oss-content-sha256",
                "x-oss-security-token",
                "authorization"
            ]
        );
    }
}
