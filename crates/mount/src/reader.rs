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

    /// The window after the one held, as wide as reading straight on
    /// would make it, once reading is past the held one's middle; `None`
    /// at the end of the file or while reads jump about.
    pub fn next_window(&self, file_size: u64) -> Option<Range<u64>> {
        let held_end = self.start + self.buf.len() as u64;
        let middle = self.start + self.buf.len() as u64 / 2;
        if self.buf.is_empty()
            || self.next < middle
            || self.next > held_end
            || held_end >= file_size
        {
            return None;
        }
        let width = (self.window * 2).min(MAX_WINDOW);
        Some(held_end..(held_end + width).min(file_size))
    }

    /// Keeps what was fetched from `start`.
    pub fn fill(&mut self, start: u64, bytes: Bytes) {
        self.start = start;
        self.buf = bytes;
    }
}

/// What one ranged read brought.
struct Fetched {
    etag: Option<String>,
    total: Option<u64>,
    bytes: Bytes,
}

/// The next window, being fetched while the current one is read.
struct Prefetch {
    range: Range<u64>,
    task: tokio::task::JoinHandle<Result<Fetched, ClientError>>,
}

/// One open handle's reading.
pub struct Reader {
    ahead: ReadAhead,
    /// The version read, once the first answer named it.
    etag: Option<String>,
    /// Its size.
    size: u64,
    prefetch: Option<Prefetch>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("etag", &self.etag)
            .field("size", &self.size)
            .field(
                "prefetching",
                &self.prefetch.as_ref().map(|p| p.range.clone()),
            )
            .finish_non_exhaustive()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(p) = self.prefetch.take() {
            p.task.abort();
        }
    }
}

/// `range` of `name`, of version `etag` when given.
async fn fetch(
    client: Client,
    name: String,
    range: Range<u64>,
    etag: Option<String>,
) -> Result<Fetched, ClientError> {
    let header = format!("bytes={}-{}", range.start, range.end - 1);
    let download = client
        .get_version(&name, Some(&header), etag.as_deref())
        .await?;
    let mut buf = BytesMut::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
    let mut body = download.body;
    while let Some(piece) = body.try_next().await? {
        buf.extend_from_slice(&piece);
    }
    Ok(Fetched {
        etag: download.etag,
        total: download.total,
        bytes: buf.freeze(),
    })
}

impl Reader {
    /// A reader of a file believed `size` bytes long.
    pub fn new(size: u64) -> Self {
        Self {
            ahead: ReadAhead::default(),
            etag: None,
            size,
            prefetch: None,
        }
    }

    /// The bytes at `offset`, at most `size` of them, of the version first
    /// read. A version replaced since is an error (`PreconditionFailed`),
    /// never bytes of another file. While reading goes straight on, the
    /// next window is fetched while this one is read.
    pub async fn read(
        &mut self,
        client: &Client,
        name: &str,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, ClientError> {
        if let Some(b) = self.ahead.cached(offset, size, self.size) {
            self.prefetch_next(client, name);
            return Ok(b);
        }
        let (range, fetched) = match self.prefetch.take() {
            Some(p) if p.range.contains(&offset) => {
                // The window after the last: reading went straight on.
                self.ahead.plan(p.range.start, 1, self.size);
                let fetched = p.task.await.map_err(|e| ClientError::Transport {
                    url: client.base().to_owned(),
                    source: e.into(),
                })??;
                (p.range, fetched)
            }
            other => {
                if let Some(p) = other {
                    p.task.abort();
                }
                let range = self.ahead.plan(offset, size, self.size);
                let fetched = fetch(
                    client.clone(),
                    name.to_owned(),
                    range.clone(),
                    self.etag.clone(),
                )
                .await?;
                (range, fetched)
            }
        };
        if self.etag.is_none() {
            self.etag = fetched.etag;
        }
        if let Some(total) = fetched.total {
            self.size = total;
        }
        self.ahead.fill(range.start, fetched.bytes);
        let out = self
            .ahead
            .cached(offset, size, self.size)
            .unwrap_or_default();
        self.prefetch_next(client, name);
        Ok(out)
    }

    /// Starts fetching the window after the one held, when reading is past
    /// the middle of it (going straight on) and the version is known.
    fn prefetch_next(&mut self, client: &Client, name: &str) {
        if self.prefetch.is_some() || self.etag.is_none() {
            return;
        }
        let Some(range) = self.ahead.next_window(self.size) else {
            return;
        };
        let task = tokio::spawn(fetch(
            client.clone(),
            name.to_owned(),
            range.clone(),
            self.etag.clone(),
        ));
        self.prefetch = Some(Prefetch { range, task });
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
    fn the_next_window_is_asked_for_once_reading_passes_the_middle() {
        let mut a = ReadAhead::default();
        let size = 100 << 20;
        let r = a.plan(0, 4096, size);
        a.fill(r.start, Bytes::from(vec![0; (r.end - r.start) as usize]));
        assert!(a.cached(0, 4096, size).is_some());
        assert_eq!(a.next_window(size), None, "not past the middle yet");
        assert!(a.cached(MIN_WINDOW / 2, 4096, size).is_some());
        assert_eq!(a.next_window(size), Some(MIN_WINDOW..3 * MIN_WINDOW));
        // Not past the end of the file.
        assert_eq!(a.next_window(MIN_WINDOW), None);
        assert_eq!(
            a.next_window(MIN_WINDOW + 10),
            Some(MIN_WINDOW..MIN_WINDOW + 10)
        );
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
