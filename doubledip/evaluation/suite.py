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
import platform
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from doubledip.engine.tasks import registry
from doubledip.evaluation import baselines as _baselines
from doubledip.evaluation import cases as _cases

__all__ = ["SUITES", "evaluated_tasks", "evaluate", "run_case", "format_table", "write_rows"]

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
             with_baselines: bool = True) -> dict:
    """Run ``case`` through its API function and return its row (see the module docstring)."""
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
                             mode=mode, device=device, seed=seed, log_every=log_every, callback=record)
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
    runs = repeats if (repeating and repeats) else 1
    row = {
        "task": case.task, "case": case.name, "description": case.description,
        "size": list(case.size), "iterations": done, "repeats": runs if repeating else None,
        "seconds": seconds,
        "s_per_iter": seconds / (done * runs) if done else None,  # wall time, setup included
        "primary": case.primary, "metrics": metrics,
        "mode": mode, "device": device, "seed": seed, "curve": curve,
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
    spec = SUITES[suite]
    size = spec["size"] if size is None else size
    log_every = spec["log_every"] if log_every is None else log_every
    chosen = _select(suite_cases(suite, size), tasks)
    meta = _environment(suite)
    rows = []
    for case in chosen:
        n = iterations
        if n is None and spec["quick"]:
            n = _evaluation(case.task).quick_iterations
        row = run_case(case, iterations=n, repeats=spec["repeats"], mode=mode, device=device,
                       seed=seed, log_every=log_every)
        row.update(meta)
        rows.append(row)
        if report is not None:
            report(row)
        if out_dir is not None:
            write_rows(rows, out_dir)
    return rows


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _environment(suite: str) -> dict:
    import torch
    return {"suite": suite, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": f"{_cpu_name()}, {os.cpu_count()} cores",
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
