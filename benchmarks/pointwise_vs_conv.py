"""1x1 convolutions as one GEMM (PointwiseConv2d, as shipped) vs PyTorch's grouped 1x1 convolution,
one whole optimisation step of each task, in one process, alternating.

    OMP_NUM_THREADS=1 python benchmarks/pointwise_vs_conv.py --task separate dehaze segment --size 256

Per task: two copies of the task's problem (same seed), one with the generators' 1x1 layers run
as ``nn.Conv2d.forward`` (what they were before), one as shipped; steps alternate, median process
CPU time per step (robust to other processes on a shared machine). One JSON line per task.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from doubledip.engine.nets.pointwise import PointwiseConv2d
from doubledip.engine.profiling import TASKS, make_step
from json_rows import emit  # benchmarks/ (the script's folder is on sys.path)


def _as_plain_conv(step_problem_nets) -> int:
    """Route every PointwiseConv2d of the nets through nn.Conv2d.forward; returns how many."""
    n = 0
    for m in step_problem_nets.modules():
        if isinstance(m, PointwiseConv2d):
            m.forward = torch.nn.Conv2d.forward.__get__(m)
            n += 1
    return n


def measure(task: str, size: int, steps: int) -> dict:
    import doubledip.engine.profiling as profiling

    built = {}
    original = profiling._problem

    def capture(*args, **kwargs):  # keep a handle on the problem make_step builds
        problem, stage, iterations = original(*args, **kwargs)
        built["problem"] = problem
        return problem, stage, iterations

    profiling._problem = capture
    try:
        plain = make_step(task, size, 1, torch.device("cpu"))[0]
        layers = _as_plain_conv(built["problem"].nets)
        gemm = make_step(task, size, 1, torch.device("cpu"))[0]
    finally:
        profiling._problem = original
    for _ in range(2):
        plain()
        gemm()
    times = {"conv": [], "gemm": []}
    for _ in range(steps):
        for name, fn in (("conv", plain), ("gemm", gemm)):
            t = time.process_time()
            fn()
            times[name].append(time.process_time() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"task": task, "size": size, "pointwise_layers": layers, "threads": torch.get_num_threads(),
            "conv_cpu_s_per_iter": med["conv"], "gemm_cpu_s_per_iter": med["gemm"],
            "speedup": med["conv"] / med["gemm"]}


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
