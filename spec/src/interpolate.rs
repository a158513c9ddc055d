//! `${NAME}` build args in string values.
//!
//! Interpolation runs on the deserialized [`Wasmfile`], so it touches exactly the string
//! values (never table keys, and never enum values such as `level`, which serde has already
//! read literally). `$${` writes a literal `${`, for commands that need shell syntax.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::SpecError;
use crate::locate::{Seg, SourceMap, describe_key};
use crate::wasmfile::{BuildSection, CopyEntry, ImageSection, PrecompileSection, Wasmfile};

/// Whether `name` can be used as `${name}`: letters, digits and `_`, not starting with a
/// digit, like shell and Dockerfile variables.
pub(crate) fn is_arg_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What is wrong with a `${...}` in one value.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    /// `${NAME}` with `NAME` not in `[args]`.
    Undefined(String),
    /// `${` without its `}`.
    Unclosed,
    /// `${...}` whose content is not an arg name.
    BadName(String),
}

impl Problem {
    /// The text to look for in the raw TOML to find where the problem is.
    fn needle(&self) -> String {
        match self {
            Problem::Undefined(name) | Problem::BadName(name) => format!("${{{name}}}"),
            Problem::Unclosed => "${".to_owned(),
        }
    }
}

/// Replaces every `${NAME}` in `value` by the arg's value.
fn expand(value: &str, args: &BTreeMap<String, String>) -> Result<String, Problem> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let from_dollar = &rest[dollar..];
        if let Some(tail) = from_dollar.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = from_dollar.strip_prefix("${") {
            let end = tail.find('}').ok_or(Problem::Unclosed)?;
            let name = &tail[..end];
            if !is_arg_name(name) {
                return Err(Problem::BadName(name.to_owned()));
            }
            let arg = args
                .get(name)
                .ok_or_else(|| Problem::Undefined(name.to_owned()))?;
            out.push_str(arg);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &from_dollar[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Walks every string value of a Wasmfile, remembering the problems with their offsets so
/// that the one reported is the first in the text, not the first in walking order.
struct Interpolator<'m, 'a> {
    map: &'m SourceMap<'a>,
    args: &'m BTreeMap<String, String>,
    wasmfile: &'m Path,
    given: &'m BTreeMap<String, String>,
    /// (offset in the source, or `usize::MAX` if unknown; the error)
    problems: Vec<(usize, SpecError)>,
}

impl Interpolator<'_, '_> {
    fn string(&mut self, value: &mut String, path: &[Seg<'_>]) {
        match expand(value, self.args) {
            Ok(expanded) => *value = expanded,
            Err(problem) => {
                let offset = self.offset_of(&problem, path);
                let location = offset.map(|offset| self.map.location(offset));
                let path_buf = self.wasmfile.to_path_buf();
                let error = match problem {
                    Problem::Undefined(name) => SpecError::UndefinedArg {
                        path: path_buf,
                        location,
                        given_on_command_line: self.given.contains_key(&name),
                        name,
                    },
                    Problem::Unclosed => SpecError::Invalid {
                        path: path_buf,
                        location,
                        message: format!(
                            "unclosed `${{` in {}: expected `${{NAME}}`",
                            describe_key(path)
                        ),
                        hint: Some("write `$${` for a literal `${`".to_owned()),
                    },
                    Problem::BadName(name) => SpecError::Invalid {
                        path: path_buf,
                        location,
                        message: format!(
                            "`${{{name}}}` in {} is not a build arg: expected `${{NAME}}` \
                             with a name of letters, digits and `_`",
                            describe_key(path)
                        ),
                        hint: Some("write `$${` for a literal `${`".to_owned()),
                    },
                };
                self.problems.push((offset.unwrap_or(usize::MAX), error));
            }
        }
    }

    /// Where the problem is: its `${...}` in the value's raw text when it can be found there
    /// (it cannot when the TOML string spells `$` with an escape), else the value's start.
    fn offset_of(&self, problem: &Problem, path: &[Seg<'_>]) -> Option<usize> {
        let span = self.map.value_span(path)?;
        let raw = self.map.text(span.clone());
        let needle = problem.needle();
        let found = raw
            .match_indices(&needle)
            // `$${X}` is an escaped literal, not a use of X.
            .find(|(index, _)| !raw[..*index].ends_with('$'))
            .map_or(0, |(index, _)| index);
        Some(span.start + found)
    }

    fn strings(&mut self, values: &mut [String], path: &[Seg<'_>]) {
        for (index, value) in values.iter_mut().enumerate() {
            self.string(value, &[path, &[Seg::Index(index)]].concat());
        }
    }

    fn opt_string(&mut self, value: &mut Option<String>, path: &[Seg<'_>]) {
        if let Some(value) = value {
            self.string(value, path);
        }
    }

    fn opt_strings(&mut self, values: &mut Option<Vec<String>>, path: &[Seg<'_>]) {
        if let Some(values) = values {
            self.strings(values, path);
        }
    }

    fn map_values(&mut self, map: &mut BTreeMap<String, String>, path: &[Seg<'_>]) {
        for (key, value) in map.iter_mut() {
            self.string(value, &[path, &[Seg::Key(key)]].concat());
        }
    }
}

/// Replaces `${NAME}` in every string value outside `[args]`; the error is the problem that
/// comes first in the file.
pub(crate) fn interpolate(
    wasmfile: &mut Wasmfile,
    args: &BTreeMap<String, String>,
    given: &BTreeMap<String, String>,
    map: &SourceMap<'_>,
    path: &Path,
) -> Result<(), SpecError> {
    let mut it = Interpolator {
        map,
        args,
        wasmfile: path,
        given,
        problems: Vec::new(),
    };
    // Destructured without `..` so that a new key cannot be added to the Wasmfile without
    // deciding here whether it is interpolated.
    let Wasmfile {
        build,
        optimize: _, // enums only: literal
        precompile,
        image,
        copy,
        args: _, // defaults of args are literal
    } = wasmfile;

    let BuildSection {
        toolchain: _,
        context,
        env,
        package,
        bin,
        profile,
        features,
        no_default_features: _,
        sources,
        include,
        defines,
        flags,
        libs,
        main,
        module,
        command,
        output,
        allow_imports,
        exec_model: _,
    } = build;
    let b = |key| [Seg::Key("build"), Seg::Key(key)];
    it.string(context, &b("context"));
    it.map_values(env, &b("env"));
    it.opt_string(package, &b("package"));
    it.opt_string(bin, &b("bin"));
    it.opt_string(profile, &b("profile"));
    it.opt_strings(features, &b("features"));
    it.opt_strings(sources, &b("sources"));
    it.opt_strings(include, &b("include"));
    it.opt_strings(defines, &b("defines"));
    it.opt_strings(flags, &b("flags"));
    it.opt_strings(libs, &b("libs"));
    it.opt_string(main, &b("main"));
    it.opt_string(module, &b("module"));
    it.opt_strings(command, &b("command"));
    it.opt_string(output, &b("output"));
    it.strings(allow_imports, &b("allow-imports"));

    let PrecompileSection { targets } = precompile;
    it.strings(targets, &[Seg::Key("precompile"), Seg::Key("targets")]);

    let ImageSection {
        name,
        tags,
        format: _,
        os: _,
        entrypoint,
        cmd,
        env,
        workdir,
        labels,
        annotations,
    } = image;
    let i = |key| [Seg::Key("image"), Seg::Key(key)];
    it.opt_string(name, &i("name"));
    it.strings(tags, &i("tags"));
    it.opt_strings(entrypoint, &i("entrypoint"));
    it.strings(cmd, &i("cmd"));
    it.map_values(env, &i("env"));
    it.string(workdir, &i("workdir"));
    it.map_values(labels, &i("labels"));
    it.map_values(annotations, &i("annotations"));

    for (index, CopyEntry { from, to }) in copy.iter_mut().enumerate() {
        let c = |key| [Seg::Key("copy"), Seg::Index(index), Seg::Key(key)];
        it.string(from, &c("from"));
        it.string(to, &c("to"));
    }

    match it.problems.into_iter().min_by_key(|(offset, _)| *offset) {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("VERSION".to_owned(), "1.2".to_owned()),
            ("_x9".to_owned(), "y".to_owned()),
        ])
    }

    #[test]
    fn expands_args() {
        assert_eq!(
            expand("v${VERSION}-${_x9}${VERSION}", &args()),
            Ok("v1.2-y1.2".to_owned())
        );
        assert_eq!(expand("no args", &args()), Ok("no args".to_owned()));
        assert_eq!(expand("", &args()), Ok(String::new()));
    }

    #[test]
    fn keeps_lone_dollars_and_unescapes_double_dollar_brace() {
        assert_eq!(
            expand("$HOME $ $$ a$", &args()),
            Ok("$HOME $ $$ a$".to_owned())
        );
        assert_eq!(
            expand("$${HOME} ${VERSION}", &args()),
            Ok("${HOME} 1.2".to_owned())
        );
    }

    #[test]
    fn reports_undefined_unclosed_and_bad_names() {
        assert_eq!(
            expand("${NOPE}", &args()),
            Err(Problem::Undefined("NOPE".to_owned()))
        );
        assert_eq!(expand("a ${VERSION", &args()), Err(Problem::Unclosed));
        assert_eq!(expand("${}", &args()), Err(Problem::BadName(String::new())));
        assert_eq!(
            expand("${a-b}", &args()),
            Err(Problem::BadName("a-b".to_owned()))
        );
        assert_eq!(
            expand("${9}", &args()),
            Err(Problem::BadName("9".to_owned()))
        );
    }

    #[test]
    fn arg_names_are_shell_like() {
        assert!(is_arg_name("VERSION"));
        assert!(is_arg_name("_a1"));
        assert!(!is_arg_name(""));
        assert!(!is_arg_name("1A"));
        assert!(!is_arg_name("A-B"));
        assert!(!is_arg_name("É"));
    }
}
