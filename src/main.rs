//! wasmbuild: build, pack, push and run WebAssembly (WASI preview 1) modules as OCI images.

/// `println!` for data on stdout; a closed pipe (`wasmbuild images | head -1`) ends the
/// program quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(error);
        }
    }};
}

mod cli;
mod commands;
mod diagnostics;
mod home;
mod progress;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if cli.version {
        return commands::version::run();
    }
    let Some(command) = cli.command else {
        cli::Cli::command()
            .error(
                clap::error::ErrorKind::MissingSubcommand,
                "a command is required (such as `build` or `run`; `help` lists them)",
            )
            .exit()
    };
    let global = cli.global;
    let outcome = match command {
        cli::Command::Init(args) => commands::init::run(args, &global),
        cli::Command::Build(args) => commands::build::run(args, &global),
        cli::Command::Images(args) => commands::images::run(args, &global),
        cli::Command::Inspect(args) => commands::inspect::run(args, &global),
        cli::Command::Tag(args) => commands::tag::run(args, &global),
        cli::Command::Rmi(args) => commands::rmi::run(args, &global),
        cli::Command::Run(args) => commands::run::run(args, &global),
        cli::Command::Push(args) => commands::push::run(args, &global),
        cli::Command::Pull(args) => commands::pull::run(args, &global),
        cli::Command::Login(args) => commands::login::login(args, &global),
        cli::Command::Logout(args) => commands::login::logout(args, &global),
        cli::Command::Save(args) => commands::save::run(args, &global),
        cli::Command::Load(args) => commands::load::run(args, &global),
        cli::Command::Cache(args) => commands::cache::run(args, &global),
        cli::Command::Schema => commands::schema(),
        cli::Command::Completions(args) => commands::completions::run(args),
        cli::Command::Shim(args) => commands::shim::run(args, &global),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            diagnostics::render(&error);
            ExitCode::FAILURE
        }
    }
}

/// Writing data to stdout failed: quietly done on a closed pipe, an error otherwise.
fn stdout_failed(error: std::io::Error) -> ! {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {error}");
    std::process::exit(1);
}
