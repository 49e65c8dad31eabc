"""Baselines that give the suite's numbers a meaning.

Each trivial baseline returns the same result fields as the API function it stands in for, so the
task's scorer rates it the same way. :func:`dark_channel_prior` is the classic single-image
dehazing method (He, Sun, Tang, CVPR 2009) with guided-filter refinement; :func:`inpaint_hint`
the classic answer to a hinted watermark: the region filled from its border, its content unused.
"""
from __future__ import annotations

import numpy as np

__all__ = ["dark_channel_prior", "inpaint_hint", "otsu_mask", "saliency_threshold_mask", "trivial_baselines"]


def _to_tensor(image: np.ndarray):
    import torch
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, received shape {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def dark_channel_prior(image, window: int = 15, omega: float = 0.95, t_min: float = 0.1,
                       radius: int | None = None, eps: float = 1e-3) -> dict:
    """Dehaze ``image`` (``H x W x 3`` float in [0, 1]) with the dark channel prior
    (:func:`doubledip.engine.post.dcp_dehaze`). Returns ``image``, ``transmission``, ``airlight``."""
    from doubledip.engine.post import dcp_dehaze

    clear, t, airlight = dcp_dehaze(_to_tensor(image), window, omega, t_min, radius, eps)
    return {"image": clear[0].permute(1, 2, 0).numpy(), "transmission": t[0, 0].numpy(),
            "airlight": airlight.numpy()}


def inpaint_hint(image, hint) -> np.ndarray:
    """``image`` (H x W x 3 in [0, 1]) with the pixels where ``hint`` (H x W) is above 0.5 filled
    by biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``): H x W x 3 float32."""
    from skimage.restoration import inpaint_biharmonic

    a = np.asarray(image, np.float32)
    region = np.asarray(hint) > 0.5
    if a.ndim != 3 or a.shape[2] != 3 or region.shape != a.shape[:2]:
        raise ValueError(f"expected an H x W x 3 image and an H x W hint, received shapes {a.shape} "
                         f"and {region.shape}")
    return np.clip(inpaint_biharmonic(a, region, channel_axis=-1), 0, 1).astype(np.float32)


def otsu_mask(image: np.ndarray) -> np.ndarray:
    """H x W x 3 image -> H x W float32 mask: grey level above Otsu's threshold."""
    from skimage.filters import threshold_otsu
    gray = np.asarray(image, np.float64).mean(axis=2)
    return (gray > threshold_otsu(gray)).astype(np.float32)


def trivial_baselines(case) -> dict:
    """``{baseline name: result fields}`` for ``case`` (its task's ``Evaluation.baselines``); the
    first entry is the one gains are measured against."""
    from doubledip.engine.tasks.registry import get

    evaluation = get(case.task).evaluation
    if evaluation is None:
        raise ValueError(f"no baseline for task {case.task!r}: it has no evaluation")
    return evaluation.baselines(case)


def saliency_threshold_mask(image, method: str | None = None) -> np.ndarray:
    """H x W x 3 image -> H x W float32 mask: its saliency map (:mod:`doubledip.engine.saliency`;
    ``method`` None: the one ``segment``'s automatic hints use) above the map's Otsu threshold,
    the map alone with no fit."""
    from doubledip.engine import saliency

    s = saliency.saliency(image, saliency.DEFAULT_METHOD if method is None else method)
    return saliency.threshold_mask(s)
