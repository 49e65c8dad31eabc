"""Bilinear upsampling (align_corners=True) whose backward runs on the C++ core for channels-last
CPU activations (the same function).

The forward is PyTorch's own ``F.interpolate``. Its CPU backward for channels-last tensors
scatters every output pixel's gradient to four input pixels one pixel at a time; the core
instead lets every input row gather from the few output rows that read it (no write conflicts,
rows stay in cache): 1.4-2x faster forward + backward on the generators' upsampling layers,
measured. Other inputs take ``nn.Upsample``'s own path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from doubledip.kernels._dispatch import cpp_layer_applies


class BilinearUpsample(nn.Upsample):
    """``nn.Upsample(scale_factor, mode="bilinear", align_corners=True)``: N x C x H x W ->
    N x C x sH x sW."""

    def __init__(self, scale_factor: int = 2):
        if isinstance(scale_factor, bool) or not isinstance(scale_factor, int) or scale_factor < 1:
            raise ValueError(f"scale_factor must be an int >= 1, got {scale_factor!r}")
        super().__init__(scale_factor=scale_factor, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled() and cpp_layer_applies(x):
            return _BilinearUpsample.apply(x, int(self.scale_factor))
        return super().forward(x)


class _BilinearUpsample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.shape = x.shape
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)

    @staticmethod
    def backward(ctx, grad):
        from doubledip.bindings import ops

        return ops.upsample_bilinear_bwd(grad.contiguous(memory_format=torch.channels_last), ctx.shape), None


__all__ = ["BilinearUpsample"]
