//! One cached object version on disk: a sparse data file plus its checkpoint, and the
//! in-memory part state shared by every reader of it.
//!
//! Files (paths chosen by the owner, see [`EntryPaths`]; `PartCache` uses `<hash>.*` in the
//! cache directory, `download` uses a temp file beside the target):
//! - `data`: sparse, exactly the object's size, parts written with `pwrite` at their offsets;
//! - `ckpt`: the [`Checkpoint`] of the parts whose bytes are durable;
//! - `done`: the data file renamed once complete and verified (an ordinary file);
//! - `meta`: optional sidecar of a `done` file (the checkpoint with the finalized flag), so a
//!   finalized entry is only ever served for the ETag and size it was fetched for.
//!
//! Crash ordering: part bytes are written (with `O_DIRECT` where possible, so the
//! `fdatasync` has no dirty pages to wait for), then `fdatasync` on the data file, then the
//! part goes into the checkpoint (atomic rename). A part is vouched for on disk only once both
//! happened, so after `kill -9` the worst case is re-fetching the parts of the last batch.
//! The batch ([`Entry::complete_part`] asks for a flush every `batch_bytes` of new parts,
//! counted in this entry's parts, or `batch_interval`) keeps fsyncs rare: one fdatasync
//! and one checkpoint per 128 MiB (or second) by default (with 256 KiB parts a checkpoint is
//! 8 bytes per present part plus one bit per part: ~33 KB for a complete 1 GiB object). Measured (test
//! `checkpoint_to_data_write_ratio`, 64 MiB in 1 MiB parts, the worst case of small parts):
//! 4,098 checkpoint bytes for 67,108,864 data bytes, a ratio of 6.1e-5, with 8 fdatasyncs.
//!
//! Small cache entries (at most [`SYNCLESS_MAX`] bytes) skip all of that: their parts go
//! through the page cache and they are finalized without a single fsync, because three
//! syncs per object were the cost of reading many small objects (2,000 of 128 KiB: 6,000
//! fsyncs). What a crash may leave of one (a `done` file with holes, or with another
//! version's bytes under its sidecar) is caught when it is next opened from disk: it is
//! read back whole against its sidecar's part CRC-64s before it is served
//! ([`Entry::verify_unsynced`]), which for an object that small costs less than the syncs.
//! `download` (no sidecar: `done` is the user's file) always syncs.
//!
//! Within one process, a part is served as soon as it is received (from memory, see
//! `fetch`); it is present in the data file once [`Entry::write_part`] returns, and vouched
//! for on disk once the batch is recorded.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::checkpoint::{self, Checkpoint, Identity};
use super::partbuf::{self, ALIGN};
use super::private;

/// Largest cache entry written without fsyncs and checked by CRC-64 when opened from disk
/// (see the module docs): 1 MiB, four 256 KiB parts, read back in about a millisecond even
/// from a cold disk, while three fsyncs cost several.
pub const SYNCLESS_MAX: u64 = 1 << 20;

/// Where an entry's files live.
#[derive(Clone, Debug)]
pub struct EntryPaths {
    pub data: PathBuf,
    pub ckpt: PathBuf,
    pub done: PathBuf,
    pub meta: Option<PathBuf>,
}

impl EntryPaths {
    /// Every file the entry may have, temp files included.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v = vec![self.data.clone(), self.ckpt.clone(), self.done.clone()];
        v.extend(self.meta.clone());
        let tmp: Vec<PathBuf> = v
            .iter()
            .filter(|p| *p != &self.done)
            .map(|p| {
                let mut s = p.as_os_str().to_owned();
                s.push(".tmp");
                PathBuf::from(s)
            })
            .collect();
        v.extend(tmp);
        v
    }

    /// Remove every file of the entry (missing ones are fine).
    pub fn remove_all(&self) {
        Self::remove(self.all());
    }

    /// Remove the partial state (data file, checkpoint, sidecar, temp files) but never
    /// `done`: for `download` that is the user's target file, replaced only by a rename.
    pub fn remove_partial(&self) {
        Self::remove(self.all().into_iter().filter(|p| p != &self.done).collect());
    }

    fn remove(paths: Vec<PathBuf>) {
        for p in paths {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("cannot remove {}: {e}", p.display()),
            }
        }
    }
}

/// What the entries of one owner wrote (for the checkpoint-to-data ratio and tests), and
/// whether a failed checkpoint was reported yet (see [`Entry::flush_logged`]).
#[derive(Debug, Default)]
pub struct WriteStats {
    pub data_bytes: AtomicU64,
    /// Of `data_bytes`, those written with `O_DIRECT`.
    pub odirect_bytes: AtomicU64,
    pub checkpoint_bytes: AtomicU64,
    pub checkpoints: AtomicU64,
    pub fdatasyncs: AtomicU64,
    checkpoint_warned: AtomicBool,
}

/// What the fetcher asks of the owner of the entries it fills, the one way it sees the
/// cache (as rclone's downloaders see a cache item): room on disk for a part, a read of
/// an entry (its place in the LRU order), dropping an entry whose object changed, and
/// finalizing a complete one. A cache directory's owner is `PartCache`; an entry with no
/// cache around it has [`Unbudgeted`].
pub trait EntryOwner: Send + Sync {
    /// Room for `bytes` more of `entry` on disk? False: its part is kept in memory only.
    fn reserve(&self, entry: &Arc<Entry>, bytes: u64) -> bool;
    /// `entry` is being read.
    fn touch(&self, entry: &Entry);
    /// `entry` can no longer be read (`why`): kill it and forget it.
    fn drop_entry(&self, entry: &Arc<Entry>, why: Dead);
    /// Every part of `entry` is present: verify and finalize it.
    fn finalize_entry(&self, entry: &Arc<Entry>);
}

/// The owner of an entry outside any cache directory (a download), and of entries whose
/// cache has shut down: no budget, so every part has room; a dropped entry is only marked
/// dead (its files are its user's); nothing is finalized behind its user's back.
pub struct Unbudgeted;

impl EntryOwner for Unbudgeted {
    fn reserve(&self, _: &Arc<Entry>, _: u64) -> bool {
        true
    }

    fn touch(&self, _: &Entry) {}

    fn drop_entry(&self, entry: &Arc<Entry>, why: Dead) {
        entry.kill(why);
    }

    fn finalize_entry(&self, _: &Arc<Entry>) {}
}

/// Why an entry can no longer be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dead {
    /// The object changed on the server.
    Stale,
    /// The assembled object failed its CRC-64 check.
    Corrupt,
}

struct State {
    /// Per part: CRC-64 when its bytes are in the data file.
    parts: Vec<Option<u64>>,
    /// How many of `parts` are `Some`.
    present: usize,
    /// Parts vouched for by a checkpoint written by an earlier process and not yet read
    /// back in this one: their bytes could have been damaged on disk since, so each is
    /// checked against its CRC-64 before its bytes are first served (see
    /// [`Entry::verify_part`]).
    suspect: Vec<bool>,
    suspects: usize,
    /// What the checkpoint on disk says.
    recorded: Vec<Option<u64>>,
    /// Parts present but not yet recorded.
    pending: usize,
    last_flush: Instant,
    /// A part's writer was told a flush is due and has not finished it: no other writer
    /// is told until then (else every write completing meanwhile flushed too, one after
    /// another on the flush lock: 50 fdatasyncs + checkpoints instead of 11 in a 1 GiB
    /// cold `cp`, each holding its request's slot).
    flush_claimed: bool,
    finalized: bool,
    dead: Option<Dead>,
}

pub struct Entry {
    /// Unique in this process (never reused, unlike an address): keys the fetcher's state
    /// of the entry (parts in flight, parts kept in memory).
    pub uid: u64,
    pub paths: EntryPaths,
    pub identity: Identity,
    pub part_size: u64,
    pub n_parts: usize,
    file: Mutex<Arc<File>>,
    /// The data file opened with `O_DIRECT` for part writes, when its filesystem takes it
    /// and parts are block-aligned (see [`Entry::write_part`]).
    odirect: Option<File>,
    /// Cleared when the filesystem refuses an `O_DIRECT` write after all.
    odirect_ok: AtomicBool,
    /// A finalized entry opened from disk that may have been finalized without syncs: not
    /// served until [`Entry::verify_unsynced`] has read it back (true until then).
    unverified: Mutex<bool>,
    state: Mutex<State>,
    /// Serialises flushes and finalize (one checkpoint writer at a time).
    flush_lock: Mutex<()>,
    batch_parts: usize,
    batch_interval: Duration,
    pub stats: Arc<WriteStats>,
    /// No file of its own (the disk refused to create one): every part is served from
    /// memory and nothing is cached.
    pub memory_only: bool,
    /// An appendable object grew and a successor entry owns the files now: this one still
    /// serves its open handles (the bytes it knows never change) but writes no checkpoint
    /// and never finalizes.
    detached: AtomicBool,
}

/// Whether checkpoint `c` is for an earlier length of the appendable object `identity`:
/// same key, both appendable, the same part size, and no shorter now. Its parts that lie
/// wholly below the old length are still the object's bytes (that is what append means);
/// the old last part, if it was short, is not (it grows).
fn grows(c: &Checkpoint, identity: &Identity, part_size: u64) -> bool {
    c.identity.appendable
        && identity.appendable
        && c.identity.namespace == identity.namespace
        && c.identity.key == identity.key
        && c.identity.size <= identity.size
        && c.identity.version_id == identity.version_id
        && c.part_size == part_size
}

/// The parts of `c` (an earlier length) that stay valid at `new_size`.
fn grown_parts(c: &Checkpoint, new_size: u64) -> Vec<Option<u64>> {
    let n = checkpoint::part_count(new_size, c.part_size) as usize;
    (0..n)
        .map(|i| {
            let full_before = (i as u64 + 1) * c.part_size <= c.identity.size;
            c.parts.get(i).copied().flatten().filter(|_| full_before)
        })
        .collect()
}

/// What [`Entry::open`] found on disk.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Fresh,
    Resumed { present: usize },
    Finalized,
}

#[derive(Debug, thiserror::Error)]
pub enum FinalizeError {
    #[error("CRC-64 mismatch: the store says {expected:016x}, the parts combine to {actual:016x}")]
    Mismatch { expected: u64, actual: u64 },
    #[error("not every part is present")]
    Incomplete,
    #[error("entry is no longer valid ({0:?})")]
    Dead(Dead),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Why checkpoint `c` is not for the object version `identity`, if it is not.
fn other_version(c: &Checkpoint, identity: &Identity) -> Option<String> {
    let same = c.identity.namespace == identity.namespace
        && c.identity.key == identity.key
        && c.identity.etag == identity.etag
        && c.identity.size == identity.size;
    if same && c.identity.version_id != identity.version_id {
        let name = |v: &Option<String>| match v {
            Some(v) => format!("version {v}"),
            None => "the latest version".to_string(),
        };
        return Some(format!(
            "it is for {}, not {}",
            name(&c.identity.version_id),
            name(&identity.version_id)
        ));
    }
    (!same).then(|| {
        format!(
            "it is for ETag {} size {}, the object is now ETag {} size {}",
            c.identity.etag, c.identity.size, identity.etag, identity.size
        )
    })
}

/// Do bytes `range` of `file` (a part) still have CRC-64 `expected`? Reads them back in
/// pieces of at most 1 MiB. The one check of a part already on disk: before the bytes of
/// a part recorded by an earlier process are served, and by `ossmount cache verify`.
pub fn part_matches(file: &File, range: std::ops::Range<u64>, expected: u64) -> io::Result<bool> {
    let mut h = crate::crc64::Hasher::default();
    let mut buf = vec![0u8; ((range.end - range.start) as usize).min(1 << 20)];
    let mut off = range.start;
    while off < range.end {
        let n = ((range.end - off) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.finish() == expected)
}

/// Settings an entry needs from its owner.
#[derive(Clone, Debug)]
pub struct EntryOptions {
    pub part_size: u64,
    /// Bytes of new parts per checkpoint (see [`Entry::complete_part`]).
    pub batch_bytes: u64,
    pub batch_interval: Duration,
}

impl Entry {
    /// Open the entry for `identity`, resuming what a valid checkpoint vouches for and
    /// discarding (with a warning) whatever does not match.
    pub fn open(
        paths: EntryPaths,
        identity: Identity,
        opts: &EntryOptions,
        stats: Arc<WriteStats>,
    ) -> io::Result<(Self, Found)> {
        if let Some(entry) = Self::open_finalized(&paths, &identity, opts, &stats)? {
            return Ok((entry, Found::Finalized));
        }
        if let Some((entry, present)) = Self::resume(&paths, &identity, opts, &stats)? {
            return Ok((entry, Found::Resumed { present }));
        }
        Ok((Self::create(paths, identity, opts, stats)?, Found::Fresh))
    }

    /// The finalized file, when its sidecar says it holds this version; a finalized file
    /// that does not (or is the wrong size) is removed. Never looks at `done` without a
    /// sidecar: for `download` that is the user's file.
    fn open_finalized(
        paths: &EntryPaths,
        identity: &Identity,
        opts: &EntryOptions,
        stats: &Arc<WriteStats>,
    ) -> io::Result<Option<Self>> {
        let Some(meta) = paths.meta.as_ref().filter(|_| paths.done.exists()) else {
            return Ok(None);
        };
        let verdict = match fs::read(meta) {
            Ok(b) => match Checkpoint::decode(&b) {
                Ok(c) if !c.finalized => Err("sidecar not finalized".to_string()),
                Ok(c) if grows(&c, identity, c.part_size) && c.identity.size < identity.size => {
                    // Appended since it was finalized: it becomes a partial entry again,
                    // keeping its full parts.
                    let partial = Checkpoint {
                        finalized: false,
                        ..c
                    };
                    if fs::rename(&paths.done, &paths.data).is_ok() {
                        let _ = fs::remove_file(meta);
                        let _ = checkpoint::write_atomic(&paths.ckpt, &partial.encode());
                    }
                    return Ok(None);
                }
                Ok(c) => other_version(&c, identity).map_or(Ok(c), Err),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(format!("sidecar unreadable: {e}")),
        };
        match verdict {
            Ok(c) => {
                let f = File::open(&paths.done)?;
                if f.metadata()?.len() == identity.size {
                    let (paths, identity) = (paths.clone(), identity.clone());
                    let entry = Self::build(
                        paths,
                        identity,
                        c.part_size,
                        f,
                        c.parts,
                        opts,
                        stats.clone(),
                    );
                    entry.state.lock().finalized = true;
                    *entry.unverified.lock() = entry.syncless();
                    // Left over if a crash came between the rename and its removal.
                    let _ = fs::remove_file(&entry.paths.ckpt);
                    return Ok(Some(entry));
                }
                tracing::warn!(
                    "discarding cached {}: finalized file has the wrong size",
                    identity.key
                );
            }
            Err(why) => {
                tracing::warn!(
                    "discarding finalized cache entry of {}: {why}",
                    identity.key
                )
            }
        }
        let _ = fs::remove_file(&paths.done);
        let _ = fs::remove_file(meta);
        Ok(None)
    }

    /// A partial entry with a checkpoint for this version and a data file of the right
    /// size, and how many parts the checkpoint vouches for. Those count as present but are
    /// suspects, read back against their CRC-64 before they are first served (the file
    /// may have been damaged since). Any other checkpoint is ignored, with a warning.
    fn resume(
        paths: &EntryPaths,
        identity: &Identity,
        opts: &EntryOptions,
        stats: &Arc<WriteStats>,
    ) -> io::Result<Option<(Self, usize)>> {
        let bytes = match fs::read(&paths.ckpt) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                tracing::warn!("cannot read checkpoint {}: {e}", paths.ckpt.display());
                return Ok(None);
            }
        };
        let verdict = match Checkpoint::decode(&bytes) {
            Ok(c) if c.finalized => Err("checkpoint claims to be finalized".into()),
            Ok(c) if other_version(&c, identity).is_some() && grows(&c, identity, c.part_size) => {
                return Self::grow(paths, identity, c, opts, stats);
            }
            Ok(c) => match (other_version(&c, identity), fs::metadata(&paths.data)) {
                (Some(why), _) => Err(why),
                (None, Ok(m)) if m.len() == identity.size => Ok(c),
                (None, Ok(m)) => Err(format!(
                    "data file is {} bytes, the object {}",
                    m.len(),
                    identity.size
                )),
                (None, Err(e)) => Err(format!("data file: {e}")),
            },
            Err(e) => Err(e.to_string()),
        };
        let c = match verdict {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(
                    "discarding checkpoint {} of {}: {why}; fetching again",
                    paths.ckpt.display(),
                    identity.key
                );
                return Ok(None);
            }
        };
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&paths.data)?;
        // A data file left by a version that created it 0644 becomes private too.
        f.set_permissions(fs::Permissions::from_mode(private::FILE_MODE))?;
        let (entry, present) = Self::resumed(paths, identity, c.part_size, f, c.parts, opts, stats);
        Ok(Some((entry, present)))
    }

    /// A partial entry over `f` with the parts a checkpoint listed, each a suspect (read
    /// back against its CRC-64 before it is first served); with how many there are.
    fn resumed(
        paths: &EntryPaths,
        identity: &Identity,
        part_size: u64,
        f: File,
        parts: Vec<Option<u64>>,
        opts: &EntryOptions,
        stats: &Arc<WriteStats>,
    ) -> (Self, usize) {
        let present = parts.iter().filter(|p| p.is_some()).count();
        let entry = Self::build(
            paths.clone(),
            identity.clone(),
            part_size,
            f,
            parts,
            opts,
            stats.clone(),
        )
        .with_odirect();
        {
            let mut st = entry.state.lock();
            st.suspect = st.parts.iter().map(Option::is_some).collect();
            st.suspects = present;
        }
        (entry, present)
    }

    /// The partial entry of an appendable object at an earlier length, taken over for its
    /// new length: the data file is extended, the parts wholly below the old length are
    /// kept (as suspects, read back against their CRC-64 before first served), the rest
    /// are fetched. None of the kept bytes goes over the network again.
    fn grow(
        paths: &EntryPaths,
        identity: &Identity,
        c: Checkpoint,
        opts: &EntryOptions,
        stats: &Arc<WriteStats>,
    ) -> io::Result<Option<(Self, usize)>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&paths.data)?;
        if f.metadata()?.len() != c.identity.size {
            tracing::warn!(
                "discarding checkpoint of {}: its data file is not {} bytes",
                identity.key,
                c.identity.size
            );
            return Ok(None);
        }
        f.set_len(identity.size)?;
        let parts = grown_parts(&c, identity.size);
        let (entry, present) = Self::resumed(paths, identity, c.part_size, f, parts, opts, stats);
        tracing::info!(
            "{} was appended to ({} -> {} bytes): keeping {present} cached parts",
            identity.key,
            c.identity.size,
            identity.size
        );
        {
            let mut st = entry.state.lock();
            // Not recorded under the new identity yet: the next flush writes them.
            st.recorded = vec![None; st.parts.len()];
            st.pending = present;
        }
        Ok(Some((entry, present)))
    }

    /// A successor entry takes the files over (an appendable object grew, see
    /// [`PartCache::open_entry`](super::PartCache::open_entry)): record what is pending,
    /// then write no more checkpoints and never finalize.
    pub fn detach(&self) {
        let _ = self.flush();
        let _g = self.flush_lock.lock();
        self.detached.store(true, Ordering::Relaxed);
    }

    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Relaxed)
    }

    /// Whether this entry's object may grow into `identity` (see [`grows`]).
    pub fn grows_into(&self, identity: &Identity) -> bool {
        let c = Checkpoint {
            identity: self.identity.clone(),
            part_size: self.part_size,
            finalized: false,
            parts: Vec::new(),
        };
        grows(&c, identity, self.part_size) && self.identity.size <= identity.size
    }

    /// A fresh entry: whatever partial state is left is not vouched for and goes.
    fn create(
        paths: EntryPaths,
        identity: Identity,
        opts: &EntryOptions,
        stats: Arc<WriteStats>,
    ) -> io::Result<Self> {
        paths.remove_partial();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(private::FILE_MODE)
            .open(&paths.data)?;
        f.set_len(identity.size)?;
        let n = checkpoint::part_count(identity.size, opts.part_size) as usize;
        let parts = vec![None; n];
        let entry = Self::build(paths, identity, opts.part_size, f, parts, opts, stats);
        // Written through the page cache when no fsync will wait for it anyway.
        Ok(if entry.syncless() {
            entry
        } else {
            entry.with_odirect()
        })
    }

    /// Finalized without fsyncs and checked when opened from disk (see the module docs):
    /// a cache entry (with a sidecar) of at most [`SYNCLESS_MAX`] bytes.
    pub fn syncless(&self) -> bool {
        self.paths.meta.is_some() && self.identity.size <= SYNCLESS_MAX
    }

    /// For a finalized entry opened from disk that may have been finalized without syncs:
    /// read it back whole and check every part against the CRC-64 its sidecar recorded,
    /// once (concurrent callers wait for the first). False when it does not match (a
    /// crash left it damaged): the entry is then dead ([`Dead::Corrupt`]) and its owner
    /// drops it. True for every other entry.
    pub fn verify_unsynced(&self) -> bool {
        let mut unverified = self.unverified.lock();
        if !*unverified {
            return self.dead() != Some(Dead::Corrupt);
        }
        let parts = self.state.lock().parts.clone();
        let mut buf = vec![0u8; self.identity.size as usize];
        let why = match self.read_at(0, &mut buf) {
            Err(e) => Some(format!("unreadable ({e})")),
            Ok(()) => parts.iter().enumerate().find_map(|(i, want)| {
                let r = self.part_range(i);
                let got = crate::crc64::checksum(&buf[r.start as usize..r.end as usize]);
                (*want != Some(got)).then(|| format!("part {i} does not match its CRC-64"))
            }),
        };
        *unverified = false;
        match why {
            None => true,
            Some(why) => {
                tracing::warn!(
                    "discarding cached {}: finalized without fsyncs and {why}, as a crash \
                     can leave it; fetching it again",
                    self.identity.key
                );
                self.state.lock().dead = Some(Dead::Corrupt);
                false
            }
        }
    }

    fn build(
        paths: EntryPaths,
        identity: Identity,
        part_size: u64,
        file: File,
        parts: Vec<Option<u64>>,
        opts: &EntryOptions,
        stats: Arc<WriteStats>,
    ) -> Self {
        static NEXT_UID: AtomicU64 = AtomicU64::new(1);
        Self {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            n_parts: parts.len(),
            paths,
            identity,
            part_size,
            file: Mutex::new(Arc::new(file)),
            odirect: None,
            odirect_ok: AtomicBool::new(false),
            unverified: Mutex::new(false),
            state: Mutex::new(State {
                present: parts.iter().filter(|p| p.is_some()).count(),
                suspect: vec![false; parts.len()],
                suspects: 0,
                recorded: parts.clone(),
                parts,
                pending: 0,
                last_flush: Instant::now(),
                flush_claimed: false,
                finalized: false,
                dead: None,
            }),
            flush_lock: Mutex::new(()),
            // In parts of this entry's own size (a resumed entry keeps the part size of
            // its checkpoint, which may not be the configured one).
            batch_parts: (opts.batch_bytes / part_size.max(1)).max(1) as usize,
            batch_interval: opts.batch_interval,
            stats,
            memory_only: false,
            detached: AtomicBool::new(false),
        }
    }

    /// An entry with no files, for when the cache's disk cannot even create one: reads
    /// still work, from the fetched bytes in memory.
    pub fn memory_only(
        paths: EntryPaths,
        identity: Identity,
        opts: &EntryOptions,
        stats: Arc<WriteStats>,
    ) -> io::Result<Self> {
        let n = checkpoint::part_count(identity.size, opts.part_size) as usize;
        let f = File::open("/dev/null")?;
        let mut e = Self::build(
            paths,
            identity,
            opts.part_size,
            f,
            vec![None; n],
            opts,
            stats,
        );
        e.memory_only = true;
        Ok(e)
    }

    pub fn file(&self) -> Arc<File> {
        self.file.lock().clone()
    }

    /// Byte range of part `i`.
    pub fn part_range(&self, i: usize) -> std::ops::Range<u64> {
        let start = i as u64 * self.part_size;
        start..(start + self.part_size).min(self.identity.size)
    }

    /// Open the data file a second time with `O_DIRECT` for [`Self::write_part`], when the
    /// part size keeps every part block-aligned and the filesystem accepts the flag.
    fn with_odirect(mut self) -> Self {
        if self.part_size % ALIGN as u64 != 0 {
            return self;
        }
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.paths.data)
        {
            Ok(f) => {
                self.odirect = Some(f);
                self.odirect_ok = AtomicBool::new(true);
            }
            Err(e) => tracing::debug!(
                "{}: no O_DIRECT ({e}); parts go through the page cache",
                self.paths.data.display()
            ),
        }
        self
    }

    /// Allocate the blocks of `range` in the data file now, in one piece. Parts fetched in
    /// parallel are written in the order they complete, and with `O_DIRECT` each write
    /// allocates its own blocks: a 2 GiB object ended up in 116 extents laid out in
    /// shuffled order, and reading it back cold ran at 547-1138 MiB/s against 1119-1569
    /// for a file written in order (`cat` after drop_caches). Allocating each part when its
    /// fetch starts (fetches start in file order) keeps the file in order. Best effort: a
    /// filesystem without `fallocate` or out of space just allocates per write.
    pub fn preallocate(&self, range: std::ops::Range<u64>) {
        if self.memory_only || range.is_empty() {
            return;
        }
        let f = self.file();
        // SAFETY: fallocate on a descriptor we own; mode 0 within the file's size only
        // allocates (the size is already the object's).
        let _ = unsafe {
            libc::fallocate(
                std::os::unix::io::AsRawFd::as_raw_fd(&*f),
                0,
                range.start as libc::off_t,
                (range.end - range.start) as libc::off_t,
            )
        };
    }

    /// Give back the blocks of a part that will not be written after all (no room in the
    /// cache, or the write failed), so the entry costs only what it holds.
    pub fn release(&self, i: usize) {
        if self.memory_only {
            return;
        }
        let r = self.part_range(i);
        let f = self.file();
        // SAFETY: as above; punching a hole keeps the size.
        let _ = unsafe {
            libc::fallocate(
                std::os::unix::io::AsRawFd::as_raw_fd(&*f),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                r.start as libc::off_t,
                (r.end - r.start) as libc::off_t,
            )
        };
    }

    /// Write a whole part (`data` starts at `offset`). The block-aligned bulk goes through
    /// the `O_DIRECT` descriptor when there is one, so the bytes are not copied into the
    /// page cache and left for writeback (what the fdatasync of the next checkpoint would
    /// then wait for); the unaligned tail of the last part, and everything on filesystems
    /// that refuse `O_DIRECT`, goes through the ordinary descriptor. Both reach the same
    /// file: the kernel keeps its page cache coherent with `O_DIRECT` writes.
    pub fn write_part(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut done = 0;
        if let Some(odirect) = &self.odirect {
            let bulk = data.len() / ALIGN * ALIGN;
            if self.odirect_ok.load(Ordering::Relaxed)
                && bulk > 0
                && offset % ALIGN as u64 == 0
                && partbuf::is_aligned(data)
            {
                match odirect.write_all_at(&data[..bulk], offset) {
                    Ok(()) => {
                        done = bulk;
                        self.stats
                            .odirect_bytes
                            .fetch_add(bulk as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::debug!(
                            "{}: O_DIRECT write refused ({e}); using the page cache",
                            self.paths.data.display()
                        );
                        self.odirect_ok.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.file()
            .write_all_at(&data[done..], offset + done as u64)?;
        self.stats
            .data_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file().read_exact_at(buf, offset)
    }

    /// Record that part `i` is written with CRC `crc`. Returns (flush due, all present);
    /// a caller told a flush is due must call [`Self::flush`] (no other is told until it
    /// has).
    pub fn complete_part(&self, i: usize, crc: u64) -> (bool, bool) {
        let mut st = self.state.lock();
        if st.parts[i].is_none() {
            st.parts[i] = Some(crc);
            st.present += 1;
            st.pending += 1;
        }
        let due = !st.flush_claimed
            && (st.pending >= self.batch_parts || st.last_flush.elapsed() >= self.batch_interval);
        st.flush_claimed |= due;
        (due, st.present == self.n_parts)
    }

    /// Check part `i` against its recorded CRC-64 if it came from an earlier process's
    /// checkpoint and was not checked yet. A part that fails is logged and forgotten (no
    /// longer present, so it is fetched again; the next checkpoint no longer records it).
    /// True when the part is present and good.
    pub fn verify_part(&self, i: usize) -> io::Result<bool> {
        let expected = {
            let st = self.state.lock();
            match st.parts[i] {
                Some(_) if !st.suspect[i] => return Ok(true),
                Some(crc) => crc,
                None => return Ok(false),
            }
        };
        let good = part_matches(&self.file(), self.part_range(i), expected)?;
        let mut st = self.state.lock();
        if st.suspect[i] {
            st.suspect[i] = false;
            st.suspects -= 1;
            if !good && st.parts[i].take().is_some() {
                crate::metrics::METRICS.crc64_part_failures.inc();
                tracing::warn!(
                    "part {i} of cached {} does not match its CRC-64 (damaged on disk since \
                     it was recorded); fetching it again",
                    self.identity.key
                );
                st.present -= 1;
                st.pending += 1;
            }
        }
        Ok(good)
    }

    /// [`Self::verify_part`] for every part not checked yet; returns how many failed.
    pub fn verify_suspects(&self) -> io::Result<usize> {
        let todo: Vec<usize> = {
            let st = self.state.lock();
            if st.suspects == 0 {
                return Ok(0);
            }
            (0..self.n_parts).filter(|&i| st.suspect[i]).collect()
        };
        let mut bad = 0;
        for i in todo {
            if !self.verify_part(i)? {
                bad += 1;
            }
        }
        Ok(bad)
    }

    /// Are there parts not checked since an earlier process recorded them?
    pub fn has_suspects(&self) -> bool {
        self.state.lock().suspects > 0
    }

    /// Are part `i`'s bytes in the data file?
    pub fn is_present(&self, i: usize) -> bool {
        self.state.lock().parts[i].is_some()
    }

    pub fn present_count(&self) -> usize {
        self.state.lock().present
    }

    /// Bytes of the parts present.
    pub fn present_bytes(&self) -> u64 {
        let st = self.state.lock();
        (0..self.n_parts)
            .filter(|&i| st.parts[i].is_some())
            .map(|i| self.part_range(i).end - self.part_range(i).start)
            .sum()
    }

    pub fn is_dirty(&self) -> bool {
        let st = self.state.lock();
        st.pending > 0 && !st.finalized && st.dead.is_none()
    }

    /// Make the present parts durable and record them: fdatasync the data file, then
    /// write the checkpoint atomically. A no-op when nothing is pending.
    pub fn flush(&self) -> io::Result<()> {
        let _g = self.flush_lock.lock();
        let result = self.flush_locked();
        self.state.lock().flush_claimed = false;
        result
    }

    fn flush_locked(&self) -> io::Result<()> {
        if self.is_detached() {
            return Ok(());
        }
        let (snapshot, pending) = {
            let st = self.state.lock();
            if st.pending == 0 || st.finalized || st.dead.is_some() {
                return Ok(());
            }
            (st.parts.clone(), st.pending)
        };
        let file = self.file();
        if let Err(e) = file.sync_data() {
            // The kernel may have dropped the dirty pages: nothing unrecorded can be trusted.
            let mut st = self.state.lock();
            tracing::warn!(
                "fdatasync of {} failed ({e}); forgetting {} unrecorded parts",
                self.paths.data.display(),
                st.pending
            );
            st.parts = st.recorded.clone();
            st.present = st.parts.iter().filter(|p| p.is_some()).count();
            st.pending = 0;
            return Err(e);
        }
        self.stats.fdatasyncs.fetch_add(1, Ordering::Relaxed);
        let ckpt = Checkpoint {
            identity: self.identity.clone(),
            part_size: self.part_size,
            finalized: false,
            parts: snapshot.clone(),
        };
        let bytes = ckpt.encode();
        checkpoint::write_atomic(&self.paths.ckpt, &bytes)?;
        self.stats
            .checkpoint_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state.lock();
        st.recorded = snapshot;
        st.pending -= pending.min(st.pending);
        st.last_flush = Instant::now();
        Ok(())
    }

    /// [`Self::flush`], reporting a failure (once for all the entries sharing `stats`):
    /// reading goes on, but after an interruption the unrecorded parts are fetched again.
    /// True when the parts are recorded.
    pub fn flush_logged(&self) -> bool {
        let Err(e) = self.flush() else {
            return true;
        };
        if !self.stats.checkpoint_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "cannot record progress in the checkpoint {} ({e}); reading goes on, but \
                 after an interruption these parts will be fetched again (this warning is \
                 shown once)",
                self.paths.ckpt.display()
            );
        }
        false
    }

    /// Every part present: check the combined CRC-64 against `expected` (when given), then
    /// fsync, write the sidecar, rename data to done, remove the checkpoint. A mismatch
    /// removes the entry's files and marks it corrupt.
    pub fn finalize(&self, expected: Option<u64>) -> Result<u64, FinalizeError> {
        let _g = self.flush_lock.lock();
        if self.is_detached() {
            return Err(FinalizeError::Incomplete);
        }
        // The recorded CRCs of parts from an earlier process say what the bytes were, not
        // what they are now: read those back first.
        if self.verify_suspects()? > 0 {
            return Err(FinalizeError::Incomplete);
        }
        let parts = {
            let st = self.state.lock();
            if let Some(d) = st.dead {
                return Err(FinalizeError::Dead(d));
            }
            if st.finalized {
                return Ok(Checkpoint {
                    identity: self.identity.clone(),
                    part_size: self.part_size,
                    finalized: true,
                    parts: st.parts.clone(),
                }
                .combined_crc()
                .unwrap_or(0));
            }
            st.parts.clone()
        };
        let ckpt = Checkpoint {
            identity: self.identity.clone(),
            part_size: self.part_size,
            finalized: true,
            parts,
        };
        let actual = ckpt.combined_crc().ok_or(FinalizeError::Incomplete)?;
        if let Some(expected) = expected {
            if expected != actual {
                tracing::error!(
                    "CRC-64 MISMATCH for {} (ETag {}): the store says {expected:016x}, the \
                     fetched parts combine to {actual:016x}; discarding the cached copy",
                    self.identity.key,
                    self.identity.etag
                );
                self.state.lock().dead = Some(Dead::Corrupt);
                self.paths.remove_partial();
                return Err(FinalizeError::Mismatch { expected, actual });
            }
        }
        // Three syncs whatever the size (none for a syncless entry, see the module docs):
        // the data, the sidecar, and one of the directory after both renames. Until
        // that last one a crash may keep either rename or neither: a sidecar without its
        // `done` file is ignored (the checkpoint resumes the data file), a `done` file
        // without its sidecar is discarded; neither is ever served unverified.
        let file = self.file();
        let sync = !self.syncless();
        if sync {
            file.sync_all()?;
        }
        if let Some(meta) = &self.paths.meta {
            let bytes = ckpt.encode();
            checkpoint::write_atomic_in_dir(meta, &bytes, sync)?;
            self.stats
                .checkpoint_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        if self.paths.meta.is_none() {
            // No sidecar: `done` is a download's LOCAL, the user's own file from now on,
            // with the mode any new file of theirs gets. Until this rename it was 0600.
            file.set_permissions(fs::Permissions::from_mode(private::user_file_mode()))?;
        }
        fs::rename(&self.paths.data, &self.paths.done)?;
        if sync {
            checkpoint::sync_dir(&self.paths.done)?;
        }
        match fs::remove_file(&self.paths.ckpt) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut st = self.state.lock();
        st.finalized = true;
        st.pending = 0;
        st.recorded = st.parts.clone();
        Ok(actual)
    }

    /// Mark the entry dead and wait for a flush in progress, so its files can be removed or
    /// reused by a successor without a late checkpoint write landing on them.
    pub fn kill(&self, why: Dead) {
        self.state.lock().dead = Some(why);
        drop(self.flush_lock.lock());
    }

    pub fn dead(&self) -> Option<Dead> {
        self.state.lock().dead
    }

    pub fn is_finalized(&self) -> bool {
        self.state.lock().finalized
    }

    /// Allocated bytes of the entry's files (st_blocks * 512), what it really costs on disk.
    pub fn allocated_bytes(&self) -> u64 {
        let data = self
            .file()
            .metadata()
            .map(|m| m.blocks() * 512)
            .unwrap_or(0);
        let small: u64 = [Some(&self.paths.ckpt), self.paths.meta.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.blocks() * 512)
            .sum();
        data + small
    }
}
