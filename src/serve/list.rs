//! ListObjects (V1) and ListObjectsV2 over a directory tree.
//!
//! A listing walks the part of the bucket the prefix can match (the directory named by
//! the prefix up to its last `/`), collects candidate keys from `readdir` alone (names
//! and types, no `stat`), and sorts them in UTF-8 byte order (the order OSS and S3 use,
//! which `String`'s `Ord` is). With delimiter `/` (what a mount's `ls` sends) a matching
//! subdirectory is not descended but kept as one candidate common prefix. A page is then
//! a binary search for the marker and a walk forward that `stat`s only the entries it
//! takes: a file must still be a file (its size and mtime are read there, so they are
//! current), a symlink must still point to a file inside DIR, a subdirectory must hold a
//! file somewhere to be listed as a common prefix. Without a delimiter the walk is
//! O(files under the prefix's directory).
//!
//! Walks are kept ([`Listings`]: a few, least recently used first out) because clients
//! page: a 100k-key directory is 100 pages of 1,000, and walking and sorting it again
//! for each page cost 0.5 s apiece in a debug build (49 s for `ossmount ls`). A kept
//! walk is reused only while none of the directories it read has changed (mtime, ctime,
//! inode), which every create, unlink or rename in them does; directories changed within
//! the last two seconds of the walk are not trusted to show a later change (timestamps
//! are coarse), so such walks are not kept. Listings are therefore exactly in step with
//! the directories, as before; what can change without the directory changing is read
//! per page.
//!
//! Only regular files are objects; empty directories list as nothing. A symlink whose
//! target stays in its bucket is a symlink object (see [`super::kinds`]), listed whether
//! its target exists or not; other symlinks to files inside DIR are plain objects;
//! symlinked directories are not descended (no loops, no escape).
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
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use lru::LruCache;
use parking_lot::Mutex;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::store::xml::{CommonPrefix, Contents};

use super::error::ApiError;
use super::resolve::Root;
use super::stats::Stats;

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

/// A file on a page, stat'ed when the page was cut.
pub struct Found {
    pub key: String,
    pub path: PathBuf,
    pub meta: Metadata,
    /// A symlink object ([`super::kinds`]): its target key; `path` and `meta` are the
    /// link's own.
    pub symlink: Option<String>,
}

/// One page, before identities are attached.
pub struct Page {
    pub objects: Vec<Found>,
    pub common_prefixes: Vec<String>,
    /// Marker of the next page, when truncated.
    pub next: Option<String>,
}

/// How many listings [`Listings`] keeps, and how many entries in all: an entry is a key
/// and a tag, about 50 bytes with a short key, so the budget is some tens of MiB.
const CACHED_LISTINGS: usize = 8;
const CACHED_ENTRIES: usize = 1_000_000;

/// A directory whose mtime is this close to the moment it was read may change again
/// without its mtime changing (the kernel stamps with a clock that ticks every few ms,
/// some file systems keep whole or even two seconds), so such a listing is not kept.
const RACY: Duration = Duration::from_secs(2);

/// What the walk saw of one entry: only `readdir`'s name and type, so building a listing
/// costs no `stat` per file. What can change without the directory changing (size,
/// mtime, a symlink's target, whether a subdirectory holds a file) is looked at only
/// when the entry lands on a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Symlink,
    /// With delimiter `/`: a subdirectory, listed as one common prefix if it holds a file.
    Subdir,
}

struct Entry {
    /// Full key; a [`Kind::Subdir`]'s ends in `/`.
    key: String,
    kind: Kind,
}

/// What changes when a directory's entries do (create, unlink, rename in or out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DirStamp {
    mtime: SystemTime,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl DirStamp {
    fn of(dir: &Path) -> Option<Self> {
        let m = std::fs::metadata(dir).ok()?;
        Some(DirStamp {
            mtime: m.modified().ok()?,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
            ino: m.ino(),
            dev: m.dev(),
        })
    }
}

/// The sorted candidate keys of one walk, and the directories it read.
struct Listing {
    entries: Vec<Entry>,
    dirs: Vec<(PathBuf, Option<DirStamp>)>,
}

impl Listing {
    /// Still what the walk would find: no directory it read has changed.
    fn is_current(&self) -> bool {
        self.dirs.iter().all(|(d, s)| DirStamp::of(d) == *s)
    }

    /// Safe to reuse later: every directory read was stamped, and long enough before the
    /// read that a change after it must move the mtime.
    fn keepable(&self, read_at: SystemTime) -> bool {
        self.entries.len() <= CACHED_ENTRIES
            && self
                .dirs
                .iter()
                .all(|(_, s)| s.is_some_and(|s| s.mtime + RACY < read_at))
    }
}

/// What determines a walk: where it starts, what it keeps, where it descends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ListingKey {
    start: PathBuf,
    prefix: String,
    rollup: bool,
    /// With rollup, the marker up to its last `/`: subdirectories on that path are
    /// descended instead of rolled up.
    marker_dir: String,
}

/// Recently built listings, so that the pages of one listing share one walk and one sort
/// instead of each doing its own (100 pages of a 100k-key directory did 100 of each,
/// 0.5 s apiece in a debug build). Least recently used ones go first.
pub struct Listings {
    lru: Mutex<LruCache<ListingKey, Arc<Listing>>>,
}

impl Default for Listings {
    fn default() -> Self {
        Listings {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHED_LISTINGS).expect("nonzero"),
            )),
        }
    }
}

impl Listings {
    fn get(&self, key: &ListingKey) -> Option<Arc<Listing>> {
        let hit = self.lru.lock().get(key).cloned()?;
        // Checked outside the lock: one stat per directory the walk read.
        if hit.is_current() {
            Some(hit)
        } else {
            self.lru.lock().pop(key);
            None
        }
    }

    fn put(&self, key: ListingKey, listing: Arc<Listing>) {
        let mut lru = self.lru.lock();
        lru.put(key, listing);
        while lru.len() > 1
            && lru.iter().map(|(_, l)| l.entries.len()).sum::<usize>() > CACHED_ENTRIES
        {
            lru.pop_lru();
        }
    }
}

/// Compute one page of the listing of `bucket_dir`.
pub fn list_page(
    root: &Root,
    listings: &Listings,
    stats: &Stats,
    bucket_dir: &Path,
    p: &ListParams,
) -> Result<Page, ApiError> {
    let marker = p.marker()?;
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
    // Older versions are no keys ([`super::versions`]).
    let dir_ok = dir_ok && !(root.kinds && super::versions::hidden(dir_part));
    if !dir_ok {
        return Ok(Page {
            objects: Vec::new(),
            common_prefixes: Vec::new(),
            next: None,
        });
    }
    let rollup = p.delimiter.as_deref() == Some("/");
    let key = ListingKey {
        start,
        prefix: p.prefix.clone(),
        rollup,
        // Only a marker below the start directory changes the walk; pages of one
        // directory (markers in it) all share the walk of the first page.
        marker_dir: match (&marker, rollup) {
            (Some(m), true) => m
                .rfind('/')
                .map(|i| &m[..=i])
                .filter(|md| md.len() > dir_part.len() && md.starts_with(dir_part))
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        },
    };
    let listing = match listings.get(&key) {
        Some(l) => l,
        None => {
            let read_at = SystemTime::now();
            let walk = Walk {
                prefix: &p.prefix,
                rollup,
                marker_dir: &key.marker_dir,
                hide: root.kinds.then_some(super::versions::VERSIONS_DIR),
            };
            let mut listing = Listing {
                entries: Vec::new(),
                dirs: Vec::new(),
            };
            walk.read(&key.start, dir_part.to_string(), &mut listing);
            listing.entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            Stats::inc(&stats.listings_built);
            let keep = listing.keepable(read_at);
            tracing::debug!(
                "listing of {:?} in {}: {} candidates, {} directories read{}",
                p.prefix,
                key.start.display(),
                listing.entries.len(),
                listing.dirs.len(),
                if keep {
                    ""
                } else {
                    " (not kept: changed too recently)"
                }
            );
            let listing = Arc::new(listing);
            if keep {
                listings.put(key, listing.clone());
            }
            listing
        }
    };
    Ok(cut_page(
        root,
        bucket_dir,
        &listing.entries,
        p,
        marker.as_deref(),
    ))
}

/// The page after `marker`: a binary search, then a `stat` for each entry taken.
fn cut_page(
    root: &Root,
    bucket_dir: &Path,
    entries: &[Entry],
    p: &ListParams,
    marker: Option<&str>,
) -> Page {
    let mut i = match marker {
        Some(m) => entries.partition_point(|e| e.key.as_str() <= m),
        None => 0,
    };
    let mut objects = Vec::new();
    let mut common_prefixes: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    let mut truncated = false;
    let mut count = 0u32;
    while i < entries.len() {
        let e = &entries[i];
        let rolled = p.delimiter.as_deref().and_then(|d| {
            e.key[p.prefix.len()..]
                .find(d)
                .map(|j| &e.key[..p.prefix.len() + j + d.len()])
        });
        if let Some(cp) = rolled {
            // The keys rolled into `cp` are contiguous from here: skip them all at once
            // when `cp` was the marker or is already on this page.
            let done = marker == Some(cp) || common_prefixes.last().map(String::as_str) == Some(cp);
            if done {
                i += entries[i..].partition_point(|e| e.key.starts_with(cp));
                continue;
            }
            // A prefix is listed only for a key that is really there (the first that is).
            let there = match e.kind {
                Kind::Subdir => has_file(root, &bucket_dir.join(&e.key)),
                _ => resolve(root, bucket_dir, e).is_some(),
            };
            i += 1;
            if !there {
                continue;
            }
            if count == p.max_keys {
                truncated = true;
                break;
            }
            count += 1;
            last = Some(cp.to_string());
            common_prefixes.push(cp.to_string());
        } else {
            i += 1;
            let Some(found) = resolve(root, bucket_dir, e) else {
                continue; // gone since the walk, or not a file (any more)
            };
            if count == p.max_keys {
                truncated = true;
                break;
            }
            count += 1;
            last = Some(found.key.clone());
            objects.push(found);
        }
    }
    Page {
        objects,
        common_prefixes,
        next: if truncated { last } else { None },
    }
}

/// The file behind a file or symlink entry, now. A symlink is an object when it points
/// to a file inside DIR; anything else is skipped.
fn resolve(root: &Root, bucket_dir: &Path, e: &Entry) -> Option<Found> {
    let path = bucket_dir.join(&e.key);
    match e.kind {
        Kind::File => {
            let meta = std::fs::symlink_metadata(&path).ok()?;
            meta.is_file().then(|| Found {
                key: e.key.clone(),
                path,
                meta,
                symlink: None,
            })
        }
        Kind::Symlink
            if root.kinds && super::kinds::symlink_target(bucket_dir, &e.key).is_some() =>
        {
            let target = super::kinds::symlink_target(bucket_dir, &e.key)?;
            Some(Found {
                key: e.key.clone(),
                meta: std::fs::symlink_metadata(&path).ok()?,
                path,
                symlink: Some(target),
            })
        }
        Kind::Symlink => match path.canonicalize() {
            Ok(c) if c.starts_with(&root.dir) => {
                let meta = std::fs::metadata(&c).ok()?;
                meta.is_file().then(|| Found {
                    key: e.key.clone(),
                    path: c,
                    meta,
                    symlink: None,
                })
            }
            _ => {
                tracing::debug!(
                    "skipping symlink {} (outside DIR or dangling)",
                    path.display()
                );
                None
            }
        },
        Kind::Subdir => None,
    }
}

/// Collects candidate keys under a directory: names and types from `readdir`, no `stat`.
struct Walk<'a> {
    prefix: &'a str,
    /// Delimiter `/`: a subdirectory that matches the prefix becomes one candidate common
    /// prefix (checked for a file only when it lands on a page) instead of being listed.
    rollup: bool,
    /// See [`ListingKey::marker_dir`].
    marker_dir: &'a str,
    /// A top-level directory of the bucket that holds no keys: the older versions of the
    /// versioning emulation ([`super::versions`]).
    hide: Option<&'a str>,
}

impl Walk<'_> {
    /// Collect entries under `dir` (whose key prefix is `rel`) with keys starting with the
    /// prefix; in rollup mode, matching subdirectories as `sub/` entries.
    fn read(&self, dir: &Path, rel: String, out: &mut Listing) {
        let prefix = self.prefix;
        // Stamped before reading: a change during the read moves the stamp on.
        out.dirs.push((dir.to_path_buf(), DirStamp::of(dir)));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                tracing::debug!("skipping non-UTF-8 name in {}", dir.display());
                continue;
            };
            if rel.is_empty() && self.hide == Some(name.as_str()) {
                continue;
            }
            let key = format!("{rel}{name}");
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                let sub = format!("{key}/");
                // All keys below roll up into `sub` itself, unless the marker lies inside
                // (then keys after it must be looked at one by one).
                let inside_marker = self.marker_dir.starts_with(&sub);
                if self.rollup && sub.starts_with(prefix) && !inside_marker {
                    out.entries.push(Entry {
                        key: sub,
                        kind: Kind::Subdir,
                    });
                } else if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                    // Descend only where keys can still match the prefix.
                    self.read(&e.path(), sub, out);
                }
                continue;
            }
            if !key.starts_with(prefix) {
                continue;
            }
            if ft.is_file() {
                out.entries.push(Entry {
                    key,
                    kind: Kind::File,
                });
            } else if ft.is_symlink() {
                out.entries.push(Entry {
                    key,
                    kind: Kind::Symlink,
                });
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
