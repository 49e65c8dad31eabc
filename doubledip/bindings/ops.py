"""Torch-facing wrappers of the C++ core: the ``cpp`` backend's primitives.

Every tensor must be float32, contiguous and on the CPU (the callers in ``doubledip.kernels`` check
and fall back to the reference otherwise). Outputs are allocated here with torch and filled by the
core through their addresses; the core runs with torch's intra-op thread count.
"""
from __future__ import annotations

import torch

from doubledip.bindings import core as _load


def _core():
    lib = _load()
    if lib is None:
        raise RuntimeError("the C++ CPU core is not built; use DOUBLEDIP_BACKEND=torch or reinstall")
    return lib


def _addr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def _empty():
    return torch.empty(0)


def blend_fwd(mask, a, b, t, mode: int, m_stride: int, mse: bool) -> torch.Tensor:
    """Mean blend loss (0-dim). a, b, t: N x C x H x W; mask per ``mode`` (see kernels.blend)."""
    n, c, h, w = a.shape
    total = _core().blend_fwd(_addr(mask), a.data_ptr(), b.data_ptr(), t.data_ptr(), n, c, h * w,
                              mode, m_stride, mse, torch.get_num_threads())
    return torch.tensor(total / a.numel(), dtype=torch.float32)


def blend_bwd(grad_out, mask, a, b, t, mode: int, m_stride: int, mse: bool,
              need_m: bool, need_a: bool, need_b: bool, need_t: bool):
    """(gm, ga, gb, gt), each empty when not needed; gm is per item (N,) in mode 1."""
    n, c, h, w = a.shape
    gm = _empty()
    if need_m and mode:
        gm = torch.empty(n) if mode == 1 else torch.empty_like(mask)
    ga = torch.empty_like(a) if need_a else _empty()
    gb = torch.empty_like(b) if need_b else _empty()
    gt = torch.empty_like(t) if need_t else _empty()
    scale = float(grad_out) / a.numel()
    _core().blend_bwd(_addr(mask), a.data_ptr(), b.data_ptr(), t.data_ptr(),
                      gm.data_ptr() if gm.numel() else 0, ga.data_ptr() if need_a else 0,
                      gb.data_ptr() if need_b else 0, gt.data_ptr() if need_t else 0,
                      n, c, h * w, mode, m_stride, mse, scale, torch.get_num_threads())
    return gm, ga, gb, gt


def avg_pool2(a, b):
    """2x2 average pools (floor) of two N x C x H x W images."""
    n, c, h, w = a.shape
    lib, threads = _core(), torch.get_num_threads()
    outs = []
    for x in (a, b):
        y = torch.empty(n, c, h // 2, w // 2)
        lib.avg_pool2(x.data_ptr(), y.data_ptr(), n * c, h, w, threads)
        outs.append(y)
    return outs[0], outs[1]


def excl_means(a, b):
    """(N, 2, C, C): per item, for x then y, the mean over positions of psi(ga_j)^2 psi(gb_i)^2."""
    n, c, h, w = a.shape
    out = torch.empty(n, 2, c, c)
    _core().excl_means(a.data_ptr(), b.data_ptr(), out.data_ptr(), n, c, h, w, torch.get_num_threads())
    return out


def excl_grad(a, b, k, gup_a, gup_b):
    """Gradients (ga, gb) of one level given k = dLoss/d(means) (N, 2, C, C) and the coarser level's
    total gradients (or None)."""
    n, c, h, w = a.shape
    ga, gb = torch.empty_like(a), torch.empty_like(b)
    hc, wc = (gup_a.shape[2], gup_a.shape[3]) if gup_a is not None else (0, 0)
    _core().excl_grad(a.data_ptr(), b.data_ptr(), k.data_ptr(), _addr(gup_a), _addr(gup_b), hc, wc,
                      ga.data_ptr(), gb.data_ptr(), n, c, h, w, torch.get_num_threads())
    return ga, gb


def perturb(z, sigma: float, seed: int):
    """z + sigma * N(0, 1), a new tensor."""
    out = torch.empty_like(z)
    _core().perturb(z.data_ptr(), out.data_ptr(), z.numel(), float(sigma),
                    int(seed) & 0xFFFF_FFFF_FFFF_FFFF, torch.get_num_threads())
    return out



def _addrs(ts) -> list[int]:
    return [t.data_ptr() for t in ts]


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, weight1: float, beta2: float, value2: float,
              bias2_sqrt: float, eps: float, neg_step_size: float) -> None:
    """One Adam step in place over lists of tensors, in one pass with an IEEE (correctly rounded)
    square root (see ``doubledip.engine.adam`` and csrc/adam.cpp).

    Each p, g, m, v must be a dense float32 CPU tensor, the four of one parameter sharing one layout
    (shape and strides): the core sees each as ``numel`` floats from its first element. Scalars as
    Python floats: weight1 = 1 - beta1, value2 = 1 - beta2, bias2_sqrt = sqrt(1 - beta2^t),
    neg_step_size = -lr / (1 - beta1^t).
    """
    _core().adam_step(_addrs(params), _addrs(grads), _addrs(exp_avgs), _addrs(exp_avg_sqs),
                      [t.numel() for t in params], weight1, beta2, value2, bias2_sqrt, eps,
                      neg_step_size, torch.get_num_threads())


def adam_step_split(params, grads, exp_avgs, exp_avg_sqs, sqrts, *, weight1: float, beta2: float,
                    value2: float, bias2_sqrt: float, eps: float, neg_step_size: float) -> None:
    """``adam_step`` with torch's own square root in the middle: moments in the core, then
    ``torch.sqrt(v, out=s)`` for each ``s`` of ``sqrts`` (scratch tensors laid out as the parameters),
    then the parameters in the core. Bit-equal to the ``torch._foreach_*`` path on every build."""
    lib, threads, sizes = _core(), torch.get_num_threads(), [t.numel() for t in params]
    m_addrs = _addrs(exp_avgs)
    lib.adam_moments(_addrs(grads), m_addrs, _addrs(exp_avg_sqs), sizes, weight1, beta2, value2, threads)
    for v, s in zip(exp_avg_sqs, sqrts):
        torch.sqrt(v, out=s)
    lib.adam_apply(_addrs(params), m_addrs, _addrs(sqrts), sizes, bias2_sqrt, eps, neg_step_size, threads)


def bn_act_fwd(x, weight, bias, running_mean, running_var, eps: float, momentum: float, slope):
    """Training-mode BatchNorm, then LeakyReLU(slope) (None: none), of a channels-last
    N x C x H x W x; updates the running statistics in place. Returns (y, mean, invstd), the
    last two (C,) for the backward."""
    n, c, h, w = x.shape
    y = torch.empty_like(x, memory_format=torch.channels_last)
    mean, invstd = torch.empty(c), torch.empty(c)
    _core().bn_act_fwd(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), y.data_ptr(), mean.data_ptr(),
                       invstd.data_ptr(), _addr(running_mean), _addr(running_var), n * h * w, c, float(eps),
                       float(momentum), slope is not None, 0.0 if slope is None else float(slope),
                       torch.get_num_threads())
    return y, mean, invstd


def bn_act_bwd(grad, x, weight, bias, mean, invstd, slope):
    """(dx, dweight, dbias) of ``bn_act_fwd``; grad and x channels-last."""
    n, c, h, w = x.shape
    dx = torch.empty_like(x, memory_format=torch.channels_last)
    dweight, dbias = torch.empty(c), torch.empty(c)
    _core().bn_act_bwd(grad.data_ptr(), x.data_ptr(), mean.data_ptr(), invstd.data_ptr(), weight.data_ptr(),
                       bias.data_ptr(), dx.data_ptr(), dweight.data_ptr(), dbias.data_ptr(), n * h * w, c,
                       slope is not None, 0.0 if slope is None else float(slope), torch.get_num_threads())
    return dx, dweight, dbias


def reflect_pad_fwd(x, pad: int):
    """Reflection padding by ``pad`` on all sides of a channels-last N x C x H x W tensor."""
    n, c, h, w = x.shape
    y = torch.empty(n, c, h + 2 * pad, w + 2 * pad, memory_format=torch.channels_last)
    _core().reflect_pad_fwd(x.data_ptr(), y.data_ptr(), n, h, w, c, pad, torch.get_num_threads())
    return y


def reflect_pad_bwd(grad, shape, pad: int):
    """Gradient of ``reflect_pad_fwd`` for an input of ``shape``; grad channels-last."""
    n, c, h, w = shape
    dx = torch.empty(shape, memory_format=torch.channels_last)
    _core().reflect_pad_bwd(grad.data_ptr(), dx.data_ptr(), n, h, w, c, pad, torch.get_num_threads())
    return dx


def upsample_bilinear_bwd(grad, shape):
    """Gradient of bilinear upsampling (align_corners=True) to grad's size, for an input of
    ``shape``; grad channels-last."""
    n, c, h, w = shape
    dx = torch.empty(shape, memory_format=torch.channels_last)
    _core().upsample_bilinear_bwd(grad.data_ptr(), dx.data_ptr(), n, h, w, grad.shape[2], grad.shape[3], c,
                                  torch.get_num_threads())
    return dx
