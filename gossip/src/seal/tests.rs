use super::*;

const T0: u64 = 1_800_000_000_000;

fn key(id: u8, fill: u8) -> ClusterKey {
    ClusterKey::new(id, [fill; 32])
}

fn node(k: u8) -> NodeId {
    NodeId([k; NODE_ID_LEN])
}

fn pair(fill: u8) -> (Sealer, Opener) {
    let ring = Keyring::new(key(1, fill), Vec::new());
    (
        Sealer::new(ring.clone(), node(7), T0),
        Opener::new(ring, SealConfig::default()),
    )
}

fn sealed(s: &mut Sealer, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.seal(T0, payload, &mut out);
    out
}

#[test]
fn a_sealed_datagram_opens_once_to_its_sender_and_payload() {
    let (mut s, mut o) = pair(9);
    let d = sealed(&mut s, b"ping");
    assert_eq!(d.len(), OVERHEAD + 4);
    let opened = o.open(&d, T0).expect("opens");
    assert_eq!((opened.sender, opened.payload), (node(7), &b"ping"[..]));
    assert_eq!(o.open(&d, T0), Err(SealRefusal::Replay));
    assert_eq!(o.counters().opened, 1);
    assert_eq!(o.counters().refused(SealRefusal::Replay), 1);
}

#[test]
fn every_flipped_bit_and_every_truncation_is_refused() {
    let (mut s, mut o) = pair(9);
    let d = sealed(&mut s, b"a heat report");
    for i in 0..d.len() * 8 {
        let mut m = d.clone();
        m[i / 8] ^= 1 << (i % 8);
        assert!(o.open(&m, T0).is_err(), "bit {i} flipped was believed");
    }
    for n in 0..d.len() {
        assert!(o.open(&d[..n], T0).is_err(), "{n} bytes were believed");
    }
    assert_eq!(o.counters().opened, 0);
    // Nothing refused left any state: the original still opens.
    assert!(o.open(&d, T0).is_ok());
}

#[test]
fn another_clusters_key_and_garbage_are_refused_by_reason() {
    let (mut theirs, _) = pair(1);
    let (_, mut ours) = pair(2);
    let d = sealed(&mut theirs, b"x");
    assert_eq!(ours.open(&d, T0), Err(SealRefusal::BadTag));
    assert_eq!(ours.open(b"", T0), Err(SealRefusal::Short));
    let chitchat_syn = [0u8; 64];
    assert_eq!(ours.open(&chitchat_syn, T0), Err(SealRefusal::Magic));
    let mut v2 = d.clone();
    v2[2] = 2;
    assert_eq!(ours.open(&v2, T0), Err(SealRefusal::Version));
    let mut other_id = d;
    other_id[3] = 99;
    assert_eq!(ours.open(&other_id, T0), Err(SealRefusal::UnknownKey));
    let c = ours.counters();
    assert_eq!((c.refused_total(), c.opened), (5, 0));
}

#[test]
fn reordering_within_the_window_is_fine_and_older_is_a_replay() {
    let (mut s, mut o) = pair(3);
    let ds: Vec<Vec<u8>> = (0..100).map(|_| sealed(&mut s, b"r")).collect();
    // Newest first, then the rest in reverse: the window admits 63 below.
    assert!(o.open(&ds[99], T0).is_ok());
    for (i, d) in ds.iter().enumerate().rev().skip(1) {
        let got = o.open(d, T0);
        if 99 - i < WINDOW as usize {
            assert!(got.is_ok(), "{i}");
        } else {
            assert_eq!(got, Err(SealRefusal::Replay), "{i}");
        }
    }
}

#[test]
fn a_captured_datagram_is_worthless_past_the_skew_and_a_restart_counts_on() {
    let (mut s, _) = pair(4);
    let old = sealed(&mut s, b"old");
    let ring = Keyring::new(key(1, 4), Vec::new());
    // A receiver that restarted (empty windows) still refuses it a minute on.
    let mut fresh = Opener::new(ring.clone(), SealConfig::default());
    assert_eq!(fresh.open(&old, T0 + 61_000), Err(SealRefusal::Skew));
    assert_eq!(fresh.open(&old, T0 - 61_000), Err(SealRefusal::Skew));
    // The sender restarts a second later: its counters are above the old ones.
    let mut o = Opener::new(ring.clone(), SealConfig::default());
    assert!(o.open(&old, T0).is_ok());
    let mut again = Sealer::new(ring, node(7), T0 + 1_000);
    assert!(o.open(&sealed(&mut again, b"new"), T0 + 1_000).is_ok());
}

#[test]
fn a_rotated_keyring_opens_both_keys_and_seals_with_the_first() {
    let old = key(1, 5);
    let new = key(2, 6);
    let mut before = Sealer::new(Keyring::new(old.clone(), Vec::new()), node(1), T0);
    let mut after = Sealer::new(Keyring::new(new.clone(), vec![old.clone()]), node(2), T0);
    let mut both = Opener::new(Keyring::new(new.clone(), vec![old]), SealConfig::default());
    assert!(both.open(&sealed(&mut before, b"a"), T0).is_ok());
    assert!(both.open(&sealed(&mut after, b"b"), T0).is_ok());
    let mut only_new = Opener::new(Keyring::new(new, Vec::new()), SealConfig::default());
    assert_eq!(
        only_new.open(&sealed(&mut before, b"c"), T0),
        Err(SealRefusal::UnknownKey)
    );
}

#[test]
fn the_sender_table_is_bounded_and_keeps_the_recently_heard() {
    let ring = Keyring::new(key(1, 8), Vec::new());
    let config = SealConfig {
        max_senders: 4,
        ..SealConfig::default()
    };
    let mut o = Opener::new(ring.clone(), config);
    let mut chatty = Sealer::new(ring.clone(), node(0), T0);
    let chatty_first = sealed(&mut chatty, b"0");
    assert!(o.open(&chatty_first, T0).is_ok());
    let mut firsts = Vec::new();
    for k in 1..10 {
        let d = sealed(&mut Sealer::new(ring.clone(), node(k), T0), b"x");
        assert!(o.open(&d, T0).is_ok());
        firsts.push(d);
        // Node 0 keeps talking, so it is never the one evicted.
        assert!(o.open(&sealed(&mut chatty, b"0"), T0).is_ok());
        assert!(o.windows.len() <= 4);
    }
    assert_eq!(o.open(&chatty_first, T0), Err(SealRefusal::Replay));
    // An evicted sender starts a new window: its replay is bounded by the
    // skew limit alone.
    assert!(o.open(&firsts[0], T0).is_ok());
}

#[test]
fn datagrams_reordered_a_few_milliseconds_apart_still_open() {
    let (mut s, mut o) = pair(9);
    let mut first = Vec::new();
    s.seal(T0, b"first", &mut first);
    let mut later = Vec::new();
    s.seal(T0 + 5, b"later", &mut later);
    assert!(o.open(&later, T0 + 5).is_ok());
    assert!(o.open(&first, T0 + 5).is_ok(), "reordered, not replayed");
    assert!(o.open(&first, T0 + 5).is_err(), "now it is a replay");
}
