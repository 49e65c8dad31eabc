"""The skip encoder-decoder generator (ALGORITHM.md section 2), alone or as K coupled copies.

``SkipUNet(cfg, copies=K)`` runs K generators of one architecture (separate weights) as one
module: every convolution is grouped (``groups=K``), every BatchNorm spans the K copies'
channels (its statistics are per channel, so per copy), and the skip concatenation interleaves
per copy. Input ``N x (K * Cin) x H x W``, output ``N x (K * Cout) x H x W``, copy ``k`` in the
channel block ``k``. One launch per layer serves all copies; ``K = 1`` is the plain generator.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from doubledip.engine.config import UNetConfig


def _act() -> nn.Module:
    # In place: every activation follows a BatchNorm, whose backward needs its input, not its
    # output; LeakyReLU's backward can use its own output (slope 0.2 > 0). Same numbers, one
    # full-size tensor less per activation kept for the backward.
    return nn.LeakyReLU(0.2, inplace=True)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1, copies: int = 1) -> nn.Sequential:
    """Conv with bias (per copy: c_in -> c_out); kernels > 1 are preceded by reflection padding of
    (k - 1) // 2. The weight has shape (copies * c_out, c_in, k, k): copy k's weights are rows
    k * c_out ... (k + 1) * c_out - 1, so stacking K plain convs along dim 0 gives the grouped one."""
    layers: list[nn.Module] = []
    if kernel > 1:
        layers.append(nn.ReflectionPad2d((kernel - 1) // 2))
    layers.append(nn.Conv2d(copies * c_in, copies * c_out, kernel, stride=stride, padding=0, bias=True,
                            groups=copies))
    return nn.Sequential(*layers)


def _bn(c: int, copies: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(copies * c)


def _centre_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    dh, dw = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, dh:dh + h, dw:dw + w]


def _concat_per_copy(a: torch.Tensor, b: torch.Tensor, copies: int) -> torch.Tensor:
    """[a_k, b_k] for each copy k: N x K*Ca x H x W, N x K*Cb x H x W -> N x K*(Ca+Cb) x H x W."""
    if copies == 1:
        return torch.cat([a, b], dim=1)
    n, _, h, w = a.shape
    return torch.cat([a.reshape(n, copies, -1, h, w), b.reshape(n, copies, -1, h, w)], dim=2).reshape(n, -1, h, w)


class _Level(nn.Module):
    """One encoder-decoder level: deep branch (down, deeper levels, up), optional skip, merge."""

    def __init__(self, c_in: int, cfg: UNetConfig, i: int, copies: int):
        super().__init__()
        d, u, s = cfg.channels[i], cfg.channels[i], cfg.skip_channels[i]
        k, K = cfg.kernel_size, copies
        self.copies = copies
        self.recompute_merge = False  # see SkipUNet.set_low_memory
        self.down = nn.Sequential(
            _conv(c_in, d, k, 2, K), _bn(d, K), _act(),
            _conv(d, d, k, 1, K), _bn(d, K), _act())
        self.deeper = _Level(d, cfg, i + 1, K) if i + 1 < cfg.depth else None
        deep_out = cfg.channels[i + 1] if self.deeper is not None else d
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.skip = nn.Sequential(_conv(c_in, s, 1, 1, K), _bn(s, K), _act()) if s > 0 else None
        # The BN over the merged channels exists even without a skip branch.
        self.merge = nn.Sequential(
            _bn(s + deep_out, K),
            _conv(s + deep_out, u, k, 1, K), _bn(u, K), _act(),
            _conv(u, u, 1, 1, K), _bn(u, K), _act())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = self.up(y)
        if self.skip is not None:
            s = self.skip(x)
            h, w = min(s.shape[2], y.shape[2]), min(s.shape[3], y.shape[3])
            y = _concat_per_copy(_centre_crop(s, h, w), _centre_crop(y, h, w), self.copies)
        if self.recompute_merge and torch.is_grad_enabled():
            # keep only the block's input; its activations are recomputed in the backward
            # (BatchNorm recomputes the same batch statistics: the same function)
            return checkpoint(self.merge, y, use_reentrant=False)
        return self.merge(y)


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
        self.head = nn.Conv2d(copies * cfg.channels[0], copies * cfg.out_channels, 1, bias=True, groups=copies)
        self.memory_format = torch.contiguous_format

    def set_memory_format(self, memory_format: torch.memory_format) -> "SkipUNet":
        """Store weights and run activations in ``memory_format`` (channels-last: the same
        function, about 30% faster convolutions on CPU)."""
        self.memory_format = memory_format
        return self.to(memory_format=memory_format)

    def set_low_memory(self, enabled: bool) -> "SkipUNet":
        """Recompute the full-resolution merge block (level 0, the largest activations) in the
        backward instead of keeping it: less memory, about 20% more time per step."""
        self.body.recompute_merge = bool(enabled)
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
