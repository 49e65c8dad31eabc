"""Result objects: the task's image fields, plus ``history``, ``seconds``, ``config``, ``device``,
``inputs``, ``save(dir)``."""
from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np

from doubledip.engine.io import save_png

RESULT_JSON = "result.json"
RESULT_VERSION = 1  # result.json's "doubledip_result": marks the file (and the folder) as doubledip's
EXPORT_FOLDER = "export"  # where the CLI (and result.export's docs) put a result's export


class ShortRunWarning(UserWarning):
    """A run ended before its outputs beat the trivial answer (judged without ground truth);
    the result's ``warnings`` hold the same message."""


def warn_short_run(result: "_ResultBase", message: str) -> None:
    """Record ``message`` on ``result`` (its ``warnings``, saved in result.json) and issue it as a
    :class:`ShortRunWarning` (the CLI prints the result's warnings itself)."""
    import warnings

    result.warnings.append(message)
    warnings.warn(message, ShortRunWarning, stacklevel=3)


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
    # The device the run used ("cpu", "cuda:0") and, per input name, {"path", "size"} (see
    # describe_run); filled by the task functions.
    device: str = ""
    inputs: dict = field(default_factory=dict, repr=False)
    # why the run ended: "iterations" (it ran its iteration count), or the stopping rule's or
    # the problem's own reason, with the iteration it stopped at (None: its cap); and the
    # warnings the run raised (a short run whose outputs are not yet past the trivial answer)
    stop_reason: str = ""
    stopped_at: Optional[int] = None
    warnings: list = field(default_factory=list)

    _IMAGE_FIELDS: ClassVar[tuple] = ()
    _LIST_FIELDS: ClassVar[tuple] = ()
    _VALUE_FIELDS: ClassVar[tuple] = ()
    # fields that say how the result was made (result.json "run"), not outputs
    _RUN_FIELDS: ClassVar[tuple] = ()

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

    def summary(self, extra_files=()) -> dict:
        """What ``result.json`` holds (``extra_files``: more file names :meth:`save` writes with it)."""
        last = self.history[-1] if self.history else {}
        images = {stem: f"{stem}.png" for stem in self.image_files()}
        return {
            "doubledip_result": RESULT_VERSION,
            "task": self.task,
            "seconds": self.seconds,
            "device": self.device,
            "inputs": self.inputs,
            "versions": versions(),
            "config": self.config.to_dict() if hasattr(self.config, "to_dict") else self.config,
            "values": {name: getattr(self, name) for name in self._VALUE_FIELDS},
            "run": {"stop_reason": self.stop_reason, "stopped_at": self.stopped_at, "warnings": list(self.warnings),
                    **{name: getattr(self, name) for name in self._RUN_FIELDS}},
            "final": {k: v for k, v in last.items() if k not in ("stage",)},
            "images": images,
            "files": sorted({*images.values(), *extra_files, RESULT_JSON}),
            "history": self.history,
        }

    def export(self, directory, format: str = "onnx") -> Path:
        """Write the fitted generators with their fixed inputs and ``manifest.json`` (see doubledip.engine.export)."""
        from doubledip.engine.export import export
        return export(self, directory, format)

    def save(self, directory, overwrite: bool = False, extra_images: Optional[dict] = None) -> Path:
        """Write one PNG per image field and ``result.json`` (which lists them) into ``directory``
        (created if needed); returns it. ``extra_images``: more images to write with the result
        and list as its files, name -> H x W [x 3] array in [0, 1] (the CLI demo's ``input``).

        The folder then holds this result's files and no other result's:

        - a new or empty folder (hidden entries aside) is written to;
        - a folder holding an earlier result of the same task is updated: the files its
          ``result.json`` lists are replaced or removed, and so is its ``export/`` folder (files
          its ``manifest.json`` lists; export again after saving);
        - a folder holding another task's result is refused (ValueError), unless ``overwrite``:
          then that result's files are removed as above;
        - a non-empty folder holding no doubledip result is refused, unless ``overwrite``: then
          the result is written beside its files, replacing those of the same names.

        Files doubledip did not write (as far as ``result.json`` and ``manifest.json`` say) are
        never deleted. Files are written to a temporary folder first, then moved in: a failure
        leaves no half-written file. An unwritable folder raises ValueError naming it.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"cannot save into {str(directory)!r}: it exists and is not a folder")
        images = self.image_files()
        extra = dict(extra_images or {})
        for stem in extra:
            if not _plain_names([stem]) or stem in images:
                raise ValueError(f"extra_images: expected plain file stems other than the result's own "
                                 f"({', '.join(images)}), got {stem!r}")
        stale = self._check_folder(directory, overwrite)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".doubledip-", dir=directory))
            try:
                for stem, img in {**images, **extra}.items():
                    save_png(tmp / f"{stem}.png", np.asarray(img))
                with open(tmp / RESULT_JSON, "w") as fh:
                    json.dump(_jsonable(self.summary([f"{stem}.png" for stem in extra])), fh, indent=2)
                # the images first, the index (result.json) last, then what the old index listed
                new = sorted((f for f in tmp.iterdir() if f.name != RESULT_JSON), key=lambda f: f.name)
                for f in [*new, tmp / RESULT_JSON]:
                    os.replace(f, directory / f.name)
                written = {f.name for f in new} | {RESULT_JSON}
                for p in stale:
                    if p.parent != directory or p.name not in written:
                        p.unlink(missing_ok=True)
                if any(p.parent == directory / EXPORT_FOLDER for p in stale):
                    _remove_if_empty(directory / EXPORT_FOLDER)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            raise ValueError(f"cannot write to {str(directory)!r}: {exc.strerror or exc}") from exc
        return directory

    def _check_folder(self, directory: Path, overwrite: bool) -> list[Path]:
        """Raise ValueError where :meth:`save` must not write into ``directory``; else the files
        of the earlier result there (to replace or remove)."""
        try:
            if not directory.is_dir():
                return []
            previous = read_result_json(directory)
            if previous is None:
                entries = sorted(e.name for e in directory.iterdir() if not e.name.startswith(".")
                                 and not (e.name == EXPORT_FOLDER and _export_files(e) is not None))
                if entries and not overwrite:
                    shown = ", ".join(repr(n) for n in entries[:3]) + (", ..." if len(entries) > 3 else "")
                    raise ValueError(
                        f"cannot save the {self.task!r} result into {str(directory)!r}: the folder holds "
                        f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'} that are not a doubledip result ({shown}); choose a new or "
                        "empty folder, or pass overwrite=True (CLI: --overwrite) to write beside them "
                        "(files of the result's names are replaced, nothing else is deleted)")
                return []
            found = previous.get("task")
            if found != self.task and not overwrite:
                raise ValueError(
                    f"cannot save the {self.task!r} result into {str(directory)!r}: the folder holds a "
                    f"{found!r} result; pass overwrite=True (CLI: --overwrite) to replace it, or choose "
                    "another folder")
            return _listed_files(directory, previous) + (_export_files(directory / EXPORT_FOLDER) or [])
        except OSError as exc:
            raise ValueError(f"cannot read the folder {str(directory)!r}: {exc.strerror or exc}") from exc


def _plain_names(names) -> list[str]:
    """The entries of ``names`` that are plain file names (no folders, no hidden names)."""
    if not isinstance(names, (list, tuple)):
        return []
    return [n for n in names if isinstance(n, str) and n and "/" not in n and "\\" not in n
            and not n.startswith(".")]


def read_result_json(directory) -> Optional[dict]:
    """The doubledip ``result.json`` in ``directory`` as a dict, or None where there is none (or
    the file there is not doubledip's)."""
    try:
        with open(Path(directory) / RESULT_JSON) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str) or not isinstance(meta.get("images"), dict):
        return None
    # files written before the marker existed: doubledip's by their keys
    if "doubledip_result" in meta or {"config", "history", "seconds"} <= set(meta):
        return meta
    return None


def _listed_files(directory: Path, meta: dict) -> list[Path]:
    """The files an earlier result.json in ``directory`` says its result wrote."""
    names = meta.get("files")
    if names is None:  # written before "files" existed: the images and the index
        names = [*meta["images"].values(), RESULT_JSON]
    return [directory / n for n in _plain_names(list(names))]


def _export_files(folder: Path) -> Optional[list[Path]]:
    """The files of the doubledip export in ``folder`` (the files its manifest lists for each
    generator, the manifest), or None where ``folder`` holds none."""
    try:
        with open(folder / "manifest.json") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or "doubledip_export" not in manifest:
        return None
    gens = manifest.get("generators")
    # every generator's files: "file", "input_file", "noise_file" (any key naming a file)
    names = [v for g in gens.values() if isinstance(g, dict) for k, v in g.items()
             if k == "file" or k.endswith("_file")] if isinstance(gens, dict) else []
    return [folder / n for n in _plain_names(names)] + [folder / "manifest.json"]


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not there, or holds files doubledip did not write: kept
        pass


def versions() -> dict:
    """The versions result.json records: doubledip, torch, python, numpy."""
    import torch

    try:
        from importlib.metadata import PackageNotFoundError, version

        own = version("doubledip")
    except PackageNotFoundError:  # run from a source tree
        import doubledip

        own = doubledip.__version__
    return {"doubledip": own, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__}


def device_name(device) -> str:
    """A torch.device or str as result.json records it: "cpu", "cuda:0" (CUDA always indexed)."""
    import torch

    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a torch.device or str, got {type(device).__name__}")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return str(dev)


def describe_run(results, device, inputs, run=None):
    """Record on a result, or on each of a list of results, the device the run used, its
    inputs and why it ended; returns ``results``.

    device: a torch.device or str ("cuda" becomes "cuda:N", the current device).
    inputs: input name -> ``io.describe_input(value, size)``, one dict for all the results, or a
        list of such dicts, one per result (a batch: each result its own image).
    run: the run's ``solver.ProgressReporter`` (its ``stop_reason`` and ``stopped_at``), or None
        for a result without a fit (the classic dehazing: stop_reason "no fit").
    """
    many = isinstance(results, (list, tuple))
    items = list(results) if many else [results]
    for r in items:
        if not isinstance(r, _ResultBase):
            raise TypeError(f"describe_run expects a doubledip result or a list of them, got {type(r).__name__}")
    per = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs] * len(items)
    if len(per) != len(items):
        raise ValueError(f"describe_run: expected one inputs dict per result ({len(items)}), got {len(per)}")
    for d in per:
        if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in d.items()):
            raise TypeError(f"inputs must map input names to describe_input() dicts, got {d!r}")
    name = device_name(device)
    for r, d in zip(items, per):
        r.device, r.inputs = name, {k: dict(v) for k, v in d.items()}
        r.stop_reason, r.stopped_at = ("no fit", None) if run is None else (run.stop_reason, run.stopped_at)
    return results


@dataclass
class DehazeResult(_ResultBase):
    image: np.ndarray = None  # H x W x 3 haze-free
    transmission: np.ndarray = None  # H x W
    airlight: np.ndarray = None  # (3,)
    method: str = field(default="dip", repr=False)  # "dip" (the fit) or "dcp" (the classic prior)
    # fast mode: which of the fit and the classic result this is, and why ("" otherwise)
    selection: str = field(default="", repr=False)
    _IMAGE_FIELDS = ("image", "transmission")
    _VALUE_FIELDS = ("airlight",)
    _RUN_FIELDS = ("method", "selection")


@dataclass
class SeparationResult(_ResultBase):
    layers: list = None  # 2 x (H x W x 3), each at about half intensity
    reconstruction: np.ndarray = None  # H x W x 3
    # fast mode: how often the run started again after a collapse (one layer flat)
    restarts: int = field(default=0, repr=False)
    _IMAGE_FIELDS = ("reconstruction",)
    _LIST_FIELDS = ("layers",)
    _RUN_FIELDS = ("restarts",)


@dataclass
class PairSeparationResult(_ResultBase):
    layers: list = None  # 2 x (H x W x 3)
    alphas: np.ndarray = None  # (2,)
    # "dip" (the fit) or "ica" (the weights by sparse ICA, the layers in closed form: no fit)
    method: str = field(default="dip", repr=False)
    _LIST_FIELDS = ("layers",)
    _VALUE_FIELDS = ("alphas",)
    _RUN_FIELDS = ("method",)


@dataclass
class SegmentationResult(_ResultBase):
    mask: np.ndarray = None  # H x W in {0, 1}
    soft_mask: np.ndarray = None  # H x W
    foreground: np.ndarray = None  # H x W x 3
    background: np.ndarray = None  # H x W x 3
    # the hints the run used, {"fg": H x W, "bg": H x W} in [0, 1] (given, or computed from a
    # saliency map with hints="auto"), or None (hints="none"); saved as fg_hint.png / bg_hint.png
    hints: Optional[dict] = field(default=None, repr=False)
    # "dip" (the fit) or "saliency" (the saliency map's threshold through a guided filter: no fit)
    method: str = field(default="dip", repr=False)
    _IMAGE_FIELDS = ("mask", "soft_mask", "foreground", "background")
    _RUN_FIELDS = ("hints", "method")
    HINT_FILES: ClassVar[dict] = {"fg": "fg_hint", "bg": "bg_hint"}

    def image_files(self) -> dict[str, np.ndarray]:
        """The image fields, then the hints used (``fg_hint``, ``bg_hint``) when there were any."""
        out = super().image_files()
        for key, stem in self.HINT_FILES.items():
            if self.hints is not None:
                out[stem] = self.hints[key]
        return out

    def summary(self, extra_files=()) -> dict:
        """result.json's "run" names the hint files rather than holding the maps."""
        out = super().summary(extra_files)
        out["run"]["hints"] = None if self.hints is None else {
            key: f"{stem}.png" for key, stem in self.HINT_FILES.items()}
        return out


@dataclass
class WatermarkResult(_ResultBase):
    image: np.ndarray = None  # H x W x 3 clean
    watermark: np.ndarray = None  # H x W x 3
    mask: np.ndarray = None  # H x W
    # what fills the hinted region: "dip" (the fit), "dip+inpainting" (fast mode: the fit combined
    # with the region's biharmonic inpainting) or "inpainting" (method="inpainting": no fit)
    method: str = field(default="dip", repr=False)
    _IMAGE_FIELDS = ("image", "watermark", "mask")
    _RUN_FIELDS = ("method",)


@dataclass
class MultiWatermarkResult(_ResultBase):
    images: list = None  # N x (H x W x 3) clean
    watermark: np.ndarray = None  # H x W x 3
    mask: np.ndarray = None  # H x W
    _IMAGE_FIELDS = ("watermark", "mask")
    _LIST_FIELDS = ("images",)


def public_fields(result: _ResultBase) -> list[str]:
    """The task's own fields (the ARCHITECTURE.md table), in order."""
    base = {f.name for f in fields(_ResultBase)} | set(result._RUN_FIELDS)
    return [f.name for f in fields(result) if f.name not in base]


# ---- video results (doubledip.engine.tasks.video) -------------------------------------------

FRAME_PNG = re.compile(r"^\d{4,}\.png$")  # a frame file inside a video result's frame folder


@dataclass
class _VideoResultBase(_ResultBase):
    """A clip's result: its fields are T x H x W x 3 (or T x H x W) arrays, one frame per row.

    ``save(dir)`` writes each output as a video file (``<field>.mp4``: frame count, size and
    ``fps`` kept), its frames as PNGs (``<field>/0000.png``, ...) and ``result.json``.
    """

    fps: float = 25.0  # the input clip's frame rate (25 for clips given as images or arrays)

    # T-leading arrays: single fields, and lists of them (``layers``: layer_0, layer_1)
    _FRAME_FIELDS: ClassVar[tuple] = ()
    _FRAME_LIST_FIELDS: ClassVar[tuple] = ()

    def frame_fields(self) -> dict[str, np.ndarray]:
        """Output stem -> T x H x W [x 3] array (lists become ``name_0``, ``name_1``...)."""
        out = {name: getattr(self, name) for name in self._FRAME_FIELDS}
        for name in self._FRAME_LIST_FIELDS:
            stem = name[:-1] if name.endswith("s") else name
            for i, clip in enumerate(getattr(self, name)):
                out[f"{stem}_{i}"] = clip
        return out

    def image_files(self) -> dict[str, np.ndarray]:
        return {}  # frames go to folders of their own (see save)

    @property
    def frames(self) -> int:
        return int(len(next(iter(self.frame_fields().values()))))

    def _frame_names(self) -> list[str]:
        digits = max(4, len(str(self.frames - 1)))
        return [f"{t:0{digits}d}.png" for t in range(self.frames)]

    def summary(self, extra_files=()) -> dict:
        out = super().summary(extra_files)
        out["frame_count"] = self.frames
        out["frames"] = {stem: [f"{stem}/{n}" for n in self._frame_names()] for stem in self.frame_fields()}
        out["frame_folders"] = sorted(self.frame_fields())
        videos = getattr(self, "_videos", {})  # set by save
        out["videos"] = dict(videos)
        out["files"] = sorted({*out["files"], *videos.values()})
        return out

    def export(self, directory, format: str = "onnx") -> Path:
        raise ValueError(f"export: {self.task!r} results cannot be exported (the video tasks' generators are "
                         "shared by all frames and run on per-frame inputs; export is for image tasks)")

    def save(self, directory, overwrite: bool = False, extra_images: Optional[dict] = None,
             video_format: Optional[str] = "mp4", fps: Optional[float] = None) -> Path:
        """Write ``<field>.<video_format>`` per output (None: no videos), ``<field>/NNNN.png``
        per frame and ``result.json`` into ``directory``; returns it. ``fps``: the videos' frame
        rate (None: the result's ``fps``, the input's). ``extra_images``: not taken by video
        results (only None or empty, for callers that pass it to every result).

        The folder rules are :meth:`_ResultBase.save`'s: a new or empty folder, or one holding an
        earlier result of the same task (its files, frame files and export replaced or removed);
        another task's result or files doubledip did not write are refused unless ``overwrite``.
        Everything is written to a temporary folder first, then moved in, ``result.json`` last.
        """
        from doubledip.engine.video_io import write_video

        directory = Path(directory)
        if extra_images:
            raise ValueError(f"extra_images: a {self.task!r} result saves its frames only, got {sorted(extra_images)}")
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"cannot save into {str(directory)!r}: it exists and is not a folder")
        fps = self.fps if fps is None else fps
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if video_format is not None:
            suffix = "." + str(video_format).lstrip(".").lower()
            from doubledip.engine.video_io import _CODECS, _av

            if suffix not in _CODECS:
                raise ValueError(f"video_format must be one of {sorted(s[1:] for s in _CODECS)} or None, "
                                 f"got {video_format!r}")
            _av("saving the result's videos")  # before anything is written
        clips = self.frame_fields()
        self._videos = {} if video_format is None else {stem: stem + suffix for stem in clips}
        stale = self._check_folder(directory, overwrite)
        previous = read_result_json(directory) if directory.is_dir() else None
        for folder in _plain_names((previous or {}).get("frame_folders", [])):
            if (directory / folder).is_dir():
                stale += [f for f in (directory / folder).iterdir() if FRAME_PNG.match(f.name)]
        for stem in clips:  # a frame folder's name taken by a file (written beside with overwrite)
            if (directory / stem).exists() and not (directory / stem).is_dir():
                raise ValueError(f"cannot save into {str(directory)!r}: {stem!r} there is a file, "
                                 "where the result's frame folder goes")
        names = self._frame_names()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".doubledip-", dir=directory))
            try:
                for stem, clip in clips.items():
                    (tmp / stem).mkdir()
                    for n, frame in zip(names, np.asarray(clip)):
                        save_png(tmp / stem / n, frame)
                    if stem in self._videos:
                        write_video(tmp / self._videos[stem], clip, fps)
                summary = self.summary()
                summary["values"]["fps"] = float(fps)
                with open(tmp / RESULT_JSON, "w") as fh:
                    json.dump(_jsonable(summary), fh, indent=2)
                written = {RESULT_JSON}
                for stem in clips:  # frames, then the videos, then the index
                    (directory / stem).mkdir(exist_ok=True)
                    for n in names:
                        os.replace(tmp / stem / n, directory / stem / n)
                        written.add(f"{stem}/{n}")
                for f in self._videos.values():
                    os.replace(tmp / f, directory / f)
                    written.add(f)
                os.replace(tmp / RESULT_JSON, directory / RESULT_JSON)
                for p in stale:
                    if p.relative_to(directory).as_posix() not in written:
                        p.unlink(missing_ok=True)
                for p in {p.parent for p in stale if p.parent != directory}:
                    _remove_if_empty(p)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            raise ValueError(f"cannot write to {str(directory)!r}: {exc.strerror or exc}") from exc
        return directory


@dataclass
class VideoSeparationResult(_VideoResultBase):
    layers: list = None  # 2 x (T x H x W x 3), each at about half intensity
    reconstruction: np.ndarray = None  # T x H x W x 3
    _FRAME_FIELDS = ("reconstruction",)
    _FRAME_LIST_FIELDS = ("layers",)
    _VALUE_FIELDS = ("fps",)


@dataclass
class VideoDehazeResult(_VideoResultBase):
    image: np.ndarray = None  # T x H x W x 3 haze-free
    transmission: np.ndarray = None  # T x H x W
    airlight: np.ndarray = None  # (3,), one for the clip
    method: str = field(default="dip", repr=False)  # "dip" (the fit) or "dcp" (the classic prior per frame)
    # fast mode: which of the fit and the classic result this clip is, and why ("" otherwise)
    selection: str = field(default="", repr=False)
    _FRAME_FIELDS = ("image", "transmission")
    _VALUE_FIELDS = ("airlight", "fps")
    _RUN_FIELDS = ("method", "selection")


@dataclass
class VideoSegmentationResult(_VideoResultBase):
    mask: np.ndarray = None  # T x H x W in {0, 1}
    soft_mask: np.ndarray = None  # T x H x W
    foreground: np.ndarray = None  # T x H x W x 3
    background: np.ndarray = None  # T x H x W x 3
    # the hints the run used, {"fg": T x H x W, "bg": T x H x W} (given, or each frame's from its
    # saliency map with hints="auto"), or None (hints="none"); and where they came from
    hints: Optional[dict] = field(default=None, repr=False)
    hint_source: str = field(default="", repr=False)
    # "dip" (the fit) or "saliency" (each frame's saliency map's threshold, guided-filtered: no fit)
    method: str = field(default="dip", repr=False)
    _FRAME_FIELDS = ("mask", "soft_mask", "foreground", "background")
    _VALUE_FIELDS = ("fps",)
    _RUN_FIELDS = ("hints", "hint_source", "method")

    def summary(self, extra_files=()) -> dict:
        """result.json's "run" says where the hints came from ("given", "auto"; "none": no hints)
        rather than holding the maps."""
        out = super().summary(extra_files)
        out["run"]["hints"] = out["run"].pop("hint_source") or None
        return out
