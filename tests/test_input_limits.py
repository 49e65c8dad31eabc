"""Images below the smallest size the method fits are refused, naming the size and the minimum;
hints must match the image's size; describe_input records what result.json says of an input."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import doubledip as dd
from doubledip.engine.io import MIN_SIDE, check_image_size, describe_input, load_hint, load_image

CFG = dd.SolverConfig(iterations=2, repeats=1, device="cpu")


def _image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("h,w", [(1, 1), (7, 7), (7, 40), (40, 7), (1, 64)])
@pytest.mark.parametrize("task", ["separate", "dehaze", "segment", "remove_watermark"])
def test_too_small_images_are_refused_naming_size_and_minimum(task, h, w):
    img = _image(h, w)
    run = {"separate": lambda: dd.separate(img, CFG), "dehaze": lambda: dd.dehaze(img, CFG),
           "segment": lambda: dd.segment(img, config=CFG),
           "remove_watermark": lambda: dd.remove_watermark(img, np.ones((h, w), np.float32), CFG)}[task]
    with pytest.raises(ValueError, match=rf"^image: expected an image of at least 8x8 pixels \(H x W\), got {h}x{w}"):
        run()


def test_every_image_of_a_set_is_checked_by_its_name():
    ok = _image(20, 28)
    with pytest.raises(ValueError, match=r"image2: .*at least 8x8.*got 5x5"):
        dd.separate_pair(ok, _image(5, 5), CFG)
    with pytest.raises(ValueError, match=r"images\[1\]: .*got 6x28"):
        dd.batch("separate", [ok, _image(6, 28)], CFG)
    with pytest.raises(ValueError, match=r"images\[2\]: .*got 3x3"):
        dd.remove_watermark_multi([ok, ok, _image(3, 3)], CFG)


def test_a_tiny_file_is_refused_by_its_name(tmp_path):
    from PIL import Image

    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1)).save(p)
    with pytest.raises(ValueError, match=r"got 1x1"):
        dd.dehaze(p, CFG)
    with pytest.raises(ValueError, match=r"got 1x1"):
        load_image(str(p))


def test_the_minimum_itself_runs():
    r = dd.separate(_image(MIN_SIDE, MIN_SIDE), dd.SolverConfig(iterations=1, device="cpu"))
    assert r.layers[0].shape == (MIN_SIDE, MIN_SIDE, 3) and np.isfinite(r.layers[0]).all()
    assert load_image(_image(MIN_SIDE, 30)).shape == (1, 3, MIN_SIDE, 30)


def test_check_image_size_names_what_it_was_given():
    check_image_size(8, 8)
    with pytest.raises(ValueError, match=r"^fg: expected .* at least 8x8 .*got 8x2"):
        check_image_size(8, 2, "fg")


def test_a_hint_of_another_size_names_both_sizes():
    img = _image(20, 28)
    with pytest.raises(ValueError, match=r"^hint: expected the image's size 20x28 \(H x W\), got a 21x28 hint"):
        dd.remove_watermark(img, np.ones((21, 28), np.float32), CFG)
    with pytest.raises(ValueError, match=r"fg_hint: expected the image's size 20x28.*got a 20x27 hint"):
        dd.segment(img, fg_hint=np.ones((20, 27), np.float32), bg_hint=np.ones((20, 28), np.float32), config=CFG)
    assert load_hint(np.ones((20, 28)), "hint", (20, 28)).shape == (1, 1, 20, 28)


def test_describe_input(tmp_path):
    p = tmp_path / "a.png"
    assert describe_input(p, (20, 28)) == {"path": str(p), "size": [20, 28]}
    assert describe_input(str(p), torch.Size([20, 28])) == {"path": str(p), "size": [20, 28]}
    rel = describe_input("rel/b.png", np.array([3, 4]))
    assert rel["path"] == os.path.join(os.getcwd(), "rel", "b.png") and rel["size"] == [3, 4]
    assert type(rel["size"][0]) is int
    assert describe_input(np.zeros((3, 4, 3)), (3, 4)) == {"path": None, "size": [3, 4]}
    for bad in ((1, 2, 3), 5, "ab"):
        with pytest.raises(TypeError, match=r"size must be \(H, W\)"):
            describe_input(p, bad)
