//! The `ragplane` binary.

use clap::Parser;
use ragplane::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // The parsing child limits its own memory and CPU: it must not start a runtime's
        // threads first.
        Command::ParseDocument(args) => args.run(),
        command => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(ragplane::cli::run(Cli { command }))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
