"""ConvNet, the DC/DSA/DCC default network, and the choices its ablations vary (width, depth,
norm, activation, pooling; see the ``convnet-*`` rows of :func:`condense.networks.build_network`).

``x: (N, C, H, W) float32, normalised`` -> logits ``(N, num_classes)``; ``embed(x)`` gives the
``(N, width·H_d·W_d)`` flattened features of the last block.
"""

from __future__ import annotations

import torch
from torch import nn

from condense.errors import ConfigError
from condense.networks.common import Classifier, check_size, instance_norm, mnist_like
from condense.networks.thin_conv import MAX_THIN_CHANNELS, ThinConv2d

__all__ = ["ConvNet", "ACTIVATIONS", "NORMS", "POOLINGS"]

ACTIVATIONS = ("relu", "sigmoid", "leakyrelu")
NORMS = ("instance", "batch", "layer", "group", "none")
POOLINGS = ("avg", "max", "none")


class ConvNet(Classifier):
    """The DC/DSA/DCC default network: ``depth`` blocks, then a linear classifier.

    Block: conv 3×3 (``width`` channels, padding 1) → norm → activation → pool 2×2 (stride 2).
    For 1-channel 28×28 inputs the first conv has padding 3 (28 → 32), as in the authors' code.
    On one-channel inputs the first conv is a :class:`~condense.networks.thin_conv.ThinConv2d`
    (an ``nn.Conv2d`` that compiled CPU graphs run as im2col + 1×1 convolution; same function).

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
        image_size = check_size(channels, num_classes, image_size)
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
            padding = 3 if d == 0 and mnist_like(channels, image_size) else 1
            conv = ThinConv2d if c <= MAX_THIN_CHANNELS else nn.Conv2d
            layers.append(conv(c, width, kernel_size=3, padding=padding))
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
            return instance_norm(c)
        if name == "batch":
            return nn.BatchNorm2d(c, affine=True)
        if name == "layer":
            return nn.LayerNorm(list(shape), elementwise_affine=True)
        return nn.GroupNorm(4, c, affine=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> ``(N, width·H_d·W_d)`` flattened conv features."""
        return self.features(x).flatten(1)
