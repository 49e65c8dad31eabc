"""Checkpoints of one run: everything needed to continue it exactly, written every K iterations.

``SolverConfig(checkpoint_dir=DIR, checkpoint_every=K, resume=False)``: each
``solver.run_problem`` call of a task (a dehazing pass, a watermark repeat) keeps one file in
DIR, ``run-<first iteration>[-<pass/repeat>].pt``, rewritten every K iterations of the call and
once at its end. It holds the problem's whole state (its nets' weights and buffers, the noise
inputs, the trackers and averages through their ``state_dict``, every other attribute, each
per-image ``torch.Generator``; the input perturbation is stateless: seeded by (seed, keys)), the
Adam state (step counts, both moments), the random states of Python, numpy and torch, the
progress history, the stopping rule's state, and the stage and iteration. Files are written to a
temporary name and renamed (``os.replace``): a kill leaves the previous checkpoint or the new
one, never half of one.

``resume=True`` continues from the files in DIR: calls that had finished are restored without
running an iteration, the interrupted one continues at its next iteration, and the result equals
an uninterrupted run's (CPU, same seed and threads: bit for bit; tested per task). With no
checkpoint there yet, the run starts from the beginning. A checkpoint written for another task,
image, seed or setting is refused (ValueError saying which).

Ctrl-C during a checkpointed run (or one with ``keep_partial``) is deferred to the end of the
iteration under way: the checkpoint is written, then KeyboardInterrupt is raised, or, with
``keep_partial``, the run finishes at once (the last iteration of each remaining stage, pass and
repeat runs, so the task can build its result from what it has: the best result so far) and
:func:`interrupted` says so. A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

VERSION = 1
# the solver settings a checkpoint must share with the run that resumes it
CONFIG_KEYS = ("iterations", "repeats", "seed", "mode", "channels_last", "early_stop")

_STOP = threading.Event()  # Ctrl-C (or request_stop) seen, not yet acted on
_STATE = {"reporter": None, "partial": False, "resumed_at": None}


def request_stop() -> None:
    """What Ctrl-C does in a checkpointed run: stop at the end of the iteration under way."""
    _STOP.set()


def reset() -> None:
    """Forget the last run's interruption and resume (a caller starting a task run it will ask
    :func:`interrupted` and :func:`resumed_at` about)."""
    _STOP.clear()
    _STATE.update(reporter=None, partial=False, resumed_at=None)


def interrupted() -> bool:
    """Whether the last task run stopped early on Ctrl-C with ``keep_partial`` (its result is the
    best so far, not the final one)."""
    return bool(_STATE["partial"])


def resumed_at() -> Optional[int]:
    """The iteration the last task run continued from (None: it started from the beginning)."""
    return _STATE["resumed_at"]


# ---- state of arbitrary problem attributes ------------------------------------------------

def _class_name(value) -> str:
    return f"{type(value).__module__}:{type(value).__qualname__}"


def _resolve_class(name: str):
    import importlib

    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _pack(value: Any, where: str, seen: Optional[dict] = None) -> Any:
    """A checkpointable form of ``value``: tensors stay tensors (torch.save keeps their layout
    and the storage views share); modules become state dicts, generators their states, trackers
    their ``state_dict()``, other objects their attributes. An object met a second time (a
    tracker's reference to the problem's nets) is saved as a reference to the first place."""
    seen = {} if seen is None else seen
    if isinstance(value, torch.Tensor):
        return {"__tensor__": value.detach()}
    if value is None or isinstance(value, (bool, int, float, str, torch.device, torch.dtype)):
        return value
    if isinstance(value, dict):
        return {"__dict__": [(k, _pack(v, f"{where}[{k!r}]", seen)) for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__" if isinstance(value, list) else "__tuple__":
                [_pack(v, f"{where}[{i}]", seen) for i, v in enumerate(value)]}
    if id(value) in seen:
        return {"__ref__": seen[id(value)][0]}
    seen[id(value)] = (where, value)  # kept alive, so ids stay unique while packing
    if isinstance(value, nn.Module):
        return {"__module__": {k: v.detach() for k, v in value.state_dict().items()}}
    if isinstance(value, torch.Generator):
        return {"__generator__": value.get_state()}
    if callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None)):
        return {"__stateful__": _class_name(value), "state": _pack(value.state_dict(), where, seen)}
    if hasattr(value, "__dict__") and not callable(value):
        return {"__object__": _class_name(value),
                "attrs": {k: _pack(v, f"{where}.{k}", seen) for k, v in vars(value).items()}}
    raise TypeError(f"checkpoint: cannot save {where} (a {type(value).__name__}); expected tensors, "
                    "modules, generators, containers and plain values")


def _unpack(current: Any, packed: Any, where: str, device, restored: dict) -> Any:
    """The value ``packed`` restores, loaded into ``current`` (the fresh run's) where that is a
    module, generator or object, so references to it stay valid; an object the fresh run does
    not have yet is built. Tensors go to ``current``'s device (else ``device``, the problem's).
    ``restored``: place -> object, for references."""
    if not isinstance(packed, dict):
        return packed
    if "__tensor__" in packed:
        t = packed["__tensor__"]
        return t.to(current.device if isinstance(current, torch.Tensor) else device)
    if "__ref__" in packed:
        if packed["__ref__"] not in restored:
            raise ValueError(f"checkpoint: {where} refers to {packed['__ref__']}, which it does not hold")
        return restored[packed["__ref__"]]
    if "__dict__" in packed:
        base = current if isinstance(current, dict) else {}
        return {k: _unpack(base.get(k), v, f"{where}[{k!r}]", device, restored) for k, v in packed["__dict__"]}
    for kind, make in (("__list__", list), ("__tuple__", tuple)):
        if kind in packed:
            items = packed[kind]
            base = current if isinstance(current, (list, tuple)) and len(current) == len(items) else [None] * len(items)
            return make(_unpack(c, v, f"{where}[{i}]", device, restored)
                        for i, (c, v) in enumerate(zip(base, items)))
    if "__module__" in packed:
        if not isinstance(current, nn.Module):
            raise ValueError(f"checkpoint: {where} is a module in the checkpoint, a {type(current).__name__} here")
        try:
            current.load_state_dict(packed["__module__"])
        except RuntimeError as exc:
            raise ValueError(f"checkpoint: {where}: the checkpoint's nets do not fit this run's: {exc}") from None
        restored[where] = current
        return current
    if "__generator__" in packed:
        gen = current if isinstance(current, torch.Generator) else torch.Generator()
        gen.set_state(packed["__generator__"])
        restored[where] = gen
        return gen
    if "__stateful__" in packed or "__object__" in packed:
        name = packed.get("__stateful__") or packed["__object__"]
        built = current is None
        if built:  # made during the run (a tracker set at its first update): built bare
            current = _resolve_class(name).__new__(_resolve_class(name))
        elif _class_name(current) != name:
            raise ValueError(f"checkpoint: {where} is a {name} in the checkpoint, a {_class_name(current)} here")
        restored[where] = current
        if "__stateful__" in packed:
            state = _unpack({} if built else current.state_dict(), packed["state"], where, device, restored)
            if built:
                vars(current).update(state)
            else:
                current.load_state_dict(state)
        else:
            attrs = packed["attrs"]
            missing = sorted(set(vars(current)) - set(attrs))
            if missing:
                raise ValueError(f"checkpoint: {where} has attributes {missing} here that the checkpoint lacks")
            for k, v in attrs.items():
                setattr(current, k, _unpack(getattr(current, k, None), v, f"{where}.{k}", device, restored))
        return current
    raise ValueError(f"checkpoint: {where}: unreadable entry")


def problem_state(problem) -> dict:
    """Every attribute of ``problem``, checkpointable."""
    seen: dict = {}
    return {k: _pack(v, k, seen) for k, v in vars(problem).items()}


def load_problem_state(problem, state: dict) -> None:
    """Set ``problem``'s attributes from :func:`problem_state` (nets loaded in place)."""
    missing = sorted(set(vars(problem)) - set(state))
    if missing:  # a run only adds attributes (some are set during the run): these it never had
        raise ValueError(f"checkpoint: the problem has attributes {missing} that the checkpoint lacks: "
                         "it was written for another task or version")
    device = getattr(problem, "device", None) or next(iter(problem.nets.parameters())).device
    restored: dict = {}
    for k, v in state.items():
        setattr(problem, k, _unpack(getattr(problem, k, None), v, k, device, restored))


def _digest(value: Any, h) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        for k in value:
            h.update(repr(k).encode())
            _digest(value[k], h)
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _digest(v, h)
        h.update(b"]")
    elif not isinstance(value, torch.device):  # the device is not the run's identity
        h.update(repr(value).encode())


def fingerprint(problem, config, lr: float) -> dict:
    """What identifies a run's call: the problem's kind and stages, the settings, and a digest of
    its freshly built state (images, noise inputs and initial weights: the image and the seed)."""
    h = hashlib.sha256()
    state = problem_state(problem)
    _digest({k: v for k, v in state.items() if k != "stage_iterations"}, h)
    return {"problem": f"{type(problem).__module__}.{type(problem).__qualname__}",
            "stages": [int(t) for t in problem.stage_iterations], "lr": float(lr),
            "config": {k: getattr(config, k) for k in CONFIG_KEYS}, "data": h.hexdigest()}


def _refusal(path: Path, saved: dict, fresh: dict) -> Optional[str]:
    """Why the checkpoint ``saved`` cannot continue the run ``fresh`` (None: it can)."""
    if saved.get("problem") != fresh["problem"]:
        return f"it was written for another task ({saved.get('problem')}, this run is {fresh['problem']})"
    diff = [f"{k} {saved['config'].get(k)!r} there, {v!r} here" for k, v in fresh["config"].items()
            if saved.get("config", {}).get(k) != v]
    if saved.get("stages") != fresh["stages"]:
        diff.append(f"stage iterations {saved.get('stages')} there, {fresh['stages']} here")
    if saved.get("lr") != fresh["lr"]:
        diff.append(f"lr {saved.get('lr')} there, {fresh['lr']} here")
    if diff:
        return "it was written with other settings (" + "; ".join(diff) + ")"
    if saved.get("data") != fresh["data"]:
        return "it was written for another image or seed (the problem's images, noise or initial weights differ)"
    return None


# ---- one run_problem call ------------------------------------------------------------------

def _call_name(first_iteration: int, extra: Optional[dict]) -> str:
    parts = [f"run-{int(first_iteration)}"] + [f"{k}{v}" for k, v in sorted((extra or {}).items())]
    return "-".join(str(p).replace("/", "_") for p in parts) + ".pt"


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _adam_state(optimizer) -> dict:
    return {"steps": list(optimizer.steps), "lr": optimizer.lr,
            "exp_avg": [None if m is None else m.detach() for m in optimizer.exp_avg],
            "exp_avg_sq": [None if v is None else v.detach() for v in optimizer.exp_avg_sq]}


def _load_adam(optimizer, state: dict, where: Path) -> None:
    if len(state["steps"]) != len(optimizer.params):
        raise ValueError(f"checkpoint {str(where)!r}: its optimiser has {len(state['steps'])} parameters, "
                         f"this run's {len(optimizer.params)}")
    optimizer.steps = list(state["steps"])
    optimizer.lr = state["lr"]
    for name in ("exp_avg", "exp_avg_sq"):
        restored = []
        for p, saved in zip(optimizer.params, state[name]):
            if saved is None:
                restored.append(None)
                continue
            if saved.shape != p.shape:
                raise ValueError(f"checkpoint {str(where)!r}: optimiser state of shape {tuple(saved.shape)} "
                                 f"for a parameter of shape {tuple(p.shape)}")
            # the parameter's own layout (the fused step needs it)
            restored.append(torch.empty_like(p, memory_format=torch.preserve_format).copy_(saved))
        setattr(optimizer, name, restored)


def save_file(path: Path, payload: dict) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_file(path: Path) -> dict:
    try:
        # the random states must stay on the CPU; tensors move to the run's device when restored.
        # Not weights_only: numpy's and Python's RNG states are pickled (a checkpoint is the
        # user's own file, like any result they load)
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear error
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
                         "delete it to start over") from None
    if not isinstance(payload, dict) or payload.get("doubledip_checkpoint") != VERSION:
        raise ValueError(f"{str(path)!r} is not a doubledip checkpoint (version {VERSION})")
    return payload


class Session:
    """The checkpoints of one ``run_problem`` call; the solver calls :meth:`enter_stage`,
    :meth:`skip`, :meth:`after_iteration` and :meth:`finish` (see the module docstring)."""

    def __init__(self, problem, config, lr: float, reporter, extra: Optional[dict], first_iteration: int,
                 stopper, ctx):
        self.problem, self.config, self.reporter, self.stopper, self.ctx = problem, config, reporter, stopper, ctx
        self.first_iteration = first_iteration
        self.every = int(config.checkpoint_every or 0)
        self.path = Path(config.checkpoint_dir) / _call_name(first_iteration, extra) if config.checkpoint_dir else None
        # a new task run (a new reporter) starts with nothing interrupted; its later calls
        # (passes, repeats) finish at once when an earlier one was cut short with keep_partial
        if _STATE["reporter"] is not reporter:
            _STATE.update(reporter=reporter, partial=False, resumed_at=None)
            _STOP.clear()
        self.fast_forward = bool(_STATE["partial"])
        self.saved = None
        self.fresh = fingerprint(problem, config, lr) if self.path is not None else None
        if self.path is not None and config.resume and self.path.exists():
            self.saved = load_file(self.path)
            why = _refusal(self.path, self.saved["fingerprint"], self.fresh)
            if why:
                raise ValueError(f"checkpoint {str(self.path)!r} cannot continue this run: {why}; delete "
                                 "it (or use another checkpoint_dir, or resume=False) to start over")
        self._previous_handler = None

    # the run's Ctrl-C handler, installed for the call (main thread only)
    def __enter__(self) -> "Session":
        if threading.current_thread() is threading.main_thread():
            def deferred(signum, frame):
                if _STOP.is_set() or _STATE["partial"]:  # a second Ctrl-C: at once
                    raise KeyboardInterrupt
                _STOP.set()

            self._previous_handler = signal.signal(signal.SIGINT, deferred)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def enter_stage(self, stage: int, optimizer) -> tuple[bool, int, int]:
        """(skip the stage, first iteration, iterations since the last log) for ``stage``, whose
        nets and optimiser are built; restores the checkpoint in the stage it was written in."""
        if self.saved is None:
            return False, 0, 0
        at = self.saved["stage"]
        if stage < at:
            return True, 0, 0
        if stage > at:  # pragma: no cover - a finished call's stages are all skipped
            return False, 0, 0
        self._restore(optimizer)
        k = int(self.saved["k"])
        since_log = int(self.saved["since_log"])
        _STATE["resumed_at"] = self.first_iteration + sum(self.problem.stage_iterations[:stage]) + k
        self.saved = None
        return False, k, since_log

    def skip(self, k: int, T: int) -> bool:
        """Whether to skip iteration ``k`` of a stage of ``T``: after Ctrl-C with keep_partial,
        all but each stage's last."""
        return self.fast_forward and k < T - 1

    def after_iteration(self, stage: int, k: int, optimizer, since_log: int, iteration: int) -> None:
        """At the end of iteration ``k`` of ``stage`` (``iteration``: its number in the run):
        checkpoint every K iterations; act on Ctrl-C."""
        if self.fast_forward:
            return
        if _STOP.is_set():
            _STOP.clear()
            if self.path is not None:
                self._save(stage, k + 1, optimizer, since_log)
            if self.config.keep_partial:
                self.fast_forward = True
                _STATE["partial"] = True
                return
            raise KeyboardInterrupt
        if self.path is not None and self.every and (iteration + 1) % self.every == 0:
            self._save(stage, k + 1, optimizer, since_log)

    def finish(self, optimizer) -> None:
        """After the call's last stage: a finished call restored (all its stages skipped), or
        its final checkpoint written."""
        if self.path is None or self.fast_forward:
            return
        if self.saved is not None:  # the checkpoint of a finished call: its end state
            self._restore(optimizer)
            _STATE["resumed_at"] = self.first_iteration + sum(self.problem.stage_iterations)
            self.saved = None
            return
        self._save(len(self.problem.stage_iterations), 0, None, 0)  # no Adam: nothing runs after
        if _STOP.is_set():  # Ctrl-C during the last iteration's bookkeeping: honoured now
            _STOP.clear()
            raise KeyboardInterrupt

    def _save(self, stage: int, k: int, optimizer, since_log: int) -> None:
        save_file(self.path, {
            "doubledip_checkpoint": VERSION, "fingerprint": self.fresh, "stage": stage, "k": k,
            "since_log": since_log, "problem": problem_state(self.problem),
            "adam": None if optimizer is None else _adam_state(optimizer), "rng": _rng_state(),
            "history": list(self.reporter.history), "done": self.reporter.done,
            "stopper": None if self.stopper is None else dict(vars(self.stopper)),
            "stopped_early_at": self.ctx.stopped_early_at, "stop_reason": self.ctx.stop_reason})

    def _restore(self, optimizer) -> None:
        s = self.saved
        load_problem_state(self.problem, s["problem"])
        if s["adam"] is not None and optimizer is not None and s["stage"] < len(self.problem.stage_iterations):
            _load_adam(optimizer, s["adam"], self.path)
        _set_rng_state(s["rng"])
        self.reporter.history[:] = s["history"]
        self.reporter.done = s["done"]
        bar = getattr(self.reporter, "bar", None)
        if bar is not None:
            bar.n = min(s["done"], self.reporter.total)
            bar.refresh()
        if self.stopper is not None and s["stopper"] is not None:
            vars(self.stopper).update(s["stopper"])
        self.ctx.stopped_early_at = s["stopped_early_at"]
        self.ctx.stop_reason = s.get("stop_reason")


def session(problem, config, lr: float, reporter, extra, first_iteration: int, stopper, ctx) -> Optional[Session]:
    """A :class:`Session` when ``config`` asks for checkpoints or ``keep_partial``, else None."""
    if not getattr(config, "checkpoint_dir", None) and not getattr(config, "keep_partial", False):
        return None
    return Session(problem, config, lr, reporter, extra, first_iteration, stopper, ctx)
