"""What every task shares: device and seed handling, coupled nets built reproducibly, noise
inputs, per-iteration perturbation, padding to the size the nets need, conversion of results.

A problem holds ``B >= 1`` independent images of one size (``dd.batch``; a plain call is B = 1).
Every image has its own seed, nets and noise, exactly as if run alone. Same-architecture nets
(the coupled layer generators of one image, and the same net across the B images) run as one
grouped :class:`SkipUNet`; losses are summed over images, so each image's gradients — and, Adam
being elementwise, its updates — are those of its own problem.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from doubledip.engine.config import SolverConfig, UNetConfig
from doubledip.engine.inputs import Augmentations, crop, noise_input, reflect_pad
from doubledip.engine.io import describe_input
from doubledip.engine.results import describe_run
from doubledip.engine.solver import Problem, ProgressReporter, RunContext, Snapshot, derive_seed
from doubledip.engine.nets.unet import SkipUNet
from doubledip.kernels import perturb


def resolve(config: SolverConfig | None, inputs: dict | None = None, **shortcuts) -> SolverConfig:
    """The config with keyword shortcuts (iterations=..., seed=...) applied.

    ``inputs`` (name -> value) are the call's images and hints: a SolverConfig among them was put
    in an input's place, which gets a TypeError saying where the config goes (every task takes
    it right after its required inputs, or as ``config=``)."""
    for name, value in (inputs or {}).items():
        if isinstance(value, SolverConfig):
            raise TypeError(f"{name} is a SolverConfig; expected an image or map there. Every task takes "
                            f"its config right after its required inputs or as config=..., and hints "
                            f"and options as keywords (e.g. dd.segment(image, config, fg_hint=..., bg_hint=...))")
    if config is None:
        config = SolverConfig()
    elif not isinstance(config, SolverConfig):
        raise TypeError(f"config must be a doubledip.SolverConfig, got {type(config).__name__}; a task takes "
                        f"its required inputs positionally, then the config, and hints and options as "
                        f"keywords (e.g. dd.segment(image, config, fg_hint=..., bg_hint=...))")
    changes = {k: v for k, v in shortcuts.items() if v is not None}
    return config.replace(**changes) if changes else config


# export's note (manifest "not_included") for tasks whose result fields are the best-tracked outputs
BEST_TRACKED = ("the nets as the run ended: the result fields hold the outputs of the best-scoring tracked "
                "iteration, and the files hold that iteration's generators (its weights, before the "
                "solver's update, and the inputs it ran on), which give those outputs")
# the same for fast-mode separation, whose layers are an average of outputs (SeparationProblem)
AVERAGED = ("the result's layers: fast mode returns a moving average of the layers of the tracked "
            "iterations, which no single set of weights outputs (the nets with averaged weights output "
            "other layers, 0.17 dB worse on one of six texture runs: "
            "benchmarks/experiments/fast_weight_average.py); "
            "the files hold the generators of the average's newest term, the last tracked iteration "
            "(its weights, before the solver's update, and the inputs it ran on), whose layers differ "
            "from the result's")

# what a step called without the solver's context runs: the eager float32 nets
PLAIN_RUN = RunContext()


class ImageProblem(Problem):
    """Base of the tasks' problems: per-image seeds, a device, a padded working size, net groups."""

    def __init__(self, seeds: list[int], device: torch.device, size: tuple[int, int], net_configs: list[UNetConfig]):
        self.seeds = [int(s) for s in seeds]
        self.batch = len(self.seeds)
        self.device = device
        self.size = size  # the caller's (H, W)
        # pad to what the most demanding net needs
        hs, ws = zip(*(cfg.padded_size(*size) for cfg in net_configs))
        self.padded = (max(hs), max(ws))
        self.generators = [torch.Generator().manual_seed(derive_seed(s, 1)) for s in self.seeds]

    def build(self, groups: dict[str, tuple[UNetConfig, list[str]]]) -> None:
        """Create the nets: ``groups`` maps a group name to (config, member names). Each image's
        nets are initialised from its own seed (PyTorch default init), member by member in the
        order given; each group then runs as one grouped generator of B x members copies."""
        per_image = []
        for seed in self.seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, 2))
                per_image.append({name: SkipUNet(cfg) for cfg, names in groups.values() for name in names})
        self.members = {g: list(names) for g, (_, names) in groups.items()}
        self._unbound = None  # plain copies of the nets, made by fitted() after the run
        self.nets = nn.ModuleDict({
            g: SkipUNet.stack([per_image[b][name] for b in range(self.batch) for name in names])
            for g, (_, names) in groups.items()}).to(self.device)

    def merge_groups(self, first: str, second: str, into: str) -> None:
        """From now on run two groups of one config as one (per image: the members of ``first``,
        then those of ``second``): one launch per layer instead of two. The same function: each
        copy keeps its weights and buffers, BatchNorm statistics are per channel. Meant for a
        stage boundary, where the solver starts a fresh Adam (a stacked tensor has one step
        count, so the members must share it)."""
        plain = {g: self.nets[g].unbind() for g in (first, second)}
        counts = {g: len(self.members[g]) for g in (first, second)}
        order = [net for b in range(self.batch) for g in (first, second)
                 for net in plain[g][b * counts[g]:(b + 1) * counts[g]]]
        self.members[into] = self.members.pop(first) + self.members.pop(second)
        del self.nets[first], self.nets[second]
        self.nets[into] = SkipUNet.stack(order)
        self._unbound = None

    def generate(self, group: str, inputs: list[torch.Tensor], ctx: RunContext | None = None) -> list[torch.Tensor]:
        """Run a group: one B x Cin x H x W input per member -> one B x Cout x H x W output per
        member; ``ctx`` (the solver's) says whether to run compiled and in which precision."""
        ctx = ctx or PLAIN_RUN
        net = self.nets[group] if ctx.compiled is None else ctx.compiled[group]
        members = len(self.members[group])
        if len(inputs) != members:
            raise ValueError(f"group {group!r} has {members} members, got {len(inputs)} inputs")
        B, _, H, W = inputs[0].shape
        x = torch.stack(inputs, 1).reshape(1, -1, H, W)  # copy index = b * members + m
        if ctx.autocast_dtype is None:
            y = net(x)
        else:  # low-precision generators; the losses stay in float32
            with torch.autocast(x.device.type, dtype=ctx.autocast_dtype):
                y = net(x)
            y = y.float()
        y = y.reshape(B, members, -1, H, W)
        return [y[:, m] for m in range(members)]

    def noise(self, channels: int, var: float = 1 / 100) -> torch.Tensor:
        """B x channels x Hp x Wp: ``U(-0.5, 0.5) * var``, each image from its own generator."""
        return torch.cat([noise_input(channels, *self.padded, var, g, self.device) for g in self.generators])

    def noise_augmented(self, channels: int, var: float = 1 / 100) -> Augmentations:
        """The noise input's 8 augmentations, each made when indexed (see Augmentations)."""
        return Augmentations(self.noise(channels, var))

    def perturbed(self, z: torch.Tensor, sigma: float, *keys: int) -> torch.Tensor:
        """``z + sigma * N(0, 1)`` (z: B x C x H x W), image b's noise fixed by (its seed, keys)."""
        if float(sigma) == 0.0:
            return z
        if self.batch == 1:
            return perturb(z, sigma, derive_seed(self.seeds[0], 3, *keys))
        return torch.cat([perturb(z[b:b + 1], sigma, derive_seed(s, 3, *keys)) for b, s in enumerate(self.seeds)])

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return reflect_pad(x, *self.padded)[0]

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return crop(x, self._offset(), *self.size)

    def _offset(self) -> tuple[int, int]:
        return ((self.padded[0] - self.size[0]) // 2, (self.padded[1] - self.size[1]) // 2)

    def fitted(self, inputs: dict[str, torch.Tensor], b: int = 0, made: Snapshot | None = None) -> dict:
        """What export needs for image b: each net as a plain generator, the 1 x Cin x Hp x Wp
        input it ran on and the augmentation that input went through.

        inputs: name -> B x Cin x Hp x Wp, the fixed (un-augmented, unperturbed) inputs. made:
        what made the result (a :class:`Snapshot` taken in the step whose outputs the result
        holds: its weights, its inputs where they are not the fixed ones, e.g. perturbed, and
        its augmentation); None: the nets as they are now on their fixed inputs.
        Returns nets, inputs, augmentation (name -> index), noise (name -> the fixed input,
        for the nets whose input differs from it), size, padded, offset.
        """
        source = None if made is None else made.weights
        if self._unbound is None or self._unbound[0] is not source:
            # once per problem: a batch's B results share the copies
            self._unbound = (source, {group: self._plain(group, source) for group in self.members})
        plain = {}
        for group, names in self.members.items():
            for m, name in enumerate(names):
                plain[name] = self._unbound[1][group][b * len(names) + m]
        order = [n for n in inputs if n in plain] + [n for n in plain if n not in inputs]
        nets = nn.ModuleDict({name: plain[name] for name in order})  # in the order of the inputs
        fixed = {k: v[b:b + 1].detach() for k, v in inputs.items()}
        used, noise, index = dict(fixed), {}, 0
        if made is not None:
            unknown = sorted(set(made.inputs) - set(fixed))
            if unknown:
                raise ValueError(f"fitted: the snapshot has inputs {unknown} that are not among the "
                                 f"fixed inputs {sorted(fixed)}")
            for name, z in made.inputs.items():
                used[name] = z[b:b + 1].detach()
                if not torch.equal(used[name], fixed[name]):  # e.g. unperturbed at the last step
                    noise[name] = fixed[name]
            index = int(made.augmentation[b])  # a host read, once per result
        return {"nets": nets, "inputs": used, "augmentation": {name: index for name in nets},
                "noise": noise, "size": self.size, "padded": self.padded, "offset": self._offset()}

    def _plain(self, group: str, weights: dict | None) -> list[SkipUNet]:
        """The group's B x members copies as plain generators, with ``weights`` (a Snapshot's:
        state-dict names of ``self.nets``) or the current ones (None)."""
        net = self.nets[group]
        if weights is not None:
            prefix = group + "."
            state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            first = next(net.parameters())
            net = SkipUNet(net.config, copies=net.copies).to(device=first.device, dtype=first.dtype)
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:  # a snapshot of other nets (taken before a merge_groups)
                raise ValueError(f"fitted: the snapshot's weights do not fit group {group!r}: {exc}") from None
        return net.unbind()


def hwc(x: torch.Tensor) -> np.ndarray:
    """1 x C x H x W (or C x H x W) tensor -> H x W x C (C = 3) or H x W (C = 1) float32 array."""
    x = x.detach()
    if x.dim() == 4:
        x = x[0]
    arr = x.float().cpu().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def item_history(history: list[dict], b: int) -> list[dict]:
    """Image b's view of a batched run's history (per-image PSNR lists resolved to b's value)."""
    return [{k: (v[b] if isinstance(v, list) else v) for k, v in rec.items()} for rec in history]


def same_size(images: list[torch.Tensor], names: list[str]) -> None:
    """Raise ValueError unless all images (1 x C x H x W) share one H x W."""
    for name, im in zip(names[1:], images[1:]):
        if im.shape[-2:] != images[0].shape[-2:]:
            raise ValueError(f"all images must have one size: {names[0]} is {tuple(images[0].shape[-2:])}, "
                             f"{name} is {tuple(im.shape[-2:])} (H x W)")


@contextmanager
def timed_run(config: SolverConfig, total: int, label: str):
    """A progress reporter for one call, closed on exit; yields (reporter, clock start)."""
    reporter = ProgressReporter(config, total, label)
    start = time.perf_counter()
    try:
        yield reporter, start
    finally:
        reporter.close()


def bench_inputs(size: int, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The benchmark's random inputs: images (B x 3 x size x size, uniform, seed 0) and a hint
    mask (B x 1 x size x size, 1 over a central box)."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=gen).to(device)
    mask = torch.zeros(batch, 1, size, size, device=device)
    mask[..., size // 3: 2 * size // 3, size // 4: 3 * size // 4] = 1
    return images, mask


def described(results: list, device, run=None, **inputs) -> list:
    """``results`` (one per image) with the device the run used, each image's inputs and why the
    run ended (``run``: its reporter; None: no fit) recorded for result.json. ``inputs``: name ->
    one (value as the caller gave it, its loaded 1 x C x H x W tensor) per image, or None for an
    input not given."""
    per_image = [{name: describe_input(items[b][0], tuple(items[b][1].shape[-2:]))
                  for name, items in inputs.items() if items is not None} for b in range(len(results))]
    return describe_run(results, device, per_image, run)

