"""Tests for condense.networks.thin_conv: the im2col route computes the convolution (values,
first- and second-order gradients) against ``F.conv2d``; eager mode is ``nn.Conv2d`` bit for bit;
compiled CPU graphs take the im2col route; ConvNet builds it for one-channel inputs only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from condense.networks import build_network
from condense.networks.thin_conv import ThinConv2d


def _pair(in_channels: int, kernel: int, padding: int, seed: int = 0) -> tuple[ThinConv2d, nn.Conv2d]:
    torch.manual_seed(seed)
    plain = nn.Conv2d(in_channels, 16, kernel_size=kernel, padding=padding).double()
    thin = ThinConv2d(in_channels, 16, kernel_size=kernel, padding=padding).double()
    thin.load_state_dict(plain.state_dict())
    return thin, plain


@pytest.mark.parametrize("in_channels, kernel, padding, size", [(1, 3, 3, 28), (1, 3, 1, 9), (2, 3, 0, 7), (3, 5, 2, 8), (1, 2, 1, (6, 9))])
def test_im2col_route_equals_the_convolution_with_its_gradients(in_channels, kernel, padding, size):
    thin, plain = _pair(in_channels, kernel, padding)
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(5, in_channels, h, w, dtype=torch.float64, requires_grad=True)
    ours, theirs = thin._im2col_forward(x), plain(x)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)

    # first order, with create_graph (the synthetic side of matching differentiates through it)
    upstream = torch.randn_like(theirs)
    params_thin, params_plain = [thin.weight, thin.bias, x], [plain.weight, plain.bias, x]
    g_ours = torch.autograd.grad(ours, params_thin, upstream, create_graph=True)
    g_theirs = torch.autograd.grad(theirs, params_plain, upstream, create_graph=True)
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # second order: d/dx of <∂y/∂W, V>
    probe = torch.randn_like(g_theirs[0])
    (h_ours,) = torch.autograd.grad((g_ours[0] * probe).sum(), x)
    (h_theirs,) = torch.autograd.grad((g_theirs[0] * probe).sum(), x)
    torch.testing.assert_close(h_ours, h_theirs, rtol=1e-12, atol=1e-12)


def test_eager_forward_is_the_plain_convolution_bit_for_bit():
    thin, plain = _pair(1, 3, 3)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    assert torch.equal(thin(x), plain(x))
    assert list(thin.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]


def test_strided_or_grouped_convolutions_keep_the_plain_route():
    assert not ThinConv2d(1, 4, 3, stride=2)._unfoldable()
    assert not ThinConv2d(2, 4, 3, groups=2)._unfoldable()
    assert not ThinConv2d(1, 4, 3, padding="same")._unfoldable()
    assert not ThinConv2d(1, 4, 3, padding=1, padding_mode="reflect")._unfoldable()
    assert ThinConv2d(1, 4, 3, padding=3)._unfoldable()


def test_convnet_builds_the_thin_convolution_for_one_channel_only():
    grey = build_network("convnet", 1, 10, (28, 28))
    colour = build_network("convnet", 3, 10, (32, 32))
    assert type(grey.features[0]) is ThinConv2d and grey.features[0].padding == (3, 3)
    assert type(colour.features[0]) is nn.Conv2d
    assert all(type(m) is nn.Conv2d for m in list(grey.features)[1:] if isinstance(m, nn.Conv2d))
    # same parameter names and shapes as before, so stored networks and released sets still load
    assert [k for k in grey.state_dict()][:2] == ["features.0.weight", "features.0.bias"]


@pytest.mark.compile
def test_a_compiled_cpu_graph_takes_the_im2col_route(monkeypatch):
    calls = []
    original = ThinConv2d._im2col_forward

    def counted(self, x):
        calls.append(tuple(x.shape[1:]))
        return original(self, x)

    monkeypatch.setattr(ThinConv2d, "_im2col_forward", counted)
    torch._dynamo.reset()
    thin, plain = _pair(1, 3, 3)
    thin, plain = thin.float(), plain.float()
    x = torch.randn(4, 1, 28, 28)
    out = torch.compile(thin)(x)
    assert calls == [(1, 28, 28)]  # traced once, through the im2col route
    torch.testing.assert_close(out, plain(x), rtol=1e-5, atol=1e-5)
    assert thin(x).equal(plain(x))  # eager calls stay on the plain route
    assert calls == [(1, 28, 28)]
