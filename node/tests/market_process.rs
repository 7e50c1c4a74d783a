//! The market end to end, in the real `maxwell` binary on fixture sensors:
//! a high bidder, a low bidder and a poor guest on real guests (KVM where
//! it works, else processes). Heating the fixture raises the price: the low
//! bidder's share falls, then it is paused; the poor guest is killed for
//! rent after its grace period; the high bidder runs on; cooling resumes
//! the paused guest. The receipts verify offline, and fail with one byte
//! changed. After a SIGKILL and a restart the ledger gives back every
//! deposit. Timings are printed (the timeline), never asserted.

mod common;

use common::{spawn_on_tree, Agent};
use maxwell_node::client::{Api, ClientError};
use maxwell_node::http::guests::{GuestList, GuestRow};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maxwell");
const T: Duration = Duration::from_secs(30);

fn backend() -> &'static str {
    match maxwell_vmm::kvm_available() {
        Ok(()) => "kvm",
        Err(why) => {
            println!("skipped KVM: /dev/kvm not usable: {why}; testing the process backend");
            "process"
        }
    }
}

fn post(api: &Api, path: &str, body: &str) -> Result<String, String> {
    api.post(path, body, T).map_err(|e| match e {
        ClientError::Status { status, body, .. } => format!("{status}: {body}"),
        e => e.to_string(),
    })
}

fn list(api: &Api) -> GuestList {
    serde_json::from_str(&api.get("/v1/guests", T).expect("list")).expect("guest list")
}

fn start(api: &Api, name: &str, bid: u64, wallet: u64) -> u64 {
    let spec = serde_json::json!({
        "name": name, "kind": "workload", "vcpus": 1, "memory_mib": 16, "payload": "hash",
        "bid_milli": bid, "wallet_milli": wallet, "class": "pausable",
    });
    let row: GuestRow =
        serde_json::from_str(&post(api, "/v1/guests", &spec.to_string()).expect("start"))
            .expect("row");
    row.id
}

/// Polls until `pred` holds of the guest list; the time it took.
fn until(api: &Api, what: &str, limit: Duration, pred: impl Fn(&GuestList) -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        let l = list(api);
        if pred(&l) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "{what}: not reached; last list: {l:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn price(api: &Api) -> u64 {
    list(api).market.expect("a market").price_milli
}

#[test]
fn heat_caps_then_pauses_the_low_bidder_kills_the_poor_and_cooling_resumes() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let tree = scratch.path().join("tree");
    common::write_temp(&tree, 45_000);
    let backend = backend();
    let mut agent = Agent::start(BIN, &tree, &["--set", &format!("guests.backend={backend}")]);
    let api = agent.api();
    // Settle the cool price, then bid around it.
    std::thread::sleep(Duration::from_secs(2));
    let cool = price(&api);
    assert!(cool > 0);
    let high = start(&api, "high", 20_000, 10_000_000);
    let low = start(&api, "low", cool * 3 / 2, 10_000_000);
    // About three seconds of rent at the cool price.
    let poor = start(&api, "poor", 20_000, cool * 3);
    let state = |l: &GuestList, vm| l.account(vm).map(|a| a.state).unwrap_or_default();
    until(&api, "every guest running in the market", T, |l| {
        [high, low]
            .iter()
            .all(|&g| l.account(g).is_some_and(|a| a.share_mcores > 0))
    });
    std::thread::sleep(Duration::from_secs(2));
    let share_cool = list(&api).account(low).expect("low").share_mcores;

    // Heat: the price rises past the low bid.
    let t0 = Instant::now();
    common::write_temp(&tree, 96_000);
    let capped = until(&api, "the low bidder's share falls", T, |l| {
        l.account(low)
            .is_some_and(|a| a.share_mcores < share_cool || a.state == "paused")
    });
    let paused = until(&api, "the low bidder is paused", T, |l| {
        state(l, low) == "paused"
    });
    let paused_at = t0.elapsed();
    let killed = until(
        &api,
        "the poor guest is killed for rent",
        Duration::from_secs(60),
        |l| state(l, poor) == "killed (rent)",
    );
    let killed_at = t0.elapsed();
    let l = list(&api);
    assert!(
        l.guests.iter().all(|g| g.id != poor),
        "the poor guest's VM is gone"
    );
    let h = l.account(high).expect("high");
    assert!(
        matches!(h.state.as_str(), "running" | "capped"),
        "the high bidder runs on: {h:?}"
    );
    let paused_vm = l.guests.iter().find(|g| g.id == low).expect("low is live");
    assert_eq!(
        paused_vm.state.as_str(),
        "paused",
        "the backend paused it too"
    );
    let m = l.market.as_ref().expect("market");
    assert!(
        m.totals
            .kills
            .get(&maxwell_market::Reason::Rent)
            .copied()
            .unwrap_or(0)
            >= 1
    );
    let metrics = api.get("/metrics", T).expect("metrics");
    assert!(
        metrics.contains("maxwell_market_kills_total{reason=\"rent\"} 1"),
        "{metrics}"
    );

    // Cool again: the paused guest resumes.
    let t1 = Instant::now();
    common::write_temp(&tree, 45_000);
    until(&api, "the low bidder resumes", T, |l| {
        matches!(state(l, low).as_str(), "running" | "capped")
    });
    let resumed = t1.elapsed();
    println!(
        "timeline ({backend}): heat at 0; low bidder's share cut at {:.1} s, paused at {:.1} s (+{:.1}), poor guest killed at {:.1} s (+{:.1}); cooled, resumed after {:.1} s",
        capped.as_secs_f64(),
        paused_at.as_secs_f64(),
        paused.as_secs_f64(),
        killed_at.as_secs_f64(),
        killed.as_secs_f64(),
        resumed.as_secs_f64()
    );

    // A top-up through the CLI is in the ledger before it is answered.
    let out = Command::new(BIN)
        .args(["guests", "--http", &agent.addr.to_string(), "--data-dir"])
        .arg(agent.data_dir())
        .args(["fund", &format!("g{high}"), "5000"])
        .output()
        .expect("maxwell guests fund");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = Command::new(BIN)
        .args(["guests", "--http", &agent.addr.to_string(), "--data-dir"])
        .arg(agent.data_dir())
        .output()
        .expect("maxwell guests");
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("killed (rent)") && table.contains("JOULES"),
        "{table}"
    );

    // Receipts verify offline; one byte changed, they fail.
    std::thread::sleep(Duration::from_secs(11));
    let receipts = api
        .get(&format!("/v1/guests/{high}/receipts"), T)
        .expect("receipts");
    let chain: Vec<maxwell_market::Receipt> = serde_json::from_str(&receipts).expect("receipts");
    assert!(!chain.is_empty(), "no receipts after 10 s");
    let file = scratch.path().join("receipts.json");
    std::fs::write(&file, &receipts).expect("write");
    let key = agent.status().node.public_key;
    let verify = |f: &Path| {
        Command::new(BIN)
            .args(["receipts", "verify"])
            .arg(f)
            .args(["--key", &key])
            .output()
            .expect("verify")
    };
    let ok = verify(&file);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));
    let needle = format!("\"cpu_ms\": {}", chain[0].body.cpu_ms);
    let pretty = serde_json::to_string_pretty(&chain).expect("json");
    let flipped = pretty.replacen(
        &needle,
        &format!("\"cpu_ms\": {}", chain[0].body.cpu_ms ^ 1),
        1,
    );
    assert_ne!(flipped, pretty);
    std::fs::write(&file, flipped).expect("write");
    let bad = verify(&file);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("signature does not match"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // SIGKILL, restart on the same data dir: the ledger gives back every
    // deposit (to wallets refunded at close, rent and tax) exactly.
    let before = list(&api).market.expect("market").totals;
    let data = agent.data_dir().to_path_buf();
    agent.kill(libc::SIGKILL);
    let _ = agent.child.wait();
    let mut child = spawn_on_tree(
        BIN,
        &tree,
        &data,
        &["--set".into(), format!("guests.backend={backend}")],
    );
    let addr = common::served(&mut child, &data).http;
    let again = Api {
        addr,
        token: maxwell_node::client::read_token(None, &data).expect("token"),
    };
    let after = list(&again).market.expect("market").totals;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        after.deposited_micro, before.deposited_micro,
        "a deposit was lost or invented"
    );
    assert!(after.revenue_micro >= before.revenue_micro);
    assert_eq!(
        after.deposited_micro,
        after.revenue_micro + after.taxed_micro + after.refunded_micro,
        "money appeared or vanished across the restart"
    );
    assert_eq!(
        after.kills.get(&maxwell_market::Reason::Restart).copied(),
        Some(2),
        "{after:?}"
    );
}
