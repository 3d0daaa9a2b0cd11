//! fstab-style `-o` options, as mount(8) passes them to `mount.fuse.ossmount`, folded into
//! the `mount` command's arguments.
//!
//! Every command-line option of `ossmount mount` has an `-o` spelling with `_` for `-`
//! (`cache_dir=/var/cache/ossmount`, `metadata_ttl=5m`, `allow_other`), so one fstab line
//! can say everything. The generic mount options that mount(8), systemd and fstab add
//! (`ro`, `rw`, `defaults`, `_netdev`, `nofail`, `noauto`, `user`, `x-systemd.*`, ...) are
//! accepted and ignored: the mount is read-only, nosuid and nodev regardless. `rw` has to
//! be accepted: mount(8) passes it to helpers whenever fstab does not say `ro`.
//! Unknown options are errors, so a typo does not silently mount with defaults.
//! Options given with `-o` override the same option given as a flag (they come last).

use std::path::PathBuf;

use crate::cli::{parse_mode, MountArgs};
use crate::units::{parse_duration, parse_size};

/// Fold every `-o` list in `args.options` into the typed fields of `args`.
pub fn apply(args: &mut MountArgs) -> Result<(), String> {
    let lists = std::mem::take(&mut args.options);
    for list in &lists {
        for opt in split(list) {
            apply_one(args, &opt)?;
        }
    }
    Ok(())
}

/// Split on commas, honouring `\,` as a literal comma.
fn split(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn apply_one(args: &mut MountArgs, opt: &str) -> Result<(), String> {
    let (key, value) = match opt.split_once('=') {
        Some((k, v)) => (k.trim().replace('-', "_"), Some(v.trim().to_string())),
        None => (opt.trim().replace('-', "_"), None),
    };
    let need = |v: &Option<String>| {
        v.clone()
            .ok_or_else(|| format!("mount option {key} needs a value ({key}=...)"))
    };
    let num = |v: &Option<String>| -> Result<u32, String> {
        need(v)?
            .parse::<u32>()
            .map_err(|_| format!("mount option {key}: not a number"))
    };
    match key.as_str() {
        "endpoint" => args.store.endpoint = Some(need(&value)?),
        "region" => args.store.region = Some(need(&value)?),
        "no_sign_request" => args.store.no_sign_request = true,
        "path_style" => args.store.path_style = true,
        "profile" => args.store.profile = Some(need(&value)?),
        "ram_role" => args.store.ram_role = Some(need(&value)?),
        "credential_process" => args.store.credential_process = Some(need(&value)?),
        "credential_process_timeout" => {
            args.store.credential_process_timeout = parse_duration(&need(&value)?)?
        }
        "metadata_endpoint" => args.store.metadata_endpoint = Some(need(&value)?),
        "sts_endpoint" => args.store.sts_endpoint = Some(need(&value)?),
        "ca_bundle" => args.store.ca_bundle = Some(PathBuf::from(need(&value)?)),
        "cache_dir" => args.cache.cache_dir = Some(PathBuf::from(need(&value)?)),
        "cache_size" => args.cache.cache_size = parse_size(&need(&value)?)?,
        "cache_min_free" => args.cache.cache_min_free = Some(parse_size(&need(&value)?)?),
        "part_size" => args.cache.part_size = parse_size(&need(&value)?)?,
        "jobs" => args.cache.jobs = num(&value)? as usize,
        "memory_limit" => args.cache.memory_limit = parse_size(&need(&value)?)?,
        "checkpoint_batch" => args.cache.checkpoint_batch = parse_size(&need(&value)?)?,
        "metadata_ttl" => args.metadata_ttl = parse_duration(&need(&value)?)?,
        "request_deadline" => args.request_deadline = parse_duration(&need(&value)?)?,
        "dir_read_ahead" => args.dir_read_ahead = num(&value)? as usize,
        "uid" => args.uid = Some(num(&value)?),
        "gid" => args.gid = Some(num(&value)?),
        "file_mode" => args.file_mode = parse_mode(&need(&value)?)?,
        "dir_mode" => args.dir_mode = parse_mode(&need(&value)?)?,
        "allow_other" => args.allow_other = true,
        "allow_root" => args.allow_root = true,
        "foreground" => args.foreground = true,
        "log_file" => args.log_file = Some(PathBuf::from(need(&value)?)),
        "no_passthrough" => args.no_passthrough = true,
        "direct_io" => args.direct_io = true,
        "follow_symlinks" => args.follow_symlinks = true,
        "no_cache" => args.no_cache = true,
        "fuse_threads" => args.fuse_threads = num(&value)? as usize,
        "metrics_addr" => args.metrics_addr = Some(crate::cli::parse_metrics_addr(&need(&value)?)?),
        // Generic options of mount(8), fstab and systemd: meaningless or implied here.
        "ro" | "rw" | "defaults" | "auto" | "noauto" | "user" | "users" | "nouser" | "_netdev"
        | "nofail" | "nodev" | "nosuid" | "dev" | "suid" | "exec" | "noexec" | "atime"
        | "noatime" | "relatime" | "nodiratime" | "async" | "sync" | "owner" | "group"
        | "comment" | "debug" => {}
        k if k.starts_with("x_") || k.starts_with("x-") || opt.starts_with("x-") => {}
        _ => return Err(format!("unknown mount option {opt:?}")),
    }
    if args.allow_other && args.allow_root {
        return Err("allow_other and allow_root exclude each other".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(argv: &[&str]) -> Result<MountArgs, String> {
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Mount(mut m) = cli.command else {
            panic!("not mount")
        };
        apply(&mut m)?;
        Ok(m)
    }

    #[test]
    fn credential_options() {
        let m = parse(&[
            "ossmount",
            "mount",
            "oss://bkt",
            "/mnt",
            "-o",
            "ro,ram_role=reader,metadata_endpoint=http://127.0.0.1:9,sts_endpoint=sts.example.com,credential_process_timeout=5s",
        ])
        .unwrap();
        assert_eq!(m.store.ram_role.as_deref(), Some("reader"));
        assert_eq!(
            m.store.metadata_endpoint.as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(m.store.sts_endpoint.as_deref(), Some("sts.example.com"));
        assert_eq!(
            m.store.credential_process_timeout,
            std::time::Duration::from_secs(5)
        );
        let m = parse(&[
            "ossmount",
            "mount",
            "oss://bkt",
            "/mnt",
            "-o",
            "profile=work,credential_process=/usr/bin/helper --role r",
        ])
        .unwrap();
        assert_eq!(m.store.profile.as_deref(), Some("work"));
        assert_eq!(
            m.store.credential_process.as_deref(),
            Some("/usr/bin/helper --role r")
        );
    }

    #[test]
    fn fstab_options_fill_the_flags() {
        let m = parse(&[
            "ossmount",
            "mount",
            "oss://b/p/",
            "/mnt",
            "-o",
            "ro,_netdev,nofail,x-systemd.automount,allow_other,uid=1000,gid=100,file_mode=0640,cache_dir=/var/cache/o\\,x,cache_size=10GiB,metadata_ttl=5m,request_deadline=90s,endpoint=http://127.0.0.1:9000,metrics_addr=9100,ca_bundle=/etc/ossmount/ca.pem",
        ])
        .unwrap();
        assert!(m.allow_other);
        assert_eq!(m.uid, Some(1000));
        assert_eq!(m.gid, Some(100));
        assert_eq!(m.file_mode, 0o640);
        assert_eq!(m.cache.cache_dir, Some(PathBuf::from("/var/cache/o,x")));
        assert_eq!(m.cache.cache_size, 10 << 30);
        assert_eq!(m.metadata_ttl, std::time::Duration::from_secs(300));
        assert_eq!(m.request_deadline, std::time::Duration::from_secs(90));
        assert_eq!(m.store.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(m.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(
            m.store.ca_bundle.as_deref(),
            Some(std::path::Path::new("/etc/ossmount/ca.pem"))
        );
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(parse(&["ossmount", "mount", "oss://b", "/mnt", "-o", "rw,ro"]).is_ok());
        assert!(parse(&["ossmount", "mount", "oss://b", "/mnt", "-o", "frobnicate"]).is_err());
        assert!(parse(&["ossmount", "mount", "oss://b", "/mnt", "-o", "uid"]).is_err());
        assert!(parse(&[
            "ossmount",
            "mount",
            "oss://b",
            "/mnt",
            "-o",
            "allow_root,allow_other"
        ])
        .is_err());
    }
}
