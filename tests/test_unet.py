"""The skip U-Net: parameter counts of ALGORITHM.md's table, shapes, batch statistics, config checks."""
import pytest
import torch

import doubledip as dd
from doubledip.engine import config as cfgs

TABLE = [  # (config, parameter count) as published
    (dd.UNetConfig(3, 3, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 5), 1_544_987),
    (dd.UNetConfig(2, 3, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 5), 1_544_787),
    (dd.UNetConfig(2, 1, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 5), 1_544_769),
    (dd.UNetConfig(8, 3, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 3), 573_187),
    (dd.UNetConfig(8, 1, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 3), 573_169),
    (dd.UNetConfig(2, 3, (8, 16, 32), (0, 0, 0), 3), 35_179),
    (dd.UNetConfig(2, 1, (8, 16, 32), (0, 0, 0), 3), 35_161),
    (dd.UNetConfig(2, 1, (8, 16, 32, 64), (0, 0, 0, 4), 3), 144_045),
    (dd.UNetConfig(2, 1, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 3), 572_737),
    (dd.UNetConfig(2, 3, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 3), 572_755),
]


@pytest.mark.parametrize("cfg,count", TABLE)
def test_parameter_counts_match_the_published_table(cfg, count):
    net = cfg.build()
    assert isinstance(net, torch.nn.Module)
    assert sum(p.numel() for p in net.parameters()) == count


def test_named_presets_are_the_table_rows():
    assert cfgs.LAYER5 == TABLE[0][0] and cfgs.DEHAZE == TABLE[3][0] and cfgs.SEGMENT == TABLE[5][0]
    assert cfgs.WATERMARK_MASK == TABLE[7][0] and cfgs.MULTI_WATERMARK == TABLE[8][0]


def test_output_shape_range_and_non_square_input():
    torch.manual_seed(0)
    net = dd.UNetConfig(2, 3, (8, 16, 32), (0, 0, 4), 3).build()
    y = net(torch.rand(2, 2, 32, 48)).detach()
    assert y.shape == (2, 3, 32, 48)
    assert float(y.min()) > 0 and float(y.max()) < 1


def test_batch_statistics_are_used_even_after_eval():
    torch.manual_seed(0)
    net = dd.UNetConfig(2, 1, (8, 16), (0, 4), 3).build()
    z = torch.rand(1, 2, 16, 16)
    before = net(z)
    net.eval()
    assert net.training
    torch.testing.assert_close(net(z), before)


def test_size_rules():
    cfg = cfgs.LAYER5
    assert cfg.size_multiple == 32
    assert cfg.min_size == 96  # 5x5 kernels: the deepest level (H/32) must exceed its pad of 2
    assert cfg.padded_size(50, 200) == (96, 224)
    with pytest.raises(ValueError, match="divisible by 32"):
        cfg.build()(torch.rand(1, 3, 96, 100))


@pytest.mark.parametrize("kwargs,exc", [
    (dict(channels=(8, 16), skip_channels=(0,)), ValueError),
    (dict(kernel_size=4), ValueError),
    (dict(in_channels=0), ValueError),
    (dict(in_channels=2.5), TypeError),
    (dict(channels=()), ValueError),
])
def test_unet_config_rejects_bad_values(kwargs, exc):
    with pytest.raises(exc):
        dd.UNetConfig(**kwargs)


@pytest.mark.parametrize("kwargs,exc", [
    (dict(iterations=0), ValueError),
    (dict(iterations=1.5), TypeError),
    (dict(lr=-1.0), ValueError),
    (dict(mode="turbo"), ValueError),
    (dict(device="tpu"), ValueError),
    (dict(seed="1"), TypeError),
    (dict(log_every=0), ValueError),
    (dict(callback=3), TypeError),
])
def test_solver_config_rejects_bad_values(kwargs, exc):
    with pytest.raises(exc):
        dd.SolverConfig(**kwargs)


def test_in_place_activations_compute_the_same_function():
    """The generators' LeakyReLUs run in place (less memory kept for the backward): outputs and
    every gradient equal those of the same net with out-of-place activations, bit for bit."""
    import copy

    torch.manual_seed(0)
    net = dd.UNetConfig(2, 3, (8, 16, 32), (0, 4, 4), 3).build()
    plain = copy.deepcopy(net)
    for module in plain.modules():
        if isinstance(module, torch.nn.LeakyReLU):
            module.inplace = False
    assert any(isinstance(m, torch.nn.LeakyReLU) and m.inplace for m in net.modules())
    z = torch.rand(1, 2, 32, 40) / 100
    outs = []
    for n in (net, plain):
        y = n(z)
        (y ** 2).mean().backward()
        outs.append((y.detach(), [p.grad for p in n.parameters()]))
    assert torch.equal(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        assert torch.equal(a, b)


def test_low_memory_recomputation_is_the_same_function():
    """Recomputing the full-resolution block in the backward: same outputs and gradients (float64)."""
    import copy

    torch.manual_seed(0)
    net = dd.UNetConfig(2, 3, (8, 16, 32), (0, 4, 4), 3).build().double()
    low = copy.deepcopy(net).set_low_memory(True)
    z = torch.rand(1, 2, 32, 40, dtype=torch.float64) / 100
    outs = []
    for n in (net, low):
        y = n(z)
        (y ** 2).mean().backward()
        outs.append((y.detach(), [p.grad for p in n.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-14, rtol=0)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(b, a, atol=1e-14, rtol=1e-10)
