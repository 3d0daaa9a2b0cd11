//! Symlink objects (OSS `PutSymlink`, `x-oss-object-type: Symlink`): what each one shows
//! as in the mount, and the text `readlink` gives.
//!
//! The rule (docs/mount.md, "Symlink objects"):
//! - a link whose target key is inside the mounted prefix is a symbolic link, and
//!   `readlink` gives the target **relative to the link's directory** (`../c/x` for the
//!   link `a/b/l` to `a/c/x`), so it resolves inside this mount wherever the mount is,
//!   and copies made with `cp -a` or `rsync -l` stay correct;
//! - a link whose target key is outside the mounted prefix (or cannot be a path: an
//!   empty, `.` or `..` component) has no path in the mount that could name its target,
//!   and an absolute path would point at whatever the local machine has there; it is
//!   shown as the file it points to (GetObject on a link reads the target, server side);
//! - with `--follow-symlinks` every link whose target exists is shown as that file;
//! - a link to a missing object stays a symbolic link (dangling: `stat -L` and `cat` give
//!   ENOENT, as for any dangling link); one whose target is outside the prefix and
//!   missing is not shown (logged once);
//! - a loop (a link to a link ... to itself) is a symbolic link too, and the kernel's
//!   own loop detection answers ELOOP.
//!
//! Cost: one GetSymlink per link per listing (per metadata TTL), plus a HEAD for links
//! shown as files; a directory of plain objects costs nothing more.

use futures_util::StreamExt;

use super::Tree;
use crate::store::{ObjectMeta, StoreError};

/// GetSymlink/HEAD requests in flight while one listing resolves its links: 8, enough
/// to hide round trips in a directory of many links without a burst a server throttles.
const LINKS_IN_FLIGHT: usize = 8;

/// What a symlink object shows as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Shown {
    /// A symbolic link with this `readlink` text.
    Link(String),
    /// The file it points to, with the target's metadata (as HEAD of the link says).
    File(ObjectMeta),
    /// Nothing: gone, or not representable.
    Hidden(&'static str),
}

/// The path from the directory of `link` to `target`, both keys inside the same mounted
/// prefix; `None` when `target` cannot be a path (empty, `.` or `..` components).
pub(super) fn relative(link: &str, target: &str) -> Option<String> {
    let target = target.strip_suffix('/').unwrap_or(target);
    let to: Vec<&str> = target.split('/').collect();
    if to.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
        return None;
    }
    let mut from: Vec<&str> = link.split('/').collect();
    from.pop(); // the link's own name
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        return Some(".".into());
    }
    Some(parts.join("/"))
}

impl Tree {
    /// The prefix the mount shows (empty for a whole bucket).
    fn root_prefix(&self) -> String {
        self.inode(super::ROOT_INO)
            .map(|r| r.key.clone())
            .unwrap_or_default()
    }

    /// What the symlink object `key` shows as; see the module comment.
    pub(super) async fn show_link(&self, key: &str) -> Shown {
        let root = self.root_prefix();
        let inside = match self.store.get_symlink(key).await {
            Ok(target) => target
                .strip_prefix(root.as_str())
                .filter(|rest| !rest.is_empty())
                .and_then(|_| {
                    relative(
                        key.strip_prefix(root.as_str())?,
                        target.strip_prefix(root.as_str())?,
                    )
                }),
            Err(StoreError::NoSuchKey(_)) => return Shown::Hidden("gone since it was listed"),
            Err(e) => {
                tracing::warn!(
                    key,
                    "GetSymlink failed, showing the link as its target: {e}"
                );
                None
            }
        };
        if let (false, Some(text)) = (self.config.follow_symlinks, &inside) {
            return Shown::Link(text.clone());
        }
        self.counters
            .heads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.store.head(key).await {
            // Size and ETag are the target's, the rest the link's (OSS HeadObject), so a
            // CRC-64 would not be the target's: the ETag alone pins the version.
            Ok(meta) => Shown::File(ObjectMeta {
                crc64: None,
                ..meta
            }),
            Err(e) => {
                match inside {
                    // Dangling, or a loop: the kernel reports either when it follows the link.
                    Some(text) => Shown::Link(text),
                    None => {
                        tracing::debug!(key, "link target outside the prefix unreadable: {e}");
                        Shown::Hidden("a symlink whose target is outside the mounted prefix and cannot be read")
                    }
                }
            }
        }
    }

    /// [`Self::show_link`] for each key, `LINKS_IN_FLIGHT` at a time, in order.
    pub(super) async fn show_links(&self, keys: Vec<String>) -> Vec<(String, Shown)> {
        futures_util::stream::iter(keys)
            .map(|k| async move {
                let shown = self.show_link(&k).await;
                (k, shown)
            })
            .buffered(LINKS_IN_FLIGHT)
            .collect()
            .await
    }

    /// `readlink` of `ino`.
    pub fn readlink(&self, ino: u64) -> Result<String, crate::fs::error::FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != super::Kind::Symlink {
            return Err(crate::fs::error::FsError::NotSymlink);
        }
        let text = inode.state.lock().link.clone();
        text.ok_or(crate::fs::error::FsError::NotSymlink)
    }
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn relative_paths_from_the_links_directory() {
        assert_eq!(relative("a/b/l", "a/b/x").as_deref(), Some("x"));
        assert_eq!(relative("a/b/l", "a/c/x").as_deref(), Some("../c/x"));
        assert_eq!(relative("l", "a/c/x").as_deref(), Some("a/c/x"));
        assert_eq!(relative("a/b/l", "x").as_deref(), Some("../../x"));
        assert_eq!(relative("a/b/l", "a/b/c/d").as_deref(), Some("c/d"));
        assert_eq!(relative("a/b/l", "a/b").as_deref(), Some("."));
        assert_eq!(relative("a/l", "a/").as_deref(), Some("."));
        assert_eq!(relative("a/l", "a//x"), None);
        assert_eq!(relative("a/l", "../x"), None);
    }
}
