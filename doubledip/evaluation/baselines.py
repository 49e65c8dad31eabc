"""Baselines that give the suite's numbers a meaning.

Each trivial baseline returns the same result fields as the API function it stands in for, so the
task's scorer rates it the same way. :func:`dark_channel_prior` is the classic single-image
dehazing method (He, Sun, Tang, CVPR 2009) with guided-filter refinement.
"""
from __future__ import annotations

import numpy as np

__all__ = ["dark_channel_prior", "trivial_baselines"]


def _to_tensor(image: np.ndarray):
    import torch
    a = np.asarray(image, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, received shape {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def dark_channel_prior(image, window: int = 15, omega: float = 0.95, t_min: float = 0.1,
                       radius: int | None = None, eps: float = 1e-3) -> dict:
    """Dehaze ``image`` (``H x W x 3`` float in [0, 1]) with the dark channel prior.

    Airlight ``A`` from the brightest dark-channel pixels; ``t = 1 - omega * dark(I / A)``,
    refined by a guided filter (guide: the image; ``radius`` defaults to a tenth of the shorter
    side, He et al.'s 60 px at 600 px) and clipped to ``[t_min, 1]``;
    ``J = (I - A) / t + A`` clipped to [0, 1]. Returns ``image``, ``transmission``, ``airlight``.
    """
    from doubledip.engine.post import dark_channel, estimate_airlight, guided_filter
    if not 0.0 < omega <= 1.0:
        raise ValueError(f"omega must be in (0, 1], received {omega}")
    x = _to_tensor(image)
    h, w = x.shape[-2:]
    if radius is None:
        radius = max(2, round(min(h, w) / 10))
    airlight = estimate_airlight(x, window=window).clamp_min(1e-3)
    a = airlight.view(1, 3, 1, 1)
    t = 1.0 - omega * dark_channel(x / a, window)
    t = guided_filter(x, t, radius=radius, eps=eps).clamp(t_min, 1.0)
    clear = ((x - a) / t + a).clamp(0.0, 1.0)
    return {"image": clear[0].permute(1, 2, 0).numpy(), "transmission": t[0, 0].numpy(),
            "airlight": airlight.numpy()}


def _otsu_mask(image: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu
    gray = np.asarray(image, np.float64).mean(axis=2)
    return (gray > threshold_otsu(gray)).astype(np.float32)


def trivial_baselines(case) -> dict:
    """``{baseline name: result fields}`` for ``case``; the first entry is the one gains are
    measured against.

    - separate: each layer = mixture / 2;
    - separate_pair: each layer = one input (weights 1 and 0);
    - dehaze: the hazy input itself, then the dark channel prior;
    - segment: with hints, the foreground hint as the mask; without, an Otsu threshold of the
      grey image (scored with either polarity);
    - watermark tasks: the watermarked input itself.
    """
    task = case.task
    if task == "separate":
        half = case.args[0] / 2
        return {"mixture/2": {"layers": [half, half]}}
    if task == "separate_pair":
        i1, i2 = case.args
        return {"inputs": {"layers": [i1, i2], "alphas": np.array([1.0, 0.0], np.float32)}}
    if task == "dehaze":
        hazy = case.args[0]
        return {"hazy input": {"image": hazy},
                "dark channel prior": dark_channel_prior(hazy)}
    if task == "segment":
        if "fg_hint" in case.kwargs:
            return {"fg hint": {"mask": case.kwargs["fg_hint"]}}
        return {"otsu": {"mask": _otsu_mask(case.args[0])}}
    if task == "remove_watermark":
        return {"input": {"image": case.args[0]}}
    if task == "remove_watermark_multi":
        return {"input": {"images": list(case.args[0])}}
    raise ValueError(f"no baseline for task {task!r}")
