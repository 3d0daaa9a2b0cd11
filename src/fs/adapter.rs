//! The thin `fuser::Filesystem` adapter: arguments in, reply out, errno mapping in one place.
//!
//! Every operation that can touch the network is handed to the tokio runtime and replied
//! to from there (fuser replies are `Send`), so a FUSE thread never waits on a socket while
//! other requests queue behind it; several FUSE threads (see `mount.rs`) read requests from
//! the kernel in parallel on top of that. Purely local operations (statfs, release,
//! readdir from a snapshot, the read-only refusals) are answered inline.
//!
//! The only logic here is what the core must not know about because it is FUSE itself:
//! the kernel configuration at INIT (large requests, readdirplus, passthrough) and
//! passthrough bookkeeping (the kernel's rules for it: `passthrough.rs`).

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, Notifier, OpenAccMode, OpenFlags, PollEvents, PollFlags,
    PollNotifier, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use super::drop_behind::DropBehind;
use super::error::FsError;
use super::passthrough::{has_cap_sys_admin, open_flags, Passthrough, PassthroughMode};
use super::tree::{Attr, Kind, Read, Tree};
use super::warm_ahead::Warmer;

/// FUSE `max_background`: 64 outstanding async requests (reads, readahead) instead of the
/// kernel's default 12, so a sequential reader keeps the cache's parallel fetches busy.
/// Mountpoint uses the same value.
const MAX_BACKGROUND: u16 = 64;

/// The one mapping from core errors to errno. Errors a user must act on (access denied,
/// archived, changed object, store failures) are logged with the reason, because the errno
/// alone cannot carry it.
pub fn to_errno(e: &FsError, op: &str) -> Errno {
    match e {
        FsError::NotFound => Errno::ENOENT,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::ReadOnly => Errno::EROFS,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::NotImplemented => Errno::ENOSYS,
        FsError::NoIoctl => Errno::ENOTTY,
        FsError::BadHandle(_) => {
            warn!(op, "{e}");
            Errno::EBADF
        }
        FsError::AccessDenied(_) | FsError::Archived(_) => {
            warn!(op, "permission denied: {e}");
            Errno::EACCES
        }
        FsError::Stale => {
            warn!(op, "stale file handle: {e}");
            Errno::ESTALE
        }
        FsError::Store(_) | FsError::Cache(_) | FsError::Io(_) => {
            warn!(op, "I/O error: {e}");
            Errno::EIO
        }
    }
}

/// `fuser::Filesystem` methods that only refuse, one line each: `op(argument types) ->
/// reply type`, the arguments after `&self, _req` and before `reply`. The errno comes from
/// [`to_errno`] for [`FsError`]`::$err`, as for every other error, with the operation's
/// name for its log line.
macro_rules! refuse {
    ($err:ident: $($op:ident($($arg:ty),* $(,)?) -> $reply:ty;)+) => {
        $(
            fn $op(&self, _req: &Request, $(_: $arg,)* reply: $reply) {
                reply.error(to_errno(&FsError::$err, stringify!($op)));
            }
        )+
    };
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: a.blksize,
        flags: 0,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

pub struct Adapter {
    core: Arc<Tree>,
    rt: tokio::runtime::Handle,
    /// Whether to try FUSE passthrough (`--no-passthrough` turns it off).
    want_passthrough: bool,
    /// Passthrough was negotiated at INIT and has not failed yet.
    passthrough_ok: Arc<AtomicBool>,
    /// The kernel lets direct I/O files be mmap'd (FUSE_DIRECT_IO_ALLOW_MMAP, negotiated at
    /// INIT): only then are opens the core marks `direct_io` given FOPEN_DIRECT_IO.
    direct_io_ok: bool,
    io: Arc<Mutex<Passthrough>>,
    /// Page-cache handles whose pages are dropped behind a sequential reader.
    drop_behind: Arc<DropBehind>,
    /// Reads finalized files ahead of their readers.
    warmer: Arc<Warmer>,
    /// Where the mount puts the session's notifier once the session exists.
    notifier: Arc<OnceLock<Notifier>>,
}

impl Adapter {
    pub fn new(core: Arc<Tree>, rt: tokio::runtime::Handle, want_passthrough: bool) -> Self {
        let notifier = Arc::new(OnceLock::new());
        Self {
            core,
            rt,
            want_passthrough,
            passthrough_ok: Arc::new(AtomicBool::new(false)),
            direct_io_ok: false,
            io: Arc::new(Mutex::new(Passthrough::default())),
            drop_behind: Arc::new(DropBehind::new(notifier.clone())),
            warmer: Arc::new(Warmer::new()),
            notifier,
        }
    }

    /// Set this to the session's notifier once the session exists: dropping pages behind
    /// sequential readers starts then.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }
}

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let caps = config.capabilities();
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            if caps.contains(flag) {
                let _ = config.add_capabilities(flag);
            }
        }
        // Direct I/O files can be mmap'd shared only with this flag (kernel 6.6 on); without
        // it such an mmap fails with ENODEV, so every file then uses the page cache.
        self.direct_io_ok = caps.contains(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            && config
                .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
                .is_ok();
        match (
            self.core.config().direct_io_above.is_some(),
            self.direct_io_ok,
        ) {
            (true, true) => info!("direct I/O for large objects not yet cached"),
            (true, false) => {
                warn!("--direct-io: this kernel cannot mmap direct I/O files; using the page cache")
            }
            (false, _) => {}
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        // Readahead as large as the kernel lets us (it caps this at the bdi's readahead).
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        if self.want_passthrough && !has_cap_sys_admin() {
            // The kernel registers backing files only for CAP_SYS_ADMIN
            // (FUSE_DEV_IOC_BACKING_OPEN); a user mount would fail its first passthrough open.
            info!("FUSE passthrough needs CAP_SYS_ADMIN (a mount by root); using ordinary reads");
        } else if self.want_passthrough && caps.contains(InitFlags::FUSE_PASSTHROUGH) {
            // Depth 2 lets the backing files live on a stacked filesystem (overlayfs).
            match config
                .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
                .map_err(|_| ())
                .and_then(|_| config.set_max_stack_depth(2).map_err(|_| ()))
            {
                Ok(_) => {
                    self.passthrough_ok.store(true, Ordering::Relaxed);
                    info!("FUSE passthrough enabled for finalized objects");
                }
                Err(()) => info!("FUSE passthrough not available; using ordinary reads"),
            }
        } else if self.want_passthrough {
            info!("kernel has no FUSE passthrough; using ordinary reads");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let core = self.core.clone();
        let name = name.to_owned();
        self.rt.spawn(async move {
            match core.lookup(parent.0, &name).await {
                Ok(a) => reply.entry(&core.ttl(), &file_attr(&a), Generation(0)),
                Err(e) => reply.error(to_errno(&e, "lookup")),
            }
        });
    }

    /// `batch_forget` keeps fuser's default, one `forget` per inode: fuser 0.18.0 does not
    /// export `ForgetOne`, the type its `batch_forget` takes, so it cannot be overridden.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(&[(ino.0, nlookup)]);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let core = self.core.clone();
        self.rt.spawn(async move {
            match core.getattr(ino.0).await {
                Ok(a) => reply.attr(&core.ttl(), &file_attr(&a)),
                Err(e) => reply.error(to_errno(&e, "getattr")),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let core = self.core.clone();
        self.rt.spawn(async move {
            match core.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(to_errno(&e, "opendir")),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self
            .core
            .readdir_with(ino.0, fh.0, offset, false, &mut |e| {
                reply.add(
                    INodeNo(e.attr.ino),
                    e.offset,
                    file_type(e.attr.kind),
                    &e.name,
                )
            });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(to_errno(&e, "readdir")),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let ttl = self.core.ttl();
        let result = self.core.readdir_with(ino.0, fh.0, offset, true, &mut |e| {
            let attr = file_attr(&e.attr);
            reply.add(attr.ino, e.offset, &e.name, &ttl, &attr, Generation(0))
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(to_errno(&e, "readdirplus")),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY
            || flags.0 & (libc::O_TRUNC | libc::O_APPEND) != 0;
        let core = self.core.clone();
        let io = self.io.clone();
        let pt_ok = self.passthrough_ok.clone();
        let direct_io_ok = self.direct_io_ok;
        let drop_behind = self.drop_behind.clone();
        let warmer = self.warmer.clone();
        self.rt.spawn(async move {
            let mut opened = match core.open(ino.0, write).await {
                Ok(o) => o,
                Err(e) => return reply.error(to_errno(&e, "open")),
            };
            let mut io = io.lock();
            let mode = io.by_ino.entry(ino.0).or_default();
            // The inode is already in passthrough mode: every open must join it, with the same
            // backing file. That is only right if this open is of the same finalized version.
            if let Some(pt) = &mut mode.passthrough {
                if opened.finalized.is_some() && opened.keep_cache {
                    pt.handles += 1;
                    let backing = pt.backing.clone();
                    io.by_fh.insert(opened.fh, (ino.0, true));
                    drop(io);
                    return reply.opened_passthrough(FileHandle(opened.fh), open_flags(true, opened.keep_cache), &backing);
                }
                // A new version while old passthrough handles are open: the kernel cannot
                // mix modes on one inode, and serving the old file would be wrong.
                drop(io);
                core.release(opened.fh);
                warn!(ino = ino.0, "object changed while passthrough handles of the old version are open; close them first");
                return reply.error(Errno::ESTALE);
            }
            if let Some(file) = opened.finalized.take() {
                if pt_ok.load(Ordering::Relaxed) && mode.cached_opens == 0 {
                    match reply.open_backing(&file) {
                        Ok(id) => {
                            let id = Arc::new(id);
                            mode.passthrough = Some(PassthroughMode {
                                backing: id.clone(),
                                handles: 1,
                                _warm: warmer.start(file),
                            });
                            io.by_fh.insert(opened.fh, (ino.0, true));
                            drop(io);
                            debug!(ino = ino.0, "open with passthrough");
                            return reply.opened_passthrough(FileHandle(opened.fh), open_flags(true, opened.keep_cache), &id);
                        }
                        Err(e) => {
                            pt_ok.store(false, Ordering::Relaxed);
                            warn!("FUSE passthrough failed ({e}); using ordinary reads from now on");
                        }
                    }
                }
            }
            mode.cached_opens += 1;
            io.by_fh.insert(opened.fh, (ino.0, false));
            drop(io);
            let mut flags = open_flags(false, opened.keep_cache);
            if opened.direct_io && direct_io_ok {
                flags |= FopenFlags::FOPEN_DIRECT_IO;
            } else {
                drop_behind.track(opened.fh, ino.0);
            }
            reply.opened(FileHandle(opened.fh), flags);
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        tracing::trace!(fh = fh.0, offset, size, "read");
        let answer = |reply: ReplyData, result: Result<Bytes, FsError>| match result {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(to_errno(&e, "read")),
        };
        // Bytes at hand are answered from this thread; only waiting goes to the runtime.
        let _rt = self.rt.enter();
        match self.core.read_now(fh.0, offset, size) {
            Read::Ready(result) => answer(reply, result),
            Read::Later(rest) => {
                self.rt.spawn(async move { answer(reply, rest.await) });
            }
        }
        self.drop_behind.on_read(fh.0, offset, size.into(), |ino| {
            let io = self.io.lock();
            io.by_ino
                .get(&ino)
                .is_some_and(|m| m.cached_opens == 1 && m.passthrough.is_none())
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.core.release(fh.0);
        self.drop_behind.untrack(fh.0);
        let mut io = self.io.lock();
        if let Some((ino, passthrough)) = io.by_fh.remove(&fh.0) {
            if let Some(mode) = io.by_ino.get_mut(&ino) {
                if passthrough {
                    if let Some(pt) = &mut mode.passthrough {
                        pt.handles -= 1;
                        if pt.handles == 0 {
                            // Dropping the last Arc closes the backing id.
                            mode.passthrough = None;
                        }
                    }
                } else {
                    mode.cached_opens = mode.cached_opens.saturating_sub(1);
                }
                if mode.cached_opens == 0 && mode.passthrough.is_none() {
                    io.by_ino.remove(&ino);
                }
            }
        }
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.core.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    // ----- everything that would change the mount: EROFS -----
    refuse!(ReadOnly:
        setattr(
            INodeNo, Option<u32>, Option<u32>, Option<u32>, Option<u64>, Option<TimeOrNow>,
            Option<TimeOrNow>, Option<SystemTime>, Option<FileHandle>, Option<SystemTime>,
            Option<SystemTime>, Option<SystemTime>, Option<fuser::BsdFileFlags>
        ) -> ReplyAttr;
        mknod(INodeNo, &OsStr, u32, u32, u32) -> ReplyEntry;
        mkdir(INodeNo, &OsStr, u32, u32) -> ReplyEntry;
        unlink(INodeNo, &OsStr) -> ReplyEmpty;
        rmdir(INodeNo, &OsStr) -> ReplyEmpty;
        symlink(INodeNo, &OsStr, &Path) -> ReplyEntry;
        rename(INodeNo, &OsStr, INodeNo, &OsStr, RenameFlags) -> ReplyEmpty;
        link(INodeNo, INodeNo, &OsStr) -> ReplyEntry;
        write(
            INodeNo, FileHandle, u64, &[u8], WriteFlags, OpenFlags, Option<LockOwner>
        ) -> ReplyWrite;
        create(INodeNo, &OsStr, u32, u32, i32) -> ReplyCreate;
        setxattr(INodeNo, &OsStr, &[u8], i32, u32) -> ReplyEmpty;
        removexattr(INodeNo, &OsStr) -> ReplyEmpty;
        fallocate(INodeNo, FileHandle, u64, u64, i32) -> ReplyEmpty;
    );

    // Asked by ordinary programs (`cp -a`, `ls -l`, Python's `open`, `cp`'s SEEK_DATA,
    // select): answered without fuser's default "[Not Implemented]" warning per mount.
    refuse!(NotImplemented:
        getxattr(INodeNo, &OsStr, u32) -> ReplyXattr;
        listxattr(INodeNo, u32) -> ReplyXattr;
        lseek(INodeNo, FileHandle, i64, i32) -> ReplyLseek;
        poll(INodeNo, FileHandle, PollNotifier, PollEvents, PollFlags) -> ReplyPoll;
    );
    refuse!(NoIoctl:
        ioctl(INodeNo, FileHandle, IoctlFlags, u32, &[u8], u32) -> ReplyIoctl;
    );

    /// Nothing is ever written, so there is nothing to sync.
    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ServiceError, StoreError};

    #[test]
    fn errno_mapping() {
        let svc = ServiceError::default;
        let cases: Vec<(FsError, i32)> = vec![
            (FsError::NotFound, libc::ENOENT),
            (StoreError::NoSuchKey(svc()).into(), libc::ENOENT),
            (StoreError::AccessDenied(svc()).into(), libc::EACCES),
            (
                StoreError::SignatureDoesNotMatch(svc()).into(),
                libc::EACCES,
            ),
            (StoreError::InvalidObjectState(svc()).into(), libc::EACCES),
            (StoreError::PreconditionFailed(svc()).into(), libc::ESTALE),
            (crate::fetch::ReadError::Stale.into(), libc::ESTALE),
            (StoreError::Network("reset".into()).into(), libc::EIO),
            (StoreError::Throttled(svc()).into(), libc::EIO),
            (FsError::Io(std::io::Error::other("disk")), libc::EIO),
            (FsError::ReadOnly, libc::EROFS),
            (FsError::IsDir, libc::EISDIR),
            (FsError::NotDir, libc::ENOTDIR),
            (FsError::NameTooLong, libc::ENAMETOOLONG),
            (FsError::BadHandle(7), libc::EBADF),
            (FsError::NotImplemented, libc::ENOSYS),
            (FsError::NoIoctl, libc::ENOTTY),
        ];
        for (e, want) in cases {
            assert_eq!(to_errno(&e, "test").code(), want, "{e}");
        }
    }
}
