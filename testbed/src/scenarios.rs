//! The benchmark scenarios: what happens to the floor, and when.

use crate::recirculation::Layout;
use crate::rng::Rng;

/// Supply air temperature of every row in normal operation, °C.
pub const SUPPLY_C: f64 = 22.0;

/// What goes wrong at `event_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing: steady load.
    Steady,
    /// Row 0's supply air rises by 6 °C (a CRAC unit fails).
    CoolingFailure,
    /// One host's fans fail: its thermal resistances double.
    FanFailure,
    /// 30% of the hosts burst to 100% utilisation.
    Burst,
    /// Row 0 and row 1 cannot gossip (or be reached from a controller on the
    /// other side) for `partition_s`, while 30% of row 0 bursts.
    Partition,
    /// 85 % demand, and row 0's supply air rises by 6 °C: the policies
    /// differ in the value they deliver.
    HeavyCooling,
}

/// One scenario, fully determined by its kind, the layout and a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// What happens.
    pub kind: Kind,
    /// Short name for tables.
    pub name: &'static str,
    /// When it happens, s.
    pub event_s: u64,
    /// Mean utilisation before the event.
    pub base_load: f64,
    /// Hosts whose guests burst (`Burst`, `Partition`).
    pub burst: Vec<bool>,
    /// The host whose fans fail (`FanFailure`).
    pub fan_host: usize,
    /// Length of the partition, s.
    pub partition_s: u64,
}

impl Scenario {
    /// The six benchmark scenarios.
    pub fn all(l: &Layout, event_s: u64, seed: u64) -> Vec<Scenario> {
        [
            Kind::Steady,
            Kind::CoolingFailure,
            Kind::FanFailure,
            Kind::Burst,
            Kind::Partition,
            Kind::HeavyCooling,
        ]
        .into_iter()
        .map(|k| Self::new(k, l, event_s, seed))
        .collect()
    }

    /// One scenario.
    pub fn new(kind: Kind, l: &Layout, event_s: u64, seed: u64) -> Self {
        let mut rng = Rng::derive(seed, 0xB0_u64 + kind as u64);
        let n = l.hosts();
        let burst = match kind {
            Kind::Burst => (0..n).map(|_| rng.unit() < 0.3).collect(),
            Kind::Partition => (0..n)
                .map(|h| l.row_of(h) == 0 && rng.unit() < 0.3)
                .collect(),
            _ => vec![false; n],
        };
        let name = match kind {
            Kind::Steady => "steady-40%",
            Kind::CoolingFailure => "cooling+6C",
            Kind::FanFailure => "fan-failure",
            Kind::Burst => "burst-30%",
            Kind::Partition => "partition",
            Kind::HeavyCooling => "heavy85+cool",
        };
        let base_load = match kind {
            Kind::CoolingFailure => 0.6,
            Kind::HeavyCooling => 0.85,
            _ => 0.4,
        };
        // The fan fails in the upper half of rack 1, where recirculation is worst.
        let fan_host = l.host(1.min(l.racks - 1), l.hosts_per_rack * 3 / 4);
        Self {
            kind,
            name,
            event_s,
            base_load,
            burst,
            fan_host,
            partition_s: 300,
        }
    }

    /// Supply air at the inlet of host `h` at `t`, °C.
    pub fn supply_c(&self, l: &Layout, h: usize, t: u64) -> f64 {
        let cooling = matches!(self.kind, Kind::CoolingFailure | Kind::HeavyCooling);
        let failed = cooling && t >= self.event_s && l.row_of(h) == 0;
        SUPPLY_C + if failed { 6.0 } else { 0.0 }
    }

    /// Scale of host `h`'s thermal resistances at `t`.
    pub fn r_scale(&self, h: usize, t: u64) -> f64 {
        if self.kind == Kind::FanFailure && h == self.fan_host && t >= self.event_s {
            2.0
        } else {
            1.0
        }
    }

    /// Whether a guest that started on host `origin` is bursting at `t`.
    pub fn bursting(&self, origin: usize, t: u64) -> bool {
        t >= self.event_s && self.burst[origin]
    }

    /// Whether hosts `a` and `b` can talk at `t`.
    pub fn reachable(&self, l: &Layout, a: usize, b: usize, t: u64) -> bool {
        let cut = self.kind == Kind::Partition
            && t >= self.event_s
            && t < self.event_s + self.partition_s;
        !cut || l.row_of(a) == l.row_of(b)
    }
}
