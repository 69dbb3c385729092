"""How far condensation moved a synthetic set from the images it started from.

A run with real initialisation starts from ``ipc`` random real images per class
(:func:`condense.sampling.initial_synthetic_images`, drawn from the run's seed), so the start can
be rebuilt exactly from the stored config. Two numbers per set, in normalised pixel units:

- relative displacement: mean over images of ``‖S_i − S⁰_i‖₂ / ‖S⁰_i‖₂``;
- total variation: mean absolute difference of vertically and of horizontally adjacent pixels,
  summed, ``mean|x[h+1, w] − x[h, w]| + mean|x[h, w+1] − x[h, w]|`` (high-frequency content),
  at the start and at the end.

Example::

    from condense.data import load_dataset
    from condense.image_motion import image_motion
    print(image_motion("results/study-fashion-mnist-upper-paper-loops/dcc-ipc10-seed0", load_dataset("fashion-mnist-upper")))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from condense.artifacts import SyntheticSet, find_synthetic_file
from condense.config import CondenseConfig
from condense.data import ImageDataset
from condense.errors import ConfigError
from condense.sampling import ClassSampler, initial_synthetic_images

__all__ = ["ImageMotion", "total_variation", "relative_displacement", "image_motion"]


def total_variation(images: Tensor) -> float:
    """``mean|Δ_h x| + mean|Δ_w x|`` over a batch ``(N, C, H, W)``."""
    return float((images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., :, 1:] - images[..., :, :-1]).abs().mean())


def relative_displacement(images: Tensor, start: Tensor) -> float:
    """Mean over images of ``‖S_i − S⁰_i‖₂ / ‖S⁰_i‖₂`` for two ``(N, C, H, W)`` batches."""
    if images.shape != start.shape:
        raise ValueError(f"shapes differ: {tuple(images.shape)} and {tuple(start.shape)}")
    return float(((images - start).flatten(1).norm(dim=1) / start.flatten(1).norm(dim=1)).mean())


@dataclass(frozen=True)
class ImageMotion:
    method: str
    seed: int
    iteration: int
    displacement: float
    total_variation_start: float
    total_variation_end: float


def image_motion(run_dir: str | Path, dataset: ImageDataset) -> ImageMotion:
    """The motion of the set in ``run_dir`` (a ``condense run`` / study cell with real initialisation)
    from its start, rebuilt from the run's config and ``dataset``."""
    run_dir = Path(run_dir)
    path = find_synthetic_file(run_dir)
    if path is None or not (run_dir / "config.json").exists():
        raise ConfigError(f"{run_dir} holds no synthetic set with its config.json")
    config = CondenseConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    if config.init != "real":
        raise ConfigError(f"{run_dir}: init={config.init!r}; the start can only be rebuilt for real initialisation")
    synthetic = SyntheticSet.load(path)
    images, labels = dataset.normalised_train()
    start = initial_synthetic_images(config, ClassSampler(images, labels, dataset.num_classes), tuple(images.shape[1:]), dataset.num_classes)
    return ImageMotion(config.method, config.seed, synthetic.iteration, relative_displacement(synthetic.images, start),
                       total_variation(start), total_variation(synthetic.images))
