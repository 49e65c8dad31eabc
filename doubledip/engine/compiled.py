"""``SolverConfig(compile=True)``: the generators of a task under ``torch.compile``.

What is compiled, and why there: a training step is the generators' forward and backward (nearly
all the work, and on a GPU several hundred kernel launches), the fused loss kernels (a few
launches, already one op each), and Adam (a handful of multi-tensor launches). Each coupled group
of generators is compiled once, as one graph: ``fullgraph=True`` (no silent breaks),
``dynamic=False`` (one specialised graph per input shape; a fit has one or two: 90-degree
augmentations of a non-square image swap H and W). AOTAutograd compiles the backward with it.
The iteration schedule (which augmentation, which noise seed, when to track) stays in Python
around the compiled graphs, so it never causes a recompile.

On CUDA the graphs run as CUDA graphs (``mode="reduce-overhead"``: one replay per forward and per
backward instead of hundreds of launches). A CUDA graph replays into the same output buffers, so
:meth:`CompiledGenerators.__call__` copies outputs out (3-channel images: a negligible copy) and
the solver marks each iteration's start: results kept across iterations (best-result tracking,
stage ends) can never alias memory that the next replay overwrites.

Compiled code is cached on disk (inductor's FX-graph and AOTAutograd caches): under
``$TORCHINDUCTOR_CACHE_DIR`` when set, else ``~/.cache/doubledip/inductor`` (``$XDG_CACHE_HOME``
honoured), so a second run at the same size skips most of the compile.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

# Tests swap in a cheaper backend ("aot_eager") or a counting one; None = inductor.
backend: Optional[object] = None


def compile_options(device: torch.device) -> dict:
    """Keyword arguments for ``torch.compile`` of one generator group on ``device``."""
    options = {"fullgraph": True, "dynamic": False}
    if backend is not None:
        options["backend"] = backend
    elif device.type == "cuda":
        options["mode"] = "reduce-overhead"  # CUDA graphs (cudagraph trees)
    return options


def uses_cuda_graphs(device: torch.device) -> bool:
    return device.type == "cuda" and backend is None


def cache_dir() -> Path:
    """Where compiled code persists: ``$TORCHINDUCTOR_CACHE_DIR``, or doubledip's user cache
    (set as ``TORCHINDUCTOR_CACHE_DIR`` for this process, so inductor's caches land there)."""
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not chosen:
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        chosen = os.path.join(root, "doubledip", "inductor")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = chosen
    path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    return path


class CompiledGenerators:
    """Compiled callables for a problem's generator groups: ``compiled[group](x)``.

    nets: the problem's ``ModuleDict`` (one grouped :class:`SkipUNet` per group); device: where
    they run. ``step_begin()`` is called by the solver before each iteration's forward. (Not with
    ``low_memory``: SolverConfig refuses the combination, its recompute is not traceable.)
    """

    def __init__(self, nets: nn.ModuleDict, device: torch.device):
        cache_dir()
        options = compile_options(device)
        if device.type == "cpu" and backend is None:
            warnings.warn("compile=True on a CPU: measured 12-14% slower per step than eager here, after a "
                          "cold compile of about a minute of CPU time per image size; it is meant for CUDA "
                          "(benchmarks/experiments/README.md)", RuntimeWarning, stacklevel=3)
        self.cuda_graphs = uses_cuda_graphs(device)
        self._compiled: dict[str, Callable] = {name: torch.compile(net, **options) for name, net in nets.items()}

    def __getitem__(self, group: str) -> Callable:
        fn = self._compiled[group]
        if not self.cuda_graphs:
            return fn
        return lambda x: fn(x).clone()  # out of the graph's reusable output buffer

    def step_begin(self) -> None:
        """A new iteration: CUDA-graph outputs of the previous one may be overwritten from here."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
