//! How much of one object version the cache holds, asked without opening an entry (no
//! file is created, no other version is dropped): for the mount's extended attributes,
//! so a user can see whether reading a 50 GiB file will touch the network.
//!
//! An entry open in this process answers from memory; otherwise the finalized entry's
//! sidecar or the partial entry's checkpoint is read (one small file) and counts only
//! when it is for the same ETag and size.

use std::fs;

use super::checkpoint::Checkpoint;
use super::{paths_for, PartCache};
use crate::store::ObjectMeta;

/// What the cache holds of one object version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Bytes of the object present and verified part by part.
    pub bytes: u64,
    /// The whole object is verified (CRC-64 when known) and kept as a plain file.
    pub finalized: bool,
}

impl PartCache {
    /// What the cache holds of `meta`'s version of its object.
    pub fn held(&self, meta: &ObjectMeta) -> Held {
        let name = Self::entry_name(&self.namespace, &meta.key);
        let same = |etag: &str, size: u64| etag == meta.etag && size == meta.size;
        if let Some(e) = self.index.lock().open.get(&name).cloned() {
            if same(&e.identity.etag, e.identity.size) && e.dead().is_none() {
                return Held {
                    bytes: if e.is_finalized() {
                        meta.size
                    } else {
                        e.present_bytes()
                    },
                    finalized: e.is_finalized(),
                };
            }
        }
        let paths = paths_for(&self.config.dir, &name);
        let record = |p: &std::path::Path| {
            fs::read(p)
                .ok()
                .and_then(|b| Checkpoint::decode(&b).ok())
                .filter(|c| same(&c.identity.etag, c.identity.size))
        };
        if paths.done.exists() {
            if let Some(_c) = paths.meta.as_deref().and_then(record) {
                return Held {
                    bytes: meta.size,
                    finalized: true,
                };
            }
        }
        match record(&paths.ckpt) {
            Some(c) => Held {
                bytes: c.present_bytes(),
                finalized: false,
            },
            None => Held::default(),
        }
    }
}
