//! Counters and fault switches of `ossmount serve`, both served as JSON on the control
//! endpoints (`GET /_ossmount/stats`, `POST /_ossmount/stats/reset`,
//! `PUT /_ossmount/faults`). The field names are a contract with `tests/common`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Counters since start or the last reset. Control requests never count.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub get_requests: AtomicU64,
    pub head_requests: AtomicU64,
    pub list_requests: AtomicU64,
    /// GetObject body bytes that hyper has handed to the socket (counted when its write
    /// buffer drained, so bytes queued on a connection that then died are not counted).
    pub bytes_sent: AtomicU64,
    pub status_503: AtomicU64,
    pub status_412: AtomicU64,
    pub resets: AtomicU64,
    pub stalls: AtomicU64,
    pub auth_failures: AtomicU64,
    /// ETag/CRC-64 computations (each reads a whole file): lets tests assert "once per
    /// file version". Not part of the original contract, an addition. Shared (`Arc`)
    /// because the computation runs in a detached task that outlives the request.
    pub hash_computations: Arc<AtomicU64>,
    /// Listings walked and sorted afresh (the pages of one listing of an unchanged
    /// directory share one, see [`super::list::Listings`]). Also an addition.
    pub listings_built: AtomicU64,
}

/// A copy of [`Stats`] for JSON.
#[derive(Debug, Default, Clone, Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub get_requests: u64,
    pub head_requests: u64,
    pub list_requests: u64,
    pub bytes_sent: u64,
    pub status_503: u64,
    pub status_412: u64,
    pub resets: u64,
    pub stalls: u64,
    pub auth_failures: u64,
    pub hash_computations: u64,
    pub listings_built: u64,
}

impl Stats {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Relaxed),
            get_requests: self.get_requests.load(Relaxed),
            head_requests: self.head_requests.load(Relaxed),
            list_requests: self.list_requests.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            status_503: self.status_503.load(Relaxed),
            status_412: self.status_412.load(Relaxed),
            resets: self.resets.load(Relaxed),
            stalls: self.stalls.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            hash_computations: self.hash_computations.load(Relaxed),
            listings_built: self.listings_built.load(Relaxed),
        }
    }

    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.get_requests,
            &self.head_requests,
            &self.list_requests,
            &self.bytes_sent,
            &self.status_503,
            &self.status_412,
            &self.resets,
            &self.stalls,
            &self.auth_failures,
            &*self.hash_computations,
            &self.listings_built,
        ] {
            c.store(0, Relaxed);
        }
    }
}

/// Stall length when a stall rate is set without `stall_ms`: long enough that a client
/// with a sane read timeout (the SDKs use 10-60 s) would notice only if it is shorter.
pub const DEFAULT_STALL_MS: u64 = 5_000;

/// Fault settings; absent = off. `PUT /_ossmount/faults` replaces all of them at once.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Abort the TCP connection (RST) after this many body bytes of each GetObject
    /// response that is longer than that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_after_bytes: Option<u64>,
    /// Fraction (0..=1) of requests answered 503 SlowDown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_503: Option<f64>,
    /// Added before every response (the link's first-byte latency, [`super::link`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The latency varies uniformly by up to this much either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_jitter_ms: Option<u64>,
    /// Body bytes per second of each connection ([`super::link`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_bytes_per_s: Option<u64>,
    /// Body bytes per second of all connections together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes_per_s: Option<u64>,
    /// Requests per second; above it, 503 SlowDown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<u64>,
    /// A named link profile; its values fill in the knobs above that are not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<super::link::Profile>,
    /// Fraction (0..=1) of GetObject bodies that pause midway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_rate: Option<f64>,
    /// Length of one stall (default [`DEFAULT_STALL_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<u64>,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [("rate_503", self.rate_503), ("stall_rate", self.stall_rate)] {
            if let Some(r) = rate {
                if !(0.0..=1.0).contains(&r) {
                    return Err(format!("{name} must be between 0 and 1, got {r}"));
                }
            }
        }
        Ok(())
    }

    /// One request's first-byte delay (with jitter, [`super::link::latency`]).
    pub fn latency(&self) -> Option<Duration> {
        super::link::latency(self)
    }

    pub fn stall(&self) -> Duration {
        Duration::from_millis(self.stall_ms.unwrap_or(DEFAULT_STALL_MS))
    }
}

/// True with probability `rate`.
pub fn roll(rate: Option<f64>) -> bool {
    match rate {
        Some(r) if r >= 1.0 => true,
        Some(r) if r > 0.0 => rand::random::<f64>() < r,
        _ => false,
    }
}
