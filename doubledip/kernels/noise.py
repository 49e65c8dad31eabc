"""Input-noise perturbation ``z + sigma * N(0, 1)``."""
from __future__ import annotations

import torch


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
