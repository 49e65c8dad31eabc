"""mode="fast": bf16 generators, scalar mixing weights, separation's schedule and averaged layers,
early stopping on a PSNR plateau."""
import math

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine.solver import RunContext
from doubledip.engine.solver import PlateauStop
from doubledip.engine.tasks import pair, separation
from doubledip.engine.io import load_image


def _image(seed=0, h=24, w=30):
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3)).astype(np.float32)


def test_plateau_stop_waits_for_patience_after_the_last_gain():
    stop = PlateauStop(patience=100, min_gain=0.05, min_iterations=150)
    assert not stop.should_stop(0, {'psnr': 10.0})
    assert not stop.should_stop(50, {'psnr': 12.0})
    assert not stop.should_stop(149, {'psnr': 12.04})  # no real gain, but before min_iterations
    assert not stop.should_stop(149, {'psnr': None})
    assert stop.should_stop(150, {'psnr': 12.01})  # 100 iterations since the last gain (at 50)
    fresh = PlateauStop(patience=100, min_gain=0.05, min_iterations=0)
    assert not fresh.should_stop(0, {'psnr': [10.0, 12.0]})
    assert not fresh.should_stop(90, {'psnr': [10.0, 12.2]})  # the batch mean rose by 0.1
    assert fresh.should_stop(190, {'psnr': [10.0, 12.2]})


def test_early_stop_is_on_in_fast_mode_only_unless_asked():
    assert dd.SolverConfig(mode="fast").stops_early
    assert not dd.SolverConfig().stops_early
    assert dd.SolverConfig(early_stop=True).stops_early
    assert not dd.SolverConfig(mode="fast", early_stop=False).stops_early


def test_a_plateau_ends_the_run_and_the_best_result_is_kept(monkeypatch):
    """A run whose PSNR never rises past the first logs stops after the patience."""
    from doubledip.engine import solver

    monkeypatch.setattr(solver, "PlateauStop", lambda: PlateauStop(patience=4, min_gain=100.0, min_iterations=0))
    seen = []
    r = dd.separate(_image(), dd.SolverConfig(iterations=50, log_every=2, early_stop=True, callback=seen.append))
    assert seen[-1]["iteration"] == 5  # logged at 1, 3, 5: 4 iterations past the best (at 1)
    assert np.isfinite(r.layers[0]).all()


def test_fast_mode_uses_bf16_generators_and_float32_losses():
    img = load_image(_image())
    problem = separation.SeparationProblem(img, (4,), [0])
    seen = []
    problem.nets["layers"].head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    out = problem.step(0, 1, False, True, RunContext(autocast_dtype=torch.bfloat16))
    assert seen == [torch.bfloat16]
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_fast_mode_runs_bf16_generators_on_cuda_only(monkeypatch):
    """On the CPU fast mode keeps float32 generators (bf16 was measured slower there)."""
    from doubledip.engine import solver

    assert solver.fast_autocast_dtype(torch.device("cuda")) == torch.bfloat16
    assert solver.fast_autocast_dtype(torch.device("cpu")) is None
    seen = []
    original = separation.SeparationProblem.step

    def spy(self, stage, k, last, log, ctx):
        seen.append(ctx.autocast_dtype)
        return original(self, stage, k, last, log, ctx)

    monkeypatch.setattr(separation.SeparationProblem, "step", spy)
    dd.separate(_image(), dd.SolverConfig(iterations=2, mode="fast", device="cpu"))
    assert seen and all(d is None for d in seen)


def test_fast_pair_learns_two_scalars_instead_of_two_unets():
    img = load_image(_image())
    ref = pair.PairProblem(img, img.flip(-1), (4,), [0])
    fast = pair.PairProblem(img, img.flip(-1), (4,), [0], scalar_alphas=True)
    assert set(ref.nets) == {"layers", "alphas"} and set(fast.nets) == {"layers", "alpha_logits"}
    n_ref = sum(p.numel() for p in ref.nets.parameters())
    n_fast = sum(p.numel() for p in fast.nets.parameters())
    assert n_ref - n_fast == 2 * 1_544_769 - 2
    a0, a1 = (a.detach() for a in fast.alphas())
    assert float(a0) == pytest.approx(0.5) and float(a1) == pytest.approx(0.5)


@pytest.mark.parametrize("scalar_alphas", [False, True])
def test_pair_pulls_the_weights_toward_half_for_its_modes_prior_length(scalar_alphas):
    # the loss of one state before the prior's end minus after it = exactly the prior term
    img = load_image(_image())
    problem = pair.PairProblem(img, img.flip(-1), (4,), [0], scalar_alphas=scalar_alphas)
    if scalar_alphas:
        with torch.no_grad():
            problem.nets["alpha_logits"].logits.copy_(torch.tensor([[1.0, -2.0]]))
    end = pair.FAST_ALPHA_PRIOR_ITERATIONS if scalar_alphas else pair.ALPHA_PRIOR_ITERATIONS
    assert end == (250 if scalar_alphas else 1000)
    problem.nets.eval()  # BatchNorm on its running statistics: the same function at every call
    with torch.no_grad():
        during, after = (float(problem.step(0, k, False).loss) for k in (end - 1, end))
        a0, a1 = (a.double() for a in problem.alphas())
    prior = 0.5 * float((a0 - 0.5).pow(2).mean()) + 0.5 * float((a1 - 0.5).pow(2).mean())
    assert prior > (1e-3 if scalar_alphas else 0)
    assert during - after == pytest.approx(prior, rel=1e-3, abs=1e-7)


@pytest.mark.parametrize("task", ["separate", "separate_pair", "dehaze", "segment", "remove_watermark"])
def test_every_task_runs_in_fast_mode(task):
    cfg = dd.SolverConfig(iterations=4, repeats=1, mode="fast")
    img = _image()
    hint = np.zeros(img.shape[:2], np.float32)
    hint[5:12, 6:20] = 1
    run = {"separate": lambda: dd.separate(img, cfg), "separate_pair": lambda: dd.separate_pair(img, _image(1), cfg, method="dip"),
           "dehaze": lambda: dd.dehaze(img, cfg), "segment": lambda: dd.segment(img, cfg, fg_hint=hint, bg_hint=1 - hint),
           "remove_watermark": lambda: dd.remove_watermark(img, hint, cfg)}[task]
    result = run()
    assert result.config.mode == "fast"
    for value in vars(result).values():
        if isinstance(value, np.ndarray):
            assert np.isfinite(value).all() and value.min() >= 0 and value.max() <= 1


def test_fast_dehaze_runs_one_pass_pulled_toward_the_dark_channel_prior():
    from doubledip.engine.post import dcp_transmission
    from doubledip.engine.tasks import dehazing

    img = _image(3, 32, 32)
    fast = dd.dehaze(img, dd.SolverConfig(iterations=3, mode="fast", log_every=1), method="dip")
    assert {h["pass"] for h in fast.history} == {0}
    ref = dd.dehaze(img, dd.SolverConfig(iterations=4, log_every=1))
    assert {h["pass"] for h in ref.history} == {0, 1}
    # the prior term: a problem given a transmission prior has a larger loss when t is far from it
    x = load_image(img)
    a = torch.tensor([[0.8, 0.8, 0.8]])
    prior = dcp_transmission(x, a[0])
    assert prior.shape == (1, 1, 32, 32) and float(prior.min()) >= 0.1 and float(prior.max()) <= 1.0
    plain = dehazing.DehazeProblem(x, a, False, (4,), [0])
    pulled = dehazing.DehazeProblem(x, a, False, (4,), [0], transmission_prior=torch.full_like(prior, 0.1))
    assert float(pulled.step(0, 1, False).loss.detach()) > float(plain.step(0, 1, False).loss.detach())


def test_dcp_transmission_of_a_hazed_constant_image():
    """A flat colour J with dark channel 0 hazed by a known t: the prior recovers t (omega = 1)."""
    from doubledip.engine.post import dcp_transmission

    J = torch.zeros(1, 3, 40, 40)
    J[:, 0] = 0.6  # dark channel of J is 0 (blue and green are 0)
    A = torch.tensor([0.9, 0.9, 0.9])
    hazy = 0.7 * J + 0.3 * A.view(1, 3, 1, 1)
    t = dcp_transmission(hazy, A, omega=1.0)
    torch.testing.assert_close(t, torch.full_like(t, 0.7), atol=1e-4, rtol=0)


def test_output_average_is_an_exponential_moving_average():
    from doubledip.engine.solver import OutputAverage

    avg = OutputAverage(0.75)
    frames = [torch.full((2, 3), float(v)) for v in (4.0, 8.0, 0.0)]
    frames[2][1] = 16.0  # the second problem differs from the first
    for f in frames:
        avg.update({"x": f})
    expected = frames[0].clone()
    for f in frames[1:]:
        expected = 0.75 * expected + 0.25 * f
    torch.testing.assert_close(avg.outputs["x"], expected, rtol=0, atol=1e-6)
    frames[0].add_(100.0)  # the average holds its own copy
    torch.testing.assert_close(avg.outputs["x"], expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="decay"):
        OutputAverage(1.0)


def test_fast_separation_returns_the_averaged_layers(monkeypatch):
    """Fast mode's layers are the moving average of the tracked steps' layers; reference mode's
    are the best-tracked ones."""
    tracked = []
    original = separation.BestTracker.update

    def spy(self, psnr, outputs):
        tracked.append({k: v.clone() for k, v in outputs.items()})
        original(self, psnr, outputs)

    monkeypatch.setattr(separation.BestTracker, "update", spy)
    iterations = 3 * separation.TRACK_EVERY + 1  # tracked at 0, 8, 16, 24 (the last)
    fast = dd.separate(_image(), dd.SolverConfig(iterations=iterations, mode="fast", early_stop=False))
    assert len(tracked) == 4
    d = separation.FAST_AVERAGE_DECAY
    expected = [tracked[0][f"layer_{i}"] for i in range(2)]
    for step in tracked[1:]:
        expected = [d * e + (1 - d) * step[f"layer_{i}"] for i, e in enumerate(expected)]
    for got, want in zip(fast.layers, expected):
        np.testing.assert_allclose(got, want[0].permute(1, 2, 0).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.reconstruction, np.clip(fast.layers[0] + fast.layers[1], 0, 1), atol=1e-6)
    # reference mode keeps the best-tracked layers: one of the tracked steps' own layers
    del tracked[:]
    ref = dd.separate(_image(), dd.SolverConfig(iterations=iterations))
    assert any(np.array_equal(ref.layers[0], t["layer_0"][0].permute(1, 2, 0).numpy()) for t in tracked)


def test_fast_separation_halves_the_input_noise_after_the_ramp(monkeypatch):
    sigmas = []
    original = separation.SeparationProblem.perturbed

    def spy(self, z, sigma, *keys):
        sigmas.append(sigma)
        return original(self, z, sigma, *keys)

    monkeypatch.setattr(separation.SeparationProblem, "perturbed", spy)
    img = load_image(_image())
    end = separation.NOISE_RAMP_END
    for fast in (False, True):
        problem = separation.SeparationProblem(img, (end + 10,), [0], fast=fast)
        for k in (end // 2, end + 1):
            problem.step(0, k, False)
    ramp = (end // 2 // 100) / 1000
    # two layer nets, each perturbed: reference, then fast
    assert sigmas == [ramp] * 2 + [1 / 1000] * 2 + [ramp] * 2 + [separation.FAST_SIGMA_AFTER_RAMP] * 2
    assert separation.FAST_SIGMA_AFTER_RAMP == 5e-4


def test_every_result_says_why_its_run_ended(monkeypatch, tmp_path):
    """stop_reason / stopped_at: the cap, the stopping rule's reason, no fit; saved in result.json."""
    import json

    from doubledip.engine import solver

    plain = dd.separate(_image(), dd.SolverConfig(iterations=6, log_every=2))
    assert (plain.stop_reason, plain.stopped_at) == ("iterations", None)
    monkeypatch.setattr(solver, "PlateauStop", lambda: PlateauStop(patience=4, min_gain=100.0, min_iterations=0))
    stopped = dd.separate_pair(_image(1), _image(2), dd.SolverConfig(iterations=50, log_every=2, early_stop=True))
    assert stopped.stopped_at == 5 and stopped.stop_reason.startswith("plateau: psnr")
    classic = dd.dehaze(_image(3), method="dcp")
    assert (classic.stop_reason, classic.stopped_at) == ("no fit", None)
    saved = json.loads((stopped.save(tmp_path / "r") / "result.json").read_text())
    assert saved["run"]["stop_reason"] == stopped.stop_reason and saved["run"]["stopped_at"] == 5


def test_a_short_separation_warns_that_its_layers_are_not_yet_a_decomposition(tmp_path):
    """Judged without ground truth (the layers' sum against the image); in the result, result.json
    and as a ShortRunWarning; a run whose layers reproduce the image is not warned about."""
    import json

    from doubledip.engine.tasks.separation import SHORT_RUN_RECONSTRUCTION_DB, short_run_message

    with pytest.warns(dd.ShortRunWarning, match="not yet a decomposition"):
        r = dd.separate(_image(), dd.SolverConfig(iterations=4))
    assert len(r.warnings) == 1 and "after 4 iterations" in r.warnings[0]
    saved = json.loads((r.save(tmp_path / "r") / "result.json").read_text())
    assert saved["run"]["warnings"] == r.warnings
    assert short_run_message(SHORT_RUN_RECONSTRUCTION_DB + 0.1, 10) is None
    assert short_run_message(SHORT_RUN_RECONSTRUCTION_DB - 0.1, 10) is not None


def test_a_segmentation_whose_mask_is_all_one_value_warns():
    from doubledip.engine.tasks.segmentation import trivial_mask_message

    assert "empty" in trivial_mask_message(np.zeros((10, 10)))
    assert "full" in trivial_mask_message(np.ones((10, 10)))
    half = np.zeros((10, 10))
    half[:5] = 1
    assert trivial_mask_message(half) is None


def test_fast_separation_stops_once_its_layers_settle_per_image():
    """The rule's check: per image, the mean change of the averaged layers over the last
    SETTLE_WINDOW checks below SETTLE_BELOW (relative to the mixture's mean), from SETTLE_START on;
    a settled image's average is frozen while the others go on; the run stops once all have."""
    imgs = torch.cat([load_image(_image(0)), load_image(_image(1))])
    problem = separation.SeparationProblem(imgs, (10,), [0, 1], fast=True, settle=True)
    still = torch.rand(2, 3, 24, 30)
    moving = still.clone()
    start = separation.SETTLE_START
    for check in range(separation.SETTLE_WINDOW + 1):
        moving[1] += 0.1  # image 1 keeps changing; image 0 does not
        problem.average.outputs = {"layer_0": moving.clone(), "layer_1": moving.clone()}
        problem._check_settled(start + check * separation.SETTLE_EVERY)
    assert problem.stopped.tolist() == [True, False]
    assert not bool(problem.stop_requested(0))
    before = problem.average.outputs["layer_0"].clone()
    problem.average.update({"layer_0": torch.zeros(2, 3, 24, 30), "layer_1": torch.zeros(2, 3, 24, 30)},
                           problem.stopped)
    assert torch.equal(problem.average.outputs["layer_0"][0], before[0])  # frozen
    assert not torch.equal(problem.average.outputs["layer_0"][1], before[1])
    # before SETTLE_START no image settles, however still
    early = separation.SeparationProblem(imgs, (10,), [0, 1], fast=True, settle=True)
    for check in range(separation.SETTLE_WINDOW + 1):
        early.average.outputs = {"layer_0": still.clone(), "layer_1": still.clone()}
        early._check_settled(start - 1 - check)
    assert not early.stopped.any()


def test_the_default_fast_separation_stops_where_its_rule_fires(monkeypatch):
    monkeypatch.setattr(separation, "SETTLE_START", 0)
    monkeypatch.setattr(separation, "SETTLE_BELOW", math.inf)  # settled at the first full window
    seen = []
    r = dd.separate(_image(), dd.SolverConfig(mode="fast", iterations=1000, callback=seen.append))
    window_full = (separation.SETTLE_WINDOW + 1) * separation.SETTLE_EVERY
    assert r.stopped_at == window_full - 1 and r.stop_reason.startswith("settled: the layers")
    assert "layer_change" in r.history[-1] and seen[-1]["iteration"] == window_full - 1
    off = dd.separate(_image(), dd.SolverConfig(mode="fast", iterations=300, early_stop=False))
    assert off.stop_reason == "iterations" and "layer_change" not in off.history[-1]
    assert separation.SPEC.defaults_for("fast").stages == separation.FAST_ITERATIONS


def test_a_collapsed_fast_separation_starts_again_from_a_derived_seed(monkeypatch):
    """A run whose layer went flat at COLLAPSE_AT stops there and runs again (at most
    MAX_RESTARTS times), from seeds derived from its own."""
    monkeypatch.setattr(separation, "COLLAPSE_AT", 100)
    monkeypatch.setattr(separation, "COLLAPSE_RATIO", 2.0)  # min < 2 * max: always "collapsed"
    cfg = dd.SolverConfig(mode="fast", iterations=300, seed=3)
    r = dd.separate(_image(), cfg)
    assert r.restarts == separation.MAX_RESTARTS
    attempts = [rec.get("attempt", 0) for rec in r.history]
    assert attempts[0] == 0 and attempts[-1] == separation.MAX_RESTARTS
    # the collapsed attempts stopped at COLLAPSE_AT, the last ran to its cap
    assert sum(1 for rec in r.history if rec.get("attempt", 0) == 0) == 100 // cfg.log_every
    assert r.stop_reason == "iterations" and r.history[-1]["iteration"] == 2 * 100 + 300 - 1
    # the last attempt is a plain run from the derived seed (within the rounding of the frozen-
    # average update's other arithmetic)
    alone = separation.separate_many([_image()], cfg.replace(early_stop=False, seed=separation.restart_seed(
        3, separation.MAX_RESTARTS)))[0]
    np.testing.assert_allclose(r.layers[0], alone.layers[0], atol=1e-5)


def test_in_a_batch_only_the_collapsed_image_runs_again(monkeypatch):
    monkeypatch.setattr(separation, "COLLAPSE_AT", 100)
    real = separation.SeparationProblem._check_collapsed

    def first_image_only(self):
        real(self)
        if self.batch == 2:
            self.collapsed = torch.tensor([True, False])
            self.stopped = self.collapsed.clone()
        else:
            self.collapsed = torch.zeros(self.batch, dtype=torch.bool)
            self.stopped = torch.zeros(self.batch, dtype=torch.bool)

    monkeypatch.setattr(separation.SeparationProblem, "_check_collapsed", first_image_only)
    cfg = dd.SolverConfig(mode="fast", iterations=300, seed=5)
    a, b = separation.separate_many([_image(0), _image(1)], cfg)
    assert (a.restarts, b.restarts) == (1, 0)
    assert [rec.get("attempt", 0) for rec in b.history] == [0] * len(b.history)
    assert {rec.get("attempt", 0) for rec in a.history} == {0, 1}
    # the other image's run is the batch's without the collapse (a batch's images are
    # independent problems; the grouped float32 arithmetic is the same)
    monkeypatch.setattr(separation, "COLLAPSE_AT", 10 ** 6)
    _, unchanged = separation.separate_many([_image(0), _image(1)], cfg)
    np.testing.assert_array_equal(b.layers[0], unchanged.layers[0])


def test_fast_dehazing_returns_the_classic_result_when_the_fit_does_not_explain_the_image_better(monkeypatch):
    from doubledip.engine.tasks import dehazing

    hazy = _image(4, 32, 32) * 0.5 + 0.4
    monkeypatch.setattr(dehazing, "FALLBACK_MARGIN", 1.0)  # the fit can never be better by 100%
    r = dd.dehaze(hazy, dd.SolverConfig(mode="fast", iterations=20), method="dip")
    classic = dd.dehaze(hazy, method="dcp")
    assert r.method == "dcp" and r.selection.startswith("dcp: the fit did not")
    np.testing.assert_allclose(r.image, classic.image, atol=1e-6)
    np.testing.assert_allclose(r.transmission, classic.transmission, atol=1e-6)
    assert r.fitted is None and r.history  # the fit ran; its nets do not make these outputs
    monkeypatch.setattr(dehazing, "FALLBACK_MARGIN", -math.inf)  # any finite residual is better
    kept = dd.dehaze(hazy, dd.SolverConfig(mode="fast", iterations=20), method="dip")
    assert (kept.method, kept.selection[:4]) == ("dip", "dip:") and kept.fitted is not None
    assert dd.dehaze(hazy, dd.SolverConfig(iterations=4)).selection == ""  # reference mode: the fit
    monkeypatch.setattr(dehazing, "FALLBACK_MARGIN", 1.0)
    forced = dd.dehaze(hazy, dd.SolverConfig(mode="fast", iterations=20), keep_fit=True)
    assert forced.method == "dip" and forced.selection == "" and forced.fitted is not None


def test_fast_dehazings_default_call_is_the_dark_channel_prior_without_a_fit():
    hazy = _image(4, 32, 32) * 0.5 + 0.4
    r = dd.dehaze(hazy, dd.SolverConfig(mode="fast", iterations=20))
    classic = dd.dehaze(hazy, method="dcp")
    np.testing.assert_array_equal(r.image, classic.image)
    np.testing.assert_array_equal(r.transmission, classic.transmission)
    np.testing.assert_array_equal(r.airlight, classic.airlight)
    assert r.method == "dcp" and r.selection.startswith("dcp: fast mode's default") and classic.selection == ""
    assert r.history == [] and r.fitted is None and r.stop_reason == "no fit"
    # keep_fit asks for the fit; reference mode's default is the fit
    forced = dd.dehaze(hazy, dd.SolverConfig(mode="fast", iterations=3), keep_fit=True)
    assert forced.method == "dip" and forced.history and forced.fitted is not None
    learned = dd.dehaze(hazy, dd.SolverConfig(mode="fast", iterations=2), learn_airlight=True)
    assert learned.history and not learned.selection.startswith("dcp: fast mode's default")  # the fit ran
    assert dd.dehaze(hazy, dd.SolverConfig(iterations=2)).method == "dip"


def test_dehazing_refuses_an_unknown_method_and_the_prior_with_keep_fit():
    hazy = _image(4, 16, 16)
    with pytest.raises(ValueError, match="method must be one of"):
        dd.dehaze(hazy, method="haze-lines")
    with pytest.raises(ValueError, match="keep_fit=True is an option of the fit"):
        dd.dehaze(hazy, dd.SolverConfig(mode="fast"), method="dcp", keep_fit=True)
    with pytest.raises(ValueError, match="learn_airlight=True is an option of the fit"):
        dd.dehaze(hazy, method="dcp", learn_airlight=True)


def test_the_haze_residual_is_zero_for_the_true_transmission_and_grows_where_it_is_too_low():
    from doubledip.engine.tasks.dehazing import haze_residual

    clear = torch.rand(1, 3, 16, 16)
    t = torch.full((1, 1, 16, 16), 0.6)
    a = torch.tensor([0.8, 0.8, 0.8])
    hazy = t * clear + (1 - t) * a.view(1, 3, 1, 1)
    assert haze_residual(hazy, t, a) < 1e-6
    assert haze_residual(hazy, t * 0.3, a) > 1e-2  # asks for J outside [0, 1]


def test_fast_multi_image_watermark_removal_is_one_run_of_its_own_length():
    """Fast mode's several-image watermark removal: one run (no median of repeats) of
    FAST_MULTI_ITERATIONS, against reference mode's 3 x 4000; repeats= still overrides."""
    from doubledip.engine.tasks import watermark

    fast = watermark.MULTI_SPEC.defaults_for("fast")
    reference = watermark.MULTI_SPEC.defaults_for("reference")
    assert (fast.stages, fast.repeats) == (watermark.FAST_MULTI_ITERATIONS, 1) == ((2800,), 1)
    assert (reference.stages, reference.repeats) == ((4000,), 3)
    images = [_image(0), _image(1)]
    one = dd.remove_watermark_multi(images, dd.SolverConfig(mode="fast", iterations=4, log_every=1))
    assert {rec.get("repeat", 0) for rec in one.history} == {0} and len(one.history) == 4
    two = dd.remove_watermark_multi(images, dd.SolverConfig(mode="fast", iterations=4, log_every=1, repeats=2))
    assert {rec.get("repeat", 0) for rec in two.history} == {0, 1}


def test_fast_hinted_watermark_removal_lets_the_inpainting_vote_with_the_repeats():
    """Fast mode: inside the hinted region the inpainting votes as one more repeat (per-pixel
    median, the middle two averaged) and the vote is averaged with the inpainting; outside it
    the input. One repeat: the vote is the mean of the fit (what keep_fit=True returns) and the
    inpainting, so the region is 1/4 fit + 3/4 inpainting. Reference mode returns the fit."""
    from doubledip.evaluation.baselines import inpaint_hint

    image = _image(0)
    hint = np.zeros(image.shape[:2], np.float32)
    hint[8:20, 6:26] = 1.0
    region = hint > 0.5
    cfg = dd.SolverConfig(mode="fast", iterations=4, repeats=1, seed=3, progress=False)
    blended = dd.remove_watermark(image, hint, cfg)
    fit = dd.remove_watermark(image, hint, cfg, keep_fit=True)
    assert (blended.method, fit.method) == ("dip+inpainting", "dip")
    filled = inpaint_hint(image, hint)
    np.testing.assert_allclose(blended.image[region], 0.25 * fit.image[region] + 0.75 * filled[region], atol=1e-5)
    np.testing.assert_allclose(blended.image[~region], image[~region], atol=1e-6)
    assert np.abs(fit.image[region] - filled[region]).mean() > 1e-3  # the two differ: the blend is neither
    reference = dd.remove_watermark(image, hint, cfg.replace(mode="reference"))
    assert reference.method == "dip"


def test_the_inpaintings_vote_drops_a_failed_repeat():
    """Three repeats, one far off: inside the region the result is the mean of (the median of the
    repeats and the inpainting, numpy's) and the inpainting, so the failed repeat does not reach
    it; outside, the repeats' median."""
    from doubledip.engine.tasks.watermark import blend_with_inpainting, inpainted

    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((1, 3, 16, 20), dtype=np.float32))
    hint = torch.zeros(1, 1, 16, 20)
    hint[..., 4:12, 5:15] = 1
    good = [image + 0.01 * k for k in (1, 2)]
    failed = torch.zeros_like(image)
    out = blend_with_inpainting(image, hint, [good[0], failed, good[1]]).numpy()
    filled = inpainted(image, hint).numpy()
    stack = np.stack([good[0].numpy(), failed.numpy(), good[1].numpy(), filled])
    region = np.broadcast_to(hint.numpy() > 0.5, out.shape)
    want = (np.median(stack, axis=0) + filled) / 2
    np.testing.assert_allclose(out[region], want[region], atol=1e-6)
    np.testing.assert_allclose(out[~region], np.median(stack[:3], axis=0)[~region], atol=1e-6)
