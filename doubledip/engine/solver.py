"""The optimisation loop shared by every task: stages, Adam, logging, progress, on-device tracking.

A task describes itself as a :class:`Problem`: its nets, its stages and one ``step`` per iteration
that returns the loss and what to track. The loop never reads a device value back except every
``log_every`` iterations (history, callback, progress bar).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from doubledip.engine import checkpoint
from doubledip.engine.adam import Adam
from doubledip.engine.config import SolverConfig
from doubledip.engine.nets.unet import SkipUNet

# Adam's square root: "ieee", the single-pass fused CPU step (engine.adam)
ADAM_SQRT = "ieee"

MASK64 = (1 << 64) - 1


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys (splitmix64 over the sequence)."""
    x = 0x9E3779B97F4A7C15
    for k in keys:
        x = (x ^ (int(k) & MASK64)) & MASK64
        x = (x + 0x9E3779B97F4A7C15) & MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        x = z ^ (z >> 31)
    return x & 0x7FFF_FFFF_FFFF_FFFF


def split_iterations(total: Optional[int], defaults: tuple[int, ...]) -> tuple[int, ...]:
    """Split ``total`` over stages in the proportions of ``defaults`` (None: the defaults).
    Every stage gets at least one iteration; the parts add up to ``total``."""
    if total is None:
        return tuple(defaults)
    if total < len(defaults):
        raise ValueError(f"iterations must be at least {len(defaults)} for this task "
                         f"(one per stage), got {total}")
    whole = sum(defaults)
    parts = [max(1, int(total * d / whole)) for d in defaults]
    parts[-1] = total - sum(parts[:-1])
    while parts[-1] < 1:  # can only happen for tiny totals
        i = max(range(len(parts) - 1), key=lambda j: parts[j])
        parts[i] -= 1
        parts[-1] += 1
    return tuple(parts)


@dataclass
class Step:
    """What one iteration of a task returns.

    loss: 0-dim tensor to minimise (summed over the problem's images).
    psnr: (N,) reconstruction PSNR per image, on the un-augmented image, or None when not measured.
    terms: named 0-dim tensors for the history (optional).
    """

    loss: torch.Tensor
    psnr: Optional[torch.Tensor] = None
    terms: dict = field(default_factory=dict)


class Stateful:
    """``state_dict()`` / ``load_state_dict(state)`` for the solver's on-device trackers: their
    attributes as they are, for a checkpoint (``engine.checkpoint`` saves the tensors); no effect
    on what they compute."""

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(vars(self)):
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected the attributes "
                             f"{sorted(vars(self))}, got {sorted(state)}")
        vars(self).update(state)


class BestTracker(Stateful):
    """Keeps, per problem, the outputs with the highest PSNR seen, on the device (no host sync).

    psnr: (N,) per problem; outputs: tensors with a leading N. ``strict``: a new PSNR must exceed
    the best (True) or may equal it (False) to replace it. ``took``: (N,) bool, the problems
    whose outputs the last update replaced (all at the first), for a :class:`Snapshot` of what
    made them.
    """

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.psnr: Optional[torch.Tensor] = None
        self.outputs: Optional[dict] = None
        self.took: Optional[torch.Tensor] = None

    def update(self, psnr: torch.Tensor, outputs: dict) -> None:
        psnr = psnr.detach()
        outputs = {k: v.detach() for k, v in outputs.items()}
        if self.psnr is None:
            self.psnr, self.outputs = psnr.clone(), {k: v.clone() for k, v in outputs.items()}
            self.took = torch.ones_like(psnr, dtype=torch.bool)
            return
        # a NaN PSNR compares false: it never replaces the best
        better = psnr > self.psnr if self.strict else psnr >= self.psnr
        self.outputs = {k: torch.where(better.view(-1, *[1] * (v.dim() - 1)), v, self.outputs[k])
                        for k, v in outputs.items()}
        self.psnr = torch.where(better, psnr, self.psnr)
        self.took = better


def keep_where(take: Optional[torch.Tensor], new: torch.Tensor, kept: Optional[torch.Tensor]) -> torch.Tensor:
    """Per problem, ``new``'s values where ``take`` ((B,) bool) is true and ``kept``'s elsewhere,
    as a new tensor, on the device (no host sync).

    new, kept: one shape, the B problems' blocks stacked along dim 0 (B * n rows, problem b's the
    b-th n: how grouped generators stack, see :class:`Snapshot`); a 0-dim tensor is shared by
    all problems and taken when any is. ``take`` or ``kept`` None: a copy of ``new``.
    """
    new = new.detach()
    if take is None or kept is None:
        return new.clone()
    if new.dim() == 0:
        return torch.where(take.any(), new, kept)
    B = take.shape[0]
    if new.shape[0] % B or new.shape != kept.shape:
        raise ValueError(f"keep_where: expected two tensors of one shape with {B} blocks along dim 0, "
                         f"got {tuple(new.shape)} and {tuple(kept.shape)}")
    # dim 0 split into (B, n): a view whatever the memory format (channels-last keeps dim 0 outermost)
    mask = take.view(B, *[1] * new.dim())
    return torch.where(mask, new.unflatten(0, (B, -1)), kept.unflatten(0, (B, -1))).flatten(0, 1)


def _copy_blocks(rows: list[int], batch: int, new: torch.Tensor, kept: torch.Tensor) -> None:
    """``kept``'s blocks ``rows`` (of ``batch`` along dim 0, as in :func:`keep_where`) := ``new``'s,
    in place; a 0-dim tensor (shared) is copied whole."""
    if new.dim() == 0 or len(rows) == batch:
        kept.copy_(new)
        return
    kept_blocks, new_blocks = kept.unflatten(0, (batch, -1)), new.unflatten(0, (batch, -1))
    for b in rows:
        kept_blocks[b].copy_(new_blocks[b])


class Snapshot(Stateful):
    """What made a problem's kept outputs, per problem, on the device (no host sync): the nets'
    weights, the inputs they ran on where those are not the fixed ones, and the augmentation.

    nets: the problem's ModuleDict. Every parameter and buffer of dim >= 1 holds the B problems'
        blocks along dim 0 (``ImageProblem.build`` stacks each group's generators problem-major,
        copy ``b * members + m``, and a grouped conv's weight is its copies' stacked along dim
        0; pair's scalar weights are B x 2); 0-dim buffers (BatchNorm's batch count) are shared.
    batch: B.

    ``weights``: state-dict name -> tensor, the ``nets``' parameters and buffers (BatchNorm's
    running statistics too, which the method never reads). ``inputs``: name -> B x C x Hp x Wp
    in the image's orientation (``unaugment``ed; perturbed ones as perturbed). ``augmentation``:
    (B,) long, the ``engine.inputs.augment`` index the nets' inputs went through (0: none).
    Call :meth:`update` in the step whose outputs are kept: after its forward pass and before the
    solver's update of the weights (the outputs are those of the weights before the update).
    Memory: one more copy of the weights (Adam keeps two).
    """

    def __init__(self, nets: nn.Module, batch: int):
        self.nets, self.batch = nets, int(batch)
        self.weights: Optional[dict] = None
        self.inputs: dict = {}
        self.augmentation: Optional[torch.Tensor] = None

    def update(self, take: Optional[torch.Tensor] = None, inputs: Optional[dict] = None,
               augmentation: int = 0) -> None:
        """Keep the nets' current weights and ``inputs`` (name -> B x C x Hp x Wp, the same names
        at every update) for the problems where ``take`` ((B,) bool; None: all) is true; the
        first update keeps every problem's.

        Cost: on CUDA one ``torch.where`` over the weights (no host sync); on the CPU, where
        reading ``take`` back costs no sync, a copy of the improved problems' blocks only (and
        nothing when none improved): a third of the ``where``'s time, which allocates and
        broadcasts (measured on pair's four generators: 2.3 ms against 7.5 ms).
        """
        inputs = dict(inputs or {})
        first = self.weights is None
        device = next(self.nets.parameters()).device
        rows = None
        if not first and take is not None and device.type == "cpu":
            rows = take.nonzero().flatten().tolist()
            if not rows:
                return
        state = self.nets.state_dict(keep_vars=True)
        if not first and (set(state) != set(self.weights) or set(inputs) != set(self.inputs)):
            raise ValueError(f"Snapshot.update: expected the nets and inputs of the first update "
                             f"(inputs {sorted(self.inputs)}), got inputs {sorted(inputs)}"
                             + ("" if set(state) == set(self.weights) else " and nets that changed"))
        index = torch.full((self.batch,), int(augmentation), dtype=torch.long, device=device)
        if first or take is None:
            self.weights = {k: v.detach().clone() for k, v in state.items()}
            self.inputs = {k: v.detach().clone() for k, v in inputs.items()}
            self.augmentation = index
        elif rows is not None:
            for k, v in state.items():
                _copy_blocks(rows, self.batch, v.detach(), self.weights[k])
            for k, v in inputs.items():
                _copy_blocks(rows, self.batch, v.detach(), self.inputs[k])
            _copy_blocks(rows, self.batch, index, self.augmentation)
        else:
            self.weights = {k: keep_where(take, v, self.weights[k]) for k, v in state.items()}
            self.inputs = {k: keep_where(take, v, self.inputs[k]) for k, v in inputs.items()}
            self.augmentation = keep_where(take, index, self.augmentation)

    @classmethod
    def choose(cls, take: torch.Tensor, first: "Snapshot", other: "Snapshot") -> "Snapshot":
        """Per problem, ``first``'s where ``take`` ((B,) bool) is true, else ``other``'s."""
        if first.weights is None or other.weights is None:
            raise ValueError("Snapshot.choose: both snapshots must have been updated")
        out = cls(first.nets, first.batch)
        out.weights = {k: keep_where(take, v, other.weights[k]) for k, v in first.weights.items()}
        out.inputs = {k: keep_where(take, v, other.inputs[k]) for k, v in first.inputs.items()}
        out.augmentation = keep_where(take, first.augmentation, other.augmentation)
        return out


class OutputAverage(Stateful):
    """An exponential moving average of outputs, per problem, on the device (no host sync).

    outputs: tensors with a leading N. After each update ``avg = decay * avg + (1 - decay) * new``;
    the first update sets the average to the outputs themselves.
    """

    def __init__(self, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.outputs: Optional[dict] = None

    def update(self, outputs: dict, frozen: Optional[torch.Tensor] = None) -> None:
        """Fold ``outputs`` in; ``frozen``: (N,) bool, problems whose average stays as it is (a
        problem of a batch that has stopped)."""
        if self.outputs is None:
            self.outputs = {k: v.detach().clone() for k, v in outputs.items()}
            return
        for k, v in outputs.items():
            if frozen is None:
                self.outputs[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                moved = self.outputs[k] * self.decay + v.detach() * (1.0 - self.decay)
                self.outputs[k] = torch.where(frozen.view(-1, *[1] * (v.dim() - 1)), self.outputs[k], moved)


class SettleRule(Stateful):
    """A stopping rule per problem of a batch: have its outputs stopped changing?

    Each :meth:`check` (after ``done`` iterations) appends the mean absolute change of the
    outputs since the last check, over ``scale`` ((B,): the input's mean intensity), to a window
    of the last ``window``; a problem has settled once the window's mean is below ``below``,
    checked from iteration ``start`` on. On the device: no host read.
    """

    def __init__(self, scale: torch.Tensor, window: int, below: float, start: int):
        self.scale, self.window, self.below, self.start = scale, window, below, start
        self.last: Optional[dict] = None
        self.changes = torch.full((scale.shape[0], window), math.inf, device=scale.device)
        self.settled = torch.zeros(scale.shape[0], dtype=torch.bool, device=scale.device)

    def check(self, now: dict, done: int) -> torch.Tensor:
        """now: outputs with a leading B; returns ``settled``, (B,) bool."""
        if self.last is not None:
            change = sum((now[n] - self.last[n]).abs().mean(dim=tuple(range(1, now[n].dim()))) for n in now) / len(now)
            self.changes = torch.cat([self.changes[:, 1:], (change / self.scale)[:, None]], dim=1)
            if done >= self.start:
                self.settled = self.settled | (self.changes.mean(dim=1) < self.below)
        self.last = {n: v.detach().clone() for n, v in now.items()}
        return self.settled

    @property
    def signal(self) -> torch.Tensor:
        """(B,): the windowed change the rule compares with ``below`` (inf until the window is full)."""
        return self.changes.mean(dim=1)


@dataclass
class RunContext:
    """What the solver tells a problem about the run, passed explicitly to every ``step``.

    autocast_dtype: the generators' precision under autocast (None: float32; fast mode on CUDA:
        bf16). compiled: the ``torch.compile``d groups (``engine.compiled.CompiledGenerators``,
        group -> callable) or None for the eager nets. stopped_early_at: the iteration at which
        the stopping rule (or the problem's own stop) ended the run (None: it ran to its cap), and
        stop_reason why (a short phrase, None likewise); written by the solver only.
    A problem never keeps the context: the solver owns it and returns it from ``run_problem``.
    """

    autocast_dtype: Optional[torch.dtype] = None
    compiled: Any = None
    stopped_early_at: Optional[int] = None
    stop_reason: Optional[str] = None


class Problem:
    """A task's optimisation problem. Subclasses set ``nets`` and ``stage_iterations`` and
    implement :meth:`step`; the other hooks have working defaults."""

    nets: nn.ModuleDict
    stage_iterations: tuple[int, ...]
    # early stopping needs best-result tracking: tasks whose result is the last iteration's don't stop
    tracks_best: bool = False

    def step(self, stage: int, k: int, last: bool, log: bool = False,
             ctx: Optional[RunContext] = None) -> Step:  # pragma: no cover - interface
        """One iteration's loss; ``log``: the loop will read this step's values (measure PSNR);
        ``ctx``: the run's context (None: eager float32 nets, as a direct call wants)."""
        raise NotImplementedError

    def end_stage(self, stage: int) -> None:
        """Called after the last iteration of each stage."""

    def begin_stage(self, stage: int) -> bool:
        """Called before the first iteration of each stage; True when it changed ``nets`` (the
        loop then applies the run's settings to the new nets and optimises their parameters)."""
        return False

    def lr_scale(self, stage: int, k: int) -> float:
        """The learning rate of iteration ``k`` of ``stage``, as a factor of the run's lr (a Python
        float: no device read). 1.0, a constant lr, unless a task's mode schedules it."""
        return 1.0

    def stop_requested(self, stage: int) -> Optional[torch.Tensor]:
        """A 0-dim bool tensor that ends the stage when true (read at logged steps), or None."""
        return None

    # what the result's ``stop_reason`` says when :meth:`stop_requested` ended a run
    requested_stop_reason: str = "the problem's stopping test"

    def stopping_rule(self) -> Optional["StoppingRule"]:
        """The early-stopping rule of the run's last stage (``SolverConfig.stops_early``: on in fast
        mode), or None: a plateau of the reconstruction PSNR for problems that track their best
        result; nothing for the others (their result is the last iteration's)."""
        return PlateauStop() if self.tracks_best else None

    def callback_outputs(self) -> Optional[dict]:
        """The first image's current result fields (numpy), handed to the callback as
        ``record["outputs"]`` at logged steps, or None. Tasks whose result is the tracked best
        define it; the quality suite scores them into curves."""
        return None


class ProgressReporter:
    """Progress bar + callback + history, fed every ``log_every`` iterations.

    The bar counts the iterations run (``done``, of ``total``: all stages, passes and repeats)
    and each line it prints shows the loss and PSNR logged at that count. It ends with exactly
    one final line, with the last logged numbers: printed when ``done`` reaches ``total``, or by
    :meth:`close` at the count where a run stopped early (the bar is not moved on to ``total``).
    """

    def __init__(self, config: SolverConfig, total: int, label: str):
        self.config = config
        self.history: list[dict] = []
        self.bar = None
        self.total = total
        if config.progress:
            from tqdm.auto import tqdm

            # miniters=1: lines only when the bar is updated (every log_every iterations, at most
            # every 0.1 s) and at the end; tqdm's monitor thread, which re-prints bars whose
            # dynamic miniters exceed 1, then never prints a second copy of the final line
            self.bar = tqdm(total=total, desc=label, unit="it", dynamic_ncols=True, leave=True, miniters=1)
        self.done = 0
        self.start = time.perf_counter()
        # why the task's run ended (the result's stop_reason) and at which iteration (None: its cap)
        self.stop_reason = "iterations"
        self.stopped_at: Optional[int] = None

    def extend(self, iterations: int) -> None:
        """Grow the run by ``iterations`` (a task that runs again: the bar's total grows with it)."""
        self.total += iterations
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def stopped(self, reason: str, at: Optional[int]) -> None:
        """Record that a part of the run (a stage, a pass, a repeat) ended early, and why."""
        self.stop_reason, self.stopped_at = reason, at

    def log(self, record: dict, advanced: int, outputs=None) -> None:
        """Append ``record`` to the history, advance the bar; the callback also gets ``outputs``
        (the current result fields, when the problem provides them)."""
        # tensors: one value, or one per image of a batch (a list, as the PSNR)
        record = {k: ((float(v) if v.numel() == 1 else v.detach().float().cpu().tolist())
                      if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        record["seconds"] = time.perf_counter() - self.start
        self.history.append(record)
        self.done += advanced
        if self.bar is not None:
            post = {"loss": f"{record['loss']:.4f}"}
            shown = record.get("psnr")
            if isinstance(shown, list):  # a batch: show the mean
                shown = sum(shown) / len(shown)
            if shown is not None and math.isfinite(shown):
                post["psnr"] = f"{shown:.2f}"
            # the numbers before the count: a line the update prints shows this record's
            self.bar.set_postfix(post, refresh=False)
            if self.done >= self.total:  # the end: its one line now (close() prints nothing more)
                self.bar.n = self.done
                self._end_bar(printed=False)
            else:
                self.bar.update(advanced)
        if self.config.callback is not None:
            self.config.callback(dict(record, outputs=outputs) if outputs is not None else dict(record))

    def close(self) -> None:
        """End the bar where the run stopped (once; later calls do nothing)."""
        if self.bar is not None:
            # the last update may have printed the final count already (a run that stopped
            # early): then only end that line, else tqdm prints it again with other numbers
            self._end_bar(printed=self.bar.n > 0 and self.bar.last_print_n == self.bar.n)

    def _end_bar(self, printed: bool) -> None:
        from tqdm.std import tqdm as text_bar

        bar, self.bar = self.bar, None
        if printed and type(bar).display is text_bar.display:  # a text bar (not a notebook widget)
            bar.display = lambda *args, **kwargs: True  # close() ends the line without re-printing
        bar.close()


class StoppingRule:
    """Early stopping read at the logged steps only: ``should_stop(iteration, record)`` with the
    logged record (its ``psnr`` and the step's named terms, host floats); ``reason`` is what the
    result's ``stop_reason`` says when it fires. Its attributes are its whole state (checkpoints
    save ``vars``)."""

    reason = "stopping rule"

    def should_stop(self, iteration: int, record: dict) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


def _mean(value) -> Optional[float]:
    """A logged value as one float (a batch's list: its mean), None when absent or not finite."""
    if value is None:
        return None
    value = sum(value) / len(value) if isinstance(value, list) else float(value)
    return value if math.isfinite(value) else None


class PlateauStop(StoppingRule):
    """Early stopping on a plateau of a logged signal (default: the reconstruction PSNR).

    Stops once the best value of ``signal`` (the mean over a batch) has not risen by more than
    ``min_gain`` for ``patience`` iterations, after ``min_iterations``. The reconstruction PSNR
    rises until the outputs settle, so a plateau is where further iterations buy little; the
    task's iteration count remains the cap.
    """

    def __init__(self, patience: int = 600, min_gain: float = 0.05, min_iterations: int = 1000,
                 signal: str = "psnr"):
        self.patience, self.min_gain, self.min_iterations = patience, min_gain, min_iterations
        self.signal = signal
        self.best = -math.inf
        self.best_at = 0

    @property
    def reason(self) -> str:
        return f"plateau: {self.signal} rose less than {self.min_gain} in {self.patience} iterations"

    def should_stop(self, iteration: int, record: dict) -> bool:
        value = _mean(record.get(self.signal))
        if value is None:
            return False
        if value > self.best + self.min_gain:
            self.best, self.best_at = value, iteration
        return iteration >= self.min_iterations and iteration - self.best_at >= self.patience


def _psnr_value(psnr: Optional[torch.Tensor]):
    """A logged PSNR: a float for one image, a list of floats for a batch (read here, every K)."""
    if psnr is None:
        return None
    values = psnr.detach().float().cpu().tolist()
    return values[0] if len(values) == 1 else values


def fast_autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The generators' precision in fast mode: bf16 on CUDA; float32 (None) on the CPU, where
    bf16 convolutions measured 1.3-1.6x *slower* per step than float32 on an AVX-512 BF16 Xeon
    (benchmarks/experiments/README.md), and where the C++ generator layers run float32 only."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else None


def run_problem(problem: Problem, config: SolverConfig, lr: float, reporter: ProgressReporter,
                extra: Optional[dict] = None, first_iteration: int = 0) -> RunContext:
    """Optimise ``problem`` stage by stage: a fresh Adam over all nets' parameters per stage.
    ``first_iteration`` numbers the history when one call is a later part of a run (a pass).
    Returns the run's context (``stopped_early_at`` says whether and where it stopped early)."""
    ctx = RunContext(autocast_dtype=fast_autocast_dtype(config.resolve_device()) if config.mode == "fast" else None)
    stopper = problem.stopping_rule() if config.stops_early else None
    _prepare_nets(problem, config, ctx)
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    # checkpoints and deferred Ctrl-C, when the config asks for them (engine.checkpoint)
    session = checkpoint.session(problem, config, lr, reporter, extra, first_iteration, stopper, ctx)
    try:
        if session is None:
            _optimise(problem, config, lr, reporter, extra, first_iteration, stopper, ctx)
        else:
            with session:
                _optimise(problem, config, lr, reporter, extra, first_iteration, stopper, ctx, session)
    finally:
        torch.set_num_threads(previous_threads)
    if ctx.stop_reason is not None:
        reporter.stopped(ctx.stop_reason, ctx.stopped_early_at)
    elif checkpoint.interrupted():
        reporter.stopped("interrupted (Ctrl-C with keep_partial)", None)
    return ctx


def _prepare_nets(problem: Problem, config: SolverConfig, ctx: RunContext) -> None:
    """The run's settings on every net: memory format, low memory, compiled groups."""
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    for net in problem.nets.values():
        if isinstance(net, SkipUNet):  # other nets (learned scalars) have no layout to set
            net.set_memory_format(fmt)
            net.set_low_memory(config.low_memory)
    if config.compile:
        from doubledip.engine.compiled import CompiledGenerators  # imports torch._dynamo: only here

        ctx.compiled = CompiledGenerators(problem.nets, next(problem.nets.parameters()).device)


def _optimise(problem: Problem, config: SolverConfig, lr: float, reporter: ProgressReporter,
              extra: Optional[dict], first_iteration: int, stopper: Optional["PlateauStop"],
              ctx: RunContext, session: Optional["checkpoint.Session"] = None) -> None:
    params = [p for p in problem.nets.parameters() if p.requires_grad]
    done_before = first_iteration
    for stage, T in enumerate(problem.stage_iterations):
        if problem.begin_stage(stage):
            _prepare_nets(problem, config, ctx)
            params = [p for p in problem.nets.parameters() if p.requires_grad]
        # the fused CPU step in one pass: torch.optim.Adam's update but for the square roots'
        # last-ulp rounding (MKL's sqrt is not correctly rounded; see engine.adam)
        optimizer = Adam(params, lr=lr, sqrt=ADAM_SQRT)
        since_log = first_k = 0
        if session is not None:  # a resumed run: stages done are skipped, the current one restored
            skip, first_k, since_log = session.enter_stage(stage, optimizer)
            if skip:
                done_before += T
                continue
        for k in range(first_k, T):
            if session is not None and session.skip(k, T):
                continue  # Ctrl-C with keep_partial: each stage's last iteration only
            last = k == T - 1
            log = (k + 1) % config.log_every == 0 or last
            optimizer.zero_grad()
            if ctx.compiled is not None:
                ctx.compiled.step_begin()
            out = problem.step(stage, k, last, log, ctx)
            out.loss.backward()
            optimizer.lr = lr * problem.lr_scale(stage, k)
            optimizer.step()
            since_log += 1
            if log:
                record = {"stage": stage, "iteration": done_before + k, "loss": out.loss.detach(),
                          "psnr": _psnr_value(out.psnr)}
                record.update({name: t.detach() for name, t in out.terms.items()})
                if extra:
                    record.update(extra)
                # host copies of the current result: only when someone listens
                outputs = problem.callback_outputs() if config.callback is not None else None
                reporter.log(record, since_log, outputs)
                since_log = 0
                stop = problem.stop_requested(stage)
                if stop is not None and bool(stop):
                    if stage == len(problem.stage_iterations) - 1:  # an earlier stage's end is no stop
                        ctx.stopped_early_at, ctx.stop_reason = done_before + k, problem.requested_stop_reason
                    break
                if (stopper is not None and stage == len(problem.stage_iterations) - 1
                        and stopper.should_stop(done_before + k, reporter.history[-1])):
                    ctx.stopped_early_at, ctx.stop_reason = done_before + k, stopper.reason
                    break
            if session is not None:
                session.after_iteration(stage, k, optimizer, since_log, done_before + k)
        problem.end_stage(stage)
        done_before += T
    if session is not None:
        session.finish(optimizer)
