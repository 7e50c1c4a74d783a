//! The binary's edge, shared by `maxwell` and `maxwell-tools`: parses the
//! command line, sets up logging, and turns errors into one clear line and
//! a non-zero exit.

use crate::cli::{Cli, Command, Forward};
use crate::{agent, guests_cli, http, logging, render};
use clap::Parser;
use std::ffi::OsString;
use std::time::Duration;

/// Runs the `maxwell` command line `args` (the program name first).
pub fn main(args: impl IntoIterator<Item = OsString>) -> std::process::ExitCode {
    let cli = Cli::parse_from(args);
    if matches!(
        cli.command,
        Command::Status(_)
            | Command::Members(_)
            | Command::Guests(_)
            | Command::Receipts(_)
            | Command::Keygen
    ) {
        // A one-shot printer whose reader went away (`| head`) ends quietly,
        // as Unix tools do, rather than panicking on a broken pipe. The
        // agent and the commands that run maxwell-tools keep SIGPIPE ignored.
        // SAFETY: before any thread is started; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
    match run(cli.command, config, cli.log_level) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// One line on stderr, exit 1.
pub fn fail(e: &anyhow::Error) -> std::process::ExitCode {
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

/// The runtime of the agent and the demo: two workers (one per core here).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn run(
    command: Command,
    config: Option<crate::config::Config>,
    log_level: Option<String>,
) -> anyhow::Result<()> {
    let log_level_flag = log_level.is_some();
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
        Command::Demo(f) => forward("demo", f, log_level),
        Command::Guests(args) => guests_cli::cli(args),
        Command::Submit(args) => guests_cli::submit(args),
        Command::Move(args) => guests_cli::move_guest(args),
        Command::Bench(f) => forward("bench", f, log_level),
        Command::Testbed(f) => forward("testbed", f, log_level),
        Command::Receipts(r) => crate::guests_cli::receipts(r),
        Command::Keygen => {
            print!("{}", crate::mesh::keys::generate()?);
            Ok(())
        }
    }
}

/// Runs `maxwell-tools COMMAND ARGS…` in place of this process: the tools
/// (and the solver, the Serf driver and the simulated clock they need) are
/// not linked into the agent. Looked for beside this binary, then on PATH.
fn forward(command: &str, f: Forward, log_level: Option<String>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    const TOOLS: &str = "maxwell-tools";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(TOOLS)))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| TOOLS.into());
    let mut cmd = std::process::Command::new(&program);
    if let Some(level) = log_level {
        cmd.args(["--log-level", &level]);
    }
    let err = cmd.arg(command).args(f.args).exec();
    anyhow::bail!(
        "`maxwell {command}` runs {TOOLS}, which could not be started ({err}); \
         build it with `cargo build --release -p maxwell-tools` and install it beside maxwell"
    )
}
