//! What `push`, `pull`, `build --push`, `run` and `login` share: the registry flags,
//! credential lookup, connection settings, progress lines and the `--json` /
//! `--metadata-file` documents.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;
use wasmbuild_packer::credentials::{self, Credential, Env, Explicit, Secret};
use wasmbuild_packer::registry::{Event, RegistryOptions};
use wasmbuild_packer::{Digest, Reference};

use crate::progress::Terminal;

/// How to reach and log in to registries.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Connection {
    /// User name for the registry (with --password-stdin)
    #[arg(short = 'u', long, value_name = "USER", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password or token from stdin (with --username)
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Allow plain HTTP to this registry host (loopback hosts always may; repeatable)
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "WASMBUILD_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
}

/// Where a document describing the result goes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Output {
    /// Print the result as one JSON document on stdout (instead of REF@DIGEST lines)
    #[arg(long)]
    pub json: bool,
    /// Write the result as JSON to FILE, with the keys `docker buildx --metadata-file` writes
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
}

impl Connection {
    /// `--username` with the password from stdin, read once.
    pub fn explicit(&self) -> Result<Option<Explicit>> {
        let Some(username) = &self.username else {
            return Ok(None);
        };
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .context("cannot read the password from stdin")?;
        let password = password.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            bail!("--password-stdin read an empty password");
        }
        Ok(Some(Explicit {
            username: username.clone(),
            password: Secret::new(password),
        }))
    }

    pub fn options(&self) -> Result<RegistryOptions> {
        let mut options = RegistryOptions {
            insecure: self
                .insecure
                .iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect(),
            ..RegistryOptions::default()
        };
        if let Some(secs) = env_number("WASMBUILD_REGISTRY_TIMEOUT")? {
            options.timeout = Duration::from_secs_f64(secs);
        }
        if let Some(attempts) = env_number("WASMBUILD_REGISTRY_ATTEMPTS")? {
            options.retry.attempts = (attempts as u32).max(1);
        }
        Ok(options)
    }
}

fn env_number(name: &str) -> Result<Option<f64>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(Some(n)),
            _ => Err(super::hinted(
                format!("{name} is `{v}`, not a positive number"),
                format!("unset {name}, or set it to e.g. 30"),
            )),
        },
        _ => Ok(None),
    }
}

/// The credential for `registry`, from `explicit`, the environment or Docker's config.
pub fn credential(registry: &str, explicit: Option<&Explicit>) -> Result<Credential> {
    let resolved = credentials::resolve(registry, explicit, &Env::process())
        .with_context(|| format!("cannot find credentials for {registry}"))?;
    debug(&format!("credentials for {registry}: {}", resolved.source));
    Ok(resolved.credential)
}

/// Progress of a transfer as lines (or the spinner) on stderr.
pub fn reporter<'a>(terminal: &'a Terminal, verb: &'a str) -> impl FnMut(&Event) + 'a {
    use wasmbuild_builder::Reporter as _;
    move |event| match event {
        Event::Transfer { digest, done, size } => {
            if let Terminal::Live(bar) = terminal {
                bar.set_prefix(verb.to_owned());
                bar.set_message(format!(
                    "{} {} / {}",
                    short(digest),
                    super::build::human_size(*done),
                    super::build::human_size(*size)
                ));
            }
        }
        Event::BlobDone { digest, size, note } => terminal.step(
            verb,
            &format!(
                "{} {} {note}",
                short(digest),
                super::build::human_size(*size)
            ),
        ),
        Event::Retry {
            what,
            attempt,
            delay,
        } => terminal.warn(&format!(
            "{what}; retrying in {:.1}s (attempt {})",
            delay.as_secs_f64(),
            attempt + 1
        )),
    }
}

fn short(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{}:{}", digest.algorithm(), &hex[..12.min(hex.len())])
}

/// The platform every image wasmbuild makes or runs has.
pub fn platform() -> serde_json::Value {
    json!({ "os": "wasi", "architecture": "wasm" })
}

/// Writes the result document `doc` (our own keys) to stdout when `--json`, and the
/// buildx-compatible metadata to `--metadata-file`.
pub fn write_output(
    output: &Output,
    doc: &impl Serialize,
    references: &[Reference],
    digest: &Digest,
    media_type: &str,
    size: u64,
    config_digest: Option<&Digest>,
) -> Result<()> {
    if output.json {
        let text = serde_json::to_string_pretty(doc).context("cannot format the result")?;
        outln!("{text}");
    } else {
        for reference in references {
            outln!("{}", pinned(reference, digest));
        }
    }
    if let Some(path) = &output.metadata_file {
        let names: Vec<String> = references
            .iter()
            .map(|r| match r.tag {
                Some(_) => r.without_digest().to_string(),
                None => pinned(r, digest).to_string(),
            })
            .collect();
        let mut metadata = json!({
            "containerimage.digest": digest.to_string(),
            "containerimage.descriptor": {
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": size,
                "platform": platform(),
            },
            "image.name": names.join(","),
            "wasmbuild": doc,
        });
        if let Some(config) = config_digest {
            metadata["containerimage.config.digest"] = json!(config.to_string());
        }
        write_file(path, &serde_json::to_vec_pretty(&metadata)?)?;
    }
    Ok(())
}

/// `REPO:TAG@DIGEST`, or `REPO@DIGEST` for a reference without a tag.
fn pinned(reference: &Reference, digest: &Digest) -> Reference {
    reference.with_digest(*digest)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut temp, bytes)
        .and_then(|()| std::io::Write::write_all(&mut temp, b"\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A line for someone finding out what happens (`WASMBUILD_LOG=debug`).
pub fn debug(line: &str) {
    if std::env::var_os("WASMBUILD_LOG").is_some_and(|v| v == "debug") {
        eprintln!("debug: {line}");
    }
}
