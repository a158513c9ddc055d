//! The command line: one `Args` per subcommand (in `commands/`), global flags defined once.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

#[derive(Debug, Parser)]
#[command(
    name = "wasmbuild",
    version,
    about = "Build, pack and run WebAssembly (WASI) modules as OCI images"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
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
    /// Live progress when stderr is a terminal, plain lines otherwise
    Auto,
    /// Always live progress
    Tty,
    /// One line per step, toolchain output as it comes
    Plain,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    Schema,
}
