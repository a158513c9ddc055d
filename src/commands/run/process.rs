//! What the guest starts with, by Docker's rules: its argv from the image's Entrypoint and
//! Cmd, `--entrypoint` and the arguments after the image; its environment from the image's
//! Env and WorkingDir, `-w`, `--env-file` and `-e`.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The guest's argv: Entrypoint then Cmd. Arguments after the image replace Cmd;
/// `--entrypoint` replaces Entrypoint and drops the image's Cmd, and an empty one leaves
/// no Entrypoint at all (the arguments are then the whole command).
pub(super) fn argv(
    entrypoint: &[String],
    cmd: &[String],
    entrypoint_flag: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let (entrypoint, cmd) = match entrypoint_flag {
        Some("") => (Vec::new(), &[][..]),
        Some(flag) => (vec![flag.to_owned()], &[][..]),
        None => (entrypoint.to_vec(), cmd),
    };
    let cmd = if args.is_empty() { cmd } else { args };
    entrypoint.into_iter().chain(cmd.iter().cloned()).collect()
}

/// Where the environment comes from, lowest precedence first.
pub(super) struct EnvSources<'a> {
    /// The image's `Env` (`NAME=VALUE` entries).
    pub image: &'a [String],
    /// The image's `WorkingDir`.
    pub image_workdir: Option<&'a str>,
    /// `-w`.
    pub workdir: Option<&'a str>,
    /// `--env-file`s, in order, each already read (see [`env_file`]).
    pub files: &'a [Vec<(String, String)>],
    /// `-e`, in order.
    pub flags: &'a [String],
}

/// The guest's environment, merged the way Docker merges it: the image's `Env`, then each
/// `--env-file`, then each `-e`; a later value for a name replaces an earlier one, and
/// `-e NAME` without a value takes the host's (or removes NAME when the host has none).
///
/// WASI preview 1 has no working directory: WorkingDir (or `-w`) reaches the guest as PWD,
/// which Go's runtime and programs that honour PWD start in. An image's own PWD beats its
/// WorkingDir; `-w` beats both, and `-e PWD=…` beats `-w`.
pub(super) fn environment(
    sources: &EnvSources<'_>,
    host: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>> {
    let mut env = Environment::default();
    for entry in sources.image {
        // Docker keeps an image entry without `=` out of the container too.
        if let Some((name, value)) = entry.split_once('=') {
            env.set(name, value);
        }
    }
    if let Some(workdir) = sources.image_workdir.filter(|w| *w != "/" && !w.is_empty())
        && env.get("PWD").is_none()
    {
        env.set("PWD", workdir);
    }
    if let Some(workdir) = sources.workdir {
        env.set("PWD", workdir);
    }
    for file in sources.files {
        for (name, value) in file {
            env.set(name, value);
        }
    }
    for flag in sources.flags {
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag.as_str(), None),
        };
        if name.is_empty() {
            bail!(
                "-e {flag:?}: a variable needs a name (NAME=VALUE, or NAME for the host's value)"
            );
        }
        match value.map(str::to_owned).or_else(|| host(name)) {
            Some(value) => env.set(name, &value),
            None => env.remove(name),
        }
    }
    Ok(env.0)
}

/// Names and values in the order first set.
#[derive(Default)]
struct Environment(Vec<(String, String)>);

impl Environment {
    fn set(&mut self, name: &str, value: &str) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, old)) => *old = value.to_owned(),
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }
}

/// Reads an `--env-file` (see [`parse_env_file`]).
pub(super) fn env_file(
    path: &Path,
    host: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read env file {}", path.display()))?;
    parse_env_file(path, &bytes, host)
}

/// An env file as Docker reads one: a `NAME=VALUE` per line, the value taken as it is (no
/// quotes, no trimming); a line that is blank or starts with `#` (after leading
/// whitespace) is skipped; `NAME` alone takes the host's value, and is skipped when the
/// host has none. A name with whitespace in it, or none before the `=`, is an error at
/// `FILE:LINE`.
pub(super) fn parse_env_file(
    path: &Path,
    bytes: &[u8],
    host: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut vars = Vec::new();
    for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let at = || format!("{}:{}", path.display(), index + 1);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            bail!("{}: the line is not UTF-8", at());
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (line, None),
        };
        if name.is_empty() {
            bail!("{}: no variable name before `=` in `{line}`", at());
        }
        if name.contains(char::is_whitespace) {
            bail!("{}: the variable name `{name}` contains whitespace", at());
        }
        match value {
            Some(value) => vars.push((name.to_owned(), value.to_owned())),
            None => {
                if let Some(value) = host(name) {
                    vars.push((name.to_owned(), value));
                }
            }
        }
    }
    Ok(vars)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn arguments_replace_cmd_and_entrypoint_drops_it() {
        let entrypoint = strings(&["/app.wasm", "--serve"]);
        let cmd = strings(&["--port", "80"]);
        let argv =
            |flag: Option<&str>, args: &[&str]| argv(&entrypoint, &cmd, flag, &strings(args));
        assert_eq!(argv(None, &[]), ["/app.wasm", "--serve", "--port", "80"]);
        assert_eq!(argv(None, &["x"]), ["/app.wasm", "--serve", "x"]);
        assert_eq!(argv(Some("/other.wasm"), &[]), ["/other.wasm"]);
        assert_eq!(argv(Some("/other.wasm"), &["x"]), ["/other.wasm", "x"]);
        assert_eq!(argv(Some(""), &["/third.wasm", "y"]), ["/third.wasm", "y"]);
        assert!(argv(Some(""), &[]).is_empty());
        // No Entrypoint: Cmd's first word is the program.
        assert_eq!(
            super::argv(&[], &cmd, None, &[]),
            ["--port", "80"],
            "Docker runs Cmd as it is"
        );
    }

    fn host(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/me".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn merged(sources: &EnvSources<'_>) -> Vec<(String, String)> {
        environment(sources, host).unwrap()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn image_then_files_then_flags_later_wins() {
        let image = strings(&["A=image", "B=image", "C=image", "NOVALUE"]);
        let files = [
            pairs(&[("B", "file1"), ("D", "file1")]),
            pairs(&[("D", "file2")]),
        ];
        let flags = strings(&["C=flag", "D=flag", "HOME", "A", "E=a=b", "F="]);
        let env = merged(&EnvSources {
            image: &image,
            image_workdir: None,
            workdir: None,
            files: &files,
            flags: &flags,
        });
        // `-e A` with no A on the host removes the image's A, as Docker does.
        assert_eq!(
            env,
            pairs(&[
                ("B", "file1"),
                ("C", "flag"),
                ("D", "flag"),
                ("HOME", "/home/me"),
                ("E", "a=b"),
                ("F", ""),
            ])
        );
    }

    /// The PWD the guest gets from an image with WorkingDir `image_workdir`.
    fn pwd(
        image_workdir: &str,
        image: &[&str],
        workdir: Option<&str>,
        flags: &[&str],
    ) -> Option<String> {
        let (image, flags) = (strings(image), strings(flags));
        let env = merged(&EnvSources {
            image: &image,
            image_workdir: Some(image_workdir),
            workdir,
            files: &[],
            flags: &flags,
        });
        env.into_iter().find(|(n, _)| n == "PWD").map(|(_, v)| v)
    }

    #[test]
    fn workdir_becomes_pwd_unless_something_later_says_otherwise() {
        assert_eq!(pwd("/srv", &[], None, &[]).as_deref(), Some("/srv"));
        assert_eq!(
            pwd("/srv", &["PWD=/image"], None, &[]).as_deref(),
            Some("/image")
        );
        assert_eq!(
            pwd("/srv", &["PWD=/image"], Some("/w"), &[]).as_deref(),
            Some("/w")
        );
        assert_eq!(pwd("/srv", &[], Some("/"), &[]).as_deref(), Some("/"));
        assert_eq!(
            pwd("/srv", &[], Some("/w"), &["PWD=/flag"]).as_deref(),
            Some("/flag")
        );
        assert_eq!(
            pwd("/", &[], None, &[]),
            None,
            "`/` is where a guest starts anyway"
        );
    }

    #[test]
    fn a_flag_without_a_name_is_an_error() {
        for flag in ["=x", ""] {
            let flags = strings(&[flag]);
            let error = environment(
                &EnvSources {
                    image: &[],
                    image_workdir: None,
                    workdir: None,
                    files: &[],
                    flags: &flags,
                },
                host,
            )
            .unwrap_err();
            assert!(error.to_string().contains("needs a name"), "{error}");
        }
    }

    #[test]
    fn an_env_file_reads_as_docker_reads_it() {
        let text = "\u{feff}# a comment\n\
                    \n\
                    A=1\n   \
                    B = spaced \n\
                    \tC=\"quoted\"\r\n\
                    HOME\n\
                    MISSING\n\
                    EMPTY\n\
                    D==x\n\
                    E=";
        let vars = parse_env_file(Path::new("app.env"), text.as_bytes(), host);
        let error = vars.unwrap_err();
        assert_eq!(
            error.to_string(),
            "app.env:4: the variable name `B ` contains whitespace"
        );
        let text = text.replace("B = spaced ", "B= spaced ");
        let vars = parse_env_file(Path::new("app.env"), text.as_bytes(), host).unwrap();
        assert_eq!(
            vars,
            pairs(&[
                ("A", "1"),
                ("B", " spaced "),
                ("C", "\"quoted\""),
                ("HOME", "/home/me"),
                ("EMPTY", ""),
                ("D", "=x"),
                ("E", ""),
            ])
        );
    }

    #[test]
    fn env_file_errors_name_the_file_and_line() {
        let error = parse_env_file(Path::new("x.env"), b"A=1\n=2\n", host).unwrap_err();
        assert_eq!(
            error.to_string(),
            "x.env:2: no variable name before `=` in `=2`"
        );
        let error = parse_env_file(Path::new("x.env"), b"A=1\nB=\xff\n", host).unwrap_err();
        assert_eq!(error.to_string(), "x.env:2: the line is not UTF-8");
    }
}
