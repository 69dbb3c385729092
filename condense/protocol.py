"""How one network is evaluated (PAPER.md §5): schedule, optimisers, augmentation, training, test.

This module is the one home of the evaluation protocol. One network::

    θ ← fresh network
    SGD(lr 0.01, momentum 0.9, weight decay 5e-4), batch 256
    for epoch in 0 … E:                       (E + 1 epochs)
        one shuffled epoch on the set, with augmentation (DSA non-Siamese / DC-style / none)
        if epoch == E // 2 + 1: lr ← lr · 0.1 (a new optimiser, as in the authors' code)
    accuracy on the full test set

E = 300 without augmentation and 1000 with DSA. :func:`train_and_test` trains one network this
way; :mod:`condense.ensemble` trains several networks of one architecture as one stacked model
with the same :func:`protocol_optimizers` and :func:`evaluation_augmentation`; and
:mod:`condense.evaluation` runs the protocol over an architecture pool. The training and test
passes are compiled per ``config.compile`` (:mod:`condense.compiled`); ``config.test_dtype``
can run the test pass in bf16.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from condense.augment import DSA, DCAugment
from condense.compiled import CompiledForward
from condense.config import EvaluationConfig
from condense.errors import ConfigError
from condense.hooks import Callback, notify
from condense.training import Augmentation, accuracy, train_epoch

log = logging.getLogger("condense.evaluation")

__all__ = ["learning_rates", "protocol_optimizers", "evaluation_augmentation", "dtype_of_test_pass", "TrainResult", "train_and_test"]


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


def dtype_of_test_pass(config: EvaluationConfig) -> torch.dtype:
    """The dtype of the test pass: fp32, or bf16 autocast when ``config.test_dtype == "bfloat16"``."""
    return torch.bfloat16 if config.test_dtype == "bfloat16" else torch.float32


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
    train_forward = CompiledForward(config.compile, kind="train")
    test_forward = CompiledForward(config.compile, kind="test")
    loss, train_acc = math.nan, math.nan
    for epoch, optimizer in protocol_optimizers(list(network.parameters()), config, config.resolved_epochs(augmentation)):
        loss, train_acc = train_epoch(network, optimizer, train_images, train_labels, batch_size=config.batch_size, generator=generator, augment=augment, forward=train_forward)
        if not math.isfinite(loss):
            log.warning("%s: training loss became %s at epoch %d; the network is scored as it is", tag, loss, epoch)
            break
        notify(callbacks, "on_training_epoch_end", tag=tag, epoch=epoch, network=network, train_loss=loss)
    test_acc = accuracy(network, test_images, test_labels, config.test_batch_size, forward=test_forward, dtype=dtype_of_test_pass(config))
    return TrainResult(test_accuracy=test_acc, train_loss=loss, train_accuracy=train_acc)
