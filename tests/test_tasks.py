"""Every task end to end on small images: fields, sizes, ranges, determinism, learning, saving."""
import copy
import json

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine.config import DEHAZE, LAYER5, MULTI_WATERMARK, SEGMENT, WATERMARK_MASK
from doubledip.engine.results import public_fields

H, W = 26, 34  # deliberately not a multiple of the nets' stride


def _image(seed=0, h=H, w=W):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx), np.cos(5 * yy), xx * yy], -1) * 0.4 + 0.5
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def _hint():
    h = np.zeros((H, W), np.float32)
    h[8:16, 10:24] = 1
    return h


def _fg_bg():
    fg = np.zeros((H, W), np.float32)
    fg[9:17, 12:22] = 1
    bg = np.ones((H, W), np.float32)
    bg[5:21, 8:26] = 0
    return fg, bg


FAST = dd.SolverConfig(iterations=4, repeats=1, log_every=2, seed=3)

TASKS = {
    "dehaze": (lambda c: dd.dehaze(_image(), c), {"image", "transmission", "airlight"}),
    "separate": (lambda c: dd.separate(_image(), c), {"layers", "reconstruction"}),
    "separate_pair": (lambda c: dd.separate_pair(_image(0), _image(1), c), {"layers", "alphas"}),
    "segment": (lambda c: dd.segment(_image(), c, fg_hint=_fg_bg()[0], bg_hint=_fg_bg()[1]), {"mask", "soft_mask", "foreground", "background"}),
    "segment_no_hints": (lambda c: dd.segment(_image(), config=c), {"mask", "soft_mask", "foreground", "background"}),
    "remove_watermark": (lambda c: dd.remove_watermark(_image(), _hint(), c), {"image", "watermark", "mask"}),
    "remove_watermark_multi": (lambda c: dd.remove_watermark_multi([_image(0), _image(1), _image(2)], c),
                               {"images", "watermark", "mask"}),
}


def _arrays(result):
    for name in public_fields(result):
        value = getattr(result, name)
        for v in value if isinstance(value, list) else [value]:
            yield name, np.asarray(v)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_returns_its_fields_at_the_input_size_in_unit_range(task):
    run, fields = TASKS[task]
    result = run(FAST)
    assert set(public_fields(result)) == fields
    for name, arr in _arrays(result):
        assert np.isfinite(arr).all(), name
        assert arr.min() >= 0 and arr.max() <= 1, name
        if arr.ndim >= 2:
            assert arr.shape[:2] == (H, W), name
            assert arr.ndim == 2 or arr.shape[2] == 3, name
    assert result.history and result.seconds > 0 and result.config.iterations == 4
    assert all(np.isfinite(r["loss"]) for r in result.history)


def test_result_value_fields():
    r = TASKS["separate_pair"][0](FAST)
    assert r.alphas.shape == (2,) and ((r.alphas > 0.05 - 1e-6) & (r.alphas < 0.95 + 1e-6)).all()
    assert len(r.layers) == 2
    s = TASKS["segment"][0](FAST)
    assert set(np.unique(s.mask)) <= {0.0, 1.0}
    d = TASKS["dehaze"][0](FAST)
    assert d.airlight.shape == (3,)


def test_seeded_runs_repeat_exactly_and_seeds_differ():
    # exact repetition is promised on the CPU (CUDA convolutions may pick nondeterministic kernels)
    a = dd.separate(_image(), dd.SolverConfig(iterations=3, seed=5, device="cpu"))
    b = dd.separate(_image(), dd.SolverConfig(iterations=3, seed=5, device="cpu"))
    c = dd.separate(_image(), dd.SolverConfig(iterations=3, seed=6, device="cpu"))
    for la, lb, lc in zip(a.layers, b.layers, c.layers):
        np.testing.assert_array_equal(la, lb)
        assert not np.array_equal(la, lc)
    w1 = dd.remove_watermark(_image(), _hint(), dd.SolverConfig(iterations=3, repeats=2, seed=1, device="cpu"))
    w2 = dd.remove_watermark(_image(), _hint(), dd.SolverConfig(iterations=3, repeats=2, seed=1, device="cpu"))
    np.testing.assert_array_equal(w1.image, w2.image)


def test_reconstruction_loss_falls_over_a_short_run():
    r = dd.separate(_image(), dd.SolverConfig(iterations=40, log_every=1, seed=0))
    recon = [h["reconstruction"] for h in r.history]
    # the two sigmoid outputs start near 0.5 each (sum ~1 against an image ~0.5): 40 steps at the
    # method's lr close a clear part of that gap
    assert np.mean(recon[-5:]) < 0.9 * np.mean(recon[:3])
    assert r.history[-1]["psnr"] > r.history[0]["psnr"] + 1


def test_dehaze_two_passes_and_given_airlight():
    seen = []
    r = dd.dehaze(_image(), dd.SolverConfig(iterations=6, log_every=1, callback=seen.append),
                  airlight=[0.9, 0.9, 0.9])
    assert sorted({h["pass"] for h in r.history}) == [0, 1]
    assert [h["iteration"] for h in r.history] == list(range(6))
    assert len(seen) == 6 and seen[0]["iteration"] == 0
    one = dd.dehaze(_image(), dd.SolverConfig(iterations=3), passes=1, learn_airlight=True)
    assert {h["pass"] for h in one.history} == {0}


def test_callback_fires_every_log_every():
    seen = []
    dd.separate(_image(), dd.SolverConfig(iterations=7, log_every=3, callback=seen.append))
    assert [s["iteration"] for s in seen] == [2, 5, 6]
    assert {"loss", "psnr", "seconds"} <= set(seen[0])


def test_save_writes_pngs_and_json_atomically(tmp_path):
    r = TASKS["remove_watermark_multi"][0](FAST)
    out = r.save(tmp_path / "out")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["image_0.png", "image_1.png", "image_2.png", "mask.png", "result.json", "watermark.png"]
    meta = json.loads((out / "result.json").read_text())
    assert meta["task"] == "remove_watermark_multi" and meta["config"]["iterations"] == 4
    assert meta["history"] and "loss" in meta["final"]
    from PIL import Image
    assert Image.open(out / "image_0.png").size == (W, H)


# ---- inputs of every kind ------------------------------------------------------------------

def test_accepts_paths_pil_uint8_uint16_tensors_rgba_and_gray(tmp_path):
    from PIL import Image

    img8 = (_image() * 255).astype(np.uint8)
    Image.fromarray(img8).save(tmp_path / "a.png")
    rgba = np.concatenate([img8, np.full((H, W, 1), 7, np.uint8)], -1)
    cfg = dd.SolverConfig(iterations=2)
    inputs = [str(tmp_path / "a.png"), tmp_path / "a.png", Image.fromarray(img8), img8,
              (img8.astype(np.uint16) * 257), torch.from_numpy(_image()).permute(2, 0, 1), rgba,
              img8[:, :, 0], Image.fromarray(img8).convert("L")]
    outs = [dd.separate(x, cfg) for x in inputs]
    for o in outs:
        assert o.reconstruction.shape == (H, W, 3)
    np.testing.assert_array_equal(outs[0].layers[0], outs[3].layers[0])  # path == array
    np.testing.assert_array_equal(outs[3].layers[0], outs[6].layers[0])  # alpha dropped


# ---- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,exc,match", [
    ("/no/such/file.png", ValueError, "no such file"),
    (np.zeros((H, W, 5), np.uint8), ValueError, "C in 1..4"),
    (np.zeros((3, H, W, 3), np.uint8), ValueError, "H x W"),
    (np.full((H, W, 3), np.nan, np.float32), ValueError, "finite"),
    (np.full((H, W, 3), 255.0, np.float32), ValueError, r"\[0, 1\]"),
    (np.zeros((H, W, 3), np.int64), TypeError, "dtype"),
    ([[0.1, 0.2]], TypeError, "expected a path"),
    (torch.zeros(5, H, W), ValueError, "channels first"),
])
def test_bad_images_are_rejected_with_a_clear_error(bad, exc, match):
    with pytest.raises(exc, match=match):
        dd.separate(bad, dd.SolverConfig(iterations=1))


def test_a_file_that_is_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello")
    with pytest.raises(ValueError, match="not a readable image"):
        dd.dehaze(p, dd.SolverConfig(iterations=2))


def test_bad_hints_and_image_sets():
    img, cfg = _image(), dd.SolverConfig(iterations=2, repeats=1)
    with pytest.raises(ValueError, match="image's size"):
        dd.remove_watermark(img, np.ones((H + 1, W), np.float32), cfg)
    with pytest.raises(ValueError, match="all zero"):
        dd.remove_watermark(img, np.zeros((H, W), np.float32), cfg)
    fg, bg = _fg_bg()
    with pytest.raises(ValueError, match="both fg_hint and bg_hint"):
        dd.segment(img, fg_hint=fg, config=cfg)
    with pytest.raises(ValueError, match="all zero"):
        dd.segment(img, cfg, fg_hint=fg, bg_hint=np.zeros_like(bg))
    with pytest.raises(ValueError, match="at least 2 images"):
        dd.remove_watermark_multi([img], cfg)
    with pytest.raises(ValueError, match="one size"):
        dd.remove_watermark_multi([img, _image(h=H + 2)], cfg)
    with pytest.raises(ValueError, match="one size"):
        dd.separate_pair(img, _image(w=W + 2), cfg)
    with pytest.raises(ValueError, match="airlight"):
        dd.dehaze(img, cfg, airlight=[2, 0, 0])
    with pytest.raises(ValueError, match="passes"):
        dd.dehaze(img, cfg, passes=3)
    with pytest.raises(TypeError, match="SolverConfig"):
        dd.separate(img, config={"iterations": 2})
    with pytest.raises(ValueError, match="at least 2"):
        dd.segment(img, config=dd.SolverConfig(iterations=1))


# ---- optimised paths against the plain path ---------------------------------------------------

@pytest.mark.parametrize("cfg", [LAYER5, DEHAZE, SEGMENT, WATERMARK_MASK, MULTI_WATERMARK], ids=str)
def test_channels_last_generator_is_the_same_function(cfg):
    """Same function, checked in float64: in float32 the BatchNorm backward after the first conv
    (noise input of variance ~1e-5) cancels catastrophically, so both formats carry ~1% rounding
    in some gradients and only a float64 comparison separates the two."""
    torch.manual_seed(0)
    plain = dd.SkipUNet(cfg).double()
    fast = copy.deepcopy(plain).set_memory_format(torch.channels_last)
    h, w = cfg.padded_size(64, 100)
    z = (torch.rand(1, cfg.in_channels, h, w, dtype=torch.float64) - 0.5) / 100
    target = torch.rand(1, cfg.out_channels, h, w, dtype=torch.float64)
    outs = []
    for net in (plain, fast):
        y = net(z)
        (y - target).abs().mean().backward()
        outs.append((y.detach(), {n: p.grad for n, p in net.named_parameters()}))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-12, rtol=1e-10)
    for name, g in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], g, atol=1e-12, rtol=1e-8, msg=name)


@pytest.mark.parametrize("task", ["separate", "separate_pair", "remove_watermark_multi"])
def test_channels_last_first_iteration_outputs_agree(task):
    """A whole run of one iteration (no optimiser step between the outputs and the result)."""
    run, _ = TASKS[task]
    plain = run(dd.SolverConfig(iterations=1, repeats=1, seed=3, channels_last=False))
    fast = run(dd.SolverConfig(iterations=1, repeats=1, seed=3, channels_last=True))
    for (name, a), (_, b) in zip(_arrays(plain), _arrays(fast)):
        np.testing.assert_allclose(a, b, atol=1e-3, err_msg=name)


def test_threads_apply_during_the_run_only():
    before = torch.get_num_threads()
    seen = []
    dd.separate(_image(), dd.SolverConfig(iterations=2, log_every=1, threads=1,
                                         callback=lambda r: seen.append(torch.get_num_threads())))
    assert seen == [1, 1]
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_compiled_generators_compute_the_same_first_iteration():
    """torch.compile of the generators (slow: a cold compile takes about a minute here)."""
    fg, bg = _fg_bg()
    eager = dd.segment(_image(), dd.SolverConfig(iterations=2, seed=1, log_every=1), fg_hint=fg, bg_hint=bg)
    compiled = dd.segment(_image(), dd.SolverConfig(iterations=2, seed=1, log_every=1, compile=True), fg_hint=fg, bg_hint=bg)
    assert compiled.history[0]["loss"] == pytest.approx(eager.history[0]["loss"], rel=1e-5)


def test_callback_gets_the_current_result_fields_where_the_task_tracks_them():
    seen = []
    r = dd.separate(_image(), dd.SolverConfig(iterations=4, log_every=2, callback=seen.append))
    assert [len(s["outputs"]["layers"]) for s in seen] == [2, 2]
    np.testing.assert_array_equal(seen[-1]["outputs"]["layers"][0], r.layers[0])
    assert all("outputs" not in h for h in r.history)
    pair_seen = []
    dd.separate_pair(_image(0), _image(1), dd.SolverConfig(iterations=2, log_every=1, callback=pair_seen.append))
    assert pair_seen[-1]["outputs"]["alphas"].shape == (2,)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_low_memory_runs_give_the_same_numbers(task):
    """Recomputation in the backward is the same function: on the CPU the same bits, step by step."""
    run, _ = TASKS[task]
    plain = run(dd.SolverConfig(iterations=4, repeats=1, seed=3, log_every=1))
    low = run(dd.SolverConfig(iterations=4, repeats=1, seed=3, log_every=1, low_memory=True))
    assert [r["loss"] for r in low.history] == [r["loss"] for r in plain.history]
    for (name, a), (_, b) in zip(_arrays(plain), _arrays(low)):
        np.testing.assert_array_equal(b, a, err_msg=name)


def test_low_memory_fast_mode_gives_the_same_numbers():
    plain = dd.separate(_image(), dd.SolverConfig(iterations=4, seed=3, log_every=1, mode="fast"))
    low = dd.separate(_image(), dd.SolverConfig(iterations=4, seed=3, log_every=1, mode="fast", low_memory=True))
    assert [r["loss"] for r in low.history] == [r["loss"] for r in plain.history]
    for (name, a), (_, b) in zip(_arrays(plain), _arrays(low)):
        np.testing.assert_array_equal(b, a, err_msg=name)


@pytest.mark.parametrize("task", ["separate", "remove_watermark", "remove_watermark_multi"])
def test_augmentations_made_per_step_give_the_same_run(task, monkeypatch):
    """Inputs, targets and hints are augmented when a step needs them instead of stored 8 times:
    the same run as with the 8 stored copies (iterations 0 and 2 use augmentations 0 and 1...)."""
    from doubledip.engine.inputs import all_augmentations
    from doubledip.engine.tasks import common, separation, watermark

    run, _ = TASKS[task]
    config = dd.SolverConfig(iterations=9, repeats=1, seed=3, log_every=1)
    lazy = run(config)
    for module in (common, separation, watermark):
        monkeypatch.setattr(module, "Augmentations", all_augmentations)
    stored = run(config)
    assert [r["loss"] for r in lazy.history] == [r["loss"] for r in stored.history]
    for (name, a), (_, b) in zip(_arrays(stored), _arrays(lazy)):
        np.testing.assert_array_equal(b, a, err_msg=name)


def test_dehaze_working_size_keeps_an_elongated_images_short_side():
    from doubledip.engine.tasks.dehazing import working_size

    assert working_size(1000, 1500) == (480, 736)  # the reference's rule: /2, multiples of 32
    assert working_size(799, 640) == (799, 640)  # under 800 px: the image's own size
    h, w = working_size(800, 20)  # the short side would round down to 0
    assert (h, w) == (384, 10)
    r = dd.dehaze(np.random.default_rng(0).random((800, 20, 3)).astype(np.float32),
                  dd.SolverConfig(iterations=1, mode="fast"))
    assert r.image.shape == (800, 20, 3) and np.isfinite(r.image).all()


def test_dehaze_method_dcp_is_the_classic_prior_with_no_fit(tmp_path):
    from doubledip.evaluation.baselines import dark_channel_prior

    img = _image()
    r = dd.dehaze(img, method="dcp")
    classic = dark_channel_prior(img)
    np.testing.assert_array_equal(r.image, classic["image"])
    np.testing.assert_array_equal(r.transmission, classic["transmission"])
    assert r.method == "dcp" and r.history == [] and r.fitted is None and r.device == "cpu"
    given = dd.dehaze(img, method="dcp", airlight=[0.9, 0.9, 0.9])
    np.testing.assert_allclose(given.airlight, 0.9)
    meta = json.loads((r.save(tmp_path / "d") / "result.json").read_text())
    assert meta["run"] == {"method": "dcp", "selection": "", "stop_reason": "no fit", "stopped_at": None,
                           "warnings": []}
    assert dd.dehaze(img, dd.SolverConfig(iterations=2)).method == "dip"
    with pytest.raises(ValueError, match="method must be one of"):
        dd.dehaze(img, method="magic")


def test_cli_dehaze_method_dcp(tmp_path):
    from PIL import Image

    from doubledip.cli import main

    Image.fromarray((_image() * 255).astype(np.uint8)).save(tmp_path / "hazy.png")
    assert main(["dehaze", str(tmp_path / "hazy.png"), "--method", "dcp", "-o", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "result.json").read_text())["run"]["method"] == "dcp"
    # fast mode's default is the prior, no fit; --method dip fits
    assert main(["dehaze", str(tmp_path / "hazy.png"), "--mode", "fast", "-o", str(tmp_path / "f"), "--quiet"]) == 0
    run = json.loads((tmp_path / "f" / "result.json").read_text())["run"]
    assert (run["method"], run["stop_reason"]) == ("dcp", "no fit") and run["selection"].startswith("dcp: fast mode's default")
    assert main(["dehaze", str(tmp_path / "hazy.png"), "--mode", "fast", "--method", "dip", "--keep-fit", "--iterations", "2",
                 "-o", str(tmp_path / "g"), "--quiet"]) == 0
    assert json.loads((tmp_path / "g" / "result.json").read_text())["run"]["method"] == "dip"


def test_remove_watermark_method_inpainting_is_the_classic_answer_with_no_fit(tmp_path):
    from doubledip.evaluation.baselines import inpaint_hint

    img, hint = _image(), _hint()
    r = dd.remove_watermark(img, hint, method="inpainting")
    region = hint > 0.5
    np.testing.assert_allclose(r.image, inpaint_hint(img, hint), atol=1e-6)
    np.testing.assert_array_equal(r.mask, region.astype(np.float32))
    np.testing.assert_allclose(r.watermark[region], img[region], atol=1e-6)
    assert (r.watermark[~region] == 0).all()
    assert r.method == "inpainting" and r.history == [] and r.fitted is None
    meta = json.loads((r.save(tmp_path / "w") / "result.json").read_text())
    assert meta["run"]["method"] == "inpainting" and meta["run"]["stop_reason"] == "no fit"
    assert dd.remove_watermark(img, hint, dd.SolverConfig(iterations=2, repeats=1)).method == "dip"
    with pytest.raises(ValueError, match="method must be one of"):
        dd.remove_watermark(img, hint, method="magic")


def test_cli_remove_watermark_method_inpainting(tmp_path):
    from PIL import Image

    from doubledip.cli import main

    Image.fromarray((_image() * 255).astype(np.uint8)).save(tmp_path / "marked.png")
    Image.fromarray((_hint() * 255).astype(np.uint8)).save(tmp_path / "hint.png")
    assert main(["remove-watermark", str(tmp_path / "marked.png"), str(tmp_path / "hint.png"), "--method",
                 "inpainting", "-o", str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "result.json").read_text())["run"]["method"] == "inpainting"
