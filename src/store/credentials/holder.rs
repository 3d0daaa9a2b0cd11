//! [`CredentialHolder`]: the credentials every signer of one store reads, and the thread
//! that keeps them fresh (the rule is in the module doc of [`super`]).
//!
//! Reading is an `Arc` clone under a `parking_lot` read lock, never held across an await
//! and never waiting on the network. Refreshing happens on one thread per holder,
//! `ossmount-creds`, with its own current-thread tokio runtime: the first fetch (which the
//! command waits for, so a dead metadata service is an error at start), the scheduled
//! refreshes, and the refreshes a refused request asks for ([`CredentialHolder::refresh_now`]).
//! One thread serialises them all, so fifty part fetches refused at once cause one fetch
//! from the source, not fifty. The thread holds only a weak reference: dropping the store
//! ends it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use tokio::sync::{mpsc, oneshot};

use super::{format_time, key_id_tail, CredentialsError, Issued, Provider, System};
use crate::store::Credentials;

/// When to refresh and how to retry; see the module doc of [`super`] for why.
#[derive(Clone, Debug)]
pub struct RefreshPolicy {
    /// Refresh once this fraction of the lifetime is left: 1/5 (OSS Go SDK v2).
    pub fraction_left: f64,
    /// ... or once this much is left, if more (but at most half the lifetime): 180 s
    /// (credentials-go, alibabacloud-credentials).
    pub min_margin: Duration,
    /// First retry after a failed refresh: 1 s, doubling ...
    pub retry_first: Duration,
    /// ... up to 30 s: a metadata service or STS back after a blip is used within half a
    /// minute, and an outage costs 2 requests a minute.
    pub retry_max: Duration,
    /// Forced refreshes closer together than this reuse the last result: 1 s, so a store
    /// that keeps refusing a token cannot make us hammer STS.
    pub min_forced_interval: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            fraction_left: 0.2,
            min_margin: Duration::from_secs(180),
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            min_forced_interval: Duration::from_secs(1),
        }
    }
}

impl RefreshPolicy {
    /// When credentials fetched at `fetched` that expire at `expires` should be replaced.
    pub fn refresh_at(&self, fetched: SystemTime, expires: SystemTime) -> SystemTime {
        let lifetime = expires.duration_since(fetched).unwrap_or_default();
        let margin = lifetime
            .mul_f64(self.fraction_left)
            .max(self.min_margin.min(lifetime / 2));
        expires - margin
    }

    /// Delay before retry number `failures` (1 = after the first failure).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.retry_first.saturating_mul(factor).min(self.retry_max)
    }
}

struct State {
    issued: Arc<Issued>,
    fetched: SystemTime,
}

type Forced = (Arc<Issued>, oneshot::Sender<bool>);

/// The current credentials of one store, kept fresh in the background.
pub struct CredentialHolder {
    source: String,
    state: RwLock<State>,
    /// Forced-refresh requests to the refresh thread; `None` for long-lived keys.
    forced: Option<mpsc::UnboundedSender<Forced>>,
    refreshes: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for CredentialHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialHolder")
            .field("source", &self.source)
            .field("current", &*self.current())
            .finish()
    }
}

impl CredentialHolder {
    /// Long-lived keys: never refreshed, no thread.
    pub fn fixed(source: impl Into<String>, credentials: Credentials) -> Arc<Self> {
        let source = source.into();
        let issued = Issued::fixed(credentials);
        report_to_metrics(&source, &issued);
        Arc::new(CredentialHolder {
            source,
            state: RwLock::new(State {
                issued: Arc::new(issued),
                fetched: SystemTime::now(),
            }),
            forced: None,
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Fetch from `provider` once (waiting for it: an error here is the command's error),
    /// then keep refreshing in the background.
    pub fn start(
        provider: Arc<dyn Provider>,
        policy: RefreshPolicy,
        sys: Arc<dyn System>,
    ) -> Result<Arc<Self>, CredentialsError> {
        let source = provider.describe();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let (holder_tx, holder_rx) = std::sync::mpsc::channel::<Weak<CredentialHolder>>();
        let (forced_tx, forced_rx) = mpsc::unbounded_channel();
        let spawned = std::thread::Builder::new()
            .name("ossmount-creds".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = first_tx.send(Err(CredentialsError::Failed(format!(
                            "cannot start the credentials runtime: {e}"
                        ))));
                        return;
                    }
                };
                let first = rt.block_on(provider.fetch());
                let ok = first.is_ok();
                let _ = first_tx.send(first);
                if !ok {
                    return;
                }
                let Ok(weak) = holder_rx.recv() else { return };
                rt.block_on(refresh_loop(provider, weak, forced_rx, policy, sys));
            })
            .map_err(|e| {
                CredentialsError::Failed(format!("cannot start the credentials thread: {e}"))
            })?;
        let first = first_rx.recv().map_err(|_| {
            CredentialsError::Failed(format!("{source}: the credentials thread died"))
        })?;
        let issued = match first {
            Ok(i) => i,
            Err(e) => {
                let _ = spawned.join();
                return Err(e);
            }
        };
        tracing::debug!(
            key_id = %key_id_tail(&issued.credentials.access_key_id),
            expires = %issued.expires.map(format_time).unwrap_or_else(|| "never".into()),
            "credentials from {source}"
        );
        report_to_metrics(&source, &issued);
        let holder = Arc::new(CredentialHolder {
            source,
            state: RwLock::new(State {
                issued: Arc::new(issued),
                fetched: SystemTime::now(),
            }),
            forced: Some(forced_tx),
            refreshes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let _ = holder_tx.send(Arc::downgrade(&holder));
        Ok(holder)
    }

    /// The credentials to sign the next request with.
    pub fn current(&self) -> Arc<Issued> {
        self.state.read().issued.clone()
    }

    /// Where they come from, e.g. `ECS RAM role "web" (metadata service http://...)`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Successful refreshes since start.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Failed refresh attempts since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A request signed with `seen` was refused for its token: fetch new credentials now
    /// unless that already happened. True when the credentials are now different from
    /// `seen` (worth one retry).
    pub async fn refresh_now(&self, seen: &Arc<Issued>) -> bool {
        let Some(tx) = &self.forced else {
            return false;
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        if tx.send((seen.clone(), reply_tx)).is_err() {
            return false;
        }
        reply_rx.await.unwrap_or(false)
    }

    fn install(&self, issued: Issued, fetched: SystemTime) {
        let mut st = self.state.write();
        st.issued = Arc::new(issued);
        st.fetched = fetched;
    }

    fn snapshot(&self) -> (Arc<Issued>, SystemTime) {
        let st = self.state.read();
        (st.issued.clone(), st.fetched)
    }
}

/// A year: "never" for a long-lived key that is only refreshed when forced.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

async fn refresh_loop(
    provider: Arc<dyn Provider>,
    weak: Weak<CredentialHolder>,
    mut forced_rx: mpsc::UnboundedReceiver<Forced>,
    policy: RefreshPolicy,
    sys: Arc<dyn System>,
) {
    let mut failures = 0u32;
    let mut expired_logged = false;
    let mut last_fetch: Option<std::time::Instant> = None;
    loop {
        let Some(holder) = weak.upgrade() else { return };
        let (issued, fetched) = holder.snapshot();
        drop(holder);
        let now = sys.now();
        let wait = if failures > 0 {
            policy.retry_delay(failures)
        } else {
            match issued.expires {
                Some(exp) => policy
                    .refresh_at(fetched, exp)
                    .duration_since(now)
                    .unwrap_or_default(),
                None => FOREVER,
            }
        };
        let forced = tokio::select! {
            _ = tokio::time::sleep(wait) => None,
            r = forced_rx.recv() => match r {
                None => return,
                Some(r) => Some(r),
            },
        };
        let Some(holder) = weak.upgrade() else { return };
        let reply = match forced {
            Some((seen, reply)) => {
                let (current, _) = holder.snapshot();
                let recent = last_fetch.is_some_and(|t| t.elapsed() < policy.min_forced_interval);
                if !Arc::ptr_eq(&current, &seen) || recent {
                    let _ = reply.send(!Arc::ptr_eq(&current, &seen));
                    continue;
                }
                tracing::info!(source = %holder.source, "the store refused the token: refreshing now");
                Some(reply)
            }
            None => None,
        };
        let changed = fetch_once(
            &*provider,
            &holder,
            &*sys,
            &mut failures,
            &mut expired_logged,
        )
        .await;
        last_fetch = Some(std::time::Instant::now());
        if let Some(reply) = reply {
            let _ = reply.send(changed);
        }
    }
}

/// What `ossmount status` shows of the credentials: the source and the expiry, never a key.
fn report_to_metrics(source: &str, issued: &Issued) {
    let expires = issued.expires.and_then(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    });
    crate::metrics::set_credentials(source.to_string(), expires);
}

/// One refresh; true when new credentials (different from the current ones) were installed.
async fn fetch_once(
    provider: &dyn Provider,
    holder: &CredentialHolder,
    sys: &dyn System,
    failures: &mut u32,
    expired_logged: &mut bool,
) -> bool {
    let fetched = sys.now();
    match provider.fetch().await {
        Ok(new) => {
            let (current, _) = holder.snapshot();
            let changed = *current != new;
            if *failures > 0 {
                tracing::info!(
                    source = %holder.source,
                    "credentials refreshed after {} failed attempt(s); valid until {}",
                    failures,
                    new.expires.map(format_time).unwrap_or_else(|| "never".into())
                );
            } else {
                tracing::debug!(
                    source = %holder.source,
                    key_id = %key_id_tail(&new.credentials.access_key_id),
                    expires = %new.expires.map(format_time).unwrap_or_else(|| "never".into()),
                    "credentials refreshed"
                );
            }
            report_to_metrics(&holder.source, &new);
            holder.install(new, fetched);
            holder.refreshes.fetch_add(1, Ordering::Relaxed);
            crate::metrics::METRICS.credential_refreshes.inc();
            *failures = 0;
            *expired_logged = false;
            changed
        }
        Err(e) => {
            *failures += 1;
            holder.failures.fetch_add(1, Ordering::Relaxed);
            crate::metrics::METRICS.credential_refresh_failures.inc();
            let (current, _) = holder.snapshot();
            let now = sys.now();
            match current.expires {
                Some(exp) if exp <= now => {
                    if !*expired_logged {
                        tracing::error!(
                            "credentials from {} expired at {}; requests are refused until a \
                             refresh succeeds: {e}",
                            holder.source,
                            format_time(exp)
                        );
                        *expired_logged = true;
                    } else {
                        tracing::warn!(
                            "refreshing credentials from {} failed again: {e}",
                            holder.source
                        );
                    }
                }
                Some(exp) => tracing::warn!(
                    "refreshing credentials from {} failed (attempt {}); keeping the current \
                     ones, valid until {}: {e}",
                    holder.source,
                    failures,
                    format_time(exp)
                ),
                None => tracing::warn!(
                    "refreshing credentials from {} failed; keeping the current ones: {e}",
                    holder.source
                ),
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::credentials::system::FakeSystem;
    use parking_lot::Mutex;
    use std::collections::VecDeque;

    #[test]
    fn refresh_rule() {
        let p = RefreshPolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |life: u64| {
            p.refresh_at(t0, t0 + Duration::from_secs(life))
                .duration_since(t0)
                .unwrap()
                .as_secs()
        };
        assert_eq!(at(3600), 3600 - 720, "1/5 of an hour left");
        assert_eq!(at(900), 900 - 180, "the SDKs' 180 s");
        assert_eq!(at(600), 600 - 180);
        assert_eq!(at(20), 10, "half of a short lifetime");
        assert_eq!(at(0), 0);
        assert_eq!(p.retry_delay(1), Duration::from_secs(1));
        assert_eq!(p.retry_delay(3), Duration::from_secs(4));
        assert_eq!(p.retry_delay(30), Duration::from_secs(30));
    }

    /// Hands out numbered credentials valid for `life`, or the scripted errors first.
    struct Counting {
        n: Mutex<u32>,
        life: Duration,
        errors: Mutex<VecDeque<bool>>,
    }

    #[async_trait::async_trait]
    impl Provider for Counting {
        async fn fetch(&self) -> Result<Issued, CredentialsError> {
            if self.errors.lock().pop_front() == Some(true) {
                return Err(CredentialsError::Failed("scripted failure".into()));
            }
            let mut n = self.n.lock();
            *n += 1;
            Ok(Issued {
                credentials: Credentials {
                    access_key_id: format!("STS.{n}"),
                    access_key_secret: "s".into(),
                    session_token: Some(format!("t{n}")),
                },
                expires: Some(SystemTime::now() + self.life),
            })
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            retry_first: Duration::from_millis(50),
            retry_max: Duration::from_millis(200),
            min_forced_interval: Duration::ZERO,
            ..Default::default()
        }
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let t = std::time::Instant::now();
        while !cond() {
            assert!(t.elapsed() < Duration::from_secs(30), "timed out: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn refreshes_in_the_background_and_on_demand() {
        let p = Arc::new(Counting {
            n: Mutex::new(0),
            life: Duration::from_secs(2),
            errors: Mutex::new(VecDeque::new()),
        });
        let h =
            CredentialHolder::start(p.clone(), policy(), Arc::new(FakeSystem::default())).unwrap();
        assert_eq!(h.current().credentials.access_key_id, "STS.1");
        wait_for("two background refreshes", || h.refreshes() >= 2);
        assert!(h.current().credentials.access_key_id != "STS.1");
        // A forced refresh replaces what the caller saw; a second caller who saw the old
        // credentials too gets the new ones without another fetch.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let seen = h.current();
        let before = *p.n.lock();
        assert!(rt.block_on(h.refresh_now(&seen)));
        assert!(rt.block_on(h.refresh_now(&seen)));
        assert!(
            *p.n.lock() <= before + 2,
            "at most one forced fetch plus a scheduled one"
        );
        assert!(!Arc::ptr_eq(&seen, &h.current()));
    }

    #[test]
    fn failures_keep_the_current_credentials_and_recover() {
        let p = Arc::new(Counting {
            n: Mutex::new(0),
            life: Duration::from_secs(1),
            errors: Mutex::new(VecDeque::from([false, true, true, true])),
        });
        let h =
            CredentialHolder::start(p.clone(), policy(), Arc::new(FakeSystem::default())).unwrap();
        let first = h.current();
        wait_for("three failures", || h.failures() >= 3);
        wait_for("recovery", || h.refreshes() >= 1);
        assert_ne!(
            h.current().credentials.access_key_id,
            first.credentials.access_key_id
        );
    }

    #[test]
    fn a_failing_first_fetch_is_the_error() {
        let p = Arc::new(Counting {
            n: Mutex::new(0),
            life: Duration::from_secs(1),
            errors: Mutex::new(VecDeque::from([true])),
        });
        let e = CredentialHolder::start(p, policy(), Arc::new(FakeSystem::default())).unwrap_err();
        assert!(e.to_string().contains("scripted"), "{e}");
    }
}
