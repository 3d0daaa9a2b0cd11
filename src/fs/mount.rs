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
//!
//! The kernel mount itself is done here with mount(2) ([`KernelMount`]), not by fuser,
//! whenever we may (root or CAP_SYS_ADMIN), for two reasons found in fuser 0.18.0:
//! - its direct mount always passes the type `fuse`, ignoring `MountOption::Subtype`
//!   (`mnt/fuse_pure.rs`, `fuse_mount_sys`), so /proc/mounts said `fuse` where `df -T`,
//!   `findmnt -t fuse.ossmount` and `mount -t fuse.ossmount` expect `fuse.ossmount`;
//! - after an external `umount`/`fusermount3 -u` its session teardown unmounts the path
//!   *again*, because its "already unmounted?" poll treats POLLERR (connection gone) as
//!   "mounted" (`mnt/mod.rs`, `is_mounted`; fixed upstream by cberner/fuser#703, after
//!   0.18.0). That logged `WARN Failed to umount filesystem: Invalid argument` on every
//!   external unmount, and, worse, would unmount a *new* mount made at the same path in
//!   the meantime (a remount racing the old daemon's exit).
//!   A [`KernelMount`] unmounts only while its FUSE connection is alive (poll on /dev/fuse
//!   without POLLERR, the check libfuse's `fuse_kern_unmount` makes) *and* the mount on top
//!   of the path has its device number. Mount IDs and device numbers are both recycled
//!   by the kernel at once (a tmpfs mounted right after showed both), but not while our
//!   superblock, which holds the device number, is alive, and a live connection means it is.
//!
//! Without the privilege for mount(2) (EPERM), fuser mounts through `fusermount3`, which
//! does honour the subtype; its unmount then goes through `fusermount3 -u` as well. Such a
//! user mount still needs /dev/fuse open to the user: fuser, like libfuse, tries the
//! direct mount first and gives up if it cannot open the device.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info};

use super::adapter::Adapter;
use super::options;
use super::tree::{DataPath, FsConfig, Tree, DIRECT_IO_BLOCK_SIZE};
use crate::cache::{CacheConfig, CacheError, PartCache};
use crate::cli::{exit, Failure, MountArgs};
use crate::config::{connect, StoreConfig, StoreUrl};
use crate::logging::Sink;
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
    let Some(dev) = top_mount_dev(mountpoint) else {
        return;
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&path, READAHEAD_KB.to_string()) {
        Ok(()) => tracing::debug!(path, kb = READAHEAD_KB, "raised readahead"),
        Err(e) => tracing::debug!(path, "cannot raise readahead: {e}"),
    }
}

/// The file system type in /proc/mounts: `fuse.ossmount`, what fstab's `-t` names.
const FS_TYPE: &str = "fuse.ossmount";

/// `path` as /proc/self/mountinfo writes it (space, tab, newline and backslash in octal).
fn mountinfo_path(path: &Path) -> Option<String> {
    let p = path.to_str()?;
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    Some(out)
}

/// The device ("major:minor") of the mount on top of `path`, from /proc/self/mountinfo,
/// where later lines are mounts stacked over earlier ones.
fn top_mount_dev(path: &Path) -> Option<String> {
    let want = mountinfo_path(path)?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&want.as_str())).then(|| f.get(2).map(|d| d.to_string()))?
    })
}

/// A FUSE mount made with mount(2) by this process (see the module comment for why).
#[derive(Debug)]
pub struct KernelMount {
    mountpoint: PathBuf,
    /// "major:minor" of our superblock, so we never unmount someone else's mount.
    dev: Option<String>,
    /// A duplicate of the /dev/fuse descriptor: it tells whether the connection is alive,
    /// and keeps it alive until we have decided (closing the session's descriptors alone
    /// would abort it).
    fuse: OwnedFd,
}

impl KernelMount {
    /// Open /dev/fuse and mount it read-only, nosuid, nodev at `mountpoint` as
    /// `fuse.ossmount` with source `fsname`. `Ok(None)`: not permitted (EPERM), let
    /// fuser try fusermount3.
    pub fn mount(
        mountpoint: &Path,
        fsname: &str,
        allow_other: bool,
    ) -> std::io::Result<Option<(OwnedFd, KernelMount)>> {
        use std::ffi::CString;
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/fuse")
            .map_err(|e| match e.kind() {
                // fuser (like libfuse) opens /dev/fuse itself before it would fall back to
                // fusermount3, so a user who cannot open it cannot mount at all.
                std::io::ErrorKind::PermissionDenied => std::io::Error::new(
                    e.kind(),
                    format!(
                        "/dev/fuse: {e}; mounting as a user needs /dev/fuse readable and \
                         writable by all (mode 0666, the usual default) and fusermount3"
                    ),
                ),
                _ => std::io::Error::new(e.kind(), format!("/dev/fuse: {e}")),
            })?;
        let rootmode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut data = format!(
            "fd={},rootmode={rootmode:o},user_id={uid},group_id={gid},default_permissions",
            dev.as_raw_fd()
        );
        if allow_other {
            // The kernel knows only allow_other; fuser filters allow_root itself.
            data.push_str(",allow_other");
        }
        let invalid = |_| std::io::Error::from(std::io::ErrorKind::InvalidInput);
        let source = CString::new(fsname).map_err(invalid)?;
        let target = CString::new(mountpoint.as_os_str().as_bytes()).map_err(invalid)?;
        let fstype = CString::new(FS_TYPE).expect("no NUL");
        let data = CString::new(data).expect("no NUL");
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) {
                tracing::debug!("mount(2) not permitted; mounting through fusermount3");
                return Ok(None);
            }
            return Err(e);
        }
        let fuse = OwnedFd::from(dev);
        let kmount = KernelMount {
            mountpoint: mountpoint.to_path_buf(),
            dev: top_mount_dev(mountpoint),
            fuse: fuse.try_clone()?,
        };
        Ok(Some((fuse, kmount)))
    }

    /// Whether the FUSE connection is still up: the kernel reports POLLERR on /dev/fuse
    /// once it is unmounted or aborted.
    fn connected(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.fuse.as_raw_fd(),
            events: 0,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd, zero timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return !(n == 1 && pfd.revents & libc::POLLERR != 0);
        }
    }

    /// Whether our mount is still the one on top of the mountpoint.
    fn still_ours(&self) -> bool {
        self.dev.is_some() && self.connected() && top_mount_dev(&self.mountpoint) == self.dev
    }

    /// Unmount, unless it is gone already (then there is nothing to do, and the path may
    /// have been mounted over by someone else since).
    pub fn unmount(&self) -> std::io::Result<()> {
        if !self.still_ours() {
            tracing::debug!(mountpoint = %self.mountpoint.display(), "already unmounted");
            return Ok(());
        }
        let target = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
            self.mountpoint.as_os_str(),
        ))
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// How this mount is taken down.
enum Unmounter {
    /// Our own mount(2): see [`KernelMount`].
    Kernel(Arc<KernelMount>),
    /// fuser's (fusermount3) mount.
    Fuser(fuser::SessionUnmounter),
}

impl Unmounter {
    fn unmount(&mut self) -> std::io::Result<()> {
        match self {
            Unmounter::Kernel(k) => k.unmount(),
            Unmounter::Fuser(u) => u.unmount(),
        }
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

    if args.foreground {
        let sink = args.log_file.as_deref().map_or(Sink::Stderr, Sink::File);
        let _ = crate::logging::init(debug, sink);
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
            // The verdict travels over the pipe; logs go to --log-file or syslog, so the
            // user sees one line (the store's retry warnings are in the verdict already).
            if args.log_file.is_some() {
                redirect_std(&[0, 1]);
            } else {
                redirect_std(&[0, 1, 2]);
            }
            let sink = args.log_file.as_deref().map_or(Sink::Syslog, Sink::File);
            let _ = crate::logging::init(debug, sink);
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
        let dir = args
            .cache
            .cache_dir
            .clone()
            .unwrap_or_else(default_cache_dir);
        let cache_cfg = CacheConfig {
            min_free_bytes: args
                .cache
                .cache_min_free
                .unwrap_or_else(|| crate::cache::default_min_free(&dir)),
            dir,
            max_bytes: args.cache.cache_size.unwrap_or(defaults.max_bytes),
            part_size: args.cache.part_size.unwrap_or(defaults.part_size),
            jobs: args.cache.jobs.unwrap_or(defaults.jobs),
            ..defaults
        };
        let cache_dir = cache_cfg.dir.clone();
        let _enter = rt.enter();
        Some(
            PartCache::open(cache_cfg, store.clone(), cfg.namespace()).map_err(|e| {
                let msg = match e {
                    // Names the directory already.
                    CacheError::Locked(_) => e.to_string(),
                    e => format!("cache directory {}: {e}", cache_dir.display()),
                };
                Failure::new(exit::LOCAL, msg)
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
        direct_io_above: args
            .direct_io
            .then_some(CacheConfig::default().small_object_threshold),
        block_size: if args.direct_io {
            DIRECT_IO_BLOCK_SIZE
        } else {
            defaults.block_size
        },
        ..defaults
    };
    let tree = Arc::new(Tree::new(
        store.clone(),
        &prefix,
        cache.clone().map_or(DataPath::Uncached, DataPath::Cache),
        fs_cfg,
    ));
    let adapter = Adapter::new(tree, rt.handle().clone(), !args.no_passthrough);
    let notifier = adapter.notifier_slot();

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

    let cannot = |e: std::io::Error| {
        Failure::new(
            exit::LOCAL,
            format!("cannot mount at {}: {e}", args.mountpoint.display()),
        )
    };
    let (session, mut unmounter) = match KernelMount::mount(
        &args.mountpoint,
        &args.url,
        config.acl != fuser::SessionACL::Owner,
    )
    .map_err(cannot)?
    {
        Some((fd, kmount)) => {
            let kmount = Arc::new(kmount);
            // The INIT handshake happens in from_fd; a failure there leaves a dead mount.
            let session = fuser::Session::from_fd(adapter, fd, config.acl, config.clone())
                .inspect_err(|_| {
                    let _ = kmount.unmount();
                })
                .map_err(cannot)?;
            (session, Unmounter::Kernel(kmount))
        }
        None => {
            let mut session =
                fuser::Session::new(adapter, &args.mountpoint, &config).map_err(cannot)?;
            let unmounter = Unmounter::Fuser(session.unmount_callable());
            (session, unmounter)
        }
    };
    // Pages behind a sequential reader are dropped only where the part cache keeps the
    // bytes: under --no-cache the page cache is all there is.
    if cache.is_some() {
        let _ = notifier.set(session.notifier());
    }
    let kernel_mount = match &unmounter {
        Unmounter::Kernel(k) => Some(k.clone()),
        Unmounter::Fuser(_) => None,
    };
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
    // The session ends when the kernel connection goes: after an unmount (ours or an
    // external one), or an error. Only in the last case can our mount still be there.
    if let Some(k) = kernel_mount {
        if let Err(e) = k.unmount() {
            error!(mountpoint = %args.mountpoint.display(), "unmount failed: {e}");
        }
    }
    info!("session ended; flushing the cache");
    if let Some(cache) = &cache {
        cache.shutdown();
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    ran.map_err(|e| Failure::new(exit::GENERIC, format!("FUSE session failed: {e}")))
}
