"""Input-noise perturbation ``z + sigma * N(0, 1)``.

The fused backends draw the normals inside the kernel from a counter-based generator (Philox)
keyed by the seed, counter = element index: no noise tensor, deterministic per (seed, backend).
The backends draw different (equally distributed) numbers. Gradient: dz = grad (the noise is a constant).
"""
from __future__ import annotations

import torch

from doubledip.kernels import _ops


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
    """Noise perturbation, dispatched to the fastest available backend."""
    from doubledip.kernels._dispatch import pick

    return pick("perturb", z)(z, sigma, seed)


def _perturb_fused(z, sigma, seed, backend="cpp"):
    """``perturb`` on a fused backend; other dtypes go to the reference."""
    sigma = float(sigma)
    if sigma == 0.0:
        return z
    if z.dtype != torch.float32 or z.numel() == 0:
        return perturb_ref(z, sigma, seed)
    seed = int(seed) & 0x7FFF_FFFF_FFFF_FFFF
    if z.requires_grad and torch.is_grad_enabled():
        return _Perturb.apply(z.contiguous(), sigma, seed, backend)
    return _ops.call("perturb", backend, z.contiguous(), sigma, seed)


class _Perturb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, sigma, seed, backend):
        return _ops.call("perturb", backend, z, sigma, seed)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None
