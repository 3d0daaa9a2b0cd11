//! From a request line to (bucket, key) and from there to a file that is certainly inside
//! DIR.
//!
//! Addressing: virtual-hosted when the Host's first label names an existing bucket and
//! the host is not an IP address or `localhost`; path style otherwise. The path is
//! percent-decoded once (`+` stays `+`); the query is decoded with `+` as space, which is
//! what Go's `url.Values` sends and never ambiguous, because every SDK encodes a literal
//! `+` as `%2B`.
//!
//! Safety, in layers: a key with a NUL, a leading `/`, or a `.`/`..` component is refused
//! (400) before the file system is touched; the joined path is then canonicalized and
//! must still lie under the canonical DIR (403 otherwise: a symlink pointing out); the
//! canonical path is opened with `O_NOFOLLOW`, so a symlink swapped in after the check
//! fails instead of being followed. Buckets themselves must be real directories, not
//! symlinks.

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use percent_encoding::percent_decode_str;

use super::error::ApiError;

/// Where a request points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/`: ListBuckets.
    Service,
    Bucket(String),
    Object {
        bucket: String,
        key: String,
    },
}

/// Decode the raw path (`/a%20b/c`) to UTF-8.
pub fn decode_path(raw: &str) -> Result<String, ApiError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::invalid_argument("the request path is not valid UTF-8"))
}

/// Decode a query string into pairs; a valueless parameter gets an empty value.
pub fn decode_query(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let dec = |s: &str| -> Result<String, ApiError> {
        let s = s.replace('+', " ");
        percent_decode_str(&s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| ApiError::invalid_argument("the query string is not valid UTF-8"))
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((dec(n)?, dec(v)?))
        })
        .collect()
}

/// A name that can be a bucket: one path component, not hidden, not special.
pub fn valid_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name != "_ossmount"
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

/// The buckets' parent, canonical.
pub struct Root {
    pub dir: PathBuf,
    /// Emulate object kinds and versions ([`super::kinds`], [`super::versions`]): a
    /// testing aid, on only with `--testing-aids`. Off, DIR is served as the plain
    /// objects a file tree is: symlinks inside DIR read as the bytes they point to,
    /// extended attributes are not looked at, every object has only its latest version.
    pub kinds: bool,
}

impl Root {
    pub fn new(dir: &Path) -> io::Result<Self> {
        let dir = dir.canonicalize()?;
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Root { dir, kinds: false })
    }

    /// The bucket's directory, if `name` is an existing bucket (a real directory).
    pub fn bucket_dir(&self, name: &str) -> Option<PathBuf> {
        if !valid_bucket_name(name) {
            return None;
        }
        let p = self.dir.join(name);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_dir() => Some(p),
            _ => None,
        }
    }

    /// All buckets, sorted.
    pub fn buckets(&self) -> io::Result<Vec<(String, std::fs::Metadata)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if valid_bucket_name(&name) && e.file_type()?.is_dir() {
                out.push((name, e.metadata()?));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The bucket named by a virtual-hosted Host header, if any.
    pub fn vhost_bucket(&self, host: &str) -> Option<String> {
        let name = strip_port(host);
        if name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost") {
            return None;
        }
        let (first, rest) = name.split_once('.')?;
        if rest.is_empty() {
            return None;
        }
        self.bucket_dir(first).map(|_| first.to_string())
    }

    /// Split a decoded path into a target, with `vhost` the bucket from the Host header.
    pub fn target(&self, path: &str, vhost: Option<String>) -> Result<Target, ApiError> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        match vhost {
            Some(bucket) if rest.is_empty() => Ok(Target::Bucket(bucket)),
            Some(bucket) => Ok(Target::Object {
                bucket,
                key: rest.to_string(),
            }),
            None if rest.is_empty() => Ok(Target::Service),
            None => match rest.split_once('/') {
                None | Some((_, "")) => Ok(Target::Bucket(
                    rest.split('/').next().unwrap_or_default().to_string(),
                )),
                Some((b, k)) => Ok(Target::Object {
                    bucket: b.to_string(),
                    key: k.to_string(),
                }),
            },
        }
    }

    /// Open the object `key` of the bucket at `bucket_dir`, refusing anything that would
    /// leave DIR.
    pub fn open_object(&self, bucket_dir: &Path, key: &str) -> Result<(PathBuf, File), ApiError> {
        check_key(key)?;
        // A key ending in `/` (a "folder marker") or with an empty component names no
        // file here.
        if key.split('/').any(str::is_empty) {
            return Err(ApiError::no_such_key());
        }
        let joined = bucket_dir.join(key);
        let canon = match joined.canonicalize() {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Err(ApiError::no_such_key()),
            Err(e) => return Err(io_error(e)),
        };
        if !canon.starts_with(&self.dir) {
            tracing::warn!(
                "refused {key:?}: resolves to {} outside DIR",
                canon.display()
            );
            return Err(ApiError::access_denied(
                "The object resolves outside the served directory.",
            ));
        }
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&canon)
        {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Err(ApiError::no_such_key()),
            Err(e) => return Err(io_error(e)),
        };
        let meta = file.metadata().map_err(io_error)?;
        if !meta.file_type().is_file() {
            return Err(ApiError::no_such_key());
        }
        Ok((canon, file))
    }
}

/// Refuse keys that could name something outside the bucket.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.contains('\0') {
        return Err(ApiError::invalid_argument("The object key contains NUL."));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(ApiError::invalid_argument(
            "The object key must not start with '/' or '\\'.",
        ));
    }
    if key.split('/').any(|c| c == "." || c == "..") {
        return Err(ApiError::invalid_argument(
            "The object key has a '.' or '..' component, which ossmount serve refuses.",
        ));
    }
    Ok(())
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
        || e.kind() == io::ErrorKind::NotFound
}

fn io_error(e: io::Error) -> ApiError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => ApiError::access_denied("The object is a symbolic link loop."),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            ApiError::access_denied("The server may not read this file.")
        }
        Some(libc::ENAMETOOLONG) => ApiError::invalid_argument("The object key is too long."),
        _ => ApiError::internal(format!("local I/O error: {e}")),
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_leave_are_refused() {
        for bad in ["../x", "a/../../x", "a/./b", "..", "/etc/passwd", "a\0b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a/b", "a..b", "...", "a b+c%d", "文件"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn query_decoding() {
        let q = decode_query(Some("list-type=2&prefix=a%2Fb+c&acl&x=%2B")).unwrap();
        assert_eq!(
            q,
            vec![
                ("list-type".into(), "2".into()),
                ("prefix".into(), "a/b c".into()),
                ("acl".into(), "".into()),
                ("x".into(), "+".into()),
            ]
        );
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("b.example.com:9000"), "b.example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("localhost"), "localhost");
    }
}
