//! Core tests against [`MemoryStore`]: listing cache hits, odd keys, shadowing, TTL
//! expiry, the negative cache, revalidation on open, EROFS, and paging through 100k keys,
//! each checked by the store's request counters.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::fetch::Fetcher;
use crate::fs::error::FsError;
use crate::store::memory::{MemoryStore, RequestKind};
use crate::store::StoreError;

fn tree(store: &MemoryStore, prefix: &str, ttl: Duration) -> Arc<Tree> {
    let config = FsConfig {
        metadata_ttl: ttl,
        // These tests count LISTs; read-ahead has its own.
        dir_read_ahead: 0,
        ..FsConfig::default()
    };
    Tree::new(Arc::new(store.clone()), prefix, DataPath::Uncached, config)
}

fn lists(s: &MemoryStore) -> u64 {
    s.counters().requests(RequestKind::List)
}

fn heads(s: &MemoryStore) -> u64 {
    s.counters().requests(RequestKind::Head)
}

async fn names(t: &Tree, ino: u64) -> Vec<String> {
    let fh = t.opendir(ino).await.unwrap();
    let out = t.readdir(ino, fh, 0).unwrap();
    t.releasedir(fh);
    out.into_iter().map(|e| e.name).collect()
}

async fn lookup(t: &Tree, parent: u64, name: &str) -> Result<Attr, FsError> {
    t.lookup(parent, OsStr::new(name)).await
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn listing_shows_files_dirs_and_markers_and_is_cached() {
    let s = MemoryStore::new();
    s.put("top/a.txt", b"hello".to_vec());
    s.put("top/sub/b", b"x".to_vec());
    s.put("top/empty/", Vec::new()); // directory marker object
    s.put("top/", Vec::new()); // the root's own marker: not an entry
    s.put("elsewhere", b"no".to_vec());
    let t = tree(&s, "top", HOUR);
    assert_eq!(
        names(&t, ROOT_INO).await,
        [".", "..", "a.txt", "empty", "sub"]
    );
    let n = lists(&s);
    assert_eq!(n, 1);
    // Listing again, and looking up present and absent names, cost nothing.
    assert_eq!(names(&t, ROOT_INO).await.len(), 5);
    let a = lookup(&t, ROOT_INO, "a.txt").await.unwrap();
    assert_eq!((a.kind, a.size, a.perm), (Kind::File, 5, 0o444));
    let d = lookup(&t, ROOT_INO, "empty").await.unwrap();
    assert_eq!((d.kind, d.perm), (Kind::Dir, 0o555));
    assert!(matches!(
        lookup(&t, ROOT_INO, "nope").await,
        Err(FsError::NotFound)
    ));
    assert_eq!((lists(&s), heads(&s)), (1, 0));
    // The subdirectory lists once too.
    assert_eq!(names(&t, d.ino).await, [".", ".."]);
    let sub = lookup(&t, ROOT_INO, "sub").await.unwrap();
    assert_eq!(names(&t, sub.ino).await, [".", "..", "b"]);
    assert_eq!(lists(&s), 3);
}

#[tokio::test]
async fn odd_keys_are_skipped_not_fatal() {
    let s = MemoryStore::new();
    let long = "n".repeat(256);
    for k in [
        "a//b".to_string(),
        "./x".to_string(),
        "../y".to_string(),
        "d/./z".to_string(),
        long.clone(),
        format!("d/{long}/f"),
        "ok".to_string(),
        "d/fine".to_string(),
        "sp ace & ü.bin".to_string(),
    ] {
        s.put(&k, b"1".to_vec());
    }
    let t = tree(&s, "", HOUR);
    // `a//b` makes `a` a directory whose only child has an empty name.
    assert_eq!(
        names(&t, ROOT_INO).await,
        [".", "..", "a", "d", "ok", "sp ace & ü.bin"]
    );
    let a = lookup(&t, ROOT_INO, "a").await.unwrap();
    assert_eq!(names(&t, a.ino).await, [".", ".."]);
    let d = lookup(&t, ROOT_INO, "d").await.unwrap();
    assert_eq!(names(&t, d.ino).await, [".", "..", "fine"]);
    assert!(matches!(
        lookup(&t, ROOT_INO, &long).await,
        Err(FsError::NameTooLong)
    ));
    assert!(matches!(
        lookup(&t, ROOT_INO, "..").await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn a_directory_shadows_a_file_of_the_same_name() {
    let s = MemoryStore::new();
    s.put("x", b"file".to_vec());
    s.put("x/inner", b"i".to_vec());
    let t = tree(&s, "", HOUR);
    // Remote lookup (no listing yet) prefers the directory.
    let x = lookup(&t, ROOT_INO, "x").await.unwrap();
    assert_eq!(x.kind, Kind::Dir);
    // So does the listing, which shows the name once.
    assert_eq!(names(&t, ROOT_INO).await, [".", "..", "x"]);
    assert_eq!(lookup(&t, ROOT_INO, "x").await.unwrap().ino, x.ino);
}

#[tokio::test]
async fn negative_lookups_are_cached_for_the_ttl() {
    let s = MemoryStore::new();
    s.put("d/f", b"1".to_vec());
    let t = tree(&s, "", Duration::from_millis(200));
    assert!(matches!(
        lookup(&t, ROOT_INO, "missing").await,
        Err(FsError::NotFound)
    ));
    let (l, h) = (lists(&s), heads(&s));
    assert_eq!((l, h), (1, 1));
    assert!(matches!(
        lookup(&t, ROOT_INO, "missing").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(
        (lists(&s), heads(&s)),
        (l, h),
        "second miss must come from the negative cache"
    );
    // After the TTL the store is asked again, and a new object shows up.
    s.put("missing", b"now here".to_vec());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let a = lookup(&t, ROOT_INO, "missing").await.unwrap();
    assert_eq!(a.size, 8);
}

#[tokio::test]
async fn listings_expire_after_the_ttl_and_inodes_stay_stable() {
    let s = MemoryStore::new();
    s.put("one", b"1".to_vec());
    let t = tree(&s, "", Duration::from_millis(200));
    assert_eq!(names(&t, ROOT_INO).await, [".", "..", "one"]);
    let one = lookup(&t, ROOT_INO, "one").await.unwrap().ino;
    s.put("two", b"2".to_vec());
    assert_eq!(
        names(&t, ROOT_INO).await,
        [".", "..", "one"],
        "fresh listing is reused"
    );
    assert_eq!(lists(&s), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(names(&t, ROOT_INO).await, [".", "..", "one", "two"]);
    assert_eq!(lists(&s), 2);
    assert_eq!(lookup(&t, ROOT_INO, "one").await.unwrap().ino, one);
}

#[tokio::test]
async fn getattr_rehead_only_after_the_ttl() {
    let s = MemoryStore::new();
    s.put("f", b"12345".to_vec());
    let t = tree(&s, "", Duration::from_millis(200));
    let f = lookup(&t, ROOT_INO, "f").await.unwrap();
    let h = heads(&s);
    assert_eq!(t.getattr(f.ino).await.unwrap().size, 5);
    assert_eq!(heads(&s), h);
    s.put("f", b"1234567".to_vec());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(t.getattr(f.ino).await.unwrap().size, 7);
    assert_eq!(heads(&s), h + 1);
}

#[tokio::test]
async fn open_revalidates_keeps_cache_only_when_unchanged_and_old_handles_go_stale() {
    let s = MemoryStore::new();
    s.put("f", b"old content".to_vec());
    let t = tree(&s, "", Duration::from_millis(200));
    let f = lookup(&t, ROOT_INO, "f").await.unwrap();
    let o1 = t.open(f.ino, false).await.unwrap();
    assert!(!o1.keep_cache, "first open: nothing to keep");
    assert_eq!(&t.read(o1.fh, 0, 100).await.unwrap()[..], b"old content");
    let o2 = t.open(f.ino, false).await.unwrap();
    assert!(o2.keep_cache, "same ETag: keep the page cache");
    t.release(o2.fh);

    s.put("f", b"NEW content!".to_vec());
    // Within the TTL the old ETag is trusted, but reads are tied to it: never mixed bytes.
    assert!(matches!(t.read(o1.fh, 0, 100).await, Err(FsError::Stale)));
    // A stale read invalidates the metadata: the next open HEADs and sees the new object.
    let h = heads(&s);
    let o3 = t.open(f.ino, false).await.unwrap();
    assert_eq!(heads(&s), h + 1);
    assert!(!o3.keep_cache, "changed object: drop the page cache");
    assert_eq!(&t.read(o3.fh, 0, 100).await.unwrap()[..], b"NEW content!");
    assert_eq!(t.getattr(f.ino).await.unwrap().size, 12);
    t.release(o1.fh);
    t.release(o3.fh);
    assert_eq!(t.open_handles(), 0);

    // After the TTL, open re-HEADs by itself.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let h = heads(&s);
    let o4 = t.open(f.ino, false).await.unwrap();
    assert_eq!(heads(&s), h + 1);
    assert!(o4.keep_cache);
}

#[tokio::test]
async fn reads_are_bounded_by_the_object() {
    let s = MemoryStore::new();
    s.put("f", (0..=255u8).collect::<Vec<_>>());
    let t = tree(&s, "", HOUR);
    let f = lookup(&t, ROOT_INO, "f").await.unwrap();
    let o = t.open(f.ino, false).await.unwrap();
    assert_eq!(t.read(o.fh, 250, 100).await.unwrap().len(), 6);
    assert!(t.read(o.fh, 256, 100).await.unwrap().is_empty());
    assert!(t.read(o.fh, 1000, 100).await.unwrap().is_empty());
    assert!(matches!(
        t.read(999, 0, 1).await,
        Err(FsError::BadHandle(999))
    ));
}

#[tokio::test]
async fn writes_and_directory_opens_are_refused() {
    let s = MemoryStore::new();
    s.put("f", b"x".to_vec());
    s.put("d/g", b"x".to_vec());
    let t = tree(&s, "", HOUR);
    let f = lookup(&t, ROOT_INO, "f").await.unwrap();
    assert!(matches!(t.open(f.ino, true).await, Err(FsError::ReadOnly)));
    let d = lookup(&t, ROOT_INO, "d").await.unwrap();
    assert!(matches!(t.open(d.ino, false).await, Err(FsError::IsDir)));
    assert!(matches!(t.opendir(f.ino).await, Err(FsError::NotDir)));
    assert!(matches!(lookup(&t, f.ino, "x").await, Err(FsError::NotDir)));
    assert!(matches!(t.getattr(12345).await, Err(FsError::NotFound)));
}

#[tokio::test]
async fn store_errors_are_sorted_for_errno() {
    use crate::store::ServiceError;
    let svc = |code: &str, status| ServiceError {
        status,
        code: code.into(),
        ..Default::default()
    };
    let map = |e| FsError::from(e);
    assert!(matches!(
        map(StoreError::NoSuchKey(svc("NoSuchKey", 404))),
        FsError::NotFound
    ));
    assert!(matches!(
        map(StoreError::AccessDenied(svc("AccessDenied", 403))),
        FsError::AccessDenied(_)
    ));
    assert!(matches!(
        map(StoreError::InvalidObjectState(svc(
            "InvalidObjectState",
            403
        ))),
        FsError::Archived(_)
    ));
    assert!(matches!(
        map(StoreError::PreconditionFailed(svc(
            "PreconditionFailed",
            412
        ))),
        FsError::Stale
    ));
    assert!(matches!(
        map(StoreError::Network("reset".into())),
        FsError::Store(_)
    ));
}

#[tokio::test]
async fn readdir_resumes_from_a_cookie() {
    let s = MemoryStore::new();
    for i in 0..10 {
        s.put(&format!("f{i}"), b"x".to_vec());
    }
    let t = tree(&s, "", HOUR);
    let fh = t.opendir(ROOT_INO).await.unwrap();
    let all = t.readdir(ROOT_INO, fh, 0).unwrap();
    assert_eq!(all.len(), 12);
    let mut taken = Vec::new();
    t.readdir_with(ROOT_INO, fh, 0, false, &mut |e| {
        taken.push(e.name);
        taken.len() == 3
    })
    .unwrap();
    assert_eq!(taken, [".", "..", "f0"], "stops when the buffer is full");
    for cut in 0..all.len() {
        let rest = t.readdir(ROOT_INO, fh, all[cut].offset).unwrap();
        let want: Vec<_> = all[cut + 1..].iter().map(|e| e.name.clone()).collect();
        let got: Vec<_> = rest.iter().map(|e| e.name.clone()).collect();
        assert_eq!(got, want, "resuming after entry {cut}");
    }
}

#[tokio::test]
async fn hundred_thousand_keys_page_in_100_lists() {
    let s = MemoryStore::new();
    for i in 0..100_000 {
        s.put(&format!("big/k{i:06}"), Vec::new());
    }
    let t = tree(&s, "", HOUR);
    let big = lookup(&t, ROOT_INO, "big").await.unwrap();
    s.reset_counters();
    let fh = t.opendir(big.ino).await.unwrap();
    let entries = t.readdir(big.ino, fh, 0).unwrap();
    assert_eq!(entries.len(), 100_002);
    assert_eq!(lists(&s), 100, "1000 keys per page");
    assert_eq!(entries[2].name, "k000000");
    assert_eq!(entries[100_001].name, "k099999");
    // Every lookup in it is served from the listing.
    let e = lookup(&t, big.ino, "k054321").await.unwrap();
    assert_eq!(e.ino, entries[54_323].attr.ino);
    assert_eq!((lists(&s), heads(&s)), (100, 0));
}

fn cached_tree(store: &MemoryStore, dir: &std::path::Path, ttl: Duration) -> Arc<Tree> {
    let config = FsConfig {
        metadata_ttl: ttl,
        ..FsConfig::default()
    };
    cached_tree_with(store, dir, config)
}

fn cached_tree_with(store: &MemoryStore, dir: &std::path::Path, config: FsConfig) -> Arc<Tree> {
    let cache = Fetcher::open(
        crate::cache::CacheConfig {
            dir: dir.to_path_buf(),
            part_size: 128 << 10,
            small_object_threshold: 0,
            min_request_bytes: 128 << 10,
            ..Default::default()
        },
        Arc::new(store.clone()),
        "memory/bkt".to_string(),
    )
    .unwrap();
    Tree::new(Arc::new(store.clone()), "", DataPath::Cache(cache), config)
}

/// Open `ino` until the open offers the finalized file (finalizing runs in the background
/// right after the last part lands); the last open, finalized or not after 2 s.
async fn open_finalized(t: &Arc<Tree>, ino: u64) -> Opened {
    let mut o = t.open(ino, false).await.unwrap();
    // Up to 30 s: finalizing runs in the background, and a loaded CI box is slow.
    for _ in 0..1500 {
        if o.finalized.is_some() {
            break;
        }
        t.release(o.fh);
        tokio::time::sleep(Duration::from_millis(20)).await;
        o = t.open(ino, false).await.unwrap();
    }
    o
}

/// Direct I/O is asked for objects above `direct_io_above` until they are finalized, never
/// for small ones, never when turned off.
#[tokio::test]
async fn direct_io_is_for_large_objects_not_yet_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    s.put("big", big.clone());
    s.put("small", vec![7u8; 1000]);
    let config = |above| FsConfig {
        direct_io_above: above,
        ..FsConfig::default()
    };
    let t = cached_tree_with(&s, &tmp.path().join("a"), config(Some(500_000)));
    let (b, sm) = (
        lookup(&t, ROOT_INO, "big").await.unwrap(),
        lookup(&t, ROOT_INO, "small").await.unwrap(),
    );
    assert!(!t.open(sm.ino, false).await.unwrap().direct_io);
    let o = t.open(b.ino, false).await.unwrap();
    assert!(o.direct_io);
    assert_eq!(&t.read(o.fh, 0, 600_000).await.unwrap()[..], &big[..]);
    t.release(o.fh);
    // Finalized (in the background, right after the last part): passthrough's turn.
    let o = open_finalized(&t, b.ino).await;
    assert!(o.finalized.is_some() && !o.direct_io);

    let t = cached_tree_with(&s, &tmp.path().join("b"), config(None));
    let b = lookup(&t, ROOT_INO, "big").await.unwrap();
    assert!(!t.open(b.ino, false).await.unwrap().direct_io);
}

#[tokio::test]
async fn through_the_part_cache_reopen_is_served_locally_and_a_change_refetches() {
    let tmp = tempfile::tempdir().unwrap();
    let s = MemoryStore::new();
    let v1: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    s.put("f", v1.clone());
    let t = cached_tree(&s, tmp.path(), Duration::from_millis(200));
    let f = lookup(&t, ROOT_INO, "f").await.unwrap();

    // Read it all once: fetched from the store, then finalized.
    let o = t.open(f.ino, false).await.unwrap();
    let mut got = Vec::new();
    while got.len() < v1.len() {
        let b = t.read(o.fh, got.len() as u64, 128 << 10).await.unwrap();
        assert!(!b.is_empty());
        got.extend_from_slice(&b);
    }
    assert_eq!(got, v1);
    t.release(o.fh);

    // Reopen: the finalized file is offered for passthrough and reads cost no GET.
    // (Finalizing runs in the background right after the last part lands.)
    let gets = s.counters().requests(RequestKind::Get);
    let o = open_finalized(&t, f.ino).await;
    assert!(o.keep_cache);
    assert!(o.finalized.is_some(), "complete object should be finalized");
    assert_eq!(
        &t.read(o.fh, 999_990, 100).await.unwrap()[..],
        &v1[999_990..]
    );
    assert_eq!(s.counters().requests(RequestKind::Get), gets);
    t.release(o.fh);

    // The object changes; after the TTL, open sees the new ETag, drops the old entry and
    // reads the new bytes.
    let v2: Vec<u8> = v1.iter().map(|b| b ^ 0xff).collect();
    s.put("f", v2.clone());
    tokio::time::sleep(Duration::from_millis(250)).await;
    let o = t.open(f.ino, false).await.unwrap();
    assert!(!o.keep_cache);
    assert!(o.finalized.is_none());
    assert_eq!(&t.read(o.fh, 0, 1000).await.unwrap()[..], &v2[..1000]);
}

#[tokio::test]
async fn inodes_live_as_long_as_kernel_references_and_numbers_are_never_reused() {
    let s = MemoryStore::new();
    s.put("a/x", vec![0; 5000]);
    s.put("a/y", vec![0; 3000]);
    s.put("b", b"b".to_vec());
    let t = tree(&s, "", HOUR);
    assert_eq!(t.inode_count(), 1, "the root");

    // Two lookups are two references; the inode goes with the second forget.
    let a = lookup(&t, ROOT_INO, "a").await.unwrap();
    assert_eq!(names(&t, a.ino).await, [".", "..", "x", "y"]);
    assert_eq!(
        t.inode_count(),
        2,
        "plain readdir's inodes are swept on releasedir"
    );
    let x = lookup(&t, a.ino, "x").await.unwrap();
    assert_eq!(lookup(&t, a.ino, "x").await.unwrap().ino, x.ino);
    assert_eq!(t.inode_count(), 3);
    t.forget(&[(x.ino, 1)]);
    assert_eq!(
        t.getattr(x.ino).await.unwrap().size,
        5000,
        "one reference left"
    );
    t.forget(&[(x.ino, 1)]);
    assert_eq!(t.inode_count(), 2);
    assert!(matches!(t.getattr(x.ino).await, Err(FsError::NotFound)));
    // The name comes back with a new number (from the cached listing, no request).
    let n = lists(&s);
    let x2 = lookup(&t, a.ino, "x").await.unwrap();
    assert!(x2.ino > x.ino, "numbers are never reused");
    assert_eq!((x2.size, lists(&s)), (5000, n));

    // readdirplus: each entry taken is a reference, the one that did not fit is not.
    let fh = t.opendir(a.ino).await.unwrap();
    let mut taken = Vec::new();
    t.readdir_with(a.ino, fh, 0, true, &mut |e| {
        taken.push(e.attr.ino);
        taken.len() == 4 // ".", "..", "x" taken; "y" does not fit
    })
    .unwrap();
    let y_ino = taken[3];
    assert_eq!(taken[2], x2.ino);
    t.releasedir(fh);
    assert!(matches!(t.getattr(y_ino).await, Err(FsError::NotFound)));
    t.forget(&[(x2.ino, 2)]); // the lookup and the readdirplus entry
    assert!(matches!(t.getattr(x2.ino).await, Err(FsError::NotFound)));
    assert_eq!(t.inode_count(), 2, "root and a");

    // Plain readdir reports numbers without references: swept on release, unless the
    // kernel looked the name up meanwhile.
    let fh = t.opendir(ROOT_INO).await.unwrap();
    let entries = t.readdir(ROOT_INO, fh, 0).unwrap();
    assert_eq!(entries[3].name, "b");
    assert_eq!(t.inode_count(), 3);
    let b = lookup(&t, ROOT_INO, "b").await.unwrap();
    assert_eq!(
        b.ino, entries[3].attr.ino,
        "d_ino is st_ino while the handle is open"
    );
    let fh2 = t.opendir(a.ino).await.unwrap();
    t.readdir(a.ino, fh2, 0).unwrap();
    assert_eq!(t.inode_count(), 5);
    t.releasedir(fh2);
    t.releasedir(fh);
    assert_eq!(t.inode_count(), 3, "root, a and the looked-up b");
    assert_eq!(t.getattr(b.ino).await.unwrap().size, 1);

    // statfs: bytes of the listings held; forgetting a directory drops its listing.
    let st = t.statfs();
    assert_eq!(
        st.blocks, 2,
        "b (1 byte) and a/x + a/y (8000 bytes): 8001 bytes in 4 KiB blocks"
    );
    assert_eq!((st.bfree, st.bavail, st.files, st.ffree), (0, 0, 3, 0));
    t.forget(&[(a.ino, 1)]);
    assert_eq!(t.statfs().blocks, 1);
    assert_eq!(t.inode_count(), 2);

    // The root is never forgotten; unknown numbers are ignored.
    t.forget(&[(ROOT_INO, 100), (999_999, 1)]);
    assert_eq!(t.inode_count(), 2);
    assert_eq!(names(&t, ROOT_INO).await, [".", "..", "a", "b"]);
}

#[tokio::test]
async fn an_unreachable_store_gets_cached_metadata_served_then_revalidation_resumes() {
    let s = MemoryStore::new();
    s.put("f", b"12345".to_vec());
    s.put("dir/g", b"g".to_vec());
    s.put("other/h", b"h".to_vec());
    let t = tree(&s, "", Duration::from_millis(200));
    let f = lookup(&t, ROOT_INO, "f").await.unwrap();
    assert_eq!(names(&t, ROOT_INO).await, [".", "..", "dir", "f", "other"]);
    let dir = lookup(&t, ROOT_INO, "dir").await.unwrap();
    assert_eq!(names(&t, dir.ino).await, [".", "..", "g"]);
    let other = lookup(&t, ROOT_INO, "other").await.unwrap();

    // The store goes away (every request a 503) and the TTL passes.
    s.fail_next(u64::MAX);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(t.getattr(f.ino).await.unwrap().size, 5, "stale attributes");
    assert!(t.store_unreachable());
    let (l0, h0) = (lists(&s), heads(&s));
    assert_eq!(names(&t, ROOT_INO).await, [".", "..", "dir", "f", "other"]);
    assert_eq!(names(&t, dir.ino).await, [".", "..", "g"]);
    assert_eq!(lookup(&t, dir.ino, "g").await.unwrap().size, 1);
    assert!(matches!(
        lookup(&t, ROOT_INO, "nope").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(t.getattr(f.ino).await.unwrap().size, 5);
    // Never listed: nothing to serve, and no wait for it either.
    let started = std::time::Instant::now();
    let e = t.opendir(other.ino).await.unwrap_err();
    assert!(matches!(e, FsError::Store(_)), "{e}");
    assert!(e.to_string().contains("unreachable"), "{e}");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(
        (lists(&s), heads(&s)),
        (l0, h0),
        "no request during the outage"
    );

    // Back, with f changed: the probe notices, and the next revalidation sees the change.
    s.put("f", b"1234567".to_vec());
    s.clear_faults();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while t.store_unreachable() {
        assert!(std::time::Instant::now() < deadline, "outage never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.getattr(f.ino).await.unwrap().size, 7);
    assert_eq!(names(&t, other.ino).await, [".", "..", "h"]);
}

#[tokio::test]
async fn a_forgotten_directory_s_fresh_listing_still_answers_lookups() {
    let s = MemoryStore::new();
    s.put("d/a", b"a".to_vec());
    s.put("d/b", b"bb".to_vec());
    let t = tree(&s, "", Duration::from_millis(300));
    assert_eq!(names(&t, ROOT_INO).await, [".", "..", "d"]);
    let d = lookup(&t, ROOT_INO, "d").await.unwrap();
    assert_eq!(names(&t, d.ino).await, [".", "..", "a", "b"]);
    // The kernel forgets the directory (as after `drop_caches`), then looks it up again.
    t.forget(&[(d.ino, 1)]);
    let requests = (lists(&s), heads(&s));
    let d = lookup(&t, ROOT_INO, "d").await.unwrap();
    let b = lookup(&t, d.ino, "b").await.unwrap();
    assert_eq!(b.size, 2);
    assert!(matches!(
        lookup(&t, d.ino, "c").await,
        Err(FsError::NotFound)
    ));
    assert_eq!(
        (lists(&s), heads(&s)),
        requests,
        "the directory's listing, fetched within the TTL, answered every name"
    );
    // Past the TTL the kept listing is not trusted: the lookup asks the store.
    tokio::time::sleep(Duration::from_millis(350)).await;
    s.put("d/c", b"ccc".to_vec());
    assert_eq!(lookup(&t, d.ino, "c").await.unwrap().size, 3);
    assert!(heads(&s) > requests.1);
}

/// LISTs served by `s` once they stop changing (read-ahead runs in the background).
async fn settled_lists(s: &MemoryStore) -> u64 {
    let mut last = lists(s);
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = lists(s);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("LISTs still growing: {last}");
}

#[tokio::test]
async fn a_walk_finds_the_next_directories_read_ahead_and_lists_each_once() {
    let s = MemoryStore::new();
    for d in 0..10 {
        s.put(&format!("d{d}/f"), b"x".to_vec());
        s.put(&format!("d{d}/sub/g"), b"y".to_vec());
    }
    let config = FsConfig {
        metadata_ttl: HOUR,
        dir_read_ahead: 4,
        ..FsConfig::default()
    };
    let t = Tree::new(Arc::new(s.clone()), "", DataPath::Uncached, config);
    assert_eq!(names(&t, ROOT_INO).await.len(), 12);
    // Opening the root read ahead its first 4 subdirectories, nobody having opened them.
    assert_eq!(settled_lists(&s).await, 1 + 4);
    // Opening d0 reads ahead its own subdirectory and the next sibling not yet listed (d4).
    let d0 = lookup(&t, ROOT_INO, "d0").await.unwrap();
    assert_eq!(names(&t, d0.ino).await, [".", "..", "f", "sub"]);
    assert_eq!(settled_lists(&s).await, 5 + 2);
    // A whole walk (as `ls -R` does it): each of the 21 directories listed exactly once.
    for d in 0..10 {
        let dir = lookup(&t, ROOT_INO, &format!("d{d}")).await.unwrap();
        assert_eq!(names(&t, dir.ino).await.len(), 4);
        let sub = lookup(&t, dir.ino, "sub").await.unwrap();
        assert_eq!(names(&t, sub.ino).await, [".", "..", "g"]);
    }
    assert_eq!(settled_lists(&s).await, 21);
    assert_eq!(heads(&s), 0, "every lookup answered from a listing");
}

#[tokio::test]
async fn without_read_ahead_a_directory_costs_its_own_list_only() {
    let s = MemoryStore::new();
    for d in 0..5 {
        s.put(&format!("d{d}/f"), b"x".to_vec());
    }
    let t = tree(&s, "", HOUR); // dir_read_ahead: 0
    assert_eq!(names(&t, ROOT_INO).await.len(), 7);
    assert_eq!(settled_lists(&s).await, 1);
}
