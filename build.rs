//! Build script: records the git commit the binary is built from for `ossmount --version`
//! (logic and fallbacks in build/version.rs).

#[path = "build/version.rs"]
mod version;

fn main() {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let env = std::env::var("OSSMOUNT_GIT_COMMIT").ok();
    let source = version::detect(&dir, env.as_deref());
    println!(
        "cargo:rustc-env=OSSMOUNT_LONG_VERSION={} ({})",
        std::env::var("CARGO_PKG_VERSION").unwrap(),
        source.describe()
    );
    println!("cargo:rerun-if-env-changed=OSSMOUNT_GIT_COMMIT");
    println!("cargo:rerun-if-changed=.git_archival.txt");
    for p in version::SOURCES {
        println!("cargo:rerun-if-changed={p}");
    }
    // A missing path would make cargo rerun the script (and rebuild the package) every time.
    for p in version::watch_paths(&dir)
        .into_iter()
        .filter(|p| p.exists())
    {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}
