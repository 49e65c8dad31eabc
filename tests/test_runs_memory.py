"""The peak-memory estimate: its model, a measurement against it, and a batch refusing an input
that cannot fit (before it starts) while the others go on."""
import numpy as np
import pytest
from PIL import Image

import doubledip as dd
from doubledip.runs import manifest as mf
from doubledip.runs import memory


def test_estimate_grows_with_pixels_images_and_is_lower_with_low_memory():
    small = memory.estimate_peak_mb("separate", (128, 128))
    big = memory.estimate_peak_mb("separate", (512, 512))
    assert big > small > memory.BASE_MB
    assert memory.estimate_peak_mb("separate", (512, 512), images=4) > 3 * (big - 350)
    assert memory.estimate_peak_mb("separate", (512, 512), low_memory=True) < big
    # dehazing runs at its working size: above 800 px a side the estimate stops growing with the input
    assert memory.estimate_peak_mb("dehaze", (1600, 1600)) < memory.estimate_peak_mb("dehaze", (799, 799)) * 1.1
    assert memory.estimate_peak_mb("a_task_of_its_own", (64, 64)) > 0
    with pytest.raises(TypeError, match=r"size must be \(H, W\)"):
        memory.estimate_peak_mb("separate", 64)


def test_check_fits_refuses_with_a_clear_message():
    with pytest.raises(MemoryError, match=r"separate on 1 x 4000x4000 needs about .* GB .* 1.0 GB is available"):
        memory.check_fits("separate", (4000, 4000), available=1024)
    assert memory.check_fits("separate", (64, 64), available=4096) > 0


def test_estimate_covers_a_measured_run():
    """A fresh process's peak RSS at 128 px: the estimate is at or above it, within 50% (the
    import cost alone varies by ~100 MB between environments)."""
    measured = memory.measure("separate", 128)
    estimate = memory.estimate_peak_mb("separate", (128, 128))
    assert measured * 0.97 <= estimate <= measured * 1.5, (measured, estimate)


def test_batch_refuses_what_cannot_fit_and_runs_the_rest(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for name, side in (("small", 24), ("huge", 700)):
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{name}.png")
    monkeypatch.setattr(memory, "available_mb", lambda: 600.0)
    report = dd.run_many("separate", [tmp_path / "small.png", tmp_path / "huge.png"], tmp_path / "out",
                         dd.SolverConfig(iterations=2, device="cpu"))
    state = {r["name"]: r for r in mf.latest(mf.read(tmp_path / "out" / "manifest.jsonl")).values()}
    assert state["small"]["status"] == "done"
    assert state["huge"]["status"] == "failed" and "not enough memory" in state["huge"]["error"]
    assert state["huge"]["seconds"] < 5  # refused before it started
    assert len(report.failed) == 1
