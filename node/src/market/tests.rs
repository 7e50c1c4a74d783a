//! The market's driver on a real disk that fills (a small tmpfs: root only).

use super::config::RawMarket;
use super::*;
use std::process::Command;

/// A tmpfs of `kib` KiB, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(kib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = format!("size={kib}k,mode=0700");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipped: cannot mount a tmpfs here (needs root)");
        }
        ok.then_some(Self(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).expect("create");
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    filler
}

#[test]
fn a_call_refused_by_a_full_disk_halts_the_market_until_a_tick_finds_room() {
    let Some(disk) = SmallDisk::mount(512) else {
        return;
    };
    let settings = RawMarket::default().validate().expect("defaults");
    let key = SigningKey::from_bytes(&[3; 32]);
    let node = NodeId([3; 10]);
    let mut b = Bazaar::open(&settings, disk.0.path(), node, key, 2, 1_000).expect("open");
    let spec = GuestSpec::from_json(
        r#"{"name":"g","kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","bid_milli":7,"wallet_milli":5000}"#,
    )
    .expect("spec");
    b.join(1, &spec, 1_000).expect("join");
    let filler = fill(disk.0.path());
    // The ledger's last page may still hold a few entries.
    let full = (0..1_000)
        .find_map(|i| b.fund(1, 10, 2_000 + i).err())
        .expect("the disk fills");
    assert_eq!(
        full.status,
        StatusCode::INSUFFICIENT_STORAGE,
        "{}",
        full.message
    );
    assert!(!full.state_changed);
    assert!(b.durable(), "nothing written is in doubt");
    let halted = b.fund(1, 10, 2_500).expect_err("halted");
    assert!(halted.message.contains("halted"), "{}", halted.message);
    // Room again: the next tick resumes the market, and calls go through.
    std::fs::remove_file(filler).expect("rm");
    b.tick(3_000, 100, None, &BTreeMap::new(), 0);
    let before = b.market.account(1).expect("open").wallet_micro;
    b.fund(1, 10, 3_100).expect("funded once the disk has room");
    assert_eq!(
        b.market.account(1).expect("open").wallet_micro,
        before + 10_000
    );
}

#[test]
fn a_ledger_in_doubt_answers_no_arrival_until_a_new_segment_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = RawMarket::default().validate().expect("defaults");
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut b = Bazaar::open(&settings, dir.path(), NodeId([3; 10]), key, 2, 1_000).expect("open");
    let spec = GuestSpec::from_json(
        r#"{"name":"g","kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","bid_milli":7,"wallet_milli":5000}"#,
    )
    .expect("spec");
    b.join(1, &spec, 1_000).expect("join");
    // What a failed fsync leaves (tmpfs cannot fail one): in doubt, halted.
    b.in_doubt = true;
    b.halted = Some("fsync: EIO".into());
    assert!(!b.durable());
    let arrived = |b: &mut Bazaar| {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let from = NodeId([9; 10]);
        b.moving(
            Moving::Arrived {
                from,
                account: 1,
                reply,
            },
            1_500,
        );
        rx.blocking_recv().expect("answered")
    };
    assert!(arrived(&mut b).is_err(), "no answer while in doubt");
    assert!(!dir.path().join("ledger/00000002.log").exists());
    b.tick(2_000, 100, None, &BTreeMap::new(), 0);
    assert!(b.durable() && b.halted.is_none());
    assert_eq!(arrived(&mut b).map_err(|e| e.message), Ok(false));
    // The new segment starts from a snapshot that holds the account.
    let opened = Ledger::open(&dir.path().join("ledger"), settings.ledger).expect("reopen");
    match opened.entries.first() {
        Some(Entry::Snapshot(s)) => assert!(s.accounts.iter().any(|a| a.id == 1)),
        other => panic!("the new segment starts with {other:?}"),
    }
}

#[test]
fn guest_ids_after_a_restart_go_on_past_those_the_ledger_knows() {
    use maxwell_vmm::{GuestBackend, ProcessBackend};
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = RawMarket::default().validate().expect("defaults");
    let key = SigningKey::from_bytes(&[4; 32]);
    let node = NodeId([4; 10]);
    let spec = GuestSpec::from_json(
        r#"{"name":"g","kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","bid_milli":7,"wallet_milli":5000}"#,
    )
    .expect("spec");
    let high = 5_000_000;
    {
        let mut b = Bazaar::open(&settings, dir.path(), node, key.clone(), 2, 1_000).expect("open");
        b.join(high, &spec, 1_000).expect("join");
        b.gone(high, 1_100);
        // More closed after it than the market keeps listed.
        for vm in 1..=70 {
            b.join(vm, &spec, 1_200).expect("join");
            b.gone(vm, 1_300);
        }
    }
    // The restart: the ledger is replayed, then a real guest starts.
    let _b = Bazaar::open(&settings, dir.path(), node, key, 2, 2_000).expect("reopen");
    let backend = ProcessBackend::new();
    let id = backend.start(&spec).expect("a process guest starts");
    let _ = backend.kill(id);
    assert!(id.0 > high, "g{} reuses an id the ledger knows", id.0);
}
