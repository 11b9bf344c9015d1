//! STUN binding (RFC 8489) on the very UDP socket QUIC will use: a request,
//! its XOR-MAPPED-ADDRESS answer, a small server, and NAT classification.
//!
//! Only what NAT traversal needs: Binding requests and success responses,
//! XOR-MAPPED-ADDRESS (and the legacy MAPPED-ADDRESS when a server sends
//! only that). Unknown comprehension-optional attributes are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// RFC 8489 section 5: the magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER_LEN: usize = 20;

/// A transaction id.
pub type TransactionId = [u8; 12];

/// A parsed STUN message.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Message {
    /// A Binding request.
    Request(TransactionId),
    /// A Binding success response with the mapped address.
    Success {
        /// Its transaction.
        transaction: TransactionId,
        /// Where the request came from, as the server saw it.
        mapped: SocketAddr,
    },
}

/// Bytes that are not a STUN message we handle.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Not STUN (or a message type we do not handle).
    #[error("not a STUN binding message")]
    NotStun,
    /// Malformed attributes.
    #[error("malformed STUN message: {0}")]
    Malformed(&'static str),
    /// No answer in time.
    #[error("no answer from the STUN server {0} (is UDP to it blocked?)")]
    Timeout(SocketAddr),
    /// The socket failed.
    #[error("STUN socket: {0}")]
    Io(String),
}

/// A Binding request.
pub fn request(transaction: TransactionId) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    b[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b[8..].copy_from_slice(&transaction);
    b
}

/// A Binding success response telling the requester its address.
pub fn success(transaction: TransactionId, mapped: SocketAddr) -> Vec<u8> {
    let mut attr = Vec::with_capacity(20);
    let port = mapped.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match mapped.ip() {
        IpAddr::V4(ip) => {
            attr.extend_from_slice(&[0, 1]);
            attr.extend_from_slice(&port.to_be_bytes());
            attr.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            attr.extend_from_slice(&[0, 2]);
            attr.extend_from_slice(&port.to_be_bytes());
            let key = xor_key(&transaction);
            attr.extend(ip.octets().iter().zip(key).map(|(a, k)| a ^ k));
        }
    }
    let mut b = Vec::with_capacity(HEADER_LEN + 4 + attr.len());
    b.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    b.extend_from_slice(&((4 + attr.len()) as u16).to_be_bytes());
    b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b.extend_from_slice(&transaction);
    b.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    b.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    b.extend_from_slice(&attr);
    b
}

fn xor_key(transaction: &TransactionId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    key[4..].copy_from_slice(transaction);
    key
}

/// Whether a datagram looks like STUN (first two bits zero, the cookie):
/// how a socket shared with QUIC tells them apart.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN
        && datagram[0] & 0xc0 == 0
        && datagram[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Parses a Binding request or success response.
pub fn parse(datagram: &[u8]) -> Result<Message, StunError> {
    if !is_stun(datagram) {
        return Err(StunError::NotStun);
    }
    let kind = u16::from_be_bytes([datagram[0], datagram[1]]);
    let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if len % 4 != 0 || HEADER_LEN + len > datagram.len() {
        return Err(StunError::Malformed("length"));
    }
    let mut transaction = [0u8; 12];
    transaction.copy_from_slice(&datagram[8..20]);
    match kind {
        BINDING_REQUEST => Ok(Message::Request(transaction)),
        BINDING_SUCCESS => {
            let mut attrs = &datagram[HEADER_LEN..HEADER_LEN + len];
            let mut found = None;
            while attrs.len() >= 4 {
                let t = u16::from_be_bytes([attrs[0], attrs[1]]);
                let l = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
                let padded = l.div_ceil(4) * 4;
                let value = attrs
                    .get(4..4 + l)
                    .ok_or(StunError::Malformed("attribute length"))?;
                match t {
                    ATTR_XOR_MAPPED_ADDRESS => {
                        found = Some(address(value, Some(&transaction))?);
                    }
                    ATTR_MAPPED_ADDRESS if found.is_none() => {
                        found = Some(address(value, None)?);
                    }
                    _ => {}
                }
                attrs = attrs.get(4 + padded..).unwrap_or(&[]);
            }
            let mapped = found.ok_or(StunError::Malformed("no mapped address"))?;
            Ok(Message::Success {
                transaction,
                mapped,
            })
        }
        _ => Err(StunError::NotStun),
    }
}

/// An address attribute; XOR-ed when `transaction` is given.
fn address(v: &[u8], transaction: Option<&TransactionId>) -> Result<SocketAddr, StunError> {
    if v.len() < 4 {
        return Err(StunError::Malformed("address"));
    }
    let mut port = u16::from_be_bytes([v[2], v[3]]);
    let key = transaction.map(xor_key);
    if key.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match (v[1], v.len()) {
        (1, 8) => {
            let mut n = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
            if key.is_some() {
                n ^= MAGIC_COOKIE;
            }
            IpAddr::V4(Ipv4Addr::from(n))
        }
        (2, 20) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&v[4..20]);
            if let Some(k) = key {
                for (a, b) in o.iter_mut().zip(k) {
                    *a ^= b;
                }
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(StunError::Malformed("address family")),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Asks `server` what address `socket` is seen from, retransmitting as RFC
/// 8489 section 6.2.1 says (500 ms, doubling) within `timeout`. Blocking:
/// run it before the socket is handed to QUIC. Datagrams that are not the
/// answer are ignored.
pub fn query(
    socket: &std::net::UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, StunError> {
    let io = |e: std::io::Error| StunError::Io(e.to_string());
    let transaction: TransactionId = rand::random();
    let deadline = std::time::Instant::now() + timeout;
    let mut rto = Duration::from_millis(500);
    let previous = socket.read_timeout().map_err(io)?;
    let result = (|| {
        loop {
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(StunError::Timeout(server));
            }
            socket.send_to(&request(transaction), server).map_err(io)?;
            let resend_at = (now + rto).min(deadline);
            rto *= 2;
            let mut buf = [0u8; 576];
            loop {
                let left = resend_at.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                socket.set_read_timeout(Some(left)).map_err(io)?;
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) if from == server => {
                        if let Ok(Message::Success {
                            transaction: t,
                            mapped,
                        }) = parse(&buf[..n])
                            && t == transaction
                        {
                            return Ok(mapped);
                        }
                    }
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break;
                    }
                    // An ICMP error from an earlier send: keep trying until the deadline.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(io(e)),
                }
            }
        }
    })();
    let _ = socket.set_read_timeout(previous);
    result
}

/// What two STUN servers say about one socket.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NatKind {
    /// Both saw the local address itself: no NAT.
    Open,
    /// Both saw the same public address: hole punching works.
    EndpointIndependent,
    /// They saw different public ports: a symmetric NAT, where punching
    /// fails. Relaying or a port-preserving NAT is needed.
    Symmetric,
}

/// Classifies the mappings two servers reported for a socket bound to `local`.
pub fn classify(local: SocketAddr, first: SocketAddr, second: SocketAddr) -> NatKind {
    if first != second {
        NatKind::Symmetric
    } else if first == local {
        NatKind::Open
    } else {
        NatKind::EndpointIndependent
    }
}

impl NatKind {
    /// The name used in the agent's line and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            NatKind::Open => "open",
            NatKind::EndpointIndependent => "endpoint-independent",
            NatKind::Symmetric => "symmetric",
        }
    }

    /// Parses [`NatKind::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        [
            NatKind::Open,
            NatKind::EndpointIndependent,
            NatKind::Symmetric,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for NatKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the STUN servers said about one socket.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Discovery {
    /// The public address the first answering server saw.
    pub public: Option<SocketAddr>,
    /// The NAT, when two servers answered (or one saw the local address
    /// itself); `None` when that cannot be told.
    pub nat: Option<NatKind>,
    /// Every mapped address seen, in server order.
    pub seen: Vec<SocketAddr>,
    /// Servers that could not be asked or did not answer, with why.
    pub failures: Vec<String>,
}

impl Discovery {
    /// A sentence for the user when the NAT defeats hole punching.
    pub fn symmetric_warning(&self) -> Option<String> {
        match (self.nat, self.seen.as_slice()) {
            (Some(NatKind::Symmetric), [a, b, ..]) => Some(format!(
                "symmetric NAT: two STUN servers saw this socket as {a} and {b}, so its public \
                 port changes with every peer and hole punching cannot reach it; run this side \
                 where its NAT keeps the port (endpoint-independent mapping, as most home \
                 routers do) or where it has a public address"
            )),
            _ => None,
        }
    }
}

/// Asks each server in `servers` (HOST:PORT) for `socket`'s public address,
/// on that very socket, and classifies the NAT. Servers that fail are noted
/// in [`Discovery::failures`], not fatal: a peer on the same network can
/// still connect.
pub fn discover(socket: &std::net::UdpSocket, servers: &[String], timeout: Duration) -> Discovery {
    use std::net::ToSocketAddrs as _;
    let mut found = Discovery {
        public: None,
        nat: None,
        seen: Vec::new(),
        failures: Vec::new(),
    };
    let local = socket.local_addr().ok();
    for server in servers {
        let addr = match server.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            _ => {
                found
                    .failures
                    .push(format!("cannot resolve STUN server {server}"));
                continue;
            }
        };
        match query(socket, addr, timeout) {
            Ok(mapped) => found.seen.push(mapped),
            Err(e) => found.failures.push(e.to_string()),
        }
    }
    found.public = found.seen.first().copied();
    found.nat = match (found.seen.as_slice(), local) {
        ([a, b, ..], Some(local)) => Some(classify(local, *a, *b)),
        ([one], Some(local)) if *one == local => Some(NatKind::Open),
        _ => None,
    };
    found
}

/// Answers Binding requests on `socket` until it fails: a STUN server for
/// tests and for the emulator.
pub async fn serve(socket: tokio::net::UdpSocket) {
    let mut buf = [0u8; 1500];
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if let Ok(Message::Request(t)) = parse(&buf[..n]) {
            let _ = socket.send_to(&success(t, from), from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 section 2.2's IPv4 response carries 192.0.2.1:32853 in its
    /// XOR-MAPPED-ADDRESS (as 0xa147 and 0xe112a643).
    #[test]
    fn rfc5769_xor_mapped_ipv4() {
        let t = [
            0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
        ];
        let mut msg = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        msg.extend_from_slice(&t);
        msg.extend_from_slice(&[
            0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
        ]);
        assert_eq!(
            parse(&msg).unwrap(),
            Message::Success {
                transaction: t,
                mapped: "192.0.2.1:32853".parse().unwrap()
            }
        );
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let t = [7u8; 12];
        assert_eq!(parse(&request(t)).unwrap(), Message::Request(t));
        for addr in ["203.0.113.9:4242", "[2001:db8::1]:443"] {
            let a: SocketAddr = addr.parse().unwrap();
            assert_eq!(
                parse(&success(t, a)).unwrap(),
                Message::Success {
                    transaction: t,
                    mapped: a
                }
            );
        }
    }

    #[test]
    fn quic_and_garbage_are_not_stun() {
        assert!(!is_stun(&[0xc0; 40]));
        assert_eq!(parse(b"hello"), Err(StunError::NotStun));
        let mut bad = success([1; 12], "1.2.3.4:5".parse().unwrap());
        bad[3] = 0xff;
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn classification() {
        let local: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let p: SocketAddr = "198.51.100.1:6000".parse().unwrap();
        let q: SocketAddr = "198.51.100.1:6001".parse().unwrap();
        assert_eq!(classify(local, local, local), NatKind::Open);
        assert_eq!(classify(local, p, p), NatKind::EndpointIndependent);
        assert_eq!(classify(local, p, q), NatKind::Symmetric);
    }

    #[tokio::test]
    async fn a_query_against_the_server_on_loopback() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(serve(server));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        let mapped =
            tokio::task::spawn_blocking(move || query(&socket, addr, Duration::from_secs(3)))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(mapped, local);
        // Nobody answering: a clear timeout, not a hang.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = tokio::task::spawn_blocking(move || {
            query(&socket, silent_addr, Duration::from_millis(700))
        })
        .await
        .unwrap()
        .unwrap_err();
        assert_eq!(e, StunError::Timeout(silent_addr));
        drop(silent);
    }
}
