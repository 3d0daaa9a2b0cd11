//! `ossmount download URL [LOCAL]`: one object to one local file, resumably, verified.
//!
//! It is the cache engine pointed at one object, not a second implementation: the temp file
//! `<LOCAL>.ossmount-part` IS the entry's sparse data file, the checkpoint is the cache's
//! checkpoint format (in `--checkpoint-dir`, default beside LOCAL), parts are fetched by the
//! same [`Engine`] (parallel ranged GETs with `If-Match`, streamed into the file at their
//! offsets, CRC-64 per part), and finishing is the entry's finalize: combine the part
//! CRCs, compare with `x-oss-hash-crc64ecma`, fsync, rename onto LOCAL. No byte is copied
//! twice.
//!
//! Interrupted (Ctrl-C, `kill -9`, a reboot), the same command resumes from the checkpoint:
//! at most the last batch of parts (16 parts or 1 s) plus the parts in flight are fetched
//! again. Ctrl-C records the batch first, so it loses only the parts in flight. If the object
//! changed in between (another ETag or size), the download starts over and says why.
//!
//! Defaults: 8 MiB parts and 8 parallel requests ([`DEFAULT_PART_SIZE`], [`DEFAULT_JOBS`]:
//! a download reads every byte in order, so it has no random reader to size parts for,
//! unlike the mount's 256 KiB cache unit); objects up
//! to its `small_object_threshold`, 16 MiB, take one GET (the SDKs' multiget threshold
//! idea, lowered because a resumable download of a small object saves nothing).
//!
//! Speed (release build, 1 GiB from `ossmount serve --anonymous` on loopback, 2 shared
//! cores, three runs each, quiet moment, load ~3): `ossmount download -j 8` 1.71-1.84 s,
//! `-j 4` 1.73-1.91 s, `curl -o` 1.52-1.59 s (one outlier 4.1 s): about 0.9x curl, while
//! also computing CRC-64 per part, checkpointing and fsyncing the result (curl does none
//! of these). Under heavy load (load 5-11) the two were indistinguishable (2.0-3.3 s).
//!
//! Failures are [`DownloadError`]s: the store's (not found, access denied, archived and
//! not restored, network after retries), the object changing during the download, a
//! CRC-64 mismatch, local trouble (disk full, permissions), an interruption; the command
//! (`cmd/download.rs`) turns them into exit codes. The progress bar (bytes, rate, ETA) is
//! drawn only on a terminal and never with `-q`.

mod lock;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::cache::checkpoint::{Checkpoint, Identity};
use crate::cache::entry::{Entry, EntryOptions, EntryPaths, FinalizeError, Found, Unbudgeted};
use crate::cache::CacheConfig;
use crate::fetch::{Engine, EngineOptions, ObjectHandle, ReadError};
use crate::store::{ObjectMeta, ObjectStore, StoreError};

pub use crate::cache::{DOWNLOAD_JOBS as DEFAULT_JOBS, DOWNLOAD_PART_SIZE as DEFAULT_PART_SIZE};

/// One download, independent of the command line (tests drive it directly).
pub struct Job {
    pub store: Arc<dyn ObjectStore>,
    pub namespace: String,
    pub key: String,
    /// `oss://bucket/key`, for messages.
    pub display: String,
    pub local: PathBuf,
    pub checkpoint_dir: Option<PathBuf>,
    pub part_size: u64,
    pub jobs: usize,
    pub verify: bool,
    /// The version being downloaded (`--version-id`): `store` must name it in every
    /// request (`StoreConfig::version_id`); this records it in the checkpoint. `None`:
    /// the latest.
    pub version_id: Option<String>,
    pub progress: bool,
    pub quiet: bool,
}

/// Why a download did not complete; the message names the object or the local file.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The store refused or failed (after its retries).
    #[error("cannot download {display}: {source}")]
    Store {
        display: String,
        source: Box<StoreError>,
    },
    /// The object changed or was deleted during the download.
    #[error(
        "{display} changed or was deleted on the server during the download (ETag {etag} no \
         longer matches); run the command again to download the new version"
    )]
    Changed { display: String, etag: String },
    /// The parts combine to another CRC-64 than the store's; the temp file is gone.
    #[error(
        "{display} failed verification: CRC-64 {actual:016x}, the store says \
         {expected:016x}; the temp file was removed, run again to re-download"
    )]
    Mismatch {
        display: String,
        expected: u64,
        actual: u64,
    },
    /// Local trouble with the file being written (`what` went wrong).
    #[error("{what} for {}: {source}", local.display())]
    Local {
        what: &'static str,
        local: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another `ossmount download` of the same LOCAL holds its lock; nothing was touched.
    #[error(
        "another ossmount download to {} is running (it holds {}); wait for it to finish \
         or stop it, then run this again",
        local.display(),
        lock.display()
    )]
    Busy { local: PathBuf, lock: PathBuf },
    /// Ctrl-C: the parts received are recorded, the same command resumes.
    #[error("interrupted; {kept} of {size} bytes kept, run the same command to resume")]
    Interrupted { kept: u64, size: u64 },
    /// The blocking task finishing the download failed.
    #[error("{0}")]
    Task(String),
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Record the parts received so far (checkpoint), off the runtime's threads.
async fn record(entry: &Arc<Entry>) {
    let entry = entry.clone();
    let _ = tokio::task::spawn_blocking(move || entry.flush()).await;
}

impl Job {
    fn store_error(&self, source: StoreError) -> DownloadError {
        DownloadError::Store {
            display: self.display.clone(),
            source: Box::new(source),
        }
    }

    fn local_error(
        &self,
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> DownloadError {
        DownloadError::Local {
            what,
            local: self.local.clone(),
            source: source.into(),
        }
    }

    /// Where this download keeps its temp file and checkpoint.
    pub fn paths(&self) -> EntryPaths {
        let abs = std::path::absolute(&self.local).unwrap_or_else(|_| self.local.clone());
        let mut h = Sha256::new();
        for part in [
            self.namespace.as_bytes(),
            self.key.as_bytes(),
            abs.as_os_str().as_encoded_bytes(),
        ] {
            h.update(part);
            h.update([0u8]);
        }
        let tag = hex::encode(&h.finalize()[..8]);
        let file_name = self
            .local
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "download".into());
        let dir = match &self.checkpoint_dir {
            Some(d) => d.clone(),
            None => abs.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        EntryPaths {
            data: with_suffix(&self.local, ".ossmount-part"),
            ckpt: dir.join(format!("{file_name}.{tag}.ossmount-ckpt")),
            done: self.local.clone(),
            meta: None,
        }
    }

    /// Download the object: look it up, resume or start the temp file, fetch the parts
    /// missing, verify and rename onto LOCAL.
    pub async fn run(self) -> Result<(), DownloadError> {
        let _lock = self.lock()?;
        let meta = self
            .store
            .head(&self.key)
            .await
            .map_err(|e| self.store_error(e))?;
        self.check_version(&meta)?;
        let meta = self.through_link(meta).await?;
        let entry = self.open_entry(&meta)?;
        let engine = self.engine(&entry);
        let started = Instant::now();
        let handle = ObjectHandle::new(meta.clone(), entry.clone(), engine.clone());
        self.fetch(&handle, &meta).await?;
        let expected = self.expected_crc(&meta);
        let crc = self.finish(&entry, expected).await?;
        if !self.quiet {
            let fetched = engine.bytes_fetched.load(Ordering::Relaxed);
            self.report(&meta, started, fetched, expected.map(|_| crc));
        }
        Ok(())
    }

    /// The store answered for the version asked for: a HEAD that names another version
    /// would mix two (a server ignoring `versionId` answers for the latest).
    fn check_version(&self, meta: &ObjectMeta) -> Result<(), DownloadError> {
        let Some(asked) = &self.version_id else {
            return Ok(());
        };
        match &meta.version_id {
            Some(got) if got != asked => Err(self.store_error(StoreError::Protocol(format!(
                "asked for version {asked}, the server answered for version {got}"
            )))),
            _ => Ok(()),
        }
    }

    /// A symlink object is downloaded as its target: GetSymlink, then the target's own
    /// HEAD, so the parts are read from the target key and verified against its CRC-64
    /// (HEAD of a link gives the target's size and ETag but the link's other metadata,
    /// hence no usable CRC-64). Anything else is returned as it is.
    async fn through_link(&self, meta: ObjectMeta) -> Result<ObjectMeta, DownloadError> {
        if !meta.is_symlink() {
            return Ok(meta);
        }
        if self.version_id.is_some() {
            // The store names the version in every request, so the target's HEAD would
            // ask the target key for the link's version id.
            return Err(self.store_error(StoreError::Protocol(
                "this version is a symlink object; download its target by its own key                  (and version id) instead"
                    .into(),
            )));
        }
        let target = self
            .store
            .get_symlink(&self.key)
            .await
            .map_err(|e| self.store_error(e))?;
        let target_meta = self
            .store
            .head(&target)
            .await
            .map_err(|e| self.store_error(e))?;
        if !self.quiet {
            eprintln!(
                "{} is a symlink to {target:?}; downloading the target",
                self.display
            );
        }
        Ok(target_meta)
    }

    /// The lock on this download's temp file and checkpoint, held until it ends.
    fn lock(&self) -> Result<lock::DownloadLock, DownloadError> {
        let paths = self.paths();
        if let Some(d) = self.checkpoint_dir.as_ref() {
            crate::cache::private::create_private_dir(d)
                .map_err(|e| self.local_error("checkpoint directory", e))?;
        }
        let mut name = paths.ckpt.into_os_string();
        name.push(".lock");
        match lock::try_lock(Path::new(&name)) {
            Ok(l) => Ok(l),
            Err(Ok(lock::Busy(lock))) => Err(DownloadError::Busy {
                local: self.local.clone(),
                lock,
            }),
            Err(Err(e)) => Err(self.local_error("cannot create the lock file", e)),
        }
    }

    /// The entry of this download: what an earlier, interrupted run left (if it is for
    /// the same object version and its parts still match their CRC-64s), or a fresh one.
    fn open_entry(&self, meta: &ObjectMeta) -> Result<Arc<Entry>, DownloadError> {
        let paths = self.paths();
        self.explain_restart(&paths, meta);
        let defaults = CacheConfig::default();
        let opts = EntryOptions {
            part_size: self.part_size,
            // 16 parts, as when batches were counted in parts (128 MiB at the default
            // 8 MiB, the mount's batch): with `--part-size 4MiB` a batch stays 64 MiB.
            batch_bytes: 16 * self.part_size,
            batch_interval: defaults.batch_interval,
        };
        let identity = Identity {
            version_id: self.version_id.clone(),
            ..Identity::of(&self.namespace, meta)
        };
        let (entry, found) = Entry::open(paths, identity, &opts, Arc::default())
            .map_err(|e| self.local_error("cannot create the temp file", e))?;
        let entry = Arc::new(entry);
        // What an earlier run recorded is read back against its CRC-64 before it counts:
        // the temp file may have been damaged since. Failed parts are fetched again.
        let bad = entry
            .verify_suspects()
            .map_err(|e| self.local_error("cannot read the partial download", e))?;
        if bad > 0 {
            eprintln!(
                "ossmount: {bad} parts of the interrupted download of {} were damaged on disk; \
                 fetching them again",
                self.display
            );
        }
        if let (Found::Resumed { present }, false) = (found, self.quiet) {
            eprintln!(
                "ossmount: resuming {}: {present} of {} parts ({} bytes) already here",
                self.display,
                entry.n_parts,
                entry.present_bytes()
            );
        }
        Ok(entry)
    }

    /// Say why an earlier, interrupted download cannot be resumed (`Entry::open` then
    /// starts over).
    fn explain_restart(&self, paths: &EntryPaths, meta: &ObjectMeta) {
        let Ok(bytes) = std::fs::read(&paths.ckpt) else {
            return;
        };
        let name = |v: &Option<String>| match v {
            Some(v) => format!("version {v}"),
            None => "the latest version".to_string(),
        };
        match Checkpoint::decode(&bytes) {
            Ok(c) if c.identity.version_id != self.version_id => {
                eprintln!(
                    "ossmount: the interrupted download of {} was of {}, this one is of {}; \
                     discarding it and starting over",
                    self.display,
                    name(&c.identity.version_id),
                    name(&self.version_id)
                );
            }
            Ok(c) if c.identity.etag != meta.etag || c.identity.size != meta.size => {
                eprintln!(
                    "ossmount: {} changed since the interrupted download (ETag {} size {} \
                     -> ETag {} size {}); starting over",
                    self.display, c.identity.etag, c.identity.size, meta.etag, meta.size
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!(
                "ossmount: the checkpoint {} is unusable ({e}); starting over",
                paths.ckpt.display()
            ),
        }
    }

    /// An engine for this one entry. Nothing reads the parts back: none kept in memory,
    /// no read-ahead, every part its own request; no cache around the entry, so no budget.
    fn engine(&self, entry: &Entry) -> Arc<Engine> {
        Arc::new(Engine::new(
            self.store.clone(),
            EngineOptions {
                jobs: self.jobs,
                part_size: entry.part_size,
                min_request_bytes: entry.part_size,
                small_object_threshold: 0,
                max_readahead: 0,
                resident_bytes: 0,
                // Bounded by its window of requests (`jobs` x the part size) instead.
                memory_limit: u64::MAX,
                auto_finalize: false,
            },
            Weak::<Unbudgeted>::new(),
        ))
    }

    /// Fetch every missing part into the temp file, with a progress bar on a terminal.
    /// Ctrl-C or a failure records the parts received first, so the next run resumes.
    async fn fetch(&self, handle: &ObjectHandle, meta: &ObjectMeta) -> Result<(), DownloadError> {
        let entry = handle.entry();
        let bar = self
            .progress
            .then(|| progress_bar(meta.size, entry.present_bytes()));
        let one_get = meta.size <= CacheConfig::default().small_object_threshold;
        let fetch = handle.fetch_all_with(one_get);
        tokio::pin!(fetch);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let result = loop {
            tokio::select! {
                r = &mut fetch => break r,
                _ = tick.tick() => {
                    if let Some(b) = &bar {
                        b.set_position(entry.present_bytes());
                    }
                }
                _ = tokio::signal::ctrl_c() => {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    record(entry).await;
                    return Err(DownloadError::Interrupted {
                        kept: entry.present_bytes(),
                        size: meta.size,
                    });
                }
            }
        };
        if let Some(b) = &bar {
            b.set_position(entry.present_bytes());
            b.finish_and_clear();
        }
        match result {
            Ok(()) => Ok(()),
            Err(ReadError::Stale) => Err(DownloadError::Changed {
                display: self.display.clone(),
                etag: meta.etag.clone(),
            }),
            Err(ReadError::Store(e)) => {
                record(entry).await;
                Err(self.store_error(e))
            }
            Err(ReadError::Io(e)) => {
                record(entry).await;
                Err(self.local_error(
                    "cannot write (free some space and run the same command to resume)",
                    e,
                ))
            }
        }
    }

    /// The CRC-64 the parts must combine to: the store's, unless verification is off.
    fn expected_crc(&self, meta: &ObjectMeta) -> Option<u64> {
        if !self.verify {
            return None;
        }
        if meta.crc64.is_none() {
            tracing::warn!(
                "{} has no x-oss-hash-crc64ecma; the download cannot be verified",
                self.display
            );
        }
        meta.crc64
    }

    /// Verify the complete temp file against `expected` and rename it onto LOCAL; returns
    /// the parts' combined CRC-64.
    async fn finish(
        &self,
        entry: &Arc<Entry>,
        expected: Option<u64>,
    ) -> Result<u64, DownloadError> {
        let e2 = entry.clone();
        let finalized = tokio::task::spawn_blocking(move || e2.finalize(expected))
            .await
            .map_err(|e| DownloadError::Task(e.to_string()))?;
        finalized.map_err(|e| match e {
            FinalizeError::Mismatch { expected, actual } => DownloadError::Mismatch {
                display: self.display.clone(),
                expected,
                actual,
            },
            e => self.local_error("cannot finish the download", e),
        })
    }

    /// The one-line summary; `verified` is the CRC-64 checked, if it was.
    fn report(&self, meta: &ObjectMeta, started: Instant, fetched: u64, verified: Option<u64>) {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "ossmount: {} -> {} ({} bytes, {} fetched in {:.1} s, {:.1} MiB/s{})",
            self.display,
            self.local.display(),
            meta.size,
            fetched,
            secs,
            fetched as f64 / secs / (1 << 20) as f64,
            match verified {
                Some(crc) => format!(", CRC-64 {crc:016x} verified"),
                None => ", not verified".into(),
            }
        );
    }
}

/// Bytes, rate and ETA, starting from the bytes already here.
fn progress_bar(size: u64, already: u64) -> ProgressBar {
    let b = ProgressBar::new(size);
    b.set_style(
        ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap(),
    );
    b.set_position(already);
    b.reset_eta();
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    pub(crate) const PS: u64 = 128 << 10;

    pub(crate) fn job(s: &MemoryStore, key: &str, local: &Path) -> Job {
        Job {
            store: Arc::new(s.clone()),
            namespace: "mem://b".into(),
            key: key.into(),
            display: format!("oss://b/{key}"),
            local: local.to_path_buf(),
            checkpoint_dir: None,
            part_size: PS,
            jobs: 2,
            verify: true,
            version_id: None,
            progress: false,
            quiet: true,
        }
    }

    pub(crate) fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8 ^ (i >> 11) as u8)
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interrupted_downloads_resume_and_changed_objects_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("out.bin");
        let s = MemoryStore::new();
        let d = data(40 * PS as usize, 1);
        s.put("big", d.clone());
        // Every body breaks after 1.5 parts: without retries, the run fails (STORE) having
        // kept the whole parts it received.
        s.break_bodies_after(PS * 3 / 2, None);
        let mut j = job(&s, "big", &local);
        j.part_size = PS;
        let e = j.run().await.unwrap_err();
        assert!(matches!(e, DownloadError::Store { .. }), "{e}");
        assert!(!local.exists(), "LOCAL appears only when complete");
        let first = s.counters().bytes_served;
        s.clear_faults();
        s.reset_counters();
        job(&s, "big", &local).run().await.unwrap();
        assert_eq!(std::fs::read(&local).unwrap(), d);
        let second = s.counters().bytes_served;
        assert!(
            first + second < d.len() as u64 + 2 * 2 * PS,
            "refetched too much: {first} + {second}"
        );
        let paths = job(&s, "big", &local).paths();
        assert!(!paths.ckpt.exists() && !paths.data.exists());

        // Changed between runs: start over, and the result is the new object.
        let new = data(40 * PS as usize, 2);
        s.break_bodies_after(PS * 3 / 2, None);
        std::fs::remove_file(&local).unwrap();
        assert!(job(&s, "big", &local).run().await.is_err());
        assert!(paths.ckpt.exists());
        s.clear_faults();
        s.put("big", new.clone());
        job(&s, "big", &local).run().await.unwrap();
        assert_eq!(std::fs::read(&local).unwrap(), new);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_checkpoint_still_gives_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("out.bin");
        let s = MemoryStore::new();
        let d = data(20 * PS as usize, 3);
        s.put("k", d.clone());
        s.break_bodies_after(PS * 5 / 2, None);
        assert!(job(&s, "k", &local).run().await.is_err());
        let paths = job(&s, "k", &local).paths();
        let mut b = std::fs::read(&paths.ckpt).unwrap();
        let n = b.len();
        b[n - 20] ^= 4;
        std::fs::write(&paths.ckpt, b).unwrap();
        // And scribble on the temp file: a trusted damaged checkpoint would serve this.
        std::os::unix::fs::FileExt::write_all_at(
            &std::fs::OpenOptions::new()
                .write(true)
                .open(&paths.data)
                .unwrap(),
            &[0x55; 4096],
            0,
        )
        .unwrap();
        s.clear_faults();
        job(&s, "k", &local).run().await.unwrap();
        assert_eq!(std::fs::read(&local).unwrap(), d);
    }
}
