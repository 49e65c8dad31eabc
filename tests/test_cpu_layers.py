"""The generator layers with a C++ path (BatchNorm + LeakyReLU, reflection padding, bilinear
upsampling backward) against the plain PyTorch layers they replace."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import doubledip as dd
from doubledip import bindings
from doubledip.engine.nets.norm import BatchNormAct2d
from doubledip.engine.nets.unet import SkipUNet

CL = torch.channels_last


@pytest.fixture(autouse=True)
def _fuse_every_size(monkeypatch):
    """The tests' small tensors take the fused BatchNorm too (production fuses from 32K elements)."""
    import doubledip.engine.nets.norm as norm

    monkeypatch.setattr(norm, "MIN_FUSED_NUMEL", 1)


needs_core = pytest.mark.skipif(not bindings.is_available(), reason="the C++ CPU core is not built")


def _plain(x, weight, bias, running_mean, running_var, slope):
    """The reference: F.batch_norm (batch statistics, momentum 0.1, eps 1e-5), then LeakyReLU."""
    y = F.batch_norm(x, running_mean, running_var, weight, bias, True, 0.1, 1e-5)
    return y if slope is None else F.leaky_relu(y, slope)


def _run(x, g, weight, bias, slope, how):
    """(y, dx, dweight, dbias, running_mean, running_var), all float64, for one path."""
    dtype = torch.float64 if how == "float64" else torch.float32
    c = x.shape[1]
    xx = x.to(dtype).clone().contiguous(memory_format=CL).requires_grad_()
    if how == "fused":
        bn = BatchNormAct2d(c, slope=slope)
        with torch.no_grad():
            bn.weight.copy_(weight)
            bn.bias.copy_(bias)
        assert bn._fusable(xx)
        y = bn(xx)
        w, b, rm, rv = bn.weight, bn.bias, bn.running_mean, bn.running_var
    else:
        w = weight.to(dtype).clone().requires_grad_()
        b = bias.to(dtype).clone().requires_grad_()
        rm, rv = torch.zeros(c, dtype=dtype), torch.ones(c, dtype=dtype)
        y = _plain(xx, w, b, rm, rv, slope)
    y.backward(g.to(dtype).contiguous(memory_format=CL))
    return [t.detach().double() for t in (y, xx.grad, w.grad, b.grad, rm, rv)]


@needs_core
@pytest.mark.parametrize("slope", [0.2, None], ids=["leaky", "no-act"])
@pytest.mark.parametrize("shape,offset", [
    ((1, 16, 64, 64), 0.0),    # a full-resolution layer's shape class, 128-float spans
    ((2, 8, 17, 9), 3.0),      # N > 1, rows not a multiple of the span
    ((1, 24, 5, 7), 100.0),    # channels not dividing the span, mean far from 0
    ((2, 3, 5, 5), -2.0),      # 3 channels: 42 rows per span, 8 rows of tail
    ((1, 200, 3, 3), 0.5),     # more channels than a span
    ((1, 7, 1, 2), 0.0),       # two rows: everything is tail
])
def test_fused_is_as_accurate_as_pytorch_float32(shape, offset, slope):
    """Against a float64 reference: output, all three gradients and both running statistics of the
    fused op are at least as close (within 2x, or 1e-6 relative) as PyTorch's own float32 pair."""
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen) * 2 + offset
    g = torch.randn(shape, generator=gen)
    weight = torch.rand(shape[1], generator=gen) + 0.5
    bias = torch.randn(shape[1], generator=gen)
    ref = _run(x, g, weight, bias, slope, "float64")
    plain = _run(x, g, weight, bias, slope, "float32")
    fused = _run(x, g, weight, bias, slope, "fused")
    names = ("y", "dx", "dweight", "dbias", "running_mean", "running_var")
    for name, r, p, f in zip(names, ref, plain, fused):
        scale = r.abs().max().clamp_min(1e-12)
        err_plain = ((p - r).abs().max() / scale).item()
        err_fused = ((f - r).abs().max() / scale).item()
        assert err_fused <= max(2 * err_plain, 1e-6), (name, err_fused, err_plain)


@needs_core
def test_fused_results_agree_across_thread_counts():
    """The statistics are split over the OpenMP team: 1 and 2 threads agree to rounding."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(1, 16, 96, 96, generator=gen) + 1).contiguous(memory_format=CL)
    g = torch.randn(1, 16, 96, 96, generator=gen)
    w, b = torch.rand(16, generator=gen) + 0.5, torch.randn(16, generator=gen)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(_run(x, g, w, b, 0.2, "fused"))
    finally:
        torch.set_num_threads(before)
    for a, b_ in zip(*outs):
        assert torch.allclose(a, b_, rtol=1e-5, atol=1e-6 * a.abs().max().item())


class _Counter:
    def __init__(self, monkeypatch):
        from doubledip.bindings import ops

        self.calls, real = 0, ops.bn_act_fwd

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(ops, "bn_act_fwd", counting)


def _tiny_net(copies=2):
    torch.manual_seed(0)
    return SkipUNet(dd.UNetConfig(2, 3, (8, 16, 32), (0, 4, 4), 3), copies=copies)


@needs_core
def test_generators_take_the_fused_path_only_where_it_applies(monkeypatch):
    """Channels-last float32 on the CPU: every BatchNorm of the generator is fused. Contiguous,
    float64, bf16 autocast or DOUBLEDIP_BACKEND=torch: none is."""
    counter = _Counter(monkeypatch)
    net = _tiny_net().set_memory_format(CL)
    n_bn = sum(isinstance(m, BatchNormAct2d) for m in net.modules())
    z = torch.rand(1, 4, 32, 32)
    net(z).sum().backward()
    assert counter.calls == n_bn > 0
    counter.calls = 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(z)
    copy.deepcopy(net).set_memory_format(torch.contiguous_format)(z)
    copy.deepcopy(net).double()(z.double())
    monkeypatch.setenv("DOUBLEDIP_BACKEND", "torch")
    net(z)
    assert counter.calls == 0


@needs_core
def test_whole_generator_fused_equals_plain_within_float_rounding(monkeypatch):
    """Two coupled generators, channels-last float32: output, every parameter gradient and the
    running statistics of the fused net against the same net with DOUBLEDIP_BACKEND=torch."""
    net = _tiny_net().set_memory_format(CL)
    plain = copy.deepcopy(net)
    z = torch.rand(1, 4, 48, 40, generator=torch.Generator().manual_seed(1))
    results = []
    for n, backend in ((net, "auto"), (plain, "torch")):
        monkeypatch.setenv("DOUBLEDIP_BACKEND", backend)
        y = n(z)
        ((y - 0.5) ** 2).mean().backward()
        results.append((y.detach(), [p.grad for p in n.parameters()], list(n.buffers())))
    (y1, g1, b1), (y2, g2, b2) = results
    assert torch.allclose(y1, y2, rtol=0, atol=1e-5)
    # relative to the largest gradient of the net (None: the unused conv biases, unet._conv)
    scale = max(b.abs().max().item() for b in g2 if b is not None)
    for a, b in zip(g1, g2):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=0, atol=2e-5 * scale)
    for a, b in zip(b1, b2):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6)


def test_state_dict_layout_is_that_of_the_plain_modules():
    """The fused modules keep BatchNorm2d's parameters and buffers at the old indices (the activation
    slots are empty), so state dicts saved before the fusion still load."""
    net = _tiny_net(copies=1)
    keys = set(net.state_dict())
    for prefix in ("body.down.1", "body.down.4", "body.merge.0", "body.merge.2", "body.merge.5",
                   "body.deeper.skip.1"):
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert f"{prefix}.{name}" in keys
    assert "body.down.0.1.weight" in keys and "body.merge.4.0.weight" in keys
    assert isinstance(net.body.down[2], torch.nn.Identity)
    assert net.body.merge[0].slope is None and net.body.merge[2].slope == 0.2


@needs_core
def test_small_tensors_take_the_plain_batch_norm(monkeypatch):
    import doubledip.engine.nets.norm as norm

    monkeypatch.setattr(norm, "MIN_FUSED_NUMEL", 1 << 15)
    bn = BatchNormAct2d(32)
    assert not bn._fusable(torch.randn(1, 32, 16, 16).contiguous(memory_format=CL))
    assert bn._fusable(torch.randn(1, 32, 32, 32).contiguous(memory_format=CL))


def test_bad_slope_is_rejected():
    with pytest.raises(ValueError, match="slope"):
        BatchNormAct2d(4, slope=0.0)


def test_plain_path_is_batch_norm_then_leaky_relu_exactly():
    """Where nothing is fused (contiguous input), the module is exactly F.batch_norm + LeakyReLU."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 8, 8, generator=gen)
    bn = BatchNormAct2d(6, slope=0.2)
    w, b = bn.weight.detach().clone(), bn.bias.detach().clone()
    rm, rv = torch.zeros(6), torch.ones(6)
    assert torch.equal(bn(x), _plain(x, w, b, rm, rv, 0.2))
    assert torch.equal(bn.running_mean, rm) and torch.equal(bn.running_var, rv)


# --- reflection padding and bilinear upsampling -----------------------------------------------

@needs_core
@pytest.mark.parametrize("shape,pad", [((1, 16, 128, 130), 2), ((2, 5, 160, 170), 1), ((1, 3, 300, 301), 3),
                                       ((1, 1, 512, 512), 2)])
def test_reflection_pad_equals_pytorch(shape, pad, monkeypatch):
    """Forward bit for bit; backward within float rounding (border sums added in another order)."""
    from doubledip.bindings import ops
    from doubledip.engine.nets.padding import MIN_FUSED_NUMEL, ReflectionPad2d

    calls = []
    real = ops.reflect_pad_fwd
    monkeypatch.setattr(ops, "reflect_pad_fwd", lambda *a: calls.append(1) or real(*a))
    assert torch.Size(shape).numel() >= MIN_FUSED_NUMEL
    gen = torch.Generator().manual_seed(pad)
    x = torch.randn(shape, generator=gen).contiguous(memory_format=CL).requires_grad_()
    y = ReflectionPad2d(pad)(x)
    assert calls, "the fused path was not taken"
    y_ref = F.pad(x, (pad,) * 4, mode="reflect")
    assert torch.equal(y, y_ref)
    g = torch.randn(y.shape, generator=gen).contiguous(memory_format=CL)
    dx, = torch.autograd.grad(y, x, g)
    dx_ref, = torch.autograd.grad(y_ref, x, g)
    assert dx.is_contiguous(memory_format=CL)
    assert torch.allclose(dx, dx_ref, rtol=1e-6, atol=1e-6)
    # the float64 truth: each input pixel's gradient is the sum of 1-4 output gradients
    xd = x.detach().double().requires_grad_()
    d64, = torch.autograd.grad(F.pad(xd, (pad,) * 4, mode="reflect"), xd, g.double())
    assert (dx.double() - d64).abs().max() <= 2 * (dx_ref.double() - d64).abs().max() + 1e-7


def test_reflection_pad_plain_path_and_bad_padding():
    from doubledip.engine.nets.padding import ReflectionPad2d

    x = torch.randn(1, 2, 6, 5)  # contiguous: nn.ReflectionPad2d's own path
    assert torch.equal(ReflectionPad2d(2)(x), F.pad(x, (2,) * 4, mode="reflect"))
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="padding"):
            ReflectionPad2d(bad)


@needs_core
@pytest.mark.parametrize("shape", [(1, 32, 64, 64), (2, 5, 7, 6), (1, 3, 1, 3), (3, 8, 9, 4), (1, 256, 8, 8)])
def test_bilinear_upsample_backward_equals_pytorch(shape, monkeypatch):
    """Forward is PyTorch's (bit for bit); the gathered backward agrees with PyTorch's scatter to
    float rounding, and with a float64 reference as closely as PyTorch does."""
    from doubledip.bindings import ops
    from doubledip.engine.nets.upsample import BilinearUpsample

    calls = []
    real = ops.upsample_bilinear_bwd
    monkeypatch.setattr(ops, "upsample_bilinear_bwd", lambda *a: calls.append(1) or real(*a))
    gen = torch.Generator().manual_seed(shape[1])
    x = torch.randn(shape, generator=gen).contiguous(memory_format=CL).requires_grad_()
    up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)  # noqa: E731
    y = BilinearUpsample(2)(x)
    y_ref = up(x)
    assert torch.equal(y, y_ref)
    g = torch.randn(y.shape, generator=gen).contiguous(memory_format=CL)
    dx, = torch.autograd.grad(y, x, g)
    assert calls, "the fused backward was not taken"
    dx_ref, = torch.autograd.grad(y_ref, x, g)
    assert torch.allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
    xd = x.detach().double().requires_grad_()
    d64, = torch.autograd.grad(up(xd), xd, g.double())
    assert (dx.double() - d64).abs().max() <= 2 * (dx_ref.double() - d64).abs().max() + 1e-6


def test_bilinear_upsample_plain_path_and_bad_scale():
    from doubledip.engine.nets.upsample import BilinearUpsample

    x = torch.randn(1, 2, 4, 5, requires_grad=True)  # contiguous: nn.Upsample's own path
    up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)  # noqa: E731
    assert torch.equal(BilinearUpsample(2)(x), up(x))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="scale_factor"):
            BilinearUpsample(bad)
