"""Training-mode BatchNorm fused with the LeakyReLU after it (the same function, fewer passes).

Every BatchNorm of the generators (ALGORITHM.md section 2) uses batch statistics and, but for the
one at the start of each merge block, is followed by LeakyReLU(0.2). Run as two PyTorch ops,
the pair sweeps the activation tensor five times forward (statistics, normalise, activation read +
write) and reads it back in four sweeps backward; on a CPU these are memory-bound and cost 12-17%
of a whole step (benchmarks/experiments/README.md, earlier measurements). ``BatchNormAct2d`` runs the pair as one op on
the C++ core for channels-last float32 CPU tensors: one statistics sweep and one normalise +
activate sweep forward, two sweeps backward (the activation's sign recomputed from the input, so
the output is not read back); about 1.4-2.2x faster than the pair on the tensors the method uses.

Everything else (other dtypes or layouts, CUDA, autocast, ``torch.compile``, tracing for export,
``DOUBLEDIP_BACKEND=torch``) runs the plain pair: ``F.batch_norm`` then ``F.leaky_relu`` in place.
The fused op keeps the module's running statistics up to date as ``F.batch_norm`` does (the
method never uses them; state dicts stay comparable). It sums in double over float partial sums,
so it agrees with a float64 reference at least as closely as PyTorch's float32 op does
(tests/test_cpu_layers.py).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from doubledip.kernels._dispatch import cpp_layer_applies


# Below this many elements the autograd.Function's fixed cost (about 20 us more than the two
# native ops) outweighs the saved sweeps (measured, 1 thread: even at 32 x 32 x 32).
MIN_FUSED_NUMEL = 1 << 15


class BatchNormAct2d(nn.BatchNorm2d):
    """``BatchNorm2d`` (batch statistics) then ``LeakyReLU(slope)``; ``slope=None``: no activation.

    Input and output N x C x H x W. Same parameters, buffers and state dict as ``nn.BatchNorm2d``.
    ``inplace``: the plain path applies the activation in place on BatchNorm's output (its backward
    then keeps one tensor less; the same numbers).
    """

    def __init__(self, num_features: int, slope: Optional[float] = 0.2, inplace: bool = True):
        super().__init__(num_features)
        if slope is not None and not slope > 0:
            # the fused backward reads the activation's sign from z; a slope <= 0 breaks that
            raise ValueError(f"slope must be > 0 or None, got {slope}")
        self.slope = None if slope is None else float(slope)
        self.inplace = inplace

    def extra_repr(self) -> str:
        return super().extra_repr() + f", slope={self.slope}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fusable(x):
            self.num_batches_tracked.add_(1)
            return _BatchNormAct.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                       float(self.eps), float(self.momentum), self.slope)
        y = super().forward(x)
        return y if self.slope is None else F.leaky_relu(y, self.slope, inplace=self.inplace)

    def _fusable(self, x: torch.Tensor) -> bool:
        return (self.training and self.affine and self.momentum is not None and self.running_mean is not None
                and self.weight.dtype == torch.float32 and x.shape[0] * x.shape[2] * x.shape[3] > 1
                and x.numel() >= MIN_FUSED_NUMEL and cpp_layer_applies(x))


class _BatchNormAct(torch.autograd.Function):
    """The fused op on the C++ core (channels-last float32 CPU; see ``doubledip.bindings.ops``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, slope):
        from doubledip.bindings import ops

        weight, bias = weight.detach().contiguous(), bias.detach().contiguous()
        y, mean, invstd = ops.bn_act_fwd(x, weight, bias, running_mean, running_var, eps, momentum, slope)
        ctx.slope = slope
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        return y

    @staticmethod
    def backward(ctx, grad):
        from doubledip.bindings import ops

        x, weight, bias, mean, invstd = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        dx, dweight, dbias = ops.bn_act_bwd(grad, x, weight, bias, mean, invstd, ctx.slope)
        return dx, dweight, dbias, None, None, None, None, None


__all__ = ["BatchNormAct2d"]
