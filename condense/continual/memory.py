"""The replay memory (a storage policy) and the builders that fill it, one per memory name.

:class:`Memory` follows Avalanche's storage policies: two verbs, ``update`` (add the memory of a
new step's classes) and ``resize`` (shrink every class to its first n images). Its invariant:
exactly ``per_class`` images for every class seen so far.

A builder turns one step's class subset into ``per_class`` images per class (a
:class:`~condense.artifacts.SyntheticSet` with the subset's local labels)::

    random     per_class random real images            (condense.baselines.random_subset)
    herding    herding on ConvNet features              (condense.baselines.herding_subset)
    dc dcc dsa dsac
               condense_dataset on the step's classes   (condense.synthesis, evaluate=False)

:func:`step_memory` caches each step's set in ``<run_dir>/synthetic.safetensors`` + ``DONE``; an unfinished
condensation resumes from its checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from condense.artifacts import SYNTHETIC_FILE, SyntheticSet, find_synthetic_file
from condense.baselines import herding_subset, random_subset
from condense.continual.classes import ClassSubset
from condense.continual.config import CONDENSATION_MEMORIES, MEMORY_NAMES, ContinualConfig
from condense.runtime import derive_seed
from condense.synthesis import condense_dataset

log = logging.getLogger("condense.continual")

__all__ = ["Memory", "MemoryRequest", "MEMORY_BUILDERS", "CONDENSATION_MEMORIES", "step_memory"]


class Memory:
    """A class-balanced memory: ``per_class`` images for each class seen so far.

    Classes keep their order of arrival; within a class, images keep the order they came in.

        >>> memory = Memory(per_class=2)
        >>> memory.update(torch.zeros(4, 1, 8, 8), torch.tensor([7, 7, 3, 3]))
        >>> memory.classes, memory.size
        ((7, 3), 4)
    """

    def __init__(self, per_class: int):
        if per_class < 1:
            raise ValueError(f"a memory needs at least one image per class, got {per_class}")
        self._per_class = per_class
        self._images: dict[int, Tensor] = {}

    @property
    def per_class(self) -> int:
        return self._per_class

    @property
    def classes(self) -> tuple[int, ...]:
        """Global labels of the seen classes, in order of arrival."""
        return tuple(self._images)

    @property
    def size(self) -> int:
        return self._per_class * len(self._images)

    def __len__(self) -> int:
        return self.size

    @property
    def images(self) -> Tensor:
        """``(size, C, H, W)``, class by class in order of arrival."""
        if not self._images:
            raise ValueError("the memory is empty")
        return torch.cat(list(self._images.values()))

    @property
    def labels(self) -> Tensor:
        """``(size,) int64`` global labels, aligned with :attr:`images`."""
        return torch.tensor(self.classes, dtype=torch.int64).repeat_interleave(self._per_class)

    def update(self, images: Tensor, labels: Tensor) -> None:
        """Add the memory of new classes: exactly ``per_class`` images of each class in ``labels``.

        Args:
            images: ``(n, C, H, W)``; labels: ``(n,) int64`` global labels of classes not seen yet.
        """
        labels = labels.detach().cpu()
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        new = list(dict.fromkeys(labels.tolist()))
        seen = [c for c in new if c in self._images]
        if seen:
            raise ValueError(f"classes {seen} are already in the memory (class-incremental: each class arrives once)")
        counts = {c: int((labels == c).sum()) for c in new}
        wrong = {c: n for c, n in counts.items() if n != self._per_class}
        if wrong:
            raise ValueError(f"the memory keeps {self._per_class} images per class, got {wrong}")
        for c in new:
            self._images[c] = images[labels.to(images.device) == c].detach().clone()

    def resize(self, per_class: int) -> None:
        """Keep the first ``per_class`` images of every class (a memory can shrink, not grow)."""
        if not 1 <= per_class <= self._per_class:
            raise ValueError(f"resize to 1..{self._per_class} images per class, got {per_class}")
        self._images = {c: x[:per_class] for c, x in self._images.items()}
        self._per_class = per_class


@dataclass(frozen=True)
class MemoryRequest:
    """What a builder needs to build one step's memory."""

    config: ContinualConfig
    subset: ClassSubset
    order_seed: int
    step: int
    run_dir: Path
    device: torch.device
    progress: bool = False

    @property
    def seed(self) -> int:
        """The step's selection/condensation seed: the same for every memory of (order, step)."""
        return derive_seed(self.order_seed, "memory", self.step) % 2**31


MemoryBuilder = Callable[[MemoryRequest], SyntheticSet]


def _random(request: MemoryRequest) -> SyntheticSet:
    return random_subset(request.subset.dataset, request.config.memory_per_class, request.seed)


def _herding(request: MemoryRequest) -> SyntheticSet:
    config = request.config
    return herding_subset(request.subset.dataset, config.memory_per_class, request.seed, network=config.network,
                          feature_epochs=config.herding_epochs, device=request.device)


def _condensed(method: str) -> MemoryBuilder:
    def build(request: MemoryRequest) -> SyntheticSet:
        config = request.config.condense_config(method, request.seed)
        return condense_dataset(config, request.subset.dataset, request.run_dir, device=request.device,
                                resume=True, progress=request.progress, evaluate=False)

    build.__doc__ = f"condense_dataset with method {method!r} on the step's classes"
    return build


#: memory name -> builder; the condensation methods use ``ContinualConfig.condense_config``.
MEMORY_BUILDERS: dict[str, MemoryBuilder] = {"random": _random, "herding": _herding, **{m: _condensed(m) for m in CONDENSATION_MEMORIES}}
assert tuple(MEMORY_BUILDERS) == MEMORY_NAMES, "every memory name of condense.continual.config has a builder"


def step_memory(name: str, request: MemoryRequest) -> SyntheticSet:
    """The memory ``name`` of one step, built once and cached in ``request.run_dir``."""
    run_dir = request.run_dir
    cached = find_synthetic_file(run_dir)
    if (run_dir / "DONE").exists() and cached is not None:
        return SyntheticSet.load(cached)
    log.info("building %s memory of classes %s in %s", name, list(request.subset.classes), run_dir)
    synthetic = MEMORY_BUILDERS[name](request)
    if not (run_dir / "DONE").exists():  # baselines; condense_dataset writes its own
        synthetic.save(run_dir / SYNTHETIC_FILE)
        (run_dir / "DONE").write_text("0\n")
    return synthetic
