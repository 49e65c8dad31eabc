"""Peak memory of a task's steps in a fresh process (what a user's process pays), per task,
variant (reference, low_memory) and size; with --reference-code, the authors' code beside it.

Each benchmark runs one child process: imports, the problem built, 3 steps of
``doubledip.bench.variant_step`` (authors: their model built, 3 iterations of their own loop;
``benchmarks.authors.peak_child``). ``extra_info``: ``peak_rss_mb`` (the child's peak resident
set, ``VmHWM``), ``import_rss_mb`` (its peak after importing torch and doubledip, before any
work) and on CUDA ``cuda_peak_mb``. The time recorded is the child's whole run (startup
included): a memory measurement, not a speed one.
"""
from __future__ import annotations

import pytest

from doubledip.bench import peak_memory

MEMORY_VARIANTS = ("reference", "low_memory")
STEPS = 3


def _record(benchmark, run, **info):
    found = {}

    def once():
        found.update(run())

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update(kind="memory", **info, **{k: round(v, 1) if isinstance(v, float) else v
                                                         for k, v in found.items()})


@pytest.mark.parametrize("variant", MEMORY_VARIANTS)
def test_peak_memory(benchmark, task, variant, size, device):
    benchmark.group = f"memory {task} {size} {device.type}"
    _record(benchmark, lambda: peak_memory(task, size, 1, device.type, variant, STEPS),
            side="ours", task=task, variant=variant, size=size, device=device.type, steps=STEPS)


def test_peak_memory_authors(benchmark, reference_code, task, size, device):
    from benchmarks import authors

    if device.type != "cpu":
        pytest.skip("the authors' code runs on the CPU here (through the shims)")
    benchmark.group = f"memory {task} {size} {device.type}"
    _record(benchmark, lambda: authors.peak_memory(reference_code, task, size, STEPS),
            side="authors", task=task, variant="authors", size=size, device=device.type, steps=STEPS)
