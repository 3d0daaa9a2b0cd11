//! Reading an object through the part cache: which parts a read needs, which of them to
//! fetch, and how. Above the cache: fetch fills entries and asks their owner (the cache,
//! through [`crate::cache::entry::EntryOwner`]) for room; the cache never calls fetch.
//!
//! - Missing parts are fetched with ranged GETs carrying `If-Match: <etag>`; adjacent
//!   missing parts share one request up to `min_request_bytes` (with the default 8 MiB
//!   parts that is one part per request, which keeps `jobs` requests busy; with small parts
//!   it stops request overhead from dominating). An object at or below
//!   `small_object_threshold` is fetched whole by its first read, in one GET.
//! - Every part being fetched has one `watch` channel in the engine's `inflight` map (by
//!   entry and part): a second reader of the same part waits on it instead of fetching again.
//! - Requests run as tasks holding one of `jobs` semaphore permits, so they complete even if
//!   the reader that started them goes away, and the store sees at most `jobs` at a time.
//! - Each part is received into one page-aligned buffer (its CRC-64 computed on the way).
//!   A reader waiting for it is answered as soon as the bytes it asked for have arrived
//!   (`PartData::Receiving`): the first read of a cold object waits for its first KiB, not
//!   for a whole 8 MiB part (about 10 ms on loopback). Complete, the part goes to its
//!   waiting readers at once, as `Bytes` slices of that buffer, and is written to the data file with `O_DIRECT` on a blocking thread; it counts as
//!   present (and is recorded by the next checkpoint) once written. A disk that refuses
//!   the write (full, EIO, no budget) only means the part stays in memory.
//! - Recently received parts stay in memory (the `Resident` set, `resident_bytes`), so the
//!   sequential reader that asked for them moments ago is answered without reading back
//!   the file; everything else is read from the data file (`pread`). Measured on a cold
//!   1 GiB `cp` through the mount: 2.0-2.5 CPU s/GiB with per-chunk `pwrite` + `pread`,
//!   1.0-1.2 with this (`perf`: the page-cache copies, writeback and zeroed read buffers
//!   are gone; what is left is the socket copy, the copy into the part buffer and the
//!   kernel's copy of each FUSE reply).
//! - Per handle, sequential reads grow a read-ahead window (1, 2, 4, ... parts, up to
//!   `max_readahead` bytes); a non-sequential read resets it, so random readers fetch only
//!   the parts they touch. All readers together get no more read-ahead than the resident
//!   set can hold until they read it (`Engine::ahead_end`).
//! - A non-sequential read deep inside a missing part (at least [`SPLIT_MIN`] into it) has
//!   the part fetched tail first: one GET from the read's page to the part's end, then one
//!   for the head, into the same buffer. The reader waits for its own bytes, not for
//!   megabytes before them; the part is cached whole as usual (CRC-64s of the two pieces
//!   combined).
//! - 412 (the object changed) kills the entry; every waiter and every later read of the
//!   handle gets [`ReadError::Stale`], and no byte of another version is ever mixed in
//!   because all requests of an entry carry its ETag.
//!
//! One job per file:
//! - `handle.rs`: an [`ObjectHandle`]'s reads: planning, sequential detection and its
//!   read-ahead window, answering from memory or the data file, waiting;
//! - `engine.rs`: the [`Engine`] shared by every handle of a cache (or one download):
//!   which parts to fetch, coalescing, room on disk, the parts in flight, the read-ahead
//!   budget, the part writes running;
//! - `request.rs`: one ranged GET into part buffers (in order or tail first), handing
//!   the parts to their readers and to the disk;
//! - `wait.rs`: the per-part channels and the ways of waiting on them;
//! - `resident.rs`: the parts kept in memory for the readers about to ask for them;
//! - `fetcher.rs`: the [`Fetcher`] a mount reads through, a cache directory and its engine;
//! - `uncached.rs`: a ranged GET's body received exactly, for the requests above and for
//!   reads that bypass the cache ([`read_uncached`]).

mod engine;
mod fetcher;
mod handle;
mod request;
mod resident;
mod uncached;
mod wait;

pub use engine::{Engine, EngineOptions};
pub use fetcher::Fetcher;
pub use handle::{ObjectHandle, Pending, ReadError, ReadNow};
pub use request::SPLIT_MIN;
pub use uncached::read_uncached;

/// A part of an entry: (`Entry::uid`, part index).
type PartKey = (u64, usize);

#[cfg(test)]
mod tests;
