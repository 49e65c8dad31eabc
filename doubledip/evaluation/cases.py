"""Cases with a known answer, built from scikit-image's bundled sample images (no downloads).

Each builder returns a :class:`Case`: the arguments for one public API function, the ground truth
that function should recover, and the metric the table leads with. Images are float32 ``H x W x 3``
in [0, 1]; masks are float32 ``H x W``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Case", "load_sample", "separate_case", "separate_pair_case", "dehaze_case",
           "segment_case", "watermark_pattern", "remove_watermark_case",
           "remove_watermark_multi_case"]


@dataclass
class Case:
    """One evaluation case: ``task`` is the API function's name, ``args``/``kwargs`` its inputs."""
    task: str
    name: str
    args: tuple
    kwargs: dict
    truth: dict
    primary: str
    description: str
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        first = self.args[0][0] if isinstance(self.args[0], list) else self.args[0]
        return tuple(int(s) for s in first.shape[:2])


# Tints that make two grey textures differ in colour, as the paper's texture demo does.
_WARM = (1.0, 0.72, 0.45)
_COOL = (0.45, 0.75, 1.0)


def _skimage_data():
    try:
        import skimage.data
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the evaluation cases need scikit-image: pip install 'doubledip[data]'") from exc
    return skimage.data


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, received {type(size).__name__}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, received {size}")
    return int(size)


def load_sample(name: str, size: int, tint=None) -> np.ndarray:
    """A scikit-image sample image, centre-cropped to a square and resized (antialiased) to
    ``size x size``, as float32 RGB in [0, 1]; grey images are repeated over 3 channels and
    multiplied by ``tint`` (an RGB triple) when given."""
    from PIL import Image
    size = _check_size(size)
    data = _skimage_data()
    loader = getattr(data, name, None)
    if loader is None:
        raise ValueError(f"unknown scikit-image sample {name!r}")
    img = np.asarray(loader())
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    pil = Image.fromarray(img).resize((size, size), Image.LANCZOS)
    out = np.asarray(pil, dtype=np.float32) / 255.0
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
        if tint is not None:
            out = out * np.asarray(tint, dtype=np.float32)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _load_mask(name: str, size: int) -> np.ndarray:
    """A binary sample (e.g. ``horse``) as an ``H x W`` float32 mask, 1 on the object."""
    m = load_sample(name, size)[..., 0]
    if name == "horse":  # the horse is black on white
        m = 1.0 - m
    return (m > 0.5).astype(np.float32)


def separate_case(size: int = 128, first: str = "brick", second: str = "grass",
                  name: str | None = None) -> Case:
    """Single-image separation: two images mixed 1:1.

    Grey textures are tinted warm (``first``) and cool (``second``) so that the layers differ in
    colour as in the paper's texture demo. The input is ``(L0 + L1) / 2``; the truths are the
    half-intensity layers ``L0 / 2`` and ``L1 / 2`` (what ``r.layers`` should add up to).
    """
    a = load_sample(first, size, tint=_WARM)
    b = load_sample(second, size, tint=_COOL)
    mixture = ((a + b) / 2).astype(np.float32)
    return Case("separate", name or f"{first}+{second}", (mixture,), {},
                {"layers": [a / 2, b / 2], "mixture": mixture}, "separation",
                separate_case.__doc__.strip().splitlines()[0])


def separate_pair_case(size: int = 128, first: str = "brick", second: str = "grass",
                       alphas=(0.7, 0.35), name: str | None = None) -> Case:
    """Two-image separation: two mixtures of the same two images with known weights.

    ``I_k = alpha_k * L0 + (1 - alpha_k) * L1`` with ``alphas`` (default 0.7 and 0.35); the truths
    are the full-intensity layers and the two weights (matched up to the layer assignment).
    """
    a = load_sample(first, size, tint=_WARM)
    b = load_sample(second, size, tint=_COOL)
    w = [float(x) for x in alphas]
    if len(w) != 2 or not all(0.0 < x < 1.0 for x in w) or w[0] == w[1]:
        raise ValueError(f"alphas must be two different weights in (0, 1), received {alphas}")
    i1 = (w[0] * a + (1 - w[0]) * b).astype(np.float32)
    i2 = (w[1] * a + (1 - w[1]) * b).astype(np.float32)
    return Case("separate_pair", name or f"{first}+{second}", (i1, i2), {},
                {"layers": [a, b], "alphas": np.asarray(w, np.float32), "mixtures": [i1, i2]},
                "separation", separate_pair_case.__doc__.strip().splitlines()[0])


def depth_transmission(size: int, near: float = 0.9, far: float = 0.3) -> np.ndarray:
    """A smooth, depth-like transmission map: a distance that grows from the bottom row to the
    top row, plus a broad bump, mapped through ``exp(-beta * d)`` to span ``[far, near]``."""
    size = _check_size(size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    depth = (1.0 - y) + 0.35 * np.exp(-((x - 0.3) ** 2 + (y - 0.4) ** 2) / 0.08)
    depth = (depth - depth.min()) / (depth.max() - depth.min())
    beta = np.log(near / far)
    return (near * np.exp(-beta * depth)).astype(np.float32)


def dehaze_case(size: int = 128, image: str = "astronaut", airlight=(0.82, 0.85, 0.9),
                name: str | None = None) -> Case:
    """Dehazing: a clear image hazed as ``I = t * J + (1 - t) * A``.

    ``t`` is :func:`depth_transmission` (smooth, from 0.9 at the bottom to 0.3 at the top) and
    ``A`` a known, slightly blue airlight. Truths: ``J``, ``t`` and ``A``.
    """
    clear = load_sample(image, size)
    t = depth_transmission(size)
    a = np.asarray(airlight, np.float32).reshape(3)
    hazy = (t[..., None] * clear + (1 - t[..., None]) * a).astype(np.float32)
    return Case("dehaze", name or f"{image}_haze", (hazy,), {},
                {"image": clear, "transmission": t, "airlight": a, "hazy": hazy}, "psnr",
                dehaze_case.__doc__.strip().splitlines()[0])


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage
    if radius <= 0:
        return mask.astype(np.float32)
    return ndimage.binary_erosion(mask > 0.5, iterations=radius).astype(np.float32)


def segment_case(size: int = 128, hints: bool = True, foreground: str = "coffee",
                 background: str = "grass", shape: str = "horse", name: str | None = None) -> Case:
    """Segmentation: an object composited onto another image with a known mask.

    The mask is scikit-image's ``horse`` silhouette; inside it the ``foreground`` photo, outside
    the warm-tinted ``background`` texture. With ``hints``, the fg/bg hints are the true mask and
    its complement eroded by ``size // 32`` pixels (as a saliency threshold would give: sure
    regions only); without, the task runs hint-free.
    """
    mask = _load_mask(shape, size)
    fg = load_sample(foreground, size)
    bg = load_sample(background, size, tint=_WARM)
    image = (mask[..., None] * fg + (1 - mask[..., None]) * bg).astype(np.float32)
    kwargs = {}
    r = max(1, size // 32)
    fg_hint, bg_hint = _erode(mask, r), _erode(1 - mask, r)
    if hints:
        kwargs = {"fg_hint": fg_hint, "bg_hint": bg_hint}
    label = "hints" if hints else "no_hints"
    return Case("segment", name or f"{shape}_{label}", (image,), kwargs,
                {"mask": mask, "fg_hint": fg_hint, "bg_hint": bg_hint},
                "iou" if hints else "iou_either",
                segment_case.__doc__.strip().splitlines()[0] + f" ({label.replace('_', ' ')})")


def watermark_pattern(size: int) -> np.ndarray:
    """A watermark's alpha: a ring with two thin bars through it, like a stamped logo;
    ``H x W`` float32, 1 on the strokes, 0 elsewhere (antialiased edges)."""
    size = _check_size(size)
    y, x = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size - 0.5
    r = np.hypot(x, y)
    stroke = 0.035
    ring = np.clip((stroke - np.abs(r - 0.25)) * size, 0, 1)
    bar1 = np.clip((stroke / 2 - np.abs(x - y) / np.sqrt(2)) * size, 0, 1) * (r < 0.36)
    bar2 = np.clip((stroke / 2 - np.abs(y)) * size, 0, 1) * (np.abs(x) < 0.33)
    return np.maximum.reduce([ring, bar1, bar2]).astype(np.float32)


def _stamp(image: np.ndarray, alpha: np.ndarray, colour, opacity: float) -> np.ndarray:
    a = (opacity * alpha)[..., None]
    return ((1 - a) * image + a * np.asarray(colour, np.float32)).astype(np.float32)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage
    return ndimage.binary_dilation(mask > 0, iterations=radius).astype(np.float32)


def remove_watermark_case(size: int = 128, image: str = "chelsea", opacity: float = 0.6,
                          colour=(1.0, 1.0, 1.0), name: str | None = None) -> Case:
    """Watermark removal with a hint: a white pattern (:func:`watermark_pattern`) blended onto an
    image at ``opacity`` 0.6. The hint is the pattern's support dilated by 2 pixels; PSNR is
    scored inside the hint region and over the whole image."""
    clean = load_sample(image, size)
    alpha = watermark_pattern(size)
    marked = _stamp(clean, alpha, colour, opacity)
    hint = _dilate(alpha, max(1, size // 64))
    return Case("remove_watermark", name or f"{image}_stamp", (marked, hint), {},
                {"image": clean, "region": hint, "alpha": alpha}, "psnr_region",
                remove_watermark_case.__doc__.strip().splitlines()[0])


def remove_watermark_multi_case(size: int = 128, images=("chelsea", "coffee", "astronaut"),
                                opacity: float = 0.6, colour=(1.0, 1.0, 1.0),
                                name: str | None = None) -> Case:
    """Watermark removal from several images: the same white pattern at ``opacity`` 0.6 blended
    onto three images; no hint. PSNR is scored inside the pattern's support (dilated by 2 px)."""
    clean = [load_sample(n, size) for n in images]
    alpha = watermark_pattern(size)
    marked = [_stamp(c, alpha, colour, opacity) for c in clean]
    region = _dilate(alpha, max(1, size // 64))
    return Case("remove_watermark_multi", name or "+".join(images) + "_stamp", (marked,), {},
                {"images": clean, "region": region, "alpha": alpha}, "psnr_region",
                remove_watermark_multi_case.__doc__.strip().splitlines()[0])
