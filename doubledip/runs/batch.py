"""``dd.run_many``: one task over many inputs, with a resumable manifest, atomic outputs and a
choice of executor (this process, local worker processes, Ray)."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from doubledip.runs import manifest as mf
from doubledip.runs import outputs
from doubledip.runs.inputs import Item, items as collect_items
from doubledip.runs.jobs import Job, error_message, image_size

LOCK = ".batch.lock"
# iterations between checkpoints of a batch's runs (CLI --checkpoint-every; 0: none)
DEFAULT_CHECKPOINT_EVERY = 500
# how long an interrupted batch waits for its running jobs to checkpoint and stop
INTERRUPT_WAIT_S = 60.0


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the batch; ``report`` says where it stood (the manifest is valid, no
    output is half-written, and rerunning the same call continues)."""

    def __init__(self, report: "BatchReport"):
        super().__init__("batch interrupted")
        self.report = report


@dataclass
class BatchReport:
    """What a batch did: one record per input (its latest manifest state), and which of them
    this call ran. ``done`` / ``failed`` / ``running``: the inputs in each state now."""

    out_dir: Path
    records: dict = field(default_factory=dict)
    ran: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def _with(self, status: str) -> list[str]:
        return [k for k, r in self.records.items() if r["status"] == status]

    @property
    def done(self) -> list[str]:
        return self._with("done")

    @property
    def failed(self) -> list[str]:
        return self._with("failed")

    @property
    def running(self) -> list[str]:
        return self._with("running")

    @property
    def manifest(self) -> Path:
        return self.out_dir / mf.MANIFEST

    def summary(self) -> str:
        n = len(self.records)
        parts = [f"{len(self.done)} of {n} inputs done"
                 + (f" ({len(self.skipped)} of them before this run)" if self.skipped else "")]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.running:
            parts.append(f"{len(self.running)} unfinished")
        return ", ".join(parts) + f" (see {self.manifest})"


class _Lock:
    """An exclusive lock on OUT for one batch at a time (flock; released when the process dies)."""

    def __init__(self, out: Path):
        self.path = out / LOCK
        self.fh = None

    def __enter__(self):
        import fcntl

        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise ValueError(f"another doubledip batch is writing to {str(self.path.parent)!r}; wait for it "
                             "to finish, or choose another OUT") from None
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _jsonable(v):
    from doubledip.engine.results import _jsonable as plain

    return plain(v)


def _manifest_config(spec, config, options: dict, group: int) -> dict:
    return _jsonable({"task": spec.name, "options": dict(sorted(options.items())), "group": group,
                      **config.to_dict()})


def _check_options(spec, options: dict) -> dict:
    allowed = {o.name for o in spec.options if not o.in_config}
    unknown = set(options) - allowed
    if unknown:
        in_config = sorted(o.name for o in spec.options if o.in_config and o.name in unknown)
        where = f" ({', '.join(in_config)}: set it in the SolverConfig)" if in_config else ""
        raise TypeError(f"run_many: unexpected options for {spec.name}: {sorted(unknown)}{where}; "
                        f"accepted: {sorted(allowed)}")
    return {k: v for k, v in options.items() if v is not None and v is not False}


def _result_matches(folder: Path, current: dict) -> bool:
    """Whether ``folder`` holds a complete, non-partial result of these settings (an input killed
    after its output was renamed in but before the manifest said so)."""
    from doubledip.engine.results import read_result_json

    meta = read_result_json(folder)
    if meta is None or meta.get("partial") or meta.get("task") != current["task"]:
        return False
    cfg = meta.get("config") or {}
    return all(cfg.get(k) == current.get(k) for k in mf.IDENTITY if k not in ("task", "options", "group"))


def _groups(spec, todo: list[Item], size: int) -> list[list[Item]]:
    """Jobs: items of one size (and the same inputs given) in groups of up to ``size``; items
    that cannot be grouped alone."""
    if size <= 1 or spec.run_many is None or spec.inputs[0].kind != "image":
        return [[it] for it in todo]
    by_key: dict = {}
    alone = []
    for it in todo:
        hw = None if it.missing else image_size(it.paths[spec.inputs[0].name])
        if hw is None:
            alone.append([it])
            continue
        by_key.setdefault((hw, tuple(sorted(it.paths))), []).append(it)
    jobs = []
    for members in by_key.values():
        jobs.extend(members[i:i + size] for i in range(0, len(members), size))
    return jobs + alone


def _executor(workers: Optional[int], ray, threads: Optional[int], num_cpus: float, num_gpus: float):
    from doubledip.runs import executors

    if ray is not None and ray is not False:
        address = None if ray is True else str(ray)
        return executors.RayTasks(address, num_cpus=num_cpus, num_gpus=num_gpus, slots=workers)
    if workers is None or workers == 1:
        return executors.InProcess(threads)
    cores = os.cpu_count() or 1
    return executors.LocalWorkers(workers, threads or max(1, cores // workers))


def run_many(task: str, inputs, out_dir, config=None, *, workers: Optional[int] = None, ray=None,
             options: Optional[dict] = None, retry_failed: bool = False, overwrite: bool = False,
             group: Optional[int] = None, export: Optional[str] = None,
             checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, keep_partial: bool = False,
             num_cpus: float = 1, num_gpus: float = 0, progress: Optional[bool] = None) -> BatchReport:
    """Run ``task`` on every input, each into ``out_dir/<name>/``, recorded in
    ``out_dir/manifest.jsonl``; returns a :class:`BatchReport`.

    inputs: image files, folders (their images) and glob patterns (see ``doubledip.runs.inputs``
        for a task's other inputs: sidecar files ``<stem>.<input>.<ext>``).
    config: the SolverConfig of every input; each input runs with its seed, as a single run
        would (``doubledip TASK image --seed S`` gives the same output).
    workers: local worker processes (None or 1: this process); with ``ray``, the Ray tasks kept
        in flight (None: as many as the cluster fits).
    ray: None (no Ray), ``"local"`` / True (a local Ray instance, or the one ``ray.init`` started
        in this process) or a cluster address to join; each job a task of ``num_cpus`` CPUs and
        ``num_gpus`` GPUs (fractions allowed).
    options: the task's own options (``{"passes": 1}`` for dehaze), shared by all inputs.
    A rerun redoes nothing done (outputs untouched); failed inputs run again only with
    ``retry_failed``; interrupted ones continue from their checkpoint (every
    ``checkpoint_every`` iterations; 0: none). Done inputs of other settings are refused
    (ValueError) unless ``overwrite``, which redoes them (and lets outputs replace folders this
    batch did not write).
    group: same-size inputs fitted together in one batched run, up to this many (None: 1 on
        CPUs, where it does not pay (measured: benchmarks/experiments/runs_throughput.md), 4 on
        CUDA). In a group, image i gets seed + i, as in ``dd.batch``.
    export: also export each result (``"onnx"`` / ``"torchscript"``) to ``<name>/export``.
    keep_partial: Ctrl-C saves the running input's best result so far, marked partial.
    progress: one progress bar over the batch (None: the config's ``progress``).
    Usage errors (no inputs, bad options, another batch on ``out_dir``) raise ValueError /
    TypeError before anything runs. Ctrl-C raises :class:`BatchInterrupted` after the running
    jobs stopped; the manifest stays valid and no output is half-written.
    """
    from doubledip.engine.config import SolverConfig
    from doubledip.engine.tasks import registry
    from doubledip.engine.tasks.common import resolve

    spec = registry.get(task)
    config = resolve(config)
    options = _check_options(spec, dict(options or {}))
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1 or None, got {workers!r}")
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 1):
        raise ValueError(f"group must be an int >= 1 or None, got {group!r}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an int >= 0, got {checkpoint_every!r}")
    if export not in (None, "onnx", "torchscript"):
        raise ValueError(f"export must be None, 'onnx' or 'torchscript', got {export!r}")
    device = config.resolve_device()
    if group is None:
        group = 4 if device.type == "cuda" else 1
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUT {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    show = config.progress if progress is None else bool(progress)
    current = _manifest_config(spec, config, options, group)
    with _Lock(out):
        return _run(spec, inputs, out, config, current, options, workers, ray, retry_failed, overwrite,
                    group, export, checkpoint_every, keep_partial, num_cpus, num_gpus, show)


def _plan(spec, inputs, out: Path, current: dict, retry_failed: bool, overwrite: bool, report: BatchReport):
    """(items to run, keys whose folders may be replaced, keys to resume); records what needs
    no run in ``report``. Raises ValueError for done inputs of other settings (unless overwrite)."""
    records = mf.read(out / mf.MANIFEST)
    last = mf.latest(records)
    known = {k: r["name"] for k, r in last.items() if isinstance(r.get("name"), str)}
    every = collect_items(spec, inputs, known)
    todo, replace, resume, conflicts, adopted = [], set(), set(), [], []
    for it in every:
        rec = last.get(it.key)
        folder = out / it.name
        if rec is None:
            todo.append(it)
            if overwrite:
                replace.add(it.key)
            continue
        replace.add(it.key)  # this batch's own folder
        status = rec["status"]
        if status == "done" and outputs.is_result(folder):
            diff = mf.differences(rec.get("config"), current)
            if not diff:
                report.records[it.key] = rec
                report.skipped.append(it.key)
            elif overwrite:
                todo.append(it)
            else:
                conflicts.append(f"{it.name} ({'; '.join(diff)})")
        elif status == "failed" and not retry_failed:
            report.records[it.key] = rec
        elif status == "running" and _result_matches(folder, current):
            adopted.append(it)  # its output was complete; the manifest had not said so yet
        else:
            todo.append(it)
            if status == "running" and not mf.differences(rec.get("config"), current):
                resume.add(it.key)
    if conflicts:
        shown = ", ".join(conflicts[:3]) + (f", ... ({len(conflicts)} in all)" if len(conflicts) > 3 else "")
        raise ValueError(f"{str(out)!r} holds done inputs of other settings: {shown}; rerun with the "
                         "settings they were made with, choose another OUT, or pass --overwrite "
                         "(overwrite=True) to redo them with these")
    return every, todo, replace, resume, adopted


def _run(spec, inputs, out, config, current, options, workers, ray, retry_failed, overwrite, group,
         export, checkpoint_every, keep_partial, num_cpus, num_gpus, show) -> BatchReport:
    report = BatchReport(out_dir=out)
    every, todo, replace, resume, adopted = _plan(spec, inputs, out, current, retry_failed, overwrite, report)
    outputs.clean_stale(out)
    book = mf.Manifest(out)
    try:
        for it in adopted:
            meta = json.loads((out / it.name / "result.json").read_text())
            report.records[it.key] = book.append(_record(it, "done", current, seconds=meta.get("seconds"),
                                                         output=it.name))
        for it in todo:  # a checkpoint of other settings, or of an input not resumed, is stale
            if it.key not in resume:
                import shutil

                shutil.rmtree(outputs.checkpoint_dir(out, it.name), ignore_errors=True)
        threads = config.threads
        if ray is not None and ray is not False and threads is None:
            threads = max(1, int(num_cpus))
        run_config = config.replace(progress=False, callback=None, threads=threads)
        jobs = [Job(task=spec.name, items=g, config=run_config, options=options, out_dir=str(out), export=export,
                    replace=tuple(it.key for it in g if it.key in replace),
                    checkpoint_every=checkpoint_every if len(g) == 1 else 0,
                    resume=tuple(it.key for it in g if it.key in resume), keep_partial=keep_partial)
                for g in _groups(spec, todo, group)]
        if jobs:
            _drive(jobs, _executor(workers, ray, None if ray else threads, num_cpus, num_gpus), book, current,
                   report, show, spec.name)
        for it in every:  # inputs not run and not recorded before (none, normally)
            report.records.setdefault(it.key, {"input": it.key, "name": it.name, "status": "running"})
        return report
    finally:
        book.close()
        try:  # the checkpoints' folder, once no input has any left
            (out / outputs.CHECKPOINTS).rmdir()
        except OSError:
            pass


def _record(it: Item, status: str, config: dict, **fields) -> dict:
    rec = {"input": it.key, "name": it.name, "status": status, "output": None, "seconds": None,
           "error": None, "config": config, "inputs": it.paths}
    rec.update(fields)
    return rec


def _drive(jobs: list[Job], executor, book: mf.Manifest, current: dict, report: BatchReport,
           show: bool, task: str) -> None:
    """Run ``jobs`` on ``executor``, recording each state change; Ctrl-C: stop cleanly."""
    bar = None
    total = sum(len(j.items) for j in jobs)
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"batch {task}", unit="input", dynamic_ncols=True, file=sys.stderr)
    counts = {"done": 0, "failed": 0}
    queue = list(jobs)

    def finished(job: Job, outcome) -> None:
        if isinstance(outcome, KeyboardInterrupt):
            raise outcome
        if isinstance(outcome, BaseException):  # the executor lost the job (a worker died, Ray failed)
            outcome = [{"input": it.key, "name": it.name, "status": "failed", "output": None, "seconds": None,
                        "error": error_message(outcome)} for it in job.items]
        by_key = {it.key: it for it in job.items}
        for o in outcome:
            it = by_key[o["input"]]
            fields = {k: v for k, v in o.items() if k not in ("input", "name", "status")}
            rec = book.append(_record(it, o["status"], current, **fields))
            report.records[it.key] = rec
            report.ran.append(it.key)
            counts[o["status"]] += 1
            if o["status"] == "failed":
                line = f"doubledip batch: failed: {it.key}: {o['error']}"
                if bar is not None:
                    bar.write(line, file=sys.stderr)
                else:
                    print(line, file=sys.stderr)
        if bar is not None:
            bar.set_postfix(counts, refresh=False)  # shown by the update's line
            bar.update(len(outcome))

    try:
        try:
            while queue or executor.pending():
                while queue and executor.pending() < executor.slots:
                    job = queue.pop(0)
                    for it in job.items:
                        report.records[it.key] = book.append(_record(it, "running", current))
                    executor.submit(job)
                finished(*executor.next_done())
        except KeyboardInterrupt:
            _stop(executor, finished)
            raise BatchInterrupted(report) from None
    finally:
        executor.close()
        if bar is not None:
            bar.close()
        outputs.clean_stale(Path(book.path).parent)


def _stop(executor, finished) -> None:
    """After Ctrl-C: ask the running jobs to stop and record those that still finish."""
    try:
        executor.interrupt()
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        while executor.pending() and time.monotonic() < deadline:
            job, outcome = executor.next_done()
            if not isinstance(outcome, BaseException):
                finished(job, outcome)
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        pass
