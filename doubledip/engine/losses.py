"""Loss terms of ALGORITHM.md sections 4-5. Blend and exclusion go through the fused kernels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from doubledip.kernels import blend_loss, exclusion_loss

__all__ = ["blend_loss", "exclusion_loss", "masked_l1", "std_loss", "gray_loss", "psnr"]


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``ExtL1 = L1(m*a, m*b) / mean(|m|)``: L1 restricted to the mask, normalised by its area."""
    return (mask * a - mask * b).abs().mean() / mask.abs().mean()


def std_loss(x: torch.Tensor) -> torch.Tensor:
    """Mean squared gap between each pixel of the channel mean of ``x`` and its 5x5 local mean
    (valid convolutions, no padding). x: N x C x H x W, H, W >= 5."""
    g = x.mean(dim=1, keepdim=True)
    box = torch.full((1, 1, 5, 5), 1.0 / 25, device=x.device, dtype=x.dtype)
    # The reference convolves with a centred 5x5 delta: that is exactly the valid crop below.
    return (g[:, :, 2:-2, 2:-2] - F.conv2d(g, box)).pow(2).mean()


def gray_loss(m: torch.Tensor) -> torch.Tensor:
    """``1 / L1(m, 0.5)``: pushes a mask away from 0.5, toward binary."""
    return 1.0 / (m - 0.5).abs().mean()


def psnr(target: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """PSNR with data range 1 (a 0-dim tensor; stays on the device)."""
    mse = (target - estimate).pow(2).mean()
    return -10.0 * torch.log10(mse.clamp_min(1e-20))
