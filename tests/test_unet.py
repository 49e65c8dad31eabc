"""The skip U-Net: parameter counts of ALGORITHM.md's table, shapes, batch statistics, config checks."""
import pytest
import torch

import doubledip as dd
from doubledip.engine.nets.pointwise import PointwiseConv2d
from doubledip.engine.nets.unet import SkipUNet
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
    net = SkipUNet(cfg)
    assert isinstance(net, torch.nn.Module)
    assert sum(p.numel() for p in net.parameters()) == count


def test_named_presets_are_the_table_rows():
    assert cfgs.LAYER5 == TABLE[0][0] and cfgs.DEHAZE == TABLE[3][0] and cfgs.SEGMENT == TABLE[5][0]
    assert cfgs.WATERMARK_MASK == TABLE[7][0] and cfgs.MULTI_WATERMARK == TABLE[8][0]


def test_output_shape_range_and_non_square_input():
    torch.manual_seed(0)
    net = dd.SkipUNet(dd.UNetConfig(2, 3, (8, 16, 32), (0, 0, 4), 3))
    y = net(torch.rand(2, 2, 32, 48)).detach()
    assert y.shape == (2, 3, 32, 48)
    assert float(y.min()) > 0 and float(y.max()) < 1


def test_batch_statistics_are_used_even_after_eval():
    torch.manual_seed(0)
    net = dd.SkipUNet(dd.UNetConfig(2, 1, (8, 16), (0, 4), 3))
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
        SkipUNet(cfg)(torch.rand(1, 3, 96, 100))


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
    """The generators' LeakyReLUs run in place on the plain (unfused) path (less memory kept for the
    backward): outputs and every gradient equal those of out-of-place activations, bit for bit."""
    import copy

    from doubledip.engine.nets.norm import BatchNormAct2d

    torch.manual_seed(0)
    net = dd.SkipUNet(dd.UNetConfig(2, 3, (8, 16, 32), (0, 4, 4), 3))  # contiguous: the plain path
    plain = copy.deepcopy(net)
    for module in plain.modules():
        if isinstance(module, BatchNormAct2d):
            module.inplace = False
    assert any(isinstance(m, BatchNormAct2d) and m.inplace and m.slope == 0.2 for m in net.modules())
    z = torch.rand(1, 2, 32, 40) / 100
    outs = []
    for n in (net, plain):
        y = n(z)
        (y ** 2).mean().backward()
        outs.append((y.detach(), [p.grad for p in n.parameters()]))
    assert torch.equal(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("cfg,copies,fmt", [
    (dd.UNetConfig(2, 3, (8, 16, 32), (0, 4, 4), 3), 1, torch.contiguous_format),
    (dd.UNetConfig(3, 3, (8, 16, 32, 64, 128), (0, 0, 0, 4, 4), 5), 2, torch.channels_last),
    (dd.UNetConfig(2, 1, (8, 16, 32, 64), (4, 0, 0, 4), 3), 3, torch.channels_last),
], ids=["skips", "layer5x2-channels-last", "skip-at-level-0x3"])
def test_low_memory_recomputation_is_the_same_function(cfg, copies, fmt):
    """Recomputing every level's down path and merge in the backward: the same outputs, gradients
    (input included) and BatchNorm running statistics (updated once per forward), in float64."""
    import copy

    from doubledip.engine.nets.unet import SkipUNet

    torch.manual_seed(0)
    net = SkipUNet(cfg, copies=copies).double().set_memory_format(fmt)
    nets = [net, copy.deepcopy(net).set_low_memory(True), copy.deepcopy(net).set_low_memory(True, levels=1)]
    h, w = cfg.padded_size(64, 96)
    z = torch.rand(1, copies * cfg.in_channels, h, w, dtype=torch.float64) / 100
    target = torch.rand(1, copies * cfg.out_channels, h, w, dtype=torch.float64)
    outs = []
    for n in nets:
        zi = z.clone().requires_grad_(True)
        y = n(zi)
        (y - target).abs().mean().backward()
        outs.append((y.detach(), zi.grad, [p.grad for p in n.parameters()], [b.clone() for b in n.buffers()]))
    for low in outs[1:]:
        torch.testing.assert_close(low[0], outs[0][0], atol=1e-14, rtol=0)
        torch.testing.assert_close(low[1], outs[0][1], atol=1e-14, rtol=1e-10)
        for a, b in zip(outs[0][2], low[2]):
            assert (a is None) == (b is None)  # None: the unused conv biases (see unet._conv)
            torch.testing.assert_close(b, a, atol=1e-14, rtol=1e-10)
        for a, b in zip(outs[0][3], low[3]):
            assert torch.equal(a, b)  # running statistics: one update per forward, not two


def test_low_memory_recomputation_under_bf16_autocast():
    """Fast mode's bf16 generators: the recompute re-enters the forward's autocast state."""
    import copy

    torch.manual_seed(1)
    net = dd.SkipUNet(dd.UNetConfig(2, 3, (8, 16, 32), (0, 4, 4), 3))
    low = copy.deepcopy(net).set_low_memory(True)
    z = torch.rand(1, 2, 32, 64) / 100
    outs = []
    for n in (net, low):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = n(z)
        y.float().square().mean().backward()
        outs.append((y.detach(), [p.grad for p in n.parameters()]))
    assert outs[0][0].dtype == torch.bfloat16
    assert torch.equal(outs[1][0], outs[0][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        assert (a is None and b is None) or torch.equal(a, b)


def test_low_memory_backward_imports_neither_dynamo_nor_sympy():
    """torch.utils.checkpoint imports torch._dynamo and autograd.grad(grad_outputs=...) imports
    sympy: 150 + 30 MB of resident memory that low_memory exists to save."""
    import subprocess
    import sys

    code = ("import sys, torch, doubledip as dd\n"
            "net = dd.SkipUNet(dd.UNetConfig(2, 3, (8, 16), (0, 4), 3)).set_low_memory(True)\n"
            "net(torch.rand(1, 2, 32, 32)).sum().backward()\n"
            "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_conv_biases_before_batch_norm_change_nothing():
    """The biases of the convs that feed a BatchNorm are kept but not added: every output and
    gradient equals (float64) that of the same net with them added, whatever their values, and
    the net keeps the published parameter count."""
    import copy

    from doubledip.engine.nets import unet

    torch.manual_seed(0)
    cfg = dd.UNetConfig(2, 3, (8, 16, 32), (0, 4, 4), 3)
    net = SkipUNet(cfg, copies=2).double()
    with_bias = copy.deepcopy(net)
    skipped = 0
    for m in with_bias.modules():
        if isinstance(m, unet._ConvBeforeNorm):
            m.forward = torch.nn.Conv2d.forward.__get__(m)  # the bias added
            skipped += 1
        elif isinstance(m, PointwiseConv2d) and not m.apply_bias:
            m.apply_bias = True
            skipped += 1
    assert skipped > 0
    with torch.no_grad():  # biases far from their init: they still change nothing
        for n in (net, with_bias):
            for name, p in n.named_parameters():
                if name.endswith("bias"):
                    p.copy_(torch.linspace(-3, 3, p.numel(), dtype=p.dtype))
    z = torch.rand(1, 4, 32, 40, dtype=torch.float64) / 100
    outs = []
    for n in (net, with_bias):
        y = n(z)
        (y ** 2).mean().backward()
        outs.append((y.detach(), dict(n.named_parameters())))
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=1e-12, rtol=1e-9)
    unused = 0
    for name, p in outs[0][1].items():
        q = outs[1][1][name]
        if p.grad is None:  # an unused bias: its gradient with the bias added is rounding noise
            unused += 1
            assert name.endswith("bias") and q.grad.abs().max() < 1e-12
        else:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-12, rtol=1e-8, msg=name)
    assert unused == skipped
    assert outs[0][1]["head.bias"].grad is not None  # the head's bias (before the sigmoid) is used
