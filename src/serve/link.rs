//! An emulated object-store link (testing aid): what `ossmount serve` on loopback lacks
//! compared with OSS or S3 seen from a machine in the same region, so that a client tuned
//! here is tuned for the real thing.
//!
//! Four knobs, each a field of [`super::stats::Faults`] (so `PUT /_ossmount/faults` sets
//! them at run time) and a `--link-*` option of `ossmount serve`:
//!
//! - **First-byte latency** (`latency_ms`, `latency_jitter_ms`): every request waits
//!   `latency ± jitter` (uniform) before its response headers are sent.
//! - **Rate per connection** (`conn_bytes_per_s`): the body bytes of one response (HTTP/1.1
//!   carries one response at a time per connection, so this is the connection's rate).
//! - **Total rate** (`total_bytes_per_s`): one token bucket shared by every response.
//! - **Request rate** (`requests_per_s`): a bucket of that many requests refilled at that
//!   rate per second (so a burst of one second's quota passes, as with quotas counted per
//!   second); a request above it is answered 503 `SlowDown` in the OSS or S3 error XML.
//!
//! `--link oss-like` ([`Profile::OssLike`]) sets all four from public figures:
//!
//! | knob | value | why |
//! |---|---|---|
//! | first byte | 20 ms ± 5 ms | OSS and S3 answer a GET from inside the region after 10-30 ms (the range issue 14 states for both) |
//! | per connection | 90 MB/s | AWS's S3 performance guidelines: "one concurrent request per 85-90 MB/s of desired network throughput" |
//! | total | 1 GB/s | OSS's default bucket bandwidth in mainland China regions is 10 Gbit/s (1.25 GB/s); 1 GB/s is round and within what this 2-core box can serve (1-1.9 GB/s on loopback) |
//! | requests | 5,500 /s | S3's documented GET/HEAD rate per prefix (OSS allows 10,000 QPS per bucket; the stricter of the two) |
//!
//! Options given with `--link` override the profile's values.
//!
//! How the rates are kept, and why it is exact and cheap: each response body asks a
//! [`BodyPacer`] for a *grant* (5 ms of its rate, 16 KiB to 1 MiB) before handing bytes to
//! hyper. The per-connection bucket is a virtual clock (`next_free`): a grant may start
//! once `next_free` has passed, and moves it on by `grant / rate`. The total bucket is the
//! same clock shared by all bodies, but *reserved*: a body takes the next slot and sleeps
//! until it, so N waiting bodies sleep once each instead of all waking for every grant.
//! Time lost to late wake-ups is made up by the next grants, for up to [`CREDIT`] (250 ms:
//! on a loaded box timers fire tens of milliseconds late); a clock that nobody was using
//! starts afresh at `now`, so an idle link or a new connection never sends a burst.
//! Long-run bytes = rate x time + one grant; memory is bounded because a body that waits
//! stops reading its file (the reader thread's channel holds two chunks) and hyper's buffer
//! drains; CPU is one timer wake-up per grant (at 90 MB/s, about 350 per second per body).
//! Pacing happens where object bytes are handed to hyper, so control endpoints, headers
//! and error bodies are never slowed; the kernel's socket buffers add a fixed lead of at
//! most their size, not a growing one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::time::Sleep;

use super::stats::Faults;

/// How far behind `now` a clock may fall while bodies are sending: time lost to late
/// timer wake-ups (a loaded box delays them by tens of milliseconds) is made up by the next
/// grants, up to this much. A clock nobody is using starts afresh instead, so an idle link
/// never releases a burst.
pub const CREDIT: Duration = Duration::from_millis(250);

/// A grant is this much of the rate, within [`MIN_GRANT`, `MAX_GRANT`]: 5 ms keeps timer
/// wake-ups to a few hundred per second per body at 90 MB/s and the burstiness well below
/// what a client can see.
const GRANT_TIME: Duration = Duration::from_millis(5);
const MIN_GRANT: u64 = 16 << 10;
const MAX_GRANT: u64 = 1 << 20;

/// A named set of link settings.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// OSS or S3 from inside the region: 20 ms ± 5 ms first byte, 90 MB/s per connection,
    /// 1 GB/s total, 5,500 requests/s.
    OssLike,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::OssLike => "oss-like",
        }
    }

    /// Fill in the knobs `f` leaves unset.
    pub fn fill(self, f: &mut Faults) {
        match self {
            Profile::OssLike => {
                f.latency_ms.get_or_insert(20);
                f.latency_jitter_ms.get_or_insert(5);
                f.conn_bytes_per_s.get_or_insert(90_000_000);
                f.total_bytes_per_s.get_or_insert(1_000_000_000);
                f.requests_per_s.get_or_insert(5_500);
            }
        }
    }
}

/// `ossmount serve`'s `--link*` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LinkArgs {
    /// Testing aid: emulate an object-store link with a named profile (`oss-like`: 20 ms ±
    /// 5 ms first byte, 90 MB/s per connection, 1 GB/s total, 5,500 requests/s). The
    /// --link-* options override its values.
    #[arg(long, value_enum)]
    pub link: Option<Profile>,
    /// Testing aid: first-byte latency of every request (same as --fault-latency).
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub link_latency: Option<Duration>,
    /// Testing aid: the latency varies uniformly by up to this much either way.
    #[arg(long, value_parser = crate::units::parse_duration)]
    pub link_jitter: Option<Duration>,
    /// Testing aid: body bytes per second of each connection, e.g. `90MB` (10^6 bytes).
    #[arg(long, value_parser = parse_rate)]
    pub link_conn_rate: Option<u64>,
    /// Testing aid: body bytes per second of all connections together, e.g. `1GB`.
    #[arg(long, value_parser = parse_rate)]
    pub link_total_rate: Option<u64>,
    /// Testing aid: requests per second; above it requests get 503 SlowDown.
    #[arg(long)]
    pub link_request_rate: Option<u64>,
}

impl LinkArgs {
    /// Put these settings into `f` (explicit options win over the profile).
    pub fn apply(&self, f: &mut Faults) {
        if let Some(d) = self.link_latency {
            f.latency_ms = Some(d.as_millis() as u64);
        }
        if let Some(d) = self.link_jitter {
            f.latency_jitter_ms = Some(d.as_millis() as u64);
        }
        if self.link_conn_rate.is_some() {
            f.conn_bytes_per_s = self.link_conn_rate;
        }
        if self.link_total_rate.is_some() {
            f.total_bytes_per_s = self.link_total_rate;
        }
        if self.link_request_rate.is_some() {
            f.requests_per_s = self.link_request_rate;
        }
        if let Some(p) = self.link {
            f.link = Some(p);
        }
    }
}

/// A rate as a size per second: `90MB`, `90MB/s`, `1GiB/s`, `1000000`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let n = crate::units::parse_size(t)?;
    if n == 0 {
        return Err(format!("rate {s:?} must be above zero"));
    }
    Ok(n)
}

/// Expand the profile into the fields it leaves unset, then check every value.
pub fn resolve(mut f: Faults) -> Result<Faults, String> {
    if let Some(p) = f.link {
        p.fill(&mut f);
    }
    for (name, v) in [
        ("conn_bytes_per_s", f.conn_bytes_per_s),
        ("total_bytes_per_s", f.total_bytes_per_s),
        ("requests_per_s", f.requests_per_s),
    ] {
        if v == Some(0) {
            return Err(format!(
                "{name} must be above zero (leave it out for no limit)"
            ));
        }
    }
    if let (Some(j), l) = (f.latency_jitter_ms, f.latency_ms.unwrap_or(0)) {
        if j > l {
            return Err(format!(
                "latency_jitter_ms ({j}) must not exceed latency_ms ({l}): the latency is latency ± jitter"
            ));
        }
    }
    f.validate()?;
    Ok(f)
}

/// One request's first-byte delay: `latency ± jitter`, uniform.
pub fn latency(f: &Faults) -> Option<Duration> {
    let base = f.latency_ms.filter(|&ms| ms > 0)? as f64;
    let jitter = f.latency_jitter_ms.unwrap_or(0) as f64;
    let ms = if jitter > 0.0 {
        base + jitter * (2.0 * rand::random::<f64>() - 1.0)
    } else {
        base
    };
    Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
}

/// The link's state shared by all connections: the total-rate clock and the request quota.
#[derive(Default)]
pub struct LinkState {
    total: Arc<SharedClock>,
    requests: Mutex<RequestQuota>,
}

impl LinkState {
    /// Admit one request under `limit` requests per second; false: answer 503 SlowDown.
    pub fn admit_request(&self, limit: Option<u64>) -> bool {
        let Some(rate) = limit else { return true };
        self.requests.lock().admit(rate, Instant::now())
    }

    /// The pacer of one response body under `f`'s rates, `None` when no rate is set.
    pub fn pacer(&self, f: &Faults) -> Option<BodyPacer> {
        if f.conn_bytes_per_s.is_none() && f.total_bytes_per_s.is_none() {
            return None;
        }
        let grant = [f.conn_bytes_per_s, f.total_bytes_per_s]
            .into_iter()
            .flatten()
            .map(grant_for)
            .min()
            .unwrap_or(MAX_GRANT);
        Some(BodyPacer {
            conn: f.conn_bytes_per_s.map(|rate| Clock {
                rate,
                next_free: Instant::now(),
            }),
            total: f.total_bytes_per_s.map(|r| (self.total.clone(), r)),
            grant,
            granted: 0,
            timer: None,
            started: false,
        })
    }
}

fn grant_for(rate: u64) -> u64 {
    ((rate as f64 * GRANT_TIME.as_secs_f64()) as u64).clamp(MIN_GRANT, MAX_GRANT)
}

fn span(bytes: u64, rate: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 / rate as f64)
}

/// A rate as a virtual clock: the time at which everything granted so far is paid for.
struct Clock {
    rate: u64,
    next_free: Instant,
}

impl Clock {
    /// Take `n` bytes starting at the clock (or `now`, less the credit for lateness);
    /// returns the slot's start.
    fn take(&mut self, n: u64, now: Instant) -> Instant {
        let floor = now.checked_sub(CREDIT).unwrap_or(now);
        let start = self.next_free.max(floor);
        self.next_free = start + span(n, self.rate);
        start
    }
}

/// The total-rate clock, shared; reset when the rate changes (a `PUT /_ossmount/faults`
/// must not inherit a slow clock's backlog).
#[derive(Default)]
struct SharedClock {
    clock: Mutex<Option<Clock>>,
}

impl SharedClock {
    /// `alone`: no other body holds the clock, so it starts afresh (no credit for the time
    /// nobody used it).
    fn reserve(&self, n: u64, rate: u64, now: Instant, alone: bool) -> Instant {
        let mut c = self.clock.lock();
        let c = match &mut *c {
            Some(c) if c.rate == rate => c,
            slot => slot.insert(Clock {
                rate,
                next_free: now,
            }),
        };
        if alone {
            c.next_free = c.next_free.max(now);
        }
        c.take(n, now)
    }
}

/// Requests admitted per second: a bucket of `rate` tokens refilled at `rate` per second.
#[derive(Default)]
struct RequestQuota {
    rate: u64,
    tokens: f64,
    at: Option<Instant>,
}

impl RequestQuota {
    fn admit(&mut self, rate: u64, now: Instant) -> bool {
        if self.rate != rate || self.at.is_none() {
            self.rate = rate;
            self.tokens = rate as f64;
            self.at = Some(now);
        }
        let last = self.at.unwrap_or(now);
        let cap = rate as f64;
        self.tokens = (self.tokens + now.duration_since(last).as_secs_f64() * cap).min(cap);
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Paces one response body: how many bytes it may hand to hyper now.
pub struct BodyPacer {
    conn: Option<Clock>,
    total: Option<(Arc<SharedClock>, u64)>,
    grant: u64,
    /// Bytes granted and not yet sent.
    granted: u64,
    /// Set while waiting for the connection's clock (`granted == 0`) or for the reserved
    /// total slot (`granted > 0`).
    timer: Option<Pin<Box<Sleep>>>,
    /// A grant was taken from the total clock already.
    started: bool,
}

impl BodyPacer {
    /// Ready with the number of bytes (1..=`want`) that may be sent now.
    pub fn poll_grant(&mut self, cx: &mut Context<'_>, want: u64) -> Poll<u64> {
        loop {
            if let Some(t) = &mut self.timer {
                std::task::ready!(t.as_mut().poll(cx));
                self.timer = None;
            }
            if self.granted > 0 {
                return Poll::Ready(self.granted.min(want));
            }
            let now = Instant::now();
            let n = self.grant.min(want.max(1));
            if let Some(c) = &mut self.conn {
                if c.next_free > now {
                    let at = c.next_free;
                    self.sleep_until(at);
                    continue;
                }
                c.take(n, now);
            }
            self.granted = n;
            if let Some((clock, rate)) = &self.total {
                // Held by the link state and by every live body: 2 means this one only, and
                // on its first grant the clock is then idle.
                let alone = !self.started && Arc::strong_count(clock) <= 2;
                self.started = true;
                let start = clock.reserve(n, *rate, now, alone);
                if start > now {
                    self.sleep_until(start);
                }
            }
        }
    }

    fn sleep_until(&mut self, at: Instant) {
        self.timer = Some(Box::pin(tokio::time::sleep_until(at.into())));
    }

    /// `n` of the granted bytes were handed over.
    pub fn sent(&mut self, n: u64) {
        self.granted = self.granted.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_fills_only_unset_knobs() {
        let mut f = Faults {
            link: Some(Profile::OssLike),
            conn_bytes_per_s: Some(1_000),
            ..Default::default()
        };
        f = resolve(f).unwrap();
        assert_eq!(f.conn_bytes_per_s, Some(1_000));
        assert_eq!(f.latency_ms, Some(20));
        assert_eq!(f.latency_jitter_ms, Some(5));
        assert_eq!(f.total_bytes_per_s, Some(1_000_000_000));
        assert_eq!(f.requests_per_s, Some(5_500));
    }

    #[test]
    fn bad_values_are_refused() {
        let zero = Faults {
            total_bytes_per_s: Some(0),
            ..Default::default()
        };
        assert!(resolve(zero).is_err());
        let jitter = Faults {
            latency_ms: Some(5),
            latency_jitter_ms: Some(10),
            ..Default::default()
        };
        assert!(resolve(jitter).is_err());
        assert_eq!(parse_rate("90MB/s"), Ok(90_000_000));
        assert_eq!(parse_rate("1GiB"), Ok(1 << 30));
        assert!(parse_rate("0").is_err());
    }

    #[test]
    fn latency_stays_within_jitter() {
        let f = Faults {
            latency_ms: Some(20),
            latency_jitter_ms: Some(5),
            ..Default::default()
        };
        for _ in 0..1000 {
            let d = latency(&f).unwrap();
            assert!(d >= Duration::from_millis(15) && d <= Duration::from_millis(25));
        }
    }

    #[test]
    fn clock_charges_rate_and_makes_up_for_lateness_within_credit() {
        let t0 = Instant::now();
        let mut c = Clock {
            rate: 1_000_000,
            next_free: t0,
        };
        // 1 MB at 1 MB/s: the next slot is a second later.
        assert_eq!(c.take(1_000_000, t0), t0);
        assert_eq!(c.next_free, t0 + Duration::from_secs(1));
        // Late by more than the credit: only CREDIT is made up.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(c.take(1_000, later), later - CREDIT);
    }

    #[test]
    fn request_quota_admits_rate_per_second() {
        let t0 = Instant::now();
        let mut q = RequestQuota::default();
        let burst = (0..100).filter(|_| q.admit(10, t0)).count();
        assert_eq!(burst, 10);
        let later = t0 + Duration::from_millis(500);
        let more = (0..100).filter(|_| q.admit(10, later)).count();
        assert_eq!(more, 5);
    }
}
