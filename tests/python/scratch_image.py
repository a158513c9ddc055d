"""Writes, without wasmbuild, the OCI image a Dockerfile like the one Docker's Wasm guide
shows builds:

    FROM scratch
    COPY hello.wasm /hello.wasm
    ENTRYPOINT [ "/hello.wasm" ]

with `docker buildx build --platform wasi/wasm`: one gzip'd tar layer holding the file, a
config with the platform's os and architecture and the entrypoint, and an index naming the
platform, as an OCI image layout that `skopeo copy --all oci:LAYOUT:TAG docker://...` pushes.

usage: scratch_image.py FILE PATH_IN_IMAGE OS/ARCH LAYOUT TAG
  e.g. scratch_image.py hello.wasm /hello.wasm wasi/wasm layout latest
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def main():
    source, target, platform, layout, tag = sys.argv[1:6]
    os_name, arch = platform.split("/")
    name = target.lstrip("/")
    with open(source, "rb") as f:
        module = f.read()
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)

    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(module)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(module))
    diff_id = "sha256:" + hashlib.sha256(tar_bytes.getvalue()).hexdigest()
    layer_digest, layer_size = blob(layout, gzip.compress(tar_bytes.getvalue(), mtime=0))

    config = {
        "architecture": arch,
        "os": os_name,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Entrypoint": [target],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {"created_by": f"COPY {os.path.basename(source)} {target} # buildkit", "comment": "buildkit.dockerfile.v0"},
            {"created_by": f'ENTRYPOINT ["{target}"]', "comment": "buildkit.dockerfile.v0", "empty_layer": True},
        ],
    }
    config_digest, config_size = blob(layout, json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_size = blob(layout, json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "platform": {"architecture": arch, "os": os_name},
            }
        ],
    }
    index_digest, index_size = blob(layout, json.dumps(index).encode())
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "digest": index_digest,
                        "size": index_size,
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            },
            f,
        )
    print(manifest_digest)


if __name__ == "__main__":
    main()
