"""What every task shares: device and seed handling, nets built reproducibly, noise inputs,
per-iteration perturbation, padding to the size the nets need, conversion of results."""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from doubledip.engine.config import SolverConfig, UNetConfig
from doubledip.engine.inputs import all_augmentations, crop, noise_input, reflect_pad
from doubledip.engine.solver import Problem, ProgressReporter, derive_seed
from doubledip.kernels import perturb


def resolve(config: SolverConfig | None, **shortcuts) -> SolverConfig:
    """The config with keyword shortcuts (iterations=..., seed=...) applied."""
    if config is None:
        config = SolverConfig()
    elif not isinstance(config, SolverConfig):
        raise TypeError(f"config must be a doubledip.SolverConfig, got {type(config).__name__}")
    changes = {k: v for k, v in shortcuts.items() if v is not None}
    return config.replace(**changes) if changes else config


class ImageProblem(Problem):
    """Base of the tasks' problems: a seed, a device and a padded working size."""

    def __init__(self, seed: int, device: torch.device, size: tuple[int, int], net_configs: list[UNetConfig]):
        self.seed = seed
        self.device = device
        self.size = size  # the caller's (H, W)
        # pad to what the most demanding net needs
        hs, ws = zip(*(cfg.padded_size(*size) for cfg in net_configs))
        self.padded = (max(hs), max(ws))
        self.generator = torch.Generator().manual_seed(derive_seed(seed, 1))

    def build(self, configs: dict[str, UNetConfig]) -> nn.ModuleDict:
        """The nets, initialised from this problem's seed (PyTorch default init), on the device."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, 2))
            nets = nn.ModuleDict({name: cfg.build() for name, cfg in configs.items()})
        return nets.to(self.device)

    def noise(self, channels: int, var: float = 1 / 100) -> torch.Tensor:
        return noise_input(channels, *self.padded, var, self.generator, self.device)

    def noise_augmented(self, channels: int, var: float = 1 / 100) -> list[torch.Tensor]:
        return all_augmentations(self.noise(channels, var))

    def perturbed(self, z: torch.Tensor, sigma: float, *keys: int) -> torch.Tensor:
        """``z + sigma * N(0, 1)``, the noise fixed by (seed, keys)."""
        return perturb(z, sigma, derive_seed(self.seed, 3, *keys))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return reflect_pad(x, *self.padded)[0]

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return crop(x, self._offset(), *self.size)

    def _offset(self) -> tuple[int, int]:
        return ((self.padded[0] - self.size[0]) // 2, (self.padded[1] - self.size[1]) // 2)

    def fitted(self, inputs: dict[str, torch.Tensor]) -> dict:
        """What export needs: the nets and each net's fixed (un-augmented, unperturbed) input."""
        return {"nets": self.nets, "inputs": {k: v.detach() for k, v in inputs.items()},
                "size": self.size, "padded": self.padded, "offset": self._offset()}


def hwc(x: torch.Tensor) -> np.ndarray:
    """1 x C x H x W tensor -> H x W x C (C = 3) or H x W (C = 1) float32 array."""
    arr = x.detach()[0].float().cpu().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


@contextmanager
def timed_run(config: SolverConfig, total: int, label: str):
    """A progress reporter for one call, closed on exit; yields (reporter, clock start)."""
    reporter = ProgressReporter(config, total, label)
    start = time.perf_counter()
    try:
        yield reporter, start
    finally:
        reporter.close()
