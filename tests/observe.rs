//! Watching a running mount: Prometheus metrics at `--metrics-addr`, parsed with the
//! reference parser (Python `prometheus_client`) and checked against the server's own
//! counters after a real workload through a real FUSE mount.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{run, same_file, Env};
use common::write_pattern_file;

/// One scrape, as the Python parser saw it.
struct Scrape {
    families: BTreeMap<String, String>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Sum of the samples named `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

fn scrape(addr: &str) -> Scrape {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/metrics_parse.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "metrics_parse.py failed (pip install prometheus_client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let families = v["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t.as_str().unwrap().to_string()))
        .collect();
    let samples = v["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (
                s[0].as_str().unwrap().to_string(),
                labels,
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    Scrape { families, samples }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Scrape until `done` holds (background work: finalizing, the last part writes), 30 s.
fn scrape_until(addr: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(addr);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "metrics: {what} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_after_a_cold_cp_agree_with_the_servers_counters() {
    const SIZE: u64 = 40 << 20;
    let env = Env::with_objects(|b| write_pattern_file(&b.join("dir/big.bin"), SIZE, 18));
    let addr = format!("127.0.0.1:{}", free_port());
    // fstab spelling, as mount(8) would pass it.
    let m = env.mount(
        "mnt",
        &[
            "-o",
            &format!("metrics_addr={addr}"),
            "--cache-size",
            "1GiB",
        ],
    );
    let before = scrape(&addr);
    assert_eq!(before.sum("ossmount_store_fetched_bytes_total", &[]), 0.0);
    // The mount's up-front check was one listing.
    assert_eq!(
        before.sum(
            "ossmount_store_requests_total",
            &[("operation", "ListObjects")]
        ),
        1.0
    );

    let out = env.tmp.path().join("out.bin");
    run(Command::new("cp").arg(m.dir.join("dir/big.bin")).arg(&out));
    same_file(&out, &env.object("dir/big.bin"));

    let s = scrape_until(&addr, "the object finalized, nothing in flight", |s| {
        s.sum("ossmount_cache_finalizations_total", &[]) == 1.0
            && s.sum("ossmount_parts_in_flight", &[]) == 0.0
    });
    let st = env.serve.stats();
    // Requests and bytes, ours against the server's.
    assert_eq!(
        s.sum("ossmount_store_fetched_bytes_total", &[]),
        st.bytes_sent as f64
    );
    assert_eq!(st.bytes_sent, SIZE, "a cold cp fetches the object once");
    assert_eq!(
        s.sum("ossmount_store_requests_total", &[]),
        st.requests as f64
    );
    for (op, n) in [
        ("GetObject", st.get_requests),
        ("HeadObject", st.head_requests),
        ("ListObjects", st.list_requests),
    ] {
        assert_eq!(
            s.sum("ossmount_store_requests_total", &[("operation", op)]),
            n as f64,
            "{op}"
        );
        assert_eq!(
            s.sum(
                "ossmount_store_request_duration_seconds_count",
                &[("operation", op)]
            ),
            n as f64,
            "{op} latency observations"
        );
    }
    assert_eq!(
        s.sum(
            "ossmount_store_requests_total",
            &[("operation", "GetObject"), ("status", "206")]
        ),
        st.get_requests as f64
    );
    // What readers got: the whole object once, through ossmount (a cold object is read
    // through the page cache, never passthrough); some of it waited for the network.
    let served = s.sum("ossmount_read_bytes_total", &[]);
    assert!(served >= SIZE as f64, "served {served} of {SIZE}");
    assert!(s.sum("ossmount_read_bytes_total", &[("source", "network")]) > 0.0);
    assert!(s.sum("ossmount_cache_misses_total", &[]) > 0.0);
    let reads = s.sum(
        "ossmount_fuse_request_duration_seconds_count",
        &[("operation", "read")],
    );
    assert_eq!(
        reads,
        s.sum("ossmount_cache_hits_total", &[]) + s.sum("ossmount_cache_misses_total", &[])
    );
    assert!(
        s.sum(
            "ossmount_fuse_request_duration_seconds_count",
            &[("operation", "lookup")]
        ) >= 2.0
    );
    // The cache holds it, within its budget.
    assert!(s.sum("ossmount_cache_used_bytes", &[]) >= SIZE as f64);
    assert_eq!(
        s.sum("ossmount_cache_budget_bytes", &[]),
        (1u64 << 30) as f64
    );
    assert_eq!(s.sum("ossmount_crc64_failures_total", &[]), 0.0);
    assert_eq!(s.sum("ossmount_store_retries_total", &[]), 0.0);
    assert_eq!(s.sum("ossmount_open_handles", &[]), 0.0);
    for (name, kind) in [
        ("ossmount_store_requests", "counter"),
        ("ossmount_store_request_duration_seconds", "histogram"),
        ("ossmount_fuse_request_duration_seconds", "histogram"),
        ("ossmount_credential_refreshes", "counter"),
        ("ossmount_cache_used_bytes", "gauge"),
        ("ossmount_parts_in_flight", "gauge"),
        ("ossmount_store_throttled", "counter"),
        ("ossmount_cache_evictions", "counter"),
    ] {
        assert_eq!(
            s.families.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }
    let info = s
        .samples
        .iter()
        .find(|(n, _, _)| n == "ossmount_info")
        .expect("ossmount_info");
    assert_eq!(info.1.get("url").map(String::as_str), Some("oss://bkt"));

    // Warm now: the second cp is answered by the kernel (passthrough) or the cache file,
    // and fetches nothing.
    run(Command::new("cp").arg(m.dir.join("dir/big.bin")).arg(&out));
    let again = scrape(&addr);
    assert_eq!(
        again.sum("ossmount_store_fetched_bytes_total", &[]),
        SIZE as f64
    );
    assert_eq!(env.serve.stats().bytes_sent, SIZE);
    if let Some(text) = std::env::var_os("OSSMOUNT_METRICS_SAMPLE") {
        let body = run(Command::new("curl").args(["-s", &format!("http://{addr}/metrics")])).stdout;
        std::fs::write(text, body).unwrap();
    }
}

#[test]
fn metrics_are_off_by_default_and_a_busy_port_fails_the_mount() {
    let env = Env::with_objects(|b| std::fs::write(b.join("f"), b"x").unwrap());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = env.mnt("busy");
    let out = env
        .cmd("oss://bkt", &dir, &["--metrics-addr", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--metrics-addr"), "{err}");
    assert!(!common::mount::is_mounted(&dir));
    // The same mount without the option is fine.
    let _m = env.mount("plain", &[]);
}
