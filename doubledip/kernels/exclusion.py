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

import torch
import torch.nn.functional as F

from doubledip.kernels import _ops


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
    """Exclusion loss, dispatched to the fastest available backend for the tensors' device."""
    from doubledip.kernels._dispatch import pick

    return pick("exclusion_loss", a)(a, b, levels)


def _exclusion_loss_fused(a, b, levels=3, backend="cpp"):
    """``exclusion_loss`` on a fused backend; inputs it does not handle go to the reference."""
    if a.dim() != 4 or a.shape != b.shape:
        return exclusion_loss_ref(a, b, levels)
    n, c, h, w = a.shape
    coarsest = 2 ** (int(levels) - 1) if levels >= 1 else 0
    # every level must have at least 2 rows and columns (else its mean is empty: nan in the reference)
    if (levels < 1 or n == 0 or c == 0 or h // max(coarsest, 1) < 2 or w // max(coarsest, 1) < 2
            or a.dtype != torch.float32 or b.dtype != torch.float32 or a.device != b.device):
        return exclusion_loss_ref(a, b, levels)
    return _ExclusionLoss.apply(a.contiguous(), b.contiguous(), int(levels), backend)


class _ExclusionLoss(torch.autograd.Function):
    """Forward: L-1 pools + L means passes; backward: L gradient passes, coarse to fine."""

    @staticmethod
    def forward(ctx, a, b, levels, backend):
        pyramid = [(a, b)]
        for _ in range(levels - 1):
            pyramid.append(_ops.call("avg_pool2", backend, *pyramid[-1]))
        means = torch.stack([_ops.call("excl_means", backend, x, y) for x, y in pyramid])  # (L, N, 2, C, C)
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
            gup_a, gup_b = _ops.call("excl_grad", backend, x, y, dmeans[level].contiguous(), gup_a, gup_b)
        return gup_a, gup_b, None, None
