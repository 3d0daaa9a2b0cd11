//! Shared helpers for integration tests: a real `ossmount serve` process on a free
//! loopback port, its counters and its fault switches.
//!
//! The contract with `ossmount serve` (documented in its `--help` and the README), with
//! `--testing-aids`, which every server started here gets:
//! - it prints `ossmount serve: listening on http://ADDR` as the first line on stdout;
//! - `GET /_ossmount/stats` returns JSON counters (see [`Stats`]);
//! - `POST /_ossmount/stats/reset` zeroes them;
//! - `PUT /_ossmount/faults` with a JSON [`Faults`] body replaces the fault settings.
#![allow(dead_code)]

pub mod mount;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const AK: &str = "LTAI5tTestAccessKeyID";
pub const SK: &str = "TestAccessKeySecret0123456789";

/// Counters kept by the server since start or the last reset.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct Stats {
    pub requests: u64,
    pub get_requests: u64,
    pub head_requests: u64,
    pub list_requests: u64,
    /// Body bytes of GetObject responses actually written to sockets.
    pub bytes_sent: u64,
    pub status_503: u64,
    pub status_412: u64,
    pub resets: u64,
    pub stalls: u64,
    pub auth_failures: u64,
    /// Listings walked afresh; the pages of one listing of an unchanged directory share
    /// one walk.
    pub listings_built: u64,
}

/// Fault settings; every field optional, absent = off.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Faults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_after_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_503: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<u64>,
    /// The emulated link (src/serve/link.rs): latency ± jitter, rates, request quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_jitter_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_bytes_per_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes_per_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<u64>,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ossmount"))
}

/// A running `ossmount serve`, killed on drop.
pub struct Serve {
    pub child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub dir: PathBuf,
    /// `http` or `https` (serve with `--tls-cert`).
    pub scheme: &'static str,
    /// The arguments after `--listen ADDR`, for [`Serve::restart`].
    args: Vec<String>,
}

impl Serve {
    /// Serve `dir` with signatures required (keys [`AK`]/[`SK`] for both OSS and S3).
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, extra_args: &[&str]) -> Self {
        Self::spawn(dir, &[&["--testing-aids"], extra_args].concat())
    }

    /// A server as users run it: no testing aids (no stats, no faults).
    pub fn start_without_aids(dir: &Path, extra_args: &[&str]) -> Self {
        Self::spawn(dir, extra_args)
    }

    fn spawn(dir: &Path, extra_args: &[&str]) -> Self {
        let args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        Self::spawn_at(dir, "127.0.0.1:0", args)
    }

    /// Stop the server (SIGKILL): the store is unreachable until [`Serve::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start the server again on the same address, directory and arguments.
    pub fn restart(&mut self) {
        self.stop();
        let new = Self::spawn_at(&self.dir, &self.addr, self.args.clone());
        // The old one is already dead; dropping it kills nothing.
        drop(std::mem::replace(self, new));
    }

    fn spawn_at(dir: &Path, listen: &str, args: Vec<String>) -> Self {
        let mut child = Command::new(bin())
            .arg("serve")
            .arg(dir)
            .args(["--listen", listen])
            .args(&args)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env("AWS_ACCESS_KEY_ID", AK)
            .env("AWS_SECRET_ACCESS_KEY", SK)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ossmount serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .filter(|_| line.contains("listening on"))
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_string();
        let scheme = if line.contains("https://") {
            "https"
        } else {
            "http"
        };
        Serve {
            child,
            addr,
            dir: dir.to_path_buf(),
            scheme,
            args,
        }
    }

    /// `http://ADDR`, or `https://ADDR` when serve was started with `--tls-cert`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    fn control(&self, method: &str, path: &str, body: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "control {method} {path}: {resp}"
        );
        resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }

    pub fn stats(&self) -> Stats {
        serde_json::from_str(&self.control("GET", "/_ossmount/stats", "")).unwrap()
    }

    /// The fault and link settings in effect (`GET /_ossmount/faults`), as JSON.
    pub fn faults_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.control("GET", "/_ossmount/faults", "")).unwrap()
    }

    pub fn reset_stats(&self) {
        self.control("POST", "/_ossmount/stats/reset", "");
    }

    pub fn set_faults(&self, faults: &Faults) {
        self.control(
            "PUT",
            "/_ossmount/faults",
            &serde_json::to_string(faults).unwrap(),
        );
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce and data does not
/// compress or dedupe.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write `len` pattern bytes to `path` in 8 MiB chunks (for multi-GiB objects).
pub fn write_pattern_file(path: &Path, len: u64, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = len;
    let mut s = seed;
    while left > 0 {
        let n = left.min(8 << 20);
        f.write_all(&pattern(n as usize, s)).unwrap();
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        left -= n;
    }
    f.flush().unwrap();
}

/// A tmpfs mounted for the test, unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. "64m") at `dir` (created); panics if it cannot.
    pub fn new(dir: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        mount::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&dir),
        );
        Tmpfs(dir)
    }

    /// Bytes allocated in it (`du`: blocks, so sparse files count what they hold).
    pub fn used(&self) -> u64 {
        let out = mount::run(Command::new("du").args(["-s", "-B1"]).arg(&self.0));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
