"""Reading clips (a video file, a folder of images, a list of images, a T x H x W x C array) and
writing them as video files with PyAV (the ``video`` extra: ``pip install 'doubledip[video]'``;
its wheels ship their own FFmpeg libraries, no system ffmpeg needed).

``av`` is imported only when a video file is read or written, so ``import doubledip`` and clips
given as arrays, lists or folders work without it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from doubledip.engine.io import _array_to_unit, _describe, check_image_size, to_hwc

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".gif", ".mkv", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_FPS = 25.0  # clips given as images or arrays carry no frame rate
MIN_FRAMES = 2
# codec and pixel format per container: x264 for the MPEG-4 family (yuv420p needs even sides;
# odd ones are written 4:4:4, which x264 supports in its High 4:4:4 profile)
_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".m4v": "libx264",
           ".webm": "libvpx-vp9", ".avi": "mpeg4", ".gif": "gif"}

# check(T, H, W) -> None or raises: called once the clip's size is known, before its frames are
# decoded or stacked (the memory check of the video tasks)
SizeCheck = Callable[[int, int, int], None]


@dataclass
class Clip:
    """frames: T x H x W x 3 float32 in [0, 1] (``maps``: T x H x W); fps: frames per second;
    path: the file or folder it came from (None for arrays and lists)."""

    frames: np.ndarray
    fps: float
    path: Optional[str] = None

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.frames.shape[1:3])

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _av(what: str):
    try:
        import av
    except ImportError:
        raise ValueError(f"{what} needs PyAV: pip install 'doubledip[video]' (or pip install av)") from None
    return av


def _natural_key(name: str):
    """'frame10' after 'frame9': digit runs compare as numbers."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


def _stack(frames: list[np.ndarray], names: list[str], name: str) -> np.ndarray:
    """Frames (H x W x C float32, C in {1, 3}) of one size -> T x H x W x 3."""
    first = frames[0].shape[:2]
    for label, f in zip(names, frames):
        if f.shape[:2] != first:
            raise ValueError(f"{name}: all frames must have one size: {names[0]} is {first[0]}x{first[1]}, "
                             f"{label} is {f.shape[0]}x{f.shape[1]} (H x W)")
    out = np.stack(frames)
    return np.repeat(out, 3, axis=3) if out.shape[3] == 1 else out


def _check_count(n: int, name: str) -> None:
    if n < MIN_FRAMES:
        raise ValueError(f"{name}: expected a clip of at least {MIN_FRAMES} frames, got {n}")


def probe_video(path, name: str = "frames") -> tuple[Optional[int], int, int, float]:
    """(frame count or None where the container does not say, H, W, fps) of a video file,
    without decoding it."""
    av = _av(f"{name}: reading the video {str(path)!r}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{name}: {str(path)!r} holds no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else DEFAULT_FPS
            count = int(stream.frames) or None
            if count is None and container.duration:  # webm: only the duration (microseconds)
                count = max(1, round(container.duration / 1e6 * fps))
            return count, int(stream.codec_context.height), int(stream.codec_context.width), fps
    except av.FFmpegError as exc:
        raise ValueError(f"{name}: {str(path)!r} is not a readable video ({exc})") from None


def read_video(path, name: str = "frames", check: Optional[SizeCheck] = None) -> Clip:
    """All frames of a video file's first video stream as a :class:`Clip`. ``check`` sees the
    size the container announces before any frame is decoded, and again whenever the decoded
    count passes it (containers may under-report)."""
    path = Path(path)
    count, h, w, fps = probe_video(path, name)
    check_image_size(h, w, name)
    if check is not None and count is not None:
        check(count, h, w)
    av = _av(f"{name}: reading the video {str(path)!r}")
    frames = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.video[0]):
                frames.append(frame.to_ndarray(format="rgb24"))
                if check is not None and (count is None or len(frames) > count):
                    check(len(frames), h, w)
    except av.FFmpegError as exc:
        raise ValueError(f"{name}: {str(path)!r} is not a readable video ({exc})") from None
    _check_count(len(frames), name)
    out = _stack([f.astype(np.float32) / 255.0 for f in frames],
                 [f"frame {i}" for i in range(len(frames))], name)
    return Clip(out, fps, str(path))


def _from_folder(path: Path, name: str, check: Optional[SizeCheck]) -> Clip:
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                   key=lambda p: _natural_key(p.name))
    _check_count(len(files), f"{name} (images in {str(path)!r})")
    frames = []
    for i, f in enumerate(files):
        frames.append(to_hwc(f, f"{name}: {f.name}"))
        if i == 0:
            check_image_size(*frames[0].shape[:2], name)
            if check is not None:
                check(len(files), *frames[0].shape[:2])
    return Clip(_stack(frames, [f.name for f in files], name), DEFAULT_FPS, str(path))


def _from_array(x: Any, name: str, check: Optional[SizeCheck]) -> np.ndarray:
    """T x H x W x C array (C in 1..4) or T x C x H x W tensor -> T x H x W x 3 float32."""
    import torch

    if isinstance(x, torch.Tensor):
        if x.dim() != 4 or x.shape[1] not in (1, 3, 4):
            raise ValueError(f"{name}: expected a T x C x H x W tensor (C in 1, 3, 4), got {_describe(x)}")
        arr = x.detach().cpu().permute(0, 2, 3, 1).numpy()
    else:
        arr = np.asarray(x)
    if arr.ndim != 4 or arr.shape[3] not in (1, 2, 3, 4):
        raise ValueError(f"{name}: expected a T x H x W x C array (C in 1..4), got {_describe(x)}"
                         + ("; a 3-D array is one image or a clip of gray frames: add the channel axis"
                            if arr.ndim == 3 else ""))
    _check_count(arr.shape[0], name)
    check_image_size(arr.shape[1], arr.shape[2], name)
    if check is not None:
        check(*arr.shape[:3])
    out = _array_to_unit(arr, name)
    if out.shape[3] in (2, 4):  # gray + alpha, RGBA: drop alpha
        out = out[..., :-1]
    return np.ascontiguousarray(np.repeat(out, 3, axis=3) if out.shape[3] == 1 else out)


def load_clip(x: Any, name: str = "frames", check: Optional[SizeCheck] = None) -> Clip:
    """A clip as T x H x W x 3 float32 frames in [0, 1] with its frame rate.

    x: a video file (mp4, mov, avi, webm, gif, mkv), a folder of images (sorted by name, digit
    runs as numbers), a list of images (anything ``doubledip`` takes as an image), a
    T x H x W x C array (uint8, uint16 or float in [0, 1]) or a T x C x H x W tensor. At least
    2 frames of one size, each at least 8 x 8. ``check(T, H, W)`` runs before the frames are
    decoded or stacked.
    """
    if isinstance(x, (str, os.PathLike)):
        path = Path(x)
        if not path.exists():
            raise ValueError(f"{name}: no such file or folder: {str(path)!r}")
        if path.is_dir():
            return _from_folder(path, name, check)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise ValueError(f"{name}: expected a video file, a folder of images or a list of images, "
                             f"got the single image {str(path)!r}")
        return read_video(path, name, check)
    if isinstance(x, (list, tuple)):
        _check_count(len(x), name)
        frames = []
        for i, item in enumerate(x):
            frames.append(to_hwc(item, f"{name}[{i}]"))
            if i == 0:
                check_image_size(*frames[0].shape[:2], f"{name}[0]")
                if check is not None:
                    check(len(x), *frames[0].shape[:2])
        return Clip(_stack(frames, [f"{name}[{i}]" for i in range(len(x))], name), DEFAULT_FPS)
    if isinstance(x, np.ndarray) or hasattr(x, "detach"):
        return Clip(_from_array(x, name, check), DEFAULT_FPS)
    raise TypeError(f"{name}: expected a video file, a folder of images, a list of images or a "
                    f"T x H x W x C array, got {_describe(x)}")


def load_maps(x: Any, name: str, count: int, size: tuple[int, int]) -> np.ndarray:
    """Per-frame hint maps as T x H x W float32 in [0, 1] (colour maps: max over channels):
    anything :func:`load_clip` takes, or a T x H x W array; ``count`` frames of ``size``, none
    of them all zero."""
    arr = np.asarray(x) if isinstance(x, np.ndarray) else None
    if arr is not None and arr.ndim == 3:  # T x H x W maps: the gray clip's channel axis added
        x = arr[..., None]
    if isinstance(x, (list, tuple)) and len(x) != count:
        raise ValueError(f"{name}: expected one map per frame ({count}), got {len(x)}")
    maps = load_clip(x, name).frames.max(axis=3)
    if maps.shape[0] != count:
        raise ValueError(f"{name}: expected one map per frame ({count}), got {maps.shape[0]}")
    if maps.shape[1:] != tuple(size):
        raise ValueError(f"{name}: expected maps of the clip's size {size[0]}x{size[1]} (H x W), "
                         f"got {maps.shape[1]}x{maps.shape[2]}")
    empty = [t for t in range(count) if not maps[t].any()]
    if empty:
        raise ValueError(f"{name}: the maps of frames {empty[:5]}{' ...' if len(empty) > 5 else ''} are all "
                         "zero; every frame's map must mark at least one pixel")
    return np.ascontiguousarray(maps)


def write_video(path, frames: np.ndarray, fps: float) -> None:
    """Write T x H x W x 3 (or T x H x W) frames in [0, 1] as a video file whose container is
    named by the suffix (mp4, mov, mkv, m4v: H.264; webm: VP9; avi: MPEG-4; gif). Frame count,
    size and frame rate are kept (GIF stores delays in 1/100 s: its rate is rounded to that).
    The codecs are lossy (GIF: a palette of 256 colours per frame): the PNG frames are the exact ones.
    """
    from doubledip.engine.io import to_uint8

    path = Path(path)
    codec = _CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"cannot write a video as {path.suffix!r}; expected one of {sorted(_CODECS)}")
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=3)
    if frames.ndim != 4 or frames.shape[3] != 3 or len(frames) < 1:
        raise ValueError(f"write_video: expected T x H x W x 3 or T x H x W frames, got shape {frames.shape}")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"write_video: fps must be a positive number, got {fps!r}")
    av = _av(f"writing the video {str(path)!r}")
    T, H, W = frames.shape[:3]
    rate = Fraction(fps).limit_denominator(1001)
    if codec == "libx264":
        pix_fmt = "yuv420p" if H % 2 == 0 and W % 2 == 0 else "yuv444p"
    else:
        pix_fmt = {"gif": "pal8", "mpeg4": "yuv420p", "libvpx-vp9": "yuv420p"}[codec]
        if pix_fmt == "yuv420p" and (H % 2 or W % 2):
            raise ValueError(f"write_video: {path.suffix} needs even sides, got {H}x{W}; use .mp4 or .gif")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "medium"}
        for frame in to_uint8(frames):
            frame = np.ascontiguousarray(frame)
            if codec == "gif":
                made = _palette_frame(av, frame)
            else:
                made = av.VideoFrame.from_ndarray(frame, format="rgb24")
            for packet in stream.encode(made):
                container.mux(packet)
        for packet in stream.encode():  # flush: the encoder holds the last frames back
            container.mux(packet)


def _palette_frame(av, frame: np.ndarray):
    """An H x W x 3 uint8 frame as a pal8 VideoFrame with its own 256-colour palette (median cut):
    FFmpeg's fixed rgb8 palette keeps 4 levels of blue."""
    from PIL import Image

    quantized = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT)
    colours = np.asarray(quantized.getpalette(), np.uint8).reshape(-1, 3)[:256]
    argb = np.zeros((256, 4), np.uint8)
    argb[:, 0] = 255  # opaque
    argb[:len(colours), 1:] = colours
    return av.VideoFrame.from_ndarray((np.asarray(quantized), argb), format="pal8")
