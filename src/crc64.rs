//! CRC-64/XZ, the checksum OSS reports in `x-oss-hash-crc64ecma`.
//!
//! A thin wrapper over `crc-fast` (SIMD, several GB/s per core, with combine), so the rest
//! of the code names one algorithm and cannot pick the wrong one of its dozen variants.

use crc_fast::{CrcAlgorithm, Digest};

const ALG: CrcAlgorithm = CrcAlgorithm::Crc64Xz;

/// CRC of one buffer.
pub fn checksum(data: &[u8]) -> u64 {
    crc_fast::checksum(ALG, data)
}

/// `crc(A || B)` from `crc(A)`, `crc(B)` and `len(B)`: folds per-part CRCs, in offset order,
/// into the whole-object CRC without reading the data again.
pub fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    crc_fast::checksum_combine(ALG, crc_a, crc_b, len_b)
}

/// Incremental CRC over a stream of chunks.
#[derive(Clone)]
pub struct Hasher(Digest);

impl Default for Hasher {
    fn default() -> Self {
        Self(Digest::new(ALG))
    }
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    pub fn finish(&self) -> u64 {
        self.0.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_and_combine() {
        assert_eq!(checksum(b"123456789"), 0x995d_c9bb_df19_39fa);
        assert_eq!(checksum(b""), 0);
        let (a, b) = (
            &b"123456789"[..],
            &b"This is a test of the emergency broadcast system."[..],
        );
        assert_eq!(
            combine(checksum(a), checksum(b), b.len() as u64),
            0x6a7a_a19f_cbf4_8688
        );
        assert_eq!(combine(checksum(a), 0, 0), checksum(a));
        let mut h = Hasher::default();
        h.update(a);
        h.update(b);
        assert_eq!(h.finish(), 0x6a7a_a19f_cbf4_8688);
    }
}
