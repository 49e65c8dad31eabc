"""The fused primitives as ``torch.library`` custom ops, so that ``torch.compile`` sees each as one
opaque node (with a fake implementation for shapes) instead of tracing into pointer code.

``call(name, backend, *args)`` runs the primitive directly in eager mode (no custom-op overhead)
and through ``torch.ops.doubledip.<name>`` while compiling. The ops are defined when this module is
imported (by the op modules); their implementations import a backend only when first run.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from doubledip.kernels._dispatch import primitives

_GROUP = {"blend_fwd": "blend", "blend_bwd": "blend", "avg_pool2": "exclusion",
          "excl_means": "exclusion", "excl_grad": "exclusion", "perturb": "noise"}


def _compiling() -> bool:
    fn = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(fn and fn())


def call(name: str, backend: str, *args):
    """Run primitive ``name`` of ``backend`` on ``args`` (positional, as the primitive takes them)."""
    if _compiling() and _DEFINED:
        return getattr(torch.ops.doubledip, name)(*args, backend)
    return getattr(primitives(backend, _GROUP[name]), name)(*args)


def _prim(name, backend):
    return getattr(primitives(backend, _GROUP[name]), name)


def _define() -> None:
    lib = torch.library

    @lib.custom_op("doubledip::blend_fwd", mutates_args=())
    def blend_fwd(mask: Optional[Tensor], a: Tensor, b: Tensor, t: Tensor, mode: int, m_stride: int,
                  mse: bool, backend: str) -> Tensor:
        return _prim("blend_fwd", backend)(mask, a, b, t, mode, m_stride, mse)

    @blend_fwd.register_fake
    def _(mask, a, b, t, mode, m_stride, mse, backend):
        return a.new_empty(())

    @lib.custom_op("doubledip::blend_bwd", mutates_args=())
    def blend_bwd(grad: Tensor, mask: Optional[Tensor], a: Tensor, b: Tensor, t: Tensor, mode: int,
                  m_stride: int, mse: bool, need_m: bool, need_a: bool, need_b: bool, need_t: bool,
                  backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return tuple(_prim("blend_bwd", backend)(grad, mask, a, b, t, mode, m_stride, mse,
                                                 need_m, need_a, need_b, need_t))

    @blend_bwd.register_fake
    def _(grad, mask, a, b, t, mode, m_stride, mse, need_m, need_a, need_b, need_t, backend):
        if need_m and mode:
            gm = a.new_empty(a.shape[0]) if mode == 1 else torch.empty_like(mask)
        else:
            gm = a.new_empty(0)
        return (gm, torch.empty_like(a) if need_a else a.new_empty(0),
                torch.empty_like(b) if need_b else a.new_empty(0),
                torch.empty_like(t) if need_t else a.new_empty(0))

    @lib.custom_op("doubledip::avg_pool2", mutates_args=())
    def avg_pool2(a: Tensor, b: Tensor, backend: str) -> tuple[Tensor, Tensor]:
        return _prim("avg_pool2", backend)(a, b)

    @avg_pool2.register_fake
    def _(a, b, backend):
        n, c, h, w = a.shape
        return a.new_empty(n, c, h // 2, w // 2), b.new_empty(n, c, h // 2, w // 2)

    @lib.custom_op("doubledip::excl_means", mutates_args=())
    def excl_means(a: Tensor, b: Tensor, backend: str) -> Tensor:
        return _prim("excl_means", backend)(a, b)

    @excl_means.register_fake
    def _(a, b, backend):
        n, c = a.shape[:2]
        return a.new_empty(n, 2, c, c)

    @lib.custom_op("doubledip::excl_grad", mutates_args=())
    def excl_grad(a: Tensor, b: Tensor, k: Tensor, gup_a: Optional[Tensor], gup_b: Optional[Tensor],
                  backend: str) -> tuple[Tensor, Tensor]:
        return _prim("excl_grad", backend)(a, b, k, gup_a, gup_b)

    @excl_grad.register_fake
    def _(a, b, k, gup_a, gup_b, backend):
        return torch.empty_like(a), torch.empty_like(b)

    @lib.custom_op("doubledip::perturb", mutates_args=())
    def perturb(z: Tensor, sigma: float, seed: int, backend: str) -> Tensor:
        return _prim("perturb", backend)(z, sigma, seed)

    @perturb.register_fake
    def _(z, sigma, seed, backend):
        return torch.empty_like(z)


# torch.library.custom_op arrived in torch 2.4; before that the fused ops still run eagerly
_DEFINED = hasattr(torch.library, "custom_op")
if _DEFINED:
    _define()
