//! Cached bytes are as private as the bucket they came from: the cache directory is created
//! 0700 and every file in it 0600 (data files, checkpoints, `.meta` sidecars, the lock).
//!
//! Why: a private bucket's objects and key names (in the checkpoints and sidecars) must not
//! become readable by every local user because they were cached. The process umask cannot
//! be relied on (the common 022 gives 0644 files), so modes are set explicitly at creation.
//! An existing directory is never chmod'ed behind the user's back (it may be shared on
//! purpose, e.g. a group cache); it gets a warning naming its mode instead.
//!
//! `ossmount download` uses the same modes for its temp file and checkpoint; only the
//! verified file renamed onto LOCAL gets an ordinary file's mode (0666 minus the umask, as
//! `cp` or `curl -o` would give it), see [`user_file_mode`].

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of every file ossmount writes into a cache directory.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a cache (or checkpoint) directory ossmount creates.
pub const DIR_MODE: u32 = 0o700;

/// Create `dir` (and missing parents) with [`DIR_MODE`]. Returns the mode of an existing
/// directory that other users can enter or read (any group/other bit), `None` otherwise.
pub fn create_private_dir(dir: &Path) -> io::Result<Option<u32>> {
    let existed = dir.is_dir();
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    if !existed {
        return Ok(None);
    }
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// [`create_private_dir`], with a warning when an existing directory is open to others.
pub fn create_cache_dir(dir: &Path) -> io::Result<()> {
    if let Some(mode) = create_private_dir(dir)? {
        tracing::warn!(
            "cache directory {} has mode {mode:04o}: other local users may read cached \
             objects and key names; `chmod 700 {}` unless that is intended",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The mode a new ordinary file gets: 0666 minus the process umask, read from
/// `/proc/self/status` (Linux 4.7+; calling umask(2) to read it would race with other
/// threads creating files). 022 when it cannot be read.
pub fn user_file_mode() -> u32 {
    let umask = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    0o666 & !umask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_dirs_are_private_and_open_ones_are_reported() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        assert_eq!(create_private_dir(&d).unwrap(), None);
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(create_private_dir(&d).unwrap(), None);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(create_private_dir(&d).unwrap(), Some(0o755));
    }

    #[test]
    fn user_mode_follows_the_umask() {
        let m = user_file_mode();
        assert_eq!(m & !0o666, 0, "{m:o}");
        assert_ne!(m & 0o600, 0, "{m:o}");
    }
}
