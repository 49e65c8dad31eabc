"""Mask blend fused with the reconstruction loss.

y = m a + (1 - m) b (computed as b + m (a - b); mask None: y = a + b), d = y - t over N x C x H x W,
loss = mean |d| (l1) or mean d^2 (mse); with equal item sizes that is also the mean of item means.
Backward, g = dloss/dd = sign(d) / numel (l1; sign(0) = 0) or 2 d / numel (mse):
  dloss/da = g m,  dloss/db = g (1 - m),  dloss/dt = -g,  dloss/dm = g (a - b) summed over the
  dimensions the mask broadcasts along (channels for N x 1 x H x W; everything for a scalar).
Mask modes of the fused kernels: 0 none, 1 one scalar per item (0-dim: one for all, m_stride 0;
N x 1 x 1 x 1: m_stride 1), 2 N x 1 x H x W, 3 N x C x H x W. Other shapes use the reference.
"""
from __future__ import annotations

import torch

from doubledip.kernels import _ops

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


def _mask_mode(mask, a: torch.Tensor):
    """(mode, m_stride) of the fused kernels for ``mask``, or None when they do not handle it."""
    n, c, h, w = a.shape
    if mask is None:
        return 0, 0
    if mask.dim() > 4:
        return None
    if mask.numel() == 1:
        return 1, 0
    shape = tuple(mask.shape)
    if shape == (n, 1, 1, 1):
        return 1, 1
    if shape == (n, 1, h, w):
        return 2, 0
    if shape == (n, c, h, w):
        return 3, 0
    return None


def _blend_loss_fused(mask, a, b, target, loss="l1", backend="cpp"):
    """``blend_loss`` on a fused backend; inputs it does not handle go to the reference."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if isinstance(mask, (int, float)):
        mask = torch.tensor(float(mask), device=a.device)
    tensors = [x for x in (mask, a, b, target) if x is not None]
    mode = _mask_mode(mask, a) if a.dim() == 4 else None
    if (mode is None or a.shape != b.shape or a.shape != target.shape or a.numel() == 0
            or any(x.dtype != torch.float32 or x.device != a.device for x in tensors)):
        return blend_loss_ref(mask, a, b, target, loss)
    mask = mask.contiguous() if mask is not None else None
    return _BlendLoss.apply(mask, a.contiguous(), b.contiguous(), target.contiguous(),
                            mode[0], mode[1], loss == "mse", backend)


class _BlendLoss(torch.autograd.Function):
    """Fused forward (one read of each input) and backward (one more read, one write per gradient)."""

    @staticmethod
    def forward(ctx, mask, a, b, target, mode, m_stride, mse, backend):
        ctx.save_for_backward(mask, a, b, target)
        ctx.cfg = (mode, m_stride, mse, backend)
        return _ops.call("blend_fwd", backend, mask, a, b, target, mode, m_stride, mse)

    @staticmethod
    def backward(ctx, grad):
        mask, a, b, target = ctx.saved_tensors
        mode, m_stride, mse, backend = ctx.cfg
        needs = tuple(bool(x) for x in ctx.needs_input_grad[:4])
        gm, ga, gb, gt = _ops.call("blend_bwd", backend, grad, mask, a, b, target, mode, m_stride,
                                   mse, *needs)
        if needs[0] and mask is not None:
            # mode 1 gives one value per item; a single scalar mask shared by all items sums them
            gm = gm.sum().reshape(mask.shape) if (mode == 1 and m_stride == 0) else gm.reshape(mask.shape)
        else:
            gm = None
        return (gm, ga if needs[1] else None, gb if needs[2] else None, gt if needs[3] else None,
                None, None, None, None)
