//! Integration tests: the real `wasmbuild` binary against the projects in `fixtures/`, and
//! independent tools (skopeo, the Python wasmtime package) reading what it wrote.

#![allow(clippy::unwrap_used)]

mod action;
mod broken;
mod build;
mod cargo;
mod clang;
mod cli;
mod concurrency;
mod containerd;
mod dockerfile;
mod go;
mod hostile;
mod init;
mod interop;
mod optimize;
mod precompile;
mod proxy;
mod readme;
mod registry;
mod run;
mod secrets;
mod shim;
mod store;
mod support;
mod toolchains;
