//! Faults carried out, and how long each took to show.

use super::scenario::Fault;
use super::{engine, ip, Run, GOSSIP_PORT};
use anyhow::bail;

impl Run<'_> {
    pub(super) fn apply(&mut self, f: &Fault) -> anyhow::Result<()> {
        let idx = |n: &str| self.nodes.iter().position(|x| x == n).unwrap_or(0);
        match f {
            Fault::Cooling(c) => self.rack.supply_rise_c[c.row] = c.rise_c,
            Fault::Fan(x) => self.rack.r_scale[idx(&x.node)] = x.factor,
            Fault::Heat(x) => self.rack.extra_w[idx(&x.node)] = x.watts,
            Fault::Kill(n) => {
                engine::act("kill", n)?;
                self.killed[idx(n)] = true;
            }
            Fault::Start(n) | Fault::Restart(n) => {
                engine::act(
                    if matches!(f, Fault::Start(_)) {
                        "start"
                    } else {
                        "restart"
                    },
                    n,
                )?;
                self.killed[idx(n)] = false;
                self.cpu[idx(n)] = None;
            }
            Fault::Pause(n) => engine::act("pause", n)?,
            Fault::Unpause(n) => engine::act("unpause", n)?,
            Fault::Partition(group) => {
                let others: Vec<usize> = (0..self.nodes.len())
                    .filter(|h| !group.contains(&self.nodes[*h]))
                    .collect();
                let port = GOSSIP_PORT.to_string();
                for g in group {
                    for o in &others {
                        let peer = ip(*o).to_string();
                        // Both ways: what comes from the peer, what goes to it.
                        for (chain, side) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                            let rule = [
                                chain, side, &peer, "-p", "udp", "--dport", &port, "-j", "DROP",
                            ];
                            self.rule(g, &rule)?;
                        }
                    }
                }
            }
            Fault::Loss(nodes, percent) => {
                let p = format!("{:.4}", percent / 100.0);
                for n in nodes {
                    self.rule(
                        n,
                        &[
                            "INPUT",
                            "-p",
                            "udp",
                            "--dport",
                            &GOSSIP_PORT.to_string(),
                            "-m",
                            "statistic",
                            "--mode",
                            "random",
                            "--probability",
                            &p,
                            "-j",
                            "DROP",
                        ],
                    )?;
                }
            }
            Fault::Heal => {
                for (n, rule) in std::mem::take(&mut self.rules) {
                    let pid = engine::state(&n)?.pid;
                    let mut args = vec!["-D".to_string()];
                    args.extend(rule);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    engine::iptables(pid, &args)?;
                }
            }
        }
        Ok(())
    }

    /// Enters one rule, tagged with [`engine::RULE_COMMENT`], in `node`'s
    /// network namespace.
    fn rule(&mut self, node: &str, spec: &[&str]) -> anyhow::Result<()> {
        if !engine::can_filter() {
            bail!("partitions and loss need iptables and nsenter on this machine (apt-get install iptables)");
        }
        let mut rule: Vec<String> = spec.iter().map(|s| s.to_string()).collect();
        rule.extend(["-m", "comment", "--comment", engine::RULE_COMMENT].map(String::from));
        let pid = engine::state(node)?.pid;
        let mut args = vec!["-I".to_string()];
        args.extend(rule.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        engine::iptables(pid, &args)?;
        self.rules.push((node.to_string(), rule));
        Ok(())
    }

    /// How long each fault took to show where an operator looks: a heat
    /// fault until each touched node's price rose 100 milli and until it
    /// ran fewer guests; a kill or cut until every other agent held the
    /// node dead; a start or heal until every other held it alive (to the
    /// second the agents are sampled at).
    pub(super) fn effects(&self) -> Vec<String> {
        let h = &self.history;
        let mut out = Vec::new();
        let show =
            |d: Option<u64>| d.map_or("not within the run".to_string(), |d| format!("{d} s"));
        let mut partitioned: Vec<String> = Vec::new();
        for (at, f) in &self.s.faults {
            let (touched, what): (Vec<String>, &str) = match f {
                Fault::Cooling(c) => (
                    self.nodes
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| self.s.layout.row_of(*i) == c.row)
                        .map(|(_, n)| n.clone())
                        .collect(),
                    "heat",
                ),
                Fault::Fan(x) => (vec![x.node.clone()], "heat"),
                Fault::Heat(x) => (vec![x.node.clone()], "heat"),
                Fault::Kill(n) | Fault::Pause(n) => (vec![n.clone()], "dead"),
                Fault::Partition(g) => {
                    partitioned.extend(g.iter().cloned());
                    (g.clone(), "dead")
                }
                Fault::Start(n) | Fault::Restart(n) | Fault::Unpause(n) => {
                    (vec![n.clone()], "alive")
                }
                Fault::Heal => (std::mem::take(&mut partitioned), "alive"),
                _ => continue,
            };
            for n in touched {
                let line = match what {
                    "heat" => {
                        let Some((p0, g0)) = h.own(*at, &n) else {
                            continue;
                        };
                        let up = h
                            .first_after(*at, |t| h.own(t, &n).is_some_and(|(p, _)| p >= p0 + 100));
                        let shed =
                            h.first_after(*at, |t| h.own(t, &n).is_some_and(|(_, g)| g < g0));
                        format!("{at:>4} s  {f:?}: {n} price +100 milli after {}, fewer guests running after {}", show(up), show(shed))
                    }
                    "dead" => {
                        let d = h.first_after(*at, |t| {
                            h.all_hold(t, &n, maxwell_gossip::MemberStatus::Dead)
                        });
                        format!(
                            "{at:>4} s  {f:?}: {n} dead in every other agent's view after {}",
                            show(d)
                        )
                    }
                    _ => {
                        let d = h.first_after(*at, |t| {
                            h.all_hold(t, &n, maxwell_gossip::MemberStatus::Alive)
                        });
                        format!(
                            "{at:>4} s  {f:?}: {n} alive in every other agent's view after {}",
                            show(d)
                        )
                    }
                };
                out.push(line);
            }
        }
        out
    }
}
