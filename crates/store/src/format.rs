//! The shard format: identifiers and the self-describing shard header.
//!
//! Frozen with format version 1; see `docs/store-format.md`. Do not change
//! any constant or offset here without a new format version: users' shards
//! on disk are written in it.

use std::fmt;

/// First bytes of every shard. Do not change.
pub const SHARD_MAGIC: [u8; 4] = *b"CSSH";
/// The format version this code writes. Do not change.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of the shard header. Do not change.
pub const HEADER_LEN: usize = 48;
/// The most data plus parity shards per chunk.
pub const MAX_SHARDS: usize = 32;
/// The largest chunk payload a header can describe (64 MiB + GCM tag).
pub const MAX_PAYLOAD: usize = (64 << 20) + 16;

/// Header flag: the chunk payload is AES-256-GCM ciphertext.
pub const FLAG_ENCRYPTED: u8 = 1;

/// A file's identity: 16 random bytes, never reused.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FileId(pub [u8; 16]);

impl FileId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Which shard: file, chunk and index (0..k data, k..k+m parity).
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize,
)]
pub struct ShardKey {
    /// The file.
    pub file_id: FileId,
    /// The chunk, from 0.
    pub chunk: u64,
    /// The shard within the chunk.
    pub index: u8,
}

impl ShardKey {
    /// A name safe for file systems and URLs: `FILEID-CHUNK-INDEX` in hex.
    pub fn name(&self) -> String {
        format!(
            "{}-{:016x}-{:02x}",
            self.file_id.hex(),
            self.chunk,
            self.index
        )
    }

    /// The key as 25 bytes: file id, chunk (u64 big-endian, so bytes sort like
    /// keys), index.
    pub fn to_bytes(&self) -> [u8; 25] {
        let mut b = [0u8; 25];
        b[..16].copy_from_slice(&self.file_id.0);
        b[16..24].copy_from_slice(&self.chunk.to_be_bytes());
        b[24] = self.index;
        b
    }

    /// Parses [`ShardKey::to_bytes`].
    pub fn from_bytes(b: &[u8; 25]) -> Self {
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&b[..16]);
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&b[16..24]);
        Self {
            file_id: FileId(file_id),
            chunk: u64::from_be_bytes(chunk),
            index: b[24],
        }
    }

    /// Parses [`ShardKey::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        let mut parts = s.split('-');
        let file_id = FileId::from_hex(parts.next()?)?;
        let chunk = parts.next().filter(|p| p.len() == 16)?;
        let index = parts.next().filter(|p| p.len() == 2)?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            file_id,
            chunk: u64::from_str_radix(chunk, 16).ok()?,
            index: u8::from_str_radix(index, 16).ok()?,
        })
    }
}

/// The header at the start of every shard (little-endian):
///
/// ```text
/// 0  magic "CSSH"       4   file_id            16
/// 4  version            1  24   chunk index  u64  8
/// 5  flags              1  32   shard index  u8   1
/// 6  k (data shards)    1  33   reserved, zero    3
/// 7  m (parity shards)  1  36   payload_len  u32  4
/// 8  file_id           16  40   shard_len    u32  4
///                          44   reserved, zero    4
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ShardHeader {
    /// Flags ([`FLAG_ENCRYPTED`]).
    pub flags: u8,
    /// Data shards per chunk.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
    /// Which shard this is.
    pub key: ShardKey,
    /// Bytes of the chunk's payload (ciphertext with tag) before padding.
    pub payload_len: u32,
    /// Bytes of shard data after the header.
    pub shard_len: u32,
}

/// Why bytes are not a shard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer bytes than a header.
    #[error("shard is {0} bytes, shorter than its header")]
    Truncated(usize),
    /// Not our magic.
    #[error("not a shard (bad magic)")]
    BadMagic,
    /// A newer (or unknown) format.
    #[error(
        "shard format version {0} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u8),
    /// Fields that cannot belong together.
    #[error("inconsistent shard header: {0}")]
    Inconsistent(&'static str),
}

impl ShardHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&SHARD_MAGIC);
        b[4] = FORMAT_VERSION;
        b[5] = self.flags;
        b[6] = self.k;
        b[7] = self.m;
        b[8..24].copy_from_slice(&self.key.file_id.0);
        b[24..32].copy_from_slice(&self.key.chunk.to_le_bytes());
        b[32] = self.key.index;
        b[36..40].copy_from_slice(&self.payload_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.shard_len.to_le_bytes());
        b
    }

    /// Parses and checks a header; `blob` may hold the shard data after it.
    pub fn decode(blob: &[u8]) -> Result<Self, HeaderError> {
        let b = blob
            .get(..HEADER_LEN)
            .ok_or(HeaderError::Truncated(blob.len()))?;
        if b[0..4] != SHARD_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if b[4] != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(b[4]));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&b[8..24]);
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&b[24..32]);
        let h = Self {
            flags: b[5],
            k: b[6],
            m: b[7],
            key: ShardKey {
                file_id: FileId(file_id),
                chunk: u64::from_le_bytes(chunk),
                index: b[32],
            },
            payload_len: u32_at(36),
            shard_len: u32_at(40),
        };
        if b[33..36] != [0; 3] || b[44..48] != [0; 4] || h.flags & !FLAG_ENCRYPTED != 0 {
            return Err(HeaderError::Inconsistent("reserved bits are set"));
        }
        if h.k == 0 || usize::from(h.k) + usize::from(h.m) > MAX_SHARDS {
            return Err(HeaderError::Inconsistent("k and m out of range"));
        }
        if h.key.index >= h.k + h.m {
            return Err(HeaderError::Inconsistent("shard index past k + m"));
        }
        if h.payload_len as usize > MAX_PAYLOAD {
            return Err(HeaderError::Inconsistent("payload too long"));
        }
        if h.shard_len as usize != shard_len(h.payload_len as usize, usize::from(h.k)) {
            return Err(HeaderError::Inconsistent(
                "shard length does not fit the payload",
            ));
        }
        Ok(h)
    }
}

/// Bytes per shard for a payload split `k` ways: rounded up to an even
/// number (`reed-solomon-simd` works on pairs of bytes), at least 2.
pub fn shard_len(payload_len: usize, k: usize) -> usize {
    let per = payload_len.div_ceil(k.max(1));
    (per + per % 2).max(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ShardHeader {
        ShardHeader {
            flags: FLAG_ENCRYPTED,
            k: 6,
            m: 3,
            key: ShardKey {
                file_id: FileId([7; 16]),
                chunk: 0x0102_0304_0506_0708,
                index: 8,
            },
            payload_len: 1_048_592,
            shard_len: shard_len(1_048_592, 6) as u32,
        }
    }

    /// The byte layout is frozen: this fixture must never change.
    #[test]
    fn header_bytes_are_frozen() {
        let b = header().encode();
        assert_eq!(
            hex::encode(b),
            "43535348010106030707070707070707070707070707070708070605040302010800000010001000 aeaa0200 00000000"
                .replace(' ', "")
        );
        assert_eq!(ShardHeader::decode(&b).unwrap(), header());
    }

    #[test]
    fn bad_headers_are_errors() {
        let good = header().encode();
        assert_eq!(
            ShardHeader::decode(&good[..10]),
            Err(HeaderError::Truncated(10))
        );
        let mut b = good;
        b[0] = b'X';
        assert_eq!(ShardHeader::decode(&b), Err(HeaderError::BadMagic));
        let mut b = good;
        b[4] = 2;
        assert_eq!(
            ShardHeader::decode(&b),
            Err(HeaderError::UnsupportedVersion(2))
        );
        for (at, v) in [(6, 0u8), (6, 30), (32, 9), (33, 1), (5, 2), (40, 1)] {
            let mut b = good;
            b[at] = v;
            assert!(
                matches!(ShardHeader::decode(&b), Err(HeaderError::Inconsistent(_))),
                "byte {at} = {v}"
            );
        }
    }

    #[test]
    fn shard_keys_name_round_trip() {
        let k = header().key;
        assert_eq!(ShardKey::from_name(&k.name()), Some(k));
        assert_eq!(ShardKey::from_bytes(&k.to_bytes()), k);
        assert_eq!(ShardKey::from_name("x"), None);
        assert_eq!(ShardKey::from_name(&format!("{}-x", k.name())), None);
    }

    #[test]
    fn shard_lengths_are_even_and_cover_the_payload() {
        for len in [0usize, 1, 5, 6, 7, 1 << 20, (1 << 20) + 16] {
            for k in 1..=16 {
                let s = shard_len(len, k);
                assert!(s.is_multiple_of(2) && s >= 2 && s * k >= len, "{len} {k}");
            }
        }
    }
}
