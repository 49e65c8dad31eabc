"""Fused kernels (issue 4): each op, forward + backward, torch eager reference vs the fused backends.

CPU rows: eager (the plain-torch reference) vs the C++ core, same thread count on both sides
(torch.set_num_threads(OMP_NUM_THREADS); the core runs with torch's thread count).
GPU rows (only when CUDA exists): eager vs torch.compile(reference) vs Triton, with the achieved
bandwidth over the bytes each op must move (extra_info["GB/s"]).

    OMP_NUM_THREADS=1 pytest benchmarks/bench_kernels.py --benchmark-json=out.json -p no:cacheprovider
    python benchmarks/bench_kernels.py out.json      # speed-up table (markdown) from that run

Inputs: 1 x 3 x S x S float32 images (the mask N x 1 x S x S, L1 loss); noise on 1 x 3 x S x S
(perturb has an identity backward: timed forward only); seeds pinned.
"""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from doubledip import bindings
from doubledip.kernels import blend_loss, blend_loss_ref, exclusion_loss, exclusion_loss_ref, perturb, perturb_ref

THREADS = int(os.environ.get("OMP_NUM_THREADS", "1"))
SIZES = [256, 512, 1024]
OPS = ["exclusion", "blend", "noise"]


def _inputs(op, shape, device):
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    a, b, t = (torch.rand(shape, generator=gen).to(device) for _ in range(3))
    m = torch.rand(n, 1, h, w, generator=gen).to(device)
    if op == "noise":
        return (a,)
    if op == "exclusion":
        return a.requires_grad_(), b.requires_grad_()
    return m.requires_grad_(), a.requires_grad_(), b.requires_grad_(), t


def _fn(op, impl):
    """A zero-argument closure factory: inputs -> one forward (+ backward) call."""
    ref = {"exclusion": exclusion_loss_ref, "blend": blend_loss_ref, "noise": perturb_ref}[op]
    fused = {"exclusion": exclusion_loss, "blend": blend_loss, "noise": perturb}[op]
    f = ref if impl == "eager" else fused
    if impl == "compile":
        f = torch.compile(ref)
    if op == "noise":
        return lambda z: f(z, 0.05, 123)

    def step(*xs):
        for x in xs:
            x.grad = None
        loss = f(*xs)
        loss.backward()
        return loss

    return step


def _bytes(op, shape):
    """Bytes the op must move at least, forward + backward (float32)."""
    n, c, h, w = shape
    img, mask = 4 * n * c * h * w, 4 * n * h * w
    if op == "exclusion":  # fwd: read a, b; bwd: read a, b, write ga, gb
        return 6 * img
    if op == "blend":  # fwd: read m, a, b, t; bwd: read them again, write gm, ga, gb
        return 2 * (mask + 3 * img) + mask + 2 * img
    return 2 * img  # read z, write z + noise


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", ["eager", "cpp"])
def test_cpu(benchmark, monkeypatch, op, size, impl):
    if impl == "cpp" and not bindings.is_available():
        pytest.skip("C++ core not built")
    torch.set_num_threads(THREADS)
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "cpp")
    xs = _inputs(op, (1, 3, size, size), "cpu")
    fn = _fn(op, impl)
    benchmark.group = f"cpu {op} {size}"
    benchmark.extra_info.update(op=op, size=size, impl=impl, threads=THREADS, device="cpu")
    rounds = {256: 30, 512: 15, 1024: 6}[size]
    benchmark.pedantic(fn, args=xs, rounds=rounds, warmup_rounds=2, iterations=1)


GPU_SHAPES = [(1, 3, 256, 256), (1, 3, 512, 512), (1, 3, 1024, 1024), (16, 3, 1024, 1024)]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", ["eager", "compile", "triton"])
def test_gpu(benchmark, monkeypatch, op, shape, impl):
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "triton")
    xs = _inputs(op, shape, "cuda")
    fn = _fn(op, impl)

    def timed(*args):
        out = fn(*args)
        torch.cuda.synchronize()  # inside the timed region
        return out

    for _ in range(3):  # warm-up (and compile)
        timed(*xs)
    benchmark.group = f"gpu {op} {'x'.join(map(str, shape))}"
    benchmark.extra_info.update(op=op, shape=list(shape), impl=impl, device=torch.cuda.get_device_name())
    benchmark.pedantic(timed, args=xs, rounds=30, warmup_rounds=2, iterations=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info["bytes"] = _bytes(op, shape)
    benchmark.extra_info["GB/s"] = round(_bytes(op, shape) / median / 1e9, 1)


def summary(path: str) -> str:
    """Markdown table of medians and speed-ups (reference eager / fused) from a --benchmark-json file."""
    rows = json.load(open(path))["benchmarks"]
    by = {}
    for r in rows:
        e = r["extra_info"]
        key = (e["device"] if e["device"] == "cpu" else "gpu", e["op"], str(e.get("size", e.get("shape"))))
        by.setdefault(key, {})[e["impl"]] = (r["stats"]["median"], e.get("GB/s"))
    lines = ["| device | op | size | eager ms | fused ms | speed-up | compile ms | GB/s (fused) |",
             "|---|---|---|---|---|---|---|---|"]
    for (dev, op, size), impls in sorted(by.items(), key=lambda kv: (kv[0][0], kv[0][1], len(kv[0][2]), kv[0][2])):
        fused = impls.get("cpp") or impls.get("triton")
        eager = impls.get("eager")
        comp = impls.get("compile")
        if not fused or not eager:
            continue
        lines.append(f"| {dev} | {op} | {size} | {eager[0] * 1e3:.3f} | {fused[0] * 1e3:.3f} | "
                     f"{eager[0] / fused[0]:.1f}x | {'' if not comp else f'{comp[0] * 1e3:.3f}'} | "
                     f"{fused[1] or ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
