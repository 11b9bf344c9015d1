//! Buffers for chunks and shards, kept between transfers. The long-running
//! processes use a fixed mmap threshold of 128 KiB (`crate::malloc`), so a
//! chunk's plaintext (1 MiB) and each of its shards (about 175 KiB) were
//! fresh mmap'd memory, faulted in page by page and zeroed by the kernel,
//! then unmapped: about a seventh of the daemon's CPU in a put. A few kept
//! buffers take that away without glibc keeping everything that was ever
//! freed.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Chunk plaintext buffers a store keeps between puts (1 MiB each with
/// the default chunk size): a put has only a few between its input and
/// the encoder at once.
pub(crate) const KEPT_CHUNK_BUFFERS: usize = 2;
/// Shard buffers a store keeps (about 175 KiB each): what one node's
/// writes turn over while the others' are in flight, and little enough
/// to hold between transfers (under 6 MiB).
pub(crate) const KEPT_SHARD_BUFFERS: usize = 32;

/// A store's buffers for puts: chunk plaintexts and shards apart, each
/// kept within its own count.
#[derive(Debug, Clone)]
pub(crate) struct PutBuffers {
    pub(crate) chunks: Arc<Buffers>,
    pub(crate) shards: Arc<Buffers>,
}

impl Default for PutBuffers {
    fn default() -> Self {
        Self {
            chunks: Buffers::new(KEPT_CHUNK_BUFFERS),
            shards: Buffers::new(KEPT_SHARD_BUFFERS),
        }
    }
}

/// Buffers kept for reuse, at most `keep` of them.
#[derive(Debug)]
pub(crate) struct Buffers {
    kept: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl Buffers {
    /// A pool that keeps at most `keep` buffers.
    pub(crate) fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            kept: Mutex::new(Vec::new()),
            keep,
        })
    }

    /// An empty buffer with room for `len` bytes: a kept one that fits
    /// (not more than twice as large, so a chunk buffer does not serve a
    /// shard), or a new one.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept
            .iter()
            .position(|b| b.capacity() >= len && b.capacity() <= len.saturating_mul(2))
        {
            Some(i) => kept.swap_remove(i),
            None => Vec::with_capacity(len),
        }
    }

    /// Keeps `buf` for a later [`Buffers::take`], unless enough are kept.
    pub(crate) fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < self.keep && buf.capacity() > 0 {
            kept.push(buf);
        }
    }

    /// `buf` as shared bytes that give it back when the last of them goes
    /// (a shard is shared by its writes, QUIC holds it until acknowledged).
    pub(crate) fn shared(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returned {
            buf,
            home: Arc::clone(self),
        })
    }
}

/// A buffer lent out as [`Bytes`].
struct Returned {
    buf: Vec<u8>,
    home: Arc<Buffers>,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::Buffers;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty_and_only_for_its_size() {
        let pool = Buffers::new(2);
        let mut b = pool.take(1000);
        b.extend_from_slice(&[7; 1000]);
        let at = b.as_ptr();
        pool.give_back(b);
        // Too small a request for it: a chunk buffer does not serve a shard.
        let small = pool.take(100);
        assert_ne!(small.as_ptr(), at);
        let again = pool.take(900);
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty() && again.capacity() >= 1000);
    }

    #[test]
    fn shared_bytes_give_their_buffer_back_when_the_last_clone_goes() {
        let pool = Buffers::new(4);
        let mut b = pool.take(64);
        b.extend_from_slice(b"shard");
        let at = b.as_ptr();
        let bytes = pool.shared(b);
        let clone = bytes.slice(1..3);
        assert_eq!(&bytes[..], b"shard");
        drop(bytes);
        let other = pool.take(64);
        assert_ne!(other.as_ptr(), at, "given back while still shared");
        drop(clone);
        let back = pool.take(64);
        assert_eq!(back.as_ptr(), at);
        drop(other);
    }

    #[test]
    fn no_more_than_keep_are_kept() {
        let pool = Buffers::new(1);
        pool.give_back(Vec::with_capacity(10));
        pool.give_back(Vec::with_capacity(10));
        assert_eq!(pool.kept.lock().unwrap().len(), 1);
    }
}
