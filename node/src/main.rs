//! `maxwell`: the agent binary every rack host runs (see [`maxwell_node::entry`]).

fn main() -> std::process::ExitCode {
    maxwell_node::entry::main(std::env::args_os())
}
