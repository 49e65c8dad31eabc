"""Multi-level exclusion loss (ALGORITHM.md section 4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
