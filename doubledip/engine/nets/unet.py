"""The skip encoder-decoder generator (ALGORITHM.md section 2), alone or as K coupled copies.

``SkipUNet(cfg, copies=K)`` runs K generators of one architecture (separate weights) as one
module: every convolution is grouped (``groups=K``), every BatchNorm spans the K copies'
channels (its statistics are per channel, so per copy), and the skip concatenation interleaves
per copy. Input ``N x (K * Cin) x H x W``, output ``N x (K * Cout) x H x W``, copy ``k`` in the
channel block ``k``. One launch per layer serves all copies; ``K = 1`` is the plain generator.

The layers are PyTorch's, except where a same-function version is faster: BatchNorm with its
LeakyReLU, reflection padding and the upsampling's backward run on the C++ core for
channels-last float32 CPU data (``engine.nets.norm``, ``.padding``, ``.upsample``); 1x1 convolutions
as one GEMM (``engine.nets.pointwise``); the biases before a BatchNorm are not added (``_conv``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from doubledip.engine.config import UNetConfig
from doubledip.engine.nets.memory import fix_mmap_threshold, release_free_heap
from doubledip.engine.nets.norm import BatchNormAct2d
from doubledip.engine.nets.padding import ReflectionPad2d
from doubledip.engine.nets.pointwise import PointwiseConv2d
from doubledip.engine.nets.upsample import BilinearUpsample


def _bn_act(c: int, copies: int) -> list[nn.Module]:
    """BatchNorm + LeakyReLU(0.2) as one module (fused on the CPU, see ``engine.nets.norm``), then an
    empty slot where the activation module was: the Sequentials keep their indices, so the state
    dict keys and the low-memory segments below stay those of the plain layout.

    Unfused, the activation runs in place: BatchNorm's backward needs its input, not its output,
    and LeakyReLU's can use its own output (slope 0.2 > 0); one full-size tensor less is kept."""
    return [BatchNormAct2d(copies * c, slope=0.2), nn.Identity()]


class _ConvBeforeNorm(nn.Conv2d):
    """``nn.Conv2d`` whose bias parameter is kept but not added (see ``_conv``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, None)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, copies: int = 1) -> nn.Sequential:
    """Conv (per copy: c_in -> c_out); kernels > 1 are preceded by reflection padding of
    (k - 1) // 2. The weight has shape (copies * c_out, c_in, k, k): copy k's weights are rows
    k * c_out ... (k + 1) * c_out - 1, so stacking K plain convs along dim 0 gives the grouped one.

    Every such conv feeds a BatchNorm with batch statistics, which subtracts each channel's mean:
    a per-channel constant added before it cancels exactly, so the conv's bias has no effect on
    any output (and a zero gradient, of which PyTorch computes rounding noise that Adam then
    turns into a random walk of the unused bias). The bias parameter is kept (the published
    parameter counts, state dicts) but not added: no bias pass forward, no bias reduction
    backward, and the bias keeps its initial value (its gradient is None). The same function;
    outputs differ by rounding only (tests/test_unet.py)."""
    layers: list[nn.Module] = []
    if kernel > 1:
        layers.append(ReflectionPad2d((kernel - 1) // 2))
    if kernel == 1 and stride == 1:  # same init, parameters and function; one GEMM on channels-last
        layers.append(PointwiseConv2d(copies * c_in, copies * c_out, groups=copies, apply_bias=False))
    else:
        layers.append(_ConvBeforeNorm(copies * c_in, copies * c_out, kernel, stride=stride, padding=0, bias=True,
                                      groups=copies))
    return nn.Sequential(*layers)


def _bn(c: int, copies: int) -> BatchNormAct2d:
    """BatchNorm without an activation (the merge block's first)."""
    return BatchNormAct2d(copies * c, slope=None)


def _centre_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    dh, dw = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, dh:dh + h, dw:dw + w]


def _concat_per_copy(a: torch.Tensor, b: torch.Tensor, copies: int) -> torch.Tensor:
    """[a_k, b_k] for each copy k: N x K*Ca x H x W, N x K*Cb x H x W -> N x K*(Ca+Cb) x H x W."""
    # one cat of the per-copy channel slices: keeps the inputs' memory format (a 5-D reshape
    # would turn channels-last into contiguous, and every layer after it with it)
    return torch.cat([t for pair in zip(a.chunk(copies, 1), b.chunk(copies, 1)) for t in pair], dim=1)


class _Recompute(torch.autograd.Function):
    """``fn(*inputs)`` keeping only its inputs for the backward, which recomputes ``fn`` with
    gradients and back-propagates through the recomputed graph (activation checkpointing).

    The same function: BatchNorm in training mode recomputes the same batch statistics from the
    same inputs, and the running-statistics buffers of ``modules`` are put back after the
    recompute, so they are updated once per forward as without recomputation. The autocast
    state of the forward is re-entered for the recompute. Parameters are explicit inputs, so
    their gradients flow through autograd as usual. (Not ``torch.utils.checkpoint``: that
    imports ``torch._dynamo`` on first use, +150 MB of resident memory on the CPU.)

    On the CPU it also sets glibc's allocator up so that freed memory leaves the process
    (:mod:`doubledip.engine.nets.memory`): without that the heap's holes, not the live tensors, set
    the peak resident memory.
    """

    @staticmethod
    def forward(ctx, fn, modules, n_inputs, *args):
        ctx.fn, ctx.modules, ctx.n_inputs = fn, modules, n_inputs
        dev = args[0].device.type
        if dev == "cpu":
            fix_mmap_threshold()  # once per process
        ctx.autocast = (dev, torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        ctx.save_for_backward(*args[:n_inputs])
        return fn(*args[:n_inputs])

    @staticmethod
    def backward(ctx, grad):
        n = ctx.n_inputs
        if grad.device.type == "cpu":
            release_free_heap()  # what the previous segments freed, before this one's recompute
        needs = ctx.needs_input_grad[3:]
        inputs = [x.detach().requires_grad_(needs[i]) for i, x in enumerate(ctx.saved_tensors)]
        params = [p for m in ctx.modules for p in m.parameters()]
        buffers = [b for m in ctx.modules for b in m.buffers()]
        kept = [b.clone() for b in buffers]
        dev, enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(dev, dtype=dtype, enabled=enabled):
            out = ctx.fn(*inputs)
            total = out.sum()
        wrt = [t for t, need in zip(inputs + params, needs) if need]
        # grad_outputs=grad would be the plain call, but that imports sympy on first use (+32 MB
        # resident); the hook hands the incoming gradient to ``out`` exactly instead
        out.register_hook(lambda _: grad)
        grads = iter(torch.autograd.grad(total, wrt, allow_unused=True))
        with torch.no_grad():  # after the backward, which checks the running buffers it saved
            for b, k in zip(buffers, kept):
                b.copy_(k)
        return (None, None, None) + tuple(next(grads) if need else None for need in needs[:n + len(params)])


def _recompute(fn, modules: tuple[nn.Module, ...], *inputs: torch.Tensor) -> torch.Tensor:
    params = [p for m in modules for p in m.parameters()]
    return _Recompute.apply(fn, modules, len(inputs), *inputs, *params)


class _Level(nn.Module):
    """One encoder-decoder level: deep branch (down, deeper levels, up), optional skip, merge."""

    def __init__(self, c_in: int, cfg: UNetConfig, i: int, copies: int):
        super().__init__()
        d, u, s = cfg.channels[i], cfg.channels[i], cfg.skip_channels[i]
        k, K = cfg.kernel_size, copies
        self.copies = copies
        self.low_memory = False  # see SkipUNet.set_low_memory
        self.down = nn.Sequential(
            _conv(c_in, d, k, 2, K), *_bn_act(d, K),
            _conv(d, d, k, 1, K), *_bn_act(d, K))
        self.deeper = _Level(d, cfg, i + 1, K) if i + 1 < cfg.depth else None
        deep_out = cfg.channels[i + 1] if self.deeper is not None else d
        self.up = BilinearUpsample(2)
        self.skip = nn.Sequential(_conv(c_in, s, 1, 1, K), *_bn_act(s, K)) if s > 0 else None
        # The BN over the merged channels exists even without a skip branch.
        self.merge = nn.Sequential(
            _bn(s + deep_out, K),
            _conv(s + deep_out, u, k, 1, K), *_bn_act(u, K),
            _conv(u, u, 1, 1, K), *_bn_act(u, K))

    def _merge_in(self, x: Optional[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """Upsample the deep branch, add the skip branch: the merge block's input."""
        y = self.up(y)
        if self.skip is not None:
            s = self.skip(x)
            h, w = min(s.shape[2], y.shape[2]), min(s.shape[3], y.shape[3])
            y = _concat_per_copy(_centre_crop(s, h, w), _centre_crop(y, h, w), self.copies)
        return y

    def _merge_head(self, x: Optional[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        """Upsample, skip, and the merge block up to its k x k convolution."""
        return self.merge[1](self.merge[0](self._merge_in(x, y)))

    def _merge_tail(self, y: torch.Tensor) -> torch.Tensor:
        return self.merge[6](self.merge[5](self.merge[4](self.merge[3](self.merge[2](y)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.low_memory and torch.is_grad_enabled():
            return self._forward_recomputed(x)
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        return self.merge(self._merge_in(x, y))

    def _forward_recomputed(self, x: torch.Tensor) -> torch.Tensor:
        """The same function, keeping for the backward only each segment's inputs: the down path,
        the upsample + skip + merge up to the k x k convolution (from the small pre-upsample
        tensor), and the rest of the merge."""
        y = _recompute(self.down, (self.down,), x)
        if self.deeper is not None:
            y = self.deeper(y)
        if self.skip is not None:
            head = _recompute(self._merge_head, (self.skip, self.merge[0], self.merge[1]), x, y)
        else:
            head = _recompute(lambda t: self._merge_head(None, t), (self.merge[0], self.merge[1]), y)
        tail = (self.merge[2], self.merge[4], self.merge[5])
        return _recompute(self._merge_tail, tail, head)


class SkipUNet(nn.Module):
    """Skip U-Net(s): N x (K*Cin) x H x W -> N x (K*Cout) x H x W in (0, 1); H, W divisible by
    2^levels and at least ``cfg.min_size``.

    BatchNorm always uses batch statistics (the method never switches to eval mode): ``eval()``
    is overridden to keep it that way.
    """

    def __init__(self, cfg: UNetConfig, copies: int = 1):
        super().__init__()
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"copies must be an int >= 1, got {copies!r}")
        self.config = cfg
        self.copies = copies
        self.body = _Level(cfg.in_channels, cfg, 0, copies)
        self.head = PointwiseConv2d(copies * cfg.channels[0], copies * cfg.out_channels, groups=copies)
        self.memory_format = torch.contiguous_format

    def set_memory_format(self, memory_format: torch.memory_format) -> "SkipUNet":
        """Store weights and run activations in ``memory_format`` (channels-last: the same
        function, about 30% faster convolutions on CPU)."""
        self.memory_format = memory_format
        return self.to(memory_format=memory_format)

    def set_low_memory(self, enabled: bool, levels: Optional[int] = None) -> "SkipUNet":
        """Recompute activations in the backward instead of keeping them (the same function;
        less memory, more time per step): at each of the first ``levels`` levels (None: all),
        the down path, the upsample + merge up to its k x k convolution, and the merge's rest
        are each kept only as their inputs and recomputed in the backward."""
        level, i = self.body, 0
        while level is not None:
            level.low_memory = bool(enabled) and (levels is None or i < levels)
            level, i = level.deeper, i + 1
        return self

    def train(self, mode: bool = True) -> "SkipUNet":
        # Batch statistics always: the reference never uses running statistics.
        return super().train(True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        m, c_in = self.config.size_multiple, self.copies * self.config.in_channels
        if z.dim() != 4 or z.shape[1] != c_in:
            raise ValueError(f"expected input of shape N x {c_in} x H x W, got {tuple(z.shape)}")
        if z.shape[2] % m or z.shape[3] % m:
            raise ValueError(f"H and W must be divisible by {m}, got {tuple(z.shape[2:])}")
        z = z.contiguous(memory_format=self.memory_format)
        return torch.sigmoid(self.head(self.body(z)))

    @classmethod
    def stack(cls, nets: list["SkipUNet"]) -> "SkipUNet":
        """K plain generators of one config as one coupled module with the same weights."""
        if not nets or any(n.copies != 1 or n.config != nets[0].config for n in nets):
            raise ValueError("stack expects plain generators (copies=1) of one UNetConfig")
        first = next(nets[0].parameters())
        out = cls(nets[0].config, copies=len(nets)).to(device=first.device, dtype=first.dtype)
        states = [n.state_dict() for n in nets]
        out.load_state_dict({k: states[0][k] if v.dim() == 0 else torch.cat([s[k] for s in states], 0)
                             for k, v in states[0].items()})
        return out

    def unbind(self) -> list["SkipUNet"]:
        """The K copies as plain generators (weights copied)."""
        state = self.state_dict()
        nets = []
        for k in range(self.copies):
            net = SkipUNet(self.config).to(device=self.head.weight.device, dtype=self.head.weight.dtype)
            net.load_state_dict({n: v if v.dim() == 0 else v.chunk(self.copies, 0)[k] for n, v in state.items()})
            nets.append(net)
        return nets
