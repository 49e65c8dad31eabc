"""The generator layers on the C++ core (BatchNorm + LeakyReLU, reflection padding, upsampling
backward) vs PyTorch's own layers, one whole optimisation step of each task, in one process,
alternating.

    OMP_NUM_THREADS=1 python benchmarks/cpu_layers.py --task separate separate_pair segment dehaze remove_watermark --size 256

Per task: one problem (``profiling.make_step``, channels-last float32 on the CPU); steps alternate
between running inside ``_dispatch.plain_layers()`` (PyTorch's layers; the fused losses and the
optimiser stay as shipped) and as shipped; median process CPU time per step (robust to other
processes on a shared machine). One JSON line per task.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from doubledip.engine.profiling import TASKS, make_step
from doubledip.kernels._dispatch import plain_layers
from json_rows import emit  # benchmarks/ (the script's folder is on sys.path)


def measure(task: str, size: int, steps: int) -> dict:
    step = make_step(task, size, 1, torch.device("cpu"))[0]

    def plain():
        with plain_layers():
            step()

    for _ in range(2):
        plain()
        step()
    times = {"plain": [], "fused": []}
    for _ in range(steps):
        for name, fn in (("plain", plain), ("fused", step)):
            t = time.process_time()
            fn()
            times[name].append(time.process_time() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"task": task, "size": size, "threads": torch.get_num_threads(),
            "plain_cpu_s_per_iter": med["plain"], "fused_cpu_s_per_iter": med["fused"],
            "speedup": med["plain"] / med["fused"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", nargs="+", default=["separate", "dehaze", "segment"], choices=TASKS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("-o", "--output", default=None)
    args = p.parse_args(argv)
    emit((measure(task, args.size, args.steps) for task in args.task), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
