//! `maxwell`: the binary's edge. Parses the command line, sets up logging,
//! and turns errors into one clear line and a non-zero exit.

use clap::Parser;
use maxwell_node::cli::{Cli, Command};
use maxwell_node::{agent, demo, guests, http, logging, render};
use std::time::Duration;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The agent's config may name the log level: read it before logging starts.
    let mut config = None;
    let level = match &cli.command {
        Command::Agent(args) => match args.clone().into_config() {
            Ok(c) => {
                let level = cli.log_level.clone().or_else(|| c.log_level.clone());
                config = Some(c);
                level
            }
            Err(e) => return fail(&anyhow::Error::from(e)),
        },
        _ => cli.log_level.clone(),
    };
    if let Err(e) = logging::init(level.as_deref()) {
        eprintln!("maxwell: bad log level: {e}");
        return std::process::ExitCode::from(2);
    }
    match run(cli.command, config, cli.log_level.is_some()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One line on stderr, exit 1.
fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("maxwell: {}", one_line(e));
    std::process::ExitCode::FAILURE
}

/// The error and its causes on one line, each cause once: a message that
/// already quotes its source (as most of ours do) does not repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn run(
    command: Command,
    config: Option<maxwell_node::config::Config>,
    log_level_flag: bool,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(5);
    match command {
        Command::Agent(args) => {
            let config = match config {
                Some(c) => c,
                None => args.clone().into_config()?,
            };
            let reload = agent::Reload {
                load: Box::new(move || args.clone().into_config()),
                log_level_flag,
            };
            let rt = runtime()?;
            let result = rt.block_on(agent::run(config, reload));
            // A blocking call still running (a guest call, a metrics render)
            // must not hold up the exit.
            rt.shutdown_timeout(Duration::from_secs(5));
            result
        }
        Command::Status(q) => {
            let status: http::Status = q.token.api(q.http)?.get_json("/v1/status", timeout)?;
            if q.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::status(&status));
            }
            Ok(())
        }
        Command::Members(q) => {
            let members: http::Members = q.token.api(q.http)?.get_json("/v1/members", timeout)?;
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
