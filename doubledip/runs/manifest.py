"""``OUT/manifest.jsonl``: one JSON object per input and state change, appended.

Each line: ``input`` (the input's absolute path), ``name`` (its folder in OUT), ``status``
(``running``, ``done`` or ``failed``), ``output`` (the folder, relative to OUT; null unless
done), ``seconds``, ``error`` (the one-line message of a failure, else null), ``config`` (task,
options and solver settings), ``time`` (UTC, ISO 8601), ``pid`` (the writing process) and, where
they apply, ``inputs`` (every input file) and ``partial``. The latest line of an input is its
state. Lines are appended with one ``write`` each and synced, so a process killed at any moment
leaves at most one cut-off last line, which readers skip (and the next append starts on a fresh
line).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

MANIFEST = "manifest.jsonl"
STATUSES = ("running", "done", "failed")
# what must match for a done input to count as done by this run (the rest, such as the device,
# threads or log_every, does not change the result)
IDENTITY = ("task", "options", "iterations", "repeats", "lr", "seed", "mode", "channels_last",
            "early_stop", "group")


def identity(config: Optional[dict]) -> dict:
    """The part of a manifest ``config`` that decides the outputs."""
    config = config or {}
    return {k: config.get(k) for k in IDENTITY}


def differences(old: Optional[dict], new: dict) -> list[str]:
    """``key: old -> new`` for each identity key that differs."""
    a, b = identity(old), identity(new)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in IDENTITY if a[k] != b[k]]


def read(path) -> list[dict]:
    """Every record of a manifest file, in order (a missing file: none). Lines that do not parse
    as a JSON object with ``input`` and a known ``status`` (a line cut off by a kill) are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("input"), str) and rec.get("status") in STATUSES:
            records.append(rec)
    return records


def latest(records: list[dict]) -> dict[str, dict]:
    """input -> its latest record."""
    out: dict[str, dict] = {}
    for rec in records:
        out[rec["input"]] = rec
    return out


class Manifest:
    """The append side of a manifest file (opened on first use, kept open; :meth:`close`)."""

    def __init__(self, out_dir):
        self.path = Path(out_dir) / MANIFEST
        self._fd: Optional[int] = None

    def records(self) -> list[dict]:
        return read(self.path)

    def append(self, record: dict) -> dict:
        """Append one record (``time`` and ``pid`` added); returns it."""
        if record.get("status") not in STATUSES:
            raise ValueError(f"manifest status must be one of {STATUSES}, got {record.get('status')!r}")
        if not isinstance(record.get("input"), str):
            raise TypeError(f"manifest input must be a str path, got {type(record.get('input')).__name__}")
        record = {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pid": os.getpid()}
        line = (json.dumps(record, default=str, allow_nan=False) + "\n").encode()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            size = os.fstat(self._fd).st_size
            if size:  # a line cut off by a kill: end it, so this record starts on its own line
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        os.write(self._fd, b"\n")
        os.write(self._fd, line)
        os.fsync(self._fd)
        return record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
