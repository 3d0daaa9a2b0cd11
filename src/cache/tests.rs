//! The cache directory on its own: locking, settings, the default location. How entries
//! are filled, kept, evicted and recovered is tested through the fetcher that fills them,
//! in `fetch/tests.rs`.

use super::*;

const PS: u64 = 128 << 10;
const NS: &str = "mem://bucket";

fn cfg(dir: &Path) -> CacheConfig {
    CacheConfig {
        dir: dir.to_path_buf(),
        min_free_bytes: 0,
        part_size: PS,
        ..CacheConfig::default()
    }
}

#[test]
fn a_second_open_of_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _c = PartCache::open(cfg(dir.path()), NS.into()).unwrap();
    match PartCache::open(cfg(dir.path()), NS.into()) {
        Err(e @ CacheError::Locked(_)) => {
            assert!(e.to_string().contains("in use by another ossmount process"))
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened twice"),
    }
}

#[test]
fn part_size_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [0, 1000, (5 << 30) + 1] {
        let mut c = cfg(dir.path());
        c.part_size = bad;
        assert!(matches!(
            PartCache::open(c, NS.into()),
            Err(CacheError::Config(_))
        ));
    }
}

#[test]
fn the_default_directory_follows_xdg_then_home_then_var_cache() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    };
    let dir = |vars| default_dir_in(env(vars));
    assert_eq!(
        dir(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/home/u")]),
        Path::new("/x/ossmount")
    );
    assert_eq!(
        dir(&[("XDG_CACHE_HOME", ""), ("HOME", "/home/u")]),
        Path::new("/home/u/.cache/ossmount")
    );
    for no_home in [&[][..], &[("HOME", "")], &[("HOME", "/")]] {
        assert_eq!(
            dir(no_home),
            Path::new("/var/cache/ossmount"),
            "{no_home:?}"
        );
    }
}

#[test]
fn cached_bytes_reads_what_the_checkpoints_say_without_opening_the_entry() {
    use crate::store::memory::MemoryStore;
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(3 * PS + 1000) as u32)
        .map(|i| (i % 253) as u8)
        .collect();
    let meta = MemoryStore::new().put("k", data.clone());
    let id = Identity::of(NS, &meta);
    let cache = PartCache::open(cfg(dir.path()), NS.into()).unwrap();
    assert_eq!(admin::cached_bytes(dir.path(), &id), 0, "absent");
    let e = cache.open_entry(&meta).unwrap();
    // Parts 1 and 3 (the short last one) written and recorded.
    for i in [1usize, 3] {
        let r = e.part_range(i);
        let bytes = &data[r.start as usize..r.end as usize];
        e.write_part(r.start, bytes).unwrap();
        e.complete_part(i, crate::crc64::checksum(bytes));
    }
    e.flush().unwrap();
    assert_eq!(admin::cached_bytes(dir.path(), &id), PS + 1000);
    // Another version of the key holds nothing of this one.
    let mut other = id.clone();
    other.etag = "\"other\"".into();
    assert_eq!(admin::cached_bytes(dir.path(), &other), 0);
    for i in [0usize, 2] {
        let r = e.part_range(i);
        let bytes = &data[r.start as usize..r.end as usize];
        e.write_part(r.start, bytes).unwrap();
        e.complete_part(i, crate::crc64::checksum(bytes));
    }
    cache.finalize_entry(&e);
    assert!(e.is_finalized());
    assert_eq!(admin::cached_bytes(dir.path(), &id), meta.size);
}

#[test]
fn evictions_and_finalizations_are_counted() {
    use crate::metrics::METRICS;
    use crate::store::memory::MemoryStore;
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::new();
    let a = store.put("a", vec![1u8; PS as usize]);
    let b = store.put("b", vec![2u8; PS as usize]);
    let cache = PartCache::open(
        CacheConfig {
            max_bytes: PS + PS / 2,
            ..cfg(dir.path())
        },
        NS.into(),
    )
    .unwrap();
    let (evicted, finalized) = (METRICS.evictions.get(), METRICS.finalizations.get());
    let ea = cache.open_entry(&a).unwrap();
    assert!(cache.reserve(&ea, PS));
    let bytes = vec![1u8; PS as usize];
    ea.write_part(0, &bytes).unwrap();
    ea.complete_part(0, crate::crc64::checksum(&bytes));
    cache.finalize_entry(&ea);
    assert!(ea.is_finalized());
    drop(ea);
    // `b` needs the room `a` holds, and nobody uses `a`.
    let eb = cache.open_entry(&b).unwrap();
    assert!(cache.reserve(&eb, PS));
    // Other tests share the process's counters: at least ours.
    assert!(METRICS.evictions.get() > evicted);
    assert!(METRICS.finalizations.get() > finalized);
}

#[test]
fn one_writer_at_a_time_is_told_a_flush_is_due() {
    use crate::store::memory::MemoryStore;
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(4 * PS) as u32).map(|i| (i % 251) as u8).collect();
    let meta = MemoryStore::new().put("k", data.clone());
    // A batch of one part: every part written makes a flush due.
    let cache = PartCache::open(
        CacheConfig {
            batch_bytes: PS,
            ..cfg(dir.path())
        },
        NS.into(),
    )
    .unwrap();
    let e = cache.open_entry(&meta).unwrap();
    let complete = |i: usize| {
        let r = e.part_range(i);
        let bytes = &data[r.start as usize..r.end as usize];
        e.write_part(r.start, bytes).unwrap();
        e.complete_part(i, crate::crc64::checksum(bytes)).0
    };
    // Writers finishing while the first one told has not flushed yet are not told again
    // (each would flush on its own, one after another).
    assert_eq!(
        [complete(0), complete(1), complete(2)],
        [true, false, false]
    );
    e.flush().unwrap();
    assert!(complete(3), "after the flush the next batch is due again");
}
