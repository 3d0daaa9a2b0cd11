//! Property tests of what `serve` decodes from a client (issue 16): the Range header, the
//! path and the query string, and the Authorization header. Thousands of generated inputs
//! each: no panic, and the answers keep their promises (a satisfiable range lies inside
//! the object; no path, however encoded, opens a file outside DIR).

use std::time::SystemTime;

use proptest::prelude::*;

use super::auth::{verify, Keys, Signed};
use super::object::{parse_range, resolve_range, RangeSpec, Resolved};
use super::resolve::{decode_path, decode_query, Root, Target};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(3000)
}

/// Range-ish headers: a vocabulary of the pieces a Range header is made of, in any order.
fn range_header() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("bytes=".to_string()),
        Just("-".to_string()),
        Just(",".to_string()),
        Just(" ".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        (0u64..2000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[ -~]{0,4}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

/// Path segments that try to climb out: dots, encoded dots and slashes, NULs, names.
fn hostile_path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just(".."),
        Just("."),
        Just("%2e%2e"),
        Just("%2E."),
        Just(".%2e"),
        Just("%2f"),
        Just("%2F.."),
        Just("%00"),
        Just(""),
        Just("b"),
        Just("f"),
        Just("secret"),
        Just("sub"),
        Just("link"),
        Just("%ff"),
        Just("%"),
    ];
    (prop::collection::vec(seg, 0..8), prop::bool::ANY).prop_map(|(v, slash)| {
        let p = v.join(if slash { "/" } else { "%2F" });
        format!("/{p}")
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn ranges_parse_without_panic_and_resolve_inside_the_object(
        h in range_header(),
        size in prop_oneof![Just(0u64), 1u64..5000, Just(u64::MAX)],
        standard in any::<bool>(),
    ) {
        let spec = parse_range(&h);
        if let Some(RangeSpec::From(a, Some(b))) = spec {
            prop_assert!(a <= b);
        }
        match resolve_range(spec, size, standard) {
            Resolved::Partial(start, end) => {
                prop_assert!(start < end, "{h:?}: {start}..{end}");
                prop_assert!(end <= size, "{h:?}: {start}..{end} of {size}");
            }
            Resolved::Whole | Resolved::Unsatisfiable => {}
        }
    }

    #[test]
    fn queries_decode_without_panic(raw in "[ -~]{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_query(Some(&raw));
        let lossy = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(pairs) = decode_query(Some(&lossy)) {
            prop_assert!(pairs.len() <= lossy.len());
        }
    }

    #[test]
    fn authorization_headers_of_any_shape_are_refused_without_panic(
        prefix in prop_oneof![
            Just("OSS4-HMAC-SHA256 "),
            Just("AWS4-HMAC-SHA256 "),
            Just("OSS4-HMAC-SHA256"),
            Just("AWS "),
            Just(""),
        ],
        body in prop::collection::vec(
            prop_oneof![
                Just("Credential=".to_string()),
                Just("AK/20240101/cn-hangzhou/oss/aliyun_v4_request".to_string()),
                Just("ak/20240101/us-east-1/s3/aws4_request".to_string()),
                Just("SignedHeaders=".to_string()),
                Just("host;x-oss-date".to_string()),
                Just("AdditionalHeaders=".to_string()),
                Just("Signature=".to_string()),
                Just("deadbeef".repeat(8)),
                Just(",".to_string()),
                Just("/".to_string()),
                Just(" ".to_string()),
                "[ -~]{0,12}",
            ],
            0..12,
        ),
        date in prop_oneof![Just("20240101T000000Z".to_string()), "[0-9TZ]{0,18}"],
    ) {
        let auth = format!("{prefix}{}", body.concat());
        let keys = Keys::single("AK", "secret");
        let headers = vec![
            ("host".to_string(), "127.0.0.1".to_string()),
            ("x-oss-date".to_string(), date.clone()),
            ("x-amz-date".to_string(), date),
            ("x-oss-content-sha256".to_string(), "UNSIGNED-PAYLOAD".to_string()),
        ];
        let req = Signed {
            method: "GET",
            bucket: Some("b"),
            key: Some("k"),
            path: "/b/k",
            query: &[],
            headers: &headers,
            authorization: Some(&auth),
        };
        // Nothing here knows the secret: every one must be refused, none may panic.
        prop_assert!(verify(&keys, "cn-hangzhou", &req, SystemTime::now()).is_err());
    }
}

#[test]
fn no_path_opens_a_file_outside_dir() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("root");
    std::fs::create_dir_all(dir.join("b/sub")).unwrap();
    std::fs::write(dir.join("b/f"), "inside").unwrap();
    std::fs::write(dir.join("b/sub/f"), "inside").unwrap();
    std::fs::write(t.path().join("secret"), "outside").unwrap();
    std::os::unix::fs::symlink(t.path().join("secret"), dir.join("b/link")).unwrap();
    let root = Root::new(&dir).unwrap();
    let canon_root = dir.canonicalize().unwrap();
    // 1000 cases: each is a few syscalls (canonicalize, open).
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1000));
    runner
        .run(&hostile_path(), |raw| {
            let Ok(path) = decode_path(&raw) else {
                return Ok(());
            };
            let Ok(Target::Object { bucket, key }) = root.target(&path, None) else {
                return Ok(());
            };
            let Some(bucket_dir) = root.bucket_dir(&bucket) else {
                return Ok(());
            };
            if let Ok((p, _)) = root.open_object(&bucket_dir, &key) {
                prop_assert!(p.starts_with(&canon_root), "{raw:?} opened {}", p.display());
                prop_assert_eq!(std::fs::read_to_string(&p).unwrap(), "inside");
            }
            Ok(())
        })
        .unwrap();
}
