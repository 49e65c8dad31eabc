"""The task registry: one declarative :class:`TaskSpec` per task, declared in the task's module.

The CLI, ``dd.batch``, ``doubledip bench``, export and the quality suite iterate over the specs
here and never name a task. Adding a task is one new module in ``doubledip/engine/tasks/`` that
calls :func:`register` (a module elsewhere works too once imported): its subcommand, batching,
benchmark, export recombination and evaluation cases follow from its spec.

API convention every task function keeps (so the CLI and batching can call any of them): its
required inputs positionally, then ``config``, then keyword-only optional inputs and options:
``task(*required, config=None, *, optional..., options..., iterations=None, seed=None,
device=None, progress=None)``.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

INPUT_KINDS = ("image", "images", "map", "clip", "clip_maps")


@dataclass(frozen=True)
class Input:
    """One input of a task's API function.

    name: its keyword (``image``, ``image1``, ``fg_hint``, ``hint``, ``images``).
    kind: ``image`` (one H x W x C image), ``images`` (a list of images fitted jointly), ``map``
        (an H x W hint map of the image's size), ``clip`` (a video file, a folder or list of
        images, a T x H x W x C array) or ``clip_maps`` (one hint map per frame of the clip).
    required: positional in the API and on the CLI; else keyword-only and a ``--flag``.
    batch_option: the ``dd.batch`` keyword taking one value per image (``fg_hints``); None for
        the batch entries themselves.
    """

    name: str
    kind: str
    help: str
    required: bool = True
    batch_option: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"Input {self.name!r}: kind must be one of {INPUT_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Option:
    """A task option that is not an input: API keyword ``name``, CLI flag ``--name-with-dashes``.

    flag: a switch (False unless given). nargs / type / choices: as argparse takes them.
    in_config: a :class:`SolverConfig` field (``repeats``) rather than a keyword of the function.
    batched: ``dd.batch`` accepts it (one value shared by all images).
    """

    name: str
    help: str
    type: Callable = float
    nargs: Optional[int] = None
    choices: Optional[tuple] = None
    flag: bool = False
    in_config: bool = False
    batched: bool = True
    metavar: Any = None

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Defaults:
    """A mode's defaults: iterations per stage (of one pass / one repeat), lr, passes, repeats."""

    stages: tuple[int, ...]
    lr: float
    passes: int = 1
    repeats: int = 1

    @property
    def iterations_per_image(self) -> int:
        """Optimisation steps one image costs at these defaults (all stages, passes, repeats)."""
        return sum(self.stages) * self.passes * self.repeats


@dataclass(frozen=True)
class BenchProblem:
    """What ``doubledip bench`` times: a task's problem on random images, in its costliest stage."""

    problem: Any
    stage: int


@dataclass(frozen=True)
class Evaluation:
    """A task's part of the quality suite.

    cases(suite, size) -> the task's cases (``evaluation.cases.Case``) for suite ``quick`` or
    ``full``; score(outputs, truth) -> metrics; baselines(case) -> name -> outputs scored the same
    way; primary: the metric the table leads with (higher is better); fields: the result fields
    ``score`` reads; quick_iterations: the quick suite's iteration count.
    """

    cases: Callable[[str, int], list]
    score: Callable[[dict, dict], dict]
    baselines: Callable[[Any], dict]
    primary: str
    fields: tuple[str, ...]
    quick_iterations: int


@dataclass(frozen=True)
class TaskSpec:
    """Everything the package's front ends need to know about one task.

    name: the API name (``dd.<name>``, ``dd.batch(name, ...)``); cli_name: the subcommand.
    run: the API function (see the module docstring for its signature convention).
    run_many(entries, config, **options) -> one result per entry, fitted in one batched run
        (None: the task cannot be batched; ``not_batched`` says why).
    export(names, result) -> the manifest's recombination entries (groups, constants,
        recombine, not_included) for the fitted generators ``names``.
    bench(size, batch, device, fast=False) -> :class:`BenchProblem` (None: not benchmarked);
        ``fast``: the problem as fast mode builds it, where its step differs.
    cli_group: "" for a top-level task (``doubledip <cli_name>``, served by :func:`tasks`,
        batching, bench, export and the quality suite); else the subcommand group it belongs to
        (``doubledip video <cli_name>``; ``tasks(group)`` lists them): its CLI name only has to
        be unique within the group.
    """

    name: str
    cli_name: str
    summary: str
    run: Callable
    result: type
    inputs: tuple[Input, ...]
    defaults: Mapping[str, Defaults]
    options: tuple[Option, ...] = ()
    run_many: Optional[Callable] = None
    not_batched: str = ""
    export: Optional[Callable[[list, Any], dict]] = None
    bench: Optional[Callable[..., BenchProblem]] = None
    evaluation: Optional[Evaluation] = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    cli_group: str = ""

    def __post_init__(self) -> None:
        missing = {"reference", "fast"} - set(self.defaults)
        if missing:
            raise ValueError(f"task {self.name!r}: defaults need the modes {sorted(missing)}")
        if not self.inputs or not self.inputs[0].required:
            raise ValueError(f"task {self.name!r}: the first input must be a required one")

    def defaults_for(self, mode: str) -> Defaults:
        if mode not in self.defaults:
            raise ValueError(f"task {self.name!r}: mode must be one of {sorted(self.defaults)}, got {mode!r}")
        return self.defaults[mode]

    @property
    def required_inputs(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if i.required)

    @property
    def optional_inputs(self) -> tuple[Input, ...]:
        return tuple(i for i in self.inputs if not i.required)

    def batch_options(self) -> set[str]:
        """The keywords ``dd.batch`` accepts for this task."""
        per_image = {i.batch_option for i in self.inputs if i.batch_option}
        return per_image | {o.name for o in self.options if o.batched and not o.in_config}


_REGISTRY: dict[str, TaskSpec] = {}
_DISCOVERED = False
# modules of this package that hold no task
_NOT_TASKS = {"common", "registry"}


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry (its module calls this at import); returns it.

    A second spec with a name or CLI name already taken is an error (the same task from the
    same module again, as a reload does, is not)."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"register expects a TaskSpec, got {type(spec).__name__}")
    for other in _REGISTRY.values():
        if other.name == spec.name and other.run.__module__ == spec.run.__module__:
            continue  # the same module again (a reload): its new spec replaces the old
        if _clash(spec, other):
            raise ValueError(f"task {spec.name!r} (CLI {spec.cli_name!r}) clashes with the registered "
                             f"task {other.name!r} (CLI {other.cli_name!r})")
    _REGISTRY[spec.name] = spec
    return spec


def _clash(a: TaskSpec, b: TaskSpec) -> bool:
    """Whether two specs claim one name: API names and top-level CLI names share ``get``'s
    namespace; a group's tasks need distinct CLI names within it; a group's name takes a
    top-level subcommand's place."""
    def top(s):
        return {s.name} if s.cli_group else {s.name, s.cli_name}

    same_group = a.cli_group and a.cli_group == b.cli_group and a.cli_name == b.cli_name
    group_taken = any(x.cli_group and not y.cli_group and x.cli_group in top(y) for x, y in ((a, b), (b, a)))
    return bool(top(a) & top(b)) or bool(same_group) or group_taken


def unregister(name: str) -> None:
    """Remove a task (for tests that register a toy one)."""
    _REGISTRY.pop(name, None)


def discover() -> None:
    """Import every task module of this package once (each registers its spec)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module(__package__)
    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
        if module not in _NOT_TASKS:
            importlib.import_module(f"{__package__}.{module}")
    _DISCOVERED = True


def tasks(group: str = "") -> list[TaskSpec]:
    """The registered tasks of a CLI group ("": the top-level ones), the package's own first
    (in module order)."""
    discover()
    return [s for s in _REGISTRY.values() if s.cli_group == group]


def groups() -> list[str]:
    """The CLI groups of the registered tasks (``video``), in registration order."""
    discover()
    return list(dict.fromkeys(s.cli_group for s in _REGISTRY.values() if s.cli_group))


def names() -> list[str]:
    return [s.name for s in tasks()]


def get(name: str) -> TaskSpec:
    """The spec of a task by its API name or its CLI name; ValueError naming the known ones."""
    discover()
    if not isinstance(name, str):
        raise TypeError(f"task must be a task name (str), got {type(name).__name__}")
    spec = _REGISTRY.get(name)
    if spec is None:  # a top-level CLI name (a group's tasks are found by their API names)
        spec = next((s for s in _REGISTRY.values() if s.cli_name == name and not s.cli_group), None)
    if spec is None:
        raise ValueError(f"unknown task {name!r}; expected one of {names()}")
    return spec
