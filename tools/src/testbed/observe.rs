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
/// Price and share checks compare means over this many seconds.
pub const WINDOW_S: u64 = 10;

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

    /// The mean of `f` over `node`'s answered seconds in the
    /// [`WINDOW_S`] ending at `t`: a paused or resumed guest moves its
    /// host's price for a while, and one second would catch any swing.
    fn mean(&self, node: &str, t: u64, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let values: Vec<f64> = (t.saturating_sub(WINDOW_S - 1)..=t)
            .filter_map(|s| self.get(s, node).filter(|x| x.up).and_then(&f))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
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
                    let price = |s: &Sample| s.price_milli.map(|p| p as f64);
                    let (Some(b), Some(a)) = (self.mean(n, *then, price), self.mean(n, t, price))
                    else {
                        return Err(format!("{n}: no price at {then} s or now"));
                    };
                    if (up && a <= b) || (!up && a >= b) {
                        return Err(format!("{n}: price {b:.0} → {a:.0} milli"));
                    }
                    shown.push(format!("{n} {b:.0}→{a:.0}"));
                }
                Ok(format!("{} (means of {WINDOW_S} s)", shown.join(", ")))
            }
            Check::Shed(nodes, then) => {
                let share = |s: &Sample| Some(s.share_mcores as f64);
                let sum =
                    |t: u64| -> Option<f64> { nodes.iter().map(|n| self.mean(n, t, share)).sum() };
                match (sum(*then), sum(t)) {
                    (Some(b), Some(a)) if a < b => Ok(format!(
                        "guests' share {b:.0} → {a:.0} milli-cores (means of {WINDOW_S} s)"
                    )),
                    (Some(b), Some(a)) => Err(format!(
                        "guests' share {b:.0} → {a:.0} milli-cores (means of {WINDOW_S} s): nothing shed"
                    )),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(price: u64, share: u64, peer: MemberStatus) -> Sample {
        Sample {
            temp_c: Some(60.0),
            price_milli: Some(price),
            view: [("b".to_string(), peer)].into_iter().collect(),
            running: 1,
            share_mcores: share,
            guests: vec![("g".into(), "running".into())],
            up: true,
        }
    }

    /// 30 s of node `a`: the price flaps 1000/3000 for 20 s, then 2500/2700;
    /// its share drops from 200 to 100 at 20 s; it holds `b` dead at 25 s.
    fn history() -> History {
        let at = (0..30u64)
            .map(|t| {
                let price = if t < 20 {
                    [1_000, 3_000][t as usize % 2]
                } else {
                    [2_500, 2_700][t as usize % 2]
                };
                let share = if t < 20 { 200 } else { 100 };
                let peer = if t == 25 {
                    MemberStatus::Dead
                } else {
                    MemberStatus::Alive
                };
                vec![
                    sample(price, share, peer),
                    sample(1_000, 0, MemberStatus::Alive),
                ]
            })
            .collect();
        History {
            nodes: vec!["a".into(), "b".into()],
            at,
        }
    }

    #[test]
    fn checks_compare_ten_second_means_and_look_at_every_second() {
        let h = history();
        let all = |_: &str| true;
        let a = vec!["a".to_string()];
        // One second at 19 (3000) is above now (2700), but the means are 2000 → 2600.
        assert!(h.check(&Check::PriceHigher(a.clone(), 19), &all).is_ok());
        assert!(h.check(&Check::PriceLower(a.clone(), 19), &all).is_err());
        assert!(h.check(&Check::Shed(a, 15), &all).is_ok());
        let dead = h
            .check(&Check::NoDeaths(0), &all)
            .expect_err("a held b dead");
        assert!(dead.contains("at 25 s"), "{dead}");
        assert!(h.check(&Check::NoDeaths(26), &all).is_ok());
        assert!(h.check(&Check::Alive("b".into()), &all).is_ok());
        assert_eq!(
            h.guests_conserved(&["g".into()]),
            Ok("2 guests, each listed once".into())
        );
    }
}
