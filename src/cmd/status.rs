//! `ossmount status [MOUNTPOINT] [--json]`: what each running mount of this user says about
//! itself on its control socket (see [`super::control`]).
//!
//! Exit status: 0 when every mount asked answered (none running is not an error: the
//! output says so); 1 when MOUNTPOINT is not a running ossmount mount, or a mount did not
//! answer (a hung or stopped process: its line says so).

use std::io::Write;
use std::path::{Path, PathBuf};

use indicatif::HumanBytes;

use super::control::{self, Status};
use crate::cli::{exit, Failure, StatusArgs};

/// `ossmount status`.
pub fn run(args: StatusArgs) -> Result<(), Failure> {
    let want = args.mountpoint.as_deref().map(canonical);
    let mut mounts = control::mounts();
    if let Some(want) = &want {
        mounts.retain(|(_, s)| s.as_ref().map_or(true, |s| &s.mountpoint == want));
        mounts.retain(|(_, s)| s.is_ok());
    }
    let silent: Vec<&PathBuf> = mounts
        .iter()
        .filter(|(_, s)| s.is_err())
        .map(|(p, _)| p)
        .collect();
    let ok: Vec<&Status> = mounts.iter().filter_map(|(_, s)| s.as_ref().ok()).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&ok).expect("plain data");
        let _ = writeln!(out, "{text}");
    } else if ok.is_empty() && silent.is_empty() && want.is_none() {
        let _ = writeln!(out, "no ossmount mounts running");
    }
    if !args.json {
        for s in &ok {
            let _ = write!(out, "{}", describe(s));
        }
    }
    for p in &silent {
        eprintln!(
            "ossmount: the mount behind {} does not answer (stopped or hung?)",
            p.display()
        );
    }
    if let Some(want) = &want {
        if ok.is_empty() {
            return Err(Failure::new(
                exit::GENERIC,
                format!("no running ossmount mount at {}", want.display()),
            ));
        }
    }
    if !silent.is_empty() {
        return Err(Failure::new(exit::GENERIC, "some mounts did not answer"));
    }
    Ok(())
}

/// The path as mountinfo shows it (symlinks resolved); a path that cannot be resolved
/// (not there, a dead mount) as given, made absolute.
fn canonical(p: &Path) -> PathBuf {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// The human form of one mount's status.
pub fn describe(s: &Status) -> String {
    let mut t = format!(
        "{}  {}  pid {}  up {}\n",
        s.mountpoint.display(),
        s.url,
        s.pid,
        uptime(s.uptime_seconds)
    );
    match &s.cache_dir {
        Some(dir) => t.push_str(&format!(
            "  cache        {}: {} of {}\n",
            dir.display(),
            HumanBytes(s.cache_used_bytes),
            HumanBytes(s.cache_budget_bytes)
        )),
        None => t.push_str("  cache        none (--no-cache)\n"),
    }
    if s.memory_limit_bytes > 0 {
        t.push_str(&format!(
            "  memory       {} of {} part data now, {} at most\n",
            HumanBytes(s.memory_used_bytes),
            HumanBytes(s.memory_limit_bytes),
            HumanBytes(s.memory_peak_bytes)
        ));
    }
    let ratio = s
        .hit_ratio
        .map_or("no reads yet".to_string(), |r| format!("{:.1}%", r * 100.0));
    t.push_str(&format!(
        "  reads        hit ratio {ratio} ({} answered at once, {} waited for the store; \
         page cache and passthrough reads unseen)\n",
        s.read_hits, s.read_misses
    ));
    t.push_str(&format!(
        "  store        {} requests, {} errors in the last minute; {} requests, {} fetched \
         since start\n",
        s.requests_last_minute,
        s.errors_last_minute,
        s.requests_total,
        HumanBytes(s.fetched_bytes_total)
    ));
    let expiry = s
        .credentials_expire
        .as_deref()
        .map_or(String::new(), |e| format!(", expire {e}"));
    t.push_str(&format!("  credentials  {}{expiry}\n", s.credentials));
    if let Some(a) = &s.metrics_addr {
        t.push_str(&format!("  metrics      http://{a}/metrics\n"));
    }
    t.push_str(&format!("  open files   {}\n", s.open_handles));
    t
}
