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

from typing import Optional

import torch
from torch import Tensor

from doubledip.kernels import _checks, _dispatch, _ops

LOSSES = ("l1", "mse")
_OP = "blend_loss"


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
    """``blend_loss_ref`` on the backend that ``_dispatch.resolve`` picks for a's device.

    a, b, target: floating N x C x H x W tensors of one shape and device; mask: None, a number or
    a floating tensor on that device that broadcasts to a's shape. Anything else raises.
    """
    _check_inputs(mask, a, b, target, loss)
    backend = _dispatch.resolve(a.device)
    mode = _mask_mode(mask, a)
    if backend != "torch":
        unsupported = _unsupported(mask, a, b, target, mode)
        if unsupported is not None:
            backend = _dispatch.fall_back(_OP, backend, *unsupported)
    if backend == "torch":
        return blend_loss_ref(mask, a, b, target, loss)
    if not isinstance(mask, (torch.Tensor, type(None))):
        mask = torch.tensor(float(mask), dtype=torch.float32, device=a.device)
    mask = mask.contiguous() if mask is not None else None
    return _BlendLoss.apply(mask, a.contiguous(), b.contiguous(), target.contiguous(),
                            mode[0], mode[1], loss == "mse", backend)


def _check_inputs(mask, a, b, target, loss) -> None:
    if loss not in LOSSES:
        raise ValueError(f"{_OP}: loss must be one of {LOSSES}, got {loss!r}")
    _checks.image_batch(_OP, "a", a)
    _checks.like(_OP, "b", b, "a", a)
    _checks.like(_OP, "target", target, "a", a)
    if mask is None or _checks.real(mask):
        return
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{_OP}: mask must be None, a number or a tensor, got {type(mask).__name__}")
    _checks.floating_tensor(_OP, "mask", mask)
    _checks.same_device(_OP, "mask", mask, "a", a)
    # broadcasting may expand the mask, never a: each of its (trailing-aligned) dims is 1 or a's
    shape = tuple(mask.shape)
    if len(shape) > 4 or any(m not in (1, s) for m, s in zip(reversed(shape), reversed(a.shape))):
        raise ValueError(f"{_OP}: mask must broadcast to the shape of a {tuple(a.shape)}, got {shape}")


def _mask_mode(mask, a: torch.Tensor):
    """(mode, m_stride) of the fused kernels for ``mask`` (valid), or None when they do not handle it."""
    n, c, h, w = a.shape
    if mask is None:
        return 0, 0
    if not isinstance(mask, torch.Tensor) or mask.numel() == 1:
        return 1, 0
    shape = tuple(mask.shape)
    if shape == (n, 1, 1, 1):
        return 1, 1
    if shape == (n, 1, h, w):
        return 2, 0
    if shape == (n, c, h, w):
        return 3, 0
    return None


def _unsupported(mask, a, b, target, mode):
    """(reason, detail) when the fused kernels do not handle these valid inputs, else None."""
    named = [("mask", mask), ("a", a), ("b", b), ("target", target)]
    for name, x in named:
        if isinstance(x, torch.Tensor) and x.dtype != torch.float32:
            return "tensors other than float32", f"{name} is {x.dtype}"
    if mode is None:
        return ("masks broadcast over the batch or of fewer dims",
                f"mask {tuple(mask.shape)} for a {tuple(a.shape)}; fused: a scalar, N x 1 x 1 x 1, "
                "N x 1 x H x W or N x C x H x W")
    if a.numel() == 0:
        return "empty tensors", f"a {tuple(a.shape)}"
    return None


def _primitives(backend: str):
    """The module with ``blend_fwd`` and ``blend_bwd`` of ``backend`` (``cpp`` or ``triton``)."""
    if backend == "cpp":
        from doubledip.bindings import ops

        return ops
    if backend == "triton":
        from doubledip.kernels import _triton_blend

        return _triton_blend
    raise ValueError(f"{_OP}: no fused primitives for backend {backend!r}")


def _fwd_fake(mask, a, b, t, mode, m_stride, mse, backend):
    return a.new_empty(())


@_ops.primitive("doubledip::blend_fwd", _fwd_fake)
def _blend_fwd(mask: Optional[Tensor], a: Tensor, b: Tensor, t: Tensor, mode: int, m_stride: int,
               mse: bool, backend: str) -> Tensor:
    return _primitives(backend).blend_fwd(mask, a, b, t, mode, m_stride, mse)


def _bwd_fake(grad, mask, a, b, t, mode, m_stride, mse, need_m, need_a, need_b, need_t, backend):
    if need_m and mode:
        gm = a.new_empty(a.shape[0]) if mode == 1 else torch.empty_like(mask)
    else:
        gm = a.new_empty(0)
    return (gm, torch.empty_like(a) if need_a else a.new_empty(0),
            torch.empty_like(b) if need_b else a.new_empty(0),
            torch.empty_like(t) if need_t else a.new_empty(0))


@_ops.primitive("doubledip::blend_bwd", _bwd_fake)
def _blend_bwd(grad: Tensor, mask: Optional[Tensor], a: Tensor, b: Tensor, t: Tensor, mode: int,
               m_stride: int, mse: bool, need_m: bool, need_a: bool, need_b: bool, need_t: bool,
               backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return tuple(_primitives(backend).blend_bwd(grad, mask, a, b, t, mode, m_stride, mse,
                                                need_m, need_a, need_b, need_t))


class _BlendLoss(torch.autograd.Function):
    """Fused forward (one read of each input) and backward (one more read, one write per gradient)."""

    @staticmethod
    def forward(ctx, mask, a, b, target, mode, m_stride, mse, backend):
        ctx.save_for_backward(mask, a, b, target)
        ctx.cfg = (mode, m_stride, mse, backend)
        return _blend_fwd(mask, a, b, target, mode, m_stride, mse, backend)

    @staticmethod
    def backward(ctx, grad):
        mask, a, b, target = ctx.saved_tensors
        mode, m_stride, mse, backend = ctx.cfg
        needs = tuple(bool(x) for x in ctx.needs_input_grad[:4])
        gm, ga, gb, gt = _blend_bwd(grad, mask, a, b, target, mode, m_stride, mse, *needs, backend)
        if needs[0] and mask is not None:
            # mode 1 gives one value per item; a single scalar mask shared by all items sums them
            gm = gm.sum().reshape(mask.shape) if (mode == 1 and m_stride == 0) else gm.reshape(mask.shape)
        else:
            gm = None
        return (gm, ga if needs[1] else None, gb if needs[2] else None, gt if needs[3] else None,
                None, None, None, None)
