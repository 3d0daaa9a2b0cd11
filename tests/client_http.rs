//! The HTTP client against a real `ossmount serve`: head, ranged get, listing, paging,
//! errors and odd keys, over OSS V4, S3 SigV4 and anonymous requests; faults (resets,
//! 503s) ridden out by the retrying store; and `ossmount ls` / `cat` as a binary.
//!
//! Run: `cargo test --test client_http`.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ossmount::config;
use ossmount::store::config::{Auth, Scheme, StoreConfig};
use ossmount::store::http::HttpConfig;
use ossmount::store::retry::RetryConfig;
use ossmount::store::{Credentials, ListRequest, ObjectStore, StoreError};

use common::{Faults, Serve, AK, SK};

const BUCKET: &str = "bkt";
const ODD_KEYS: &[&str] = &[
    "odd/a b",
    "odd/a+b",
    "odd/100%",
    "odd/文件 (copy)~.txt",
    "odd/semi;colon=eq&amp",
];

/// A bucket folder with a 1 MiB + 7 object, nested keys, odd keys and an empty object.
fn populate(dir: &Path) -> Vec<u8> {
    let b = dir.join(BUCKET);
    let data = common::pattern((1 << 20) + 7, 42);
    std::fs::create_dir_all(b.join("dir/sub")).unwrap();
    std::fs::create_dir_all(b.join("odd")).unwrap();
    std::fs::write(b.join("data.bin"), &data).unwrap();
    std::fs::write(b.join("empty"), b"").unwrap();
    std::fs::write(b.join("dir/sub/file.txt"), b"hello\n").unwrap();
    std::fs::write(b.join("dir/top.txt"), b"top\n").unwrap();
    for (i, k) in ODD_KEYS.iter().enumerate() {
        std::fs::write(b.join(k), format!("content of key {i}")).unwrap();
    }
    data
}

fn all_keys() -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = ["data.bin", "empty", "dir/sub/file.txt", "dir/top.txt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    keys.extend(ODD_KEYS.iter().map(|s| s.to_string()));
    keys
}

fn store_for(serve: &Serve, scheme: Scheme, auth: Auth) -> Arc<dyn ObjectStore> {
    let cfg = StoreConfig {
        scheme,
        bucket: BUCKET.into(),
        endpoint: serve.endpoint(),
        // The server checks the scope region against its --region (default cn-hangzhou),
        // for S3 too.
        region: "cn-hangzhou".into(),
        path_style: true,
        auth,
        version_id: None,
    };
    config::connect(&cfg).unwrap()
}

fn creds(secret: &str) -> Credentials {
    Credentials {
        access_key_id: AK.into(),
        access_key_secret: secret.into(),
        session_token: None,
    }
}

async fn read_all(
    store: &dyn ObjectStore,
    key: &str,
    range: std::ops::Range<u64>,
    etag: &str,
) -> Result<Vec<u8>, StoreError> {
    let mut s = store.get_range(key, range, Some(etag)).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn list_all(
    store: &dyn ObjectStore,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: u32,
) -> (Vec<String>, Vec<String>, usize) {
    let mut req = ListRequest {
        prefix: prefix.into(),
        delimiter: delimiter.map(String::from),
        continuation_token: None,
        max_keys,
    };
    let (mut keys, mut prefixes, mut pages) = (Vec::new(), Vec::new(), 0);
    loop {
        let page = store.list(&req).await.unwrap();
        pages += 1;
        assert!(
            page.objects.len() + page.common_prefixes.len() <= max_keys as usize,
            "page larger than max-keys"
        );
        keys.extend(page.objects.into_iter().map(|o| o.key));
        prefixes.extend(page.common_prefixes);
        match page.next_continuation_token {
            Some(t) => req.continuation_token = Some(t),
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    (keys, prefixes, pages)
}

/// Everything a mount needs from a store, against one running server.
async fn exercise(store: Arc<dyn ObjectStore>, data: &[u8]) {
    let store = store.as_ref();
    // HEAD
    let meta = store.head("data.bin").await.unwrap();
    assert_eq!(meta.key, "data.bin");
    assert_eq!(meta.size, data.len() as u64);
    assert!(!meta.etag.is_empty());
    if let Some(crc) = meta.crc64 {
        assert_eq!(crc, ossmount::crc64::checksum(data));
    }
    // Ranged GETs: start, middle, last byte, whole.
    let n = data.len() as u64;
    for r in [0..100, 4096..(1 << 20), (n - 1)..n, 0..n] {
        let got = read_all(store, "data.bin", r.clone(), &meta.etag)
            .await
            .unwrap();
        assert!(got == data[r.start as usize..r.end as usize], "range {r:?}");
    }
    // A changed object (other ETag) is a clean 412.
    match read_all(store, "data.bin", 0..10, "\"0000\"").await {
        Err(StoreError::PreconditionFailed(_)) => {}
        other => panic!("expected 412, got {other:?}"),
    }
    // Missing keys.
    match store.head("no/such/key").await {
        Err(StoreError::NoSuchKey(_)) => {}
        other => panic!("expected NoSuchKey, got {other:?}"),
    }
    match read_all(store, "no/such/key", 0..1, &meta.etag).await {
        Err(StoreError::NoSuchKey(_)) => {}
        other => panic!("expected NoSuchKey, got {other:?}"),
    }
    // The empty object: HEAD says 0, a zero-length read is a plain GET.
    let empty = store.head("empty").await.unwrap();
    assert_eq!(empty.size, 0);
    assert!(read_all(store, "empty", 0..0, &empty.etag)
        .await
        .unwrap()
        .is_empty());
    // Odd keys, by HEAD and GET.
    for (i, k) in ODD_KEYS.iter().enumerate() {
        let m = store
            .head(k)
            .await
            .unwrap_or_else(|e| panic!("HEAD {k:?}: {e}"));
        let got = read_all(store, k, 0..m.size, &m.etag).await.unwrap();
        assert_eq!(got, format!("content of key {i}").as_bytes(), "{k:?}");
    }
    // One level of the root.
    let (keys, prefixes, _) = list_all(store, "", Some("/"), 1000).await;
    assert_eq!(keys, ["data.bin", "empty"]);
    assert_eq!(prefixes, ["dir/", "odd/"]);
    let (keys, prefixes, _) = list_all(store, "dir/", Some("/"), 1000).await;
    assert_eq!(keys, ["dir/top.txt"]);
    assert_eq!(prefixes, ["dir/sub/"]);
    // Odd keys come back decoded, in binary order.
    let (keys, _, _) = list_all(store, "odd/", None, 1000).await;
    let mut expected: Vec<String> = ODD_KEYS.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(keys, expected);
    // Paging through everything two keys at a time.
    let (keys, prefixes, pages) = list_all(store, "", None, 2).await;
    assert!(prefixes.is_empty());
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(keys.len(), all_keys().len(), "no key twice: {keys:?}");
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), all_keys());
    // A prefix with a space and a plus.
    let (keys, _, _) = list_all(store, "odd/a", None, 1000).await;
    assert_eq!(keys, ["odd/a b", "odd/a+b"]);
}

#[tokio::test]
async fn oss_v4_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start(dir.path());
    exercise(
        store_for(&serve, Scheme::Oss, Auth::with_keys(Scheme::Oss, creds(SK))),
        &data,
    )
    .await;
    assert_eq!(serve.stats().auth_failures, 0);
}

#[tokio::test]
async fn s3_sigv4_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start(dir.path());
    exercise(
        store_for(&serve, Scheme::S3, Auth::with_keys(Scheme::S3, creds(SK))),
        &data,
    )
    .await;
    assert_eq!(serve.stats().auth_failures, 0);
}

#[tokio::test]
async fn anonymous_against_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start_with(dir.path(), &["--anonymous"]);
    exercise(store_for(&serve, Scheme::Oss, Auth::Anonymous), &data).await;
}

/// Virtual-hosted addressing (`bkt.host/key`, list at `/`), with the bucket's host name
/// resolved to the local server.
#[tokio::test]
async fn virtual_hosted_addressing() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start(dir.path());
    let port = serve.addr.rsplit(':').next().unwrap();
    let addr: std::net::SocketAddr = serve.addr.parse().unwrap();
    for (scheme, auth) in [
        (Scheme::Oss, Auth::with_keys(Scheme::Oss, creds(SK))),
        (Scheme::S3, Auth::with_keys(Scheme::S3, creds(SK))),
    ] {
        let cfg = StoreConfig {
            scheme,
            bucket: BUCKET.into(),
            endpoint: format!("http://oss-test.invalid:{port}"),
            region: "cn-hangzhou".into(),
            path_style: false,
            auth,
            version_id: None,
        };
        let http = HttpConfig {
            resolve: vec![("bkt.oss-test.invalid".into(), addr)],
            ..HttpConfig::default()
        };
        let store = config::connect_with(&cfg, http, RetryConfig::default()).unwrap();
        exercise(store, &data).await;
    }
    assert_eq!(serve.stats().auth_failures, 0);
}

#[tokio::test]
async fn auth_failures_are_typed_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let serve = Serve::start(dir.path());

    let store = store_for(
        &serve,
        Scheme::Oss,
        Auth::with_keys(Scheme::Oss, creds("wrong-secret")),
    );
    match store.head("data.bin").await {
        Err(StoreError::SignatureDoesNotMatch(_)) => {}
        other => panic!("expected SignatureDoesNotMatch, got {other:?}"),
    }
    let store = store_for(
        &serve,
        Scheme::S3,
        Auth::with_keys(Scheme::S3, creds("wrong-secret")),
    );
    match store
        .list(&ListRequest {
            max_keys: 10,
            ..Default::default()
        })
        .await
    {
        Err(StoreError::SignatureDoesNotMatch(_)) => {}
        other => panic!("expected SignatureDoesNotMatch, got {other:?}"),
    }
    let mut unknown = creds(SK);
    unknown.access_key_id = "LTAI-nobody".into();
    let store = store_for(&serve, Scheme::Oss, Auth::with_keys(Scheme::Oss, unknown));
    match store.head("data.bin").await {
        Err(StoreError::InvalidAccessKeyId(_)) => {}
        other => panic!("expected InvalidAccessKeyId, got {other:?}"),
    }
    let store = store_for(&serve, Scheme::Oss, Auth::Anonymous);
    match store.head("data.bin").await {
        Err(StoreError::AccessDenied(_)) => {}
        other => panic!("expected AccessDenied, got {other:?}"),
    }
    // One request each: none of these is retried.
    let stats = serve.stats();
    assert_eq!(stats.requests, 4, "{stats:?}");
}

#[tokio::test]
async fn resets_are_resumed_from_the_byte_where_they_broke() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start(dir.path());
    let store = store_for(&serve, Scheme::Oss, Auth::with_keys(Scheme::Oss, creds(SK)));
    let meta = store.head("data.bin").await.unwrap();
    serve.set_faults(&Faults {
        reset_after_bytes: Some(300_000),
        ..Default::default()
    });
    serve.reset_stats();
    let got = read_all(store.as_ref(), "data.bin", 0..meta.size, &meta.etag)
        .await
        .unwrap();
    assert!(got == data, "bytes differ after resuming");
    let stats = serve.stats();
    assert!(stats.resets >= 3, "{stats:?}");
    // Resumed, not restarted: the bytes sent exceed the object by at most what the
    // kernel buffers had in flight when each reset hit.
    assert!(stats.get_requests >= 4, "{stats:?}");
    assert!(
        stats.bytes_sent < 2 * meta.size,
        "restarted instead of resumed: {stats:?}"
    );
}

#[tokio::test]
async fn throttling_is_ridden_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start(dir.path());
    let store = store_for(&serve, Scheme::Oss, Auth::with_keys(Scheme::Oss, creds(SK)));
    serve.set_faults(&Faults {
        rate_503: Some(0.3),
        ..Default::default()
    });
    for _ in 0..5 {
        let meta = store.head("data.bin").await.unwrap();
        let got = read_all(store.as_ref(), "data.bin", 0..1000, &meta.etag)
            .await
            .unwrap();
        assert_eq!(got, &data[..1000]);
        let (keys, _, _) = list_all(store.as_ref(), "dir/", None, 1000).await;
        assert_eq!(keys.len(), 2);
    }
}

#[tokio::test]
async fn stalled_bodies_time_out_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start(dir.path());
    let cfg = StoreConfig {
        scheme: Scheme::Oss,
        bucket: BUCKET.into(),
        endpoint: serve.endpoint(),
        region: "cn-hangzhou".into(),
        path_style: true,
        auth: Auth::with_keys(Scheme::Oss, creds(SK)),
        version_id: None,
    };
    let http = HttpConfig {
        read_timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    };
    // serve stalls a response at half its length, so a 1-byte tail can stall before any
    // byte; 20 attempts make giving up on it (0.5^19) impossible in practice.
    let retry = RetryConfig {
        base_delay: Duration::from_millis(10),
        max_attempts: 20,
        ..RetryConfig::default()
    };
    let store = config::connect_with(&cfg, http, retry).unwrap();
    let meta = store.head("data.bin").await.unwrap();
    serve.set_faults(&Faults {
        stall_rate: Some(0.5),
        stall_ms: Some(5_000),
        ..Default::default()
    });
    serve.reset_stats();
    let started = Instant::now();
    // 12 reads: the chance that none stalls is 1 in 4096.
    for i in 0..12u64 {
        let r = i * 80_000..i * 80_000 + 65_536;
        let got = read_all(store.as_ref(), "data.bin", r.clone(), &meta.etag)
            .await
            .unwrap();
        assert!(got == data[r.start as usize..r.end as usize], "read {i}");
    }
    let stats = serve.stats();
    assert!(stats.stalls >= 1, "{stats:?}");
    // Each stall costs one 200 ms read timeout, not the 5 s stall.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

fn run_cli(serve: &Serve, args: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .args(args)
        .args(["--endpoint", &serve.endpoint(), "--region", "cn-hangzhou"])
        .env_remove("OSS_SESSION_TOKEN")
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .output()
        .expect("run ossmount")
}

#[test]
fn ls_and_cat_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let data = populate(dir.path());
    let serve = Serve::start(dir.path());

    let out = run_cli(&serve, &["ls", "oss://bkt/"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.trim_start() == "PRE  dir/"),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.trim_start() == "PRE  odd/"),
        "{text}"
    );
    let data_line = lines
        .iter()
        .find(|l| l.ends_with("  data.bin"))
        .expect(&text);
    assert!(
        data_line.trim_start().starts_with(&data.len().to_string()),
        "{data_line}"
    );

    let out = run_cli(&serve, &["ls", "-r", "s3://bkt/odd/"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for k in ODD_KEYS {
        assert!(
            text.lines().any(|l| l.ends_with(&format!("  {k}"))),
            "{k} in {text}"
        );
    }

    // A path is a plain prefix, as in `aws s3 ls`.
    let out = run_cli(&serve, &["ls", "oss://bkt/di"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim(), "PRE  dir/");
    let out = run_cli(&serve, &["ls", "oss://bkt/nothing-here/"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("oss://bkt/nothing-here/"));

    let out = run_cli(&serve, &["cat", "oss://bkt/data.bin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data);
    let out = run_cli(
        &serve,
        &["cat", "oss://bkt/data.bin", "--range", "1000-1999"],
    );
    assert!(out.stdout == data[1000..2000]);
    let out = run_cli(&serve, &["cat", "s3://bkt/odd/a+b", "--range=-3"]);
    assert_eq!(out.stdout, b"y 1");
    let out = run_cli(&serve, &["cat", "oss://bkt/empty"]);
    assert!(out.status.success() && out.stdout.is_empty());

    let out = run_cli(&serve, &["cat", "oss://bkt/no/such"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oss://bkt/no/such") && err.contains("no such key"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = run_cli(&serve, &["cat", "gs://bkt/x"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_cli(
        &serve,
        &["cat", "oss://bkt/data.bin", "--range", "9999999-"],
    );
    assert_eq!(out.status.code(), Some(2));

    // Even at trace level no secret, signature or Authorization header reaches the log.
    let out = Command::new(common::bin())
        .args([
            "--debug",
            "cat",
            "oss://bkt/dir/top.txt",
            "--endpoint",
            &serve.endpoint(),
        ])
        .args(["--region", "cn-hangzhou"])
        .env("RUST_LOG", "trace")
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"top\n");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("store request"), "debug log is on: {log}");
    for secret in [SK, "Signature=", "OSS4-HMAC", "authorization"] {
        assert!(
            !log.to_ascii_lowercase()
                .contains(&secret.to_ascii_lowercase()),
            "{secret} in {log}"
        );
    }

    // Missing credentials are named.
    let out = Command::new(common::bin())
        .args([
            "ls",
            "oss://bkt/",
            "--endpoint",
            &serve.endpoint(),
            "--region",
            "cn-hangzhou",
        ])
        .env_remove("OSS_ACCESS_KEY_ID")
        .env_remove("OSS_ACCESS_KEY_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OSS_ACCESS_KEY_ID"));
}
