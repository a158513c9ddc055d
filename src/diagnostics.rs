//! Renders errors as `error:` / `caused by:` / `hint:` on stderr.

use wasmbuild_builder::BuildError;
use wasmbuild_packer::credentials::CredentialError;
use wasmbuild_packer::registry::RegistryError;
use wasmbuild_packer::{PackError, StoreError};
use wasmbuild_spec::SpecError;

pub fn render(error: &anyhow::Error) {
    let mut message = format!("error: {error}");
    for cause in error.chain().skip(1) {
        message.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(hint) = hint(error) {
        message.push_str(&format!("\n  hint: {hint}"));
    }
    eprintln!("{message}");
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
