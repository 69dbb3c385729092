"""What every network of :mod:`condense.networks` shares: argument checks, the authors' padding
rule for MNIST-sized inputs, their "instance norm", the flattened feature size, and the
:class:`Classifier` base (``forward(x) = classifier(embed(x))``).

``x: (N, C, H, W) float32, normalised`` -> ``embed(x): (N, D)`` -> logits ``(N, num_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn

from condense.errors import ConfigError

__all__ = ["check_size", "mnist_like", "instance_norm", "flat_dim", "Classifier"]


def check_size(channels: int, num_classes: int, image_size: tuple[int, int]) -> tuple[int, int]:
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


def mnist_like(channels: int, image_size: tuple[int, int]) -> bool:
    """True for 1-channel 28×28 inputs, which the authors pad up to 32×32 in the first conv."""
    return channels == 1 and tuple(image_size) == (28, 28)


def instance_norm(num_channels: int) -> nn.GroupNorm:
    """The authors' "instance norm": GroupNorm with one group per channel, affine."""
    return nn.GroupNorm(num_channels, num_channels, affine=True)


def instance_or_batch_norm(norm: str, num_channels: int, network: str = "") -> nn.Module:
    """``instance_norm(C)`` for ``norm='instance'``, ``BatchNorm2d(C)`` for ``norm='batch'`` (the
    VGG/ResNet variants); a :class:`ConfigError` naming ``network`` otherwise."""
    if norm == "instance":
        return instance_norm(num_channels)
    if norm == "batch":
        return nn.BatchNorm2d(num_channels)
    raise ConfigError(f"{network} norm must be 'instance' or 'batch', got {norm!r}")


def flat_dim(features: nn.Module, channels: int, image_size: tuple[int, int], name: str) -> int:
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


class Classifier(nn.Module):
    """Base: ``forward(x) = classifier(embed(x))``; subclasses define ``embed`` and ``classifier``."""

    classifier: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (N, C, H, W)`` -> logits ``(N, num_classes)``."""
        return self.classifier(self.embed(x))
