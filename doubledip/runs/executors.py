"""Where a batch's jobs run: in this process, in local worker processes, or as Ray tasks.

One contract for all three (:class:`Executor`): ``slots`` jobs may be in flight; ``submit(job)``
starts one; ``next_done()`` blocks until one finishes and returns ``(job, outcomes)``, or
``(job, exc)`` where it raised (KeyboardInterrupt: it was interrupted); ``interrupt()`` asks
every running job to stop (each writes its checkpoint and leaves no half-written output);
``close()`` releases the workers. Every executor runs :func:`doubledip.runs.jobs.run_job`, so
outputs and outcomes are the same whichever runs them.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Optional

from doubledip.runs.jobs import Job, run_job, worker_init, worker_run


class Executor:
    """The contract (see the module docstring)."""

    slots: int = 1

    def submit(self, job: Job) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def next_done(self) -> tuple[Job, object]:  # pragma: no cover - interface
        raise NotImplementedError

    def pending(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def interrupt(self) -> None:
        """Ask running jobs to stop."""

    def close(self) -> None:
        """Release workers (running jobs are abandoned)."""


class InProcess(Executor):
    """Jobs run one at a time in this process, when :meth:`next_done` is called; Ctrl-C raises
    KeyboardInterrupt out of it."""

    slots = 1

    def __init__(self, threads: Optional[int] = None):
        self.queue: list[Job] = []
        self.threads = threads

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def pending(self) -> int:
        return len(self.queue)

    def next_done(self):
        job = self.queue.pop(0)
        if self.threads:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        try:
            return job, run_job(job)
        finally:
            if self.threads:
                torch.set_num_threads(previous)


class LocalWorkers(Executor):
    """``workers`` local processes (spawned: each imports torch afresh, so no OpenMP state is
    forked), ``threads`` torch threads each."""

    def __init__(self, workers: int, threads: Optional[int] = None):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.slots = int(workers)
        self.pool = ProcessPoolExecutor(max_workers=self.slots, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=worker_init, initargs=(threads,))
        self.futures: dict = {}

    def submit(self, job: Job) -> None:
        self.futures[self.pool.submit(worker_run, job)] = job

    def pending(self) -> int:
        return len(self.futures)

    def next_done(self):
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        future = next(iter(done))
        job = self.futures.pop(future)
        try:
            return job, future.result()
        except BaseException as exc:  # noqa: BLE001 - handed to the driver (KeyboardInterrupt included)
            return job, exc

    def interrupt(self) -> None:
        """SIGINT to every worker (a terminal's Ctrl-C reaches them already; a signal sent to this
        process alone does not). Idle workers ignore it."""
        time.sleep(0.2)  # the terminal's own SIGINT first: one signal per worker where possible
        for pid in list(getattr(self.pool, "_processes", {}) or {}):
            if any(not f.done() for f in self.futures):
                try:
                    os.kill(pid, signal.SIGINT)
                except (ProcessLookupError, PermissionError):
                    pass

    def close(self) -> None:
        for f in self.futures:
            f.cancel()
        procs = list((getattr(self.pool, "_processes", {}) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


def _ray_job(job: Job) -> list[dict]:
    """A Ray task's body: the job, Ctrl-C (``ray.cancel``) raising KeyboardInterrupt in it."""
    return worker_run(job)


class RayTasks(Executor):
    """Each job a Ray task with ``num_cpus`` / ``num_gpus`` (fractions allowed: several small fits
    share a GPU). ``address``: None or ``"local"`` starts a local Ray instance (``num_cpus``:
    its CPU count, default the machine's); another value joins that cluster (``"auto"``: the one
    this machine belongs to). An instance already started in this process (``ray.init``) is
    used as it is. ``slots``: the jobs kept in flight (default: as many as the cluster's CPUs
    and GPUs allow at these resources)."""

    def __init__(self, address: Optional[str] = None, num_cpus: float = 1, num_gpus: float = 0,
                 slots: Optional[int] = None, local_cpus: Optional[int] = None):
        try:
            import ray
        except ImportError:
            raise ValueError("ray is not installed: pip install 'doubledip[ray]' (or pip install ray)") from None
        if not num_cpus > 0 or num_gpus < 0:
            raise ValueError(f"num_cpus must be > 0 and num_gpus >= 0, got {num_cpus} and {num_gpus}")
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            if address in (None, "", "local"):
                ray.init(num_cpus=local_cpus, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False)
            self.started = True
        resources = ray.cluster_resources()
        fits = [int(resources.get("CPU", 1) // num_cpus)]
        if num_gpus:
            if resources.get("GPU", 0) < num_gpus:
                raise ValueError(f"num_gpus={num_gpus} asked for, but the Ray cluster has "
                                 f"{resources.get('GPU', 0)} GPUs")
            fits.append(int(resources["GPU"] // num_gpus))
        self.slots = max(1, int(slots) if slots else min(fits))
        self.remote = ray.remote(_ray_job).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)
        self.refs: dict = {}

    def submit(self, job: Job) -> None:
        self.refs[self.remote.remote(job)] = job

    def pending(self) -> int:
        return len(self.refs)

    def next_done(self):
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        ref = ready[0]
        job = self.refs.pop(ref)
        try:
            return job, self.ray.get(ref)
        except self.ray.exceptions.TaskCancelledError:
            return job, KeyboardInterrupt()
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            return job, cause if isinstance(cause, BaseException) else exc
        except BaseException as exc:  # noqa: BLE001 - a lost worker, a cluster error: handed on
            return job, exc

    def interrupt(self) -> None:
        """Cancel the running tasks (KeyboardInterrupt in each: it checkpoints and stops)."""
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=False)
            except Exception:  # noqa: BLE001 - already finished
                pass

    def close(self) -> None:
        for ref in list(self.refs):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        self.refs.clear()
        if self.started:
            self.ray.shutdown()
