"""Multi-level exclusion loss (ALGORITHM.md section 4).

Per level l (x_0 = the image, x_{l+1} = 2x2 average pool of x_l) and direction d (x: along H,
y: along W), the fused backends compute M[l, n, d, j, i] = mean over positions of
psi(grad a_j)^2 psi(grad b_i)^2 in one pass per level, then
    loss = sum(M^(1/4)) / (2 L C^2 N)
    dloss/dM = grad * 0.25 M^(-3/4) / (2 L C^2 N)     (0 where M = 0, where the reference has inf/nan)
and the backward runs coarse to fine: each level's kernel adds a quarter of the coarser level's
total gradient to each pixel of its 2x2 pool window (the pool's adjoint), so the finest level
writes the final gradients of a and b once.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from doubledip.kernels import _checks, _dispatch, _ops

_OP = "exclusion_loss"


def _squashed_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """psi(forward differences) of ``x`` (N x C x H x W) along H (``gx``) and W (``gy``)."""
    gx = x[:, :, 1:, :] - x[:, :, :-1, :]
    gy = x[:, :, :, 1:] - x[:, :, :, :-1]
    # psi(g) = 2 * sigmoid(g) - 1 (= tanh(g / 2), but kept in the reference's form)
    return 2 * torch.sigmoid(gx) - 1, 2 * torch.sigmoid(gy) - 1


def _pair_terms(ga: torch.Tensor, gb: torch.Tensor) -> torch.Tensor:
    """Sum over the 9 channel pairs (j of a, i of b) of mean(ga_j^2 * gb_i^2)^(1/4), per item: (N,)."""
    # (N, Ca, 1, h, w) * (N, 1, Cb, h, w) -> per-pair spatial mean (N, Ca, Cb)
    prod = ga.pow(2).unsqueeze(2) * gb.pow(2).unsqueeze(1)
    return prod.mean(dim=(3, 4)).pow(0.25).sum(dim=(1, 2))


def exclusion_loss_ref(a: torch.Tensor, b: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """Plain-torch exclusion loss of two N x 3 x H x W images: scalar, mean over the N items.

    ``Excl = (sum_x / (levels * 9) + sum_y / (levels * 9)) / 2``; each next level is a 2x2 average pool.
    """
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"exclusion_loss expects two N x C x H x W tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    n_pairs = a.shape[1] * b.shape[1]
    total_x = a.new_zeros(a.shape[0])
    total_y = a.new_zeros(a.shape[0])
    for level in range(levels):
        if level:
            a, b = F.avg_pool2d(a, 2, 2), F.avg_pool2d(b, 2, 2)
        gxa, gya = _squashed_gradients(a)
        gxb, gyb = _squashed_gradients(b)
        total_x = total_x + _pair_terms(gxa, gxb)
        total_y = total_y + _pair_terms(gya, gyb)
    per_item = (total_x / (levels * n_pairs) + total_y / (levels * n_pairs)) / 2
    return per_item.mean()


def exclusion_loss(a: torch.Tensor, b: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """``exclusion_loss_ref`` on the backend that ``_dispatch.resolve`` picks for a's device.

    a, b: floating N x C x H x W tensors of one shape and device; levels: an int >= 1. Anything
    else raises.
    """
    _checks.image_batch(_OP, "a", a)
    _checks.like(_OP, "b", b, "a", a)
    if not _checks.integer(levels):
        raise TypeError(f"{_OP}: levels must be an int, got {type(levels).__name__}")
    if levels < 1:
        raise ValueError(f"{_OP}: levels must be >= 1, got {levels}")
    levels = int(levels)
    backend = _dispatch.resolve(a.device)
    if backend != "torch":
        unsupported = _unsupported(a, b, levels)
        if unsupported is not None:
            backend = _dispatch.fall_back(_OP, backend, *unsupported)
    if backend == "torch":
        return exclusion_loss_ref(a, b, levels)
    return _ExclusionLoss.apply(a.contiguous(), b.contiguous(), levels, backend)


def _unsupported(a, b, levels: int):
    """(reason, detail) when the fused kernels do not handle these valid inputs, else None."""
    for name, x in (("a", a), ("b", b)):
        if x.dtype != torch.float32:
            return "tensors other than float32", f"{name} is {x.dtype}"
    n, c, h, w = a.shape
    if n == 0 or c == 0:
        return "empty tensors", f"a {tuple(a.shape)}"
    # every level must have at least 2 rows and columns (else its mean is empty: nan in the reference)
    coarsest = 2 ** (levels - 1)
    if h // coarsest < 2 or w // coarsest < 2:
        return ("images too small for the pyramid",
                f"{h} x {w} with {levels} levels: the coarsest would be {h // coarsest} x {w // coarsest}, "
                "fused needs at least 2 x 2")
    return None


def _primitives(backend: str):
    """The module with ``avg_pool2``, ``excl_means`` and ``excl_grad`` of ``backend`` (``cpp`` or ``triton``)."""
    if backend == "cpp":
        from doubledip.bindings import ops

        return ops
    if backend == "triton":
        from doubledip.kernels import _triton_exclusion

        return _triton_exclusion
    raise ValueError(f"{_OP}: no fused primitives for backend {backend!r}")


def _pool_fake(a, b, backend):
    n, c, h, w = a.shape
    return a.new_empty(n, c, h // 2, w // 2), b.new_empty(n, c, h // 2, w // 2)


@_ops.primitive("doubledip::avg_pool2", _pool_fake)
def _avg_pool2(a: Tensor, b: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    return tuple(_primitives(backend).avg_pool2(a, b))


def _means_fake(a, b, backend):
    n, c = a.shape[:2]
    return a.new_empty(n, 2, c, c)


@_ops.primitive("doubledip::excl_means", _means_fake)
def _excl_means(a: Tensor, b: Tensor, backend: str) -> Tensor:
    return _primitives(backend).excl_means(a, b)


def _grad_fake(a, b, k, gup_a, gup_b, backend):
    return torch.empty_like(a), torch.empty_like(b)


@_ops.primitive("doubledip::excl_grad", _grad_fake)
def _excl_grad(a: Tensor, b: Tensor, k: Tensor, gup_a: Optional[Tensor], gup_b: Optional[Tensor],
               backend: str) -> tuple[Tensor, Tensor]:
    return tuple(_primitives(backend).excl_grad(a, b, k, gup_a, gup_b))


class _ExclusionLoss(torch.autograd.Function):
    """Forward: L-1 pools + L means passes; backward: L gradient passes, coarse to fine."""

    @staticmethod
    def forward(ctx, a, b, levels, backend):
        pyramid = [(a, b)]
        for _ in range(levels - 1):
            pyramid.append(_avg_pool2(*pyramid[-1], backend))
        means = torch.stack([_excl_means(x, y, backend) for x, y in pyramid])  # (L, N, 2, C, C)
        n, c = a.shape[:2]
        denom = 2 * levels * c * c * n
        ctx.save_for_backward(means, *[t for pair in pyramid for t in pair])
        ctx.cfg = (levels, backend, denom)
        return means.clamp_min(0).pow(0.25).sum() / denom

    @staticmethod
    def backward(ctx, grad):
        means, *flat = ctx.saved_tensors
        levels, backend, denom = ctx.cfg
        pos = means > 0
        # d(M^(1/4))/dM = 0.25 M^(-3/4); kept finite where M = 0
        dmeans = torch.where(pos, means.clamp_min(1e-30).pow(-0.75), torch.zeros_like(means))
        dmeans = (dmeans * (grad.to(means.dtype) * (0.25 / denom))).contiguous()
        gup_a = gup_b = None
        for level in reversed(range(levels)):
            x, y = flat[2 * level], flat[2 * level + 1]
            gup_a, gup_b = _excl_grad(x, y, dmeans[level].contiguous(), gup_a, gup_b, backend)
        return gup_a, gup_b, None, None
