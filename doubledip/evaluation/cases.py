"""Cases with a known answer, built from scikit-image's bundled sample images (no downloads).

Each builder returns a :class:`Case`: the arguments for one public API function, the ground truth
that function should recover, and the metric the table leads with. Images are float32 ``H x W x 3``
in [0, 1]; masks are float32 ``H x W``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Case", "load_sample", "separate_case", "separate_pair_case", "dehaze_case",
           "segment_case", "object_shape", "segment_composite_case", "SEGMENT_COMPOSITES",
           "segment_composites", "watermark_pattern", "remove_watermark_case",
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


def segment_case(size: int = 128, hints=True, foreground: str = "coffee",
                 background: str = "grass", shape: str = "horse", name: str | None = None) -> Case:
    """Segmentation: an object composited onto another image with a known mask.

    The mask is scikit-image's ``horse`` silhouette; inside it the ``foreground`` photo, outside
    the warm-tinted ``background`` texture. With ``hints`` True, the fg/bg hints are the true
    mask and its complement eroded by ``size // 32`` pixels (as a saliency threshold would give:
    sure regions only); False gives none (the task computes its own, its default
    ``hints="auto"``); ``"none"`` passes ``hints="none"`` (the authors' hint-free variant).
    """
    mask = _load_mask(shape, size)
    fg = load_sample(foreground, size)
    bg = load_sample(background, size, tint=_WARM)
    image = (mask[..., None] * fg + (1 - mask[..., None]) * bg).astype(np.float32)
    kwargs = {}
    r = max(1, size // 32)
    fg_hint, bg_hint = _erode(mask, r), _erode(1 - mask, r)
    if not (isinstance(hints, bool) or hints == "none"):
        raise ValueError(f"hints must be True, False or 'none', received {hints!r}")
    if hints is True:
        kwargs = {"fg_hint": fg_hint, "bg_hint": bg_hint}
    elif hints == "none":
        kwargs = {"hints": "none"}
    label = {True: "hints", False: "no_hints", "none": "hint_free"}[hints]
    return Case("segment", name or f"{shape}_{label}", (image,), kwargs,
                {"mask": mask, "fg_hint": fg_hint, "bg_hint": bg_hint},
                "iou_either" if hints == "none" else "iou",
                segment_case.__doc__.strip().splitlines()[0] + f" ({label.replace('_', ' ')})")


SEGMENT_SHAPES = ("horse", "ellipse", "blob")
SEGMENT_HINTS = ("given", "auto", "none")
_HINT_LABELS = {"given": "hints", "auto": "auto", "none": "hint_free"}  # case name suffixes


def _shape(shape: str, size: int, scale: float, centre, seed: int):
    """An object's mask ``obj`` (h x w float32) and where it goes (``top``, ``left``): ``shape`` (``horse``: scikit-image's silhouette
    cropped to its bounding box; ``ellipse``: axes 1 and 0.7; ``blob``: a smooth star-like
    outline, radius ``1 + 0.2 sin(3 a + p) + 0.12 cos(5 a + q)`` with phases from ``seed``)
    fitted into a square of side ``scale * size`` whose centre is at ``centre`` (row, column, as
    fractions of the image), shifted inside the image where it would cross a border."""
    size = _check_size(size)
    if shape not in SEGMENT_SHAPES:
        raise ValueError(f"shape must be one of {SEGMENT_SHAPES}, received {shape!r}")
    if not 0.05 <= float(scale) <= 1.0:
        raise ValueError(f"scale must be in [0.05, 1] (the object's side over the image's), received {scale}")
    side = max(4, int(round(scale * size)))
    if shape == "horse":
        from PIL import Image

        full = np.asarray(_skimage_data().horse()) == 0  # black horse on white
        rows, cols = np.nonzero(full)
        box = full[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        h, w = box.shape
        f = side / max(h, w)
        pil = Image.fromarray(box.astype(np.uint8) * 255).resize((max(1, round(w * f)), max(1, round(h * f))),
                                                                 Image.LANCZOS)
        obj = (np.asarray(pil, np.float32) / 255 > 0.5).astype(np.float32)
    else:
        y, x = (np.mgrid[0:side, 0:side].astype(np.float64) + 0.5) / side * 2 - 1  # [-1, 1]^2
        if shape == "ellipse":
            obj = ((x / 1.0) ** 2 + (y / 0.7) ** 2 <= 1.0).astype(np.float32)
        else:
            p, q = np.random.default_rng(seed).uniform(0, 2 * np.pi, 2)
            a, r = np.arctan2(y, x), np.hypot(x, y)
            outline = 1 + 0.2 * np.sin(3 * a + p) + 0.12 * np.cos(5 * a + q)
            obj = (r <= outline / 1.32).astype(np.float32)  # 1.32: the outline's largest radius
    h, w = obj.shape
    top = int(np.clip(round(centre[0] * size - h / 2), 0, size - h))
    left = int(np.clip(round(centre[1] * size - w / 2), 0, size - w))
    return obj, top, left


def object_shape(shape: str, size: int, scale: float = 0.5, centre=(0.5, 0.5), seed: int = 0) -> np.ndarray:
    """An object's ``size x size`` float32 mask, 1 on the object (see :func:`_shape`)."""
    obj, top, left = _shape(shape, size, scale, centre, seed)
    mask = np.zeros((size, size), np.float32)
    mask[top:top + obj.shape[0], left:left + obj.shape[1]] = obj
    return mask


def segment_composite_case(size: int = 128, foreground: str = "brick", background: str = "grass",
                           shape: str = "ellipse", scale: float = 0.55, centre=(0.5, 0.5),
                           fg_tint=_COOL, bg_tint=_WARM, fg_gain: float = 1.0, bg_gain: float = 1.0,
                           hints: str = "auto", seed: int = 0, name: str | None = None) -> Case:
    """Segmentation of a composite: an object of ``shape`` (:func:`object_shape`) cut from the
    middle of the ``foreground`` sample, over the ``background`` sample, with a known mask.

    Grey samples are tinted (``fg_tint``, ``bg_tint``; None: grey) and every sample scaled by
    its gain (``fg_gain`` < ``bg_gain``: an object darker than its background). ``hints``:
    ``"given"`` passes the true mask and its complement eroded by ``size // 32`` pixels as
    hints; ``"auto"`` none (the task computes its own: its default); ``"none"`` passes
    ``hints="none"`` (the authors' hint-free variant).
    """
    if hints not in SEGMENT_HINTS:
        raise ValueError(f"hints must be one of {SEGMENT_HINTS}, received {hints!r}")
    obj, top, left = _shape(shape, size, scale, centre, seed)
    h, w = obj.shape
    mask = np.zeros((size, size), np.float32)
    mask[top:top + h, left:left + w] = obj
    # the object shows the middle of the foreground sample (a photo's subject), at the scale of
    # the background
    sample = load_sample(foreground, size, tint=fg_tint) * np.float32(fg_gain)
    y0, x0 = (size - h) // 2, (size - w) // 2
    fg = np.zeros((size, size, 3), np.float32)
    fg[top:top + h, left:left + w] = np.clip(sample[y0:y0 + h, x0:x0 + w], 0, 1)
    bg = np.clip(load_sample(background, size, tint=bg_tint) * np.float32(bg_gain), 0, 1)
    image = (mask[..., None] * fg + (1 - mask[..., None]) * bg).astype(np.float32)
    r = max(1, size // 32)
    fg_hint, bg_hint = _erode(mask, r), _erode(1 - mask, r)
    kwargs = {"given": {"fg_hint": fg_hint, "bg_hint": bg_hint}, "auto": {}, "none": {"hints": "none"}}[hints]
    label = _HINT_LABELS[hints]
    return Case("segment", name or f"{foreground}_{shape}_on_{background}_{label}", (image,), kwargs,
                {"mask": mask, "fg_hint": fg_hint, "bg_hint": bg_hint},
                "iou_either" if hints == "none" else "iou",
                segment_composite_case.__doc__.strip().splitlines()[0] + f" (hints: {hints})")


#: The textured composites of the evaluation (``segment_composites``): textures and photos over
#: textures and photos, objects of several sizes and places, one darker than its background.
SEGMENT_COMPOSITES = {
    "brick_ellipse_on_grass": dict(foreground="brick", background="grass", shape="ellipse", scale=0.55),
    "gravel_blob_on_brick": dict(foreground="gravel", background="brick", shape="blob", scale=0.45,
                                 centre=(0.38, 0.62), fg_tint=_WARM, bg_tint=_COOL, seed=1),
    "dark_brick_horse_on_gravel": dict(foreground="brick", background="gravel", shape="horse", scale=0.6,
                                       centre=(0.55, 0.45), fg_tint=None, bg_tint=_WARM, fg_gain=0.5),
    "grass_small_blob_on_astronaut": dict(foreground="grass", background="astronaut", shape="blob",
                                          scale=0.3, centre=(0.7, 0.3), fg_tint=_COOL, bg_tint=None, seed=2),
    "chelsea_ellipse_on_gravel": dict(foreground="chelsea", background="gravel", shape="ellipse", scale=0.4,
                                      centre=(0.3, 0.68), fg_tint=None, bg_tint=_COOL),
}


def segment_composites(size: int = 128, hints: str = "auto", names=None) -> list[Case]:
    """The :data:`SEGMENT_COMPOSITES` cases (or those of ``names``) at ``size``, with ``hints``."""
    chosen = list(SEGMENT_COMPOSITES) if names is None else list(names)
    unknown = [n for n in chosen if n not in SEGMENT_COMPOSITES]
    if unknown:
        raise ValueError(f"unknown composite(s) {unknown}; expected some of {sorted(SEGMENT_COMPOSITES)}")
    if hints not in SEGMENT_HINTS:
        raise ValueError(f"hints must be one of {SEGMENT_HINTS}, received {hints!r}")
    return [segment_composite_case(size, hints=hints, name=f"{n}_{_HINT_LABELS[hints]}", **SEGMENT_COMPOSITES[n])
            for n in chosen]


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


# ---- video cases (``doubledip evaluate --suite video``) --------------------------------------
# Clips of ``frames`` frames with a known answer, every field T-leading (T x H x W x 3 frames,
# T x H x W maps). ``truth["motion"]``: (dy, dx), how far the content's window moves per frame
# (separation: one per layer), for the motion-compensated flicker. ``extra["frame_kwargs"]``: per
# frame, the image task's keyword inputs (its hints), for the suite's per-frame runs.

VIDEO_FRAMES = 6


def _window(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def separate_video_case(size: int = 128, frames: int = VIDEO_FRAMES, first: str = "brick", second: str = "grass",
                        motion=((0, 3), (-2, 0)), name: str | None = None) -> Case:
    """Video separation: two textures mixed 1:1, each moving its own way (``motion``: per layer,
    pixels per frame down and right; default: ``first`` to the right, ``second`` up).

    Frame t is ``(L0_t + L1_t) / 2``; the truths are the half-intensity moving layers."""
    size = _check_size(size)
    reach = max(abs(d) for m in motion for d in m) * (frames - 1)
    a = load_sample(first, size + reach, tint=_WARM)
    b = load_sample(second, size + reach, tint=_COOL)
    layers = []
    for layer, (dy, dx) in zip((a, b), motion):
        y0, x0 = (reach if dy < 0 else 0), (reach if dx < 0 else 0)
        layers.append(np.stack([_window(layer, y0 + t * dy, x0 + t * dx, size) for t in range(frames)]))
    mixture = ((layers[0] + layers[1]) / 2).astype(np.float32)
    return Case("separate_video", name or f"{first}+{second}_moving", (mixture,), {},
                {"layers": [layers[0] / 2, layers[1] / 2], "mixture": mixture, "motion": [tuple(m) for m in motion]},
                "separation",
                separate_video_case.__doc__.strip().splitlines()[0],
                extra={"frame_kwargs": [{} for _ in range(frames)]})


def dehaze_video_case(size: int = 128, frames: int = VIDEO_FRAMES, image: str = "astronaut",
                      airlight=(0.82, 0.85, 0.9), pan: int = 4, name: str | None = None) -> Case:
    """Video dehazing: a camera pan (``pan`` pixels per frame to the right) over a hazed scene,
    ``I = t * J + (1 - t) * A``, the scene's depth (:func:`depth_transmission` over the whole
    scene) panning with it. Truths: the clear frames, their transmissions and ``A``."""
    size = _check_size(size)
    reach = pan * (frames - 1)
    scene = load_sample(image, size + reach)
    t_scene = depth_transmission(size + reach)
    a = np.asarray(airlight, np.float32).reshape(3)
    clear = np.stack([_window(scene, reach // 2, t * pan, size) for t in range(frames)])
    t = np.stack([_window(t_scene, reach // 2, k * pan, size) for k in range(frames)])
    hazy = (t[..., None] * clear + (1 - t[..., None]) * a).astype(np.float32)
    return Case("dehaze_video", name or f"{image}_haze_pan", (hazy,), {},
                {"image": clear, "transmission": t, "airlight": a, "hazy": hazy, "motion": (0, pan)}, "psnr",
                dehaze_video_case.__doc__.strip().splitlines()[0],
                extra={"frame_kwargs": [{} for _ in range(frames)]})


def segment_video_case(size: int = 128, frames: int = VIDEO_FRAMES, foreground: str = "coffee",
                       background: str = "grass", shape: str = "horse", speed: int | None = None,
                       name: str | None = None) -> Case:
    """Video segmentation: an object (the ``horse`` silhouette filled with the ``foreground``
    photo, 3/4 of the frame) moving ``speed`` pixels per frame (default ``size // 32``) to the right over a still,
    warm-tinted ``background`` texture. Hints per frame: the true mask and its complement
    eroded by ``size // 32`` pixels."""
    size = _check_size(size)
    speed = max(1, size // 32) if speed is None else int(speed)
    side = size * 3 // 4
    shape_mask = _load_mask(shape, side)
    fg_image = load_sample(foreground, side)
    bg = load_sample(background, size, tint=_WARM)
    top = (size - side) // 2
    reach = speed * (frames - 1)
    left0 = max(0, (size - side - reach) // 2)
    masks, images = [], []
    for t in range(frames):
        m = np.zeros((size, size), np.float32)
        fg = np.zeros_like(bg)
        left = min(left0 + t * speed, size - side)
        m[top:top + side, left:left + side] = shape_mask
        fg[top:top + side, left:left + side] = fg_image
        masks.append(m)
        images.append(m[..., None] * fg + (1 - m[..., None]) * bg)
    mask, clip = np.stack(masks), np.stack(images).astype(np.float32)
    r = max(1, size // 32)
    fg_hints = np.stack([_erode(m, r) for m in masks])
    bg_hints = np.stack([_erode(1 - m, r) for m in masks])
    return Case("segment_video", name or f"{shape}_moving_hints", (clip,), {"fg_hints": fg_hints, "bg_hints": bg_hints},
                {"mask": mask, "fg_hint": fg_hints, "bg_hint": bg_hints, "motion": (0, -speed)}, "iou",
                segment_video_case.__doc__.strip().splitlines()[0],
                extra={"frame_kwargs": [{"fg_hint": fg_hints[t], "bg_hint": bg_hints[t]} for t in range(frames)]})


def video_cases(task: str, suite: str, size: int) -> list:
    """The video suite's cases of ``task`` (``separate_video``, ``dehaze_video`` or
    ``segment_video``); none for the image suites."""
    if suite != "video":
        return []
    builders = {"separate_video": separate_video_case, "dehaze_video": dehaze_video_case,
                "segment_video": segment_video_case}
    if task not in builders:
        raise ValueError(f"no video cases for task {task!r}; expected one of {sorted(builders)}")
    return [builders[task](size)]


def video_baselines(case: Case) -> dict:
    """The method-free baselines of a video case, per frame, T-leading like the results: the
    mixture halved (separation), the hazy input and the dark channel prior run on each frame
    alone, with its own airlight (dehazing), the foreground hint (segmentation)."""
    import time

    clip = case.args[0]
    if case.task == "separate_video":
        return {"mixture/2": {"layers": [clip / 2, clip / 2]}}
    if case.task == "dehaze_video":
        from doubledip.evaluation.baselines import dark_channel_prior

        start = time.perf_counter()
        per_frame = [dark_channel_prior(frame) for frame in clip]
        dcp = {"image": np.stack([d["image"] for d in per_frame]),
               "transmission": np.stack([d["transmission"] for d in per_frame]),
               "airlight": np.mean([d["airlight"] for d in per_frame], axis=0),
               "seconds": time.perf_counter() - start}
        return {"hazy input": {"image": clip}, "dark channel prior per frame": dcp}
    if case.task == "segment_video":
        return {"fg hint": {"mask": case.kwargs["fg_hints"]}}
    raise ValueError(f"no video baselines for task {case.task!r}")
