"""The networks of the DC / DSA / DCC papers, for any input size and channel count.

Faithful to the DC/DSA authors' ``networks.py`` (Zhao, Mopuri & Bilen, ICLR 2021; Zhao & Bilen,
ICML 2021), which DCC (Lee et al., ICML 2022) reuses. Every network maps
``x: (N, C, H, W) float32, normalised`` to logits ``(N, num_classes)`` and exposes

- ``embed(x) -> (N, D)``: the penultimate features (used by herding), and
- ``forward(x) = classifier(embed(x))``, ``classifier`` being the last ``nn.Linear``.

Parameters keep PyTorch's default initialisation, as in the authors' code.

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
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from condense.errors import ConfigError

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

ACTIVATIONS = ("relu", "sigmoid", "leakyrelu")
NORMS = ("instance", "batch", "layer", "group", "none")
POOLINGS = ("avg", "max", "none")
VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


# --------------------------------------------------------------------------------------------
# helpers


def _check_size(channels: int, num_classes: int, image_size: tuple[int, int]) -> tuple[int, int]:
    """Validate the common constructor arguments; return ``image_size`` as a tuple of two ints."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(image_size)
    if len(image_size) != 2 or any(not isinstance(s, int) or s < 1 for s in image_size):
        raise ConfigError(f"image_size must be two positive ints (H, W), got {image_size!r}")
    if not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"channels must be a positive int, got {channels!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
    return image_size  # type: ignore[return-value]


def _mnist_like(channels: int, image_size: tuple[int, int]) -> bool:
    """True for 1-channel 28×28 inputs, which the authors pad up to 32×32 in the first conv."""
    return channels == 1 and tuple(image_size) == (28, 28)


def _instance_norm(num_channels: int) -> nn.GroupNorm:
    """The authors' "instance norm": GroupNorm with one group per channel, affine."""
    return nn.GroupNorm(num_channels, num_channels, affine=True)


def _flat_dim(features: nn.Module, channels: int, image_size: tuple[int, int], name: str) -> int:
    """Size of ``features(x).flatten(1)`` for one input image.

    Found by a dummy forward pass in eval mode under ``no_grad``, so BatchNorm running statistics
    are untouched. An input too small for the architecture raises ``ConfigError``.
    """
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, channels, *image_size))
    # RuntimeError: a kernel larger than the feature map, a 0-sized pooling output;
    # ValueError: a per-channel GroupNorm ("instance norm") over a 1x1 map (one value per channel)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"{name} cannot process {channels}x{image_size[0]}x{image_size[1]} images "
            f"(input too small)"
        ) from exc
    finally:
        features.train(was_training)
    if out.numel() == 0:
        raise ConfigError(
            f"{name} cannot process {channels}x{image_size[0]}x{image_size[1]} images "
            f"(input too small)"
        )
    return out[0].numel()


class _Classifier(nn.Module):
    """Base: ``forward(x) = classifier(embed(x))``; subclasses define ``embed`` and ``classifier``."""

    classifier: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> logits ``(N, num_classes)``."""
        return self.classifier(self.embed(x))


# --------------------------------------------------------------------------------------------
# ConvNet


class ConvNet(_Classifier):
    """The DC/DSA/DCC default network: ``depth`` blocks, then a linear classifier.

    Block: conv 3×3 (``width`` channels, padding 1) → norm → activation → pool 2×2 (stride 2).
    For 1-channel 28×28 inputs the first conv has padding 3 (28 → 32), as in the authors' code.

    Norms: ``instance`` = ``GroupNorm(width, width)`` (one group per channel, affine — the
    authors' choice, not ``nn.InstanceNorm2d``); ``batch`` = ``BatchNorm2d``; ``layer`` =
    ``LayerNorm([C, H, W])`` over the current feature shape; ``group`` = ``GroupNorm(4, width)``;
    ``none``. Pooling: ``avg`` / ``max`` (2×2, stride 2) or ``none``.

    Features: ``width · H_d · W_d``, e.g. 128·4·4 = 2048 for 32×32 (or MNIST 28×28) inputs.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        width: int = 128,
        depth: int = 3,
        activation: str = "relu",
        norm: str = "instance",
        pooling: str = "avg",
    ) -> None:
        super().__init__()
        image_size = _check_size(channels, num_classes, image_size)
        if not isinstance(width, int) or width < 1:
            raise ConfigError(f"ConvNet width must be a positive int, got {width!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"ConvNet depth must be a positive int, got {depth!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; choose from {', '.join(ACTIVATIONS)}"
            )
        if norm not in NORMS:
            raise ConfigError(f"unknown norm {norm!r}; choose from {', '.join(NORMS)}")
        if pooling not in POOLINGS:
            raise ConfigError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
        if norm == "group" and width % 4 != 0:
            raise ConfigError(f"group norm uses 4 groups; width {width} is not divisible by 4")

        layers: list[nn.Module] = []
        c, h, w = channels, image_size[0], image_size[1]
        for d in range(depth):
            padding = 3 if d == 0 and _mnist_like(channels, image_size) else 1
            layers.append(nn.Conv2d(c, width, kernel_size=3, padding=padding))
            c, h, w = width, h + 2 * padding - 2, w + 2 * padding - 2
            if norm != "none":
                layers.append(self._norm_layer(norm, (c, h, w)))
            layers.append(self._activation(activation))
            if pooling != "none":
                pool = nn.AvgPool2d if pooling == "avg" else nn.MaxPool2d
                layers.append(pool(kernel_size=2, stride=2))
                h, w = h // 2, w // 2
            if h < 1 or w < 1:
                raise ConfigError(
                    f"ConvNet of depth {depth} cannot process {image_size[0]}x{image_size[1]} "
                    f"images (feature map vanishes at block {d + 1})"
                )
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c, h, w)
        self.classifier = nn.Linear(c * h * w, num_classes)

    @staticmethod
    def _activation(name: str) -> nn.Module:
        if name == "relu":
            return nn.ReLU()
        if name == "sigmoid":
            return nn.Sigmoid()
        return nn.LeakyReLU(negative_slope=0.01)

    @staticmethod
    def _norm_layer(name: str, shape: tuple[int, int, int]) -> nn.Module:
        c = shape[0]
        if name == "instance":
            return _instance_norm(c)
        if name == "batch":
            return nn.BatchNorm2d(c, affine=True)
        if name == "layer":
            return nn.LayerNorm(list(shape), elementwise_affine=True)
        return nn.GroupNorm(4, c, affine=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, width·H_d·W_d)`` flattened conv features."""
        return self.features(x).flatten(1)


# --------------------------------------------------------------------------------------------
# MLP, LeNet, AlexNet


class MLP(_Classifier):
    """flatten → Linear(C·H·W, 128) → ReLU → Linear(128, 128) → ReLU → Linear(128, classes)."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        image_size = _check_size(channels, num_classes, image_size)
        self.fc_1 = nn.Linear(channels * image_size[0] * image_size[1], 128)
        self.fc_2 = nn.Linear(128, 128)
        self.classifier = nn.Linear(128, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 128)``."""
        out = F.relu(self.fc_1(x.flatten(1)))
        return F.relu(self.fc_2(out))


class LeNet(_Classifier):
    """conv 6@5×5 → ReLU → maxpool 2 → conv 16@5×5 → ReLU → maxpool 2 → fc 120 → fc 84 → classes.

    First conv padding 2 for 1-channel 28×28 inputs (28 → 28 → 14 → 10 → 5), else 0
    (32 → 28 → 14 → 10 → 5); the flattened size (16·5·5 = 400 on both) is computed for any input.
    """

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        image_size = _check_size(channels, num_classes, image_size)
        padding = 2 if _mnist_like(channels, image_size) else 0
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc_1 = nn.Linear(_flat_dim(self.features, channels, image_size, "LeNet"), 120)
        self.fc_2 = nn.Linear(120, 84)
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 84)``."""
        out = self.features(x).flatten(1)
        out = F.relu(self.fc_1(out))
        return F.relu(self.fc_2(out))


class AlexNet(_Classifier):
    """DC's small AlexNet: five convs (128@5, 192@5, 256@3, 192@3, 192@3), three max-pools, one fc.

    First conv padding 4 for 1-channel 28×28 inputs (28 → 32), else 2; 192·4·4 = 3072 features on
    32×32 / MNIST inputs, computed for any input.
    """

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        image_size = _check_size(channels, num_classes, image_size)
        padding = 4 if _mnist_like(channels, image_size) else 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, kernel_size=5, stride=1, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(128, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(192, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(192, 192, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        n_features = _flat_dim(self.features, channels, image_size, "AlexNet")
        self.classifier = nn.Linear(n_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 192·H/8·W/8)``."""
        return self.features(x).flatten(1)


# --------------------------------------------------------------------------------------------
# VGG11


class VGG11(_Classifier):
    """VGG11 (cfg 64,M,128,M,256,256,M,512,512,M,512,512,M): conv 3×3 → norm → ReLU; final linear.

    ``norm='instance'`` (default) uses ``GroupNorm(C, C)``; ``norm='batch'`` uses ``BatchNorm2d``
    (that is :class:`VGG11BN`). First conv padding 3 for 1-channel 28×28 inputs (28 → 32 → … → 1).
    512 features on 32×32 / MNIST inputs; 512·(H/32)·(W/32) in general.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        norm: str = "instance",
    ) -> None:
        super().__init__()
        image_size = _check_size(channels, num_classes, image_size)
        if norm not in ("instance", "batch"):
            raise ConfigError(f"VGG11 norm must be 'instance' or 'batch', got {norm!r}")
        layers: list[nn.Module] = []
        c = channels
        for i, v in enumerate(VGG11_CFG):
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            assert isinstance(v, int)
            padding = 3 if i == 0 and _mnist_like(channels, image_size) else 1
            layers += [
                nn.Conv2d(c, v, kernel_size=3, padding=padding),
                _instance_norm(v) if norm == "instance" else nn.BatchNorm2d(v),
                nn.ReLU(),
            ]
            c = v
        self.features = nn.Sequential(*layers)
        n_features = _flat_dim(self.features, channels, image_size, "VGG11")
        self.classifier = nn.Linear(n_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 512·H/32·W/32)``."""
        return self.features(x).flatten(1)


class VGG11BN(VGG11):
    """VGG11 with ``BatchNorm2d``."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__(channels, num_classes, image_size, norm="batch")


# --------------------------------------------------------------------------------------------
# ResNet18


class _BasicBlock(nn.Module):
    """conv 3×3 (stride s) → norm → ReLU → conv 3×3 → norm, plus a (1×1 conv → norm) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()

        def make_norm(c: int) -> nn.Module:
            return _instance_norm(c) if norm == "instance" else nn.BatchNorm2d(c)

        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                make_norm(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(_Classifier):
    """ResNet18 (BasicBlock ×[2, 2, 2, 2], widths 64/128/256/512) with a 3×3 stride-1 stem.

    ``norm='instance'`` (default) = ``GroupNorm(C, C)``; ``norm='batch'`` = ``BatchNorm2d``
    (:class:`ResNet18BN`). Ends with global average pooling → 512 features → linear.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        norm: str = "instance",
    ) -> None:
        super().__init__()
        image_size = _check_size(channels, num_classes, image_size)
        if norm not in ("instance", "batch"):
            raise ConfigError(f"ResNet18 norm must be 'instance' or 'batch', got {norm!r}")
        self.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = _instance_norm(64) if norm == "instance" else nn.BatchNorm2d(64)
        in_planes = 64
        stages = []
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(
                nn.Sequential(
                    _BasicBlock(in_planes, planes, stride, norm),
                    _BasicBlock(planes, planes, 1, norm),
                )
            )
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Linear(512, num_classes)
        # three stride-2 convs: the last feature map is ceil(H/8) x ceil(W/8); a per-channel
        # GroupNorm over a 1x1 map normalises a single value, which PyTorch refuses.
        if norm == "instance" and all(math.ceil(s / 8) == 1 for s in image_size):
            raise ConfigError(
                f"ResNet18 cannot process {channels}x{image_size[0]}x{image_size[1]} images "
                f"(input too small: the last feature map is 1x1, where instance norm is undefined)"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 512)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class ResNet18BN(ResNet18):
    """ResNet18 with ``BatchNorm2d``."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__(channels, num_classes, image_size, norm="batch")


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
