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

/// `ossmount status --json`, parsed.
fn status_json() -> Vec<serde_json::Value> {
    let out = run(Command::new(common::bin()).args(["status", "--json"]));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

fn status_of(all: &[serde_json::Value], mnt: &Path) -> serde_json::Value {
    all.iter()
        .find(|s| s["mountpoint"].as_str() == mnt.to_str())
        .unwrap_or_else(|| panic!("{} not in status: {all:?}", mnt.display()))
        .clone()
}

#[test]
fn status_lists_each_mount_and_forgets_dead_ones() {
    const SIZE: u64 = 3 << 20;
    let env = Env::with_objects(|b| {
        write_pattern_file(&b.join("p/one.bin"), SIZE, 1);
        write_pattern_file(&b.join("two.bin"), 1000, 2);
    });
    let cache_b = env.tmp.path().join("cache-b");
    let a = env.mount("a", &["--cache-size", "1GiB"]);
    let b = env.mount("b", &["-o", &format!("cache_dir={}", cache_b.display())]);
    let all = status_json();
    let (sa, sb) = (status_of(&all, &a.dir), status_of(&all, &b.dir));
    assert_eq!(sa["url"], "oss://bkt");
    assert_eq!(sa["cache_dir"].as_str(), env.cache.to_str());
    assert_eq!(sb["cache_dir"].as_str(), cache_b.to_str());
    assert_eq!(sa["cache_budget_bytes"], 1u64 << 30);
    assert_ne!(sa["pid"], sb["pid"]);
    let pid = sa["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(sa["credentials"]
        .as_str()
        .unwrap()
        .contains("OSS_ACCESS_KEY_ID"));
    assert!(sa["hit_ratio"].is_null(), "no reads yet");
    assert_eq!(sa["metrics_addr"], serde_json::Value::Null);
    assert_eq!(sa["requests_last_minute"], 1, "the up-front listing");

    // A workload on `a` shows on `a` only.
    let out = env.tmp.path().join("one.bin");
    run(Command::new("cp").arg(a.dir.join("p/one.bin")).arg(&out));
    same_file(&out, &env.object("p/one.bin"));
    let st = env.serve.stats();
    let all = status_json();
    let (sa, sb) = (status_of(&all, &a.dir), status_of(&all, &b.dir));
    assert_eq!(sa["fetched_bytes_total"], SIZE);
    assert_eq!(sa["errors_last_minute"], 0);
    // Everything the server saw came from `a`, but `b`'s up-front listing.
    assert_eq!(sa["requests_total"].as_u64().unwrap(), st.requests - 1);
    assert_eq!(
        sa["requests_last_minute"].as_u64().unwrap(),
        st.requests - 1
    );
    assert!(sa["hit_ratio"].as_f64().is_some());
    assert_eq!(sb["requests_total"], 1);

    // One mount by its mountpoint, for people.
    let text = run(Command::new(common::bin()).arg("status").arg(&a.dir)).stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(a.dir.to_str().unwrap()) && text.contains("oss://bkt"),
        "{text}"
    );
    assert!(!text.contains(b.dir.to_str().unwrap()), "{text}");
    let not_a_mount = Command::new(common::bin())
        .arg("status")
        .arg(env.tmp.path())
        .output()
        .unwrap();
    assert_eq!(not_a_mount.status.code(), Some(1));

    // A mount killed with -9 leaves its socket behind; status skips and removes it.
    let mut c = env.mount_fg(
        "c",
        &[
            "-o",
            &format!("cache_dir={}", env.tmp.path().join("cache-c").display()),
        ],
    );
    let pid_c = c.child.as_ref().unwrap().id();
    let sc = status_of(&status_json(), &c.dir);
    assert_eq!(sc["pid"], pid_c);
    let sock = common::mount::socket_dir().join(format!("{pid_c}.sock"));
    assert!(sock.exists(), "{}", sock.display());
    c.kill_9();
    let all = status_json();
    assert!(all.iter().all(|s| s["pid"] != pid_c), "{all:?}");
    assert!(!sock.exists(), "stale socket removed");
    // An unmounted mount's process removes its socket as it exits.
    let b_dir = b.dir.clone();
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_json()
        .iter()
        .any(|s| s["mountpoint"].as_str() == b_dir.to_str())
    {
        assert!(
            Instant::now() < deadline,
            "unmounted b still listed after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tree warm tests use: nested directories of small objects and two that span parts.
fn warm_tree(b: &Path) -> Vec<(String, u64)> {
    let mut objects = Vec::new();
    for i in 0..40u64 {
        let key = format!("tree/d{}/s{}/f{i}.bin", i % 3, i % 2);
        let len = 1000 + i * 37_000;
        write_pattern_file(&b.join(&key), len, i + 100);
        objects.push((key, len));
    }
    for (key, len) in [
        ("tree/big/a.bin", 20u64 << 20),
        ("tree/big/b.bin", (9 << 20) + 77),
    ] {
        write_pattern_file(&b.join(key), len, len);
        objects.push((key.to_string(), len));
    }
    write_pattern_file(&b.join("outside.bin"), 5000, 9);
    objects
}

fn warm(args: &[&Path], extra: &[&str]) -> std::process::Output {
    Command::new(common::bin())
        .arg("warm")
        .args(extra)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn warm_fetches_a_tree_into_the_cache_and_the_mount_reads_it_without_the_server() {
    let mut objects = Vec::new();
    let env = Env::with_objects(|b| objects = warm_tree(b));
    let total: u64 = objects.iter().map(|o| o.1).sum();
    let m = env.mount("mnt", &["--metadata-ttl", "10m"]);
    let tree = m.dir.join("tree");

    // A path outside every mount is a usage error.
    let outside = warm(&[env.tmp.path()], &[]);
    assert_eq!(outside.status.code(), Some(2), "{outside:?}");
    assert!(
        String::from_utf8_lossy(&outside.stderr).contains("not inside a running ossmount mount")
    );

    // --dry-run: what it would fetch, and nothing fetched or created.
    let dry = warm(&[&tree], &["--dry-run"]);
    assert!(dry.status.success(), "{dry:?}");
    let text = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(
        text.matches("would fetch /").count(),
        objects.len(),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} objects", objects.len())),
        "{text}"
    );
    assert_eq!(env.serve.stats().bytes_sent, 0);
    let done_files = || {
        std::fs::read_dir(&env.cache)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".done"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(done_files(), 0);

    // The warm: every object fetched once, verified and finalized; `outside.bin` not.
    let out = warm(&[&tree], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!("warmed {0} of {0} objects", objects.len())),
        "{text}"
    );
    let st = env.serve.stats();
    assert_eq!(st.bytes_sent, total, "each byte fetched once");
    assert_eq!(done_files(), objects.len());

    // Resumable: again fetches nothing; finalized objects of the listed ETag cost no
    // request.
    env.serve.reset_stats();
    let again = warm(&[&tree, &tree.join("big/a.bin")], &[]);
    assert!(again.status.success(), "{again:?}");
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains(&format!("{} cached already", objects.len())),
        "{text}"
    );
    assert!(text.contains("fetched 0 B"), "{text}");
    let st = env.serve.stats();
    assert_eq!((st.bytes_sent, st.get_requests), (0, 0));
    // The warm's listing and HEAD of the file, and the mount's own lookups of the new
    // names; nothing per object (there are 42).
    assert!(st.requests <= 8, "{st:?}");

    // The names are listed once (lookups need them), then the server goes: every warmed
    // file reads back whole from the cache.
    run(Command::new("ls").arg("-lR").arg(&tree));
    let mut env = env;
    env.serve.child.kill().unwrap();
    env.serve.child.wait().unwrap();
    for (key, _) in &objects {
        same_file(&m.dir.join(key), &env.object(key));
    }
}

#[test]
fn warm_stops_at_the_cache_budget_and_resumes_after_an_interruption() {
    let mut objects = Vec::new();
    let env = Env::with_objects(|b| objects = warm_tree(b));
    let total: u64 = objects.iter().map(|o| o.1).sum();
    // A budget that holds the small objects but not both large ones.
    let small = env.mount(
        "small",
        &[
            "-o",
            &format!("cache_dir={}", env.tmp.path().join("c1").display()),
            "--cache-size",
            "45MiB",
        ],
    );
    let out = warm(&[&small.dir.join("tree")], &[]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cache budget"), "{err}");
    // What it warmed before it stopped is all still there, and within the budget.
    let text = String::from_utf8_lossy(&out.stdout);
    let warmed: usize = text
        .split("warmed ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {text}"));
    assert!((1..objects.len()).contains(&warmed), "{text}");
    let c1 = env.tmp.path().join("c1");
    let done: Vec<u64> = std::fs::read_dir(&c1)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".done"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert_eq!(done.len(), warmed, "{text}");
    assert!(done.iter().sum::<u64>() <= 45 << 20);
    drop(small);

    // Interrupted (the client killed while parts are on their way), then run again: no
    // byte is fetched twice.
    env.serve.reset_stats();
    env.serve.set_faults(&common::Faults {
        latency_ms: Some(150),
        ..Default::default()
    });
    let m = env.mount("mnt", &[]);
    let mut child = Command::new(common::bin())
        .arg("warm")
        .arg(m.dir.join("tree"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let done_files = || {
        std::fs::read_dir(&env.cache).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".done"))
            })
            .count()
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while done_files() < 3 {
        assert!(
            Instant::now() < deadline,
            "warm finished no object within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    env.serve.set_faults(&common::Faults::default());
    let out = warm(&[&m.dir.join("tree")], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let cached: usize = text
        .split("; ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no plan line: {text}"));
    assert!(
        (3..objects.len()).contains(&cached),
        "the first run finished some, not all: {text}"
    );
    // Parts that were in flight when the client went away still land and are recorded.
    assert_eq!(env.serve.stats().bytes_sent, total, "{text}");
}

#[test]
fn metrics_count_throttling_and_retries_as_the_server_saw_them() {
    const SIZE: u64 = 64 << 20;
    let env = Env::with_objects(|b| write_pattern_file(&b.join("f.bin"), SIZE, 33));
    let addr = format!("127.0.0.1:{}", free_port());
    let m = env.mount("mnt", &["--metrics-addr", &addr]);
    // One 503 SlowDown in four requests, and every body reset after 1 MiB (requests are at
    // most 2 MiB): some 100 requests, so no 503 at all is a negligible event.
    env.serve.set_faults(&common::Faults {
        rate_503: Some(0.25),
        reset_after_bytes: Some(1 << 20),
        ..Default::default()
    });
    let out = env.tmp.path().join("f.bin");
    run(Command::new("cp").arg(m.dir.join("f.bin")).arg(&out));
    same_file(&out, &env.object("f.bin"));
    let s = scrape_until(&addr, "nothing in flight", |s| {
        s.sum("ossmount_parts_in_flight", &[]) == 0.0
    });
    let st = env.serve.stats();
    assert!(st.status_503 > 0 && st.resets > 0, "{st:?}");
    let n503 = st.status_503 as f64;
    assert_eq!(s.sum("ossmount_store_throttled_total", &[]), n503);
    assert_eq!(
        s.sum("ossmount_store_requests_total", &[("status", "503")]),
        n503
    );
    // Every 503 was retried (with eight attempts, giving up is a 1-in-65,000 event per
    // request), every reset body resumed where it broke.
    assert_eq!(
        s.sum("ossmount_store_retries_total", &[("reason", "throttled")]),
        n503
    );
    let net = s.sum("ossmount_store_retries_total", &[("reason", "network")]);
    assert!(net > 0.0 && net <= st.resets as f64, "{net} vs {st:?}");
    assert_eq!(
        s.sum("ossmount_store_requests_total", &[]),
        st.requests as f64
    );
    // `status` counts the 503s as errors of the last minute; a reset body had its answer.
    let sm = status_of(&status_json(), &m.dir);
    assert_eq!(sm["errors_last_minute"], st.status_503, "{sm}");
    assert_eq!(sm["requests_last_minute"], st.requests, "{sm}");
}
