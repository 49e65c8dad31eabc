"""Mask blend fused with the reconstruction loss."""
from __future__ import annotations

import torch

LOSSES = ("l1", "mse")


def blend_loss_ref(mask, a: torch.Tensor, b: torch.Tensor, target: torch.Tensor, loss: str = "l1") -> torch.Tensor:
    """Mean loss of ``mask*a + (1-mask)*b`` (``a + b`` when ``mask`` is None) against ``target``.

    a, b, target: N x C x H x W; mask: None, a scalar (0-dim) tensor, N x 1 x H x W or N x C x H x W.
    Returns a scalar: the mean over items of each item's mean loss (= the mean over all elements).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    blended = a + b if mask is None else mask * a + (1 - mask) * b
    diff = blended - target
    return diff.abs().mean() if loss == "l1" else diff.pow(2).mean()


def blend_loss(mask, a: torch.Tensor, b: torch.Tensor, target: torch.Tensor, loss: str = "l1") -> torch.Tensor:
    """Blend + reconstruction loss, dispatched to the fastest available backend."""
    from doubledip.kernels._dispatch import pick

    return pick("blend_loss", a)(mask, a, b, target, loss)
