"""Coreset baselines, evaluated by the same protocol as condensed sets.

- ``random``: ``ipc`` real images per class drawn uniformly without replacement (seeded).
- ``herding``: per class, greedily pick the images whose running feature mean stays closest to
  the class mean (Welling 2009), on the penultimate features of a ConvNet trained on real data.
- ``whole``: train on the whole training set (the upper bound; slow on a CPU).

Selected subsets are returned as :class:`~condense.artifacts.SyntheticSet` with ``method`` set
to the baseline's name, so they flow through the same evaluation and storage code.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from condense.artifacts import SyntheticSet
from condense.data import ImageDataset
from condense.errors import ConfigError
from condense.networks import build_network
from condense.runtime import derive_generator, resolve_device, seeded_global_rng
from condense.training import train_epoch

log = logging.getLogger("condense.baselines")

__all__ = ["random_subset", "herding_indices", "herding_subset", "whole_dataset", "subset_as_synthetic_set", "BASELINES"]

BASELINES: tuple[str, ...] = ("random", "herding", "whole")


def _check_ipc(dataset: ImageDataset, ipc: int) -> None:
    if ipc < 1:
        raise ConfigError(f"ipc must be a positive number of images per class, got {ipc}")
    counts = torch.bincount(dataset.train_labels, minlength=dataset.num_classes)
    if int(counts.min()) < ipc:
        raise ConfigError(f"ipc={ipc} exceeds the {int(counts.min())} training images of the smallest class")


def subset_as_synthetic_set(dataset: ImageDataset, indices: Tensor, method: str, ipc: int, seed: int) -> SyntheticSet:
    """Wrap chosen training indices (class-sorted) as a self-describing set."""
    images = dataset.normalise(dataset.train_images[indices])
    return SyntheticSet(
        images=images, labels=dataset.train_labels[indices].clone(), dataset=dataset.name,
        class_names=tuple(dataset.class_names), mean=tuple(dataset.mean), std=tuple(dataset.std),
        method=method, ipc=ipc, seed=seed, iteration=0, config={"baseline": method, "ipc": ipc, "seed": seed},
    )


def random_subset(dataset: ImageDataset, ipc: int, seed: int) -> SyntheticSet:
    """``ipc`` random real training images per class (the paper's "random" column)."""
    _check_ipc(dataset, ipc)
    generator = derive_generator(seed, "random-subset")
    chosen = []
    for c in range(dataset.num_classes):
        idx = torch.nonzero(dataset.train_labels == c).flatten()
        chosen.append(idx[torch.randperm(len(idx), generator=generator)[:ipc]])
    return subset_as_synthetic_set(dataset, torch.cat(chosen), "random", ipc, seed)


def herding_indices(features: Tensor, n: int) -> Tensor:
    """Greedy herding: indices of ``n`` rows of ``features`` (N, D) whose running mean tracks the mean.

    At step k, pick i = argmin_i ‖μ − (Σ_{j<k} f_j + f_i) / k‖ over unpicked i.
    """
    if n > len(features):
        raise ConfigError(f"cannot pick {n} of {len(features)} examples")
    features = features.double()
    mu = features.mean(dim=0)
    running = torch.zeros_like(mu)
    available = torch.ones(len(features), dtype=torch.bool)
    picked = []
    for k in range(1, n + 1):
        scores = ((mu - (running + features) / k) ** 2).sum(dim=1)
        scores[~available] = float("inf")
        i = int(scores.argmin())
        picked.append(i)
        available[i] = False
        running += features[i]
    return torch.tensor(picked, dtype=torch.long)


def herding_subset(
    dataset: ImageDataset,
    ipc: int,
    seed: int,
    *,
    network: str = "convnet",
    feature_epochs: int = 1,
    device: str | torch.device | None = None,
) -> SyntheticSet:
    """Herding on the penultimate features of ``network`` trained on the real training set.

    ``feature_epochs`` epochs of SGD (lr 0.01, momentum 0.9, batch 256) give the feature
    extractor; the authors trained to convergence, which a CPU cannot afford (1 epoch ≈ 2–3 min
    for the default ConvNet on Fashion-MNIST here).
    """
    _check_ipc(dataset, ipc)
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    generator = derive_generator(seed, "herding")
    images, labels = dataset.normalised_train()
    images, labels = images.to(device), labels.to(device)
    with seeded_global_rng(generator):
        net = build_network(network, dataset.channels, dataset.num_classes, dataset.image_size).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for epoch in range(feature_epochs):
        loss, acc = train_epoch(net, optimizer, images, labels, batch_size=256, generator=generator)
        log.info("herding feature network epoch %d: loss %.3f, train accuracy %.3f", epoch, loss, acc)
    net.eval()
    with torch.no_grad():
        features = torch.cat([net.embed(images[i : i + 1024]).cpu() for i in range(0, len(images), 1024)])
    chosen = []
    for c in range(dataset.num_classes):
        idx = torch.nonzero(labels.cpu() == c).flatten()
        chosen.append(idx[herding_indices(features[idx], ipc)])
    return subset_as_synthetic_set(dataset, torch.cat(chosen), "herding", ipc, seed)



def whole_dataset(dataset: ImageDataset, ipc: int = 0, seed: int = 0) -> SyntheticSet:
    """The whole training set (the upper bound; ``ipc`` is ignored). 300 epochs of it take days on a CPU:
    pass fewer epochs through the evaluation config there."""
    return subset_as_synthetic_set(dataset, torch.arange(len(dataset.train_labels)), "whole", 0, seed)
