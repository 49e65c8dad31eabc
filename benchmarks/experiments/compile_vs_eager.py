"""Eager vs ``compile=True`` generators, one optimisation step of a task, in one process.

    OMP_NUM_THREADS=1 python benchmarks/experiments/compile_vs_eager.py --task separate dehaze --size 256 [--device cuda]

Per task: the first compiled step (the compile itself: cold, or from the on-disk cache on a second
run), then eager and compiled steps alternately (so contention hits both alike), median seconds
per step of each and their ratio. On the CPU the per-step figure is process CPU time (robust to
other processes on a shared machine); on CUDA it is wall time with synchronisation. One JSON line
per task on stdout (``-o FILE`` also writes them as a list). Steps: ``doubledip.bench.make_step``
(``compile=True``: the generators compiled as ``SolverConfig(compile=True)`` compiles them). Not in
the suite: a cold compile takes about a minute per task and size on a CPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from doubledip.bench import TASKS, make_step


def measure(task: str, size: int, device: torch.device, steps: int) -> dict:
    cuda = device.type == "cuda"
    clock = time.perf_counter if cuda else time.process_time

    def timed(fn) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        t = clock()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        return clock() - t

    eager = make_step(task, size, 1, device)[0]
    compiled = make_step(task, size, 1, device, compile=True)[0]
    wall = time.perf_counter()
    first = timed(compiled)
    first_wall = time.perf_counter() - wall
    for _ in range(3):  # warm-up (CUDA graphs record on the second or third call)
        eager()
        compiled()
    times = {"eager": [], "compiled": []}
    for _ in range(steps):
        times["eager"].append(timed(eager))
        times["compiled"].append(timed(compiled))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"task": task, "size": size, "device": str(device), "clock": "wall" if cuda else "process CPU",
            "first_compiled_step_s": first, "first_compiled_step_wall_s": first_wall,
            "eager_s_per_iter": med["eager"], "compiled_s_per_iter": med["compiled"],
            "speedup": med["eager"] / med["compiled"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", nargs="+", default=["separate", "dehaze"], choices=TASKS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("-o", "--output", default=None)
    args = p.parse_args(argv)
    rows = []
    for task in args.task:  # one JSON line per task as it comes (long runs show progress)
        rows.append(measure(task, args.size, torch.device(args.device), args.steps))
        print(json.dumps(rows[-1]), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
