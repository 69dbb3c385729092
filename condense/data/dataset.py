"""The in-memory dataset every loader returns: uint8 images, int64 labels, and how to normalise them.

Images are stored once as ``uint8`` (the on-disk value) and normalised on demand with the
dataset's per-channel mean/std, given in ``[0, 1]`` pixel units::

    ds = load_dataset("fashion-mnist")
    x, y = ds.normalised_train()          # x: (60000, 1, 28, 28) float32, y: (60000,) int64
    ds.denormalise(x[:16])                # back to [0, 1] for plotting

Shapes: ``train_images: (N, C, H, W) uint8``, ``train_labels: (N,) int64`` in ``0..num_classes-1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from condense.errors import CorruptDatasetError


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image classification dataset with a fixed train/test split.

    Attributes:
        name: registry name, e.g. ``"cifar10"``.
        train_images: ``(N, C, H, W) uint8``.
        train_labels: ``(N,) int64`` in ``0..num_classes-1``.
        test_images: ``(M, C, H, W) uint8``.
        test_labels: ``(M,) int64``.
        class_names: one name per label, in label order.
        mean, std: per-channel statistics in ``[0, 1]`` pixel units used by :meth:`normalise`.
        note: caveats about this dataset (e.g. ``"not the official split"``); empty if none.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    note: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images: torch.Tensor = getattr(self, f"{split}_images")
            labels: torch.Tensor = getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise CorruptDatasetError(
                    f"{self.name}: {split} images must be (N, C, H, W) uint8, "
                    f"got {tuple(images.shape)} {images.dtype}")
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise CorruptDatasetError(
                    f"{self.name}: {split} labels must be ({images.shape[0]},) int64, "
                    f"got {tuple(labels.shape)} {labels.dtype}")
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(self.class_names)):
                raise CorruptDatasetError(
                    f"{self.name}: {split} labels outside 0..{len(self.class_names) - 1}")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise CorruptDatasetError(
                f"{self.name}: train images {tuple(self.train_images.shape[1:])} and test images "
                f"{tuple(self.test_images.shape[1:])} differ in shape")
        channels = self.train_images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise CorruptDatasetError(
                f"{self.name}: mean/std need {channels} channel(s), got {len(self.mean)}/{len(self.std)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=like.device).view(1, -1, 1, 1)
        return mean, std

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W) uint8 -> (N, C, H, W) float32``, ``(x / 255 - mean) / std``."""
        if images_uint8.dtype != torch.uint8:
            raise TypeError(f"normalise expects uint8 images, got {images_uint8.dtype}")
        mean, std = self._stats(images_uint8)
        return (images_uint8.to(torch.float32) / 255.0 - mean) / std

    def denormalise(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised ``(N, C, H, W)`` float -> ``[0, 1]`` float32, clamped (for plotting)."""
        mean, std = self._stats(images)
        return (images.to(torch.float32) * std + mean).clamp(0.0, 1.0)

    def normalised_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (N, C, H, W) float32 normalised, labels (N,) int64)``."""
        return self.normalise(self.train_images), self.train_labels

    def normalised_test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (M, C, H, W) float32 normalised, labels (M,) int64)``."""
        return self.normalise(self.test_images), self.test_labels

    def __repr__(self) -> str:
        return (f"ImageDataset(name={self.name!r}, train={tuple(self.train_images.shape)}, "
                f"test={tuple(self.test_images.shape)}, classes={self.num_classes}"
                + (f", note={self.note!r}" if self.note else "") + ")")


def stratified_split(labels: torch.Tensor, test_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices ``0..N-1`` into ``(train, test)``, each class in proportion to its size.

    The per-class test counts are ``test_size * n_c / N`` rounded by largest remainder (so they
    sum to exactly ``test_size``); which images go to test is drawn from a ``torch.Generator``
    seeded with ``seed``. Both index tensors are sorted.
    """
    labels = labels.to(torch.int64)
    if not 0 < test_size < labels.numel():
        raise ValueError(f"test_size must be in 1..{labels.numel() - 1}, got {test_size}")
    counts = torch.bincount(labels).to(torch.float64)
    exact = counts * test_size / labels.numel()
    quota = exact.floor().to(torch.int64)
    shortfall = test_size - int(quota.sum())
    order = torch.argsort(exact - quota, descending=True, stable=True)
    quota[order[:shortfall]] += 1
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for cls in range(counts.numel()):
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=generator)]
        test.append(members[: quota[cls]])
        train.append(members[quota[cls]:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``(N, C, H, W) uint8`` images in ``[0, 1]`` units (float64 sums)."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start:start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        squares += (block * block).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0.0).sqrt()
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
