#!/usr/bin/env bash
# The GitHub Actions step that action.yml runs. All of the action's logic is here, so a test
# runs exactly what a workflow runs.
#
#   action.sh install-key   writes `dir=` and `key=` to $GITHUB_OUTPUT: where wasmbuild is
#                           installed and the key actions/cache keeps that folder under
#   action.sh               installs wasmbuild (unless $WASMBUILD_BIN names one, or the
#                           folder already holds it), adds the wasm32-wasip1 target and
#                           wasm-opt when missing, logs in when pushing, builds (and pushes),
#                           and writes the outputs and the step summary
#
# Inputs arrive as the runner names them for actions: INPUT_<NAME>, upper-cased, hyphens
# kept (INPUT_BUILD-ARGS), which is why they are read with printenv.
set -euo pipefail
# A failure inside $(...) fails the step too (bash 4.4 and later).
shopt -s inherit_errexit 2>/dev/null || true

# Workflow commands (::error::, ::group::) go to the step's stdout, fd 3 here, even from
# functions whose own stdout is captured.
exec 3>&1
say() { printf '%s\n' "$*" >&2; }
command_line() { printf '%s\n' "$*" >&3; }
fail() { command_line "::error::$*"; exit 1; }
input() { printenv "INPUT_$1" || printf '%s' "${2:-}"; }
true_input() {
  case "$(input "$1" "$2" | tr '[:upper:]' '[:lower:]')" in
    true | yes | 1) return 0 ;;
    false | no | 0 | '') return 1 ;;
    *) fail "input \`$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')\` must be true or false" ;;
  esac
}
action_root() { cd "${GITHUB_ACTION_PATH:-$(dirname "$0")/..}" && pwd; }

# --- where wasmbuild goes -----------------------------------------------------------------

# A digest of what the binary is built from, the compiler and the machine: a new one means
# a new build, an old one finds the folder already installed (or restored by actions/cache).
install_key() {
  local root machine
  root=$(action_root)
  machine="$(uname -sm) $(rustc -vV 2>/dev/null || echo 'no rustc')"
  python3 - "$root" "$machine" <<'PY'
import hashlib, os, sys
root, machine = sys.argv[1:3]
digest = hashlib.sha256(machine.encode())
paths = []
for top in ["Cargo.toml", "Cargo.lock", "wasmfile.schema.json", "src", "spec", "builder", "packer", "templates"]:
    full = os.path.join(root, top)
    if os.path.isfile(full):
        paths.append(top)
    for folder, dirs, files in os.walk(full):
        dirs[:] = sorted(d for d in dirs if d != "target")
        paths += [os.path.relpath(os.path.join(folder, f), root) for f in files]
for path in sorted(paths):
    digest.update(path.encode() + b"\0")
    with open(os.path.join(root, path), "rb") as f:
        digest.update(hashlib.sha256(f.read()).digest())
print(digest.hexdigest()[:32])
PY
}

install_dir() { printf '%s/wasmbuild/%s' "${RUNNER_TOOL_CACHE:-$HOME/.cache}" "$1"; }

# The wasmbuild binary to run: $WASMBUILD_BIN, else one installed from this action's own
# source with `cargo install --locked`.
wasmbuild_binary() {
  if [ -n "${WASMBUILD_BIN:-}" ]; then
    [ -x "$WASMBUILD_BIN" ] || fail "WASMBUILD_BIN=$WASMBUILD_BIN is not an executable file"
    printf '%s' "$WASMBUILD_BIN"
    return
  fi
  local dir=${WASMBUILD_INSTALL_DIR:-}
  [ -n "$dir" ] || dir=$(install_dir "$(install_key)")
  if [ ! -x "$dir/bin/wasmbuild" ]; then
    command -v cargo >/dev/null || fail "installing wasmbuild needs Rust (cargo): add a step that installs it first"
    command_line "::group::Install wasmbuild"
    cargo install --locked --path "$(action_root)" --root "$dir" --bin wasmbuild >&2 ||
      fail "cannot install wasmbuild from $(action_root) (cargo's output is above)"
    command_line "::endgroup::"
  fi
  printf '%s' "$dir/bin/wasmbuild"
}

# What a build may need that runners lack: the wasm32-wasip1 Rust target (added for the
# toolchain the context selects, rust-toolchain.toml included) and binaryen's wasm-opt.
prepare_toolchains() {
  local context=$1
  if command -v rustup >/dev/null &&
    ! (cd "$context" && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1); then
    say "adding the wasm32-wasip1 Rust target"
    (cd "$context" && rustup target add wasm32-wasip1 >&2)
  fi
  if [ -z "${WASM_OPT:-}" ] && ! command -v wasm-opt >/dev/null; then
    say "installing binaryen (wasm-opt)"
    if command -v apt-get >/dev/null; then
      { sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen; } >&2 ||
        command_line "::warning::could not install binaryen; a Wasmfile whose [optimize] level is not \"none\" needs wasm-opt"
    elif command -v brew >/dev/null; then
      brew install --quiet binaryen >&2 ||
        command_line "::warning::could not install binaryen; a Wasmfile whose [optimize] level is not \"none\" needs wasm-opt"
    fi
  fi
}

# --- inputs -------------------------------------------------------------------------------

# One reference per line of the `tags` input (commas separate them too). OCI repository
# names are lower case, and `github.repository` may not be: the name (not the tag) is
# lower-cased, with a notice.
tags() {
  local tag name suffix lower
  input TAGS | tr ',' '\n' | while IFS= read -r tag || [ -n "$tag" ]; do
    tag=$(printf '%s' "$tag" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    [ -n "$tag" ] || continue
    name=${tag%%@*}
    case ${name##*/} in
      *:*) suffix=":${name##*:}"; name=${name%:*} ;;
      *) suffix='' ;;
    esac
    suffix=$suffix${tag#"${tag%%@*}"}
    lower=$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]')
    if [ "$lower" != "$name" ]; then
      command_line "::notice::image names are lower case: $tag is built as $lower$suffix"
    fi
    printf '%s\n' "$lower$suffix"
  done
}

# One NAME=VALUE per line of the `build-args` input; blank lines are skipped.
build_args() {
  local line
  input BUILD-ARGS | while IFS= read -r line || [ -n "$line" ]; do
    line=$(printf '%s' "$line" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    [ -n "$line" ] && printf '%s\n' "$line"
  done
  return 0
}

# --- the step -----------------------------------------------------------------------------

run() {
  local context wasmfile push registry username wasmbuild metadata temp line
  context=$(input CONTEXT .)
  [ -n "$context" ] || context=.
  [ -d "$context" ] || fail "input \`context\` is $context, which is not a folder"
  wasmfile=$(input WASMFILE)
  push=false
  true_input PUSH false && push=true
  registry=$(input REGISTRY ghcr.io)
  username=$(input USERNAME "${GITHUB_ACTOR:-}")
  temp=${RUNNER_TEMP:-}
  [ -n "$temp" ] || temp=$(mktemp -d)
  metadata="$temp/wasmbuild-metadata.json"
  rm -f "$metadata"
  # Line by line, as the runner reads a log; the live display is for terminals.
  export WASMBUILD_PROGRESS=${WASMBUILD_PROGRESS:-plain}

  wasmbuild=$(wasmbuild_binary)
  [ -z "${GITHUB_PATH:-}" ] || dirname "$wasmbuild" >>"$GITHUB_PATH"
  "$wasmbuild" --version >&2
  prepare_toolchains "$context"

  if [ "$push" = true ]; then
    # The login goes into a Docker config of this job's own (a copy of the existing one, so
    # logins from earlier steps still count), never into ~/.docker of a reused runner.
    local config="$temp/wasmbuild-docker-config"
    mkdir -p "$config"
    chmod 700 "$config"
    local existing="${DOCKER_CONFIG:-$HOME/.docker}/config.json"
    [ ! -f "$existing" ] || [ -f "$config/config.json" ] || cp "$existing" "$config/config.json"
    export DOCKER_CONFIG=$config
    if [ -n "${INPUT_PASSWORD:-}" ]; then
      [ -n "$username" ] || fail "input \`username\` is empty: it names the user the password is for"
      printf '%s\n' "$INPUT_PASSWORD" | "$wasmbuild" login "$registry" -u "$username" --password-stdin
    else
      command_line "::warning::input \`password\` is empty: pushing with the credentials already configured"
    fi
  fi

  local args=(build "$context" --metadata-file "$metadata")
  [ -z "$wasmfile" ] || args+=(-f "$wasmfile")
  while IFS= read -r line; do args+=(-t "$line"); done < <(tags)
  while IFS= read -r line; do args+=(--build-arg "$line"); done < <(build_args)
  [ "$push" = false ] || args+=(--push)
  say "wasmbuild ${args[*]}"
  "$wasmbuild" "${args[@]}"

  # The size of what a registry holds: manifest, config and layers.
  local first inspect="$temp/wasmbuild-inspect.json"
  first=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["image.name"].split(",")[0])' "$metadata")
  "$wasmbuild" inspect --json "$first" >"$inspect" || : >"$inspect"
  report "$metadata" "$inspect" "$push"
}

# Writes `digest`, `image` and `refs` to $GITHUB_OUTPUT and a table to $GITHUB_STEP_SUMMARY.
report() {
  python3 - "$@" <<'PY'
import json, os, secrets, sys

metadata_path, inspect_path, pushed = sys.argv[1:4]
with open(metadata_path) as f:
    metadata = json.load(f)
digest = metadata["containerimage.digest"]
descriptor = metadata["containerimage.descriptor"]
refs = [name.split("@")[0] for name in metadata["image.name"].split(",") if name]
platform = "{os}/{architecture}".format(**descriptor["platform"])

size = None
try:
    with open(inspect_path) as f:
        manifest = json.load(f)["manifest"]
    size = descriptor["size"] + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])
except (OSError, ValueError, KeyError, TypeError):
    pass

def human(n):
    if n is None:
        return "?"
    for unit in ["B", "kB", "MB"]:
        if n < 1000 or unit == "MB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000

output = os.environ.get("GITHUB_OUTPUT")
if output:
    delimiter = "wasmbuild_" + secrets.token_hex(16)
    with open(output, "a") as f:
        f.write(f"digest={digest}\n")
        # The repository pinned to the digest: every client reads `name@digest`; not all
        # read `name:tag@digest`.
        name = refs[0][: refs[0].rfind(":")] if refs[0].rfind(":") > refs[0].rfind("/") else refs[0]
        f.write(f"image={name}@{digest}\n")
        f.write(f"refs<<{delimiter}\n" + "".join(r + "\n" for r in refs) + f"{delimiter}\n")

summary = os.environ.get("GITHUB_STEP_SUMMARY")
if summary:
    verb = "pushed" if pushed == "true" else "built (not pushed)"
    lines = [f"### wasmbuild: {verb}", "", "| reference | digest | size | platform |", "|---|---|---|---|"]
    lines += [f"| `{r}` | `{digest}` | {human(size)} | {platform} |" for r in refs]
    with open(summary, "a") as f:
        f.write("\n".join(lines) + "\n\n")
PY
}

case "${1:-}" in
  install-key)
    key=$(install_key)
    {
      echo "dir=$(install_dir "$key")"
      echo "key=wasmbuild-$key"
    } >>"${GITHUB_OUTPUT:-/dev/stdout}"
    ;;
  '') run ;;
  *) fail "unknown mode \`$1\` (expected install-key, or nothing)" ;;
esac
