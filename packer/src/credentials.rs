//! Registry credentials, found the way Docker finds them, and never shown.
//!
//! Order for a registry host: explicit (`--username` + `--password-stdin`), then
//! `WASMBUILD_USERNAME` / `WASMBUILD_PASSWORD`, then `GITHUB_TOKEN` for `ghcr.io` when
//! `GITHUB_ACTIONS=true`, then Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `credHelpers[host]`, else `credsStore`, else `auths[host]`
//! (`auth` = base64 `user:password`, or `identitytoken`), run as
//! `docker-credential-<name> get`; else anonymous.
//!
//! Keys name a registry host as references do (`docker.io`, `ghcr.io`, `127.0.0.1:5000`)
//! and match Docker's keys without regard to case, scheme or path; Docker Hub is
//! `https://index.docker.io/v1/`, `index.docker.io`, `registry-1.docker.io` or `docker.io`.
//! [`store_login`] and [`erase_login`] change them the way `docker login` / `docker logout`
//! do, keeping every other field of config.json.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde::Serialize as _;
use serde_json::{Map, Value};

/// A secret (password, token). Its `Debug` never shows it, it has no `Display`, and the
/// only way to read it is [`Secret::expose`], at the point it goes on the wire or to a
/// credential helper.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How to authenticate to one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Anonymous,
    /// A user name and password (or a personal access token used as one).
    Basic {
        username: String,
        password: Secret,
    },
    /// Docker's `identitytoken`: an OAuth2 refresh token for the registry's token service
    /// (`grant_type=refresh_token`).
    IdentityToken {
        username: String,
        token: Secret,
    },
}

/// Where a credential came from, for messages ("from credHelpers (docker-credential-x)").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Flags,
    Environment,
    /// `GITHUB_TOKEN` in GitHub Actions, for ghcr.io.
    GithubToken,
    /// `auths` of this config.json.
    DockerConfig(PathBuf),
    /// `credsStore`: `docker-credential-<name>`.
    CredsStore(String),
    /// `credHelpers[host]`: `docker-credential-<name>`.
    CredHelper(String),
    Anonymous,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Flags => f.write_str("--username/--password-stdin"),
            CredentialSource::Environment => f.write_str("WASMBUILD_USERNAME/WASMBUILD_PASSWORD"),
            CredentialSource::GithubToken => f.write_str("GITHUB_TOKEN"),
            CredentialSource::DockerConfig(path) => write!(f, "{}", path.display()),
            CredentialSource::CredsStore(name) => write!(f, "credsStore docker-credential-{name}"),
            CredentialSource::CredHelper(name) => write!(f, "credHelpers docker-credential-{name}"),
            CredentialSource::Anonymous => f.write_str("no credentials (anonymous)"),
        }
    }
}

/// A credential and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub credential: Credential,
    pub source: CredentialSource,
}

/// A user name and password given on the command line (`--username` +
/// `--password-stdin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explicit {
    pub username: String,
    pub password: Secret,
}

/// The environment credentials are looked up in: variables, the home directory, and the
/// `PATH` that credential helpers are found on. [`Env::process`] is the real one; tests
/// build one with [`Env::from_map`] so they never touch the process environment.
pub struct Env {
    vars: Box<VarLookup>,
    home: Option<PathBuf>,
}

type VarLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Env {
    /// This process's environment and home directory.
    pub fn process() -> Env {
        Env {
            vars: Box::new(|name| std::env::var(name).ok()),
            home: std::env::home_dir(),
        }
    }

    /// Exactly these variables; the home directory is their `HOME`.
    pub fn from_map<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Env
    where
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let home = vars.get("HOME").map(PathBuf::from);
        Env {
            vars: Box::new(move |name| vars.get(name).cloned()),
            home,
        }
    }

    /// A variable's value; an empty one counts as unset (an Actions secret that is not
    /// available expands to the empty string).
    pub fn var(&self, name: &str) -> Option<String> {
        (self.vars)(name).filter(|value| !value.is_empty())
    }

    /// Docker's `config.json`: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`; `None` without either.
    pub fn docker_config_path(&self) -> Option<PathBuf> {
        match self.var("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir).join(CONFIG_FILE)),
            None => self
                .home
                .as_ref()
                .map(|home| home.join(".docker").join(CONFIG_FILE)),
        }
    }
}

impl fmt::Debug for Env {
    // Variables may hold secrets (`WASMBUILD_PASSWORD`, `GITHUB_TOKEN`): never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

const CONFIG_FILE: &str = "config.json";
const ENV_USERNAME: &str = "WASMBUILD_USERNAME";
const ENV_PASSWORD: &str = "WASMBUILD_PASSWORD";
/// What the `docker-credential-helpers` helpers say (on stdout, exiting 1) when they have
/// nothing for a server.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";
/// The `Username` a helper returns when `Secret` is an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// Where Docker keeps Docker Hub's credentials, and the server URL it gives helpers.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";
/// The most of a helper's output an error quotes.
const MAX_HELPER_MESSAGE: usize = 1000;

/// Docker's `auth` is standard base64; some tools write it without padding.
const AUTH_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Where [`store_login`] put a credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// `auths` of this config.json.
    ConfigFile(PathBuf),
    /// `credsStore`: `docker-credential-<name>`.
    CredsStore(String),
    /// `credHelpers[host]`: `docker-credential-<name>`.
    CredHelper(String),
}

impl fmt::Display for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stored::ConfigFile(path) => write!(f, "{}", path.display()),
            Stored::CredsStore(name) | Stored::CredHelper(name) => {
                write!(f, "docker-credential-{name}")
            }
        }
    }
}

/// Which part of config.json named a credential helper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelperSetting {
    CredHelpers,
    CredsStore,
}

impl fmt::Display for HelperSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HelperSetting::CredHelpers => "credHelpers",
            HelperSetting::CredsStore => "credsStore",
        })
    }
}

/// Finding, storing or erasing a credential failed. No message or `Debug` holds a
/// password, token or `auth` string.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// One of `WASMBUILD_USERNAME` / `WASMBUILD_PASSWORD` without the other.
    #[error("{set} is set but {missing} is not")]
    EnvIncomplete {
        set: &'static str,
        missing: &'static str,
    },
    /// Neither `DOCKER_CONFIG` nor a home directory: nowhere to store a login.
    #[error("cannot find Docker's config.json: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigDir,
    #[error("cannot read {}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    WriteConfig {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// config.json is not JSON.
    #[error("invalid JSON in {}:{line}:{column}: {reason}", path.display())]
    ConfigJson {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    /// config.json is JSON, but a field has the wrong type.
    #[error("{}: {field} {problem}", path.display())]
    ConfigField {
        path: PathBuf,
        /// Where, e.g. `auths["ghcr.io"].auth`.
        field: String,
        problem: &'static str,
    },
    /// An `auths` entry's `auth` is not base64 of `user:password`.
    #[error("invalid credentials in {}: auths[{key:?}].auth {problem}", path.display())]
    AuthDecode {
        path: PathBuf,
        key: String,
        problem: &'static str,
    },
    /// A helper name that is not a plain name (`credsStore: "../x"`).
    #[error("invalid credential helper name {name:?} in {} ({setting})", path.display())]
    HelperName {
        name: String,
        setting: HelperSetting,
        path: PathBuf,
    },
    /// The helper config.json names is not on `PATH`.
    #[error("docker-credential-{name} ({setting} in {}) is not on PATH", path.display())]
    HelperMissing {
        name: String,
        setting: HelperSetting,
        path: PathBuf,
    },
    #[error("cannot run {}", program.display())]
    HelperSpawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The helper ran and failed. `message` is its stderr (or a non-JSON stdout), with
    /// anything we gave it redacted.
    #[error("`docker-credential-{name} {action}` failed ({status}): {message}")]
    HelperFailed {
        name: String,
        action: &'static str,
        /// The server URL it was asked about.
        server: String,
        status: String,
        message: String,
    },
    /// The helper succeeded but its answer is not `{"ServerURL","Username","Secret"}`.
    #[error("unexpected answer from `docker-credential-{name} get`")]
    HelperOutput {
        name: String,
        #[source]
        source: HelperOutputError,
    },
}

impl CredentialError {
    /// What to do about it, where something helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            CredentialError::EnvIncomplete { .. } => Some(format!(
                "set both {ENV_USERNAME} and {ENV_PASSWORD}, or neither to use Docker's credentials"
            )),
            CredentialError::NoConfigDir => {
                Some("set DOCKER_CONFIG to the directory for config.json".to_owned())
            }
            CredentialError::ConfigJson { path, .. }
            | CredentialError::ConfigField { path, .. } => Some(format!(
                "fix {}, or set DOCKER_CONFIG to another directory",
                path.display()
            )),
            CredentialError::AuthDecode { path, key, .. } => Some(format!(
                "log in again (`wasmbuild login {}`), or remove auths[{key:?}] from {}",
                host_of(key),
                path.display()
            )),
            CredentialError::HelperName { setting, path, .. } => {
                Some(format!("fix `{setting}` in {}", path.display()))
            }
            CredentialError::HelperMissing {
                name,
                setting,
                path,
            } => Some(format!(
                "install docker-credential-{name} on PATH, or remove `{setting}` from {}",
                path.display()
            )),
            CredentialError::HelperFailed {
                name,
                action: "get",
                server,
                ..
            } => Some(format!(
                "try the helper by hand: printf '%s' '{server}' | docker-credential-{name} get"
            )),
            _ => None,
        }
    }
}

/// A credential helper's `get` answer is not what the protocol says.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperOutputError {
    #[error("not JSON (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error("not a JSON object")]
    NotObject,
    #[error("`{field}` is not a string")]
    Field { field: &'static str },
}

/// Parses a credential helper's `get` answer, `{"ServerURL","Username","Secret"}`.
/// `Username` `<token>` makes `Secret` an identity token; no user name and no secret is
/// [`Credential::Anonymous`]. Never panics, whatever the bytes.
pub fn parse_helper_output(bytes: &[u8]) -> Result<Credential, HelperOutputError> {
    // Through `Value`, so that no error quotes the answer (it holds the secret).
    let value: Value = serde_json::from_slice(bytes).map_err(|e| HelperOutputError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(object) = value else {
        return Err(HelperOutputError::NotObject);
    };
    let field = |field: &'static str| match object.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(HelperOutputError::Field { field }),
    };
    let username = field("Username")?;
    let secret = field("Secret")?;
    Ok(if username == TOKEN_USERNAME {
        if secret.is_empty() {
            Credential::Anonymous
        } else {
            Credential::IdentityToken {
                username: String::new(),
                token: Secret::new(secret),
            }
        }
    } else if username.is_empty() && secret.is_empty() {
        Credential::Anonymous
    } else {
        Credential::Basic {
            username,
            password: Secret::new(secret),
        }
    })
}

/// Docker's `config.json`, as far as credentials go. Every other field is kept as it is,
/// so writing it back loses nothing. Its `Debug` shows no entries.
pub struct DockerConfig {
    path: PathBuf,
    root: Map<String, Value>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where a registry's credentials live, per config.json.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keeper {
    File,
    Helper {
        name: String,
        setting: HelperSetting,
    },
}

impl DockerConfig {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<DockerConfig, CredentialError> {
        match std::fs::read(path) {
            Ok(bytes) => DockerConfig::parse(path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DockerConfig {
                path: path.to_owned(),
                root: Map::new(),
            }),
            Err(source) => Err(CredentialError::ReadConfig {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses config.json's bytes (`path` is for messages). An empty file is an empty
    /// config, as for Docker. Never panics, whatever the bytes.
    pub fn parse(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<DockerConfig, CredentialError> {
        let path = path.into();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(DockerConfig {
                path,
                root: Map::new(),
            });
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| CredentialError::ConfigJson {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
                reason: json_reason(&e),
            })?;
        let root = match value {
            Value::Object(root) => root,
            Value::Null => Map::new(),
            _ => {
                return Err(CredentialError::ConfigField {
                    path,
                    field: "the top level".to_owned(),
                    problem: "is not a JSON object",
                });
            }
        };
        Ok(DockerConfig { path, root })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential `auths` holds for `registry`, if any.
    pub fn auth_for(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let Some(auths) = self.object("auths")? else {
            return Ok(None);
        };
        for (key, entry) in matching(auths, registry) {
            if let Some(credential) = self.entry_credential(key, entry)? {
                return Ok(Some(credential));
            }
        }
        Ok(None)
    }

    /// Which keeps `registry`'s credentials: `credHelpers[host]`, else `credsStore`, else
    /// `auths`. As in Docker, an empty `credHelpers[host]` means `auths` even when
    /// `credsStore` is set.
    fn keeper(&self, registry: &str) -> Result<Keeper, CredentialError> {
        if let Some(helpers) = self.object("credHelpers")?
            && let Some((key, value)) = matching(helpers, registry).into_iter().next()
        {
            let Value::String(name) = value else {
                return Err(self.field_error(format!("credHelpers[{key:?}]"), "is not a string"));
            };
            return self.helper(name, HelperSetting::CredHelpers);
        }
        match self.root.get("credsStore") {
            None | Some(Value::Null) => Ok(Keeper::File),
            Some(Value::String(name)) => self.helper(name, HelperSetting::CredsStore),
            Some(_) => Err(self.field_error("credsStore".to_owned(), "is not a string")),
        }
    }

    fn helper(&self, name: &str, setting: HelperSetting) -> Result<Keeper, CredentialError> {
        if name.is_empty() {
            return Ok(Keeper::File);
        }
        // The name becomes part of a file name looked up on PATH; never a path.
        if name.contains(['/', '\\', '\0']) || name.starts_with('.') {
            return Err(CredentialError::HelperName {
                name: name.to_owned(),
                setting,
                path: self.path.clone(),
            });
        }
        Ok(Keeper::Helper {
            name: name.to_owned(),
            setting,
        })
    }

    /// A top-level object field; absent or `null` is `None`.
    fn object(&self, field: &str) -> Result<Option<&Map<String, Value>>, CredentialError> {
        match self.root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(self.field_error(field.to_owned(), "is not an object")),
        }
    }

    fn field_error(&self, field: String, problem: &'static str) -> CredentialError {
        CredentialError::ConfigField {
            path: self.path.clone(),
            field,
            problem,
        }
    }

    /// One `auths` entry: `auth` (base64 `user:password`) or `username` + `password`,
    /// with `identitytoken` taking the password's place.
    fn entry_credential(
        &self,
        key: &str,
        entry: &Value,
    ) -> Result<Option<Credential>, CredentialError> {
        let entry = match entry {
            Value::Object(entry) => entry,
            Value::Null => return Ok(None),
            _ => return Err(self.field_error(format!("auths[{key:?}]"), "is not an object")),
        };
        let text = |field: &str| match entry.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(self.field_error(format!("auths[{key:?}].{field}"), "is not a string")),
        };
        let mut username = text("username")?;
        let mut password = text("password")?;
        let auth = text("auth")?;
        if !auth.is_empty() {
            (username, password) =
                decode_auth(&auth).map_err(|problem| CredentialError::AuthDecode {
                    path: self.path.clone(),
                    key: key.to_owned(),
                    problem,
                })?;
        }
        let token = text("identitytoken")?;
        Ok(if !token.is_empty() {
            Some(Credential::IdentityToken {
                username,
                token: Secret::new(token),
            })
        } else if username.is_empty() && password.is_empty() {
            None
        } else {
            Some(Credential::Basic {
                username,
                password: Secret::new(password),
            })
        })
    }

    /// Sets `auths[key]` to `{"auth": base64(user:password)}`, replacing the whole entry
    /// (an old `identitytoken` would otherwise win over the new password).
    fn set_auth(&mut self, registry: &str, explicit: &Explicit) -> Result<(), CredentialError> {
        self.object("auths")?; // an `auths` that is not an object is an error, not replaced
        let auths = self.root.entry("auths").or_insert(Value::Null);
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(auths) = auths {
            let mut entry = Map::new();
            entry.insert(
                "auth".to_owned(),
                Value::String(encode_auth(&explicit.username, &explicit.password)),
            );
            auths.insert(server_url(registry), Value::Object(entry));
        }
        Ok(())
    }

    /// Removes every `auths` key naming `registry`'s host; whether there was one.
    fn remove_auths(&mut self, registry: &str) -> Result<bool, CredentialError> {
        let keys: Vec<String> = match self.object("auths")? {
            Some(auths) => matching(auths, registry)
                .into_iter()
                .map(|(key, _)| key.to_owned())
                .collect(),
            None => return Ok(false),
        };
        if let Some(Value::Object(auths)) = self.root.get_mut("auths") {
            for key in &keys {
                auths.remove(key);
            }
        }
        Ok(!keys.is_empty())
    }

    /// Writes the config back the way Docker does (tab-indented), atomically, readable by
    /// its owner only. A symlinked config.json is written through the link.
    fn save(&self) -> Result<(), CredentialError> {
        let target = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let write_error = |source| CredentialError::WriteConfig {
            path: target.clone(),
            source,
        };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir).map_err(write_error)?;
        let mut bytes = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(
            &mut bytes,
            serde_json::ser::PrettyFormatter::with_indent(b"\t"),
        );
        self.root
            .serialize(&mut serializer)
            .map_err(|e| write_error(io::Error::other(e)))?;
        bytes.push(b'\n');
        // Created 0600 by tempfile; set again so that a umask or platform never widens it.
        let mut temp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(&dir)
            .map_err(write_error)?;
        set_private(temp.as_file()).map_err(write_error)?;
        temp.write_all(&bytes).map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&target).map_err(|e| write_error(e.error))?;
        Ok(())
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn set_private(file: &std::fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &std::fs::File) -> io::Result<()> {
    Ok(())
}

/// serde_json's message without its " at line L column C" (given separately). Only syntax
/// errors can come from parsing into a `Value`, and they never quote the input.
fn json_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&suffix) {
        Some(reason) => reason.to_owned(),
        None => message,
    }
}

fn decode_auth(auth: &str) -> Result<(String, String), &'static str> {
    let bytes = AUTH_BASE64
        .decode(auth.trim())
        .map_err(|_| "is not valid base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "does not decode to UTF-8 text")?;
    match text.split_once(':') {
        Some((username, password)) => Ok((username.to_owned(), password.to_owned())),
        None => Err("does not decode to `user:password`"),
    }
}

fn encode_auth(username: &str, password: &Secret) -> String {
    AUTH_BASE64.encode(format!("{username}:{}", password.expose()))
}

/// A registry as config.json keys name it, compared the Docker way: no scheme, no path,
/// any case, and Docker Hub's names are one.
fn host_of(name: &str) -> String {
    let name = name.trim();
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            name.get(..scheme.len())
                .filter(|start| start.eq_ignore_ascii_case(scheme))
                .and_then(|_| name.get(scheme.len()..))
        })
        .unwrap_or(name);
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

/// The key `docker login` writes, and the server URL Docker gives credential helpers:
/// `https://index.docker.io/v1/` for Docker Hub, the bare host for others.
fn server_url(registry: &str) -> String {
    match host_of(registry) {
        host if host == "docker.io" => DOCKER_HUB_SERVER.to_owned(),
        host => host,
    }
}

/// The entries of `map` whose key names `registry`'s host; the key Docker itself writes
/// first, then the others in key order.
fn matching<'m>(map: &'m Map<String, Value>, registry: &str) -> Vec<(&'m str, &'m Value)> {
    let host = host_of(registry);
    if host.is_empty() {
        return Vec::new();
    }
    let canonical = server_url(registry);
    let mut found: Vec<(&str, &Value)> = map
        .iter()
        .filter(|(key, _)| host_of(key) == host)
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    found.sort_by_key(|(key, _)| *key != canonical);
    found
}

/// The credential for `registry` (a host as in references: `docker.io`, `ghcr.io`,
/// `127.0.0.1:5000`), in the order the module documents.
pub fn resolve(
    registry: &str,
    explicit: Option<&Explicit>,
    env: &Env,
) -> Result<Resolved, CredentialError> {
    if let Some(explicit) = explicit {
        return Ok(Resolved {
            credential: Credential::Basic {
                username: explicit.username.clone(),
                password: explicit.password.clone(),
            },
            source: CredentialSource::Flags,
        });
    }
    match (env.var(ENV_USERNAME), env.var(ENV_PASSWORD)) {
        (Some(username), Some(password)) => {
            return Ok(Resolved {
                credential: Credential::Basic {
                    username,
                    password: Secret::new(password),
                },
                source: CredentialSource::Environment,
            });
        }
        (Some(_), None) => {
            return Err(CredentialError::EnvIncomplete {
                set: ENV_USERNAME,
                missing: ENV_PASSWORD,
            });
        }
        (None, Some(_)) => {
            return Err(CredentialError::EnvIncomplete {
                set: ENV_PASSWORD,
                missing: ENV_USERNAME,
            });
        }
        (None, None) => {}
    }
    if env.var("GITHUB_ACTIONS").as_deref() == Some("true")
        && host_of(registry) == "ghcr.io"
        && let Some(token) = env.var("GITHUB_TOKEN")
    {
        return Ok(Resolved {
            credential: Credential::Basic {
                username: env
                    .var("GITHUB_ACTOR")
                    .unwrap_or_else(|| "x-access-token".to_owned()),
                password: Secret::new(token),
            },
            source: CredentialSource::GithubToken,
        });
    }
    let anonymous = Resolved {
        credential: Credential::Anonymous,
        source: CredentialSource::Anonymous,
    };
    let Some(path) = env.docker_config_path() else {
        return Ok(anonymous);
    };
    let config = DockerConfig::load(&path)?;
    let found = match config.keeper(registry)? {
        Keeper::Helper { name, setting } => {
            let helper = Helper::find(env, &config, name, setting)?;
            helper
                .get(registry)?
                .map(|credential| (credential, helper.source()))
        }
        Keeper::File => config
            .auth_for(registry)?
            .map(|credential| (credential, CredentialSource::DockerConfig(path))),
    };
    Ok(match found {
        Some((credential, source)) => Resolved { credential, source },
        None => anonymous,
    })
}

/// Stores a login the way `docker login` does: with `credHelpers[host]` or `credsStore`
/// when config.json names one, else as `auths[key].auth` in config.json.
pub fn store_login(
    registry: &str,
    explicit: &Explicit,
    env: &Env,
) -> Result<Stored, CredentialError> {
    let path = env
        .docker_config_path()
        .ok_or(CredentialError::NoConfigDir)?;
    let mut config = DockerConfig::load(&path)?;
    match config.keeper(registry)? {
        Keeper::Helper { name, setting } => {
            let helper = Helper::find(env, &config, name, setting)?;
            helper.store(registry, explicit)?;
            Ok(match setting {
                HelperSetting::CredHelpers => Stored::CredHelper(helper.name),
                HelperSetting::CredsStore => Stored::CredsStore(helper.name),
            })
        }
        Keeper::File => {
            config.set_auth(registry, explicit)?;
            config.save()?;
            Ok(Stored::ConfigFile(path))
        }
    }
}

/// Forgets a login the way `docker logout` does: the helper's `erase`, and every `auths`
/// key naming the host. `Ok(false)` when there was nothing to forget.
pub fn erase_login(registry: &str, env: &Env) -> Result<bool, CredentialError> {
    let Some(path) = env.docker_config_path() else {
        return Ok(false);
    };
    let mut config = DockerConfig::load(&path)?;
    let erased = match config.keeper(registry)? {
        Keeper::Helper { name, setting } => {
            Helper::find(env, &config, name, setting)?.erase(registry)?
        }
        Keeper::File => false,
    };
    // `docker login` with a helper also leaves an empty `auths` entry: remove it too.
    let removed = config.remove_auths(registry)?;
    if removed {
        config.save()?;
    }
    Ok(erased || removed)
}

/// A `docker-credential-<name>` found on the environment's `PATH`.
struct Helper {
    name: String,
    setting: HelperSetting,
    program: PathBuf,
    search_path: Option<String>,
}

impl Helper {
    fn find(
        env: &Env,
        config: &DockerConfig,
        name: String,
        setting: HelperSetting,
    ) -> Result<Helper, CredentialError> {
        let search_path = env.var("PATH");
        let file_name = format!("docker-credential-{name}{}", std::env::consts::EXE_SUFFIX);
        let program = search_path.as_deref().and_then(|search_path| {
            std::env::split_paths(search_path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(|dir| dir.join(&file_name))
                .find(|candidate| is_executable(candidate))
        });
        match program {
            Some(program) => Ok(Helper {
                name,
                setting,
                program,
                search_path,
            }),
            None => Err(CredentialError::HelperMissing {
                name,
                setting,
                path: config.path.clone(),
            }),
        }
    }

    fn source(&self) -> CredentialSource {
        match self.setting {
            HelperSetting::CredHelpers => CredentialSource::CredHelper(self.name.clone()),
            HelperSetting::CredsStore => CredentialSource::CredsStore(self.name.clone()),
        }
    }

    fn get(&self, registry: &str) -> Result<Option<Credential>, CredentialError> {
        let server = server_url(registry);
        let output = self.run("get", server.as_bytes())?;
        if !output.status.success() {
            return if says_not_found(&output) {
                Ok(None)
            } else {
                Err(self.failure("get", server, &output, &[]))
            };
        }
        match parse_helper_output(&output.stdout) {
            Ok(Credential::Anonymous) => Ok(None),
            Ok(credential) => Ok(Some(credential)),
            Err(_) if says_not_found(&output) => Ok(None),
            Err(source) => Err(CredentialError::HelperOutput {
                name: self.name.clone(),
                source,
            }),
        }
    }

    fn store(&self, registry: &str, explicit: &Explicit) -> Result<(), CredentialError> {
        let server = server_url(registry);
        let input = serde_json::json!({
            "ServerURL": server,
            "Username": explicit.username,
            "Secret": explicit.password.expose(),
        })
        .to_string();
        let output = self.run("store", input.as_bytes())?;
        if output.status.success() {
            return Ok(());
        }
        // A helper that echoes its input must not put the password in our error.
        let password = explicit.password.expose();
        let escaped = serde_json::Value::String(password.to_owned()).to_string();
        let escaped = escaped
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(password)
            .to_owned();
        let auth = encode_auth(&explicit.username, &explicit.password);
        Err(self.failure(
            "store",
            server,
            &output,
            &[password, &escaped, &auth, &input],
        ))
    }

    fn erase(&self, registry: &str) -> Result<bool, CredentialError> {
        let server = server_url(registry);
        let output = self.run("erase", server.as_bytes())?;
        if output.status.success() {
            Ok(true)
        } else if says_not_found(&output) {
            Ok(false)
        } else {
            Err(self.failure("erase", server, &output, &[]))
        }
    }

    /// Runs `docker-credential-<name> <action>` with `input` on stdin.
    fn run(&self, action: &str, input: &[u8]) -> Result<Output, CredentialError> {
        let mut command = Command::new(&self.program);
        command
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(search_path) = &self.search_path {
            command.env("PATH", search_path);
        }
        let spawn_error = |source| CredentialError::HelperSpawn {
            program: self.program.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let stdin = child.stdin.take();
        // Written from a thread so that a helper answering before it reads cannot block us.
        std::thread::scope(|scope| {
            if let Some(mut stdin) = stdin {
                // A helper may exit without reading its input; its exit status says how it went.
                scope.spawn(move || stdin.write_all(input));
            }
            child.wait_with_output()
        })
        .map_err(spawn_error)
    }

    fn failure(
        &self,
        action: &'static str,
        server: String,
        output: &Output,
        redact: &[&str],
    ) -> CredentialError {
        CredentialError::HelperFailed {
            name: self.name.clone(),
            action,
            server,
            status: output.status.to_string(),
            message: helper_message(output, redact),
        }
    }
}

fn says_not_found(output: &Output) -> bool {
    [&output.stdout, &output.stderr]
        .iter()
        .any(|bytes| String::from_utf8_lossy(bytes).contains(HELPER_NOT_FOUND))
}

/// What a failed helper said: its stderr, else its stdout unless that looks like a JSON
/// answer (it could hold a secret); with `redact` removed, and not too long.
fn helper_message(output: &Output, redact: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut message = match (stderr.trim(), stdout.trim()) {
        ("", "") => return "no output".to_owned(),
        ("", stdout) if stdout.starts_with('{') => {
            return "no message (its output is not shown: it may hold a secret)".to_owned();
        }
        ("", stdout) => stdout.to_owned(),
        (stderr, _) => stderr.to_owned(),
    };
    let mut redact: Vec<&str> = redact.iter().copied().filter(|s| !s.is_empty()).collect();
    // Longest first, so that a secret inside a longer one cannot leave the rest behind.
    redact.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in redact {
        message = message.replace(secret, "<redacted>");
    }
    match message.char_indices().nth(MAX_HELPER_MESSAGE) {
        Some((end, _)) => format!("{}…", message.get(..end).unwrap_or_default()),
        None => message,
    }
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

// The helpers in these tests are shell scripts.
#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    const USER: &str = "ci-bot";
    const PASSWORD: &str = "pa55:w0rd\"secret";

    /// Helper tests write executables and run them. Writing one while another thread forks
    /// can make its exec fail with ETXTBSY, so they take turns.
    fn helpers_lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn b64(text: &str) -> String {
        AUTH_BASE64.encode(text)
    }

    fn explicit() -> Explicit {
        Explicit {
            username: USER.to_owned(),
            password: Secret::new(PASSWORD),
        }
    }

    fn basic(username: &str, password: &str) -> Credential {
        Credential::Basic {
            username: username.to_owned(),
            password: Secret::new(password),
        }
    }

    /// A home directory, a `bin` for helper scripts, and the environment pointing at them.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("home")).unwrap();
            std::fs::create_dir_all(dir.path().join("bin")).unwrap();
            Fixture { dir }
        }

        fn home(&self) -> PathBuf {
            self.dir.path().join("home")
        }

        fn bin(&self) -> PathBuf {
            self.dir.path().join("bin")
        }

        fn config_path(&self) -> PathBuf {
            self.home().join(".docker").join("config.json")
        }

        fn write_config(&self, json: &str) {
            std::fs::create_dir_all(self.home().join(".docker")).unwrap();
            std::fs::write(self.config_path(), json).unwrap();
        }

        fn read_config(&self) -> Value {
            serde_json::from_slice(&std::fs::read(self.config_path()).unwrap()).unwrap()
        }

        /// `docker-credential-<name>`: a shell script; `$OUT` is a directory it may write
        /// what it received to.
        fn helper(&self, name: &str, body: &str) {
            use std::os::unix::fs::PermissionsExt;
            let path = self.bin().join(format!("docker-credential-{name}"));
            let script = format!("#!/bin/sh\nOUT='{}'\n{body}\n", self.dir.path().display());
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        /// What a helper saved with `cat > "$OUT/<file>"`.
        fn received(&self, file: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(file)).unwrap()
        }

        fn env(&self, extra: &[(&str, &str)]) -> Env {
            let mut vars = vec![
                ("HOME".to_owned(), self.home().display().to_string()),
                (
                    "PATH".to_owned(),
                    format!("{}:/usr/bin:/bin", self.bin().display()),
                ),
            ];
            vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Env::from_map(vars)
        }
    }

    /// A helper `get` answering with `username` / `secret`.
    fn answering(username: &str, secret: &str) -> String {
        format!(
            "cat > \"$OUT/get.stdin\"\nprintf '%s' '{{\"ServerURL\":\"x\",\"Username\":\"{username}\",\"Secret\":\"{secret}\"}}'"
        )
    }

    #[test]
    fn explicit_comes_first() {
        let fx = Fixture::new();
        fx.write_config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("a:b")
        ));
        let env = fx.env(&[
            ("WASMBUILD_USERNAME", "env"),
            ("WASMBUILD_PASSWORD", "envpw"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_TOKEN", "ghs_x"),
        ]);
        let resolved = resolve("ghcr.io", Some(&explicit()), &env).unwrap();
        assert_eq!(resolved.credential, basic(USER, PASSWORD));
        assert_eq!(resolved.source, CredentialSource::Flags);
    }

    #[test]
    fn environment_comes_before_github_token_and_config() {
        let fx = Fixture::new();
        fx.write_config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("a:b")
        ));
        let env = fx.env(&[
            ("WASMBUILD_USERNAME", "env"),
            ("WASMBUILD_PASSWORD", "envpw"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_TOKEN", "ghs_x"),
        ]);
        let resolved = resolve("ghcr.io", None, &env).unwrap();
        assert_eq!(resolved.credential, basic("env", "envpw"));
        assert_eq!(resolved.source, CredentialSource::Environment);
    }

    #[test]
    fn half_of_the_environment_pair_is_an_error_naming_the_other() {
        let fx = Fixture::new();
        let err = resolve("ghcr.io", None, &fx.env(&[("WASMBUILD_USERNAME", "u")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "WASMBUILD_USERNAME is set but WASMBUILD_PASSWORD is not"
        );
        assert!(err.hint().unwrap().contains("set both"));
        let err = resolve("ghcr.io", None, &fx.env(&[("WASMBUILD_PASSWORD", "p")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "WASMBUILD_PASSWORD is set but WASMBUILD_USERNAME is not"
        );
        // Empty counts as unset.
        let env = fx.env(&[("WASMBUILD_USERNAME", ""), ("WASMBUILD_PASSWORD", "")]);
        assert_eq!(
            resolve("ghcr.io", None, &env).unwrap().source,
            CredentialSource::Anonymous
        );
    }

    #[test]
    fn github_token_only_for_ghcr_in_actions() {
        let fx = Fixture::new();
        let actions = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_TOKEN", "ghs_token"),
            ("GITHUB_ACTOR", "octocat"),
        ];
        let resolved = resolve("ghcr.io", None, &fx.env(&actions)).unwrap();
        assert_eq!(resolved.credential, basic("octocat", "ghs_token"));
        assert_eq!(resolved.source, CredentialSource::GithubToken);
        // Any spelling of the host.
        let resolved = resolve("GHCR.io", None, &fx.env(&actions)).unwrap();
        assert_eq!(resolved.source, CredentialSource::GithubToken);

        let no_actor = fx.env(&[("GITHUB_ACTIONS", "true"), ("GITHUB_TOKEN", "ghs_token")]);
        let resolved = resolve("ghcr.io", None, &no_actor).unwrap();
        assert_eq!(resolved.credential, basic("x-access-token", "ghs_token"));

        let other_registry = resolve("docker.io", None, &fx.env(&actions)).unwrap();
        assert_eq!(other_registry.source, CredentialSource::Anonymous);
        let not_actions = fx.env(&[("GITHUB_TOKEN", "ghs_token")]);
        assert_eq!(
            resolve("ghcr.io", None, &not_actions).unwrap().source,
            CredentialSource::Anonymous
        );
    }

    #[test]
    fn github_token_comes_before_docker_config() {
        let fx = Fixture::new();
        fx.write_config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("a:b")
        ));
        let env = fx.env(&[("GITHUB_ACTIONS", "true"), ("GITHUB_TOKEN", "ghs_token")]);
        assert_eq!(
            resolve("ghcr.io", None, &env).unwrap().source,
            CredentialSource::GithubToken
        );
    }

    #[test]
    fn docker_config_dir_comes_before_home() {
        let fx = Fixture::new();
        fx.write_config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
            b64("home:h")
        ));
        let other = fx.dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(
            other.join("config.json"),
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#, b64("dc:d")),
        )
        .unwrap();
        let env = fx.env(&[("DOCKER_CONFIG", other.to_str().unwrap())]);
        let resolved = resolve("ghcr.io", None, &env).unwrap();
        assert_eq!(resolved.credential, basic("dc", "d"));
        assert_eq!(
            resolved.source,
            CredentialSource::DockerConfig(other.join("config.json"))
        );
        let resolved = resolve("ghcr.io", None, &fx.env(&[])).unwrap();
        assert_eq!(resolved.credential, basic("home", "h"));
        assert_eq!(
            resolved.source,
            CredentialSource::DockerConfig(fx.config_path())
        );
    }

    #[test]
    fn no_config_is_anonymous() {
        let fx = Fixture::new();
        let resolved = resolve("ghcr.io", None, &fx.env(&[])).unwrap();
        assert_eq!(resolved.credential, Credential::Anonymous);
        assert_eq!(resolved.source, CredentialSource::Anonymous);
        // No HOME, no DOCKER_CONFIG.
        let env = Env::from_map([("PATH", "/bin")]);
        assert_eq!(
            resolve("ghcr.io", None, &env).unwrap().credential,
            Credential::Anonymous
        );
        // An empty file, and a registry it has nothing for.
        fx.write_config("");
        assert_eq!(
            resolve("ghcr.io", None, &fx.env(&[])).unwrap().credential,
            Credential::Anonymous
        );
        fx.write_config(r#"{"auths":{"quay.io":{"auth":"YTpi"}}}"#);
        assert_eq!(
            resolve("ghcr.io", None, &fx.env(&[])).unwrap().credential,
            Credential::Anonymous
        );
    }

    #[test]
    fn invalid_json_names_file_line_and_column() {
        let fx = Fixture::new();
        fx.write_config("{\n  \"auths\": {,\n}\n");
        let err = resolve("ghcr.io", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid JSON in {}:2:13: key must be a string",
                fx.config_path().display()
            )
        );
        assert!(err.hint().unwrap().contains("DOCKER_CONFIG"));

        fx.write_config(r#"{"auths": []}"#);
        let err = resolve("ghcr.io", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: auths is not an object", fx.config_path().display())
        );
        fx.write_config(r#"{"auths": {"ghcr.io": {"auth": 42}}}"#);
        let err = resolve("ghcr.io", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: auths[\"ghcr.io\"].auth is not a string",
                fx.config_path().display()
            )
        );
    }

    #[test]
    fn auths_auth_identitytoken_and_fields() {
        let fx = Fixture::new();
        fx.write_config(&format!(
            r#"{{"auths":{{
                "ghcr.io":{{"auth":"{}"}},
                "quay.io":{{"auth":"{}","identitytoken":"refresh-tok"}},
                "token.example":{{"identitytoken":"t2"}},
                "fields.example":{{"username":"fu","password":"fp"}},
                "empty.example":{{}},
                "nopad.example":{{"auth":"YTpiYw"}}
            }}}}"#,
            b64("user:pa:ss"),
            b64("quser:unused")
        ));
        let env = fx.env(&[]);
        let cred = |r: &str| resolve(r, None, &env).unwrap().credential;
        // Only the first colon separates: passwords may hold colons.
        assert_eq!(cred("ghcr.io"), basic("user", "pa:ss"));
        assert_eq!(
            cred("quay.io"),
            Credential::IdentityToken {
                username: "quser".to_owned(),
                token: Secret::new("refresh-tok")
            }
        );
        assert_eq!(
            cred("token.example"),
            Credential::IdentityToken {
                username: String::new(),
                token: Secret::new("t2")
            }
        );
        assert_eq!(cred("fields.example"), basic("fu", "fp"));
        assert_eq!(cred("empty.example"), Credential::Anonymous);
        assert_eq!(cred("nopad.example"), basic("a", "bc"));
    }

    #[test]
    fn invalid_auth_names_file_and_key_but_not_the_value() {
        let fx = Fixture::new();
        let no_colon = b64("justapassword");
        fx.write_config(&format!(
            r#"{{"auths":{{"ghcr.io":{{"auth":"not*base64"}},"quay.io":{{"auth":"{no_colon}"}}}}}}"#
        ));
        let err = resolve("ghcr.io", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid credentials in {}: auths[\"ghcr.io\"].auth is not valid base64",
                fx.config_path().display()
            )
        );
        assert!(!format!("{err:?}").contains("not*base64"));
        assert!(err.hint().unwrap().contains("wasmbuild login ghcr.io"));
        let err = resolve("quay.io", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid credentials in {}: auths[\"quay.io\"].auth does not decode to `user:password`",
                fx.config_path().display()
            )
        );
        assert!(!format!("{err:?}").contains(&no_colon));
        assert!(!format!("{err:?}").contains("justapassword"));
    }

    #[test]
    fn docker_hub_and_other_keys_match_like_docker() {
        let fx = Fixture::new();
        let env = fx.env(&[]);
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "registry-1.docker.io",
            "docker.io",
            "HTTP://Docker.IO/v2/",
        ] {
            fx.write_config(&format!(
                r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
                b64("hub:pw")
            ));
            for registry in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
                assert_eq!(
                    resolve(registry, None, &env).unwrap().credential,
                    basic("hub", "pw"),
                    "key {key}, registry {registry}"
                );
            }
        }
        fx.write_config(&format!(
            r#"{{"auths":{{
                "https://GHCR.io/some/path":{{"auth":"{}"}},
                "127.0.0.1:5000":{{"auth":"{}"}},
                "docker.io.example.com":{{"auth":"{}"}}
            }}}}"#,
            b64("gh:1"),
            b64("local:2"),
            b64("evil:3")
        ));
        assert_eq!(
            resolve("ghcr.io", None, &env).unwrap().credential,
            basic("gh", "1")
        );
        assert_eq!(
            resolve("127.0.0.1:5000", None, &env).unwrap().credential,
            basic("local", "2")
        );
        assert_eq!(
            resolve("127.0.0.1", None, &env).unwrap().credential,
            Credential::Anonymous
        );
        assert_eq!(
            resolve("docker.io", None, &env).unwrap().credential,
            Credential::Anonymous
        );

        // The key `docker login` writes wins over other spellings.
        fx.write_config(&format!(
            r#"{{"auths":{{"docker.io":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("old:1"),
            b64("new:2")
        ));
        assert_eq!(
            resolve("docker.io", None, &env).unwrap().credential,
            basic("new", "2")
        );
    }

    #[test]
    fn cred_helpers_over_creds_store_over_auths() {
        let _lock = helpers_lock();
        let fx = Fixture::new();
        fx.helper("per-host", &answering("from-helper", "h-secret"));
        fx.helper("store", &answering("from-store", "s-secret"));
        fx.write_config(&format!(
            r#"{{
                "credHelpers": {{"ghcr.io": "per-host", "plain.example": ""}},
                "credsStore": "store",
                "auths": {{
                    "ghcr.io": {{"auth": "{a}"}},
                    "quay.io": {{"auth": "{a}"}},
                    "plain.example": {{"auth": "{a}"}}
                }}
            }}"#,
            a = b64("from-auths:a")
        ));
        let env = fx.env(&[]);
        let resolved = resolve("ghcr.io", None, &env).unwrap();
        assert_eq!(resolved.credential, basic("from-helper", "h-secret"));
        assert_eq!(
            resolved.source,
            CredentialSource::CredHelper("per-host".to_owned())
        );
        assert_eq!(fx.received("get.stdin"), "ghcr.io");

        let resolved = resolve("quay.io", None, &env).unwrap();
        assert_eq!(resolved.credential, basic("from-store", "s-secret"));
        assert_eq!(
            resolved.source,
            CredentialSource::CredsStore("store".to_owned())
        );
        assert_eq!(
            resolved.source.to_string(),
            "credsStore docker-credential-store"
        );
        assert_eq!(fx.received("get.stdin"), "quay.io");

        // An empty credHelpers entry means config.json, as in Docker.
        let resolved = resolve("plain.example", None, &env).unwrap();
        assert_eq!(resolved.credential, basic("from-auths", "a"));
        assert_eq!(
            resolved.source,
            CredentialSource::DockerConfig(fx.config_path())
        );

        // Docker Hub's server URL is the one Docker gives helpers.
        resolve("docker.io", None, &env).unwrap();
        assert_eq!(fx.received("get.stdin"), "https://index.docker.io/v1/");
        resolve("127.0.0.1:5000", None, &env).unwrap();
        assert_eq!(fx.received("get.stdin"), "127.0.0.1:5000");
    }

    #[test]
    fn helper_token_username_means_identity_token() {
        let _lock = helpers_lock();
        let fx = Fixture::new();
        fx.helper("tok", &answering("<token>", "refresh"));
        fx.write_config(r#"{"credsStore":"tok"}"#);
        let resolved = resolve("ghcr.io", None, &fx.env(&[])).unwrap();
        assert_eq!(
            resolved.credential,
            Credential::IdentityToken {
                username: String::new(),
                token: Secret::new("refresh")
            }
        );
    }

    #[test]
    fn helper_not_found_is_anonymous() {
        let _lock = helpers_lock();
        let fx = Fixture::new();
        fx.helper(
            "stdout",
            "cat >/dev/null\necho 'credentials not found in native keychain'\nexit 1",
        );
        fx.helper(
            "stderr",
            "cat >/dev/null\necho 'credentials not found in native keychain' >&2\nexit 1",
        );
        fx.helper("empty", &answering("", ""));
        fx.write_config(
            r#"{"credHelpers":{"a.example":"stdout","b.example":"stderr","c.example":"empty"},
                "auths":{"a.example":{"auth":"YTpi"}}}"#,
        );
        for registry in ["a.example", "b.example", "c.example"] {
            let resolved = resolve(registry, None, &fx.env(&[])).unwrap();
            assert_eq!(resolved.credential, Credential::Anonymous, "{registry}");
            assert_eq!(resolved.source, CredentialSource::Anonymous);
        }
    }

    #[test]
    fn helper_failure_names_helper_status_and_stderr_but_no_secret() {
        let _lock = helpers_lock();
        let fx = Fixture::new();
        fx.helper(
            "broken",
            &format!(
                "cat >/dev/null\nprintf '%s' '{{\"Username\":\"u\",\"Secret\":\"{}\"}}'\necho 'keychain locked' >&2\nexit 3",
                PASSWORD.replace('"', "\\\"")
            ),
        );
        fx.helper(
            "quiet",
            "cat >/dev/null\nprintf '%s' '{\"Username\":\"u\",\"Secret\":\"hidden-1\"}'\nexit 4",
        );
        fx.helper(
            "garbled",
            "cat >/dev/null\necho 'Secret: hidden-2, no json'",
        );
        fx.write_config(
            r#"{"credHelpers":{"a.example":"broken","b.example":"quiet","c.example":"garbled"}}"#,
        );
        let err = resolve("a.example", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`docker-credential-broken get` failed (exit status: 3): keychain locked"
        );
        assert_eq!(
            err.hint().unwrap(),
            "try the helper by hand: printf '%s' 'a.example' | docker-credential-broken get"
        );
        assert!(!format!("{err:?}").contains("pa55"));

        let err = resolve("b.example", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`docker-credential-quiet get` failed (exit status: 4): no message (its output is not shown: it may hold a secret)"
        );
        assert!(!format!("{err:?}").contains("hidden-1"));

        let err = resolve("c.example", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unexpected answer from `docker-credential-garbled get`"
        );
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(cause, "not JSON (line 1, column 1)");
        assert!(!format!("{err:?}").contains("hidden-2"));
    }

    #[test]
    fn helper_not_on_path_names_the_executable() {
        let fx = Fixture::new();
        fx.write_config(r#"{"credsStore":"desktop"}"#);
        let err = resolve("ghcr.io", None, &fx.env(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "docker-credential-desktop (credsStore in {}) is not on PATH",
                fx.config_path().display()
            )
        );
        assert!(
            err.hint()
                .unwrap()
                .starts_with("install docker-credential-desktop on PATH, or remove `credsStore`")
        );
        // Not a name: never run as a path.
        fx.write_config(r#"{"credHelpers":{"ghcr.io":"../../bin/sh"}}"#);
        let err = resolve("ghcr.io", None, &fx.env(&[])).unwrap_err();
        assert!(matches!(err, CredentialError::HelperName { .. }), "{err:?}");
    }

    #[test]
    fn store_login_keeps_other_fields_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let fx = Fixture::new();
        fx.write_config(
            r#"{
                "auths": {
                    "quay.io": {"auth": "cTp4"},
                    "ghcr.io": {"auth": "b2xkOm9sZA==", "identitytoken": "old-token"}
                },
                "psFormat": "table {{.ID}}",
                "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
                "plugins": {"x": {"y": [1, 2, null, true]}}
            }"#,
        );
        std::fs::set_permissions(fx.config_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let env = fx.env(&[]);
        let stored = store_login("ghcr.io", &explicit(), &env).unwrap();
        assert_eq!(stored, Stored::ConfigFile(fx.config_path()));
        assert_eq!(stored.to_string(), fx.config_path().display().to_string());

        let config = fx.read_config();
        assert_eq!(config["psFormat"], "table {{.ID}}");
        assert_eq!(
            config["proxies"]["default"]["httpProxy"],
            "http://proxy:3128"
        );
        assert_eq!(
            config["plugins"],
            serde_json::json!({"x": {"y": [1, 2, null, true]}})
        );
        assert_eq!(
            config["auths"]["quay.io"],
            serde_json::json!({"auth": "cTp4"})
        );
        // The whole entry is replaced: the old identity token would win over the password.
        assert_eq!(
            config["auths"]["ghcr.io"],
            serde_json::json!({"auth": b64(&format!("{USER}:{PASSWORD}"))})
        );
        let mode = std::fs::metadata(fx.config_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            resolve("ghcr.io", None, &env).unwrap().credential,
            basic(USER, PASSWORD)
        );
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(fx.home().join(".docker"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
    }

    #[test]
    fn store_login_creates_the_file_under_docker_hub_key() {
        use std::os::unix::fs::PermissionsExt;
        let fx = Fixture::new();
        let env = fx.env(&[]);
        store_login("docker.io", &explicit(), &env).unwrap();
        let config = fx.read_config();
        assert_eq!(
            config,
            serde_json::json!({"auths": {"https://index.docker.io/v1/": {"auth": b64(&format!("{USER}:{PASSWORD}"))}}})
        );
        let dir_mode = std::fs::metadata(fx.home().join(".docker"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(
            resolve("registry-1.docker.io", None, &env)
                .unwrap()
                .credential,
            basic(USER, PASSWORD)
        );
        // Docker's layout: tab-indented.
        let text = std::fs::read_to_string(fx.config_path()).unwrap();
        assert!(
            text.starts_with("{\n\t\"auths\": {\n\t\t\"https://index.docker.io/v1/\""),
            "{text}"
        );

        // A config that is not JSON is never overwritten.
        fx.write_config("{ broken");
        assert!(matches!(
            store_login("docker.io", &explicit(), &env),
            Err(CredentialError::ConfigJson { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(fx.config_path()).unwrap(),
            "{ broken"
        );

        // Nowhere to store.
        let err =
            store_login("docker.io", &explicit(), &Env::from_map([("PATH", "/bin")])).unwrap_err();
        assert!(matches!(err, CredentialError::NoConfigDir));
    }

    #[test]
    fn store_login_through_a_helper() {
        let _lock = helpers_lock();
        let fx = Fixture::new();
        fx.helper("keep", "cat > \"$OUT/$1.stdin\"");
        let original = r#"{"credsStore":"keep","credHelpers":{"quay.io":"keep"}}"#;
        fx.write_config(original);
        let env = fx.env(&[]);
        let stored = store_login("ghcr.io", &explicit(), &env).unwrap();
        assert_eq!(stored, Stored::CredsStore("keep".to_owned()));
        assert_eq!(stored.to_string(), "docker-credential-keep");
        let sent: Value = serde_json::from_str(&fx.received("store.stdin")).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"ServerURL": "ghcr.io", "Username": USER, "Secret": PASSWORD})
        );
        let stored = store_login("docker.io", &explicit(), &env).unwrap();
        assert_eq!(stored, Stored::CredsStore("keep".to_owned()));
        let sent: Value = serde_json::from_str(&fx.received("store.stdin")).unwrap();
        assert_eq!(sent["ServerURL"], "https://index.docker.io/v1/");

        let stored = store_login("QUAY.io", &explicit(), &env).unwrap();
        assert_eq!(stored, Stored::CredHelper("keep".to_owned()));
        let sent: Value = serde_json::from_str(&fx.received("store.stdin")).unwrap();
        assert_eq!(sent["ServerURL"], "quay.io");
        // config.json is left alone.
        assert_eq!(std::fs::read_to_string(fx.config_path()).unwrap(), original);
    }

    #[test]
    fn failing_store_helper_has_its_echo_of_the_secret_redacted() {
        let _lock = helpers_lock();
        let fx = Fixture::new();
        fx.helper("echo", "cat >&2\necho >&2\necho 'and again' >&2\nexit 1");
        fx.write_config(r#"{"credsStore":"echo"}"#);
        let err = store_login("ghcr.io", &explicit(), &fx.env(&[])).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("`docker-credential-echo store` failed (exit status: 1): <redacted>"),
            "{shown}"
        );
        assert!(shown.contains("and again"), "{shown}");
        assert!(!shown.contains("pa55"), "{shown}");
        assert_eq!(err.hint(), None);
    }

    #[test]
    fn erase_login_from_config_json() {
        let fx = Fixture::new();
        fx.write_config(&format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{a}"}},
                "docker.io":{{"auth":"{a}"}},
                "ghcr.io":{{"auth":"{a}"}}
            }},"other":{{"kept":true}}}}"#,
            a = b64("u:p")
        ));
        let env = fx.env(&[]);
        assert!(erase_login("index.docker.io", &env).unwrap());
        assert_eq!(
            fx.read_config(),
            serde_json::json!({"auths": {"ghcr.io": {"auth": b64("u:p")}}, "other": {"kept": true}})
        );
        assert!(!erase_login("docker.io", &env).unwrap());
        assert!(erase_login("ghcr.io", &env).unwrap());
        assert!(!erase_login("ghcr.io", &env).unwrap());
        assert_eq!(
            resolve("ghcr.io", None, &env).unwrap().credential,
            Credential::Anonymous
        );

        // No config at all: nothing to remove, and nothing created.
        let empty = Fixture::new();
        assert!(!erase_login("ghcr.io", &empty.env(&[])).unwrap());
        assert!(!empty.config_path().exists());
    }

    #[test]
    fn erase_login_through_a_helper() {
        let _lock = helpers_lock();
        let fx = Fixture::new();
        fx.helper(
            "keep",
            "cat > \"$OUT/$1.stdin\"\nif [ -e \"$OUT/erased\" ]; then echo 'credentials not found in native keychain'; exit 1; fi\ntouch \"$OUT/erased\"",
        );
        // `docker login` with a helper leaves an empty entry in auths.
        fx.write_config(r#"{"credsStore":"keep","auths":{"https://index.docker.io/v1/":{}}}"#);
        let env = fx.env(&[]);
        assert!(erase_login("docker.io", &env).unwrap());
        assert_eq!(fx.received("erase.stdin"), "https://index.docker.io/v1/");
        assert_eq!(
            fx.read_config(),
            serde_json::json!({"credsStore": "keep", "auths": {}})
        );
        assert!(!erase_login("docker.io", &env).unwrap());

        fx.helper("keep", "cat >/dev/null\necho 'no such thing' >&2\nexit 2");
        let err = erase_login("docker.io", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`docker-credential-keep erase` failed (exit status: 2): no such thing"
        );
    }

    /// Every error and result produced around a known secret: neither it nor its base64
    /// form shows, in `Display`, `Debug`, causes or hints.
    #[test]
    fn secrets_never_show() {
        let _lock = helpers_lock();
        let secret = "Zq-very-secret-42";
        let user = "someone";
        let auth = b64(&format!("{user}:{secret}"));
        let explicit = Explicit {
            username: user.to_owned(),
            password: Secret::new(secret),
        };
        let fx = Fixture::new();
        fx.helper(
            "good",
            &format!(
                "cat >/dev/null\nprintf '%s' '{{\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}'"
            ),
        );
        fx.helper(
            "token",
            &format!(
                "cat >/dev/null\nprintf '%s' '{{\"Username\":\"<token>\",\"Secret\":\"{secret}\"}}'"
            ),
        );
        fx.helper("echo", "cat\ncat >&2\nexit 1");
        fx.helper(
            "bad",
            &format!("cat >/dev/null\nprintf '%s' '{{\"Secret\":\"{secret}\"'\nexit 0"),
        );
        fx.helper(
            "typed",
            &format!("cat >/dev/null\nprintf '%s' '{{\"Username\":\"{secret}\",\"Secret\":42}}'"),
        );

        let mut shown: Vec<String> = Vec::new();
        let mut show_resolved = |r: Resolved| {
            shown.push(format!("{r:?} {}", r.source));
        };
        let env = fx.env(&[("WASMBUILD_USERNAME", user), ("WASMBUILD_PASSWORD", secret)]);
        show_resolved(resolve("ghcr.io", Some(&explicit), &env).unwrap());
        show_resolved(resolve("ghcr.io", None, &env).unwrap());
        let env = fx.env(&[("GITHUB_ACTIONS", "true"), ("GITHUB_TOKEN", secret)]);
        show_resolved(resolve("ghcr.io", None, &env).unwrap());
        let env = fx.env(&[]);
        let with_config = |json: String| {
            fx.write_config(&json);
            resolve("ghcr.io", None, &env)
        };
        show_resolved(
            with_config(format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}"}}}}}}"#)).unwrap(),
        );
        show_resolved(
            with_config(format!(
                r#"{{"auths":{{"ghcr.io":{{"identitytoken":"{secret}"}}}}}}"#
            ))
            .unwrap(),
        );
        show_resolved(
            with_config(format!(
                r#"{{"auths":{{"ghcr.io":{{"username":"{user}","password":"{secret}"}}}}}}"#
            ))
            .unwrap(),
        );
        show_resolved(with_config(r#"{"credsStore":"good"}"#.to_owned()).unwrap());
        show_resolved(with_config(r#"{"credsStore":"token"}"#.to_owned()).unwrap());

        let mut errors: Vec<CredentialError> = vec![
            resolve("ghcr.io", None, &fx.env(&[("WASMBUILD_PASSWORD", secret)])).unwrap_err(),
            resolve("ghcr.io", None, &fx.env(&[("WASMBUILD_USERNAME", secret)])).unwrap_err(),
        ];
        let failing_configs = [
            // Broken JSON right after the secret.
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}" "#),
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}"}}}}, "x": {secret}}}"#),
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{secret}"}}}}}}"#),
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#, b64(secret)),
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{auth}","password":["{secret}"]}}}}}}"#),
            format!(r#"{{"auths":{{"ghcr.io":"{auth}"}}}}"#),
            format!(r#"{{"auths":"{auth}"}}"#),
            format!(r#"["{auth}"]"#),
            r#"{"credsStore":"bad"}"#.to_owned(),
            r#"{"credsStore":"typed"}"#.to_owned(),
            r#"{"credsStore":"echo"}"#.to_owned(),
            r#"{"credsStore":"missing"}"#.to_owned(),
        ];
        for json in failing_configs {
            errors.push(with_config(json.clone()).expect_err(&json));
        }
        fx.write_config(r#"{"credsStore":"echo"}"#);
        errors.push(store_login("ghcr.io", &explicit, &env).unwrap_err());
        errors.push(erase_login("ghcr.io", &env).unwrap_err());
        fx.write_config(&format!(r#"{{"auths":"{auth}"}}"#));
        errors.push(store_login("ghcr.io", &explicit, &env).unwrap_err());

        for err in &errors {
            let mut text = format!("{err} {err:?} {:?}", err.hint());
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(&format!(" {cause} {cause:?}"));
                source = cause.source();
            }
            shown.push(text);
        }
        shown.push(format!(
            "{explicit:?} {env:?} {:?}",
            DockerConfig::load(&fx.config_path())
        ));
        for text in &shown {
            for hidden in [secret, &auth, &b64(secret)] {
                assert!(!text.contains(hidden), "{hidden} shows in: {text}");
            }
        }
        assert_eq!(errors.len(), 17);
    }

    #[test]
    fn parsers_take_any_bytes() {
        let config = br#"{"auths":{"ghcr.io":{"auth":"dTpw","identitytoken":"t"},
            "https://index.docker.io/v1/":{"username":"a","password":"b"}},
            "credHelpers":{"quay.io":"x"},"credsStore":"y","z":[1,{"\u00e9":null}]}"#;
        let answer = br#"{"ServerURL":"ghcr.io","Username":"<token>","Secret":"s"}"#;
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for bytes in [&config[..], &answer[..]] {
            for end in 0..=bytes.len() {
                inputs.push(bytes[..end].to_vec());
            }
            for at in 0..bytes.len() {
                for byte in [b'"', b'{', b'}', b':', 0xff, b'\\', b'0'] {
                    let mut changed = bytes.to_vec();
                    changed[at] = byte;
                    inputs.push(changed);
                }
            }
        }
        inputs.push(vec![b'['; 100_000]);
        inputs.push(b"\"\\ud800\"".to_vec());
        for input in &inputs {
            let _ = parse_helper_output(input);
            if let Ok(config) = DockerConfig::parse("config.json", input) {
                for registry in ["ghcr.io", "docker.io", "quay.io", "", "https://é/"] {
                    let _ = config.keeper(registry);
                    let _ = config.auth_for(registry);
                }
            }
        }
        assert_eq!(
            parse_helper_output(answer).unwrap(),
            Credential::IdentityToken {
                username: String::new(),
                token: Secret::new("s")
            }
        );
        assert!(matches!(
            parse_helper_output(b"[]"),
            Err(HelperOutputError::NotObject)
        ));
        assert!(matches!(
            parse_helper_output(br#"{"Username":1}"#),
            Err(HelperOutputError::Field { field: "Username" })
        ));
    }
}
