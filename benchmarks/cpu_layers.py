"""Same-function speed-ups of the generators on the CPU, each against what it replaced: one whole
optimisation step of each task, both variants in one process, steps alternating.

    OMP_NUM_THREADS=1 python benchmarks/cpu_layers.py --variant layers \
        --task separate separate_pair segment dehaze remove_watermark --size 256
    OMP_NUM_THREADS=1 python benchmarks/cpu_layers.py --variant conv_bias --task separate remove_watermark
    OMP_NUM_THREADS=1 python benchmarks/cpu_layers.py --variant watermark_merge --task remove_watermark

Variants (``before`` -> ``after``, the shipped code is ``after``):
- ``layers``: PyTorch's BatchNorm + LeakyReLU, reflection padding and upsampling backward (run
  inside ``_dispatch.plain_layers()``) -> the C++ layers (engine.nets.norm, .padding, .upsample);
- ``conv_bias``: the biases of the convolutions before a BatchNorm added -> kept but not added
  (unet._conv);
- ``watermark_merge``: watermark removal's stage-2 clean and watermark nets as two groups -> one
  (HintedWatermarkProblem.begin_stage).
Median process CPU time per step (robust to other processes on a shared machine); one JSON line
per (variant, task).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import torch

from doubledip.engine.nets import pointwise, unet
from doubledip.engine.profiling import TASKS, make_step
from doubledip.engine.tasks import watermark
from doubledip.kernels._dispatch import plain_layers
from json_rows import emit  # benchmarks/ (the script's folder is on sys.path)

VARIANTS = ("layers", "conv_bias", "watermark_merge")


@contextlib.contextmanager
def _biases_added():
    """Within: the convolutions before a BatchNorm add their biases (as before unet._conv)."""
    forward, apply = unet._ConvBeforeNorm.forward, pointwise.PointwiseConv2d.forward
    unet._ConvBeforeNorm.forward = torch.nn.Conv2d.forward

    def with_bias(self, x):
        kept, self.apply_bias = self.apply_bias, True
        try:
            return apply(self, x)
        finally:
            self.apply_bias = kept

    pointwise.PointwiseConv2d.forward = with_bias
    try:
        yield
    finally:
        unet._ConvBeforeNorm.forward, pointwise.PointwiseConv2d.forward = forward, apply


class _WatermarkApart(watermark.HintedWatermarkProblem):
    """Stage 2 with the clean and watermark nets left apart (two groups)."""

    def begin_stage(self, stage):
        return False

    def generate(self, group, inputs):
        if group == watermark.JOINT:
            return super().generate("clean", inputs[:1]) + super().generate("watermark", inputs[1:])
        return super().generate(group, inputs)


def _steps(variant: str, task: str, size: int):
    """(before, after) step closures."""
    after = make_step(task, size, 1, torch.device("cpu"))[0]
    if variant == "layers":
        def before():
            with plain_layers():
                after()
        return before, after
    if variant == "conv_bias":
        other = make_step(task, size, 1, torch.device("cpu"))[0]

        def before():
            with _biases_added():
                other()
        return before, after
    if task != "remove_watermark":
        raise ValueError("--variant watermark_merge applies to --task remove_watermark only")
    shipped, watermark.HintedWatermarkProblem = watermark.HintedWatermarkProblem, _WatermarkApart
    try:
        before = make_step(task, size, 1, torch.device("cpu"))[0]
    finally:
        watermark.HintedWatermarkProblem = shipped
    return before, after


def measure(variant: str, task: str, size: int, steps: int) -> dict:
    before, after = _steps(variant, task, size)
    for _ in range(2):
        before()
        after()
    times = {"before": [], "after": []}
    for _ in range(steps):
        for name, fn in (("before", before), ("after", after)):
            t = time.process_time()
            fn()
            times[name].append(time.process_time() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"variant": variant, "task": task, "size": size, "threads": torch.get_num_threads(),
            "before_cpu_s_per_iter": med["before"], "after_cpu_s_per_iter": med["after"],
            "speedup": med["before"] / med["after"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", nargs="+", default=["layers"], choices=VARIANTS)
    p.add_argument("--task", nargs="+", default=["separate", "dehaze", "segment"], choices=TASKS)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("-o", "--output", default=None)
    args = p.parse_args(argv)
    emit((measure(v, task, args.size, args.steps) for v in args.variant for task in args.task), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
