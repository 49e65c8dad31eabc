"""Input-noise perturbation ``z + sigma * N(0, 1)``.

The fused backends draw the normals inside the kernel from a counter-based generator (Philox)
keyed by the seed, counter = element index: no noise tensor, deterministic per (seed, backend).
The backends draw different (equally distributed) numbers. Gradient: dz = grad (the noise is a constant).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from doubledip.kernels import _checks, _dispatch, _ops

_OP = "perturb"


def perturb_ref(z: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``z + sigma * N(0, 1)`` with the normal noise drawn from a generator seeded by ``seed``.

    z: any shape. Deterministic for a given (seed, device). ``sigma == 0`` returns ``z`` itself.
    """
    if float(sigma) == 0.0:
        return z
    gen = torch.Generator(device=z.device)
    gen.manual_seed(int(seed) & 0x7FFF_FFFF_FFFF_FFFF)
    return z + sigma * torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)


def perturb(z: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """``perturb_ref``'s distribution on the backend that ``_dispatch.resolve`` picks for z's device.

    z: a floating tensor of any shape; sigma: a finite number >= 0; seed: an int (any, taken mod
    2^63). Anything else raises. The fused backends draw their own numbers (see above).
    """
    _checks.floating_tensor(_OP, "z", z)
    if not _checks.real(sigma):
        raise TypeError(f"{_OP}: sigma must be a real number, got {type(sigma).__name__}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"{_OP}: sigma must be a finite number >= 0, got {sigma}")
    if not _checks.integer(seed):
        raise TypeError(f"{_OP}: seed must be an int, got {type(seed).__name__}")
    sigma = float(sigma)
    if sigma == 0.0:
        return z
    backend = _dispatch.resolve(z.device)
    if backend != "torch":
        unsupported = _unsupported(z)
        if unsupported is not None:
            backend = _dispatch.fall_back(_OP, backend, *unsupported)
    if backend == "torch":
        return perturb_ref(z, sigma, seed)
    seed = int(seed) & 0x7FFF_FFFF_FFFF_FFFF
    if z.requires_grad and torch.is_grad_enabled():
        return _Perturb.apply(z.contiguous(), sigma, seed, backend)
    return _perturb(z.contiguous(), sigma, seed, backend)


def _unsupported(z):
    """(reason, detail) when the fused kernels do not handle this valid z, else None."""
    if z.dtype != torch.float32:
        return "tensors other than float32", f"z is {z.dtype}"
    if z.numel() == 0:
        return "empty tensors", f"z {tuple(z.shape)}"
    return None


def _primitives(backend: str):
    """The module with ``perturb`` of ``backend`` (``cpp`` or ``triton``)."""
    if backend == "cpp":
        from doubledip.bindings import ops

        return ops
    if backend == "triton":
        from doubledip.kernels import _triton_noise

        return _triton_noise
    raise ValueError(f"{_OP}: no fused primitives for backend {backend!r}")


def _perturb_fake(z, sigma, seed, backend):
    return torch.empty_like(z)


@_ops.primitive("doubledip::perturb", _perturb_fake)
def _perturb(z: Tensor, sigma: float, seed: int, backend: str) -> Tensor:
    return _primitives(backend).perturb(z, sigma, seed)


class _Perturb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, sigma, seed, backend):
        return _perturb(z, sigma, seed, backend)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None
