//! The ledger under crashes: a writer process SIGKILLed at random moments,
//! tails torn at random offsets, a disk that fills, and rotation.

use maxwell_market::{
    Class, Entry, Ledger, LedgerConfig, LedgerError, Market, MarketConfig, Order,
};
use maxwell_types::rng::Rng;
use maxwell_types::NodeId;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Entry `i` of the writer: a deposit whose name is `i` padded to a random
/// length, so that some frames span many pages.
fn entry(i: u64, pad: usize) -> Entry {
    let name = format!("{i}:{}", "x".repeat(pad));
    let order = Order::new(&name, 1, 64, 1_000, i, Class::Pausable, None).expect("order");
    Entry::Open {
        account: i,
        vm: i,
        order,
        at_ms: i,
    }
}

fn index_of(e: &Entry) -> u64 {
    match e {
        Entry::Open { account, .. } => *account,
        other => panic!("unexpected entry {other:?}"),
    }
}

/// The writer: appends and syncs entries after the last one it finds,
/// printing `ack N` once entry N is durable.
#[test]
#[ignore = "the child process of a_writer_killed_at_random_moments_loses_nothing_it_acknowledged"]
fn ledger_writer_child() {
    let dir = std::env::var("MAXWELL_LEDGER_DIR").expect("MAXWELL_LEDGER_DIR");
    let opened = Ledger::open(Path::new(&dir), LedgerConfig::default()).expect("open");
    let mut ledger = opened.ledger;
    let mut next = opened.entries.last().map_or(1, |e| index_of(e) + 1);
    let mut rng = Rng::new(next);
    let mut out = std::io::stdout().lock();
    loop {
        ledger
            .append(&entry(next, rng.below(200_000) as usize))
            .expect("append");
        ledger.sync().expect("sync");
        writeln!(out, "ack {next}")
            .and_then(|()| out.flush())
            .expect("stdout");
        next += 1;
    }
}

#[test]
fn a_writer_killed_at_random_moments_loses_nothing_it_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("exe");
    let mut rng = Rng::new(3);
    let mut acked = 0u64;
    let mut torn_seen = 0;
    for round in 0..25 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "ledger_writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MAXWELL_LEDGER_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writer");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let wanted = 1 + rng.below(15);
        let mut seen = 0;
        while seen < wanted {
            let line = lines.next().expect("the writer ended").expect("read");
            if let Some(n) = line.strip_prefix("ack ") {
                acked = acked.max(n.parse().expect("a number"));
                seen += 1;
            }
        }
        // Let it get into its next write, then kill it mid-way (sometimes).
        std::thread::sleep(std::time::Duration::from_micros(rng.below(3_000)));
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().expect("reap");
        drop(lines);
        let opened = Ledger::open(dir.path(), LedgerConfig::default()).expect("reopen");
        torn_seen += usize::from(opened.torn.is_some());
        let got: Vec<u64> = opened.entries.iter().map(index_of).collect();
        let expect: Vec<u64> = (1..=got.len() as u64).collect();
        assert_eq!(
            got, expect,
            "round {round}: entries out of order or missing"
        );
        assert!(
            got.len() as u64 >= acked,
            "round {round}: {acked} acknowledged, {} found",
            got.len()
        );
    }
    eprintln!("{acked} entries acknowledged over 25 kills; {torn_seen} torn tails cut");
}

#[test]
fn a_tail_torn_at_any_offset_is_cut_back_to_the_last_whole_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ledger = Ledger::open(dir.path(), LedgerConfig::default())
        .expect("open")
        .ledger;
    let mut ends = vec![ledger.len()];
    for i in 1..=20 {
        ledger
            .append(&entry(i, (i as usize * 37) % 500))
            .expect("append");
        ends.push(ledger.len());
    }
    ledger.sync().expect("sync");
    drop(ledger);
    let path = dir.path().join("00000001.log");
    let whole = std::fs::read(&path).expect("read");
    let mut rng = Rng::new(5);
    for _ in 0..200 {
        let cut = rng.below(whole.len() as u64 + 1) as usize;
        let mut bytes = whole[..cut].to_vec();
        // Half the time, garbage after the cut (a write that never finished
        // its frame, or a stray block). Not in the header: a segment is
        // born whole (written aside and renamed), and a header that is
        // neither ours nor a prefix of it is refused, never cut.
        if rng.below(2) == 0 && cut >= 8 {
            bytes.extend((0..rng.below(64)).map(|_| rng.below(256) as u8));
        }
        std::fs::write(&path, &bytes).expect("write");
        let opened = Ledger::open(dir.path(), LedgerConfig::default()).expect("open");
        let whole_frames = ends.iter().filter(|&&e| e as usize <= cut).count() - 1;
        // Garbage that happens to extend a prefix can never form a valid
        // frame with the right checksum (tested to 2^-32).
        assert_eq!(opened.entries.len(), whole_frames, "cut at {cut}");
        if bytes.len() as u64 != ends[whole_frames] {
            let torn = opened.torn.as_ref().expect("a torn tail is reported");
            assert_eq!(torn.at, ends[whole_frames].max(8));
        }
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            ends[whole_frames].max(8)
        );
        // And appends go on after the cut.
        let mut ledger = opened.ledger;
        ledger.append(&entry(99, 3)).expect("append");
        drop(ledger);
        let n = Ledger::open(dir.path(), LedgerConfig::default())
            .expect("open")
            .entries
            .len();
        assert_eq!(n, whole_frames + 1);
    }
}

#[test]
fn rotation_starts_each_segment_from_a_snapshot_and_keeps_a_bounded_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LedgerConfig {
        segment_bytes: 4_096,
        keep_segments: 2,
    };
    let mut market = Market::new(MarketConfig::default(), NodeId([2; 10]));
    let mut ledger = Ledger::open(dir.path(), config).expect("open").ledger;
    for i in 0..200u64 {
        let order = Order::new(&format!("g{i}"), 1, 64, 1_000, 5_000, Class::Pausable, None)
            .expect("order");
        let e = market.open(i, order, i).expect("opens");
        ledger.append(&e).expect("append");
        market.apply(&e, true);
        if ledger.wants_rotation() {
            ledger
                .rotate(&Entry::Snapshot(Box::new(market.snapshot())))
                .expect("rotate");
        }
    }
    ledger.sync().expect("sync");
    drop(ledger);
    let segments = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(segments, 3, "the open segment and two closed ones");
    let opened = Ledger::open(dir.path(), config).expect("reopen");
    let mut replayed = Market::new(MarketConfig::default(), NodeId([2; 10]));
    for e in &opened.entries {
        replayed.apply(e, false);
    }
    assert_eq!(replayed.snapshot(), market.snapshot());
    assert_eq!(replayed.wallets_micro(), 200 * 5_000 * 1_000);
}

#[test]
fn a_full_disk_refuses_the_append_and_keeps_every_acknowledged_entry() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs (a disk that fills) needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: could not mount a tmpfs");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let mut ledger = Ledger::open(dir.path(), LedgerConfig::default())
            .expect("open")
            .ledger;
        let mut acked = 0;
        let err = loop {
            match ledger
                .append(&entry(acked + 1, 3_000))
                .and_then(|()| ledger.sync())
            {
                Ok(()) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 1_000, "the disk never filled");
        };
        assert!(matches!(err, LedgerError::Full { .. }), "{err}");
        assert!(err.to_string().contains("disk is full"), "{err}");
        // Still full: still refused, and nothing half-written stays.
        assert!(ledger.append(&entry(acked + 1, 3_000)).is_err());
        drop(ledger);
        let opened = Ledger::open(dir.path(), LedgerConfig::default()).expect("reopen");
        assert!(
            opened.torn.is_none(),
            "a failed append left a partial frame"
        );
        assert_eq!(opened.entries.len() as u64, acked);
    });
    let _ = Command::new("umount").arg(dir.path()).status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
