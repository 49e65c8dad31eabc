"""``dd.batch``: independent problems of one task and one size fitted in one run.

Every image keeps its own nets, noise and seed (image i uses ``config.seed + i``), and losses are
summed over images, so each image gets the result a run of its own would give (up to float
rounding: see the tests); same-architecture nets of all images run as one grouped launch per
layer. This is the throughput mode for GPUs; on a CPU it saves little. Which tasks batch, and
which options they take, comes from the task registry.
"""
from __future__ import annotations

from typing import Any

from doubledip.engine.config import SolverConfig
from doubledip.engine.tasks import registry
from doubledip.engine.tasks.common import resolve


def _as_list(name: str, value: Any, n: int) -> list:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"batch: {name} must be a list with one entry per image, got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"batch: {name} must have one entry per image ({n}), got {len(value)}")
    return list(value)


def batch(task: str, images, config: SolverConfig | None = None, **options) -> list:
    """Run ``task`` on every entry of ``images`` in one batched run; returns one result per entry.

    task: a task's API or CLI name (``"dehaze"``, ``"separate"``, ``"separate_pair"``: entries are
    (image1, image2) pairs, ``"segment"``: options ``fg_hints``/``bg_hints`` as lists,
    ``"remove_watermark"``: option ``hints``, a list). Other options are the task's own and shared
    by all images (``airlight``, ``learn_airlight``, ``passes`` for dehaze). All images must
    have one size.
    """
    spec = registry.get(task)
    if spec.run_many is None:
        raise ValueError(f"batch: {spec.name} cannot be batched: {spec.not_batched or 'it has no batched run'}")
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"batch: images must be a list, got {type(images).__name__}")
    images = list(images)
    if not images:
        raise ValueError("batch: images is empty; expected at least one image")
    config = resolve(config)
    allowed = spec.batch_options()
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"batch: unexpected options for {spec.name}: {sorted(unknown)} (accepted: {sorted(allowed)})")
    n = len(images)
    for item in spec.inputs:
        if item.batch_option is None:
            continue
        if options.get(item.batch_option) is not None:
            options[item.batch_option] = _as_list(item.batch_option, options[item.batch_option], n)
        elif item.required:
            raise ValueError(f"batch: {spec.name} needs {item.batch_option}=[...], one per image")
    return spec.run_many(images, config, **{k: v for k, v in options.items() if v is not None})
