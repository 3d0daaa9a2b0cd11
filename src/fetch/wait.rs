//! The per-part channels: how the fetch of a part tells its readers where its bytes are
//! (arriving, complete, on disk, in memory only, or failed), and the ways a reader waits
//! on them. One channel per part in flight, shared by all of its readers, so a part is
//! fetched once however many wait for it; the engine keeps them by part.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::handle::ReadError;
use crate::cache::partbuf::{PartBuf, PartView};
use crate::store::StoreError;

/// How a part reaches its readers. A part's channel says [`Self::Receiving`] while its
/// bytes arrive (a reader takes what it needs as soon as that has arrived), then
/// [`Self::Writing`] (complete), then [`Self::OnDisk`] or [`Self::Unwritten`].
#[derive(Clone, Debug)]
pub enum PartData {
    /// Being received: the bytes so far can be read.
    Receiving(PartView),
    /// Received and being written to the data file.
    Writing(Bytes),
    /// In the data file (and marked present).
    OnDisk,
    /// Only in memory: the cache could not write it (disk full, budget exhausted).
    Unwritten(Bytes),
}

impl PartData {
    /// The bytes, when the part is (also) in memory.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            PartData::Writing(b) | PartData::Unwritten(b) => Some(b),
            PartData::OnDisk | PartData::Receiving(_) => None,
        }
    }
}

/// Why a fetch of a part failed, cloneable so every waiter gets it.
#[derive(Clone, Debug)]
pub enum PartFail {
    Stale,
    Store(Arc<StoreError>),
    Io(io::ErrorKind, String),
}

pub type PartResult = Result<PartData, PartFail>;
pub type PartWatch = watch::Receiver<Option<PartResult>>;

/// The channel a part's fetch reports on.
pub type PartTx = watch::Sender<Option<PartResult>>;

/// Tell a part's readers it is arriving and where to find its bytes so far.
pub fn receiving(tx: &PartTx, buf: &PartBuf) {
    let _ = tx.send(Some(Ok(PartData::Receiving(buf.view()))));
}

/// Wait until a part's fetch is over: written to the data file, kept in memory only, or
/// failed.
pub async fn wait_written(mut rx: PartWatch) -> PartResult {
    let done = |v: &Option<PartResult>| {
        !matches!(
            v,
            None | Some(Ok(PartData::Receiving(_) | PartData::Writing(_)))
        )
    };
    match rx.wait_for(done).await {
        Ok(v) => v.clone().unwrap(),
        Err(_) => Err(fetch_gone()),
    }
}

/// Bytes of one part in hand for a read: `bytes` are the part's bytes from `base` on.
pub struct Held {
    pub part: usize,
    pub base: usize,
    pub bytes: Bytes,
}

impl Held {
    pub fn from(part: usize, base: usize, bytes: Bytes) -> Self {
        Self { part, base, bytes }
    }
}

/// What [`wait_bytes`] would return at once when that is a success, else `None`.
pub fn bytes_now(
    part: usize,
    rx: &PartWatch,
    need: &std::ops::Range<usize>,
) -> Option<Option<Held>> {
    match &*rx.borrow() {
        None | Some(Err(_)) => None,
        Some(Ok(PartData::Receiving(r))) => r
            .window(need.clone())
            .map(|bytes| Some(Held::from(part, need.start, bytes))),
        Some(Ok(data)) => Some(data.bytes().map(|b| Held::from(part, 0, b.clone()))),
    }
}

/// Wait until bytes `need` of part `part` can be read: the bytes holding them when they
/// are in memory, `None` when the part is on disk.
pub async fn wait_bytes(
    part: usize,
    mut rx: PartWatch,
    need: std::ops::Range<usize>,
) -> Result<Option<Held>, PartFail> {
    loop {
        let now = rx.borrow_and_update().clone();
        match now {
            None => {}
            Some(Err(f)) => return Err(f),
            Some(Ok(PartData::Receiving(r))) => {
                let grown = r.grown();
                if let Some(bytes) = r.window(need.clone()) {
                    return Ok(Some(Held::from(part, need.start, bytes)));
                }
                tokio::select! {
                    _ = grown => continue,
                    changed = rx.changed() => {
                        changed.map_err(|_| fetch_gone())?;
                        continue;
                    }
                }
            }
            Some(Ok(data)) => return Ok(data.bytes().map(|b| Held::from(part, 0, b.clone()))),
        }
        rx.changed().await.map_err(|_| fetch_gone())?;
    }
}

/// The fetch of a part ended (its channel closed) without saying how.
fn fetch_gone() -> PartFail {
    PartFail::Io(
        io::ErrorKind::Other,
        "part fetch ended without a result".into(),
    )
}

impl From<PartFail> for ReadError {
    fn from(f: PartFail) -> Self {
        match f {
            PartFail::Stale => ReadError::Stale,
            PartFail::Store(e) => ReadError::Store((*e).clone()),
            PartFail::Io(kind, msg) => ReadError::Io(io::Error::new(kind, msg)),
        }
    }
}
