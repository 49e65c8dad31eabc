"""Video (ALGORITHM.md 6.7): layer separation, dehazing and segmentation of clips, one problem per clip.

A clip is an image task's problem with a frame axis, not a copy of it: the image task's Problem
class is subclassed with :class:`FrameAxis` in front, which changes what "an item of the batch"
means. In the image tasks the batch axis holds B independent images, each with its own nets; here
it holds frames of one clip, and

- the generators are one set (one per layer, and the mask's), shared by every frame: a
  frame-batched forward, its BatchNorm statistics taken over the frames of the step (as a net
  run on a batch computes them);
- every frame has its own noise input, temporally dependent (:func:`temporal_noise`);
- each step fits a mini-batch of frames ("chunk": a fixed, strided partition of the clip, so a
  chunk spans the clip and a long clip costs a bounded amount of memory per step), with one
  augmentation and one noise level for all of them: the image task's step, run on the chunk's
  slices of the clip's tensors (:meth:`FrameAxis.viewing`);
- results are kept per frame (best-tracked, averaged or latched, as the image task keeps them,
  in clip-sized stores that the image step updates through per-chunk views), and at the end of
  each stage every chunk is rendered at the final weights, as the image task's last iteration.

With a chunk of one frame and a clip of one frame, a step is the image task's step.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from doubledip.engine import checkpoint
from doubledip.engine.config import DEHAZE, LAYER5, SEGMENT, SolverConfig
from doubledip.engine.inputs import Augmentations
from doubledip.engine.losses import psnr
from doubledip.engine.io import describe_input
from doubledip.engine.post import dcp_transmission, estimate_airlight, guided_filter, resize
from doubledip.engine.results import (VideoDehazeResult, VideoSegmentationResult, VideoSeparationResult,
                                      describe_run, warn_short_run)
from doubledip.engine.solver import Step, run_problem, split_iterations
from doubledip.engine.tasks import dehazing, segmentation, separation
from doubledip.engine.tasks.common import PLAIN_RUN, resolve, timed_run
from doubledip.engine.tasks.registry import Evaluation, Input, Option, TaskSpec, register

# frames fitted per step (a chunk) unless frames_per_step says otherwise, per task, from
# benchmarks/experiments/video.md (6 frames at 128 x 128, 1 CPU thread): a step's time grows with
# its frames (2 frames: 1.5x, 3: 2.1x, 6: 3.7x), and one frame per step already gives separation
# and dehazing each frame the quality of a run on it alone, in the time of one such run, with the
# least flicker; segmentation's mask needs more frames per step (1: IoU 0.035 below a frame
# alone, 3: 0.023 below, at 2.5x its time)
DEFAULT_FRAMES_PER_STEP = {"separate_video": 1, "dehaze_video": 1, "segment_video": 3}
# fast-mode segmentation fits the frames in turn (benchmarks/experiments/video.md, "Fast mode:
# frames in turn"): the first frame as the image task's fast run, each next frame from the
# previous frame's nets and noise inputs for this share of the first frame's iterations (with
# its own hints: a short stage 1, then stage 2, in the image task's proportions of WARM_STAGES),
# then the first frame once more from the second's (it alone started from scratch)
WARM_SHARE = 0.28
WARM_STAGES = (20, 150)
# a clip's fits in turn take at most this many times the first frame's iterations in all, so
# the cost does not grow with the clip's length: longer clips give each frame a smaller share,
# down to MIN_WARM_SHARE (past that, about 20 frames, the cost grows again)
IN_TURN_BUDGET = 2.8
MIN_WARM_SHARE = 0.1
# frame 0's noise is this many times the image task's amplitude (ALGORITHM.md 6.7)
FIRST_FRAME_SCALE = 10.0
# the memory check leaves this share of the available memory to everything else
MEMORY_MARGIN = 0.8


# ---- the frame axis ------------------------------------------------------------------------

def temporal_noise(frames: int, channels: int, h: int, w: int, var: float, generator: torch.Generator,
                   device) -> torch.Tensor:
    """frames x channels x h x w noise inputs (ALGORITHM.md 6.7): frame 0 is
    ``U(-0.5, 0.5) * 10 * var``, each next frame the previous plus ``U(0, 1) * var`` (a random
    walk with a drift: neighbouring frames get nearby inputs). Drawn on the CPU."""
    first = (torch.rand((1, channels, h, w), generator=generator) - 0.5) * (FIRST_FRAME_SCALE * var)
    steps = torch.rand((frames - 1, channels, h, w), generator=generator) * var
    return torch.cat([first, first + steps.cumsum(0)]).to(device)


def frame_chunks(frames: int, per_step: int, device=None) -> list[torch.Tensor]:
    """The clip's frames in ceil(frames / per_step) chunks of at most ``per_step``, strided
    (chunk j: frames j, j + n, j + 2n, ...): every chunk spans the clip, so the BatchNorm
    statistics of the chunks differ little, and a frame is always rendered with the frames it
    was fitted with."""
    n = -(-frames // per_step)
    return [torch.arange(j, frames, n, device=device) for j in range(n)]


class _NoSnapshot:
    """Stands in for the image problems' export snapshot (video results are not exported)."""

    def update(self, *args, **kwargs) -> None:
        pass


_NO_SNAPSHOT = _NoSnapshot()


class _FrameView:
    """A chunk's view of a clip-sized store: what the image step calls ``update`` on."""

    def __init__(self, store, idx: torch.Tensor):
        self.store, self.idx, self.took = store, idx, None

    def update(self, *args) -> None:
        self.took = self.store.update_frames(self.idx, *args)

    @property
    def outputs(self):
        return None if self.store.outputs is None else {k: v[self.idx] for k, v in self.store.outputs.items()}


class FrameBest:
    """Per frame, the outputs with the highest PSNR seen (``BestTracker``'s rule: ``strict``, a
    NaN never replaces; a frame's first candidate is always taken), on the device; updated one
    chunk at a time. psnr: (T,); outputs: name -> T x C x H x W."""

    def __init__(self, frames: int, strict: bool = True):
        self.frames, self.strict = frames, strict
        self.psnr = self.outputs = self.seen = None

    def view_frames(self, idx: torch.Tensor) -> _FrameView:
        return _FrameView(self, idx)

    def _allocate(self, like: torch.Tensor, outputs: dict) -> None:
        self.psnr = torch.full((self.frames,), -math.inf, device=like.device)
        self.seen = torch.zeros(self.frames, dtype=torch.bool, device=like.device)
        self.outputs = {k: v.new_zeros((self.frames, *v.shape[1:])) for k, v in outputs.items()}

    def update_frames(self, idx: torch.Tensor, psnr: torch.Tensor, outputs: dict) -> torch.Tensor:
        """Keep ``outputs`` (name -> N x ...) of frames ``idx`` (N,) where ``psnr`` (N,) beats
        theirs; returns which did."""
        psnr = psnr.detach()
        if self.psnr is None:
            self._allocate(psnr, outputs)
        kept = self.psnr[idx]
        better = (psnr > kept if self.strict else psnr >= kept) | ~self.seen[idx]
        self.psnr[idx] = torch.where(better, psnr, kept)
        for k, v in outputs.items():
            self.outputs[k][idx] = torch.where(better.view(-1, *[1] * (v.dim() - 1)), v.detach(), self.outputs[k][idx])
        self.seen[idx] = True
        return better


class FrameAverage(FrameBest):
    """Per frame, an exponential moving average of the outputs (``OutputAverage``'s rule; a
    frame's first update sets it)."""

    def __init__(self, frames: int, decay: float):
        super().__init__(frames)
        self.decay = decay

    def update_frames(self, idx: torch.Tensor, outputs: dict) -> None:
        if self.outputs is None:
            self._allocate(next(iter(outputs.values())), outputs)
        fresh = ~self.seen[idx]
        for k, v in outputs.items():
            old = self.outputs[k][idx]
            avg = self.decay * old + (1.0 - self.decay) * v.detach()
            self.outputs[k][idx] = torch.where(fresh.view(-1, *[1] * (v.dim() - 1)), v.detach(), avg)
        self.seen[idx] = True


def _take(value: Any, idx: torch.Tensor, frames: int) -> Any:
    """``value``'s rows ``idx`` along the frame axis: tensors leading with ``frames`` rows (others,
    e.g. one airlight for the clip, as they are), Augmentations, lists, tuples and dicts of
    them, and clip-sized stores (their per-chunk views)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.index_select(0, idx) if value.dim() and value.shape[0] == frames else value
    if isinstance(value, Augmentations):
        # the transforms act on H x W only: augmenting the slice = slicing the augmented clip
        return Augmentations(_take(value.base, idx, frames))
    if isinstance(value, (list, tuple)):
        return type(value)(_take(v, idx, frames) for v in value)
    if isinstance(value, dict):
        return {k: _take(v, idx, frames) for k, v in value.items()}
    if hasattr(value, "view_frames"):
        return value.view_frames(idx)
    raise TypeError(f"cannot take frames of a {type(value).__name__}")


class FrameAxis:
    """Gives an image task's Problem a frame axis; put it first: ``class V(FrameAxis, XProblem)``.

    The subclass calls :meth:`_init_frames` before the image problem's ``__init__`` with the
    clip as its images (T x C x H x W) and one seed: the image problem then builds one set of
    nets (its batch of one), and its noise inputs come from :meth:`noise` (T frames). Each step
    runs the image problem's ``step`` on one chunk: the attributes named in ``frame_fields``
    (the clip's tensors and stores) are swapped for the chunk's slices for its duration.
    """

    frame_fields: tuple[str, ...] = ()
    # the image step's tracked iterations, k % track_every == track_offset (it takes result
    # candidates there, or checks a stopping rule): the chunk schedule gives them to every chunk
    # in turn
    track_every: int = 1
    track_offset: int = 0

    def _init_frames(self, frames: int, per_step: int, device) -> None:
        self.frame_count = int(frames)
        self.chunks = frame_chunks(self.frame_count, per_step, device)

    # -- the image problem's hooks, with the frame axis where its batch axis was

    def noise(self, channels: int, var: float = 1 / 100) -> torch.Tensor:
        """T x channels x Hp x Wp: :func:`temporal_noise`, from the clip's generator."""
        return temporal_noise(self.frame_count, channels, *self.padded, var, self.generators[0], self.device)

    def generate(self, group: str, inputs: list[torch.Tensor], ctx=None) -> list[torch.Tensor]:
        """Run a group on a chunk: one N x Cin x H x W input per member (1 x ...: shared by the N
        frames) -> one N x Cout x H x W output per member; frames on the batch axis."""
        ctx = ctx or PLAIN_RUN
        net = self.nets[group] if ctx.compiled is None else ctx.compiled[group]
        members = len(self.members[group])
        if len(inputs) != members:
            raise ValueError(f"group {group!r} has {members} members, got {len(inputs)} inputs")
        N = max(z.shape[0] for z in inputs)
        H, W = inputs[0].shape[-2:]
        # frame n's copy m reads channel block m (the grouped net's layout)
        x = torch.cat([z.expand(N, -1, -1, -1) for z in inputs], 1)
        if ctx.autocast_dtype is None:
            y = net(x)
        else:
            with torch.autocast(x.device.type, dtype=ctx.autocast_dtype):
                y = net(x)
            y = y.float()
        y = y.reshape(N, members, -1, H, W)
        return [y[:, m] for m in range(members)]

    # -- the chunk schedule

    def chunk_at(self, k: int) -> int:
        """The chunk of iteration ``k``: the tracked iterations cycle through the chunks, and so
        do the others, each stream in its own turn (a plain k % n would give every tracked
        iteration to one chunk when n divides track_every)."""
        n, te, off = len(self.chunks), self.track_every, self.track_offset
        tracked_up_to_k = (k - off) // te + 1 if k >= off else 0  # tracked iterations <= k
        if k >= off and (k - off) % te == 0:
            return (tracked_up_to_k - 1) % n
        return (k - tracked_up_to_k) % n  # untracked iterations before k

    @contextmanager
    def viewing(self, chunk: int, stage: int):
        """For the duration: ``frame_fields`` hold chunk ``chunk``'s frames."""
        idx = self.chunks[chunk]
        saved = {name: getattr(self, name) for name in self.frame_fields if hasattr(self, name)}  # hints: optional
        try:
            for name, value in saved.items():
                setattr(self, name, _take(value, idx, self.frame_count))
            yield idx
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    def step(self, stage: int, k: int, last: bool, log: bool = False, ctx=None) -> Step:
        with self.viewing(self.chunk_at(k), stage):
            out = super().step(stage, k, last, log, ctx)
        # history and the stopping rule see one PSNR: the mean over the step's frames
        return Step(out.loss, None if out.psnr is None else out.psnr.mean().reshape(1), out.terms)

    def render_iteration(self, stage: int) -> int:
        """The iteration index the stage-end render passes to the image step (the last)."""
        return self.stage_iterations[stage] - 1

    def render(self, stage: int) -> None:
        """Every chunk through the image step's last iteration at the final weights, without
        gradients: each frame gets the result candidate the image task's last iteration takes
        (the real last step covered one chunk, with the weights before its update)."""
        k = self.render_iteration(stage)
        with torch.no_grad():
            for chunk in range(len(self.chunks)):
                with self.viewing(chunk, stage):
                    super().step(stage, k, True, True, None)

    def end_stage(self, stage: int) -> None:
        self.render(stage)
        super().end_stage(stage)


class VideoSeparationProblem(FrameAxis, separation.SeparationProblem):
    """frames: T x 3 x H x W, one clip; per frame the best-tracked layers (fast mode: averaged)."""

    frame_fields = ("image", "targets", "inputs", "tracker", "average")
    track_every = separation.TRACK_EVERY

    def __init__(self, frames: torch.Tensor, iterations: tuple[int, ...], seed: int, fast: bool = False,
                 per_step: int = 1):
        self._init_frames(frames.shape[0], per_step, frames.device)
        super().__init__(frames, iterations, [seed], fast=fast)
        self.tracker = FrameBest(self.frame_count, strict=True)
        self.made = _NO_SNAPSHOT
        # a frame's average is updated once per len(chunks) tracked steps: the same window in
        # iterations as the image task's
        self.average = FrameAverage(self.frame_count, separation.FAST_AVERAGE_DECAY ** len(self.chunks)) if fast else None


class VideoDehazeProblem(FrameAxis, dehazing.DehazeProblem):
    """frames: T x 3 x h x w (working size); airlight0: 1 x 3, one for the clip."""

    frame_fields = ("image", "target", "t_prior", "inputs", "tracker")
    track_every = dehazing.TRACK_EVERY

    def __init__(self, frames, airlight0, learn_airlight, iterations, seed, per_step=1,
                 transmission_prior=None):
        self._init_frames(frames.shape[0], per_step, frames.device)
        super().__init__(frames, airlight0, learn_airlight, iterations, [seed], transmission_prior=transmission_prior)
        self.tracker = FrameBest(self.frame_count, strict=True)
        self.made = _NO_SNAPSHOT

    def render_iteration(self, stage: int) -> int:
        # the image step tracks iterations k % TRACK_EVERY == 0 only; ``last`` (passed by
        # render) sets the input noise to 0 whatever k is, and k's other use, the airlight
        # prior's window, is a loss term: the render's k is the last tracked one
        last = self.stage_iterations[stage] - 1
        return last - last % dehazing.TRACK_EVERY


class _LatchedFrames:
    """Segmentation's per-frame stage state: the current outputs and PSNR (T,), and in stage 2
    whether each frame has passed the stopping PSNR or (fast mode) its mask has settled (its
    outputs are then latched), and the binary mask of its last settle check."""

    def __init__(self):
        self.psnr = self.outputs = self.stopped = self.settle = None
        self.settle_seen: list[int] = []  # chunks with a settle check this stage
        # chunks stored this stage (host side: no device read; a list, which checkpoints keep)
        self.seen: list[int] = []


class VideoSegmentationProblem(FrameAxis, segmentation.SegmentationProblem):
    """frames: T x 3 x H x W; fg, bg: T x 1 x H x W hints or None."""

    frame_fields = ("image", "target", "fg", "bg", "mask_target", "inputs")

    def __init__(self, frames, fg, bg, iterations, seed, per_step=3, fast: bool = False):
        self._init_frames(frames.shape[0], per_step, frames.device)
        super().__init__(frames, fg, bg, iterations, [seed], fast=fast)
        # stage 2 takes a candidate every iteration; fast mode checks whether the mask has
        # settled at k % SETTLE_EVERY == SETTLE_EVERY - 1: those go to every chunk in turn
        if fast:
            self.track_every, self.track_offset = segmentation.SETTLE_EVERY, segmentation.SETTLE_EVERY - 1
        self.made = _NO_SNAPSHOT
        self.state = _LatchedFrames()

    @contextmanager
    def viewing(self, chunk: int, stage: int):
        # besides the frame fields, the image step's per-item state: its current outputs and
        # (stage 2) latch, the chunk's rows of the clip's; None where the chunk has none yet,
        # which makes the image step start them (its first iteration of the stage)
        with super().viewing(chunk, stage) as idx:
            s = self.state
            # (stage 1 reads its current outputs only where its result is the last iteration's)
            seen = stage == 1 and chunk in s.seen
            self.current = (s.psnr[idx], {n: v[idx] for n, v in s.outputs.items()}) if seen else None
            self.stopped = s.stopped[idx] if seen else None
            self.settle_mask = s.settle[idx] if stage == 1 and chunk in s.settle_seen else None
            self.made = _NO_SNAPSHOT
            try:
                yield idx
                if self.current is not None:
                    self._store(chunk, idx, stage)
            finally:
                self.current = self.stopped = self.settle_mask = None
                self.made = _NO_SNAPSHOT

    def _store(self, chunk: int, idx: torch.Tensor, stage: int) -> None:
        s, (psnr, outs) = self.state, self.current
        if s.outputs is None:
            T = self.frame_count
            s.psnr = torch.full((T,), -math.inf, device=psnr.device)
            s.outputs = {n: v.new_zeros((T, *v.shape[1:])) for n, v in outs.items()}
            s.stopped = torch.zeros(T, dtype=torch.bool, device=psnr.device)
        s.psnr[idx] = psnr.detach()
        for n, v in outs.items():
            s.outputs[n][idx] = v.detach()
        if stage == 1 and self.stopped is not None:
            s.stopped[idx] = self.stopped
        if stage == 1 and getattr(self, "settle_mask", None) is not None:  # fast mode's settle check ran
            if s.settle is None:
                s.settle = torch.zeros((self.frame_count, *self.settle_mask.shape[1:]), dtype=torch.bool,
                                       device=psnr.device)
            s.settle[idx] = self.settle_mask
            if chunk not in s.settle_seen:
                s.settle_seen.append(chunk)
        if chunk not in s.seen:
            s.seen.append(chunk)

    requested_stop_reason = "settled: every frame's mask stopped changing"

    def stop_requested(self, stage: int):
        s = self.state
        if stage == 1 and s.stopped is not None and len(s.seen) == len(self.chunks):
            return s.stopped.all()
        return None

    def end_stage(self, stage: int) -> None:
        self.render(stage)
        s = self.state
        self.current = (s.psnr, s.outputs)  # the clip's stage end, for the image problem's result()
        segmentation.SegmentationProblem.end_stage(self, stage)
        self.current, self.made, self.state = None, _NO_SNAPSHOT, _LatchedFrames()


# ---- memory ---------------------------------------------------------------------------------

# float32 values per padded pixel and frame that a run keeps for the whole clip (inputs, targets,
# noise inputs, per-frame result stores, the results' copies), and bytes per padded pixel and
# fitted frame that one step's forward and backward keep: peak RSS at 256 x 256, 6 and 24
# frames, 1 and 6 frames per step (measured 32 / 52 / 40 values and 2050 / 2650 / 2390 bytes),
# rounded up (benchmarks/experiments/video.md). Dehazing also keeps ~16 values per pixel and
# frame at the clip's own size (the input, J, t, A and the results), which can exceed its
# working size.
_CLIP_VALUES = {"separate_video": 40, "dehaze_video": 60, "segment_video": 48}
_STEP_BYTES = {"separate_video": 2600, "dehaze_video": 3000, "segment_video": 2800}
_FULL_SIZE_VALUES = {"dehaze_video": 16}
_NETS = {"separate_video": LAYER5, "dehaze_video": DEHAZE, "segment_video": SEGMENT}


def clip_bytes(task: str, frames: int, h: int, w: int, per_step: int) -> int:
    """An estimate of the memory a clip's run takes beyond the process's own (torch, the nets)."""
    full = frames * h * w * 4 * _FULL_SIZE_VALUES.get(task, 0)
    if task == "dehaze_video":
        h, w = dehazing.working_size(h, w)
    hp, wp = _NETS[task].padded_size(h, w)
    return int(full + frames * hp * wp * 4 * _CLIP_VALUES[task] + min(per_step, frames) * hp * wp * _STEP_BYTES[task])


def available_memory(device) -> int | None:
    """Bytes free for a run on ``device``: the GPU's free memory, or the host's MemAvailable
    (None where neither can be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(task: str, frames: int, h: int, w: int, per_step: int, device) -> None:
    """ValueError, before anything is allocated, where the clip's run would not fit in memory."""
    need = clip_bytes(task, frames, h, w, per_step)
    free = available_memory(device)
    if free is not None and need > MEMORY_MARGIN * free:
        raise ValueError(f"frames: a clip of {frames} frames at {h}x{w} needs about {need / 2**30:.2f} GiB for "
                         f"{task} ({min(per_step, frames)} frames per step), more than the "
                         f"{MEMORY_MARGIN * free / 2**30:.2f} GiB it may use of the {free / 2**30:.2f} GiB "
                         f"available on {torch.device(device)}; give fewer or smaller frames, or a smaller "
                         f"frames_per_step")


# ---- loading, results -----------------------------------------------------------------------

def _per_step(frames_per_step, task: str) -> int:
    if frames_per_step is None:
        return DEFAULT_FRAMES_PER_STEP[task]
    if isinstance(frames_per_step, bool) or not isinstance(frames_per_step, (int, np.integer)) or frames_per_step < 1:
        raise ValueError(f"frames_per_step must be an int >= 1, got {frames_per_step!r}")
    return int(frames_per_step)


def load_frames(frames, task: str, per_step: int, device):
    """The clip as (Clip, T x 3 x H x W float32 tensor on ``device``), its memory checked before
    its frames are decoded or stacked."""
    from doubledip.engine.video_io import load_clip

    clip = load_clip(frames, "frames", check=lambda T, h, w: check_memory(task, T, h, w, per_step, device))
    x = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).contiguous().to(device)
    return clip, x


def load_hints(hints, name: str, clip, device) -> torch.Tensor:
    """Per-frame hint maps as T x 1 x H x W on ``device`` (one per frame of ``clip``)."""
    from doubledip.engine.video_io import load_maps

    return torch.from_numpy(load_maps(hints, name, len(clip), clip.size))[:, None].to(device)


def frames_hwc(x: torch.Tensor) -> np.ndarray:
    """T x C x H x W tensor -> T x H x W x C (C = 3) or T x H x W (C = 1) float32 array."""
    arr = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(arr[..., 0] if arr.shape[3] == 1 else arr)


def _described(result, device, run, **inputs):
    """Record the device, why the run ended (``run``: its reporter) and, per input name, (value
    as given, its Clip) in result.json terms: path, size, frame count, frame rate."""
    described = {}
    for name, (value, clip) in inputs.items():
        if clip is not None:
            described[name] = dict(describe_input(value, clip.size), frames=len(clip), fps=clip.fps)
    return describe_run(result, device, described, run)


def _check_airlight(airlight) -> torch.Tensor | None:
    if airlight is None:
        return None
    a0 = np.asarray(airlight, dtype=np.float32)
    if a0.shape != (3,) or not np.isfinite(a0).all() or a0.min() < 0 or a0.max() > 1:
        raise ValueError(f"airlight must be 3 finite values in [0, 1], one for the clip, got {airlight!r}")
    return torch.from_numpy(a0)


def clip_airlight(frames: torch.Tensor) -> torch.Tensor:
    """One airlight for a clip (T x 3 x H x W -> (3,)): the per-channel median of the frames'
    dark-channel-prior estimates (robust to a frame whose brightest haze is occluded)."""
    return torch.stack([estimate_airlight(frames[t:t + 1]) for t in range(frames.shape[0])]).median(dim=0).values


# ---- the API --------------------------------------------------------------------------------

def separate_video(frames, config: SolverConfig | None = None, *, frames_per_step: int | None = None,
                   iterations: int | None = None, seed: int | None = None, device: str | None = None,
                   progress: bool | None = None) -> VideoSeparationResult:
    """Split every frame of a clip into two layers that add up to it (single-image separation,
    ALGORITHM.md 6.1, with two generators shared by all frames).

    frames: a video file, a folder of images, a list of images or a T x H x W x C array.
    frames_per_step: frames fitted per iteration (default 1; more: more memory and time per step).
    Returns ``layers`` (2 x T x H x W x 3, each at about half intensity) and ``reconstruction``
    (T x H x W x 3). Iterations, lr and fast mode as :func:`doubledip.separate`.
    """
    config = resolve(config, {"frames": frames}, iterations=iterations, seed=seed, device=device, progress=progress)
    per_step = _per_step(frames_per_step, "separate_video")
    dev = config.resolve_device()
    clip, x = load_frames(frames, "separate_video", per_step, dev)
    defaults = separation.SPEC.defaults_for(config.mode)
    stages = split_iterations(config.iterations, defaults.stages)
    with timed_run(config, sum(stages), "separate video") as (reporter, start):
        problem = VideoSeparationProblem(x, stages, config.seed, fast=config.mode == "fast", per_step=per_step)
        run_problem(problem, config, config.lr or defaults.lr, reporter)
        best = problem.result_layers()
        layers = [best["layer_0"], best["layer_1"]]
        result = VideoSeparationResult(
            task="separate_video", layers=[frames_hwc(l) for l in layers],
            reconstruction=frames_hwc((layers[0] + layers[1]).clamp(0, 1)), fps=clip.fps,
            history=reporter.history, seconds=time.perf_counter() - start, config=config)
    _described(result, dev, reporter, frames=(frames, clip))
    # as separate's: layers whose sum is far from the frames are not yet a decomposition
    sums = (layers[0] + layers[1]).clamp(0, 1)
    message = separation.short_run_message(float(psnr(x.flatten(0, 1)[None], sums.flatten(0, 1)[None])),
                                           reporter.done if reporter.stopped_at is None else reporter.stopped_at + 1)
    if message is not None:
        warn_short_run(result, message)
    return result


def _dehaze_pass(images, airlight0, learn, iterations, config, lr, reporter, pass_index, first_iteration, per_step):
    """One dehazing pass on a clip (T x 3 x H x W, full size), as ``dehazing._one_pass`` runs one
    on images: fitted at the working size, then t resized, refined per frame by a guided filter
    (reference mode), clipped to [0.1, 1]; J = (I - (1 - t) A) / t. Returns (J, t, A), T-leading."""
    H, W = images.shape[-2:]
    small = resize(images, *dehazing.working_size(H, W)).clamp(0, 1)
    fast = config.mode == "fast"
    prior = torch.cat([dcp_transmission(small[t:t + 1], airlight0) for t in range(len(small))]) if fast else None
    problem = VideoDehazeProblem(small, airlight0.reshape(1, 3), learn, (iterations,),
                                 config.seed + 1000003 * pass_index, per_step, transmission_prior=prior)
    run_problem(problem, config, lr, reporter, extra={"pass": pass_index}, first_iteration=first_iteration)
    best = problem.tracker.outputs
    t = resize(best["transmission"], H, W)
    A = resize(best["airlight"], H, W)
    if not fast:  # as the image task: fast mode keeps the net's own smooth t
        t = torch.cat([guided_filter(images[i:i + 1], t[i:i + 1], radius=50, eps=1e-4) for i in range(len(images))])
    t = t.clamp(0.1, 1.0)
    return ((images - (1 - t) * A) / t).clamp(0, 1), t, A


def dehaze_video(frames, config: SolverConfig | None = None, *, airlight=None, learn_airlight: bool = False,
                 passes: int | None = None, frames_per_step: int | None = None, keep_fit: bool = False,
                 method: str = "dip", iterations: int | None = None, seed: int | None = None,
                 device: str | None = None, progress: bool | None = None) -> VideoDehazeResult:
    """Remove the haze of a clip, ``I_t = t_t * J_t + (1 - t_t) * A`` (ALGORITHM.md 6.4), with one
    image net and one transmission net shared by all frames and one airlight for the clip.

    airlight: 3 values in [0, 1] (None: the median of the frames' dark-channel-prior
    estimates). learn_airlight, passes and fast mode as :func:`doubledip.dehaze`.
    frames_per_step: frames fitted per iteration (default 1).
    keep_fit: fast mode returns the dark channel prior run on each frame (with the clip's
    airlight) instead of the fit when the fit does not explain the clip better (one choice for the
    whole clip, :func:`doubledip.engine.tasks.dehazing.fit_or_classic`); ``method`` then says
    "dcp" and ``selection`` why. True: always the fit.
    method: ``"dip"`` (the fit) or ``"dcp"``: the dark channel prior run on each frame with the
    clip's airlight, no fit (a fraction of a second per frame; reference mode, the paper's two
    passes, measures below it: benchmarks/experiments/video.md).
    Returns ``image`` (T x H x W x 3), ``transmission`` (T x H x W), ``airlight`` (3,).
    """
    config = resolve(config, {"frames": frames, "airlight": airlight}, iterations=iterations, seed=seed,
                     device=device, progress=progress)
    defaults = dehazing.SPEC.defaults_for(config.mode)
    passes = defaults.passes if passes is None else passes
    if passes not in (1, 2):
        raise ValueError(f"passes must be 1 or 2, got {passes!r}")
    if method not in dehazing.METHODS:
        raise ValueError(f"dehaze_video: method must be one of {dehazing.METHODS}, got {method!r}")
    a0 = _check_airlight(airlight)
    per_step = _per_step(frames_per_step, "dehaze_video")
    dev = config.resolve_device()
    clip, x = load_frames(frames, "dehaze_video", per_step, dev)
    a0 = clip_airlight(x) if a0 is None else a0.to(dev)
    if method == "dcp":
        start = time.perf_counter()
        J, t, A = dehazing.dcp_frames(x, a0)
        result = VideoDehazeResult(
            task="dehaze_video", image=frames_hwc(J), transmission=frames_hwc(t),
            airlight=A.cpu().numpy().astype(np.float32), fps=clip.fps, method="dcp",
            selection="dcp: asked for (method='dcp')", seconds=time.perf_counter() - start, config=config)
        return _described(result, dev, None, frames=(frames, clip))
    stages = split_iterations(config.iterations, defaults.stages * passes)
    with timed_run(config, sum(stages), "dehaze video") as (reporter, start):
        current, A0 = x, a0
        for p, T in enumerate(stages):
            J, t, A = _dehaze_pass(current, A0, learn_airlight or p > 0, T, config, config.lr or defaults.lr,
                                   reporter, p, sum(stages[:p]), per_step)
            current, A0 = J, A.mean(dim=(0, 2, 3))  # the next pass learns A from this one's (its mean)
        A = A.mean(dim=(0, 2, 3))
        method, selection = "dip", ""
        if config.mode == "fast" and not keep_fit:
            keep, selection, classic = dehazing.fit_or_classic(x, t, A, a0)
            if not keep:
                (J, t, A), method = classic, "dcp"
        result = VideoDehazeResult(
            task="dehaze_video", image=frames_hwc(J), transmission=frames_hwc(t),
            airlight=A.cpu().numpy().astype(np.float32), fps=clip.fps, method=method, selection=selection,
            history=reporter.history, seconds=time.perf_counter() - start, config=config)
    return _described(result, dev, reporter, frames=(frames, clip))


def segment_video(frames, config: SolverConfig | None = None, *, fg_hints=None, bg_hints=None,
                  hints: str = "auto", method: str | None = None, frames_per_step: int | None = None,
                  iterations: int | None = None, seed: int | None = None, device: str | None = None,
                  progress: bool | None = None) -> VideoSegmentationResult:
    """Foreground/background segmentation of a clip (ALGORITHM.md 6.3) with two layer nets and a
    mask net shared by all frames.

    fg_hints, bg_hints: one map per frame (as the clip: a video file, a folder or list of maps, a
    T x H x W array), both or neither. hints: what runs when none are given, as in
    :func:`doubledip.segment`: ``"auto"`` (default) computes each frame's hints from its saliency
    map, as the image task does (``r.hints``: {"fg", "bg"}, T x H x W each); ``"none"``: the
    hint-free variant. frames_per_step: frames fitted per iteration (default 3).
    Returns ``mask`` (T x H x W in {0, 1}), ``soft_mask`` (T x H x W), ``foreground`` and
    ``background`` (T x H x W x 3); each frame's mask refined by a guided filter. Iterations
    and lr as :func:`doubledip.segment`. method: as :func:`doubledip.segment`'s: in fast mode
    with automatic hints (the default there) each frame's classic answer, ``dd.segment``'s for
    that frame alone, with no fit (``result.method == "saliency"``); ``"dip"``: the fit.

    Fast mode fits the frames in turn rather than together: the first frame as
    :func:`doubledip.segment`'s fast run (``iterations``), each next frame from the previous
    frame's nets and noise inputs for a share of that (:func:`warm_iterations`: 0.28, less on
    clips over 6 frames, so the clip costs at most ``IN_TURN_BUDGET`` = 2.8 times the first
    frame's iterations up to 18 frames), then the first frame once more from the second's; each frame's history records carry ``frame`` and ``visit``. Give
    ``frames_per_step`` to fit them together through shared nets instead (stage 2 then ends once
    every frame's mask has settled).
    """
    config = resolve(config, {"frames": frames, "fg_hints": fg_hints, "bg_hints": bg_hints}, iterations=iterations,
                     seed=seed, device=device, progress=progress)
    if (fg_hints is None) != (bg_hints is None):
        raise ValueError("segment_video: give both fg_hints and bg_hints, or neither; got "
                         f"fg_hints={'set' if fg_hints is not None else None}, "
                         f"bg_hints={'set' if bg_hints is not None else None}")
    if hints not in segmentation.HINTS:
        raise ValueError(f"hints must be one of {segmentation.HINTS}, got {hints!r}")
    per_step = _per_step(frames_per_step, "segment_video")
    chosen = segmentation.chosen_method(method, config, fg_hints is not None, hints)
    in_turn = config.mode == "fast" and frames_per_step is None
    dev = config.resolve_device()
    clip, x = load_frames(frames, "segment_video", 1 if in_turn else per_step, dev)
    if chosen == "saliency":
        return _described(_segment_classic(x, clip, config), dev, None, frames=(frames, clip),
                          fg_hints=(None, None), bg_hints=(None, None))
    fg = bg = None
    if fg_hints is not None:
        fg, bg = load_hints(fg_hints, "fg_hints", clip, dev), load_hints(bg_hints, "bg_hints", clip, dev)
    elif hints == "auto":  # each frame's own, as dd.segment computes them
        fg, bg, _ = (torch.cat(maps) for maps in zip(*(segmentation.auto_hints(x[t:t + 1]) for t in range(len(x)))))
    defaults = segmentation.SPEC.defaults_for(config.mode)
    stages = split_iterations(config.iterations, defaults.stages)
    warm = split_iterations(warm_iterations(sum(stages), len(x)), WARM_STAGES)
    total = sum(stages) + len(x) * sum(warm) if in_turn else sum(stages)
    with timed_run(config, total, "segment video") as (reporter, start):
        if in_turn:
            best = _segment_in_turn(x, fg, bg, stages, warm, config, config.lr or defaults.lr, reporter)
        else:
            problem = VideoSegmentationProblem(x, fg, bg, stages, config.seed, per_step, fast=config.mode == "fast")
            run_problem(problem, config, config.lr or defaults.lr, reporter)
            best = problem.result()
        radius = segmentation.guide_radius(config, clip.size)  # the image task's (fast mode: 1/8 of the short side)
        refined = torch.cat([guided_filter(x[t:t + 1], best["soft_mask"][t:t + 1], radius=radius, eps=1e-4)
                             for t in range(len(x))])
        result = VideoSegmentationResult(
            task="segment_video", mask=frames_hwc((refined > 0.5).float()), soft_mask=frames_hwc(best["soft_mask"]),
            foreground=frames_hwc(best["foreground"]), background=frames_hwc(best["background"]), fps=clip.fps,
            history=reporter.history, seconds=time.perf_counter() - start, config=config,
            hints=None if fg is None else {"fg": frames_hwc(fg), "bg": frames_hwc(bg)},
            hint_source="given" if fg_hints is not None else hints, method="dip")
    return _described(result, dev, reporter, frames=(frames, clip),
                      fg_hints=(fg_hints, None) if fg_hints is None else (fg_hints, clip),
                      bg_hints=(bg_hints, None) if bg_hints is None else (bg_hints, clip))


def _segment_classic(x: torch.Tensor, clip, config: SolverConfig) -> VideoSegmentationResult:
    """Each frame of ``x`` (T x 3 x H x W) segmented alone by the image task's classic answer
    (about 1 s a frame: a progress bar by frames when ``config.progress``)."""
    start = time.perf_counter()
    frames = [segmentation.classic_answer(frame) for _, frame in
              segmentation.classic_progress(list(x.split(1)), config, unit="frame")]
    stack = {name: torch.cat([f[name] for f in frames]) for name in frames[0]}
    mask = stack["mask"]
    return VideoSegmentationResult(
        task="segment_video", mask=frames_hwc(mask), soft_mask=frames_hwc(stack["soft_mask"]),
        foreground=frames_hwc(x * mask), background=frames_hwc(x * (1 - mask)), fps=clip.fps,
        seconds=time.perf_counter() - start, config=config,
        hints={"fg": frames_hwc(stack["fg"]), "bg": frames_hwc(stack["bg"])}, hint_source="auto",
        method="saliency")


def warm_iterations(first: int, frames: int) -> int:
    """Iterations of each warm fit in turn (``frames`` of them: every next frame and the first
    one's revisit) after a first fit of ``first``: ``WARM_SHARE`` of it, less where the clip's
    total would pass ``IN_TURN_BUDGET`` times ``first``, never under ``MIN_WARM_SHARE`` of it."""
    share = min(WARM_SHARE, max(MIN_WARM_SHARE, (IN_TURN_BUDGET - 1) / max(1, frames)))
    return max(len(WARM_STAGES), round(first * share))


def _segment_in_turn(x, fg, bg, stages, warm, config, lr, reporter) -> dict:
    """Fast mode's video segmentation: the frames of ``x`` (T x 3 x H x W; hints T x 1 x H x W
    or None) fitted one after another by the image task's problem, each next frame starting
    from the previous frame's nets and noise inputs (``warm`` iterations; the first frame
    ``stages``, from scratch), then the first frame once more from the second's. Returns the
    image problem's result per frame, T-leading ({"soft_mask", "foreground", "background"})."""
    T = len(x)
    order = list(range(T)) + [0]  # the last visit: frame 0 from frame 1's nets
    fitted: dict[int, segmentation.SegmentationProblem] = {}
    outputs: dict[int, dict] = {}
    previous, first_iteration, settled = None, 0, 0
    for visit, t in enumerate(order):
        hints = (None, None) if fg is None else (fg[t:t + 1], bg[t:t + 1])
        problem = segmentation.SegmentationProblem(x[t:t + 1], *hints, stages if previous is None else warm,
                                                   [config.seed], fast=True)
        if previous is not None:
            source = fitted[1] if t in fitted else previous  # the revisit starts from its neighbour
            for group, net in problem.nets.items():
                net.load_state_dict(source.nets[group].state_dict())
            problem.inputs = dict(source.inputs)
        ctx = run_problem(problem, config, lr, reporter, extra={"frame": t, "visit": visit},
                          first_iteration=first_iteration)
        settled += ctx.stop_reason is not None
        first_iteration += sum(problem.stage_iterations)
        outputs[t] = problem.result()
        fitted.setdefault(t, problem)
        previous = problem
        if checkpoint.interrupted():  # Ctrl-C with keep_partial: the frames fitted so far, the others' last
            break
    for t in range(T):  # frames not reached (an interrupted run) take the last fitted frame's outputs
        outputs.setdefault(t, outputs[order[visit]])
    if not checkpoint.interrupted():  # (an interrupted run's reason is set already)
        reporter.stopped(f"frames fitted in turn, each from the previous frame's nets; the mask settled early "
                         f"in {settled} of {visit + 1} fits", None)
    return {n: torch.cat([outputs[t][n] for t in range(T)]) for n in outputs[0]}


# ---- the tasks' specs -----------------------------------------------------------------------

FRAMES_PER_STEP = Option("frames_per_step", "frames fitted per iteration, through the shared generators as one "
                         "batch (default: separate 1, dehaze 1, segment 3; more: more memory and time per step; "
                         "fast-mode segmentation fits the frames in turn unless this is given)",
                         type=int, batched=False)
CLIP_HELP = "the clip: a video file (mp4, mov, avi, webm, gif) or a folder of images"
NOT_BATCHED = "a clip is one problem: its frames share the generators"


def _evaluation(task: str) -> Evaluation:
    """The video suite's part for ``task`` (doubledip.evaluation: cases, per-frame scores and
    flicker, baselines)."""
    from doubledip.evaluation import cases, metrics

    return Evaluation(cases=lambda suite, size: cases.video_cases(task, suite, size),
                      score=lambda outputs, truth: metrics.score_video(task, outputs, truth),
                      baselines=lambda case: cases.video_baselines(case),
                      primary={"separate_video": "separation", "dehaze_video": "psnr",
                               "segment_video": "iou"}[task],
                      fields={"separate_video": ("layers", "reconstruction"),
                              "dehaze_video": ("image", "transmission", "airlight"),
                              "segment_video": ("mask", "soft_mask")}[task],
                      quick_iterations={"separate_video": 600, "dehaze_video": 600, "segment_video": 400}[task])


SEPARATE_SPEC = register(TaskSpec(
    name="separate_video", cli_name="separate", cli_group="video",
    summary="split every frame of a clip into two additive layers (generators shared by the frames)",
    run=separate_video, result=VideoSeparationResult,
    inputs=(Input("frames", "clip", CLIP_HELP),), options=(FRAMES_PER_STEP,),
    defaults=separation.SPEC.defaults, not_batched=NOT_BATCHED, evaluation=_evaluation("separate_video"),
    extra={"frame_task": "separate"},
))

DEHAZE_SPEC = register(TaskSpec(
    name="dehaze_video", cli_name="dehaze", cli_group="video",
    summary="remove the haze of a clip: frames, transmission maps, one airlight",
    run=dehaze_video, result=VideoDehazeResult,
    inputs=(Input("frames", "clip", CLIP_HELP),),
    options=(Option("airlight", "known airlight in [0, 1] for the clip (default: the median of the frames' "
                    "dark channel prior estimates)", type=float, nargs=3, metavar=("R", "G", "B")),
             Option("learn_airlight", "learn the airlight in the first pass too", flag=True),
             Option("passes", "default: 2 (reference mode), 1 (fast mode)", type=int, choices=(1, 2)),
             FRAMES_PER_STEP,
             Option("keep_fit", "fast mode: keep the fit even where it explains the clip no better than the dark "
                    "channel prior per frame", flag=True),
             Option("method", "dip: the Double-DIP fit (default); dcp: the classic dark channel prior per frame "
                    "with the clip's airlight, no fit", type=str, choices=dehazing.METHODS)),
    defaults=dehazing.SPEC.defaults, not_batched=NOT_BATCHED, evaluation=_evaluation("dehaze_video"),
    extra={"frame_task": "dehaze"},
))

SEGMENT_SPEC = register(TaskSpec(
    name="segment_video", cli_name="segment", cli_group="video",
    summary="foreground/background segmentation of a clip",
    run=segment_video, result=VideoSegmentationResult,
    inputs=(Input("frames", "clip", CLIP_HELP),
            Input("fg_hints", "clip_maps", "maps marking sure foreground, one per frame: a video or a folder "
                  "(needs bg_hints)", required=False),
            Input("bg_hints", "clip_maps", "maps marking sure background, one per frame (needs fg_hints)",
                  required=False)),
    options=(Option("hints", "with no --fg-hints/--bg-hints: auto (default) computes each frame's hints from its "
                    "saliency map; none runs the hint-free variant", type=str, choices=segmentation.HINTS),
             Option("method", "dip: the fit; saliency: each frame's classic answer with automatic hints, no fit "
                    "(default: saliency in fast mode with automatic hints, else dip)", type=str,
                    choices=segmentation.METHODS),
             FRAMES_PER_STEP),
    defaults=segmentation.SPEC.defaults, not_batched=NOT_BATCHED, evaluation=_evaluation("segment_video"),
    extra={"frame_task": "segment"},
))
