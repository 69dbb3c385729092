"""Callback hooks: how other code (e.g. ``dynamics`` kernel tracking) observes a run.

``condense`` calls these at fixed points and never imports its observers. A callback must not
change the run: it may read the network, but must not draw from the run's generators or change
parameters, modes or gradients (``dynamics`` tests this property).
"""

from __future__ import annotations

from torch import nn


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_synthesis_network_created(self, *, iteration: int, network: nn.Module) -> None:
        """When an iteration's fresh network θ₀ has been built, before any matching step."""

    def on_synthesis_network_update(self, *, iteration: int, step: int, epoch: int, network: nn.Module) -> None:
        """After each epoch of training θ on the synthetic set inside condensation.

        ``iteration`` (outer), ``step`` (matching step k) and ``epoch`` (inner epoch, 0-based).
        """

    def on_synthesis_iteration_end(self, *, iteration: int, loss: float) -> None:
        """After each outer iteration; ``iteration`` counts finished iterations (1-based)."""

    def on_training_epoch_end(self, *, tag: str, epoch: int, network: nn.Module, train_loss: float) -> None:
        """After each epoch of an evaluation training run; ``tag`` names the run."""


def notify(callbacks: "list[Callback] | tuple[Callback, ...]", hook: str, **kwargs: object) -> None:
    """Call ``hook`` on every callback."""
    for callback in callbacks:
        getattr(callback, hook)(**kwargs)
