//! Runs the thermal benchmark and writes its charts.
//!
//! `cargo run --release -p maxwell-testbed --example thermal -- [SEED] [PLOT_DIR] [--short]`

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let short = args.iter().any(|a| a == "--short");
    let mut rest = args.iter().filter(|a| *a != "--short");
    let seed = rest.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let dir = rest
        .next()
        .cloned()
        .unwrap_or_else(|| "target/thermal-bench".into());
    let cfg = if short {
        maxwell_testbed::BenchConfig::short(seed)
    } else {
        maxwell_testbed::BenchConfig::standard(seed)
    };
    let report = maxwell_testbed::run_thermal_bench_with(&cfg);
    print!("{report}");
    for path in report.write_plots(std::path::Path::new(&dir))? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
