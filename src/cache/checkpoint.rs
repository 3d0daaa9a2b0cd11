//! The on-disk checkpoint: which parts of an entry's sparse data file hold verified bytes.
//!
//! Binary, little-endian, versioned, checksummed:
//!
//! ```text
//! magic    8  "OSSMCKPT"
//! version  u32 (1)
//! flags    u32 (bit 0: finalized; the same format is the `.meta` sidecar of a `.done` file;
//!          bit 1: appendable; bit 2: a version id follows the ETag)
//! namespace, key, etag: u32 length + UTF-8 bytes each
//! version id (only with flag bit 2): u32 length + UTF-8 bytes
//! size u64, last_modified secs i64 + nanos u32, part_size u64
//! object crc64: u8 present + u64
//! n_parts u64 (must equal ceil(size / part_size))
//! bitmap   ceil(n_parts / 8) bytes, bit i of byte i/8 = part i present
//! crc64    u64 for each present part, in part order
//! checksum u64: CRC-64/XZ of every byte before it
//! ```
//!
//! Why binary and not JSON like the SDKs: the checkpoint is rewritten every batch, so it
//! must stay small (8 bytes per present part plus one bit per part: a 1 GiB object in
//! 8 MiB parts checkpoints in ~1.2 KB), and a trailing CRC-64 catches every single-bit
//! flip and every truncation (the tests try them all). The magic and version come first
//! so an unknown version is reported as such instead of as corruption.
//!
//! Written with [`write_atomic`]: temp file, fsync, rename, fsync of the directory, so a
//! crash leaves either the old or the new checkpoint, never a torn one.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crc64;
use crate::store::ObjectMeta;

pub const MAGIC: [u8; 8] = *b"OSSMCKPT";
pub const VERSION: u32 = 1;
const FLAG_FINALIZED: u32 = 1;
const FLAG_APPENDABLE: u32 = 2;
/// The entry holds one named version (`download --version-id`), recorded after the ETag.
/// A flag, not a new format version: checkpoints without it read as before.
const FLAG_VERSION_ID: u32 = 4;

/// Bounds of the part size: 100 KiB to 5 GiB, the SDKs' limits.
pub const MIN_PART_SIZE: u64 = 100 << 10;
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// Which object version an entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// (endpoint, bucket), see `StoreConfig::namespace`.
    pub namespace: String,
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub last_modified: SystemTime,
    /// Whole-object CRC-64 from the store, when it sent one.
    pub crc64: Option<u64>,
    /// The object is appendable (`x-oss-object-type: Appendable`): its bytes below
    /// `size` never change while it stays so, whatever its ETag becomes (flag bit 2).
    pub appendable: bool,
    /// The version asked for by id (`download --version-id`; flag bit 2), or `None` for
    /// "the latest". Part of the identity: a resume never mixes two versions, nor a named
    /// version with the latest, even when their ETags agree.
    pub version_id: Option<String>,
}

impl Identity {
    /// The version of the object `meta` describes, in `namespace`.
    pub fn of(namespace: &str, meta: &ObjectMeta) -> Self {
        Self {
            namespace: namespace.to_string(),
            key: meta.key.clone(),
            etag: meta.etag.clone(),
            size: meta.size,
            last_modified: meta.last_modified,
            crc64: meta.crc64,
            appendable: meta.is_appendable(),
            version_id: None,
        }
    }
}

/// A decoded checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub identity: Identity,
    pub part_size: u64,
    pub finalized: bool,
    /// Per part: its CRC-64 when present.
    pub parts: Vec<Option<u64>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("truncated checkpoint")]
    Truncated,
    #[error("not a checkpoint (bad magic)")]
    BadMagic,
    #[error("unknown checkpoint version {0}")]
    UnknownVersion(u32),
    #[error("checkpoint checksum mismatch")]
    Checksum,
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
}

/// Number of parts of an object.
pub fn part_count(size: u64, part_size: u64) -> u64 {
    size.div_ceil(part_size)
}

impl Checkpoint {
    pub fn new(identity: Identity, part_size: u64) -> Self {
        let n = part_count(identity.size, part_size) as usize;
        Self {
            identity,
            part_size,
            finalized: false,
            parts: vec![None; n],
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let id = &self.identity;
        let mut b = Vec::with_capacity(
            64 + id.namespace.len() + id.key.len() + id.etag.len() + self.parts.len() * 9,
        );
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        let mut flags = if self.finalized { FLAG_FINALIZED } else { 0 };
        if self.identity.appendable {
            flags |= FLAG_APPENDABLE;
        }
        if id.version_id.is_some() {
            flags |= FLAG_VERSION_ID;
        }
        b.extend_from_slice(&flags.to_le_bytes());
        for s in [&id.namespace, &id.key, &id.etag]
            .into_iter()
            .chain(id.version_id.as_ref())
        {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        b.extend_from_slice(&id.size.to_le_bytes());
        let (secs, nanos) = match id.last_modified.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => (0i64.saturating_sub_unsigned(e.duration().as_secs()), 0),
        };
        b.extend_from_slice(&secs.to_le_bytes());
        b.extend_from_slice(&nanos.to_le_bytes());
        b.extend_from_slice(&self.part_size.to_le_bytes());
        b.push(id.crc64.is_some() as u8);
        b.extend_from_slice(&id.crc64.unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&(self.parts.len() as u64).to_le_bytes());
        let mut bitmap = vec![0u8; self.parts.len().div_ceil(8)];
        for (i, p) in self.parts.iter().enumerate() {
            if p.is_some() {
                bitmap[i / 8] |= 1 << (i % 8);
            }
        }
        b.extend_from_slice(&bitmap);
        for crc in self.parts.iter().flatten() {
            b.extend_from_slice(&crc.to_le_bytes());
        }
        let sum = crc64::checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < 12 {
            return Err(if buf.len() >= 8 && buf[..8] != MAGIC {
                DecodeError::BadMagic
            } else {
                DecodeError::Truncated
            });
        }
        if buf[..8] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u32::from_le_bytes(buf[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        if buf.len() < 20 {
            return Err(DecodeError::Truncated);
        }
        let (body, tail) = buf.split_at(buf.len() - 8);
        if crc64::checksum(body) != u64::from_le_bytes(tail.try_into().unwrap()) {
            // A truncated file almost never has a valid tail: report it as what it is.
            return Err(DecodeError::Checksum);
        }
        let mut r = Cursor { buf: body, pos: 12 };
        let flags = r.u32()?;
        if flags & !(FLAG_FINALIZED | FLAG_APPENDABLE | FLAG_VERSION_ID) != 0 {
            return Err(DecodeError::Malformed("unknown flags"));
        }
        let namespace = r.string()?;
        let key = r.string()?;
        let etag = r.string()?;
        let version_id = match flags & FLAG_VERSION_ID {
            0 => None,
            _ => Some(r.string()?),
        };
        let size = r.u64()?;
        let secs = r.u64()? as i64;
        let nanos = r.u32()?;
        if nanos >= 1_000_000_000 {
            return Err(DecodeError::Malformed("nanoseconds out of range"));
        }
        // Canonical only: encode writes a time before 1970 as whole seconds (nanos 0), so
        // any other nanos there would decode to a time that encodes differently; i64::MIN
        // is where encode saturates. Out of SystemTime's range is malformed, not a panic.
        let last_modified = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
        } else if nanos == 0 && secs != i64::MIN {
            UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
        } else {
            None
        }
        .ok_or(DecodeError::Malformed("modification time out of range"))?;
        let part_size = r.u64()?;
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(DecodeError::Malformed("part size out of range"));
        }
        let has_crc = r.u8()?;
        let crc = r.u64()?;
        let object_crc = match has_crc {
            0 if crc == 0 => None,
            1 => Some(crc),
            _ => return Err(DecodeError::Malformed("bad crc flag")),
        };
        let n = r.u64()?;
        if n != part_count(size, part_size) {
            return Err(DecodeError::Malformed("part count disagrees with size"));
        }
        let bitmap = r.bytes(n.div_ceil(8) as usize)?;
        let mut parts = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            if bitmap[i / 8] & (1 << (i % 8)) != 0 {
                parts.push(Some(r.u64()?));
            } else {
                parts.push(None);
            }
        }
        if n % 8 != 0 && bitmap[bitmap.len() - 1] >> (n % 8) != 0 {
            return Err(DecodeError::Malformed("bits set past the last part"));
        }
        if r.pos != body.len() {
            return Err(DecodeError::Malformed("trailing bytes"));
        }
        let finalized = flags & FLAG_FINALIZED != 0;
        if finalized && parts.iter().any(Option::is_none) {
            return Err(DecodeError::Malformed("finalized with parts missing"));
        }
        Ok(Self {
            identity: Identity {
                namespace,
                key,
                etag,
                size,
                last_modified,
                crc64: object_crc,
                appendable: flags & FLAG_APPENDABLE != 0,
                version_id,
            },
            part_size,
            finalized,
            parts,
        })
    }

    /// Length of part `i`.
    pub fn part_len(&self, i: usize) -> u64 {
        let start = i as u64 * self.part_size;
        (self.identity.size - start).min(self.part_size)
    }

    /// Byte range of part `i`.
    pub fn part_range(&self, i: usize) -> std::ops::Range<u64> {
        let start = i as u64 * self.part_size;
        start..start + self.part_len(i)
    }

    /// Bytes of the parts present.
    pub fn present_bytes(&self) -> u64 {
        (0..self.parts.len())
            .filter(|&i| self.parts[i].is_some())
            .map(|i| self.part_len(i))
            .sum()
    }

    /// The whole-object CRC-64 folded from the part CRCs, when every part is present.
    /// Every part but the last has `part_size` bytes: one [`crc64::Combiner`] folds them.
    pub fn combined_crc(&self) -> Option<u64> {
        let Some((first, rest)) = self.parts.split_first() else {
            return Some(0); // an empty object
        };
        let mut acc = (*first)?;
        let full = (rest.len() > 1).then(|| crc64::Combiner::new(self.part_size));
        for (i, p) in rest.iter().enumerate().map(|(i, p)| (i + 1, p)) {
            let len = self.part_len(i);
            acc = match &full {
                Some(c) if c.len_b() == len => c.combine(acc, (*p)?),
                _ => crc64::combine(acc, (*p)?, len),
            };
        }
        Some(acc)
    }
}

/// Decoding position in a checkpoint's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Malformed("field runs past the end"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).map_err(|_| DecodeError::Malformed("not UTF-8"))
    }
}

/// Replace `path` with `bytes` atomically and durably: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_in_dir(path, bytes, true)?;
    sync_dir(path)
}

/// [`write_atomic`] without the fsync of the directory, for a caller that renames more in
/// the same directory and then syncs it once (finalize: the sidecar, then the data file);
/// without any fsync unless `sync` (a syncless entry's sidecar, see `entry.rs`).
pub fn write_atomic_in_dir(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        // 0600: checkpoints and sidecars name the object (see `super::private`).
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(super::private::FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_data()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync the directory holding `path`, making a rename or unlink in it durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut c = Checkpoint::new(
            Identity {
                namespace: "http://127.0.0.1:9000/b".into(),
                key: "k".into(),
                etag: "\"E\"".into(),
                size: 300 << 10,
                last_modified: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                crc64: Some(0x0123_4567_89ab_cdef),
                appendable: false,
                version_id: None,
            },
            100 << 10,
        );
        c.parts[0] = Some(0x1111);
        c.parts[2] = Some(0x2222);
        c
    }

    #[test]
    fn round_trip() {
        let c = sample();
        assert_eq!(Checkpoint::decode(&c.encode()).unwrap(), c);
        // The appendable flag survives, and leaves the golden bytes of others alone.
        let mut a = sample();
        a.identity.appendable = true;
        let back = Checkpoint::decode(&a.encode()).unwrap();
        assert!(back.identity.appendable);
        assert_eq!(back, a);
        // So does a version id, byte for byte (it is not the ETag nor the key).
        let mut v = sample();
        v.identity.version_id =
            Some("CAEQNhiBgM0BYiIDc4MGZjZGI2OTBjOTRmNTE5NmU5NmFmZjU5ZjU5****".into());
        let bytes = v.encode();
        let back = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(back, v);
        assert_ne!(bytes, sample().encode());
        v.identity.version_id = Some(String::new());
        assert_eq!(Checkpoint::decode(&v.encode()).unwrap(), v);
        let mut f = c.clone();
        f.parts[1] = Some(7);
        f.finalized = true;
        f.identity.crc64 = None;
        assert_eq!(Checkpoint::decode(&f.encode()).unwrap(), f);
        let empty = Checkpoint::new(
            Identity {
                size: 0,
                ..c.identity.clone()
            },
            MIN_PART_SIZE,
        );
        assert_eq!(Checkpoint::decode(&empty.encode()).unwrap(), empty);
    }

    /// The modification time decodes only in the form encode writes it: a time before
    /// 1970 with nanoseconds (encode writes 0) or seconds out of SystemTime's range are
    /// malformed, not a different checkpoint or a panic (found by the proptest).
    #[test]
    fn times_are_canonical_and_in_range() {
        let mut c = sample();
        c.identity.last_modified = UNIX_EPOCH - Duration::from_secs(1_000);
        let good = c.encode();
        assert_eq!(Checkpoint::decode(&good).unwrap(), c);
        // secs (i64) and nanos (u32) follow the key, namespace and ETag strings and size.
        let at = 12 + 4 + (4 + 23) + (4 + 1) + (4 + 3) + 8;
        assert_eq!(&good[at..at + 8], &(-1_000i64).to_le_bytes());
        let redo = |secs: i64, nanos: u32| {
            let mut b = good[..good.len() - 8].to_vec();
            b[at..at + 8].copy_from_slice(&secs.to_le_bytes());
            b[at + 8..at + 12].copy_from_slice(&nanos.to_le_bytes());
            let sum = crc64::checksum(&b);
            b.extend_from_slice(&sum.to_le_bytes());
            Checkpoint::decode(&b)
        };
        assert!(redo(-1_000, 0).is_ok());
        for (secs, nanos) in [(-1_000, 1), (i64::MIN, 0)] {
            assert_eq!(
                redo(secs, nanos),
                Err(DecodeError::Malformed("modification time out of range")),
                "{secs} {nanos}"
            );
        }
    }

    /// Pins the format: a change here is a format change and needs a new VERSION.
    #[test]
    fn golden_bytes() {
        let hex = hex::encode(sample().encode());
        assert_eq!(
            hex,
            concat!(
                "4f53534d434b5054",
                "01000000",
                "00000000",
                "17000000",
                "687474703a2f2f3132372e302e302e313a393030302f62",
                "01000000",
                "6b",
                "03000000",
                "224522",
                "00b0040000000000",
                "00f1536500000000",
                "00000000",
                "0090010000000000",
                "01",
                "efcdab8967452301",
                "0300000000000000",
                "05",
                "1111000000000000",
                "2222000000000000",
                "537b54b421cdcb2a"
            )
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_rejected() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                Checkpoint::decode(&bytes[..len]).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(Checkpoint::decode(&b).is_err(), "flip byte {i} bit {bit}");
            }
        }
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert_eq!(Checkpoint::decode(&v2), Err(DecodeError::UnknownVersion(2)));
    }

    #[test]
    fn part_crcs_combine_to_the_object_crc() {
        let data: Vec<u8> = (0..1_000_003u32)
            .map(|i| i.wrapping_mul(2_654_435_761) as u8)
            .collect();
        let mut c = Checkpoint::new(
            Identity {
                size: data.len() as u64,
                ..sample().identity
            },
            MIN_PART_SIZE,
        );
        assert_eq!(c.combined_crc(), None);
        for (i, chunk) in data.chunks(MIN_PART_SIZE as usize).enumerate() {
            c.parts[i] = Some(crc64::checksum(chunk));
        }
        assert_eq!(c.combined_crc(), Some(crc64::checksum(&data)));
    }
}
