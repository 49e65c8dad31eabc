"""doubledip.bindings.ops checks what it hands to the C++ core (dtype, device, layout, shapes and
batch sizes) before any address leaves: a wrong input raises a ValueError/TypeError naming what came
and what was expected, and the core is never reached. (The core itself is replaced by a sentinel:
these tests need no build.)"""
from __future__ import annotations

import re

import pytest
import torch

from doubledip.bindings import ops

N, C, H, W = 2, 3, 8, 10
CL = torch.channels_last


class Reached(Exception):
    """Raised by the sentinel core: the wrapper passed its checks and called the core."""


@pytest.fixture
def sentinel_core(monkeypatch):
    def core():
        raise Reached

    monkeypatch.setattr(ops, "_core", core)


def x(*shape, dtype=torch.float32):
    """A contiguous float32 CPU tensor (N x C x H x W by default)."""
    return torch.rand(shape or (N, C, H, W)).to(dtype)


def cl(*shape):
    """A channels-last float32 CPU tensor (N x C x H x W by default)."""
    return x(*shape).contiguous(memory_format=CL)


def adam(fn, params, grads=None, ms=None, vs=None, sqrts=None):
    """Call the Adam wrapper ``fn`` with partners made like ``params`` unless given."""
    same = lambda given: given if given is not None else [torch.zeros_like(p) for p in params]  # noqa: E731
    args = [params, same(grads), same(ms), same(vs)] + ([same(sqrts)] if fn is ops.adam_step_split else [])
    return fn(*args, weight1=0.1, beta2=0.999, value2=0.001, bias2_sqrt=0.1, eps=1e-8, neg_step_size=-0.01)


# (call, error, message): each changes one thing of a valid call (VALID below, same order of ops)
INVALID = {
    "blend_fwd float64 a": (lambda: ops.blend_fwd(None, x(dtype=torch.float64), x(), x(), 0, 0, False),
                            TypeError, "blend_fwd: a must be float32, got torch.float64"),
    "blend_fwd b of another batch": (lambda: ops.blend_fwd(None, x(), x(1, C, H, W), x(), 0, 0, False),
                                     ValueError, f"blend_fwd: b must have shape {(N, C, H, W)}, got {(1, C, H, W)}"),
    "blend_fwd t of another size": (lambda: ops.blend_fwd(None, x(), x(), x(N, C, H, W + 1), 0, 0, False),
                                    ValueError, f"blend_fwd: t must have shape {(N, C, H, W)}, got {(N, C, H, W + 1)}"),
    "blend_fwd non-contiguous t": (lambda: ops.blend_fwd(None, x(), x(), x(N, C, W, H).transpose(2, 3), 0, 0, False),
                                   ValueError, "blend_fwd: t must be contiguous"),
    "blend_fwd a on meta": (lambda: ops.blend_fwd(None, x().to("meta"), x(), x(), 0, 0, False),
                            ValueError, "blend_fwd: a must be a strided CPU tensor, got torch.strided on meta"),
    "blend_fwd 3-D a": (lambda: ops.blend_fwd(None, x(C, H, W), x(C, H, W), x(C, H, W), 0, 0, False),
                        ValueError, f"blend_fwd: a must be N x C x H x W (4-D), got shape {(C, H, W)}"),
    "blend_fwd empty a": (lambda: ops.blend_fwd(None, x(0, C, H, W), x(0, C, H, W), x(0, C, H, W), 0, 0, False),
                          ValueError, "blend_fwd: a must not be empty"),
    "blend_fwd mode-2 mask of another batch": (lambda: ops.blend_fwd(x(N + 1, 1, H, W), x(), x(), x(), 2, 0, False),
                                               ValueError, f"a mode-2 mask must have shape {(N, 1, H, W)}, "
                                                           f"got {(N + 1, 1, H, W)}"),
    "blend_fwd mode-3 mask of pixels": (lambda: ops.blend_fwd(x(N, 1, H, W), x(), x(), x(), 3, 0, False),
                                        ValueError, f"a mode-3 mask must have shape {(N, C, H, W)}"),
    "blend_fwd mode-1 mask per item, wrong count": (
        lambda: ops.blend_fwd(x(N + 1, 1, 1, 1), x(), x(), x(), 1, 1, False),
        ValueError, f"a mode-1 mask with m_stride 1 must hold {N} value(s), got shape {(N + 1, 1, 1, 1)}"),
    "blend_fwd mask without a mode": (lambda: ops.blend_fwd(x(N, 1, H, W), x(), x(), x(), 0, 0, False),
                                      ValueError, "blend_fwd: mode 0 takes no mask (None), got Tensor"),
    "blend_fwd missing mask": (lambda: ops.blend_fwd(None, x(), x(), x(), 2, 0, False),
                               TypeError, "blend_fwd: mask must be a torch.Tensor, got NoneType"),
    "blend_fwd unknown mode": (lambda: ops.blend_fwd(None, x(), x(), x(), 4, 0, False),
                               ValueError, "blend_fwd: mode must be 0, 1, 2 or 3, got 4"),
    "blend_bwd grad of many values": (lambda: ops.blend_bwd(x(2), None, x(), x(), x(), 0, 0, False,
                                                            False, True, True, True),
                                      ValueError, "blend_bwd: grad_out must be a scalar, got a tensor of shape (2,)"),
    "blend_bwd b of another batch": (lambda: ops.blend_bwd(torch.tensor(1.0), None, x(), x(1, C, H, W), x(), 0, 0,
                                                           False, False, True, True, True),
                                     ValueError, f"blend_bwd: b must have shape {(N, C, H, W)}"),
    "avg_pool2 b of another size": (lambda: ops.avg_pool2(x(), x(N, C, H, W - 2)),
                                    ValueError, f"avg_pool2: b must have shape {(N, C, H, W)}, got {(N, C, H, W - 2)}"),
    "excl_means b of another batch": (lambda: ops.excl_means(x(), x(1, C, H, W)),
                                      ValueError, f"excl_means: b must have shape {(N, C, H, W)}"),
    "excl_means 1-row images": (lambda: ops.excl_means(x(N, C, 1, W), x(N, C, 1, W)),
                                ValueError, f"excl_means: the images must be at least 2 x 2, got 1 x {W}"),
    "excl_means float64 b": (lambda: ops.excl_means(x(), x(dtype=torch.float64)),
                             TypeError, "excl_means: b must be float32, got torch.float64"),
    "excl_grad k of another batch": (lambda: ops.excl_grad(x(), x(), x(1, 2, C, C), None, None),
                                     ValueError, f"excl_grad: k must have shape {(N, 2, C, C)}, got {(1, 2, C, C)}"),
    "excl_grad coarser gradient of the wrong size": (
        lambda: ops.excl_grad(x(), x(), x(N, 2, C, C), x(N, C, H // 2 + 1, W // 2), x(N, C, H // 2, W // 2)),
        ValueError, f"excl_grad: gup_a must have shape {(N, C, H // 2, W // 2)}, got {(N, C, H // 2 + 1, W // 2)}"),
    "excl_grad one coarser gradient": (lambda: ops.excl_grad(x(), x(), x(N, 2, C, C), x(N, C, H // 2, W // 2), None),
                                       ValueError, "excl_grad: gup_a and gup_b must both be tensors or both be None"),
    "perturb non-contiguous z": (lambda: ops.perturb(x().transpose(0, 1), 0.1, 1),
                                 ValueError, "perturb: z must be contiguous"),
    "perturb string sigma": (lambda: ops.perturb(x(), "0.1", 1), TypeError, "perturb: sigma must be a number, got str"),
    "perturb float seed": (lambda: ops.perturb(x(), 0.1, 1.0), TypeError, "perturb: seed must be an int, got float"),
    "bn_act_fwd contiguous x": (lambda: ops.bn_act_fwd(x(), x(C), x(C), x(C), x(C), 1e-5, 0.1, 0.2),
                                ValueError, "bn_act_fwd: x must be channels-last"),
    "bn_act_fwd weight of another width": (lambda: ops.bn_act_fwd(cl(), x(C + 1), x(C), None, None, 1e-5, 0.1, None),
                                           ValueError, f"bn_act_fwd: weight must have shape {(C,)}, got {(C + 1,)}"),
    "bn_act_fwd one running statistic": (lambda: ops.bn_act_fwd(cl(), x(C), x(C), x(C), None, 1e-5, 0.1, None),
                                         ValueError, "running_mean and running_var must both be tensors or both be None"),
    "bn_act_fwd float64 running_var": (lambda: ops.bn_act_fwd(cl(), x(C), x(C), x(C), x(C, dtype=torch.float64),
                                                              1e-5, 0.1, None),
                                       TypeError, "bn_act_fwd: running_var must be float32, got torch.float64"),
    "bn_act_fwd one value per channel": (lambda: ops.bn_act_fwd(cl(1, C, 1, 1), x(C), x(C), None, None, 1e-5, 0.1, None),
                                         ValueError, "bn_act_fwd: training-mode BatchNorm needs more than one value"),
    "bn_act_bwd grad of another batch": (lambda: ops.bn_act_bwd(cl(1, C, H, W), cl(), x(C), x(C), x(C), x(C), None),
                                         ValueError, f"bn_act_bwd: grad must have shape {(N, C, H, W)}, got {(1, C, H, W)}"),
    "bn_act_bwd invstd of another width": (lambda: ops.bn_act_bwd(cl(), cl(), x(C), x(C), x(C), x(C - 1), None),
                                           ValueError, f"bn_act_bwd: invstd must have shape {(C,)}, got {(C - 1,)}"),
    "reflect_pad_fwd pad as wide as the image": (lambda: ops.reflect_pad_fwd(cl(), H),
                                                 ValueError, f"reflect_pad_fwd: pad must be in [0, {H}) for a {H} x {W} "
                                                             f"input, got {H}"),
    "reflect_pad_fwd float pad": (lambda: ops.reflect_pad_fwd(cl(), 1.0),
                                  TypeError, "reflect_pad_fwd: pad must be an int, got float"),
    "reflect_pad_fwd contiguous x": (lambda: ops.reflect_pad_fwd(x(), 1), ValueError,
                                     "reflect_pad_fwd: x must be channels-last"),
    "reflect_pad_bwd grad of another size": (lambda: ops.reflect_pad_bwd(cl(N, C, H + 2, W + 2), (N, C, H, W), 2),
                                             ValueError, f"reflect_pad_bwd: grad must have shape {(N, C, H + 4, W + 4)}, "
                                                         f"got {(N, C, H + 2, W + 2)}"),
    "reflect_pad_bwd 3-D shape": (lambda: ops.reflect_pad_bwd(cl(N, C, H + 2, W + 2), (C, H, W), 1),
                                  ValueError, f"reflect_pad_bwd: shape must be a non-empty (N, C, H, W), got {(C, H, W)}"),
    "upsample_bilinear_bwd grad of another batch": (
        lambda: ops.upsample_bilinear_bwd(cl(1, C, 2 * H, 2 * W), (N, C, H, W)),
        ValueError, f"grad must be N x C x OH x OW with the (N, C) = {(N, C)} of shape, got {(1, C, 2 * H, 2 * W)}"),
    "upsample_bilinear_bwd contiguous grad": (lambda: ops.upsample_bilinear_bwd(x(N, C, 2 * H, 2 * W), (N, C, H, W)),
                                              ValueError, "upsample_bilinear_bwd: grad must be channels-last"),
    "adam_step a missing grad": (lambda: adam(ops.adam_step, [x(3), x(4)], grads=[x(3)]),
                                 ValueError, "adam_step: grads must hold one tensor per parameter (2), got 1"),
    "adam_step grad of another shape": (lambda: adam(ops.adam_step, [x(3), x(4)], grads=[x(3), x(5)]),
                                        ValueError, "adam_step: grads[1] must have shape (4,), got (5,)"),
    "adam_step float64 parameter": (lambda: adam(ops.adam_step, [x(3, dtype=torch.float64)]),
                                    TypeError, "adam_step: params[0] must be float32, got torch.float64"),
    "adam_step strided parameter": (lambda: adam(ops.adam_step, [x(4, 6)[:, ::2]]),
                                    ValueError, "adam_step: params[0] must be dense"),
    "adam_step moment laid out otherwise": (lambda: adam(ops.adam_step, [cl(2, 3, 4, 5)], ms=[x(2, 3, 4, 5)]),
                                            ValueError, "adam_step: exp_avgs[0] must be laid out as params[0]"),
    "adam_step_split sqrt on meta": (lambda: adam(ops.adam_step_split, [x(3)], sqrts=[x(3).to("meta")]),
                                     ValueError, "adam_step_split: sqrts[0] must be a strided CPU tensor"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_inputs_never_reach_the_core(sentinel_core, case):
    call, error, message = INVALID[case]
    with pytest.raises(error, match=re.escape(message)):
        call()


# one valid call per wrapper (and the layouts the engine passes): each passes its checks and reaches the core
VALID = {
    "blend_fwd mode 0": lambda: ops.blend_fwd(None, x(), x(), x(), 0, 0, False),
    "blend_fwd mode 1, one scalar": lambda: ops.blend_fwd(torch.rand(()), x(), x(), x(), 1, 0, True),
    "blend_fwd mode 1, per item": lambda: ops.blend_fwd(x(N, 1, 1, 1), x(), x(), x(), 1, 1, False),
    "blend_fwd mode 2": lambda: ops.blend_fwd(x(N, 1, H, W), x(), x(), x(), 2, 0, False),
    "blend_bwd mode 3": lambda: ops.blend_bwd(torch.tensor(1.0), x(), x(), x(), x(), 3, 0, False, True, True, True, True),
    "avg_pool2": lambda: ops.avg_pool2(x(), x()),
    "excl_means": lambda: ops.excl_means(x(), x()),
    "excl_grad finest": lambda: ops.excl_grad(x(), x(), x(N, 2, C, C), x(N, C, H // 2, W // 2), x(N, C, H // 2, W // 2)),
    "excl_grad coarsest": lambda: ops.excl_grad(x(), x(), x(N, 2, C, C), None, None),
    "perturb": lambda: ops.perturb(x(5, 7), 0.1, 2**64 - 1),
    "bn_act_fwd": lambda: ops.bn_act_fwd(cl(), x(C), x(C), x(C), x(C), 1e-5, 0.1, 0.2),
    "bn_act_bwd": lambda: ops.bn_act_bwd(cl(), cl(), x(C), x(C), x(C), x(C), None),
    "reflect_pad_fwd": lambda: ops.reflect_pad_fwd(cl(), 2),
    "reflect_pad_bwd": lambda: ops.reflect_pad_bwd(cl(N, C, H + 4, W + 4), torch.Size((N, C, H, W)), 2),
    "upsample_bilinear_bwd": lambda: ops.upsample_bilinear_bwd(cl(N, C, 2 * H, 2 * W), torch.Size((N, C, H, W))),
    # a channels-last weight whose grad came contiguous: the size-1 dims' strides may differ
    "adam_step": lambda: adam(ops.adam_step, [cl(4, 3, 1, 1), x(5)], grads=[x(4, 3, 1, 1), x(5)]),
    "adam_step_split": lambda: adam(ops.adam_step_split, [cl(2, 3, 4, 5), x(5)]),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_inputs_reach_the_core(sentinel_core, case):
    with pytest.raises(Reached):
        VALID[case]()
