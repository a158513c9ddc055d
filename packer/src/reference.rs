//! Image references (`ghcr.io/me/app:1.0`, `app`, `localhost:5000/x@sha256:…`), parsed and
//! normalized the way Docker does (distribution's `ParseNormalizedNamed`), so the same
//! image has one spelling in the local store and on the wire.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag a reference gets when it names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
const OFFICIAL_PREFIX: &str = "library/";
/// distribution's `NameTotalLengthMax`.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A normalized image reference: `registry/repository[:tag][@digest]`.
///
/// `tag` is `Some("latest")` when the input named neither a tag nor a digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`, …
    pub registry: String,
    /// `library/hello`, `me/app`, …
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// A string that is not a valid image reference; `reason` names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

impl Reference {
    /// `registry/repository`, without tag or digest.
    pub fn repository_reference(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with `tag` (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        check_tag(tag).map_err(|reason| ReferenceError {
            input: format!("{}:{tag}", self.repository_reference()),
            reason,
        })?;
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same reference pinned to `digest` (the tag, if any, is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository and tag, without the digest.
    pub fn without_digest(&self) -> Reference {
        Reference {
            digest: None,
            tag: self.tag.clone().or_else(|| Some(DEFAULT_TAG.to_string())),
            ..self.clone()
        }
    }

    /// Docker's short form: `app:latest`, `me/app:1.0`, `ghcr.io/me/app:1.0`.
    pub fn familiar(&self) -> String {
        let mut out = if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                // `docker.io/my.org/app` without its registry would name the host `my.org`.
                _ if split_registry(&self.repository).0.is_some() => self.repository_reference(),
                _ => self.repository.clone(),
            }
        } else {
            self.repository_reference()
        };
        self.push_tag_and_digest(&mut out);
        out
    }

    /// The tag or digest part as it appears after the repository: `1.0`, `sha256:…`.
    pub fn tag_or_digest(&self) -> String {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => d.to_string(),
            (Some(t), None) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.repository_reference();
        self.push_tag_and_digest(&mut out);
        f.write_str(&out)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl PartialOrd for Reference {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Reference {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Reference, ReferenceError> {
        parse(input).map_err(|reason| ReferenceError {
            input: input.to_string(),
            reason,
        })
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Reference, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn parse(input: &str) -> Result<Reference, String> {
    if input.is_empty() {
        return Err("it is empty".into());
    }
    if input.len() == 64
        && input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err("a 64-digit hex string is an image ID, not a reference; use `sha256:<id>` in a digest reference (`name@sha256:<id>`)".into());
    }
    let (name_and_tag, digest) = match input.split_once('@') {
        Some((name, digest)) => {
            let digest = Digest::parse(digest)
                .map_err(|e| format!("digest {:?} is invalid: {}", e.input, e.reason))?;
            (name, Some(digest))
        }
        None => (input, None),
    };
    // The tag is after the last `:` that follows the last `/` (a `:` before it is a port).
    let after_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[after_slash..].rfind(':') {
        Some(i) => {
            let at = after_slash + i;
            (&name_and_tag[..at], Some(&name_and_tag[at + 1..]))
        }
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let (registry, remainder) = split_registry(name);
    if let Some(registry) = registry {
        check_registry(registry)?;
    }
    let registry = match registry {
        None | Some("index.docker.io" | "registry-1.docker.io") => DOCKER_HUB,
        Some(r) => r,
    };
    if remainder.is_empty() {
        return Err("the repository name is empty".into());
    }
    if remainder.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository {remainder:?} must be lowercase"));
    }
    for component in remainder.split('/') {
        check_path_component(component)?;
    }
    let repository = if registry == DOCKER_HUB && !remainder.contains('/') {
        format!("{OFFICIAL_PREFIX}{remainder}")
    } else {
        remainder.to_string()
    };
    let full_len = registry.len() + 1 + repository.len();
    if full_len > NAME_MAX {
        return Err(format!(
            "the repository name is {full_len} characters long, more than {NAME_MAX}"
        ));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (None, Some(_)) => None,
    };
    Ok(Reference {
        registry: registry.to_string(),
        repository,
        tag,
        digest,
    })
}

/// Docker's rule: the first component is a registry when it contains `.` or `:`, is
/// `localhost`, or has an uppercase letter (repositories are lowercase).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("registry {registry:?} is invalid: {why}"));
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [ipv6]:port
        let Some((addr, after)) = rest.split_once(']') else {
            return bad("missing `]` after an IPv6 address");
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad("not an IPv6 address");
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return bad("expected `:port` after `]`"),
            },
        }
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("the port must be a number");
    }
    if let Some(host) = host {
        if host.is_empty() {
            return bad("the host name is empty");
        }
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return bad(
                    "host names are dot-separated letters, digits and inner `-` (e.g. ghcr.io, localhost:5000)",
                );
            }
        }
    }
    Ok(())
}

/// `[a-z0-9]+ (([._]|__|-+) [a-z0-9]+)*`
fn check_path_component(component: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "repository path component {component:?} is invalid: use lowercase letters and digits, separated by `.`, `_`, `__` or dashes"
        ))
    };
    if component.is_empty() {
        return Err(
            "the repository name has an empty path component (`//` or a trailing `/`)".into(),
        );
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

/// `[\w][\w.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= TAG_MAX
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is invalid: a tag is 1 to {TAG_MAX} letters, digits, `_`, `.` or `-`, and does not start with `.` or `-`"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalization_table() {
        let table: &[(&str, &str, &str)] = &[
            // input, full, familiar
            ("app", "docker.io/library/app:latest", "app:latest"),
            ("app:1.0", "docker.io/library/app:1.0", "app:1.0"),
            ("me/app", "docker.io/me/app:latest", "me/app:latest"),
            ("me/app:1.0", "docker.io/me/app:1.0", "me/app:1.0"),
            ("library/app", "docker.io/library/app:latest", "app:latest"),
            (
                "docker.io/app",
                "docker.io/library/app:latest",
                "app:latest",
            ),
            (
                "index.docker.io/app",
                "docker.io/library/app:latest",
                "app:latest",
            ),
            (
                "registry-1.docker.io/me/app:2",
                "docker.io/me/app:2",
                "me/app:2",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            (
                "ghcr.io/me/app:1.0",
                "ghcr.io/me/app:1.0",
                "ghcr.io/me/app:1.0",
            ),
            (
                "ghcr.io/me/app",
                "ghcr.io/me/app:latest",
                "ghcr.io/me/app:latest",
            ),
            (
                "localhost/greeter:v1",
                "localhost/greeter:v1",
                "localhost/greeter:v1",
            ),
            (
                "localhost:5000/app",
                "localhost:5000/app:latest",
                "localhost:5000/app:latest",
            ),
            (
                "127.0.0.1:5000/a/b/c:t",
                "127.0.0.1:5000/a/b/c:t",
                "127.0.0.1:5000/a/b/c:t",
            ),
            ("[::1]:5000/app:x", "[::1]:5000/app:x", "[::1]:5000/app:x"),
            (
                "localhost:5000",
                "docker.io/library/localhost:5000",
                "localhost:5000",
            ),
            (
                "Registry.Example.com/app",
                "Registry.Example.com/app:latest",
                "Registry.Example.com/app:latest",
            ),
            (
                "a.b-c/d__e--f/g_h.i",
                "a.b-c/d__e--f/g_h.i:latest",
                "a.b-c/d__e--f/g_h.i:latest",
            ),
            (
                "me/my-app__x.y",
                "docker.io/me/my-app__x.y:latest",
                "me/my-app__x.y:latest",
            ),
            ("app:_x.Y-1", "docker.io/library/app:_x.Y-1", "app:_x.Y-1"),
        ];
        for (input, full, familiar) in table {
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&r.to_string(), full, "{input}");
            assert_eq!(&r.familiar(), familiar, "{input}");
            let again: Reference = full.parse().unwrap();
            assert_eq!(again, r, "{full} round trip");
            let again: Reference = familiar.parse().unwrap();
            assert_eq!(again, r, "{familiar} round trip");
        }
    }

    /// Found by `fuzz/fuzz_targets/reference.rs`: on Docker Hub, a repository whose first
    /// component reads as a host lost its registry in the short form, which then named
    /// another registry.
    #[test]
    fn the_short_form_keeps_docker_hub_before_a_host_like_repository() {
        for (input, familiar) in [
            (
                "docker.io/libraribraker.io/library/ht",
                "docker.io/libraribraker.io/library/ht:latest",
            ),
            ("docker.io/localhost/app:1", "docker.io/localhost/app:1"),
            ("my.org/app", "my.org/app:latest"),
        ] {
            let r: Reference = input.parse().unwrap();
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(familiar.parse::<Reference>().unwrap(), r, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r: Reference = format!("app@{D}").parse().unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/app@{D}"));
        assert_eq!(r.familiar(), format!("app@{D}"));
        let r: Reference = format!("ghcr.io/me/app:1.0@{D}").parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.to_string(), format!("ghcr.io/me/app:1.0@{D}"));
        let r: Reference = format!("localhost:5000/app@{D}").parse().unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag, None);
    }

    #[test]
    fn parts() {
        let r: Reference = "ghcr.io/me/app:1.0".parse().unwrap();
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "me/app");
        assert_eq!(r.repository_reference(), "ghcr.io/me/app");
        assert_eq!(r.with_tag("2").unwrap().to_string(), "ghcr.io/me/app:2");
        assert!(r.with_tag("-bad").is_err());
        assert_eq!(r.tag_or_digest(), "1.0");
    }

    #[test]
    fn errors_name_the_bad_part() {
        let long = "a".repeat(300);
        let long_tag = format!("app:{}", "t".repeat(129));
        let cases: Vec<(&str, &str)> = vec![
            ("", "empty"),
            ("App", "repository \"App\" must be lowercase"),
            ("me/App:1", "repository \"me/App\" must be lowercase"),
            ("ghcr.io/Me/app", "repository \"Me/app\" must be lowercase"),
            ("app:", "tag \"\" is invalid"),
            ("app:-x", "tag \"-x\" is invalid"),
            ("app:a/b", "registry \"app:a\" is invalid: the port"),
            (&long_tag, "is invalid: a tag is 1 to 128"),
            ("app@sha256:abc", "digest \"sha256:abc\" is invalid"),
            ("app@md5:abc", "only sha256"),
            ("me//app", "empty path component"),
            ("me/app/", "empty path component"),
            ("me/-app", "path component \"-app\" is invalid"),
            ("me/a___b", "path component \"a___b\" is invalid"),
            ("me/a..b", "path component \"a..b\" is invalid"),
            ("bad_host.io/app", "registry \"bad_host.io\" is invalid"),
            (
                "host.io:port/app",
                "registry \"host.io:port\" is invalid: the port",
            ),
            ("-h.io/app", "registry \"-h.io\""),
            ("[zz]:5000/app", "IPv6"),
            ("ghcr.io/", "repository name is empty"),
            (&long, "more than 255"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "image ID",
            ),
            ("app name", "path component"),
        ];
        for (input, want) in cases {
            let err = input.parse::<Reference>().unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(
                err.starts_with(&format!("invalid reference {input:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn sort_by_full_form() {
        let mut refs: Vec<Reference> = ["b", "ghcr.io/x", "a:2", "a:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        refs.sort();
        let names: Vec<String> = refs.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/a:1",
                "docker.io/library/a:2",
                "docker.io/library/b:latest",
                "ghcr.io/x:latest"
            ]
        );
    }
}
