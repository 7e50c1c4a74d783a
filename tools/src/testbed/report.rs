//! The scenario's record: SVG plots of temperature, price and running
//! guests per node over time, and `report.txt` with every check's result.

use super::observe::History;
use maxwell_testbed::plot::{line_chart, Series};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One check's outcome, for the report.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at_s: u64,
    pub what: String,
    pub result: Result<String, String>,
}

/// Writes the plots and `report.txt` into `dir`; returns the files.
pub fn write(
    dir: &Path,
    title: &str,
    history: &History,
    faults: &[(u64, String)],
    notes: &[String],
    outcomes: &[Outcome],
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let series = |f: &dyn Fn(&super::observe::Sample) -> Option<f64>| -> Vec<Series> {
        history
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let raw: Vec<Option<f64>> = history
                    .at
                    .iter()
                    .map(|row| row.get(i).and_then(f))
                    .collect();
                // A node that did not answer keeps its last value (its
                // first, before it ever answered).
                let mut last = raw.iter().flatten().next().copied().unwrap_or(0.0);
                let values = raw
                    .iter()
                    .map(|v| {
                        last = v.unwrap_or(last);
                        last
                    })
                    .collect();
                Series {
                    label: n.clone(),
                    values,
                }
            })
            .collect()
    };
    let first_fault = faults.first().map(|f| f.0);
    let charts = [
        (
            "temperature.svg",
            "die temperature",
            "°C",
            series(&|s| s.temp_c),
        ),
        (
            "price.svg",
            "local price",
            "milli-credits / CPU-s",
            series(&|s| s.price_milli.map(|p| p as f64)),
        ),
        (
            "guests.svg",
            "guests running (not paused or killed)",
            "guests",
            series(&|s| s.up.then_some(s.running as f64)),
        ),
    ];
    let mut files = Vec::new();
    for (file, what, unit, s) in charts {
        let path = dir.join(file);
        std::fs::write(
            &path,
            line_chart(&format!("{title}: {what}"), unit, &s, &[], first_fault),
        )?;
        files.push(path);
    }
    let mut text = String::new();
    let _ = writeln!(text, "{title}");
    let _ = writeln!(text, "faults:");
    for (at, f) in faults {
        let _ = writeln!(text, "  {at:>4} s  {f}");
    }
    let _ = writeln!(text, "figures (what an operator sees, after the fault):");
    for n in notes {
        let _ = writeln!(text, "  {n}");
    }
    let _ = writeln!(text, "checks:");
    for o in outcomes {
        let (mark, detail) = match &o.result {
            Ok(d) => ("pass", d),
            Err(d) => ("FAIL", d),
        };
        let _ = writeln!(text, "  {:>4} s  {mark}  {}: {detail}", o.at_s, o.what);
    }
    let path = dir.join("report.txt");
    std::fs::write(&path, text)?;
    files.push(path);
    Ok(files)
}
