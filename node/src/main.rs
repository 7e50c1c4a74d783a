//! `maxwell`: the binary's edge. Parses the command line, sets up logging,
//! and turns errors into one clear line and a non-zero exit.

use clap::Parser;
use maxwell_node::cli::{Cli, Command};
use maxwell_node::mesh::transport::InvalidPayloadLayer;
use maxwell_node::{agent, client, demo, guests, http, render};
use std::time::Duration;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.log_level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("maxwell: bad --log-level: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // The counter of malformed gossip datagrams sees chitchat's warnings
    // whatever the log level.
    let chitchat_warnings = Targets::new().with_target("chitchat::transport", tracing::Level::WARN);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(InvalidPayloadLayer.with_filter(chitchat_warnings))
        .init();
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("maxwell: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn run(command: Command) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(5);
    match command {
        Command::Agent(args) => {
            let config = args.into_config()?;
            runtime()?.block_on(agent::run(config))
        }
        Command::Status(q) => {
            let status: http::Status = client::get_json(q.http, "/v1/status", timeout)?;
            if q.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::status(&status));
            }
            Ok(())
        }
        Command::Members(q) => {
            let members: http::Members = client::get_json(q.http, "/v1/members", timeout)?;
            if q.json {
                println!("{}", serde_json::to_string_pretty(&members)?);
            } else {
                print!("{}", render::members(&members));
            }
            Ok(())
        }
        Command::Demo(args) => runtime()?.block_on(demo::run(args)),
        Command::Guests(args) => guests::cli(args),
        // Builds its own runtimes: the simulation needs a paused clock.
        Command::Bench(args) => maxwell_node::bench::run(args),
    }
}
