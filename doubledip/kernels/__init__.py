"""Fused steps of the Double-DIP loop: each op has a plain-torch reference ``<op>_ref`` (the oracle
and the export path) and a public op that checks its inputs, asks ``_dispatch.resolve`` for the
backend of their device on each call and runs its own reference or fused path.

Ops (batch N >= 1; each returns the mean over items of each item's own value):
- ``blend_loss(mask, a, b, target, loss)``: loss of ``mask*a + (1-mask)*b`` (or ``a + b``) vs target.
- ``exclusion_loss(a, b, levels)``: the multi-level gradient exclusion loss (ALGORITHM.md sec. 4).
- ``perturb(z, sigma, seed)``: ``z + sigma * N(0, 1)``, deterministic per seed.

Backends (``_dispatch``; ``DOUBLEDIP_BACKEND=auto|torch|triton|cpp``): Triton kernels for CUDA tensors
(``_triton_*.py``, imported only when chosen), the C++ core for CPU tensors (``doubledip.bindings``),
the references otherwise; valid inputs a fused backend does not handle go to the reference (logged
once under ``auto``, an error when forced). Each op module defines its fused primitives as
``torch.library`` custom ops for ``torch.compile`` (``_ops``).
"""
from doubledip.kernels.blend import blend_loss, blend_loss_ref
from doubledip.kernels.exclusion import exclusion_loss, exclusion_loss_ref
from doubledip.kernels.noise import perturb, perturb_ref

__all__ = [
    "blend_loss", "blend_loss_ref",
    "exclusion_loss", "exclusion_loss_ref",
    "perturb", "perturb_ref",
]
