"""Torch-facing wrappers of the C++ core: the ``cpp`` backend's primitives and CPU layers.

The core reads and writes raw addresses with the sizes given here, trusting them. So every wrapper
first checks what it passes (before any address leaves): each tensor float32, on the CPU, in the
layout the core walks (contiguous NCHW for the losses and noise, channels-last for the generator
layers, dense for Adam) and of the shape its partners imply (batch size included). A failed check
raises TypeError (dtype, kind) or ValueError (device, layout, shape) naming what came and what was
expected. Outputs are allocated here with torch and filled by the core through their addresses;
the core runs with torch's intra-op thread count.
"""
from __future__ import annotations

import numbers

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


def _tensor(fn: str, name: str, t, shape=None, layout: str = "contiguous") -> None:
    """Raise unless ``t`` is a float32 CPU tensor of ``shape`` (None: any) laid out as ``layout``
    says: ``contiguous``, ``channels-last``, ``dense`` (numel consecutive floats in any dim order)
    or ``strided`` (any strides: the caller checks them)."""
    if not _fits(t, shape, layout):
        _refuse(fn, name, t, shape, layout)


def _fits(t, shape, layout: str) -> bool:
    """Whether ``_tensor`` passes ``t`` (no message built: this runs per tensor per call)."""
    if not (isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.is_cpu and t.layout == torch.strided):
        return False
    if shape is not None and t.shape != shape:
        return False
    if layout == "contiguous":
        return t.is_contiguous()
    if layout == "channels-last":
        return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    if layout == "dense":
        return is_dense(t)
    return True


def _refuse(fn: str, name: str, t, shape, layout: str):
    """Raise the error that says why ``_fits`` refused ``t``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32:
        raise TypeError(f"{fn}: {name} must be float32, got {t.dtype}")
    if not t.is_cpu or t.layout != torch.strided:
        raise ValueError(f"{fn}: {name} must be a strided CPU tensor, got {t.layout} on {t.device}")
    if shape is not None and t.shape != shape:
        raise ValueError(f"{fn}: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    raise ValueError(f"{fn}: {name} must be {layout}, got shape {tuple(t.shape)} with strides {t.stride()}")


def is_dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill ``numel`` consecutive slots from its first one (any dim order)."""
    if t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)):
        return True
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride()) if s != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _nchw(fn: str, name: str, t) -> tuple[int, int, int, int]:
    """``t``'s (N, C, H, W) after checking it is a contiguous float32 CPU 4-D tensor."""
    _tensor(fn, name, t)
    if t.dim() != 4:
        raise ValueError(f"{fn}: {name} must be N x C x H x W (4-D), got shape {tuple(t.shape)}")
    return tuple(t.shape)


def _mask(fn: str, mask, mode: int, m_stride: int, shape) -> None:
    """The mask of blend ``mode`` (see kernels.blend) for images of ``shape``."""
    n, c, h, w = shape
    if mode not in (0, 1, 2, 3):
        raise ValueError(f"{fn}: mode must be 0, 1, 2 or 3, got {mode}")
    if mode == 0:
        if mask is not None:
            raise ValueError(f"{fn}: mode 0 takes no mask (None), got {type(mask).__name__}")
        return
    if mode == 1 and m_stride not in (0, 1):
        raise ValueError(f"{fn}: mode 1 takes m_stride 0 (one scalar) or 1 (one per item), got {m_stride}")
    _tensor(fn, "mask", mask)
    if mode == 1:
        want = 1 if m_stride == 0 else n
        if mask.numel() != want:
            raise ValueError(f"{fn}: a mode-1 mask with m_stride {m_stride} must hold {want} value(s), "
                             f"got shape {tuple(mask.shape)}")
    elif tuple(mask.shape) != ((n, 1, h, w) if mode == 2 else (n, c, h, w)):
        want = (n, 1, h, w) if mode == 2 else (n, c, h, w)
        raise ValueError(f"{fn}: a mode-{mode} mask must have shape {want}, got {tuple(mask.shape)}")


def _scalar(fn: str, name: str, x) -> float:
    """``x`` (a number or a one-element tensor) as a Python float."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"{fn}: {name} must be a scalar, got a tensor of shape {tuple(x.shape)}")
    elif isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {type(x).__name__}")
    return float(x)


def blend_fwd(mask, a, b, t, mode: int, m_stride: int, mse: bool) -> torch.Tensor:
    """Mean blend loss (0-dim). a, b, t: N x C x H x W; mask per ``mode`` (see kernels.blend)."""
    n, c, h, w = _blend_inputs("blend_fwd", mask, a, b, t, mode, m_stride)
    total = _core().blend_fwd(_addr(mask), a.data_ptr(), b.data_ptr(), t.data_ptr(), n, c, h * w,
                              mode, m_stride, mse, torch.get_num_threads())
    return torch.tensor(total / a.numel(), dtype=torch.float32)


def blend_bwd(grad_out, mask, a, b, t, mode: int, m_stride: int, mse: bool,
              need_m: bool, need_a: bool, need_b: bool, need_t: bool):
    """(gm, ga, gb, gt), each empty when not needed; gm is per item (N,) in mode 1."""
    n, c, h, w = _blend_inputs("blend_bwd", mask, a, b, t, mode, m_stride)
    scale = _scalar("blend_bwd", "grad_out", grad_out) / a.numel()
    gm = _empty()
    if need_m and mode:
        gm = torch.empty(n) if mode == 1 else torch.empty_like(mask)
    ga = torch.empty_like(a) if need_a else _empty()
    gb = torch.empty_like(b) if need_b else _empty()
    gt = torch.empty_like(t) if need_t else _empty()
    _core().blend_bwd(_addr(mask), a.data_ptr(), b.data_ptr(), t.data_ptr(),
                      gm.data_ptr() if gm.numel() else 0, ga.data_ptr() if need_a else 0,
                      gb.data_ptr() if need_b else 0, gt.data_ptr() if need_t else 0,
                      n, c, h * w, mode, m_stride, mse, scale, torch.get_num_threads())
    return gm, ga, gb, gt


def _blend_inputs(fn, mask, a, b, t, mode, m_stride):
    """(N, C, H, W) after checking a, b, t (one non-empty shape) and the mask of ``mode``."""
    shape = _nchw(fn, "a", a)
    if a.numel() == 0:
        raise ValueError(f"{fn}: a must not be empty (the loss is a mean), got shape {shape}")
    _tensor(fn, "b", b, shape)
    _tensor(fn, "t", t, shape)
    _mask(fn, mask, mode, m_stride, shape)
    return shape


def avg_pool2(a, b):
    """2x2 average pools (floor) of two N x C x H x W images."""
    n, c, h, w = _nchw("avg_pool2", "a", a)
    _tensor("avg_pool2", "b", b, a.shape)
    lib, threads = _core(), torch.get_num_threads()
    outs = []
    for x in (a, b):
        y = torch.empty(n, c, h // 2, w // 2)
        lib.avg_pool2(x.data_ptr(), y.data_ptr(), n * c, h, w, threads)
        outs.append(y)
    return outs[0], outs[1]


def _level(fn, a, b):
    """(N, C, H, W) of one exclusion level: two images of one shape, at least 2 x 2 (the means
    divide by (H - 1) W and H (W - 1))."""
    n, c, h, w = _nchw(fn, "a", a)
    _tensor(fn, "b", b, a.shape)
    if h < 2 or w < 2:
        raise ValueError(f"{fn}: the images must be at least 2 x 2, got {h} x {w}")
    return n, c, h, w


def excl_means(a, b):
    """(N, 2, C, C): per item, for x then y, the mean over positions of psi(ga_j)^2 psi(gb_i)^2."""
    n, c, h, w = _level("excl_means", a, b)
    out = torch.empty(n, 2, c, c)
    _core().excl_means(a.data_ptr(), b.data_ptr(), out.data_ptr(), n, c, h, w, torch.get_num_threads())
    return out


def excl_grad(a, b, k, gup_a, gup_b):
    """Gradients (ga, gb) of one level given k = dLoss/d(means) (N, 2, C, C) and the coarser level's
    total gradients (or None), each N x C x H//2 x W//2 (the 2x2 pool of this level)."""
    n, c, h, w = _level("excl_grad", a, b)
    _tensor("excl_grad", "k", k, (n, 2, c, c))
    if (gup_a is None) != (gup_b is None):
        raise ValueError("excl_grad: gup_a and gup_b must both be tensors or both be None")
    if gup_a is not None:
        _tensor("excl_grad", "gup_a", gup_a, (n, c, h // 2, w // 2))
        _tensor("excl_grad", "gup_b", gup_b, (n, c, h // 2, w // 2))
    ga, gb = torch.empty_like(a), torch.empty_like(b)
    hc, wc = (gup_a.shape[2], gup_a.shape[3]) if gup_a is not None else (0, 0)
    _core().excl_grad(a.data_ptr(), b.data_ptr(), k.data_ptr(), _addr(gup_a), _addr(gup_b), hc, wc,
                      ga.data_ptr(), gb.data_ptr(), n, c, h, w, torch.get_num_threads())
    return ga, gb


def perturb(z, sigma: float, seed: int):
    """z + sigma * N(0, 1), a new tensor (z: any shape, contiguous)."""
    _tensor("perturb", "z", z)
    sigma = _scalar("perturb", "sigma", sigma)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"perturb: seed must be an int, got {type(seed).__name__}")
    out = torch.empty_like(z)
    _core().perturb(z.data_ptr(), out.data_ptr(), z.numel(), sigma,
                    int(seed) & 0xFFFF_FFFF_FFFF_FFFF, torch.get_num_threads())
    return out


def _addrs(ts) -> list[int]:
    return [t.data_ptr() for t in ts]


def _adam_inputs(fn, params, **partners) -> list[int]:
    """The sizes of ``params`` after checking that each is a dense float32 CPU tensor and that each
    list of ``partners`` holds, per parameter, a float32 CPU tensor of its shape and layout."""
    for name, ts in partners.items():
        if len(ts) != len(params):
            raise ValueError(f"{fn}: {name} must hold one tensor per parameter ({len(params)}), got {len(ts)}")
    for i, p in enumerate(params):
        if not _fits(p, None, "dense"):
            _refuse(fn, f"params[{i}]", p, None, "dense")
        shape, stride = p.shape, p.stride()
        for name, ts in partners.items():
            x = ts[i]
            if not _fits(x, shape, "strided"):
                _refuse(fn, f"{name}[{i}]", x, shape, "strided")
            # dims of size 1 address nothing: their strides may differ (as autograd's grads' may)
            if x.stride() != stride and any(a != b for a, b, n in zip(x.stride(), stride, shape) if n != 1):
                raise ValueError(f"{fn}: {name}[{i}] must be laid out as params[{i}] (strides {stride}), "
                                 f"got strides {x.stride()}")
    return [p.numel() for p in params]


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, weight1: float, beta2: float, value2: float,
              bias2_sqrt: float, eps: float, neg_step_size: float) -> None:
    """One Adam step in place over lists of tensors, in one pass with an IEEE (correctly rounded)
    square root (see ``doubledip.engine.adam`` and csrc/adam.cpp).

    Each p, g, m, v must be a dense float32 CPU tensor, the four of one parameter sharing one layout
    (shape and strides): the core sees each as ``numel`` floats from its first element. Scalars as
    Python floats: weight1 = 1 - beta1, value2 = 1 - beta2, bias2_sqrt = sqrt(1 - beta2^t),
    neg_step_size = -lr / (1 - beta1^t).
    """
    sizes = _adam_inputs("adam_step", params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs)
    _core().adam_step(_addrs(params), _addrs(grads), _addrs(exp_avgs), _addrs(exp_avg_sqs), sizes,
                      weight1, beta2, value2, bias2_sqrt, eps, neg_step_size, torch.get_num_threads())


def adam_step_split(params, grads, exp_avgs, exp_avg_sqs, sqrts, *, weight1: float, beta2: float,
                    value2: float, bias2_sqrt: float, eps: float, neg_step_size: float) -> None:
    """``adam_step`` with torch's own square root in the middle: moments in the core, then
    ``torch.sqrt(v, out=s)`` for each ``s`` of ``sqrts`` (scratch tensors laid out as the parameters),
    then the parameters in the core. Bit-equal to the ``torch._foreach_*`` path on every build."""
    sizes = _adam_inputs("adam_step_split", params, grads=grads, exp_avgs=exp_avgs,
                         exp_avg_sqs=exp_avg_sqs, sqrts=sqrts)
    lib, threads = _core(), torch.get_num_threads()
    m_addrs = _addrs(exp_avgs)
    lib.adam_moments(_addrs(grads), m_addrs, _addrs(exp_avg_sqs), sizes, weight1, beta2, value2, threads)
    for v, s in zip(exp_avg_sqs, sqrts):
        torch.sqrt(v, out=s)
    lib.adam_apply(_addrs(params), m_addrs, _addrs(sqrts), sizes, bias2_sqrt, eps, neg_step_size, threads)


def _channels(fn: str, name: str, t, c: int) -> None:
    """``t`` must be a contiguous float32 CPU (C,) tensor."""
    _tensor(fn, name, t, (c,))


def bn_act_fwd(x, weight, bias, running_mean, running_var, eps: float, momentum: float, slope):
    """Training-mode BatchNorm, then LeakyReLU(slope) (None: none), of a channels-last
    N x C x H x W x; updates the running statistics in place (None: none kept). Returns
    (y, mean, invstd), the last two (C,) for the backward. weight, bias, running stats: (C,)."""
    n, c, h, w = _nhwc("bn_act_fwd", "x", x)
    _channels("bn_act_fwd", "weight", weight, c)
    _channels("bn_act_fwd", "bias", bias, c)
    if (running_mean is None) != (running_var is None):
        raise ValueError("bn_act_fwd: running_mean and running_var must both be tensors or both be None")
    if running_mean is not None:
        _channels("bn_act_fwd", "running_mean", running_mean, c)
        _channels("bn_act_fwd", "running_var", running_var, c)
    if n * h * w < 2:  # as torch's: the variance of one value is no statistic (and 0 values divide by 0)
        raise ValueError("bn_act_fwd: training-mode BatchNorm needs more than one value per channel, "
                         f"got shape {(n, c, h, w)}")
    y = torch.empty_like(x, memory_format=torch.channels_last)
    mean, invstd = torch.empty(c), torch.empty(c)
    _core().bn_act_fwd(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), y.data_ptr(), mean.data_ptr(),
                       invstd.data_ptr(), _addr(running_mean), _addr(running_var), n * h * w, c, float(eps),
                       float(momentum), slope is not None, 0.0 if slope is None else float(slope),
                       torch.get_num_threads())
    return y, mean, invstd


def bn_act_bwd(grad, x, weight, bias, mean, invstd, slope):
    """(dx, dweight, dbias) of ``bn_act_fwd``; grad and x channels-last, the rest (C,)."""
    n, c, h, w = _nhwc("bn_act_bwd", "x", x)
    _tensor("bn_act_bwd", "grad", grad, x.shape, layout="channels-last")
    for name, t in (("weight", weight), ("bias", bias), ("mean", mean), ("invstd", invstd)):
        _channels("bn_act_bwd", name, t, c)
    dx = torch.empty_like(x, memory_format=torch.channels_last)
    dweight, dbias = torch.empty(c), torch.empty(c)
    _core().bn_act_bwd(grad.data_ptr(), x.data_ptr(), mean.data_ptr(), invstd.data_ptr(), weight.data_ptr(),
                       bias.data_ptr(), dx.data_ptr(), dweight.data_ptr(), dbias.data_ptr(), n * h * w, c,
                       slope is not None, 0.0 if slope is None else float(slope), torch.get_num_threads())
    return dx, dweight, dbias


def _nhwc(fn: str, name: str, t) -> tuple[int, int, int, int]:
    """``t``'s (N, C, H, W) after checking it is a channels-last float32 CPU 4-D tensor."""
    _tensor(fn, name, t, layout="channels-last")
    return tuple(t.shape)


def _pad_size(fn: str, pad, h: int, w: int) -> int:
    """A reflection pad must be an int in [0, min(H, W)) (the reflection of a border row is inside)."""
    if isinstance(pad, bool) or not isinstance(pad, numbers.Integral):
        raise TypeError(f"{fn}: pad must be an int, got {type(pad).__name__}")
    if not 0 <= pad < min(h, w):
        raise ValueError(f"{fn}: pad must be in [0, {min(h, w)}) for a {h} x {w} input, got {pad}")
    return int(pad)


def _shape4(fn: str, shape) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"{fn}: shape must be a non-empty (N, C, H, W), got {shape}")
    return shape


def reflect_pad_fwd(x, pad: int):
    """Reflection padding by ``pad`` on all sides of a channels-last N x C x H x W tensor."""
    n, c, h, w = _nhwc("reflect_pad_fwd", "x", x)
    pad = _pad_size("reflect_pad_fwd", pad, h, w)
    y = torch.empty(n, c, h + 2 * pad, w + 2 * pad, memory_format=torch.channels_last)
    _core().reflect_pad_fwd(x.data_ptr(), y.data_ptr(), n, h, w, c, pad, torch.get_num_threads())
    return y


def reflect_pad_bwd(grad, shape, pad: int):
    """Gradient of ``reflect_pad_fwd`` for an input of ``shape``; grad channels-last
    N x C x (H + 2 pad) x (W + 2 pad)."""
    n, c, h, w = _shape4("reflect_pad_bwd", shape)
    pad = _pad_size("reflect_pad_bwd", pad, h, w)
    _tensor("reflect_pad_bwd", "grad", grad, (n, c, h + 2 * pad, w + 2 * pad), layout="channels-last")
    dx = torch.empty((n, c, h, w), memory_format=torch.channels_last)
    _core().reflect_pad_bwd(grad.data_ptr(), dx.data_ptr(), n, h, w, c, pad, torch.get_num_threads())
    return dx


def upsample_bilinear_bwd(grad, shape):
    """Gradient of bilinear upsampling (align_corners=True) to grad's size, for an input of
    ``shape``; grad channels-last N x C x OH x OW (same N and C)."""
    n, c, h, w = _shape4("upsample_bilinear_bwd", shape)
    gn, gc, oh, ow = _nhwc("upsample_bilinear_bwd", "grad", grad)
    if (gn, gc) != (n, c) or oh < 1 or ow < 1:
        raise ValueError(f"upsample_bilinear_bwd: grad must be N x C x OH x OW with the (N, C) = {(n, c)} "
                         f"of shape, got {tuple(grad.shape)}")
    dx = torch.empty((n, c, h, w), memory_format=torch.channels_last)
    _core().upsample_bilinear_bwd(grad.data_ptr(), dx.data_ptr(), n, h, w, oh, ow, c, torch.get_num_threads())
    return dx
