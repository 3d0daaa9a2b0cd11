//! The kernel side of a mount: the FUSE session mounted at a directory as `fuse.ossmount`,
//! read-only, nodev, nosuid; unmounting only what is still ours; the mount's readahead.
//! The `mount` command (checks, fork, runtime, signals) lives with the other commands'
//! front ends, above the layers.
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

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::error;

use super::adapter::Adapter;

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

/// How a mount is taken down, from any thread (the command's signal handler).
pub enum Unmounter {
    /// Our own mount(2): see [`KernelMount`].
    Kernel(Arc<KernelMount>),
    /// fuser's (fusermount3) mount.
    Fuser(fuser::SessionUnmounter),
}

impl Unmounter {
    pub fn unmount(&mut self) -> std::io::Result<()> {
        match self {
            Unmounter::Kernel(k) => k.unmount(),
            Unmounter::Fuser(u) => u.unmount(),
        }
    }
}

/// A mounted FUSE session, ready to serve.
pub struct Mounted {
    session: fuser::Session<Adapter>,
    /// Our own mount(2), if we made it (see [`KernelMount`]).
    kernel: Option<Arc<KernelMount>>,
}

/// Mount `adapter` at `mountpoint` with source `fsname`: by mount(2) where permitted, else
/// through fusermount3, then raise its readahead. Returns once the kernel's INIT handshake
/// is done, with the [`Unmounter`] that takes the mount down from another thread.
pub fn mount(
    adapter: Adapter,
    mountpoint: &Path,
    fsname: &str,
    acl: fuser::SessionACL,
    threads: usize,
) -> std::io::Result<(Mounted, Unmounter)> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(fsname.to_string()),
        fuser::MountOption::Subtype("ossmount".to_string()),
        fuser::MountOption::RO,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::DefaultPermissions,
    ];
    config.acl = acl;
    config.n_threads = Some(threads);
    config.clone_fd = true;

    let made = match KernelMount::mount(mountpoint, fsname, acl != fuser::SessionACL::Owner)? {
        Some((fd, kmount)) => {
            let kmount = Arc::new(kmount);
            // The INIT handshake happens in from_fd; a failure there leaves a dead mount.
            let session = fuser::Session::from_fd(adapter, fd, acl, config).inspect_err(|_| {
                let _ = kmount.unmount();
            })?;
            let mounted = Mounted {
                session,
                kernel: Some(kmount.clone()),
            };
            (mounted, Unmounter::Kernel(kmount))
        }
        None => {
            let mut session = fuser::Session::new(adapter, mountpoint, &config)?;
            let unmounter = Unmounter::Fuser(session.unmount_callable());
            let mounted = Mounted {
                session,
                kernel: None,
            };
            (mounted, unmounter)
        }
    };
    raise_readahead(mountpoint);
    Ok(made)
}

impl Mounted {
    /// The channel for cache invalidations to the kernel.
    pub fn notifier(&self) -> fuser::Notifier {
        self.session.notifier()
    }

    /// Serve FUSE requests until the kernel connection goes: after an unmount (ours or an
    /// external one), or an error. Only in the last case can our mount still be there, and
    /// then it is unmounted here.
    pub fn run(self) -> std::io::Result<()> {
        let ran = self.session.run();
        if let Some(k) = self.kernel {
            if let Err(e) = k.unmount() {
                error!(mountpoint = %k.mountpoint.display(), "unmount failed: {e}");
            }
        }
        ran
    }
}
