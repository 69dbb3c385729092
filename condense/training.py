"""Plain supervised training and testing on in-memory tensors (no DataLoader).

Used by the inner loop of condensation (train θ on S for T epochs) and by the evaluation
protocol. Shuffling and augmentation draw from the caller's ``torch.Generator``. ``forward``
computes ``network(batch)`` — the network itself by default, or a compiled pass
(:class:`condense.compiled.CompiledForward`) on the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Augmentation = Callable[[Tensor, torch.Generator], Tensor]
#: ``forward(network, images) -> logits``: eager or compiled, always on the network's parameters
Forward = Callable[[nn.Module, Tensor], Tensor]


def _eager(network: nn.Module, images: Tensor) -> Tensor:
    return network(images)


def train_epoch(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    augment: Augmentation | None = None,
    forward: Forward | None = None,
) -> tuple[float, float]:
    """One shuffled epoch of SGD. Returns (mean loss, accuracy) over the epoch.

    Args:
        images: (N, C, H, W) float32, normalised, on the network's device.
        labels: (N,) int64.
    """
    forward = forward or _eager
    network.train()
    order = torch.randperm(len(images), generator=generator).to(images.device)
    total_loss, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        index = order[start : start + batch_size]
        batch, target = images[index], labels[index]
        if augment is not None:
            batch = augment(batch, generator)
        logits = forward(network, batch)
        loss = F.cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(index)
        correct += int((logits.argmax(dim=1) == target).sum())
    return total_loss / len(images), correct / len(images)


@torch.no_grad()
def accuracy(
    network: nn.Module,
    images: Tensor,
    labels: Tensor,
    batch_size: int = 2048,
    *,
    forward: Forward | None = None,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Top-1 accuracy of ``network`` in eval mode on (images, labels), batched.

    ``dtype=torch.bfloat16`` runs the pass under bf16 autocast (weights stay fp32).
    """
    forward = forward or _eager
    network.eval()
    correct = 0
    autocast = torch.autocast(images.device.type, dtype=dtype, enabled=dtype != torch.float32)
    for start in range(0, len(images), batch_size):
        with autocast:
            logits = forward(network, images[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / len(images)
