"""Seconds per iteration of each task: plain vs channels-last, reference vs fast precision, and
1 vs several images per batched run.

    OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_iteration.py --benchmark-group-by=param:task
    DOUBLEDIP_BENCH_SIZES=256,512 ...   # sizes (default 256)

Each benchmark round is one optimisation step of a task's problem (forward, loss, backward, Adam),
after warm-up steps (``doubledip.engine.profiling.make_step``); for the batched rows a round fits
every image of the batch once. Ratios are meaningful only within one run on one machine.
"""
import os

import pytest
import torch

from doubledip.engine.profiling import TASKS, make_step

SIZES = [int(s) for s in os.environ.get("DOUBLEDIP_BENCH_SIZES", "256").split(",")]
VARIANTS = {  # name -> (channels_last, bf16 generators, images per run)
    "contiguous": (False, False, 1),
    "channels_last": (True, False, 1),
    "fast_bf16": (True, True, 1),
    "batch4": (True, False, 4),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("task", TASKS)
def test_iteration(benchmark, task, variant, size):
    channels_last, bf16, batch = VARIANTS[variant]
    step, _, _ = make_step(task, size, batch, torch.device("cpu"), channels_last,
                           autocast_dtype=torch.bfloat16 if bf16 else None)
    for _ in range(2):
        step()
    benchmark.extra_info.update(task=task, size=size, variant=variant, images=batch,
                                threads=torch.get_num_threads())
    benchmark.pedantic(step, rounds=6, iterations=1)
