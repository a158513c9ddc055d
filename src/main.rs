//! wasmbuild: build, pack, push and run WebAssembly (WASI preview 1) modules as OCI images.

mod cli;
mod commands;
mod diagnostics;
mod home;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let global = cli.global;
    let outcome = match cli.command {
        cli::Command::Build(args) => commands::build::run(args, &global),
        cli::Command::Images(args) => commands::images::run(args, &global),
        cli::Command::Inspect(args) => commands::inspect::run(args, &global),
        cli::Command::Tag(args) => commands::tag::run(args, &global),
        cli::Command::Rmi(args) => commands::rmi::run(args, &global),
        cli::Command::Run(args) => commands::run::run(args, &global),
        cli::Command::Save(args) => commands::save::run(args, &global),
        cli::Command::Load(args) => commands::load::run(args, &global),
        cli::Command::Schema => commands::schema(),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            diagnostics::render(&error);
            ExitCode::FAILURE
        }
    }
}
