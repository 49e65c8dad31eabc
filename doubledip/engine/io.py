"""Reading and validating images and hints; writing PNGs atomically."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _describe(x: Any) -> str:
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return f"{type(x).__name__} of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def _from_path(path: Path, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        raise ValueError(f"{name}: no such file: {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{name}: expected an image file, got a directory: {str(path)!r}")
    try:
        with Image.open(path) as im:
            return _from_pil(im, name)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{name}: {str(path)!r} is not a readable image ({exc})") from None


def _from_pil(im, name: str) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return np.asarray(im).astype(np.uint16) if im.mode != "I" else np.asarray(im)
    if im.mode not in ("L", "RGB", "RGBA", "LA"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    return np.asarray(im)


def _array_to_unit(arr: np.ndarray, name: str) -> np.ndarray:
    """Any supported array (H x W or H x W x C) -> float32 in [0, 1]."""
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif arr.dtype == np.int32 and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        out = arr.astype(np.float32) / 65535.0  # PIL's 32-bit mode for 16-bit PNGs
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
        lo, hi = float(out.min()), float(out.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{name}: expected float values in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
                             "(scale 0-255 images by 1/255, or pass uint8)")
        out = np.clip(out, 0.0, 1.0)
    else:
        raise TypeError(f"{name}: expected a uint8, uint16 or float array, got dtype {arr.dtype}")
    return out


def to_hwc(x: Any, name: str = "image") -> np.ndarray:
    """Load ``x`` (path, PIL image, H x W [x C] array, or C x H x W tensor) as H x W x C float32
    in [0, 1], C in {1, 3} (alpha dropped)."""
    from PIL import Image

    if isinstance(x, (str, os.PathLike)):
        arr = _from_path(Path(x), name)
    elif isinstance(x, Image.Image):
        arr = _from_pil(x, name)
    elif isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() != 3:
            raise ValueError(f"{name}: expected a C x H x W tensor, got {_describe(x)}")
        if t.shape[0] not in (1, 3, 4):
            raise ValueError(f"{name}: expected 1, 3 or 4 channels first (C x H x W), got {_describe(x)}")
        if t.dtype == torch.uint8:
            arr = t.permute(1, 2, 0).numpy()
        elif t.is_floating_point():
            arr = t.float().permute(1, 2, 0).numpy()
        else:
            raise TypeError(f"{name}: expected a float or uint8 tensor, got {_describe(x)}")
    elif isinstance(x, np.ndarray):
        arr = x
    else:
        raise TypeError(f"{name}: expected a path, PIL image, numpy array or torch tensor, got {_describe(x)}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{name}: expected H x W or H x W x C with C in 1..4, got {_describe(arr)}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty image, got {_describe(arr)}")
    out = _array_to_unit(np.asarray(arr), name)
    if out.shape[2] in (2, 4):  # gray + alpha, RGBA: drop alpha
        out = out[:, :, :-1]
    return np.ascontiguousarray(out)


# The smallest image side the method fits. The nets' own needs (5 stride-2 levels: multiples of
# 32, at least 64-96 px) are met by reflection-padding the input (UNetConfig.padded_size), and
# engine.inputs.reflect_pad mirrors back and forth, so any side >= 2 pads without error (a 1 px
# side cannot be mirrored: it pads to a constant, and the watermark task's PSNR is then NaN).
# What sets the minimum is the exclusion loss: a 3-level pyramid of 2 x 2 pools, so its coarsest
# level is at 1/4 scale, and for that level to hold one forward difference (2 px) of the image
# itself rather than of its mirror copies the image needs 4 * 2 = 8 px per side. Below that, how
# the layers split is decided by the padding, not by the image.
MIN_SIDE = 8


def check_image_size(h: int, w: int, name: str = "image") -> None:
    """Raise ValueError unless H and W are both at least :data:`MIN_SIDE`."""
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"{name}: expected an image of at least {MIN_SIDE}x{MIN_SIDE} pixels (H x W), "
                         f"got {h}x{w}; the method cannot fit smaller images (upscale it first)")


def describe_input(value: Any, size) -> dict:
    """What result.json records about one input: ``{"path": absolute path or None, "size": [H, W]}``
    (``path`` when ``value`` is a str or path, else None; ``size``: the (H, W) it was loaded at)."""
    try:
        h, w = (int(n) for n in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be (H, W), two ints, got {size!r}") from None
    path = os.path.abspath(os.fspath(value)) if isinstance(value, (str, os.PathLike)) else None
    return {"path": path, "size": [h, w]}


def load_image(x: Any, name: str = "image", device: torch.device | str = "cpu") -> torch.Tensor:
    """An RGB image as a 1 x 3 x H x W float32 tensor in [0, 1] (grayscale promoted to colour);
    at least :data:`MIN_SIDE` pixels per side."""
    hwc = to_hwc(x, name)
    check_image_size(hwc.shape[0], hwc.shape[1], name)
    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    return torch.from_numpy(hwc).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def load_hint(x: Any, name: str, size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """A hint map as 1 x 1 x H x W in [0, 1] (colour hints: max over channels). Must match
    ``size`` (H, W) and must not be all zero."""
    hwc = to_hwc(x, name)
    if hwc.shape[:2] != tuple(size):
        raise ValueError(f"{name}: expected the image's size {size[0]}x{size[1]} (H x W), "
                         f"got a {hwc.shape[0]}x{hwc.shape[1]} hint")
    hint = hwc.max(axis=2)
    if not hint.any():
        raise ValueError(f"{name}: the hint is all zero; it must mark at least one pixel")
    return torch.from_numpy(np.ascontiguousarray(hint))[None, None].to(device)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: Path, img: np.ndarray) -> None:
    """Write an H x W or H x W x 3 float image in [0, 1] as an 8-bit PNG."""
    from PIL import Image

    Image.fromarray(to_uint8(img)).save(path, format="PNG")
