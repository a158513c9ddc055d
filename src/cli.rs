//! The command line: one `Args` per subcommand (in `commands/`), global flags defined once.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

#[derive(Debug, Parser)]
#[command(
    name = "wasmbuild",
    about = "Build, pack and run WebAssembly (WASI) modules as OCI images",
    // `--version` names the wasmtime and wasm-opt a build uses too: main prints it.
    disable_version_flag = true,
    // As with a required command: `wasmbuild` alone prints the help.
    arg_required_else_help = true,
    override_usage = "wasmbuild [OPTIONS] <COMMAND>\n       wasmbuild --version",
    // Help wider than this is hard to read, and a fixed limit keeps the snapshots stable.
    max_term_width = 100
)]
pub struct Cli {
    /// Print the versions of wasmbuild, its wasmtime and the wasm-opt it would run
    #[arg(short = 'V', long)]
    pub version: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
    // Optional only so that `--version` needs no command; main insists on one otherwise.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print only data (references, digests) and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// How to show progress on stderr
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto, env = "WASMBUILD_PROGRESS")]
    pub progress: Progress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    /// Live progress when stderr is a terminal (and not in CI), plain lines otherwise
    Auto,
    /// Always live progress
    Tty,
    /// One line per step with its duration, toolchain output as it comes
    Plain,
    /// One JSON object per line for each event: step, output, warning, info, done
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a Wasmfile for the project in a folder, or start a new project there
    Init(commands::init::Args),
    /// Build the module a Wasmfile (or Dockerfile) describes and pack it into the local store
    Build(commands::build::Args),
    /// List the images in the local store
    Images(commands::images::Args),
    /// Show an image's config, manifest and module interface
    Inspect(commands::inspect::Args),
    /// Give a stored image another reference
    Tag(commands::tag::Args),
    /// Remove references from the local store (and blobs no reference uses)
    Rmi(commands::rmi::Args),
    /// Run an image's module with the embedded wasmtime
    Run(commands::run::Args),
    /// Push an image (and its precompiled artifacts) to its registry
    Push(commands::push::Args),
    /// Pull an image (and the precompiled artifact for this host) into the local store
    Pull(commands::pull::Args),
    /// Log in to a registry, storing the credentials where Docker keeps them
    Login(commands::login::LoginArgs),
    /// Remove the stored credentials for a registry
    Logout(commands::login::LogoutArgs),
    /// Write images to an OCI archive (tar)
    Save(commands::save::Args),
    /// Read images from an OCI archive (tar) into the local store
    Load(commands::load::Args),
    /// List or prune the step cache (optimized and precompiled results)
    Cache(commands::cache::Args),
    /// Print the JSON Schema of the Wasmfile
    #[command(after_help = "Examples:
  wasmbuild schema > wasmfile.schema.json
  # then, as the Wasmfile's first line, for taplo or Even Better TOML:
  #:schema ./wasmfile.schema.json")]
    Schema,
    /// Print a shell's completion script for wasmbuild
    Completions(commands::completions::Args),
    /// Install the containerd shim and print its containerd and Kubernetes configuration
    Shim(commands::shim::Args),
}
