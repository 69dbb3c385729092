"""Class bookkeeping of class-incremental learning: class orders, steps, class subsets.

    >>> from condense.continual.classes import class_orders, split_into_steps
    >>> orders = class_orders(10, seeds=[0, 1])                 # two seeded permutations of 0..9
    >>> split_into_steps(orders[0], 5)                          # five steps of two classes each
    [[...], [...], [...], [...], [...]]

A class order is drawn from ``derive_generator(seed, "class-order")``, so it depends on the seed
only (not on numpy's global state, as in the DM authors' ``np.random.seed(seed)``; the orders
therefore differ from theirs, the protocol does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from condense.data import ImageDataset
from condense.errors import ConfigError
from condense.runtime import derive_generator

__all__ = ["class_orders", "split_into_steps", "step_sizes", "ClassSubset", "class_subset"]


def class_orders(num_classes: int, seeds: Sequence[int]) -> list[list[int]]:
    """One permutation of ``0..num_classes-1`` per seed, from ``derive_generator(seed, "class-order")``."""
    if num_classes < 1:
        raise ConfigError(f"need at least one class, got {num_classes}")
    return [torch.randperm(num_classes, generator=derive_generator(seed, "class-order")).tolist() for seed in seeds]


def step_sizes(num_classes: int, steps: int | Sequence[int]) -> tuple[int, ...]:
    """Classes per step: ``steps`` equal steps (which must divide ``num_classes``) or explicit sizes.

    ``step_sizes(100, 5) == (20,) * 5``; ``step_sizes(10, (4, 3, 3)) == (4, 3, 3)``.
    """
    if isinstance(steps, int):
        if steps < 1 or num_classes % steps:
            raise ConfigError(f"{steps} steps do not divide {num_classes} classes; choose a divisor or give explicit step sizes")
        return (num_classes // steps,) * steps
    sizes = tuple(int(s) for s in steps)
    if not sizes or min(sizes) < 1 or sum(sizes) != num_classes:
        raise ConfigError(f"step sizes {list(sizes)} must be positive and add up to the {num_classes} classes")
    return sizes


def split_into_steps(order: Sequence[int], steps: int | Sequence[int]) -> list[list[int]]:
    """Cut a class order into consecutive steps (see :func:`step_sizes`)."""
    sizes = step_sizes(len(order), steps)
    result, start = [], 0
    for size in sizes:
        result.append(list(order[start : start + size]))
        start += size
    return result


@dataclass(frozen=True)
class ClassSubset:
    """Some classes of a dataset, relabelled ``0..k-1`` in the order of ``classes``.

    Attributes:
        dataset: the restricted dataset; its labels are local (``0..k-1``), its mean/std the parent's.
        classes: ``classes[local] = global label``.
        train_indices, test_indices: ``(n,) int64`` positions of the kept images in the parent.
    """

    dataset: ImageDataset
    classes: tuple[int, ...]
    train_indices: Tensor
    test_indices: Tensor

    def to_global(self, local_labels: Tensor) -> Tensor:
        """Local labels ``(n,) int64`` → the parent's labels."""
        return torch.tensor(self.classes, dtype=torch.int64, device=local_labels.device)[local_labels]


def _select(labels: Tensor, classes: Sequence[int], per_class: int | None) -> Tensor:
    """Positions of the images of ``classes`` (the first ``per_class`` of each), in dataset order."""
    chosen = [torch.nonzero(labels == c).flatten()[:per_class] for c in classes]
    return torch.cat(chosen).sort().values


def class_subset(dataset: ImageDataset, classes: Sequence[int], *, train_per_class: int | None = None, test_per_class: int | None = None) -> ClassSubset:
    """Restrict ``dataset`` to ``classes`` and relabel them ``0..k-1`` in the given order.

    ``train_per_class`` / ``test_per_class`` keep only the first n images of each class (in the
    dataset's own order), for CPU budgets; ``None`` keeps them all.
    """
    classes = tuple(int(c) for c in classes)
    if not classes or len(set(classes)) != len(classes) or min(classes) < 0 or max(classes) >= dataset.num_classes:
        raise ConfigError(f"classes {list(classes)} must be distinct labels of {dataset.name} (0..{dataset.num_classes - 1})")
    local = torch.full((dataset.num_classes,), -1, dtype=torch.int64)
    local[list(classes)] = torch.arange(len(classes))
    train = _select(dataset.train_labels, classes, train_per_class)
    test = _select(dataset.test_labels, classes, test_per_class)
    subset = ImageDataset(
        name=f"{dataset.name}[{','.join(map(str, classes))}]",
        train_images=dataset.train_images[train], train_labels=local[dataset.train_labels[train]],
        test_images=dataset.test_images[test], test_labels=local[dataset.test_labels[test]],
        class_names=tuple(dataset.class_names[c] for c in classes), mean=dataset.mean, std=dataset.std, note=dataset.note,
    )
    return ClassSubset(subset, classes, train, test)
