//! `ossmount cache status|verify|clean`: formats what [`crate::cache::admin`] finds in a
//! cache directory, and maps its failures to exit codes (LOCAL; VERIFY when entries fail
//! verification and `--fix` was not given).

use std::fmt::Write;
use std::path::Path;

use crate::cache::admin::{self, Record};
use crate::cache::{default_dir, CacheError};
use crate::cli::{exit, CacheCommand, Failure};

pub fn run(cmd: CacheCommand) -> Result<(), Failure> {
    let dir = match &cmd {
        CacheCommand::Status { cache_dir }
        | CacheCommand::Verify { cache_dir, .. }
        | CacheCommand::Clean { cache_dir, .. } => cache_dir.clone(),
    }
    .unwrap_or_else(default_dir);
    if !dir.is_dir() {
        println!("{}: no cache directory (nothing cached yet)", dir.display());
        return Ok(());
    }
    let failure = |e| local_failure(&dir, e);
    match cmd {
        CacheCommand::Status { .. } => {
            print!("{}", status(&dir).map_err(failure)?);
            Ok(())
        }
        CacheCommand::Verify { fix, .. } => {
            let (report, bad) = verify(&dir, fix).map_err(failure)?;
            print!("{report}");
            if bad > 0 && !fix {
                return Err(Failure::new(
                    exit::VERIFY,
                    format!(
                        "{bad} cache entries failed verification (rerun with --fix to drop them)"
                    ),
                ));
            }
            Ok(())
        }
        CacheCommand::Clean { older_than, .. } => {
            let cleaned = admin::clean(&dir, older_than).map_err(failure)?;
            println!(
                "removed {} entries, {} bytes",
                cleaned.entries, cleaned.bytes
            );
            Ok(())
        }
    }
}

fn local_failure(dir: &Path, e: CacheError) -> Failure {
    match e {
        CacheError::Io(e) => Failure::new(exit::LOCAL, format!("cache {}: {e}", dir.display())),
        // Names the directory already.
        e => Failure::new(exit::LOCAL, e.to_string()),
    }
}

/// The `cache status` report: one line per entry, how much of it is present.
fn status(dir: &Path) -> Result<String, CacheError> {
    let mut s = String::new();
    let entries = admin::list(dir)?;
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    let _ = writeln!(
        s,
        "{}: {} entries, {} bytes on disk",
        dir.display(),
        entries.len(),
        total
    );
    for e in entries {
        match &e.record {
            Record::Valid(c) => {
                let pct = if c.identity.size == 0 {
                    100.0
                } else {
                    c.present_bytes() as f64 * 100.0 / c.identity.size as f64
                };
                let _ = writeln!(
                    s,
                    "{:>6.1}% {:>14} {} {} ({}, ETag {})",
                    pct,
                    c.identity.size,
                    if e.finalized {
                        "finalized"
                    } else {
                        "partial  "
                    },
                    c.identity.key,
                    c.identity.namespace,
                    c.identity.etag
                );
            }
            Record::Damaged(why) => {
                let _ = writeln!(s, "     ? {:>14} damaged   {} ({why})", "", e.name);
            }
            Record::Missing => {
                let _ = writeln!(s, "     ? {:>14} orphan    {} (no checkpoint)", "", e.name);
            }
        }
    }
    Ok(s)
}

/// The `cache verify` report and the number of bad entries (dropped when `fix`).
fn verify(dir: &Path, fix: bool) -> Result<(String, usize), CacheError> {
    let mut s = String::new();
    let verdicts = admin::verify(dir, fix)?;
    let mut bad = 0;
    for v in &verdicts {
        match &v.result {
            Ok(n) => {
                let _ = writeln!(s, "ok   {} ({n} parts)", v.key);
            }
            Err(why) => {
                bad += 1;
                let dropped = if fix { " (dropped)" } else { "" };
                let _ = writeln!(s, "BAD  {}: {why}{dropped}", v.key);
            }
        }
    }
    let _ = writeln!(s, "{} entries checked, {bad} bad", verdicts.len());
    Ok((s, bad))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::cache::{lock_dir, CacheConfig, PartCache};
    use crate::fetch::{Fetcher, ObjectHandle};
    use crate::store::memory::MemoryStore;

    const PS: u64 = 128 << 10;
    const NS: &str = "mem://bucket";

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8) ^ seed ^ (i >> 13) as u8)
            .collect()
    }

    fn entry_file(dir: &Path, key: &str, ext: &str) -> PathBuf {
        dir.join(format!("{}.{ext}", PartCache::entry_name(NS, key)))
    }

    /// Wait (up to 30 s: a loaded CI box is slow) until `done` holds of the handle.
    async fn wait_until(h: &ObjectHandle, done: impl Fn(&ObjectHandle) -> bool) {
        for _ in 0..3000 {
            if done(h) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("gave up waiting");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cache_command_status_verify_clean() {
        let dir = tempfile::tempdir().unwrap();
        let s = MemoryStore::new();
        let ma = s.put("done-one", data(3 * PS as usize, 22));
        let mb = s.put("partial-one", data(4 * PS as usize, 23));
        {
            let config = CacheConfig {
                dir: dir.path().to_path_buf(),
                min_free_bytes: 0,
                part_size: PS,
                small_object_threshold: 0,
                min_request_bytes: PS,
                max_readahead: 4 * PS,
                resident_bytes: 4 * PS,
                ..CacheConfig::default()
            };
            let cache = Fetcher::open(config, Arc::new(s.clone()), NS.into()).unwrap();
            let ha = cache.object(&ma).unwrap();
            ha.read(0, 1 << 30).await.unwrap();
            wait_until(&ha, |h| h.finalized_file().is_some()).await;
            let hb = cache.object(&mb).unwrap();
            // Part 0 only (a first read not at 0 is random: no read-ahead).
            hb.read(1, 1).await.unwrap();
            wait_until(&hb, |h| h.entry().present_count() >= 1).await;
        }
        // The flusher thread may hold the cache a moment longer: wait for the lock.
        drop(lock_dir(dir.path()).unwrap());
        let st = status(dir.path()).unwrap();
        assert!(st.contains("2 entries"), "{st}");
        assert!(st.contains("finalized") && st.contains("done-one"), "{st}");
        assert!(st.contains("partial") && st.contains("partial-one"), "{st}");
        assert!(st.contains(" 50.0%") || st.contains(" 25.0%"), "{st}");
        let (rep, bad) = verify(dir.path(), false).unwrap();
        assert_eq!(bad, 0, "{rep}");
        // Flip a byte of a present part of the partial entry.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(entry_file(dir.path(), "partial-one", "data"))
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0xFF, 0x00, 0xFF], 100).unwrap();
        let (rep, bad) = verify(dir.path(), false).unwrap();
        assert_eq!(bad, 1, "{rep}");
        assert!(rep.contains("BAD  partial-one"), "{rep}");
        let (_, bad) = verify(dir.path(), true).unwrap();
        assert_eq!(bad, 1);
        assert!(!entry_file(dir.path(), "partial-one", "data").exists());
        assert_eq!(verify(dir.path(), false).unwrap().1, 0);
        assert_eq!(
            admin::clean(dir.path(), Some(Duration::from_secs(3600)))
                .unwrap()
                .entries,
            0
        );
        assert_eq!(admin::clean(dir.path(), None).unwrap().entries, 1);
        assert!(status(dir.path()).unwrap().contains("0 entries"));
    }
}
