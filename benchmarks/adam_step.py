"""Adam's cost per step on the real parameter set of a task's generators, for each Adam variant,
and the whole optimisation step with each, from one run.

    OMP_NUM_THREADS=1 python benchmarks/adam_step.py --task separate remove_watermark --size 256

Variants (one ``doubledip.engine.adam.Adam`` whose update is switched between steps; all share the
optimiser state): ``foreach`` (the torch._foreach_* reference, as under DOUBLEDIP_BACKEND=torch),
``cpp`` (the fused C++ step as shipped: split around torch's sqrt where that is MKL's, bit-equal
to torch.optim.Adam), ``cpp_ieee`` (``Adam(sqrt="ieee")``: the single pass) and ``torch_fused``
(``torch._fused_adam_``, torch's own fused CPU Adam, when this torch has it).

Per task: the step of ``doubledip bench`` (``make_step``: forward, loss, backward, Adam) with the
variants alternating step by step; median process CPU time of the whole step and of Adam within it.
Then Adam alone, alternating, on the last gradients (``--adam-reps`` each). Ratios are against
``foreach`` from the same run. One JSON line per task. Threads: torch's (OMP_NUM_THREADS).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import doubledip.engine.profiling as profiling
from doubledip.engine.adam import Adam
from doubledip.engine.profiling import TASKS, make_step
from json_rows import emit  # benchmarks/ (the script's folder is on sys.path)


class SwitchedAdam(Adam):
    """The package's Adam with its update chosen per step (``mode``); times each ``step()``."""

    last = None  # the instance make_step built

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mode = "foreach"
        self.cpu_seconds = 0.0
        SwitchedAdam.last = self

    def step(self) -> None:
        self.sqrt = "ieee" if self.mode == "cpp_ieee" else "torch"
        saved = os.environ.get("DOUBLEDIP_BACKEND")
        if self.mode in ("foreach", "torch_fused"):  # keep the group off the fused C++ path
            os.environ["DOUBLEDIP_BACKEND"] = "torch"
        t = time.process_time()
        try:
            super().step()
        finally:
            self.cpu_seconds = time.process_time() - t
            if saved is None:
                os.environ.pop("DOUBLEDIP_BACKEND", None)
            else:
                os.environ["DOUBLEDIP_BACKEND"] = saved

    def _update(self, t, params, grads, exp_avgs, exp_avg_sqs) -> None:
        if self.mode != "torch_fused":
            return super()._update(t, params, grads, exp_avgs, exp_avg_sqs)
        steps = [torch.tensor(float(t))] * len(params)  # read only: one tensor serves all
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=self.lr, beta1=self.beta1,
                           beta2=self.beta2, weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)


def variants() -> list[str]:
    from doubledip import bindings

    out = ["foreach"]
    if bindings.core() is not None:
        out += ["cpp", "cpp_ieee"]
    if hasattr(torch, "_fused_adam_"):
        out.append("torch_fused")
    return out


def measure(task: str, size: int, steps: int, warmup: int, adam_reps: int) -> dict:
    original = profiling.Adam
    profiling.Adam = SwitchedAdam
    try:
        step = make_step(task, size, 1, torch.device("cpu"))[0]
    finally:
        profiling.Adam = original
    opt = SwitchedAdam.last
    names = variants()
    whole = {n: [] for n in names}
    in_step = {n: [] for n in names}
    for r in range(warmup + steps):
        for name in names:
            opt.mode = name
            t = time.process_time()
            step()
            spent = time.process_time() - t
            if r >= warmup:
                whole[name].append(spent)
                in_step[name].append(opt.cpu_seconds)
    alone = {n: [] for n in names}
    for _ in range(adam_reps):  # the last step's gradients stay in place
        for name in names:
            opt.mode = name
            opt.step()
            alone[name].append(opt.cpu_seconds)
    med = lambda d: {n: statistics.median(v) for n, v in d.items()}  # noqa: E731
    w, a, s = med(whole), med(alone), med(in_step)
    params = [p for p in opt.params]
    row = {"task": task, "size": size, "threads": torch.get_num_threads(), "steps": steps,
           "adam_reps": adam_reps, "tensors": len(params), "elements": sum(p.numel() for p in params)}
    for n in names:
        row[f"step_cpu_s[{n}]"] = w[n]
        row[f"adam_in_step_cpu_ms[{n}]"] = 1e3 * s[n]
        row[f"adam_alone_cpu_ms[{n}]"] = 1e3 * a[n]
    for n in names[1:]:
        row[f"adam_speedup[{n}]"] = a["foreach"] / a[n]
        row[f"step_speedup[{n}]"] = w["foreach"] / w[n]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", nargs="+", default=["separate", "remove_watermark"], choices=TASKS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=12, help="timed steps per variant (alternating)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    p.add_argument("--adam-reps", type=int, default=30, help="Adam-alone repetitions per variant")
    p.add_argument("-o", "--output", default=None)
    args = p.parse_args(argv)
    emit((measure(t, args.size, args.steps, args.warmup, args.adam_reps) for t in args.task), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
