//! Reproducible OCI images for Wasm modules, and the local OCI-layout store.
//!
//! [`pack`] turns a module, its `[image]` settings and `[[copy]]` files into an image
//! (one gzip'd tar layer, or the CNCF Wasm artifact); [`Store`] keeps images in an OCI
//! image layout on disk, and saves and loads OCI archives. The same input always gives
//! the same bytes and digests. Nothing here prints.

pub mod archive;
pub mod digest;
pub mod error;
pub mod image;
pub mod layer;
pub mod reference;
pub mod store;

pub use digest::{Digest, DigestError, Hasher};
pub use error::PackError;
pub use image::{
    Blob, ContainerConfig, Descriptor, ImageConfigJson, ImageIndex, ImageInput, Manifest,
    PackedImage, Platform, RootFs, WasmConfig, pack,
};
pub use layer::{Layer, LayerBuilder, find_file, unpack_layer};
pub use reference::{Reference, ReferenceError};
pub use store::{GcReport, Store, StoreError, StoredImage};
