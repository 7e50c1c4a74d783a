//! The rack around the containers: the thermal bench's own physics
//! (`maxwell_testbed::physics` and `recirculation`: one model, not a copy),
//! driven by each agent container's real CPU and written out as the hwmon
//! files that agent reads. The agents do not know they are in a testbed.
//!
//! [`Rack::step`] is pure (utilisation in, temperatures out); [`write_hwmon`]
//! is the only I/O.

use maxwell_testbed::physics::{HostModel, HostThermal, THROTTLED_CAPACITY};
use maxwell_testbed::recirculation::Recirculation;
use maxwell_testbed::rng::Rng;
use maxwell_testbed::Layout;
use std::path::Path;

/// Supply air of every row while its cooling works, °C.
pub const SUPPLY_C: f64 = 22.0;

/// The hosts' thermal state and the faults on them.
#[derive(Debug)]
pub struct Rack {
    layout: Layout,
    recirc: Recirculation,
    models: Vec<HostModel>,
    thermal: Vec<HostThermal>,
    /// Supply-air rise per row (a cooling failure), °C.
    pub supply_rise_c: Vec<f64>,
    /// Thermal-resistance factor per host (a fan failure).
    pub r_scale: Vec<f64>,
    /// Power drawn from outside the host's CPU (a heated slot), W.
    pub extra_w: Vec<f64>,
    power_w: Vec<f64>,
}

impl Rack {
    /// Hosts with the bench's manufacturing spread, from `seed`, at their
    /// steady state at utilisation `util`: a run starts warm, with the
    /// load its guests will put on it, not from cold.
    pub fn new(layout: Layout, seed: u64, util: f64) -> Self {
        let mut rng = Rng::new(seed);
        let n = layout.hosts();
        let models: Vec<HostModel> = (0..n).map(|_| HostModel::typical(&mut rng)).collect();
        let recirc = Recirculation::from_layout(&layout);
        let power_w: Vec<f64> = models.iter().map(|m| m.power_w(util)).collect();
        let rise = recirc.rise(&power_w);
        let thermal = models
            .iter()
            .zip(&power_w)
            .zip(&rise)
            .map(|((m, p), r)| HostThermal::steady(m, SUPPLY_C + r, *p))
            .collect();
        let rows = layout.racks.div_ceil(layout.racks_per_row);
        Self {
            layout,
            recirc,
            models,
            thermal,
            supply_rise_c: vec![0.0; rows],
            r_scale: vec![1.0; n],
            extra_w: vec![0.0; n],
            power_w,
        }
    }

    /// Advances `dt_s` with each host at utilisation `util[h]` (0 to 1).
    pub fn step(&mut self, util: &[f64], dt_s: f64) {
        for (h, m) in self.models.iter().enumerate() {
            let mut u = util.get(h).copied().unwrap_or(0.0);
            if self.thermal[h].throttled {
                // Hardware throttling: the host runs slower, and draws less.
                u *= THROTTLED_CAPACITY;
            }
            self.power_w[h] = m.power_w(u) + self.extra_w[h];
        }
        let rise = self.recirc.rise(&self.power_w);
        for (h, r) in rise.iter().enumerate() {
            let inlet = SUPPLY_C + self.supply_rise_c[self.layout.row_of(h)] + r;
            self.thermal[h].step(
                &self.models[h],
                self.power_w[h],
                inlet,
                self.r_scale[h],
                dt_s,
            );
        }
    }

    /// Host `h`'s die temperature, °C.
    pub fn die_c(&self, h: usize) -> f64 {
        self.thermal[h].die_c
    }

    /// Host `h`'s power draw, W.
    pub fn power_w(&self, h: usize) -> f64 {
        self.power_w[h]
    }

    /// What host `h`'s sensors show.
    pub fn reading(&self, h: usize) -> Reading {
        let m = &self.models[h];
        Reading {
            die_mc: (self.thermal[h].die_c * 1000.0).round() as i64,
            crit_mc: (m.critical_c * 1000.0).round() as i64,
            power_uw: (self.power_w[h] * 1e6).round() as i64,
            // The cap sits a tenth under peak: a busy host's headroom is small.
            cap_uw: (m.peak_w * 0.9 * 1e6).round() as i64,
        }
    }
}

/// One host's hwmon values, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub die_mc: i64,
    pub crit_mc: i64,
    pub power_uw: i64,
    pub cap_uw: i64,
}

/// Writes `r` under `root` as two chips: `hwmon0` a coretemp package
/// sensor, `hwmon1` a power meter. Each value file is replaced atomically,
/// so an agent never reads half a file.
pub fn write_hwmon(root: &Path, r: Reading) -> std::io::Result<()> {
    let temp = root.join("hwmon0");
    let power = root.join("hwmon1");
    std::fs::create_dir_all(&temp)?;
    std::fs::create_dir_all(&power)?;
    let put = |dir: &Path, file: &str, value: String| -> std::io::Result<()> {
        let tmp = dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, value)?;
        std::fs::rename(&tmp, dir.join(file))
    };
    put(&temp, "name", "coretemp\n".into())?;
    put(&temp, "temp1_label", "Package id 0\n".into())?;
    put(&temp, "temp1_crit", format!("{}\n", r.crit_mc))?;
    put(&temp, "temp1_input", format!("{}\n", r.die_mc))?;
    put(&power, "name", "power_meter\n".into())?;
    put(&power, "power1_cap", format!("{}\n", r.cap_uw))?;
    put(&power, "power1_input", format!("{}\n", r.power_uw))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            racks: 2,
            hosts_per_rack: 3,
            racks_per_row: 1,
        }
    }

    #[test]
    fn work_and_faults_heat_the_hosts_they_touch() {
        let mut rack = Rack::new(layout(), 1, 0.0);
        let idle: Vec<f64> = (0..6).map(|h| rack.die_c(h)).collect();
        for _ in 0..300 {
            rack.step(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1.0);
        }
        assert!(rack.die_c(0) > idle[0] + 20.0, "a busy host heats");
        assert!(rack.die_c(4) < idle[4] + 1.0, "another row barely moves");
        let before = rack.die_c(4);
        rack.supply_rise_c[1] = 10.0;
        rack.r_scale[5] = 2.0;
        for _ in 0..300 {
            rack.step(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 1.0);
        }
        assert!(rack.die_c(4) > before + 9.0, "row 1's supply rose 10 °C");
        assert!(
            rack.die_c(5) > rack.die_c(4) + 5.0,
            "a failed fan runs hotter"
        );
    }

    #[test]
    fn the_agent_reads_what_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rack = Rack::new(layout(), 1, 0.0);
        let r = rack.reading(2);
        write_hwmon(dir.path(), r).expect("write");
        // The agent's own reader, as it reads /sys/class/hwmon.
        let mut problems = Vec::new();
        let got = maxwell_node::sensors::hwmon::read_tree(dir.path(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let t = &got.temperatures[0];
        assert_eq!(t.input_millicelsius.0, r.die_mc);
        assert_eq!(t.crit_millicelsius.map(|c| c.0), Some(r.crit_mc));
        let p = &got.power[0];
        assert_eq!(p.input_microwatts.map(|w| w.0), Some(r.power_uw));
        assert_eq!(p.cap_microwatts.map(|w| w.0), Some(r.cap_uw));
        assert!(r.power_uw < r.cap_uw && r.die_mc < r.crit_mc);
    }
}
