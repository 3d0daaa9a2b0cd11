//! `ossmount mount`: from the command line to a running, ready mount, or a one-line reason
//! why not.
//!
//! Order of events, chosen so a failure never leaves a half-mounted directory:
//! 1. Parse `-o` options and the URL, check the mountpoint (exists, a directory, empty, not
//!    a dead FUSE mount). No threads, no network yet.
//! 2. Unless `--foreground`: fork. The parent waits on a pipe for the child's one message,
//!    `READY` (exit 0) or the reason it failed (printed, exit non-zero), so `mount` and
//!    fstab see a real exit status. Forking happens before any runtime or thread exists:
//!    a forked child has only the forking thread.
//! 3. The child (or the foreground process) starts the tokio runtime, resolves the store
//!    config, and proves credentials, endpoint and bucket with one ListObjectsV2
//!    (max-keys 1) on the prefix, bounded by [`CHECK_TIMEOUT`].
//! 4. It opens (and locks) the part cache, then mounts. fuser's `Session::new` returns
//!    after the kernel's INIT handshake, so the mount is usable when `READY` is sent.
//! 5. SIGINT/SIGTERM unmount; so do `umount` and `fusermount3 -u`. Either way the session
//!    ends, and the cache's pending checkpoints are flushed before exit.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info};

use super::adapter::Adapter;
use super::options;
use super::tree::{DataPath, FsConfig, Tree};
use crate::cache::{CacheConfig, PartCache};
use crate::cli::{exit, Failure, MountArgs};
use crate::config::{connect, StoreConfig, StoreUrl};
use crate::store::{ListRequest, ObjectStore, StoreError};

/// The up-front check must answer within 15 s: an unreachable endpoint should fail the
/// mount "within seconds", not after the store's full retry budget (about a minute).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the parent waits for the child's verdict: the check, plus opening a cache
/// directory and mounting, with a wide margin.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(exit::USAGE, msg)
}

/// Check the mountpoint: an existing, empty directory that is not already a mount.
pub fn check_mountpoint(path: &Path) -> Result<(), Failure> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(usage(format!(
                "mountpoint {} is a dead FUSE mount (transport endpoint is not connected); \
                 run `fusermount3 -u {}` first",
                path.display(),
                path.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(usage(format!(
                "mountpoint {} does not exist (create it with mkdir)",
                path.display()
            )))
        }
        Err(e) => return Err(usage(format!("mountpoint {}: {e}", path.display()))),
    };
    if !meta.is_dir() {
        return Err(usage(format!(
            "mountpoint {} is not a directory",
            path.display()
        )));
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(|e| usage(format!("mountpoint {}: {e}", path.display())))?;
    if entries.next().is_some() {
        return Err(usage(format!("mountpoint {} is not empty", path.display())));
    }
    Ok(())
}

fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("ossmount");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty() && v != "/") {
        Some(h) => PathBuf::from(h).join(".cache").join("ossmount"),
        // fstab mounts at boot may run without HOME.
        None => PathBuf::from("/var/cache/ossmount"),
    }
}

/// Kernel readahead for the mount: 1 MiB instead of the 128 KiB default, so a program
/// reading sequentially in small chunks (Python, `dd bs=64k`) still makes 1 MiB FUSE
/// requests, the largest the kernel sends by default (max_pages 256). Needs root; without
/// it the default stays, with a debug line.
const READAHEAD_KB: u32 = 1024;

fn raise_readahead(mountpoint: &Path) {
    // The device number comes from mountinfo: a stat of the mountpoint would be a FUSE
    // request, and nothing serves those until the session runs.
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mp) = mountpoint.to_str() else {
        return;
    };
    let Some(dev) = info
        .lines()
        .rev()
        .filter(|l| l.split(' ').nth(4) == Some(mp))
        .find_map(|l| l.split(' ').nth(2))
    else {
        return;
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&path, READAHEAD_KB.to_string()) {
        Ok(()) => tracing::debug!(path, kb = READAHEAD_KB, "raised readahead"),
        Err(e) => tracing::debug!(path, "cannot raise readahead: {e}"),
    }
}

/// `ossmount mount`.
pub fn run(mut args: MountArgs, debug: bool) -> Result<(), Failure> {
    options::apply(&mut args).map_err(usage)?;
    let url = StoreUrl::parse(&args.url).map_err(|e| usage(e.to_string()))?;
    let mountpoint = std::path::absolute(&args.mountpoint)
        .map_err(|e| usage(format!("mountpoint {}: {e}", args.mountpoint.display())))?;
    args.mountpoint = mountpoint;
    check_mountpoint(&args.mountpoint)?;
    // The daemon runs from `/` (so it keeps no directory busy): make paths absolute first.
    for p in [&mut args.cache.cache_dir, &mut args.log_file]
        .into_iter()
        .flatten()
    {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }

    if args.foreground {
        let _ = crate::logging::init(debug, args.log_file.as_deref());
        return serve(args, url, None);
    }

    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds we own from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Failure::new(
            exit::LOCAL,
            format!("pipe: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: both fds were just created by pipe2 and are owned only here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (no runtime, no logging thread), so the child
    // starts in a consistent state.
    match unsafe { libc::fork() } {
        -1 => Err(Failure::new(
            exit::LOCAL,
            format!("fork: {}", std::io::Error::last_os_error()),
        )),
        0 => {
            drop(rd);
            // SAFETY: plain syscalls in the child.
            unsafe {
                libc::setsid();
            }
            let _ = std::env::set_current_dir("/");
            // The verdict travels over the pipe; logs go to --log-file or nowhere, so the
            // user sees one line (the store's retry warnings are in the verdict already).
            if args.log_file.is_some() {
                redirect_std(&[0, 1]);
            } else {
                redirect_std(&[0, 1, 2]);
            }
            let _ = crate::logging::init(debug, args.log_file.as_deref());
            let notify = std::fs::File::from(wr);
            let result = serve(args, url, Some(notify));
            let code = match &result {
                Ok(()) => 0,
                Err(f) => f.exit_code as i32,
            };
            // The verdict went to the parent already (or, after READY, to the log).
            std::process::exit(code);
        }
        child => {
            drop(wr);
            wait_for_child(rd, child)
        }
    }
}

fn redirect_std(fds: &[i32]) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in fds {
            // SAFETY: dup2 onto a standard fd; /dev/null stays open until then.
            unsafe {
                libc::dup2(null.as_raw_fd(), *fd);
            }
        }
    }
}

/// Parent side: read the child's verdict.
fn wait_for_child(rd: OwnedFd, child: libc::pid_t) -> Result<(), Failure> {
    let mut f = std::fs::File::from(rd);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut msg = String::new();
        let _ = f.read_to_string(&mut msg);
        let _ = tx.send(msg);
    });
    let msg = match rx.recv_timeout(READY_TIMEOUT) {
        Ok(m) => m,
        Err(_) => {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(child, libc::SIGTERM);
            }
            return Err(Failure::new(
                exit::GENERIC,
                format!(
                    "the mount did not become ready within {}s",
                    READY_TIMEOUT.as_secs()
                ),
            ));
        }
    };
    if msg.starts_with("READY") {
        return Ok(());
    }
    // Reap the child so its exit status is not lost.
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe {
        libc::waitpid(child, &mut status, 0);
    }
    match msg.split_once(' ') {
        Some((code, text)) if msg.starts_with("ERR") => {
            let (code, text) = text.split_once(' ').unwrap_or((code, text));
            Err(Failure::new(
                code.parse().unwrap_or(exit::GENERIC),
                text.trim_end().to_string(),
            ))
        }
        _ => Err(Failure::new(
            exit::GENERIC,
            "the mount process exited before the mount was ready (see --log-file)",
        )),
    }
}

fn tell(notify: &mut Option<std::fs::File>, msg: &str) {
    if let Some(f) = notify.as_mut() {
        let _ = f.write_all(msg.as_bytes());
    }
    // Close the pipe: the parent sees EOF and exits.
    *notify = None;
}

/// Everything after the fork: on failure, the verdict goes to the parent.
fn serve(args: MountArgs, url: StoreUrl, mut notify: Option<std::fs::File>) -> Result<(), Failure> {
    let ready_sent = std::cell::Cell::new(false);
    let result = serve_inner(args, url, &mut || {
        ready_sent.set(true);
        tell(&mut notify, "READY\n");
    });
    if let Err(f) = &result {
        if ready_sent.get() {
            error!("{}", f.message);
        } else {
            tell(&mut notify, &format!("ERR {} {}\n", f.exit_code, f.message));
        }
    }
    result
}

/// A one-line reason for a failed up-front check.
fn describe_check_failure(store: &dyn ObjectStore, bucket: &str, e: &StoreError) -> String {
    let what = match e {
        StoreError::NoSuchBucket(_) => format!("bucket {bucket:?} does not exist"),
        StoreError::InvalidAccessKeyId(_) => "the access key id is not known to the store (check OSS_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID)".to_string(),
        StoreError::SignatureDoesNotMatch(_) => "the signature does not match (check the access key secret and --region)".to_string(),
        StoreError::AccessDenied(_) => "access denied (check the credentials and the bucket policy)".to_string(),
        StoreError::Network(_) | StoreError::Timeout(_) => "cannot reach the endpoint (check --endpoint and the network)".to_string(),
        _ => "the store refused the listing".to_string(),
    };
    format!("cannot mount {}: {what}: {e}", store.describe())
}

fn serve_inner(args: MountArgs, url: StoreUrl, ready: &mut dyn FnMut()) -> Result<(), Failure> {
    let env = |k: &str| std::env::var(k).ok();
    let cfg = StoreConfig::resolve(&url, &args.store, &env).map_err(|e| usage(e.to_string()))?;
    let store = connect(&cfg).map_err(|e| usage(e.to_string()))?;

    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("ossmount-io")
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::LOCAL, format!("cannot start runtime: {e}")))?;

    // Prove endpoint, credentials and bucket with the cheapest request there is.
    let mut prefix = url.path.clone();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let check = ListRequest {
        prefix: prefix.clone(),
        delimiter: Some("/".to_string()),
        continuation_token: None,
        max_keys: 1,
    };
    let checked =
        rt.block_on(async { tokio::time::timeout(CHECK_TIMEOUT, store.list(&check)).await });
    match checked {
        Err(_) => {
            return Err(Failure::new(
                exit::STORE,
                format!(
                    "cannot mount {}: no answer within {}s (check --endpoint and the network)",
                    store.describe(),
                    CHECK_TIMEOUT.as_secs()
                ),
            ))
        }
        Ok(Err(e)) => {
            return Err(Failure::new(
                exit::STORE,
                describe_check_failure(store.as_ref(), &url.bucket, &e),
            ))
        }
        Ok(Ok(_)) => {}
    }

    let cache = if args.no_cache {
        None
    } else {
        let defaults = CacheConfig::default();
        let cache_cfg = CacheConfig {
            dir: args
                .cache
                .cache_dir
                .clone()
                .unwrap_or_else(default_cache_dir),
            max_bytes: args.cache.cache_size.unwrap_or(defaults.max_bytes),
            part_size: args.cache.part_size.unwrap_or(defaults.part_size),
            jobs: args.cache.jobs.unwrap_or(defaults.jobs),
            ..defaults
        };
        let cache_dir = cache_cfg.dir.clone();
        let _enter = rt.enter();
        Some(
            PartCache::open(cache_cfg, store.clone(), cfg.namespace()).map_err(|e| {
                Failure::new(
                    exit::LOCAL,
                    format!("cache directory {}: {e}", cache_dir.display()),
                )
            })?,
        )
    };

    let defaults = FsConfig::default();
    let fs_cfg = FsConfig {
        uid: args.uid.unwrap_or(defaults.uid),
        gid: args.gid.unwrap_or(defaults.gid),
        file_mode: args.file_mode,
        dir_mode: args.dir_mode,
        metadata_ttl: args.metadata_ttl,
        ..defaults
    };
    let tree = Arc::new(Tree::new(
        store.clone(),
        &prefix,
        cache.clone().map_or(DataPath::Direct, DataPath::Cache),
        fs_cfg,
    ));
    let adapter = Adapter::new(tree, rt.handle().clone(), !args.no_passthrough);

    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(args.url.clone()),
        fuser::MountOption::Subtype("ossmount".to_string()),
        fuser::MountOption::RO,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::DefaultPermissions,
    ];
    config.acl = if args.allow_other {
        fuser::SessionACL::All
    } else if args.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    config.n_threads = Some(args.fuse_threads.max(1));
    config.clone_fd = true;

    let mut session = fuser::Session::new(adapter, &args.mountpoint, &config).map_err(|e| {
        Failure::new(
            exit::LOCAL,
            format!("cannot mount at {}: {e}", args.mountpoint.display()),
        )
    })?;
    let mut unmounter = session.unmount_callable();
    raise_readahead(&args.mountpoint);
    info!(url = args.url, mountpoint = %args.mountpoint.display(), "mounted");

    let mountpoint = args.mountpoint.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = int.recv() => info!("SIGINT: unmounting"),
            _ = term.recv() => info!("SIGTERM: unmounting"),
        }
        if let Err(e) = unmounter.unmount() {
            error!(mountpoint = %mountpoint.display(), "unmount failed: {e}");
        }
    });

    ready();
    if !args.foreground {
        redirect_std(&[2]);
    }
    let ran = session.run();
    info!("session ended; flushing the cache");
    if let Some(cache) = &cache {
        cache.flush();
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    ran.map_err(|e| Failure::new(exit::GENERIC, format!("FUSE session failed: {e}")))
}
