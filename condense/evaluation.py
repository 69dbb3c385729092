"""Evaluate a (synthetic) set: the protocol of PAPER.md §5 over an architecture pool.

For each architecture in the pool, ``num_networks`` fresh networks (network i seeded from
``(seed, key, architecture, i)``) are trained on the set and tested on the real test set, by the
protocol of :mod:`condense.protocol` — one by one (:func:`~condense.protocol.train_and_test`) or,
on CUDA, as stacks (:mod:`condense.ensemble`). Results are lists of accuracies per architecture;
report them as mean ± std (:func:`mean_std`, population std as the authors).

The protocol's pieces are re-exported here for convenience.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from condense.artifacts import SyntheticSet
from condense.config import EvaluationConfig
from condense.data import ImageDataset
from condense.ensemble import stack_size, train_and_test_stacked, use_stacking
from condense.errors import ConfigError
from condense.hooks import Callback
from condense.networks import build_network
from condense.protocol import TrainResult, evaluation_augmentation, learning_rates, protocol_optimizers, train_and_test
from condense.runtime import derive_generator, resolve_device, seeded_global_rng

log = logging.getLogger("condense.evaluation")

__all__ = ["learning_rates", "protocol_optimizers", "TrainResult", "train_and_test", "evaluation_augmentation", "evaluate_images", "evaluate_synthetic_set", "default_augmentation", "mean_std", "PooledAccuracies"]


def evaluate_images(
    train_images: Tensor,
    train_labels: Tensor,
    dataset: ImageDataset,
    config: EvaluationConfig,
    *,
    augmentation: str,
    seed: int,
    key: str,
    device: str | torch.device | None = None,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict[str, list[float]]:
    """Evaluate normalised training images on every architecture of ``config.networks``.

    Returns ``{architecture: [test accuracy of each network]}``.
    """
    from tqdm.auto import tqdm

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    test_images, test_labels = dataset.normalised_test()
    test_images, test_labels = test_images.to(device), test_labels.to(device)
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    channels, size = train_images.shape[1], tuple(train_images.shape[2:])
    results: dict[str, list[float]] = {}
    total = len(config.networks) * config.num_networks
    with tqdm(total=total, desc=f"evaluate {key}", disable=not progress, unit="net", leave=False) as bar:
        for arch in config.networks:
            generators = [derive_generator(seed, "evaluation", key, arch, index) for index in range(config.num_networks)]

            def fresh_network(index: int) -> nn.Module:
                with seeded_global_rng(generators[index]):
                    return build_network(arch, channels, dataset.num_classes, size).to(device)

            results[arch] = []
            first = fresh_network(0)
            if use_stacking(config, device, first, config.num_networks, has_callbacks=bool(callbacks)):
                step = stack_size(config.batch_size, len(train_images))
                for start in range(0, config.num_networks, step):
                    indices = range(start, min(start + step, config.num_networks))
                    networks = [first if i == 0 else fresh_network(i) for i in indices]
                    trained = train_and_test_stacked(
                        networks, train_images, train_labels, test_images, test_labels, config,
                        augmentation=augmentation, generators=[generators[i] for i in indices], tag=f"{key}/{arch}",
                    )
                    results[arch].extend(r.test_accuracy for r in trained)
                    bar.update(len(trained))
                    bar.set_postfix(acc=f"{100 * sum(results[arch]) / len(results[arch]):.1f}")
                continue
            for index in range(config.num_networks):
                network = first if index == 0 else fresh_network(index)
                result = train_and_test(
                    network, train_images, train_labels, test_images, test_labels, config,
                    augmentation=augmentation, generator=generators[index], callbacks=callbacks, tag=f"{key}/{arch}/{index}",
                )
                results[arch].append(result.test_accuracy)
                bar.update(1)
                bar.set_postfix(acc=f"{100 * result.test_accuracy:.1f}")
    return results


def evaluate_synthetic_set(
    synthetic: SyntheticSet,
    dataset: ImageDataset,
    config: EvaluationConfig,
    *,
    augmentation: str,
    seed: int,
    key: str,
    device: str | torch.device | None = None,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict[str, list[float]]:
    """Evaluate a :class:`SyntheticSet` (checks it belongs to ``dataset``)."""
    if synthetic.num_classes != dataset.num_classes or tuple(synthetic.mean) != tuple(dataset.mean):
        raise ConfigError(f"synthetic set of {synthetic.dataset!r} does not match dataset {dataset.name!r} (classes or normalisation differ)")
    return evaluate_images(synthetic.images, synthetic.labels, dataset, config, augmentation=augmentation, seed=seed, key=key, device=device, progress=progress, callbacks=callbacks)


def default_augmentation(synthetic: SyntheticSet, evaluation: EvaluationConfig) -> str:
    """The protocol's training augmentation for a saved set: its condensation config's choice
    (DSA for DSA/DSAC sets; DC-style for MNIST DC/DCC; else none), ``evaluation.augmentation``
    if that is not ``auto``, and ``none`` for a set without a condensation config (a baseline)."""
    if evaluation.augmentation != "auto":
        return evaluation.augmentation
    if "evaluation_augmentation" in synthetic.config:  # sets converted from other code say what their authors used
        return str(synthetic.config["evaluation_augmentation"])
    if "method" not in synthetic.config:
        return "none"
    from condense.config import CondenseConfig

    return CondenseConfig.from_dict(synthetic.config).replace(evaluation=evaluation).evaluation_augmentation


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (as numpy's default, used by the authors)."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


class PooledAccuracies:
    """Mixin for a result record with ``accuracies`` (every network of every seed, in [0, 1]):
    their mean and population std, as the authors report them."""

    accuracies: tuple[float, ...]

    @property
    def mean(self) -> float:
        return mean_std(self.accuracies)[0]

    @property
    def std(self) -> float:
        return mean_std(self.accuracies)[1]
