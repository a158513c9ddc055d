#!/usr/bin/env python3
"""Runs an image's module from a wasmbuild store with the Python `wasmtime` package.

An independent reader and runtime: it follows the OCI image layout by hand (index.json →
manifest → config → layer), checks every digest, unpacks the layer with `tarfile`, and runs
the entrypoint with the image's Env (WorkingDir as PWD) and Cmd (or the arguments given), the image's files
preopened read-only at `/`. The guest's stdout and stderr go to ours; its exit code is ours.

usage: run_from_store.py STORE REF [ARGS...]
"""

import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile

import wasmtime


def blob(store, digest):
    algorithm, hexdigest = digest.split(":", 1)
    assert algorithm == "sha256", digest
    with open(os.path.join(store, "blobs", "sha256", hexdigest), "rb") as f:
        data = f.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != hexdigest:
        sys.exit(f"blob {digest} has digest sha256:{actual}")
    return data


def main():
    store, ref, *args = sys.argv[1:]
    with open(os.path.join(store, "index.json")) as f:
        index = json.load(f)
    entries = [
        m for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref
    ]
    if len(entries) != 1:
        sys.exit(f"{ref}: {len(entries)} entries in index.json")
    manifest = json.loads(blob(store, entries[0]["digest"]))
    config = json.loads(blob(store, manifest["config"]["digest"]))
    assert config["architecture"] == "wasm", config
    settings = config["config"]

    root = tempfile.mkdtemp(prefix="run-from-store-")
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(store, layer["digest"])), mode="r:gz") as tar:
            tar.extractall(root, filter="data")

    entrypoint = settings["Entrypoint"]
    argv = entrypoint + (args if args else settings.get("Cmd") or [])
    env = [entry.split("=", 1) for entry in settings.get("Env") or []]
    # WASI preview 1 has no working directory; WorkingDir is passed as PWD.
    workdir = settings.get("WorkingDir") or "/"
    if workdir != "/" and not any(name == "PWD" for name, _ in env):
        env.append(["PWD", workdir])

    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    module = wasmtime.Module.from_file(engine, os.path.join(root, entrypoint[0].lstrip("/")))
    wasi = wasmtime.WasiConfig()
    wasi.argv = argv
    wasi.env = env
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.preopen_dir(root, "/", fs_mutable=False)
    wasm_store = wasmtime.Store(engine)
    wasm_store.set_wasi(wasi)
    instance = linker.instantiate(wasm_store, module)
    try:
        instance.exports(wasm_store)["_start"](wasm_store)
    except wasmtime.ExitTrap as exit_trap:
        sys.exit(exit_trap.code)


if __name__ == "__main__":
    main()
