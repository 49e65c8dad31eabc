"""Clips in and out: video files through PyAV (frame count, size and rate kept), folders, lists,
arrays, tensors; each bad clip is one ValueError / TypeError naming what came."""
import numpy as np
import pytest
import torch
from PIL import Image

from doubledip.engine import video_io
from doubledip.engine.video_io import load_clip, load_maps, write_video

T, H, W = 4, 24, 32

try:
    import av  # noqa: F401

    HAVE_AV = True
except ImportError:  # pragma: no cover - the [video] extra is installed in CI
    HAVE_AV = False
needs_av = pytest.mark.skipif(not HAVE_AV, reason="PyAV is not installed (pip install 'doubledip[video]')")


def _clip(t=T, h=H, w=W, seed=0):
    # smooth frames (a moving gradient): lossy codecs keep them close
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    frames = [np.stack([(x + 0.05 * k) % 1, y, 0.5 + 0 * x], axis=2) for k in range(t)]
    return np.stack(frames).astype(np.float32)


@needs_av
@pytest.mark.parametrize("suffix,fps", [(".mp4", 12.5), (".gif", 10.0), (".webm", 24.0), (".avi", 30.0)])
def test_a_written_video_reads_back_with_its_frames_size_and_rate(tmp_path, suffix, fps):
    frames = _clip()
    path = tmp_path / f"clip{suffix}"
    write_video(path, frames, fps)
    clip = load_clip(path)
    assert clip.frames.shape == (T, H, W, 3) and clip.frames.dtype == np.float32
    assert clip.fps == pytest.approx(fps, rel=1e-3)
    assert clip.path == str(path)
    assert np.abs(clip.frames - frames).mean() < 0.03  # lossy, but the same pictures


@needs_av
def test_odd_sizes_and_gray_maps_are_written_at_their_size(tmp_path):
    frames = _clip(3, 25, 33)[..., 0]  # T x H x W maps, odd sides (H.264 4:4:4)
    write_video(tmp_path / "odd.mp4", frames, 25)
    clip = load_clip(tmp_path / "odd.mp4")
    assert clip.frames.shape == (3, 25, 33, 3)
    with pytest.raises(ValueError, match="needs even sides"):
        write_video(tmp_path / "odd.webm", frames, 25)
    with pytest.raises(ValueError, match="cannot write a video as '.xyz'"):
        write_video(tmp_path / "a.xyz", frames, 25)


def test_folders_lists_arrays_and_tensors_load_as_clips(tmp_path):
    frames = _clip(11)
    for k, f in enumerate(frames):  # frame2.png before frame10.png: digit runs sort as numbers
        Image.fromarray((f * 255 + 0.5).astype(np.uint8)).save(tmp_path / f"frame{k}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = load_clip(tmp_path)
    assert clip.frames.shape == (11, H, W, 3) and clip.fps == video_io.DEFAULT_FPS
    assert np.abs(clip.frames - frames).max() < 1 / 255
    assert np.allclose(load_clip(list(frames)).frames, frames)
    assert np.allclose(load_clip((frames * 255).astype(np.uint8)).frames, frames, atol=1 / 255)
    assert np.allclose(load_clip(torch.from_numpy(frames).permute(0, 3, 1, 2)).frames, frames)
    gray = load_clip(frames[..., :1])  # one channel: promoted to colour
    assert gray.frames.shape == (11, H, W, 3) and np.allclose(gray.frames[..., 2], frames[..., 0])


@pytest.mark.parametrize("make,error,match", [
    (lambda p: p / "missing.mp4", ValueError, "no such file or folder"),
    (lambda p: (p / "bad.mp4").write_text("not a video") and p / "bad.mp4", ValueError, "is not a readable video"),
    (lambda p: _png(p / "one.png"), ValueError, "got the single image"),
    (lambda p: [_clip(1)[0]], ValueError, "at least 2 frames, got 1"),
    (lambda p: [_clip(1)[0], _clip(1, 20, W)[0]], ValueError, r"frames\[0\] is 24x32, frames\[1\] is 20x32"),
    (lambda p: _clip(1), ValueError, "at least 2 frames, got 1"),
    (lambda p: _clip()[0], ValueError, "a 3-D array is one image"),
    (lambda p: _clip(3, 6, 6), ValueError, "at least 8x8 pixels"),
    (lambda p: _clip() * 255, ValueError, r"expected float values in \[0, 1\]"),
    (lambda p: 42, TypeError, "expected a video file, a folder of images"),
    (lambda p: _folder(p, [(H, W), (H, W + 2)]), ValueError, "1.png is 24x34"),
    (lambda p: _folder(p, [(H, W)]), ValueError, "at least 2 frames, got 1"),
])
def test_bad_clips_are_one_clear_error(tmp_path, make, error, match):
    if "readable video" in match and not HAVE_AV:
        pytest.skip("reading a video file needs PyAV (pip install 'doubledip[video]')")
    with pytest.raises(error, match=match):
        load_clip(make(tmp_path))


def _png(path, size=(H, W)):
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(path)
    return path


def _folder(root, sizes):
    d = root / "frames"
    d.mkdir()
    for k, s in enumerate(sizes):
        _png(d / f"{k}.png", s)
    return d


def test_the_size_check_runs_before_the_frames_are_stacked(tmp_path):
    seen = []

    def check(t, h, w):
        seen.append((t, h, w))
        raise ValueError("too large")

    with pytest.raises(ValueError, match="too large"):
        load_clip(_folder(tmp_path, [(H, W)] * 3), check=check)
    with pytest.raises(ValueError, match="too large"):
        load_clip(_clip(), check=check)
    assert seen == [(3, H, W), (T, H, W)]


@needs_av
def test_the_size_check_sees_a_video_before_it_is_decoded(tmp_path):
    write_video(tmp_path / "c.mp4", _clip(), 25)
    seen = []
    load_clip(tmp_path / "c.mp4", check=lambda t, h, w: seen.append((t, h, w)))
    assert seen == [(T, H, W)]


def test_hint_maps_need_one_map_per_frame_of_the_clip_size():
    maps = np.zeros((T, H, W), np.float32)
    maps[:, 4:10, 5:15] = 1
    assert load_maps(maps, "fg_hints", T, (H, W)).shape == (T, H, W)
    assert load_maps(list(maps), "fg_hints", T, (H, W)).shape == (T, H, W)
    with pytest.raises(ValueError, match=r"fg_hints: expected one map per frame \(5\), got 4"):
        load_maps(maps, "fg_hints", 5, (H, W))
    with pytest.raises(ValueError, match=r"fg_hints: expected one map per frame \(5\), got 4"):
        load_maps(list(maps), "fg_hints", 5, (H, W))
    with pytest.raises(ValueError, match="expected maps of the clip's size 24x30"):
        load_maps(maps, "fg_hints", T, (H, 30))
    maps[2] = 0
    with pytest.raises(ValueError, match=r"maps of frames \[2\] are all zero"):
        load_maps(maps, "fg_hints", T, (H, W))
