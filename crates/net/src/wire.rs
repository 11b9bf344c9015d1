//! The daemon-agent wire protocol, as bytes: no sockets here.
//!
//! One bidirectional QUIC stream carries one request and its response. Both
//! start with a 12-byte frame header, little-endian:
//!
//! ```text
//! 0  magic "CSNP"    4
//! 4  version         1   (PROTOCOL_VERSION)
//! 5  op / status     1   (request: Op; response: 0 ok, else ErrorCode)
//! 6  reserved, zero  2
//! 8  body length     4
//! ```
//!
//! The body length is checked against the most that op may carry before
//! anything is allocated ([`max_request_body`], [`max_response_body`]). Shard
//! ids and blobs are opaque here (`net` knows nothing about files): a
//! [`ShardId`] is 25 bytes, a blob at most [`MAX_BLOB`] bytes.
//!
//! The first exchange on a connection is [`Request::Hello`]; an agent that
//! speaks another version answers [`ErrorCode::VersionMismatch`].

/// First bytes of every frame. Do not change.
pub const MAGIC: [u8; 4] = *b"CSNP";
/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 12;
/// Bytes of a shard id.
pub const SHARD_ID_LEN: usize = 25;
/// The largest blob (a shard with its header): 64 MiB of payload, the GCM
/// tag, and room for a header.
pub const MAX_BLOB: usize = (64 << 20) + 16 + 64;
/// The most ids one ListShards answer carries.
pub const MAX_LIST: u32 = 10_000;
/// The longest error message or version string.
pub const MAX_TEXT: usize = 4096;

/// An opaque shard id (the store's file id, chunk and index).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ShardId(pub [u8; SHARD_ID_LEN]);

/// Request kinds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
#[non_exhaustive]
pub enum Op {
    /// Versions, first on a connection.
    Hello = 1,
    /// Store a shard.
    PutShard = 2,
    /// Read a shard.
    GetShard = 3,
    /// Remove a shard.
    DeleteShard = 4,
    /// A page of shard ids.
    ListShards = 5,
    /// BLAKE3 of a shard, computed by the agent.
    VerifyShard = 6,
    /// Usage and quota.
    Stats = 7,
}

impl Op {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::PutShard,
            3 => Self::GetShard,
            4 => Self::DeleteShard,
            5 => Self::ListShards,
            6 => Self::VerifyShard,
            7 => Self::Stats,
            _ => return None,
        })
    }
}

/// Why a request failed, as the agent says it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No such shard.
    NotFound = 1,
    /// The write would pass the agent's quota; nothing was written.
    QuotaExceeded = 2,
    /// The request was malformed.
    Malformed = 3,
    /// The agent failed (disk error).
    Internal = 4,
    /// The peer speaks another protocol version.
    VersionMismatch = 5,
}

impl ErrorCode {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::NotFound,
            2 => Self::QuotaExceeded,
            3 => Self::Malformed,
            4 => Self::Internal,
            5 => Self::VersionMismatch,
            _ => return None,
        })
    }
}

/// A request.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Request {
    /// The sender's software version.
    Hello {
        /// e.g. `0.1.0`.
        software: String,
    },
    /// Store `blob` as `id`.
    PutShard {
        /// Which shard.
        id: ShardId,
        /// The shard, header included (shared, not copied, on its way out).
        blob: bytes::Bytes,
    },
    /// Read `id`.
    GetShard(ShardId),
    /// Remove `id`.
    DeleteShard(ShardId),
    /// Ids after `after`, at most `limit`.
    ListShards {
        /// Exclusive start.
        after: Option<ShardId>,
        /// Page size, at most [`MAX_LIST`].
        limit: u32,
    },
    /// BLAKE3 of `id` as stored.
    VerifyShard(ShardId),
    /// Usage and quota.
    Stats,
}

/// What an agent reports about itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AgentStats {
    /// Bytes held.
    pub used: u64,
    /// Bytes allowed.
    pub quota: u64,
    /// Shards held.
    pub shards: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Software version.
    pub software: String,
    /// Bytes free on the disk holding the shards (after `software` on the
    /// wire; absent from agents that predate it, read as unlimited).
    pub disk_free: u64,
}

/// A response.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Response {
    /// Hello answered: the agent's software version.
    Hello {
        /// e.g. `0.1.0`.
        software: String,
    },
    /// Put or delete done.
    Done,
    /// A shard's bytes (shared, not copied: an agent hands the file it
    /// read to the transport as it is, the daemon slices what arrived).
    Blob(bytes::Bytes),
    /// A page of ids.
    List(Vec<ShardId>),
    /// A BLAKE3.
    Hash([u8; 32]),
    /// Usage.
    Stats(AgentStats),
    /// The request failed.
    Error {
        /// Why.
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

/// Bytes that are not a valid frame.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not our magic.
    #[error("not a cloudshell-store frame (bad magic)")]
    BadMagic,
    /// Another version.
    #[error("protocol version {0} is not supported (this side speaks {PROTOCOL_VERSION})")]
    Version(u8),
    /// Unknown op or status.
    #[error("unknown request or status {0}")]
    UnknownKind(u8),
    /// Reserved bytes set.
    #[error("reserved header bytes are set")]
    Reserved,
    /// A body longer than its kind allows, refused before reading it.
    #[error("a body of {len} bytes is over the {max}-byte limit for this message")]
    TooLong {
        /// Announced.
        len: u64,
        /// Allowed.
        max: usize,
    },
    /// A body that does not parse.
    #[error("malformed body: {0}")]
    Malformed(&'static str),
}

/// A parsed frame header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameHeader {
    /// Op (request) or status (response).
    pub kind: u8,
    /// Body bytes that follow.
    pub body_len: u32,
}

impl FrameHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = PROTOCOL_VERSION;
        b[5] = self.kind;
        b[8..].copy_from_slice(&self.body_len.to_le_bytes());
        b
    }

    /// Parses a header (magic, version, reserved bytes checked).
    pub fn decode(b: &[u8; FRAME_HEADER_LEN]) -> Result<Self, WireError> {
        if b[..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if b[4] != PROTOCOL_VERSION {
            return Err(WireError::Version(b[4]));
        }
        if b[6] != 0 || b[7] != 0 {
            return Err(WireError::Reserved);
        }
        Ok(Self {
            kind: b[5],
            body_len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

impl FrameHeader {
    /// Refuses a request whose kind is unknown or whose announced body is
    /// longer than that kind allows: call before reading (allocating) it.
    pub fn check_request(&self) -> Result<(), WireError> {
        let max = max_request_body(self.kind)?;
        if self.body_len as usize > max {
            return Err(WireError::TooLong {
                len: u64::from(self.body_len),
                max,
            });
        }
        Ok(())
    }

    /// The same for a response to `op`.
    pub fn check_response(&self, op: Op) -> Result<(), WireError> {
        let max = max_response_body(op, self.kind)?;
        if self.body_len as usize > max {
            return Err(WireError::TooLong {
                len: u64::from(self.body_len),
                max,
            });
        }
        Ok(())
    }
}

/// The most body bytes a request of this kind may carry.
pub fn max_request_body(kind: u8) -> Result<usize, WireError> {
    Ok(
        match Op::from_u8(kind).ok_or(WireError::UnknownKind(kind))? {
            Op::Hello => 2 + MAX_TEXT,
            Op::PutShard => SHARD_ID_LEN + MAX_BLOB,
            Op::GetShard | Op::DeleteShard | Op::VerifyShard => SHARD_ID_LEN,
            Op::ListShards => 1 + SHARD_ID_LEN + 4,
            Op::Stats => 0,
        },
    )
}

/// The most body bytes a response to `op` with this status may carry.
pub fn max_response_body(op: Op, status: u8) -> Result<usize, WireError> {
    if status != 0 {
        ErrorCode::from_u8(status).ok_or(WireError::UnknownKind(status))?;
        return Ok(2 + MAX_TEXT);
    }
    Ok(match op {
        Op::Hello => 2 + MAX_TEXT,
        Op::PutShard | Op::DeleteShard => 0,
        Op::GetShard => MAX_BLOB,
        Op::ListShards => 4 + MAX_LIST as usize * SHARD_ID_LEN,
        Op::VerifyShard => 32,
        Op::Stats => 32 + 2 + MAX_TEXT + 8,
    })
}

/// The header and `body`; `tail_len` more body bytes are sent after them.
fn frame(kind: u8, body: &[u8], tail_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(
        &FrameHeader {
            kind,
            body_len: (body.len() + tail_len) as u32,
        }
        .encode(),
    );
    out.extend_from_slice(body);
    out
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(MAX_TEXT)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a body front to back, refusing anything short or left over.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Malformed("body too short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn id(&mut self) -> Result<ShardId, WireError> {
        let mut a = [0u8; SHARD_ID_LEN];
        a.copy_from_slice(self.take(SHARD_ID_LEN)?);
        Ok(ShardId(a))
    }

    fn text(&mut self) -> Result<String, WireError> {
        let n = usize::from(self.u16()?);
        if n > MAX_TEXT {
            return Err(WireError::Malformed("text too long"));
        }
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| WireError::Malformed("text is not UTF-8"))
    }

    fn end(self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed("trailing bytes"))
        }
    }
}

impl Request {
    /// The op.
    pub fn op(&self) -> Op {
        match self {
            Self::Hello { .. } => Op::Hello,
            Self::PutShard { .. } => Op::PutShard,
            Self::GetShard(_) => Op::GetShard,
            Self::DeleteShard(_) => Op::DeleteShard,
            Self::ListShards { .. } => Op::ListShards,
            Self::VerifyShard(_) => Op::VerifyShard,
            Self::Stats => Op::Stats,
        }
    }

    /// The whole frame.
    pub fn encode(&self) -> Vec<u8> {
        let (mut frame, tail) = self.encode_split();
        if let Some(tail) = tail {
            frame.extend_from_slice(&tail);
        }
        frame
    }

    /// The frame as a head and, for a put, the shard after it: the shard is
    /// handed to the transport as it is (a reference, not a copy), which
    /// saves two copies of every shard a put sends.
    pub fn encode_split(&self) -> (Vec<u8>, Option<bytes::Bytes>) {
        let (body, tail) = self.body();
        let head = frame(self.op() as u8, &body, tail.map_or(0, bytes::Bytes::len));
        (head, tail.cloned())
    }

    /// The body, but for a put's shard, which follows it.
    fn body(&self) -> (Vec<u8>, Option<&bytes::Bytes>) {
        let mut body = Vec::new();
        match self {
            Self::Hello { software } => put_text(&mut body, software),
            Self::PutShard { id, blob } => {
                body.extend_from_slice(&id.0);
                return (body, Some(blob));
            }
            Self::GetShard(id) | Self::DeleteShard(id) | Self::VerifyShard(id) => {
                body.extend_from_slice(&id.0);
            }
            Self::ListShards { after, limit } => {
                match after {
                    Some(id) => {
                        body.push(1);
                        body.extend_from_slice(&id.0);
                    }
                    None => {
                        body.push(0);
                        body.extend_from_slice(&[0; SHARD_ID_LEN]);
                    }
                }
                body.extend_from_slice(&limit.to_le_bytes());
            }
            Self::Stats => {}
        }
        (body, None)
    }

    /// [`Request::decode`] of a body the caller owns: a put's shard is a
    /// slice of it rather than a copy.
    pub fn decode_owned(header: FrameHeader, body: Vec<u8>) -> Result<Self, WireError> {
        if header.kind == Op::PutShard as u8 {
            header.check_request()?;
            if body.len() != header.body_len as usize {
                return Err(WireError::Malformed(
                    "body length does not match the header",
                ));
            }
            let id = Reader(&body).id()?;
            let blob = bytes::Bytes::from(body).slice(SHARD_ID_LEN..);
            return Ok(Self::PutShard { id, blob });
        }
        Self::decode(header, &body)
    }

    /// Parses a request body of the kind its header named.
    pub fn decode(header: FrameHeader, body: &[u8]) -> Result<Self, WireError> {
        header.check_request()?;
        if body.len() != header.body_len as usize {
            return Err(WireError::Malformed(
                "body length does not match the header",
            ));
        }
        let mut r = Reader(body);
        let req = match Op::from_u8(header.kind).ok_or(WireError::UnknownKind(header.kind))? {
            Op::Hello => Self::Hello {
                software: r.text()?,
            },
            Op::PutShard => {
                let id = r.id()?;
                let blob = bytes::Bytes::copy_from_slice(r.0);
                r.0 = &[];
                Self::PutShard { id, blob }
            }
            Op::GetShard => Self::GetShard(r.id()?),
            Op::DeleteShard => Self::DeleteShard(r.id()?),
            Op::VerifyShard => Self::VerifyShard(r.id()?),
            Op::ListShards => {
                let has = r.u8()?;
                let id = r.id()?;
                let limit = r.u32()?;
                if has > 1 {
                    return Err(WireError::Malformed("bad flag"));
                }
                if limit > MAX_LIST {
                    return Err(WireError::Malformed("list limit over the maximum"));
                }
                Self::ListShards {
                    after: (has == 1).then_some(id),
                    limit,
                }
            }
            Op::Stats => Self::Stats,
        };
        r.end()?;
        Ok(req)
    }
}

impl Response {
    /// The whole frame.
    pub fn encode(&self) -> Vec<u8> {
        let (mut frame, tail) = self.encode_split();
        if let Some(tail) = tail {
            frame.extend_from_slice(&tail);
        }
        frame
    }

    /// The frame as a head and, for a shard, the shard after it, handed to
    /// the transport as it is: an agent answering a read copies nothing.
    pub fn encode_split(&self) -> (Vec<u8>, Option<bytes::Bytes>) {
        if let Self::Blob(b) = self {
            return (frame(0, &[], b.len()), Some(b.clone()));
        }
        let mut body = Vec::new();
        let status = match self {
            Self::Hello { software } => {
                put_text(&mut body, software);
                0
            }
            Self::Done | Self::Blob(_) => 0,
            Self::List(ids) => {
                body.extend_from_slice(&(ids.len() as u32).to_le_bytes());
                for id in ids {
                    body.extend_from_slice(&id.0);
                }
                0
            }
            Self::Hash(h) => {
                body.extend_from_slice(h);
                0
            }
            Self::Stats(s) => {
                for n in [s.used, s.quota, s.shards, s.uptime_secs] {
                    body.extend_from_slice(&n.to_le_bytes());
                }
                put_text(&mut body, &s.software);
                body.extend_from_slice(&s.disk_free.to_le_bytes());
                0
            }
            Self::Error { code, message } => {
                put_text(&mut body, message);
                *code as u8
            }
        };
        (frame(status, &body, 0), None)
    }

    /// [`Response::decode`] of a body the caller owns: a shard's bytes are
    /// moved into the answer rather than copied.
    pub fn decode_owned(op: Op, header: FrameHeader, body: Vec<u8>) -> Result<Self, WireError> {
        if op == Op::GetShard && header.kind == 0 {
            header.check_response(op)?;
            if body.len() != header.body_len as usize {
                return Err(WireError::Malformed(
                    "body length does not match the header",
                ));
            }
            return Ok(Self::Blob(body.into()));
        }
        Self::decode(op, header, &body)
    }

    /// Parses the response to `op`.
    pub fn decode(op: Op, header: FrameHeader, body: &[u8]) -> Result<Self, WireError> {
        header.check_response(op)?;
        if body.len() != header.body_len as usize {
            return Err(WireError::Malformed(
                "body length does not match the header",
            ));
        }
        let mut r = Reader(body);
        if header.kind != 0 {
            let code =
                ErrorCode::from_u8(header.kind).ok_or(WireError::UnknownKind(header.kind))?;
            let message = r.text()?;
            r.end()?;
            return Ok(Self::Error { code, message });
        }
        let resp = match op {
            Op::Hello => Self::Hello {
                software: r.text()?,
            },
            Op::PutShard | Op::DeleteShard => Self::Done,
            Op::GetShard => {
                let b = bytes::Bytes::copy_from_slice(r.0);
                r.0 = &[];
                Self::Blob(b)
            }
            Op::ListShards => {
                let n = r.u32()?;
                if n > MAX_LIST {
                    return Err(WireError::Malformed("list longer than the maximum"));
                }
                let mut ids = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    ids.push(r.id()?);
                }
                Self::List(ids)
            }
            Op::VerifyShard => {
                let mut h = [0u8; 32];
                h.copy_from_slice(r.take(32)?);
                Self::Hash(h)
            }
            Op::Stats => Self::Stats(AgentStats {
                used: r.u64()?,
                quota: r.u64()?,
                shards: r.u64()?,
                uptime_secs: r.u64()?,
                software: r.text()?,
                disk_free: if r.0.is_empty() { u64::MAX } else { r.u64()? },
            }),
        };
        r.end()?;
        Ok(resp)
    }
}

/// Splits a whole frame into its header and body (for tests and fuzzing;
/// streams read the header first, then exactly the body).
pub fn split_frame(frame: &[u8]) -> Result<(FrameHeader, &[u8]), WireError> {
    let head: &[u8; FRAME_HEADER_LEN] = frame
        .get(..FRAME_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(WireError::Malformed("shorter than a frame header"))?;
    Ok((FrameHeader::decode(head)?, &frame[FRAME_HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ShardId {
        ShardId([n; SHARD_ID_LEN])
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::Hello {
                software: "0.1.0".into(),
            },
            Request::PutShard {
                id: id(1),
                blob: vec![7; 1000].into(),
            },
            Request::PutShard {
                id: id(1),
                blob: bytes::Bytes::new(),
            },
            Request::GetShard(id(2)),
            Request::DeleteShard(id(3)),
            Request::ListShards {
                after: None,
                limit: 10,
            },
            Request::ListShards {
                after: Some(id(4)),
                limit: MAX_LIST,
            },
            Request::VerifyShard(id(5)),
            Request::Stats,
        ]
    }

    #[test]
    fn requests_round_trip() {
        for req in requests() {
            let bytes = req.encode();
            let (h, body) = split_frame(&bytes).unwrap();
            assert_eq!(Request::decode(h, body).unwrap(), req);
            // The owned decoding (a put's shard sliced, not copied) agrees.
            assert_eq!(Request::decode_owned(h, body.to_vec()).unwrap(), req);
        }
    }

    #[test]
    fn a_split_response_is_the_same_bytes_as_the_whole_one() {
        let blob = Response::Blob(bytes::Bytes::from_static(b"shard bytes"));
        let (head, tail) = blob.encode_split();
        assert_eq!(tail.as_deref(), Some(&b"shard bytes"[..]));
        assert_eq!([head, tail.unwrap().to_vec()].concat(), blob.encode());
        let done = Response::Done;
        assert_eq!(done.encode_split(), (done.encode(), None));
    }

    #[test]
    fn a_split_frame_is_the_same_bytes_as_the_whole_one() {
        for req in requests() {
            let (mut head, tail) = req.encode_split();
            if let Some(t) = tail {
                head.extend_from_slice(&t);
            }
            assert_eq!(head, req.encode(), "{req:?}");
        }
    }

    #[test]
    fn responses_round_trip() {
        let cases = [
            (
                Op::Hello,
                Response::Hello {
                    software: "x".into(),
                },
            ),
            (Op::PutShard, Response::Done),
            (Op::GetShard, Response::Blob(vec![1, 2, 3].into())),
            (Op::ListShards, Response::List(vec![id(1), id(2)])),
            (Op::VerifyShard, Response::Hash([9; 32])),
            (
                Op::Stats,
                Response::Stats(AgentStats {
                    used: 1,
                    quota: 2,
                    shards: 3,
                    uptime_secs: 4,
                    software: "0.1.0".into(),
                    disk_free: 5,
                }),
            ),
            (
                Op::PutShard,
                Response::Error {
                    code: ErrorCode::QuotaExceeded,
                    message: "full".into(),
                },
            ),
        ];
        for (op, resp) in cases {
            let bytes = resp.encode();
            let (h, body) = split_frame(&bytes).unwrap();
            assert_eq!(Response::decode(op, h, body).unwrap(), resp);
            // The owned decoding (a shard moved, not copied) agrees.
            assert_eq!(Response::decode_owned(op, h, body.to_vec()).unwrap(), resp);
        }
        // A shard body shorter than its header says is refused both ways.
        let bytes = Response::Blob(vec![1, 2, 3].into()).encode();
        let (h, body) = split_frame(&bytes).unwrap();
        assert!(Response::decode_owned(Op::GetShard, h, body[..2].to_vec()).is_err());
    }

    /// The frame layout is frozen with the version.
    #[test]
    fn frame_bytes_are_frozen() {
        assert_eq!(
            Request::GetShard(id(0xab)).encode()[..FRAME_HEADER_LEN],
            [b'C', b'S', b'N', b'P', 1, 3, 0, 0, 25, 0, 0, 0]
        );
    }

    #[test]
    fn lengths_are_checked_before_reading() {
        let mut h = FrameHeader {
            kind: Op::GetShard as u8,
            body_len: 26,
        }
        .encode();
        let header = FrameHeader::decode(&h).unwrap();
        assert_eq!(
            header.check_request(),
            Err(WireError::TooLong { len: 26, max: 25 })
        );
        let huge = FrameHeader {
            kind: Op::PutShard as u8,
            body_len: u32::MAX,
        };
        assert!(matches!(
            huge.check_request(),
            Err(WireError::TooLong { .. })
        ));
        assert!(matches!(
            huge.check_response(Op::GetShard),
            Err(WireError::TooLong { .. })
        ));
        h[0] = b'X';
        assert_eq!(FrameHeader::decode(&h), Err(WireError::BadMagic));
        let mut v = FrameHeader {
            kind: 3,
            body_len: 0,
        }
        .encode();
        v[4] = 9;
        assert_eq!(FrameHeader::decode(&v), Err(WireError::Version(9)));
        assert_eq!(max_request_body(99), Err(WireError::UnknownKind(99)));
        assert_eq!(
            max_response_body(Op::Stats, 77),
            Err(WireError::UnknownKind(77))
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let list = Request::ListShards {
            after: None,
            limit: MAX_LIST + 1,
        }
        .encode();
        let (h, body) = split_frame(&list).unwrap();
        assert!(Request::decode(h, body).is_err());
        // A put too short for its shard id, owned or not.
        let put = Request::PutShard {
            id: id(1),
            blob: bytes::Bytes::from_static(b"x"),
        }
        .encode();
        let (mut h, body) = split_frame(&put).unwrap();
        h.body_len = 10;
        assert!(Request::decode(h, &body[..10]).is_err());
        assert!(Request::decode_owned(h, body[..10].to_vec()).is_err());
        assert!(Request::decode_owned(h, body.to_vec()).is_err());
        let get = Request::GetShard(id(1)).encode();
        let (h, body) = split_frame(&get).unwrap();
        assert!(Request::decode(h, &body[..10]).is_err());
        let hello = Response::Hello {
            software: "x".into(),
        }
        .encode();
        let (h, body) = split_frame(&hello).unwrap();
        assert!(Response::decode(Op::Hello, h, &body[..body.len() - 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200), op in 1u8..8) {
            if let Ok((h, body)) = split_frame(&bytes) {
                let _ = Request::decode(h, body);
                let _ = Request::decode_owned(h, body.to_vec());
                if let Some(op) = Op::from_u8(op) {
                    let _ = Response::decode(op, h, body);
                }
            }
        }
    }
}
