//! The thin `fuser::Filesystem` adapter: arguments in, reply out, errno mapping in one place.
//!
//! Every operation that can touch the network is handed to the tokio runtime and replied
//! to from there (fuser replies are `Send`), so a FUSE thread never waits on a socket while
//! other requests queue behind it; several FUSE threads (see `mount.rs`) read requests from
//! the kernel in parallel on top of that. Purely local operations (statfs, release,
//! readdir from a snapshot, the read-only refusals) are answered inline.
//!
//! The only logic here is what the core must not know about because it is FUSE itself:
//! the kernel configuration at INIT (large requests, readdirplus), and how the kernel
//! serves each open file (passthrough, page cache or direct I/O), which `passthrough.rs`
//! decides by the kernel's rules.
//!
//! Every request is counted and timed for the metrics (`crate::metrics`: a guard created
//! on arrival, dropped with the reply, one histogram observation; no lock), and each read
//! counts as a hit (answered here at once) or a miss (it waited for the store).

use std::ffi::OsStr;
use std::path::Path;
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
use tracing::warn;

use super::deadline::within;
use super::drop_behind::DropBehind;
use super::error::FsError;
use super::passthrough::{open_flags, IoModes, OpenAs};
use super::tree::{Attr, Kind, ReadAnswer, Tree};
use super::xattr;
use crate::metrics::{FuseOp, METRICS};

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
        FsError::NotSymlink => Errno::EINVAL,
        FsError::NoXattr => Errno::ENODATA,
        FsError::XattrRange => Errno::ERANGE,
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
        FsError::Store(_) | FsError::Cache(_) | FsError::Io(_) | FsError::Deadline { .. } => {
            warn!(op, "I/O error: {e}");
            Errno::EIO
        }
    }
}

/// `fuser::Filesystem` methods that only refuse, one line each: `op(argument types) ->
/// reply type`, the arguments between `&self, _req` and `reply`. Each answers
/// `FsError::$err` through [`to_errno`], as every other error is answered, with the
/// operation's name for the log line.
macro_rules! refuse {
    ($err:ident: $($op:ident($($arg:ty),* $(,)?) -> $reply:ty;)+) => {
        $(
            fn $op(&self, _req: &Request, $(_: $arg,)* reply: $reply) {
                let _t = METRICS.fuse(FuseOp::Refused);
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
        kind: file_type(a.kind),
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
        Kind::Symlink => FileType::Symlink,
    }
}

fn xattr_reply(reply: ReplyXattr, a: xattr::Answer) {
    match a {
        xattr::Answer::Size(n) => reply.size(n),
        xattr::Answer::Data(d) => reply.data(&d),
    }
}

pub struct Adapter {
    core: Arc<Tree>,
    rt: tokio::runtime::Handle,
    /// How the kernel serves each open file (passthrough, page cache, direct I/O).
    io: Arc<Mutex<IoModes>>,
    /// Page-cache handles whose pages are dropped behind a sequential reader.
    drop_behind: Arc<DropBehind>,
    /// Where the mount puts the session's notifier once the session exists.
    notifier: Arc<OnceLock<Notifier>>,
}

impl Adapter {
    /// `want_passthrough`: try FUSE passthrough (`--no-passthrough` turns it off).
    pub fn new(core: Arc<Tree>, rt: tokio::runtime::Handle, want_passthrough: bool) -> Self {
        let notifier = Arc::new(OnceLock::new());
        Self {
            core,
            rt,
            io: Arc::new(Mutex::new(IoModes::new(want_passthrough))),
            drop_behind: Arc::new(DropBehind::new(notifier.clone())),
            notifier,
        }
    }

    /// How long a request may wait on the network (`--request-deadline`).
    fn deadline(&self) -> std::time::Duration {
        self.core.config().request_deadline
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
        let _ = config.set_max_background(MAX_BACKGROUND);
        // Readahead as large as the kernel lets us (it caps this at the bdi's readahead).
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let want_direct_io = self.core.config().direct_io_above.is_some();
        self.io.lock().negotiate(config, want_direct_io);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let t = METRICS.fuse(FuseOp::Lookup);
        let core = self.core.clone();
        let name = name.to_owned();
        let deadline = self.deadline();
        self.rt.spawn(async move {
            let _t = t;
            let what = || format!("lookup of {name:?} in inode {}", parent.0);
            match within(deadline, what, core.lookup(parent.0, &name)).await {
                Ok(a) => reply.entry(&core.ttl(), &file_attr(&a), Generation(0)),
                Err(e) => reply.error(to_errno(&e, "lookup")),
            }
        });
    }

    /// `batch_forget` keeps fuser's default, one `forget` per inode: fuser 0.18.0 does not
    /// export `ForgetOne`, the type its `batch_forget` takes, so it cannot be overridden.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _t = METRICS.fuse(FuseOp::Forget);
        self.core.forget(&[(ino.0, nlookup)]);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let t = METRICS.fuse(FuseOp::Getattr);
        let core = self.core.clone();
        let deadline = self.deadline();
        self.rt.spawn(async move {
            let _t = t;
            let what = || format!("getattr of inode {}", ino.0);
            match within(deadline, what, core.getattr(ino.0)).await {
                Ok(a) => reply.attr(&core.ttl(), &file_attr(&a)),
                Err(e) => reply.error(to_errno(&e, "getattr")),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.core.readlink(ino.0) {
            Ok(text) => reply.data(text.as_bytes()),
            Err(e) => reply.error(to_errno(&e, "readlink")),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(to_errno(&FsError::NoXattr, "getxattr"));
        };
        let core = self.core.clone();
        self.rt.spawn(async move {
            match xattr::get(&core, ino.0, &name, size).await {
                Ok(a) => xattr_reply(reply, a),
                Err(e) => reply.error(to_errno(&e, "getxattr")),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let core = self.core.clone();
        self.rt.spawn(async move {
            match xattr::list(&core, ino.0, size).await {
                Ok(a) => xattr_reply(reply, a),
                Err(e) => reply.error(to_errno(&e, "listxattr")),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let t = METRICS.fuse(FuseOp::Opendir);
        let core = self.core.clone();
        self.rt.spawn(async move {
            let _t = t;
            // No overall deadline here: the listing behind it has one per page (a big
            // directory takes many pages), and opendir waits on nothing else.
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
        let _t = METRICS.fuse(FuseOp::Readdir);
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
        let _t = METRICS.fuse(FuseOp::Readdirplus);
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
        let _t = METRICS.fuse(FuseOp::Releasedir);
        self.core.releasedir(fh.0);
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let t = METRICS.fuse(FuseOp::Open);
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY
            || flags.0 & (libc::O_TRUNC | libc::O_APPEND) != 0;
        let core = self.core.clone();
        let io = self.io.clone();
        let drop_behind = self.drop_behind.clone();
        let notifier = self.notifier.clone();
        let deadline = self.deadline();
        self.rt.spawn(async move {
            let _t = t;
            let what = || format!("open of inode {}", ino.0);
            let mut opened = match within(deadline, what, core.open(ino.0, write)).await {
                Ok(o) => o,
                Err(e) => return reply.error(to_errno(&e, "open")),
            };
            if opened.attrs_stale {
                // Attributes only (offset -1): the next stat or read past the old end asks
                // getattr again. Before the reply, so no read of this handle sees the old.
                if let Some(Err(e)) = notifier.get().map(|n| n.inval_inode(ino, -1, 0)) {
                    warn!(
                        ino = ino.0,
                        "cannot invalidate the kernel's attributes: {e}"
                    );
                }
            }
            let how = io
                .lock()
                .open(ino.0, &mut opened, |file| reply.open_backing(file));
            let (fh, keep_cache) = (FileHandle(opened.fh), opened.keep_cache);
            match how {
                OpenAs::Passthrough(backing) => {
                    reply.opened_passthrough(fh, open_flags(true, keep_cache), &backing)
                }
                OpenAs::PageCache => {
                    drop_behind.track(opened.fh, ino.0);
                    reply.opened(fh, open_flags(false, keep_cache));
                }
                OpenAs::DirectIo => reply.opened(
                    fh,
                    open_flags(false, keep_cache) | FopenFlags::FOPEN_DIRECT_IO,
                ),
                OpenAs::Stale => {
                    core.release(opened.fh);
                    reply.error(Errno::ESTALE);
                }
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        tracing::trace!(fh = fh.0, offset, size, "read");
        let t = METRICS.fuse(FuseOp::Read);
        let answer = |reply: ReplyData, result: Result<Bytes, FsError>| match result {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(to_errno(&e, "read")),
        };
        // Bytes at hand are answered from this thread; only waiting goes to the runtime.
        let _rt = self.rt.enter();
        match self.core.read_now(fh.0, offset, size) {
            ReadAnswer::Ready(result) => {
                if result.is_ok() {
                    METRICS.cache_hits.inc();
                }
                answer(reply, result);
                drop(t);
            }
            ReadAnswer::Later(rest) => {
                METRICS.cache_misses.inc();
                let deadline = self.deadline();
                let what = move || format!("read of {size} bytes at {offset} of inode {}", ino.0);
                self.rt.spawn(async move {
                    answer(reply, within(deadline, what, rest).await);
                    drop(t);
                });
            }
        }
        self.drop_behind.on_read(fh.0, offset, size.into(), |ino| {
            self.io.lock().sole_cached_open(ino)
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
        let _t = METRICS.fuse(FuseOp::Release);
        self.core.release(fh.0);
        self.drop_behind.untrack(fh.0);
        self.io.lock().release(fh.0);
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
        let _t = METRICS.fuse(FuseOp::Flush);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _t = METRICS.fuse(FuseOp::Statfs);
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
        let _t = METRICS.fuse(FuseOp::Fsync);
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
        let _t = METRICS.fuse(FuseOp::Fsync);
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
            (FsError::NotSymlink, libc::EINVAL),
            (FsError::NoXattr, libc::ENODATA),
            (FsError::XattrRange, libc::ERANGE),
        ];
        for (e, want) in cases {
            assert_eq!(to_errno(&e, "test").code(), want, "{e}");
        }
    }
}
