"""The progress bar: each printed line shows its own count's numbers, and exactly one final line.

tqdm prints a line on an update at most every 0.1 s (``mininterval``): the tests sleep past it
before the updates they need printed. Lines are tqdm's ``\\r``-separated segments of stderr.
"""
from __future__ import annotations

import re
import time

import numpy as np
import torch

import doubledip as dd
from doubledip.engine.solver import Problem, ProgressReporter, Step, run_problem

PAST_MININTERVAL = 0.15
H, W = 26, 34


def _lines(err: str) -> list[str]:
    return [s for s in re.split(r"[\r\n]", err) if s.strip()]


def _at(lines: list[str], done: int, total: int) -> list[str]:
    return [s for s in lines if re.search(rf"(?<!\d){done}/{total}(?!\d)", s)]


def _reporter(total: int) -> ProgressReporter:
    return ProgressReporter(dd.SolverConfig(progress=True), total, "test")


def _log(rep: ProgressReporter, loss: float, psnr: float, advanced: int) -> None:
    time.sleep(PAST_MININTERVAL)  # this update prints a line
    rep.log({"stage": 0, "iteration": rep.done + advanced - 1, "loss": loss, "psnr": psnr}, advanced)


def test_one_final_line_with_the_last_numbers(capsys):
    rep = _reporter(6)
    _log(rep, 1.0, 10.0, 3)
    _log(rep, 0.5, 20.0, 3)
    rep.close()
    lines = _lines(capsys.readouterr().err)
    final = _at(lines, 6, 6)
    assert len(final) == 1, lines
    assert "loss=0.5000" in final[0] and "psnr=20.00" in final[0]
    # an intermediate line shows the numbers logged at its own count, not the previous log's
    (mid,) = _at(lines, 3, 6)
    assert "loss=1.0000" in mid and "psnr=10.00" in mid


def test_a_run_that_stops_early_ends_where_it_stopped(capsys):
    rep = _reporter(10)
    _log(rep, 1.0, 10.0, 3)
    _log(rep, 0.25, 30.0, 3)  # the run stops here: no more logs
    rep.close()
    rep.close()  # a second close prints nothing
    err = capsys.readouterr().err
    lines = _lines(err)
    final = _at(lines, 6, 10)
    assert len(final) == 1, lines
    assert "loss=0.2500" in final[0] and "psnr=30.00" in final[0]
    assert not _at(lines, 10, 10)  # not moved on to the total
    assert err.endswith("\n") and err.count("\n") == 1
    assert final[0] == lines[-1]


def test_the_final_line_comes_once_even_without_a_pause(capsys):
    rep = _reporter(4)
    rep.log({"loss": 1.0, "psnr": 10.0}, 2)
    rep.log({"loss": 0.125, "psnr": 12.0}, 2)  # within 0.1 s: tqdm would not print it on update
    rep.close()
    final = _at(_lines(capsys.readouterr().err), 4, 4)
    assert len(final) == 1 and "loss=0.1250" in final[0]


def test_no_bar_without_progress(capsys):
    rep = ProgressReporter(dd.SolverConfig(progress=False), 4, "test")
    rep.log({"loss": 1.0}, 4)
    rep.close()
    assert capsys.readouterr().err == ""
    assert rep.done == 4 and len(rep.history) == 1


class _Quadratic(Problem):
    """A problem that asks to stop after ``stop_after`` iterations (as segmentation does)."""

    def __init__(self, iterations: int, stop_after: int):
        self.nets = torch.nn.ModuleDict({"x": torch.nn.Linear(2, 1)})
        self.stage_iterations = (iterations,)
        self.stop_after = stop_after
        self.k = -1

    def step(self, stage, k, last, log=False, ctx=None):
        self.k = k
        y = self.nets["x"](torch.ones(1, 2))
        return Step(loss=(y ** 2).sum(), psnr=torch.tensor([float(k)]))

    def stop_requested(self, stage):
        return torch.tensor(self.k + 1 >= self.stop_after)


def _slow_callback(record):
    time.sleep(PAST_MININTERVAL)  # every later update prints a line


def test_solver_stopping_a_stage_early_ends_the_bar_there(capsys):
    config = dd.SolverConfig(progress=True, log_every=3, callback=_slow_callback)
    rep = ProgressReporter(config, 12, "quadratic")
    time.sleep(PAST_MININTERVAL)
    run_problem(_Quadratic(12, stop_after=6), config, 1e-2, rep)
    rep.close()
    lines = _lines(capsys.readouterr().err)
    assert [h["iteration"] for h in rep.history] == [2, 5]
    final = _at(lines, 6, 12)
    assert len(final) == 1 and final[0] == lines[-1], lines
    assert f"loss={rep.history[-1]['loss']:.4f}" in final[0] and "psnr=5.00" in final[0]


def _image(seed=0):
    return np.random.default_rng(seed).random((H, W, 3)).astype(np.float32)


def test_watermark_repeats_end_with_one_line_of_the_last_repeat(capsys):
    hint = np.zeros((H, W), np.float32)
    hint[5:15, 8:20] = 1
    config = dd.SolverConfig(iterations=6, repeats=2, log_every=2, progress=True, device="cpu",
                             callback=_slow_callback)
    r = dd.remove_watermark(_image(), hint, config)
    lines = _lines(capsys.readouterr().err)
    final = _at(lines, 12, 12)
    assert len(final) == 1, lines
    last = r.history[-1]
    assert last["repeat"] == 1 and f"loss={last['loss']:.4f}" in final[0]
    assert f"psnr={last['psnr']:.2f}" in final[0]


def test_two_pass_dehazing_ends_with_one_line(capsys):
    config = dd.SolverConfig(iterations=6, log_every=2, progress=True, device="cpu", callback=_slow_callback)
    r = dd.dehaze(_image(1), config, passes=2)
    lines = _lines(capsys.readouterr().err)
    final = _at(lines, 6, 6)
    assert len(final) == 1, lines
    assert {h["pass"] for h in r.history} == {0, 1}
    assert f"loss={r.history[-1]['loss']:.4f}" in final[0]
