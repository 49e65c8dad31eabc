"""Noise inputs, augmentations, schedules, padding and iteration splits."""
import pytest
import torch

from doubledip.engine.inputs import (Augmentations, all_augmentations, augment, crop, meshgrid_input, noise_input,
                                     reflect_pad, unaugment)
from doubledip.engine.solver import derive_seed, split_iterations
from doubledip.engine.tasks import dehazing, segmentation, separation, watermark


def test_augmentations_are_the_8_distinct_dihedral_transforms_and_invert():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    augs = all_augmentations(x)
    assert len(augs) == 8
    assert len({tuple(a.flatten().tolist()) + tuple(a.shape) for a in augs}) == 8
    assert torch.equal(augs[0], x)
    assert torch.equal(augs[1], torch.rot90(x, 1, dims=(2, 3)))
    assert torch.equal(augs[4], torch.flip(x, dims=(2,)))
    assert torch.equal(augs[6], torch.rot90(torch.flip(x, dims=(2,)), 2, dims=(2, 3)))
    for i, a in enumerate(augs):
        assert torch.equal(unaugment(a, i), x)
        assert torch.equal(augment(x, i), a)
    with pytest.raises(ValueError):
        augment(x, 8)


def test_noise_input_range_and_seed():
    g = torch.Generator().manual_seed(0)
    z = noise_input(3, 40, 50, 0.1, g, torch.device("cpu"))
    assert z.shape == (1, 3, 40, 50)
    assert float(z.min()) >= -0.05 and float(z.max()) <= 0.05
    assert float(z.std()) == pytest.approx(0.1 / 12 ** 0.5, rel=0.05)  # U(-.5,.5)*var
    z2 = noise_input(3, 40, 50, 0.1, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(z, z2)


def test_augmentations_on_demand_equal_the_stored_ones():
    x = torch.rand(2, 3, 5, 7)
    lazy, stored = Augmentations(x), all_augmentations(x)
    assert len(lazy) == len(stored) == 8
    assert lazy[0] is x
    for i in range(8):
        assert torch.equal(lazy[i], stored[i]) and lazy[i].is_contiguous()


def test_meshgrid_input():
    m = meshgrid_input(4, 3, 5, torch.device("cpu"))
    assert m.shape == (1, 4, 3, 5)
    assert torch.allclose(m[0, 0, 0], torch.linspace(0, 1, 5))
    assert torch.allclose(m[0, 1, :, 0], torch.linspace(0, 1, 3))
    assert torch.equal(m[0, 2], m[0, 0]) and torch.equal(m[0, 3], m[0, 1])


@pytest.mark.parametrize("h,w,H,W", [(5, 7, 32, 32), (40, 33, 64, 64), (1, 1, 3, 4), (32, 32, 32, 32)])
def test_reflect_pad_crops_back_exactly(h, w, H, W):
    x = torch.rand(1, 3, h, w)
    padded, offset = reflect_pad(x, H, W)
    assert padded.shape == (1, 3, H, W)
    assert torch.equal(crop(padded, offset, h, w), x)


def test_reflect_pad_mirrors_without_repeating_the_edge():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    padded, _ = reflect_pad(x, 1, 7)
    assert padded.tolist() == [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]]


def test_separation_schedules_at_their_boundaries():
    s = separation.noise_sigma
    assert s(0, False) == 0 and s(99, False) == 0 and s(100, False) == 0.001
    assert s(999, False) == 0.009 and s(1000, False) == 0.001 and s(5000, True) == 0
    a = separation.augmentation_index
    assert [a(k, False) for k in range(0, 18)] == [0, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0, 0]
    assert a(4, True) == 0


def test_watermark_schedules_at_their_boundaries():
    a = watermark.augmentation_index
    assert [a(k, False) for k in range(0, 17)] == [0, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 6, 0, 0, 0, 0]
    assert a(8, True) == 0
    r = watermark.ramp_sigma
    assert r(299, False, 300) == 0 and r(300, False, 300) == 0.001 and r(699, False, 700) == 0
    assert r(700, False, 700) == 0.001 and r(3999, True, 300) == 0


def test_segmentation_schedules_at_their_boundaries():
    s = segmentation.noise_sigma
    assert s(0, 99, False) == 0 and s(0, 100, False) == 0.001 and s(0, 1999, True) == 0.001
    assert s(1, 1000, False) == 0.001 and s(1, 3999, True) == 0
    g = segmentation.gray_weight
    assert g(99, True) == 0 and g(100, True) == 0.001 and g(3000, True) == pytest.approx(0.01)
    assert g(100, False) == 0.01 and g(3000, False) == pytest.approx(0.3)


def test_dehazing_working_size():
    assert dehazing.working_size(600, 700) == (600, 700)
    assert dehazing.working_size(900, 1000) == (448, 480)  # f=1 keeps >= 800; f=2 halves, rounded to 32
    assert dehazing.working_size(800, 500) == (384, 224)


def test_split_iterations():
    assert split_iterations(None, (2000, 4000)) == (2000, 4000)
    assert split_iterations(600, (2000, 4000)) == (200, 400)
    assert split_iterations(11, (4000, 7000)) == (4, 7)
    parts = split_iterations(3, (4000, 7000))
    assert sum(parts) == 3 and min(parts) >= 1
    with pytest.raises(ValueError, match="at least 2"):
        split_iterations(1, (4000, 7000))


def test_derive_seed_is_stable_and_spread():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    assert len({derive_seed(0, k) for k in range(1000)}) == 1000
