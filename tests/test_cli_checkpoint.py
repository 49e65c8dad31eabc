"""A single long run from the CLI: checkpoints in OUTDIR/.checkpoint, Ctrl-C keeps the work, --resume
continues it to the uninterrupted run's result, --keep-partial saves the best so far."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from doubledip.cli import CHECKPOINTS, main


@pytest.fixture
def image_file(tmp_path):
    p = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((24, 28, 3)) * 255).astype(np.uint8)).save(p)
    return p


def _layers(folder):
    return [np.asarray(Image.open(folder / f"layer_{i}.png")) for i in (0, 1)]


def test_a_checkpointed_run_finishes_like_a_plain_one_and_leaves_no_checkpoint(tmp_path, image_file):
    base = ["separate", str(image_file), "--iterations", "6", "--seed", "1", "--quiet"]
    assert main(base + ["-o", str(tmp_path / "plain")]) == 0
    assert main(base + ["-o", str(tmp_path / "ckpt"), "--checkpoint-every", "2"]) == 0
    assert not (tmp_path / "ckpt" / CHECKPOINTS).exists()
    for a, b in zip(_layers(tmp_path / "plain"), _layers(tmp_path / "ckpt")):
        np.testing.assert_array_equal(a, b)


def _interrupt(cmd, out, timeout=120):
    """Start ``cmd``, send SIGINT once its checkpoint exists; returns (returncode, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while not (out / CHECKPOINTS).is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_ctrl_c_keeps_a_checkpoint_and_resume_gives_the_uninterrupted_result(tmp_path, image_file):
    cmd = [sys.executable, "-m", "doubledip", "separate", str(image_file), "--iterations", "600", "--seed", "2",
           "--quiet", "--checkpoint-every", "5"]
    out = tmp_path / "run"
    rc, err = _interrupt(cmd + ["-o", str(out)], out)
    assert rc == 130 and "--resume" in err and str(out / CHECKPOINTS) in err
    assert not (out / "result.json").exists()  # no result: only the checkpoint
    assert main(cmd[3:] + ["-o", str(out), "--resume"]) == 0
    assert main(cmd[3:] + ["-o", str(tmp_path / "whole")]) == 0
    for a, b in zip(_layers(out), _layers(tmp_path / "whole")):
        np.testing.assert_array_equal(a, b)


def test_keep_partial_saves_the_best_so_far_marked_partial(tmp_path, image_file):
    out = tmp_path / "part"
    cmd = [sys.executable, "-m", "doubledip", "separate", str(image_file), "--iterations", "600", "--quiet",
           "--checkpoint-every", "5", "--keep-partial", "-o", str(out)]
    rc, _ = _interrupt(cmd, out)
    assert rc == 0
    meta = json.loads((out / "result.json").read_text())
    assert meta["partial"] is True
    # the run skipped to its last iteration at Ctrl-C: fewer logged steps than a whole run's 24
    logged = [h["iteration"] for h in meta["history"]]
    assert logged[-1] == 599 and len(logged) < 24
