"""What a batch runs on: INPUT arguments (files, folders, glob patterns) -> one :class:`Item` per
input, each with a stable, unique output folder name.

Tasks whose first input is one image take one image file per item; their other inputs (a
hint, a second mixture) come from *sidecar* files beside it, named ``<stem>.<input>.<ext>``:
``photo.png`` + ``photo.hint.png`` for ``remove_watermark``, ``photo.fg_hint.png`` and
``photo.bg_hint.png`` for ``segment``, ``mix.png`` + ``mix.image2.png`` for ``separate_pair``.
Sidecars are never items of their own. Tasks that fit a set of images jointly
(``remove_watermark_multi``) take one folder per item: the images in it.
"""
from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
# names an item's folder may not take: the batch's own files in OUT
RESERVED = {"manifest.jsonl"}


@dataclass(frozen=True)
class Item:
    """One input of a batch.

    key: the absolute path of its main input (an image file, or an image set's folder): what
        the manifest records as ``input``. name: its folder in OUT. paths: input name -> path
        (a list of paths for an image set). missing: why it cannot run (a required sidecar not
        found), or "" when it can.
    """

    key: str
    name: str
    paths: dict = field(default_factory=dict)
    missing: str = ""


def _has_magic(pattern: str) -> bool:
    return glob.has_magic(pattern)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _sidecar_names(spec) -> list[str]:
    """The inputs of ``spec`` that come from sidecar files (all but the first)."""
    return [i.name for i in spec.inputs[1:]]


def _sidecar_of(path: Path, names: list[str]) -> Optional[str]:
    """The input name ``path`` is a sidecar for (``photo.hint.png`` -> ``hint``), or None."""
    stem = path.stem
    for n in names:
        for spelled in {n, n.replace("_", "-")}:
            if stem.endswith("." + spelled) and len(stem) > len(spelled) + 1:
                return n
    return None


def _expand_one(arg: str, sets: bool) -> list[Path]:
    """The paths one INPUT argument stands for (files, or folders when ``sets``)."""
    if _has_magic(arg):
        matches = [Path(m) for m in sorted(glob.glob(arg, recursive=True))]
        if not matches:
            raise ValueError(f"INPUT {arg!r} matched no file or folder")
    else:
        p = Path(arg)
        if not p.exists():
            raise ValueError(f"INPUT {arg!r}: no such file or folder")
        matches = [p]
    out = []
    for p in matches:
        if sets:
            if p.is_dir():
                out.append(p)
            elif not _has_magic(arg):
                raise ValueError(f"INPUT {arg!r}: this task fits a set of images jointly; expected a folder "
                                 f"holding one set, got a file")
        elif p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.is_file() and _is_image(f)))
        elif p.is_file() and (_is_image(p) or not _has_magic(arg)):  # a file named explicitly: tried as given
            out.append(p)
    return out


def collect(spec, args: Iterable) -> list[tuple[str, dict, str]]:
    """INPUT arguments -> (key, paths, missing) per input, sorted by key, without duplicates.

    Raises ValueError for an argument that names nothing, and when nothing is left to run."""
    if isinstance(args, (str, os.PathLike)):
        args = [args]
    args = [os.fspath(a) for a in args]
    if not args:
        raise ValueError("no INPUT given; expected image files, folders or glob patterns")
    first = spec.inputs[0]
    sets = first.kind == "images"
    sidecars = _sidecar_names(spec)
    found: dict[str, Path] = {}
    for arg in args:
        for p in _expand_one(arg, sets):
            if not sets and _sidecar_of(p, sidecars):
                continue  # another input of some item
            found.setdefault(str(p.resolve()), p)
    if not found:
        raise ValueError(f"INPUT {' '.join(args)!r}: no {'folders' if sets else 'image files'} to run "
                         f"({'image sets are folders' if sets else 'files ending ' + ', '.join(IMAGE_SUFFIXES)})")
    listings: dict[Path, list[Path]] = {}
    out = []
    for key in sorted(found):
        p = Path(key)
        if sets:
            images = sorted(str(f) for f in p.iterdir() if f.is_file() and _is_image(f))
            out.append((key, {first.name: images}, ""))
            continue
        if p.parent not in listings:
            listings[p.parent] = sorted(f for f in p.parent.iterdir() if f.is_file())
        paths, missing = {first.name: key}, []
        for item in spec.inputs[1:]:
            spelled = {f"{p.stem}.{item.name}", f"{p.stem}.{item.name.replace('_', '-')}"}
            match = [f for f in listings[p.parent] if f.stem in spelled and _is_image(f)]
            if match:
                paths[item.name] = str(match[0])
            elif item.required:
                missing.append(f"{spec.name} needs {item.name!r} for {key!r}: expected a file "
                               f"{p.stem}.{item.name}.png (or another image type) beside it")
        out.append((key, paths, "; ".join(missing)))
    return out


def _clean(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip(".")
    return name or "input"


def _hashed(stem: str, key: str, length: int = 8) -> str:
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:length]}"


def assign_names(keys: list[str], known: Optional[dict] = None, sets: bool = False) -> dict[str, str]:
    """A folder name per key: its file stem (a set: its folder's name), or, where two keys share
    a stem, the stem and 8 hex digits of the key's hash. Stable: it depends on the key and the
    other keys' stems, not on their order; ``known`` (key -> name, from the manifest) keeps the
    names earlier runs gave."""
    known = dict(known or {})
    stems = {k: _clean(Path(k).name if sets else Path(k).stem) for k in keys}
    taken = {n for k, n in known.items()}
    counts: dict[str, int] = {}
    for k in keys:
        if k not in known:
            counts[stems[k]] = counts.get(stems[k], 0) + 1
    names = {}
    for k in keys:
        if k in known:
            names[k] = known[k]
            continue
        stem = stems[k]
        name = stem
        if counts[stem] > 1 or name in taken or name in RESERVED:
            length = 8
            name = _hashed(stem, k, length)
            while name in taken:  # a hash prefix clash: practically never; lengthen until unique
                length += 4
                name = _hashed(stem, k, length)
        names[k] = name
        taken.add(name)
    return names


def items(spec, args, known: Optional[dict] = None) -> list[Item]:
    """The batch's items for INPUT arguments ``args`` (see :func:`collect`, :func:`assign_names`)."""
    found = collect(spec, args)
    names = assign_names([k for k, _, _ in found], known, sets=spec.inputs[0].kind == "images")
    return [Item(key=k, name=names[k], paths=paths, missing=missing) for k, paths, missing in found]
