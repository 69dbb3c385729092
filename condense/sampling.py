"""Real images by class, and the synthetic set's starting point.

:class:`ClassSampler` draws a class's real batch ``B_c`` without replacement (PAPER.md §1: 256
images per class per matching step); :func:`initial_synthetic_images` gives S at iteration 0 —
``ipc`` random real images per class (the paper's "real" initialisation) or standard normal noise.
Both draw from explicit generators, so a run (and :mod:`condense.image_motion`, which rebuilds
the start from a stored config) gets the same images every time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from condense.config import CondenseConfig
from condense.errors import ConfigError
from condense.runtime import derive_generator

__all__ = ["ClassSampler", "initial_synthetic_images"]


class ClassSampler:
    """Real images grouped by class, on the compute device.

    Args:
        images: (N, C, H, W) float32, normalised.
        labels: (N,) int64 in 0..num_classes−1.
    """

    def __init__(self, images: Tensor, labels: Tensor, num_classes: int):
        self.images = images
        self.indices = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
        empty = [c for c, idx in enumerate(self.indices) if len(idx) == 0]
        if empty:
            raise ConfigError(f"classes {empty} have no training images")

    def draw(self, c: int, n: int, generator: torch.Generator) -> Tensor:
        """Indices of up to ``n`` images of class ``c`` drawn without replacement: (min(n, N_c),) int64.

        Cheap (a permutation of indices): ranks that do not own class ``c`` draw it too, to keep
        the generator's sequence the same as in one process (:mod:`condense.class_parallel`).
        """
        idx = self.indices[c]
        return idx[torch.randperm(len(idx), generator=generator)[:n].to(idx.device)]

    def sample(self, c: int, n: int, generator: torch.Generator) -> Tensor:
        """Up to ``n`` images of class ``c`` drawn without replacement: (min(n, N_c), C, H, W)."""
        return self.images[self.draw(c, n, generator)]

    def count(self, c: int) -> int:
        return len(self.indices[c])


def initial_synthetic_images(config: CondenseConfig, sampler: ClassSampler, shape: tuple[int, ...], num_classes: int) -> Tensor:
    """S at iteration 0: ``ipc`` random real images per class, or standard normal noise.

    With real initialisation, S at iteration 0 is exactly a random real subset.
    """
    generator = derive_generator(config.seed, "init")
    if config.init == "noise":
        noise = torch.randn((num_classes * config.ipc, *shape), generator=generator)
        return noise.to(sampler.images.device)
    too_small = [c for c in range(num_classes) if sampler.count(c) < config.ipc]
    if too_small:
        raise ConfigError(f"ipc={config.ipc} exceeds the number of training images of classes {too_small}")
    return torch.cat([sampler.sample(c, config.ipc, generator) for c in range(num_classes)]).clone()
