//! Reading a stored file through an open handle: ranged reads of one
//! version (the first answer's ETag, sent as If-Match with every later
//! range), with a read-ahead window that doubles while reads follow each
//! other and falls back when they jump.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use cloudshell_store_api::{Client, ClientError};
use futures_util::TryStreamExt as _;

/// The first window, and the one after a jump.
pub const MIN_WINDOW: u64 = 256 * 1024;
/// The widest window: what one handle holds in memory at most.
pub const MAX_WINDOW: u64 = 8 * 1024 * 1024;

/// What to fetch for the reads a handle gets, without I/O.
#[derive(Debug)]
pub struct ReadAhead {
    window: u64,
    /// Where the next read starts if reading goes straight on.
    next: u64,
    start: u64,
    buf: Bytes,
}

impl Default for ReadAhead {
    fn default() -> Self {
        Self {
            window: MIN_WINDOW,
            next: 0,
            start: 0,
            buf: Bytes::new(),
        }
    }
}

impl ReadAhead {
    /// The bytes of `offset..offset+size` (clipped to `file_size`) if what
    /// was fetched holds them all.
    pub fn cached(&mut self, offset: u64, size: u32, file_size: u64) -> Option<Bytes> {
        let end = (offset + u64::from(size)).min(file_size);
        if offset >= end {
            return Some(Bytes::new());
        }
        let held = self.start..self.start + self.buf.len() as u64;
        if offset < held.start || end > held.end {
            return None;
        }
        self.next = end;
        let from = usize::try_from(offset - held.start).ok()?;
        let to = usize::try_from(end - held.start).ok()?;
        Some(self.buf.slice(from..to))
    }

    /// The range to fetch for a read at `offset` of `size` bytes that is
    /// not held: at least the read, at most to the end of the file, as
    /// wide as the window, which grows while reads go straight on.
    pub fn plan(&mut self, offset: u64, size: u32, file_size: u64) -> Range<u64> {
        let straight_on = offset == self.next || offset == self.start + self.buf.len() as u64;
        self.window = if straight_on && offset != 0 {
            (self.window * 2).min(MAX_WINDOW)
        } else {
            MIN_WINDOW
        };
        let want = u64::from(size).max(self.window);
        offset..(offset + want).min(file_size)
    }

    /// Keeps what was fetched from `start`.
    pub fn fill(&mut self, start: u64, bytes: Bytes) {
        self.start = start;
        self.buf = bytes;
    }
}

/// One open handle's reading.
#[derive(Debug)]
pub struct Reader {
    ahead: ReadAhead,
    /// The version read, once the first answer named it.
    etag: Option<String>,
    /// Its size.
    size: u64,
}

impl Reader {
    /// A reader of a file believed `size` bytes long.
    pub fn new(size: u64) -> Self {
        Self {
            ahead: ReadAhead::default(),
            etag: None,
            size,
        }
    }

    /// The bytes at `offset`, at most `size` of them, of the version first
    /// read. A version replaced since is an error (`PreconditionFailed`),
    /// never bytes of another file.
    pub async fn read(
        &mut self,
        client: &Client,
        name: &str,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, ClientError> {
        if let Some(b) = self.ahead.cached(offset, size, self.size) {
            return Ok(b);
        }
        let range = self.ahead.plan(offset, size, self.size);
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let download = client
            .get_version(name, Some(&header), self.etag.as_deref())
            .await?;
        if self.etag.is_none() {
            self.etag = download.etag.clone();
        }
        if let Some(total) = download.total {
            self.size = total;
        }
        let mut buf =
            BytesMut::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        let mut body = download.body;
        while let Some(piece) = body.try_next().await? {
            buf.extend_from_slice(&piece);
        }
        self.ahead.fill(range.start, buf.freeze());
        Ok(self
            .ahead
            .cached(offset, size, self.size)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_doubles_while_reads_go_straight_on_and_falls_back_on_a_jump() {
        let mut a = ReadAhead::default();
        let size = 100 << 20;
        let r = a.plan(0, 4096, size);
        assert_eq!(r, 0..MIN_WINDOW);
        a.fill(0, Bytes::from(vec![0; MIN_WINDOW as usize]));
        assert!(a.cached(4096, 4096, size).is_some());
        assert!(a.cached(MIN_WINDOW - 10, 4096, size).is_none());
        let r = a.plan(MIN_WINDOW, 4096, size);
        assert_eq!(r, MIN_WINDOW..3 * MIN_WINDOW);
        a.fill(r.start, Bytes::from(vec![0; (r.end - r.start) as usize]));
        let r = a.plan(3 * MIN_WINDOW, 4096, size);
        assert_eq!(r.end - r.start, 4 * MIN_WINDOW);
        // A jump starts small again.
        let r = a.plan(50 << 20, 4096, size);
        assert_eq!(r.end - r.start, MIN_WINDOW);
    }

    #[test]
    fn a_window_never_passes_the_end_and_a_read_there_is_empty() {
        let mut a = ReadAhead::default();
        assert_eq!(a.plan(0, 4096, 1000), 0..1000);
        a.fill(0, Bytes::from(vec![7; 1000]));
        assert_eq!(a.cached(900, 4096, 1000).map(|b| b.len()), Some(100));
        assert_eq!(a.cached(1000, 4096, 1000).map(|b| b.len()), Some(0));
        for _ in 0..20 {
            let r = a.plan(a.next, 4096, 1 << 40);
            assert!(r.end - r.start <= MAX_WINDOW);
            a.fill(r.start, Bytes::new());
            a.next = r.end;
        }
    }
}
