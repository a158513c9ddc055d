//! Integration tests: the real `wasmbuild` binary against the projects in `fixtures/`, and
//! independent tools (skopeo, the Python wasmtime package) reading what it wrote.

#![allow(clippy::unwrap_used)]

mod broken;
mod build;
mod cargo;
mod clang;
mod dockerfile;
mod go;
mod interop;
mod optimize;
mod precompile;
mod readme;
mod run;
mod store;
mod support;
mod toolchains;
