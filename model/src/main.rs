//! `waste-model`: SageMaker starts it as `IMAGE train` or `IMAGE serve`; users run the other
//! subcommands. All work happens in the library and `cli`; this edge parses arguments and
//! reports errors.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    cli::run(cli::Cli::parse())
}
