"""The benchmark harness: what one optimisation step of a task costs on this machine.

Used by ``doubledip bench`` (:func:`bench`, :func:`format_rows`) and by the pytest-benchmark
suite in ``benchmarks/`` (:func:`variant_step`, :func:`peak_memory`, :class:`CudaPeak`).

Per task, size, device and batch of images: seconds per iteration (median after warm-up),
images per hour at the task's default iteration count, counted FLOPs per iteration and the rate
achieved against the device's measured fp32 matmul rate, and peak memory.
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from doubledip.engine.adam import Adam
from doubledip.machine import peak_rss_mb
from doubledip.engine.solver import ADAM_SQRT, RunContext, fast_autocast_dtype
from doubledip.engine.config import SolverConfig
from doubledip.engine.nets.unet import SkipUNet
from doubledip.engine.tasks import registry


# One task step, timed in several settings; each is the shipped reference mode with one thing changed.
VARIANTS = {
    "reference": "reference mode as shipped: channels-last float32, C++ layers and fused losses, 1x1 GEMMs",
    "fast": "fast mode's step: its problem (scalar mixing weights, dehazing's prior term, averaged layers) "
            "and precision (bf16 generators on CUDA, float32 on CPUs)",
    "contiguous": "channels-last off (contiguous activations)",
    "low_memory": "SolverConfig(low_memory=True): activations recomputed in the backward",
    "plain_layers": "C++ generator layers off (PyTorch's BatchNorm, LeakyReLU, padding, upsampling)",
    "conv1x1": "1x1 convolutions as PyTorch's grouped convolution instead of one GEMM",
}


def _problem(task: str, size: int, batch: int, device: torch.device, fast: bool = False):
    """A task's benchmark problem on random images (its spec's ``bench``), and (stage benchmarked,
    default iterations per image). ``fast``: the problem as fast mode builds it."""
    spec = registry.get(task)
    if spec.bench is None:
        raise ValueError(f"task must be one of {benched_tasks()}, got {task!r} (it declares no benchmark)")
    made = spec.bench(size, batch, device, fast=fast)
    mode = "fast" if fast else "reference"
    return made.problem, made.stage, spec.defaults_for(mode).iterations_per_image


def benched_tasks() -> list[str]:
    """The registered tasks that declare a benchmark problem."""
    return [s.name for s in registry.tasks() if s.bench is not None]


def make_step(task: str, size: int, batch: int, device: torch.device, channels_last: bool = True,
              autocast_dtype: torch.dtype | None = None, compile: bool = False, low_memory: bool = False,
              fast: bool = False):
    """One optimisation step of ``task`` on random images, as a closure.

    Returns (step, forward_only, default iterations per image): ``step()`` runs forward, loss,
    backward and Adam at iterations past the first iterations' special cases; ``forward_only()``
    computes one step's loss without gradients (for counting FLOPs; always the eager nets).
    ``compile``: the generators compiled as ``SolverConfig(compile=True)`` does (the first
    ``step()`` pays the compile). ``low_memory``: as ``SolverConfig(low_memory=True)`` (on glibc
    this sets the process's allocator for good: see ``engine.nets.memory``). ``fast``: the
    problem as fast mode builds it (``autocast_dtype`` is separate).
    """
    problem, stage, default_iterations = _problem(task, size, batch, device, fast=fast)
    for s in range(stage + 1):  # the nets as the solver has them in that stage
        problem.begin_stage(s)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for net in problem.nets.values():
        if isinstance(net, SkipUNet):  # learned scalars have no layout
            net.set_memory_format(fmt)
            net.set_low_memory(low_memory)
    optimizer = Adam([p for p in problem.nets.parameters() if p.requires_grad], lr=1e-3, sqrt=ADAM_SQRT)
    k = [10]

    ctx = RunContext(autocast_dtype=autocast_dtype)
    if compile:
        from doubledip.engine.compiled import CompiledGenerators

        ctx.compiled = CompiledGenerators(problem.nets, device)
    eager = RunContext(autocast_dtype=autocast_dtype)

    def step():
        optimizer.zero_grad()
        if ctx.compiled is not None:
            ctx.compiled.step_begin()
        problem.step(stage, k[0], False, False, ctx).loss.backward()
        optimizer.step()
        k[0] += 1

    def forward_only():
        return problem.step(stage, k[0], False, False, eager).loss

    return step, forward_only, default_iterations


def variant_step(task: str, size: int, batch: int, device: torch.device, variant: str = "reference"):
    """:func:`make_step` in one of :data:`VARIANTS`; the same (step, forward_only, default
    iterations). Variants that switch a layer implementation apply the switch around each call."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
    from doubledip.engine.nets.pointwise import as_convolutions
    from doubledip.kernels._dispatch import plain_layers

    device = torch.device(device)
    fast = variant == "fast"
    step, forward_only, iterations = make_step(
        task, size, batch, device, channels_last=variant != "contiguous",
        autocast_dtype=fast_autocast_dtype(device) if fast else None,
        low_memory=variant == "low_memory", fast=fast)
    switch = {"plain_layers": plain_layers, "conv1x1": as_convolutions}.get(variant)
    if switch is None:
        return step, forward_only, iterations

    def switched(fn):
        def call():
            with switch():
                return fn()
        return call

    return switched(step), switched(forward_only), iterations


class CudaPeak:
    """Peak CUDA memory of what runs inside ``with CudaPeak(device) as peak:`` (``peak.mb``, from
    ``torch.cuda.max_memory_allocated``, reset on entry; ``peak.above_start_mb``: above what was
    allocated on entry). On other devices both stay None: a CPU process's peak is only clean in a
    fresh process (freed memory stays resident in the allocator), see :func:`peak_memory`."""

    def __init__(self, device) -> None:
        self.device = torch.device(device)
        self.mb = self.above_start_mb = None

    def __enter__(self) -> "CudaPeak":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.mb, self.above_start_mb = peak / 2 ** 20, (peak - self._start) / 2 ** 20


def peak_memory(task: str, size: int, batch: int = 1, device: str = "cpu", variant: str = "reference",
                steps: int = 3, timeout: float = 600) -> dict:
    """Peak memory of ``steps`` steps of :func:`variant_step` in a fresh Python process (what a
    user's process pays): ``peak_rss_mb`` (the process's peak resident set, ``VmHWM``), ``import_rss_mb``
    (its peak after importing torch and doubledip, before any work), and on CUDA
    ``cuda_peak_mb`` (max allocated). Raises RuntimeError with the child's stderr if it fails."""
    import json
    import subprocess

    code = (f"import json, doubledip.bench as b; "
            f"print(json.dumps(b._peak_child({task!r}, {size}, {batch}, {device!r}, {variant!r}, {steps})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"peak_memory({task}, {size}, {variant}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _peak_child(task: str, size: int, batch: int, device: str, variant: str, steps: int) -> dict:
    dev = SolverConfig(device=device).resolve_device()
    before = peak_rss_mb()
    step = variant_step(task, size, batch, dev, variant)[0]
    for _ in range(steps):
        step()
    _sync(dev)
    out = {"peak_rss_mb": peak_rss_mb(), "import_rss_mb": before, "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(dev) / 2 ** 20
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, n: int = 1024, repeats: int = 5) -> float:
    """Measured fp32 matmul GFLOP/s (median of ``repeats``)."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def bench(task: str, size: int = 256, device: str = "auto", batch: int = 1, steps: int = 10,
          warmup: int = 3, channels_last: bool = True, mode: str = "reference", compile: bool = False) -> dict:
    """Time ``steps`` optimisation steps of ``task`` (after ``warmup``; with ``compile`` the
    first warm-up step compiles, timed apart as ``compile_seconds``); returns one table row."""
    try:  # an API or a CLI name
        task = registry.get(task).name
    except (TypeError, ValueError):
        task = None if not isinstance(task, str) else task
    if task not in benched_tasks():
        raise ValueError(f"task must be one of {benched_tasks()}, got {task!r}")
    for name, value in (("size", size), ("batch", batch), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    dev = SolverConfig(device=device).resolve_device()
    if mode not in ("reference", "fast"):
        raise ValueError(f"mode must be 'reference' or 'fast', got {mode!r}")
    step, flop_step, default_iterations = make_step(
        task, size, batch, dev, channels_last, fast_autocast_dtype(dev) if mode == "fast" else None, compile,
        fast=mode == "fast")
    from torch.utils.flop_counter import FlopCounterMode

    # FLOPs: the forward's convolutions counted, times 3 (each backward conv costs twice its
    # forward: input and weight gradients). Counting the backward directly is wrong for grouped
    # convolutions: torch's counter ignores ``groups`` there (over-counts by the copy count).
    from doubledip.engine.nets.pointwise import as_convolutions

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), as_convolutions():  # the method's work, not the GEMMs' zero blocks
        flop_step()
    flops = 3 * counter.get_total_flops()
    _sync(dev)
    t = time.perf_counter()
    step()
    _sync(dev)
    first_step = time.perf_counter() - t
    for _ in range(warmup - 1):
        step()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(steps):
        _sync(dev)
        t = time.perf_counter()
        step()
        _sync(dev)
        times.append(time.perf_counter() - t)
    per_iter = statistics.median(times)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(dev) / 2 ** 20
        memory = "cuda max allocated"
    else:
        peak_mb = peak_rss_mb()
        memory = "process peak RSS"
    rate = matmul_rate(dev)
    achieved = flops / per_iter / 1e9
    return {
        "task": task, "size": size, "device": str(dev), "batch": batch, "threads": torch.get_num_threads(),
        "mode": mode, "channels_last": channels_last, "compile": compile,
        "seconds_per_iteration": per_iter, "first_step_seconds": first_step,
        "images_per_hour": 3600 * batch / (per_iter * default_iterations),
        "default_iterations": default_iterations,
        "gflop_per_iteration": flops / 1e9, "achieved_gflops": achieved,
        "matmul_gflops": rate, "fraction_of_matmul": achieved / rate,
        "peak_memory_mb": peak_mb, "memory_measure": memory,
    }


def format_rows(rows: list[dict]) -> str:
    head = ("task", "size", "batch", "device", "compile", "s/iter", "img/hour", "GFLOP/it", "GFLOP/s", "of matmul",
            "peak MB")
    lines = [head]
    for r in rows:
        lines.append((r["task"], str(r["size"]), str(r["batch"]), r["device"],
                      f"yes ({r['first_step_seconds']:.0f} s)" if r.get("compile") else "no",
                      f"{r['seconds_per_iteration']:.4f}",
                      f"{r['images_per_hour']:.2f}", f"{r['gflop_per_iteration']:.2f}", f"{r['achieved_gflops']:.1f}",
                      f"{100 * r['fraction_of_matmul']:.0f}%", f"{r['peak_memory_mb']:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines)
