//! Reproducible OCI images for Wasm modules, and the local OCI-layout store.
//!
//! [`pack`] turns a module, its `[image]` settings and `[[copy]]` files into an image
//! (one gzip'd tar layer, or the CNCF Wasm artifact); [`Store`] keeps images in an OCI
//! image layout on disk, and saves and loads OCI archives; [`pack_precompiled`] wraps a
//! target's `.cwasm` as an OCI 1.1 artifact that refers to its image, which the store keeps
//! with the image. The same input always gives the same bytes and digests. Nothing here
//! prints.

pub mod archive;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod image;
pub mod layer;
pub mod precompiled;
pub mod reference;
pub mod registry;
pub mod store;

pub use digest::{Digest, DigestError, Hasher};
pub use error::PackError;
pub use image::{
    Blob, ContainerConfig, Descriptor, ImageConfigJson, ImageIndex, ImageInput, Manifest,
    PackedImage, Platform, RootFs, WasmConfig, pack,
};
pub use layer::{Layer, LayerBuilder, find_file, unpack_layer};
pub use precompiled::{
    HostEngine, Mismatch, PrecompiledInfo, PrecompiledInput, cwasm_file_name, pack_precompiled,
};
pub use reference::{Reference, ReferenceError};
pub use store::{GcReport, Store, StoreError, StoredImage};
