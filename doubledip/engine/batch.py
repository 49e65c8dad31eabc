"""``dd.batch``: independent problems of one task and one size fitted in one run.

Every image keeps its own nets, noise and seed (image i uses ``config.seed + i``), and losses are
summed over images, so each image gets the result a run of its own would give (up to float
rounding: see the tests); same-architecture nets of all images run as one grouped launch per
layer. This is the throughput mode for GPUs; on a CPU it saves little.
"""
from __future__ import annotations

from typing import Any

from doubledip.engine.config import SolverConfig
from doubledip.engine.tasks.common import resolve

TASK_ALIASES = {"separate-pair": "separate_pair", "remove-watermark": "remove_watermark",
                "remove-watermark-multi": "remove_watermark_multi"}
BATCHED = ("dehaze", "separate", "separate_pair", "segment", "remove_watermark")


def _as_list(name: str, value: Any, n: int) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"batch: {name} must be a list with one entry per image, got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"batch: {name} must have one entry per image ({n}), got {len(value)}")
    return list(value)


def batch(task: str, images, config: SolverConfig | None = None, **options) -> list:
    """Run ``task`` on every entry of ``images`` in one batched run; returns one result per entry.

    task: "dehaze", "separate", "separate_pair" (entries are (image1, image2) pairs), "segment"
    (options ``fg_hints``/``bg_hints``: lists), "remove_watermark" (option ``hints``: a list).
    Other options are the task's own (``airlight``, ``learn_airlight``, ``passes`` for dehaze).
    All images must have one size.
    """
    from doubledip.engine.tasks import dehazing, pair, segmentation, separation, watermark

    name = TASK_ALIASES.get(task, task) if isinstance(task, str) else task
    if name == "remove_watermark_multi":
        raise ValueError("batch: remove_watermark_multi already fits several images jointly; "
                         "call dd.remove_watermark_multi(images) per set instead")
    if name not in BATCHED:
        raise ValueError(f"batch: task must be one of {BATCHED}, got {task!r}")
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"batch: images must be a list, got {type(images).__name__}")
    images = list(images)
    if not images:
        raise ValueError("batch: images is empty; expected at least one image")
    config = resolve(config)
    allowed = {"dehaze": {"airlight", "learn_airlight", "passes"}, "segment": {"fg_hints", "bg_hints"},
               "remove_watermark": {"hints"}}.get(name, set())
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"batch: unexpected options for {name}: {sorted(unknown)} (accepted: {sorted(allowed)})")
    n = len(images)
    if name == "separate":
        return separation.separate_many(images, config)
    if name == "separate_pair":
        return pair.separate_pair_many(images, config)
    if name == "dehaze":
        airlight = options.get("airlight")
        return dehazing.dehaze_many(images, config, airlight, options.get("learn_airlight", False),
                                    options.get("passes"))
    if name == "segment":
        fg, bg = options.get("fg_hints"), options.get("bg_hints")
        fg = _as_list("fg_hints", fg, n) if fg is not None else None
        bg = _as_list("bg_hints", bg, n) if bg is not None else None
        return segmentation.segment_many(images, fg, bg, config)
    if "hints" not in options:
        raise ValueError("batch: remove_watermark needs hints=[...], one per image")
    return watermark.remove_watermark_many(images, _as_list("hints", options["hints"], n), config)
