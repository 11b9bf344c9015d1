//! UDP hole punching: small datagrams sent from the QUIC socket to the
//! peer's public and local endpoints, so each side's NAT holds a mapping
//! that lets the other side's packets in.
//!
//! Both sides punch: the agent from the moment it starts (towards the
//! daemon endpoints it was given) whenever it has no live connection, the
//! daemon while its QUIC handshake is attempted. The datagrams are sent on
//! a clone of the socket quinn owns, so they leave from the very port the
//! NAT mapped; quinn drops them on arrival because they are too short to
//! be a QUIC packet (and too short to draw a stateless reset).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The punch datagram. Eight bytes with the QUIC fixed bit clear: shorter
/// than any short-header packet with our 8-byte connection IDs, and under
/// quinn's 22-byte floor for answering with a stateless reset.
pub const PUNCH: [u8; 8] = *b"\0cspunch";

/// How often to punch while a connection is being made.
pub const FAST: Duration = Duration::from_millis(100);
/// How often an agent with no connection keeps punching once its first
/// burst is over (the daemon may come back at any time; this keeps the
/// agent's NAT mapping towards it open at a few bytes a second).
pub const SLOW: Duration = Duration::from_secs(2);
/// How long a burst of [`FAST`] punches lasts.
pub const BURST: Duration = Duration::from_secs(10);

/// The interval to punch at, `since` the peer was last connected (or since
/// the start): fast for a [`BURST`], then slow.
pub fn interval(since: Duration) -> Duration {
    if since < BURST { FAST } else { SLOW }
}

/// Sends one punch to each target. Errors are ignored: an unreachable
/// candidate address is expected (a local address seen from another
/// network), and the next round tries again.
pub fn send(socket: &UdpSocket, targets: &[SocketAddr]) {
    for target in targets {
        let _ = socket.send_to(&PUNCH, target);
    }
}

/// Punches `targets` from `socket` every [`FAST`] until the future is
/// dropped or `window` has passed.
pub async fn burst(socket: UdpSocket, targets: Vec<SocketAddr>, window: Duration) {
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(FAST);
    while start.elapsed() < window {
        tick.tick().await;
        send(&socket, &targets);
    }
}

/// The agent's side: punches `targets` from `socket` for as long as
/// `connected` says no daemon is connected, fast for a [`BURST`] after each
/// loss of the connection (and at start), slow after that. Runs until the
/// future is dropped.
pub async fn while_unconnected(
    socket: UdpSocket,
    targets: Vec<SocketAddr>,
    connected: impl Fn() -> bool,
) {
    if targets.is_empty() {
        return;
    }
    let mut unconnected_since = tokio::time::Instant::now();
    loop {
        if connected() {
            tokio::time::sleep(FAST).await;
            unconnected_since = tokio::time::Instant::now();
            continue;
        }
        send(&socket, &targets);
        tokio::time::sleep(interval(unconnected_since.elapsed())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_then_slow() {
        assert_eq!(interval(Duration::ZERO), FAST);
        assert_eq!(interval(BURST - Duration::from_millis(1)), FAST);
        assert_eq!(interval(BURST), SLOW);
    }

    #[test]
    fn punches_are_not_quic() {
        // QUIC's fixed bit (0x40) is clear and the datagram is too short for
        // a short header with an 8-byte connection ID (1 + 8 bytes).
        assert_eq!(PUNCH[0] & 0x40, 0);
        assert!(PUNCH.len() < 1 + 8);
    }

    #[tokio::test]
    async fn a_burst_reaches_every_target_and_ends() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let from = UdpSocket::bind("127.0.0.1:0").unwrap();
        let targets = vec![a.local_addr().unwrap(), b.local_addr().unwrap()];
        burst(from, targets, Duration::from_millis(250)).await;
        for s in [a, b] {
            let mut buf = [0u8; 16];
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &PUNCH);
        }
    }
}
