"""doubledip.engine.saliency: the maps, Otsu's threshold and the hints made from a map."""
import numpy as np
import pytest
from scipy import ndimage

from doubledip.engine import saliency as S


def _scene(h=64, w=80, seed=0):
    """A grey noise texture with a red disc (radius h/5) off-centre; returns (image, disc)."""
    rng = np.random.default_rng(seed)
    img = np.repeat(0.4 + 0.2 * rng.random((h, w, 1)), 3, axis=2)
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - 0.45 * h) ** 2 + (xx - 0.55 * w) ** 2 <= (h / 5) ** 2
    img[disc] = [0.85, 0.15, 0.1] + 0.05 * rng.random((disc.sum(), 3))
    return img.astype(np.float32), disc


def test_rgb_to_lab_known_colours():
    lab = S.rgb_to_lab(np.array([[1.0, 1, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]]))
    np.testing.assert_allclose(lab[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(lab[1], [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(lab[2], [53.24, 80.09, 67.20], atol=0.1)  # sRGB red
    np.testing.assert_allclose(lab[3], [32.30, 79.19, -107.86], atol=0.1)  # sRGB blue


@pytest.mark.parametrize("method", S.METHODS)
def test_every_method_maps_the_image_to_unit_range(method):
    img, disc = _scene()
    s = S.saliency(img, method)
    assert s.shape == disc.shape and s.dtype == np.float32
    assert s.min() >= 0 and s.max() <= 1 and s.max() == pytest.approx(1.0)


@pytest.mark.parametrize("method", [m for m in S.METHODS if m != "spectral_residual"])
def test_contrast_methods_find_the_disc(method):
    img, disc = _scene()
    s = S.saliency(img, method)
    assert s[disc].mean() > s[~disc].mean() + 0.2, method


def test_spectral_residual_marks_a_small_odd_patch():
    """The spectral residual responds to what breaks the spectrum's regularity: a small patch."""
    rng = np.random.default_rng(1)
    img = np.repeat(0.5 + 0.05 * rng.random((64, 64, 1)), 3, axis=2).astype(np.float32)
    img[20:26, 40:46] = 1.0
    s = S.spectral_residual(img)
    assert np.unravel_index(np.argmax(s), s.shape)[0] in range(16, 30)
    assert s[20:26, 40:46].mean() > 3 * s.mean()


@pytest.mark.parametrize("shape", [(8, 8), (8, 40), (50, 9), (33, 47)])
def test_small_and_elongated_images(shape):
    img = np.random.default_rng(0).random(shape + (3,)).astype(np.float32)
    for method in S.METHODS:
        assert S.saliency(img, method).shape == shape, method
    fg, bg = S.hints_from_saliency(S.saliency(img))
    assert fg.any() and bg.any() and not (fg * bg).any()


def test_saliency_accepts_what_the_package_loads():
    img, _ = _scene(32, 32)
    grey = img.mean(axis=2)
    assert S.saliency(grey).shape == (32, 32)
    assert S.saliency((img * 255).astype(np.uint8)).shape == (32, 32)


def test_saliency_rejects_bad_methods_and_maps():
    img, _ = _scene(16, 16)
    with pytest.raises(ValueError, match="saliency method must be one of .* got 'sift'"):
        S.saliency(img, "sift")
    with pytest.raises(TypeError, match="must be a str, got int"):
        S.saliency(img, 3)
    with pytest.raises(TypeError, match="H x W numpy array, got list"):
        S.hints_from_saliency([[0.0, 1.0]])
    with pytest.raises(ValueError, match="H x W map, got shape \\(4, 4, 3\\)"):
        S.hints_from_saliency(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="finite"):
        S.threshold_mask(np.full((4, 4), np.nan))


def test_otsu_threshold_splits_two_modes_like_skimage():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.7, 0.08, 1000)])
    t = S.otsu_threshold(x)
    assert 0.3 < t < 0.6
    assert abs(t - threshold_otsu(x)) < 2 * (x.max() - x.min()) / 256  # one or two bins
    assert S.otsu_threshold(np.full(10, 0.3)) == 0.3


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def test_hints_are_the_eroded_object_and_the_dilated_complement():
    h, w = 96, 128
    big, other, speck = _disc(h, w, 40, 40, 18), _disc(h, w, 60, 100, 12), _disc(h, w, 85, 10, 1)
    s = 0.1 * np.random.default_rng(0).random((h, w)) + 0.9 * big + 0.8 * other + 0.9 * speck
    fg, bg = S.hints_from_saliency(s)
    assert fg.dtype == np.float32 and set(np.unique(fg)) <= {0, 1} and set(np.unique(bg)) <= {0, 1}
    r = round(min(h, w) / 16)
    # fg: inside the most salient region only, its border band of r pixels left out
    assert fg[big].sum() == fg.sum() > 0
    assert fg.sum() == (ndimage.distance_transform_edt(big) > r).sum()
    # bg: away from both salient regions by more than r; the speck is not kept out
    for region in (big, other):
        assert not (bg.astype(bool) & (ndimage.distance_transform_edt(~region) <= r)).any()
    assert bg[speck].all()
    assert not (fg * bg).any()


def test_hints_of_a_thin_object_keep_its_core():
    s = np.zeros((64, 64))
    s[30:34, 5:60] = 1.0  # 4 px thick: erosion by 4 px would erase it
    fg, bg = S.hints_from_saliency(s)
    assert fg.any() and (fg <= (s > 0)).all() and bg.any()


def test_flat_map_gives_a_centre_prior():
    fg, bg = S.hints_from_saliency(np.full((30, 60), 0.5))
    assert fg[15, 30] == 1 and bg[0, 0] == 1 and fg[0, 0] == 0
    assert fg.any() and bg.any() and not (fg * bg).any()


def test_superpixels_are_connected_and_numbered_densely():
    img, _ = _scene(48, 48)
    labels = S.superpixels(S.rgb_to_lab(img.astype(np.float64)), count=40)
    k = labels.max() + 1
    assert labels.shape == (48, 48) and set(np.unique(labels)) == set(range(k)) and 10 <= k <= 120
    for i in range(k):
        assert ndimage.label(labels == i)[1] == 1, i


def test_threshold_mask_of_the_disc_scene():
    img, disc = _scene()
    m = S.threshold_mask(S.saliency(img))
    inter, union = (m.astype(bool) & disc).sum(), (m.astype(bool) | disc).sum()
    assert inter / union > 0.8


def _two_textures(h=64, w=64, seed=0):
    """Fine grey noise with a square of coarse, tinted blotches in the middle: (image, square)."""
    rng = np.random.default_rng(seed)
    img = np.repeat(0.5 + 0.15 * rng.standard_normal((h, w, 1)), 3, axis=2)
    sq = np.zeros((h, w), bool)
    sq[h // 4:3 * h // 4, w // 4:3 * w // 4] = True
    blotches = ndimage.zoom(rng.random((h // 8, w // 8)), 8, order=0)[:h, :w]
    img[sq] = (0.3 + 0.5 * blotches[sq])[:, None] * np.array([1.0, 0.8, 0.6])
    return np.clip(img, 0, 1).astype(np.float32), sq


def test_two_class_refinement_recovers_the_object_a_map_half_finds():
    """A map that marks only the object's left half: the refinement scores every pixel against
    both classes' samples, so the right half (unlike the background) joins the object."""
    img, sq = _two_textures()
    half = np.zeros(sq.shape, np.float32)
    half[16:48, 16:32] = 1.0
    half = ndimage.gaussian_filter(half, 1.0)

    def iou(m):
        return (m & sq).sum() / (m | sq).sum()

    before = iou(S.threshold_mask(half) > 0.5)
    after = iou(S.threshold_mask(S.two_class_refinement(img, half)) > 0.5)
    assert before < 0.6 and after > 0.9, (before, after)


def test_refined_map_finds_a_texture_the_border_lacks():
    img, sq = _two_textures(seed=1)
    s = S.saliency(img)  # the default: refined
    m = S.threshold_mask(s) > 0.5
    assert (m & sq).sum() / (m | sq).sum() > 0.9


def test_two_class_refinement_rejects_a_map_of_another_size():
    img, _ = _two_textures()
    with pytest.raises(ValueError, match=r"image's size \(64, 64\), got shape \(32, 64\)"):
        S.two_class_refinement(img, np.zeros((32, 64)))


def test_side_contrast_finds_an_object_touching_a_side():
    """The object fills part of the left strip: against that side it looks like background, the
    second-smallest of the four sides' distances still marks it."""
    rng = np.random.default_rng(2)
    obj = np.zeros((64, 64), bool)
    obj[12:52, 0:28] = True
    blotches = ndimage.zoom(rng.random((8, 8)), 8, order=0)
    img = np.repeat(np.clip(0.5 + 0.15 * rng.standard_normal((64, 64, 1)), 0, 1), 3, axis=2)
    img[obj] = (0.3 + 0.5 * blotches[obj])[:, None] * np.array([1.0, 0.8, 0.6])
    m = S.threshold_mask(S.side_contrast(img.astype(np.float32))) > 0.5
    assert (m & obj).sum() / (m | obj).sum() > 0.85



def test_the_refinement_scores_pixels_over_its_window():
    """The default window is REFINE_WINDOW (1/64 of the long side, the screen's choice); another
    window changes the statistics, so the scores."""
    img, sq = _two_textures(seed=2)
    s = S.side_contrast(img)
    default = S.two_class_refinement(img, s)
    np.testing.assert_array_equal(default, S.two_class_refinement(img, s, window=S.REFINE_WINDOW))
    assert S.REFINE_WINDOW == 1 / 64
    assert np.abs(default - S.two_class_refinement(img, s, window=1 / 8)).max() > 0.05
