"""The benchmarks behind scripts/bench. Each case runs the anchor and wasmbuild alternately,
so both see the same machine load, and reports the median wall time and peak RSS."""

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
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{argv} failed:\n{proc.stderr.decode(errors='replace')}")
        return elapsed, int(report.read().strip().splitlines()[-1]) / 1024


def compare(title, anchor_name, anchor, ours, target, runs=RUNS, **kwargs):
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
    return ratio <= target


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
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print("\nall within target" if ok else "\nsome results are over target")


if __name__ == "__main__":
    main()
