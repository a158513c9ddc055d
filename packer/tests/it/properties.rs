//! Properties over generated inputs: a layer unpacks to exactly the files it was built
//! from, whatever their paths, contents and modes; and a reference prints as it parses.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use proptest::prelude::*;
use wasmbuild_packer::{Digest, LayerBuilder, Reference, find_file, unpack_layer};

// --- pack → unpack --------------------------------------------------------------------------

/// One path component: mostly short and plain; sometimes long (so that paths need PAX
/// records), with spaces, quotes, backslashes, tabs or non-ASCII letters. Never `.`, `..`
/// or a whiteout (`.wh.`), which unpacking gives a meaning of its own; never a newline,
/// which the tar reader cannot take in a PAX record (unpacking refuses such an entry, see
/// layer.rs's tests).
fn component() -> impl Strategy<Value = String> {
    const PLAIN: &[char] = &['a', 'b', 'z', '0', '9', '_', '-'];
    const ODD: &[char] = &[
        'a', 'Z', '7', ' ', '.', '\'', '"', '\\', '\t', '\r', '~', '#', '%', '&', '(', '+', ',',
        ';', '=', '@', '-', 'é', 'ü', '日',
    ];
    let name = |alphabet: &'static [char], len| {
        prop::collection::vec(prop::sample::select(alphabet), len)
            .prop_map(|chars| chars.into_iter().collect::<String>())
    };
    // Longer than ustar's 100-byte name field, shorter than a file name's 255 bytes.
    let long = name(PLAIN, 101..200);
    prop_oneof![8 => name(PLAIN, 1..12), 2 => name(ODD, 1..80), 1 => long]
        .prop_filter("special names", |name| {
            name != "." && name != ".." && !name.starts_with(".wh.")
        })
}

/// Up to 9 files by absolute path, none of them a folder of another, with contents and modes
/// (always readable and writable by their owner, so a test that is not root reads them back).
fn files() -> impl Strategy<Value = BTreeMap<String, (Vec<u8>, u32)>> {
    let path = prop::collection::vec(component(), 1..6).prop_map(|parts| parts.join("/"));
    let len = prop_oneof![4 => 0usize..600, 1 => 0usize..70_000];
    let contents = (len, any::<u64>()).prop_map(|(len, seed)| bytes(len, seed));
    let mode = (0u32..0o1000).prop_map(|mode| mode | 0o600);
    prop::collection::btree_map(path, (contents, mode), 1..10).prop_map(|mut files| {
        // `a` and `a/b` cannot both be files: keep the deeper one.
        let folders: Vec<String> = files
            .keys()
            .flat_map(|path| {
                let parts: Vec<&str> = path.split('/').collect();
                (1..parts.len())
                    .map(|n| parts[..n].join("/"))
                    .collect::<Vec<_>>()
            })
            .collect();
        for folder in folders {
            files.remove(&folder);
        }
        files
            .into_iter()
            .map(|(path, file)| (format!("/{path}"), file))
            .collect()
    })
}

/// `len` bytes from `seed` (xorshift): large contents without a strategy per byte.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Every file under `dir`, by absolute image path, with its contents and mode.
fn unpacked(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{path:?}");
                walk(root, &path, out);
            } else {
                assert!(meta.is_file(), "{path:?}");
                let name = path.strip_prefix(root).unwrap().to_str().unwrap();
                out.insert(
                    format!("/{name}"),
                    (fs::read(&path).unwrap(), meta.permissions().mode() & 0o777),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_layer_unpacks_to_the_files_it_was_built_from(
        files in files(),
        mtime in prop_oneof![Just(0u64), 0u64..=0o77777777777],
    ) {
        let build = |order: &mut dyn Iterator<Item = (&String, &(Vec<u8>, u32))>| {
            let mut layer = LayerBuilder::new(mtime);
            for (path, (bytes, mode)) in order {
                layer.add_file(path, bytes, *mode).unwrap();
            }
            layer.finish().unwrap()
        };
        let layer = build(&mut files.iter());
        // The same files added in another order make the same bytes.
        prop_assert_eq!(&build(&mut files.iter().rev()), &layer);
        prop_assert_eq!(layer.digest, Digest::of(&layer.gz));

        let out = tempfile::tempdir().unwrap();
        unpack_layer(&layer.gz, out.path()).unwrap();
        prop_assert_eq!(&unpacked(out.path()), &files);
        for (path, (bytes, _)) in files.iter().take(3) {
            prop_assert_eq!(find_file(&layer.gz, path).unwrap(), Some(bytes.clone()));
        }
    }
}

// --- reference → text → reference ---------------------------------------------------------

/// A registry host as Docker recognises one: dotted, `localhost`, with a port, or IPv6.
fn registry() -> impl Strategy<Value = String> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?";
    let port = prop::option::of("[0-9]{1,5}")
        .prop_map(|port| port.map(|port| format!(":{port}")).unwrap_or_default());
    prop_oneof![
        (prop::collection::vec(label, 2..4), port.clone())
            .prop_map(|(labels, port)| format!("{}{port}", labels.join("."))),
        (label, "[0-9]{1,5}").prop_map(|(host, port)| format!("{host}:{port}")),
        port.clone().prop_map(|port| format!("localhost{port}")),
        ("[0-9a-f]{1,4}(:[0-9a-f]{0,4}){1,7}", port)
            .prop_map(|(address, port)| format!("[{address}]{port}")),
        Just("docker.io".to_owned()),
        Just("index.docker.io".to_owned()),
        Just("registry-1.docker.io".to_owned()),
    ]
}

/// A repository path component: `[a-z0-9]+ (([._]|__|-+) [a-z0-9]+)*`.
fn path_component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}(([._]|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

#[derive(Debug, Clone)]
struct Written {
    registry: Option<String>,
    path: Vec<String>,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Written {
    fn text(&self) -> String {
        let mut out = String::new();
        if let Some(registry) = &self.registry {
            out.push_str(registry);
            out.push('/');
        }
        out.push_str(&self.path.join("/"));
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
        out
    }
}

fn written() -> impl Strategy<Value = Written> {
    (
        prop::option::of(registry()),
        prop::collection::vec(path_component(), 1..4),
        prop::option::of("[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}"),
        prop::option::of(any::<[u8; 32]>().prop_map(Digest::from_bytes)),
    )
        .prop_map(|(registry, path, tag, digest)| Written {
            registry,
            path,
            tag,
            digest,
        })
        // Without a registry, a first component with a dot or `localhost` would be one.
        .prop_filter("a first component that reads as a registry", |w| {
            w.registry.is_some()
                || w.path.len() == 1
                || !(w.path[0].contains('.') || w.path[0] == "localhost")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_reference_prints_as_it_parses(written in written()) {
        let text = written.text();
        let parsed: Reference = text.parse().unwrap();

        let registry = match written.registry.as_deref() {
            None | Some("index.docker.io" | "registry-1.docker.io") => "docker.io",
            Some(registry) => registry,
        };
        let path = written.path.join("/");
        let repository = if registry == "docker.io" && written.path.len() == 1 {
            format!("library/{path}")
        } else {
            path
        };
        prop_assert_eq!(&parsed.registry, registry);
        prop_assert_eq!(&parsed.repository, &repository);
        let tag = match (&written.tag, written.digest) {
            (None, None) => Some("latest".to_owned()),
            (tag, _) => tag.clone(),
        };
        prop_assert_eq!(&parsed.tag, &tag);
        prop_assert_eq!(parsed.digest, written.digest);

        let full = parsed.to_string();
        prop_assert_eq!(full.parse::<Reference>().unwrap(), parsed.clone());
        // Docker's short form drops `docker.io/`, so a first component that reads as a
        // registry (`a.b/c`) cannot be shortened; Docker Hub has no such namespaces.
        let first = repository.split('/').next().unwrap_or_default();
        if registry != "docker.io" || !(first.contains('.') || first == "localhost") {
            prop_assert_eq!(parsed.familiar().parse::<Reference>().unwrap(), parsed.clone());
        }
        prop_assert_eq!(
            full.parse::<Reference>().unwrap().to_string(),
            full.clone(),
            "printing is stable"
        );
    }
}
