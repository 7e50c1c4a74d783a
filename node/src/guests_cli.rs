//! `maxwell guests ...`: the operator's guest commands against a running
//! agent's API.

use crate::cli::{GuestAction, GuestsArgs};
use crate::client::ClientError;
use crate::guests::{parse_id, read_spec_file};
use crate::http::guests::{GuestList, GuestRow};
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

/// The guests as a table, then why any of them exited.
pub fn render(rows: &[GuestRow]) -> String {
    let mut t = Table::new(&[
        "ID", "NAME", "KIND", "BACKEND", "STATE", "VCPUS", "MEM", "CAP", "CPU", "PROGRESS",
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
