"""The skip encoder-decoder generator (ALGORITHM.md section 2)."""
from __future__ import annotations

import torch
from torch import nn

from doubledip.engine.config import UNetConfig


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv with bias; kernels > 1 are preceded by reflection padding of (k - 1) // 2."""
    layers: list[nn.Module] = []
    if kernel > 1:
        layers.append(nn.ReflectionPad2d((kernel - 1) // 2))
    layers.append(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=0, bias=True))
    return nn.Sequential(*layers)


def _centre_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    dh, dw = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return x[:, :, dh:dh + h, dw:dw + w]


class _Level(nn.Module):
    """One encoder-decoder level: deep branch (down, deeper levels, up), optional skip, merge."""

    def __init__(self, c_in: int, cfg: UNetConfig, i: int):
        super().__init__()
        d, u, s = cfg.channels[i], cfg.channels[i], cfg.skip_channels[i]
        k = cfg.kernel_size
        self.down = nn.Sequential(
            _conv(c_in, d, k, stride=2), nn.BatchNorm2d(d), _act(),
            _conv(d, d, k), nn.BatchNorm2d(d), _act())
        self.deeper = _Level(d, cfg, i + 1) if i + 1 < cfg.depth else None
        deep_out = cfg.channels[i + 1] if self.deeper is not None else d
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.skip = nn.Sequential(_conv(c_in, s, 1), nn.BatchNorm2d(s), _act()) if s > 0 else None
        # The BN over the merged channels exists even without a skip branch.
        self.merge = nn.Sequential(
            nn.BatchNorm2d(s + deep_out),
            _conv(s + deep_out, u, k), nn.BatchNorm2d(u), _act(),
            _conv(u, u, 1), nn.BatchNorm2d(u), _act())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = self.up(y)
        if self.skip is not None:
            s = self.skip(x)
            h, w = min(s.shape[2], y.shape[2]), min(s.shape[3], y.shape[3])
            y = torch.cat([_centre_crop(s, h, w), _centre_crop(y, h, w)], dim=1)
        return self.merge(y)


class SkipUNet(nn.Module):
    """Skip U-Net: N x Cin x H x W -> N x Cout x H x W in (0, 1); H, W divisible by 2^levels.

    BatchNorm always uses batch statistics (the method never switches to eval mode): ``eval()``
    is overridden to keep it that way.
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        self.body = _Level(cfg.in_channels, cfg, 0)
        self.head = nn.Conv2d(cfg.channels[0], cfg.out_channels, 1, bias=True)
        self.memory_format = torch.contiguous_format

    def set_memory_format(self, memory_format: torch.memory_format) -> "SkipUNet":
        """Store weights and run activations in ``memory_format`` (channels-last: the same
        function, about 30% faster convolutions on CPU)."""
        self.memory_format = memory_format
        return self.to(memory_format=memory_format)

    def train(self, mode: bool = True) -> "SkipUNet":
        # Batch statistics always: the reference never uses running statistics.
        return super().train(True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        m = self.config.size_multiple
        if z.dim() != 4 or z.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected input of shape N x {self.config.in_channels} x H x W, got {tuple(z.shape)}")
        if z.shape[2] % m or z.shape[3] % m:
            raise ValueError(f"H and W must be divisible by {m}, got {tuple(z.shape[2:])}")
        z = z.contiguous(memory_format=self.memory_format)
        return torch.sigmoid(self.head(self.body(z)))
