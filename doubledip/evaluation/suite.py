"""The quality suite: run each task on cases with a known answer and score it against baselines.

``evaluate(suite="quick")`` runs every task once at 128 x 128 with 300-600 iterations and one
repeat of the watermark tasks (about 5 minutes on one CPU core); ``suite="full"`` runs several cases per task at 256 x 256 with the tasks'
default iterations. Every row records the run's settings, wall time, metrics, the baselines'
metrics and the gain over the first baseline, and a curve (the solver's logged records: loss and
reconstruction PSNR against iteration and seconds).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from doubledip.engine.tasks import registry
from doubledip.machine import cpu_model
from doubledip.evaluation import baselines as _baselines
from doubledip.evaluation import cases as _cases

__all__ = ["SUITES", "evaluated_tasks", "evaluate", "run_case", "format_table", "write_rows",
           "evaluate_video", "run_video_case", "format_video_table", "score_video", "flicker"]

#: Per suite: image size, whether tasks run their quick iteration counts (``Evaluation.
#: quick_iterations``) or their defaults, repeats for the tasks that repeat (None: default), and
#: how often the solver logs. The cases and scores come from each task's spec in the registry.
SUITES = {
    "quick": {"size": 128, "log_every": 25, "repeats": 1, "quick": True},
    "full": {"size": 256, "log_every": 100, "repeats": None, "quick": False},
}


def evaluated_tasks() -> list[str]:
    """The API names of the registered tasks that declare an evaluation."""
    return [spec.name for spec in registry.tasks() if spec.evaluation is not None]


def _evaluation(task: str) -> "registry.Evaluation":
    evaluation = registry.get(task).evaluation
    if evaluation is None:
        raise ValueError(f"task {task!r} declares no evaluation; evaluated tasks: {evaluated_tasks()}")
    return evaluation


def _repeats_in_config(task: str) -> bool:
    return any(o.name == "repeats" and o.in_config for o in registry.get(task).options)


def suite_cases(suite: str, size: int) -> list:
    """Every evaluated task's cases for ``suite`` at ``size x size``, in registry order."""
    return [case for task in evaluated_tasks() for case in _evaluation(task).cases(suite, size)]


def _finite(x):
    """JSON-safe numbers: NaN and infinities become None."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _outputs(result, task: str) -> dict:
    out = {}
    for name in _evaluation(task).fields:
        value = getattr(result, name, None)
        if value is not None:
            out[name] = value
    return out


def _gains(metrics: dict, base: dict) -> dict:
    return {k: metrics[k] - base[k] for k in metrics
            if k in base and k != "swapped" and metrics[k] is not None and base[k] is not None}


def run_case(case: "_cases.Case", *, iterations: Optional[int] = None, repeats: Optional[int] = None,
             mode: str = "reference", device: str = "auto", seed: int = 0, log_every: int = 25,
             with_baselines: bool = True, lr: Optional[float] = None) -> dict:
    """Run ``case`` through its API function and return its row (see the module docstring);
    ``lr``: the learning rate (None: the mode's default)."""
    import doubledip as dd

    curve: list[dict] = []
    start = [None]

    def record(entry: dict) -> None:
        point = {k: v for k, v in entry.items() if isinstance(v, (int, float)) or v is None}
        point["wall_seconds"] = time.perf_counter() - start[0]
        outputs = entry.get("outputs")
        if isinstance(outputs, dict):  # scored when the solver hands out its current outputs
            try:
                point.update(score(outputs, case.truth))
            except (KeyError, ValueError, TypeError):
                pass
        curve.append(point)

    score = _evaluation(case.task).score
    repeating = _repeats_in_config(case.task)
    config = dd.SolverConfig(iterations=iterations, repeats=repeats if repeating else None,
                             mode=mode, device=device, seed=seed, log_every=log_every, callback=record, lr=lr)
    function = registry.get(case.task).run
    start[0] = time.perf_counter()
    result = function(*case.args, config=config, **case.kwargs)
    wall = time.perf_counter() - start[0]
    seconds = float(getattr(result, "seconds", wall) or wall)
    metrics = score(_outputs(result, case.task), case.truth)
    done = iterations
    if done is None:
        logged = [p.get("iteration") for p in curve if p.get("iteration") is not None]
        done = int(max(logged)) + 1 if logged else None
    # repeats=None runs the task's default count for the mode: record that, not 1
    runs = (repeats or getattr(registry.get(case.task).defaults_for(mode), "repeats", None) or 1) if repeating else 1
    row = {
        "task": case.task, "case": case.name, "description": case.description,
        "size": list(case.size), "iterations": done, "repeats": runs if repeating else None,
        "seconds": seconds,
        "s_per_iter": seconds / (done * runs) if done else None,  # wall time, setup included
        "primary": case.primary, "metrics": metrics,
        "mode": mode, "device": device, "seed": seed, "curve": curve,
        # how the result was made, where the task says ("dip": the fit; a classic method's name)
        "method": getattr(result, "method", None),
    }
    if with_baselines:
        row["baselines"] = {}
        for name, outputs in _baselines.trivial_baselines(case).items():
            row["baselines"][name] = {"metrics": score(outputs, case.truth)}
            if "seconds" in outputs:  # a baseline that is a method of its own says what it cost
                row["baselines"][name]["seconds"] = float(outputs["seconds"])
        first = next(iter(row["baselines"].values()))["metrics"]
        row["gain"] = _gains(metrics, first)
    return _finite(row)


def _select(cases: list, tasks) -> list:
    if tasks is None:
        return cases
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    known = evaluated_tasks()
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected some of {known}")
    return [c for c in cases if c.task in tasks]


def evaluate(suite: str = "quick", tasks: Optional[Iterable[str]] = None, mode: str = "reference",
             device: str = "auto", seed: int = 0, iterations: Optional[int] = None,
             log_every: Optional[int] = None, out_dir=None, size: Optional[int] = None,
             report: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """Run the ``suite`` ("quick" or "full") and return its rows.

    ``tasks``: API function names (a list or a comma-separated string; None: all). ``iterations``
    overrides every task's count; ``size`` the suite's image size. ``report`` is called with each
    row as it completes. With ``out_dir``, writes ``out_dir/evaluation.json`` (the list of rows).
    """
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, received {suite!r}")
    if suite == "video":  # clips, scored per frame and for flicker (see evaluate_video)
        return evaluate_video(tasks, mode, device, seed, iterations, log_every, out_dir, size, report)
    spec = SUITES[suite]
    size = spec["size"] if size is None else size
    log_every = spec["log_every"] if log_every is None else log_every
    chosen = _select(suite_cases(suite, size), tasks)

    def run(case):
        n = iterations
        if n is None and spec["quick"]:
            n = _evaluation(case.task).quick_iterations
        return run_case(case, iterations=n, repeats=spec["repeats"], mode=mode, device=device,
                        seed=seed, log_every=log_every)

    return _collected((lambda case=case: run(case) for case in chosen), _environment(suite), report, out_dir)


def _collected(runs, meta: dict, report, out_dir) -> list[dict]:
    """Each run's row (``runs``: callables, run in turn) with ``meta`` added, handed to ``report``
    and, with ``out_dir``, all rows so far written after each run (a stopped suite keeps them)."""
    rows = []
    for run in runs:
        row = run()
        row.update(meta)
        rows.append(row)
        if report is not None:
            report(row)
        if out_dir is not None:
            write_rows(rows, out_dir)
    return rows


def _environment(suite: str) -> dict:
    import torch
    return {"suite": suite, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{cpu_model()}, {os.cpu_count()} cores",
            "date": _dt.datetime.now().isoformat(timespec="seconds")}


def write_rows(rows: list[dict], out_dir) -> Path:
    """Write ``rows`` to ``out_dir/evaluation.json`` and return that path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "evaluation.json"
    path.write_text(json.dumps(_finite(rows), indent=1))
    return path


def _fmt(x, digits=2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def format_table(rows: list[dict]) -> str:
    """The rows as a Markdown table: the primary metric, the first baseline's value and the gain,
    then the other metrics and every extra baseline."""
    head = ["task", "case", "size", "iters", "seconds", "s/iter", "metric", "value", "baseline",
            "gain", "other metrics"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        key = r["primary"]
        base_name, base = next(iter(r.get("baselines", {"-": {"metrics": {}}}).items()))
        others = ", ".join(f"{k} {_fmt(v)}" for k, v in r["metrics"].items()
                           if k != key and not k[-2:] in ("_0", "_1") and k != "swapped")
        extra = [f"{n}: {key} {_fmt(b['metrics'].get(key))}"
                 + (f" in {b['seconds']:.2f} s" if b.get("seconds") is not None else "")
                 for n, b in list(r.get("baselines", {}).items())[1:]]
        if extra:
            others += "; " + "; ".join(extra)
        cells = [r["task"], r["case"], "x".join(map(str, r["size"])), _fmt(r["iterations"]),
                 _fmt(r["seconds"], 1), _fmt(r["s_per_iter"], 3), key, _fmt(r["metrics"].get(key), 3),
                 f"{_fmt(base['metrics'].get(key), 3)} ({base_name})",
                 _fmt(r.get("gain", {}).get(key), 3), others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- the video suite (``evaluate(suite="video")``, ``doubledip evaluate --suite video``) -------
# Per video task (``registry.tasks("video")``): its clip with a known answer (the truth's ``motion``: how the
# content moves per frame, for the flicker) run as one problem,
# scored per frame (the frame task's scorer, averaged over the frames, and the primary metric's
# worst frame) and for flicker; against the same task run on each frame alone at equal total
# wall time, one frame alone at the clip's iteration count (the time a single-frame run takes),
# and the task's method-free baselines per frame (the dark channel prior for dehazing).

SUITES["video"] = {"size": 128, "log_every": 25, "repeats": None, "quick": True, "frames": 6}


def flicker(estimate, truth, motion=(0, 0)) -> float:
    """The frame-to-frame change of the error, motion-compensated: ``mean_t mean |e_{t+1} -
    warp(e_t)|`` with ``e_t = estimate_t - truth_t`` (T x H x W [x C] arrays, T >= 2).

    motion: (dy, dx), how far the content's window moves per frame (a camera pan): pixel
    (y, x) of frame t+1 shows what pixel (y + dy, x + dx) of frame t showed, so an error that
    moves with the content (a stable result) is compared with itself, on the frames' overlap.
    0 when every frame's error is its predecessor's, moved (a perfect result, or a bias that
    moves with the scene); a result right on average but different on every frame scores high.
    """
    e = np.asarray(estimate, np.float64) - np.asarray(truth, np.float64)
    if e.ndim < 3 or e.shape[0] < 2:
        raise ValueError(f"flicker needs T x H x W [x C] arrays with T >= 2, received shape {e.shape}")
    dy, dx = (int(m) for m in motion)
    H, W = e.shape[1:3]
    if abs(dy) >= H or abs(dx) >= W:
        raise ValueError(f"flicker: motion {motion} leaves no overlap between {H}x{W} frames")
    # rows y of frame t+1 with y + dy inside frame t; the same for columns
    ys, xs = slice(max(0, -dy), H - max(0, dy)), slice(max(0, -dx), W - max(0, dx))
    ys_prev, xs_prev = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    return float(np.mean(np.abs(e[1:, ys, xs] - e[:-1, ys_prev, xs_prev])))


def _frame(value, t: int):
    """Frame t of a clip-shaped field (a list of clips: each one's frame; a value such as the
    airlight, shared by the frames: itself)."""
    if isinstance(value, (list, tuple)):
        return [np.asarray(v)[t] for v in value]
    a = np.asarray(value)
    return a[t] if a.ndim >= 3 else a


def score_video(task: str, outputs: dict, truth: dict) -> dict:
    """A video task's outputs (T-leading fields) against the truth: every metric of the frame
    task's scorer averaged over the frames, ``<primary>_min`` (its worst frame), and
    ``flicker`` of the main output (separation: of the two layers, under the one assignment of
    layers to truths that fits the whole clip best; a per-frame swap is flicker)."""
    spec = registry.get(task)
    frame_eval = registry.get(spec.extra["frame_task"]).evaluation
    first = next(v for v in outputs.values() if isinstance(v, (list, tuple, np.ndarray)))
    frames = len(first[0]) if isinstance(first, (list, tuple)) else len(first)
    motion = truth.get("motion")
    truth = {k: v for k, v in truth.items() if k != "motion"}
    per_frame = [frame_eval.score({k: _frame(v, t) for k, v in outputs.items()},
                                  {k: _frame(v, t) for k, v in truth.items()}) for t in range(frames)]
    keys = [k for k in per_frame[0] if k != "swapped" and not k[-2:] in ("_0", "_1")]
    out = {k: float(np.mean([m[k] for m in per_frame])) for k in keys}
    primary = spec.evaluation.primary
    out[f"{primary}_min"] = float(min(m[primary] for m in per_frame))
    if task == "separate_video":
        est, ref = [np.asarray(x) for x in outputs["layers"]], [np.asarray(x) for x in truth["layers"]]
        straight = sum(float(np.mean((e - r) ** 2)) for e, r in zip(est, ref))
        swapped = sum(float(np.mean((e - r) ** 2)) for e, r in zip(est[::-1], ref))
        if swapped < straight:
            est = est[::-1]
        motions = motion or [(0, 0), (0, 0)]  # per true layer
        out["flicker"] = float(np.mean([flicker(e, r, m) for e, r, m in zip(est, ref, motions)]))
    elif task == "dehaze_video":
        out["flicker"] = flicker(outputs["image"], truth["image"], motion or (0, 0))
    else:
        out["flicker"] = flicker(outputs["mask"], truth["mask"], motion or (0, 0))
    out["frames"] = frames
    return out


def _stack_results(results: list, fields: tuple) -> dict:
    """Per-frame results -> clip-shaped outputs (T-leading; lists per entry; one shared value
    such as the airlight: the frames' mean)."""
    out = {}
    for name in fields:
        values = [getattr(r, name, None) for r in results]
        if any(v is None for v in values):
            continue
        if isinstance(values[0], (list, tuple)):
            out[name] = [np.stack([v[i] for v in values]) for i in range(len(values[0]))]
        elif np.asarray(values[0]).ndim >= 2:
            out[name] = np.stack(values)
        else:
            out[name] = np.mean(values, axis=0)
    return out


def _frame_run(frame_task: str, case, t: int, iterations: int, mode: str, device: str, seed: int):
    import doubledip as dd

    config = dd.SolverConfig(iterations=iterations, mode=mode, device=device, seed=seed, log_every=10 ** 6)
    clip = case.args[0]
    return registry.get(frame_task).run(clip[t], config=config, **case.extra["frame_kwargs"][t])


def per_frame_iterations(frame_task: str, case, seconds_per_frame: float, iterations: int, mode: str,
                         device: str, seed: int) -> tuple[int, dict]:
    """The iteration count at which a run of ``frame_task`` on one frame of ``case`` takes
    ``seconds_per_frame``: its wall time fitted as ``a + b * n`` from two short runs on frame 0
    (setup and post-processing in ``a``). Returns (count, the fit)."""
    n1 = max(8, iterations // 12)
    s1 = _frame_run(frame_task, case, 0, n1, mode, device, seed).seconds
    s2 = _frame_run(frame_task, case, 0, 2 * n1, mode, device, seed).seconds
    b = max((s2 - s1) / n1, 1e-6)
    a = max(s1 - b * n1, 0.0)
    return max(4, int((seconds_per_frame - a) / b)), {"setup_seconds": a, "seconds_per_iteration": b}


def run_video_case(case, *, iterations: Optional[int] = None, mode: str = "reference", device: str = "auto",
                   seed: int = 0, log_every: int = 25, with_baselines: bool = True,
                   frames_per_step: Optional[int] = None) -> dict:
    """Run a video ``case`` as one clip and return its row: the clip's per-frame metrics and
    flicker, and (``with_baselines``) the baselines: ``per-frame runs, equal time`` (the frame
    task on each frame alone, all of them together taking the clip's wall time), ``one frame
    alone`` (the middle frame at the clip's iteration count: ``time_ratio`` is the clip's wall
    time over its), and the task's method-free baselines."""
    import doubledip as dd

    spec = registry.get(case.task)
    evaluation, frame_task = spec.evaluation, spec.extra["frame_task"]
    clip = case.args[0]
    T, H, W = (int(s) for s in clip.shape[:3])
    config = dd.SolverConfig(iterations=iterations, mode=mode, device=device, seed=seed, log_every=log_every)
    options = {} if frames_per_step is None else {"frames_per_step": frames_per_step}
    start = time.perf_counter()
    result = spec.run(*case.args, config=config, **case.kwargs, **options)
    wall = time.perf_counter() - start
    done = iterations if iterations is not None else spec.defaults_for(mode).iterations_per_image
    outputs = {k: getattr(result, k) for k in evaluation.fields if getattr(result, k, None) is not None}
    row = {"task": case.task, "case": case.name, "description": case.description, "size": [H, W], "frames": T,
           "iterations": done, "seconds": float(result.seconds), "wall_seconds": wall,
           "s_per_iter": float(result.seconds) / done, "primary": case.primary,
           "metrics": score_video(case.task, outputs, case.truth), "mode": mode, "device": device, "seed": seed,
           "frames_per_step": frames_per_step, "curve": [{k: v for k, v in rec.items() if isinstance(v, (int, float))}
                                                          for rec in result.history]}
    if with_baselines:
        baselines = {}
        n, fit = per_frame_iterations(frame_task, case, result.seconds / T, done, mode, device, seed)
        runs = [_frame_run(frame_task, case, t, n, mode, device, seed + t) for t in range(T)]
        baselines["per-frame runs, equal time"] = {
            "metrics": score_video(case.task, _stack_results(runs, evaluation.fields), case.truth),
            "seconds": float(sum(r.seconds for r in runs)), "iterations_per_frame": n, **fit}
        middle = T // 2
        alone = _frame_run(frame_task, case, middle, done, mode, device, seed)
        frame_score = registry.get(frame_task).evaluation.score
        same_frame = frame_score({k: _frame(v, middle) for k, v in outputs.items()},
                                 {k: _frame(v, middle) for k, v in case.truth.items() if k != "motion"})
        baselines["one frame alone"] = {
            "metrics": frame_score({k: getattr(alone, k) for k in evaluation.fields if getattr(alone, k, None) is not None},
                                   {k: _frame(v, middle) for k, v in case.truth.items() if k != "motion"}),
            "seconds": float(alone.seconds), "frame": middle, "iterations": done,
            "clip_metrics_same_frame": same_frame, "time_ratio": float(result.seconds) / float(alone.seconds)}
        for name, outs in evaluation.baselines(case).items():
            entry = {"metrics": score_video(case.task, {k: v for k, v in outs.items() if k != "seconds"}, case.truth)}
            if "seconds" in outs:
                entry["seconds"] = float(outs["seconds"])
            baselines[name] = entry
        row["baselines"] = baselines
        first = baselines["per-frame runs, equal time"]["metrics"]
        row["gain"] = _gains(row["metrics"], first)
    return _finite(row)


def evaluate_video(tasks: Optional[Iterable[str]] = None, mode: str = "reference", device: str = "auto",
                   seed: int = 0, iterations: Optional[int] = None, log_every: Optional[int] = None,
                   out_dir=None, size: Optional[int] = None, report: Optional[Callable[[dict], None]] = None,
                   frames_per_step: Optional[int] = None) -> list[dict]:
    """The video suite: every video task's cases (``registry.tasks("video")``) through
    :func:`run_video_case`. Arguments as :func:`evaluate` (``tasks``: video API names, e.g.
    ``"dehaze_video"``); writes ``out_dir/evaluation.json`` with ``out_dir``."""
    spec = SUITES["video"]
    size = spec["size"] if size is None else size
    log_every = spec["log_every"] if log_every is None else log_every
    known = [s.name for s in registry.tasks("video") if s.evaluation is not None]
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    unknown = [t for t in (tasks or []) if t not in known]
    if unknown:
        raise ValueError(f"unknown video task(s) {unknown}; expected some of {known}")

    def runs():
        for name in (tasks or known):
            evaluation = registry.get(name).evaluation
            n = evaluation.quick_iterations if iterations is None else iterations
            for case in evaluation.cases("video", size):
                yield lambda case=case, n=n: run_video_case(case, iterations=n, mode=mode, device=device, seed=seed,
                                                            log_every=log_every, frames_per_step=frames_per_step)

    return _collected(runs(), _environment("video"), report, out_dir)


def format_video_table(rows: list[dict]) -> str:
    """The video rows as a Markdown table: the primary metric (mean over frames) and flicker of
    the clip run and of each baseline, and the clip's time against one frame alone."""
    head = ["task", "case", "frames x size", "iters", "seconds", "metric", "clip", "clip flicker",
            "per-frame runs (equal time)", "flicker", "one frame alone", "time ratio", "other baselines"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        key, b = r["primary"], r.get("baselines", {})
        eq, alone = b.get("per-frame runs, equal time", {}), b.get("one frame alone", {})
        others = "; ".join(f"{n}: {_fmt(v['metrics'].get(key), 3)} (flicker {_fmt(v['metrics'].get('flicker'), 4)})"
                           for n, v in b.items() if n not in ("per-frame runs, equal time", "one frame alone"))
        same = alone.get("clip_metrics_same_frame", {}).get(key)
        cells = [r["task"], r["case"], f"{r['frames']} x {'x'.join(map(str, r['size']))}", _fmt(r["iterations"]),
                 _fmt(r["seconds"], 1), key, _fmt(r["metrics"].get(key), 3), _fmt(r["metrics"].get("flicker"), 4),
                 f"{_fmt(eq.get('metrics', {}).get(key), 3)} ({_fmt(eq.get('iterations_per_frame'))} it/frame, "
                 f"{_fmt(eq.get('seconds'), 1)} s)" if eq else "-",
                 _fmt(eq.get("metrics", {}).get("flicker"), 4) if eq else "-",
                 f"{_fmt(alone.get('metrics', {}).get(key), 3)} vs clip {_fmt(same, 3)} (frame {alone.get('frame')}, "
                 f"{_fmt(alone.get('seconds'), 1)} s)" if alone else "-",
                 _fmt(alone.get("time_ratio"), 2) if alone else "-", others or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
