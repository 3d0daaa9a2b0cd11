//! One `ossmount download` per LOCAL at a time.
//!
//! Two runs for the same LOCAL share the temp file and the checkpoint: unguarded, the
//! second one starts over (removing the first's files), both fetch the object, and the
//! loser fails at the end when its temp file has been renamed away. So a download holds an
//! exclusive `flock` on `<checkpoint>.lock` (beside the checkpoint, which is where the two
//! runs meet) from before it looks at the temp file until after LOCAL is in place; a
//! second run fails at once with [`Busy`] and touches nothing.
//!
//! `flock` dies with its process, so after `kill -9` or a reboot the next run just takes
//! it. The lock file is removed when the download ends; since another run may have opened
//! the file just before the unlink, a run that gets the lock checks that the path still
//! names the file it locked and tries again otherwise (the usual lock-file dance).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::cache::private::FILE_MODE;

/// Another process holds the lock.
#[derive(Debug)]
pub struct Busy(pub PathBuf);

/// The lock of one download, released (and its file removed) on drop.
#[derive(Debug)]
pub struct DownloadLock {
    path: PathBuf,
    _file: File,
}

/// Take the lock at `path` without waiting. `Err(Ok(Busy))`: another run has it;
/// `Err(Err(e))`: the lock file cannot be created.
pub fn try_lock(path: &Path) -> Result<DownloadLock, Result<Busy, io::Error>> {
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(path)
            .map_err(Err)?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                Ok(Busy(path.to_path_buf()))
            } else {
                Err(e)
            });
        }
        let held = file.metadata().map_err(Err)?;
        match fs::metadata(path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                return Ok(DownloadLock {
                    path: path.to_path_buf(),
                    _file: file,
                })
            }
            // Removed (or replaced) by the run that just finished: lock the new one.
            _ => continue,
        }
    }
}

impl Drop for DownloadLock {
    fn drop(&mut self) {
        // Unlinked while still locked: a run waiting on this inode notices and retries.
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.lock");
        let first = try_lock(&p).unwrap();
        assert!(matches!(try_lock(&p), Err(Ok(Busy(_)))));
        drop(first);
        assert!(!p.exists());
        let again = try_lock(&p).unwrap();
        drop(again);
    }
}
