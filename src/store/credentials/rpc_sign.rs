//! The classic Alibaba Cloud RPC signature (`SignatureMethod=HMAC-SHA1`,
//! `SignatureVersion=1.0`) that STS `AssumeRole` is signed with, as credentials-go
//! (`credentials/providers/ram_role_arn.go`) and alibabacloud-credentials
//! (`utils/parameter_helper.py`) compute it:
//!
//! ```text
//! canonicalized = sorted by name: percent(name) "=" percent(value), joined by "&"
//!                 (query and form parameters together, Signature excluded)
//! string_to_sign = METHOD "&" percent("/") "&" percent(canonicalized)
//! Signature      = base64(HMAC-SHA1(secret + "&", string_to_sign))
//! ```
//!
//! `percent` is RFC 3986 with upper-case hex: only `A-Z a-z 0-9 - _ . ~` stay (Go's
//! `url.Values.Encode` plus its `+`->`%20`, `*`->`%2A`, `%7E`->`~` fix-ups). Pure functions:
//! the client and `ossmount serve`'s fake STS share them, and
//! `tests/data/vectors/sts_rpc_signature.json` (vectors from the SDKs' own tests) pins them.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::store::sign_oss::uri_encode;

pub fn percent(s: &str) -> String {
    uri_encode(s, true)
}

/// The string to sign for `params` (decoded, in any order; `Signature` must not be among
/// them).
pub fn string_to_sign(method: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let canonical = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("{method}&{}&{}", percent("/"), percent(&canonical))
}

/// `base64(HMAC-SHA1(key, message))`.
pub fn hmac_sha1_base64(key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Signature` parameter for `params` signed with `secret`.
pub fn signature(method: &str, params: &[(String, String)], secret: &str) -> String {
    hmac_sha1_base64(&format!("{secret}&"), &string_to_sign(method, params))
}

/// `name=value` pairs joined by `&`, encoded with [`percent`]: a query string or an
/// `application/x-www-form-urlencoded` body that decodes to exactly what was signed.
pub fn encode_pairs(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../../tests/data/vectors/sts_rpc_signature.json");

    fn pairs(v: &Value) -> Vec<(String, String)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn sdk_vectors() {
        let v: Value = serde_json::from_str(VECTORS).unwrap();
        let mut n = 0;
        for case in v["string_to_sign"].as_array().unwrap() {
            let got = string_to_sign(case["method"].as_str().unwrap(), &pairs(&case["params"]));
            assert_eq!(got, case["expected"].as_str().unwrap(), "{}", case["from"]);
            n += 1;
        }
        for case in v["hmac_sha1"].as_array().unwrap() {
            let got = hmac_sha1_base64(
                case["key"].as_str().unwrap(),
                case["message"].as_str().unwrap(),
            );
            assert_eq!(got, case["expected"].as_str().unwrap(), "{}", case["from"]);
            n += 1;
        }
        for case in v["signature"].as_array().unwrap() {
            let params = pairs(&case["params"]);
            let method = case["method"].as_str().unwrap();
            assert_eq!(
                string_to_sign(method, &params),
                case["string_to_sign"].as_str().unwrap(),
                "{}",
                case["from"]
            );
            let got = signature(method, &params, case["secret"].as_str().unwrap());
            assert_eq!(got, case["expected"].as_str().unwrap(), "{}", case["from"]);
            n += 1;
        }
        assert!(n >= 8, "{n} vectors");
    }

    #[test]
    fn order_does_not_matter_and_encoding_is_strict() {
        let a = vec![
            ("B".to_string(), "x y*~".to_string()),
            ("A".to_string(), "1".to_string()),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(signature("POST", &a, "s"), signature("POST", &b, "s"));
        assert_eq!(
            string_to_sign("POST", &a),
            "POST&%2F&A%3D1%26B%3Dx%2520y%252A~"
        );
        assert_eq!(encode_pairs(&a), "B=x%20y%2A~&A=1");
    }
}
