//! What `ossmount cache` does to a directory without opening it as a cache: list its
//! entries with what their checkpoints say (safe beside a running mount), verify every
//! present part against its recorded CRC-64, and clean. Verify and clean take the
//! directory's lock, so they never run under a mount. Values out, nothing printed: the
//! command formats them.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::checkpoint::Checkpoint;
use super::entry::part_matches;
use super::{lock_dir, paths_for, scan, CacheError};

/// What an entry's checkpoint (or a finalized entry's sidecar) says.
pub enum Record {
    Valid(Checkpoint),
    /// Unreadable or undecodable, and why.
    Damaged(String),
    /// No checkpoint at all (an orphaned data file).
    Missing,
}

/// One entry found in a cache directory.
pub struct Listed {
    /// The entry's file name stem (see `PartCache::entry_name`).
    pub name: String,
    /// Allocated bytes of its files.
    pub bytes: u64,
    pub finalized: bool,
    pub record: Record,
}

impl Listed {
    /// The object key when the checkpoint says it, else the entry's name.
    pub fn key(&self) -> &str {
        match &self.record {
            Record::Valid(c) => &c.identity.key,
            _ => &self.name,
        }
    }
}

/// Every entry in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<Listed>, CacheError> {
    let mut out = Vec::new();
    for (name, bytes, _) in scan(dir)? {
        let p = paths_for(dir, &name);
        let finalized = p.done.exists();
        let src = match &p.meta {
            Some(meta) if finalized => meta,
            _ => &p.ckpt,
        };
        let record = match fs::read(src) {
            Ok(b) => match Checkpoint::decode(&b) {
                Ok(c) => Record::Valid(c),
                Err(e) => Record::Damaged(e.to_string()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Record::Missing,
            Err(e) => Record::Damaged(e.to_string()),
        };
        out.push(Listed {
            name,
            bytes,
            finalized,
            record,
        });
    }
    Ok(out)
}

/// The verdict on one entry.
pub struct Verdict {
    /// The object key, or the entry's name when its checkpoint is unreadable.
    pub key: String,
    /// How many parts were checked, or why the entry is bad.
    pub result: Result<usize, String>,
}

/// Re-read every present part of every entry and compare it with its recorded CRC-64
/// (and a finalized entry's part CRCs with the object's). Bad entries are removed when
/// `fix`.
pub fn verify(dir: &Path, fix: bool) -> Result<Vec<Verdict>, CacheError> {
    let _lock = lock_dir(dir)?;
    let mut verdicts = Vec::new();
    for e in list(dir)? {
        let result = match &e.record {
            Record::Missing => Err("no checkpoint".to_string()),
            Record::Damaged(why) => Err(why.clone()),
            Record::Valid(c) => verify_entry(dir, &e, c),
        };
        if result.is_err() && fix {
            paths_for(dir, &e.name).remove_all();
        }
        verdicts.push(Verdict {
            key: e.key().to_string(),
            result,
        });
    }
    Ok(verdicts)
}

/// The parts of one entry with a valid checkpoint: how many were checked, or why it is bad.
fn verify_entry(dir: &Path, e: &Listed, c: &Checkpoint) -> Result<usize, String> {
    let p = paths_for(dir, &e.name);
    let data = if e.finalized { &p.done } else { &p.data };
    let f = File::open(data).map_err(|err| format!("data file: {err}"))?;
    if f.metadata().map(|m| m.len()).unwrap_or(0) != c.identity.size {
        return Err("data file has the wrong size".into());
    }
    let mut failed = Vec::new();
    let mut checked = 0;
    for (i, crc) in c.parts.iter().enumerate() {
        let Some(crc) = crc else { continue };
        if !part_matches(&f, c.part_range(i), *crc).unwrap_or(false) {
            failed.push(i);
        }
        checked += 1;
    }
    if !failed.is_empty() {
        Err(format!("parts {failed:?} do not match their CRC-64"))
    } else if e.finalized && c.identity.crc64.is_some() && c.combined_crc() != c.identity.crc64 {
        Err("whole-object CRC-64 does not match".into())
    } else {
        Ok(checked)
    }
}

/// What [`clean`] removed.
pub struct Cleaned {
    pub entries: usize,
    pub bytes: u64,
}

/// Remove all entries, or those not used for longer than `older_than`.
pub fn clean(dir: &Path, older_than: Option<Duration>) -> Result<Cleaned, CacheError> {
    let _lock = lock_dir(dir)?;
    let now = SystemTime::now();
    let mut cleaned = Cleaned {
        entries: 0,
        bytes: 0,
    };
    for (name, bytes, mtime) in scan(dir)? {
        if let Some(age) = older_than {
            if now.duration_since(mtime).unwrap_or_default() < age {
                continue;
            }
        }
        paths_for(dir, &name).remove_all();
        cleaned.entries += 1;
        cleaned.bytes += bytes;
    }
    Ok(cleaned)
}

/// Bytes of one object version (`identity`: namespace, key, ETag, size) that `dir` holds,
/// from its checkpoint or finalized sidecar, without opening the entry: the object's size
/// when finalized, the present parts' bytes when partial, 0 when absent or for another
/// version. Safe beside the running mount that owns `dir` (its checkpoints may lag what
/// it has received by one batch).
pub fn cached_bytes(dir: &Path, identity: &super::checkpoint::Identity) -> u64 {
    let name = super::PartCache::entry_name(&identity.namespace, &identity.key);
    let p = paths_for(dir, &name);
    let finalized = p.done.exists();
    let src = match &p.meta {
        Some(meta) if finalized => meta,
        _ => &p.ckpt,
    };
    let Ok(c) = fs::read(src)
        .ok()
        .and_then(|b| Checkpoint::decode(&b).ok())
        .ok_or(())
    else {
        return 0;
    };
    let same = c.identity.namespace == identity.namespace
        && c.identity.key == identity.key
        && c.identity.etag == identity.etag
        && c.identity.size == identity.size;
    if !same {
        return 0;
    }
    if finalized && c.finalized {
        return identity.size;
    }
    let ps = c.part_size.max(1);
    c.parts
        .iter()
        .enumerate()
        .filter(|(_, p)| p.is_some())
        .map(|(i, _)| (identity.size - (i as u64 * ps).min(identity.size)).min(ps))
        .sum()
}
