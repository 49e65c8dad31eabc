"""Result objects: the task's image fields, plus ``history``, ``seconds``, ``config``, ``save(dir)``."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from doubledip.engine.io import save_png


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (np.floating, np.integer)):
        return _jsonable(v.item())
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()] if v.ndim else _jsonable(v.item())
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


@dataclass
class _ResultBase:
    history: list = field(default_factory=list, repr=False)
    seconds: float = 0.0
    config: Any = None
    task: str = ""
    # The fitted generators and their fixed inputs (for export); not part of the public fields.
    fitted: Optional[dict] = field(default=None, repr=False)

    _IMAGE_FIELDS: ClassVar[tuple] = ()
    _LIST_FIELDS: ClassVar[tuple] = ()
    _VALUE_FIELDS: ClassVar[tuple] = ()

    def image_files(self) -> dict[str, np.ndarray]:
        """File stem -> image array, for every image field (lists become ``name_0``, ``name_1``...)."""
        out = {}
        for name in self._IMAGE_FIELDS:
            out[name] = getattr(self, name)
        for name in self._LIST_FIELDS:
            stem = name[:-1] if name.endswith("s") else name
            for i, img in enumerate(getattr(self, name)):
                out[f"{stem}_{i}"] = img
        return out

    def summary(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {
            "task": self.task,
            "seconds": self.seconds,
            "config": self.config.to_dict() if hasattr(self.config, "to_dict") else self.config,
            "values": {name: getattr(self, name) for name in self._VALUE_FIELDS},
            "final": {k: v for k, v in last.items() if k not in ("stage",)},
            "images": {stem: f"{stem}.png" for stem in self.image_files()},
            "history": self.history,
        }

    def export(self, directory, format: str = "onnx") -> Path:
        """Write the fitted generators with their fixed inputs and ``manifest.json`` (see doubledip.engine.export)."""
        from doubledip.engine.export import export
        return export(self, directory, format)

    def save(self, directory) -> Path:
        """Write one PNG per image field and ``result.json`` into ``directory`` (created if needed).

        Files are written to a temporary folder beside it first, then moved in: a failure leaves
        no half-written file behind.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".doubledip-", dir=directory))
        try:
            for stem, img in self.image_files().items():
                save_png(tmp / f"{stem}.png", img)
            with open(tmp / "result.json", "w") as fh:
                json.dump(_jsonable(self.summary()), fh, indent=2)
            for f in sorted(tmp.iterdir()):
                os.replace(f, directory / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return directory


@dataclass
class DehazeResult(_ResultBase):
    image: np.ndarray = None  # H x W x 3 haze-free
    transmission: np.ndarray = None  # H x W
    airlight: np.ndarray = None  # (3,)
    _IMAGE_FIELDS = ("image", "transmission")
    _VALUE_FIELDS = ("airlight",)


@dataclass
class SeparationResult(_ResultBase):
    layers: list = None  # 2 x (H x W x 3), each at about half intensity
    reconstruction: np.ndarray = None  # H x W x 3
    _IMAGE_FIELDS = ("reconstruction",)
    _LIST_FIELDS = ("layers",)


@dataclass
class PairSeparationResult(_ResultBase):
    layers: list = None  # 2 x (H x W x 3)
    alphas: np.ndarray = None  # (2,)
    _LIST_FIELDS = ("layers",)
    _VALUE_FIELDS = ("alphas",)


@dataclass
class SegmentationResult(_ResultBase):
    mask: np.ndarray = None  # H x W in {0, 1}
    soft_mask: np.ndarray = None  # H x W
    foreground: np.ndarray = None  # H x W x 3
    background: np.ndarray = None  # H x W x 3
    _IMAGE_FIELDS = ("mask", "soft_mask", "foreground", "background")


@dataclass
class WatermarkResult(_ResultBase):
    image: np.ndarray = None  # H x W x 3 clean
    watermark: np.ndarray = None  # H x W x 3
    mask: np.ndarray = None  # H x W
    _IMAGE_FIELDS = ("image", "watermark", "mask")


@dataclass
class MultiWatermarkResult(_ResultBase):
    images: list = None  # N x (H x W x 3) clean
    watermark: np.ndarray = None  # H x W x 3
    mask: np.ndarray = None  # H x W
    _IMAGE_FIELDS = ("watermark", "mask")
    _LIST_FIELDS = ("images",)


def public_fields(result: _ResultBase) -> list[str]:
    """The task's own fields (the ARCHITECTURE.md table), in order."""
    base = {f.name for f in fields(_ResultBase)}
    return [f.name for f in fields(result) if f.name not in base]
