//! Reed-Solomon coding of one chunk's payload into k data and m parity
//! shards (`reed-solomon-simd`), and back from any k of them.
//!
//! The payload is zero-padded to `k * shard_len` ([`shard_len`]) and cut
//! into k data shards in order, so with every data shard present decoding
//! is a concatenation.

use crate::format::{HEADER_LEN, MAX_SHARDS, shard_len};

/// Why coding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodingError {
    /// k and m outside what the store supports.
    #[error("unsupported redundancy {k}+{m}: need k >= 1, m >= 0 and k + m <= {MAX_SHARDS}")]
    Unsupported {
        /// Data shards.
        k: usize,
        /// Parity shards.
        m: usize,
    },
    /// Fewer than k usable shards.
    #[error("only {have} of the {k} shards needed are available")]
    TooFewShards {
        /// Usable shards.
        have: usize,
        /// Needed.
        k: usize,
    },
    /// A shard of the wrong size was given.
    #[error("shard of {got} bytes where {want} were expected")]
    ShardSize {
        /// Given.
        got: usize,
        /// Expected.
        want: usize,
    },
    /// The coding library refused (should not happen with checked input).
    #[error("reed-solomon: {0}")]
    Library(String),
}

/// Shards behind their headers, as stored, and the BLAKE3 of each.
pub type Framed = (Vec<Vec<u8>>, Vec<[u8; 32]>);

/// k data + m parity shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coding {
    k: usize,
    m: usize,
}

impl Coding {
    /// Checks the parameters.
    pub fn new(k: usize, m: usize) -> Result<Self, CodingError> {
        if k == 0 || k + m > MAX_SHARDS {
            return Err(CodingError::Unsupported { k, m });
        }
        Ok(Self { k, m })
    }

    /// Data shards.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Parity shards.
    pub fn m(&self) -> usize {
        self.m
    }

    /// All shards.
    pub fn n(&self) -> usize {
        self.k + self.m
    }

    /// Cuts `payload` into k data shards and computes m parity shards.
    pub fn encode(&self, payload: &[u8]) -> Result<Vec<Vec<u8>>, CodingError> {
        let len = shard_len(payload.len(), self.k);
        let mut shards: Vec<Vec<u8>> = (0..self.k)
            .map(|i| {
                let start = (i * len).min(payload.len());
                let end = ((i + 1) * len).min(payload.len());
                let mut s = Vec::with_capacity(len);
                s.extend_from_slice(&payload[start..end]);
                s.resize(len, 0);
                s
            })
            .collect();
        if self.m > 0 {
            let parity = reed_solomon_simd::encode(self.k, self.m, &shards)
                .map_err(|e| CodingError::Library(e.to_string()))?;
            shards.extend(parity);
        }
        Ok(shards)
    }

    /// Like [`Coding::encode`], but each shard comes behind its header in
    /// one buffer, as stored, with the BLAKE3 of that buffer: the payload
    /// is copied once, into place, parity is computed from the data shards
    /// where they lie, and each buffer is hashed as soon as it is complete
    /// (while it is still in cache, rather than in a pass of its own).
    pub fn encode_framed(
        &self,
        payload: &[u8],
        header: impl Fn(usize) -> [u8; HEADER_LEN],
    ) -> Result<Framed, CodingError> {
        self.encode_framed_in(payload, header, Vec::with_capacity)
    }

    /// [`Coding::encode_framed`] into buffers from `buffer` (given the
    /// bytes each must hold; they come back empty or not, and are filled
    /// from the start).
    pub(crate) fn encode_framed_in(
        &self,
        payload: &[u8],
        header: impl Fn(usize) -> [u8; HEADER_LEN],
        mut buffer: impl FnMut(usize) -> Vec<u8>,
    ) -> Result<Framed, CodingError> {
        let len = shard_len(payload.len(), self.k);
        let mut blobs: Vec<Vec<u8>> = (0..self.n())
            .map(|i| {
                let mut b = buffer(HEADER_LEN + len);
                b.clear();
                b.extend_from_slice(&header(i));
                b
            })
            .collect();
        for (i, blob) in blobs.iter_mut().take(self.k).enumerate() {
            let start = (i * len).min(payload.len());
            let end = ((i + 1) * len).min(payload.len());
            blob.extend_from_slice(&payload[start..end]);
            blob.resize(HEADER_LEN + len, 0);
        }
        let mut hashes: Vec<[u8; 32]> = blobs[..self.k]
            .iter()
            .map(|b| *blake3::hash(b).as_bytes())
            .collect();
        if self.m > 0 {
            with_coder(&ENCODERS, self.k, self.m, len, |encoder| {
                for blob in &blobs[..self.k] {
                    encoder.add_original_shard(&blob[HEADER_LEN..])?;
                }
                let result = encoder.encode()?;
                for (blob, parity) in blobs[self.k..].iter_mut().zip(result.recovery_iter()) {
                    blob.extend_from_slice(parity);
                    hashes.push(*blake3::hash(blob).as_bytes());
                }
                Ok(())
            })?;
        }
        Ok((blobs, hashes))
    }

    /// Rebuilds the payload of `payload_len` bytes from the shards present
    /// (`shards[i]` is shard i, `None` when missing or corrupt). Each data
    /// shard is copied once, into the payload: straight from what was
    /// received, or from the decoder's working space for a restored one.
    pub fn decode<S: AsRef<[u8]>>(
        &self,
        shards: &[Option<S>],
        payload_len: usize,
    ) -> Result<Vec<u8>, CodingError> {
        let mut out = Vec::with_capacity(payload_len);
        self.each_data_shard(shards, payload_len, |s| {
            let take = (payload_len - out.len()).min(s.len());
            out.extend_from_slice(&s[..take]);
        })?;
        Ok(out)
    }

    /// All k data shards, restoring missing ones from parity.
    pub fn data_shards<S: AsRef<[u8]>>(
        &self,
        shards: &[Option<S>],
        payload_len: usize,
    ) -> Result<Vec<Vec<u8>>, CodingError> {
        let mut data = Vec::with_capacity(self.k);
        self.each_data_shard(shards, payload_len, |s| data.push(s.to_vec()))?;
        Ok(data)
    }

    /// Calls `each` with data shards 0 to k - 1 in order, restoring the
    /// missing ones (a healthy set needs no decoder at all).
    fn each_data_shard<S: AsRef<[u8]>>(
        &self,
        shards: &[Option<S>],
        payload_len: usize,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), CodingError> {
        let present = shards.iter().take(self.n()).filter(|s| s.is_some()).count();
        if present < self.k {
            return Err(CodingError::TooFewShards {
                have: present,
                k: self.k,
            });
        }
        self.check_sizes(shards, payload_len)?;
        let data = |i: usize| shards.get(i).and_then(Option::as_ref);
        if (0..self.k).all(|i| data(i).is_some()) {
            (0..self.k).filter_map(data).for_each(|s| each(s.as_ref()));
            return Ok(());
        }
        let len = shard_len(payload_len, self.k);
        with_coder(&DECODERS, self.k, self.m, len, |decoder| {
            for i in 0..self.k {
                if let Some(s) = data(i) {
                    decoder.add_original_shard(i, s.as_ref())?;
                }
            }
            for j in 0..self.m {
                if let Some(s) = data(self.k + j) {
                    decoder.add_recovery_shard(j, s.as_ref())?;
                }
            }
            let result = decoder.decode()?;
            let restored: Option<Vec<&[u8]>> = (0..self.k)
                .map(|i| {
                    data(i)
                        .map(AsRef::as_ref)
                        .or_else(|| result.restored_original(i))
                })
                .collect();
            // None: the decoder left a shard unrestored (not expected).
            Ok(restored.map(|all| all.into_iter().for_each(&mut each)))
        })?
        .ok_or_else(|| CodingError::Library("a missing data shard was not restored".into()))
    }

    /// Every shard there is the size `payload_len` gives.
    fn check_sizes<S: AsRef<[u8]>>(
        &self,
        shards: &[Option<S>],
        payload_len: usize,
    ) -> Result<(), CodingError> {
        let want = shard_len(payload_len, self.k);
        for s in shards.iter().flatten() {
            if s.as_ref().len() != want {
                return Err(CodingError::ShardSize {
                    got: s.as_ref().len(),
                    want,
                });
            }
        }
        Ok(())
    }

    /// Every shard (data and parity) from any k: for repair.
    pub fn all_shards<S: AsRef<[u8]>>(
        &self,
        shards: &[Option<S>],
        payload_len: usize,
    ) -> Result<Vec<Vec<u8>>, CodingError> {
        let data = self.data_shards(shards, payload_len)?;
        let mut all = data.clone();
        if self.m > 0 {
            let parity = reed_solomon_simd::encode(self.k, self.m, &data)
                .map_err(|e| CodingError::Library(e.to_string()))?;
            all.extend(parity);
        }
        Ok(all)
    }
}

/// Encoders and decoders kept between chunks, a few at most (as many as
/// the machine has cores): making one allocates and zeroes its working
/// space (several shards' worth) and probes the CPU, which showed in the
/// put and get profiles; keeping one per thread instead held that space for
/// every thread of the blocking pool (the daemon's peak rose by 40 MiB).
struct Kept<T> {
    idle: std::sync::Mutex<Vec<T>>,
}

impl<T> Kept<T> {
    const fn new() -> Self {
        Self {
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Option<T> {
        self.lock().pop()
    }

    fn give_back(&self, item: T) {
        let cap = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let mut idle = self.lock();
        if idle.len() < cap {
            idle.push(item);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<T>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

static ENCODERS: Kept<reed_solomon_simd::ReedSolomonEncoder> = Kept::new();
static DECODERS: Kept<reed_solomon_simd::ReedSolomonDecoder> = Kept::new();

fn library(e: reed_solomon_simd::Error) -> CodingError {
    CodingError::Library(e.to_string())
}

/// An encoder or a decoder: made for a shape (`k` + `m` shards of `len`
/// bytes), or set to another one.
trait Coder: Sized {
    fn make(k: usize, m: usize, len: usize) -> Result<Self, reed_solomon_simd::Error>;
    fn reshape(&mut self, k: usize, m: usize, len: usize) -> Result<(), reed_solomon_simd::Error>;
}

impl Coder for reed_solomon_simd::ReedSolomonEncoder {
    fn make(k: usize, m: usize, len: usize) -> Result<Self, reed_solomon_simd::Error> {
        Self::new(k, m, len)
    }
    fn reshape(&mut self, k: usize, m: usize, len: usize) -> Result<(), reed_solomon_simd::Error> {
        self.reset(k, m, len)
    }
}

impl Coder for reed_solomon_simd::ReedSolomonDecoder {
    fn make(k: usize, m: usize, len: usize) -> Result<Self, reed_solomon_simd::Error> {
        Self::new(k, m, len)
    }
    fn reshape(&mut self, k: usize, m: usize, len: usize) -> Result<(), reed_solomon_simd::Error> {
        self.reset(k, m, len)
    }
}

/// Runs `f` with a coder from `kept` set for `k` + `m` shards of `len`,
/// and keeps the coder again afterwards.
fn with_coder<C: Coder, T>(
    kept: &Kept<C>,
    k: usize,
    m: usize,
    len: usize,
    f: impl FnOnce(&mut C) -> Result<T, reed_solomon_simd::Error>,
) -> Result<T, CodingError> {
    let mut coder = match kept.take() {
        Some(mut c) => {
            c.reshape(k, m, len).map_err(library)?;
            c
        }
        None => C::make(k, m, len).map_err(library)?,
    };
    let result = f(&mut coder).map_err(library);
    kept.give_back(coder);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn a_healthy_read_decodes_from_borrowed_shards_and_checks_their_size() {
        let c = Coding::new(6, 3).unwrap();
        let p = payload(100_003);
        let shards = c.encode(&p).unwrap();
        // Data shards only, as slices of what was received.
        let mut s: Vec<Option<bytes::Bytes>> = shards
            .iter()
            .map(|v| Some(bytes::Bytes::copy_from_slice(v)))
            .collect();
        s[6..].iter_mut().for_each(|x| *x = None);
        assert_eq!(c.decode(&s, p.len()).unwrap(), p);
        // A data shard cut short is an error, not a short payload.
        s[2] = s[2].as_ref().map(|b| b.slice(1..));
        assert!(matches!(
            c.decode(&s, p.len()),
            Err(CodingError::ShardSize { .. })
        ));
    }

    #[test]
    fn every_way_of_losing_three_of_nine_decodes() {
        let c = Coding::new(6, 3).unwrap();
        let p = payload(100_003);
        let shards = c.encode(&p).unwrap();
        let mut ways = 0;
        for a in 0..9 {
            for b in a + 1..9 {
                for d in b + 1..9 {
                    let mut s: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
                    s[a] = None;
                    s[b] = None;
                    s[d] = None;
                    assert_eq!(c.decode(&s, p.len()).unwrap(), p, "lost {a} {b} {d}");
                    assert_eq!(c.all_shards(&s, p.len()).unwrap(), shards);
                    ways += 1;
                }
            }
        }
        assert_eq!(ways, 84);
        let mut s: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
        for lost in s.iter_mut().take(4) {
            *lost = None;
        }
        assert_eq!(
            c.decode(&s, p.len()),
            Err(CodingError::TooFewShards { have: 5, k: 6 })
        );
    }

    #[test]
    fn framed_shards_are_the_plain_ones_behind_their_headers() {
        let c = Coding::new(6, 3).unwrap();
        let p = payload(10_001);
        let plain = c.encode(&p).unwrap();
        let (framed, hashes) = c.encode_framed(&p, |i| [i as u8; HEADER_LEN]).unwrap();
        assert_eq!(framed.len(), 9);
        for (i, (a, b)) in plain.iter().zip(&framed).enumerate() {
            assert_eq!(&b[..HEADER_LEN], &[i as u8; HEADER_LEN]);
            assert_eq!(&b[HEADER_LEN..], &a[..]);
            assert_eq!(hashes[i], *blake3::hash(b).as_bytes());
        }
    }

    #[test]
    fn odd_shapes() {
        for (k, m) in [(1, 0), (1, 1), (2, 1), (6, 3), (10, 22), (31, 1)] {
            let c = Coding::new(k, m).unwrap();
            for len in [0, 1, 2, 3, 1000] {
                let p = payload(len);
                let shards: Vec<_> = c.encode(&p).unwrap().into_iter().map(Some).collect();
                assert_eq!(c.decode(&shards, len).unwrap(), p, "{k}+{m} {len}");
            }
        }
        assert!(Coding::new(0, 3).is_err());
        assert!(Coding::new(30, 3).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_k_shards_decode(len in 0usize..5000, k in 1usize..12, m in 0usize..8, seed in 0u64..u64::MAX) {
            let c = Coding::new(k, m).unwrap();
            let p = payload(len);
            let shards = c.encode(&p).unwrap();
            let mut s: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
            // Lose m shards chosen by the seed.
            let mut x = seed | 1;
            let mut lost = 0;
            while lost < m {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                let i = (x % (k + m) as u64) as usize;
                if s[i].is_some() { s[i] = None; lost += 1; }
            }
            proptest::prop_assert_eq!(c.decode(&s, len).unwrap(), p);
        }
    }
}
