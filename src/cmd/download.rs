//! `ossmount download URL [LOCAL]`: turns the arguments into a [`Job`] (the store, the
//! local file, part size and jobs), runs it on a small runtime, and maps its failure to
//! an exit code: USAGE (arguments, URL, configuration), STORE (not found, access denied,
//! archived and not restored, changed during the download, network after retries),
//! VERIFY (CRC-64 mismatch), LOCAL (disk full, permissions), 130 (interrupted).

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cache::check_part_size;
use crate::cli::{exit, DownloadArgs, Failure};
use crate::config::{self, StoreUrl};
use crate::download::{DownloadError, Job};

/// `ossmount download URL [LOCAL]`.
pub fn run(args: DownloadArgs) -> Result<(), Failure> {
    let usage = |m: String| Failure::new(exit::USAGE, m);
    let url = StoreUrl::parse(&args.url).map_err(|e| usage(e.to_string()))?;
    if url.path.is_empty() || url.path.ends_with('/') {
        return Err(usage(format!(
            "{} names no object (give oss://bucket/key)",
            args.url
        )));
    }
    let part_size = args.part_size;
    check_part_size(part_size).map_err(usage)?;
    let jobs = args.jobs;
    if jobs == 0 {
        return Err(usage("--jobs must be at least 1".into()));
    }
    if args
        .version_id
        .as_deref()
        .is_some_and(|v| v.trim().is_empty())
    {
        return Err(usage("--version-id needs a version id".into()));
    }
    let sys = std::sync::Arc::new(crate::store::credentials::RealSystem);
    let mut cfg = config::resolve(&url, &args.store, sys).map_err(|e| usage(e.to_string()))?;
    cfg.version_id = args.version_id.clone();
    let store = config::connect_args(&cfg, &args.store).map_err(|e| usage(e.to_string()))?;
    let name = url.path.rsplit('/').next().unwrap_or(&url.path).to_string();
    let local = match &args.local {
        Some(p) if p.is_dir() => p.join(&name),
        Some(p) => p.clone(),
        None => PathBuf::from(&name),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::GENERIC, format!("cannot start the runtime: {e}")))?;
    let mut display = format!("{}://{}/{}", url.scheme.as_str(), url.bucket, url.path);
    if let Some(v) = &args.version_id {
        display.push_str(&format!(" (version {v})"));
    }
    let job = Job {
        store,
        namespace: cfg.namespace(),
        key: url.path.clone(),
        display,
        local,
        checkpoint_dir: args.checkpoint_dir.clone(),
        part_size,
        jobs,
        verify: !args.no_verify,
        version_id: args.version_id.clone(),
        progress: !args.quiet && std::io::stderr().is_terminal(),
        quiet: args.quiet,
    };
    rt.block_on(job.run()).map_err(failure)
}

/// The exit code of a failed download, with its message.
fn failure(e: DownloadError) -> Failure {
    let code = match &e {
        DownloadError::Store { .. } | DownloadError::Changed { .. } => exit::STORE,
        DownloadError::Mismatch { .. } => exit::VERIFY,
        DownloadError::Local { .. } | DownloadError::Busy { .. } => exit::LOCAL,
        DownloadError::Interrupted { .. } => 130,
        DownloadError::Task(_) => exit::GENERIC,
    };
    Failure::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::tests::{data, job, PS};
    use crate::store::memory::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exit_codes() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("x");
        let s = MemoryStore::new();
        let e = failure(job(&s, "missing", &local).run().await.unwrap_err());
        assert_eq!(e.exit_code, exit::STORE);
        assert!(e.message.contains("oss://b/missing"), "{}", e.message);
        s.put("k", data(3 * PS as usize, 4));
        s.set_crc64("k", Some(1));
        let e = failure(job(&s, "k", &local).run().await.unwrap_err());
        assert_eq!(e.exit_code, exit::VERIFY, "{}", e.message);
        assert!(!local.exists());
        let mut j = job(&s, "k", &local);
        j.verify = false;
        j.run().await.unwrap();
        assert!(local.exists());
        // Zero bytes.
        s.put("empty", Vec::new());
        let l2 = dir.path().join("empty");
        job(&s, "empty", &l2).run().await.unwrap();
        assert_eq!(std::fs::metadata(&l2).unwrap().len(), 0);
        // Small: one GET.
        s.put("small", data(5 * PS as usize, 5));
        s.reset_counters();
        job(&s, "small", &dir.path().join("small"))
            .run()
            .await
            .unwrap();
        assert_eq!(s.counters().gets, 1);
    }
}
