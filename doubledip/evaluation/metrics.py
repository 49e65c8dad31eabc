"""Quality metrics for decompositions with a known answer.

Every function takes NumPy arrays (``H x W`` or ``H x W x C``, float in [0, 1]) and returns plain
Python floats, so rows serialise to JSON as they are. PSNR is capped at :data:`PSNR_CAP` dB so a
perfect result scores a finite number.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

PSNR_CAP = 100.0

__all__ = [
    "PSNR_CAP", "psnr", "ssim", "iou", "iou_either", "mae", "correlation", "match_layers",
    "separation", "layer_scores", "alpha_error",
    "score_separate", "score_separate_pair", "score_dehaze", "score_segment",
    "score_remove_watermark", "score_remove_watermark_multi",
]


def _array(x, name: str) -> np.ndarray:
    """Return ``x`` as a float64 array; torch tensors are moved to the host."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected an array of numbers, received {type(x).__name__}") from exc
    return a


def _pair(a, b, names=("a", "b")):
    a, b = _array(a, names[0]), _array(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, received "
                         f"{a.shape} and {b.shape}")
    return a, b


def _region(mask, shape) -> np.ndarray:
    """Broadcast an ``H x W`` (or full-shape) mask to ``shape`` as booleans."""
    m = _array(mask, "mask") > 0.5
    if m.shape == tuple(shape):
        return m
    if m.shape == tuple(shape[:2]) and len(shape) == 3:
        return np.broadcast_to(m[..., None], shape)
    raise ValueError(f"mask must have shape {tuple(shape[:2])} or {tuple(shape)}, received {m.shape}")


def psnr(estimate, truth, mask=None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, capped at ``PSNR_CAP``; ``mask`` restricts it to a region."""
    a, b = _pair(estimate, truth, ("estimate", "truth"))
    diff = a - b
    if mask is not None:
        region = _region(mask, a.shape)
        if not region.any():
            raise ValueError("mask selects no pixel")
        diff = diff[region]
    mse = float(np.mean(diff ** 2))
    if mse <= (data_range ** 2) * 10 ** (-PSNR_CAP / 10):
        return PSNR_CAP
    return float(10.0 * np.log10(data_range ** 2 / mse))


def ssim(estimate, truth, data_range: float = 1.0) -> float:
    """Structural similarity (scikit-image's, Gaussian-free 7x7 windows; channels averaged)."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ssim needs scikit-image: pip install 'doubledip[data]'") from exc
    a, b = _pair(estimate, truth, ("estimate", "truth"))
    if min(a.shape[:2]) < 7:
        raise ValueError(f"ssim needs images of at least 7x7 pixels, received {a.shape[:2]}")
    channel_axis = -1 if a.ndim == 3 else None
    return float(structural_similarity(a, b, data_range=data_range, channel_axis=channel_axis))


def iou(mask, truth) -> float:
    """Intersection over union of two binary maps (thresholded at 0.5); 1.0 when both are empty."""
    a, b = _pair(mask, truth, ("mask", "truth"))
    a, b = a > 0.5, b > 0.5
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def iou_either(mask, truth) -> float:
    """IoU of the better polarity (``mask`` or ``1 - mask``): for runs that cannot know which
    side is the foreground."""
    m = _array(mask, "mask")
    return max(iou(m, truth), iou(1.0 - m, truth))


def mae(estimate, truth) -> float:
    """Mean absolute error."""
    a, b = _pair(estimate, truth, ("estimate", "truth"))
    return float(np.mean(np.abs(a - b)))


def correlation(a, b) -> float:
    """Pearson correlation over all elements; 0.0 when either input is constant."""
    x, y = _pair(a, b)
    x = x.ravel() - x.mean()
    y = y.ravel() - y.mean()
    denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if denom == 0:
        return 0.0
    return float(np.dot(x, y) / denom)


def _check_layers(layers, name):
    if not isinstance(layers, (list, tuple)) or len(layers) != 2:
        got = f"{type(layers).__name__} of length {len(layers)}" if hasattr(layers, "__len__") \
            else type(layers).__name__
        raise ValueError(f"{name}: expected a list of 2 layers, received {got}")
    return [_array(x, f"{name}[{i}]") for i, x in enumerate(layers)]


def match_layers(layers: Sequence, truths: Sequence) -> tuple[int, ...]:
    """The assignment of recovered layers to true layers with the lowest total squared error.

    Returns ``order`` such that ``layers[order[i]]`` is matched to ``truths[i]``.
    """
    est = _check_layers(layers, "layers")
    ref = _check_layers(truths, "truths")
    best, best_err = None, np.inf
    for order in itertools.permutations(range(len(ref))):
        err = sum(float(np.mean((est[o] - r) ** 2)) for o, r in zip(order, ref))
        if err < best_err:
            best, best_err = order, err
    return tuple(best)


def separation(layers: Sequence, truths: Sequence) -> float:
    """How much each recovered layer resembles one true layer rather than the other.

    Per layer: ``corr(layer, its truth) - corr(layer, the other truth)`` (Pearson over all pixels
    and channels), averaged over the two layers and divided by ``1 - corr(truth_0, truth_1)``,
    under the assignment that scores higher (swapping the layers flips the sign, so this is the
    absolute value). A perfect separation scores 1.0; returning the mixture as both layers, 0.0.
    """
    est = _check_layers(layers, "layers")
    ref = _check_layers(truths, "truths")
    gaps = [correlation(est[i], ref[i]) - correlation(est[i], ref[1 - i]) for i in range(2)]
    scale = 1.0 - correlation(ref[0], ref[1])
    if scale <= 1e-6:
        raise ValueError("the true layers are identical up to scale: separation is undefined")
    return float(abs(np.mean(gaps)) / scale)


def layer_scores(layers: Sequence, truths: Sequence, with_ssim: bool = True) -> dict:
    """PSNR (and SSIM) of each recovered layer against its matched true layer, their means, the
    separation score, and whether the best assignment swapped the layers."""
    est = _check_layers(layers, "layers")
    ref = _check_layers(truths, "truths")
    for i in range(2):
        if est[i].shape != ref[i].shape:
            raise ValueError(f"layer {i} has shape {est[i].shape}, its truth {ref[i].shape}")
    order = match_layers(est, ref)
    matched = [est[o] for o in order]
    out = {}
    p = [psnr(matched[i], ref[i]) for i in range(2)]
    out.update(layer_psnr=float(np.mean(p)), layer_psnr_0=p[0], layer_psnr_1=p[1])
    if with_ssim:
        s = [ssim(matched[i], ref[i]) for i in range(2)]
        out.update(layer_ssim=float(np.mean(s)), layer_ssim_0=s[0], layer_ssim_1=s[1])
    out["separation"] = separation(est, ref)
    out["swapped"] = float(order != (0, 1))
    return out


def alpha_error(alphas, true_alphas, swapped: bool) -> float:
    """Mean absolute error of two-image mixing weights; a swapped layer assignment turns each
    weight ``a`` into ``1 - a``."""
    a = _array(alphas, "alphas").ravel()
    t = _array(true_alphas, "true_alphas").ravel()
    if a.shape != (2,) or t.shape != (2,):
        raise ValueError(f"expected 2 mixing weights each, received {a.shape} and {t.shape}")
    if swapped:
        a = 1.0 - a
    return float(np.mean(np.abs(a - t)))


# ---------------------------------------------------------------------------------------------
# Per-task scorers: (outputs, truth) -> metrics. ``outputs`` holds the result fields of the API
# function (``r.layers``, ``r.image``, ...); baselines produce the same fields.

def score_separate(outputs: dict, truth: dict) -> dict:
    """Layers against the true half-intensity layers."""
    return layer_scores(outputs["layers"], truth["layers"])


def score_separate_pair(outputs: dict, truth: dict) -> dict:
    """Layers against the true full-intensity layers, and the mixing-weight error."""
    m = layer_scores(outputs["layers"], truth["layers"])
    if outputs.get("alphas") is not None:
        m["alpha_mae"] = alpha_error(outputs["alphas"], truth["alphas"], bool(m["swapped"]))
    return m


def score_dehaze(outputs: dict, truth: dict) -> dict:
    """Dehazed image against the clear one; transmission and airlight mean absolute errors."""
    m = {"psnr": psnr(outputs["image"], truth["image"]), "ssim": ssim(outputs["image"], truth["image"])}
    if outputs.get("transmission") is not None:
        m["transmission_mae"] = mae(outputs["transmission"], truth["transmission"])
    if outputs.get("airlight") is not None:
        m["airlight_mae"] = mae(np.ravel(outputs["airlight"]), np.ravel(truth["airlight"]))
    return m


def score_segment(outputs: dict, truth: dict) -> dict:
    """IoU of the binary mask with the true foreground (and of the better polarity)."""
    return {"iou": iou(outputs["mask"], truth["mask"]),
            "iou_either": iou_either(outputs["mask"], truth["mask"])}


def score_remove_watermark(outputs: dict, truth: dict) -> dict:
    """PSNR of the cleaned image inside the hint region and over the whole image."""
    return {"psnr_region": psnr(outputs["image"], truth["image"], mask=truth["region"]),
            "psnr": psnr(outputs["image"], truth["image"]),
            "ssim": ssim(outputs["image"], truth["image"])}


def score_remove_watermark_multi(outputs: dict, truth: dict) -> dict:
    """Mean over the images of the PSNR inside the watermark's region and over the whole image."""
    images, clean = outputs["images"], truth["images"]
    if len(images) != len(clean):
        raise ValueError(f"expected {len(clean)} cleaned images, received {len(images)}")
    region = [psnr(a, b, mask=truth["region"]) for a, b in zip(images, clean)]
    whole = [psnr(a, b) for a, b in zip(images, clean)]
    return {"psnr_region": float(np.mean(region)), "psnr": float(np.mean(whole))}
