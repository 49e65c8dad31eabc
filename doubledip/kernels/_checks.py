"""Input checks shared by the public ops (a leaf). Invalid inputs raise for every backend, the
torch references included: TypeError for a wrong kind of value, ValueError for a wrong shape or
device, each naming what came and what was expected.
"""
from __future__ import annotations

import numbers

import torch


def floating_tensor(op: str, name: str, x) -> None:
    """``x`` must be a floating-point tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {x.dtype}")


def image_batch(op: str, name: str, x) -> None:
    """``x`` must be a floating-point N x C x H x W tensor."""
    floating_tensor(op, name, x)
    if x.dim() != 4:
        raise ValueError(f"{op}: {name} must be N x C x H x W (4-D), got shape {tuple(x.shape)}")


def like(op: str, name: str, x, ref_name: str, ref: torch.Tensor) -> None:
    """``x`` must be a floating-point tensor with ``ref``'s shape (batch size included) and device."""
    floating_tensor(op, name, x)
    if x.shape != ref.shape:
        raise ValueError(f"{op}: {name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(x.shape)}")
    same_device(op, name, x, ref_name, ref)


def same_device(op: str, name: str, x: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if x.device != ref.device:
        raise ValueError(f"{op}: {name} must be on the device of {ref_name} ({ref.device}), got {x.device}")


def real(x) -> bool:
    """Whether ``x`` is a real Python/NumPy number (bool excluded)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def integer(x) -> bool:
    """Whether ``x`` is a Python/NumPy integer (bool excluded)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)
