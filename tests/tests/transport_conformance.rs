//! The conformance suite over real UDP (chitchat's `UdpTransport`, and the
//! agent's counting wrapper around it) and over turmoil.

use maxwell_node::mesh::transport::{CountingTransport, GossipStats};
use maxwell_tests::conformance::{self, Pair};
use maxwell_tests::transport::{Mailbox, TurmoilTransport};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Two distinct loopback UDP addresses: chitchat's transport binds the
/// address it is given and reports none back, so these are taken from the
/// kernel (both held at once, so never the same one) and released.
fn free_udp_pair() -> Pair {
    let bind = || std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (sa, sb) = (bind(), bind());
    let (a, b) = (
        sa.local_addr().expect("addr"),
        sb.local_addr().expect("addr"),
    );
    drop((sa, sb));
    Pair {
        bind_a: a,
        bind_b: b,
        reach_a: a,
        reach_b: b,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn udp_raw(bytes: Vec<u8>, to: SocketAddr) {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    s.send_to(&bytes, to).await.expect("send raw");
}

/// The suite on loopback UDP, fresh ports for each check.
async fn udp_suite(t: &dyn chitchat::transport::Transport) {
    conformance::delivers_both_ways(t, free_udp_pair()).await;
    let p = free_udp_pair();
    conformance::send_to_nobody_is_not_an_error(t, p.bind_a, p.reach_b).await;
    conformance::a_burst_arrives_complete(t, free_udp_pair(), 50).await;
    conformance::garbage_is_skipped(t, free_udp_pair(), udp_raw).await;
    conformance::double_bind_is_an_error(t, free_udp_pair().bind_a).await;
}

#[test]
fn udp_transport_conforms() {
    rt().block_on(udp_suite(&chitchat::transport::UdpTransport));
}

#[test]
fn counting_udp_transport_conforms_and_counts() {
    rt().block_on(async {
        let stats = Arc::new(GossipStats::default());
        let t = CountingTransport::new(chitchat::transport::UdpTransport, Arc::clone(&stats));
        conformance::delivers_both_ways(&t, free_udp_pair()).await;
        assert_eq!(stats.datagrams_out.load(Ordering::Relaxed), 2);
        assert_eq!(stats.datagrams_in.load(Ordering::Relaxed), 2);
        assert!(stats.bytes_out.load(Ordering::Relaxed) > 0);
        udp_suite(&t).await;
    });
}

#[test]
fn turmoil_transport_conforms() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .build();
    let mailbox = Mailbox::new(7);
    sim.client("suite", async move {
        let t = TurmoilTransport::new(mailbox.clone());
        let lo = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let pair = |a: u16, b: u16| Pair {
            bind_a: lo(a),
            bind_b: lo(b),
            reach_a: lo(a),
            reach_b: lo(b),
        };
        conformance::delivers_both_ways(&t, pair(1001, 1002)).await;
        conformance::send_to_nobody_is_not_an_error(&t, lo(1003), lo(1004)).await;
        conformance::a_burst_arrives_complete(&t, pair(1005, 1006), 50).await;
        let raw = |bytes: Vec<u8>, to: SocketAddr| async move {
            let s = turmoil::net::UdpSocket::bind(lo(0)).await.expect("bind");
            s.send_to(&bytes, to).await.expect("send raw");
        };
        conformance::garbage_is_skipped(&t, pair(1007, 1008), raw).await;
        conformance::double_bind_is_an_error(&t, lo(1009)).await;
        // Parcels for the datagrams to nobody were never redeemed; none leaked
        // from the delivered ones.
        assert_eq!(mailbox.stats().in_flight, 3);
        Ok(())
    });
    sim.run().expect("suite passes");
}

#[test]
fn turmoil_transport_loss_is_seeded_and_bounded() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .build();
    let mailbox = Mailbox::new(42);
    mailbox.set_loss(0.3);
    let seen = mailbox.clone();
    let received_total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let received_out = Arc::clone(&received_total);
    sim.client("lossy", async move {
        let t = TurmoilTransport::new(mailbox);
        let lo = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let mut a = chitchat::transport::Transport::open(&t, lo(2001)).await?;
        let mut b = chitchat::transport::Transport::open(&t, lo(2002)).await?;
        for i in 0..1000 {
            a.send(lo(2002), conformance::envelope(&i.to_string()))
                .await?;
        }
        let mut received = 0;
        while tokio::time::timeout(Duration::from_millis(200), b.recv())
            .await
            .is_ok()
        {
            received += 1;
        }
        assert!(
            (620..=780).contains(&received),
            "30% loss kept {received} of 1000"
        );
        received_out.store(received, Ordering::Relaxed);
        Ok(())
    });
    sim.run().expect("runs");
    let stats = seen.stats();
    assert_eq!(stats.sent, 1000);
    assert_eq!(
        stats.in_flight, 0,
        "every parcel sent was delivered or never parked"
    );
    assert_eq!(
        stats.dropped_by_loss + received_total.load(Ordering::Relaxed),
        1000,
        "lost + received = sent"
    );
}
