"""Frozen, validated configurations: the generator (UNetConfig) and the solver (SolverConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional

MODES = ("reference", "fast")
DEVICES = ("auto", "cpu", "cuda")


def _positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class UNetConfig:
    """The skip encoder-decoder of ALGORITHM.md section 2.

    ``channels`` are the per-level down = up channel counts (d = u), ``skip_channels`` the 1x1 skip
    branch widths (0: no skip), ``kernel_size`` the down/up filter size.
    """

    in_channels: int = 3
    out_channels: int = 3
    channels: tuple[int, ...] = (8, 16, 32, 64, 128)
    skip_channels: tuple[int, ...] = (0, 0, 0, 4, 4)
    kernel_size: int = 5

    def __post_init__(self) -> None:
        _positive_int("in_channels", self.in_channels)
        _positive_int("out_channels", self.out_channels)
        _positive_int("kernel_size", self.kernel_size)
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "skip_channels", tuple(self.skip_channels))
        if not self.channels:
            raise ValueError("channels must name at least one level, got ()")
        if len(self.skip_channels) != len(self.channels):
            raise ValueError(
                f"skip_channels must have one entry per level ({len(self.channels)}), got {self.skip_channels}")
        for c in self.channels:
            _positive_int("channels[i]", c)
        if any((not isinstance(s, int)) or s < 0 for s in self.skip_channels):
            raise ValueError(f"skip_channels must be ints >= 0, got {self.skip_channels}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")

    @property
    def depth(self) -> int:
        return len(self.channels)

    @property
    def size_multiple(self) -> int:
        """H and W must be divisible by this (one stride-2 conv per level)."""
        return 2 ** self.depth

    @property
    def min_size(self) -> int:
        """Smallest H, W the net accepts: the deepest level must be larger than its reflection pad."""
        return self.size_multiple * ((self.kernel_size - 1) // 2 + 1)

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) grown to the nearest size the net accepts."""
        m = self.size_multiple
        return tuple(max(self.min_size, -(-n // m) * m) for n in (h, w))


# The configurations the method uses (ALGORITHM.md section 2 table).
LAYER5 = UNetConfig(3, 3, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 5)
DEHAZE = UNetConfig(8, 3, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 3)
SEGMENT = UNetConfig(2, 3, (8, 16, 32), (0, 0, 0), 3)
WATERMARK_MASK = UNetConfig(2, 1, (8, 16, 32, 64), (0, 0, 0, 4), 3)
MULTI_WATERMARK = UNetConfig(2, 1, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 3)


@dataclass(frozen=True)
class SolverConfig:
    """How a task is run.

    iterations: total of one run, all stages and passes together (None: the task's default),
        split over stages in the task's default proportions; schedule thresholds stay absolute.
    repeats: independent runs whose results are combined (watermark tasks: median; None: default).
    lr: Adam learning rate (None: the task's default).
    device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
    seed: every random draw of a run derives from it; equal seeds repeat exactly on CPU.
    mode: "reference" (the published method, number for number) or "fast" (a faster method held to
        the same quality by the quality suite: bf16 generators on GPUs, a raised lr, less input
        noise, averaged layers, 2800 iterations and restarts after a collapse in single-image
        separation, a scalar per mixing weight in two-image separation, one short dehazing pass
        that falls back to the dark channel prior, early stopping; see the README).
    progress: show a progress bar; callback: called with a dict every ``log_every`` iterations.
    log_every: how often losses and PSNR are read from the device (history, callback, progress).
    channels_last: run the generators in channels-last memory format (same function within float
        rounding; faster convolutions).
    early_stop: end the last stage once the task's stopping rule fires (None: on in fast mode, off
        in reference mode): in fast-mode separation once the layers have settled (and a restart
        after a collapse), elsewhere once the reconstruction PSNR has stopped improving; the
        iteration count stays the cap. The result's ``stop_reason`` says which ended the run.
    threads: CPU threads for the run (None: leave torch's setting). With several heavy processes
        on one machine, set it so their sum does not exceed the cores: oversubscribed OpenMP
        threads can make a step 25x slower.
    compile: ``torch.compile`` each coupled generator group as one full graph with fixed shapes
        (its backward compiled with it); on CUDA the graphs run as CUDA graphs. Compiled code is
        cached on disk (``$TORCHINDUCTOR_CACHE_DIR``, else ``~/.cache/doubledip/inductor``).
        Meant for GPUs; on a CPU it is slower per step (measured) after a cold compile of about a
        minute per image size, and warns. Not combinable with ``low_memory``.
    low_memory: keep only a few boundary tensors per generator level and recompute the rest
        in the backward (every level's down path, upsample + merge up to its k x k convolution,
        and the merge's rest: the same function, the same bits on the CPU), and on glibc set
        the C allocator so freed memory leaves the process (blocks of 16 MiB and more mapped on
        their own, free heap pages returned before each recomputed segment; a process-wide
        setting that stays after the run, see ``doubledip.engine.nets.memory``). At 512 x 512 on a
        CPU about half the peak memory of the authors' code or less (separation 537 MB, dehazing
        524, watermark 536), at about 1.6-2x the CPU time per step (benchmarks/RESULTS.md, peak memory).
    checkpoint_dir: a folder for checkpoints of the run (``doubledip.engine.checkpoint``): every
        ``checkpoint_every`` iterations (None: at the end of each ``run_problem`` call only: a
        pass, a repeat) and at Ctrl-C, everything needed to continue exactly. resume: continue
        from the checkpoints there (refused, ValueError, when they belong to another task, image
        or setting; none there: start from the beginning). keep_partial: on Ctrl-C, end the run
        at once and return the best result so far (``checkpoint.interrupted()`` then says so).
    """

    iterations: Optional[int] = None
    repeats: Optional[int] = None
    lr: Optional[float] = None
    device: str = "auto"
    seed: int = 0
    mode: str = "reference"
    progress: bool = False
    callback: Optional[Callable[[dict], Any]] = field(default=None, compare=False)
    log_every: int = 50
    channels_last: bool = True
    early_stop: Optional[bool] = None
    threads: Optional[int] = None
    compile: bool = False
    low_memory: bool = False
    checkpoint_dir: Optional[str] = None
    checkpoint_every: Optional[int] = None
    resume: bool = False
    keep_partial: bool = False

    def __post_init__(self) -> None:
        _positive_int("iterations", self.iterations, allow_none=True)
        _positive_int("repeats", self.repeats, allow_none=True)
        _positive_int("log_every", self.log_every)
        _positive_int("threads", self.threads, allow_none=True)
        if self.lr is not None:
            if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
                raise TypeError(f"lr must be a float, got {type(self.lr).__name__}")
            if not self.lr > 0:
                raise ValueError(f"lr must be > 0, got {self.lr}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__} ({self.seed!r})")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not isinstance(self.device, str) or not (
                self.device in DEVICES or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.callback is not None and not callable(self.callback):
            raise TypeError(f"callback must be callable, got {type(self.callback).__name__}")
        if self.checkpoint_dir is not None:
            import os

            if not isinstance(self.checkpoint_dir, (str, os.PathLike)):
                raise TypeError(f"checkpoint_dir must be a folder path (str), got {type(self.checkpoint_dir).__name__}")
            object.__setattr__(self, "checkpoint_dir", os.fspath(self.checkpoint_dir))
        _positive_int("checkpoint_every", self.checkpoint_every, allow_none=True)
        if self.checkpoint_dir is None and (self.checkpoint_every is not None or self.resume):
            raise ValueError("checkpoint_every and resume need checkpoint_dir (a folder for the checkpoints), "
                             f"got checkpoint_every={self.checkpoint_every!r}, resume={self.resume!r} without one")
        if self.compile and self.low_memory:
            # low_memory's recompute (an autograd.Function that re-runs the forward in its
            # backward) breaks dynamo's graph at every segment and exhausts its recompile limit
            raise ValueError("compile=True and low_memory=True cannot be combined: torch.compile cannot "
                             "trace low_memory's recomputed segments; choose one")

    @property
    def stops_early(self) -> bool:
        return self.mode == "fast" if self.early_stop is None else bool(self.early_stop)

    def replace(self, **changes) -> "SolverConfig":
        return replace(self, **changes)

    def resolve_device(self):
        """The torch.device this config runs on."""
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for, but CUDA is not available here")
        return torch.device(self.device)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "iterations", "repeats", "lr", "device", "seed", "mode", "log_every", "channels_last", "early_stop", "threads", "compile", "low_memory")}
