//! `ossmount ls` and `ossmount cat`: look at a bucket without mounting it.
//!
//! Both are thin clients of the same [`ObjectStore`] a mount uses (signing, retries, body
//! resuming included), so they double as the quickest check that a URL, endpoint, region
//! and credentials work before mounting.
//!
//! - `ls URL` lists one level (delimiter `/`) like `aws s3 ls`: the URL's path is a plain
//!   prefix, so `oss://b/dir` shows `PRE dir/` and `oss://b/dir/` shows what is inside.
//!   `-r` lists every key below the prefix. Pages of 1000 keys (the maximum; OSS defaults
//!   to 100) are followed through continuation tokens and printed as they arrive.
//! - `cat URL [--range FIRST-LAST | FIRST- | -COUNT]` HEADs the object, then streams the
//!   bytes to stdout with `If-Match` on its ETag, never holding more than one chunk. A
//!   suffix range must be written `--range=-COUNT`, or clap takes `-COUNT` for a flag.
//!
//! Each command builds its own single-threaded tokio runtime: there is no global runtime,
//! because `mount` forks to detach and a runtime's threads do not survive a fork.
//! Errors become one line naming the object and the cause, with exit code
//! [`exit::USAGE`] for bad arguments or configuration and [`exit::STORE`] for what the store
//! said. A closed stdout (`| head`) ends the command quietly and successfully.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;

use crate::cli::{exit, CatArgs, Failure, LsArgs};
use crate::config::{self, StoreArgs, StoreUrl};
use crate::store::config::ConfigError;
use crate::store::limits::ListGuard;
use crate::store::{ListRequest, ObjectStore, StoreError};

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::GENERIC, format!("cannot start the runtime: {e}")))
}

fn open_store(url: &str, args: &StoreArgs) -> Result<(StoreUrl, Arc<dyn ObjectStore>), Failure> {
    let usage = |e: ConfigError| Failure::new(exit::USAGE, e.to_string());
    let url = StoreUrl::parse(url).map_err(usage)?;
    let sys = Arc::new(crate::store::credentials::RealSystem);
    let cfg = config::resolve(&url, args, sys).map_err(usage)?;
    let store = config::connect_args(&cfg, args).map_err(usage)?;
    Ok((url, store))
}

fn store_failure(url: &StoreUrl, key: &str, e: StoreError) -> Failure {
    let name = format!("{}://{}/{}", url.scheme.as_str(), url.bucket, key);
    Failure::new(exit::STORE, format!("{name}: {e}"))
}

/// Result of writing to stdout: a closed pipe stops the command without an error.
enum Out {
    Ok,
    Closed,
}

fn write_out(out: &mut impl Write, bytes: &[u8]) -> Result<Out, Failure> {
    match out.write_all(bytes) {
        Ok(()) => Ok(Out::Ok),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(Out::Closed),
        Err(e) => Err(Failure::new(exit::LOCAL, format!("writing to stdout: {e}"))),
    }
}

fn format_time(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// One listing line: `size  mtime  key`, or `PRE prefix/` aligned with the keys.
pub fn format_object_line(size: u64, mtime: SystemTime, key: &str) -> String {
    format!("{size:>12}  {}  {key}\n", format_time(mtime))
}

pub fn format_prefix_line(prefix: &str) -> String {
    format!("{:>33}  {prefix}\n", "PRE")
}

pub fn ls(args: LsArgs) -> Result<(), Failure> {
    let (url, store) = open_store(&args.url, &args.store)?;
    let rt = runtime()?;
    rt.block_on(async move {
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let mut req = ListRequest {
            prefix: url.path.clone(),
            delimiter: (!args.recursive).then(|| "/".to_string()),
            continuation_token: None,
            max_keys: 1000,
        };
        let mut found = 0u64;
        // Printed as they arrive, so no entry limit; a token that comes round again still
        // ends the walk.
        let mut guard = ListGuard::with_max_entries(format!("{url}"), usize::MAX);
        loop {
            let page = store
                .list(&req)
                .await
                .map_err(|e| store_failure(&url, &url.path, e))?;
            let mut text = String::new();
            for p in &page.common_prefixes {
                text.push_str(&format_prefix_line(p));
            }
            for o in &page.objects {
                text.push_str(&format_object_line(o.size, o.last_modified, &o.key));
            }
            found += (page.common_prefixes.len() + page.objects.len()) as u64;
            if let Out::Closed = write_out(&mut out, text.as_bytes())? {
                return Ok(());
            }
            match guard
                .next(&page)
                .map_err(|e| store_failure(&url, &url.path, e))?
            {
                Some(t) => req.continuation_token = Some(t),
                None => break,
            }
        }
        if let Err(e) = out.flush() {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(Failure::new(exit::LOCAL, format!("writing to stdout: {e}")));
            }
        }
        if found == 0 && !url.path.is_empty() {
            return Err(Failure::new(
                exit::STORE,
                format!("{url}: no objects or prefixes found"),
            ));
        }
        Ok(())
    })
}

/// A `--range` value: `FIRST-LAST` (inclusive), `FIRST-` (to the end) or `-N` (the last N
/// bytes), turned into a half-open range of an object of `size` bytes.
pub fn parse_range(spec: &str, size: u64) -> Result<Range<u64>, String> {
    let bad = || format!("--range {spec:?}: expected FIRST-LAST, FIRST- or -COUNT (bytes)");
    let (a, b) = spec.trim().split_once('-').ok_or_else(bad)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    let range = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(bad()),
        (true, false) => {
            let n = num(b)?;
            size.saturating_sub(n)..size
        }
        (false, true) => num(a)?..size,
        (false, false) => {
            let (first, last) = (num(a)?, num(b)?);
            if last < first {
                return Err(format!("--range {spec:?}: LAST is before FIRST"));
            }
            first..last.saturating_add(1).min(size)
        }
    };
    if range.start >= size && !(range.start == 0 && size == 0) {
        return Err(format!(
            "--range {spec:?} starts at byte {} but the object has {size} bytes",
            range.start
        ));
    }
    Ok(range)
}

pub fn cat(args: CatArgs) -> Result<(), Failure> {
    let (url, store) = open_store(&args.url, &args.store)?;
    if url.path.is_empty() || url.path.ends_with('/') {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "{}: cat needs an object key, not a bucket or prefix",
                args.url
            ),
        ));
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let key = url.path.clone();
        let meta = store
            .head(&key)
            .await
            .map_err(|e| store_failure(&url, &key, e))?;
        let range = match &args.range {
            Some(spec) => parse_range(spec, meta.size)
                .map_err(|m| Failure::new(exit::USAGE, format!("{url}: {m}")))?,
            None => 0..meta.size,
        };
        let mut body = store
            .get_range(&key, range, Some(&meta.etag))
            .await
            .map_err(|e| store_failure(&url, &key, e))?;
        let stdout = io::stdout();
        let mut out = stdout.lock();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| store_failure(&url, &key, e))?;
            if let Out::Closed = write_out(&mut out, &chunk)? {
                return Ok(());
            }
        }
        match out.flush() {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                Err(Failure::new(exit::LOCAL, format!("writing to stdout: {e}")))
            }
            _ => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0-9", 100), Ok(0..10));
        assert_eq!(parse_range("10-", 100), Ok(10..100));
        assert_eq!(parse_range("-10", 100), Ok(90..100));
        assert_eq!(parse_range("-1000", 100), Ok(0..100));
        assert_eq!(parse_range("90-1000", 100), Ok(90..100));
        assert_eq!(parse_range("99-99", 100), Ok(99..100));
        assert_eq!(parse_range("0-", 0), Ok(0..0));
        assert!(parse_range("100-", 100)
            .unwrap_err()
            .contains("has 100 bytes"));
        assert!(parse_range("5-1", 100).unwrap_err().contains("before"));
        assert!(parse_range("abc", 100).is_err());
        assert!(parse_range("-", 100).is_err());
        assert!(parse_range("1-x", 100).is_err());
    }

    #[test]
    fn listing_lines_align() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1710491400);
        let obj = format_object_line(1234, t, "dir/a b");
        assert_eq!(obj, "        1234  2024-03-15 08:30:00  dir/a b\n");
        let pre = format_prefix_line("dir/sub/");
        assert_eq!(pre.find("dir/"), obj.find("dir/"));
        assert!(pre.trim_start().starts_with("PRE  dir/sub/"));
    }
}
