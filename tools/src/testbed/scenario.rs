//! A scenario file: the rack, its guests, a timeline of faults and the
//! checks to run against the agents' own APIs. TOML, validated once into
//! types that name only nodes and rows that exist.
//!
//! ```toml
//! name = "cooling-failure"
//! duration_s = 240
//! [[fault]]
//! at_s = 60
//! cooling = { row = 0, rise_c = 12 }
//! [[check]]
//! at_s = 230
//! price_higher = { nodes = "row:0", than_at_s = 55 }
//! ```

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    about: String,
    duration_s: u64,
    agents: Option<usize>,
    racks: Option<usize>,
    /// Guests started on every agent once the mesh has formed.
    #[serde(default)]
    guest: Vec<GuestPlan>,
    #[serde(default)]
    fault: Vec<RawFault>,
    #[serde(default)]
    check: Vec<RawCheck>,
}

/// One guest started on every agent: a `count` workload of one vCPU.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestPlan {
    pub name: String,
    pub bid_milli: u64,
    pub wallet_milli: u64,
    #[serde(default)]
    pub class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_s: u64,
    cooling: Option<Cooling>,
    fan: Option<Fan>,
    heat: Option<Heat>,
    kill: Option<String>,
    start: Option<String>,
    restart: Option<String>,
    pause: Option<String>,
    unpause: Option<String>,
    partition: Option<Vec<String>>,
    heal: Option<bool>,
    loss: Option<Loss>,
    rolling_restart: Option<RollingRestart>,
}

/// The row's supply air rises by `rise_c` (a CRAH unit failed).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cooling {
    pub row: usize,
    pub rise_c: f64,
}

/// A host's fans fail: its thermal resistances grow by `factor`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fan {
    pub node: String,
    pub factor: f64,
}

/// A host draws `watts` more (a slot heated from outside).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Heat {
    pub node: String,
    pub watts: f64,
}

/// Gossip datagrams into `nodes` are dropped at `percent`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    pub nodes: String,
    pub percent: f64,
}

/// Every agent restarted in turn, `gap_s` apart.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RollingRestart {
    pub gap_s: u64,
}

/// One fault, at its time.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Cooling(Cooling),
    Fan(Fan),
    Heat(Heat),
    Kill(String),
    Start(String),
    Restart(String),
    Pause(String),
    Unpause(String),
    /// These nodes lose gossip with every other node.
    Partition(Vec<String>),
    /// Every partition and loss rule removed.
    Heal,
    Loss(Vec<String>, f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    at_s: u64,
    converged: Option<bool>,
    price_higher: Option<Compare>,
    price_lower: Option<Compare>,
    shed: Option<Compare>,
    dead: Option<String>,
    alive: Option<String>,
    no_deaths: Option<Since>,
}

/// From `since_s` to the check.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Since {
    pub since_s: u64,
}

/// `nodes` (a name, `all`, `rack:NAME` or `row:N`) against `than_at_s`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub nodes: String,
    pub than_at_s: u64,
}

/// One check, at its time.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Every running agent sees every running agent alive.
    Converged,
    /// Each node's own price is above (below) what it was then.
    PriceHigher(Vec<String>, u64),
    PriceLower(Vec<String>, u64),
    /// The nodes' guests hold fewer milli-cores in all than then (capped,
    /// paused, killed or moved).
    Shed(Vec<String>, u64),
    /// Every other running agent holds the node dead (or alive).
    Dead(String),
    Alive(String),
    /// In no second since then did a running agent hold another running
    /// agent dead (no false positives).
    NoDeaths(u64),
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub about: String,
    pub duration_s: u64,
    pub layout: maxwell_testbed::Layout,
    pub guests: Vec<GuestPlan>,
    /// Sorted by time.
    pub faults: Vec<(u64, Fault)>,
    pub checks: Vec<(u64, Check)>,
}

/// Agents when neither the file nor the command line says.
pub const DEFAULT_AGENTS: usize = 6;

impl Scenario {
    /// Reads and validates `path`; `agents` overrides the file's count.
    pub fn load(path: &Path, agents: Option<usize>) -> Result<Self, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: p.clone(),
            source,
        })?;
        let raw: RawScenario = toml::from_str(&text).map_err(|e| ScenarioError::Parse {
            path: p.clone(),
            source: Box::new(e),
        })?;
        raw.validate(agents)
            .map_err(|what| ScenarioError::Invalid { path: p, what })
    }

    /// Node name of host `h`: `r{rack}s{slot}`.
    pub fn node_name(&self, h: usize) -> String {
        node_name(&self.layout, h)
    }

    /// Every node name, by host index.
    pub fn nodes(&self) -> Vec<String> {
        (0..self.layout.hosts())
            .map(|h| self.node_name(h))
            .collect()
    }
}

fn node_name(l: &maxwell_testbed::Layout, h: usize) -> String {
    format!("r{}s{}", l.rack_of(h), l.slot_of(h))
}

impl RawScenario {
    fn validate(self, agents: Option<usize>) -> Result<Scenario, String> {
        let n = agents.or(self.agents).unwrap_or(DEFAULT_AGENTS);
        if !(2..=64).contains(&n) {
            return Err(format!("agents must be 2 to 64, not {n}"));
        }
        let racks = self.racks.unwrap_or(2).clamp(1, n);
        if !n.is_multiple_of(racks) {
            return Err(format!("{n} agents do not fill {racks} racks evenly"));
        }
        if self.duration_s == 0 || self.duration_s > 3_600 {
            return Err("duration_s must be 1 to 3600".into());
        }
        let layout = maxwell_testbed::Layout {
            racks,
            hosts_per_rack: n / racks,
            racks_per_row: 1,
        };
        let names: Vec<String> = (0..n).map(|h| node_name(&layout, h)).collect();
        let sel = |spec: &str| select(spec, &names, &layout);
        let one = |name: &str| {
            names
                .contains(&name.to_string())
                .then(|| name.to_string())
                .ok_or_else(|| format!("no node {name:?} (nodes are {})", names.join(", ")))
        };
        let rows = racks.div_ceil(layout.racks_per_row);
        let mut faults = Vec::new();
        for f in self.fault {
            let mut kinds = Vec::new();
            if let Some(c) = f.cooling {
                if c.row >= rows || !(0.0..=40.0).contains(&c.rise_c) {
                    return Err(format!("cooling: row {} of {rows}, rise 0–40 °C", c.row));
                }
                kinds.push(Fault::Cooling(c));
            }
            if let Some(x) = f.fan {
                one(&x.node)?;
                if !(1.0..=5.0).contains(&x.factor) {
                    return Err("fan: factor must be 1 to 5".into());
                }
                kinds.push(Fault::Fan(x));
            }
            if let Some(x) = f.heat {
                one(&x.node)?;
                kinds.push(Fault::Heat(x));
            }
            for (v, make) in [
                (f.kill, Fault::Kill as fn(String) -> Fault),
                (f.start, Fault::Start),
                (f.restart, Fault::Restart),
                (f.pause, Fault::Pause),
                (f.unpause, Fault::Unpause),
            ] {
                if let Some(node) = v {
                    kinds.push(make(one(&node)?));
                }
            }
            if let Some(group) = f.partition {
                for g in &group {
                    one(g)?;
                }
                kinds.push(Fault::Partition(group));
            }
            if f.heal == Some(true) {
                kinds.push(Fault::Heal);
            }
            if let Some(l) = f.loss {
                if !(0.0..=100.0).contains(&l.percent) {
                    return Err("loss: percent must be 0 to 100".into());
                }
                kinds.push(Fault::Loss(sel(&l.nodes)?, l.percent));
            }
            if let Some(r) = f.rolling_restart {
                for (k, name) in names.iter().enumerate() {
                    faults.push((f.at_s + k as u64 * r.gap_s, Fault::Restart(name.clone())));
                }
            }
            match kinds.len() {
                0 if f.rolling_restart.is_some() => {}
                1 => faults.push((f.at_s, kinds.remove(0))),
                k => return Err(format!("fault at {} s names {k} kinds; one each", f.at_s)),
            }
        }
        faults.sort_by_key(|f| f.0);
        let mut checks = Vec::new();
        for c in self.check {
            let mut kinds = Vec::new();
            if c.converged == Some(true) {
                kinds.push(Check::Converged);
            }
            for (v, make) in [
                (
                    c.price_higher,
                    Check::PriceHigher as fn(Vec<String>, u64) -> Check,
                ),
                (c.price_lower, Check::PriceLower),
                (c.shed, Check::Shed),
            ] {
                if let Some(cmp) = v {
                    if cmp.than_at_s >= c.at_s {
                        return Err(format!("check at {} s compares with a later time", c.at_s));
                    }
                    kinds.push(make(sel(&cmp.nodes)?, cmp.than_at_s));
                }
            }
            if let Some(node) = c.dead {
                kinds.push(Check::Dead(one(&node)?));
            }
            if let Some(node) = c.alive {
                kinds.push(Check::Alive(one(&node)?));
            }
            if let Some(since) = c.no_deaths {
                if since.since_s >= c.at_s {
                    return Err(format!("check at {} s looks back to a later time", c.at_s));
                }
                kinds.push(Check::NoDeaths(since.since_s));
            }
            match kinds.len() {
                1 => checks.push((c.at_s, kinds.remove(0))),
                k => return Err(format!("check at {} s names {k} kinds; one each", c.at_s)),
            }
        }
        checks.sort_by_key(|c| c.0);
        if let Some((at, _)) = checks
            .iter()
            .chain([].iter())
            .find(|c| c.0 > self.duration_s)
        {
            return Err(format!("a check at {at} s is past duration_s"));
        }
        let mut seen = BTreeSet::new();
        for g in &self.guest {
            if !seen.insert(g.name.clone()) {
                return Err(format!("two guests named {:?}", g.name));
            }
        }
        Ok(Scenario {
            name: self.name,
            about: self.about,
            duration_s: self.duration_s,
            layout,
            guests: self.guest,
            faults,
            checks,
        })
    }
}

/// `all`, `rack:r1`, `row:0`, or one node's name.
fn select(
    spec: &str,
    names: &[String],
    l: &maxwell_testbed::Layout,
) -> Result<Vec<String>, String> {
    let pick = |keep: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..names.len())
            .filter(|h| keep(*h))
            .map(|h| names[h].clone())
            .collect()
    };
    let out = if spec == "all" {
        names.to_vec()
    } else if let Some(r) = spec.strip_prefix("rack:") {
        pick(&|h| format!("r{}", l.rack_of(h)) == r)
    } else if let Some(r) = spec.strip_prefix("row:") {
        let row: usize = r.parse().map_err(|_| format!("bad row in {spec:?}"))?;
        pick(&|h| l.row_of(h) == row)
    } else {
        pick(&|h| names[h] == spec)
    };
    if out.is_empty() {
        return Err(format!(
            "{spec:?} names no node (nodes are {})",
            names.join(", ")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        toml::from_str::<RawScenario>(text)
            .map_err(|e| e.to_string())?
            .validate(None)
    }

    #[test]
    fn every_shipped_scenario_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
            let path = entry.expect("entry").path();
            Scenario::load(&path, None).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
        assert!(n >= 5, "ships at least five scenarios, found {n}");
    }

    #[test]
    fn a_bad_scenario_says_what_is_wrong() {
        let base = "name = \"x\"\nduration_s = 60\n";
        let e =
            parse(&format!("{base}[[fault]]\nat_s = 1\nkill = \"r9s9\"\n")).expect_err("refused");
        assert!(e.contains("no node \"r9s9\""), "{e}");
        let e = parse(&format!(
            "{base}[[check]]\nat_s = 9\nshed = {{ nodes = \"row:0\", than_at_s = 10 }}\n"
        ))
        .expect_err("refused");
        assert!(e.contains("later time"), "{e}");
        let e = parse(&format!("{base}agents = 5\n")).expect_err("refused");
        assert!(e.contains("evenly"), "{e}");
        let e = parse(&format!(
            "{base}[[fault]]\nat_s = 1\nkill = \"r0s0\"\npause = \"r0s1\"\n"
        ))
        .expect_err("refused");
        assert!(e.contains("one each"), "{e}");
        assert!(parse(&format!("{base}bogus = 1\n")).is_err());
    }

    #[test]
    fn selections_name_rows_racks_and_nodes() {
        let s = parse("name = \"x\"\nduration_s = 60\n[[check]]\nat_s = 9\nshed = { nodes = \"row:1\", than_at_s = 1 }\n[[fault]]\nat_s = 5\nrolling_restart = { gap_s = 10 }\n").expect("valid");
        assert_eq!(
            s.checks[0].1,
            Check::Shed(vec!["r1s0".into(), "r1s1".into(), "r1s2".into()], 1)
        );
        assert_eq!(s.faults.len(), 6);
        assert_eq!(s.faults[5], (55, Fault::Restart("r1s2".into())));
    }
}
