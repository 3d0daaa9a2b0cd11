//! Shared scaffolding for real FUSE mounts of `ossmount serve`: an [`Env`] (temp dir,
//! bucket folder, server), `ossmount mount` in the background or `--foreground` as a
//! child, a [`Mount`] guard that always unmounts (lazily, so even a `kill -9`ed mount
//! goes), and small helpers to run programs and compare files.
//!
//! Used by `tests/mount.rs` and `tests/faults.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{bin, Serve, AK, SK};

pub const BUCKET: &str = "bkt";

/// Where mounts keep their control sockets (`ossmount status`): as `cmd/control.rs` says.
pub fn socket_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/run/ossmount");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("ossmount"),
        None => PathBuf::from(format!("/tmp/ossmount-{}", unsafe { libc::geteuid() })),
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = path.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

/// A mount, unmounted (lazily, so even a dead one goes) and its process killed on drop.
pub struct Mount {
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Mount {
    /// `kill -9` the foreground mount process, then detach its dead mount point (as an
    /// admin would after a crash), so the directory can be mounted again.
    pub fn kill_9(&mut self) {
        let mut child = self.child.take().expect("kill_9 needs a foreground mount");
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        run(Command::new("fusermount3").arg("-uz").arg(&self.dir));
        assert!(
            !is_mounted(&self.dir),
            "still mounted after fusermount3 -uz"
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // fusermount3 first (it works for any user); `umount -l` where it is not installed
        // (the tests run as root), so a failed test never leaves a mount behind.
        if is_mounted(&self.dir)
            && !Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success())
        {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// A temp dir holding the served tree (`data/`, bucket [`BUCKET`]), mount points and the
/// cache, plus the server. Fields are dropped in order: the server before the temp dir.
pub struct Env {
    pub serve: Serve,
    /// Cache directory of every mount made through this env (default `TMP/cache`).
    pub cache: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Self::with_objects(|_| {})
    }

    /// Create objects (in the bucket folder) before the server starts, so its start-up
    /// warm-up computes their ETags (MD5) in the background rather than the first request.
    pub fn with_objects(make: impl FnOnce(&Path)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = tmp.path().join("data").join(BUCKET);
        std::fs::create_dir_all(&bucket).unwrap();
        make(&bucket);
        let serve = Serve::start(&tmp.path().join("data"));
        let cache = tmp.path().join("cache");
        Env { serve, cache, tmp }
    }

    pub fn object(&self, key: &str) -> PathBuf {
        self.serve.dir.join(BUCKET).join(key)
    }

    pub fn mnt(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn cache(&self) -> PathBuf {
        self.cache.clone()
    }

    pub fn cmd(&self, url: &str, mnt: &Path, extra: &[&str]) -> Command {
        self.cmd_of(&bin(), url, mnt, extra)
    }

    /// [`Env::cmd`] running another copy of the binary.
    pub fn cmd_of(&self, exe: &Path, url: &str, mnt: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(exe);
        c.arg("mount")
            .arg(url)
            .arg(mnt)
            .args([
                "--endpoint",
                &self.serve.endpoint(),
                "--region",
                "cn-hangzhou",
            ])
            .arg("--cache-dir")
            .arg(self.cache())
            .args(extra)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env_remove("RUST_LOG");
        // OSSMOUNT_TEST_LOG=FILE: keep the mount's debug log for a failing test.
        if let Some(log) = std::env::var_os("OSSMOUNT_TEST_LOG") {
            c.arg("--log-file").arg(log).arg("--debug");
        }
        c
    }

    /// Mount in the background (the default) and require success.
    pub fn mount(&self, name: &str, extra: &[&str]) -> Mount {
        let dir = self.mnt(name);
        let out = self
            .cmd(&format!("oss://{BUCKET}"), &dir, extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(is_mounted(&dir), "exit 0 but nothing mounted");
        Mount { dir, child: None }
    }

    /// Mount with --foreground as a child process; returns when the mount is usable.
    pub fn mount_fg(&self, name: &str, extra: &[&str]) -> Mount {
        self.mount_fg_url(&format!("oss://{BUCKET}"), name, extra)
    }

    pub fn mount_fg_url(&self, url: &str, name: &str, extra: &[&str]) -> Mount {
        let dir = self.mnt(name);
        // Its log (stderr in the foreground) goes to a file beside the mount point, shown
        // when the mount dies early, instead of interleaving with every test's output.
        let log = self.tmp.path().join(format!("{name}.log"));
        let child = self
            .cmd(url, &dir, extra)
            .arg("--foreground")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mount {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&m.dir) {
            if let Ok(Some(st)) = m.child.as_mut().unwrap().try_wait() {
                panic!(
                    "foreground mount exited early: {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "mount not ready in 20s");
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn sh(script: &str) -> Output {
    run(Command::new("sh").arg("-c").arg(script))
}

pub fn same_file(a: &Path, b: &Path) {
    run(Command::new("cmp").arg(a).arg(b));
}
