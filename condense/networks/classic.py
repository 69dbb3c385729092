"""The other architectures of the DC/DSA cross-architecture evaluation: MLP, LeNet, AlexNet,
VGG11 (instance or batch norm) and ResNet18 (instance or batch norm), as in the authors' code.

Each maps ``x: (N, C, H, W) float32, normalised`` to logits ``(N, num_classes)`` and exposes
``embed(x) -> (N, D)``; flattened sizes are computed for the actual input size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from condense.errors import ConfigError
from condense.networks.common import Classifier, check_size, flat_dim, instance_or_batch_norm, mnist_like

__all__ = ["MLP", "LeNet", "AlexNet", "VGG11", "VGG11BN", "ResNet18", "ResNet18BN"]

VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


# --------------------------------------------------------------------------------------------
# MLP, LeNet, AlexNet


class MLP(Classifier):
    """flatten → Linear(C·H·W, 128) → ReLU → Linear(128, 128) → ReLU → Linear(128, classes)."""

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        image_size = check_size(channels, num_classes, image_size)
        self.fc_1 = nn.Linear(channels * image_size[0] * image_size[1], 128)
        self.fc_2 = nn.Linear(128, 128)
        self.classifier = nn.Linear(128, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 128)``."""
        out = F.relu(self.fc_1(x.flatten(1)))
        return F.relu(self.fc_2(out))


class LeNet(Classifier):
    """conv 6@5×5 → ReLU → maxpool 2 → conv 16@5×5 → ReLU → maxpool 2 → fc 120 → fc 84 → classes.

    First conv padding 2 for 1-channel 28×28 inputs (28 → 28 → 14 → 10 → 5), else 0
    (32 → 28 → 14 → 10 → 5); the flattened size (16·5·5 = 400 on both) is computed for any input.
    """

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        image_size = check_size(channels, num_classes, image_size)
        padding = 2 if mnist_like(channels, image_size) else 0
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc_1 = nn.Linear(flat_dim(self.features, channels, image_size, "LeNet"), 120)
        self.fc_2 = nn.Linear(120, 84)
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 84)``."""
        out = self.features(x).flatten(1)
        out = F.relu(self.fc_1(out))
        return F.relu(self.fc_2(out))


class AlexNet(Classifier):
    """DC's small AlexNet: five convs (128@5, 192@5, 256@3, 192@3, 192@3), three max-pools, one fc.

    First conv padding 4 for 1-channel 28×28 inputs (28 → 32), else 2; 192·4·4 = 3072 features on
    32×32 / MNIST inputs, computed for any input.
    """

    def __init__(self, channels: int, num_classes: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        image_size = check_size(channels, num_classes, image_size)
        padding = 4 if mnist_like(channels, image_size) else 2
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
        n_features = flat_dim(self.features, channels, image_size, "AlexNet")
        self.classifier = nn.Linear(n_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, 192·H/8·W/8)``."""
        return self.features(x).flatten(1)


# --------------------------------------------------------------------------------------------
# VGG11


class VGG11(Classifier):
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
        image_size = check_size(channels, num_classes, image_size)
        instance_or_batch_norm(norm, 1, "VGG11")  # check the choice before building anything
        layers: list[nn.Module] = []
        c = channels
        for i, v in enumerate(VGG11_CFG):
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            assert isinstance(v, int)
            padding = 3 if i == 0 and mnist_like(channels, image_size) else 1
            layers += [
                nn.Conv2d(c, v, kernel_size=3, padding=padding),
                instance_or_batch_norm(norm, v),
                nn.ReLU(),
            ]
            c = v
        self.features = nn.Sequential(*layers)
        n_features = flat_dim(self.features, channels, image_size, "VGG11")
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
            return instance_or_batch_norm(norm, c, "ResNet18")

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


class ResNet18(Classifier):
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
        image_size = check_size(channels, num_classes, image_size)
        instance_or_batch_norm(norm, 1, "ResNet18")  # check the choice before building anything
        self.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = instance_or_batch_norm(norm, 64)
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
