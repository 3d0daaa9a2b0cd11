//! Read-only extended attributes of files: what the store says about the object and
//! what the cache holds of it (`getfattr -d FILE`).
//!
//! Names, all in the `user.` namespace (the only one unprivileged programs list, and the
//! one `getfattr -d` dumps by default):
//! - `user.oss.etag`, `user.oss.crc64` (decimal, as `x-oss-hash-crc64ecma`),
//!   `user.oss.object-type` (Normal, Multipart, Appendable, Symlink),
//!   `user.oss.storage-class`;
//! - archived objects: `user.oss.restore-state` (`archived`, `restoring`, `restored`) and
//!   `user.oss.restore` (the `x-oss-restore` header as sent, when there is one);
//! - `user.oss.meta.NAME` for each piece of user metadata (`x-oss-meta-NAME` or
//!   `x-amz-meta-NAME`), as the SDKs' `getUserMetadata()` shows it;
//! - `user.ossmount.cached-bytes` (bytes of this version on local disk, verified part by
//!   part) and `user.ossmount.finalized` (`yes`: the whole object is on disk, verified,
//!   and reads never touch the network; `no` otherwise); absent with `--no-cache`.
//!
//! Values come from a HEAD within the metadata TTL (a listing has no user metadata), so
//! the first `getfattr` of a file costs one HEAD. Other names (`security.selinux`, POSIX
//! ACLs, which `ls -l` and `cp -a` ask for) are answered ENODATA at once, without the
//! network. Directories and links have none. Setting or removing one is EROFS, as every
//! change to the mount.
//!
//! Sizes follow getxattr(2)/listxattr(2), which FUSE passes through: a size of 0 asks
//! for the length only; a buffer too small is ERANGE; a value cannot exceed 64 KiB
//! (XATTR_SIZE_MAX), a list 64 KiB (XATTR_LIST_MAX), and larger user metadata (OSS caps
//! it at 8 KiB in all) is left out.

use crate::store::ObjectMeta;

use super::error::FsError;
use super::tree::Tree;

/// XATTR_SIZE_MAX and XATTR_LIST_MAX of Linux.
const XATTR_MAX: usize = 64 << 10;

/// Only names under these prefixes are ours; anything else is ENODATA without a HEAD.
const PREFIXES: [&str; 2] = ["user.oss.", "user.ossmount."];

/// The attributes of one object version, in a stable order.
pub fn attributes(
    meta: &ObjectMeta,
    held: Option<crate::cache::state::Held>,
) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: String, value: String| {
        if value.len() <= XATTR_MAX {
            out.push((name, value.into_bytes()));
        }
    };
    add("user.oss.etag".into(), meta.etag.clone());
    if let Some(c) = meta.crc64 {
        add("user.oss.crc64".into(), c.to_string());
    }
    if let Some(t) = &meta.object_type {
        add("user.oss.object-type".into(), t.clone());
    }
    if let Some(c) = &meta.storage_class {
        add("user.oss.storage-class".into(), c.clone());
    }
    let state = meta.restore_state(std::time::SystemTime::now());
    if state != crate::store::RestoreState::NotArchived {
        add("user.oss.restore-state".into(), state.name().into());
    }
    if let Some(r) = &meta.restore {
        add("user.oss.restore".into(), r.clone());
    }
    for (name, value) in &meta.user_meta {
        add(format!("user.oss.meta.{name}"), value.clone());
    }
    if let Some(h) = held {
        add("user.ossmount.cached-bytes".into(), h.bytes.to_string());
        add(
            "user.ossmount.finalized".into(),
            if h.finalized { "yes" } else { "no" }.into(),
        );
    }
    out
}

/// What a getxattr or listxattr asks for, answered by the size rules of xattr(7).
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// `size` was 0: the length needed.
    Size(u32),
    Data(Vec<u8>),
}

fn sized(bytes: Vec<u8>, size: u32) -> Result<Answer, FsError> {
    if size == 0 {
        Ok(Answer::Size(bytes.len() as u32))
    } else if bytes.len() > size as usize {
        Err(FsError::XattrRange)
    } else {
        Ok(Answer::Data(bytes))
    }
}

/// getxattr of `name` on `ino`.
pub async fn get(tree: &Tree, ino: u64, name: &str, size: u32) -> Result<Answer, FsError> {
    if !PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(FsError::NoXattr);
    }
    let Some(meta) = tree.headed_meta(ino).await? else {
        return Err(FsError::NoXattr);
    };
    let value = attributes(&meta, tree.held(&meta))
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .ok_or(FsError::NoXattr)?;
    sized(value, size)
}

/// listxattr of `ino`: the names, each NUL-terminated.
pub async fn list(tree: &Tree, ino: u64, size: u32) -> Result<Answer, FsError> {
    let mut names = Vec::new();
    if let Some(meta) = tree.headed_meta(ino).await? {
        for (n, _) in attributes(&meta, tree.held(&meta)) {
            if names.len() + n.len() + 1 > XATTR_MAX {
                break;
            }
            names.extend_from_slice(n.as_bytes());
            names.push(0);
        }
    }
    sized(names, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn names_values_and_sizes() {
        let meta = ObjectMeta {
            key: "k".into(),
            size: 10,
            etag: "\"AB\"".into(),
            last_modified: SystemTime::UNIX_EPOCH,
            crc64: Some(42),
            object_type: Some("Appendable".into()),
            storage_class: Some("Archive".into()),
            restore: Some("ongoing-request=\"true\"".into()),
            user_meta: vec![("owner".into(), "alice".into())],
            version_id: None,
        };
        let held = crate::cache::state::Held {
            bytes: 4,
            finalized: false,
        };
        let a = attributes(&meta, Some(held));
        let get = |n: &str| {
            a.iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(get("user.oss.etag").as_deref(), Some("\"AB\""));
        assert_eq!(get("user.oss.crc64").as_deref(), Some("42"));
        assert_eq!(get("user.oss.restore-state").as_deref(), Some("restoring"));
        assert_eq!(get("user.oss.meta.owner").as_deref(), Some("alice"));
        assert_eq!(get("user.ossmount.cached-bytes").as_deref(), Some("4"));
        assert_eq!(get("user.ossmount.finalized").as_deref(), Some("no"));
        assert!(attributes(&meta, None)
            .iter()
            .all(|(n, _)| !n.starts_with("user.ossmount.")));
        assert_eq!(sized(b"abc".to_vec(), 0).unwrap(), Answer::Size(3));
        assert!(matches!(
            sized(b"abc".to_vec(), 2),
            Err(FsError::XattrRange)
        ));
        assert_eq!(
            sized(b"abc".to_vec(), 3).unwrap(),
            Answer::Data(b"abc".to_vec())
        );
    }
}
