"""Continual-learning configuration and presets, as one table of data.

Presets (``python -m condense continual --list``):

- ``smoke``: sklearn-digits, 2 steps of 5 classes, 2 images per class, random + DC memories,
  2 orders, ConvNet-w32, 2 condensation iterations, 50 epochs: the tests' end-to-end run (seconds).
- ``fashion-mnist``: 5 steps of 2 classes, 10 images per class, random / herding / DC / DCC,
  3 orders; ConvNet width 32 everywhere (paper 128), the quick ipc-10 condensation with 10
  iterations (paper 1000), 300 epochs with DSA (paper 1000). Offline, for 2 CPU cores in < 20 min
  (two processes, ``--shard 0/2`` and ``--shard 1/2`` with ``--threads 1``).
- ``cifar100-5steps`` / ``cifar100-10steps``: the paper's protocol (below), 5 or 10 steps.

The CIFAR-100 presets follow the DM authors' continual code (PAPER.md §9): 5 class orders,
20 images per class, a fresh ConvNet per step trained with DSA augmentation for 1000 epochs (for
every memory, not only the DSA ones), 3 networks per step, mean ± std over orders × networks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from condense.config import METHODS, CondenseConfig, EvaluationConfig
from condense.continual.classes import step_sizes
from condense.continual.learners import LEARNERS
from condense.errors import ConfigError
from condense.networks import list_networks
from condense.presets import get_preset

__all__ = ["ContinualConfig", "ContinualPreset", "CONTINUAL_PRESETS", "get_continual_preset", "MEMORY_NAMES", "CONDENSATION_MEMORIES"]

#: the memories a config may name: two selections of real images and the condensation methods
#: (each built by :data:`condense.continual.memory.MEMORY_BUILDERS`)
CONDENSATION_MEMORIES: tuple[str, ...] = METHODS
MEMORY_NAMES: tuple[str, ...] = ("random", "herding", *CONDENSATION_MEMORIES)

AUGMENTATIONS = ("none", "dsa", "dc")


@dataclass(frozen=True)
class ContinualConfig:
    """One class-incremental experiment.

    Attributes:
        dataset: registry name.
        steps: number of equal steps (must divide the classes) or explicit classes per step.
        memory_per_class: images kept per seen class (the paper: 20).
        memories: memory names (:data:`MEMORY_NAMES`, built by :data:`~condense.continual.memory.MEMORY_BUILDERS`).
        orders: class-order seeds; one class order per seed.
        training: ``gdumb`` (fresh network per step) or ``incremental`` (one network kept).
        network: the architecture that learns from the memory (and herding's feature network).
        epochs: E of the evaluation protocol (E+1 epochs, lr × 0.1 after E//2+1).
        augmentation: training augmentation: ``dsa`` (non-Siamese), ``dc`` or ``none``.
        networks_per_step: networks trained per (order, step); accuracies are pooled over
            orders × networks.
        mask_training: mask unseen classes in the training loss too (test always masks).
        condense_preset: condensation preset name with ``{method}``; its ipc is replaced by
            ``memory_per_class`` (so an ipc in ``LOOP_SIZES`` takes that row's K and T).
        condense_overrides: further ``CondenseConfig`` changes (e.g. a smaller budget).
        herding_epochs: epochs of training herding's feature network on the step's real data.
        train_per_class, test_per_class: keep only the first n real images per class (CPU
            budgets); ``None`` keeps all.
    """

    dataset: str
    steps: int | tuple[int, ...] = 5
    memory_per_class: int = 20
    memories: tuple[str, ...] = ("random", "herding", "dsa", "dsac")
    orders: tuple[int, ...] = (0, 1, 2, 3, 4)
    training: str = "gdumb"
    network: str = "convnet"
    epochs: int = 1000
    augmentation: str = "dsa"
    networks_per_step: int = 1
    mask_training: bool = False
    condense_preset: str = "cifar100-ipc10-{method}"
    condense_overrides: dict[str, Any] = field(default_factory=dict)
    herding_epochs: int = 1
    train_per_class: int | None = None
    test_per_class: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "memories", "orders"):  # lists from JSON or the CLI
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.steps, int):
            if self.steps < 1:
                raise ConfigError(f"steps must be >= 1, got {self.steps}")
        elif not self.steps or min(self.steps) < 1:
            raise ConfigError(f"explicit step sizes must be positive, got {list(self.steps)}")
        if self.memory_per_class < 1:
            raise ConfigError(f"memory_per_class must be >= 1, got {self.memory_per_class}")
        unknown = [m for m in self.memories if m not in MEMORY_NAMES]
        if unknown or not self.memories:
            raise ConfigError(f"unknown memory {', '.join(unknown) or '(none given)'}; choose from {', '.join(MEMORY_NAMES)}")
        if len(set(self.memories)) != len(self.memories) or len(set(self.orders)) != len(self.orders) or not self.orders:
            raise ConfigError("memories and orders must be non-empty lists without repeats")
        if self.training not in LEARNERS:
            raise ConfigError(f"unknown training {self.training!r}; choose from {', '.join(LEARNERS)}")
        if self.network.lower() not in list_networks():
            raise ConfigError(f"unknown network {self.network!r}")
        if self.epochs < 1 or self.networks_per_step < 1 or self.herding_epochs < 0:
            raise ConfigError("epochs and networks_per_step must be >= 1, herding_epochs >= 0")
        if self.augmentation not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {self.augmentation!r}; choose from {', '.join(AUGMENTATIONS)}")
        for name in ("train_per_class", "test_per_class"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {value}")
        if self.train_per_class is not None and self.train_per_class < self.memory_per_class:
            raise ConfigError(f"train_per_class={self.train_per_class} is below memory_per_class={self.memory_per_class}")
        for method in self.memories:
            if method in CONDENSATION_MEMORIES:
                self.condense_config(method, seed=0)  # unknown preset or bad overrides fail here

    def step_sizes(self, num_classes: int) -> tuple[int, ...]:
        """Classes per step for a dataset of ``num_classes`` classes (ConfigError if impossible)."""
        return step_sizes(num_classes, self.steps)

    def condense_config(self, method: str, seed: int) -> CondenseConfig:
        """The condensation config of a step's memory (before the step's classes are known)."""
        preset = get_preset(self.condense_preset.format(method=method))
        try:
            return preset.config.replace(dataset=self.dataset, ipc=self.memory_per_class, seed=seed, **self.condense_overrides)
        except TypeError as exc:  # an unknown field in condense_overrides
            raise ConfigError(f"bad condense_overrides {self.condense_overrides}: {exc}") from None

    @property
    def evaluation(self) -> EvaluationConfig:
        """The protocol that trains a network on the memory (lr, momentum, batch from PAPER.md §5)."""
        return EvaluationConfig(networks=(self.network,), num_networks=self.networks_per_step, epochs=self.epochs, augmentation=self.augmentation)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ContinualConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ContinualPreset:
    name: str
    config: ContinualConfig
    description: str


_TINY_CONDENSATION = dict(iterations=2, matching_steps=2, network_epochs=1, real_batch=8, outer_warmup=1, inner_warmup=1,
                          checkpoint_every=1, eval_at=(2,), network="convnet-w32")

_PRESETS = (
    ContinualPreset("smoke", ContinualConfig(
        dataset="sklearn-digits", steps=2, memory_per_class=2, memories=("random", "dc"), orders=(0, 1), network="convnet-w32",
        epochs=50, augmentation="none", condense_preset="quick-fashion-mnist-ipc1-{method}", condense_overrides=_TINY_CONDENSATION,
        herding_epochs=1, train_per_class=40, test_per_class=10),
        "sklearn 8x8 digits, 2 steps of 5 classes, 2 images per class, tiny budgets: for tests (seconds)"),
    ContinualPreset("fashion-mnist", ContinualConfig(
        dataset="fashion-mnist", steps=5, memory_per_class=10, memories=("random", "herding", "dc", "dcc"), orders=(0, 1, 2),
        network="convnet-w32", epochs=300, augmentation="dsa", condense_preset="quick-fashion-mnist-ipc10-{method}",
        condense_overrides=dict(network="convnet-w32", iterations=10, outer_warmup=2, eval_at=(10,)), herding_epochs=1),
        "5 steps of 2 classes, 10 images per class, 3 orders, ConvNet width 32 (paper 128) for condensation, herding and "
        "training; quick ipc-10 condensation with 10 iterations (paper 1000); 300 epochs DSA (paper 1000). "
        "~13 min with --shard 0/2 and 1/2 on 2 idle CPU cores"),
    ContinualPreset("cifar100-5steps", ContinualConfig(dataset="cifar100", steps=5, networks_per_step=3),
                    "the paper's protocol (PAPER.md §9): 5 steps of 20 classes, 20 images per class, 5 orders, "
                    "condensation at ipc 20 (K=20, T=25), 3 ConvNets per step, 1000 epochs DSA"),
    ContinualPreset("cifar100-10steps", ContinualConfig(dataset="cifar100", steps=10, networks_per_step=3),
                    "the paper's protocol (PAPER.md §9): 10 steps of 10 classes, otherwise as cifar100-5steps"),
)
CONTINUAL_PRESETS: dict[str, ContinualPreset] = {p.name: p for p in _PRESETS}


def get_continual_preset(name: str) -> ContinualPreset:
    if name in CONTINUAL_PRESETS:
        return CONTINUAL_PRESETS[name]
    raise ConfigError(f"unknown continual preset {name!r}; choose from {', '.join(CONTINUAL_PRESETS)}")
