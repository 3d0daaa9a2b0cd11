//! Every FUSE request that waits on the network has an overall deadline
//! (`--request-deadline`, [`super::tree::FsConfig::request_deadline`]); past it the request
//! answers EIO and says so in the log.
//!
//! Why: a FUSE request that never returns leaves its process in D state (unkillable, even
//! by `kill -9`) and `umount` hanging. The store layer bounds each attempt (connect 10 s,
//! 30 s of silence, a minimum rate) and the number of attempts, but not their sum: eight
//! attempts that each stall just under the read timeout are minutes. The deadline is the
//! one bound a reader can count on, whatever the server does.
//!
//! A directory listing counts the deadline per page (src/fs/tree/listing.rs): a listing of
//! 100,000 keys is 100 pages and may rightly outlast one deadline while each page shows
//! progress.
//!
//! When the deadline fires, the future is dropped: a lookup's or open's HTTP request is
//! cancelled; a read stops waiting, while the part fetch it joined keeps its own retry
//! budget and still fills the cache for the next reader.

use std::future::Future;
use std::time::Duration;

use super::error::FsError;

/// `fut`, or [`FsError::Deadline`] once `deadline` has passed. `what` names the request
/// for the log line (`lookup of "name"`, `read of inode 7`).
pub async fn within<T>(
    deadline: Duration,
    what: impl FnOnce() -> String,
    fut: impl Future<Output = Result<T, FsError>>,
) -> Result<T, FsError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(FsError::Deadline {
            what: what(),
            after: deadline,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_never_ends_is_cut_at_the_deadline() {
        let never = std::future::pending::<Result<(), FsError>>();
        let t = tokio::time::Instant::now();
        let e = within(
            Duration::from_millis(200),
            || "lookup of \"x\"".into(),
            never,
        )
        .await
        .unwrap_err();
        assert!(t.elapsed() >= Duration::from_millis(200));
        assert!(
            matches!(&e, FsError::Deadline { what, .. } if what == "lookup of \"x\""),
            "{e}"
        );
        assert!(e.to_string().contains("200ms"), "{e}");
        let quick = async { Ok::<_, FsError>(7) };
        assert_eq!(
            within(Duration::from_secs(1), String::new, quick)
                .await
                .unwrap(),
            7
        );
    }
}
