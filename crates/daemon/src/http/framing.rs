//! Requests that state their length two ways. RFC 9112 section 6.3: a
//! request with both Content-Length and Transfer-Encoding is a smuggling
//! attempt or a broken client, and a proxy in front of the daemon may read
//! its length the other way. hyper takes Transfer-Encoding and drops
//! Content-Length before a handler can see it, so the check sits under
//! hyper: [`RequestFraming`] follows each request on a connection as its
//! bytes pass (sans-IO: bytes in, bytes out) and marks a head that has
//! both with [`AMBIGUOUS`], which the API's `one_length` layer answers with
//! 400 on every listener. [`StrictListener`] puts it under axum.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The header a request head that stated its length two ways is given in
/// place of its Content-Length.
pub const AMBIGUOUS: &str = "x-cloudshell-ambiguous-length";

/// Heads longer than this are not followed; hyper refuses them anyway.
const MAX_HEAD: usize = 64 * 1024;

/// Bytes read from the socket at most at a time.
const RAW_READ: usize = 256 * 1024;

/// Where in a request the next byte is.
#[derive(Debug)]
enum State {
    /// In a request head (collected until its blank line).
    Head,
    /// In a body of known length: bytes left.
    Fixed(u64),
    /// In a chunk-size line of a chunked body.
    ChunkSize,
    /// In a chunk's data: bytes left, then its CRLF.
    ChunkData(u64),
    /// In the CRLF after a chunk's data: bytes left.
    ChunkEnd(u64),
    /// In the trailer section after the last chunk.
    Trailers,
    /// Not followed any more (an upgrade, a head too long or malformed:
    /// hyper decides); bytes pass as they are.
    Passthrough,
}

/// Follows the requests on one connection; see the module's doc.
#[derive(Debug)]
pub struct RequestFraming {
    state: State,
    /// The head or line being collected.
    line: Vec<u8>,
}

impl Default for RequestFraming {
    fn default() -> Self {
        Self {
            state: State::Head,
            line: Vec::new(),
        }
    }
}

impl RequestFraming {
    /// Takes bytes read from the client and appends to `out` what the
    /// server is to read: the same bytes, but a head held until it is
    /// whole and rewritten when it states its length two ways.
    pub fn handle_input(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.state {
                State::Passthrough => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Fixed(left) => {
                    if pass(left, &mut input, out) {
                        self.state = State::Head;
                    }
                }
                State::ChunkData(left) => {
                    if pass(left, &mut input, out) {
                        self.state = State::ChunkEnd(2);
                    }
                }
                State::ChunkEnd(left) => {
                    if pass(left, &mut input, out) {
                        self.state = State::ChunkSize;
                    }
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    let Some(end) = self.take_line_or_head(&mut input) else {
                        if self.line.len() > MAX_HEAD {
                            out.append(&mut self.line);
                            self.state = State::Passthrough;
                        }
                        continue;
                    };
                    let done = std::mem::take(&mut self.line);
                    debug_assert_eq!(end, done.len());
                    self.finish(done, out);
                }
            }
        }
    }

    /// Moves bytes from `input` into the line being collected until it is
    /// complete (a head: its blank line; otherwise: its LF). Returns its
    /// length when complete.
    fn take_line_or_head(&mut self, input: &mut &[u8]) -> Option<usize> {
        let head = matches!(self.state, State::Head);
        for (i, &b) in input.iter().enumerate() {
            self.line.push(b);
            if b != b'\n' {
                continue;
            }
            // Empty lines before a request line are allowed (RFC 9112 2.2).
            if head && self.line == b"\r\n" {
                continue;
            }
            if !head || self.line.ends_with(b"\r\n\r\n") || self.line.ends_with(b"\n\n") {
                *input = &input[i + 1..];
                return Some(self.line.len());
            }
        }
        *input = &[];
        None
    }

    /// Handles a complete head, chunk-size line or trailer line.
    fn finish(&mut self, line: Vec<u8>, out: &mut Vec<u8>) {
        match self.state {
            State::Head => self.finish_head(line, out),
            State::ChunkSize => {
                out.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                let size = text.split([';', '\r', '\n']).next().unwrap_or("").trim();
                self.state = match u64::from_str_radix(size, 16) {
                    Ok(0) => State::Trailers,
                    Ok(n) => State::ChunkData(n),
                    Err(_) => State::Passthrough,
                };
            }
            State::Trailers => {
                out.extend_from_slice(&line);
                if line == b"\r\n" || line == b"\n" {
                    self.state = State::Head;
                }
            }
            _ => out.extend_from_slice(&line),
        }
    }

    fn finish_head(&mut self, head: Vec<u8>, out: &mut Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(&head), Ok(httparse::Status::Complete(_))) {
            out.extend_from_slice(&head);
            self.state = State::Passthrough;
            return;
        }
        let has = |name: &str| {
            request
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name))
        };
        let length = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<u64>()
                    .ok()
            });
        let chunked = request.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(h.value)
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        });
        let upgrade = has("upgrade") || request.method == Some("CONNECT");
        let both = has("content-length") && has("transfer-encoding");
        if both {
            out.extend_from_slice(&mark_ambiguous(&head));
        } else {
            out.extend_from_slice(&head);
        }
        self.state = if upgrade || (has("transfer-encoding") && !chunked) {
            State::Passthrough
        } else if chunked {
            State::ChunkSize
        } else if !has("content-length") {
            State::Head
        } else {
            match length {
                Some(0) => State::Head,
                Some(n) => State::Fixed(n),
                // Unreadable: hyper refuses it and closes the connection.
                None => State::Passthrough,
            }
        };
    }
}

/// Passes up to `left` bytes of `input` on; true when `left` reached zero.
fn pass(left: &mut u64, input: &mut &[u8], out: &mut Vec<u8>) -> bool {
    let n = usize::try_from(*left)
        .unwrap_or(usize::MAX)
        .min(input.len());
    out.extend_from_slice(&input[..n]);
    *left -= n as u64;
    *input = &input[n..];
    *left == 0
}

/// The head with its Content-Length lines replaced by [`AMBIGUOUS`].
fn mark_ambiguous(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + AMBIGUOUS.len());
    let mut marked = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let is_length = line.iter().position(|b| *b == b':').is_some_and(|colon| {
            line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(b"content-length")
        });
        if is_length {
            if !marked {
                out.extend_from_slice(AMBIGUOUS.as_bytes());
                out.extend_from_slice(b": 1\r\n");
                marked = true;
            }
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// A connection whose requests pass through a [`RequestFraming`].
#[derive(Debug)]
pub struct FramedStream<S> {
    inner: S,
    framing: RequestFraming,
    /// What the last read from `inner` brought ([`RAW_READ`] bytes, made
    /// on the first read and kept: zeroing it for every read cost 9% of
    /// an upload's time).
    raw: Vec<u8>,
    /// Bytes ready for the server.
    ready: Vec<u8>,
    /// How many of `ready` it has read.
    taken: usize,
}

impl<S> FramedStream<S> {
    /// `inner`, followed.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            framing: RequestFraming::default(),
            raw: Vec::new(),
            ready: Vec::new(),
            taken: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FramedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.taken);
                buf.put_slice(&this.ready[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == this.ready.len() {
                    this.ready.clear();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // As much as the server asked for (hyper asks for up to
            // hundreds of KiB while a body streams in), through one buffer
            // kept for the connection.
            if this.raw.is_empty() {
                this.raw = vec![0; RAW_READ];
            }
            let want = buf.remaining().clamp(4096, RAW_READ);
            let mut raw_buf = ReadBuf::new(&mut this.raw[..want]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf) {
                Poll::Ready(Ok(())) => {
                    let got = raw_buf.filled();
                    if got.is_empty() {
                        // End of input: whatever part of a head was held
                        // goes on, for hyper to judge.
                        this.ready.append(&mut this.framing.line);
                        if this.ready.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    this.framing.handle_input(got, &mut this.ready);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FramedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A TCP listener for axum whose connections have Nagle's algorithm off
/// (a small response's body would wait for the client's delayed ACK, up
/// to 40 ms) and their requests followed by a [`RequestFraming`].
#[derive(Debug)]
pub struct StrictListener(pub tokio::net::TcpListener);

impl axum::serve::Listener for StrictListener {
    type Io = FramedStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((tcp, addr)) => {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!("cannot set TCP_NODELAY: {e}");
                    }
                    return (FramedStream::new(tcp), addr);
                }
                // Out of descriptors and the like: wait a moment, as
                // axum's own listener does.
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes.
    fn run(input: &[u8], step: usize) -> Vec<u8> {
        let mut f = RequestFraming::default();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            f.handle_input(piece, &mut out);
        }
        out
    }

    const CLEAN: &[u8] = b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nabcde\r\n3\r\nfgh\r\n0\r\nTrailer: t\r\n\r\n\
        GET /c HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn clean_requests_pass_unchanged_however_they_are_cut() {
        for step in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(run(CLEAN, step), CLEAN, "step {step}");
        }
    }

    #[test]
    fn a_head_with_both_lengths_is_marked_wherever_it_is_on_the_connection() {
        let smuggle = b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\
            Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut input = CLEAN.to_vec();
        input.extend_from_slice(smuggle);
        input.extend_from_slice(b"GET /e HTTP/1.1\r\nHost: x\r\n\r\n");
        for step in [1, 5, 4096] {
            let out = run(&input, step);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with(std::str::from_utf8(CLEAN).unwrap()));
            assert!(
                text.contains(&format!(
                    "POST /d HTTP/1.1\r\nHost: x\r\n{AMBIGUOUS}: 1\r\nTransfer-Encoding: chunked"
                )),
                "{text}"
            );
            assert!(!text.contains("Content-Length: 4"), "{text}");
            assert!(text.ends_with("0\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\n"));
        }
        // The mark needs both: a body that merely looks like a head is body.
        let body = b"PUT /f HTTP/1.1\r\nContent-Length: 60\r\n\r\n\
            GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        assert_eq!(run(body, 3), body);
    }

    #[test]
    fn what_it_cannot_follow_passes_as_it_is() {
        let odd = b"this is not http\r\n\r\nnor this";
        assert_eq!(run(odd, 4), odd);
        let upgrade = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
        assert_eq!(run(upgrade, 2), upgrade);
        let long = [b'a'; MAX_HEAD + 10];
        assert_eq!(run(&long, 1000), long);
    }
}
