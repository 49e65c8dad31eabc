"""Seconds per iteration of each task, plain memory format vs channels-last (the same function).

    OMP_NUM_THREADS=1 python -m pytest benchmarks/bench_iteration.py --benchmark-group-by=param:task
    DOUBLEDIP_BENCH_SIZES=256,512 ...   # sizes (default 256)

Each benchmark round is one optimisation step of a task's problem (forward, loss, backward, Adam),
after warm-up steps; ratios are meaningful only within one run on one machine.
"""
import os

import numpy as np
import pytest
import torch

from doubledip.engine.io import load_image
from doubledip.engine.tasks import dehazing, pair, segmentation, separation, watermark

SIZES = [int(s) for s in os.environ.get("DOUBLEDIP_BENCH_SIZES", "256").split(",")]


def _image(size, seed=0):
    return load_image(np.random.default_rng(seed).random((size, size, 3)).astype(np.float32))


def _mask(size):
    m = torch.zeros(1, 1, size, size)
    m[..., size // 3: 2 * size // 3, size // 4: 3 * size // 4] = 1
    return m


PROBLEMS = {  # task -> (factory(size), stage benchmarked)
    "separate": (lambda s: separation.SeparationProblem(_image(s), (8000,), 0), 0),
    "separate_pair": (lambda s: pair.PairProblem(_image(s), _image(s, 1), (4000,), 0), 0),
    "segment": (lambda s: segmentation.SegmentationProblem(_image(s), _mask(s), 1 - _mask(s), (2000, 4000), 0), 1),
    "dehaze": (lambda s: dehazing.DehazeProblem(_image(s), torch.tensor([0.8, 0.8, 0.8]), False, (4000,), 0), 0),
    "remove_watermark": (lambda s: watermark.HintedWatermarkProblem(_image(s), _mask(s), (4000, 7000), 0), 1),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("task", sorted(PROBLEMS))
def test_iteration(benchmark, task, memory_format, size):
    factory, stage = PROBLEMS[task]
    problem = factory(size)
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    for net in problem.nets.values():
        net.set_memory_format(fmt)
    optimizer = torch.optim.Adam(problem.nets.parameters(), lr=1e-3)
    k = [10]  # past the first iterations' special cases

    def step():
        optimizer.zero_grad(set_to_none=True)
        problem.step(stage, k[0], False, False).loss.backward()
        optimizer.step()
        k[0] += 1

    for _ in range(2):
        step()
    benchmark.extra_info.update(task=task, size=size, memory_format=memory_format,
                                threads=torch.get_num_threads())
    benchmark.pedantic(step, rounds=8, iterations=1)
