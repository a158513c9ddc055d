//! `wasmbuild completions SHELL`: the shell's completion script, generated from the CLI.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory as _;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild completions bash > ~/.local/share/bash-completion/completions/wasmbuild
  wasmbuild completions zsh > ~/.zfunc/_wasmbuild    # with fpath+=(~/.zfunc) in ~/.zshrc
  wasmbuild completions fish > ~/.config/fish/completions/wasmbuild.fish")]
pub struct Args {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut crate::cli::Cli::command(),
        "wasmbuild",
        &mut script,
    );
    if let Err(error) = std::io::stdout().lock().write_all(&script) {
        crate::stdout_failed(error);
    }
    Ok(ExitCode::SUCCESS)
}
