"""The evaluation protocol (PAPER.md §5): train fresh networks on a (synthetic) set, test on the real test set.

For each architecture in the pool and each of ``num_networks`` networks::

    θ ← fresh network (seeded from (seed, key, architecture, index))
    SGD(lr 0.01, momentum 0.9, weight decay 5e-4), batch 256
    for epoch in 0 … E:                       (E + 1 epochs)
        one shuffled epoch on the set, with augmentation (DSA non-Siamese / DC-style / none)
        if epoch == E // 2 + 1: lr ← lr · 0.1 (a new optimiser, as in the authors' code)
    accuracy on the full test set

E = 300 without augmentation and 1000 with DSA. Results are lists of accuracies per
architecture; report them as mean ± std.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from condense.artifacts import SyntheticSet
from condense.augment import DSA, DCAugment
from condense.config import EvaluationConfig
from condense.data import ImageDataset
from condense.ensemble import stack_size, train_and_test_stacked, use_stacking
from condense.errors import ConfigError
from condense.hooks import Callback, notify
from condense.networks import build_network
from condense.runtime import derive_generator, resolve_device, seeded_global_rng
from condense.training import Augmentation, accuracy, train_epoch

log = logging.getLogger("condense.evaluation")

__all__ = ["learning_rates", "protocol_optimizers", "TrainResult", "train_and_test", "evaluate_images", "evaluate_synthetic_set", "default_augmentation", "mean_std", "PooledAccuracies", "evaluation_augmentation"]


def _dsa_augmentation() -> Augmentation:
    dsa = DSA()
    return lambda x, g: dsa(x, g, siamese=False)


def _dc_augmentation() -> Augmentation:
    return DCAugment()


_AUGMENTATIONS: dict[str, Callable[[], Augmentation | None]] = {
    "none": lambda: None,
    "dsa": _dsa_augmentation,
    "dc": _dc_augmentation,
}


def evaluation_augmentation(name: str) -> Augmentation | None:
    """The training-time augmentation of the protocol: ``none``, ``dsa`` (non-Siamese) or ``dc``."""
    if name not in _AUGMENTATIONS:
        raise ConfigError(f"unknown evaluation augmentation {name!r}; choose one of {', '.join(_AUGMENTATIONS)}")
    return _AUGMENTATIONS[name]()


def learning_rates(epochs: int, lr: float) -> list[float]:
    """The learning rate of each of the ``epochs + 1`` epochs: ``lr`` up to epoch E//2 + 1, then lr/10.

    As in the authors' code, the decay happens after epoch ``E // 2 + 1`` has been trained.
    """
    decay_after = epochs // 2 + 1
    return [lr if epoch <= decay_after else lr * 0.1 for epoch in range(epochs + 1)]


def protocol_optimizers(parameters: Sequence[Tensor], config: EvaluationConfig, epochs: int) -> Iterator[tuple[int, torch.optim.Optimizer]]:
    """Each of the ``epochs + 1`` epochs with the SGD optimiser to train it with (over ``parameters``).

    The optimiser is rebuilt, momentum included, when the learning rate drops, as the authors do.
    """
    schedule = learning_rates(epochs, config.lr)
    optimizer: torch.optim.Optimizer | None = None
    for epoch, lr in enumerate(schedule):
        if optimizer is None or lr != schedule[epoch - 1]:
            optimizer = torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
        yield epoch, optimizer


@dataclass(frozen=True)
class TrainResult:
    test_accuracy: float
    train_loss: float
    train_accuracy: float


def train_and_test(
    network: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    config: EvaluationConfig,
    *,
    augmentation: str,
    generator: torch.Generator,
    callbacks: Sequence[Callback] = (),
    tag: str = "",
) -> TrainResult:
    """Train ``network`` by the protocol and return its test accuracy. Tensors on one device.

    Args:
        train_images: (N, C, H, W) float32, normalised; train_labels: (N,) int64.
        test_images, test_labels: the real test set, likewise.
    """
    augment = evaluation_augmentation(augmentation)
    loss, train_acc = math.nan, math.nan
    for epoch, optimizer in protocol_optimizers(list(network.parameters()), config, config.resolved_epochs(augmentation)):
        loss, train_acc = train_epoch(network, optimizer, train_images, train_labels, batch_size=config.batch_size, generator=generator, augment=augment)
        if not math.isfinite(loss):
            log.warning("%s: training loss became %s at epoch %d; the network is scored as it is", tag, loss, epoch)
            break
        notify(callbacks, "on_training_epoch_end", tag=tag, epoch=epoch, network=network, train_loss=loss)
    test_acc = accuracy(network, test_images, test_labels, config.test_batch_size)
    return TrainResult(test_accuracy=test_acc, train_loss=loss, train_accuracy=train_acc)


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
