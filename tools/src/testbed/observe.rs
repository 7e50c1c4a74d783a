//! What the agents say: each second, every running agent's own row, its
//! view of the others, and its guests, read from its own API; the history
//! the checks and the report read.

use super::scenario::Check;
use maxwell_core::Members;
use maxwell_gossip::MemberStatus;
use maxwell_node::client;
use maxwell_node::http::guests::GuestList;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

/// One agent, one second.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Its own hottest reading, °C, and its own price, milli.
    pub temp_c: Option<f64>,
    pub price_milli: Option<u64>,
    /// Status of each other node in its view, by name.
    pub view: BTreeMap<String, MemberStatus>,
    /// Guests it runs (not paused, not killed), and their milli-cores.
    pub running: usize,
    pub share_mcores: u64,
    /// Every guest it lists, live or closed by the market: name → state.
    pub guests: Vec<(String, String)>,
    /// The API answered.
    pub up: bool,
}

/// Reads agent `addr` (an API at a container's address).
pub fn sample(addr: SocketAddr) -> Sample {
    let mut s = Sample::default();
    let Ok(members) = client::get_json::<Members>(addr, "/v1/members", TIMEOUT) else {
        return s;
    };
    s.up = true;
    for row in members.members {
        if row.is_self {
            s.temp_c = row.hottest_millicelsius.map(|t| t.0 as f64 / 1000.0);
            s.price_milli = row.price_milli;
        } else {
            s.view.insert(row.name, row.status);
        }
    }
    if let Ok(list) = client::get_json::<GuestList>(addr, "/v1/guests", TIMEOUT) {
        for g in &list.guests {
            let state = g.market.as_ref().map_or_else(
                || format!("{:?}", g.state).to_lowercase(),
                |m| m.state.clone(),
            );
            if state == "running" || state == "capped" {
                s.running += 1;
                s.share_mcores += g.market.as_ref().map_or(0, |m| m.share_mcores);
            }
            s.guests.push((g.name.clone(), state));
        }
        for closed in list.market.iter().flat_map(|m| &m.closed) {
            if !s.guests.iter().any(|(n, _)| *n == closed.name) {
                s.guests.push((closed.name.clone(), closed.state.clone()));
            }
        }
    }
    s
}

/// Every node's samples, one per second from the scenario's start.
#[derive(Debug, Default)]
pub struct History {
    pub nodes: Vec<String>,
    /// `[second][node]`.
    pub at: Vec<Vec<Sample>>,
}

impl History {
    fn get(&self, t: u64, node: &str) -> Option<&Sample> {
        let i = self.nodes.iter().position(|n| n == node)?;
        self.at.get(usize::try_from(t).ok()?)?.get(i)
    }

    fn now(&self) -> u64 {
        self.at.len().saturating_sub(1) as u64
    }

    /// Evaluates `check` on the latest second: `Ok(what held)` or
    /// `Err(what did not)`. `running` says which containers run.
    pub fn check(&self, check: &Check, running: &dyn Fn(&str) -> bool) -> Result<String, String> {
        let t = self.now();
        let latest = |n: &str| self.get(t, n).filter(|s| s.up);
        let observers: Vec<&String> = self.nodes.iter().filter(|n| running(n)).collect();
        match check {
            Check::Converged => {
                for a in &observers {
                    let s = latest(a).ok_or(format!("{a} does not answer"))?;
                    for b in observers.iter().filter(|b| *b != a) {
                        if s.view.get(*b) != Some(&MemberStatus::Alive) {
                            return Err(format!("{a} holds {b} as {:?}", s.view.get(*b)));
                        }
                    }
                }
                Ok(format!(
                    "{} agents all see each other alive",
                    observers.len()
                ))
            }
            Check::PriceHigher(nodes, then) | Check::PriceLower(nodes, then) => {
                let up = matches!(check, Check::PriceHigher(..));
                let mut shown = Vec::new();
                for n in nodes {
                    let before = self.get(*then, n).and_then(|s| s.price_milli);
                    let now = latest(n).and_then(|s| s.price_milli);
                    let (Some(b), Some(a)) = (before, now) else {
                        return Err(format!("{n}: no price at {then} s or now"));
                    };
                    if (up && a <= b) || (!up && a >= b) {
                        return Err(format!("{n}: price {b} → {a} milli"));
                    }
                    shown.push(format!("{n} {b}→{a}"));
                }
                Ok(shown.join(", "))
            }
            Check::Shed(nodes, then) => {
                let sum = |t: u64| -> Option<u64> {
                    nodes
                        .iter()
                        .map(|n| self.get(t, n).filter(|s| s.up).map(|s| s.share_mcores))
                        .sum()
                };
                match (sum(*then), sum(t)) {
                    (Some(b), Some(a)) if a < b => {
                        Ok(format!("guests' share {b} → {a} milli-cores"))
                    }
                    (Some(b), Some(a)) => {
                        Err(format!("guests' share {b} → {a} milli-cores: nothing shed"))
                    }
                    _ => Err("a node did not answer".into()),
                }
            }
            Check::NoDeaths(since) => {
                for t in *since..=t {
                    for a in &observers {
                        let Some(s) = self.get(t, a).filter(|s| s.up) else {
                            continue;
                        };
                        for b in observers.iter().filter(|b| *b != a) {
                            if s.view.get(*b) == Some(&MemberStatus::Dead) {
                                return Err(format!("{a} held {b} dead at {t} s"));
                            }
                        }
                    }
                }
                Ok(format!(
                    "no agent held another dead from {since} s to {t} s"
                ))
            }
            Check::Dead(node) | Check::Alive(node) => {
                let want = if matches!(check, Check::Dead(_)) {
                    MemberStatus::Dead
                } else {
                    MemberStatus::Alive
                };
                for a in observers.iter().filter(|a| **a != node) {
                    let s = latest(a).ok_or(format!("{a} does not answer"))?;
                    if s.view.get(node) != Some(&want) {
                        return Err(format!("{a} holds {node} as {:?}", s.view.get(node)));
                    }
                }
                Ok(format!("every other agent holds {node} {want:?}"))
            }
        }
    }

    /// Seconds after `from` until `holds(second)` first does, if it does.
    pub fn first_after(&self, from: u64, holds: impl Fn(u64) -> bool) -> Option<u64> {
        (from + 1..=self.now())
            .find(|t| holds(*t))
            .map(|t| t - from)
    }

    /// Whether every other answering node holds `node` as `want` at `t`.
    pub fn all_hold(&self, t: u64, node: &str, want: MemberStatus) -> bool {
        let mut any = false;
        for n in self.nodes.iter().filter(|n| *n != node) {
            if let Some(s) = self.get(t, n).filter(|s| s.up) {
                any = true;
                if s.view.get(node) != Some(&want) {
                    return false;
                }
            }
        }
        any
    }

    /// `node`'s own price and running guests at `t`.
    pub fn own(&self, t: u64, node: &str) -> Option<(u64, usize)> {
        let s = self.get(t, node).filter(|s| s.up)?;
        Some((s.price_milli?, s.running))
    }

    /// Every planned guest is listed exactly once, on its own node.
    pub fn guests_conserved(&self, planned: &[String]) -> Result<String, String> {
        let t = self.now();
        let mut counted = 0;
        for n in &self.nodes {
            let Some(s) = self.get(t, n).filter(|s| s.up) else {
                return Err(format!("{n} does not answer"));
            };
            for g in planned {
                let k = s.guests.iter().filter(|(name, _)| name == g).count();
                if k != 1 {
                    return Err(format!("{n} lists guest {g} {k} times"));
                }
                counted += 1;
            }
        }
        Ok(format!("{counted} guests, each listed once"))
    }
}
