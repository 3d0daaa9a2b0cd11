//! ListObjects (V1) and ListObjectsV2 over a directory tree.
//!
//! Each request walks the part of the bucket the prefix can match (the directory named by
//! the prefix up to its last `/`), collects file keys, sorts them in UTF-8 byte order (the
//! order OSS and S3 use, which `String`'s `Ord` is), then rolls keys up into common
//! prefixes and cuts a page. With delimiter `/` (what a mount's `ls` sends) a matching
//! subdirectory is not listed but only probed for one file, so a one-level listing costs
//! about one `readdir` per entry of that level. Without a delimiter the walk is
//! O(files under the prefix's directory). No index: listings are always exactly in step
//! with the directory, with nothing to invalidate.
//!
//! Only regular files are objects; empty directories list as nothing. Symlinks to files
//! inside DIR are objects; symlinked directories are not descended (no loops, no escape).
//!
//! The continuation token is the last key or common prefix returned, base64url-encoded:
//! the next page starts strictly after it, and a common prefix as marker skips everything
//! under it. `start-after` is honoured when no token is given.
//!
//! ListObjects V1 (`GET /bucket` without `list-type`) is the same walk with the position
//! given as a plain key, `marker`. It is answered because it is the default of most
//! clients that predate V2 (rclone's "Other" provider, s3fs, boto3's `list_objects`,
//! ossfs), which should run against `serve` unconfigured. Its response differs from V2 as
//! the S3 and OSS documentation describe: `Marker` echoes the request (empty when none),
//! there is no `KeyCount` or token, and `NextMarker` (the last key or common prefix of the
//! page) is sent only when the page is truncated *and* a delimiter was given: S3 documents
//! that without a delimiter the client continues from the last `Key` instead, and boto3
//! and rclone do exactly that. With `encoding-type=url`, `Marker` and `NextMarker` are
//! encoded like every other key-valued element.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::store::xml::{CommonPrefix, Contents};

use super::error::ApiError;
use super::resolve::Root;

/// Encoding for `encoding-type=url`: everything but RFC 3986 unreserved characters, so
/// `/` is `%2F` and `+` is `%2B` as OSS does.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_ENCODE).to_string()
}

/// Default and cap of `max-keys` (the OSS and S3 documented values).
pub const DEFAULT_MAX_KEYS: u32 = 100;
pub const MAX_MAX_KEYS: u32 = 1000;

/// Which ListObjects API a request speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListVersion {
    /// `GET /bucket?marker=`: position is a key.
    V1,
    /// `GET /bucket?list-type=2&continuation-token=`: position is an opaque token.
    #[default]
    V2,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_keys: u32,
    pub continuation_token: Option<String>,
    /// V2 `start-after`, or V1 `marker` (both: start strictly after this key).
    pub start_after: Option<String>,
    pub url_encoding: bool,
    pub version: ListVersion,
}

impl ListParams {
    pub fn from_query(query: &[(String, String)], version: ListVersion) -> Result<Self, ApiError> {
        let get = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let max_keys = match get("max-keys") {
            None => DEFAULT_MAX_KEYS,
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| ApiError::invalid_argument(format!("max-keys {v:?} is not a number")))?
                .min(MAX_MAX_KEYS),
        };
        let url_encoding = match get("encoding-type") {
            None | Some("") => false,
            Some(v) if v.eq_ignore_ascii_case("url") => true,
            Some(v) => {
                return Err(ApiError::invalid_argument(format!(
                    "encoding-type {v:?} is not supported (only url)"
                )))
            }
        };
        Ok(ListParams {
            prefix: get("prefix").unwrap_or_default().to_string(),
            delimiter: get("delimiter")
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            max_keys,
            continuation_token: match version {
                ListVersion::V2 => get("continuation-token")
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
                ListVersion::V1 => None,
            },
            start_after: get(match version {
                ListVersion::V2 => "start-after",
                ListVersion::V1 => "marker",
            })
            .filter(|s| !s.is_empty())
            .map(str::to_string),
            url_encoding,
            version,
        })
    }

    /// Where this page starts (exclusive).
    pub fn marker(&self) -> Result<Option<String>, ApiError> {
        match &self.continuation_token {
            Some(t) => decode_token(t).map(Some),
            None => Ok(self.start_after.clone()),
        }
    }
}

/// Query parameters of ListObjects V1; a `GET /bucket` with any other parameter is some
/// other bucket API, which `serve` does not have.
pub const V1_PARAMS: [&str; 5] = ["prefix", "delimiter", "marker", "max-keys", "encoding-type"];

/// `<ListBucketResult>` of ListObjects V1 (OSS and S3 share it). Serialized by `serve`,
/// deserialized by the tests, so both read the same field names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename = "ListBucketResult")]
pub struct ListBucketResultV1 {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Prefix", default)]
    pub prefix: String,
    /// The request's marker, empty when it gave none (always present, as S3 and OSS send it).
    #[serde(rename = "Marker", default)]
    pub marker: String,
    #[serde(rename = "MaxKeys", default)]
    pub max_keys: u32,
    #[serde(rename = "Delimiter", default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(
        rename = "EncodingType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub encoding_type: Option<String>,
    #[serde(rename = "IsTruncated", default)]
    pub is_truncated: bool,
    #[serde(
        rename = "NextMarker",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_marker: Option<String>,
    #[serde(rename = "Contents", default)]
    pub contents: Vec<Contents>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

/// `NextMarker` of a V1 page: only for a truncated page of a listing with a delimiter.
pub fn next_marker_v1(p: &ListParams, page_next: Option<&str>) -> Option<String> {
    p.delimiter.as_ref().and(page_next).map(str::to_string)
}

pub fn encode_token(marker: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(marker.as_bytes())
}

pub fn decode_token(token: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::invalid_argument("The continuation token is not valid."))
}

/// A file found by the walk.
pub struct Found {
    pub key: String,
    pub path: PathBuf,
    pub meta: Metadata,
}

/// One page, before identities are attached.
pub struct Page {
    pub objects: Vec<Found>,
    pub common_prefixes: Vec<String>,
    /// Marker of the next page, when truncated.
    pub next: Option<String>,
}

/// Compute one page of the listing of `bucket_dir`.
pub fn list_page(root: &Root, bucket_dir: &Path, p: &ListParams) -> Result<Page, ApiError> {
    let marker = p.marker()?;
    let mut found = Vec::new();
    // The directory the prefix must be in: everything up to its last '/'.
    let dir_part = match p.prefix.rfind('/') {
        Some(i) => &p.prefix[..=i],
        None => "",
    };
    // Keys never have empty, '.' or '..' components, so such a prefix matches nothing
    // (and must not steer the walk out of the bucket).
    let dir_ok = dir_part.is_empty()
        || dir_part[..dir_part.len() - 1]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    let start = bucket_dir.join(dir_part);
    // No symlinked directories on the way: the canonical form must be the path itself.
    let dir_ok = dir_ok && (dir_part.is_empty() || start.canonicalize().is_ok_and(|c| c == start));
    if dir_ok {
        let ctx = Walk {
            root,
            prefix: &p.prefix,
            rollup: p.delimiter.as_deref() == Some("/"),
            marker: marker.as_deref(),
        };
        ctx.walk(&start, dir_part.to_string(), &mut found);
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));

    let mut objects = Vec::new();
    let mut common_prefixes: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    let mut truncated = false;
    let mut count = 0u32;
    for f in found {
        if let Some(m) = &marker {
            if f.key.as_str() <= m.as_str() {
                continue;
            }
        }
        let rolled = p.delimiter.as_deref().and_then(|d| {
            f.key[p.prefix.len()..]
                .find(d)
                .map(|i| f.key[..p.prefix.len() + i + d.len()].to_string())
        });
        if let Some(cp) = rolled {
            if Some(&cp) == marker.as_ref() || common_prefixes.last() == Some(&cp) {
                continue;
            }
            if count == p.max_keys {
                truncated = true;
                break;
            }
            count += 1;
            last = Some(cp.clone());
            common_prefixes.push(cp);
        } else {
            if count == p.max_keys {
                truncated = true;
                break;
            }
            count += 1;
            last = Some(f.key.clone());
            objects.push(f);
        }
    }
    Ok(Page {
        objects,
        common_prefixes,
        next: if truncated { last } else { None },
    })
}

/// Collect files under `dir` (whose key prefix is `rel`) with keys starting with `prefix`.
struct Walk<'a> {
    root: &'a Root,
    prefix: &'a str,
    /// Delimiter `/`: a subdirectory that matches the prefix becomes one common prefix,
    /// found by looking for a single file in it instead of listing all of them.
    rollup: bool,
    marker: Option<&'a str>,
}

impl Walk<'_> {
    /// Collect files under `dir` (whose key prefix is `rel`) with keys starting with the
    /// prefix; in rollup mode, matching subdirectories as `sub/` entries.
    fn walk(&self, dir: &Path, rel: String, out: &mut Vec<Found>) {
        let (root, prefix) = (self.root, self.prefix);
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                tracing::debug!("skipping non-UTF-8 name in {}", dir.display());
                continue;
            };
            let key = format!("{rel}{name}");
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let sub = format!("{key}/");
                // All keys below roll up into `sub` itself, unless the marker lies inside
                // (then keys after it must be looked at one by one).
                let inside_marker = self.marker.is_some_and(|m| m.starts_with(&sub));
                if self.rollup && sub.starts_with(prefix) && !inside_marker {
                    if has_file(root, &e.path()) {
                        if let Ok(meta) = e.metadata() {
                            out.push(Found {
                                key: sub,
                                path: e.path(),
                                meta,
                            });
                        }
                    }
                } else if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                    // Descend only where keys can still match the prefix.
                    self.walk(&e.path(), sub, out);
                }
                continue;
            }
            if !key.starts_with(prefix) {
                continue;
            }
            let path = e.path();
            if ft.is_file() {
                if let Ok(meta) = e.metadata() {
                    out.push(Found { key, path, meta });
                }
            } else if ft.is_symlink() {
                // A file it points to, inside DIR, is an object; anything else is skipped.
                match path.canonicalize() {
                    Ok(c) if c.starts_with(&root.dir) => {
                        if let Ok(meta) = std::fs::metadata(&c) {
                            if meta.is_file() {
                                out.push(Found { key, path: c, meta });
                            }
                        }
                    }
                    _ => tracing::debug!(
                        "skipping symlink {} (outside DIR or dangling)",
                        path.display()
                    ),
                }
            }
        }
    }
}

/// Whether `dir` holds at least one object (a file, or a symlink to a file inside DIR),
/// at any depth; symlinked directories are not descended, as in the walk.
fn has_file(root: &Root, dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut subdirs = Vec::new();
    for e in entries.flatten() {
        if e.file_name().to_str().is_none() {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_file() {
            return true;
        }
        if ft.is_dir() {
            subdirs.push(e.path());
        } else if ft.is_symlink() {
            if let Ok(c) = e.path().canonicalize() {
                if c.starts_with(&root.dir) && std::fs::metadata(&c).is_ok_and(|m| m.is_file()) {
                    return true;
                }
            }
        }
    }
    subdirs.iter().any(|d| has_file(root, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_is_strict() {
        assert_eq!(url_encode("a b+c/d~e%"), "a%20b%2Bc%2Fd~e%25");
        assert_eq!(url_encode("é"), "%C3%A9");
    }

    #[test]
    fn tokens_round_trip() {
        for m in ["a/b", "100%", "文件/x y", ""] {
            assert_eq!(decode_token(&encode_token(m)).unwrap(), m);
        }
        assert!(decode_token("!!!").is_err());
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn v1_marker_is_a_key_and_next_marker_needs_a_delimiter() {
        let query = q(&[
            ("marker", "a/b"),
            ("continuation-token", "eA"),
            ("start-after", "z"),
        ]);
        let v1 = ListParams::from_query(&query, ListVersion::V1).unwrap();
        assert_eq!(v1.marker().unwrap().as_deref(), Some("a/b"));
        let v2 = ListParams::from_query(&query, ListVersion::V2).unwrap();
        assert_eq!(v2.marker().unwrap().as_deref(), Some("x"));
        assert_eq!(next_marker_v1(&v1, Some("k")), None);
        let with_delim = ListParams {
            delimiter: Some("/".into()),
            ..v1
        };
        assert_eq!(next_marker_v1(&with_delim, Some("k")).as_deref(), Some("k"));
        assert_eq!(next_marker_v1(&with_delim, None), None);
    }
}
