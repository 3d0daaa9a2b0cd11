//! Property tests of the checkpoint decoder, which reads `<hash>.ckpt`, `.meta` sidecars
//! and `ossmount download`'s checkpoints: files a crash, a full disk or another user may
//! have damaged (issue 16). Damaged bytes get the trailing checksum fixed up, so the
//! decoder's field checks, not just its checksum, see them. No input may panic or allocate
//! beyond its own size; whatever decodes re-encodes to the same bytes.

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use super::checkpoint::{Checkpoint, Identity};
use crate::crc64;

fn sample(size: u64, part_size: u64, present: &[bool], finalized: bool) -> Checkpoint {
    let mut c = Checkpoint::new(
        Identity {
            namespace: "http://127.0.0.1:9000/b".into(),
            key: "dir/k".into(),
            etag: "\"E\"".into(),
            size,
            last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            crc64: Some(7),
            appendable: false,
            version_id: None,
        },
        part_size,
    );
    for (i, p) in c.parts.iter_mut().enumerate() {
        if finalized || present.get(i).copied().unwrap_or(false) {
            *p = Some(i as u64 * 31 + 1);
        }
    }
    c.finalized = finalized;
    c
}

/// `body` with a correct trailing CRC-64, as a damaged-but-rechecksummed file would be.
fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    let sum = crc64::checksum(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn damaged_checkpoints_are_refused_or_round_trip(
        size in prop_oneof![Just(0u64), 1u64..(4 << 20)],
        present in prop::collection::vec(any::<bool>(), 0..40),
        finalized in any::<bool>(),
        appendable in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
        fix_checksum in any::<bool>(),
    ) {
        let mut c = sample(size, 100 << 10, &present, finalized);
        c.identity.appendable = appendable;
        let mut b = c.encode();
        b.truncate(b.len() - 8);
        for (at, byte, op) in edits {
            let i = at.index(b.len().max(1)).min(b.len());
            match op {
                0 if i < b.len() => b[i] = byte,
                1 => b.insert(i, byte),
                _ if i < b.len() => { b.remove(i); }
                _ => {}
            }
        }
        let bytes = if fix_checksum { with_checksum(b) } else { b };
        if let Ok(d) = Checkpoint::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes.clone(), "decodes to something else");
            prop_assert!(d.parts.len() <= bytes.len() * 8);
        }
    }

    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256), magic in any::<bool>()) {
        let mut b = if magic { b"OSSMCKPT\x01\0\0\0".to_vec() } else { Vec::new() };
        b.extend_from_slice(&bytes);
        let b = with_checksum(b);
        let _ = Checkpoint::decode(&b);
        let _ = Checkpoint::decode(&b[..b.len() - 8]);
    }
}
