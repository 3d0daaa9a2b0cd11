//! The control socket of a running mount: how `ossmount status` and `ossmount warm` find
//! every mount of the user and talk to it, without configuration.
//!
//! Each mount listens on a unix socket named after its pid, `<pid>.sock`, in a directory
//! only its user can enter (0700; the socket itself 0600):
//! - root: `/run/ossmount` (a tmpfs: gone after a reboot, like the mounts);
//! - others: `$XDG_RUNTIME_DIR/ossmount` (systemd's `/run/user/UID`), else
//!   `/tmp/ossmount-UID`, created 0700 and refused if another user owns it.
//!
//! A socket whose mount is gone (killed with `kill -9`, so it could not remove it) refuses
//! connections: the listing removes it when its pid is no longer alive. The socket is
//! authenticated by the filesystem: whoever may connect may also read the mount's cache.
//!
//! The protocol is one JSON request line and JSON reply lines: `{"op":"status"}` gets one
//! [`Status`]; `{"op":"warm",...}` gets [`WarmEvent`]s until the last one, `done`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a client waits for a mount's status: a busy mount answers in milliseconds
/// (the reply is built from counters), a stopped (SIGSTOP) one never.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The directory holding the control sockets of this user's mounts.
pub fn socket_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/ossmount");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("ossmount"),
        None => PathBuf::from(format!("/tmp/ossmount-{uid}")),
    }
}

/// [`socket_dir`], created 0700 if missing; refused if it is not ours or others may enter.
pub fn prepare_socket_dir() -> std::io::Result<PathBuf> {
    let dir = socket_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", dir.display()),
            ))
        }
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{} is not a directory of uid {uid}", dir.display()),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// The socket of the mount with process id `pid`.
pub fn socket_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.sock"))
}

/// What `status` reports about one mount.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    pub url: String,
    pub mountpoint: PathBuf,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub uptime_seconds: u64,
    /// None under `--no-cache`.
    pub cache_dir: Option<PathBuf>,
    pub cache_used_bytes: u64,
    pub cache_budget_bytes: u64,
    /// The memory budget of part data (`--memory-limit`), bytes held now and at most.
    #[serde(default)]
    pub memory_limit_bytes: u64,
    #[serde(default)]
    pub memory_used_bytes: u64,
    #[serde(default)]
    pub memory_peak_bytes: u64,
    /// FUSE reads answered at once (memory, cache file) and those that waited for the store.
    pub read_hits: u64,
    pub read_misses: u64,
    /// `read_hits / (read_hits + read_misses)`, None before the first read.
    pub hit_ratio: Option<f64>,
    pub requests_last_minute: u64,
    /// Requests without a response, or answered 403, 429 or 5xx.
    pub errors_last_minute: u64,
    pub requests_total: u64,
    pub errors_total: u64,
    pub fetched_bytes_total: u64,
    pub open_handles: u64,
    /// Where the credentials come from (`environment (OSS_ACCESS_KEY_ID)`, `anonymous`).
    pub credentials: String,
    /// When temporary credentials expire (RFC 3339), when known.
    pub credentials_expire: Option<String>,
    pub metrics_addr: Option<String>,
}

/// A request on the control socket.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Fetch these objects into the cache: `paths` relative to the mountpoint (`""` is
    /// the whole mount); directories recursively.
    Warm {
        paths: Vec<String>,
        dry_run: bool,
    },
}

/// What a warm reports as it goes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WarmEvent {
    /// The walk is done: what there is to do.
    Plan {
        objects: u64,
        bytes: u64,
        /// Of those, already complete in the cache (nothing to fetch).
        cached_objects: u64,
        /// Bytes still to fetch (parts not in the cache yet).
        to_fetch_bytes: u64,
    },
    /// `--dry-run`: one object that would be fetched.
    WouldFetch { path: String, bytes: u64 },
    /// Progress so far.
    Progress {
        done_objects: u64,
        fetched_bytes: u64,
    },
    /// One object failed (the warm goes on with the others).
    Failed { path: String, error: String },
    /// The end: every object complete (`stopped: None`), or why the warm stopped.
    Done {
        done_objects: u64,
        fetched_bytes: u64,
        failed: u64,
        stopped: Option<String>,
    },
}

/// Send `req` to the mount behind `socket` and hand each reply line to `on_line` until it
/// returns false or the mount closes the connection.
pub fn call(
    socket: &Path,
    req: &Request,
    timeout: Option<Duration>,
    mut on_line: impl FnMut(&str) -> bool,
) -> std::io::Result<()> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(timeout)?;
    let mut line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut buf = String::new();
    loop {
        buf.clear();
        if r.read_line(&mut buf)? == 0 || !on_line(buf.trim_end()) {
            return Ok(());
        }
    }
}

/// The status of the mount behind `socket`.
pub fn status_of(socket: &Path) -> std::io::Result<Status> {
    let mut got = None;
    call(socket, &Request::Status, Some(STATUS_TIMEOUT), |l| {
        got = Some(serde_json::from_str::<Status>(l));
        false
    })?;
    match got {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the mount closed the control socket without an answer",
        )),
    }
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 checks existence and permission only.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// An answer that means the mount is unmounting (a hung or stopped one times out instead).
fn leaving(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        NotFound | UnexpectedEof | ConnectionReset | BrokenPipe
    )
}

/// Every running mount of this user, in pid order, with its socket. Sockets of mounts
/// that are gone are removed; a live mount that does not answer is an `Err` entry, so the
/// caller can say so.
pub fn mounts() -> Vec<(PathBuf, std::io::Result<Status>)> {
    let dir = socket_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.strip_suffix(".sock")?.parse().ok()?;
            Some((pid, e.path()))
        })
        .collect();
    found.sort();
    // Asked all at once: one mount that is slow to answer delays the listing by
    // STATUS_TIMEOUT, not by that times the mounts behind it.
    let answers: Vec<std::io::Result<Status>> = std::thread::scope(|s| {
        let asks: Vec<_> = found
            .iter()
            .map(|(_, path)| s.spawn(move || status_of(path)))
            .collect();
        asks.into_iter()
            .map(|a| {
                a.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("panicked")))
            })
            .collect()
    });
    let mut out = Vec::new();
    for ((pid, path), answer) in found.into_iter().zip(answers) {
        match answer {
            Ok(s) => out.push((path, Ok(s))),
            // Nobody listens (refused), or the pid is gone: a mount killed before it
            // could clean up.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused || !pid_alive(pid) => {
                let _ = std::fs::remove_file(&path);
            }
            // Listed just before it unmounted: its socket went away, or it closed the
            // connection as its runtime stopped. Not a hung mount, and not ours to remove.
            Err(e) if leaving(&e) => {}
            Err(e) => out.push((path, Err(e))),
        }
    }
    out
}
