"""Triton kernels of the exclusion loss, one launch per pyramid level and direction pair.

Layout: a level image is N x C x H x W; a program takes BLOCK consecutive positions p of one item
(flat over H x W) and all C channels at once as a (CP, BLOCK) tile (CP = C rounded up to a power
of 2). Neighbours p + 1 and p + W are second loads of mostly cached lines. The C x C channel pairs
are one broadcast product (CP, CP, BLOCK) reduced over positions. See ``exclusion.py`` for the maths.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from doubledip.kernels._triton_common import block, next_pow2


@triton.jit
def _psi(g):
    # psi(g) = 2 sigmoid(g) - 1; exp(-g) may overflow to inf for g << 0: 2 / inf = 0, psi = -1
    return 2.0 / (1.0 + tl.exp(-g)) - 1.0


@triton.jit
def _pool2_one(x_ptr, o_ptr, q, src, W, valid):
    x00 = tl.load(x_ptr + src, mask=valid, other=0.0)
    x01 = tl.load(x_ptr + src + 1, mask=valid, other=0.0)
    x10 = tl.load(x_ptr + src + W, mask=valid, other=0.0)
    x11 = tl.load(x_ptr + src + W + 1, mask=valid, other=0.0)
    tl.store(o_ptr + q, 0.25 * ((x00 + x01) + (x10 + x11)), mask=valid)


@triton.jit
def _pool2_kernel(a_ptr, b_ptr, oa_ptr, ob_ptr, H, W, Ho, Wo, total, BLOCK: tl.constexpr):
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = q < total
    wo = q % Wo
    rest = q // Wo
    ho = rest % Ho
    plane = rest // Ho
    src = plane * H * W + 2 * ho * W + 2 * wo  # top-left of the 2x2 window (floor mode)
    _pool2_one(a_ptr, oa_ptr, q, src, W, valid)
    _pool2_one(b_ptr, ob_ptr, q, src, W, valid)


@triton.jit
def _means_kernel(a_ptr, b_ptr, part_ptr, H, W, inv_x, inv_y,
                  C: tl.constexpr, CP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    n = tl.program_id(1)
    HW = H * W
    p = pid * BLOCK + tl.arange(0, BLOCK)
    ch = tl.arange(0, CP)
    row = p // W
    col = p % W
    inb = p < HW
    cm = ch[:, None] < C
    off = (n * C + ch[:, None]) * HW + p[None, :]  # (CP, BLOCK)
    m0 = cm & inb[None, :]
    mx = cm & (inb & (row < H - 1))[None, :]  # gx exists above the last row
    my = cm & (inb & (col < W - 1))[None, :]  # gy exists left of the last column
    a0 = tl.load(a_ptr + off, mask=m0, other=0.0)
    b0 = tl.load(b_ptr + off, mask=m0, other=0.0)
    sax = _psi(tl.load(a_ptr + off + W, mask=mx, other=0.0) - a0)
    sbx = _psi(tl.load(b_ptr + off + W, mask=mx, other=0.0) - b0)
    say = _psi(tl.load(a_ptr + off + 1, mask=my, other=0.0) - a0)
    sby = _psi(tl.load(b_ptr + off + 1, mask=my, other=0.0) - b0)
    pax = tl.where(mx, sax * sax, 0.0)
    qbx = tl.where(mx, sbx * sbx, 0.0)
    pay = tl.where(my, say * say, 0.0)
    qby = tl.where(my, sby * sby, 0.0)
    # S_ji = sum_p Pa_j(p) Qb_i(p) for all pairs at once, already divided by the position count
    sx = tl.sum(pax[:, None, :] * qbx[None, :, :], axis=2) * inv_x  # (CP, CP)
    sy = tl.sum(pay[:, None, :] * qby[None, :, :], axis=2) * inv_y
    jj = ch[:, None]
    ii = ch[None, :]
    pm = (jj < C) & (ii < C)
    dst = part_ptr + (n * tl.num_programs(0) + pid) * 2 * C * C + jj * C + ii
    tl.store(dst, sx, mask=pm)
    tl.store(dst + C * C, sy, mask=pm)


@triton.jit
def _pair_grads(da, db, k, valid):
    """dLoss/dg for a and b at one offset: da, db = the differences (CP, BLOCK); k (CP, CP)."""
    sa = _psi(da)
    sb = _psi(db)
    pa = sa * sa
    qb = sb * sb
    # dLoss/dPa_j = sum_i k_ji Qb_i ; dLoss/dQb_i = sum_j k_ji Pa_j ; dP/dg = psi (1 - psi^2)
    dpa = tl.sum(k[:, :, None] * qb[None, :, :], axis=1)
    dqb = tl.sum(k[:, :, None] * pa[:, None, :], axis=0)
    ga = tl.where(valid, dpa * sa * (1.0 - pa), 0.0)
    gb = tl.where(valid, dqb * sb * (1.0 - qb), 0.0)
    return ga, gb


@triton.jit
def _grad_kernel(a_ptr, b_ptr, k_ptr, ua_ptr, ub_ptr, ga_ptr, gb_ptr, H, W, Hc, Wc, inv_x, inv_y,
                 C: tl.constexpr, CP: tl.constexpr, HAS_UP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    n = tl.program_id(1)
    HW = H * W
    p = pid * BLOCK + tl.arange(0, BLOCK)
    ch = tl.arange(0, CP)
    row = p // W
    col = p % W
    inb = p < HW
    cm = ch[:, None] < C
    off = (n * C + ch[:, None]) * HW + p[None, :]
    m0 = cm & inb[None, :]
    m_dn = cm & (inb & (row < H - 1))[None, :]  # gx at p
    m_up = cm & (inb & (row > 0))[None, :]  # gx at p - W
    m_rt = cm & (inb & (col < W - 1))[None, :]  # gy at p
    m_lf = cm & (inb & (col > 0))[None, :]  # gy at p - 1
    jj = ch[:, None]
    ii = ch[None, :]
    pm = (jj < C) & (ii < C)
    # k = dLoss/d(mean); dLoss/dS (S = the sum over positions) = k / count
    kx = tl.load(k_ptr + n * 2 * C * C + jj * C + ii, mask=pm, other=0.0) * inv_x
    ky = tl.load(k_ptr + n * 2 * C * C + C * C + jj * C + ii, mask=pm, other=0.0) * inv_y
    a0 = tl.load(a_ptr + off, mask=m0, other=0.0)
    b0 = tl.load(b_ptr + off, mask=m0, other=0.0)
    gax0, gbx0 = _pair_grads(tl.load(a_ptr + off + W, mask=m_dn, other=0.0) - a0,
                             tl.load(b_ptr + off + W, mask=m_dn, other=0.0) - b0, kx, m_dn)
    gax1, gbx1 = _pair_grads(a0 - tl.load(a_ptr + off - W, mask=m_up, other=0.0),
                             b0 - tl.load(b_ptr + off - W, mask=m_up, other=0.0), kx, m_up)
    gay0, gby0 = _pair_grads(tl.load(a_ptr + off + 1, mask=m_rt, other=0.0) - a0,
                             tl.load(b_ptr + off + 1, mask=m_rt, other=0.0) - b0, ky, m_rt)
    gay1, gby1 = _pair_grads(a0 - tl.load(a_ptr + off - 1, mask=m_lf, other=0.0),
                             b0 - tl.load(b_ptr + off - 1, mask=m_lf, other=0.0), ky, m_lf)
    # x[p] enters g[p - W] with + and g[p] with - (same along y with p - 1)
    ga = (gax1 - gax0) + (gay1 - gay0)
    gb = (gbx1 - gbx0) + (gby1 - gby0)
    if HAS_UP:
        # the coarser level's total gradient, a quarter to each pixel of its 2x2 pool window
        rc = row // 2
        cc = col // 2
        mu = m0 & ((rc < Hc) & (cc < Wc))[None, :]
        uoff = (n * C + ch[:, None]) * Hc * Wc + (rc * Wc + cc)[None, :]
        ga += 0.25 * tl.load(ua_ptr + uoff, mask=mu, other=0.0)
        gb += 0.25 * tl.load(ub_ptr + uoff, mask=mu, other=0.0)
    tl.store(ga_ptr + off, ga, mask=m0)
    tl.store(gb_ptr + off, gb, mask=m0)


def avg_pool2(a, b):
    """2x2 average pools (floor) of two N x C x H x W images, one launch."""
    n, c, h, w = a.shape
    oa = a.new_empty(n, c, h // 2, w // 2)
    ob = b.new_empty(n, c, h // 2, w // 2)
    total = oa.numel()
    bs = block(1024, 4096)
    _pool2_kernel[(triton.cdiv(total, bs),)](a, b, oa, ob, h, w, h // 2, w // 2, total, BLOCK=bs)
    return oa, ob


def excl_means(a, b):
    """(N, 2, C, C): per item, for x then y, the mean over positions of psi(ga_j)^2 psi(gb_i)^2."""
    n, c, h, w = a.shape
    bs = block(256, 1024)
    nblk = triton.cdiv(h * w, bs)
    part = a.new_empty(n, nblk, 2, c, c)
    _means_kernel[(nblk, n)](a, b, part, h, w, float(1.0 / ((h - 1) * w)), float(1.0 / (h * (w - 1))),
                             C=c, CP=next_pow2(c), BLOCK=bs)
    return part.sum(dim=1)


def excl_grad(a, b, k, gup_a, gup_b):
    """Gradients (ga, gb) of one level given k = dLoss/d(means) (N, 2, C, C) and the coarser level's
    total gradients (or None)."""
    n, c, h, w = a.shape
    bs = block(256, 1024)
    ga, gb = torch.empty_like(a), torch.empty_like(b)
    has_up = gup_a is not None
    hc, wc = (gup_a.shape[2], gup_a.shape[3]) if has_up else (1, 1)
    _grad_kernel[(triton.cdiv(h * w, bs), n)](
        a, b, k, gup_a if has_up else a, gup_b if has_up else b, ga, gb, h, w, hc, wc,
        float(1.0 / ((h - 1) * w)), float(1.0 / (h * (w - 1))),
        C=c, CP=next_pow2(c), HAS_UP=has_up, BLOCK=bs)
    return ga, gb
