//! `ossmount mount`: from the command line to a running, ready mount, or a one-line reason
//! why not.
//!
//! Order of events, chosen so a failure never leaves a half-mounted directory:
//! 1. Parse `-o` options ([`fstab`]) and the URL, check the mountpoint (exists, a
//!    directory, empty, not a dead FUSE mount). No threads, no network yet.
//! 2. Unless `--foreground`: fork. The parent waits on a pipe for the child's one message,
//!    `READY` (exit 0) or the reason it failed (printed, exit non-zero), so `mount` and
//!    fstab see a real exit status. Forking happens before any runtime or thread exists:
//!    a forked child has only the forking thread.
//! 3. The child (or the foreground process) starts the tokio runtime, resolves the store
//!    config, and proves credentials, endpoint and bucket with one ListObjectsV2
//!    (max-keys 1) on the prefix, bounded by [`CHECK_TIMEOUT`].
//! 4. It opens (and locks) the part cache, then mounts ([`crate::fs::mount`]). fuser's
//!    `Session::new` returns after the kernel's INIT handshake, so the mount is usable when
//!    `READY` is sent.
//! 5. SIGINT/SIGTERM unmount; so do `umount` and `fusermount3 -u`. Either way the session
//!    ends, and the cache's pending checkpoints are flushed before exit.

mod control;
mod fstab;
mod gauges;
mod warm;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info};

use crate::cache::{CacheConfig, CacheError};
use crate::cli::{exit, Failure, MountArgs};
use crate::config::{self, StoreUrl};
use crate::fetch::Fetcher;
use crate::fs::adapter::Adapter;
use crate::fs::mount::Unmounter;
use crate::fs::tree::{DataPath, FsConfig, Tree, DIRECT_IO_BLOCK_SIZE};
use crate::logging::Sink;
use crate::store::config::StoreConfig;
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

/// `ossmount mount`.
pub fn run(mut args: MountArgs, debug: bool) -> Result<(), Failure> {
    let url = prepare(&mut args)?;
    if args.foreground {
        let sink = args.log_file.as_deref().map_or(Sink::Stderr, Sink::File);
        let _ = crate::logging::init(debug, sink);
        return serve(args, url, None);
    }
    detach(args, url, debug)
}

/// Step 1: fold the `-o` options in, parse the URL, check the mountpoint, and make every
/// path absolute.
fn prepare(args: &mut MountArgs) -> Result<StoreUrl, Failure> {
    fstab::apply(args).map_err(usage)?;
    if args.cache.memory_limit < args.cache.part_size {
        return Err(usage(format!(
            "--memory-limit {} is smaller than one part (--part-size {}): give at least that",
            crate::units::format_size(args.cache.memory_limit),
            crate::units::format_size(args.cache.part_size)
        )));
    }
    let url = StoreUrl::parse(&args.url).map_err(|e| usage(e.to_string()))?;
    let mountpoint = std::path::absolute(&args.mountpoint)
        .map_err(|e| usage(format!("mountpoint {}: {e}", args.mountpoint.display())))?;
    args.mountpoint = mountpoint;
    check_mountpoint(&args.mountpoint)?;
    // mount(2) resolves symlinks and /proc/self/mountinfo shows the resolved path, which is
    // how the mount is found again (readahead, unmount).
    if let Ok(real) = args.mountpoint.canonicalize() {
        args.mountpoint = real;
    }
    // The daemon runs from `/` (so it keeps no directory busy): make paths absolute first.
    for p in [&mut args.cache.cache_dir, &mut args.log_file]
        .into_iter()
        .flatten()
    {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    Ok(url)
}

/// Check the mountpoint: an existing, empty directory that is not already a mount.
fn check_mountpoint(path: &Path) -> Result<(), Failure> {
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

/// Step 2: fork. The parent returns the child's verdict; the child serves the mount and
/// never returns.
fn detach(args: MountArgs, url: StoreUrl, debug: bool) -> Result<(), Failure> {
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
            run_child(args, url, debug, wr)
        }
        child => {
            drop(wr);
            wait_for_child(rd, child)
        }
    }
}

/// The forked child: a session of its own, `/` as its directory, logs to `--log-file` or
/// syslog, and the verdict to the parent over `notify`.
fn run_child(args: MountArgs, url: StoreUrl, debug: bool, notify: OwnedFd) -> ! {
    // SAFETY: plain syscalls in the child.
    unsafe {
        libc::setsid();
    }
    let _ = std::env::set_current_dir("/");
    // The verdict travels over the pipe; logs go to --log-file or syslog, so the
    // user sees one line (the store's retry warnings are in the verdict already).
    if args.log_file.is_some() {
        redirect_std(&[0, 1]);
    } else {
        redirect_std(&[0, 1, 2]);
    }
    let sink = args.log_file.as_deref().map_or(Sink::Syslog, Sink::File);
    let _ = crate::logging::init(debug, sink);
    let result = serve(args, url, Some(std::fs::File::from(notify)));
    let code = match &result {
        Ok(()) => 0,
        Err(f) => f.exit_code as i32,
    };
    // The verdict went to the parent already (or, after READY, to the log).
    std::process::exit(code);
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

/// Steps 3 to 5: store, check, cache, mount; `ready` once the mount is usable; then serve
/// until it is unmounted.
fn serve_inner(args: MountArgs, url: StoreUrl, ready: &mut dyn FnMut()) -> Result<(), Failure> {
    let (cfg, store) = connect(&args, &url)?;
    if matches!(cfg.auth, crate::store::config::Auth::Anonymous) {
        crate::metrics::set_credentials("anonymous (--no-sign-request)".into(), None);
    }
    let rt = runtime()?;
    let prefix = dir_prefix(&url.path);
    check_bucket(&rt, store.as_ref(), &url.bucket, &prefix)?;
    let cache = if args.no_cache {
        None
    } else {
        Some(open_cache(&args, &rt, store.clone(), cfg.namespace())?)
    };
    let tree = Tree::new(
        store.clone(),
        &prefix,
        cache.clone().map_or(DataPath::Uncached, DataPath::Cache),
        fs_config(&args),
    );
    gauges::register(&args.url, &args.mountpoint, &tree, cache.as_ref());
    let metrics_at = match args.metrics_addr {
        Some(addr) => Some(
            gauges::listen(&rt, addr)
                .map_err(|e| Failure::new(exit::LOCAL, format!("--metrics-addr {addr}: {e}")))?,
        ),
        None => None,
    };
    let control = Arc::new(control::Mount::new(
        args.url.clone(),
        args.mountpoint.clone(),
        cache.clone(),
        tree.clone(),
        store.clone(),
        prefix.clone(),
        cfg.namespace(),
        metrics_at,
    ));
    let adapter = Adapter::new(tree, rt.handle().clone(), !args.no_passthrough);
    let notifier = adapter.notifier_slot();
    let (mounted, unmounter) = crate::fs::mount::mount(
        adapter,
        &args.mountpoint,
        &args.url,
        session_acl(&args),
        args.fuse_threads.max(1),
    )
    .map_err(|e| {
        Failure::new(
            exit::LOCAL,
            format!("cannot mount at {}: {e}", args.mountpoint.display()),
        )
    })?;
    // Pages behind a sequential reader are dropped only where the part cache keeps the
    // bytes: under --no-cache the page cache is all there is.
    if cache.is_some() {
        let _ = notifier.set(mounted.notifier());
    }
    info!(url = args.url, mountpoint = %args.mountpoint.display(), "mounted");
    // `ossmount status` and `warm` find the mount here; without it the mount still works.
    let socket = control::listen(&rt, control)
        .inspect_err(|e| tracing::warn!("no control socket (status, warm): {e}"))
        .ok();
    unmount_on_signal(&rt, unmounter, &args.mountpoint);

    ready();
    if !args.foreground {
        redirect_std(&[2]);
    }
    let ran = mounted.run();
    // Unlisted first: a `status` from now on does not find a mount that is going away.
    drop(socket);
    info!("session ended; flushing the cache");
    if let Some(cache) = &cache {
        cache.shutdown();
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    ran.map_err(|e| Failure::new(exit::GENERIC, format!("FUSE session failed: {e}")))
}

/// The store from `--endpoint`, `--region` and the environment (read after the fork, so
/// the warnings land in the mount's log).
fn connect(
    args: &MountArgs,
    url: &StoreUrl,
) -> Result<(StoreConfig, Arc<dyn ObjectStore>), Failure> {
    let sys = Arc::new(crate::store::credentials::RealSystem);
    let cfg = config::resolve(url, &args.store, sys).map_err(|e| usage(e.to_string()))?;
    let store = config::connect_args(&cfg, &args.store).map_err(|e| usage(e.to_string()))?;
    Ok((cfg, store))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("ossmount-io")
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::LOCAL, format!("cannot start runtime: {e}")))
}

/// The URL's path as the prefix of a directory: empty (the bucket), or ending with `/`.
fn dir_prefix(path: &str) -> String {
    let mut prefix = path.to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    prefix
}

/// Prove endpoint, credentials and bucket with the cheapest request there is.
fn check_bucket(
    rt: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
) -> Result<(), Failure> {
    let check = ListRequest {
        prefix: prefix.to_string(),
        delimiter: Some("/".to_string()),
        continuation_token: None,
        max_keys: 1,
    };
    let checked =
        rt.block_on(async { tokio::time::timeout(CHECK_TIMEOUT, store.list(&check)).await });
    match checked {
        Err(_) => Err(Failure::new(
            exit::STORE,
            format!(
                "cannot mount {}: no answer within {}s (check --endpoint and the network)",
                store.describe(),
                CHECK_TIMEOUT.as_secs()
            ),
        )),
        Ok(Err(e)) => Err(Failure::new(
            exit::STORE,
            describe_check_failure(store, bucket, &e),
        )),
        Ok(Ok(_)) => Ok(()),
    }
}

/// A one-line reason for a failed up-front check.
fn describe_check_failure(store: &dyn ObjectStore, bucket: &str, e: &StoreError) -> String {
    let what = match e {
        StoreError::NoSuchBucket(_) => format!("bucket {bucket:?} does not exist"),
        StoreError::InvalidAccessKeyId(_) => "the access key id is not known to the store (check OSS_ACCESS_KEY_ID / AWS_ACCESS_KEY_ID)".to_string(),
        StoreError::SignatureDoesNotMatch(_) => "the signature does not match (check the access key secret and --region)".to_string(),
        StoreError::AccessDenied(_) => "access denied (check the credentials and the bucket policy)".to_string(),
        StoreError::Network(_) | StoreError::Timeout(_) => "cannot reach the endpoint (check --endpoint and the network)".to_string(),
        StoreError::Tls(_) => "the endpoint's TLS certificate is not trusted (give its CA with --ca-bundle, or check the endpoint's name)".to_string(),
        _ => "the store refused the listing".to_string(),
    };
    format!("cannot mount {}: {what}: {e}", store.describe())
}

/// The part cache of `--cache-dir` (opened and locked), with the command line's settings.
fn open_cache(
    args: &MountArgs,
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    namespace: String,
) -> Result<Arc<Fetcher>, Failure> {
    let dir = args
        .cache
        .cache_dir
        .clone()
        .unwrap_or_else(crate::cache::default_dir);
    let cache_cfg = CacheConfig {
        min_free_bytes: args
            .cache
            .cache_min_free
            .unwrap_or_else(|| crate::cache::default_min_free(&dir)),
        dir,
        max_bytes: args.cache.cache_size,
        part_size: args.cache.part_size,
        jobs: args.cache.jobs,
        batch_bytes: args.cache.checkpoint_batch,
        memory_limit: args.cache.memory_limit,
        ..CacheConfig::default()
    };
    let cache_dir = cache_cfg.dir.clone();
    let _enter = rt.enter();
    Fetcher::open(cache_cfg, store, namespace).map_err(|e| {
        let msg = match e {
            // Names the directory already.
            CacheError::Locked(_) => e.to_string(),
            e => format!("cache directory {}: {e}", cache_dir.display()),
        };
        Failure::new(exit::LOCAL, msg)
    })
}

/// The filesystem's settings: ownership, modes and TTL from the command line, the rest
/// from [`FsConfig::default`].
fn fs_config(args: &MountArgs) -> FsConfig {
    let defaults = FsConfig::default();
    FsConfig {
        uid: args.uid.unwrap_or(defaults.uid),
        gid: args.gid.unwrap_or(defaults.gid),
        file_mode: args.file_mode,
        dir_mode: args.dir_mode,
        metadata_ttl: args.metadata_ttl,
        follow_symlinks: args.follow_symlinks,
        request_deadline: args.request_deadline,
        dir_read_ahead: args.dir_read_ahead,
        direct_io_above: args
            .direct_io
            .then_some(CacheConfig::default().small_object_threshold),
        block_size: if args.direct_io {
            DIRECT_IO_BLOCK_SIZE
        } else {
            defaults.block_size
        },
        ..defaults
    }
}

/// Who may use the mount besides its owner: `--allow-other`, `--allow-root`.
fn session_acl(args: &MountArgs) -> fuser::SessionACL {
    if args.allow_other {
        fuser::SessionACL::All
    } else if args.allow_root {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    }
}

/// Step 5: SIGINT or SIGTERM unmounts, which ends the session.
fn unmount_on_signal(rt: &tokio::runtime::Runtime, mut unmounter: Unmounter, mountpoint: &Path) {
    let mountpoint = mountpoint.to_path_buf();
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
}
