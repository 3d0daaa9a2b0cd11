//! What can go wrong inside the filesystem core, typed by what the user should see.
//!
//! The core never names an errno: it returns [`FsError`], and the FUSE adapter turns it into
//! one with a single function (`fs::adapter::to_errno`), the only place that mapping lives.
//! Store errors are sorted here once, by what they mean for a file operation: a missing key
//! is "not found", a refused signature or an archived object is "access denied" with the
//! reason kept for the log line, a failed `If-Match` is "stale", and everything that was
//! already retried by the store (network, 5xx, throttling) is an I/O error.

use crate::cache::CacheError;
use crate::fetch::ReadError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    /// Any attempt to change the mount: it is read-only by design.
    #[error("read-only file system")]
    ReadOnly,
    #[error("file name too long")]
    NameTooLong,
    /// What objects do not have (holes to seek, polling). Answered with ENOSYS, which the
    /// kernel remembers for the rest of the mount and then answers itself: the whole file
    /// as data for SEEK_DATA/SEEK_HOLE, "always ready" for poll.
    #[error("not implemented by an object store")]
    NotImplemented,
    /// An ioctl: a file of the mount is no terminal or device (ENOTTY, as for any regular
    /// file; `isatty` asks this of every file Python opens).
    #[error("no ioctls on objects")]
    NoIoctl,
    /// An extended attribute the file does not have (ENODATA).
    #[error("no such extended attribute")]
    NoXattr,
    /// The caller's buffer is too small for the extended attribute (ERANGE).
    #[error("extended attribute buffer too small")]
    XattrRange,
    /// `readlink` of something that is not a symbolic link.
    #[error("not a symbolic link")]
    NotSymlink,
    #[error("unknown file handle {0}")]
    BadHandle(u64),
    /// Credentials refused or the object's ACL forbids reading it.
    #[error("access denied by the store: {0}")]
    AccessDenied(String),
    /// Archive / ColdArchive objects must be restored before they can be read.
    #[error("archived object not readable: {0}")]
    Archived(String),
    /// The object changed on the server under an open handle (ETag mismatch).
    #[error("object changed on the server")]
    Stale,
    /// A store failure that survived the store's retries (network, 5xx, throttling).
    #[error("store: {0}")]
    Store(StoreError),
    /// No answer within `--request-deadline` (see `fs::deadline`).
    #[error(
        "{what}: no answer from the store within the request deadline ({after:?}); answering EIO"
    )]
    Deadline {
        what: String,
        after: std::time::Duration,
    },
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchKey(_) => FsError::NotFound,
            StoreError::AccessDenied(_)
            | StoreError::InvalidAccessKeyId(_)
            | StoreError::SignatureDoesNotMatch(_)
            | StoreError::RequestTimeTooSkewed(_) => FsError::AccessDenied(e.to_string()),
            StoreError::InvalidObjectState(_) => FsError::Archived(e.to_string()),
            StoreError::PreconditionFailed(_) => FsError::Stale,
            other => FsError::Store(other),
        }
    }
}

impl From<ReadError> for FsError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Stale => FsError::Stale,
            ReadError::Store(s) => s.into(),
            ReadError::Io(io) => FsError::Io(io),
        }
    }
}
