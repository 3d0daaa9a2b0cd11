//! Reading an object through the part cache: which parts a read needs, which of them to
//! fetch, and how. Above the cache: fetch fills entries and asks their owner (the cache,
//! through [`crate::cache::entry::EntryOwner`]) for room; the cache never calls fetch.
//!
//! - Cache units and requests are sized apart (issue 14). A part (the cache's unit: what
//!   the checkpoint records and a CRC-64 covers) is 256 KiB by default; a request is one
//!   or more adjacent parts. On an object-store link (first byte after 10-30 ms, ~90 MB/s
//!   per connection, a total cap) the two pull in opposite directions: a random 4 KiB read
//!   should move little (an 8 MiB part moved 1,405 bytes per byte read over 100 reads of a
//!   1 GiB object, and waits for its 8 MiB under a per-connection cap), while a sequential
//!   reader needs requests big enough to amortise the first byte and enough of them in
//!   flight to reach the total. So:
//!   - a random reader (a read not near where its handle's last read ended) fetches only
//!     the parts it touches, in one request: 256 KiB for a 4 KiB read, at most 64 bytes
//!     per byte read, one round trip plus 2.9 ms at 90 MB/s;
//!   - a sequential reader (`handle.rs`; a stream of reads of the object, which its
//!     handles share, `streams.rs`: readers sharing the page cache are one stream) gets a window of twice what it read in a row, at
//!     least 1 MiB (Mountpoint starts at 1 MiB + 128 KiB), at most `max_readahead`
//!     (48 MiB), started in requests of a quarter of the window, at most
//!     `min_request_bytes` (2 MiB). A window of W bytes in requests of R yields
//!     W / (R / 90 MB/s + 20 ms): 48 MiB in 2 MiB requests (24 in flight) is 1.16 GB/s,
//!     above OSS's 1 GB/s, where 48 MiB in 8 MiB requests (6 in flight) was 0.44 GB/s;
//!     a reader that stops after 1 MiB has fetched at most 3 MiB;
//!   - an object at or below `small_object_threshold` is fetched whole by its first read,
//!     in one GET;
//!   - a download (`fetch_all`) uses `min_request_bytes` per request.
//!
//!   What the checkpoint guarantees is unchanged: its format (version 1) always carried the
//!   part size, and an entry keeps the part size it was created with, so an entry
//!   checkpointed with the old 8 MiB parts still resumes (its part CRC-64s still check
//!   its bytes, and finalize combines them as before); only new entries use 256 KiB. The
//!   cost of the smaller unit is in the checkpoint: 8 bytes per present part and a bit per
//!   part, ~33 KB for a complete 1 GiB object (1.2 KB with 8 MiB parts), rewritten once
//!   per batch (`batch_bytes`, 128 MiB by default as before, now counted in bytes).
//! - Every part being fetched has one `watch` channel in the engine's `inflight` map (by
//!   entry and part): a second reader of the same part waits on it instead of fetching again.
//! - Requests run as tasks holding one of `jobs` semaphore permits, so they complete even if
//!   the reader that started them goes away, and the store sees at most `jobs` at a time.
//!   `jobs` (64) is the bound for the whole mount, not what one reader gets: concurrency
//!   follows the readers (64 threads reading small objects have their 64 GETs in flight;
//!   the old fixed 8 held 16 readers over 20 ms of latency to 0.33x of 16 plain HTTP
//!   clients), and read-ahead's share is bounded by bytes (`Engine::ahead_room`).
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
//! - All readers together get no more read-ahead than the resident set can hold until
//!   they read it (`Engine::ahead_room`); a read-ahead request is started only when a whole
//!   one fits. A random reader's parts are not kept in the resident set (read once, they
//!   would push out a sequential reader's parts and hold its budget), and parts read from
//!   the data file count as served, so a part its readers are done with leaves at once.
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
//! - `streams.rs`: sequential-read detection per object, shared by its handles;
//! - `fetcher.rs`: the [`Fetcher`] a mount reads through, a cache directory and its engine;
//! - `uncached.rs`: a ranged GET's body received exactly, for the requests above and for
//!   reads that bypass the cache ([`read_uncached`]).

mod budget;
mod engine;
mod fetcher;
mod handle;
mod request;
mod resident;
mod streams;
mod uncached;
mod wait;

pub use budget::MemoryBudget;
pub use engine::{Engine, EngineOptions};
pub use fetcher::Fetcher;
pub use handle::{ObjectHandle, Pending, ReadError, ReadNow};
pub use request::SPLIT_MIN;
pub use uncached::read_uncached;

/// A part of an entry: (`Entry::uid`, part index).
type PartKey = (u64, usize);

#[cfg(test)]
mod tests;
