"""Two mixtures of two layers with global weights, unmixed in closed form (the classic method).

The model of two-image separation (ALGORITHM.md 6.2) is linear: ``I1 = a L0 + (1 - a) L1`` and
``I2 = b L0 + (1 - b) L1`` with two scalar weights. Given ``a != b`` the layers follow exactly:
``L0 - L1 = (I1 - I2) / (a - b)`` and ``L1 = I1 - a (L0 - L1)``. What is unknown is the two
numbers, and independent component analysis finds them: the layers' derivatives are sparse
(most pixels of a natural image or a texture sit on no edge) and independent of each other,
their mixtures' are not (Farid & Adelson, "Separating reflections and lighting using independent
components analysis", CVPR 1999; Bronstein et al., "Sparse ICA for blind separation of
transmitted and reflected images", 2005). Here: whiten the two mixtures' derivatives, then take
the rotation whose two outputs are sparsest (least mean absolute value at unit variance); the
inverse of that unmixing holds the layers' directions in mixture space, and the model's rows
summing to one turn those directions into ``a`` and ``b``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# derivatives of the mixtures averaged over POOL x POOL pixels: the mixing is the same at any
# scale, and pooling halves the weight of i.i.d. pixel noise against the layers' edges
# (measured: benchmarks/experiments/suite_fast_vs_reference.md, "The classic unmixing")
POOL = 2
ANGLES = 90  # rotations tried over a quarter turn (the sources' order and signs are free)...
REFINES = 2  # ...then as many around the best, twice: 1 degree, then 1/45, then 1/2000
MAX_SAMPLES = 2 ** 20  # derivatives used, at most (a large image's, evenly spaced)
# the mixtures' derivatives must span two dimensions: the smaller eigenvalue of their
# covariance at least this share of the larger one (two equal mixtures carry one layer only)
MIN_SPREAD = 1e-6
# the weights found must lie in [0, 1] within this (numerical slack; beyond it the mixtures do
# not follow the model), and differ by more than MIN_GAP (else unmixing multiplies the
# mixtures' noise by 1 / (a - b) and more)
WEIGHT_TOLERANCE = 0.02
MIN_GAP = 0.02


class NotSeparable(ValueError):
    """The two mixtures do not determine the weights (they are one mixture, or flat)."""


def _derivatives(image: torch.Tensor) -> torch.Tensor:
    """x and y forward differences of the ``POOL``-averaged 1 x 3 x H x W image, flattened."""
    x = F.avg_pool2d(image, POOL) if min(image.shape[-2:]) >= 4 * POOL else image
    return torch.cat([(x[..., 1:, :] - x[..., :-1, :]).flatten(), (x[..., :, 1:] - x[..., :, :-1]).flatten()])


def _sparsity(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Per angle, the summed mean absolute value of the whitened ``z`` (2 x N) rotated by it."""
    c, s = theta.cos()[:, None], theta.sin()[:, None]
    return torch.cat([(c[i] * z[0] + s[i] * z[1]).abs().mean(1) + (-s[i] * z[0] + c[i] * z[1]).abs().mean(1)
                      for i in torch.arange(len(theta)).split(max(1, 2 ** 22 // z.shape[1]))])


def estimate_weights(image1: torch.Tensor, image2: torch.Tensor) -> tuple[float, float]:
    """The weights ``(a, b)`` of ``I1 = a L0 + (1 - a) L1``, ``I2 = b L0 + (1 - b) L1`` by sparse
    ICA of the mixtures' derivatives; ``a >= b`` (layer 0 is the one image1 holds more of).
    image1, image2: 1 x 3 x H x W. Raises :class:`NotSeparable` when the mixtures do not differ."""
    # on the CPU in float64: two rows of statistics, whatever device the images are on
    x = torch.stack([_derivatives(image1.detach().cpu().double()), _derivatives(image2.detach().cpu().double())])
    if x.shape[1] > MAX_SAMPLES:  # evenly spaced: the statistics need no more
        x = x[:, ::-(-x.shape[1] // MAX_SAMPLES)]
    x = x - x.mean(dim=1, keepdim=True)
    values, vectors = torch.linalg.eigh(x @ x.T / x.shape[1])
    if not values[1] > 0 or values[0] < MIN_SPREAD * values[1]:
        raise NotSeparable("the two mixtures do not determine the weights: their derivatives are "
                           f"{'flat' if not values[1] > 0 else 'proportional'} (one mixture, or one layer)")
    whiten = vectors @ torch.diag(values.rsqrt()) @ vectors.T
    z = whiten @ x
    # the rotation by theta maps z to (c z0 + s z1, -s z0 + c z1); at unit variance the sparsest
    # pair has the least summed mean absolute value. Coarse to fine: ANGLES over the quarter
    # turn, then ANGLES again within a step either side of the best, REFINES times
    step = math.pi / 2 / ANGLES
    theta = torch.arange(ANGLES, dtype=z.dtype) * step
    for _ in range(1 + REFINES):
        t = theta[int(_sparsity(z, theta).argmin())]
        theta = t + torch.linspace(-step, step, ANGLES, dtype=z.dtype)
        step = 2 * step / (ANGLES - 1)
    rotation = torch.stack([torch.stack([t.cos(), t.sin()]), torch.stack([-t.sin(), t.cos()])])
    mixing = torch.linalg.inv(rotation @ whiten)  # columns: the layers' directions (scale free)
    # column 0 is k0 (a, b), column 1 k1 (1 - a, 1 - b): the rows summing to one give
    # mixing @ (k0, k1) = (1, 1)
    k = torch.linalg.solve(mixing, torch.ones(2, dtype=mixing.dtype))
    a, b = float(k[0] * mixing[0, 0]), float(k[0] * mixing[1, 0])
    if a < b:  # the other order of the layers: (1 - a, 1 - b) with the layers swapped
        a, b = 1 - a, 1 - b
    if not (-WEIGHT_TOLERANCE <= b and a <= 1 + WEIGHT_TOLERANCE and a - b > MIN_GAP):
        raise NotSeparable(f"the mixtures' independent components give weights a = {a:.3f}, b = {b:.3f}, "
                           f"not two different weights in [0, 1]: the mixtures do not follow the model")
    a, b = min(a, 1.0), max(b, 0.0)
    return float(a), float(b)


def unmix(image1: torch.Tensor, image2: torch.Tensor, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The layers ``(L0, L1)`` of two mixtures with weights ``a != b``, exactly (not clipped):
    tensors of the images' shape."""
    if a == b:
        raise ValueError(f"the two weights must differ to unmix, got a = b = {a}")
    difference = (image1 - image2) / (a - b)  # L0 - L1
    layer1 = image1 - a * difference
    return layer1 + difference, layer1
