"""Production runs: one task over many images (``dd.run_many``, ``doubledip batch``).

- ``inputs``: INPUT arguments (files, folders, globs) -> items with stable, unique names.
- ``manifest``: ``OUT/manifest.jsonl``, one JSON line per input and state change.
- ``outputs``: results written to a temporary folder, then renamed into ``OUT/<name>/``.
- ``jobs``: one item (or a same-size group) fitted and saved, the same for every executor.
- ``executors``: this process, local worker processes, Ray tasks (one contract).
- ``memory``: a run's peak memory estimated before it starts.
- ``batch``: :func:`run_many`, the driver; ``command``: the CLI subcommand.
"""
from __future__ import annotations

__all__ = ["run_many", "BatchReport", "BatchInterrupted"]


def __getattr__(name: str):
    if name in __all__:
        from doubledip.runs import batch

        return getattr(batch, name)
    raise AttributeError(f"module 'doubledip.runs' has no attribute {name!r}")
