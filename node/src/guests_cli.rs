//! `maxwell guests ...`: the operator's guest commands against a running
//! agent's API.

use crate::cli::{GuestAction, GuestsArgs};
use crate::client::ClientError;
use crate::guests::{parse_id, read_spec_file};
use crate::http::guests::{GuestList, GuestRow};
use crate::market::AccountRow;
use crate::render::Table;
use anyhow::anyhow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

/// `maxwell guests ...` against a running agent.
pub fn cli(args: GuestsArgs) -> anyhow::Result<()> {
    let addr = args.http;
    let api = args.token.api(addr)?;
    let short = Duration::from_secs(5);
    // A start maps memory and a kill joins threads: give them time.
    let long = Duration::from_secs(30);
    let row = match args.action {
        None => {
            let body = api.get("/v1/guests", short).map_err(|e| refused(addr, e))?;
            let list: GuestList = decode(addr, &body)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", render(&list.guests));
                if let Some(m) = &list.market {
                    println!(
                        "\nmarket: price {:.3} credits/CPU-s, {:.2} cores on sale, revenue {:.3}, pauses {}, kills {}{}",
                        m.price_milli as f64 / 1000.0,
                        m.capacity_mcores as f64 / 1000.0,
                        m.totals.revenue_micro as f64 / 1e6,
                        m.totals.pauses,
                        m.totals.kills.values().sum::<u64>(),
                        m.halted.as_ref().map_or(String::new(), |h| format!(" — HALTED: {h}")),
                    );
                    print!("{}", render_market(&list.guests, &m.closed));
                }
            }
            return Ok(());
        }
        Some(GuestAction::Start { file }) => {
            let raw = read_spec_file(&file)?;
            let json = serde_json::to_string(&raw)?;
            api.post("/v1/guests", &json, long)
        }
        Some(GuestAction::Pause { id }) => api.post(&action_path(&id, "pause")?, "", long),
        Some(GuestAction::Resume { id }) => api.post(&action_path(&id, "resume")?, "", long),
        Some(GuestAction::Kill { id }) => api.post(&action_path(&id, "kill")?, "", long),
        Some(GuestAction::Cap { id, fraction }) => {
            let body = serde_json::json!({ "cap": fraction }).to_string();
            api.put(&action_path(&id, "cap")?, &body, long)
        }
        Some(GuestAction::Fund { id, amount }) => {
            let body = serde_json::json!({ "amount_milli": amount }).to_string();
            let answer = api.post(&action_path(&id, "fund")?, &body, long).map_err(|e| refused(addr, e))?;
            return account(addr, &answer, args.json);
        }
        Some(GuestAction::Bid { id, bid }) => {
            let body = serde_json::json!({ "bid_milli": bid }).to_string();
            let answer = api.put(&action_path(&id, "bid")?, &body, long).map_err(|e| refused(addr, e))?;
            return account(addr, &answer, args.json);
        }
        Some(GuestAction::Receipts { id }) => {
            let answer = api.get(&action_path(&id, "receipts")?, long).map_err(|e| refused(addr, e))?;
            let list: Vec<maxwell_market::Receipt> = decode(addr, &answer)?;
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(());
        }
    }
    .map_err(|e| refused(addr, e))?;
    let row: GuestRow = decode(addr, &row)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        print!("{}", render(std::slice::from_ref(&row)));
    }
    Ok(())
}

fn action_path(id: &str, action: &str) -> anyhow::Result<String> {
    let id = parse_id(id).map_err(|e| anyhow!(e))?;
    Ok(format!("/v1/guests/{}/{action}", id.0))
}

fn decode<T: serde::de::DeserializeOwned>(addr: SocketAddr, body: &str) -> anyhow::Result<T> {
    serde_json::from_str(body).map_err(|source| ClientError::Decode { addr, source }.into())
}

/// The agent's `{"error": ...}` as one line, with the status code.
fn refused(addr: SocketAddr, e: ClientError) -> anyhow::Error {
    if let ClientError::Status { status, body, .. } = &e {
        let code = status.split_whitespace().nth(1).unwrap_or("?");
        if let Some(msg) = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        {
            return anyhow!("{msg} (the agent at {addr} answered {code})");
        }
    }
    e.into()
}

/// `30%`, `2.5%`.
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

fn account(addr: SocketAddr, body: &str, json: bool) -> anyhow::Result<()> {
    let row: AccountRow = decode(addr, body)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        print!("{}", render_market(&[], &[row]));
    }
    Ok(())
}

/// `maxwell submit FILE`: the guest goes where the agent's placement sends it.
pub fn submit(args: crate::cli::SubmitArgs) -> anyhow::Result<()> {
    let addr = args.query.http;
    let api = args.query.token.api(addr)?;
    let raw = read_spec_file(&args.file)?;
    let json = serde_json::to_string(&raw)?;
    // The agent bounds a placement by its api.request_timeout_ms (60 s).
    let answer = api
        .post("/v1/submit", &json, Duration::from_secs(75))
        .map_err(|e| refused(addr, e))?;
    let landed: crate::http::submit::Submitted = decode(addr, &answer)?;
    if args.query.json {
        println!("{}", serde_json::to_string_pretty(&landed)?);
        return Ok(());
    }
    let mut t = Table::new(&["OFFER", "NODE", "PRICE", "OUTCOME"]);
    for (i, a) in landed.offers.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            a.name.clone(),
            crate::render::price(a.price_milli),
            a.outcome.clone(),
        ]);
    }
    print!("{}", t.render());
    println!(
        "guest {} runs on {} as g{} ({} candidate nodes)",
        landed.guest_name, landed.name, landed.guest, landed.candidates
    );
    Ok(())
}

/// `maxwell move GUEST [--to NODE]`.
pub fn move_guest(args: crate::cli::MoveArgs) -> anyhow::Result<()> {
    let addr = args.query.http;
    let api = args.query.token.api(addr)?;
    let id = parse_id(&args.guest).map_err(|e| anyhow!(e))?;
    let body = serde_json::json!({ "to": args.to }).to_string();
    let answer = api
        .post(
            &format!("/v1/guests/{}/move", id.0),
            &body,
            Duration::from_secs(75),
        )
        .map_err(|e| refused(addr, e))?;
    let moved: crate::p2p::migrate::Moved = decode(addr, &answer)?;
    if args.query.json {
        println!("{}", serde_json::to_string_pretty(&moved)?);
        return Ok(());
    }
    let how = match moved.restored {
        true => "restored where it stopped",
        false => "restarted",
    };
    let wallet = moved.wallet_milli.map_or(String::new(), |w| {
        format!(", with its wallet of {:.3} credits", w as f64 / 1000.0)
    });
    println!(
        "guest g{} moved to {} as g{} ({how}{wallet}): paused {:.1} ms, {} bytes sent",
        moved.guest, moved.to, moved.to_guest, moved.paused_ms, moved.bytes
    );
    Ok(())
}

/// `maxwell receipts verify FILE --key KEY`.
pub fn receipts(args: crate::cli::ReceiptsArgs) -> anyhow::Result<()> {
    let crate::cli::ReceiptsAction::Verify { file, key } = args.action;
    let text = std::fs::read_to_string(&file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let receipts: Vec<maxwell_market::Receipt> = match serde_json::from_str(&text) {
        Ok(list) => list,
        Err(_) => vec![serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "{}: neither a receipt nor a list of receipts: {e}",
                file.display()
            )
        })?],
    };
    let hex = if std::path::Path::new(&key).is_file() {
        std::fs::read_to_string(&key).map_err(|e| anyhow!("{key}: {e}"))?
    } else {
        key.clone()
    };
    let bytes = maxwell_types::hex::decode::<32>(hex.trim()).ok_or_else(|| {
        anyhow!("--key: expected 64 hex digits (an ed25519 public key), or a file holding them")
    })?;
    let pk = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|e| anyhow!("--key: not an ed25519 public key: {e}"))?;
    let s = maxwell_market::verify_chain(&receipts, &pk)
        .map_err(|e| anyhow!("{}: FAILED: {e}", file.display()))?;
    println!(
        "{}: OK: {} receipt(s), seq {}..={}{}; {:.3} CPU-s, {:.3} J, {:.3} credits charged",
        file.display(),
        s.receipts,
        s.first_seq,
        s.last_seq,
        if s.complete {
            " (from the guest's first)"
        } else {
            " (a tail: earlier receipts not included)"
        },
        s.cpu_ms as f64 / 1000.0,
        s.joules_micro as f64 / 1e6,
        s.charged_micro as f64 / 1e6,
    );
    Ok(())
}

/// The market's rows: each guest's class, bid, share, cap, state, CPU,
/// joules, wallet and rent.
pub fn render_market(live: &[GuestRow], closed: &[AccountRow]) -> String {
    let mut t = Table::new(&[
        "ID", "NAME", "CLASS", "BID", "SHARE", "CAP", "STATE", "CPU", "JOULES", "WALLET", "RENT/S",
    ]);
    let rows = live.iter().filter_map(|g| g.market.as_ref()).chain(closed);
    let credits = |milli: u64| format!("{:.3}", milli as f64 / 1000.0);
    for a in rows {
        t.row(vec![
            format!("g{}", a.guest),
            a.name.clone(),
            a.class.clone(),
            credits(a.bid_milli),
            format!("{:.2} cores", a.share_mcores as f64 / 1000.0),
            percent(a.cap),
            a.state.clone(),
            format!("{:.2} s", a.cpu_ms as f64 / 1000.0),
            format!("{:.1}", a.joules),
            if a.arrears_milli > 0 {
                format!(
                    "{} (owes {})",
                    credits(a.wallet_milli),
                    credits(a.arrears_milli)
                )
            } else {
                credits(a.wallet_milli)
            },
            credits(a.rent_milli_per_s),
        ]);
    }
    t.render()
}

/// The guests as a table, then why any of them exited.
pub fn render(rows: &[GuestRow]) -> String {
    let mut t = Table::new(&[
        "ID", "NAME", "KIND", "BACKEND", "STATE", "VCPUS", "MEM", "CAP", "CPU", "PROGRESS", "FROM",
    ]);
    for g in rows {
        t.row(vec![
            format!("g{}", g.id),
            g.name.clone(),
            g.kind.to_string(),
            g.backend.to_string(),
            g.state.as_str().to_string(),
            g.vcpus.to_string(),
            format!("{} MiB", g.memory_mib),
            percent(g.cap),
            format!("{:.2} s", g.cpu_time_ns as f64 / 1e9),
            g.progress.to_string(),
            g.origin.as_ref().map_or("-".into(), |o| o.name.clone()),
        ]);
    }
    let mut out = t.render();
    for g in rows {
        if let Some(reason) = &g.exit_reason {
            let _ = writeln!(out, "g{} exited: {reason}", g.id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_are_short() {
        assert_eq!(percent(0.3), "30%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.025), "2.5%");
    }
}
