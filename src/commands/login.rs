//! `wasmbuild login [HOST]` and `wasmbuild logout [HOST]`, stored where Docker keeps them.

use std::process::ExitCode;

use anyhow::{Context, Result};
use wasmbuild_packer::credentials::{self, Credential, Env, Stored};
use wasmbuild_packer::reference::DOCKER_HUB;
use wasmbuild_packer::registry;

use super::registry::Connection;
use crate::cli::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  echo \"$GITHUB_TOKEN\" | wasmbuild login ghcr.io -u me --password-stdin
  wasmbuild login localhost:5000 -u ci --password-stdin < password.txt")]
pub struct LoginArgs {
    /// The registry (default: Docker Hub)
    pub server: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  wasmbuild logout ghcr.io
  wasmbuild logout    # Docker Hub")]
pub struct LogoutArgs {
    /// The registry (default: Docker Hub)
    pub server: Option<String>,
}

pub fn login(args: LoginArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let registry = server(args.server.as_deref())?;
    let Some(explicit) = args.connection.explicit()? else {
        return Err(super::hinted(
            "login needs a user name and a password",
            format!("echo \"$TOKEN\" | wasmbuild login {registry} -u USER --password-stdin"),
        ));
    };
    let options = args.connection.options()?;
    let credential = Credential::Basic {
        username: explicit.username.clone(),
        password: explicit.password.clone(),
    };
    registry::check_login(&registry, &credential, &options)
        .with_context(|| format!("cannot log in to {registry} as {}", explicit.username))?;
    let stored = credentials::store_login(&registry, &explicit, &Env::process())
        .with_context(|| format!("logged in to {registry}, but cannot store the credentials"))?;
    if !global.quiet {
        eprintln!("Login Succeeded (stored in {})", describe(&stored));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn logout(args: LogoutArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let registry = server(args.server.as_deref())?;
    let removed = credentials::erase_login(&registry, &Env::process())
        .with_context(|| format!("cannot remove the credentials for {registry}"))?;
    if !global.quiet {
        if removed {
            eprintln!("Removed login credentials for {registry}");
        } else {
            eprintln!("Not logged in to {registry}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry host a `login`/`logout` argument names, normalized as references are
/// (`index.docker.io` and `https://registry-1.docker.io/v1/` are Docker Hub).
fn server(given: Option<&str>) -> Result<String> {
    let Some(given) = given.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(DOCKER_HUB.to_owned());
    };
    let host = given
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_owned(),
        _ => host,
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return Err(super::hinted(
            format!("`{given}` is not a registry host"),
            "give a host such as ghcr.io or localhost:5000",
        ));
    }
    Ok(host)
}

fn describe(stored: &Stored) -> String {
    stored.to_string()
}
