"""Loss terms of ALGORITHM.md sections 4-5. Blend and exclusion go through the fused kernels.

Every term takes N x C x H x W tensors holding N independent problems and returns the SUM over
the problems of each problem's own loss (for N = 1: the loss itself), so that each problem's
gradient is exactly what it would be alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from doubledip.kernels import blend_loss, exclusion_loss

__all__ = ["blend_sum", "exclusion_sum", "l1_sum", "mse_sum", "masked_l1", "std_loss", "gray_loss", "psnr"]


def _per_item_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


def blend_sum(mask, a: torch.Tensor, b: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Sum over items of the L1/MSE of ``mask*a + (1-mask)*b`` (``a + b`` if mask is None) vs target."""
    return blend_loss(mask, a, b, target, loss) * a.shape[0]  # the fused op returns the mean over items


def exclusion_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over items of the 3-level exclusion loss (section 4)."""
    return exclusion_loss(a, b) * a.shape[0]


def l1_sum(a: torch.Tensor, b) -> torch.Tensor:
    """Sum over items of ``L1(a, b)`` (b may broadcast, e.g. a constant)."""
    return _per_item_mean((a - b).abs()).sum()


def mse_sum(a: torch.Tensor, b) -> torch.Tensor:
    """Sum over items of ``MSE(a, b)``."""
    return _per_item_mean((a - b).pow(2)).sum()


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``ExtL1 = L1(m*a, m*b) / mean(|m|)`` per item (L1 restricted to the mask, normalised by
    its area), summed over items."""
    return (_per_item_mean((mask * a - mask * b).abs()) / _per_item_mean(mask.abs())).sum()


def std_loss(x: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between each pixel of the channel mean of ``x`` and its 5x5 local mean
    (valid convolutions, no padding), summed over items. x: N x C x H x W, H, W >= 5."""
    g = x.mean(dim=1, keepdim=True)
    box = torch.full((1, 1, 5, 5), 1.0 / 25, device=x.device, dtype=x.dtype)
    # The reference convolves with a centred 5x5 delta: that is exactly the valid crop below.
    return _per_item_mean((g[:, :, 2:-2, 2:-2] - F.conv2d(g, box)).pow(2)).sum()


def gray_loss(m: torch.Tensor) -> torch.Tensor:
    """``1 / L1(m, 0.5)`` per item, summed: pushes a mask away from 0.5, toward binary."""
    return (1.0 / _per_item_mean((m - 0.5).abs())).sum()


def psnr(target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """PSNR with data range 1 per item: N x ... -> (N,). Stays on the device."""
    mse = _per_item_mean((target - estimate).pow(2))
    return -10.0 * torch.log10(mse.clamp_min(1e-20))
