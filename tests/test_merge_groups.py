"""Watermark removal's stage 2 runs the clean and watermark nets as one group (merge_groups)."""
from __future__ import annotations

import torch

import doubledip as dd
from doubledip.engine.tasks import watermark


class _Apart(watermark.HintedWatermarkProblem):
    """The same problem with the two nets left apart in stage 2 (what it did before the merge)."""

    def begin_stage(self, stage):
        return False

    def generate(self, group, inputs, ctx=None):
        if group == watermark.JOINT:
            (clean,) = super().generate("clean", inputs[:1], ctx)
            (w,) = super().generate("watermark", inputs[1:], ctx)
            return [clean, w]
        return super().generate(group, inputs, ctx)


def _problem(cls, batch):
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(batch, 3, 64, 64, generator=gen)
    hint = torch.zeros(batch, 1, 64, 64)
    hint[..., 20:40, 16:48] = 1
    problem = cls(images, hint, (5, 5), [7 + b for b in range(batch)])
    for stage in (0, 1):
        problem.begin_stage(stage)
    return problem.nets.double(), problem


def test_merged_stage_two_is_the_same_function():
    """Two images: loss and every gradient of a stage-2 step (float64) equal those with the nets
    apart, member by member; the plain nets handed to export are the same weights."""
    merged_nets, merged = _problem(watermark.HintedWatermarkProblem, 2)
    apart_nets, apart = _problem(_Apart, 2)
    assert sorted(merged.nets) == ["clean_watermark", "mask"] and merged.members["clean_watermark"] == ["clean", "watermark"]
    assert sorted(apart.nets) == ["clean", "mask", "watermark"]
    for p in (merged, apart):
        for name, aug in p.inputs.items():
            p.inputs[name] = type(aug)(aug[0].double())
        p.targets = type(p.targets)(p.targets[0].double())
        p.hints = type(p.hints)(p.hints[0].double())
    losses = [p.step(1, 3, False).loss for p in (merged, apart)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-12, atol=0)
    grads = {}
    for b in range(2):
        for m, member in enumerate(("clean", "watermark")):
            for name, p in merged.nets["clean_watermark"].named_parameters():
                q = apart.nets[member].get_parameter(name)
                assert (p.grad is None) == (q.grad is None)  # None: the unused conv biases
                if p.grad is not None:  # copy order per image: clean, watermark
                    grads[(b, member, name)] = (p.grad.chunk(4, 0)[2 * b + m], q.grad.chunk(2, 0)[b])
    assert grads
    for key, (g, want) in grads.items():
        torch.testing.assert_close(g, want, rtol=1e-9, atol=1e-14, msg=str(key))
    fitted_m = merged.fitted({n: v[0] for n, v in merged.inputs.items()}, 1)["nets"]
    fitted_a = apart.fitted({n: v[0] for n, v in apart.inputs.items()}, 1)["nets"]
    for member in ("clean", "watermark", "mask"):
        for (k, v), (k2, v2) in zip(fitted_m[member].state_dict().items(), fitted_a[member].state_dict().items()):
            assert k == k2 and torch.equal(v, v2)


def test_a_run_through_both_stages_uses_the_merged_group():
    result = dd.remove_watermark(torch.rand(64, 64, 3).numpy(), hint=_hint(), config=dd.SolverConfig(
        iterations=6, repeats=1, seed=1, device="cpu"))
    assert result.image.shape == (64, 64, 3)
    assert list(result.fitted["nets"]) == ["clean", "watermark", "mask"]


def _hint():
    import numpy as np

    h = np.zeros((64, 64), dtype=np.float32)
    h[20:40, 16:48] = 1
    return h
