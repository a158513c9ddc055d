//! Shared helpers: image inputs, layer listings and hand-made (malicious) tars.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use tar::{EntryType, Header};
use wasmbuild_packer::{ImageInput, PackedImage, pack};
use wasmbuild_spec::{CopyRule, ImageConfig};

pub const MODULE: &[u8] = b"\0asm\x01\0\0\0 pretend this is a module";

pub fn config() -> ImageConfig {
    ImageConfig {
        workdir: "/".into(),
        ..ImageConfig::default()
    }
}

pub fn pack_with(config: &ImageConfig, copies: &[CopyRule], epoch: Option<i64>) -> PackedImage {
    pack(&ImageInput {
        module_name: "hello",
        module: MODULE,
        config,
        copies,
        source_date_epoch: epoch,
    })
    .unwrap()
}

pub fn simple_image(tag_text: &str) -> PackedImage {
    let mut config = config();
    config.labels.insert("which".into(), tag_text.into());
    pack_with(&config, &[], None)
}

pub fn copy(from: &Path, to: &str) -> CopyRule {
    CopyRule {
        from: from.to_path_buf(),
        to: to.to_string(),
    }
}

/// One tar entry as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub path: String,
    pub kind: char,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub link: Option<String>,
    pub owner_names: (String, String),
}

pub fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(gz).read_to_end(&mut out).unwrap();
    out
}

pub fn list(layer_gz: &[u8]) -> Vec<Listed> {
    let tar = gunzip(layer_gz);
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            Listed {
                path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                kind: h.entry_type().as_byte() as char,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                size: h.size().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap()),
                owner_names: (
                    h.username().unwrap().unwrap_or("").to_string(),
                    h.groupname().unwrap().unwrap_or("").to_string(),
                ),
            }
        })
        .collect()
}

/// A hand-made tar entry; the name and link go into the header byte for byte, so
/// entries no well-behaved writer would produce can be made.
pub struct Raw<'a> {
    pub name: &'a str,
    pub kind: EntryType,
    pub data: &'a [u8],
    pub link: Option<&'a str>,
}

pub fn file(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: EntryType::Regular,
        data: b"gotcha",
        link: None,
    }
}

pub fn symlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind: EntryType::Symlink,
        data: b"",
        link: Some(target),
    }
}

pub fn hardlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name,
        kind: EntryType::Link,
        data: b"",
        link: Some(target),
    }
}

pub fn dir(name: &str) -> Raw<'_> {
    Raw {
        name,
        kind: EntryType::Directory,
        data: b"",
        link: None,
    }
}

pub fn raw_tar_gz(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut tar = Vec::new();
    for entry in entries {
        let mut header = Header::new_gnu();
        let name = &mut header.as_old_mut().name;
        name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
        if let Some(link) = entry.link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(entry.kind);
        header.set_mode(if entry.kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(entry.data.len() as u64);
        header.set_cksum();
        tar.extend_from_slice(header.as_bytes());
        tar.extend_from_slice(entry.data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Every path under `dir` (relative), with `/` after folders and `-> target` for links.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", std::fs::read_link(&path).unwrap().display()),
                );
            } else if meta.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &path, out);
            } else {
                out.insert(
                    rel,
                    String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

pub fn sha256(bytes: &[u8]) -> String {
    wasmbuild_packer::Digest::of(bytes).to_string()
}
