"""Triton kernels of the fused blend loss (see ``blend.py`` for the maths and the modes).

Grid: (pixel blocks, items); each program loops over the channels so that an N x 1 x H x W mask
is read once and its gradient (a sum over channels) is written once, without atomics.
Partial sums go to a small buffer reduced by torch in a fixed order (deterministic).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from doubledip.kernels._triton_common import block


@triton.jit
def _blend_fwd_kernel(m_ptr, a_ptr, b_ptr, t_ptr, part_ptr, C, HW, m_stride,
                      MODE: tl.constexpr, MSE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    n = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < HW
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    if MODE == 1:
        m = tl.load(m_ptr + n * m_stride)
    if MODE == 2:
        m = tl.load(m_ptr + n * HW + offs, mask=inb, other=0.0)
    for c in range(C):
        base = (n * C + c) * HW
        a = tl.load(a_ptr + base + offs, mask=inb, other=0.0)
        b = tl.load(b_ptr + base + offs, mask=inb, other=0.0)
        t = tl.load(t_ptr + base + offs, mask=inb, other=0.0)
        if MODE == 0:
            y = a + b
        else:
            if MODE == 3:
                m = tl.load(m_ptr + base + offs, mask=inb, other=0.0)
            y = b + m * (a - b)
        d = y - t  # masked lanes load zeros: d = 0 there
        if MSE:
            acc += d * d
        else:
            acc += tl.abs(d)
    tl.store(part_ptr + n * tl.num_programs(0) + pid, tl.sum(acc, axis=0))


@triton.jit
def _blend_bwd_kernel(m_ptr, a_ptr, b_ptr, t_ptr, go_ptr, gm_ptr, ga_ptr, gb_ptr, gt_ptr, gpart_ptr,
                      C, HW, m_stride, inv_total,
                      MODE: tl.constexpr, MSE: tl.constexpr, NEED_M: tl.constexpr,
                      NEED_A: tl.constexpr, NEED_B: tl.constexpr, NEED_T: tl.constexpr,
                      BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    n = tl.program_id(1)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < HW
    # dLoss/dd = go / total * (sign(d) | 2 d); read from memory: no host sync on grad_out
    scale = tl.load(go_ptr).to(tl.float32) * inv_total
    gm_acc = tl.zeros([BLOCK], dtype=tl.float32)
    if MODE == 1:
        m = tl.load(m_ptr + n * m_stride)
    if MODE == 2:
        m = tl.load(m_ptr + n * HW + offs, mask=inb, other=0.0)
    for c in range(C):
        base = (n * C + c) * HW
        a = tl.load(a_ptr + base + offs, mask=inb, other=0.0)
        b = tl.load(b_ptr + base + offs, mask=inb, other=0.0)
        t = tl.load(t_ptr + base + offs, mask=inb, other=0.0)
        if MODE == 0:
            y = a + b
        else:
            if MODE == 3:
                m = tl.load(m_ptr + base + offs, mask=inb, other=0.0)
            y = b + m * (a - b)
        d = y - t
        if MSE:
            g = 2.0 * scale * d
        else:
            # sign(0) = 0, as torch's abs backward
            g = tl.where(d > 0, scale, tl.where(d < 0, -scale, 0.0))
        if NEED_A:
            if MODE == 0:
                tl.store(ga_ptr + base + offs, g, mask=inb)
            else:
                tl.store(ga_ptr + base + offs, g * m, mask=inb)  # dy/da = m
        if NEED_B:
            if MODE == 0:
                tl.store(gb_ptr + base + offs, g, mask=inb)
            else:
                tl.store(gb_ptr + base + offs, g * (1.0 - m), mask=inb)  # dy/db = 1 - m
        if NEED_T:
            tl.store(gt_ptr + base + offs, -g, mask=inb)
        if NEED_M:
            if MODE == 3:
                tl.store(gm_ptr + base + offs, g * (a - b), mask=inb)  # dy/dm = a - b
            else:
                gm_acc += g * (a - b)
    if NEED_M:
        if MODE == 2:
            tl.store(gm_ptr + n * HW + offs, gm_acc, mask=inb)
        if MODE == 1:
            tl.store(gpart_ptr + n * tl.num_programs(0) + pid, tl.sum(gm_acc, axis=0))


def _grid(a):
    n, c, h, w = a.shape
    bs = block(1024, 4096)
    return bs, (triton.cdiv(h * w, bs), n)


def blend_fwd(mask, a, b, t, mode: int, m_stride: int, mse: bool) -> torch.Tensor:
    """Mean blend loss (0-dim) of N x C x H x W float32 contiguous tensors."""
    n, c, h, w = a.shape
    bs, grid = _grid(a)
    part = torch.empty(grid[1], grid[0], device=a.device, dtype=torch.float32)
    _blend_fwd_kernel[grid](mask if mask is not None else a, a, b, t, part, c, h * w, m_stride,
                            MODE=mode, MSE=mse, BLOCK=bs)
    return part.sum() / a.numel()


def blend_bwd(grad_out, mask, a, b, t, mode: int, m_stride: int, mse: bool,
              need_m: bool, need_a: bool, need_b: bool, need_t: bool):
    """(gm, ga, gb, gt), each empty when not needed; gm is per item (N,) in mode 1."""
    n, c, h, w = a.shape
    need_m, need_a, need_b, need_t = bool(need_m) and mode != 0, bool(need_a), bool(need_b), bool(need_t)
    bs, grid = _grid(a)
    gm = a.new_empty(0)
    gpart = a.new_empty(0)
    if need_m:
        if mode == 1:
            gpart = torch.empty(grid[1], grid[0], device=a.device, dtype=torch.float32)
        else:
            gm = torch.empty_like(mask)
    ga = torch.empty_like(a) if need_a else a.new_empty(0)
    gb = torch.empty_like(b) if need_b else a.new_empty(0)
    gt = torch.empty_like(t) if need_t else a.new_empty(0)
    go = grad_out.detach().to(device=a.device, dtype=torch.float32).reshape(())
    # unused pointers still need a valid tensor: pass `a`, never written (its NEED_* flag is off)
    _blend_bwd_kernel[grid](mask if mask is not None else a, a, b, t, go,
                            gm if gm.numel() else a, ga if need_a else a, gb if need_b else a,
                            gt if need_t else a, gpart if gpart.numel() else a,
                            c, h * w, m_stride, float(1.0 / a.numel()),
                            MODE=mode, MSE=mse, NEED_M=need_m, NEED_A=need_a, NEED_B=need_b,
                            NEED_T=need_t, BLOCK=bs)
    if need_m and mode == 1:
        gm = gpart.sum(dim=1)
    return gm, ga, gb, gt
