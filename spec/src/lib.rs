//! The Wasmfile: TOML parsing, validation, `${ARG}` interpolation and toolchain detection,
//! resolved into a [`BuildPlan`] before any work starts. The Dockerfile subset Docker
//! documents for Wasm images ([`load_dockerfile`]) resolves into the same plan.
//!
//! ```no_run
//! use std::path::Path;
//! use wasmbuild_spec::{Options, load};
//!
//! let options = Options { build_args: vec![("VERSION".into(), "1.0".into())] };
//! let resolved = load(Path::new("Wasmfile"), &options)?;
//! for warning in &resolved.warnings {
//!     eprintln!("warning: {warning}");
//! }
//! println!("building with {}", resolved.plan.toolchain.name());
//! # Ok::<(), wasmbuild_spec::SpecError>(())
//! ```

// Errors are rare and read by people: one flat enum with public fields beats boxing it to
// save a few bytes in the `Result`s of a function that runs once per build.
#![allow(clippy::result_large_err)]

mod dockerfile;
mod error;
mod interpolate;
mod locate;
pub mod plan;
mod resolve;
pub mod wasmfile;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::de::DeTable;

pub use dockerfile::{is_dockerfile_name, looks_like_dockerfile};
pub use error::{Location, SpecError};
pub use plan::*;

use crate::locate::{Seg, SourceMap, describe_key, describe_table};
use crate::wasmfile::Wasmfile;

/// What the command line adds to a Wasmfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--build-arg NAME=VALUE`, in the order given; a later one wins.
    pub build_args: Vec<(String, String)>,
}

/// A resolved Wasmfile and what the user should hear about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub plan: BuildPlan,
    /// Problems that do not stop the build, such as an undeclared `--build-arg`.
    pub warnings: Vec<String>,
}

/// Reads and resolves a Wasmfile.
pub fn load(wasmfile: &Path, options: &Options) -> Result<Resolved, SpecError> {
    let source = std::fs::read_to_string(wasmfile).map_err(|source| SpecError::Io {
        path: wasmfile.to_path_buf(),
        what: "the Wasmfile",
        source,
    })?;
    parse(&source, wasmfile, options)
}

/// Resolves a Wasmfile's text. `wasmfile` names it in messages, and its folder is what
/// `[build] context` is relative to, so that folder must exist.
pub fn parse(source: &str, wasmfile: &Path, options: &Options) -> Result<Resolved, SpecError> {
    let given = given_build_args(options)?;
    let root = DeTable::parse(source).map_err(|error| syntax_error(&error, source, wasmfile))?;
    let map = SourceMap::new(source, root);
    let raw = Wasmfile::deserialize(toml::de::Deserializer::from(map.root().clone()))
        .map_err(|error| deserialize_error(&error, &map, wasmfile))?;
    resolve::resolve(raw, &map, wasmfile, &given)
}

/// Reads and resolves a Dockerfile. `context` is the build's folder, as in
/// `docker build -f Dockerfile DIR`: COPY sources are relative to it and must stay inside it.
pub fn load_dockerfile(
    dockerfile: &Path,
    context: &Path,
    options: &Options,
) -> Result<Resolved, SpecError> {
    let source = std::fs::read_to_string(dockerfile).map_err(|source| SpecError::Io {
        path: dockerfile.to_path_buf(),
        what: "the Dockerfile",
        source,
    })?;
    parse_dockerfile(&source, dockerfile, context, options)
}

/// Resolves a Dockerfile's text; `dockerfile` names it in messages.
///
/// Accepted: `FROM scratch`, `COPY`, `ENTRYPOINT` and `CMD` in exec (JSON) form, `ENV`,
/// `WORKDIR`, `LABEL`, `ARG` (with `--build-arg` overrides). The module is the file
/// `ENTRYPOINT` runs (without one, the one `.wasm` file COPYed); it becomes a prebuilt
/// toolchain. Every other instruction is a [`SpecError::Unsupported`] that says why.
pub fn parse_dockerfile(
    source: &str,
    dockerfile: &Path,
    context: &Path,
    options: &Options,
) -> Result<Resolved, SpecError> {
    let given = given_build_args(options)?;
    dockerfile::parse(source, dockerfile, context, &given)
}

/// Whether `path` is a Dockerfile rather than a Wasmfile: by its name (`Dockerfile`,
/// `*.Dockerfile`, `Dockerfile.*`), else by its first instruction being `FROM` (or `ARG`).
/// A file that cannot be read is not one; loading it as a Wasmfile reports why.
pub fn is_dockerfile(path: &Path) -> bool {
    is_dockerfile_name(path)
        || std::fs::read_to_string(path).is_ok_and(|source| looks_like_dockerfile(&source))
}

/// Splits a `--build-arg NAME=VALUE`, for a CLI argument parser. A bare `NAME` is an error
/// here: Docker reads its value from the environment, and that is the caller's choice to
/// make, not this library's.
pub fn parse_build_arg(raw: &str) -> Result<(String, String), SpecError> {
    let error = |message: &str| SpecError::BuildArg {
        arg: raw.to_owned(),
        message: message.to_owned(),
    };
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| error("expected NAME=VALUE"))?;
    if !interpolate::is_arg_name(name) {
        return Err(error(
            "expected NAME=VALUE with a name of letters, digits and `_`, not starting with a digit",
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The JSON Schema of the Wasmfile (pretty, with a trailing newline), for editors: with
/// taplo or Even Better TOML, `#:schema ./wasmfile.schema.json` on a Wasmfile's first line
/// gives completion and checks as you type.
pub fn schema_json() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Wasmfile>();
    let mut value = schema.to_value();
    drop_null(&mut value);
    let mut json = serde_json::to_string_pretty(&value).unwrap_or_default();
    json.push('\n');
    json
}

/// TOML has no null, but schemars describes `Option<T>` as "T or null" and gives it a null
/// default; both would mislead an editor.
fn drop_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(object) => {
            if object.get("default").is_some_and(Value::is_null) {
                object.remove("default");
            }
            if let Some(Value::Array(types)) = object.get_mut("type") {
                types.retain(|kind| kind != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    object.insert("type".to_owned(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(variants)) = object.get_mut(key) {
                    variants
                        .retain(|variant| variant.get("type").is_none_or(|kind| kind != "null"));
                    if let [only] = variants.as_slice() {
                        let only = only.clone();
                        object.remove(key);
                        if let Value::Object(only) = only {
                            object.extend(only);
                        }
                    }
                }
            }
            object.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

/// Checks the `--build-arg`s and keeps the last value of each.
fn given_build_args(options: &Options) -> Result<BTreeMap<String, String>, SpecError> {
    let mut given = BTreeMap::new();
    for (name, value) in &options.build_args {
        if !interpolate::is_arg_name(name) {
            return Err(SpecError::BuildArg {
                arg: format!("{name}={value}"),
                message: "expected NAME=VALUE with a name of letters, digits and `_`, not \
                          starting with a digit"
                    .to_owned(),
            });
        }
        given.insert(name.clone(), value.clone());
    }
    Ok(given)
}

fn syntax_error(error: &toml::de::Error, source: &str, wasmfile: &Path) -> SpecError {
    let span = error.span();
    let mut message = error.message().trim_end().to_owned();
    if message == "duplicate key"
        && let Some(key) = span.clone().and_then(|span| source.get(span))
    {
        message = format!("duplicate key `{key}`");
    }
    SpecError::Syntax {
        path: wasmfile.to_path_buf(),
        location: span.map(|span| locate::location(source, span.start)),
        message,
    }
}

/// The names between backticks in a serde message, such as the keys in
/// "expected one of `name`, `tags`".
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The candidate closest to `word`, if it is close enough to be what the user meant.
/// Case, `_` versus `-` and small typos are forgiven.
fn closest(word: &str, candidates: &[&str]) -> Option<String> {
    let normalize = |text: &str| text.to_lowercase().replace('_', "-");
    let word = normalize(word);
    candidates
        .iter()
        .map(|candidate| {
            (
                strsim::jaro_winkler(&word, &normalize(candidate)),
                *candidate,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}

/// The tables of a Wasmfile and their keys, read from the schema so they cannot drift from
/// the types.
fn tables() -> Vec<(String, Vec<String>)> {
    let schema = serde_json::from_str::<serde_json::Value>(&schema_json()).unwrap_or_default();
    let keys = |schema: &serde_json::Value| -> Vec<String> {
        schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default()
    };
    let definitions = schema.get("$defs");
    let mut tables = vec![("the Wasmfile".to_owned(), keys(&schema))];
    for (table, definition) in [
        ("[build]", "BuildSection"),
        ("[optimize]", "OptimizeSection"),
        ("[precompile]", "PrecompileSection"),
        ("[image]", "ImageSection"),
        ("[[copy]]", "CopyEntry"),
    ] {
        if let Some(definition) = definitions.and_then(|definitions| definitions.get(definition)) {
            tables.push((table.to_owned(), keys(definition)));
        }
    }
    tables
}

fn deserialize_error(error: &toml::de::Error, map: &SourceMap<'_>, wasmfile: &Path) -> SpecError {
    let span = error.span();
    let path: Vec<Seg<'_>> = span
        .as_ref()
        .map(|span| map.path_at(span))
        .unwrap_or_default();
    let location = span.as_ref().map(|span| map.location(span.start));
    let message = error.message().trim_end();

    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest
            .split_once("`, ")
            .unwrap_or((rest.trim_end_matches('`'), ""));
        let table = describe_table(path.split_last().map_or(&[][..], |(_, parent)| parent));
        let candidates = backticked(expected);
        let suggestion = closest(key, &candidates);
        let belongs_in = match suggestion {
            Some(_) => None,
            None => tables()
                .into_iter()
                .find(|(other, keys)| *other != table && keys.iter().any(|k| k == key))
                .map(|(other, _)| other),
        };
        return SpecError::UnknownKey {
            path: wasmfile.to_path_buf(),
            location,
            key: key.to_owned(),
            table,
            expected: expected.replace("there are no fields", "expected no keys"),
            suggestion,
            belongs_in,
        };
    }

    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.trim_end_matches('`');
        let table = describe_table(&path);
        return SpecError::Invalid {
            path: wasmfile.to_path_buf(),
            location,
            message: format!("missing key `{key}` in {table}"),
            hint: None,
        };
    }

    let suggestion = message.strip_prefix("unknown variant `").and_then(|rest| {
        let (value, expected) = rest.split_once("`, ")?;
        closest(value, &backticked(expected))
    });
    // toml's words for a non-string where an enum value is expected.
    let message = if message == "wanted string or table" {
        "invalid type, expected a string".to_owned()
    } else if message.starts_with("invalid type: map") && map.is_datetime(&path) {
        // toml hands dates to serde as maps.
        message.replacen("map", "datetime", 1)
    } else {
        message.to_owned()
    };
    SpecError::InvalidValue {
        path: wasmfile.to_path_buf(),
        location,
        key: describe_key(&path),
        message,
        suggestion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_found_in_the_schema() {
        let tables = tables();
        let names: Vec<&str> = tables.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "the Wasmfile",
                "[build]",
                "[optimize]",
                "[precompile]",
                "[image]",
                "[[copy]]"
            ]
        );
        assert!(tables.iter().all(|(_, keys)| !keys.is_empty()));
    }

    #[test]
    fn suggestions_are_only_for_close_words() {
        let keys = ["name", "tags", "format", "os", "entrypoint"];
        assert_eq!(closest("tag", &keys).as_deref(), Some("tags"));
        assert_eq!(closest("Entry_Point", &keys).as_deref(), Some("entrypoint"));
        assert_eq!(closest("volumes", &keys), None);
        assert_eq!(closest("", &keys), None);
    }
}
