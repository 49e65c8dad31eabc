"""PointwiseConv2d: the same function as a grouped 1x1 nn.Conv2d, values and gradients."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from doubledip.engine.nets.pointwise import MAX_DENSE_GROUPS, PointwiseConv2d


@pytest.mark.parametrize("groups", [1, 2, 3, MAX_DENSE_GROUPS, MAX_DENSE_GROUPS + 1])
@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_the_grouped_convolution(groups, channels_last):
    torch.manual_seed(groups)
    conv = PointwiseConv2d(groups * 6, groups * 5, groups=groups).double()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, groups * 6, 9, 13, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(2, groups * 5, 9, 13, dtype=torch.float64)
    y = conv(x)
    w_ref, b_ref = conv.weight.detach().clone().requires_grad_(), conv.bias.detach().clone().requires_grad_()
    y_ref = F.conv2d(x_ref, w_ref, b_ref, groups=groups)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv.bias.grad, b_ref.grad, rtol=1e-12, atol=1e-12)


def test_same_parameters_and_state_dict_as_conv2d():
    a, b = PointwiseConv2d(8, 6, groups=2), torch.nn.Conv2d(8, 6, 1, groups=2)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 8, 7, 7).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-6)


def test_as_convolutions_switches_to_the_grouped_convolution():
    from doubledip.engine.nets.pointwise import as_convolutions
    from torch.utils.flop_counter import FlopCounterMode

    conv = PointwiseConv2d(16, 16, groups=2)
    x = torch.randn(1, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    counts = []
    for ctx in (as_convolutions(), contextlib.nullcontext()):
        counter = FlopCounterMode(display=False)
        with counter, ctx, torch.no_grad():
            conv(x)
        counts.append(counter.get_total_flops())
    assert counts[0] == 2 * 64 * 16 * 8  # grouped: 64 pixels x 16 outputs x 8 inputs, 2 flops each
    assert counts[1] == 2 * counts[0]  # the dense GEMM multiplies the zero blocks too
