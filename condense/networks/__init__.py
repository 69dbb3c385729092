"""The networks of the DC / DSA / DCC papers, for any input size and channel count.

Faithful to the DC/DSA authors' ``networks.py`` (Zhao, Mopuri & Bilen, ICLR 2021; Zhao & Bilen,
ICML 2021), which DCC (Lee et al., ICML 2022) reuses. Every network maps
``x: (N, C, H, W) float32, normalised`` to logits ``(N, num_classes)`` and exposes

- ``embed(x) -> (N, D)``: the penultimate features (used by herding), and
- ``forward(x) = classifier(embed(x))``, ``classifier`` being the last ``nn.Linear``.

Parameters keep PyTorch's default initialisation, as in the authors' code.

Modules: :mod:`~condense.networks.convnet` (ConvNet and its ablation choices),
:mod:`~condense.networks.classic` (MLP, LeNet, AlexNet, VGG11(BN), ResNet18(BN)),
:mod:`~condense.networks.common` (what they share); this package holds the registry
(:func:`build_network`, :func:`list_networks`) and re-exports every network class.

Example::

    >>> import torch
    >>> from condense.networks import build_network, list_networks
    >>> net = build_network("convnet", channels=3, num_classes=10, image_size=(32, 32))
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> net.embed(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 2048])

Departures from the authors' code, all invisible on the datasets the papers use:

- The authors pad the first convolution more (ConvNet/VGG 3, LeNet 2, AlexNet 4) whenever the
  input has one channel; the only purpose is to turn 28×28 MNIST images into 32×32 feature maps
  (28 → 32 → 16 → 8 → 4 in ConvNet). We apply the extra padding to 1-channel 28×28 inputs only and
  pad normally for other sizes.
- Flattened feature sizes are computed for the actual input size (a dummy forward pass, or the
  arithmetic for ConvNet), where the authors hard-code the 28/32-pixel values.
- ResNet18 ends with adaptive average pooling to 1×1; the authors' ``avg_pool2d(out, 4)`` is the
  same operation for 28×28 and 32×32 inputs (whose last feature map is 4×4).
- Activations are not in-place (one module per layer), which keeps ``torch.func`` transforms and
  second-order gradients safe; the computed function is the same.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from condense.errors import ConfigError
from condense.networks.classic import MLP, VGG11, VGG11BN, AlexNet, LeNet, ResNet18, ResNet18BN
from condense.networks.convnet import ConvNet

__all__ = [
    "ConvNet",
    "MLP",
    "LeNet",
    "AlexNet",
    "VGG11",
    "VGG11BN",
    "ResNet18",
    "ResNet18BN",
    "build_network",
    "list_networks",
    "has_batchnorm",
]


# --------------------------------------------------------------------------------------------
# registry

Factory = Callable[..., nn.Module]


def _factory(cls: type[nn.Module], **defaults: object) -> Factory:
    """A factory building ``cls(channels, num_classes, image_size, **{**defaults, **overrides})``."""
    fixed = {"self", "channels", "num_classes", "image_size"}
    accepted = set(inspect.signature(cls.__init__).parameters) - fixed

    def build(
        channels: int, num_classes: int, image_size: tuple[int, int], **overrides: object
    ) -> nn.Module:
        unknown = sorted(set(overrides) - accepted)
        if unknown:
            allowed = ", ".join(sorted(accepted)) or "none"
            raise ConfigError(
                f"{cls.__name__} does not accept {', '.join(unknown)} (accepted: {allowed})"
            )
        return cls(channels, num_classes, image_size, **{**defaults, **overrides})

    build.__doc__ = f"{cls.__name__}(**{defaults!r}, **overrides)"
    return build


_REGISTRY: dict[str, Factory] = {
    "convnet": _factory(ConvNet),
    "mlp": _factory(MLP),
    "lenet": _factory(LeNet),
    "alexnet": _factory(AlexNet),
    "vgg11": _factory(VGG11),
    "vgg11bn": _factory(VGG11BN),
    "resnet18": _factory(ResNet18),
    "resnet18bn": _factory(ResNet18BN),
    # ConvNet ablations (DC/DSA evaluation modes W, D, N, P, A)
    "convnet-w32": _factory(ConvNet, width=32),
    "convnet-w64": _factory(ConvNet, width=64),
    "convnet-w256": _factory(ConvNet, width=256),
    "convnet-d1": _factory(ConvNet, depth=1),
    "convnet-d2": _factory(ConvNet, depth=2),
    "convnet-d4": _factory(ConvNet, depth=4),
    "convnet-bn": _factory(ConvNet, norm="batch"),
    "convnet-ln": _factory(ConvNet, norm="layer"),
    "convnet-gn": _factory(ConvNet, norm="group"),
    "convnet-nonorm": _factory(ConvNet, norm="none"),
    "convnet-maxpool": _factory(ConvNet, pooling="max"),
    "convnet-nopool": _factory(ConvNet, pooling="none"),
    "convnet-sigmoid": _factory(ConvNet, activation="sigmoid"),
    "convnet-leakyrelu": _factory(ConvNet, activation="leakyrelu"),
}


def list_networks() -> list[str]:
    """Registered network names, main architectures first, then the ConvNet ablations."""
    return list(_REGISTRY)


def build_network(
    name: str,
    channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    **overrides: object,
) -> nn.Module:
    """Build a freshly initialised network by registry name (case-insensitive).

    ``overrides`` replace the variant's defaults, e.g. ``build_network("convnet", 3, 10, (32, 32),
    width=64)``. Unknown names or arguments raise :class:`~condense.errors.ConfigError`.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    factory = _REGISTRY.get(key)
    if factory is None:
        close = difflib.get_close_matches(str(key), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(_REGISTRY)}"
        raise ConfigError(f"unknown network {name!r}{hint}")
    return factory(channels, num_classes, image_size, **overrides)


def has_batchnorm(module: nn.Module) -> bool:
    """True if any submodule is a batch norm (whose running statistics need the DC BN protocol)."""
    return any(isinstance(m, _BatchNorm) for m in module.modules())
