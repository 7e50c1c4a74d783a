//! One conformance suite for every gossip transport: the real UDP one the
//! agent runs on and the turmoil one the partition tests run on. Each check
//! is an async function over `&dyn Transport`, run by the tests in
//! `tests/transport_conformance.rs` once per implementation.

use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use std::net::SocketAddr;
use std::time::Duration;

/// A distinguishable envelope: a SYN whose cluster id carries `tag`.
pub fn envelope(tag: &str) -> ChitchatEnvelope {
    ChitchatEnvelope {
        version: ProtocolVersion::V1,
        message: ChitchatMessage::Syn {
            cluster_id: tag.to_string(),
            digest: Default::default(),
        },
    }
}

/// Where the two parties of a check bind, and how each is reached.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub bind_a: SocketAddr,
    pub bind_b: SocketAddr,
    pub reach_a: SocketAddr,
    pub reach_b: SocketAddr,
}

async fn recv(socket: &mut Box<dyn Socket>) -> chitchat::transport::RecvOutcome {
    tokio::time::timeout(Duration::from_secs(5), socket.recv())
        .await
        .expect("a message within 5 s")
        .expect("recv works")
}

/// A message goes each way, intact, with the sender's address.
pub async fn delivers_both_ways(t: &dyn Transport, p: Pair) {
    let mut a = t.open(p.bind_a).await.expect("open a");
    let mut b = t.open(p.bind_b).await.expect("open b");
    let sent = a.send(p.reach_b, envelope("a->b")).await.expect("send");
    assert!(sent.num_bytes_sent > 0);
    let got = recv(&mut b).await;
    assert_eq!(got.envelope, envelope("a->b"));
    assert_eq!(got.from_addr.port(), p.reach_a.port());
    assert!(got.num_bytes_received > 0);
    b.send(got.from_addr, envelope("b->a"))
        .await
        .expect("reply");
    assert_eq!(recv(&mut a).await.envelope, envelope("b->a"));
}

/// Sending to an address where nobody listens neither fails nor blocks:
/// an error from `send` would stop chitchat's server loop.
pub async fn send_to_nobody_is_not_an_error(
    t: &dyn Transport,
    bind: SocketAddr,
    nowhere: SocketAddr,
) {
    let mut a = t.open(bind).await.expect("open");
    for i in 0..3 {
        a.send(nowhere, envelope(&format!("lost-{i}")))
            .await
            .expect("send to nobody is Ok");
    }
}

/// A burst arrives complete and in order (loopback, no loss configured).
pub async fn a_burst_arrives_complete(t: &dyn Transport, p: Pair, n: usize) {
    let mut a = t.open(p.bind_a).await.expect("open a");
    let mut b = t.open(p.bind_b).await.expect("open b");
    for i in 0..n {
        a.send(p.reach_b, envelope(&format!("m{i}")))
            .await
            .expect("send");
    }
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(recv(&mut b).await.envelope);
    }
    let expected: Vec<_> = (0..n).map(|i| envelope(&format!("m{i}"))).collect();
    assert_eq!(got, expected);
}

/// Garbage on the port is skipped; the next real message still arrives.
/// `send_raw` puts bytes on the wire from another socket.
pub async fn garbage_is_skipped<F, Fut>(t: &dyn Transport, p: Pair, send_raw: F)
where
    F: Fn(Vec<u8>, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut a = t.open(p.bind_a).await.expect("open a");
    let mut b = t.open(p.bind_b).await.expect("open b");
    send_raw(
        b"\xff\x00garbage that is no chitchat message".to_vec(),
        p.reach_b,
    )
    .await;
    send_raw(Vec::new(), p.reach_b).await;
    send_raw(vec![7u8; 8], p.reach_b).await;
    a.send(p.reach_b, envelope("after-garbage"))
        .await
        .expect("send");
    assert_eq!(recv(&mut b).await.envelope, envelope("after-garbage"));
}

/// Binding an address already in use is an error, not a panic.
pub async fn double_bind_is_an_error(t: &dyn Transport, bind: SocketAddr) {
    let _first = t.open(bind).await.expect("first bind");
    assert!(
        t.open(bind).await.is_err(),
        "second bind of {bind} must fail"
    );
}
