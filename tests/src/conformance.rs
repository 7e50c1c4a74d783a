//! One conformance suite for every gossip transport: the real UDP one the
//! agent runs on and the turmoil one the partition tests run on. Each check
//! is an async function over `&dyn Transport`, run by the tests in
//! `tests/transport_conformance.rs` once per implementation.

use maxwell_node::mesh::transport::{Socket, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where the two parties of a check bind (port 0: any), and the address
/// others reach a bound socket at (its port filled in from `local_addr`).
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub bind_a: SocketAddr,
    pub bind_b: SocketAddr,
}

async fn open(t: &dyn Transport, addr: SocketAddr) -> (Arc<dyn Socket>, SocketAddr) {
    let s = t.bind(addr).await.expect("bind");
    let mut reach = s.local_addr().expect("local addr");
    if reach.ip().is_unspecified() {
        reach.set_ip(addr.ip());
    }
    assert_ne!(reach.port(), 0, "the bound port is reported");
    (s, reach)
}

async fn recv(socket: &dyn Socket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("a datagram within 5 s")
        .expect("recv works");
    buf.truncate(n);
    (buf, from)
}

/// A datagram goes each way, byte for byte, with the sender's address.
pub async fn delivers_both_ways(t: &dyn Transport, p: Pair) {
    let (a, reach_a) = open(t, p.bind_a).await;
    let (b, reach_b) = open(t, p.bind_b).await;
    let sent = a.send_to(b"a->b", reach_b).await.expect("send");
    assert_eq!(sent, 4);
    let (got, from) = recv(b.as_ref()).await;
    assert_eq!(got, b"a->b");
    assert_eq!(from.port(), reach_a.port());
    b.send_to(b"b->a", from).await.expect("reply");
    assert_eq!(recv(a.as_ref()).await.0, b"b->a");
}

/// Sending to an address where nobody listens neither fails nor blocks.
pub async fn send_to_nobody_is_not_an_error(
    t: &dyn Transport,
    bind: SocketAddr,
    nowhere: SocketAddr,
) {
    let (a, _) = open(t, bind).await;
    for i in 0..3u8 {
        let sent = tokio::time::timeout(Duration::from_secs(1), a.send_to(&[i], nowhere))
            .await
            .expect("does not block");
        assert!(sent.is_ok(), "send to nobody: {sent:?}");
    }
}

/// A burst of `n` datagrams arrives complete and in order, a datagram per
/// send; a datagram of the largest size the mesh sends arrives whole.
pub async fn a_burst_arrives_complete(t: &dyn Transport, p: Pair, n: u16) {
    let (a, _) = open(t, p.bind_a).await;
    let (b, reach_b) = open(t, p.bind_b).await;
    for i in 0..n {
        a.send_to(&i.to_be_bytes(), reach_b).await.expect("send");
    }
    for i in 0..n {
        assert_eq!(recv(b.as_ref()).await.0, i.to_be_bytes());
    }
    let big = vec![0xab; 1_400];
    a.send_to(&big, reach_b).await.expect("send");
    assert_eq!(recv(b.as_ref()).await.0, big);
}

/// One socket receives while another task sends on it: the mesh driver's
/// shape (one task, the socket shared).
pub async fn sends_while_receiving(t: &dyn Transport, p: Pair) {
    let (a, _) = open(t, p.bind_a).await;
    let (b, reach_b) = open(t, p.bind_b).await;
    let receiver = Arc::clone(&a);
    let waiting = tokio::spawn(async move { recv(receiver.as_ref()).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    a.send_to(b"while", reach_b)
        .await
        .expect("send while receiving");
    let (got, from) = recv(b.as_ref()).await;
    assert_eq!(got, b"while");
    b.send_to(b"back", from).await.expect("reply");
    assert_eq!(waiting.await.expect("task").0, b"back");
}

/// Binding an address already bound is an error, not a second socket.
pub async fn double_bind_is_an_error(t: &dyn Transport, bind: SocketAddr) {
    let (_a, reach) = open(t, bind).await;
    let again = SocketAddr::new(bind.ip(), reach.port());
    assert!(t.bind(again).await.is_err(), "second bind of {again}");
}
