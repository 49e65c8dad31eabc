"""Side by side: the authors' Double-DIP code and doubledip on the same case, size, iterations,
seed policy and thread count, on the CPU.

    python -m benchmarks.experiments.vs_reference --reference /path/to/DoubleDIP \
        [--tasks separate,dehaze] [--size 256] [--iterations 1000] [--seeds 0,1,2] [--threads 1]

(from the repository root). ``--reference`` is a checkout of github.com/yossigandelsman/DoubleDIP
that you supply; nothing of it is copied here. Each run applies the runtime shims of
``benchmarks.authors`` before importing their code from that path (none of their files is
edited; OpenCV's guided filter is doubledip's, so both sides share one post-filter and differ
only in what they optimise).

Each (side, task, seed) runs in its own process with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and
``torch.set_num_threads`` set to ``--threads``. Measured per run:

- s/iter: median over blocks of ``--block`` iterations, after ``--warmup`` iterations, of the
  wall time per iteration (the authors' loop is timed at each call of their per-iteration
  closure; ours through the solver's callback every ``--block`` iterations);
- peak memory: the process's peak resident set size (``getrusage`` ``ru_maxrss``; torch's CPU
  allocations are not seen by tracemalloc), and the peak above the resident size just before
  optimisation (authors: after their constructor built nets and inputs; ours: before the API
  call, which builds them);
- quality: the quality suite's metrics against the case's ground truth
  (``doubledip.evaluation.metrics``).

Tasks: ``separate`` (their ``Separation`` class; ours ``dd.separate``), ``dehaze`` (their
``Dehaze`` class with the dark-channel airlight, i.e. the first pass of their ``dehaze()``; ours
``dd.dehaze(passes=1)``) and ``dehaze2`` (both passes of their ``dehaze()`` driver, rebuilt from
their ``Dehaze`` class, ``--iterations`` per pass; ours ``dd.dehaze(passes=2)``; the transmission
scored is the second pass's, as ours returns it). Cases: the quality suite's cases at ``--size`` (``--case suite``), or,
for separation, the paper's texture demo read from the reference checkout (``--case textures``).
Exit status 2 when the reference path is missing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

TASKS = ("separate", "dehaze", "dehaze2")
MARKER = "VS_REFERENCE_RESULT "


# ----------------------------------------------------------------------------------- cases

def _texture_case(reference: Path, size: int):
    """The paper's texture demo (texture12 + texture16) / 2, centre-cropped to ``size``."""
    from PIL import Image

    from doubledip.evaluation.cases import Case
    layers = []
    for name in ("texture12.jpg", "texture16.jpg"):
        img = Image.open(reference / "images" / name).convert("RGB")
        w, h = img.size
        if min(w, h) < size:
            raise ValueError(f"{name} is {w}x{h}, smaller than --size {size}")
        left, top = (w - size) // 2, (h - size) // 2
        layers.append(np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / 255)
    mixture = ((layers[0] + layers[1]) / 2).astype(np.float32)
    return Case("separate", "textures12+16", (mixture,), {},
                {"layers": [layers[0] / 2, layers[1] / 2], "mixture": mixture}, "separation",
                "the paper's texture demo, mixed 1:1")


def build_case(task: str, case: str, size: int, reference: Path):
    from doubledip.evaluation import cases
    if case == "textures":
        if task != "separate":
            raise ValueError("--case textures applies to separation only")
        return _texture_case(reference, size)
    return {"separate": cases.separate_case, "dehaze": cases.dehaze_case,
            "dehaze2": cases.dehaze_case}[task](size)


# ----------------------------------------------------------------------------------- workers

def _authors():
    """``benchmarks.authors``; needs the repository root on the path (``python -m`` from there)."""
    try:
        from benchmarks import authors
    except ImportError as exc:
        raise SystemExit("vs_reference: run it from the repository root as "
                         "`python -m benchmarks.experiments.vs_reference ...`") from exc
    return authors


def _score(task: str, outputs: dict, truth: dict) -> dict:
    from doubledip.evaluation import metrics
    return (metrics.score_separate if task == "separate" else metrics.score_dehaze)(outputs, truth)


def run_authors(task, case, iterations, seed, block, warmup, reference: Path) -> dict:
    _authors().prepare_process(reference, seed)
    image = np.ascontiguousarray(case.args[0].transpose(2, 0, 1))
    if task == "separate":
        from transparency_separation import Separation
        model = Separation("case", image, plot_during_training=False, num_iter=iterations)
    else:
        from dehazing import Dehaze
        model = Dehaze("case", image, num_iter=iterations, plot_during_training=False,
                       use_deep_channel_prior=True, gt_ambient=None, clip=True)
    stamps = []

    def timed(model, offset):
        closure = model._optimization_closure

        def timed_closure(step):
            if step % block == 0:
                stamps.append((offset + step, time.perf_counter()))
            return closure(step)
        model._optimization_closure = timed_closure
    timed(model, 0)
    rss_before = _authors().rss_mb()
    start = time.perf_counter()
    model.optimize()
    if task != "separate":
        model.finalize()
    if task == "dehaze2":  # their dehaze(): pass 2 re-dehazes pass 1's output, learning A
        from dehazing import Dehaze
        model = Dehaze("case_1", model.post, iterations, False, 500, False, model.best_result.a, clip=True)
        timed(model, iterations + block)  # the gap keeps the pass boundary out of the blocks
        model.optimize()
        model.finalize()
    seconds = time.perf_counter() - start
    stamps.append((iterations * (2 if task == "dehaze2" else 1) + (block if task == "dehaze2" else 0),
                   time.perf_counter()))
    best = model.best_result
    if task == "separate":
        outputs = {"layers": [best.reflection.transpose(1, 2, 0), best.transmission.transpose(1, 2, 0)]}
    else:
        t = model.t_matting(model.final_t_map)[0]
        outputs = {"image": model.post.transpose(1, 2, 0), "transmission": t,
                   "airlight": np.asarray(best.a, np.float32).reshape(3, -1).mean(axis=1)}
    return {"outputs": outputs, "seconds": seconds, "stamps": stamps, "rss_before": rss_before,
            "reconstruction_psnr": float(best.psnr)}


def run_ours(task, case, iterations, seed, block, warmup, mode) -> dict:
    import doubledip as dd
    stamps = []
    t0 = [None]

    def record(entry):
        stamps.append((int(entry["iteration"]) + 1, time.perf_counter()))
    config = dd.SolverConfig(iterations=iterations, seed=seed, device="cpu", mode=mode,
                             log_every=block, callback=record)
    rss_before = _authors().rss_mb()
    t0[0] = time.perf_counter()
    stamps.append((0, t0[0]))
    if task == "separate":
        r = dd.separate(case.args[0], config=config)
        outputs = {"layers": list(r.layers)}
    else:
        passes = 2 if task == "dehaze2" else 1
        config = config.replace(iterations=iterations * passes)
        r = dd.dehaze(case.args[0], config=config, passes=passes)
        outputs = {"image": r.image, "transmission": r.transmission, "airlight": r.airlight}
    seconds = time.perf_counter() - t0[0]
    last_pass = 1 if task == "dehaze2" else 0  # the authors' figure is their last pass's best
    psnrs = [h.get("psnr") for h in getattr(r, "history", [])
             if h.get("psnr") is not None and h.get("pass", 0) == last_pass]
    return {"outputs": outputs, "seconds": seconds, "stamps": stamps, "rss_before": rss_before,
            "reconstruction_psnr": float(max(psnrs)) if psnrs else None}


def worker(args) -> None:
    import torch
    torch.set_num_threads(args.threads)
    authors = _authors()
    reference = Path(args.reference)
    case = build_case(args.worker_task, args.case, args.size, reference)
    if args.worker_side == "authors":
        res = run_authors(args.worker_task, case, args.iterations, args.worker_seed, args.block,
                          args.warmup, reference)
    else:
        res = run_ours(args.worker_task, case, args.iterations, args.worker_seed, args.block,
                       args.warmup, args.mode)
    metrics = _score(args.worker_task if args.worker_task != "dehaze2" else "dehaze", res["outputs"], case.truth)
    peak = authors.peak_mb()
    out = {"commit": authors.commit(), "side": args.worker_side, "task": args.worker_task, "case": case.name,
           "seed": args.worker_seed, "size": args.size, "iterations": args.iterations,
           "threads": torch.get_num_threads(), "seconds": res["seconds"],
           "s_per_iter": authors.block_median(res["stamps"], args.warmup),
           "peak_rss_mb": peak, "peak_above_setup_mb": peak - res["rss_before"],
           "reconstruction_psnr": res["reconstruction_psnr"], "metrics": metrics}
    print(MARKER + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------------- driver

PRIMARY = {"separate": ("separation", "layer_psnr", "layer_ssim"),
           "dehaze": ("psnr", "ssim", "transmission_mae", "airlight_mae")}
PRIMARY["dehaze2"] = PRIMARY["dehaze"]


def _spawn(args, side, task, seed) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.experiments.vs_reference", "--reference", str(Path(args.reference).resolve()),
           "--size", str(args.size), "--iterations", str(args.iterations), "--threads", str(args.threads),
           "--block", str(args.block), "--warmup", str(args.warmup), "--mode", args.mode,
           "--case", args.case, "--worker-side", side, "--worker-task", task, "--worker-seed", str(seed)]
    return _authors().run_worker(cmd, args.threads, MARKER, f"{side} {task} seed {seed}")


def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(mean, sd, digits=3):
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if sd else f"{mean:.{digits}f}"


def summarise(runs: list[dict]) -> str:
    """A Markdown table per task: mean ± sd over seeds for each side, and ours / authors."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in runs):
        rows = {side: [r for r in runs if r["task"] == task and r["side"] == side]
                for side in ("authors", "ours")}
        first = next(r for r in runs if r["task"] == task)
        lines.append(f"\n### {task}: case {first['case']}, {first['size']}x{first['size']}, "
                     f"{first['iterations']} iterations, {first['threads']} thread(s), "
                     f"seeds {sorted({r['seed'] for r in runs if r['task'] == task})}\n")
        lines.append("| measure | authors | ours | ours / authors |")
        lines.append("|---|---|---|---|")
        fields = [("s/iter", lambda r: r["s_per_iter"], 3), ("wall s", lambda r: r["seconds"], 1),
                  ("peak RSS MB", lambda r: r["peak_rss_mb"], 0),
                  ("peak above setup MB", lambda r: r["peak_above_setup_mb"], 0),
                  ("recon. PSNR (tracked best)", lambda r: r["reconstruction_psnr"], 2)]
        fields += [(m, (lambda m: lambda r: r["metrics"].get(m))(m), 3) for m in PRIMARY[task]]
        for label, get, digits in fields:
            a = _mean_sd([get(r) for r in rows["authors"]])
            o = _mean_sd([get(r) for r in rows["ours"]])
            ratio = f"{o[0] / a[0]:.2f}" if a[0] and o[0] is not None else "-"
            lines.append(f"| {label} | {_fmt(*a, digits)} | {_fmt(*o, digits)} | {ratio} |")
        for side in ("authors", "ours"):
            per = ", ".join(f"seed {r['seed']}: " + ", ".join(
                f"{m} {r['metrics'].get(m):.3f}" for m in PRIMARY[task]) for r in rows[side])
            lines.append(f"\n{side} per seed: {per}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", required=False, default=None,
                   help="checkout of the authors' DoubleDIP code")
    p.add_argument("--tasks", default="separate,dehaze", help="comma-separated: separate,dehaze")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--block", type=int, default=10, help="iterations per timing block")
    p.add_argument("--warmup", type=int, default=20, help="iterations left out of s/iter")
    p.add_argument("--mode", default="reference", help="our solver's mode")
    p.add_argument("--case", choices=("suite", "textures"), default="suite")
    p.add_argument("--sides", default="authors,ours", help="which implementations to run")
    p.add_argument("--json", default=None, help="also write every run's record to this file")
    p.add_argument("--from-json", nargs="+", default=None, metavar="FILE",
                   help="only print the table for runs saved earlier with --json (no runs)")
    p.add_argument("--worker-side", help=argparse.SUPPRESS)
    p.add_argument("--worker-task", help=argparse.SUPPRESS)
    p.add_argument("--worker-seed", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.from_json:
        runs = [r for f in args.from_json for r in json.loads(Path(f).read_text())]
        print(summarise(runs))
        return 0
    ref = Path(args.reference) if args.reference else None
    if ref is None or not (ref / "transparency_separation.py").is_file() or not (ref / "dehazing.py").is_file():
        where = f"at {args.reference!r}" if args.reference else "given (no --reference)"
        print(f"vs_reference: no checkout of the authors' DoubleDIP code {where} "
              "(expected transparency_separation.py and dehazing.py there); "
              "pass --reference PATH to a clone of github.com/yossigandelsman/DoubleDIP", file=sys.stderr)
        return 2
    if args.worker_side:
        worker(args)
        return 0
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        print(f"vs_reference: unknown task(s) {bad}; expected some of {list(TASKS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    runs = []
    for task in tasks:
        for seed in seeds:
            for side in sides:
                t = time.perf_counter()
                run = _spawn(args, side, task, seed)
                runs.append(run)
                print(f"{task} seed {seed} {side}: {run['s_per_iter']:.3f} s/iter, "
                      f"{', '.join(f'{k} {v:.3f}' for k, v in run['metrics'].items())} "
                      f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps(runs, indent=1))
    print(summarise(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
