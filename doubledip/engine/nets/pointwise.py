"""1x1 convolutions of channels-last activations as one matrix product (the same function).

A 1x1 convolution is, per pixel, ``y = W x + b``. In channels-last memory an ``N x C x H x W``
tensor is an ``(N*H*W) x C`` row-major matrix, so the convolution is ``X W^T + b``: one GEMM,
with no layout conversion. PyTorch sends a single-threaded 1x1 convolution on a small batch to its
generic path, which converts channels-last to contiguous and back (measured here: 1.4-3x slower
forward + backward at 256 x 256; a whole step 2-11% faster with the GEMM). On the CPU only: on a
GPU cuDNN runs channels-last 1x1 convolutions natively, and the GEMM path is unmeasured there.

Grouped (``groups = K`` copies of one generator) convolutions become one GEMM with the
block-diagonal weight ``diag(W_1, ..., W_K)``: K times the multiply-adds of the grouped
convolution, which costs nothing while the layer is memory-bound (few channels per copy), so it is
used up to ``MAX_DENSE_GROUPS`` copies; beyond that, and for any other layout, the ordinary grouped
convolution runs. The off-diagonal zeros are constants: gradients reach only the real weights.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

MAX_DENSE_GROUPS = 4
_gemm_enabled = True


@contextmanager
def as_convolutions():
    """Within: every PointwiseConv2d runs as the plain grouped convolution (for counting the
    method's FLOPs: the block-diagonal GEMM also multiplies its zero blocks)."""
    global _gemm_enabled
    previous, _gemm_enabled = _gemm_enabled, False
    try:
        yield
    finally:
        _gemm_enabled = previous


class PointwiseConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel (same parameters, same state dict) that runs channels-last
    inputs as one matrix product. Input N x Cin x H x W -> N x Cout x H x W, channels-last."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1, bias: bool = True,
                 apply_bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias, groups=groups)
        # False: the bias parameter exists but is not added (a BatchNorm follows; see unet._conv)
        self.apply_bias = apply_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.groups
        bias = self.bias if self.apply_bias else None
        if (not _gemm_enabled or k > MAX_DENSE_GROUPS or x.dim() != 4 or x.device.type != "cpu"
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return self._conv_forward(x, self.weight, bias)
        w = self.weight.view(self.out_channels, self.in_channels // k)
        if k > 1:
            w = torch.block_diag(*w.chunk(k, 0))
        # permute: the channels-last tensor as N x H x W x C (a view, no copy); back the same way
        return F.linear(x.permute(0, 2, 3, 1), w, bias).permute(0, 3, 1, 2)
