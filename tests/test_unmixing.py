"""The classic two-image separation: weights by sparse ICA, layers in closed form (fast mode's
default for separate_pair), against the truth of mixtures made here."""
import json
import warnings

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine.unmixing import NotSeparable, estimate_weights, unmix
from doubledip.evaluation import cases, metrics


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def _psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


@pytest.mark.parametrize("first, second, alphas", [("brick", "grass", (0.7, 0.35)),
                                                   ("astronaut", "coffee", (0.65, 0.3)),
                                                   ("coffee", "brick", (0.3, 0.6))])
def test_sparse_ica_finds_the_weights_and_the_layers(first, second, alphas):
    case = cases.separate_pair_case(96, first, second, alphas=alphas)
    a, b = estimate_weights(*map(_tensor, case.args))
    # a >= b: with the truth's order reversed, the answer is (1 - a, 1 - b) with the layers swapped
    true = sorted(alphas, reverse=True) if alphas[0] > alphas[1] else [1 - alphas[0], 1 - alphas[1]]
    assert a >= b
    assert abs(a - true[0]) < 0.03 and abs(b - true[1]) < 0.03
    layers = [layer[0].permute(1, 2, 0).numpy() for layer in unmix(*map(_tensor, case.args), a, b)]
    truth = case.truth["layers"] if alphas[0] > alphas[1] else case.truth["layers"][::-1]
    assert min(_psnr(np.clip(x, 0, 1), t) for x, t in zip(layers, truth)) > 35


def test_unmix_is_exact_at_the_true_weights():
    rng = np.random.default_rng(0)
    l0, l1 = (torch.from_numpy(rng.random((1, 3, 16, 20))) for _ in range(2))
    i1, i2 = 0.8 * l0 + 0.2 * l1, 0.25 * l0 + 0.75 * l1
    r0, r1 = unmix(i1, i2, 0.8, 0.25)
    torch.testing.assert_close(r0, l0)
    torch.testing.assert_close(r1, l1)
    with pytest.raises(ValueError, match="must differ"):
        unmix(i1, i2, 0.5, 0.5)


def test_mixtures_that_do_not_determine_the_weights_are_refused():
    case = cases.separate_pair_case(64)
    i1, i2 = map(_tensor, case.args)
    with pytest.raises(NotSeparable, match="proportional"):
        estimate_weights(i1, i1.clone())
    with pytest.raises(NotSeparable, match="flat"):
        estimate_weights(torch.full_like(i1, 0.5), torch.full_like(i1, 0.25))
    # I2 = 2 L0 - L1: a weight of 2, outside the model
    l0, l1 = (_tensor(x) for x in case.truth["layers"])
    with pytest.raises(NotSeparable, match="not two different weights"):
        estimate_weights(l0, 2 * l0 - l1)


def test_fast_mode_separate_pair_is_the_classic_unmixing_with_no_fit():
    case = cases.separate_pair_case(128, alphas=(0.7, 0.35))
    r = dd.separate_pair(*case.args, dd.SolverConfig(mode="fast"))
    assert r.method == "ica" and not r.history and r.fitted is None
    with pytest.raises(ValueError, match="classic answer .*'ica'"):
        r.export("unused")
    np.testing.assert_allclose(r.alphas, [0.7, 0.35], atol=0.03)
    assert metrics.score_separate_pair({"layers": r.layers, "alphas": r.alphas}, case.truth)["layer_psnr"] > 35
    # the same as method="ica" in either mode, and as the module's answer
    same = dd.separate_pair(*case.args, dd.SolverConfig(mode="reference"), method="ica")
    np.testing.assert_array_equal(same.layers[0], r.layers[0])
    a, b = estimate_weights(*map(_tensor, case.args))
    np.testing.assert_allclose(r.layers[1], unmix(*map(_tensor, case.args), a, b)[1][0].permute(1, 2, 0).clamp(0, 1).numpy())


def test_method_dip_fits_in_either_mode_and_reference_mode_fits_by_default():
    case = cases.separate_pair_case(32)
    for cfg in (dd.SolverConfig(mode="fast", iterations=3), dd.SolverConfig(iterations=3)):
        for method in (("dip",) if cfg.mode == "fast" else (None, "dip")):
            r = dd.separate_pair(*case.args, cfg, method=method)
            assert r.method == "dip" and r.history[-1]["iteration"] == 2
    with pytest.raises(ValueError, match="method must be one of"):
        dd.separate_pair(*case.args, method="pca")


def test_fast_mode_fits_with_a_warning_where_ica_cannot_tell_and_method_ica_raises():
    image = cases.separate_pair_case(32).args[0]
    with pytest.warns(UserWarning, match="fits the layers instead"):
        r = dd.separate_pair(image, image.copy(), dd.SolverConfig(mode="fast", iterations=2))
    assert r.method == "dip" and r.history[-1]["iteration"] == 1
    with pytest.raises(NotSeparable, match="method='ica'"):
        dd.separate_pair(image, image.copy(), method="ica")


def test_several_pairs_each_its_own_way():
    good = cases.separate_pair_case(32).args
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rs = dd.batch("separate_pair", [good, (good[0], good[0].copy())], dd.SolverConfig(mode="fast", iterations=2))
    assert [r.method for r in rs] == ["ica", "dip"]
    assert any("pairs[1]" in str(w.message) for w in seen)


def test_cli_separate_pair_method_ica(tmp_path):
    from PIL import Image

    from doubledip.cli import main

    case = cases.separate_pair_case(128)
    for k, im in enumerate(case.args):
        Image.fromarray((im * 255).round().astype(np.uint8)).save(tmp_path / f"m{k}.png")
    assert main(["separate-pair", str(tmp_path / "m0.png"), str(tmp_path / "m1.png"), "--method", "ica",
                 "-o", str(tmp_path / "o"), "--quiet"]) == 0
    saved = json.loads((tmp_path / "o" / "result.json").read_text())
    assert saved["run"]["method"] == "ica"
    np.testing.assert_allclose(saved["values"]["alphas"], [0.7, 0.35], atol=0.03)
