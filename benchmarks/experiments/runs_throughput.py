"""Images per hour of ``doubledip batch`` (in this process, 2 local workers, a local Ray instance)
against the same images run one ``doubledip TASK`` process each, and batched grouping against
one-by-one fits. Short runs: the table is about the executors' overhead and parallelism, not the
method's cost at its default iterations.

    OMP_NUM_THREADS=1 python benchmarks/experiments/runs_throughput.py --sizes 128 256 --images 4 --iterations 50

Prints a markdown table (wall seconds for the whole set, images/hour, the machine's load average
at the start of each row).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _images(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(n):
        a = np.stack([np.sin(9 * xx + i), np.cos(7 * yy), xx * yy], -1) * 0.4 + 0.5
        b = (rng.random((size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)) * 0.5
        img = np.clip(0.5 * a + 0.5 * b, 0, 1)
        p = folder / f"im{i}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def _run(cmd: list[str]) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="separate")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=50)
    args = ap.parse_args(argv)
    dd = [sys.executable, "-m", "doubledip"]
    common = ["--iterations", str(args.iterations), "--device", "cpu", "--quiet"]
    rows = []
    root = Path(tempfile.mkdtemp(prefix="runs-throughput-"))
    try:
        for size in args.sizes:
            paths = _images(root / f"in{size}", args.images, size)
            ways = {
                "one process per image": lambda out: sum(
                    _run(dd + [args.task.replace("_", "-"), str(p), "-o", str(out / p.stem)] + common) for p in paths),
                "batch, --workers 1 (this process)": lambda out: _run(
                    dd + ["batch", args.task, str(root / f"in{size}"), "-o", str(out)] + common),
                "batch, --workers 2": lambda out: _run(
                    dd + ["batch", args.task, str(root / f"in{size}"), "-o", str(out), "--workers", "2"] + common),
                "batch, --ray (local, 2 CPUs, 1 per task)": lambda out: _run(
                    dd + ["batch", args.task, str(root / f"in{size}"), "-o", str(out), "--ray"] + common),
            }
            for way, fn in ways.items():
                out = root / f"out-{size}-{len(rows)}"
                load = os.getloadavg()[0]
                seconds = fn(out)
                rows.append((size, way, seconds, args.images * 3600 / seconds, load))
                print(f"{size} {way}: {seconds:.1f} s", file=sys.stderr, flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"| size | how ({args.images} images, {args.task}, {args.iterations} iterations) | wall s | images/hour | load at start |")
    print("|---|---|---|---|---|")
    for size, way, seconds, per_hour, load in rows:
        print(f"| {size} | {way} | {seconds:.1f} | {per_hour:.0f} | {load:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
