"""The solver's learning-rate hook, ``Problem.lr_scale``: 1.0 unless a problem schedules its lr."""
import numpy as np
import pytest

import doubledip as dd
from doubledip.engine import solver
from doubledip.engine.adam import Adam
from doubledip.engine.solver import PlateauStop, Problem
from doubledip.engine.io import load_image
from doubledip.engine.tasks import separation


def _image(seed=0, h=24, w=30):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


class RecordingAdam(Adam):
    """Adam that records the lr of every update."""

    seen: list = []

    def step(self):
        RecordingAdam.seen.append(self.lr)
        super().step()


@pytest.fixture
def lrs(monkeypatch):
    RecordingAdam.seen = []
    monkeypatch.setattr(solver, "Adam", RecordingAdam)
    return RecordingAdam.seen


def test_the_default_hook_keeps_the_lr_constant(lrs):
    assert Problem().lr_scale(0, 0) == 1.0 and Problem().lr_scale(3, 10_000) == 1.0
    dd.separate(_image(), dd.SolverConfig(iterations=6, log_every=3))
    assert lrs == [separation.DEFAULT_LR] * 6
    del lrs[:]
    dd.separate(_image(), dd.SolverConfig(iterations=6, log_every=3, mode="fast"))
    assert lrs == [separation.FAST_LR] * 6


def test_a_problems_schedule_sets_each_updates_lr(lrs, monkeypatch):
    cfg = dd.SolverConfig(iterations=6, log_every=3)
    plain = dd.separate(_image(), cfg)
    monkeypatch.setattr(separation.SeparationProblem, "lr_scale", lambda self, stage, k: 0.5 ** k)
    del lrs[:]
    halved = dd.separate(_image(), cfg)
    assert lrs == [separation.DEFAULT_LR * 0.5 ** k for k in range(6)]
    # the first update is the same (scale 1), the run is not
    assert not np.array_equal(plain.layers[0], halved.layers[0])
    # a scale of exactly 1.0 is the constant-lr run, bit for bit
    monkeypatch.setattr(separation.SeparationProblem, "lr_scale", lambda self, stage, k: 1.0)
    again = dd.separate(_image(), cfg)
    for a, b in zip(plain.layers, again.layers):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_still_ends_a_scheduled_run(lrs, monkeypatch):
    monkeypatch.setattr(solver, "PlateauStop", lambda: PlateauStop(patience=4, min_gain=100.0, min_iterations=0))
    monkeypatch.setattr(separation.SeparationProblem, "lr_scale", lambda self, stage, k: 1.0 / (1 + k))
    seen = []
    r = dd.separate(_image(), dd.SolverConfig(iterations=50, log_every=2, early_stop=True, callback=seen.append))
    assert seen[-1]["iteration"] == 5  # logged at 1, 3, 5: 4 iterations past the best (at 1)
    assert lrs == [separation.DEFAULT_LR / (1 + k) for k in range(6)]
    assert np.isfinite(r.layers[0]).all()


def test_fast_separation_raises_the_lr_after_the_noise_ramp(lrs, monkeypatch):
    ref = separation.SeparationProblem(load_image(_image()), (4,), [0])
    fast = separation.SeparationProblem(load_image(_image()), (4,), [0], fast=True)
    end = separation.NOISE_RAMP_END
    assert [ref.lr_scale(0, k) for k in (0, end, end + 1, 8000)] == [1.0] * 4
    assert [fast.lr_scale(0, k) for k in (0, end, end + 1, 8000)] == [1.0, 1.0] + [separation.FAST_LR_AFTER_RAMP] * 2
    # through the solver: a ramp ending at iteration 2 raises the lr of updates 3 onwards
    monkeypatch.setattr(separation, "NOISE_RAMP_END", 2)
    dd.separate(_image(), dd.SolverConfig(iterations=6, log_every=3, mode="fast"))
    assert lrs == pytest.approx([1e-3] * 3 + [1.5e-3] * 3, rel=1e-12)  # fast mode's lr, then raised 1.5x
    del lrs[:]
    dd.separate(_image(), dd.SolverConfig(iterations=6, log_every=3))
    assert lrs == [separation.DEFAULT_LR] * 6
