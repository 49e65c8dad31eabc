"""One optimisation step of each task, in each variant of ``doubledip.bench.VARIANTS``:
task x variant x size x batch x device.

A round is one step of the task's problem in the stage that dominates a default run (forward,
losses, backward, Adam; ``doubledip.bench.variant_step``, as ``doubledip bench`` times it), after
warm-up steps; with a batch of N, one step fits all N images. Variants, each the shipped
reference mode with one thing changed: ``reference``, ``fast`` (fast mode's problem and
precision), ``contiguous`` (channels-last off), ``low_memory``, ``plain_layers`` (the C++
generator layers off: ``doubledip.kernels._dispatch.plain_layers()``), ``conv1x1`` (1x1
convolutions as PyTorch's grouped convolution, not one GEMM). report.py gives each variant's
time over the reference's from the same run. On CUDA ``extra_info["cuda_peak_mb"]`` is the peak
allocated during the timed steps; CPU peaks are measured in fresh processes (test_memory.py).
"""
from __future__ import annotations

import pytest
import torch

from doubledip.bench import VARIANTS, CudaPeak, variant_step

ROUNDS, WARMUP = 10, 2
# variants that change nothing off the CPU (the same step as the reference there)
CPU_ONLY = {"plain_layers": "the C++ generator layers run on the CPU only",
            "conv1x1": "1x1 convolutions run as one GEMM on the CPU only"}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_step(benchmark, task, variant, size, batch, device):
    if device.type != "cpu" and variant in CPU_ONLY:
        pytest.skip(f"{variant}: {CPU_ONLY[variant]}")
    step, _, default_iterations = variant_step(task, size, batch, device, variant)

    def timed():
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # inside the timed region

    benchmark.group = f"step {task} {size} batch {batch} {device.type}"
    benchmark.extra_info.update(kind="step", task=task, variant=variant, size=size, batch=batch,
                                device=device.type, threads=torch.get_num_threads(),
                                default_iterations=default_iterations)
    with CudaPeak(device) as peak:
        benchmark.pedantic(timed, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    if peak.mb is not None:
        benchmark.extra_info["cuda_peak_mb"] = round(peak.mb, 1)
