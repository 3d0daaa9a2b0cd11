//! The credential chain end to end: real `ossmount` commands and FUSE mounts getting
//! temporary credentials from `ossmount serve`'s credential aids (fake ECS metadata
//! service and STS, `--credential-lifetime`), refreshing them, and surviving a revoked
//! token; plus every way a source can fail, which must be a clear error within seconds.
//!
//! Every command runs with the credential variables of the test process removed and HOME
//! pointed at the test's temp dir, so nothing of the machine's own configuration leaks in.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::mount::{is_mounted, Mount};
use common::{bin, pattern, write_pattern_file, AK, SK};
use serde_json::Value;

const BUCKET: &str = "bkt";

/// `ossmount serve` with the credential aids on, and a temp dir for everything else.
struct Aids {
    child: Child,
    endpoint: String,
    metadata: String,
    sts: String,
    /// serve's `--web-identity-token-file`: AWS STS takes only the token it holds (a test
    /// points `AWS_WEB_IDENTITY_TOKEN_FILE` at it and rotates it).
    web_token: PathBuf,
    /// serve's `--container-authorization-file`: the container endpoint's token.
    container_auth: PathBuf,
    tmp: tempfile::TempDir,
}

impl Drop for Aids {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr_of(line: &str, what: &str) -> String {
    assert!(line.contains(what), "expected {what:?} in {line:?}");
    line.trim().rsplit("http://").next().unwrap().to_string()
}

impl Aids {
    fn start(lifetime: &str, make: impl FnOnce(&Path)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = tmp.path().join("data").join(BUCKET);
        std::fs::create_dir_all(&bucket).unwrap();
        make(&bucket);
        let web_token = tmp.path().join("web-identity-token");
        std::fs::write(&web_token, "eks-token-one").unwrap();
        let container_auth = tmp.path().join("container-authorization");
        std::fs::write(&container_auth, "container-auth-SECRET-1\n").unwrap();
        let mut child = Command::new(bin())
            .arg("serve")
            .arg(tmp.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--testing-aids"])
            .args(["--metadata-listen", "127.0.0.1:0"])
            .args(["--sts-listen", "127.0.0.1:0"])
            .args(["--credential-lifetime", lifetime])
            .arg("--web-identity-token-file")
            .arg(&web_token)
            .arg("--container-authorization-file")
            .arg(&container_auth)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || lines.next().unwrap().unwrap();
        let endpoint = addr_of(&next(), "listening on");
        let metadata = addr_of(&next(), "metadata service on");
        let sts = addr_of(&next(), "sts on");
        Aids {
            child,
            endpoint,
            metadata,
            sts,
            web_token,
            container_auth,
            tmp,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn object(&self, key: &str) -> PathBuf {
        self.tmp.path().join("data").join(BUCKET).join(key)
    }

    /// A command with no credentials of the test process, HOME in the temp dir, pointed at
    /// the server.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("OSS_")
                || k.starts_with("ALIBABA_CLOUD_")
                || k.starts_with("AWS_")
                || k.starts_with("OSSMOUNT_")
            {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.tmp.path()).env_remove("RUST_LOG");
        c
    }

    /// `ossmount VERB URL --endpoint ... --region ... EXTRA`.
    fn store_command(&self, verb: &str, url: &str, extra: &[&str]) -> Command {
        let mut c = self.command(&[verb, url]);
        c.args([
            "--endpoint",
            &format!("http://{}", self.endpoint),
            "--region",
            "cn-hangzhou",
        ])
        .args(extra);
        c
    }

    /// One HTTP/1.1 request to one of serve's listeners: (status line, body).
    fn request(&self, addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    /// [`Self::request`] that must answer 200; its body.
    fn control(&self, addr: &str, method: &str, path: &str, body: &str) -> String {
        let (status, text) = self.request(addr, method, path, body);
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "{method} {path}: {status} {text}"
        );
        text
    }

    fn aid_stats(&self) -> Value {
        serde_json::from_str(&self.control(&self.metadata, "GET", "/_ossmount/credentials", ""))
            .unwrap()
    }

    fn serve_stats(&self) -> Value {
        serde_json::from_str(&self.control(&self.endpoint, "GET", "/_ossmount/stats", "")).unwrap()
    }

    fn aid_faults(&self, json: &str) {
        self.control(&self.metadata, "PUT", "/_ossmount/credentials/faults", json);
    }

    fn revoke(&self) -> u64 {
        let v: Value = serde_json::from_str(&self.control(
            &self.metadata,
            "POST",
            "/_ossmount/credentials/revoke",
            "",
        ))
        .unwrap();
        v["revoked"].as_u64().unwrap()
    }

    /// `mount SCHEME://bkt --foreground` (`scheme`: `oss` or `s3`) with `extra` and
    /// `envs`; returns once mounted.
    fn mount_fg(&self, scheme: &str, name: &str, extra: &[&str], envs: &[(&str, &str)]) -> Mount {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = self.path(&format!("{name}.log"));
        let mut c = self.store_command("mount", &format!("{scheme}://{BUCKET}"), extra);
        c.arg(&dir)
            .arg("--cache-dir")
            .arg(self.path(&format!("{name}.cache")))
            .arg("--foreground")
            .arg("--debug")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = c.spawn().unwrap();
        let mut m = Mount {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&m.dir) {
            if let Ok(Some(st)) = m.child.as_mut().unwrap().try_wait() {
                panic!(
                    "mount exited early: {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "mount not ready in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }
}

fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < timeout, "timed out after {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// Run with a time limit; (output, how long it took).
fn run_timed(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => (out.unwrap(), started.elapsed()),
        Err(_) => {
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} still running after {limit:?}");
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const MIB: u64 = 1 << 20;

/// The issue's refresh test: 20-second credentials from the metadata service, a mount
/// reading for over two minutes, every read checked, zero failures, several refreshes.
#[test]
fn mount_with_20s_metadata_credentials_reads_for_two_minutes() {
    let size = 48 * MIB;
    let aids = Aids::start("20s", |b| write_pattern_file(&b.join("big.bin"), size, 7));
    let expected = std::fs::read(aids.object("big.bin")).unwrap();
    // The default chain, the metadata service found through OSSMOUNT_METADATA_ENDPOINT;
    // --no-cache so that every read (the page cache dropped before each) is a signed
    // request to the store.
    let md = format!("http://{}", aids.metadata);
    let m = aids.mount_fg(
        "oss",
        "refresh",
        &["--no-cache"],
        &[("OSSMOUNT_METADATA_ENDPOINT", &md)],
    );
    let start_stats = aids.aid_stats();
    let f = std::fs::File::open(m.dir.join("big.bin")).unwrap();
    let started = Instant::now();
    let (mut reads, mut failures) = (0u64, 0u64);
    let mut buf = vec![0u8; MIB as usize];
    let mut windows = Vec::new();
    let mut last_window = (Instant::now(), n(&start_stats, "accepted"));
    while started.elapsed() < Duration::from_secs(130) {
        let off = (reads * 7_919 * 65_536) % (size - MIB);
        // Drop the kernel's copy, so that every read is a request signed with the
        // credentials of the moment (--no-cache keeps none of its own).
        // SAFETY: fadvise on an open descriptor.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
        match f.read_exact_at(&mut buf, off) {
            Ok(()) if buf[..] == expected[off as usize..(off + MIB) as usize] => {}
            Ok(()) => {
                failures += 1;
                eprintln!("read {reads} at {off}: wrong bytes");
            }
            Err(e) => {
                failures += 1;
                eprintln!("read {reads} at {off}: {e}");
            }
        }
        reads += 1;
        // Pace the reader: about 20 requests a second is plenty to cover every moment.
        std::thread::sleep(Duration::from_millis(40));
        if last_window.0.elapsed() > Duration::from_secs(10) {
            let accepted = n(&aids.aid_stats(), "accepted");
            windows.push(accepted - last_window.1);
            last_window = (Instant::now(), accepted);
        }
    }
    let st = aids.aid_stats();
    let refreshes = n(&st, "metadata_credentials") - 1;
    println!(
        "refresh test: {reads} reads of 1 MiB in {:.0?}, {failures} failed; {refreshes} refreshes \
         (credentials issued by the metadata service after the first), {} requests accepted with \
         temporary credentials, {} refused as expired, {} as invalid; accepted per 10 s: {windows:?}",
        started.elapsed(),
        n(&st, "accepted"),
        n(&st, "refused_expired"),
        n(&st, "refused_invalid"),
    );
    assert_eq!(failures, 0, "{}", aids.log("refresh"));
    assert!(reads >= 50, "{reads} reads");
    // 130 s of 20 s credentials refreshed with 10 s left: about 13; allow a loaded box.
    assert!(refreshes >= 8, "{refreshes} refreshes: {st}");
    assert_eq!(n(&st, "refused_expired"), 0, "{st}");
    // Reads went to the store with temporary credentials throughout, not from a cache.
    assert!(windows.iter().all(|w| *w > 0), "{windows:?}");
    drop(f);
}

/// A token revoked in the middle of a `cp`: the refused request refreshes the credentials
/// and is retried, and the copy is identical.
#[test]
fn revoked_token_mid_cp_refreshes_retries_and_copies_identical_bytes() {
    let size = 64 * MIB;
    let aids = Aids::start("1h", |b| write_pattern_file(&b.join("obj.bin"), size, 11));
    let m = aids.mount_fg(
        "oss",
        "revoke",
        // Small parts, two at a time: most requests start after the revocation.
        &[
            "--ram-role",
            "ossmount-serve-role",
            "--metadata-endpoint",
            &format!("http://{}", aids.metadata),
            "--part-size",
            "2MiB",
            "--jobs",
            "2",
        ],
        &[],
    );
    // Slow the server so the copy is still running when the token goes: 4 MB/s in all
    // makes the copy take 16 s, so a loaded box has seconds between a quarter and a half.
    aids.control(
        &aids.endpoint,
        "PUT",
        "/_ossmount/faults",
        "{\"latency_ms\": 40, \"total_bytes_per_s\": 4000000}",
    );
    let dst = aids.path("copy.bin");
    let mut cp = Command::new("cp")
        .arg(m.dir.join("obj.bin"))
        .arg(&dst)
        .spawn()
        .unwrap();
    wait_for(
        "a quarter of the object sent",
        Duration::from_secs(60),
        || n(&aids.serve_stats(), "bytes_sent") > size / 4,
    );
    let revoked = aids.revoke();
    assert!(revoked >= 1);
    let sent_at_revoke = n(&aids.serve_stats(), "bytes_sent");
    let status = cp.wait().unwrap();
    assert!(status.success(), "cp failed: {}", aids.log("revoke"));
    common::mount::same_file(&aids.object("obj.bin"), &dst);
    let st = aids.aid_stats();
    println!("revoke test: {st}, bytes sent at revoke {sent_at_revoke} of {size}");
    assert!(sent_at_revoke < size / 2, "revoked too late to matter");
    assert!(n(&st, "refused_invalid") >= 1, "{st}");
    assert!(n(&st, "metadata_credentials") >= 2, "{st}");
    let log = aids.log("revoke");
    assert!(log.contains("refreshing the credentials"), "{log}");
    assert!(
        !log.contains("CAIS") && !log.contains("STS."),
        "a secret reached the log"
    );
}

/// No metadata service at start: one line naming the service and its address, within
/// seconds, nothing mounted. `oss://`'s ECS metadata service, chosen explicitly and found
/// by the default chain; `s3://`'s IMDS and container endpoint, found by the default chain.
#[test]
fn metadata_service_down_at_start_is_a_clear_error_within_seconds() {
    let aids = Aids::start("1h", |b| std::fs::write(b.join("f"), "x").unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let mnt = aids.path("down");
    std::fs::create_dir_all(&mnt).unwrap();
    let full_uri = format!("{dead}/v1/credentials");
    // (scheme, flags, variables, what the error must name)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "oss",
            vec!["--ram-role", "web", "--metadata-endpoint", &dead],
            vec![],
            "metadata service",
        ),
        (
            "oss",
            vec!["--metadata-endpoint", &dead],
            vec![],
            "metadata service",
        ),
        (
            "s3",
            vec![],
            vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", &dead)],
            "EC2 instance metadata service",
        ),
        (
            "s3",
            vec![],
            vec![("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri)],
            "container credentials endpoint",
        ),
    ];
    for (scheme, extra, envs, what) in cases {
        let mut c = aids.store_command("mount", &format!("{scheme}://{BUCKET}"), &extra);
        c.arg(&mnt)
            .arg("--cache-dir")
            .arg(aids.path("down.cache"))
            .envs(envs.iter().copied());
        let (out, took) = run_timed(&mut c, Duration::from_secs(30));
        let e = stderr(&out);
        println!("{scheme}:// {what} down: {took:.1?}: {}", e.trim());
        assert!(!out.status.success(), "{e}");
        assert!(e.contains(what) && e.contains(&dead[7..]), "{what}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        assert!(took < Duration::from_secs(10), "{what}: {took:?}");
        assert!(!is_mounted(&mnt));
    }
}

/// `ossmount ls URL` with `extra` and `envs` must fail within 10 s, its error naming every
/// one of `needles` and no secret (every secret a test plants has `SECRET-` in it, or is
/// the key id `AKIASECRETID`).
fn fails_clearly(aids: &Aids, url: &str, extra: &[&str], envs: &[(&str, &str)], needles: &[&str]) {
    let mut c = aids.store_command("ls", url, extra);
    c.envs(envs.iter().copied());
    let (out, took) = run_timed(&mut c, Duration::from_secs(30));
    let e = stderr(&out);
    assert!(!out.status.success(), "{extra:?} {envs:?}: {e}");
    for needle in needles {
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    }
    assert!(
        !e.contains("SECRET-") && !e.contains("AKIASECRETID"),
        "a secret in the error: {e}"
    );
    assert!(
        took < Duration::from_secs(10),
        "{extra:?} {envs:?} took {took:?}"
    );
}

#[test]
fn broken_sources_fail_clearly_and_never_hang() {
    let aids = Aids::start("1h", |b| std::fs::write(b.join("f"), "x").unwrap());
    let url = format!("oss://{BUCKET}/");
    let md = format!("http://{}", aids.metadata);
    let check = |extra: &[&str], envs: &[(&str, &str)], needles: &[&str]| {
        fails_clearly(&aids, &url, extra, envs, needles)
    };
    // Malformed JSON from the metadata service.
    aids.aid_faults("{\"malformed\": true}");
    check(
        &[
            "--ram-role",
            "ossmount-serve-role",
            "--metadata-endpoint",
            &md,
        ],
        &[],
        &["not valid JSON"],
    );
    aids.aid_faults("{}");
    // A role the instance does not have.
    check(
        &["--ram-role", "other", "--metadata-endpoint", &md],
        &[],
        &["HTTP 404", "no such RAM role"],
    );
    // RRSA with a missing token file.
    let sts = format!("http://{}", aids.sts);
    let missing = aids.path("no-such-token");
    check(
        &["--sts-endpoint", &sts],
        &[
            ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
            (
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1:oidc-provider/p",
            ),
            ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", missing.to_str().unwrap()),
        ],
        &["cannot read the OIDC token file", "no-such-token"],
    );
    // A credential process that fails, one that prints junk, one that hangs.
    check(
        &[
            "--credential-process",
            "echo SECRET-OUT; echo role not found >&2; exit 7",
        ],
        &[],
        &["exit status: 7", "role not found"],
    );
    check(
        &["--credential-process", "echo '{\"AccessKeyId\": '"],
        &[],
        &["not valid JSON"],
    );
    check(
        &[
            "--credential-process",
            "sleep 60",
            "--credential-process-timeout",
            "2s",
        ],
        &[],
        &["no answer within 2 s"],
    );
    // Nothing at all: one line naming what was tried.
    check(
        &[],
        &[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")],
        &[
            "no credentials for oss://",
            "OSS_ACCESS_KEY_ID",
            "RRSA",
            ".aliyun/config.json",
            "--no-sign-request",
        ],
    );
}

#[test]
fn rotated_oidc_token_file_is_read_again() {
    let aids = Aids::start("20s", |b| std::fs::write(b.join("f.txt"), "hello").unwrap());
    let token = aids.path("token");
    std::fs::write(&token, "token-one").unwrap();
    let sts = format!("http://{}", aids.sts);
    let envs = [
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r"),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/p",
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", token.to_str().unwrap()),
        ("OSSMOUNT_STS_ENDPOINT", &sts),
    ];
    let m = aids.mount_fg("oss", "rrsa", &["--no-cache"], &envs);
    assert_eq!(
        std::fs::read_to_string(m.dir.join("f.txt")).unwrap(),
        "hello"
    );
    // Rotate as the kubelet does: a new file renamed over the old one.
    std::fs::write(aids.path("token.new"), "token-two").unwrap();
    std::fs::rename(aids.path("token.new"), &token).unwrap();
    wait_for_token(&aids, "token-two");
    // And the credentials it gave work.
    let calls = n(&aids.aid_stats(), "assume_role_oidc");
    wait_for("one more refresh", Duration::from_secs(40), || {
        n(&aids.aid_stats(), "assume_role_oidc") > calls
    });
    let f = std::fs::File::open(m.dir.join("f.txt")).unwrap();
    let mut b = [0u8; 5];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"hello");
    assert!(
        aids.log("rrsa").contains("credentials refreshed"),
        "{}",
        aids.log("rrsa")
    );
}

#[test]
fn ram_role_arn_profile_process_and_auth_check() {
    let data = pattern(300_000, 3);
    let aids = Aids::start("1h", |b| std::fs::write(b.join("o.bin"), &data).unwrap());
    // A ram_role_arn profile in ~/.alibabacloud/credentials: STS AssumeRole signed with
    // serve's key pair, checked by serve.
    let dir = aids.tmp.path().join(".alibabacloud");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("credentials"),
        format!(
            "[default]\ntype = ram_role_arn\naccess_key_id = {AK}\naccess_key_secret = {SK}\n\
             role_arn = acs:ram::123:role/reader\nrole_session_name = test\n"
        ),
    )
    .unwrap();
    let sts = format!("http://{}", aids.sts);
    let mut c = aids.store_command(
        "cat",
        &format!("oss://{BUCKET}/o.bin"),
        &["--sts-endpoint", &sts],
    );
    c.env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    let (out, _) = run_timed(&mut c, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, data);
    assert_eq!(n(&aids.aid_stats(), "assume_role"), 1);
    // A wrong source secret is refused by STS with its code.
    std::fs::write(
        dir.join("credentials"),
        format!("[default]\ntype = ram_role_arn\naccess_key_id = {AK}\naccess_key_secret = wrong\nrole_arn = acs:ram::123:role/reader\n"),
    )
    .unwrap();
    let mut c = aids.store_command("ls", &format!("oss://{BUCKET}/"), &["--sts-endpoint", &sts]);
    let (out, _) = run_timed(&mut c, Duration::from_secs(30));
    assert!(
        stderr(&out).contains("SignatureDoesNotMatch"),
        "{}",
        stderr(&out)
    );
    // A credential process printing serve's keys.
    let json = format!("{{\"AccessKeyId\":\"{AK}\",\"AccessKeySecret\":\"{SK}\"}}");
    let process = format!("echo '{json}'");
    let mut c = aids.store_command(
        "cat",
        &format!("oss://{BUCKET}/o.bin"),
        &["--credential-process", &process],
    );
    let (out, _) = run_timed(&mut c, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, data);
    // auth check: source, last four characters of the key id, expiry, one signed request.
    let md = format!("http://{}", aids.metadata);
    let mut c = aids.command(&["auth", "check", &format!("oss://{BUCKET}/")]);
    c.args([
        "--endpoint",
        &format!("http://{}", aids.endpoint),
        "--region",
        "cn-hangzhou",
    ])
    .args([
        "--ram-role",
        "ossmount-serve-role",
        "--metadata-endpoint",
        &md,
    ]);
    let (out, _) = run_timed(&mut c, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("source:  ECS RAM role \"ossmount-serve-role\""),
        "{text}"
    );
    let key_line = text.lines().find(|l| l.starts_with("key id:")).unwrap();
    assert_eq!(
        key_line.trim_start_matches("key id:").trim().len(),
        7,
        "{key_line}"
    );
    assert!(
        text.contains("expires: ") && text.contains("refreshed before then"),
        "{text}"
    );
    assert!(
        text.contains("request: ListObjectsV2") && text.contains(": OK"),
        "{text}"
    );
    assert!(
        !text.contains("STS.") && !text.contains("CAIS"),
        "no key id or token: {text}"
    );
}

/// The metadata service fails: the mount keeps its credentials while they last, then reads
/// fail with EACCES and one clear log line, and work again by themselves once the service
/// is back, without a remount. Secrets never reach the (debug) log.
#[test]
fn expired_credentials_fail_reads_clearly_then_recover() {
    let aids = Aids::start("20s", |b| std::fs::write(b.join("f.txt"), "hello").unwrap());
    let md = format!("http://{}", aids.metadata);
    let m = aids.mount_fg(
        "oss",
        "expiry",
        &[
            "--no-cache",
            "--ram-role",
            "ossmount-serve-role",
            "--metadata-endpoint",
            &md,
        ],
        &[],
    );
    let path = m.dir.join("f.txt");
    let read = || -> std::io::Result<Vec<u8>> {
        let f = std::fs::File::open(&path)?;
        // SAFETY: fadvise on an open descriptor.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
        let mut b = vec![0u8; 5];
        f.read_exact_at(&mut b, 0)?;
        Ok(b)
    };
    assert_eq!(read().unwrap(), b"hello");
    aids.aid_faults("{\"status\": 500}");
    // Until the credentials expire, reads go on.
    assert_eq!(read().unwrap(), b"hello");
    wait_for(
        "reads refused once the credentials expired",
        Duration::from_secs(60),
        || matches!(read(), Err(e) if e.raw_os_error() == Some(libc::EACCES)),
    );
    wait_for("the expiry logged", Duration::from_secs(30), || {
        aids.log("expiry").contains("expired at")
    });
    aids.aid_faults("{}");
    wait_for("reads work again", Duration::from_secs(60), || {
        read().is_ok_and(|b| b == b"hello")
    });
    let log = aids.log("expiry");
    assert!(
        log.contains("refreshing credentials from ECS RAM role"),
        "{log}"
    );
    assert_eq!(
        log.matches("requests are refused until a refresh succeeds")
            .count(),
        1,
        "one expiry line: {log}"
    );
    assert!(!log.contains("CAIS"), "a session token reached the log");
    assert!(
        !log.contains("STS."),
        "a full temporary key id reached the log"
    );
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Wait (40 s at most: two refreshes of 20 s credentials) until serve's STS has been
/// called with web-identity / OIDC token `token` (serve records each token's SHA-256).
fn wait_for_token(aids: &Aids, token: &str) {
    let want = sha256_hex(token);
    wait_for(
        "STS called with the rotated token",
        Duration::from_secs(40),
        || {
            aids.aid_stats()["oidc_tokens_sha256"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str() == Some(want.as_str()))
        },
    );
}

/// EKS rotates the projected service-account token: the mount reads the token file again
/// at each refresh, so once the file is replaced (and the old token refused by STS) the
/// next refresh sends the new one, and reads go on.
#[test]
fn s3_rotated_web_identity_token_file_is_picked_up() {
    let aids = Aids::start("20s", |b| std::fs::write(b.join("f.txt"), "hello").unwrap());
    let sts = format!("http://{}", aids.sts);
    let role = "arn:aws:iam::123456789012:role/reader";
    let envs = [
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            aids.web_token.to_str().unwrap(),
        ),
        ("AWS_ROLE_ARN", role),
        ("AWS_ENDPOINT_URL_STS", &sts),
    ];
    let m = aids.mount_fg("s3", "irsa", &["--no-cache"], &envs);
    let path = m.dir.join("f.txt");
    let read = || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: fadvise on an open descriptor.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
        let mut b = [0u8; 5];
        f.read_exact_at(&mut b, 0).map(|()| b)
    };
    assert_eq!(&read().unwrap(), b"hello");
    let st = aids.aid_stats();
    let one = sha256_hex("eks-token-one");
    assert_eq!(st["oidc_tokens_sha256"], serde_json::json!([one]), "{st}");
    let calls = n(&st, "aws_assume_role_web_identity");
    // Rotate as the kubelet does: a new file renamed over the old one.
    let rotated_at = Instant::now();
    std::fs::write(aids.path("web-identity-token.new"), "eks-token-two").unwrap();
    std::fs::rename(aids.path("web-identity-token.new"), &aids.web_token).unwrap();
    // STS refuses the old token from now on.
    let form = |token: &str| {
        format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A\
             123456789012%3Arole%2Freader&RoleSessionName=probe&WebIdentityToken={token}"
        )
    };
    let (status, body) = aids.request(&aids.sts, "POST", "/", &form("eks-token-one"));
    assert!(
        status.contains(" 400") && body.contains("InvalidIdentityToken"),
        "{status} {body}"
    );
    wait_for_token(&aids, "eks-token-two");
    let st = aids.aid_stats();
    println!(
        "rotation test: the new token used {:.1?} after the rotation; {} web identity calls \
         before, {} after; {} STS errors (the probe with the old token)",
        rotated_at.elapsed(),
        calls,
        n(&st, "aws_assume_role_web_identity"),
        n(&st, "sts_errors")
    );
    assert!(n(&st, "aws_assume_role_web_identity") > calls, "{st}");
    // The mount never sent the old token after the rotation: the probe's is the only error.
    assert_eq!(n(&st, "sts_errors"), 1, "{st}");
    // And the credentials it gave work.
    assert_eq!(&read().unwrap(), b"hello");
    assert_eq!(n(&aids.aid_stats(), "refused_expired"), 0);
    let log = aids.log("irsa");
    assert!(log.contains("credentials refreshed"), "{log}");
    assert!(!log.contains("eks-token"), "a token reached the log: {log}");
}

/// `s3://` sources that answer nonsense or refuse: a clear error naming the source, within
/// seconds, and no secret (the container's authorization token, a key a broken process
/// printed) in it.
#[test]
fn s3_broken_sources_fail_clearly_and_never_hang() {
    let aids = Aids::start("1h", |b| std::fs::write(b.join("f"), "x").unwrap());
    let url = format!("s3://{BUCKET}/");
    let md = format!("http://{}", aids.metadata);
    let full_uri = format!("{md}/v1/credentials");
    let auth = aids.container_auth.to_str().unwrap().to_string();
    let container = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri.as_str()),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", auth.as_str()),
    ];
    let imds = [("AWS_EC2_METADATA_SERVICE_ENDPOINT", md.as_str())];
    // Malformed JSON from the container endpoint and from IMDS.
    aids.aid_faults("{\"malformed\": true}");
    fails_clearly(
        &aids,
        &url,
        &[],
        &container,
        &[
            "container credentials endpoint",
            &full_uri,
            "not valid JSON",
        ],
    );
    fails_clearly(
        &aids,
        &url,
        &[],
        &imds,
        &["EC2 instance metadata service", &md[7..], "not valid JSON"],
    );
    aids.aid_faults("{}");
    // The container endpoint refusing a wrong authorization token.
    let wrong = aids.path("wrong-auth");
    std::fs::write(&wrong, "wrong-SECRET-token").unwrap();
    fails_clearly(
        &aids,
        &url,
        &[],
        &[
            container[0],
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                wrong.to_str().unwrap(),
            ),
        ],
        &["HTTP 401", "authorization token was refused"],
    );
    // A credential_process of ~/.aws/config printing a key and then junk.
    let config = aids.path("aws-config");
    std::fs::write(
        &config,
        "[default]\ncredential_process = echo '{\"Version\": 1, \"AccessKeyId\": \"AKIASECRETID\", \
         \"SecretAccessKey\": \"SECRET-KEY\",'\n",
    )
    .unwrap();
    fails_clearly(
        &aids,
        &url,
        &[],
        &[("AWS_CONFIG_FILE", config.to_str().unwrap())],
        &["not valid JSON"],
    );
    // A credential_process that hangs is cut off (its own timeout), not waited for.
    std::fs::write(&config, "[default]\ncredential_process = sleep 60\n").unwrap();
    fails_clearly(
        &aids,
        &url,
        &["--credential-process-timeout", "2s"],
        &[("AWS_CONFIG_FILE", config.to_str().unwrap())],
        &["no answer within 2 s"],
    );
    // A web identity token STS does not take.
    let token = aids.path("stale-token");
    std::fs::write(&token, "stale-SECRET-token").unwrap();
    let sts = format!("http://{}", aids.sts);
    fails_clearly(
        &aids,
        &url,
        &[],
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/reader"),
            ("AWS_ENDPOINT_URL_STS", &sts),
        ],
        &["AssumeRoleWithWebIdentity", "InvalidIdentityToken"],
    );
}

/// `s3://` with AWS_PROFILE: static keys from ~/.aws/credentials, and a credential_process
/// in ~/.aws/config printing the AWS JSON shape.
#[test]
fn s3_profiles_from_the_aws_files() {
    let data = pattern(100_000, 5);
    let aids = Aids::start("1h", |b| std::fs::write(b.join("o.bin"), &data).unwrap());
    let aws = aids.tmp.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!("[default]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"),
    )
    .unwrap();
    let json =
        format!("{{\"Version\": 1, \"AccessKeyId\": \"{AK}\", \"SecretAccessKey\": \"{SK}\"}}");
    std::fs::write(
        aws.join("config"),
        format!("[profile helper]\ncredential_process = echo '{json}'\n"),
    )
    .unwrap();
    let url = format!("s3://{BUCKET}/o.bin");
    for profile in [None, Some("helper")] {
        let mut c = aids.store_command("cat", &url, &[]);
        if let Some(p) = profile {
            c.env("AWS_PROFILE", p);
        }
        let (out, _) = run_timed(&mut c, Duration::from_secs(30));
        assert!(out.status.success(), "{profile:?}: {}", stderr(&out));
        assert_eq!(out.stdout, data, "{profile:?}");
    }
    let mut c = aids.store_command("cat", &url, &[]);
    c.env("AWS_PROFILE", "missing");
    let (out, _) = run_timed(&mut c, Duration::from_secs(30));
    assert!(
        stderr(&out).contains("AWS_PROFILE is set"),
        "{}",
        stderr(&out)
    );
}

/// Read `file` (whose bytes are `expected`) through the mount for `secs`, dropping the page
/// cache before each read; (reads, failures).
fn read_for(file: &Path, expected: &[u8], secs: u64) -> (u64, u64) {
    let f = std::fs::File::open(file).unwrap();
    let size = expected.len() as u64;
    let chunk = 256 * 1024u64;
    let started = Instant::now();
    let (mut reads, mut failures) = (0u64, 0u64);
    let mut buf = vec![0u8; chunk as usize];
    while started.elapsed() < Duration::from_secs(secs) {
        let off = (reads * 7_919 * 4096) % (size - chunk);
        // SAFETY: fadvise on an open descriptor.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
        match f.read_exact_at(&mut buf, off) {
            Ok(()) if buf[..] == expected[off as usize..(off + chunk) as usize] => {}
            other => {
                failures += 1;
                eprintln!("read {reads} at {off}: {other:?}");
            }
        }
        reads += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    (reads, failures)
}

/// 20-second credentials from every other refreshable source keep a mount reading for
/// two minutes (the issue's figure), all mounted at once (one window for all): for
/// `oss://` RRSA, a ram_role_arn profile, a credential process and a credentials URI; for `s3://` web identity (EKS IRSA: the token file,
/// AWS_ROLE_ARN, STS found through AWS_ENDPOINT_URL_STS), the container endpoint (EKS Pod
/// Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI and an authorization token file), IMDSv2
/// (AWS_EC2_METADATA_SERVICE_ENDPOINT), a role_arn + source_profile profile and a
/// credential_process of ~/.aws/config. Each source has its own serve counter, so the
/// refreshes are counted per source (the credentials URI's with the s3 process's, which
/// fetches the same document).
#[test]
fn short_lived_credentials_from_every_refreshable_source_keep_reads_going() {
    let size = 8 * MIB;
    let aids = Aids::start("20s", |b| write_pattern_file(&b.join("o.bin"), size, 9));
    let expected = std::fs::read(aids.object("o.bin")).unwrap();
    let sts = format!("http://{}", aids.sts);
    let md = format!("http://{}", aids.metadata);
    let token = aids.path("token");
    std::fs::write(&token, "rrsa-token").unwrap();
    let ini = aids.path("credentials.ini");
    std::fs::write(
        &ini,
        format!("[default]\ntype = ram_role_arn\naccess_key_id = {AK}\naccess_key_secret = {SK}\nrole_arn = acs:ram::1:role/r\n"),
    )
    .unwrap();
    // The process fetches 20 s credentials from the metadata service with curl and prints
    // the document as is (extra fields are ignored).
    let process = format!(
        "t=$(curl -sf -X PUT -H 'X-aliyun-ecs-metadata-token-ttl-seconds: 60' {md}/latest/api/token) && \
         curl -sf -H \"X-aliyun-ecs-metadata-token: $t\" {md}/latest/meta-data/ram/security-credentials/ossmount-serve-role"
    );
    // ~/.aws: a role assumed with a source profile's keys, and a credential_process that
    // turns the credentials URI's document into the AWS shape with sed.
    let aws = aids.tmp.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!("[keys]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/reader\nsource_profile = keys\n\
             [profile proc]\ncredential_process = curl -sf {md}/credentials-uri | sed -e \
             s/AccessKeySecret/SecretAccessKey/ -e s/SecurityToken/SessionToken/\n"
        ),
    )
    .unwrap();
    let role = "arn:aws:iam::123456789012:role/reader".to_string();
    let s = |v: &Path| v.to_str().unwrap().to_string();
    // (name, scheme, flags, variables, serve's counter for this source).
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<String>,
        Vec<(&'a str, String)>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "oss-rrsa",
            "oss",
            vec!["--sts-endpoint".into(), sts.clone()],
            vec![
                ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/r".into()),
                (
                    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                    "acs:ram::1:oidc-provider/p".into(),
                ),
                ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", s(&token)),
            ],
            "assume_role_oidc",
        ),
        (
            "oss-arn",
            "oss",
            vec!["--sts-endpoint".into(), sts.clone()],
            vec![
                ("ALIBABA_CLOUD_CREDENTIALS_FILE", s(&ini)),
                ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()),
            ],
            "assume_role",
        ),
        (
            "oss-process",
            "oss",
            vec!["--credential-process".into(), process],
            vec![],
            "metadata_credentials",
        ),
        (
            "oss-uri",
            "oss",
            vec![],
            vec![
                (
                    "ALIBABA_CLOUD_CREDENTIALS_URI",
                    format!("{md}/credentials-uri"),
                ),
                ("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true".into()),
            ],
            // Shared with s3-process, whose command fetches the same document.
            "credentials_uri",
        ),
        (
            "s3-web-identity",
            "s3",
            vec![],
            vec![
                ("AWS_WEB_IDENTITY_TOKEN_FILE", s(&aids.web_token)),
                ("AWS_ROLE_ARN", role.clone()),
                ("AWS_ENDPOINT_URL_STS", sts.clone()),
            ],
            "aws_assume_role_web_identity",
        ),
        (
            "s3-container",
            "s3",
            vec![],
            vec![
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    format!("{md}/v1/credentials"),
                ),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    s(&aids.container_auth),
                ),
            ],
            "container_credentials",
        ),
        (
            "s3-imds",
            "s3",
            vec![],
            vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", md.clone())],
            "imds_credentials",
        ),
        (
            "s3-role-profile",
            "s3",
            vec![],
            vec![
                ("AWS_PROFILE", "role".into()),
                ("AWS_ENDPOINT_URL_STS", sts.clone()),
            ],
            "aws_assume_role",
        ),
        (
            "s3-process",
            "s3",
            vec![],
            vec![("AWS_PROFILE", "proc".into())],
            "credentials_uri",
        ),
    ];
    let mounts: Vec<(&str, &str, Mount)> = cases
        .iter()
        .map(|(name, scheme, extra, envs, counter)| {
            let mut extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            extra.push("--no-cache");
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            (*name, *counter, aids.mount_fg(scheme, name, &extra, &envs))
        })
        .collect();
    let before = aids.aid_stats();
    let started = Instant::now();
    let results: Vec<(&str, u64, u64)> = std::thread::scope(|sc| {
        let handles: Vec<_> = mounts
            .iter()
            .map(|(name, _, m)| {
                let file = m.dir.join("o.bin");
                let expected = &expected;
                sc.spawn(move || {
                    let (r, f) = read_for(&file, expected, 120);
                    (*name, r, f)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = aids.aid_stats();
    let delta = |f: &str| n(&after, f) - n(&before, f);
    println!(
        "every-source test: {} mounts read for {:.0?} with 20 s credentials",
        results.len(),
        started.elapsed()
    );
    for ((name, reads, failures), (_, counter, _)) in results.iter().zip(&mounts) {
        println!(
            "  {name:16} {reads:4} reads of 256 KiB, {failures} failed, {} refreshes ({counter})",
            delta(counter)
        );
    }
    println!(
        "  serve: {} requests accepted with temporary credentials, {} refused as expired, {} \
         as invalid, {} STS errors",
        delta("accepted"),
        n(&after, "refused_expired"),
        n(&after, "refused_invalid"),
        n(&after, "sts_errors")
    );
    for ((name, reads, failures), (_, counter, _)) in results.iter().zip(&mounts) {
        assert_eq!(*failures, 0, "{name}: {}", aids.log(name));
        assert!(*reads >= 100, "{name}: {reads} reads");
        // 120 s of 20 s credentials, refreshed with ~10 s left: about 11 per source.
        assert!(delta(counter) >= 8, "{name}: {counter} {before} -> {after}");
    }
    assert_eq!(n(&after, "refused_expired"), 0, "{after}");
    assert_eq!(n(&after, "sts_errors"), 0, "{after}");
    assert_eq!(n(&after, "container_refused"), 0, "{after}");
}
