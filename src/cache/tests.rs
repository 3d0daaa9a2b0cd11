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
