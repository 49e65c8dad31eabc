"""Reflection padding of channels-last CPU activations on the C++ core (the same function).

Every k x k convolution of the generators reads a reflection-padded copy of its input. PyTorch's
``reflection_pad2d`` handles channels-last tensors pixel by pixel; its backward scatters every
gradient pixel back separately. In channels-last memory a padded row is the input row (one
contiguous run of W*C floats) plus 2p reflected pixels, so the core copies rows, and its backward
copies the interior and adds the reflected borders in (1.2-1.9x faster forward + backward on
the full-resolution layers, measured). Other inputs take ``nn.ReflectionPad2d``'s own path.
"""
from __future__ import annotations

import torch
from torch import nn

from doubledip.kernels._dispatch import cpp_layer_applies

# Below this many elements the autograd.Function's fixed cost eats the faster copy (measured, 1
# thread: 1.2x at 16 x 128 x 128, even at 32 x 64 x 64, slower at 264 x 16 x 16).
MIN_FUSED_NUMEL = 1 << 18


class ReflectionPad2d(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d(p)`` with the same padding on all four sides; N x C x H x W ->
    N x C x (H + 2p) x (W + 2p), channels-last in and out on the fused path."""

    def __init__(self, padding: int):
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be an int >= 0, got {padding!r}")
        super().__init__(padding)
        self.pad = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        if (p > 0 and x.numel() >= MIN_FUSED_NUMEL and x.shape[2] > p and x.shape[3] > p
                and cpp_layer_applies(x)):
            return _ReflectionPad.apply(x, p)
        return super().forward(x)


class _ReflectionPad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        from doubledip.bindings import ops

        ctx.p, ctx.shape = p, x.shape
        return ops.reflect_pad_fwd(x, p)

    @staticmethod
    def backward(ctx, grad):
        from doubledip.bindings import ops

        return ops.reflect_pad_bwd(grad.contiguous(memory_format=torch.channels_last), ctx.shape, ctx.p), None


__all__ = ["ReflectionPad2d"]
