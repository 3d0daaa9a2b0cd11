//! ETag (quoted upper-case hex MD5, as OSS gives simple uploads) and whole-object CRC-64
//! of each file version, computed once and remembered.
//!
//! Both need a full read of the file: MD5 runs at about 600 MB/s per core here, so a
//! 2 GiB file costs about 3.5 s. Never per request, then: one computation per file
//! version, where a version is (path, size, mtime in ns, inode, device). The map holds
//! one entry per path; a new version replaces the old one, so it stays as large as the
//! tree. Concurrent requests for a version not yet known wait on the same
//! `tokio::sync::OnceCell` (single flight); a failed computation leaves the cell empty so
//! the next request tries again. The computation runs in a detached task: a client that
//! gives up (a timeout, then a retry) must not throw away a half-done hash of a multi-GiB
//! file, or a slow machine never answers a new large object at all. Files up to 64 KiB
//! are the exception, hashed in place on the request's task: there the task and the
//! blocking thread cost more than the hash, and a first listing of 100k small files (or
//! the warm-up) paid two thread hand-offs per file.
//!
//! When: on the first HEAD, GET or listing that needs the version, plus a background
//! warm-up over the whole tree at start-up ([`super::Server::warm_up`]), so that usually
//! the first request finds the answer ready. The hash reads through the same open file
//! descriptor the request serves from, so a file replaced by rename meanwhile cannot mix
//! the identity of one version with the bytes of another.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use md5::{Digest, Md5};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use super::stats::Stats;

/// Read size of the hashing pass: large enough that syscalls are noise.
const HASH_READ: usize = 1 << 20;

/// Files up to this size are hashed in place, on the request's own task (about 0.1 ms
/// of MD5 in a release build); larger ones in a detached blocking task.
const INLINE_HASH: u64 = 64 << 10;

/// What identifies one version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub size: u64,
    pub mtime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

impl Version {
    pub fn of(meta: &Metadata) -> Self {
        Version {
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `"HEX"`, quotes included.
    pub etag: String,
    pub crc64: u64,
}

type Cell = Arc<OnceCell<Identity>>;

#[derive(Default)]
pub struct Identities {
    map: Mutex<HashMap<PathBuf, (Version, Cell)>>,
}

impl Identities {
    /// The identity of `file` (opened from `path`, at `version`).
    pub async fn get(
        &self,
        path: &Path,
        version: Version,
        file: &File,
        stats: &Stats,
    ) -> io::Result<Identity> {
        let cell = {
            let mut map = self.map.lock();
            match map.get(path) {
                Some((v, cell)) if *v == version => cell.clone(),
                _ => {
                    let cell: Cell = Arc::default();
                    map.insert(path.to_path_buf(), (version, cell.clone()));
                    cell
                }
            }
        };
        if let Some(id) = cell.get() {
            return Ok(id.clone());
        }
        if version.size <= INLINE_HASH {
            // Microseconds of work: a task and a blocking thread would cost more than
            // the hash (they made a first listing of 100k small files wait on 200k
            // thread hand-offs, one file after the other).
            let counter = &stats.hash_computations;
            return cell
                .get_or_try_init(|| async move {
                    Stats::inc(counter);
                    hash_file(file, version.size)
                })
                .await
                .cloned();
        }
        let file = file.try_clone()?;
        let shown = path.display().to_string();
        let counter = stats.hash_computations.clone();
        let task = tokio::spawn(async move {
            cell.get_or_try_init(|| async move {
                Stats::inc(&counter);
                tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let id = hash_file(&file, version.size)?;
                    tracing::debug!(
                        "identity of {shown} ({} bytes) in {:.2?}: {} crc64 {}",
                        version.size,
                        started.elapsed(),
                        id.etag,
                        id.crc64
                    );
                    Ok::<_, io::Error>(id)
                })
                .await
                .map_err(io::Error::other)?
            })
            .await
            .cloned()
        });
        let id = task.await.map_err(io::Error::other)??;
        Ok(id)
    }
}

/// MD5 and CRC-64 of the first `size` bytes of `file`, in one pass.
pub fn hash_file(file: &File, size: u64) -> io::Result<Identity> {
    let mut md5 = Md5::new();
    let mut crc = crate::crc64::Hasher::default();
    let mut buf = vec![0u8; HASH_READ.min(size.max(1) as usize)];
    let mut off = 0u64;
    while off < size {
        let want = (size - off).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while hashing",
            ));
        }
        md5.update(&buf[..n]);
        crc.update(&buf[..n]);
        off += n as u64;
    }
    Ok(Identity {
        etag: format!("\"{}\"", hex::encode_upper(md5.finalize())),
        crc64: crc.finish(),
    })
}
