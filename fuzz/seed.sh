#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with starting inputs: the small hand-picked files in
# fuzz/seeds/<target>/, the repository's Wasmfiles, Dockerfiles and .wasm modules (fixtures
# and what test runs left under target/), layers made here (ordinary and hostile: escaping
# paths and links, whiteouts, devices), and the blobs of a local store that `wasmbuild
# build` writes from two fixtures when a wasmbuild binary is built. Files are named by
# their hash, so running it again adds nothing twice.
set -euo pipefail
cd "$(dirname "$0")"
repo=..
say() { printf '==> %s\n' "$*" >&2; }

# add TARGET FILE...: copies each file of at most 256 kB into the target's corpus.
add() {
  local target=$1 file
  shift
  mkdir -p "corpus/$target"
  for file in "$@"; do
    [ -f "$file" ] && [ "$(stat -c %s "$file")" -le 262144 ] || continue
    cp -- "$file" "corpus/$target/$(sha1sum <"$file" | cut -c1-40)"
  done
}

for dir in seeds/*/; do
  target=$(basename "$dir")
  add "$target" "$dir"*
done

mapfile -t wasmfiles < <(find "$repo/fixtures" "$repo/templates" -name target -prune -o -name 'Wasmfile*' -type f -print 2>/dev/null)
add wasmfile "${wasmfiles[@]}"
mapfile -t dockerfiles < <(find "$repo/fixtures" "$repo/templates" -name target -prune -o \( -iname '*dockerfile*' -o -iname '*containerfile*' \) -type f -print 2>/dev/null)
add dockerfile "${dockerfiles[@]}"
mapfile -t modules < <(find "$repo/fixtures" "$repo/target" -name deps -prune -o -name '*.wasm' -type f -print 2>/dev/null)
add module "${modules[@]}"

# Layers: a Python tarfile writes what a registry might send, kind and hostile.
if command -v python3 >/dev/null; then
  mkdir -p corpus/layer
  python3 - corpus/layer <<'PY'
import gzip, hashlib, io, os, sys, tarfile

out = sys.argv[1]

def entry(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.size = kind, link, mode, len(data)
    return info, data

def layer(entries, fmt=tarfile.PAX_FORMAT):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data else None)
    gz = gzip.compress(raw.getvalue(), mtime=0)
    with open(os.path.join(out, hashlib.sha1(gz).hexdigest()), "wb") as f:
        f.write(gz)

D, F, S, H = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
layer([entry("app.wasm", data=b"\0asm\1\0\0\0", mode=0o755), entry("etc", D, mode=0o755),
       entry("etc/motd.txt", data=b"hello\n"), entry("etc/link", S, link="motd.txt"),
       entry("etc/hard", H, link="etc/motd.txt")])
layer([entry("a", D), entry("a/up", S, link=".."), entry("a/up/x", data=b"x")])
layer([entry("escape", S, link="../outside/canary"), entry("abs", S, link="/etc/passwd")])
layer([entry("../outside/canary", data=b"overwritten")])
layer([entry("/abs", data=b"x")])
layer([entry("hard", H, link="../outside/canary")])
layer([entry("d", D), entry("d/f", data=b"1"), entry("d/.wh.f"), entry("d/.wh..wh..opq"),
       entry(".wh.."), entry(".wh.d")])
layer([entry("dev", tarfile.CHRTYPE), entry("fifo", tarfile.FIFOTYPE)])
layer([entry("f", data=b"1"), entry("f", D), entry("f/g", data=b"2"), entry("f", S, link="f")])
layer([entry("long/" + "n" * 200 + "/file", data=b"pax path")], tarfile.PAX_FORMAT)
layer([entry("gnu/" + "n" * 200, data=b"gnu long name")], tarfile.GNU_FORMAT)
layer([entry("ustar/plain", data=b"ustar")], tarfile.USTAR_FORMAT)
PY
  # Small modules: the prebuilt fixture with custom sections before, between and after
  # its sections, as toolchains leave them (the fixtures' real modules are large and slow).
  mkdir -p corpus/module
  python3 - "$repo/fixtures/prebuilt/hello.wasm" corpus/module <<'PY'
import hashlib, os, sys

def leb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)

def name(text):
    return leb(len(text)) + text

def section(ident, body):
    return bytes([ident]) + leb(len(body)) + body

def custom(title, body):
    return section(0, name(title) + body)

def write(module):
    with open(os.path.join(sys.argv[2], hashlib.sha1(module).hexdigest()), "wb") as f:
        f.write(module)

hello = open(sys.argv[1], "rb").read()
header, rest = hello[:8], hello[8:]
sections, at = [], 0
while at < len(rest):
    start, at = at, at + 1
    size = shift = 0
    while True:
        byte = rest[at]; at += 1
        size |= (byte & 0x7F) << shift; shift += 7
        if byte < 0x80:
            break
    at += size
    sections.append(rest[start:at])

names = custom(b"name", section(0, name(b"hello")) + section(1, leb(2) + leb(0) + name(b"fd_write") + leb(1) + name(b"_start")))
producers = custom(b"producers", leb(2) + name(b"language") + leb(1) + name(b"Rust") + name(b"")
                   + name(b"processed-by") + leb(1) + name(b"rustc") + name(b"1.95.0"))
debug = [custom(b".debug_info", bytes(range(40))), custom(b".debug_line", b"\x02" * 16),
         custom(b"sourceMappingURL", name(b"app.map")), custom(b"external_debug_info", name(b"app.debug"))]
other = [custom(b"go:buildid", b"abc"), custom(b"target_features", leb(1) + b"+" + name(b"bulk-memory"))]

write(header + b"".join(sections) + names + producers + b"".join(debug) + b"".join(other))
write(header + other[0] + sections[0] + debug[0] + b"".join(sections[1:]) + names)
write(header + b"".join(sections) + producers)
write(header + b"".join(sections) + custom(b"producers", b"\xff\xff"))
write(header + b"".join(sections[:-1]))
write(header)
PY
fi

# A store as `wasmbuild build` writes it: image and artifact manifests, configs, layers.
wasmbuild=""
for candidate in "$repo/target/release/wasmbuild" "$repo/target/debug/wasmbuild"; do
  [ -x "$candidate" ] && { wasmbuild=$candidate; break; }
done
if [ -n "$wasmbuild" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r "$repo/fixtures/prebuilt" "$work/image"
  cp -r "$repo/fixtures/prebuilt" "$work/artifact"
  printf '[build]\nmodule = "hello.wasm"\n[image]\nformat = "artifact"\n' >"$work/artifact/Wasmfile"
  cp -r "$repo/fixtures/dockerfile" "$work/dockerfile"
  ok=1
  for project in image artifact dockerfile; do
    WASMBUILD_HOME="$work/home" "$wasmbuild" build -q --progress plain -t "seed/$project:1" \
      "$work/$project" >/dev/null 2>"$work/$project.log" || { ok=0; say "wasmbuild build $project failed (store seeds skipped): $(tail -1 "$work/$project.log")"; }
  done
  if [ "$ok" = 1 ]; then
    for blob in "$work"/home/store/blobs/sha256/* "$work/home/store/index.json"; do
      case "$(head -c 4 "$blob" | od -An -tx1 | tr -d ' ')" in
        1f8b*) add layer "$blob" ;;
        0061736d) add module "$blob" ;;
        7b*) add manifest "$blob" ;;
      esac
    done
  fi
else
  say "no wasmbuild binary under target/: the store's blobs are not added (fuzz/seeds has some)"
fi

for dir in corpus/*/; do
  say "$(basename "$dir"): $(find "$dir" -type f | wc -l) inputs in the corpus"
done
