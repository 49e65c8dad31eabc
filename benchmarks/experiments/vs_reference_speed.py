"""Speed and memory only, side by side: the authors' Double-DIP code and doubledip (reference mode,
fp32) on every task, at equal image size and thread count, on the CPU.

    python -m benchmarks.experiments.vs_reference_speed --reference /path/to/DoubleDIP \
        [--tasks separate,separate_pair,segment,dehaze,remove_watermark] [--sizes 256,512] \
        [--threads 1] [--rounds 2] [--warmup 20] [--blocks 3] [--block 10] [--json OUT]
    python -m benchmarks.experiments.vs_reference_speed --reference PATH --flops [--sizes ...] --json FLOPS
    python -m benchmarks.experiments.vs_reference_speed --from-json OUT [OUT ...] [FLOPS]   # re-print the tables

(from the repository root: the authors' code is loaded through ``benchmarks.authors``). The
benchmark suite's ``test_vs_authors.py`` times the same iterations in one process, for routine
runs; this script is the stricter protocol behind the CPU fp32-target figures (a fresh process
per run, sides alternating, CPU time recorded beside wall time).

``--ours-tree DIR`` imports doubledip from DIR (e.g. ``git archive HEAD doubledip``, commit id in
DIR/COMMIT) instead of the installed package, for a fixed commit while the tree is being edited
(a tree with ``doubledip/bench.py``: this commit or later).
``--flops``: no timing; counts the GFLOP of one iteration of the timed stage on each side and
measures the fp32 matmul rate (per wall second and per CPU second); given to ``--from-json`` with
timed runs, it adds a table of achieved rates and the fp32 ceiling on the speed-up.

The authors' code is imported from ``--reference`` through ``benchmarks.authors.apply_shims()`` (CUDA
aliases, removed functions restored, OpenCV's guided filter provided, plotting stubbed); none of
it is copied or edited. Quality is not measured: the images are random (seeded), so only the
cost of an iteration counts. What each side runs (the stage timed is the one that dominates a
default run):

| task | authors | ours (public API) | stage timed |
|---|---|---|---|
| separate | ``Separation`` | ``dd.separate`` | the only one |
| separate_pair | ``TwoImagesSeparation`` | ``dd.separate_pair`` | the only one |
| segment | ``Segmentation`` with fg/bg hints | ``dd.segment`` with the same hints | stage 2 (4000 of 6000) |
| dehaze | ``Dehaze``, dark-channel airlight | ``dd.dehaze(passes=1)`` | first pass |
| remove_watermark | ``Watermark`` with a hint | ``dd.remove_watermark``, 1 repeat | stage 2 (7000 of 11000) |

The public API reaches every stage timed, so ``doubledip.bench.make_step`` is not
used. Ours runs its earlier stage first (segmentation about 30 iterations of stage 1, watermark
about 34: the API splits ``iterations`` in the task's proportions), the authors' code 1
(segmentation: their stage 1 must run once before stage 2 can report) or 0 (watermark); the
timed blocks lie inside the timed stage on both sides, ``--warmup`` iterations after its start.
The timed iterations come from the same point of both schedules (hint terms on, noise ramp at
0), never the last iteration of a stage (special-cased on both sides).

Timing: the authors' loop at each call of their per-iteration closure (``_optimization_closure``,
or ``_step2_optimization_closure`` for the stage-2 tasks); their loop is left after
``warmup + blocks * block`` iterations. Everything their loop does per iteration lies between
two stamps: the closure (forward, loss, backward), their best-result tracking
(``_obtain_current_result`` / ``_finalize_iteration``: a device-to-host copy and a PSNR, every
iteration for separate_pair and segment, every 8th for separate and dehaze) and Adam. Built with
``plot_during_training=False`` (no printing; for the watermark that also drops their PSNR print
every 32 iterations). Ours through ``SolverConfig(callback=..., log_every=block)``: one stamp
every ``block`` iterations of the timed stage. s/iter: median over the ``blocks`` blocks.

Each run also records s/iter in process CPU time (``time.process_time``): on a shared machine the
wall clock counts the time other processes held the core, CPU time does not.

Memory: peak resident set size of the process (``ru_maxrss``) and the resident size just before
optimising (authors: after their constructor built nets and inputs; ours: before the API call).

Each (task, size, side, round) runs in its own process with ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` and ``torch.set_num_threads`` at ``--threads``. The sides alternate
(authors, ours, authors, ours for ``--rounds 2``) so that load from other processes falls on both
alike; a row reports each side's median over rounds and ours / authors. Exit status 2 when the
reference checkout is missing or a task is unknown.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

TASKS = ("separate", "separate_pair", "segment", "dehaze", "remove_watermark")
EXTRA_TASKS = ("dehaze_ambient",)  # run only when named in --tasks
AIRLIGHT = (0.72, 0.70, 0.62)  # dehaze_ambient's given airlight (the authors' tiananmen value, rounded)
# the files of the authors' checkout a run needs (benchmarks.authors.REFERENCE_FILES, which loads them)
REFERENCE_FILES = ("transparency_separation.py", "segmentation.py", "dehazing.py", "watermarks_removal.py")
MARKER = "VS_REFERENCE_SPEED_RESULT "
TARGET = 1.5  # the issue's bar: authors' s/iter / ours >= this


class _Enough(Exception):
    """Raised from the authors' timed closure to leave their loop once the blocks are stamped."""


def _authors():
    """``benchmarks.authors`` (the shims and the authors' models); needs the repository root on
    the path, as ``python -m benchmarks.experiments.vs_reference_speed`` from there has it."""
    try:
        from benchmarks import authors
    except ImportError as exc:
        raise SystemExit("vs_reference_speed: run it from the repository root as "
                         "`python -m benchmarks.experiments.vs_reference_speed ...`") from exc
    return authors


# ----------------------------------------------------------------------------------- inputs

def synthetic_inputs(size: int, seed: int = 0) -> dict:
    """Random image(s) in [0, 1] (3 x H x W float32) and a rectangular hint (1 x H x W) (the same
    as ``benchmarks.authors.synthetic_inputs``, which the authors' side is built on)."""
    rng = np.random.default_rng(seed)
    image = rng.random((3, size, size), dtype=np.float32)
    hint = np.zeros((1, size, size), np.float32)
    hint[:, size // 3: 2 * size // 3, size // 4: 3 * size // 4] = 1
    return {"image": image, "image2": np.ascontiguousarray(image[:, :, ::-1]), "hint": hint}


def ours_iterations(task: str, need: int) -> tuple[int, int, int]:
    """(total iterations to ask the API for, index of the timed stage, iterations before it) so
    that the timed stage gets at least ``need`` iterations."""
    from doubledip.engine.solver import split_iterations
    from doubledip.engine.tasks import segmentation, watermark
    defaults, stage = {"segment": (segmentation.DEFAULT_ITERATIONS, 1),
                       "remove_watermark": (watermark.HINT_ITERATIONS, 1)}.get(task, ((1,), 0))
    total = need
    while split_iterations(total, defaults)[stage] < need:
        total += 1
    parts = split_iterations(total, defaults)
    return total, stage, sum(parts[:stage])


# ----------------------------------------------------------------------------------- workers

def build_authors(task: str, size: int, seed: int, reference: Path):
    """The authors' model for ``task`` on the synthetic inputs, and the name of the closure of the
    stage timed (their code imported from ``reference`` after the shims)."""
    authors = _authors()
    authors.prepare_process(reference, seed)
    return authors.build(task, size, seed)


def run_authors(task: str, size: int, seed: int, block: int, stop_at: int, reference: Path) -> dict:
    model, closure = build_authors(task, size, seed, reference)
    stamps = []
    inner = getattr(model, closure)

    def timed(step, *rest):
        if step % block == 0:
            stamps.append((step, time.perf_counter(), time.process_time()))
        if step >= stop_at:
            raise _Enough
        return inner(step, *rest)
    setattr(model, closure, timed)
    rss_before = _authors().rss_mb()
    start = time.perf_counter()
    try:
        model.optimize()
    except _Enough:
        pass
    else:
        raise RuntimeError(f"their {task} loop ended before iteration {stop_at}")
    return {"stamps": stamps, "rss_before": rss_before, "seconds": time.perf_counter() - start,
            "api": f"{type(model).__name__}.{closure}", "stage_offset": 0}


def run_ours(task: str, size: int, seed: int, block: int, stop_at: int, tree: str | None = None) -> dict:
    if tree:  # a source tree (e.g. ``git archive HEAD doubledip``) ahead of the installed package
        sys.path.insert(0, str(Path(tree).resolve()))
    import doubledip as dd
    x = synthetic_inputs(size, seed)
    image = np.ascontiguousarray(x["image"].transpose(1, 2, 0))
    hint = x["hint"][0]
    # one block past the last stamp: the timed stage's last iteration stays out of the blocks
    total, stage, offset = ours_iterations(task, stop_at + block)
    stamps = []

    def record(entry):
        if entry["stage"] == stage:
            stamps.append((int(entry["iteration"]) - offset + 1, time.perf_counter(), time.process_time()))
    config = dd.SolverConfig(iterations=total, seed=seed, device="cpu", mode="reference",
                             log_every=block, callback=record, repeats=1)
    rss_before = _authors().rss_mb()
    start = time.perf_counter()
    if task == "separate":
        dd.separate(image, config)
    elif task == "separate_pair":
        dd.separate_pair(image, np.ascontiguousarray(x["image2"].transpose(1, 2, 0)), config)
    elif task == "segment":
        dd.segment(image, fg_hint=hint, bg_hint=1 - hint, config=config)
    elif task == "dehaze":
        dd.dehaze(image, config, passes=1)
    elif task == "dehaze_ambient":
        dd.dehaze(image, config, airlight=AIRLIGHT, learn_airlight=True, passes=1)
    else:
        dd.remove_watermark(image, hint, config)
    return {"stamps": [s for s in stamps if s[0] <= stop_at], "rss_before": rss_before,
            "seconds": time.perf_counter() - start, "api": f"dd.{task}", "stage_offset": offset,
            "iterations": total, "doubledip_file": dd.__file__}


def count_flops(side: str, task: str, size: int, seed: int, reference: Path, tree: str | None) -> float | None:
    """Counted GFLOP of one iteration of the timed stage: the forward's convolutions x 3, as
    ``doubledip bench`` counts (each backward convolution costs twice its forward). Authors: their
    closure run under ``no_grad`` (its ``backward()`` then fails, after the forward is counted);
    ours: ``doubledip.bench.make_step``'s forward (None for tasks it lacks)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    k = 20  # inside the stage's first 1000 iterations, as the timed blocks
    if side == "authors":
        model, closure = build_authors(task, size, seed, reference)
        with counter, torch.no_grad():
            try:
                getattr(model, closure)(k, *([1] if task == "remove_watermark" else []))
            except RuntimeError as e:
                if "does not require grad" not in str(e):
                    raise
    else:
        if tree:
            sys.path.insert(0, str(Path(tree).resolve()))
        from doubledip import bench
        if task not in bench.TASKS:
            return None
        _, forward_only, _ = bench.make_step(task, size, 1, torch.device("cpu"))
        with counter, torch.no_grad():
            forward_only()
    return 3 * counter.get_total_flops() / 1e9


def cpu_matmul_rate(n: int = 1024, repeats: int = 10) -> float:
    """fp32 matmul GFLOP per second of this process's CPU time (median of ``repeats``): the rate
    to set against CPU-time s/iter when other processes share the core."""
    import torch
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.process_time()
        a @ b
        times.append(time.process_time() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _tree_commit(tree: str) -> str:
    """The commit an ``--ours-tree`` holds, from its COMMIT file (write it beside the archive)."""
    stamp = Path(tree) / "COMMIT"
    return stamp.read_text().strip() if stamp.is_file() else f"tree {tree}"


def worker(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    stop_at = args.warmup + args.blocks * args.block
    load = os.getloadavg()
    if args.flops:
        gflop = count_flops(args.worker_side, args.worker_task, args.worker_size, args.seed, Path(args.reference),
                            args.ours_tree)
        from doubledip.bench import matmul_rate  # after count_flops: --ours-tree first on the path
        out = {"kind": "flops", "side": args.worker_side, "task": args.worker_task, "size": args.worker_size,
               "gflop_per_iter": gflop, "matmul_gflops": matmul_rate(torch.device("cpu")),
               "matmul_cpu_gflops": cpu_matmul_rate(),
               "threads": torch.get_num_threads(), "loadavg_start": load}
        print(MARKER + json.dumps(out), flush=True)
        return
    profiler = None
    if args.profile:  # every op of the run, setup included; shares of self CPU time
        from torch.profiler import ProfilerActivity, profile
        profiler = profile(activities=[ProfilerActivity.CPU])
        profiler.__enter__()
    if args.worker_side == "authors":
        res = run_authors(args.worker_task, args.worker_size, args.seed, args.block, stop_at, Path(args.reference))
    else:
        res = run_ours(args.worker_task, args.worker_size, args.seed, args.block, stop_at, args.ours_tree)
    if profiler is not None:
        profiler.__exit__(None, None, None)
        res["profile"] = top_ops(profiler, stop_at)
    peak = _authors().peak_mb()
    wall = [(i, t) for i, t, _ in res["stamps"]]
    cpu = [(i, c) for i, _, c in res["stamps"]]
    out = {"commit": _tree_commit(args.ours_tree) if args.ours_tree else _authors().commit(), "side": args.worker_side, "task": args.worker_task, "size": args.worker_size,
           "round": args.worker_round, "threads": torch.get_num_threads(), "api": res["api"],
           "s_per_iter": _authors().block_median(wall, args.warmup), "cpu_s_per_iter": _authors().block_median(cpu, args.warmup),
           "blocks": [(t1 - t0) / (i1 - i0) for (i0, t0), (i1, t1) in zip(wall, wall[1:]) if i0 >= args.warmup],
           "warmup": args.warmup, "block": args.block, "stage_offset": res["stage_offset"],
           "seconds": res["seconds"], "rss_before_mb": res["rss_before"], "peak_rss_mb": peak,
           "loadavg_start": load, "loadavg_end": os.getloadavg(), "doubledip_file": res.get("doubledip_file")}
    if "profile" in res:
        out["profile"] = res["profile"]
    print(MARKER + json.dumps(out), flush=True)


def top_ops(profiler, iterations: int, count: int = 12) -> list[dict]:
    """The ``count`` ops with the most self CPU time over a profiled run: name, ms per iteration
    (the run's total over its ``iterations``), share of the run's self CPU time."""
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [{"op": e.key, "ms_per_iter": e.self_cpu_time_total / 1000 / iterations,
             "share": e.self_cpu_time_total / total, "calls_per_iter": e.count / iterations} for e in events[:count]]


def profile_table(runs: list[dict]) -> str:
    """Per task, size and side (first round profiled): the top ops by self CPU time."""
    lines = []
    for r in runs:
        if "profile" not in r:
            continue
        lines += [f"\n{r['task']} {r['size']}, {r['side']} (profiled: {r['s_per_iter']:.3f} s/iter wall)",
                  "| op | ms/iter (self CPU) | share | calls/iter |", "|---|---|---|---|"]
        lines += [f"| {o['op']} | {o['ms_per_iter']:.1f} | {100 * o['share']:.1f}% | {o['calls_per_iter']:.1f} |"
                  for o in r["profile"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- driver

def _spawn(args, side: str, task: str, size: int, rnd: int) -> dict:
    # the worker runs from the repository root: paths resolved here
    cmd = [sys.executable, "-m", "benchmarks.experiments.vs_reference_speed",
           "--reference", str(Path(args.reference).resolve()),
           "--threads", str(args.threads), "--warmup", str(args.warmup), "--blocks", str(args.blocks),
           "--block", str(args.block), "--seed", str(args.seed), "--worker-side", side,
           *(["--ours-tree", str(Path(args.ours_tree).resolve())] if args.ours_tree else []), *(["--flops"] if args.flops else []),
           *(["--profile"] if args.profile else []),
           "--worker-task", task, "--worker-size", str(size), "--worker-round", str(rnd)]
    return _authors().run_worker(cmd, args.threads, MARKER, f"{side} {task} {size} round {rnd}")


def _median(values):
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else None


def summarise(runs: list[dict]) -> str:
    """One Markdown row per (task, size): each side's median wall-clock s/iter over rounds,
    ours / authors, the speed-up (authors / ours) and whether it reaches the 1.5x target; the same
    from process CPU time (less sensitive to other processes taking the core); peak RSS."""
    head = ("task", "size", "authors s/iter", "ours s/iter", "ours / authors", "speed-up",
            f"{TARGET}x met?", "CPU s/iter authors; ours (speed-up)", "peak RSS MB authors (before)", "peak RSS MB ours (before)", "s/iter per round (authors; ours)")
    flops = [r for r in runs if r.get("kind") == "flops"]
    runs = [r for r in runs if r.get("kind") != "flops"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = list(dict.fromkeys((r["task"], r["size"]) for r in runs))
    order = TASKS + EXTRA_TASKS
    keys.sort(key=lambda k: (k[1], order.index(k[0]) if k[0] in order else len(order)))
    for task, size in keys:
        rows = {side: sorted((r for r in runs if r["task"] == task and r["size"] == size and r["side"] == side),
                             key=lambda r: r.get("round", 0)) for side in ("authors", "ours")}
        a = _median([r["s_per_iter"] for r in rows["authors"]])
        o = _median([r["s_per_iter"] for r in rows["ours"]])
        pa, po = (_memory(rows[side]) for side in ("authors", "ours"))
        ratio = o / a if a and o else None
        speedup = a / o if a and o else None
        met = "-" if speedup is None else ("yes" if speedup >= TARGET else "no")
        ca, co = (_median([r.get("cpu_s_per_iter") for r in rows[side]]) for side in ("authors", "ours"))
        cpu = f"{_num(ca, 3)}; {_num(co, 3)}" + (f" ({ca / co:.2f}x)" if ca and co else "")
        per = "; ".join(", ".join(f"{r['s_per_iter']:.3f}" for r in rows[s]) or "-" for s in ("authors", "ours"))
        cells = (task, f"{size}", _num(a, 3), _num(o, 3), _num(ratio, 2),
                 "-" if speedup is None else f"{speedup:.2f}x", met, cpu, pa, po, per)
        lines.append("| " + " | ".join(cells) + " |")
    if runs:
        lines.append(f"\nthreads: {sorted({r['threads'] for r in runs})}; "
                     f"doubledip commit(s): {sorted({r['commit'] for r in runs})}")
    if flops:
        lines.append("\n" + bound_table(flops, runs))
    return "\n".join(lines)


def bound_table(flops: list[dict], runs: list[dict]) -> str:
    """Counted work per iteration, the rate each side achieves against the measured fp32 matmul
    rate, and the fp32 ceiling on the speed-up: the authors' s/iter over the time ours' counted
    GFLOP would take at the matmul rate (no same-function fp32 code can beat that). Each from
    wall time (s/iter, matmul rate) and, where recorded, from CPU time (CPU s/iter, the matmul
    rate per CPU second), the steadier of the two when other processes share the core."""
    head = ("task", "size", "GFLOP/iter authors", "GFLOP/iter ours", "matmul GFLOP/s (wall; CPU)",
            "authors GFLOP/s, of matmul (wall; CPU)", "ours GFLOP/s, of matmul (wall; CPU)",
            "fp32 ceiling on speed-up (wall; CPU)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = TASKS + EXTRA_TASKS
    for task, size in sorted(dict.fromkeys((r["task"], r["size"]) for r in flops),
                             key=lambda k: (k[1], order.index(k[0]) if k[0] in order else len(order))):
        here = [r for r in flops if r["task"] == task and r["size"] == size]
        g = {side: _median([r["gflop_per_iter"] for r in here if r["side"] == side]) for side in ("authors", "ours")}
        cells = {"rate": [], "authors": [], "ours": [], "ceiling": []}
        for rate_key, time_key in (("matmul_gflops", "s_per_iter"), ("matmul_cpu_gflops", "cpu_s_per_iter")):
            rate = _median([r.get(rate_key) for r in here])
            t = {side: _median([r.get(time_key) for r in runs if r["task"] == task and r["size"] == size
                                and r["side"] == side]) for side in ("authors", "ours")}
            cells["rate"].append(_num(rate, 0))
            for side in ("authors", "ours"):
                cells[side].append(f"{g[side] / t[side]:.0f}, {100 * g[side] / t[side] / rate:.0f}%"
                                   if g[side] and t[side] and rate else "-")
            cells["ceiling"].append(f"{t['authors'] * rate / g['ours']:.2f}x"
                                    if t["authors"] and rate and g["ours"] else "-")
        lines.append("| " + " | ".join((task, str(size), _num(g["authors"], 2), _num(g["ours"], 2),
                                        *("; ".join(cells[c]) for c in ("rate", "authors", "ours", "ceiling")))) + " |")
    return "\n".join(lines)


def _memory(rows: list[dict]) -> str:
    """Median peak RSS over rounds, with the median RSS just before optimising in brackets."""
    peak = _median([r["peak_rss_mb"] for r in rows])
    before = _median([r.get("rss_before_mb") for r in rows])
    return "-" if peak is None else f"{peak:.0f}" + ("" if before is None else f" ({before:.0f})")


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _csv(text: str, kind=str) -> list:
    return [kind(t.strip()) for t in text.split(",") if t.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", default=None, help="checkout of the authors' DoubleDIP code (required to run)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, some of {','.join(TASKS)}")
    p.add_argument("--sizes", default="256,512", help="comma-separated square image sizes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2, help="authors/ours pairs per (task, size), alternating")
    p.add_argument("--warmup", type=int, default=20,
                   help="iterations of the timed stage before the blocks (a multiple of --block)")
    p.add_argument("--blocks", type=int, default=3, help="timed blocks")
    p.add_argument("--block", type=int, default=10, help="iterations per block")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ours-tree", default=None, metavar="DIR",
                   help="import doubledip from DIR (holding doubledip/) instead of the installed package, "
                        "e.g. a `git archive` of a commit while the working tree is being edited "
                        "(its commit id in DIR/COMMIT)")
    p.add_argument("--flops", action="store_true",
                   help="instead of timing: count GFLOP per iteration on both sides and measure the fp32 "
                        "matmul rate; with timed runs in the same --from-json, the table gains the bound")
    p.add_argument("--profile", action="store_true",
                   help="record each run's top ops by self CPU time (torch.profiler; it slows the run: "
                        "time without it)")
    p.add_argument("--json", default=None, help="write every run's record to this file (after each run)")
    p.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                   help="only print the table for runs saved earlier with --json (no runs)")
    p.add_argument("--worker-side", help=argparse.SUPPRESS)
    p.add_argument("--worker-task", help=argparse.SUPPRESS)
    p.add_argument("--worker-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-round", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.from_json:
        loaded = [r for f in args.from_json for r in json.loads(Path(f).read_text())]
        print(summarise(loaded))
        print(profile_table(loaded))
        return 0
    ref = Path(args.reference) if args.reference else None
    missing = [f for f in REFERENCE_FILES if ref is None or not (ref / f).is_file()]
    if missing:
        where = f"at {args.reference!r}" if args.reference else "given (no --reference)"
        print(f"vs_reference_speed: no checkout of the authors' DoubleDIP code {where} (missing "
              f"{', '.join(missing)}); pass --reference PATH to a clone of "
              "github.com/yossigandelsman/DoubleDIP", file=sys.stderr)
        return 2
    if args.warmup % args.block or min(args.warmup, args.blocks, args.block) < 1:
        # both sides stamp every `block` iterations: a warm-up off that grid loses a block
        print(f"vs_reference_speed: --warmup ({args.warmup}) must be a positive multiple of --block "
              f"({args.block}), --blocks at least 1", file=sys.stderr)
        return 2
    if args.worker_side:
        worker(args)
        return 0
    tasks, sizes = _csv(args.tasks), _csv(args.sizes, int)
    bad = [t for t in tasks if t not in TASKS + EXTRA_TASKS]
    if bad:
        print(f"vs_reference_speed: unknown task(s) {bad}; expected some of {list(TASKS + EXTRA_TASKS)}", file=sys.stderr)
        return 2
    # authors, ours, authors, ours ... per (task, size): load from elsewhere falls on both sides
    order = [(size, task, rnd, side) for size in sizes for task in tasks
             for rnd in range(1 if args.flops else args.rounds) for side in ("authors", "ours")]
    runs = []
    for size, task, rnd, side in order:
        started = time.perf_counter()
        runs.append(_spawn(args, side, task, size, rnd))
        last = runs[-1]
        what = (f"{last['gflop_per_iter']} GFLOP/iter, matmul {last['matmul_gflops']:.0f} GFLOP/s" if args.flops
                else f"{last['s_per_iter']:.3f} s/iter, peak {last['peak_rss_mb']:.0f} MB")
        print(f"{task} {size} round {rnd} {side}: {what}, load {last['loadavg_start'][0]:.2f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
        if args.json:  # after every run: a long session that stops early keeps what it measured
            Path(args.json).write_text(json.dumps(runs, indent=1))
    print(summarise(runs))
    print(profile_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
