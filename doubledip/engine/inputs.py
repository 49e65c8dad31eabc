"""Noise inputs, the meshgrid input, dihedral augmentations, reflection padding (sec. 3)."""
from __future__ import annotations

import torch

N_AUGMENTATIONS = 8


def noise_input(channels: int, h: int, w: int, var: float, generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """``U(-0.5, 0.5) * var`` of shape 1 x channels x h x w, drawn on the CPU (device-independent)."""
    z = (torch.rand((1, channels, h, w), generator=generator) - 0.5) * var
    return z.to(device)


def meshgrid_input(channels: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """1 x channels x h x w: channels alternate x (column) and y (row) coordinates in [0, 1]."""
    if channels % 2:
        raise ValueError(f"a meshgrid input needs an even channel count, got {channels}")
    ys = torch.arange(h, dtype=torch.float32) / max(h - 1, 1)
    xs = torch.arange(w, dtype=torch.float32) / max(w - 1, 1)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y] * (channels // 2)).unsqueeze(0).to(device)


def augment(x: torch.Tensor, index: int) -> torch.Tensor:
    """The ``index``-th dihedral transform over the last two dims: rot90^k for k = index % 4,
    applied to ``x`` (index < 4) or to ``x`` flipped upside down (index >= 4)."""
    if not 0 <= index < N_AUGMENTATIONS:
        raise ValueError(f"augmentation index must be in [0, 8), got {index}")
    if index >= 4:
        x = torch.flip(x, dims=(-2,))
    return torch.rot90(x, index % 4, dims=(-2, -1))


def unaugment(x: torch.Tensor, index: int) -> torch.Tensor:
    """Inverse of :func:`augment`."""
    if not 0 <= index < N_AUGMENTATIONS:
        raise ValueError(f"augmentation index must be in [0, 8), got {index}")
    x = torch.rot90(x, -(index % 4), dims=(-2, -1))
    return torch.flip(x, dims=(-2,)) if index >= 4 else x


def all_augmentations(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 transforms of ``x``, contiguous (pre-computed once per run)."""
    return [augment(x, i).contiguous() for i in range(N_AUGMENTATIONS)]


class Augmentations:
    """The 8 transforms of ``x`` made on demand: ``aug[i]`` equals ``all_augmentations(x)[i]``
    (a contiguous copy; ``aug[0]`` is ``x`` itself), without keeping 8 copies alive. A transform
    is a permutation of the elements, so each step costs one copy of ``x`` (a millisecond at
    512 x 512) instead of 7 resident copies per tensor for the whole run."""

    def __init__(self, x: torch.Tensor):
        self.base = x

    def __len__(self) -> int:
        return N_AUGMENTATIONS

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 0:
            return self.base
        return augment(self.base, index).contiguous()


def reflect_indices(n: int, before: int, after: int, device=None) -> torch.Tensor:
    """Indices into a length-``n`` axis that pad it by mirror reflection (edge not repeated),
    for any pad width (reflecting back and forth when the pad exceeds the axis)."""
    idx = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def reflect_pad(x: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` (... x H x W) by reflection, centred, to h x w. Returns (padded, (top, left))."""
    H, W = x.shape[-2:]
    top, left = (h - H) // 2, (w - W) // 2
    if (h, w) == (H, W):
        return x, (0, 0)
    rows = reflect_indices(H, top, h - H - top, x.device)
    cols = reflect_indices(W, left, w - W - left, x.device)
    return x.index_select(-2, rows).index_select(-1, cols), (top, left)


def crop(x: torch.Tensor, offset: tuple[int, int], h: int, w: int) -> torch.Tensor:
    """Undo :func:`reflect_pad`: the h x w window at ``offset``."""
    top, left = offset
    return x[..., top:top + h, left:left + w]
