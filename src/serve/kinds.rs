//! Object kinds a plain file tree does not have, emulated so that the mount's handling
//! of them is tested against real HTTP: symlink objects, appendable objects, archive
//! storage classes with their restore state, and user metadata. Testing aids, on only
//! with `--testing-aids` ([`Root::kinds`]; without it a symlink inside DIR is a plain
//! object with the bytes it points to, and attributes are ignored), all documented in
//! `ossmount serve --help` and docs/mount.md:
//!
//! - **Symlink objects.** A file-system symlink inside a bucket whose target, resolved
//!   lexically against the link's directory, stays inside the same bucket is a symlink
//!   object (OSS `PutSymlink`): listings report `Type` `Symlink` (Size 0, the ETag the
//!   MD5 of the target key); `GET key?symlink` (GetSymlink) answers `x-oss-symlink-target`
//!   (URL-encoded, as the SDKs send it to PutSymlink); GetObject and HeadObject answer
//!   for the target (its bytes, size, ETag and CRC-64) with `x-oss-object-type: Symlink`,
//!   as OSS documents for HeadObject: "Content-Length, ETag and Content-Md5 are metadata
//!   of the target file, Last-Modified is the maximum value of the target file and
//!   symbolic link, and others are metadata of symbolic links" (so no CRC-64 either). A
//!   link whose target is missing is still listed (PutSymlink does not check the target)
//!   and reads as 404 SymlinkTargetNotExist; a link to a link (hence any loop) reads as
//!   400 InvalidTargetType: OSS follows one link, never a chain. A link that leaves the
//!   bucket but stays inside DIR is, as before, a plain object with the bytes it points
//!   to; one that leaves DIR is refused.
//! - **Extended attributes of a file** (`setfattr -n NAME -v VALUE FILE`):
//!   - `user.oss.object-type` = `Appendable`: an appendable object (`x-oss-object-type:
//!     Appendable`, `x-oss-next-append-position` = its size). Appending to the file is an
//!     AppendObject: the size, ETag and CRC-64 change, bytes below the old size do not.
//!   - `user.oss.storage-class` = `Standard` | `IA` | `Archive` | `ColdArchive` |
//!     `DeepColdArchive`. An archived object without a finished restore answers GetObject
//!     with 403 InvalidObjectState (EC 0016-00000404), as OSS does; HEAD still answers.
//!   - `user.oss.restore` = `ongoing` (`x-oss-restore: ongoing-request="true"`),
//!     `restored` (restored for a day from now) or `restored:<unix seconds>` (restored
//!     until then; a time in the past means the restore expired: archived again).
//!   - any other `user.NAME` = user metadata `x-oss-meta-NAME` (`x-amz-meta-NAME` to S3
//!     clients).
//!
//! Attributes are read per request through the open file (one `flistxattr`, and one
//! `fgetxattr` per attribute present), so marking a file takes effect at once.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Response};
use md5::{Digest, Md5};

use super::body::Body;
use super::error::ApiError;
use super::list::url_encode;
use super::resolve::{check_key, Root};

/// What an object request opened: the answer of a GetSymlink, or the file to answer for.
pub enum Opened {
    GetSymlink(Response<Body>),
    Object {
        path: PathBuf,
        file: File,
        /// The key is a symlink object, `file` its target, and this the link's mtime.
        symlink: Option<SystemTime>,
    },
}

/// Open the object `key` of the bucket at `bucket_dir` for GetObject / HeadObject, or
/// answer GetSymlink (`get_symlink`). A symlink object opens its target, as OSS does: 404
/// SymlinkTargetNotExist when the target is missing, 400 InvalidTargetType when the
/// target is itself a symlink (OSS follows one link, never a chain).
pub fn open(
    root: &Root,
    bucket_dir: &Path,
    key: &str,
    get_symlink: bool,
) -> Result<Opened, ApiError> {
    check_key(key)?;
    let link = if root.kinds {
        symlink_target(bucket_dir, key)
    } else {
        None
    };
    match (get_symlink, link) {
        (true, Some(target)) => Ok(Opened::GetSymlink(self::get_symlink(
            bucket_dir, key, &target,
        )?)),
        (true, None) => {
            root.open_object(bucket_dir, key)?;
            Err(ApiError::not_symlink())
        }
        (false, None) => {
            let (path, file) = root.open_object(bucket_dir, key)?;
            Ok(Opened::Object {
                path,
                file,
                symlink: None,
            })
        }
        (false, Some(target)) => {
            if symlink_target(bucket_dir, &target).is_some() {
                return Err(ApiError::invalid_target_type());
            }
            let link_mtime = std::fs::symlink_metadata(bucket_dir.join(key))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let (path, file) = root.open_object(bucket_dir, &target).map_err(|e| {
                if e.code == "NoSuchKey" {
                    ApiError::symlink_target_not_exist()
                } else {
                    e
                }
            })?;
            Ok(Opened::Object {
                path,
                file,
                symlink: Some(link_mtime),
            })
        }
    }
}

/// The GetSymlink answer for the link `key` (at `bucket_dir`) pointing at `target`: the
/// link's own ETag and Last-Modified, and `x-oss-symlink-target`.
pub fn get_symlink(bucket_dir: &Path, key: &str, target: &str) -> Result<Response<Body>, ApiError> {
    let meta =
        std::fs::symlink_metadata(bucket_dir.join(key)).map_err(|_| ApiError::no_such_key())?;
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let encoded = HeaderValue::from_str(&url_encode(target).replace("%2F", "/"))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Response::builder()
        .header("x-oss-symlink-target", encoded)
        .header("etag", symlink_etag(target))
        .header("last-modified", httpdate::fmt_http_date(mtime))
        .header("x-oss-object-type", "Symlink")
        .header("content-length", 0)
        .body(Body::Empty)
        .expect("valid response"))
}

/// What the emulation says about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    /// `Normal` or `Appendable` (`Symlink` is decided by the path, see [`symlink_target`]).
    pub object_type: &'static str,
    pub storage_class: String,
    /// `x-oss-restore` / `RestoreInfo`, for archived objects with a restore asked for.
    pub restore: Option<String>,
    /// GetObject may read the bytes (not archived, or restored and not expired).
    pub readable: bool,
    /// User metadata: (name after `x-oss-meta-`, value).
    pub user_meta: Vec<(String, String)>,
}

impl Default for Kind {
    fn default() -> Self {
        Kind {
            object_type: "Normal",
            storage_class: "Standard".into(),
            restore: None,
            readable: true,
            user_meta: Vec::new(),
        }
    }
}

/// Prefix of the attributes that steer the emulation; every other `user.` one is metadata.
const OSS_XATTR: &str = "user.oss.";

/// How long `user.oss.restore=restored` stays restored: one day, OSS's minimum restore.
const RESTORED_FOR: Duration = Duration::from_secs(24 * 3600);

impl Kind {
    /// The kind of an open regular file of `root`: from its extended attributes when the
    /// emulation is on ([`Root::kinds`]), a plain Standard object otherwise.
    pub fn of(root: &Root, file: &File) -> Kind {
        if root.kinds {
            Kind::of_file(file)
        } else {
            Kind::default()
        }
    }

    /// The kind of an open regular file, from its extended attributes.
    pub fn of_file(file: &File) -> Kind {
        let mut kind = Kind::default();
        let mut archived = false;
        let mut restore: Option<String> = None;
        for name in list_xattrs(file) {
            let Some(value) = get_xattr(file, &name) else {
                continue;
            };
            let value = String::from_utf8_lossy(&value).trim().to_string();
            match name.strip_prefix(OSS_XATTR) {
                Some("object-type") => {
                    if value.eq_ignore_ascii_case("Appendable") {
                        kind.object_type = "Appendable";
                    }
                }
                Some("storage-class") => {
                    archived = ["Archive", "ColdArchive", "DeepColdArchive"]
                        .iter()
                        .any(|a| value.eq_ignore_ascii_case(a));
                    kind.storage_class = value;
                }
                Some("restore") => restore = Some(value),
                Some(_) => {}
                None => {
                    if let Some(meta) = name.strip_prefix("user.") {
                        if !meta.is_empty() {
                            kind.user_meta.push((meta.to_ascii_lowercase(), value));
                        }
                    }
                }
            }
        }
        if archived {
            let now = SystemTime::now();
            match restore.as_deref() {
                Some("ongoing") => {
                    kind.restore = Some("ongoing-request=\"true\"".into());
                    kind.readable = false;
                }
                Some(r) if r == "restored" || r.starts_with("restored:") => {
                    let until = match r.strip_prefix("restored:") {
                        Some(secs) => secs
                            .trim()
                            .parse::<u64>()
                            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                            .unwrap_or(now),
                        None => now + RESTORED_FOR,
                    };
                    if until > now {
                        kind.restore = Some(format!(
                            "ongoing-request=\"false\", expiry-date=\"{}\"",
                            httpdate::fmt_http_date(until)
                        ));
                        kind.readable = true;
                    } else {
                        // Expired: the object is archived again, and OSS no longer says
                        // anything about the old restore.
                        kind.readable = false;
                    }
                }
                _ => kind.readable = false,
            }
        }
        kind.user_meta.sort();
        kind
    }
}

impl Kind {
    /// A symlink object opened on `target`: the link's own metadata (a link has no
    /// extended attributes here: Standard, no user metadata), `Symlink` as its type, and
    /// readable when the target is (OSS HeadObject: Content-Length and ETag are the
    /// target's, "others are metadata of symbolic links").
    pub fn of_link(target: &File) -> Kind {
        Kind {
            object_type: "Symlink",
            readable: Kind::of_file(target).readable,
            ..Kind::default()
        }
    }
}

/// The target key of the symlink object `key` of the bucket at `bucket_dir` (canonical),
/// or `None` when the path is no symlink, or its target leaves the bucket. The target is
/// resolved lexically (`..` removes a component) against the link's directory, which must
/// itself be reached without symlinks.
pub fn symlink_target(bucket_dir: &Path, key: &str) -> Option<String> {
    let path = bucket_dir.join(key);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let parent = path.parent()?;
    if parent.canonicalize().ok()? != parent {
        return None;
    }
    let target = std::fs::read_link(&path).ok()?;
    let joined = if target.is_absolute() {
        target
    } else {
        parent.join(target)
    };
    let mut norm = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => norm.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                norm.pop();
            }
            Component::Normal(n) => norm.push(n),
        }
    }
    let rel = norm.strip_prefix(bucket_dir).ok()?.to_str()?;
    (!rel.is_empty()).then(|| rel.to_string())
}

/// The ETag of a symlink object itself: the MD5 of its target key, quoted upper-case hex.
pub fn symlink_etag(target: &str) -> String {
    format!("\"{}\"", hex::encode_upper(Md5::digest(target.as_bytes())))
}

/// Names of the file's extended attributes (empty when it has none or the file system
/// has none).
fn list_xattrs(file: &File) -> Vec<String> {
    let fd = file.as_raw_fd();
    // SAFETY: a null buffer of size 0 asks for the size only.
    let n = unsafe { libc::flistxattr(fd, std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; n as usize + 256];
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    buf[..n as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter(|s| s.starts_with("user."))
        .map(str::to_string)
        .collect()
}

fn get_xattr(file: &File, name: &str) -> Option<Vec<u8>> {
    let fd = file.as_raw_fd();
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: size query with a null buffer.
    let n = unsafe { libc::fgetxattr(fd, cname.as_ptr(), std::ptr::null_mut(), 0) };
    if n < 0 {
        return None;
    }
    let mut buf = vec![0u8; n as usize + 64];
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::fgetxattr(fd, cname.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(path: &Path, name: &str, value: &str) {
        let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid C strings and buffer.
        let r = unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
    }

    #[test]
    fn attributes_make_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(Kind::of_file(&File::open(&f).unwrap()), Kind::default());
        set(&f, "user.oss.object-type", "Appendable");
        set(&f, "user.Owner", "alice");
        let k = Kind::of_file(&File::open(&f).unwrap());
        assert_eq!(k.object_type, "Appendable");
        assert_eq!(k.user_meta, vec![("owner".into(), "alice".into())]);
        assert!(k.readable);
        set(&f, "user.oss.storage-class", "ColdArchive");
        let k = Kind::of_file(&File::open(&f).unwrap());
        assert!(!k.readable && k.restore.is_none());
        set(&f, "user.oss.restore", "ongoing");
        let k = Kind::of_file(&File::open(&f).unwrap());
        assert_eq!(k.restore.as_deref(), Some("ongoing-request=\"true\""));
        assert!(!k.readable);
        set(&f, "user.oss.restore", "restored");
        let k = Kind::of_file(&File::open(&f).unwrap());
        assert!(k.readable);
        assert!(k.restore.unwrap().contains("expiry-date=\""));
        set(&f, "user.oss.restore", "restored:1000");
        let k = Kind::of_file(&File::open(&f).unwrap());
        assert!(!k.readable && k.restore.is_none());
    }

    #[test]
    fn symlink_targets_stay_in_the_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().canonicalize().unwrap().join("bkt");
        std::fs::create_dir_all(b.join("d/e")).unwrap();
        std::fs::write(b.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("f", b.join("d/l1")).unwrap();
        std::os::unix::fs::symlink("../f", b.join("d/e/l2")).unwrap();
        std::os::unix::fs::symlink(b.join("d/f"), b.join("abs")).unwrap();
        std::os::unix::fs::symlink("missing", b.join("dangling")).unwrap();
        std::os::unix::fs::symlink("../../x", b.join("d/out")).unwrap();
        assert_eq!(symlink_target(&b, "d/l1").as_deref(), Some("d/f"));
        assert_eq!(symlink_target(&b, "d/e/l2").as_deref(), Some("d/f"));
        assert_eq!(symlink_target(&b, "abs").as_deref(), Some("d/f"));
        assert_eq!(symlink_target(&b, "dangling").as_deref(), Some("missing"));
        assert_eq!(symlink_target(&b, "d/out"), None);
        assert_eq!(symlink_target(&b, "d/f"), None);
    }
}
