//! `maxwell-tools`: `demo` and `bench`; any other command is the `maxwell`
//! command line (so the demo's and benches' agents are this binary's
//! `agent`, the same code as the `maxwell` binary's).

use clap::{Parser, Subcommand};
use maxwell_node::entry;
use maxwell_tools::{bench, demo, testbed};
use std::ffi::OsString;

/// The demo and the benchmarks of maxwell; every other command is maxwell's
/// own (`maxwell-tools agent --help`).
#[derive(Debug, Parser)]
#[command(
    name = "maxwell-tools",
    version,
    about,
    after_help = "Every other command (agent, status, members, guests) is the maxwell command line."
)]
struct Cli {
    /// Log filter (e.g. `info`, `debug`); RUST_LOG also works.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Tool,
}

#[derive(Debug, Subcommand)]
enum Tool {
    /// Start a local demo mesh of agents on loopback with emulated sensors and show a live view.
    Demo(demo::DemoArgs),
    /// Run a benchmark and print one table (`bench gossip`, `bench vmm`, `bench thermal`).
    Bench(bench::BenchArgs),
    /// A rack of real agents in Docker containers: run a scenario file (`testbed run testbed/scenarios/cooling-failure.toml`), or clean up (`testbed down`).
    Testbed(testbed::TestbedArgs),
}

fn main() -> std::process::ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // Not a tool: the rest is the maxwell command line.
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidSubcommand => {
            return entry::main(args)
        }
        Err(e) => e.exit(),
    };
    if let Err(e) = maxwell_node::logging::init(cli.log_level.as_deref()) {
        eprintln!("maxwell-tools: bad log level: {e}");
        return std::process::ExitCode::from(2);
    }
    let result = match cli.command {
        Tool::Demo(args) => entry::runtime().and_then(|rt| rt.block_on(demo::run(args))),
        // Builds its own runtimes: the simulation needs a paused clock.
        Tool::Bench(args) => bench::run(args),
        Tool::Testbed(args) => testbed::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<testbed::engine::NoEngine>().is_some() => {
            eprintln!("maxwell testbed: {e}");
            std::process::ExitCode::from(testbed::engine::NoEngine::EXIT_CODE)
        }
        Err(e) => entry::fail(&e),
    }
}
