//! Where wasmbuild keeps its state: `$WASMBUILD_HOME`, else `$XDG_DATA_HOME/wasmbuild`,
//! else `~/.local/share/wasmbuild`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use wasmbuild_packer::Store;

pub fn home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("WASMBUILD_HOME").filter(|v| !v.is_empty()) {
        return std::path::absolute(PathBuf::from(home)).context("cannot resolve WASMBUILD_HOME");
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("wasmbuild"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/wasmbuild")),
        None => bail!("cannot tell where to keep images: set WASMBUILD_HOME"),
    }
}

pub fn store() -> Result<Store> {
    let root = home()?.join("store");
    Ok(Store::open(&root)?)
}
