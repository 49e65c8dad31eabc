"""The fused ops, each backend against the plain-torch reference: op x backend x pass x size.

Ops (``doubledip.kernels``): ``exclusion`` (the multi-level gradient exclusion loss),
``blend`` (mask * a + (1 - mask) * b against a target, L1), ``noise`` (perturb: z + sigma * N(0, 1);
its backward is the identity, so forward only), and ``adam`` (one optimiser step over the
parameters of a task's generators). Backends through ``DOUBLEDIP_BACKEND``: ``torch`` (the
references ``<op>_ref``; Adam's ``torch._foreach_*`` path), ``cpp`` (the C++ core, CPU tensors)
and ``triton`` (CUDA tensors; on CPU tensors only the interpreter, TRITON_INTERPRET=1, which is
no speed measurement). Inputs: 1 x 3 x S x S float32 images, an N x 1 x S x S mask, seeds
pinned. ``forward`` times the op on inputs that require gradients (as in training);
``backward`` times ``loss.backward()`` alone, the forward rerun untimed before each round.
``extra_info["bytes"]``: the bytes the pass must move at least (report.py: GB/s).
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from doubledip import bindings
from doubledip.kernels import blend_loss, exclusion_loss, perturb

OPS = ("exclusion", "blend", "noise")
BACKENDS = ("torch", "cpp", "triton")
PASSES = ("forward", "backward")
ROUNDS, WARMUP = 20, 3


def backend_skip(backend: str, device: torch.device):
    """Why ``backend`` cannot serve tensors on ``device`` here (None: it can)."""
    if backend == "cpp":
        if device.type != "cpu":
            return "the C++ core serves CPU tensors only"
        if not bindings.is_available():
            return "the C++ core is not built (pip install -e .)"
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        if device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") != "1":
            return ("triton on CPU tensors runs only in its interpreter (TRITON_INTERPRET=1, set before "
                    "triton is imported): a correctness tool, not a speed measurement")
    return None


def _inputs(op: str, size: int, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    shape = (1, 3, size, size)
    a, b, t = (torch.rand(shape, generator=gen).to(device) for _ in range(3))
    m = torch.rand(1, 1, size, size, generator=gen).to(device)
    if op == "noise":
        return (a,)
    if op == "exclusion":
        return a.requires_grad_(), b.requires_grad_()
    return m.requires_grad_(), a.requires_grad_(), b.requires_grad_(), t


def _forward(op: str):
    if op == "exclusion":
        return exclusion_loss
    if op == "blend":
        return lambda m, a, b, t: blend_loss(m, a, b, t, "l1")
    return lambda z: perturb(z, 0.05, 123)


def _bytes(op: str, size: int, pass_: str) -> int:
    """Bytes a pass must move at least (float32): its inputs read, its outputs written."""
    img, mask = 4 * 3 * size * size, 4 * size * size
    if op == "exclusion":  # forward: read a, b; backward: read a, b, write their gradients
        return 2 * img if pass_ == "forward" else 4 * img
    if op == "blend":  # forward: read m, a, b, t; backward: read them, write the gradients of m, a, b
        return mask + 3 * img if pass_ == "forward" else 2 * mask + 5 * img
    return 2 * img  # noise: read z, write z + noise


def _synced(fn, device):
    if device.type != "cuda":
        return fn

    def call(*args):
        out = fn(*args)
        torch.cuda.synchronize(device)  # inside the timed region
        return out
    return call


@pytest.mark.parametrize("pass_", PASSES, ids=PASSES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_fused_op(benchmark, monkeypatch, op, backend, pass_, kernel_size, device):
    reason = backend_skip(backend, device)
    if reason:
        pytest.skip(reason)
    if op == "noise" and pass_ == "backward":
        pytest.skip("perturb's backward is the identity: nothing to time")
    monkeypatch.setenv("DOUBLEDIP_BACKEND", backend)
    xs = _inputs(op, kernel_size, device)
    f = _forward(op)
    benchmark.group = f"op {op} {kernel_size} {device.type} {pass_}"
    benchmark.extra_info.update({"kind": "op", "op": op, "backend": backend, "pass": pass_, "size": kernel_size,
                                 "device": device.type, "threads": torch.get_num_threads(),
                                 "bytes": _bytes(op, kernel_size, pass_)})
    if pass_ == "forward":
        benchmark.pedantic(_synced(f, device), args=xs, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
        return

    def setup():  # the forward, untimed; a fresh graph for each round
        for x in xs:
            x.grad = None
        loss = f(*xs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (loss,), {}

    benchmark.pedantic(_synced(lambda loss: loss.backward(), device), setup=setup, rounds=ROUNDS,
                       warmup_rounds=WARMUP)


ADAM_TASKS = ("separate", "remove_watermark")
ADAM_BACKENDS = ("torch", "cpp")


@pytest.mark.parametrize("backend", ADAM_BACKENDS)
@pytest.mark.parametrize("adam_task", ADAM_TASKS)
def test_adam(benchmark, monkeypatch, adam_task, backend, device):
    """One step of the solver's Adam (``engine.adam``, its sqrt mode) over every parameter of a
    task's generators in their timed stage (``torch``: the ``torch._foreach_*`` reference)."""
    from doubledip.bench import _problem
    from doubledip.engine.adam import Adam
    from doubledip.engine.solver import ADAM_SQRT

    reason = backend_skip(backend, device)
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("DOUBLEDIP_BACKEND", backend)
    problem, stage, _ = _problem(adam_task, 96, 1, device)  # parameter count does not depend on the size
    for s in range(stage + 1):
        problem.begin_stage(s)
    for net in problem.nets.values():
        if hasattr(net, "set_memory_format"):
            net.set_memory_format(torch.channels_last)
    params = [p for p in problem.nets.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    for p in params:  # gradients laid out like their parameters, as backward leaves them
        p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=gen) * 1e-2)
    optimizer = Adam(params, lr=1e-3, sqrt=ADAM_SQRT)
    benchmark.group = f"adam {adam_task} {device.type}"
    benchmark.extra_info.update(kind="adam", task=adam_task, backend=backend, device=device.type,
                                threads=torch.get_num_threads(), tensors=len(params),
                                elements=sum(p.numel() for p in params), sqrt=ADAM_SQRT)
    benchmark.pedantic(_synced(optimizer.step, device), rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
