"""Atomic output folders: a result is written into ``OUT/.partial-<name>-<random>/`` and renamed to
``OUT/<name>/`` once complete, so ``OUT/<name>/`` is always a whole result or absent."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

PARTIAL = ".partial-"
REPLACED = ".replaced-"
CHECKPOINTS = ".checkpoints"


def staging(out_dir, name: str) -> Path:
    """A new, empty temporary folder in ``out_dir`` for ``name``'s result (same file system as
    the final folder, so the rename is atomic)."""
    tmp = Path(out_dir) / f"{PARTIAL}{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def commit(tmp: Path, final: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``final``. An existing ``final`` is replaced when ``replace`` (moved
    aside, the new folder renamed in, the old one deleted), else ValueError."""
    tmp, final = Path(tmp), Path(final)
    if final.exists() or final.is_symlink():
        if not replace:
            raise ValueError(f"output folder {str(final)!r} exists and holds no output of this batch; "
                             "remove it, choose another OUT, or pass --overwrite (overwrite=True) to replace it")
        aside = final.parent / f"{REPLACED}{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, aside)
        os.rename(tmp, final)
        shutil.rmtree(aside, ignore_errors=True)
        return
    os.rename(tmp, final)


def mark_partial(folder: Path) -> None:
    """Mark the result in ``folder`` as partial (``"partial": true`` in its result.json)."""
    path = Path(folder) / "result.json"
    meta = json.loads(path.read_text())
    meta["partial"] = True
    tmp = path.with_name(".result.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, path)


def clean_stale(out_dir) -> list[Path]:
    """Remove the temporary folders a killed or interrupted batch left in ``out_dir``; returns them."""
    out_dir = Path(out_dir)
    gone = []
    if not out_dir.is_dir():
        return gone
    for p in out_dir.iterdir():
        if p.is_dir() and (p.name.startswith(PARTIAL) or p.name.startswith(REPLACED)):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


def checkpoint_dir(out_dir, name: str) -> Path:
    """Where an item's checkpoints live while it runs: ``OUT/.checkpoints/<name>/``."""
    return Path(out_dir) / CHECKPOINTS / name


def is_result(folder) -> bool:
    """Whether ``folder`` holds a complete doubledip result (its result.json is written last)."""
    from doubledip.engine.results import read_result_json

    return read_result_json(folder) is not None
