"""One unit of a batch's work, the same for every executor: a :class:`Job` (one item, or a group
of same-size items fitted in one batched run) and :func:`run_job`, which fits it, writes each
item's outputs atomically and returns one outcome per item. A job never touches the manifest:
the process driving the batch writes it from the outcomes."""
from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from doubledip.runs import outputs
from doubledip.runs.inputs import Item

# the exceptions the single-image CLI reports in one line (doubledip.cli.main): their text is the
# failure's message; anything else is recorded as "<type>: <text>"
INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, MemoryError)


@dataclass
class Job:
    """What one executor call runs (plain data: it crosses process and machine boundaries).

    task: the task's API name. items: one, or several of one size (a batched group). config: the
    SolverConfig for every item (its seed is each item's; a group's image i gets seed + i, as
    ``dd.batch``). options: the task's options (``airlight``...). out_dir: OUT. export: None,
    "onnx" or "torchscript". replace: item keys whose existing folder may be replaced (this
    batch's own). checkpoint_every: 0 (none) or K, with checkpoints in
    ``OUT/.checkpoints/<name>/``; resume: keys whose checkpoints to continue from.
    keep_partial: on Ctrl-C, save the result so far, marked partial.
    """

    task: str
    items: list
    config: object
    options: dict = field(default_factory=dict)
    out_dir: str = "."
    export: Optional[str] = None
    replace: tuple = ()
    checkpoint_every: int = 0
    resume: tuple = ()
    keep_partial: bool = False


def error_message(exc: BaseException) -> str:
    """A failure's one-line message: the single-image CLI's text for input errors."""
    if isinstance(exc, INPUT_ERRORS):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def image_size(path) -> Optional[tuple[int, int]]:
    """(H, W) from an image file's header (nothing decoded), or None where it cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:  # unreadable: the run itself reports it, in the task's words
        return None


def _entries(spec, items: list[Item]):
    """``dd.batch``'s entries and per-image options for a group of items."""
    required = [i for i in spec.inputs if i.required and i.batch_option is None]
    if len(required) == 1:
        entries = [it.paths[required[0].name] for it in items]
    else:
        entries = [tuple(it.paths[r.name] for r in required) for it in items]
    per_image = {}
    for inp in spec.inputs:
        if inp.batch_option is not None:
            values = [it.paths.get(inp.name) for it in items]
            if any(v is not None for v in values):
                per_image[inp.batch_option] = values
    return entries, per_image


def _fit(spec, items: list[Item], config, options: dict) -> list:
    """The task's results for ``items`` (one run; a group: one batched run)."""
    if len(items) == 1:
        it = items[0]
        required = [it.paths[i.name] for i in spec.required_inputs]
        optional = {i.name: it.paths[i.name] for i in spec.optional_inputs if i.name in it.paths}
        return [spec.run(*required, config, **optional, **options)]
    from doubledip.engine.batch import batch

    entries, per_image = _entries(spec, items)
    return batch(spec.name, entries, config, **per_image, **options)


def _check_memory(spec, items: list[Item], config) -> None:
    if config.resolve_device().type != "cpu":
        return  # a host-memory model: see runs.memory
    from doubledip.runs.memory import check_fits

    first = items[0].paths[spec.inputs[0].name]
    paths = first if isinstance(first, list) else [first]
    sizes = [s for s in (image_size(p) for p in paths) if s is not None]
    if sizes:
        count = len(paths) if isinstance(first, list) else len(items)
        check_fits(spec.name, max(sizes), count, config.low_memory)


def _item_config(job: Job, item: Item, config):
    """The config of one item's run: its checkpoint folder (when checkpoints are on), resume
    where it was interrupted before, keep_partial."""
    if not job.checkpoint_every:
        return config.replace(keep_partial=job.keep_partial)
    return config.replace(checkpoint_dir=str(outputs.checkpoint_dir(job.out_dir, item.name)),
                          checkpoint_every=job.checkpoint_every, resume=item.key in job.resume,
                          keep_partial=job.keep_partial)


def _save(result, item: Item, job: Job, partial: bool) -> str:
    """Write ``result`` to a temporary folder, then rename it to ``OUT/<name>``; returns the name."""
    out = Path(job.out_dir)
    tmp = outputs.staging(out, item.name)
    try:
        result.save(tmp)
        if job.export:
            result.export(tmp / "export", job.export)
        if partial:
            outputs.mark_partial(tmp)
        outputs.commit(tmp, out / item.name, replace=item.key in job.replace)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a commit; a failure's leftovers
    return item.name


def _outcome(item: Item, status: str, seconds: float, error: Optional[str] = None,
             partial: bool = False) -> dict:
    out = {"input": item.key, "name": item.name, "status": status, "seconds": round(seconds, 3),
           "error": error, "output": item.name if status == "done" else None}
    if partial:
        out["partial"] = True
    return out


def _partial_stop() -> bool:
    """Whether the run just fitted was cut short by Ctrl-C with keep_partial (its result partial)."""
    from doubledip.engine import checkpoint

    return checkpoint.interrupted()


def run_job(job: Job) -> list[dict]:
    """Fit ``job``'s items and write their outputs; one outcome per item: ``input``, ``name``,
    ``status`` (done or failed), ``seconds``, ``error``, ``output``. Input errors fail the item,
    not the batch; a group whose run fails is retried one item at a time, so one bad image fails
    alone. KeyboardInterrupt propagates (the items stay unfinished; no output is left half-written)."""
    from doubledip.engine.tasks import registry

    spec = registry.get(job.task)
    todo = [it for it in job.items if not it.missing]
    results = [_outcome(it, "failed", 0.0, it.missing) for it in job.items if it.missing]
    if len(todo) > 1:
        start = time.perf_counter()
        try:
            _check_memory(spec, todo, job.config)
            fitted = _fit(spec, todo, job.config, job.options)  # groups: no checkpoints
            seconds = time.perf_counter() - start
            for it, r in zip(todo, fitted):
                _save(r, it, job, False)
                results.append(_outcome(it, "done", seconds))
            return results
        except INPUT_ERRORS + (RuntimeError, OSError):
            pass  # one at a time below: the bad item fails alone
    from doubledip.engine import checkpoint

    for it in todo:
        start = time.perf_counter()
        try:
            _check_memory(spec, [it], job.config)
            checkpoint.reset()
            (r,) = _fit(spec, [it], _item_config(job, it, job.config), job.options)
            partial = _partial_stop()
            _save(r, it, job, partial)
            if partial:
                raise KeyboardInterrupt  # saved what it had; the batch stops as Ctrl-C asked
            outcome = _outcome(it, "done", time.perf_counter() - start)
            if checkpoint.resumed_at() is not None:
                outcome["resumed_at"] = checkpoint.resumed_at()
            results.append(outcome)
            if job.checkpoint_every:
                shutil.rmtree(outputs.checkpoint_dir(job.out_dir, it.name), ignore_errors=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded; the batch goes on
            results.append(_outcome(it, "failed", time.perf_counter() - start, error_message(exc)))
    return results


# ---- worker processes ---------------------------------------------------------------------

def worker_init(threads: Optional[int]) -> None:
    """A local worker process's start: Ctrl-C is handled per job (:func:`worker_run`), not while
    idle; on Linux the worker is killed with the process that drives the batch (so a driver
    killed with SIGKILL leaves no worker writing into OUT behind it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if threads:
        import torch

        torch.set_num_threads(threads)


def worker_run(job: Job) -> list[dict]:
    """:func:`run_job` in a worker process: Ctrl-C interrupts the job (KeyboardInterrupt) while it
    runs, and is ignored between jobs (an idle worker must not die)."""
    if threading.current_thread() is not threading.main_thread():
        return run_job(job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_job(job)
    finally:
        signal.signal(signal.SIGINT, previous)
