"""Adam as the method uses it (``torch.optim.Adam`` defaults, no weight decay), without torch.optim.

Why not ``torch.optim.Adam``: constructing one imports ``torch._dynamo`` (about 900 modules and
150 MB of resident memory here, against 220 MB for torch itself), which a fit that is never
compiled does not need. The arithmetic is that of ``torch.optim.Adam``'s default (single-tensor)
path, op for op, so the updates are bit-equal to it (tests/test_adam.py):

    m <- lerp(m, g, 1 - b1)                  v <- v * b2 + (1 - b2) * g * g
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Each parameter keeps its own step count ``t`` and is skipped while its gradient is ``None``, as in
torch. The update runs as ``torch._foreach_*`` ops over all parameters that share a step count: a
few multi-tensor launches per step on a GPU instead of several per parameter.
"""
from __future__ import annotations

from typing import Iterable

import torch


class Adam:
    """Adam over ``params`` (tensors with ``requires_grad``): ``zero_grad()``, ``step()``.

    State is created lazily, like torch's: zeros in each parameter's own memory format.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        if not self.params:
            raise ValueError("Adam got an empty parameter list")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.steps = [0] * len(self.params)
        self.exp_avg: list = [None] * len(self.params)
        self.exp_avg_sq: list = [None] * len(self.params)

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
            self._update(t, [self.params[i] for i in idx], [self.params[i].grad for i in idx],
                         [self.exp_avg[i] for i in idx], [self.exp_avg_sq[i] for i in idx])

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


__all__ = ["Adam"]
