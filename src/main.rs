//! The `ossmount` binary: parse the command line, run one command, turn its failure into a
//! one-line message and a distinct exit code.

use std::process::ExitCode;

use clap::Parser;
use ossmount::cli::{Cli, Command, Failure};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `mount` sets up logging itself: it may detach first and log to a file.
    if !matches!(cli.command, Command::Mount(_)) {
        let _ = ossmount::logging::init(cli.debug, ossmount::logging::Sink::Stderr);
    }
    let result: Result<(), Failure> = match cli.command {
        Command::Mount(args) => ossmount::cmd::mount::run(args, cli.debug),
        Command::Download(args) => ossmount::cmd::download::run(args),
        Command::Serve(args) => ossmount::cmd::serve::run(args),
        Command::Cache(args) => ossmount::cmd::cache::run(args.command),
        Command::Ls(args) => ossmount::cmd::inspect::ls(args),
        Command::Cat(args) => ossmount::cmd::inspect::cat(args),
        Command::Status(args) => ossmount::cmd::status::run(args),
        Command::Warm(args) => ossmount::cmd::warm::run(args),
        Command::Auth(args) => ossmount::cmd::auth::run(args.command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("ossmount: {}", f.message);
            ExitCode::from(f.exit_code)
        }
    }
}
