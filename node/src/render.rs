//! Plain-text tables for the CLI.

use crate::http::{Members, Status};
use maxwell_gossip::{MicroWatts, MilliCelsius};
use std::fmt::Write;

/// A left-aligned text table.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_string()).collect()],
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with columns padded to their widest cell.
    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for absent values.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `maxwell status` as a readable page.
pub fn status(s: &Status) -> String {
    let snap = &s.snapshot;
    let sum = &snap.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node      {} ({})  rack {} slot {}  up {} s",
        s.node.name, s.node.id, s.node.rack, s.node.slot, s.uptime_s
    );
    let emulated = if snap.emulated {
        "  (EMULATED: not hardware measurements)"
    } else {
        ""
    };
    let _ = writeln!(out, "sensors   {}{emulated}", snap.source.as_str());
    match &sum.hottest {
        Some(h) => {
            let label = h.label.as_deref().unwrap_or(&h.sensor);
            let _ = writeln!(
                out,
                "hottest   {} of {} {} {label}, critical {} ({:?})",
                h.millicelsius, h.chip, h.sensor, h.critical_millicelsius, h.critical_source
            );
        }
        None => out.push_str("hottest   - (no temperature sensor)\n"),
    }
    let src = |p: &Option<crate::sensors::summary::Sourced>| {
        p.as_ref().map_or("-".to_string(), |p| {
            format!("{} ({})", p.microwatts, p.source)
        })
    };
    let _ = writeln!(
        out,
        "power     draw {}, cap {}, headroom {}",
        src(&sum.power_draw),
        src(&sum.power_cap),
        opt(sum.headroom_microwatts)
    );
    if let Some(q) = &s.price {
        let t = &q.terms;
        let m = |v: i64| format!("{:+.3}", v as f64 / 1000.0);
        let _ = writeln!(
            out,
            "price     {} (target {}{}): base {} thermal {} headroom {} rack {} stale {} relief -{} ({} fresh, {} stale peers)",
            price(q.price_milli),
            price(q.target_milli),
            if q.held { ", held" } else { "" },
            price(t.base.max(0) as u64),
            m(t.thermal),
            m(t.headroom),
            m(t.rack_power),
            m(t.staleness_penalty),
            price(t.neighbour_relief.max(0) as u64),
            q.fresh_peers,
            q.stale_peers
        );
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let _ = writeln!(
        out,
        "cpu       {:.1} % of {} CPUs, memory {:.1} of {:.1} GiB",
        snap.cpu.utilisation * 100.0,
        snap.cpu.cpus,
        gib(snap.cpu.memory_used_bytes),
        gib(snap.cpu.memory_total_bytes)
    );
    out.push('\n');
    let mut t = Table::new(&[
        "CHIP", "DEVICE", "SENSOR", "LABEL", "VALUE", "MAX", "CRIT", "ROLE",
    ]);
    let c = |v: Option<MilliCelsius>| opt(v);
    for r in &snap.hwmon.temperatures {
        t.row(vec![
            r.chip.clone(),
            r.device.clone(),
            r.sensor.clone(),
            opt(r.label.clone()),
            r.input_millicelsius.to_string(),
            c(r.max_millicelsius),
            c(r.crit_millicelsius),
            format!("{:?}", r.role).to_lowercase(),
        ]);
    }
    let w = |v: Option<MicroWatts>| opt(v);
    for r in &snap.hwmon.power {
        t.row(vec![
            r.chip.clone(),
            r.device.clone(),
            r.sensor.clone(),
            opt(r.label.clone()),
            w(r.draw()),
            "-".into(),
            format!("cap {}", w(r.cap_microwatts)),
            "power".into(),
        ]);
    }
    for r in &snap.hwmon.energy {
        t.row(vec![
            r.chip.clone(),
            r.device.clone(),
            r.sensor.clone(),
            opt(r.label.clone()),
            r.input_microjoules.to_string(),
            "-".into(),
            "-".into(),
            "energy".into(),
        ]);
    }
    for z in &snap.rapl {
        t.row(vec![
            "rapl".into(),
            z.zone.clone(),
            "energy_uj".into(),
            z.name.clone(),
            w(z.power_microwatts),
            "-".into(),
            format!("limit {}", w(z.limit_microwatts)),
            "power".into(),
        ]);
    }
    out.push_str(&t.render());
    if !snap.problems.is_empty() {
        out.push_str("\nskipped:\n");
        for p in &snap.problems {
            let _ = writeln!(out, "  {} {}: {}", p.kind.as_str(), p.path, p.detail);
        }
    }
    out
}

/// `maxwell members` as a table, like `serf members`.
pub fn members(m: &Members) -> String {
    let mut t = Table::new(&[
        "NAME", "ID", "ADDRESS", "STATUS", "RACK", "SLOT", "HOTTEST", "CRIT", "HEADROOM", "PRICE",
        "GUESTS", "FREE", "AGE", "REPORT",
    ]);
    for row in &m.members {
        let name = if row.is_self {
            format!("{} (self)", row.name)
        } else {
            row.name.clone()
        };
        let report = match (row.fresh, row.counts) {
            (_, true) => "verified",
            (false, _) => "stale",
            (true, false) => "ignored",
        };
        t.row(vec![
            name,
            row.id.to_string(),
            row.addr.clone(),
            row.status.as_str().to_string(),
            row.rack.clone(),
            row.slot.to_string(),
            opt(row.hottest_millicelsius),
            opt(row.critical_millicelsius),
            opt(row.headroom_microwatts),
            opt(row.price_milli.map(price)),
            opt(row.guests),
            match (row.free_vcpus, row.free_memory_mib) {
                (Some(c), Some(m)) => format!("{c} vCPU {m} MiB"),
                _ => "-".into(),
            },
            format!("{:.1} s", row.age_ms as f64 / 1000.0),
            report.to_string(),
        ]);
    }
    let mut out = t.render();
    if m.unverified_peers > 0 {
        let _ = writeln!(
            out,
            "\n{} gossip peer(s) without a verified report are not members",
            m.unverified_peers
        );
    }
    out
}

/// A price in thousandths, shown in units.
pub fn price(milli: u64) -> String {
    format!("{}.{:03}", milli / 1000, milli % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\n");
    }
}
