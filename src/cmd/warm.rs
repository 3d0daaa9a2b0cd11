//! `ossmount warm PATH... [--dry-run]`: ask the running mount that holds each PATH to
//! fetch those objects into its cache (see `cmd/mount/warm.rs` for what the mount does),
//! and show its progress: a bar (bytes, objects, rate, ETA) on a terminal, a plain line
//! a second otherwise, and one summary line.
//!
//! Exit status: 0 when everything asked for is cached; 2 when a PATH is not inside a
//! running mount; 1 when objects failed; 5 when the warm stopped at the cache budget.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use super::control::{self, Request, WarmEvent};
use crate::cli::{exit, Failure, WarmArgs};

/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// `ossmount warm`.
pub fn run(args: WarmArgs) -> Result<(), Failure> {
    let mounts: Vec<(PathBuf, PathBuf)> = control::mounts()
        .into_iter()
        .filter_map(|(sock, s)| s.ok().map(|s| (sock, s.mountpoint)))
        .collect();
    // Paths grouped by the mount holding them, in the order given.
    let mut groups: Vec<(PathBuf, PathBuf, Vec<String>)> = Vec::new();
    for p in &args.paths {
        let (sock, mnt, rel) = locate(p, &mounts)?;
        match groups.iter_mut().find(|g| g.0 == sock) {
            Some(g) => g.2.push(rel),
            None => groups.push((sock, mnt, vec![rel])),
        }
    }
    let tty = !args.quiet && std::io::stderr().is_terminal();
    let mut worst: Option<Failure> = None;
    for (sock, mnt, paths) in groups {
        if let Err(f) = warm_at(&sock, &mnt, paths, args.dry_run, tty) {
            eprintln!("ossmount warm: {}", f.message);
            if worst.as_ref().is_none_or(|w| f.exit_code > w.exit_code) {
                worst = Some(f);
            }
        }
    }
    match worst {
        // Already printed; the binary prints the message once more, so keep it short.
        Some(f) => Err(Failure::new(f.exit_code, "warm incomplete")),
        None => Ok(()),
    }
}

/// The control socket, mountpoint and relative path (`dir/` for a directory, `""` for the
/// whole mount) of `p`.
fn locate(p: &Path, mounts: &[(PathBuf, PathBuf)]) -> Result<(PathBuf, PathBuf, String), Failure> {
    let usage = |m: String| Failure::new(exit::USAGE, m);
    let abs = p
        .canonicalize()
        .map_err(|e| usage(format!("{}: {e}", p.display())))?;
    let (sock, mnt) = mounts
        .iter()
        .filter(|(_, m)| abs.starts_with(m))
        .max_by_key(|(_, m)| m.as_os_str().len())
        .ok_or_else(|| {
            usage(format!(
                "{} is not inside a running ossmount mount (see `ossmount status`)",
                p.display()
            ))
        })?;
    let rel = abs.strip_prefix(mnt).expect("starts_with");
    let mut rel = rel
        .to_str()
        .ok_or_else(|| usage(format!("{}: not UTF-8", p.display())))?
        .to_string();
    let is_dir = std::fs::metadata(&abs)
        .map_err(|e| usage(format!("{}: {e}", p.display())))?
        .is_dir();
    if is_dir && !rel.is_empty() {
        rel.push('/');
    }
    Ok((sock.clone(), mnt.clone(), rel))
}

/// What the client keeps of a warm while it runs.
#[derive(Default)]
struct View {
    objects: u64,
    cached: u64,
    to_fetch: u64,
    done: u64,
    fetched: u64,
    failed: Vec<(String, String)>,
    stopped: Option<String>,
    finished: bool,
}

fn warm_at(
    sock: &Path,
    mnt: &Path,
    paths: Vec<String>,
    dry_run: bool,
    tty: bool,
) -> Result<(), Failure> {
    let started = Instant::now();
    let mut v = View::default();
    let mut bar: Option<ProgressBar> = None;
    let mut last_line = Instant::now();
    let req = Request::Warm { paths, dry_run };
    let called = control::call(sock, &req, None, |line| {
        let Ok(ev) = serde_json::from_str::<WarmEvent>(line) else {
            v.stopped = Some(format!("the mount said: {line}"));
            return false;
        };
        match ev {
            WarmEvent::Plan {
                objects,
                bytes,
                cached_objects,
                to_fetch_bytes,
            } => {
                (v.objects, v.cached, v.to_fetch) = (objects, cached_objects, to_fetch_bytes);
                println!(
                    "{}: {objects} objects, {}; {cached_objects} cached already, {} to fetch",
                    mnt.display(),
                    HumanBytes(bytes),
                    HumanBytes(to_fetch_bytes)
                );
                if tty && !dry_run {
                    bar = Some(progress_bar(to_fetch_bytes, objects));
                }
            }
            WarmEvent::WouldFetch { path, bytes } => {
                println!(
                    "would fetch {} ({})",
                    mnt.join(path).display(),
                    HumanBytes(bytes)
                );
            }
            WarmEvent::Progress {
                done_objects,
                fetched_bytes,
            } => {
                (v.done, v.fetched) = (done_objects, fetched_bytes);
                if let Some(b) = &bar {
                    b.set_position(fetched_bytes.min(v.to_fetch));
                    b.set_message(format!("{done_objects}/{} objects", v.objects));
                } else if !dry_run && last_line.elapsed() >= PLAIN_EVERY {
                    last_line = Instant::now();
                    eprintln!("{}", plain_line(&v, started.elapsed()));
                }
            }
            WarmEvent::Failed { path, error } => {
                let msg = format!("failed: {}: {error}", mnt.join(&path).display());
                match &bar {
                    Some(b) => b.println(&msg),
                    None => eprintln!("{msg}"),
                }
                v.failed.push((path, error));
            }
            WarmEvent::Done {
                done_objects,
                fetched_bytes,
                failed: _,
                stopped,
            } => {
                (v.done, v.fetched, v.stopped) = (done_objects, fetched_bytes, stopped);
                v.finished = true;
                return false;
            }
        }
        true
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    called.map_err(|e| {
        Failure::new(
            exit::GENERIC,
            format!("control socket {}: {e}", sock.display()),
        )
    })?;
    if !v.finished {
        return Err(Failure::new(
            exit::GENERIC,
            v.stopped
                .unwrap_or_else(|| "the mount went away before the warm was done".into()),
        ));
    }
    let secs = started.elapsed().as_secs_f64();
    if dry_run {
        println!(
            "would fetch {} objects, {} ({} cached already)",
            v.objects - v.cached,
            HumanBytes(v.to_fetch),
            v.cached
        );
    } else {
        println!(
            "warmed {} of {} objects: fetched {} in {secs:.1}s ({}/s){}",
            v.done,
            v.objects,
            HumanBytes(v.fetched),
            HumanBytes((v.fetched as f64 / secs.max(0.001)) as u64),
            if v.failed.is_empty() {
                String::new()
            } else {
                format!(", {} failed", v.failed.len())
            }
        );
    }
    if let Some(why) = v.stopped {
        return Err(Failure::new(exit::LOCAL, why));
    }
    if !v.failed.is_empty() {
        return Err(Failure::new(
            exit::GENERIC,
            format!("{} objects could not be warmed", v.failed.len()),
        ));
    }
    Ok(())
}

fn plain_line(v: &View, elapsed: Duration) -> String {
    let rate = v.fetched as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 {
        format!(
            "{:.0}s",
            (v.to_fetch.saturating_sub(v.fetched)) as f64 / rate
        )
    } else {
        "?".into()
    };
    format!(
        "warm: {}/{} objects, {} of {}, {}/s, ETA {eta}",
        v.done,
        v.objects,
        HumanBytes(v.fetched),
        HumanBytes(v.to_fetch),
        HumanBytes(rate as u64)
    )
}

fn progress_bar(bytes: u64, objects: u64) -> ProgressBar {
    let b = ProgressBar::new(bytes);
    b.set_style(
        ProgressStyle::with_template(
            "{spinner} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("valid template"),
    );
    b.set_message(format!("0/{objects} objects"));
    b.enable_steady_tick(Duration::from_millis(200));
    b
}
