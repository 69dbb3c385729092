"""Who learns from the memory after each step, and the seen-class mask at test time.

Two learners, chosen by name in :data:`LEARNERS`:

- ``gdumb`` (GDumb, Prabhu et al. 2020; the DSA/DM authors' continual protocol): after every step
  a FRESH network, seeded from ``(order seed, "continual-network", index, step)``, is trained on
  all memory so far by the evaluation protocol of PAPER.md §5 (E+1 epochs, lr decay after
  E//2+1) and tested on the seen classes.
- ``incremental``: ONE network per (order, index), initialised as GDumb's step-0 network and kept:
  at every step it is trained further on all memory so far for the full schedule again (E+1
  epochs, lr restarting at its initial value with a new optimiser), starting from the previous
  step's weights. Its step-0 result equals GDumb's.

Networks have one output per class of the whole dataset (global labels). **Seen-class
masking**: at test time the logits of classes not seen yet are set to −inf before the argmax, so
a network can only predict a seen class (:func:`mask_unseen`). During training the loss runs
over all outputs, as in the DM authors' code (their test has no mask; with memory of the seen
classes only, unseen outputs are pushed down and rarely win); ``mask_training=True`` masks the
training logits as well (GDumb's choice), which makes a fresh network a k-way classifier.

Both learners draw a network's initial weights from seeds that do not depend on the memory, so
memories are compared on the same initialisations (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from condense.runtime import derive_generator, seeded_global_rng

__all__ = ["mask_unseen", "seen_mask", "SeenClassMask", "FreshNetworkPerStep", "OneNetwork", "LEARNERS"]

NetworkFactory = Callable[[], nn.Module]


def seen_mask(classes: tuple[int, ...] | list[int], num_classes: int, device: torch.device | str | None = None) -> Tensor:
    """``(num_classes,) bool``, True for the seen ``classes``."""
    mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
    mask[list(classes)] = True
    return mask


def mask_unseen(logits: Tensor, seen: Tensor) -> Tensor:
    """``logits: (N, num_classes)`` with the columns of unseen classes (``seen`` False) set to −inf."""
    return logits.masked_fill(~seen.to(logits.device), float("-inf"))


class SeenClassMask(nn.Module):
    """Wraps a network so that its logits are masked to the seen classes.

    Masks in eval mode always; in train mode only if ``mask_training``. The wrapped network's
    parameters are this module's parameters, so an optimiser built on the wrapper trains it.
    """

    def __init__(self, network: nn.Module, seen: Tensor, mask_training: bool = False):
        super().__init__()
        self.network = network
        self.register_buffer("seen", seen.to(torch.bool))
        self.mask_training = mask_training

    def forward(self, x: Tensor) -> Tensor:
        logits = self.network(x)
        if self.training and not self.mask_training:
            return logits
        return mask_unseen(logits, self.seen)


def _seeded(factory: NetworkFactory, order_seed: int, index: int, step: int) -> nn.Module:
    with seeded_global_rng(derive_generator(order_seed, "continual-network", index, step)):
        return factory()


class FreshNetworkPerStep:
    """GDumb: a freshly initialised network at every step."""

    def __init__(self, factory: NetworkFactory, order_seed: int, index: int = 0):
        self.factory, self.order_seed, self.index = factory, order_seed, index

    def network(self, step: int) -> nn.Module:
        return _seeded(self.factory, self.order_seed, self.index, step)


class OneNetwork:
    """Incremental: the step-0 network, kept and trained further at every step."""

    def __init__(self, factory: NetworkFactory, order_seed: int, index: int = 0):
        self.factory, self.order_seed, self.index = factory, order_seed, index
        self._network: nn.Module | None = None

    def network(self, step: int) -> nn.Module:
        if self._network is None:
            self._network = _seeded(self.factory, self.order_seed, self.index, 0)
        return self._network


#: training name -> learner class ``(factory, order_seed, index)`` with ``.network(step)``.
LEARNERS: dict[str, type] = {"gdumb": FreshNetworkPerStep, "incremental": OneNetwork}
