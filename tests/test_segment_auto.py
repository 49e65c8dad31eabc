"""Segmentation without hints: automatic saliency hints (hints="auto", the default), the hint-free
variant (hints="none"), r.hints, saving, the CLI, batching, fast mode and the evaluation cases."""
import json

import numpy as np
import pytest
from PIL import Image

import doubledip as dd
from doubledip.cli import main
from doubledip.engine import saliency
from doubledip.engine.results import public_fields
from doubledip.engine.tasks import registry, segmentation
from doubledip.evaluation import cases, metrics

H, W = 30, 38
CFG = dd.SolverConfig(iterations=4, log_every=2, seed=5, device="cpu")


def _image(seed=0):
    """Warm noise with a blue square: a scene whose saliency is plain."""
    rng = np.random.default_rng(seed)
    img = np.stack([0.6 + 0.2 * rng.random((H, W)), 0.4 + 0.2 * rng.random((H, W)), 0.2 * rng.random((H, W))], -1)
    img[8:20, 12 + 2 * seed:26 + 2 * seed] = [0.1, 0.3, 0.9]
    return img.astype(np.float32)


def _expected_hints(img):
    return saliency.hints_from_saliency(saliency.saliency(img))


def test_auto_is_the_default_and_returns_the_hints_it_used():
    img = _image()
    r = dd.segment(img, CFG)
    fg, bg = _expected_hints(img)
    assert set(r.hints) == {"fg", "bg"}
    np.testing.assert_array_equal(r.hints["fg"], fg)
    np.testing.assert_array_equal(r.hints["bg"], bg)
    assert r.hints["fg"][14, 19] == 1 and r.hints["bg"][0, 0] == 1  # inside the square, the corner
    assert public_fields(r) == ["mask", "soft_mask", "foreground", "background"]
    explicit = dd.segment(img, CFG, hints="auto")
    np.testing.assert_array_equal(explicit.mask, r.mask)


def test_hints_returned_run_again_give_the_same_result():
    """r.hints is what the run used: given back as hints, the run repeats bit for bit."""
    img = _image()
    r = dd.segment(img, CFG)
    again = dd.segment(img, CFG, fg_hint=r.hints["fg"], bg_hint=r.hints["bg"])
    for name in ("mask", "soft_mask", "foreground", "background"):
        np.testing.assert_array_equal(getattr(again, name), getattr(r, name), err_msg=name)
    np.testing.assert_array_equal(again.hints["fg"], r.hints["fg"])


def test_none_runs_the_hint_free_variant():
    img = _image()
    free = dd.segment(img, CFG, hints="none")
    auto = dd.segment(img, CFG)
    assert free.hints is None
    assert not np.array_equal(free.soft_mask, auto.soft_mask)  # another loss: the hints' terms


def test_given_hints_are_returned():
    img = _image()
    fg = np.zeros((H, W), np.float32)
    fg[10:18, 14:24] = 1
    bg = np.zeros((H, W), np.float32)
    bg[:4] = 1
    r = dd.segment(img, CFG, fg_hint=fg, bg_hint=bg)
    np.testing.assert_array_equal(r.hints["fg"], fg)
    np.testing.assert_array_equal(r.hints["bg"], bg)


def test_bad_hints_option_is_refused():
    img = _image()
    with pytest.raises(ValueError, match=r"hints must be one of \('auto', 'none'\), got 'salient'"):
        dd.segment(img, CFG, hints="salient")
    with pytest.raises(TypeError, match="hints must be a str.*got bool"):
        dd.segment(img, CFG, hints=True)
    fg = np.ones((H, W), np.float32)
    with pytest.raises(ValueError, match="hints='none' runs without hints, but fg_hint and bg_hint were given"):
        dd.segment(img, CFG, fg_hint=fg, bg_hint=fg, hints="none")


def test_save_writes_the_hints_used(tmp_path):
    img = _image()
    r = dd.segment(img, CFG)
    r.save(tmp_path / "auto")
    names = sorted(p.name for p in (tmp_path / "auto").iterdir())
    assert names == ["background.png", "bg_hint.png", "fg_hint.png", "foreground.png", "mask.png",
                     "result.json", "soft_mask.png"]
    meta = json.loads((tmp_path / "auto" / "result.json").read_text())
    assert meta["run"]["hints"] == {"fg": "fg_hint.png", "bg": "bg_hint.png"}
    assert "fg_hint.png" in meta["files"] and meta["images"]["fg_hint"] == "fg_hint.png"
    saved = np.asarray(Image.open(tmp_path / "auto" / "fg_hint.png")) / 255.0
    np.testing.assert_array_equal(saved, r.hints["fg"])
    # a hint-free result saved into the same folder: the old hint files go
    free = dd.segment(img, CFG, hints="none")
    free.save(tmp_path / "auto")
    assert not (tmp_path / "auto" / "fg_hint.png").exists()
    assert json.loads((tmp_path / "auto" / "result.json").read_text())["run"]["hints"] is None


def test_batch_computes_each_images_hints():
    imgs = [_image(0), _image(1)]
    results = dd.batch("segment", imgs, CFG)
    for img, r in zip(imgs, results):
        fg, bg = _expected_hints(img)
        np.testing.assert_array_equal(r.hints["fg"], fg)
        np.testing.assert_array_equal(r.hints["bg"], bg)
    assert not np.array_equal(results[0].hints["fg"], results[1].hints["fg"])
    assert all(r.hints is None for r in dd.batch("segment", imgs, CFG, hints="none"))


# ---- the CLI -------------------------------------------------------------------------------

@pytest.fixture
def image_file(tmp_path):
    p = tmp_path / "in.png"
    Image.fromarray((_image() * 255).astype(np.uint8)).save(p)
    return p


def test_cli_segment_without_hint_files_writes_the_hints(tmp_path, image_file):
    out = tmp_path / "out"
    assert main(["segment", str(image_file), "-o", str(out), "--iterations", "2", "--quiet"]) == 0
    assert (out / "fg_hint.png").exists() and (out / "bg_hint.png").exists()
    # the written hints run again through --fg-hint / --bg-hint
    again = tmp_path / "again"
    assert main(["segment", str(image_file), "--fg-hint", str(out / "fg_hint.png"), "--bg-hint",
                 str(out / "bg_hint.png"), "-o", str(again), "--iterations", "2", "--quiet"]) == 0
    assert (np.asarray(Image.open(again / "mask.png")) == np.asarray(Image.open(out / "mask.png"))).all()
    free = tmp_path / "free"
    assert main(["segment", str(image_file), "--hints", "none", "-o", str(free), "--iterations", "2", "--quiet"]) == 0
    assert not (free / "fg_hint.png").exists()


def test_cli_help_lists_the_hints_option(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = capsys.readouterr().out
    assert "--hints {auto,none}" in text


def test_cli_refuses_none_with_hint_files(tmp_path, image_file, capsys):
    rc = main(["segment", str(image_file), "--fg-hint", str(image_file), "--bg-hint", str(image_file),
               "--hints", "none", "-o", str(tmp_path / "o"), "--iterations", "1", "--quiet"])
    assert rc == 2 and "hints='none'" in capsys.readouterr().err


# ---- fast mode -----------------------------------------------------------------------------

def test_fast_mode_defaults_and_guide_radius():
    spec = registry.get("segment")
    assert spec.defaults["fast"].stages == segmentation.FAST_ITERATIONS == (200, 400)
    assert spec.defaults["reference"].stages == (2000, 4000)
    assert segmentation.guide_radius(dd.SolverConfig(mode="fast"), (128, 200)) == 16
    assert segmentation.guide_radius(dd.SolverConfig(mode="fast"), (6, 8)) == 1
    assert segmentation.guide_radius(dd.SolverConfig(), (128, 200)) == 50


def test_fast_mode_ends_stage_two_once_the_mask_has_settled(monkeypatch):
    """With a settle check every 2 iterations and any change counted as settled, fast mode's stage
    2 ends at its second check (iteration 3 of the stage); reference mode runs to the cap."""
    monkeypatch.setattr(segmentation, "SETTLE_EVERY", 2)
    monkeypatch.setattr(segmentation, "SETTLE_FRACTION", 1.1)  # every check "settles"
    img = _image()
    cfg = dd.SolverConfig(iterations=30, log_every=1, seed=1, device="cpu")
    fast = dd.segment(img, cfg.replace(mode="fast"), method="dip")
    ref = dd.segment(img, cfg)
    stage1 = 10  # 30 split 1:2
    assert fast.history[-1]["iteration"] == stage1 + 3
    assert ref.history[-1]["iteration"] == 29
    monkeypatch.setattr(segmentation, "SETTLE_FRACTION", 0.0)  # nothing settles
    assert dd.segment(img, cfg.replace(mode="fast"), method="dip").history[-1]["iteration"] == 29


def _disc_scene(seed=0, size=48):
    """A textured disc (warm) over another texture (cool): the truth is the disc."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    truth = ((yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < (size * 0.28) ** 2).astype(np.float32)
    warm = np.stack([0.8 + 0.1 * rng.random((size, size)), 0.5 + 0.1 * rng.random((size, size)),
                     0.2 * rng.random((size, size))], -1)
    cool = np.stack([0.2 * rng.random((size, size)), 0.4 + 0.2 * rng.random((size, size)),
                     0.6 + 0.3 * rng.random((size, size))], -1)
    return (truth[..., None] * warm + (1 - truth[..., None]) * cool).astype(np.float32), truth


def test_fast_mode_with_automatic_hints_returns_the_saliency_maps_threshold_through_the_guided_filter():
    """Fast mode's default with no hints: the classic answer (result.method "saliency"), no fit:
    the map above its Otsu threshold through a guided filter of radius 1/8 of the short side, the
    layers the image cut by the mask; the hints a fit would use are returned as for a fit."""
    import torch

    from doubledip.engine.post import guided_filter

    img, truth = _disc_scene()
    r = dd.segment(img, dd.SolverConfig(mode="fast", device="cpu"))
    assert r.method == "saliency" and r.history == [] and r.fitted is None and r.stop_reason == "no fit"
    s = saliency.saliency(img)
    rough = torch.from_numpy(saliency.threshold_mask(s))[None, None]
    soft = guided_filter(torch.from_numpy(img.transpose(2, 0, 1))[None], rough, radius=6, eps=1e-4).clamp(0, 1)
    np.testing.assert_allclose(r.soft_mask, soft[0, 0].numpy(), atol=1e-6)
    np.testing.assert_array_equal(r.mask, (r.soft_mask > 0.5).astype(np.float32))
    np.testing.assert_allclose(r.foreground, img * r.mask[..., None], atol=1e-6)
    np.testing.assert_allclose(r.foreground + r.background, img, atol=1e-6)
    fg, bg = _expected_hints(img)
    np.testing.assert_array_equal(r.hints["fg"], fg)
    np.testing.assert_array_equal(r.hints["bg"], bg)
    assert metrics.iou(r.mask, truth) > 0.9
    # the same answer on request in reference mode; the fit on request in fast mode
    explicit = dd.segment(img, dd.SolverConfig(device="cpu"), method="saliency")
    np.testing.assert_array_equal(explicit.mask, r.mask)
    fit = dd.segment(img, CFG.replace(mode="fast"), method="dip")
    assert fit.method == "dip" and len(fit.history) > 0 and fit.fitted is not None


def test_method_choice_follows_the_mode_and_the_hints():
    fast, ref = dd.SolverConfig(mode="fast"), dd.SolverConfig()
    assert segmentation.chosen_method(None, fast, given=False, hints="auto") == "saliency"
    assert segmentation.chosen_method(None, fast, given=True, hints="auto") == "dip"  # given hints: the fit
    assert segmentation.chosen_method(None, fast, given=False, hints="none") == "dip"
    assert segmentation.chosen_method(None, ref, given=False, hints="auto") == "dip"
    img = _image()
    fg, bg = _expected_hints(img)
    with pytest.raises(ValueError, match="method='saliency' .* but fg_hint and bg_hint were given"):
        dd.segment(img, CFG, fg_hint=fg, bg_hint=bg, method="saliency")
    with pytest.raises(ValueError, match="method='saliency' .* hints='none'"):
        dd.segment(img, CFG, hints="none", method="saliency")
    with pytest.raises(ValueError, match=r"method must be one of \('dip', 'saliency'\).*got 'otsu'"):
        dd.segment(img, CFG, method="otsu")


def test_the_classic_answer_saves_but_does_not_export(tmp_path):
    img, _ = _disc_scene(1)
    r = dd.segment(img, dd.SolverConfig(mode="fast", device="cpu"))
    meta = json.loads((r.save(tmp_path / "s") / "result.json").read_text())
    assert meta["run"]["method"] == "saliency"
    assert sorted(p.name for p in (tmp_path / "s").glob("*.png")) == [
        "background.png", "bg_hint.png", "fg_hint.png", "foreground.png", "mask.png", "soft_mask.png"]
    with pytest.raises(ValueError, match="classic answer .*'saliency'.*method='dip'"):
        r.export(tmp_path / "e")


def test_cli_segment_fast_takes_the_method(tmp_path, image_file, capsys):
    out, fit = tmp_path / "classic", tmp_path / "fit"
    assert main(["segment", str(image_file), "--mode", "fast", "-o", str(out), "--quiet"]) == 0
    assert json.loads((out / "result.json").read_text())["run"]["method"] == "saliency"
    assert main(["segment", str(image_file), "--mode", "fast", "--method", "dip", "--iterations", "2",
                 "-o", str(fit), "--quiet"]) == 0
    assert json.loads((fit / "result.json").read_text())["run"]["method"] == "dip"
    rc = main(["segment", str(image_file), "--hints", "none", "--method", "saliency", "-o", str(tmp_path / "x"), "--quiet"])
    assert rc != 0 and "method='saliency'" in capsys.readouterr().err


def test_the_rough_object_stands_where_the_guided_filter_would_wash_it_out():
    """A thin object on a flat guide: the filter's mean over its window drops it below 0.5
    everywhere (overlap 0 < FILTER_AGREEMENT), so the rough object itself comes back; a large
    disc survives the filter, whose soft output comes back."""
    import torch

    from doubledip.engine.post import guided_filter

    flat = torch.full((1, 3, 48, 48), 0.5)
    line = torch.zeros(1, 1, 48, 48)
    line[..., 24, 4:44] = 1
    assert not (guided_filter(flat, line, radius=6, eps=1e-4) > 0.5).any()  # washed out
    torch.testing.assert_close(segmentation.refined_rough_object(flat, line), line)
    img, truth = _disc_scene(3)
    image = torch.from_numpy(img.transpose(2, 0, 1))[None]
    disc = torch.from_numpy(truth)[None, None]
    soft = segmentation.refined_rough_object(image, disc)
    expected = guided_filter(image, disc, radius=6, eps=1e-4).clamp(0, 1)
    torch.testing.assert_close(soft, expected)
    assert not torch.equal(soft, disc) and metrics.iou((soft > 0.5).float().numpy()[0, 0], truth) > 0.95


def test_the_classic_answer_for_several_images_shows_its_progress(capsys):
    imgs = [_image(0), _image(1), _image(2)]
    rs = segmentation.segment_many(imgs, dd.SolverConfig(mode="fast", progress=True))
    assert [r.method for r in rs] == ["saliency"] * 3 and "3/3" in capsys.readouterr().err
    for img, r in zip(imgs, rs):  # each as the image alone
        np.testing.assert_array_equal(r.mask, dd.segment(img, dd.SolverConfig(mode="fast")).mask)
