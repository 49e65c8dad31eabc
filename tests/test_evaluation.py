"""The quality suite's metrics, case builders and baselines on inputs whose answer is known."""
import json

import numpy as np
import pytest

pytest.importorskip("skimage")

from doubledip.engine.tasks import registry
from doubledip.evaluation import baselines, cases, metrics
from doubledip.evaluation.metrics import PSNR_CAP


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# ------------------------------------------------------------------ metrics

def test_psnr_known_values():
    a = np.zeros((8, 8, 3))
    assert metrics.psnr(a, a) == PSNR_CAP
    assert metrics.psnr(a + 0.1, a) == pytest.approx(20.0)
    assert metrics.psnr(a + 0.01, a) == pytest.approx(40.0)


def test_psnr_mask_restricts_to_region():
    truth = np.zeros((8, 8, 3))
    est = truth.copy()
    est[:4] = 0.1
    region = np.zeros((8, 8))
    region[:4] = 1
    assert metrics.psnr(est, truth, mask=region) == pytest.approx(20.0)
    assert metrics.psnr(est, truth, mask=1 - region) == PSNR_CAP
    with pytest.raises(ValueError, match="no pixel"):
        metrics.psnr(est, truth, mask=np.zeros((8, 8)))
    with pytest.raises(ValueError, match="mask must have shape"):
        metrics.psnr(est, truth, mask=np.zeros((4, 4)))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4\) and \(5, 5\)"):
        metrics.mae(np.zeros((4, 4)), np.zeros((5, 5)))
    with pytest.raises(TypeError, match="received str"):
        metrics.mae("abc", np.zeros(3))


def test_ssim_perfect_and_degraded():
    x = _rand(16, 16, 3)
    assert metrics.ssim(x, x) == pytest.approx(1.0)
    assert metrics.ssim(x, 1 - x) < 0.5
    with pytest.raises(ValueError, match="at least 7x7"):
        metrics.ssim(x[:4, :4], x[:4, :4])


def test_iou_and_polarity():
    truth = np.zeros((6, 6))
    truth[:3] = 1
    assert metrics.iou(truth, truth) == 1.0
    assert metrics.iou(1 - truth, truth) == 0.0
    assert metrics.iou_either(1 - truth, truth) == 1.0
    half = np.zeros((6, 6))
    half[:3, :3] = 1
    assert metrics.iou(half, truth) == pytest.approx(0.5)
    assert metrics.iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_mae_and_correlation():
    assert metrics.mae(np.full(4, 0.5), np.full(4, 0.25)) == pytest.approx(0.25)
    x = _rand(100)
    assert metrics.correlation(x, 2 * x + 1) == pytest.approx(1.0)
    assert metrics.correlation(x, -x) == pytest.approx(-1.0)
    assert metrics.correlation(x, np.ones(100)) == 0.0


def test_perfect_decomposition_scores_perfect():
    a, b = _rand(16, 16, 3, seed=1) / 2, _rand(16, 16, 3, seed=2) / 2
    m = metrics.layer_scores([a, b], [a, b])
    assert m["layer_psnr"] == PSNR_CAP and m["layer_ssim"] == pytest.approx(1.0)
    assert m["separation"] == pytest.approx(1.0) and m["swapped"] == 0.0


def test_swapped_layers_are_matched():
    a, b = _rand(16, 16, 3, seed=1) / 2, _rand(16, 16, 3, seed=2) / 2
    assert metrics.match_layers([b, a], [a, b]) == (1, 0)
    m = metrics.layer_scores([b, a], [a, b])
    assert m["layer_psnr"] == PSNR_CAP and m["swapped"] == 1.0
    assert m["separation"] == pytest.approx(1.0)
    # noisy versions, swapped: each still matched to its own truth
    rng = np.random.default_rng(3)
    na, nb = a + 0.02 * rng.standard_normal(a.shape), b + 0.05 * rng.standard_normal(b.shape)
    m = metrics.layer_scores([nb, na], [a, b], with_ssim=False)
    assert m["swapped"] == 1.0
    assert m["layer_psnr_0"] == pytest.approx(metrics.psnr(na, a))
    assert m["layer_psnr_1"] == pytest.approx(metrics.psnr(nb, b))


def test_separation_of_unseparated_mixture_is_zero():
    a, b = _rand(16, 16, 3, seed=1), _rand(16, 16, 3, seed=2)
    mix = (a + b) / 4
    assert metrics.separation([mix, mix], [a / 2, b / 2]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="identical"):
        metrics.separation([a, b], [a, 2 * a])
    with pytest.raises(ValueError, match="list of 2 layers"):
        metrics.separation([a], [a, b])


def test_alpha_error_follows_assignment():
    assert metrics.alpha_error([0.7, 0.35], [0.7, 0.35], swapped=False) == pytest.approx(0.0)
    assert metrics.alpha_error([0.3, 0.65], [0.7, 0.35], swapped=True) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 mixing weights"):
        metrics.alpha_error([0.5], [0.7, 0.35], swapped=False)


# ------------------------------------------------------------------ cases

SIZE = 32


@pytest.mark.parametrize("builder", [cases.separate_case, cases.separate_pair_case,
                                     cases.dehaze_case, cases.segment_case,
                                     cases.remove_watermark_case, cases.remove_watermark_multi_case])
def test_case_truth_scores_perfect(builder):
    case = builder(SIZE)
    assert case.size == (SIZE, SIZE) and case.description
    first = case.args[0][0] if isinstance(case.args[0], list) else case.args[0]
    assert first.dtype == np.float32 and 0 <= first.min() and first.max() <= 1
    truth = case.truth
    outputs = {
        "separate": lambda: {"layers": truth["layers"][::-1]},
        "separate_pair": lambda: {"layers": truth["layers"], "alphas": truth["alphas"]},
        "dehaze": lambda: {"image": truth["image"], "transmission": truth["transmission"],
                           "airlight": truth["airlight"]},
        "segment": lambda: {"mask": truth["mask"]},
        "remove_watermark": lambda: {"image": truth["image"]},
        "remove_watermark_multi": lambda: {"images": truth["images"]},
    }[case.task]()
    m = registry.get(case.task).evaluation.score(outputs, truth)
    assert m[case.primary] in (1.0, PSNR_CAP) or m[case.primary] == pytest.approx(1.0)


def test_cases_recompose_their_inputs():
    s = cases.separate_case(SIZE)
    np.testing.assert_allclose(s.truth["layers"][0] + s.truth["layers"][1], s.args[0], atol=1e-6)
    p = cases.separate_pair_case(SIZE, alphas=(0.8, 0.2))
    a, b = p.truth["layers"]
    np.testing.assert_allclose(0.2 * a + 0.8 * b, p.args[1], atol=1e-6)
    d = cases.dehaze_case(SIZE)
    t = d.truth["transmission"][..., None]
    np.testing.assert_allclose(t * d.truth["image"] + (1 - t) * d.truth["airlight"], d.args[0], atol=1e-6)
    assert 0.29 < d.truth["transmission"].min() and d.truth["transmission"].max() < 0.91
    g = cases.segment_case(SIZE)
    m = g.truth["mask"]
    assert set(np.unique(m)) == {0.0, 1.0}
    assert (g.kwargs["fg_hint"] <= m).all() and (g.kwargs["bg_hint"] <= 1 - m).all()
    assert cases.segment_case(SIZE, hints=False).kwargs == {}
    w = cases.remove_watermark_case(SIZE)
    marked, hint = w.args
    assert hint.shape == (SIZE, SIZE)
    np.testing.assert_allclose(marked[hint == 0], w.truth["image"][hint == 0], atol=1e-6)
    assert not np.allclose(marked[hint == 1], w.truth["image"][hint == 1])
    mw = cases.remove_watermark_multi_case(SIZE)
    assert len(mw.args[0]) == 3 and len(mw.truth["images"]) == 3


def test_case_builders_reject_bad_arguments():
    with pytest.raises(TypeError, match="size must be an int, received float"):
        cases.separate_case(32.0)
    with pytest.raises(ValueError, match="at least 8"):
        cases.dehaze_case(4)
    with pytest.raises(ValueError, match="two different weights"):
        cases.separate_pair_case(SIZE, alphas=(0.5, 0.5))
    with pytest.raises(ValueError, match="unknown scikit-image sample"):
        cases.load_sample("no_such_image", SIZE)


# ------------------------------------------------------------------ baselines

def test_trivial_baselines_score_as_expected():
    s = cases.separate_case(SIZE)
    (name, out), = baselines.trivial_baselines(s).items()
    assert metrics.score_separate(out, s.truth)["separation"] == pytest.approx(0.0, abs=1e-9)
    w = cases.remove_watermark_case(SIZE)
    out = baselines.trivial_baselines(w)["input"]
    assert metrics.score_remove_watermark(out, w.truth)["psnr_region"] < 20


def test_inpainting_baseline_fills_the_hint_region_only_and_beats_the_input():
    w = cases.remove_watermark_case(SIZE)
    image, hint = w.args
    found = baselines.trivial_baselines(w)["biharmonic inpainting"]
    assert found["seconds"] >= 0
    outside = hint <= 0.5
    np.testing.assert_array_equal(found["image"][outside], image[outside])
    inside = metrics.score_remove_watermark(found, w.truth)["psnr_region"]
    assert inside > metrics.score_remove_watermark({"image": image}, w.truth)["psnr_region"] + 3
    with pytest.raises(ValueError, match="H x W hint"):
        baselines.inpaint_hint(image, hint[:-1])


def test_dark_channel_prior_beats_hazy_input():
    pytest.importorskip("doubledip.engine.post")
    case = cases.dehaze_case(64)
    hazy = metrics.score_dehaze({"image": case.args[0]}, case.truth)
    out = baselines.dark_channel_prior(case.args[0])
    assert out["image"].shape == (64, 64, 3) and out["transmission"].shape == (64, 64)
    dcp = metrics.score_dehaze(out, case.truth)
    assert dcp["psnr"] > hazy["psnr"] + 3
    assert dcp["transmission_mae"] < 0.15 and dcp["airlight_mae"] < 0.1
    with pytest.raises(ValueError, match="H x W x 3"):
        baselines.dark_channel_prior(np.zeros((8, 8)))


# ------------------------------------------------------------------ suite plumbing (no solver)

def test_table_and_json(tmp_path):
    from doubledip.evaluation.suite import format_table, write_rows
    row = {"task": "dehaze", "case": "c", "size": [8, 8], "iterations": 10, "seconds": 1.0,
           "s_per_iter": 0.1, "primary": "psnr", "metrics": {"psnr": 20.0, "ssim": 0.5},
           "baselines": {"hazy input": {"metrics": {"psnr": 12.0}},
                         "dark channel prior": {"metrics": {"psnr": 22.0}, "seconds": 0.05}},
           "gain": {"psnr": 8.0}, "curve": [{"iteration": 9, "psnr": float("nan")}]}
    table = format_table([row])
    assert "| dehaze | c | 8x8 | 10 |" in table and "dark channel prior: psnr 22.00 in 0.05 s" in table
    path = write_rows([row], tmp_path)
    loaded = json.loads(path.read_text())
    assert loaded[0]["curve"][0]["psnr"] is None and loaded[0]["metrics"]["psnr"] == 20.0


def test_evaluate_rejects_unknown_suite_and_task():
    from doubledip.evaluation.suite import evaluate
    with pytest.raises(ValueError, match="suite must be one of"):
        evaluate(suite="medium")
    with pytest.raises(ValueError, match="unknown task"):
        evaluate(tasks="sharpen")


def test_command_parses_and_reports_errors(capsys):
    import argparse
    from doubledip.evaluation.command import register
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "--suite", "quick", "--tasks", "sharpen", "-o", "x"])
    assert args.suite == "quick" and args.output == "x"
    assert args.func(args) == 2
    assert "unknown task" in capsys.readouterr().err


def test_evaluate_end_to_end_tiny(tmp_path):
    """The suite on the cheapest task at 32 px for a few iterations: rows, curve and JSON."""
    from doubledip.evaluation.suite import evaluate
    rows = evaluate(suite="quick", tasks="segment", size=32, iterations=4, log_every=2,
                    device="cpu", out_dir=tmp_path)
    assert [r["case"] for r in rows] == ["horse_hints", "horse_no_hints"]
    for r in rows:
        assert r["task"] == "segment" and r["iterations"] == 4 and r["seconds"] > 0
        assert 0.0 <= r["metrics"][r["primary"]] <= 1.0
        assert r["curve"] and {"iteration", "loss", "wall_seconds"} <= set(r["curve"][-1])
        assert r["primary"] in r["gain"]
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert [r["case"] for r in saved] == ["horse_hints", "horse_no_hints"]


@pytest.mark.parametrize("repeats,expected", [(None, 3), (2, 2)])
def test_run_case_records_the_repeats_that_ran(repeats, expected):
    """repeats=None runs the task's default count (3 for the watermark): the row says so, and
    its time per iteration is over all of them."""
    from doubledip.evaluation.suite import run_case

    case = cases.remove_watermark_case(16)
    row = run_case(case, iterations=4, repeats=repeats, mode="fast", log_every=1)
    seen = [p for p in row["curve"] if p.get("iteration") == 0]
    assert row["repeats"] == expected and len(seen) == expected
    assert row["s_per_iter"] == pytest.approx(row["seconds"] / (4 * expected))
