"""Video tasks: the image tasks' problems with a frame axis (a one-frame chunk's step is the image
task's step, exactly), shared generators and per-frame temporal noise, per-frame result stores,
the API, save, CLI, registry and the video suite, and every bad input as one clear error."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.cli import main
from doubledip.engine.inputs import Augmentations
from doubledip.engine.tasks import registry, video
from doubledip.engine.tasks.dehazing import DehazeProblem
from doubledip.engine.tasks.segmentation import SegmentationProblem
from doubledip.engine.tasks.separation import SeparationProblem
from doubledip.engine.solver import split_iterations

T, H, W = 4, 24, 32
CFG = dd.SolverConfig(iterations=6, seed=0, log_every=2)

try:
    import av  # noqa: F401

    HAVE_AV = True
except ImportError:  # pragma: no cover - the [video] extra is installed in CI
    HAVE_AV = False
needs_av = pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed (pip install 'doubledip[video]')")


def _clip(t=T, seed=0):
    """A smooth texture panning right 2 px per frame (frames of one scene)."""
    rng = np.random.default_rng(seed)
    scene = rng.random((H, W + 2 * t, 3)).astype(np.float32)
    scene = (scene + np.roll(scene, 1, 0) + np.roll(scene, 1, 1)) / 3
    return np.stack([scene[:, 2 * k:2 * k + W] for k in range(t)])


def _hints(t=T):
    fg = np.zeros((t, H, W), np.float32)
    for k in range(t):
        fg[k, 6:16, 4 + 2 * k:14 + 2 * k] = 1
    bg = np.zeros_like(fg)
    bg[:, :3], bg[:, -3:] = 1, 1
    return fg, bg


# ---- the frame axis ------------------------------------------------------------------------

def test_temporal_noise_is_a_random_walk_from_a_wide_first_frame():
    z = video.temporal_noise(5, 2, 8, 8, 0.01, torch.Generator().manual_seed(0), "cpu")
    assert z.shape == (5, 2, 8, 8)
    assert z[0].abs().max() <= 0.5 * 10 * 0.01 and z[0].abs().max() > 0.04  # U(-0.5, 0.5) * 10 * var
    steps = z[1:] - z[:-1]
    assert steps.min() >= 0 and steps.max() <= 0.01 + 1e-7 and steps.max() > 0.009  # + U(0, 1) * var


@pytest.mark.parametrize("frames,per_step", [(6, 3), (7, 3), (5, 1), (4, 8)])
def test_chunks_partition_the_clip_strided(frames, per_step):
    chunks = video.frame_chunks(frames, per_step)
    assert sorted(torch.cat(chunks).tolist()) == list(range(frames))
    assert max(len(c) for c in chunks) <= per_step and len(chunks) == -(-frames // per_step)
    assert all((c[1:] - c[:-1] == len(chunks)).all() for c in chunks)  # strided: each spans the clip


@pytest.mark.parametrize("n", range(1, 10))
@pytest.mark.parametrize("every,offset", [(8, 0), (50, 49), (1, 0)])
def test_tracked_iterations_visit_every_chunk_and_so_do_the_others(n, every, offset):
    class Axis(video.FrameAxis):
        track_every, track_offset = every, offset

    axis = Axis()
    axis.chunks = [None] * n
    ks = range(every * n * 4)
    tracked = [axis.chunk_at(k) for k in ks if k % every == offset]
    untracked = [axis.chunk_at(k) for k in ks if k % every != offset]
    assert tracked == [i % n for i in range(len(tracked))]
    assert not untracked or untracked == [i % n for i in range(len(untracked))]


def test_fast_segmentation_stops_once_every_frames_mask_has_settled(monkeypatch):
    from doubledip.engine.tasks import segmentation
    from doubledip.engine.tasks.segmentation import SETTLE_EVERY

    monkeypatch.setattr(segmentation, "noise_sigma", lambda stage, k, last: 0.0)  # unperturbed inputs
    frames = torch.from_numpy(_clip(3)).permute(0, 3, 1, 2).contiguous()
    fg, bg = (torch.from_numpy(m[:3])[:, None] for m in _hints(3))
    v = video.VideoSegmentationProblem(frames, fg, bg, (10, 1000), 0, per_step=1, fast=True)
    stops = []
    with torch.no_grad():  # fixed weights, no input noise: every mask settles at its second check
        for k in range(SETTLE_EVERY * 6):
            v.step(1, k, False)
            stop = v.stop_requested(1)
            stops.append(bool(stop) if stop is not None else None)
    first = stops.index(True)
    assert first == SETTLE_EVERY * 6 - 1  # each of the 3 chunks checked twice, in turn
    assert sorted(v.state.settle_seen) == [0, 1, 2]


def test_fast_video_segmentation_fits_the_frames_in_turn_each_from_the_previous_frames_nets():
    """Frame 0 first, exactly as dd.segment's fast run on it; then each next frame, warm (its
    first record well above a cold start's), then frame 0 again; frames_per_step given: the
    frames together through shared nets instead."""
    clip, (fg, bg) = _clip(), _hints()
    cfg = dd.SolverConfig(mode="fast", iterations=60, seed=0, log_every=1, early_stop=False)
    r = dd.segment_video(clip, cfg, fg_hints=fg, bg_hints=bg)
    warm = sum(split_iterations(video.warm_iterations(60, T), video.WARM_STAGES))
    visits = [[rec for rec in r.history if rec["visit"] == v] for v in range(T + 1)]
    assert [v[0]["frame"] for v in visits] == [*range(T), 0]
    assert [len(v) for v in visits] == [60] + [warm] * T
    assert [rec["iteration"] for rec in r.history] == list(range(60 + T * warm))
    alone = dd.segment(clip[0], cfg, fg_hint=fg[0], bg_hint=bg[0])
    np.testing.assert_allclose([rec["psnr"] for rec in visits[0]], [rec["psnr"] for rec in alone.history], atol=1e-5)
    cold = dd.segment(clip[1], cfg, fg_hint=fg[1], bg_hint=bg[1]).history  # frame 1 from scratch
    for v in visits[1:]:  # each starts near where its neighbour ended (16.4 dB here), not from scratch (14.5)
        assert v[0]["psnr"] > max(cold[0]["psnr"], visits[0][0]["psnr"]) + 0.5, (v[0], cold[0])
    assert r.stop_reason.startswith("frames fitted in turn") and r.mask.shape == (T, H, W)
    joint = dd.segment_video(clip, cfg, fg_hints=fg, bg_hints=bg, frames_per_step=2)
    assert "frame" not in joint.history[0] and len(joint.history) == 60


def test_in_turn_share_bounds_the_clips_cost_by_its_length():
    """Up to 6 frames each warm fit takes WARM_SHARE of the first's iterations; longer clips
    less, so the total stays within IN_TURN_BUDGET times the first fit, down to MIN_WARM_SHARE."""
    first = 600
    assert video.warm_iterations(first, 6) == round(first * video.WARM_SHARE)
    for frames in (7, 12, 18):
        k = video.warm_iterations(first, frames)
        assert k < round(first * video.WARM_SHARE)
        assert first + frames * k <= video.IN_TURN_BUDGET * first + frames  # rounding: <= 1 each
    assert video.warm_iterations(first, 100) == round(first * video.MIN_WARM_SHARE)
    assert video.warm_iterations(4, 3) == len(video.WARM_STAGES)  # never fewer than one per stage


def _copy_into(image_problem, video_problem, j, fields):
    """The image problem of frame j with the video problem's nets and frame j's inputs."""
    image_problem.nets.load_state_dict(video_problem.nets.state_dict())
    for name in fields:
        setattr(image_problem, name, video._take(getattr(video_problem, name), torch.tensor([j]),
                                                 video_problem.frame_count))
    return image_problem


def _same_step(a, b, call_a, call_b):
    for p in [*a.nets.parameters(), *b.nets.parameters()]:
        p.grad = None
    out_a, out_b = call_a(), call_b()
    out_a.loss.backward()
    out_b.loss.backward()
    assert torch.equal(out_a.loss, out_b.loss)
    for (name, p), q in zip(a.nets.named_parameters(), b.nets.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), name
    return out_a, out_b


def test_a_one_frame_chunk_steps_as_the_image_separation_of_that_frame():
    frames = torch.from_numpy(_clip(3)).permute(0, 3, 1, 2).contiguous()
    v = video.VideoSeparationProblem(frames, (300,), 0, per_step=1)
    k = 210  # input noise on (sigma 0.002), augmentation 1
    j = v.chunk_at(k)
    image = _copy_into(SeparationProblem(frames[j:j + 1], (300,), [0]), v, j, ["inputs"])
    _same_step(v, image, lambda: v.step(0, k, False), lambda: image.step(0, k, False))
    k = 208  # a tracked iteration: the frame's store takes the image tracker's candidate
    j = v.chunk_at(k)
    image = _copy_into(SeparationProblem(frames[j:j + 1], (300,), [0]), v, j, ["inputs"])
    _same_step(v, image, lambda: v.step(0, k, False), lambda: image.step(0, k, False))
    assert torch.equal(v.tracker.outputs["layer_0"][j], image.tracker.outputs["layer_0"][0])
    assert v.tracker.seen.tolist() == [t == j for t in range(3)]


def test_a_one_frame_chunk_steps_as_the_image_dehazing_of_that_frame():
    frames = torch.from_numpy(_clip(3)).permute(0, 3, 1, 2).contiguous()
    a0 = torch.tensor([[0.8, 0.8, 0.9]])
    prior = torch.rand(3, 1, H, W)
    v = video.VideoDehazeProblem(frames, a0, True, (100,), 0, per_step=1, transmission_prior=prior)
    k = 17
    j = v.chunk_at(k)
    image = _copy_into(DehazeProblem(frames[j:j + 1], a0, True, (100,), [0], transmission_prior=prior[j:j + 1]),
                       v, j, ["inputs"])
    _same_step(v, image, lambda: v.step(0, k, False), lambda: image.step(0, k, False))


def test_a_one_frame_chunk_steps_as_the_image_segmentation_of_that_frame():
    frames = torch.from_numpy(_clip(3)).permute(0, 3, 1, 2).contiguous()
    fg, bg = (torch.from_numpy(m[:3])[:, None] for m in _hints(3))
    v = video.VideoSegmentationProblem(frames, fg, bg, (10, 20), 0, per_step=1)
    image = {}
    for k in range(3):  # stage 2's first iteration of every chunk starts its state, as the image's
        j = v.chunk_at(k)
        image[j] = _copy_into(SegmentationProblem(frames[j:j + 1], fg[j:j + 1], bg[j:j + 1], (10, 20), [0]),
                              v, j, ["inputs"])
        _same_step(v, image[j], lambda: v.step(1, k, False), lambda: image[j].step(1, k, False))
        assert torch.equal(v.state.outputs["soft_mask"][j], image[j].current[1]["soft_mask"][0])
    assert v.stop_requested(1) is not None


def test_a_chunk_runs_its_frames_through_the_one_shared_set_of_generators():
    frames = torch.from_numpy(_clip(4)).permute(0, 3, 1, 2).contiguous()
    v = video.VideoSeparationProblem(frames, (10,), 0, per_step=2)
    assert v.nets["layers"].copies == 2  # one generator per layer, not per frame
    z0, z1 = v.inputs[0].base[:2], v.inputs[1].base[:2]
    y0, y1 = v.generate("layers", [z0, z1])
    plain = v.nets["layers"].unbind()  # BatchNorm over the chunk's frames, as a net on a batch
    assert torch.allclose(y0, plain[0](z0), atol=1e-5) and torch.allclose(y1, plain[1](z1), atol=1e-5)


def test_frame_stores_keep_each_frames_best_and_average():
    best = video.FrameBest(4)
    best.view_frames(torch.tensor([0, 2])).update(torch.tensor([10.0, 20.0]), {"x": torch.ones(2, 1, 2, 2)})
    view = best.view_frames(torch.tensor([2, 3]))
    view.update(torch.tensor([15.0, float("nan")]), {"x": 2 * torch.ones(2, 1, 2, 2)})
    assert view.took.tolist() == [False, True]  # a frame's first candidate is taken, even a NaN one
    assert best.outputs["x"][:, 0, 0, 0].tolist() == [1, 0, 1, 2] and best.psnr[2] == 20
    avg = video.FrameAverage(2, 0.5)
    for value in (2.0, 4.0):
        avg.view_frames(torch.tensor([1])).update({"x": value * torch.ones(1, 1)})
    assert avg.outputs["x"].flatten().tolist() == [0.0, 3.0]


# ---- the API --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,fields", [
    ("separate_video", {}, {"reconstruction": (T, H, W, 3)}),
    ("dehaze_video", {"passes": 1}, {"image": (T, H, W, 3), "transmission": (T, H, W)}),
    ("segment_video", {"hints": True}, {"mask": (T, H, W), "soft_mask": (T, H, W), "foreground": (T, H, W, 3)}),
    ("segment_video", {}, {"mask": (T, H, W), "background": (T, H, W, 3)}),
])
@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_each_video_task_returns_clips_of_the_input_shape(name, kwargs, fields, mode):
    kwargs = dict(kwargs)
    if kwargs.pop("hints", False):
        kwargs["fg_hints"], kwargs["bg_hints"] = _hints()
    r = getattr(dd, name)(_clip(), CFG.replace(mode=mode), frames_per_step=3, **kwargs)
    for field, shape in fields.items():
        value = getattr(r, field)
        assert value.shape == shape and value.dtype == np.float32 and np.isfinite(value).all(), field
        assert 0 <= value.min() and value.max() <= 1, field
    if name == "separate_video":
        assert len(r.layers) == 2 and r.layers[0].shape == (T, H, W, 3)
        assert np.all(r.layers[0].reshape(T, -1).std(1) > 0)  # every frame was rendered
    if name == "dehaze_video":
        assert r.airlight.shape == (3,)
    if name == "segment_video":
        assert set(np.unique(r.mask)) <= {0.0, 1.0}
    classic = getattr(r, "method", "dip") == "saliency"  # fast segmentation with automatic hints: no fit
    assert classic == (name == "segment_video" and mode == "fast" and "fg_hints" not in kwargs)
    assert (r.history == []) if classic else r.history
    assert r.seconds > 0 and r.device == "cpu" and r.fps == 25.0
    assert r.inputs["frames"] == {"path": None, "size": [H, W], "frames": T, "fps": 25.0}


def test_fast_video_dehazing_returns_the_dark_channel_prior_per_frame_when_the_fit_does_not_explain_the_clip_better(
        monkeypatch):
    """One choice for the whole clip (no switching between methods from frame to frame), the
    prior run on each frame with the clip's airlight; keep_fit and reference mode keep the fit."""
    from doubledip.engine.io import load_image
    from doubledip.engine.post import dcp_dehaze
    from doubledip.engine.tasks import dehazing

    clip = _clip() * 0.5 + 0.4
    fast = CFG.replace(mode="fast")
    monkeypatch.setattr(dehazing, "FALLBACK_MARGIN", 1.0)  # the fit can never be better by 100%
    r = dd.dehaze_video(clip, fast)
    assert r.method == "dcp" and r.selection.startswith("dcp: the fit did not") and r.history
    a0 = video.clip_airlight(torch.cat([load_image(f) for f in clip]))
    np.testing.assert_allclose(r.airlight, a0.numpy(), atol=1e-6)
    for t in (0, T - 1):
        clear, trans, _ = dcp_dehaze(load_image(clip[t]), airlight=a0)
        np.testing.assert_allclose(r.image[t], clear[0].permute(1, 2, 0).numpy(), atol=1e-6)
        np.testing.assert_allclose(r.transmission[t], trans[0, 0].numpy(), atol=1e-6)
    assert dd.dehaze_video(clip, fast, keep_fit=True).method == "dip"
    reference = dd.dehaze_video(clip, CFG, passes=1)
    assert (reference.method, reference.selection) == ("dip", "")
    monkeypatch.setattr(dehazing, "FALLBACK_MARGIN", -math.inf)  # any finite residual is better
    kept = dd.dehaze_video(clip, fast)
    assert kept.method == "dip" and kept.selection.startswith("dip:")
    assert not np.allclose(kept.image, r.image, atol=1e-3)
    assert kept.summary()["run"]["method"] == "dip" and r.summary()["run"]["selection"] == r.selection


def test_dehaze_video_method_dcp_is_the_prior_per_frame_with_the_clips_airlight_and_no_fit(tmp_path):
    """method="dcp": no iteration runs; each frame is the dark channel prior's with the clip's
    airlight (given, or estimated from the frames); a bad method is a ValueError; the CLI option."""
    from doubledip.engine.io import load_image
    from doubledip.engine.post import dcp_dehaze

    clip = _clip() * 0.5 + 0.4
    r = dd.dehaze_video(clip, CFG, method="dcp")
    assert r.method == "dcp" and r.history == [] and r.stop_reason == "no fit"
    a0 = video.clip_airlight(torch.cat([load_image(f) for f in clip]))
    np.testing.assert_allclose(r.airlight, a0.numpy(), atol=1e-6)
    for t in (0, T - 1):
        clear, trans, _ = dcp_dehaze(load_image(clip[t]), airlight=a0)
        np.testing.assert_allclose(r.image[t], clear[0].permute(1, 2, 0).numpy(), atol=1e-6)
        np.testing.assert_allclose(r.transmission[t], trans[0, 0].numpy(), atol=1e-6)
    given = dd.dehaze_video(clip, CFG, method="dcp", airlight=(0.9, 0.8, 0.7))
    np.testing.assert_allclose(given.airlight, [0.9, 0.8, 0.7], atol=1e-6)
    with pytest.raises(ValueError, match="method must be one of .*got 'dark'"):
        dd.dehaze_video(clip, CFG, method="dark")
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    for t, f in enumerate(clip):
        Image.fromarray((f * 255).round().astype(np.uint8)).save(frames / f"{t}.png")
    assert main(["video", "dehaze", str(frames), "-o", str(tmp_path / "out"), "--method", "dcp", "--quiet"]) == 0
    assert json.loads((tmp_path / "out" / "result.json").read_text())["run"]["method"] == "dcp"


def test_segment_video_without_hints_uses_each_frames_automatic_hints(tmp_path):
    """hints="auto" (the default): per frame the hints dd.segment computes for that frame alone;
    hints="none": the hint-free variant; result.json says which."""
    import json

    from doubledip.engine.io import load_image
    from doubledip.engine.tasks.segmentation import auto_hints

    clip = _clip()
    r = dd.segment_video(clip, CFG, frames_per_step=3)
    assert r.hints["fg"].shape == (T, H, W) and r.hint_source == "auto"
    for t in (0, T - 1):
        fg, bg, _ = auto_hints(load_image(clip[t]))
        np.testing.assert_array_equal(r.hints["fg"][t], fg[0, 0].numpy())
        np.testing.assert_array_equal(r.hints["bg"][t], bg[0, 0].numpy())
    none = dd.segment_video(clip, CFG, frames_per_step=3, hints="none")
    assert none.hints is None and none.hint_source == "none"
    given = dd.segment_video(clip, CFG, frames_per_step=3, fg_hints=_hints()[0], bg_hints=_hints()[1])
    assert given.hint_source == "given" and given.hints["fg"].shape == (T, H, W)
    meta = json.loads((r.save(tmp_path / "v") / "result.json").read_text())
    assert meta["run"]["hints"] == "auto"
    with pytest.raises(ValueError, match="hints must be one of"):
        dd.segment_video(clip, CFG, hints="saliency")


def test_fast_segment_video_with_automatic_hints_is_each_frames_classic_answer(tmp_path):
    """Fast mode, no hints given: per frame dd.segment's fast answer for that frame alone (the
    saliency map's threshold, guided-filtered; no fit); method="dip" fits; hints given: the fit."""
    import json

    clip = _clip()
    fast = dd.SolverConfig(mode="fast", seed=0)
    r = dd.segment_video(clip, fast)
    assert r.method == "saliency" and r.history == [] and r.mask.shape == (T, H, W)
    for t in (0, T - 1):
        alone = dd.segment(clip[t], fast)
        assert alone.method == "saliency"
        for name in ("mask", "soft_mask", "foreground", "background"):
            np.testing.assert_allclose(getattr(r, name)[t], getattr(alone, name), atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(r.hints["fg"][t], alone.hints["fg"])
    meta = json.loads((r.save(tmp_path / "v") / "result.json").read_text())
    assert meta["run"]["method"] == "saliency" and meta["run"]["hints"] == "auto"
    fit = dd.segment_video(clip, fast.replace(iterations=6), method="dip")
    assert fit.method == "dip" and len(fit.history) > 0
    given = dd.segment_video(clip, fast.replace(iterations=6), fg_hints=_hints()[0], bg_hints=_hints()[1])
    assert given.method == "dip"
    with pytest.raises(ValueError, match="method='saliency'"):
        dd.segment_video(clip, fast, hints="none", method="saliency")


def test_fast_segment_video_classic_answer_shows_its_progress_by_frames(capsys):
    dd.segment_video(_clip(), dd.SolverConfig(mode="fast", progress=True))
    err = capsys.readouterr().err
    assert f"{T}/{T}" in err and "frame" in err
    dd.segment_video(_clip(), dd.SolverConfig(mode="fast", progress=False))
    assert "frame" not in capsys.readouterr().err


def test_video_tasks_take_their_config_after_the_clip_and_the_rest_as_keywords():
    import inspect

    for spec in registry.tasks("video"):
        params = list(inspect.signature(spec.run).parameters.values())
        assert [p.name for p in params[:2]] == ["frames", "config"], spec.name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:]), spec.name
    with pytest.raises(TypeError, match="frames is a SolverConfig"):
        dd.separate_video(CFG)
    with pytest.raises(TypeError, match="config must be a doubledip.SolverConfig, got ndarray"):
        dd.segment_video(_clip(), _hints()[0])


@pytest.mark.parametrize("call,match", [
    (lambda: dd.separate_video([_clip(1)[0]], CFG), "at least 2 frames, got 1"),
    (lambda: dd.dehaze_video([_clip(1)[0], _clip(1)[0][:20]], CFG), r"frames\[1\] is 20x32"),
    (lambda: dd.segment_video(_clip(), CFG, fg_hints=_hints()[0]), "give both fg_hints and bg_hints"),
    (lambda: dd.segment_video(_clip(), CFG, fg_hints=_hints(3)[0], bg_hints=_hints(3)[1]),
     r"fg_hints: expected one map per frame \(4\), got 3"),
    (lambda: dd.segment_video(_clip(), CFG, fg_hints=_hints()[0][:, :20], bg_hints=_hints()[1]),
     "expected maps of the clip's size 24x32"),
    (lambda: dd.separate_video(_clip(), CFG, frames_per_step=0), "frames_per_step must be an int >= 1, got 0"),
    (lambda: dd.dehaze_video(_clip(), CFG, airlight=[2, 0, 0]), r"airlight must be 3 finite values in \[0, 1\]"),
    (lambda: dd.dehaze_video(_clip(), CFG, passes=3), "passes must be 1 or 2, got 3"),
])
def test_bad_video_input_is_one_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_a_clip_too_large_for_memory_is_refused_before_it_is_allocated(monkeypatch):
    monkeypatch.setattr(video, "available_memory", lambda device: 10 * 2 ** 20)
    # (the check runs before the frames are decoded or stacked: tests/test_video_io.py)
    with pytest.raises(ValueError, match=r"a clip of 4 frames at 24x32 needs about 0\.\d\d GiB for separate_video"):
        dd.separate_video(_clip(), CFG)
    # the per-step part is bounded by frames_per_step: a long clip grows only by what it keeps per frame
    per_frame = video.clip_bytes("separate_video", 200, 128, 128, 3) - video.clip_bytes("separate_video", 199, 128, 128, 3)
    assert per_frame == 128 * 128 * 4 * video._CLIP_VALUES["separate_video"]


@needs_av
def test_save_writes_videos_frames_and_result_json_and_a_rerun_replaces_them(tmp_path):
    from doubledip.engine.video_io import load_clip

    r = dd.separate_video(_clip(), CFG)
    r.fps = 12.0
    out = r.save(tmp_path / "out")
    meta = json.loads((out / "result.json").read_text())
    assert meta["task"] == "separate_video" and meta["frame_count"] == T and meta["values"]["fps"] == 12.0
    assert meta["videos"] == {"layer_0": "layer_0.mp4", "layer_1": "layer_1.mp4", "reconstruction": "reconstruction.mp4"}
    assert meta["frames"]["layer_0"] == [f"layer_0/{t:04d}.png" for t in range(T)]
    expected = {"layer_0": r.layers[0], "layer_1": r.layers[1], "reconstruction": r.reconstruction}
    for stem, frames in expected.items():
        clip = load_clip(out / f"{stem}.mp4")
        assert clip.frames.shape == (T, H, W, 3) and clip.fps == 12.0
        # the PNG frames are the exact ones, to 8 bits
        assert np.abs(load_clip(out / stem).frames - frames).max() <= 0.5 / 255 + 1e-6
    shorter = dd.separate_video(_clip(3), CFG)
    shorter.save(out, video_format="gif")
    assert sorted(p.name for p in (out / "layer_0").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert not (out / "layer_0.mp4").exists() and load_clip(out / "layer_0.gif").frames.shape[0] == 3
    with pytest.raises(ValueError, match="holds a 'separate_video' result"):
        dd.dehaze_video(_clip(), CFG, passes=1).save(out)
    with pytest.raises(ValueError, match="cannot be exported"):
        r.export(tmp_path / "export")


# ---- the CLI, the registry ------------------------------------------------------------------

@needs_av
def test_cli_video_subcommands_run_a_clip_and_refuse_bad_input_without_output(tmp_path, capsys):
    from doubledip.engine.video_io import write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, _clip(), 10)
    fg, bg = _hints()
    for name, maps in (("fg", fg), ("bg", bg)):
        (tmp_path / name).mkdir()
        for t, m in enumerate(maps):
            from PIL import Image

            Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / name / f"{t}.png")
    out = tmp_path / "out"
    base = ["--iterations", "4", "--quiet", "--frames-per-step", "2"]
    assert main(["video", "segment", str(clip), "-o", str(out), "--fg-hints", str(tmp_path / "fg"),
                 "--bg-hints", str(tmp_path / "bg")] + base) == 0
    assert (out / "mask.mp4").exists() and len(list((out / "mask").iterdir())) == T
    assert json.loads((out / "result.json").read_text())["values"]["fps"] == 10.0
    capsys.readouterr()
    (tmp_path / "fg" / "3.png").unlink()
    for argv, match in [
        (["video", "separate", str(tmp_path / "missing.mp4")], "no such file or folder"),
        (["video", "segment", str(clip), "--fg-hints", str(tmp_path / "fg"), "--bg-hints", str(tmp_path / "bg")],
         r"expected one map per frame \(4\), got 3"),
        (["video", "dehaze", str(clip), "--export", "onnx"], "dehaze_video results cannot be exported"),
        (["video", "separate", str(clip), "--frames-per-step", "0"], "frames_per_step must be an int >= 1"),
    ]:
        fresh = tmp_path / "nothing"
        assert main(argv + ["-o", str(fresh)] + base[:3]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match.replace("\\", "") in err.replace("\\", ""), err
        assert not fresh.exists()
    assert main(["video"]) == 2
    assert "required" in capsys.readouterr().err


def test_video_tasks_form_a_cli_group_of_their_own():
    import dataclasses

    assert [s.name for s in registry.tasks("video")] == ["separate_video", "dehaze_video", "segment_video"]
    assert registry.groups() == ["video"]
    assert all(s.cli_group == "" for s in registry.tasks())  # batch, bench, export, quick suite: images only
    assert registry.get("separate").name == "separate" and registry.get("separate_video").cli_name == "separate"
    with pytest.raises(ValueError, match="clashes"):  # one CLI name twice in a group
        registry.register(dataclasses.replace(video.SEPARATE_SPEC, name="other_video"))
    with pytest.raises(ValueError, match="clashes"):  # a group named like a top-level task
        registry.register(dataclasses.replace(video.SEPARATE_SPEC, name="x_video", cli_group="dehaze"))
    assert registry.get("separate_video") is video.SEPARATE_SPEC


def test_importing_the_video_tasks_does_not_import_pyav():
    code = ("import sys, doubledip\nfrom doubledip.engine.tasks import registry\nregistry.discover()\n"
            "import doubledip.cli\ndoubledip.cli.build_parser()\nassert 'av' not in sys.modules\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


# ---- the video suite ------------------------------------------------------------------------

def test_flicker_compensates_the_content_motion():
    from doubledip.evaluation.suite import flicker

    rng = np.random.default_rng(0)
    scene = rng.random((16, 40))
    truth = np.stack([scene[:, 3 * t:3 * t + 20] for t in range(4)])  # a pan: content moves left
    steady = truth + 0.1 * np.stack([np.roll(scene, 0, 1)[:, 3 * t:3 * t + 20] for t in range(4)])
    assert flicker(steady, truth, (0, 3)) == pytest.approx(0.0, abs=1e-12)
    assert flicker(steady, truth) > 0.01  # the same result, uncompensated
    jumpy = truth + 0.1 * rng.random(truth.shape)
    assert flicker(jumpy, truth, (0, 3)) > 0.02
    with pytest.raises(ValueError, match="T >= 2"):
        flicker(truth[:1], truth[:1])


def test_the_video_suite_scores_a_clip_per_frame_against_per_frame_runs():
    from doubledip.evaluation.suite import evaluate, format_video_table

    rows = evaluate(suite="video", tasks="segment_video", size=32, iterations=6, device="cpu")
    (row,) = rows
    assert row["task"] == "segment_video" and row["frames"] == 6 and row["size"] == [32, 32]
    assert {"iou", "iou_min", "flicker"} <= set(row["metrics"])
    assert list(row["baselines"]) == ["per-frame runs, equal time", "one frame alone", "fg hint"]
    eq = row["baselines"]["per-frame runs, equal time"]
    assert eq["iterations_per_frame"] >= 4 and {"iou", "flicker"} <= set(eq["metrics"])
    assert row["baselines"]["one frame alone"]["time_ratio"] > 0
    assert "segment_video" in format_video_table(rows)
    with pytest.raises(ValueError, match="unknown video task"):
        evaluate(suite="video", tasks="segment")


@pytest.mark.parametrize("name,kwargs,stop", [("separate_video", {}, 2), ("dehaze_video", {}, 4),
                                              ("segment_video", {"hints": True}, 4)])
def test_a_stopped_and_resumed_clip_run_equals_the_uninterrupted_one(name, kwargs, stop, tmp_path):
    from doubledip.engine import checkpoint
    from doubledip.engine.results import public_fields

    kwargs = dict(kwargs)
    if kwargs.pop("hints", False):
        kwargs["fg_hints"], kwargs["bg_hints"] = _hints()
    cfg = dd.SolverConfig(iterations=12, seed=0, log_every=2)
    run = getattr(dd, name)
    want = run(_clip(), cfg, frames_per_step=3, **kwargs)
    seen = []

    def stop_at(record):  # as Ctrl-C does (dehazing: in its second pass; segmentation: its second stage)
        seen.append(record["iteration"])
        if len(seen) == stop:
            checkpoint.request_stop()

    ck = cfg.replace(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        run(_clip(), ck.replace(callback=stop_at), frames_per_step=3, **kwargs)
    checkpoint.reset()
    got = run(_clip(), ck.replace(resume=True), frames_per_step=3, **kwargs)
    assert checkpoint.resumed_at() == seen[-1] + 1
    for field in public_fields(want):
        a, b = getattr(want, field), getattr(got, field)
        np.testing.assert_array_equal(np.stack(a) if isinstance(a, list) else a,
                                      np.stack(b) if isinstance(b, list) else b, err_msg=field)


def test_a_stopped_and_resumed_fast_segmentation_in_turn_equals_the_uninterrupted_one(tmp_path):
    """Fast mode's frames in turn are one run_problem call per visit: a run stopped in a later
    visit resumes there (the earlier visits from their checkpoints) and ends as the uninterrupted one."""
    from doubledip.engine import checkpoint

    fg, bg = _hints()
    cfg = dd.SolverConfig(mode="fast", iterations=12, seed=0, log_every=2, early_stop=False)
    want = dd.segment_video(_clip(), cfg, fg_hints=fg, bg_hints=bg)
    seen = []

    def stop_at(record):
        seen.append(record)
        if len(seen) == 9:
            checkpoint.request_stop()

    ck = cfg.replace(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        dd.segment_video(_clip(), ck.replace(callback=stop_at), fg_hints=fg, bg_hints=bg)
    assert seen[-1]["visit"] >= 2
    checkpoint.reset()
    got = dd.segment_video(_clip(), ck.replace(resume=True), fg_hints=fg, bg_hints=bg)
    assert checkpoint.resumed_at() == seen[-1]["iteration"] + 1
    for field in ("mask", "soft_mask", "foreground", "background"):
        np.testing.assert_array_equal(getattr(want, field), getattr(got, field), err_msg=field)
