//! `maxwell bench vmm`: guest create-to-first-exit time, pause and resume
//! latency (p50, p99), cap accuracy at 10/30/70 % and kill time, measured by
//! [`maxwell_vmm::run_bench`] on this host's backend. Every guest it starts
//! is killed before it returns.

use anyhow::{anyhow, bail, Context};
use clap::Args;
use maxwell_node::guests::config::GuestBackendKind;
use maxwell_vmm::{
    open_backend, run_bench, BenchOptions, CapConfig, GuestBackend, KvmBackend, ProcessBackend,
};
use std::time::Duration;

/// `maxwell bench vmm`.
#[derive(Debug, Args)]
pub struct VmmBenchArgs {
    /// Fewer samples and a 1 s cap window (~5 s instead of ~20 s).
    #[arg(long)]
    pub quick: bool,
    /// Backend to measure [default: auto: KVM where /dev/kvm works, else processes].
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: GuestBackendKind,
}

/// Runs the benchmark and prints its table on stdout (notes on stderr).
pub fn run(args: &VmmBenchArgs) -> anyhow::Result<()> {
    let opts = if args.quick {
        BenchOptions {
            starts: 5,
            cycles: 20,
            cap_window: Duration::from_secs(1),
            ..BenchOptions::default()
        }
    } else {
        BenchOptions::default()
    };
    let caps = CapConfig::default();
    let backend: Box<dyn GuestBackend> = match args.backend {
        GuestBackendKind::Auto => {
            let (b, why) = open_backend(caps).context("cannot open a guest backend")?;
            if let Some(why) = why {
                eprintln!("note: /dev/kvm not usable ({why}): measuring the process backend");
            }
            b
        }
        GuestBackendKind::Kvm => {
            Box::new(KvmBackend::with_caps(caps).context("cannot open the KVM backend")?)
        }
        GuestBackendKind::Process => Box::new(ProcessBackend::with_caps(caps)),
        GuestBackendKind::None => bail!("--backend none: there is nothing to measure"),
    };
    let secs = if args.quick { 5 } else { 20 };
    eprintln!(
        "measuring the {} backend (about {secs} s)...",
        backend.name()
    );
    let report = run_bench(backend.as_ref(), &opts);
    let leftover = backend.shutdown().len();
    let report = report.map_err(|e| anyhow!("bench vmm failed: {e}"))?;
    print!("{report}");
    if leftover > 0 {
        eprintln!("note: {leftover} guest(s) were left by the benchmark and killed");
    }
    Ok(())
}
