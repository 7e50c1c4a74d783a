use super::*;

fn offer(id: u8, price_milli: u64, at_ms: u64) -> Offer {
    Offer {
        node_id: NodeId([id; crate::node_id::NODE_ID_LEN]),
        price_milli,
        headroom: crate::MicroWatts::from_watts(100.0),
        hottest: MilliCelsius::from_celsius(50.0),
        at_ms,
    }
}

#[test]
fn the_cheapest_takes_each_nodes_newest_offer_and_keeps_four() {
    let offers = vec![
        offer(1, 100, 10),
        // Node 1's newer offer is dearer: it replaces the older.
        offer(1, 900, 20),
        offer(2, 300, 5),
        offer(3, 200, 5),
        offer(4, 400, 5),
        offer(5, 500, 5),
        offer(6, 600, 5),
    ];
    let ids: Vec<u8> = cheapest(offers).iter().map(|o| o.node_id.0[0]).collect();
    assert_eq!(ids, vec![3, 2, 4, 5]);
}

#[test]
fn a_price_step_under_the_threshold_is_no_change() {
    let a = vec![offer(1, 1_000, 1)];
    assert!(!offers_differ(&a, &[offer(1, 1_040, 2)], 5));
    assert!(offers_differ(&a, &[offer(1, 1_060, 2)], 5));
    assert!(offers_differ(&a, &[offer(2, 1_000, 2)], 5));
    assert!(offers_differ(&a, &[], 5));
}

#[test]
fn of_two_offers_as_new_for_one_node_the_cheaper_stands() {
    let ids = |offers: Vec<Offer>| -> Vec<u64> {
        cheapest(offers).iter().map(|o| o.price_milli).collect()
    };
    assert_eq!(ids(vec![offer(1, 700, 10), offer(1, 100, 10)]), vec![100]);
    assert_eq!(ids(vec![offer(1, 100, 10), offer(1, 700, 10)]), vec![100]);
}
