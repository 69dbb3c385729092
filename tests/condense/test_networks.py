"""Tests for condense.networks: shapes over the registry, parameter counts, norms, errors."""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import nn

import condense.networks as networks
from condense.errors import ConfigError
from condense.networks import ConvNet, build_network, has_batchnorm, list_networks


# (channels, H, W)
SIZES = [(1, 28, 28), (3, 32, 32), (1, 8, 8), (3, 64, 64)]

# Combinations that are too small for the architecture: the build must fail with ConfigError.
TOO_SMALL = {
    ("lenet", (1, 8, 8)),  # 8 -> conv5 -> 4 -> pool -> 2 -> conv5: impossible
    ("vgg11", (1, 8, 8)),  # five 2x2 max-pools need at least 32 pixels
    ("vgg11bn", (1, 8, 8)),
    ("convnet-d4", (1, 8, 8)),  # 8 -> 4 -> 2 -> 1 -> 0
    ("resnet18", (1, 8, 8)),  # last stage is 1x1: a per-channel GroupNorm of one value is undefined
}

EXPECTED_NAMES = [
    "convnet", "mlp", "lenet", "alexnet", "vgg11", "vgg11bn", "resnet18", "resnet18bn",
    "convnet-w32", "convnet-w64", "convnet-w256", "convnet-d1", "convnet-d2", "convnet-d4",
    "convnet-bn", "convnet-ln", "convnet-gn", "convnet-nonorm", "convnet-maxpool",
    "convnet-nopool", "convnet-sigmoid", "convnet-leakyrelu",
]  # fmt: skip


# Penultimate feature sizes worked out by hand, checked inside test_output_shapes.
EMBED_DIMS = {
    ("convnet", (1, 28, 28)): 128 * 4 * 4,  # 28 -pad 3-> 32 -> 16 -> 8 -> 4
    ("convnet", (3, 32, 32)): 128 * 4 * 4,
    ("convnet", (1, 8, 8)): 128 * 1 * 1,  # 8 -> 4 -> 2 -> 1
    ("convnet", (3, 64, 64)): 128 * 8 * 8,
    ("convnet-nopool", (1, 8, 8)): 128 * 8 * 8,
    ("convnet-w32", (3, 32, 32)): 32 * 4 * 4,
    ("convnet-d1", (3, 32, 32)): 128 * 16 * 16,
    ("convnet-d4", (3, 32, 32)): 128 * 2 * 2,
    ("mlp", (3, 32, 32)): 128,
    ("lenet", (1, 28, 28)): 84,
    ("alexnet", (1, 28, 28)): 192 * 4 * 4,  # 28 -pad 4-> 32 -> 16 -> 16 -> 8 -> 8 -> 4
    ("alexnet", (3, 32, 32)): 192 * 4 * 4,
    ("alexnet", (3, 64, 64)): 192 * 8 * 8,
    ("vgg11", (1, 28, 28)): 512,  # 28 -pad 3-> 32 -> ... -> 1
    ("vgg11", (3, 32, 32)): 512,
    ("vgg11", (3, 64, 64)): 512 * 2 * 2,
    ("resnet18", (1, 28, 28)): 512,
    ("resnet18", (3, 64, 64)): 512,
    ("resnet18bn", (1, 8, 8)): 512,
}


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_registry_names():
    assert sorted(list_networks()) == sorted(EXPECTED_NAMES)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_output_shapes(name, size):
    c, h, w = size
    torch.manual_seed(0)
    if (name, size) in TOO_SMALL:
        with pytest.raises(ConfigError, match="cannot process"):
            build_network(name, c, 7, (h, w))
        return
    net = build_network(name, c, 7, (h, w))
    x = torch.randn(2, c, h, w)
    with torch.no_grad():
        emb = net.embed(x)
        out = net(x)
    assert emb.ndim == 2 and emb.shape[0] == 2
    assert out.shape == (2, 7)
    assert net.classifier.in_features == emb.shape[1]
    if (name, size) in EMBED_DIMS:
        assert emb.shape[1] == EMBED_DIMS[name, size]
    torch.testing.assert_close(out, net.classifier(emb))


def test_mnist_padding_only_for_one_channel_28x28():
    # 3-channel 28x28 gets ordinary padding: 28 -> 14 -> 7 -> 3, 128*3*3 features
    assert build_network("convnet", 3, 10, (28, 28)).classifier.in_features == 128 * 3 * 3
    assert build_network("convnet", 1, 10, (28, 28)).features[0].padding == (3, 3)
    assert build_network("convnet", 1, 10, (32, 32)).features[0].padding == (1, 1)


def test_lenet_flat_size_matches_authors():
    # the authors hard-code 16*5*5 for 28x28x1 (padding 2) and 32x32x3 (padding 0)
    assert build_network("lenet", 1, 10, (28, 28)).fc_1.in_features == 400
    assert build_network("lenet", 3, 10, (32, 32)).fc_1.in_features == 400


def test_convnet_param_count_mnist():
    # conv1: 1*128*3*3 weights + 128 bias                       =   1,280
    # conv2, conv3: 128*128*3*3 + 128 = 147,456 + 128 each      = 295,168
    # 3 x GroupNorm(128, 128) affine: 2*128 each                =     768
    # classifier: 2048*10 + 10                                   =  20,490
    # total                                                      = 317,706
    net = build_network("convnet", 1, 10, (28, 28))
    assert net.features[0].padding == (3, 3)
    assert net.classifier.in_features == 2048
    assert n_params(net) == 1_280 + 295_168 + 768 + 20_490 == 317_706


def test_convnet_param_count_cifar():
    # conv1: 3*128*3*3 + 128 = 3,456 + 128 = 3,584; the rest as for MNIST (295,168 + 768 + 20,490)
    net = build_network("convnet", 3, 10, (32, 32))
    assert net.features[0].padding == (1, 1)
    assert n_params(net) == 3_584 + 295_168 + 768 + 20_490 == 320_010


def test_convnet_block_layout():
    net = ConvNet(3, 10, (32, 32))
    kinds = [type(m) for m in net.features]
    assert kinds == [nn.Conv2d, nn.GroupNorm, nn.ReLU, nn.AvgPool2d] * 3
    gn = net.features[1]
    assert gn.num_groups == gn.num_channels == 128 and gn.affine
    ln = build_network("convnet-ln", 3, 10, (32, 32)).features
    assert [m.normalized_shape for m in ln if isinstance(m, nn.LayerNorm)] == [
        (128, 32, 32),
        (128, 16, 16),
        (128, 8, 8),
    ]
    gn4 = build_network("convnet-gn", 3, 10, (32, 32)).features[1]
    assert gn4.num_groups == 4
    assert isinstance(build_network("convnet-maxpool", 3, 10, (32, 32)).features[3], nn.MaxPool2d)
    assert isinstance(build_network("convnet-sigmoid", 3, 10, (32, 32)).features[2], nn.Sigmoid)
    nonorm = build_network("convnet-nonorm", 3, 10, (32, 32))
    assert not any(isinstance(m, nn.GroupNorm) for m in nonorm.modules())


def test_instance_norm_normalises_per_sample_per_channel():
    torch.manual_seed(0)
    net = ConvNet(3, 10, (32, 32))
    captured = {}
    net.features[1].register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    x = torch.randn(4, 3, 32, 32) * 3.0 + 2.0
    net(x)
    out = captured["out"]  # (N, 128, 32, 32)
    mean = out.mean(dim=(2, 3))
    std = out.std(dim=(2, 3), unbiased=False)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-2, rtol=0)
    # and the statistics really are per sample: scaling one sample does not change another's output
    y = x.clone()
    y[0] *= 10.0
    captured.clear()
    net(y)
    torch.testing.assert_close(captured["out"][1:], out[1:])


@pytest.mark.parametrize("name", EXPECTED_NAMES)
def test_has_batchnorm(name):
    expected = name in ("convnet-bn", "vgg11bn", "resnet18bn")
    assert has_batchnorm(build_network(name, 1, 10, (28, 28))) is expected
    assert has_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))


def test_construction_leaves_batchnorm_stats_untouched():
    net = build_network("vgg11bn", 3, 10, (32, 32))
    assert net.training
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert int(m.num_batches_tracked) == 0
            assert torch.all(m.running_mean == 0)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ConfigError, match="convnet") as info:
        build_network("convnett", 3, 10, (32, 32))
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown network"):
        build_network("transformer", 3, 10, (32, 32))


def test_name_is_case_insensitive_and_overrides_apply():
    net = build_network("ConvNet", 3, 10, (32, 32), width=64, depth=2)
    assert net.classifier.in_features == 64 * 8 * 8
    assert isinstance(build_network("ResNet18BN", 3, 10, (32, 32)).bn1, nn.BatchNorm2d)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("convnet", {"norm": "instancenorm"}),
        ("convnet", {"activation": "tanh"}),
        ("convnet", {"pooling": "avgpooling"}),
        ("convnet", {"depth": 0}),
        ("convnet", {"colour": 1}),
        ("mlp", {"width": 64}),
    ],
)
def test_bad_arguments_raise_config_error(name, kwargs):
    with pytest.raises(ConfigError):
        build_network(name, 3, 10, (32, 32), **kwargs)


def test_bad_sizes_raise_config_error():
    with pytest.raises(ConfigError):
        build_network("convnet", 0, 10, (32, 32))
    with pytest.raises(ConfigError):
        build_network("convnet", 3, 10, (32,))


def test_module_docstring_example():
    result = doctest.testmod(networks, verbose=False)
    assert result.attempted > 0 and result.failed == 0
