"""Coupled (grouped) generators and batched problems against the plain, one-net-at-a-time path."""
import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine.config import DEHAZE, LAYER5, SEGMENT, UNetConfig
from doubledip.engine.io import load_image
from doubledip.engine.results import public_fields
from doubledip.engine.tasks import dehazing, pair, segmentation, separation, watermark
from doubledip.engine.nets.unet import SkipUNet

H, W = 22, 30


def _image(seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / 30
    base = np.stack([np.sin(5 * xx + seed), np.cos(4 * yy), xx * yy], -1) * 0.4 + 0.5
    return np.clip(base + 0.05 * rng.standard_normal((H, W, 3)), 0, 1).astype(np.float32)


def _hint(shift=0):
    h = np.zeros((H, W), np.float32)
    h[6:14, 8 + shift:20 + shift] = 1
    return h


@pytest.mark.parametrize("cfg", [LAYER5, DEHAZE, SEGMENT, UNetConfig(2, 1, (8, 16, 32, 64), (0, 0, 0, 4), 3)], ids=str)
def test_grouped_generators_equal_separate_ones(cfg):
    """K copies as one grouped module: outputs and every gradient equal K separate nets (float64)."""
    torch.manual_seed(0)
    nets = [SkipUNet(cfg).double() for _ in range(3)]
    group = SkipUNet.stack(nets)
    h, w = cfg.padded_size(40, 70)
    zs = [torch.rand(1, cfg.in_channels, h, w, dtype=torch.float64) / 100 for _ in range(3)]
    y = group(torch.cat(zs, 1))
    ys = [n(z) for n, z in zip(nets, zs)]
    torch.testing.assert_close(y, torch.cat(ys, 1), atol=1e-13, rtol=0)
    target = torch.rand_like(y)
    (y - target).abs().mean().backward()
    (torch.cat(ys, 1) - target).abs().mean().backward()
    grads = dict(group.named_parameters())
    for k, net in enumerate(nets):
        for name, p in net.named_parameters():
            if p.grad is None:  # the unused conv biases (unet._conv): None in both
                assert grads[name].grad is None
                continue
            torch.testing.assert_close(grads[name].grad.chunk(3, 0)[k], p.grad, atol=1e-13, rtol=1e-9)
    for k, plain in enumerate(group.unbind()):
        for a, b in zip(plain.state_dict().values(), nets[k].state_dict().values()):
            assert torch.equal(a, b)


def test_stack_rejects_mixed_configs():
    with pytest.raises(ValueError, match="one UNetConfig"):
        SkipUNet.stack([SkipUNet(LAYER5), SkipUNet(DEHAZE)])


def _problems(task, images, seeds):
    x = torch.cat([load_image(im) for im in images])
    if task == "separate":
        return separation.SeparationProblem(x, (8,), seeds)
    if task == "separate_pair":
        return pair.PairProblem(x, torch.flip(x, dims=(-1,)), (8,), seeds)
    if task == "segment":
        fg = torch.from_numpy(_hint())[None, None].expand(len(images), 1, H, W)
        return segmentation.SegmentationProblem(x, fg, 1 - fg, (4, 8), seeds)
    if task == "dehaze":
        return dehazing.DehazeProblem(x, torch.tensor([[0.9, 0.8, 0.7]] * len(images)), True, (8,), seeds)
    hint = torch.from_numpy(_hint())[None, None].expand(len(images), 1, H, W)
    return watermark.HintedWatermarkProblem(x, hint, (4, 8), seeds)


def _to_float64(value):
    from doubledip.engine.inputs import Augmentations

    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.double()
    if isinstance(value, Augmentations):
        return Augmentations(value.base.double())
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float64(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float64(v) for k, v in value.items()}
    return value


def _double(problem):
    """The problem in float64 (test-only): in float32 the BatchNorm backward after the first conv
    (noise inputs of variance ~1e-5) cancels catastrophically, leaving ~1% rounding in some
    gradients whichever way they are computed; float64 compares the functions themselves."""
    for k, v in vars(problem).items():
        if k != "nets":
            setattr(problem, k, _to_float64(v))
    problem.nets.double()
    return problem


@pytest.mark.parametrize("task", ["separate", "separate_pair", "segment", "dehaze", "remove_watermark"])
def test_a_batched_step_gives_each_image_its_own_gradients(task):
    """Two images in one problem: the loss is the sum of the two single-image losses and every
    parameter gradient of image b equals the gradient of image b's problem run alone."""
    images, seeds = [_image(0), _image(1)], [11, 12]
    batched = _double(_problems(task, images, seeds))
    singles = [_double(_problems(task, [im], [s])) for im, s in zip(images, seeds)]
    stage = len(batched.stage_iterations) - 1
    for p in [batched] + singles:
        for s in range(stage + 1):  # the nets as the solver has them in that stage
            p.begin_stage(s)
        for net in p.nets.values():
            net.set_memory_format(torch.contiguous_format)
        loss = p.step(stage, 2, False, True).loss
        loss.backward()
        p.loss = loss.detach()
    assert float(batched.loss) == pytest.approx(sum(float(s.loss) for s in singles), rel=1e-12)
    for group, net in batched.nets.items():
        members = len(batched.members[group])
        # tolerance relative to the group's largest gradient (a gradient with a tiny scale of
        # its own is rounding noise)
        scale = max(float(p.grad.abs().max()) for s in singles for p in s.nets[group].parameters()
                    if p.grad is not None)
        for name, param in net.named_parameters():
            if param.dim() == 0:
                continue
            if param.grad is None:  # the unused conv biases (unet._conv): None alone too
                assert all(single.nets[group].get_parameter(name).grad is None for single in singles)
                continue
            chunks = param.grad.chunk(2 * members, 0)
            for b, single in enumerate(singles):
                want = single.nets[group].get_parameter(name).grad
                got = torch.cat(chunks[b * members:(b + 1) * members])
                torch.testing.assert_close(got, want, atol=1e-10 * scale, rtol=1e-7, msg=f"{group}.{name}")


CASES = {
    "separate": ([_image(0), _image(1)], {}, lambda im, c, i: dd.separate(im, c)),
    "separate_pair": ([(_image(0), _image(2)), (_image(1), _image(3))], {},
                      lambda im, c, i: dd.separate_pair(*im, c)),
    "segment": ([_image(0), _image(1)], {"fg_hints": [_hint(), _hint(2)], "bg_hints": [1 - _hint(), 1 - _hint(2)]},
                lambda im, c, i: dd.segment(im, c, fg_hint=_hint(2 * i), bg_hint=1 - _hint(2 * i))),
    "dehaze": ([_image(0), _image(1)], {"passes": 1}, lambda im, c, i: dd.dehaze(im, c, passes=1)),
    "remove_watermark": ([_image(0), _image(1)], {"hints": [_hint(), _hint(2)]},
                         lambda im, c, i: dd.remove_watermark(im, _hint(2 * i), c)),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_batch_returns_what_one_at_a_time_runs_return(task):
    """One iteration (the outputs come before any optimiser step, so no rounding is amplified by
    Adam): image i of a batch equals a run of its own with seed + i."""
    images, options, single = CASES[task]
    stages = 2 if task in ("segment", "remove_watermark") else 1
    cfg = dd.SolverConfig(iterations=stages, repeats=1, seed=7, channels_last=False)
    results = dd.batch(task, images, cfg, **options)
    assert len(results) == len(images)
    for i, (im, res) in enumerate(zip(images, results)):
        alone = single(im, cfg.replace(seed=7 + i), i)
        assert res.config.seed == 7 + i
        for name in public_fields(res):
            a, b = getattr(res, name), getattr(alone, name)
            for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
                np.testing.assert_allclose(x, y, atol=1e-4 if stages == 1 else 2e-2, err_msg=f"{task}.{name}")


def test_batch_errors():
    with pytest.raises(ValueError, match=r"unknown task 'colorize'; expected one of \[.*'separate'"):
        dd.batch("colorize", [_image(0)])
    with pytest.raises(ValueError, match="jointly"):
        dd.batch("remove_watermark_multi", [_image(0)])
    with pytest.raises(ValueError, match="one size"):
        dd.batch("separate", [_image(0), np.zeros((H + 2, W, 3), np.float32)], dd.SolverConfig(iterations=1))
    with pytest.raises(ValueError, match="one entry per image"):
        dd.batch("segment", [_image(0), _image(1)], fg_hints=[_hint()], bg_hints=[_hint()])
    with pytest.raises(TypeError, match="unexpected options"):
        dd.batch("separate", [_image(0)], hints=[_hint()])
    with pytest.raises(ValueError, match="is empty"):
        dd.batch("separate", [])
    with pytest.raises(ValueError, match="needs hints"):
        dd.batch("remove_watermark", [_image(0)])


def test_fast_separation_batch_averages_each_images_own_layers():
    """Fast mode's averaged layers (two tracked steps: 0 and 8) per image of a batch equal runs of
    their own (Adam's 8 steps amplify the grouped convolutions' rounding: a loose tolerance; a
    mix-up between images would be off by the images' difference, about 0.3)."""
    images = [_image(0), _image(1)]
    cfg = dd.SolverConfig(iterations=separation.TRACK_EVERY + 1, seed=3, mode="fast", early_stop=False,
                          channels_last=False)
    results = dd.batch("separate", images, cfg)
    for i, (im, res) in enumerate(zip(images, results)):
        alone = dd.separate(im, cfg.replace(seed=3 + i))
        for x, y in zip(res.layers, alone.layers):
            np.testing.assert_allclose(x, y, atol=3e-2)  # measured: at most 0.012
    assert np.abs(results[0].layers[0] - results[1].layers[0]).max() > 0.1
