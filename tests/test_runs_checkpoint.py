"""Checkpoints of one run (``SolverConfig(checkpoint_dir=..., checkpoint_every=K, resume=...)``)
and of a batch: a run stopped and resumed gives what an uninterrupted run gives (CPU, same seed:
bit for bit), checkpoints of another run are refused, Ctrl-C keeps the work (``keep_partial``),
and a batch killed with SIGKILL or Ctrl-C, then rerun, writes the uninterrupted batch's outputs."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import doubledip as dd
from doubledip.engine import checkpoint
from doubledip.engine.results import public_fields
from doubledip.engine.tasks import registry
from doubledip.runs import manifest as mf
from doubledip.runs.batch import BatchInterrupted

RNG = np.random.default_rng(0)
IMG = RNG.random((24, 32, 3)).astype(np.float32)
HINT = np.zeros((24, 32), np.float32)
HINT[5:15, 8:20] = 1
ARGS = {"separate": [IMG], "dehaze": [IMG], "segment": [IMG], "separate_pair": [IMG, IMG[::-1].copy()],
        "remove_watermark": [IMG, HINT]}
CFG = dd.SolverConfig(iterations=6, seed=3, device="cpu", log_every=2, repeats=2)


def _fields(result):
    out = {}
    for f in public_fields(result):
        v = getattr(result, f)
        out[f] = np.stack(v) if isinstance(v, list) else np.asarray(v)
    return out


def _stop_at(n, seen=None):
    """A callback that asks the run to stop (as Ctrl-C does) at its n-th logged step; ``seen``
    gets the logged iterations."""
    seen = [] if seen is None else seen

    def callback(record):
        seen.append(record["iteration"])
        if len(seen) == n:
            checkpoint.request_stop()

    return callback


# dehazing and watermark removal are stopped in their second pass / repeat (the first call then
# resumes as a finished one), the others within their run (segmentation: in its second stage)
@pytest.mark.parametrize("task,mode,stop", [("separate", "reference", 2), ("separate", "fast", 2),
                                            ("dehaze", "reference", 3), ("segment", "reference", 2),
                                            ("separate_pair", "reference", 2), ("remove_watermark", "reference", 5)])
def test_stopped_and_resumed_run_equals_uninterrupted(task, mode, stop, tmp_path):
    spec = registry.get(task)
    cfg = CFG.replace(mode=mode)
    want = _fields(spec.run(*ARGS[task], cfg))
    ck = cfg.replace(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        spec.run(*ARGS[task], ck.replace(callback=_stop_at(stop, seen)))
    assert list(tmp_path.glob("run-*.pt")) and not list(tmp_path.glob(".*tmp"))
    if task in ("dehaze", "remove_watermark"):
        assert len(list(tmp_path.glob("run-*.pt"))) == 2  # the first call finished, the second stopped
    checkpoint.reset()
    got = _fields(spec.run(*ARGS[task], ck.replace(resume=True)))
    assert checkpoint.resumed_at() == seen[-1] + 1  # the iteration after the one it stopped at
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_resume_without_a_checkpoint_starts_over_and_finished_runs_restore(tmp_path):
    want = _fields(dd.separate(IMG, CFG))
    ck = CFG.replace(checkpoint_dir=str(tmp_path), checkpoint_every=3, resume=True)
    checkpoint.reset()
    first = _fields(dd.separate(IMG, ck))
    assert checkpoint.resumed_at() is None
    payload = checkpoint.load_file(tmp_path / "run-0.pt")
    assert payload["stage"] == 1 and payload["adam"] is None  # the finished call's end state
    assert {"problem", "rng", "history", "fingerprint"} <= set(payload)
    again = _fields(dd.separate(IMG, ck))  # a finished call: restored, nothing run
    assert checkpoint.resumed_at() == 6
    for name in want:
        np.testing.assert_array_equal(first[name], want[name])
        np.testing.assert_array_equal(again[name], want[name])


@pytest.mark.parametrize("change,needle", [
    ({"seed": 4}, r"other settings \(seed 3 there, 4 here"),
    ({"iterations": 9}, r"other settings \(iterations 6 there, 9 here"),
    ({"lr": 1e-2}, "other settings"),
])
def test_checkpoint_of_another_run_is_refused(change, needle, tmp_path):
    ck = CFG.replace(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        dd.separate(IMG, ck.replace(callback=_stop_at(2)))
    with pytest.raises(ValueError, match=needle):
        dd.separate(IMG, ck.replace(resume=True, **change))


def test_checkpoint_of_another_task_or_image_or_unreadable_is_refused(tmp_path):
    ck = CFG.replace(checkpoint_dir=str(tmp_path), checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        dd.separate(IMG, ck.replace(callback=_stop_at(2)))
    with pytest.raises(ValueError, match=r"another task \(.*SeparationProblem, this run is .*SegmentationProblem"):
        dd.segment(IMG, ck.replace(resume=True))
    with pytest.raises(ValueError, match="another image or seed"):
        dd.separate(1 - IMG, ck.replace(resume=True))
    (tmp_path / "run-0.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read"):
        dd.separate(IMG, ck.replace(resume=True))
    with pytest.raises(ValueError, match="need checkpoint_dir"):
        dd.SolverConfig(resume=True)


def test_keep_partial_returns_the_best_so_far_and_the_checkpoint_continues(tmp_path):
    want = _fields(dd.separate(IMG, CFG))
    ck = CFG.replace(checkpoint_dir=str(tmp_path), checkpoint_every=100, keep_partial=True)
    checkpoint.reset()
    partial = dd.separate(IMG, ck.replace(callback=_stop_at(2)))
    assert checkpoint.interrupted()
    # iterations 0-3 ran, then only the last one (5): the result is built from what it had
    assert [r["iteration"] for r in partial.history] == [1, 3, 5]
    assert not np.array_equal(_fields(partial)["layers"], want["layers"])
    checkpoint.reset()
    got = _fields(dd.separate(IMG, ck.replace(resume=True, keep_partial=False)))
    assert checkpoint.resumed_at() == 4 and not checkpoint.interrupted()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


# ---- batches -------------------------------------------------------------------------------

def _images(folder, n=3, size=(24, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def _outputs(out):
    got = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta = json.loads((folder / "result.json").read_text())
        got[folder.name] = ({f.name: np.asarray(Image.open(f)).tobytes() for f in folder.glob("*.png")},
                            meta["values"], meta.get("partial"))
    return got


# segmentation: its nets are small (13 ms a step here), so a batch of 3 x 40 iterations takes
# about 3 s with checkpoints every 5 iterations
BATCH_CFG = dd.SolverConfig(iterations=40, seed=2, device="cpu")


def _cli(images, out, *extra):
    return [sys.executable, "-m", "doubledip", "batch", "segment", str(images), "-o", str(out),
            "--iterations", "40", "--seed", "2", "--device", "cpu", "--quiet", "--checkpoint-every", "5", *extra]


def _wait_for_checkpoint(out, proc, timeout=120.0):
    """Until a run of the batch has written a checkpoint (and its first input is done)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if list((out / ".checkpoints").glob("*/run-*.pt")) and any(
                r["status"] == "done" for r in mf.read(out / "manifest.jsonl")):
            return
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    images = _images(root / "images")
    out = root / "out"
    assert len(dd.run_many("segment", [images], out, BATCH_CFG, checkpoint_every=0).done) == 3
    return images, _outputs(out)


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1")


def test_sigkill_then_rerun_gives_the_uninterrupted_outputs(uninterrupted, tmp_path):
    images, want = uninterrupted
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli(images, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_checkpoint(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    interrupted = {p.name for p in (out / ".checkpoints").iterdir() if list(p.glob("run-*.pt"))}
    rerun = subprocess.run(_cli(images, out), env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _outputs(out) == want
    last = {r["name"]: r for r in mf.latest(mf.read(out / "manifest.jsonl")).values()}
    for name in interrupted:  # what was running when killed continued from its checkpoint
        assert last[name]["resumed_at"] > 0
    assert not list(out.glob(".partial-*"))


def test_ctrl_c_on_workers_then_rerun_gives_the_uninterrupted_outputs(uninterrupted, tmp_path):
    images, want = uninterrupted
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli(images, out, "--workers", "2"), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    _wait_for_checkpoint(out, proc)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the driver and its workers
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"rerun the same command" in err
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line)["status"] in mf.STATUSES for line in lines)
    assert not list(out.glob(".partial-*")) and not list(out.glob(".replaced-*"))
    assert all(p.joinpath("result.json").exists() for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    # continued in one process: checkpoints and outputs do not depend on the executor
    rerun = subprocess.run(_cli(images, out), env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _outputs(out) == want


def test_batch_keep_partial_saves_partial_then_rerun_replaces_it(uninterrupted, tmp_path, monkeypatch):
    images, want = uninterrupted
    out = tmp_path / "out"
    cfg = BATCH_CFG
    original = checkpoint.Session.after_iteration

    def ctrl_c_at_10(self, stage, k, optimizer, since_log, iteration):
        if iteration == 10:
            checkpoint.request_stop()
        return original(self, stage, k, optimizer, since_log, iteration)

    monkeypatch.setattr(checkpoint.Session, "after_iteration", ctrl_c_at_10)
    with pytest.raises(BatchInterrupted):
        dd.run_many("segment", [images], out, cfg, checkpoint_every=5, keep_partial=True)
    partial = _outputs(out)
    assert list(partial) == ["im0"] and partial["im0"][2] is True  # marked partial in result.json
    assert mf.latest(mf.read(out / "manifest.jsonl"))[str((images / "im0.png").resolve())]["status"] == "running"
    monkeypatch.setattr(checkpoint.Session, "after_iteration", original)
    report = dd.run_many("segment", [images], out, cfg, checkpoint_every=5)
    assert len(report.done) == 3
    assert report.records[str((images / "im0.png").resolve())]["resumed_at"] == 11
    assert _outputs(out) == want
