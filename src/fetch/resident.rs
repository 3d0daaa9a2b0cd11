//! The resident set: parts kept in memory after they were fetched, so the reader that is
//! about to ask for them (a sequential reader is up to a read-ahead window behind the
//! fetches) gets a slice of the buffer they were received into instead of a `pread` of the
//! file they were just written to. Bounded by bytes, oldest dropped first; a part is also
//! dropped once all of its bytes have been served (the kernel's page cache has them then),
//! counting the reads answered while it was still arriving. Dropping only costs a disk
//! read. The measured gain is in the [`crate::fetch`] overview.

use std::collections::{HashMap, VecDeque};

use std::sync::Arc;

use bytes::Bytes;

use super::budget::Reservation;
use super::PartKey;

pub struct Resident {
    parts: HashMap<PartKey, ResidentPart>,
    /// Insertion order (may hold keys removed since; they are skipped).
    order: VecDeque<PartKey>,
    /// Bytes served of parts still arriving (credited when they are inserted).
    early: HashMap<PartKey, u64>,
    bytes: u64,
    cap: u64,
}

struct ResidentPart {
    bytes: Bytes,
    served: u64,
    /// Its bytes in the memory budget (shared with its write, if running).
    _reserved: Arc<Reservation>,
}

impl Resident {
    /// An empty set holding up to `cap` bytes (0: none).
    pub fn new(cap: u64) -> Self {
        Self {
            parts: HashMap::new(),
            order: VecDeque::new(),
            early: HashMap::new(),
            bytes: 0,
            cap,
        }
    }

    /// The bytes of part `key`, if held.
    pub fn get(&self, key: &PartKey) -> Option<&Bytes> {
        self.parts.get(key).map(|p| &p.bytes)
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.bytes
    }

    /// Most bytes held.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Keep part `key`, dropping the oldest parts beyond the cap. `reserved`: its bytes
    /// in the memory budget, given back when the part leaves.
    pub fn insert(&mut self, key: PartKey, bytes: Bytes, reserved: Arc<Reservation>) {
        let served = self.early.remove(&key).unwrap_or(0);
        if self.cap == 0 || served >= bytes.len() as u64 {
            return;
        }
        self.bytes += bytes.len() as u64;
        let part = ResidentPart {
            bytes,
            served,
            _reserved: reserved,
        };
        if let Some(old) = self.parts.insert(key, part) {
            self.bytes -= old.bytes.len() as u64;
        }
        self.order.push_back(key);
        while self.bytes > self.cap {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            self.remove(k);
        }
        if self.order.len() > 4 * self.parts.len() + 64 {
            let parts = &self.parts;
            self.order.retain(|k| parts.contains_key(k));
        }
    }

    /// Drop the oldest part (for a demand fetch that needs its memory); false if none.
    pub fn drop_oldest(&mut self) -> bool {
        while let Some(k) = self.order.pop_front() {
            if self.parts.contains_key(&k) {
                self.remove(k);
                return true;
            }
        }
        false
    }

    fn remove(&mut self, key: PartKey) {
        if let Some(p) = self.parts.remove(&key) {
            self.bytes -= p.bytes.len() as u64;
        }
    }

    /// Count `n` bytes of part `key` as served if it is held (read from the data file,
    /// not from here: a part never held is not one still arriving); drops it once all of
    /// it was.
    pub fn served_if_held(&mut self, key: PartKey, n: u64) {
        if self.parts.contains_key(&key) {
            self.served(key, n);
        }
    }

    /// Count `n` bytes of part `key` as served; drops the part once all of it was.
    pub fn served(&mut self, key: PartKey, n: u64) {
        match self.parts.get_mut(&key) {
            Some(p) => {
                p.served += n;
                if p.served >= p.bytes.len() as u64 {
                    self.remove(key);
                }
            }
            None => {
                // Still arriving (or already dropped). Parts that never arrive (failed
                // fetches) would linger here: a bound keeps that harmless.
                if self.early.len() >= 4096 {
                    self.early.clear();
                }
                *self.early.entry(key).or_default() += n;
            }
        }
    }
}
