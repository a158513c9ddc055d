//! Renders errors as `error:` / `caused by:` / `hint:` on stderr, and, in GitHub Actions,
//! also as an `::error` workflow command on stdout, so the run's page shows it as an
//! annotation (on the Wasmfile's line, when the error has one).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use wasmbuild_builder::BuildError;
use wasmbuild_packer::credentials::CredentialError;
use wasmbuild_packer::registry::RegistryError;
use wasmbuild_packer::{PackError, StoreError};
use wasmbuild_spec::SpecError;

pub fn render(error: &anyhow::Error) {
    let hint = hint(error);
    let mut message = format!("error: {error}");
    for cause in error.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(hint) = &hint {
        message.push_str(&format!("\n  hint: {hint}"));
    }
    eprintln!("{message}");
    if std::env::var_os("GITHUB_ACTIONS").is_some_and(|v| v == "true") {
        let workspace = std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from);
        let command = workflow_error(error, hint.as_deref(), workspace.as_deref());
        // The error is already on stderr: a closed stdout must not change the exit status.
        let _ = writeln!(std::io::stdout().lock(), "{command}");
    }
}

fn hint(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(e) = cause.downcast_ref::<SpecError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<BuildError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<StoreError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<PackError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<CredentialError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<RegistryError>() {
            e.hint()
        } else {
            cause
                .downcast_ref::<crate::commands::Hinted>()
                .map(|h| h.hint.clone())
        }
    })
}

/// `::error file=F,line=L,col=C::message` for an error in a Wasmfile or Dockerfile,
/// `::error file=F::message` for one about a whole file, `::error::message` otherwise.
/// The message is the error, its causes and its hint, one per line; the `F:L:C: ` prefix
/// the terminal shows is left out where the properties carry it.
fn workflow_error(error: &anyhow::Error, hint: Option<&str>, workspace: Option<&Path>) -> String {
    let spec = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<SpecError>());
    let mut properties = Vec::new();
    let mut prefix = None;
    if let Some(spec) = spec
        && let Some(path) = spec.path()
    {
        properties.push(("file", annotation_path(path, workspace)));
        prefix = Some(match spec.location() {
            Some(location) => {
                properties.push(("line", location.line.to_string()));
                properties.push(("col", location.column.to_string()));
                format!("{}:{location}: ", path.display())
            }
            None => format!("{}: ", path.display()),
        });
    }
    let strip = |text: String| match &prefix {
        Some(prefix) => text
            .strip_prefix(prefix.as_str())
            .map(str::to_owned)
            .unwrap_or(text),
        None => text,
    };
    let mut lines = vec![strip(error.to_string())];
    for cause in error.chain().skip(1) {
        lines.push(format!("caused by: {}", strip(cause.to_string())));
    }
    if let Some(hint) = hint {
        lines.push(format!("hint: {hint}"));
    }
    let properties = properties
        .iter()
        .map(|(name, value)| format!("{name}={}", escape_property(value)))
        .collect::<Vec<_>>()
        .join(",");
    let separator = if properties.is_empty() { "" } else { " " };
    format!(
        "::error{separator}{properties}::{}",
        escape_data(&lines.join("\n"))
    )
}

/// GitHub links an annotation to a file by its path in the repository: relative to
/// `GITHUB_WORKSPACE` where the file is inside it, else the path as wasmbuild was given it.
fn annotation_path(path: &Path, workspace: Option<&Path>) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let relative = workspace.and_then(|workspace| {
        let workspace = std::path::absolute(workspace).ok()?;
        absolute
            .strip_prefix(&workspace)
            .ok()
            .map(Path::to_path_buf)
    });
    relative
        .unwrap_or_else(|| path.to_path_buf())
        .to_string_lossy()
        .replace('\\', "/")
}

/// A workflow command's message, escaped as GitHub's runner unescapes it.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as its message, and also `:` and `,`, which
/// would otherwise end the value.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_properties_are_escaped_as_the_runner_expects() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_data("a: b, c"), "a: b, c");
        assert_eq!(
            escape_property("C:\\dir,x/100%\n"),
            "C%3A\\dir%2Cx/100%25%0A"
        );
    }

    #[test]
    fn an_error_without_a_place_is_a_plain_annotation() {
        let error = anyhow::anyhow!("inner 100%").context("cannot push x:1");
        assert_eq!(
            workflow_error(&error, Some("log in first"), None),
            "::error::cannot push x:1%0Acaused by: inner 100%25%0Ahint: log in first"
        );
    }

    #[test]
    fn a_path_inside_the_workspace_is_given_relative_to_it() {
        let workspace = std::env::temp_dir().join("ws");
        let file = workspace.join("app").join("Wasmfile");
        assert_eq!(annotation_path(&file, Some(&workspace)), "app/Wasmfile");
        let elsewhere = std::env::temp_dir().join("other").join("Wasmfile");
        assert_eq!(
            annotation_path(&elsewhere, Some(&workspace)),
            elsewhere.to_string_lossy()
        );
        assert_eq!(annotation_path(Path::new("a/Wasmfile"), None), "a/Wasmfile");
    }
}
