//! `ossmount serve` over real HTTP: ranges, headers, listings, path safety, addressing,
//! faults, identity caching and authentication. Raw HTTP/1.1 over `std::net::TcpStream`,
//! so what is tested is the wire, not a client library's interpretation of it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{pattern, write_pattern_file, Faults, Serve, AK, SK};
use md5::{Digest, Md5};
use ossmount::serve::list::ListBucketResultV1;
use ossmount::store::sign_oss::{self, OssRequest};
use ossmount::store::sign_s3::{self, S3Request};
use ossmount::store::xml::{from_xml, ErrorBody, ListBucketResult};
use ossmount::store::Credentials;

/// One parsed response. `error` is set when the connection broke before the body ended.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    error: Option<std::io::ErrorKind>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn error_code(&self) -> String {
        from_xml::<ErrorBody>(&self.text())
            .unwrap_or_else(|e| panic!("not an error body ({e}): {}", self.text()))
            .code
    }
}

/// Send one request (`target` is the raw request target, sent as is) and read the answer.
fn request(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut error = None;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => {
                error = Some(e.kind());
                break;
            }
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[split + 4..].to_vec();
    Resp {
        status,
        headers,
        body,
        error,
    }
}

fn get(addr: &str, target: &str) -> Resp {
    request(addr, "GET", target, &[])
}

/// The server's count of ETag/CRC computations (an addition to the common [`common::Stats`]).
fn hash_computations(s: &Serve) -> u64 {
    let r = get(&s.addr, "/_ossmount/stats");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["hash_computations"].as_u64().unwrap()
}

fn md5_etag(data: &[u8]) -> String {
    format!("\"{}\"", hex::encode_upper(Md5::digest(data)))
}

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("bkt");
    std::fs::create_dir_all(b.join("dir/sub")).unwrap();
    std::fs::create_dir_all(b.join("empty/inner")).unwrap();
    std::fs::write(b.join("thousand.bin"), pattern(1000, 7)).unwrap();
    for k in [
        "a b",
        "a+b",
        "100%",
        "ünï 文件.txt",
        "dir/one",
        "dir/two",
        "dir/sub/three",
        "dir-x",
    ] {
        std::fs::write(b.join(k), format!("content of {k}")).unwrap();
    }
    std::fs::write(t.path().join("secret.txt"), "outside any bucket").unwrap();
    t
}

fn anon(dir: &Path) -> Serve {
    Serve::start_with(dir, &["--anonymous"])
}

/// What paging through the test tree's top level with delimiter `/` yields, sorted (keys
/// and common prefixes): the ListObjects V2 and V1 paging tests expect the same.
const PAGED_TOP_LEVEL: [&str; 7] = [
    "100%",
    "a b",
    "a+b",
    "dir-x",
    "dir/",
    "thousand.bin",
    "ünï 文件.txt",
];

#[test]
fn ranges_oss_standard_legacy_and_s3() {
    let t = tree();
    let s = anon(t.path());
    let data = pattern(1000, 7);
    let std_ = ("x-oss-range-behavior", "standard");

    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("Range", "bytes=0-499"), std_],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 0-499/1000"));
    assert_eq!(r.body, &data[..500]);

    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("Range", "bytes=500-2000"), std_],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 500-999/1000"));
    assert_eq!(r.body, &data[500..]);

    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("Range", "bytes=1000-"), std_],
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.error_code(), "InvalidRange");
    assert_eq!(r.header("content-range"), Some("bytes */1000"));

    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("Range", "bytes=-100"), std_],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 900-999/1000"));
    assert_eq!(r.body, &data[900..]);

    // OSS without the standard behaviour: out of range gives the whole object.
    for range in ["bytes=500-2000", "bytes=1000-2000", "bytes=1000-"] {
        let r = request(&s.addr, "GET", "/bkt/thousand.bin", &[("Range", range)]);
        assert_eq!(r.status, 200, "{range}");
        assert_eq!(r.body, data, "{range}");
        assert_eq!(r.header("content-range"), None);
    }
    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("Range", "bytes=10-19")],
    );
    assert_eq!((r.status, &r.body[..]), (206, &data[10..20]));

    // S3 (any x-amz-* header marks the request as S3): 416 past the end.
    let s3 = ("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("Range", "bytes=1000-"), s3],
    );
    assert_eq!(r.status, 416);
    assert_eq!(r.error_code(), "InvalidRange");
    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("Range", "bytes=990-5000"), s3],
    );
    assert_eq!((r.status, &r.body[..]), (206, &data[990..]));
}

#[test]
fn if_match_and_conditions() {
    let t = tree();
    let s = anon(t.path());
    let etag = md5_etag(&pattern(1000, 7));
    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("If-Match", "\"0123\"")],
    );
    assert_eq!(r.status, 412);
    assert_eq!(r.error_code(), "PreconditionFailed");
    let r = request(
        &s.addr,
        "HEAD",
        "/bkt/thousand.bin",
        &[("If-Match", "\"0123\"")],
    );
    assert_eq!(r.status, 412);
    assert!(r.header("x-oss-err").is_some());
    assert_eq!(s.stats().status_412, 2);
    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("If-Match", &etag), ("Range", "bytes=0-9")],
    );
    assert_eq!(r.status, 206);
    let r = request(
        &s.addr,
        "GET",
        "/bkt/thousand.bin",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304);
    assert_eq!(s.stats().status_412, 2);
}

#[test]
fn head_headers_identity_and_errors() {
    let t = tree();
    let s = anon(t.path());
    let data = pattern(1000, 7);
    let r = request(&s.addr, "HEAD", "/bkt/thousand.bin", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("1000"));
    assert_eq!(r.header("etag"), Some(md5_etag(&data).as_str()));
    let crc = ossmount::crc64::checksum(&data).to_string();
    assert_eq!(r.header("x-oss-hash-crc64ecma"), Some(crc.as_str()));
    assert_eq!(r.header("x-oss-object-type"), Some("Normal"));
    assert_eq!(r.header("x-oss-storage-class"), Some("Standard"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert!(r.header("x-oss-request-id").is_some());
    let lm = r.header("last-modified").unwrap();
    assert!(httpdate::parse_http_date(lm).is_ok(), "{lm}");

    let g = get(&s.addr, "/bkt/thousand.bin");
    assert_eq!(g.header("etag"), r.header("etag"));
    assert_eq!(g.header("x-oss-hash-crc64ecma"), Some(crc.as_str()));
    assert_eq!(g.body, data);

    let r = get(&s.addr, "/bkt/nope");
    assert_eq!((r.status, r.error_code().as_str()), (404, "NoSuchKey"));
    let e: ErrorBody = from_xml(&r.text()).unwrap();
    assert_eq!(e.request_id.as_deref(), r.header("x-oss-request-id"));
    assert!(e.host_id.is_some() && e.ec.is_some());
    let r = get(&s.addr, "/nobucket/x");
    assert_eq!((r.status, r.error_code().as_str()), (404, "NoSuchBucket"));
    // HEAD errors carry the XML in x-oss-err.
    let r = request(&s.addr, "HEAD", "/bkt/nope", &[]);
    assert_eq!(r.status, 404);
    use base64::Engine as _;
    let xml = base64::engine::general_purpose::STANDARD
        .decode(r.header("x-oss-err").unwrap())
        .unwrap();
    let e: ErrorBody = from_xml(std::str::from_utf8(&xml).unwrap()).unwrap();
    assert_eq!(e.code, "NoSuchKey");
    // A directory is not an object.
    assert_eq!(get(&s.addr, "/bkt/dir").status, 404);
    assert_eq!(get(&s.addr, "/bkt/dir/").status, 404);
    // Read-only.
    for m in ["PUT", "DELETE", "POST"] {
        let r = request(&s.addr, m, "/bkt/thousand.bin", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.error_code(), "MethodNotAllowed");
    }
    assert_eq!(
        std::fs::read(t.path().join("bkt/thousand.bin")).unwrap(),
        data
    );
}

#[test]
fn odd_keys_are_served() {
    let t = tree();
    let s = anon(t.path());
    for (target, key) in [
        ("/bkt/a%20b", "a b"),
        ("/bkt/a+b", "a+b"),
        ("/bkt/a%2Bb", "a+b"),
        ("/bkt/100%25", "100%"),
        (
            "/bkt/%C3%BCn%C3%AF%20%E6%96%87%E4%BB%B6.txt",
            "ünï 文件.txt",
        ),
        ("/bkt/dir/sub/three", "dir/sub/three"),
        ("/bkt/dir%2Fsub%2Fthree", "dir/sub/three"),
    ] {
        let r = get(&s.addr, target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.text(), format!("content of {key}"), "{target}");
    }
}

fn list(addr: &str, query: &str) -> ListBucketResult {
    let r = get(addr, &format!("/bkt/?list-type=2&{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    from_xml(&r.text()).unwrap()
}

fn unescape(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[test]
fn listing_prefix_delimiter_paging_encoding() {
    let t = tree();
    let s = anon(t.path());
    let all = list(&s.addr, "");
    let keys: Vec<&str> = all.contents.iter().map(|c| c.key.as_str()).collect();
    // UTF-8 byte order; empty directories contribute nothing.
    assert_eq!(
        keys,
        [
            "100%",
            "a b",
            "a+b",
            "dir-x",
            "dir/one",
            "dir/sub/three",
            "dir/two",
            "thousand.bin",
            "ünï 文件.txt"
        ]
    );
    assert_eq!(all.key_count, 9);
    assert!(!all.is_truncated);
    assert_eq!(all.max_keys, 100);
    let th = &all.contents[7];
    assert_eq!(th.size, 1000);
    assert_eq!(th.etag, md5_etag(&pattern(1000, 7)));
    assert!(th.last_modified.ends_with('Z') && th.last_modified.len() == 24);

    let top = list(&s.addr, "delimiter=%2F");
    let prefixes: Vec<&str> = top
        .common_prefixes
        .iter()
        .map(|p| p.prefix.as_str())
        .collect();
    assert_eq!(prefixes, ["dir/"]);
    assert_eq!(top.contents.len(), 6);
    assert_eq!(top.key_count, 7);

    let dir = list(&s.addr, "delimiter=%2F&prefix=dir%2F");
    let keys: Vec<&str> = dir.contents.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["dir/one", "dir/two"]);
    assert_eq!(dir.common_prefixes[0].prefix, "dir/sub/");
    assert_eq!(dir.prefix, "dir/");

    let partial = list(&s.addr, "prefix=dir");
    assert_eq!(partial.contents.len(), 4);
    assert!(list(&s.addr, "prefix=nothing%2F").contents.is_empty());
    assert!(list(&s.addr, "prefix=..%2F..%2F").contents.is_empty());

    // Paging, 2 at a time, with url encoding: the union is the full listing.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = "max-keys=2&encoding-type=url&delimiter=%2F".to_string();
        if let Some(tok) = &token {
            q.push_str(&format!(
                "&continuation-token={}",
                sign_oss::uri_encode(&unescape(tok), true)
            ));
        }
        let page = list(&s.addr, &q);
        pages += 1;
        assert_eq!(page.encoding_type.as_deref(), Some("url"));
        assert_eq!(page.delimiter.as_deref(), Some("%2F"));
        assert!(page.key_count <= 2);
        for c in &page.contents {
            assert!(
                !c.key.contains(['/', ' ', '+']),
                "not url-encoded: {}",
                c.key
            );
            seen.push(unescape(&c.key));
        }
        for p in &page.common_prefixes {
            assert_eq!(p.prefix, "dir%2F");
            seen.push(unescape(&p.prefix));
        }
        if !page.is_truncated {
            break;
        }
        token = page.next_continuation_token.clone();
        assert!(token.is_some());
        assert!(pages < 20);
    }
    assert_eq!(pages, 4);
    seen.sort();
    assert_eq!(seen, PAGED_TOP_LEVEL);

    // start-after inside a rolled-up prefix: the keys after it still roll up.
    let inside = list(&s.addr, "delimiter=%2F&start-after=dir%2Fone");
    let prefixes: Vec<&str> = inside
        .common_prefixes
        .iter()
        .map(|p| p.prefix.as_str())
        .collect();
    assert_eq!(prefixes, ["dir/"]);
    let keys: Vec<&str> = inside.contents.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["thousand.bin", "ünï 文件.txt"]);
    let after = list(&s.addr, "start-after=dir%2Fsub%2Fthree");
    let keys: Vec<&str> = after.contents.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["dir/two", "thousand.bin", "ünï 文件.txt"]);
    assert_eq!(list(&s.addr, "max-keys=5000").max_keys, 1000);
    let r = get(&s.addr, "/bkt/?list-type=2&max-keys=abc");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "InvalidArgument")
    );
    assert_eq!(s.stats().list_requests as usize, 10 + pages);
}

fn list_v1(addr: &str, query: &str) -> (ListBucketResultV1, String) {
    let r = get(addr, &format!("/bkt/?{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    (from_xml(&r.text()).unwrap(), r.text())
}

/// ListObjects V1, as rclone's and s3fs's defaults and boto3's `list_objects` send it:
/// `marker` is a key, `Marker` echoes it, and `NextMarker` comes only with a delimiter.
#[test]
fn listing_v1_marker_paging_delimiter_encoding() {
    let t = tree();
    let s = anon(t.path());
    let all_keys = [
        "100%",
        "a b",
        "a+b",
        "dir-x",
        "dir/one",
        "dir/sub/three",
        "dir/two",
        "thousand.bin",
        "ünï 文件.txt",
    ];
    let (all, xml) = list_v1(&s.addr, "");
    let keys: Vec<&str> = all.contents.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, all_keys);
    assert_eq!(all.marker, "");
    assert!(xml.contains("<Marker"), "Marker is always sent: {xml}");
    assert!(
        !xml.contains("KeyCount") && !xml.contains("ContinuationToken"),
        "{xml}"
    );
    assert!(!all.is_truncated && all.next_marker.is_none());
    assert_eq!(all.max_keys, 100);
    assert_eq!(all.contents[7].size, 1000);
    assert_eq!(all.contents[7].etag, md5_etag(&pattern(1000, 7)));

    // No delimiter: truncated pages carry no NextMarker; the client goes on from the last Key.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = "max-keys=2".to_string();
        if let Some(m) = &marker {
            q.push_str(&format!("&marker={}", sign_oss::uri_encode(m, true)));
        }
        let (page, _) = list_v1(&s.addr, &q);
        pages += 1;
        assert_eq!(page.marker, marker.clone().unwrap_or_default());
        assert!(page.next_marker.is_none(), "NextMarker without a delimiter");
        seen.extend(page.contents.iter().map(|c| c.key.clone()));
        if !page.is_truncated {
            break;
        }
        marker = Some(page.contents.last().unwrap().key.clone());
        assert!(pages < 20);
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, all_keys);

    // Delimiter and encoding-type=url: NextMarker on every truncated page, encoded, and
    // the union of the pages is the one-level listing.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = "max-keys=2&delimiter=%2F&encoding-type=url".to_string();
        if let Some(m) = &marker {
            q.push_str(&format!("&marker={}", sign_oss::uri_encode(m, true)));
        }
        let (page, _) = list_v1(&s.addr, &q);
        pages += 1;
        assert_eq!(page.encoding_type.as_deref(), Some("url"));
        assert_eq!(page.delimiter.as_deref(), Some("%2F"));
        assert_eq!(
            page.marker,
            marker
                .as_deref()
                .map(ossmount::serve::list::url_encode)
                .unwrap_or_default()
        );
        for c in &page.contents {
            assert!(
                !c.key.contains(['/', ' ', '+']),
                "not url-encoded: {}",
                c.key
            );
            seen.push(unescape(&c.key));
        }
        seen.extend(page.common_prefixes.iter().map(|p| unescape(&p.prefix)));
        if !page.is_truncated {
            assert!(page.next_marker.is_none());
            break;
        }
        let next = page
            .next_marker
            .expect("NextMarker on a truncated page with a delimiter");
        marker = Some(unescape(&next));
        assert!(pages < 20);
    }
    assert_eq!(pages, 4);
    seen.sort();
    assert_eq!(seen, PAGED_TOP_LEVEL);

    // A page that ends on a common prefix names it as NextMarker, and that marker skips
    // everything under it.
    let (page, _) = list_v1(
        &s.addr,
        "max-keys=2&delimiter=%2F&marker=a%2Bb&encoding-type=url",
    );
    assert_eq!(page.marker, "a%2Bb");
    assert!(page.is_truncated);
    assert_eq!(page.next_marker.as_deref(), Some("dir%2F"));
    let (page, _) = list_v1(&s.addr, "delimiter=%2F&marker=dir%2F");
    let keys: Vec<&str> = page.contents.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["thousand.bin", "ünï 文件.txt"]);
    assert!(page.common_prefixes.is_empty());
    // A marker inside a rolled-up prefix: the keys after it still roll up.
    let (inside, _) = list_v1(&s.addr, "delimiter=%2F&marker=dir%2Fone&prefix=");
    let prefixes: Vec<&str> = inside
        .common_prefixes
        .iter()
        .map(|p| p.prefix.as_str())
        .collect();
    assert_eq!(prefixes, ["dir/"]);
    let (sub, _) = list_v1(&s.addr, "prefix=dir%2F&delimiter=%2F");
    assert_eq!(sub.prefix, "dir/");
    assert_eq!(sub.common_prefixes[0].prefix, "dir/sub/");

    // Other bucket sub-resources are still refused, and V1 listings count as listings.
    let r = get(&s.addr, "/bkt/?acl");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "InvalidArgument")
    );
    assert_eq!(s.stats().list_requests as usize, 1 + 5 + 4 + 4);
}

/// The server's count of listings walked afresh (an addition to the common [`common::Stats`]).
fn listings_built(s: &Serve) -> u64 {
    let r = get(&s.addr, "/_ossmount/stats");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["listings_built"].as_u64().unwrap()
}

/// Move a directory's mtime an hour back, out of the window in which `serve` does not
/// trust a directory not to change unseen (a walk of it is then kept for later pages).
fn backdate(dir: &Path) {
    std::fs::File::open(dir)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
}

fn keys_of(r: &ListBucketResult) -> Vec<String> {
    r.contents.iter().map(|c| c.key.clone()).collect()
}

fn prefixes_of(r: &ListBucketResult) -> Vec<String> {
    r.common_prefixes.iter().map(|c| c.prefix.clone()).collect()
}

fn next_page(s: &Serve, query: &str, prev: &ListBucketResult) -> ListBucketResult {
    let token = prev.next_continuation_token.as_deref().expect("truncated");
    list(&s.addr, &format!("{query}&continuation-token={token}"))
}

/// Pages of one listing share one walk of the directory (kept between requests), yet each
/// page is exactly in step with the tree: keys added or removed between pages show up or
/// vanish, a file rewritten in place shows its new size, and a subdirectory that empties
/// or fills is dropped or listed as a common prefix.
#[test]
fn listing_pages_share_one_walk_and_follow_changes_between_pages() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("bkt/d");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::create_dir_all(d.join("emptysub")).unwrap();
    std::fs::write(d.join("sub/x"), b"x").unwrap();
    for i in 0..50 {
        std::fs::write(d.join(format!("k{i:03}")), b"x").unwrap();
    }
    backdate(&d);
    let s = anon(t.path());
    let k = |r: std::ops::Range<usize>| r.map(|i| format!("d/k{i:03}")).collect::<Vec<_>>();
    let q = "prefix=d/&delimiter=/&max-keys=10";

    let before = listings_built(&s);
    let p1 = list(&s.addr, q);
    // The empty subdirectory sorts first and is not a prefix (and takes no room).
    assert_eq!(keys_of(&p1), k(0..10));
    assert!(p1.common_prefixes.is_empty());
    let p2 = next_page(&s, q, &p1);
    assert_eq!(keys_of(&p2), k(10..20));
    assert_eq!(
        listings_built(&s),
        before + 1,
        "the second page walked again"
    );

    // Changes that leave `d` itself alone: seen per page, with the walk still reused.
    std::fs::write(d.join("k025"), b"changed").unwrap();
    std::fs::remove_file(d.join("sub/x")).unwrap();
    std::fs::write(d.join("emptysub/f"), b"x").unwrap();
    let p3 = next_page(&s, q, &p2);
    assert_eq!(keys_of(&p3), k(20..30));
    let sizes: Vec<u64> = p3.contents.iter().map(|c| c.size).collect();
    assert_eq!(sizes, [1, 1, 1, 1, 1, 7, 1, 1, 1, 1], "stale size");
    assert_eq!(listings_built(&s), before + 1);

    // A key added and one removed in `d` between pages: walked again.
    std::fs::write(d.join("k0305"), b"x").unwrap();
    std::fs::remove_file(d.join("k031")).unwrap();
    let p4 = next_page(&s, q, &p3);
    let mut want = vec!["d/k030".to_string(), "d/k0305".into()];
    want.extend(k(32..40));
    assert_eq!(keys_of(&p4), want);
    assert_eq!(listings_built(&s), before + 2);
    // The last page: `sub/` emptied, so nothing follows the last key.
    let p5 = next_page(&s, q, &p4);
    assert_eq!(keys_of(&p5), k(40..50));
    assert!(p5.common_prefixes.is_empty(), "{:?}", prefixes_of(&p5));
    assert!(!p5.is_truncated);

    // From the start again: the filled subdirectory is a prefix now.
    let all = list(&s.addr, "prefix=d/&delimiter=/");
    assert_eq!(prefixes_of(&all), ["d/emptysub/"]);
    let mut want = k(0..31);
    want.insert(31, "d/k0305".into());
    want.extend(k(32..50));
    assert_eq!(keys_of(&all), want);

    // Without a delimiter the walk covers subdirectories, and a change in one of them
    // is seen although the top directory did not change.
    for dir in [&d, &d.join("emptysub"), &d.join("sub")] {
        backdate(dir);
    }
    let flat = "prefix=d/&max-keys=1";
    let f1 = list(&s.addr, flat);
    assert_eq!(keys_of(&f1), ["d/emptysub/f"]);
    let built = listings_built(&s);
    let f2 = next_page(&s, flat, &f1);
    assert_eq!(keys_of(&f2), ["d/k000"]);
    assert_eq!(listings_built(&s), built, "the second page walked again");
    std::fs::write(d.join("emptysub/g"), b"x").unwrap();
    let g = list(&s.addr, &format!("{flat}&start-after=d/emptysub/f"));
    assert_eq!(keys_of(&g), ["d/emptysub/g"]);
    assert_eq!(listings_built(&s), built + 1);

    // ListObjects V1 pages through the same walks: marker paging gives the same keys.
    let mut v1_keys = Vec::new();
    let mut marker = String::new();
    loop {
        let (page, _) = list_v1(&s.addr, &format!("prefix=d/&max-keys=7&marker={marker}"));
        v1_keys.extend(page.contents.iter().map(|c| c.key.clone()));
        if !page.is_truncated {
            break;
        }
        marker = v1_keys.last().unwrap().clone();
    }
    let v2_all = list(&s.addr, "prefix=d/&max-keys=1000");
    assert_eq!(v1_keys, keys_of(&v2_all));
    assert_eq!(v1_keys.len(), 52);
}

#[test]
fn traversal_and_symlinks_out_are_refused() {
    let t = tree();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("passwd"), "top secret").unwrap();
    let b = t.path().join("bkt");
    std::os::unix::fs::symlink(outside.path().join("passwd"), b.join("escape")).unwrap();
    std::os::unix::fs::symlink(outside.path(), b.join("escdir")).unwrap();
    std::os::unix::fs::symlink(b.join("dir/one"), b.join("inside-link")).unwrap();
    let s = anon(t.path());
    for target in [
        "/bkt/../secret.txt",
        "/bkt/%2e%2e/secret.txt",
        "/bkt/%2E%2E%2Fsecret.txt",
        "/bkt/dir/../../secret.txt",
        "/bkt/./thousand.bin",
        "/bkt//etc/passwd",
        "/bkt/a%00b",
        "/bkt/escape",
        "/bkt/escdir/passwd",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
    ] {
        let r = get(&s.addr, target);
        assert!(
            [400, 403, 404].contains(&r.status),
            "{target}: {} {}",
            r.status,
            r.text()
        );
        assert!(
            !r.text().contains("secret"),
            "{target} leaked: {}",
            r.text()
        );
    }
    assert_eq!(get(&s.addr, "/bkt/escape").status, 403);
    assert_eq!(get(&s.addr, "/bkt/%2e%2e/secret.txt").status, 400);
    // A link that stays inside is fine.
    assert_eq!(
        get(&s.addr, "/bkt/inside-link").text(),
        "content of dir/one"
    );
    // Listings neither follow nor show links out.
    let all = list(&s.addr, "");
    let keys: Vec<&str> = all.contents.iter().map(|c| c.key.as_str()).collect();
    assert!(keys.contains(&"inside-link"));
    assert!(!keys.iter().any(|k| k.starts_with("esc")), "{keys:?}");
    assert!(list(&s.addr, "prefix=escdir%2F").contents.is_empty());
}

#[test]
fn virtual_hosted_addressing() {
    let t = tree();
    let s = anon(t.path());
    let host = "bkt.oss-cn-hangzhou.aliyuncs.com";
    let r = request(&s.addr, "GET", "/dir/one", &[("Host", host)]);
    assert_eq!((r.status, r.text().as_str()), (200, "content of dir/one"));
    let r = request(
        &s.addr,
        "GET",
        "/?list-type=2&prefix=dir%2F",
        &[("Host", host)],
    );
    let l: ListBucketResult = from_xml(&r.text()).unwrap();
    assert_eq!(l.name, "bkt");
    assert_eq!(l.contents.len(), 3);
    // Not a bucket, an IP, or localhost: path style.
    let r = request(
        &s.addr,
        "GET",
        "/bkt/dir/one",
        &[("Host", "other.example.com")],
    );
    assert_eq!(r.status, 200);
    let r = request(
        &s.addr,
        "GET",
        "/bkt/dir/one",
        &[("Host", "localhost:9000")],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn reset_after_n_bytes_truncates_and_counts_exactly() {
    let t = tree();
    let big = t.path().join("bkt/big.bin");
    write_pattern_file(&big, 5 << 20, 3);
    let data = std::fs::read(&big).unwrap();
    let s = anon(t.path());
    // Warm the identity first, so the fault is all that's measured.
    assert_eq!(request(&s.addr, "HEAD", "/bkt/big.bin", &[]).status, 200);
    s.reset_stats();
    s.set_faults(&Faults {
        reset_after_bytes: Some(1_234_567),
        ..Default::default()
    });
    let r = get(&s.addr, "/bkt/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("5242880"));
    assert_eq!(r.body.len(), 1_234_567);
    assert_eq!(r.body, &data[..1_234_567]);
    assert_eq!(r.error, Some(std::io::ErrorKind::ConnectionReset));
    // A range shorter than N is untouched.
    let r = request(
        &s.addr,
        "GET",
        "/bkt/big.bin",
        &[("Range", "bytes=100-1099")],
    );
    assert_eq!((r.status, r.body.len(), r.error), (206, 1000, None));
    std::thread::sleep(Duration::from_millis(50));
    let st = s.stats();
    assert_eq!(st.resets, 1);
    assert_eq!(st.bytes_sent, 1_234_567 + 1000);
    assert_eq!(st.get_requests, 2);
    // Reset at 0: headers, then nothing.
    s.set_faults(&Faults {
        reset_after_bytes: Some(0),
        ..Default::default()
    });
    let r = get(&s.addr, "/bkt/big.bin");
    assert_eq!((r.status, r.body.len()), (200, 0));
    assert!(r.error.is_some());

    // 503 storm, then off again.
    s.set_faults(&Faults {
        rate_503: Some(1.0),
        ..Default::default()
    });
    let r = get(&s.addr, "/bkt/dir/one");
    assert_eq!((r.status, r.error_code().as_str()), (503, "SlowDown"));
    let r = request(&s.addr, "HEAD", "/bkt/dir/one", &[]);
    assert_eq!(r.status, 503);
    s.set_faults(&Faults::default());
    s.reset_stats();
    let r = get(&s.addr, "/bkt/big.bin");
    assert_eq!(r.body, data);
    std::thread::sleep(Duration::from_millis(50));
    let st = s.stats();
    assert_eq!((st.bytes_sent, st.status_503, st.requests), (5 << 20, 0, 1));
}

#[test]
fn stalls_and_latency() {
    let t = tree();
    let s = anon(t.path());
    s.set_faults(&Faults {
        stall_rate: Some(1.0),
        stall_ms: Some(400),
        latency_ms: Some(100),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let r = get(&s.addr, "/bkt/thousand.bin");
    let took = started.elapsed();
    assert_eq!(r.body, pattern(1000, 7));
    assert!(took >= Duration::from_millis(500), "{took:?}");
    let st = s.stats();
    assert_eq!((st.stalls, st.requests), (1, 1));
}

#[test]
fn etag_changes_when_file_is_replaced_and_is_computed_once() {
    let t = tree();
    let s = anon(t.path());
    // Created after start: no warm-up has seen it.
    let path = t.path().join("bkt/new.bin");
    write_pattern_file(&path, 64 << 20, 11);
    std::thread::sleep(Duration::from_millis(300));
    let before = hash_computations(&s);
    // Concurrent first requests wait for one computation.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let addr = s.addr.clone();
            std::thread::spawn(move || request(&addr, "HEAD", "/bkt/new.bin", &[]))
        })
        .collect();
    let etags: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().unwrap().header("etag").unwrap().to_string())
        .collect();
    assert!(etags.iter().all(|e| *e == etags[0]));
    let started = std::time::Instant::now();
    let again = request(&s.addr, "HEAD", "/bkt/new.bin", &[]);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(again.header("etag"), Some(etags[0].as_str()));
    assert_eq!(hash_computations(&s), before + 1);

    // Replace by rename: new inode, new content, new ETag.
    let tmp = t.path().join("bkt/.new.tmp");
    std::fs::write(&tmp, b"replaced").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let r = get(&s.addr, "/bkt/new.bin");
    assert_eq!(r.text(), "replaced");
    assert_eq!(r.header("etag"), Some(md5_etag(b"replaced").as_str()));
    assert_ne!(r.header("etag"), Some(etags[0].as_str()));
    // Rewrite in place: new size and mtime, new ETag.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, b"rewritten!").unwrap();
    let r = request(&s.addr, "HEAD", "/bkt/new.bin", &[]);
    assert_eq!(r.header("etag"), Some(md5_etag(b"rewritten!").as_str()));
    assert_eq!(hash_computations(&s), before + 3);
}

#[test]
fn a_client_that_gives_up_mid_hash_does_not_waste_the_hash() {
    let t = tree();
    let s = anon(t.path());
    // Created after start: no warm-up has seen it. 128 MiB takes well over 50 ms to hash.
    let path = t.path().join("bkt/abandoned.bin");
    write_pattern_file(&path, 128 << 20, 12);
    std::thread::sleep(Duration::from_millis(300));
    let before = hash_computations(&s);
    {
        // A client that times out: sends HEAD, waits a moment, hangs up.
        let mut c = TcpStream::connect(&s.addr).unwrap();
        write!(
            c,
            "HEAD /bkt/abandoned.bin HTTP/1.1\r\nHost: {}\r\n\r\n",
            s.addr
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its retry gets the answer of the computation already under way, not a new one.
    let r = request(&s.addr, "HEAD", "/bkt/abandoned.bin", &[]);
    let data = std::fs::read(&path).unwrap();
    assert_eq!(r.header("etag"), Some(md5_etag(&data).as_str()));
    assert_eq!(hash_computations(&s), before + 1);
}

#[test]
fn unsigned_requests_are_refused_when_keys_are_configured() {
    let t = tree();
    let s = Serve::start(t.path());
    for target in ["/bkt/dir/one", "/bkt/?list-type=2", "/bkt/nope"] {
        let r = get(&s.addr, target);
        assert_eq!(r.status, 403, "{target}");
        assert_eq!(r.error_code(), "AccessDenied");
    }
    let r = request(
        &s.addr,
        "GET",
        "/bkt/dir/one",
        &[("Authorization", "OSS ak:c2lnbmF0dXJl")],
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "AccessDenied"));
    assert_eq!(s.stats().auth_failures, 4);
    // Control endpoints need no signature and do not count.
    assert_eq!(s.stats().requests, 4);
}

#[test]
fn refuses_to_start_without_keys_or_anonymous() {
    let t = tree();
    let out = std::process::Command::new(common::bin())
        .arg("serve")
        .arg(t.path())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--anonymous") && err.contains("OSS_ACCESS_KEY_ID"),
        "{err}"
    );
}

fn creds(secret: &str) -> Credentials {
    Credentials {
        access_key_id: AK.into(),
        access_key_secret: secret.into(),
        session_token: None,
    }
}

/// An OSS V4-signed request, path style.
fn oss_signed(
    s: &Serve,
    method: &str,
    key: Option<&str>,
    query: &[(&str, &str)],
    extra: &[(&str, &str)],
    secret: &str,
    region: &str,
) -> Resp {
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let mut headers: Vec<(String, String)> = extra
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let req = OssRequest {
        method,
        bucket: Some("bkt"),
        key,
        query: &query,
        headers: &headers,
        additional_headers: &[],
    };
    let signed = sign_oss::sign_v4(&req, &creds(secret), region, "oss", SystemTime::now());
    headers.extend(signed.headers);
    let mut target = format!("/bkt/{}", sign_oss::uri_encode(key.unwrap_or(""), false));
    if !query.is_empty() {
        target.push('?');
        target.push_str(&sign_oss::encode_query(&query));
    }
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    request(&s.addr, method, &target, &h)
}

#[test]
fn oss_v4_signatures_are_verified() {
    let t = tree();
    let s = Serve::start(t.path());
    let r = oss_signed(&s, "GET", Some("a b"), &[], &[], SK, "cn-hangzhou");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "content of a b"),
        "{}",
        r.text()
    );
    let r = oss_signed(
        &s,
        "GET",
        Some("ünï 文件.txt"),
        &[],
        &[("Range", "bytes=0-6"), ("x-oss-range-behavior", "standard")],
        SK,
        "cn-hangzhou",
    );
    assert_eq!((r.status, r.text().as_str()), (206, "content"));
    let r = oss_signed(
        &s,
        "GET",
        None,
        &[
            ("list-type", "2"),
            ("prefix", "dir/"),
            ("delimiter", "/"),
            ("encoding-type", "url"),
        ],
        &[],
        SK,
        "cn-hangzhou",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let l: ListBucketResult = from_xml(&r.text()).unwrap();
    assert_eq!(l.contents.len(), 2);
    assert_eq!(s.stats().auth_failures, 0);

    let r = oss_signed(
        &s,
        "GET",
        Some("a+b"),
        &[],
        &[],
        "wrong-secret",
        "cn-hangzhou",
    );
    assert_eq!(r.status, 403);
    let e: ErrorBody = from_xml(&r.text()).unwrap();
    assert_eq!(e.code, "SignatureDoesNotMatch");
    assert!(e.string_to_sign.unwrap().starts_with("OSS4-HMAC-SHA256\n"));
    let r = oss_signed(
        &s,
        "HEAD",
        Some("a+b"),
        &[],
        &[],
        "wrong-secret",
        "cn-hangzhou",
    );
    assert_eq!(r.status, 403);
    assert!(r.header("x-oss-err").is_some());
    let r = oss_signed(&s, "GET", Some("a+b"), &[], &[], SK, "cn-shanghai");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "InvalidArgument")
    );
    assert!(r.text().contains("cn-hangzhou"));
    assert_eq!(s.stats().auth_failures, 3);
}

#[test]
fn s3_sigv4_signatures_are_verified() {
    let t = tree();
    let s = Serve::start(t.path());
    let send = |path: &str, secret: &str, region: &str| {
        let host = s.addr.clone();
        let headers = vec![("host".to_string(), host)];
        let req = S3Request {
            method: "GET",
            path,
            query: &[],
            headers: &headers,
        };
        let empty = hex::encode(sha2::Sha256::digest(b""));
        let signed = sign_s3::sign_v4(
            &req,
            &creds(secret),
            region,
            "s3",
            &empty,
            SystemTime::now(),
        );
        let h: Vec<(&str, &str)> = signed
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        request(&s.addr, "GET", &sign_s3::canonical_uri(path), &h)
    };
    let r = send("/bkt/100%", SK, "cn-hangzhou");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "content of 100%"),
        "{}",
        r.text()
    );
    let r = send("/bkt/100%", "nope", "cn-hangzhou");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "SignatureDoesNotMatch")
    );
    assert!(r.header("x-amz-request-id").is_some());
    let r = send("/bkt/100%", SK, "us-east-1");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "AuthorizationHeaderMalformed")
    );
}
