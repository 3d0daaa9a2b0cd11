//! Versioning emulation, a testing aid (on only with `--testing-aids`, like the object
//! kinds of [`super::kinds`]), so that `ossmount download --version-id` is tested against
//! real HTTP. The rule, documented in `ossmount serve --help` and docs/serve.md:
//!
//! - A bucket is versioning-enabled when it has a top-level directory
//!   [`VERSIONS_DIR`] (`.ossmount-versions`). That directory holds no keys: listings skip
//!   it and GET/HEAD of a key below it answer 404 NoSuchKey.
//! - The file `BUCKET/KEY` is the latest version. Its version id is derived from the
//!   file (device, inode, size, mtime: [`latest_id`]), so writing the file makes a new
//!   version id, as a PutObject does.
//! - The file `BUCKET/.ossmount-versions/KEY/ID` is an older version of KEY whose version
//!   id is `ID` (a file name of `A-Z a-z 0-9 - _ . = +`; OSS ids are base64-like).
//! - GET/HEAD with `versionId=ID` answer that version with its own ETag, CRC-64, size and
//!   Last-Modified, and `x-oss-version-id: ID` (`x-amz-version-id` to S3 clients);
//!   `versionId` naming the latest answers the latest. Answers for the latest carry its
//!   id too. An id the key does not have is 404 NoSuchVersion; an empty `versionId` is
//!   400 InvalidArgument (OSS EC 0012-00000201).
//! - Without the emulation (no `--testing-aids`, or a bucket without the directory),
//!   every object has one version, `null` (what OSS reports for objects written before
//!   versioning): `versionId=null` reads it, any other id is 404 NoSuchVersion, and no
//!   version header is sent.
//!
//! Not emulated: ListObjectVersions, delete markers, writes (serve is read-only).

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::error::ApiError;
use super::resolve::Root;

/// The per-bucket directory of older versions.
pub const VERSIONS_DIR: &str = ".ossmount-versions";

/// The version id OSS gives objects written while versioning was off.
pub const NULL_VERSION: &str = "null";

/// `key` (or a listing's directory part, `x/`) lies in the versions directory.
pub fn hidden(key: &str) -> bool {
    key == VERSIONS_DIR
        || key
            .strip_prefix(VERSIONS_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The bucket at `bucket_dir` keeps versions: the emulation is on and the directory is
/// there (a real one, not a symlink).
pub fn enabled(root: &Root, bucket_dir: &Path) -> bool {
    root.kinds && std::fs::symlink_metadata(bucket_dir.join(VERSIONS_DIR)).is_ok_and(|m| m.is_dir())
}

/// The version id of the latest version, from the file's identity: another content (or
/// the same content written again) gets another id.
pub fn latest_id(meta: &Metadata) -> String {
    let mut h = Md5::new();
    for n in [
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
    ] {
        h.update(n.to_le_bytes());
    }
    format!("L{}", hex::encode(&h.finalize()[..12]))
}

/// A version id that can be a file name of the versions directory.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.=+".contains(&b))
}

/// What `versionId` asks for, once checked against the bucket.
pub enum Asked {
    /// The latest version (no `versionId`, or the latest's id, or `null` where versions
    /// are not kept); `Some(id)`: its id, to send back.
    Latest(Option<String>),
    /// An older version: the file holding it and its id.
    Older {
        path: PathBuf,
        file: File,
        id: String,
    },
}

/// Resolve `version_id` (the query's `versionId`, if any) for `key` in the bucket at
/// `bucket_dir`. `latest` is the metadata of the latest version (`lstat` of the key's
/// path), if the key exists.
pub fn resolve(
    root: &Root,
    bucket_dir: &Path,
    key: &str,
    version_id: Option<&str>,
    latest: Option<&Metadata>,
) -> Result<Asked, ApiError> {
    if root.kinds && hidden(key) {
        return Err(ApiError::no_such_key());
    }
    if version_id == Some("") {
        return Err(
            ApiError::invalid_argument("The versionId parameter must not be empty.")
                .ec("0012-00000201"),
        );
    }
    if !enabled(root, bucket_dir) {
        return match version_id {
            None | Some(NULL_VERSION) => Ok(Asked::Latest(None)),
            Some(_) => Err(ApiError::no_such_version()),
        };
    }
    let latest_id = latest.map(latest_id);
    let Some(id) = version_id else {
        return Ok(Asked::Latest(latest_id));
    };
    if latest_id.as_deref() == Some(id) {
        return Ok(Asked::Latest(latest_id));
    }
    if !valid_id(id) {
        return Err(ApiError::no_such_version());
    }
    let rel = format!("{VERSIONS_DIR}/{key}/{id}");
    match root.open_object(bucket_dir, &rel) {
        Ok((path, file)) => Ok(Asked::Older {
            path,
            file,
            id: id.to_string(),
        }),
        Err(e) if e.code == "NoSuchKey" => Err(ApiError::no_such_version()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &Path, kinds: bool) -> Root {
        Root {
            kinds,
            ..Root::new(dir).unwrap()
        }
    }

    #[test]
    fn ids_name_versions() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path().canonicalize().unwrap().join("bkt");
        std::fs::create_dir_all(b.join(VERSIONS_DIR).join("d/k")).unwrap();
        std::fs::create_dir_all(b.join("d")).unwrap();
        std::fs::write(b.join("d/k"), "new").unwrap();
        std::fs::write(b.join(VERSIONS_DIR).join("d/k/v1"), "old").unwrap();
        let meta = std::fs::symlink_metadata(b.join("d/k")).unwrap();
        let on = root(t.path(), true);
        let latest = latest_id(&meta);
        let r = |id: Option<&str>| resolve(&on, &b, "d/k", id, Some(&meta));
        assert!(matches!(r(None), Ok(Asked::Latest(Some(ref i))) if *i == latest));
        assert!(matches!(r(Some(&latest)), Ok(Asked::Latest(Some(_)))));
        match r(Some("v1")) {
            Ok(Asked::Older { id, path, .. }) => {
                assert_eq!(id, "v1");
                assert_eq!(std::fs::read(path).unwrap(), b"old");
            }
            _ => panic!("v1 is an older version"),
        }
        for bad in ["v2", "../k/v1", "..", "null"] {
            let e = r(Some(bad)).err().unwrap();
            assert_eq!(e.code, "NoSuchVersion", "{bad}");
        }
        assert_eq!(r(Some("")).err().unwrap().code, "InvalidArgument");
        let e = resolve(&on, &b, ".ossmount-versions/d/k/v1", None, None)
            .err()
            .unwrap();
        assert_eq!(e.code, "NoSuchKey");

        // Off: one version, `null`, and no id sent back.
        let off = root(t.path(), false);
        let r = |id: Option<&str>| resolve(&off, &b, "d/k", id, Some(&meta));
        assert!(matches!(r(None), Ok(Asked::Latest(None))));
        assert!(matches!(r(Some("null")), Ok(Asked::Latest(None))));
        assert_eq!(r(Some("v1")).err().unwrap().code, "NoSuchVersion");

        // A rewrite is a new version.
        std::fs::write(b.join("d/k"), "newer").unwrap();
        let meta2 = std::fs::symlink_metadata(b.join("d/k")).unwrap();
        assert_ne!(latest_id(&meta2), latest);
    }

    #[test]
    fn hidden_names() {
        assert!(hidden(".ossmount-versions"));
        assert!(hidden(".ossmount-versions/"));
        assert!(hidden(".ossmount-versions/a/b"));
        assert!(!hidden(".ossmount-versionsx/a"));
        assert!(!hidden("a/.ossmount-versions/b"));
    }
}
