"""The authors' code and ours side by side, one iteration at a time, in one process: task x
size x side. Needs --reference-code PATH (a checkout of github.com/yossigandelsman/DoubleDIP);
skipped with a reason otherwise. CPU only (their CUDA-era code runs behind the shims of
``benchmarks.authors``).

authors: a round is one whole iteration of their own, unmodified ``optimize()`` loop
(``benchmarks.authors.AuthorsLoop``: forward, loss, backward, their best-result tracking,
``torch.optim.Adam``) on the same seeded random image and hint rectangle as ours, in the same
stage (segmentation and the watermark: stage 2, their ``_step2_optimization_closure``), built with
``plot_during_training=False``. ours: one step of ``doubledip.bench.variant_step(..., "reference")``
(reference mode, float32, the same function). report.py: the speed-up (authors' median / ours)
from the same run. Peak memory side by side: test_memory.py (fresh processes).
"""
from __future__ import annotations

import pytest
import torch

from doubledip.bench import variant_step

SIDES = ("authors", "ours")
ROUNDS, WARMUP = 10, 3


@pytest.fixture(scope="module")
def authors_code(reference_code):
    """Their modules importable from the checkout, behind the shims, for this module's tests;
    everything undone after it (shims, sys.path, their modules)."""
    import sys

    from benchmarks import authors

    undo = authors.apply_shims()
    sys.path.insert(0, str(reference_code))
    try:
        yield authors
    finally:
        sys.path.remove(str(reference_code))
        for name in authors.their_modules(reference_code):
            del sys.modules[name]
        undo()


@pytest.mark.parametrize("side", SIDES)
def test_vs_authors(benchmark, request, monkeypatch, tmp_path, reference_code, side, task, size, device):
    if device.type != "cpu":
        pytest.skip("the authors' code runs on the CPU here (through the shims)")
    benchmark.group = f"vs_authors {task} {size}"
    benchmark.extra_info.update(kind="vs_authors", side=side, task=task, size=size, device="cpu",
                                threads=torch.get_num_threads())
    if side == "ours":
        benchmark.pedantic(variant_step(task, size, 1, device, "reference")[0], rounds=ROUNDS,
                           warmup_rounds=WARMUP, iterations=1)
        return
    authors = request.getfixturevalue("authors_code")
    monkeypatch.chdir(tmp_path)  # their save functions write to output/
    (tmp_path / "output").mkdir()
    authors.seed_everything(0)
    model, closure = authors.build(task, size)
    loop = authors.AuthorsLoop(model, closure)
    try:
        benchmark.pedantic(loop.advance, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    finally:
        loop.close()
    benchmark.extra_info["api"] = f"{type(model).__name__}.{closure}"
