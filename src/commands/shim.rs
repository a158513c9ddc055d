//! `wasmbuild shim install|config`: puts the containerd shim (`containerd-shim-wasmbuild-v1`,
//! built beside `wasmbuild`) where containerd finds it, and prints how to configure
//! containerd and Kubernetes for it. The CLI never links the shim: it copies the binary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};

/// The shim's file name; containerd maps runtime `io.containerd.wasmbuild.v1` to it.
pub const SHIM_BINARY: &str = "containerd-shim-wasmbuild-v1";
/// The runtime name `ctr run --runtime` and containerd's config use.
pub const RUNTIME_TYPE: &str = "io.containerd.wasmbuild.v1";

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  sudo wasmbuild shim install
  wasmbuild shim config kubernetes | kubectl apply -f -
  sudo ctr run --rm --runtime io.containerd.wasmbuild.v1 ghcr.io/me/app:1.0 app")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Copy the shim to a folder on containerd's PATH and print its configuration
    #[command(after_help = "Examples:
  sudo wasmbuild shim install                  # into /usr/local/bin
  wasmbuild shim install --dir ~/bin --shim target/release/containerd-shim-wasmbuild-v1")]
    Install(InstallArgs),
    /// Print the containerd config snippet and the Kubernetes RuntimeClass for the shim
    #[command(after_help = "Examples:
  wasmbuild shim config containerd >> /etc/containerd/config.toml   # then restart containerd
  wasmbuild shim config kubernetes | kubectl apply -f -")]
    Config(ConfigArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Only this one [default: both]
    #[arg(value_enum)]
    pub what: Option<Configured>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Configured {
    /// The runtime entry for containerd's config.toml
    Containerd,
    /// The RuntimeClass, as YAML
    Kubernetes,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The folder to install into: one on containerd's PATH
    #[arg(long, value_name = "DIR", default_value = "/usr/local/bin")]
    pub dir: PathBuf,
    /// The shim binary to install [default: containerd-shim-wasmbuild-v1 beside wasmbuild]
    #[arg(long, value_name = "PATH")]
    pub shim: Option<PathBuf>,
}

pub fn run(args: Args, global: &crate::cli::GlobalArgs) -> Result<ExitCode> {
    match args.command {
        Command::Install(install) => {
            let installed = install_shim(&install)?;
            if !global.quiet {
                eprintln!("installed {}", installed.display());
            }
            outln!("{}", config_text(None));
        }
        Command::Config(config) => outln!("{}", config_text(config.what)),
    }
    Ok(ExitCode::SUCCESS)
}

fn install_shim(args: &InstallArgs) -> Result<PathBuf> {
    let source = match &args.shim {
        Some(path) => path.clone(),
        None => beside_wasmbuild()?,
    };
    if !source.is_file() {
        return Err(super::hinted(
            format!("there is no shim at {}", source.display()),
            format!(
                "build it with `cargo build --release -p {SHIM_BINARY}` (or `cargo install --path shim`), \
                 or name it with --shim"
            ),
        ));
    }
    if !args.dir.is_dir() {
        return Err(super::hinted(
            format!("{} is not a folder", args.dir.display()),
            "name a folder on containerd's PATH with --dir",
        ));
    }
    let target = args.dir.join(SHIM_BINARY);
    copy_executable(&source, &target).with_context(|| {
        format!(
            "cannot install {} as {}",
            source.display(),
            target.display()
        )
    })?;
    Ok(target)
}

/// `containerd-shim-wasmbuild-v1` in the folder this `wasmbuild` runs from.
fn beside_wasmbuild() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot tell where wasmbuild runs from")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    Ok(exe.with_file_name(SHIM_BINARY))
}

/// Copies to a temp file beside `target`, makes it executable, then renames it into place:
/// a shim containerd is starting is never seen half-written.
fn copy_executable(source: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = target.parent().unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".wasmbuild-shim-")
        .tempfile_in(dir)?;
    std::fs::copy(source, temp.path())?;
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))?;
    temp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

/// What containerd and Kubernetes need to know about the shim: `only` one, or both.
fn config_text(only: Option<Configured>) -> String {
    let containerd = format!(
        r#"# containerd 1.6+ (/etc/containerd/config.toml, version = 2): the CRI plugin's runtime
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmbuild]
  runtime_type = "{RUNTIME_TYPE}""#
    );
    let kubernetes = r#"# Kubernetes: pods with `runtimeClassName: wasmbuild` run on the shim
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: wasmbuild
handler: wasmbuild"#;
    match only {
        Some(Configured::Containerd) => containerd,
        Some(Configured::Kubernetes) => kubernetes.to_string(),
        None => format!(
            "{containerd}\n\n{kubernetes}\n\n# ctr needs neither: ctr run --rm --runtime {RUNTIME_TYPE} IMAGE ID"
        ),
    }
}
