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
    fast = dd.segment(img, cfg.replace(mode="fast"))
    ref = dd.segment(img, cfg)
    stage1 = 10  # 30 split 1:2
    assert fast.history[-1]["iteration"] == stage1 + 3
    assert ref.history[-1]["iteration"] == 29
    monkeypatch.setattr(segmentation, "SETTLE_FRACTION", 0.0)  # nothing settles
    assert dd.segment(img, cfg.replace(mode="fast")).history[-1]["iteration"] == 29


# ---- evaluation ----------------------------------------------------------------------------

def test_segmentation_cases_per_suite():
    spec = registry.get("segment").evaluation
    quick = spec.cases("quick", 32)
    assert [c.name for c in quick] == ["horse_hints", "horse_no_hints"]
    assert quick[1].kwargs == {} and quick[1].primary == "iou"
    full = {c.name: c for c in spec.cases("full", 32)}
    assert full["horse_hint_free"].kwargs == {"hints": "none"} and full["horse_hint_free"].primary == "iou_either"
    for name in cases.SEGMENT_COMPOSITES:
        assert full[f"{name}_auto"].kwargs == {} and full[f"{name}_hint_free"].kwargs == {"hints": "none"}


def test_composites_vary_and_have_true_masks():
    size = 64
    built = cases.segment_composites(size)
    assert len(built) == len(cases.SEGMENT_COMPOSITES) >= 5
    areas, centres = [], []
    for c in built:
        img, m = c.args[0], c.truth["mask"]
        assert img.shape == (size, size, 3) and img.dtype == np.float32 and set(np.unique(m)) == {0.0, 1.0}
        assert (c.truth["fg_hint"] <= m).all() and (c.truth["bg_hint"] <= 1 - m).all()
        areas.append(m.mean())
        centres.append(tuple(np.round(np.argwhere(m).mean(0) / size, 1)))
        assert metrics.score_segment({"mask": m}, c.truth)["iou"] == 1.0
    assert max(areas) > 2 * min(areas) and len(set(centres)) == len(built)  # sizes and places vary
    dark = next(c for c in built if c.name.startswith("dark_"))
    lum = dark.args[0].mean(axis=2)
    assert lum[dark.truth["mask"] > 0].mean() < lum[dark.truth["mask"] == 0].mean() - 0.1
    with pytest.raises(ValueError, match="hints must be one of"):
        cases.segment_composite_case(size, hints="auto-ish")
    with pytest.raises(ValueError, match="shape must be one of"):
        cases.object_shape("star", size)


def test_baselines_of_a_case_without_hints():
    c = cases.segment_composites(64, names=["dark_brick_horse_on_gravel"])[0]
    base = registry.get("segment").evaluation.baselines(c)
    assert list(base) == ["otsu", "saliency threshold"]
    truth = c.truth["mask"]
    otsu = base["otsu"]["mask"]
    assert metrics.iou(otsu, truth) >= metrics.iou(1 - otsu, truth)  # the better polarity
    s = saliency.saliency(c.args[0])
    np.testing.assert_array_equal(base["saliency threshold"]["mask"], saliency.threshold_mask(s))
    hinted = registry.get("segment").evaluation.baselines(cases.segment_case(32))
    assert list(hinted) == ["fg hint"]
