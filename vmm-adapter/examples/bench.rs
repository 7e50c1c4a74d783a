//! `cargo run -p maxwell-vmm --release --example bench [-- --quick]`: the
//! same benchmark `maxwell bench vmm` prints, on the backend this host
//! supports.

use maxwell_vmm::{open_backend, run_bench, BenchOptions, CapConfig};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let opts = if quick {
        BenchOptions {
            starts: 5,
            cycles: 20,
            cap_window: std::time::Duration::from_secs(1),
            ..BenchOptions::default()
        }
    } else {
        BenchOptions::default()
    };
    let (backend, why) = match open_backend(CapConfig::default()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot open a backend: {e}");
            std::process::exit(1);
        }
    };
    if let Some(why) = why {
        eprintln!("note: using the process backend: /dev/kvm not usable: {why}");
    }
    match run_bench(backend.as_ref(), &opts) {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
