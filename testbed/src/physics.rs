//! Per-host physics: power linear in utilisation and a two-node lumped RC
//! thermal model (die+heatsink, chassis air), with hardware throttling near
//! the critical temperature.
//!
//! ```text
//!  P ──► [die+sink: C_d] ──R_d──► [chassis: C_c] ──R_c──► inlet air
//! ```
//! `C_d dT_d/dt = P − (T_d − T_c)/R_d`,
//! `C_c dT_c/dt = (T_d − T_c)/R_d − (T_c − T_in)/R_c`.
//! Steady state: `T_d = T_in + P (R_d + R_c)`. A fan failure scales both
//! resistances (`r_scale`).

use crate::rng::Rng;

/// Fraction of its capacity a throttled host still delivers.
pub const THROTTLED_CAPACITY: f64 = 0.5;

/// Static parameters of one 1U host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostModel {
    /// Power at 0% utilisation, W.
    pub idle_w: f64,
    /// Power at 100% utilisation, W.
    pub peak_w: f64,
    /// Die+sink to chassis air, K/W.
    pub r_die: f64,
    /// Chassis air to inlet (fans), K/W.
    pub r_chassis: f64,
    /// Heat capacity of die+sink, J/K.
    pub c_die: f64,
    /// Heat capacity of the chassis, J/K.
    pub c_chassis: f64,
    /// Critical temperature of the CPU, °C.
    pub critical_c: f64,
    /// Hardware throttling engages at this die temperature...
    pub throttle_c: f64,
    /// ...and releases below this one.
    pub release_c: f64,
}

impl HostModel {
    /// A typical 1U host with seeded manufacturing spread: idle 100–140 W,
    /// peak 300–400 W, die time constant ~20 s, chassis ~60 s.
    pub fn typical(rng: &mut Rng) -> Self {
        let critical_c = rng.uniform(93.0, 99.0);
        let r_die = rng.uniform(0.11, 0.13);
        let r_chassis = rng.uniform(0.045, 0.055);
        Self {
            idle_w: rng.uniform(100.0, 140.0),
            peak_w: rng.uniform(300.0, 400.0),
            r_die,
            r_chassis,
            c_die: 20.0 / r_die,
            c_chassis: 60.0 / r_chassis,
            critical_c,
            throttle_c: critical_c - 3.0,
            release_c: critical_c - 6.0,
        }
    }

    /// Power at utilisation `util` in [0, 1], W.
    pub fn power_w(&self, util: f64) -> f64 {
        self.idle_w + (self.peak_w - self.idle_w) * util.clamp(0.0, 1.0)
    }

    /// Steady die temperature at `power_w` with inlet `inlet_c`.
    pub fn steady_die_c(&self, inlet_c: f64, power_w: f64, r_scale: f64) -> f64 {
        inlet_c + power_w * (self.r_die + self.r_chassis) * r_scale
    }
}

/// Thermal state of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostThermal {
    /// Die (+sink) temperature, °C.
    pub die_c: f64,
    /// Chassis air temperature, °C.
    pub chassis_c: f64,
    /// Hardware throttling engaged.
    pub throttled: bool,
}

impl HostThermal {
    /// The steady state of `m` at `power_w` and `inlet_c`.
    pub fn steady(m: &HostModel, inlet_c: f64, power_w: f64) -> Self {
        let chassis_c = inlet_c + power_w * m.r_chassis;
        Self {
            die_c: chassis_c + power_w * m.r_die,
            chassis_c,
            throttled: false,
        }
    }

    /// Advances `dt_s` seconds (in 4 explicit sub-steps, stable for time
    /// constants above 1 s). Returns true when throttling engaged in this step.
    pub fn step(
        &mut self,
        m: &HostModel,
        power_w: f64,
        inlet_c: f64,
        r_scale: f64,
        dt_s: f64,
    ) -> bool {
        let h = dt_s / 4.0;
        let (rd, rc) = (m.r_die * r_scale, m.r_chassis * r_scale);
        for _ in 0..4 {
            let q_dc = (self.die_c - self.chassis_c) / rd;
            let q_ci = (self.chassis_c - inlet_c) / rc;
            self.die_c += h * (power_w - q_dc) / m.c_die;
            self.chassis_c += h * (q_dc - q_ci) / m.c_chassis;
        }
        let was = self.throttled;
        if self.die_c >= m.throttle_c {
            self.throttled = true;
        } else if self.die_c < m.release_c {
            self.throttled = false;
        }
        self.throttled && !was
    }
}
