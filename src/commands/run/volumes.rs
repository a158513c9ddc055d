//! `-v HOST:GUEST[:ro]`: host folders the guest sees beside the image's files, as WASI
//! preopens. Nothing else of the host is visible to it.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, bail};

/// One `-v`, as written; [`Volume::host_dir`] checks the host side when the run starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    /// Absolute, without a trailing `/`, `.` or `..`.
    pub guest: String,
    pub read_only: bool,
}

impl FromStr for Volume {
    type Err = String;

    /// `HOST:GUEST`, `HOST:GUEST:ro` or `HOST:GUEST:rw`. The host side may hold colons (a
    /// Windows drive); the guest side may not.
    fn from_str(spec: &str) -> Result<Volume, String> {
        let (rest, option) = match spec.rsplit_once(':') {
            Some((rest, option)) if rest.contains(':') && !option.contains('/') => {
                (rest, Some(option))
            }
            _ => (spec, None),
        };
        let read_only = match option {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => {
                return Err(format!(
                    "unknown option `{other}`: expected `ro` (read-only) or `rw` (the default)"
                ));
            }
        };
        let Some((host, guest)) = rest.rsplit_once(':') else {
            return Err("expected HOST:GUEST or HOST:GUEST:ro".to_owned());
        };
        if host.is_empty() {
            return Err("the host folder is missing (HOST:GUEST)".to_owned());
        }
        Ok(Volume {
            host: PathBuf::from(host),
            guest: guest_path(guest)?,
            read_only,
        })
    }
}

/// `guest` as the guest sees it: absolute, normalized, not the root (the image's files
/// are there).
fn guest_path(guest: &str) -> Result<String, String> {
    if !guest.starts_with('/') {
        return Err(format!("the guest path `{guest}` must be absolute"));
    }
    let mut parts = Vec::new();
    for part in guest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("the guest path `{guest}` must not contain `..`")),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("the guest path cannot be `/`: the image's files are there".to_owned());
    }
    Ok(format!("/{}", parts.join("/")))
}

impl Volume {
    /// The host folder, absolute; an error naming it when it is missing or not a folder.
    pub fn host_dir(&self) -> Result<PathBuf> {
        let shown = self.host.display();
        let host = match std::fs::metadata(&self.host) {
            Ok(meta) if meta.is_dir() => std::path::absolute(&self.host)?,
            Ok(_) => bail!(
                "-v {shown}:{}: {shown} is not a folder (WASI preview 1 shares folders only)",
                self.guest
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                bail!("-v {shown}:{}: {shown} does not exist", self.guest)
            }
            Err(error) => bail!("-v {shown}:{}: cannot use {shown}: {error}", self.guest),
        };
        Ok(host)
    }
}

/// Two volumes at the same guest path are an error (Docker's "Duplicate mount point").
pub fn check_distinct(volumes: &[Volume]) -> Result<()> {
    for (i, volume) in volumes.iter().enumerate() {
        if volumes[..i].iter().any(|v| v.guest == volume.guest) {
            bail!(
                "two volumes at {}: each guest path takes one -v",
                volume.guest
            );
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(spec: &str) -> Result<Volume, String> {
        spec.parse()
    }

    fn volume(host: &str, guest: &str, read_only: bool) -> Volume {
        Volume {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            read_only,
        }
    }

    #[test]
    fn host_guest_and_mode() {
        assert_eq!(
            parse("/srv/data:/data"),
            Ok(volume("/srv/data", "/data", false))
        );
        assert_eq!(
            parse("./data:/data/:ro"),
            Ok(volume("./data", "/data", true))
        );
        assert_eq!(parse("data:/a/./b//:rw"), Ok(volume("data", "/a/b", false)));
        assert_eq!(
            parse(r"C:\data:/data"),
            Ok(volume(r"C:\data", "/data", false))
        );
        assert_eq!(
            parse(r"C:\data:/data:ro"),
            Ok(volume(r"C:\data", "/data", true))
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let error = |spec: &str| parse(spec).unwrap_err();
        assert_eq!(error("/data"), "expected HOST:GUEST or HOST:GUEST:ro");
        assert_eq!(error("/srv:data"), "the guest path `data` must be absolute");
        assert_eq!(
            error("/srv:/a/../b"),
            "the guest path `/a/../b` must not contain `..`"
        );
        assert_eq!(
            error("/srv:/"),
            "the guest path cannot be `/`: the image's files are there"
        );
        assert_eq!(error(":/data"), "the host folder is missing (HOST:GUEST)");
        assert!(error("/srv:/data:z").starts_with("unknown option `z`"));
    }

    #[test]
    fn the_host_side_must_be_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let missing = dir.path().join("missing");
        let at = |host: &Path| Volume {
            host: host.to_path_buf(),
            guest: "/data".to_owned(),
            read_only: false,
        };
        assert_eq!(at(dir.path()).host_dir().ok().as_deref(), Some(dir.path()));
        let error = at(&missing).host_dir().unwrap_err().to_string();
        assert_eq!(
            error,
            format!("-v {0}:/data: {0} does not exist", missing.display())
        );
        let error = at(&file).host_dir().unwrap_err().to_string();
        assert!(
            error.ends_with("is not a folder (WASI preview 1 shares folders only)"),
            "{error}"
        );
    }

    #[test]
    fn one_volume_per_guest_path() {
        let volumes = [volume("/a", "/data", false), volume("/b", "/data", true)];
        assert!(check_distinct(&volumes[..1]).is_ok());
        let error = check_distinct(&volumes).unwrap_err().to_string();
        assert_eq!(error, "two volumes at /data: each guest path takes one -v");
    }
}
