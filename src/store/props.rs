//! Property tests of what the client decodes from a server (issue 16): listing XML (with
//! its checks and URL-decoding), error XML, and the base64 `x-oss-err` header of a failed
//! HEAD. Inputs are arbitrary bytes, element soups from the formats' own vocabulary, and
//! valid documents with random edits; none may panic, and a page that parses keeps its
//! promises (no more entries than asked for, a token when truncated).

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;

use super::http::{parse_listing, service_error, x_oss_err_text};
use super::xml::{from_xml, to_xml, CommonPrefix, Contents, ErrorBody, ListBucketResult};
use super::ListRequest;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(2000)
}

/// Element soup: tags of both formats, entities, CDATA, comments, odd text, nesting.
fn soup() -> impl Strategy<Value = String> {
    let tag = prop_oneof![
        Just("ListBucketResult"),
        Just("Contents"),
        Just("Key"),
        Just("Size"),
        Just("ETag"),
        Just("LastModified"),
        Just("IsTruncated"),
        Just("NextContinuationToken"),
        Just("CommonPrefixes"),
        Just("Prefix"),
        Just("EncodingType"),
        Just("MaxKeys"),
        Just("Error"),
        Just("Code"),
        Just("Message"),
        Just("RequestId"),
        Just("EC"),
        Just("x"),
    ];
    let text = prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("url".to_string()),
        Just("%ff%fe".to_string()),
        Just("%2F%".to_string()),
        Just("&amp;&lt;&#x0;&#xD800;&bogus;".to_string()),
        Just("<![CDATA[ ]]>".to_string()),
        Just("<!-- c -->".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        (0u64..3000).prop_map(|n| n.to_string()),
        "[ -~]{0,10}",
    ];
    let leaf = (tag.clone(), text).prop_map(|(t, x)| format!("<{t}>{x}</{t}>"));
    let tree = leaf.prop_recursive(3, 24, 6, move |inner| {
        (tag.clone(), prop::collection::vec(inner, 0..6))
            .prop_map(|(t, kids)| format!("<{t}>{}</{t}>", kids.concat()))
    });
    (prop::collection::vec(tree, 0..4), any::<bool>()).prop_map(|(v, decl)| {
        let body = v.concat();
        if decl {
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}")
        } else {
            body
        }
    })
}

fn valid_listing() -> String {
    to_xml(&ListBucketResult {
        name: "b".into(),
        encoding_type: Some("url".into()),
        is_truncated: true,
        next_continuation_token: Some("t%2Fok".into()),
        contents: (0..3)
            .map(|i| Contents {
                key: format!("dir/k%20{i}"),
                size: 10,
                etag: "\"e\"".into(),
                last_modified: "2024-01-01T00:00:00.000Z".into(),
                ..Default::default()
            })
            .collect(),
        common_prefixes: vec![CommonPrefix {
            prefix: "dir/sub/".into(),
        }],
        ..Default::default()
    })
    .unwrap()
}

/// A valid document with up to 8 random byte edits (replace, insert, delete).
fn mutated(doc: String) -> impl Strategy<Value = String> {
    let n = doc.len();
    prop::collection::vec((0..n.max(1), any::<u8>(), 0u8..3), 0..8).prop_map(move |edits| {
        let mut b = doc.clone().into_bytes();
        for (at, byte, op) in edits {
            let at = at.min(b.len());
            match op {
                0 if at < b.len() => b[at] = byte,
                1 => b.insert(at, byte),
                _ if at < b.len() => {
                    b.remove(at);
                }
                _ => {}
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

fn listing_ok(text: &str, max_keys: u32) -> Result<(), TestCaseError> {
    let req = ListRequest {
        max_keys,
        ..Default::default()
    };
    if let Ok(page) = parse_listing(text, &req, "prop") {
        let asked = if max_keys == 0 {
            1000
        } else {
            max_keys.min(1000)
        } as usize;
        prop_assert!(page.objects.len() + page.common_prefixes.len() <= asked);
        if let Some(t) = &page.next_continuation_token {
            prop_assert!(!t.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn listing_soup_never_panics(doc in soup(), max_keys in prop_oneof![Just(0u32), 1u32..5, Just(1000)]) {
        listing_ok(&doc, max_keys)?;
        let _ = from_xml::<ErrorBody>(&doc);
    }

    #[test]
    fn damaged_listings_never_panic(doc in mutated(valid_listing()), max_keys in 1u32..6) {
        listing_ok(&doc, max_keys)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        listing_ok(&text, 1000)?;
        let e = service_error(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), Some(&text));
        prop_assert!(e.to_string().len() < 2000, "error messages stay short");
    }

    #[test]
    fn error_bodies_and_x_oss_err_never_panic(
        doc in prop_oneof![
            soup(),
            mutated("<Error><Code>NoSuchKey</Code><Message>m</Message><RequestId>r</RequestId><EC>0026-00000001</EC></Error>".into()),
        ],
        status in 100u16..600,
        raw_header in "[ -~]{0,80}",
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let _ = service_error(status, &HeaderMap::new(), Some(&doc));
        // The header as a server would send it (base64 of the document), and as junk.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_bytes());
        for v in [b64.as_str(), raw_header.as_str()] {
            if let Ok(hv) = HeaderValue::from_str(v) {
                let text = x_oss_err_text(&hv);
                let _ = service_error(status, &HeaderMap::new(), text.as_deref());
            }
        }
    }
}

#[test]
fn deeply_nested_xml_is_an_error_not_a_stack_overflow() {
    for depth in [1_000, 100_000] {
        let doc = format!(
            "<ListBucketResult>{}{}</ListBucketResult>",
            "<Contents>".repeat(depth),
            "</Contents>".repeat(depth)
        );
        let _ = parse_listing(&doc, &ListRequest::default(), "deep");
        let doc = format!("{}{}", "<x>".repeat(depth), "</x>".repeat(depth));
        let _ = parse_listing(&doc, &ListRequest::default(), "deep");
    }
}
