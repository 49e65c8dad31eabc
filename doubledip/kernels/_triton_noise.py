"""Triton kernel of ``perturb``: z + sigma * N(0, 1), the normal drawn in-kernel (Philox via tl.randn)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from doubledip.kernels._triton_common import block


@triton.jit
def _perturb_kernel(z_ptr, out_ptr, numel, sigma, seed, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < numel
    z = tl.load(z_ptr + offs, mask=valid, other=0.0)
    # counter = element index: any grid gives the same numbers for a seed
    noise = tl.randn(seed, offs)
    tl.store(out_ptr + offs, z + sigma * noise, mask=valid)


def perturb(z, sigma: float, seed: int):
    """z + sigma * N(0, 1), a new tensor (z float32 contiguous)."""
    out = torch.empty_like(z)
    numel = z.numel()
    bs = block(1024, 8192)
    # scalars may arrive as 0-dim tensors or fp64 under torch.compile: make them plain python
    _perturb_kernel[(triton.cdiv(numel, bs),)](z, out, numel, float(sigma),
                                               int(seed) & 0x7FFF_FFFF_FFFF_FFFF, BLOCK=bs)
    return out
