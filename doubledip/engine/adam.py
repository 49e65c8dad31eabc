"""Adam as the method uses it (``torch.optim.Adam`` defaults, no weight decay), without torch.optim.

Why not ``torch.optim.Adam``: constructing one imports ``torch._dynamo`` (about 900 modules and
150 MB of resident memory here, against 220 MB for torch itself), which a fit that is never
compiled does not need. The arithmetic is that of ``torch.optim.Adam``'s default (single-tensor)
path, op for op, so the updates are bit-equal to it (tests/test_adam.py):

    m <- lerp(m, g, 1 - b1)                  v <- v * b2 + (1 - b2) * g * g
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Each parameter keeps its own step count ``t`` and is skipped while its gradient is ``None``, as in
torch. Parameters that share a step count are updated together, in one of two ways:

- the fused C++ step (``doubledip.bindings``, csrc/adam.cpp), for CPU tensors when the compiled core
  serves them (``doubledip.kernels._dispatch.resolve`` says ``cpp``: not under
  ``DOUBLEDIP_BACKEND=torch``) and every p, grad, exp_avg, exp_avg_sq of the group is float32, dense
  (contiguous in its own memory format, channels-last weights included) and laid out like its
  parameter. Why: the reference path below runs seven ops over every tensor, each a dispatch and a
  full pass through memory (and a fresh temporary for sqrt): 11.7 ms of CPU time within a step for
  the ~3 M parameters of a 256 x 256 separation (1 thread). One multi-tensor call, all threads on
  one flat range of the elements, does it in 4.3 ms; split around torch's sqrt (below), 7.6 ms
  (benchmarks/test_kernels.py, the Adam rows). The C++ step rounds as
  torch's CPU kernels do (FMA in lerp and addcmul). The square root is the one exception: torch's
  CPU sqrt is MKL's (not correctly rounded) on MKL builds such as this project's, so by default
  (``sqrt="torch"``) the fused step is split around ``torch.sqrt`` into per-parameter scratch
  buffers (one more parameter-sized buffer of memory) and stays bit-equal to the reference; where
  torch's sqrt is found to be correctly rounded (a one-off probe) the single pass is bit-equal and
  used instead. ``sqrt="ieee"`` always takes the single pass: faster, and on MKL builds different
  from ``torch.optim.Adam`` by rounding only (about 0.6% of the square roots are one ulp apart, so
  the parameters differ by ulps of one update per step; tests/test_adam_fused.py).
- ``torch._foreach_*`` ops (the reference, and the fallback for everything else: other devices,
  dtypes or layouts): a few multi-tensor launches per step on a GPU instead of several per
  parameter.
"""
from __future__ import annotations

import functools
from typing import Iterable

import torch

SQRT_MODES = ("torch", "ieee")


class Adam:
    """Adam over ``params`` (tensors with ``requires_grad``): ``zero_grad()``, ``step()``.

    State is created lazily, like torch's: zeros in each parameter's own memory format.
    ``sqrt``: ``"torch"`` (default: the fused CPU step is bit-equal to torch's) or ``"ieee"`` (the
    fused CPU step in one pass with a correctly rounded sqrt; see the module docstring).
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, sqrt: str = "torch"):
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if sqrt not in SQRT_MODES:
            raise ValueError(f"sqrt must be one of {SQRT_MODES}, got {sqrt!r}")
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.sqrt = sqrt
        self.steps = [0] * len(self.params)
        self.exp_avg: list = [None] * len(self.params)
        self.exp_avg_sq: list = [None] * len(self.params)
        # the fused split step's sqrt(exp_avg_sq) buffers, each with the exp_avg_sq it was made for
        self._sqrt_buffers: list = [None] * len(self.params)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        groups: dict[int, list[int]] = {}  # step count after this update -> parameter indices
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if self.exp_avg[i] is None:
                self.exp_avg[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.exp_avg_sq[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.steps[i] += 1
            groups.setdefault(self.steps[i], []).append(i)
        for t, idx in groups.items():
            params, grads = [self.params[i] for i in idx], [self.params[i].grad for i in idx]
            exp_avgs, exp_avg_sqs = [self.exp_avg[i] for i in idx], [self.exp_avg_sq[i] for i in idx]
            if _fused_serves(params[0].device) and _fusable(params, grads, exp_avgs, exp_avg_sqs):
                self._update_fused(t, idx, params, grads, exp_avgs, exp_avg_sqs)
            else:
                self._update(t, params, grads, exp_avgs, exp_avg_sqs)

    def _update(self, t: int, params, grads, exp_avgs, exp_avg_sqs) -> None:
        b1, b2 = self.beta1, self.beta2
        torch._foreach_lerp_(exp_avgs, grads, 1 - b1)
        torch._foreach_mul_(exp_avg_sqs, b2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - b2)
        # bias corrections in Python floats (float64), as torch computes them from the step count
        step_size = self.lr / (1 - b1 ** t)
        bias_correction2_sqrt = (1 - b2 ** t) ** 0.5
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)

    def _update_fused(self, t: int, idx, params, grads, exp_avgs, exp_avg_sqs) -> None:
        from doubledip.bindings import ops

        b1, b2 = self.beta1, self.beta2
        scalars = dict(weight1=1 - b1, beta2=b2, value2=1 - b2, bias2_sqrt=(1 - b2 ** t) ** 0.5,
                       eps=self.eps, neg_step_size=-(self.lr / (1 - b1 ** t)))
        if self.sqrt == "ieee" or _torch_sqrt_is_ieee():
            ops.adam_step(params, grads, exp_avgs, exp_avg_sqs, **scalars)
            return
        sqrts = []
        for i, v in zip(idx, exp_avg_sqs):
            entry = self._sqrt_buffers[i]
            if entry is None or entry[0] is not v:
                entry = self._sqrt_buffers[i] = (v, torch.empty_like(v, memory_format=torch.preserve_format))
            sqrts.append(entry[1])
        ops.adam_step_split(params, grads, exp_avgs, exp_avg_sqs, sqrts, **scalars)


def _fused_serves(device: torch.device) -> bool:
    """Whether the C++ core serves tensors on ``device`` now (imported late: ``import doubledip``
    stays as light as it was)."""
    if device.type != "cpu":
        return False
    from doubledip.kernels._dispatch import resolve

    return resolve(device) == "cpp"


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal strides where the size is not 1 (shapes equal): autograd's layout contract for grads
    only promises that much (a 3 x 16 x 1 x 1 channels-last weight may get a contiguous grad)."""
    sa, sb = a.stride(), b.stride()
    return sa == sb or all(x == y for x, y, n in zip(sa, sb, a.shape) if n != 1)


def _fusable(params, grads, exp_avgs, exp_avg_sqs) -> bool:
    """Every p, g, m, v: a strided float32 CPU tensor, p dense, g, m, v with p's shape and strides
    (but for dims of size 1, which address nothing)."""
    from doubledip.bindings import ops  # the core's own layout rule

    f32 = torch.float32
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        if g.layout != torch.strided or not (p.dtype == g.dtype == m.dtype == v.dtype == f32):
            return False
        if not (p.is_cpu and g.is_cpu and m.is_cpu and v.is_cpu):
            return False
        if not (p.shape == g.shape == m.shape == v.shape and _same_layout(p, g) and _same_layout(p, m)
                and _same_layout(p, v)):
            return False
        if not ops.is_dense(p):
            return False
    return True


@functools.lru_cache(maxsize=None)
def _torch_sqrt_is_ieee() -> bool:
    """Whether torch's float32 CPU sqrt is correctly rounded here (on MKL builds it is MKL's, which is
    not): then the single-pass fused step is bit-equal to torch's."""
    import numpy as np

    x = torch.rand(1 << 16, generator=torch.Generator().manual_seed(0)) * 1e-3
    return torch.equal(torch.sqrt(x), torch.from_numpy(np.sqrt(x.numpy())))


__all__ = ["Adam"]
