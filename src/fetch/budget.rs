//! The memory budget: one bound (`--memory-limit`) on the bytes of part data the engine
//! holds in memory, parts being received (their fetch buffers) plus parts kept resident
//! for their readers. Before, memory was bounded only indirectly (the resident set's cap,
//! each reader's read-ahead window, `jobs`), and several readers added up: 8 readers of
//! 512 MiB objects peaked at 81-94 MiB RSS.
//!
//! Every fetch holds a [`Reservation`] of its bytes from before its GET starts; the guard
//! moves with the bytes (split per part as parts complete, into the resident set or the
//! part's write) and gives them back when dropped, so the count is exact whatever ends a
//! fetch: an error, a retry (a new fetch, a new reservation), a task dropped at shutdown.
//!
//! Two ways to reserve, so that read-ahead never starves a reader:
//! - read-ahead asks [`MemoryBudget::try_reserve`], which says no when the bytes do not
//!   fit, or when a demand read is waiting: read-ahead is then not started (its reader
//!   asks again at its next read);
//! - a demand read (the part a reader is blocked on, a download, a warm) awaits
//!   [`MemoryBudget::reserve`], in its fetch task before it takes a `jobs` permit. It
//!   waits only for bytes that are certain to come back: fetches running (they hold their
//!   bytes and a permit), writes running, and the resident set, which the engine empties
//!   for it (oldest first) before waiting. A demand request is never larger than the
//!   limit (the engine splits it), so it always fits once those are back, and the bytes
//!   held never exceed the limit.
//!
//! A waiter wakes on two events: bytes given back, and bytes becoming droppable (a
//! fetched part entering the resident set: [`MemoryBudget::droppable`]). The second moves
//! bytes from a fetch to the resident set without giving any back, so without its wakeup
//! a demand read that found the resident set empty slept while the set filled the whole
//! budget, and the readers whose parts the set held waited on that demand read: a
//! deadlock seen about once in eight runs of the several-readers test on one core.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Bytes of part data in memory: the limit, what is reserved now, the most ever reserved.
pub struct MemoryBudget {
    limit: u64,
    used: Mutex<u64>,
    peak: AtomicU64,
    /// Demand reads waiting for room: read-ahead is refused meanwhile.
    waiting: AtomicUsize,
    released: Notify,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (`u64::MAX`: unbounded, for downloads).
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: Mutex::new(0),
            peak: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            released: Notify::new(),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        *self.used.lock()
    }

    /// The most bytes reserved at once since the budget was made.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Bytes that read-ahead may still take (0 while a demand read waits).
    pub fn available(&self) -> u64 {
        if self.waiting.load(Ordering::Acquire) > 0 {
            return 0;
        }
        self.limit.saturating_sub(self.used())
    }

    /// `n` bytes for read-ahead, if they fit and no demand read is waiting.
    pub fn try_reserve(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        if self.waiting.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.take(n)
    }

    fn take(self: &Arc<Self>, n: u64) -> Option<Reservation> {
        let mut used = self.used.lock();
        if used.saturating_add(n) > self.limit {
            return None;
        }
        *used += n;
        self.peak.fetch_max(*used, Ordering::Relaxed);
        Some(Reservation {
            budget: self.clone(),
            bytes: n,
        })
    }

    /// `n` bytes for a demand read: waits until they fit. `make_room` is called when they
    /// do not (the engine drops resident parts, oldest first) and returns whether it freed
    /// anything; the wait is for bytes given back otherwise. `n` above the limit is taken
    /// once nothing else is held (the engine never asks for that much; this keeps it
    /// from waiting forever if it did).
    pub async fn reserve(
        self: &Arc<Self>,
        n: u64,
        mut make_room: impl FnMut() -> bool,
    ) -> Reservation {
        let _waiting = Waiting::new(self);
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(r) = self.take(n.min(self.limit)) {
                return r.grow_unchecked(n - n.min(self.limit));
            }
            if make_room() {
                continue;
            }
            released.await;
        }
    }

    /// Bytes reserved moved where a waiting demand read can have them dropped (the
    /// resident set): it looks again (see the module docs).
    pub fn droppable(&self) {
        self.released.notify_waiters();
    }

    fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        *self.used.lock() -= n;
        self.released.notify_waiters();
    }
}

/// A demand read counted in `waiting` while it waits (also if its task is dropped).
struct Waiting<'a>(&'a MemoryBudget);

impl<'a> Waiting<'a> {
    fn new(b: &'a MemoryBudget) -> Self {
        b.waiting.fetch_add(1, Ordering::AcqRel);
        Self(b)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes reserved in a [`MemoryBudget`], given back when dropped.
#[must_use]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// `n` of these bytes as a reservation of their own (all that is left if fewer).
    pub fn split(&mut self, n: u64) -> Reservation {
        let n = n.min(self.bytes);
        self.bytes -= n;
        Reservation {
            budget: self.budget.clone(),
            bytes: n,
        }
    }

    /// Add the bytes of `other` to these.
    pub fn merge(&mut self, mut other: Reservation) {
        debug_assert!(Arc::ptr_eq(&self.budget, &other.budget));
        self.bytes += std::mem::take(&mut other.bytes);
    }

    /// Over the limit by `extra` (only for a request larger than the whole limit).
    fn grow_unchecked(mut self, extra: u64) -> Self {
        if extra > 0 {
            let mut used = self.budget.used.lock();
            *used += extra;
            self.budget.peak.fetch_max(*used, Ordering::Relaxed);
            self.bytes += extra;
        }
        self
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({})", self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reservations_come_back_exactly_when_dropped_split_or_merged() {
        let b = MemoryBudget::new(100);
        let mut a = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(41).is_none(), "over the limit");
        let c = b.try_reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        let part = a.split(25);
        assert_eq!((a.bytes(), part.bytes(), b.used()), (35, 25, 100));
        drop(part);
        assert_eq!(b.used(), 75);
        a.merge(c);
        assert_eq!(a.bytes(), 75);
        drop(a);
        assert_eq!((b.used(), b.peak()), (0, 100));
    }

    #[tokio::test]
    async fn a_demand_read_waits_for_room_and_read_ahead_yields_to_it() {
        let b = MemoryBudget::new(100);
        let held = b.try_reserve(80).unwrap();
        let b2 = b.clone();
        let demand = tokio::spawn(async move { b2.reserve(50, || false).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!demand.is_finished(), "50 more do not fit");
        assert!(
            b.try_reserve(10).is_none(),
            "read-ahead waits behind the demand"
        );
        assert_eq!(b.available(), 0);
        drop(held);
        let r = tokio::time::timeout(Duration::from_secs(5), demand)
            .await
            .expect("woken by the release")
            .unwrap();
        assert_eq!((r.bytes(), b.used()), (50, 50));
        assert!(b.try_reserve(10).is_some(), "nobody waits any more");
        // make_room is asked before waiting.
        let extra = b.try_reserve(50).unwrap();
        let mut slot = Some(extra);
        let r2 = b.reserve(30, || slot.take().is_some()).await;
        assert_eq!(r2.bytes(), 30);
        assert!(b.peak() <= 100);
    }

    /// The deadlock the several-readers test found: a demand read finds nothing to drop
    /// and waits; then a fetch's bytes move to the resident set, which gives nothing back.
    /// The waiter must look again and drop them.
    #[tokio::test]
    async fn a_waiting_demand_read_is_woken_when_bytes_become_droppable() {
        let b = MemoryBudget::new(100);
        let fetching = b.try_reserve(100).unwrap();
        let resident: Arc<Mutex<Option<Reservation>>> = Arc::default();
        let (b2, set) = (b.clone(), resident.clone());
        let demand =
            tokio::spawn(async move { b2.reserve(50, || set.lock().take().is_some()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!demand.is_finished(), "nothing to drop, nothing given back");
        // The fetch completes into the resident set: no bytes given back.
        *resident.lock() = Some(fetching);
        b.droppable();
        let r = tokio::time::timeout(Duration::from_secs(5), demand)
            .await
            .expect("woken, and the resident part dropped for it")
            .unwrap();
        assert_eq!((r.bytes(), b.used()), (50, 50));
    }
}
