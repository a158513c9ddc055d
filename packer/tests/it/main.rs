//! Integration tests of wasmbuild-packer: packing, unpacking, the store, archives, and
//! skopeo reading what the store and archives hold.

#![allow(clippy::unwrap_used)]

mod archive;
mod limits;
mod pack;
mod properties;
mod registry;
mod skopeo;
mod store;
mod support;
mod unpack;
