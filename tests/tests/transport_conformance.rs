//! The conformance suite over real UDP (the agent's transport) and over
//! turmoil. Real sockets bind port 0: the OS picks, the socket says which.

use maxwell_node::mesh::transport::{Transport, UdpTransport};
use maxwell_tests::conformance::{self, Pair};
use maxwell_tests::transport::{TurmoilTransport, Wire};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

async fn suite(t: &dyn Transport, lo: impl Fn(u16) -> SocketAddr) {
    let any = Pair {
        bind_a: lo(0),
        bind_b: lo(0),
    };
    conformance::delivers_both_ways(t, any).await;
    conformance::send_to_nobody_is_not_an_error(t, lo(0), lo(9)).await;
    conformance::a_burst_arrives_complete(t, any, 50).await;
    conformance::sends_while_receiving(t, any).await;
    conformance::double_bind_is_an_error(t, lo(0)).await;
}

#[test]
fn udp_transport_conforms() {
    rt().block_on(suite(&UdpTransport, |p| {
        SocketAddr::from(([127, 0, 0, 1], p))
    }));
}

#[test]
fn turmoil_transport_conforms() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .build();
    sim.client("suite", async move {
        let t = TurmoilTransport::new(Wire::new(7));
        suite(&t, |p| SocketAddr::from(([127, 0, 0, 1], p))).await;
        Ok(())
    });
    sim.run().expect("suite passes");
}

#[test]
fn turmoil_transport_loss_is_seeded_and_bounded() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .build();
    let wire = Wire::new(42);
    wire.set_loss(0.3);
    let seen = wire.clone();
    let received_total = Arc::new(AtomicU64::new(0));
    let received_out = Arc::clone(&received_total);
    sim.client("lossy", async move {
        let t = TurmoilTransport::new(wire);
        let lo = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let a = t.bind(lo(2001)).await?;
        let b = t.bind(lo(2002)).await?;
        for i in 0..1000u16 {
            a.send_to(&i.to_be_bytes(), lo(2002)).await?;
        }
        let mut received = 0;
        let mut buf = [0u8; 16];
        while tokio::time::timeout(Duration::from_millis(200), b.recv_from(&mut buf))
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
        stats.dropped_by_loss + received_total.load(Ordering::Relaxed),
        1000,
        "lost + received = sent"
    );
}
