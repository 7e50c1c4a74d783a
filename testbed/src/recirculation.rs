//! Floor layout and heat recirculation (after Tang, Gupta and Varsamopoulos,
//! "Thermal-aware task scheduling for data centers through minimizing heat
//! recirculation", 2007/2008): inlet temperatures are linear in the hosts'
//! powers, `T_in = T_supply + D · P`, with `D` the heat-recirculation
//! matrix (K/W). Here `D` is built from geometry: exhaust rises, so a host
//! heats the inlets of the few hosts above it most, those beside it (same
//! height, adjacent rack of the row) less, those just below a little, and the
//! top of every rack receives some of the whole rack's exhaust over the top.

/// Racks in rows, hosts in slots (slot 0 at the bottom).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Number of racks.
    pub racks: usize,
    /// Hosts per rack (1U each).
    pub hosts_per_rack: usize,
    /// Racks per row (a row shares its supply air).
    pub racks_per_row: usize,
}

impl Layout {
    /// 4 racks × 40 hosts, 2 rows of 2 racks.
    pub fn standard() -> Self {
        Self {
            racks: 4,
            hosts_per_rack: 40,
            racks_per_row: 2,
        }
    }
    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.racks * self.hosts_per_rack
    }
    /// Host index of (`rack`, `slot`).
    pub fn host(&self, rack: usize, slot: usize) -> usize {
        rack * self.hosts_per_rack + slot
    }
    /// Rack of a host.
    pub fn rack_of(&self, h: usize) -> usize {
        h / self.hosts_per_rack
    }
    /// Slot of a host.
    pub fn slot_of(&self, h: usize) -> usize {
        h % self.hosts_per_rack
    }
    /// Row of a host.
    pub fn row_of(&self, h: usize) -> usize {
        self.rack_of(h) / self.racks_per_row
    }
    /// Name of a rack, as a node would report it.
    pub fn rack_name(&self, rack: usize) -> String {
        format!("r{rack}")
    }
}

/// A sparse recirculation matrix: `rows[i]` lists `(j, d_ij)` in K/W.
#[derive(Debug, Clone, PartialEq)]
pub struct Recirculation {
    rows: Vec<Vec<(usize, f64)>>,
}

impl Recirculation {
    /// The geometric model described in the module documentation.
    pub fn from_layout(l: &Layout) -> Self {
        let n = l.hosts();
        let top = l.hosts_per_rack.saturating_sub(8);
        let rows = (0..n)
            .map(|i| {
                let (ri, si) = (l.rack_of(i), l.slot_of(i));
                let mut row = Vec::new();
                for j in 0..n {
                    let (rj, sj) = (l.rack_of(j), l.slot_of(j));
                    let mut d = 0.0;
                    if rj == ri && j != i {
                        if si > sj && si - sj <= 4 {
                            d += 0.004 * 0.6f64.powi((si - sj) as i32 - 1);
                        } else if sj > si && sj - si <= 2 {
                            d += 0.0015 * 0.5f64.powi((sj - si) as i32 - 1);
                        }
                        if si >= top {
                            d += 0.000_15 * (si - top + 1) as f64 / 8.0;
                        }
                    } else if l.row_of(i) == l.row_of(j)
                        && ri.abs_diff(rj) == 1
                        && si.abs_diff(sj) <= 1
                    {
                        d += if si == sj { 0.0015 } else { 0.0007 };
                    }
                    if d > 0.0 {
                        row.push((j, d));
                    }
                }
                row
            })
            .collect();
        Self { rows }
    }

    /// The non-zero coefficients of inlet `i`.
    pub fn row(&self, i: usize) -> &[(usize, f64)] {
        &self.rows[i]
    }

    /// Inlet temperature rise of every host, `D · P`, in K.
    pub fn rise(&self, power_w: &[f64]) -> Vec<f64> {
        self.rows
            .iter()
            .map(|row| row.iter().map(|&(j, d)| d * power_w[j]).sum())
            .collect()
    }
}
