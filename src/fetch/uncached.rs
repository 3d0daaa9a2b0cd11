//! Reads that bypass the part cache (`--no-cache`, and the tree's tests): one ranged GET per
//! read, `If-Match` the ETag seen at open, no read-ahead, nothing kept. They receive their
//! body with the same [`receive_range`] as the cache's requests, so both paths agree on what
//! a complete body is and on what a refused `If-Match` means.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::handle::ReadError;
use crate::store::{ObjectMeta, ObjectStore, StoreError};

/// One ranged GET of `range` of `key` with `If-Match: etag`, its body handed to `sink` piece
/// by piece: exactly the bytes of `range` (anything past its end is ignored), or an error. A
/// body that ends early is a [`StoreError::Protocol`] error naming the byte it ended at.
///
/// `appendable_len`: the object was appendable with this many bytes when the reader
/// learned of it. An append changes the ETag but no byte below that length, so a refused
/// `If-Match` is not the end there: when a HEAD shows the object still appendable and at
/// least that long, the range is asked again under the new ETag (one HEAD and one GET
/// more per request after an append). An object that shrank or is no longer appendable
/// was replaced: the 412 stands. (Deleting it and appending at least as many other bytes
/// under the same key, between two requests of one reader, cannot be told from an
/// append by any header; the whole-object CRC-64 at finalize still catches it.)
pub(super) async fn receive_range(
    store: &dyn ObjectStore,
    key: &str,
    etag: &str,
    appendable_len: Option<u64>,
    range: std::ops::Range<u64>,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), StoreError> {
    let mut stream = match store.get_range(key, range.clone(), Some(etag)).await {
        Err(StoreError::PreconditionFailed(e)) if appendable_len.is_some() => {
            let known = appendable_len.unwrap_or_default();
            let now = store.head(key).await?;
            if !(now.is_appendable() && now.size >= known) {
                return Err(StoreError::PreconditionFailed(e));
            }
            tracing::debug!(
                key,
                known,
                now = now.size,
                "appended since the reader's ETag; bytes below {known} are unchanged"
            );
            store.get_range(key, range.clone(), Some(&now.etag)).await?
        }
        other => other?,
    };
    let mut pos = range.start;
    while pos < range.end {
        let chunk = match stream.next().await {
            Some(chunk) => chunk?,
            None => {
                return Err(StoreError::Protocol(format!(
                    "body of {key} ended at byte {pos}, expected {}",
                    range.end
                )))
            }
        };
        let take = ((range.end - pos) as usize).min(chunk.len());
        sink(&chunk[..take]);
        pos += take as u64;
    }
    Ok(())
}

/// Up to `len` bytes of `meta`'s object at `offset`, straight from the store; shorter only
/// at the end of the object. A 412 or 404 means the version seen at open is gone:
/// [`ReadError::Stale`], as for a cached read.
pub async fn read_uncached(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    offset: u64,
    len: usize,
) -> Result<Bytes, ReadError> {
    let end = offset.saturating_add(len as u64).min(meta.size);
    if offset >= end {
        return Ok(Bytes::new());
    }
    let mut buf = BytesMut::with_capacity((end - offset) as usize);
    let appendable_len = meta.is_appendable().then_some(meta.size);
    match receive_range(
        store,
        &meta.key,
        &meta.etag,
        appendable_len,
        offset..end,
        |b| buf.extend_from_slice(b),
    )
    .await
    {
        Ok(()) => Ok(buf.freeze()),
        Err(StoreError::PreconditionFailed(_) | StoreError::NoSuchKey(_)) => Err(ReadError::Stale),
        Err(e) => Err(ReadError::Store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn reads_exact_ranges_of_the_version_seen_and_nothing_of_another() {
        let s = MemoryStore::new();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let meta = s.put("k", data.clone());
        let read = |off, len| read_uncached(&s, &meta, off, len);
        assert_eq!(&read(100, 50).await.unwrap()[..], &data[100..150]);
        // Short only at the end; nothing past it.
        assert_eq!(&read(9_990, 50).await.unwrap()[..], &data[9_990..]);
        assert!(read(10_000, 50).await.unwrap().is_empty());
        // A body cut short is an error, not a short read.
        s.break_bodies_after(10, Some(1));
        assert!(matches!(
            read(0, 1000).await,
            Err(ReadError::Store(
                StoreError::Protocol(_) | StoreError::Network(_)
            ))
        ));
        s.clear_faults();
        // Replaced (another ETag: 412), then deleted (404): the version seen is gone.
        s.put("k", vec![1u8; 10_000]);
        assert!(matches!(read(0, 10).await, Err(ReadError::Stale)));
        s.remove("k");
        assert!(matches!(read(0, 10).await, Err(ReadError::Stale)));
    }
}
