"""A run's peak memory, estimated from its task and image size before it starts, so that a batch
refuses an input that cannot fit instead of being killed part-way.

The model is linear in pixels: ``peak MB = a + b * images * Hp * Wp / 1e6`` per task (:data:`MODEL_MB`),
with ``Hp x Wp`` the size the nets run at (each side rounded up to a multiple of 32, at least
96; dehazing's working size, below 800 px a side) and ``low_memory`` runs at their own slope.
How the numbers were found: :func:`calibrate` runs each task for a few iterations at 128, 256
and 384 px in fresh processes (one thread, CPU) and reads the peak resident set (``VmHWM``);
the numbers below are the least-squares fits through those points, the slope plus 10%
(``python -m doubledip.runs.memory [--low-memory]`` measures them again; 2026-12-02, this
project's 2-core machine). The intercept is mostly what importing torch and doubledip costs
(about 230 MB here). At 512 px the model gives separate 900 MB (README: 845 measured). It is a host-memory
(CPU) model: on CUDA the device's memory is what limits, and it is not checked.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional

BASE_MB = 240.0  # what importing torch and doubledip costs (a worker that has it pays it once)
# task -> (MB at zero pixels, MB per megapixel of the working size per image): the fits of
# calibrate() at 128/256/384 px (peak RSS of a 4-iteration run, 1 thread, CPU, 2026-12-02; the
# measured points are in the comments), the slope raised by 10% and the intercept rounded up
MODEL_MB = {
    "separate": (350.0, 2100.0),  # 377, 467, 627 MB
    "separate_pair": (420.0, 3250.0),  # 456, 611, 845
    "segment": (290.0, 2650.0),  # 328, 445, 644
    "dehaze": (330.0, 3510.0),  # 379, 538, 797
    "remove_watermark": (370.0, 2570.0),  # 398, 514, 705
    "remove_watermark_multi": (400.0, 1400.0),  # per image of a set of 3: 464, 635, 961
}
MODEL_MB_LOW_MEMORY = {  # low_memory=True
    "separate": (350.0, 980.0),  # 362, 401, 478
    "separate_pair": (410.0, 1180.0),  # 431, 467, 570
    "segment": (300.0, 1070.0),  # 314, 365, 442
    "dehaze": (340.0, 1570.0),  # 356, 433, 544
    "remove_watermark": (360.0, 1010.0),  # 372, 415, 492
    "remove_watermark_multi": (400.0, 540.0),  # 425, 491, 616
}
# a task not calibrated (one registered elsewhere): the largest of each, rounded up
DEFAULT_MODEL_MB = (450.0, 3600.0)
# what is kept back for everything else on the machine
HEADROOM_MB = 200.0
# what the same run's import cost varies by between environments: one 128 px separation peaked
# at 357 MB in a developer's venv and 451 MB in CI's fresh one (same machine, same torch); the
# estimate must stay at or above either
ENVIRONMENT_MB = 100.0


def working_pixels(task: str, h: int, w: int) -> int:
    """H x W as the nets run it (see the module docstring)."""
    if task == "dehaze":
        from doubledip.engine.tasks.dehazing import working_size

        h, w = working_size(h, w)
    hp, wp = (max(96, -(-n // 32) * 32) for n in (h, w))
    return hp * wp


def estimate_peak_mb(task: str, size, images: int = 1, low_memory: bool = False) -> float:
    """Estimated peak resident memory (MB) of one run of ``task`` on ``images`` images (a batched
    group, or the images of one set) of ``size`` (H, W)."""
    try:
        h, w = (int(n) for n in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be (H, W), two ints, got {size!r}") from None
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    base, slope = (MODEL_MB_LOW_MEMORY if low_memory else MODEL_MB).get(task, DEFAULT_MODEL_MB)
    return base + ENVIRONMENT_MB + slope * images * working_pixels(task, h, w) / 1e6


def available_mb() -> float:
    """Memory this process may still take (MB): Linux's MemAvailable, capped by a cgroup limit
    (v2 ``memory.max`` or v1 ``limit_in_bytes``) less its usage; infinite where neither is known."""
    avail = float("inf")
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) / 1024
                    break
    except OSError:
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as fh:
                raw = fh.read().strip()
            if raw == "max" or int(raw) >= 1 << 60:
                continue
            with open(usage_file) as fh:
                used = int(fh.read().strip())
            avail = min(avail, (int(raw) - used) / 2 ** 20)
        except (OSError, ValueError):
            continue
    return avail


def resident_mb() -> float:
    """This process's resident memory now (MB; 0 where unknown)."""
    from doubledip.machine import resident_mb

    return resident_mb() or 0.0


def check_fits(task: str, size, images: int = 1, low_memory: bool = False,
               available: Optional[float] = None) -> float:
    """Raise MemoryError (a one-line message) when the run's estimated peak does not fit in the
    memory available now; returns the estimate (MB). What this process holds already (torch,
    up to :data:`BASE_MB`) counts as paid."""
    need = estimate_peak_mb(task, size, images, low_memory)
    extra = need - min(resident_mb(), BASE_MB)
    free = available_mb() if available is None else float(available)
    if extra + HEADROOM_MB > free:
        h, w = size
        hint = "" if low_memory else "low_memory=True (--low-memory), "
        raise MemoryError(
            f"not enough memory: {task} on {images} x {h}x{w} needs about {need / 1024:.1f} GB "
            f"(estimated before starting), {max(free, 0) / 1024:.1f} GB is available; use {hint}fewer "
            f"workers, smaller groups or a smaller image")
    return need


# ---- calibration --------------------------------------------------------------------------

_CHILD = r"""
import json, sys, numpy as np
import doubledip as dd
from doubledip.engine.tasks import registry
task, size, low = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
rng = np.random.default_rng(0)
img = lambda: rng.random((size, size, 3)).astype(np.float32)
hint = np.zeros((size, size), np.float32); hint[size // 3: 2 * size // 3, size // 4: 3 * size // 4] = 1
spec = registry.get(task)
cfg = dd.SolverConfig(iterations=4, device="cpu", threads=1, low_memory=low, repeats=1)
args = {"separate": [img()], "dehaze": [img()], "segment": [img()], "separate_pair": [img(), img()],
        "remove_watermark": [img(), hint], "remove_watermark_multi": [[img(), img(), img()]]}[task]
spec.run(*args, cfg)
from doubledip.machine import peak_rss_mb
print(json.dumps({"peak_mb": peak_rss_mb()}))
"""


def measure(task: str, size: int, low_memory: bool = False) -> float:
    """Peak RSS (MB) of a 4-iteration run of ``task`` at ``size`` x ``size`` in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, task, str(size), "1" if low_memory else "0"],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"measuring {task} at {size}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def calibrate(tasks=tuple(MODEL_MB), sizes=(128, 256, 384), low_memory: bool = False) -> dict:
    """Measure each task at ``sizes`` and fit the model's slope: task -> {points, mb_per_mpx,
    intercept}. Slow (a fresh process per point)."""
    out = {}
    for task in tasks:
        images = 3 if task == "remove_watermark_multi" else 1
        xs = [images * working_pixels(task, s, s) / 1e6 for s in sizes]
        ys = [measure(task, s, low_memory) for s in sizes]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        out[task] = {"points": dict(zip(sizes, ys)), "mb_per_mpx": slope, "intercept": my - slope * mx}
    return out


if __name__ == "__main__":  # pragma: no cover - a measurement, run by hand
    low = "--low-memory" in sys.argv
    print(json.dumps(calibrate(low_memory=low), indent=2))
