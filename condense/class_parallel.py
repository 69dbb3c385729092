"""Class-parallel condensation: the matching step and the network training of :mod:`condense.synthesis` over ranks.

Launched by ``torchrun`` (see :mod:`condense.distributed`). Every rank holds the same network θ
(built from the same ``(seed, iteration)`` generator), the same synthetic set S and the same
optimiser. Rank r owns the classes ``c ∈ R_r = my_share(C)`` (a contiguous block) and computes the
real and synthetic gradients of those classes only.

**Same random draws as one process.** The single-process loop draws, class after class, the
real-batch indices of B_c and (DSA) the Siamese parameters a_c from ONE generator. Every rank makes
all these draws, for every class (a permutation of indices and a few numbers), and gathers and
differentiates only its own classes' images. So the sequence of draws, and hence the result, does
not depend on the number of ranks; the single-process path is untouched.

Matching step (PAPER.md §1–2), with Σ_r the all-reduce sum over ranks:

- class-wise (DC/DSA): L = Σ_c D(∇θ ℓ(a_c(S_c)), ∇θ ℓ(a_c(B_c))). Rank r back-propagates its own
  terms; ∇_{S_c} L is non-zero only on the rank owning c, so ∇_S L = Σ_r ∇_S L_r is exact (every
  entry is one rank's value plus zeros): DC/DSA give the single-process S bit for bit as long as
  the network is (see below).
- contrastive (DCC/DSAC): L = D(g_S, g_B) with
  g_B = (1/C) Σ_c ∇θ ℓ(a_c(B_c)) = (1/C) Σ_r [Σ_{c∈R_r} ∇θ ℓ(a_c(B_c))] (class by class, as one process) and
  g_S = ∇θ ℓ(S) = Σ_r [Σ_{c∈R_r} Σ_{x∈S_c} ∇θ CE(x) / (C·ipc)] (per-sample losses: instance norm,
  or frozen batch norm). Both sums are one all-reduce; g_S stays differentiable
  (:func:`~condense.distributed.differentiable_all_reduce_sum`, whose backward is the identity
  because every rank evaluates the same L). ∇_{S_c} L is then non-zero on the owner of c only and
  is summed as above. The partial sums are added in a different order than one process adds the
  whole batch: S agrees with the single-process S to float rounding.

Network training on S between matching steps (T epochs): each batch of the single-process epoch
(the same shuffle, the same per-image DSA draws) is split over the ranks; rank r computes
∂/∂θ of Σ_{x in its part} CE(x) / |batch| and the all-reduce sum is the single-process mean
gradient, so every rank takes the single-process SGD step (to float rounding). Networks with
batch norm compute statistics over the whole batch, which a split would change: every rank then
trains the whole batch itself (the same work N times, exact). Splitting also pays only when the
batch is large enough to outweigh one all-reduce of θ per step: below
:data:`SPLIT_MIN_IMAGES_PER_RANK` images per rank (ipc 1) the batch is not split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from condense.augment import DSA, AugmentationDraw
from condense.distributed import World, all_reduce_sum_, current_world, differentiable_all_reduce_sum, my_share
from condense.errors import ConfigError
from condense.matching import (
    MatchingObjective,
    acts_per_sample,
    classwise_matching_loss,
    classwise_parameter_gradients,
    contrastive_matching_loss,
    parameter_gradients,
    sum_gradients,
)
from condense.networks import has_batchnorm
from condense.training import Forward, train_epoch

if TYPE_CHECKING:  # pragma: no cover
    from condense.synthesis import Condenser

__all__ = ["SPLIT_MIN_IMAGES_PER_RANK", "check_class_split", "matching_loss_and_backward", "splits_network_training", "train_epoch_over_ranks"]

#: Smallest share of a training batch (images per rank) for which the batch is split over ranks.
SPLIT_MIN_IMAGES_PER_RANK = 32


def check_class_split(num_classes: int, world: World) -> None:
    """Every rank needs at least one class."""
    if world.size > num_classes:
        raise ConfigError(f"{world.size} ranks for {num_classes} classes: class-parallel condensation needs at most one rank per class")


def _synthetic_grad(condenser: "Condenser") -> Tensor:
    if condenser.synthetic.grad is None:
        condenser.synthetic.grad = torch.zeros_like(condenser.synthetic)
    return condenser.synthetic.grad


def _own_real_gradients(condenser: "Condenser", network: nn.Module, reals: dict[int, Tensor]) -> dict[int, list[Tensor]]:
    """∇θ ℓ(B_c) of this rank's classes: one vmapped pass when ``config.class_batching`` applies
    (as :meth:`Condenser._batched_real_gradients` decides for all classes), else class by class."""
    mode = condenser.config.class_batching
    owned = list(reals)
    batched = not (mode == "off" or (mode == "auto" and condenser.device.type != "cuda"))
    if batched and len({len(r) for r in reals.values()}) == 1 and acts_per_sample(network):
        labels = torch.tensor(owned, device=condenser.device).repeat_interleave(len(reals[owned[0]])).view(len(owned), -1)
        with condenser._real_autocast():
            grads = classwise_parameter_gradients(network, torch.stack([reals[c] for c in owned]), labels)
        return dict(zip(owned, grads))
    return {c: condenser._real_gradients(network, reals[c], c) for c in owned}


def matching_loss_and_backward(condenser: "Condenser", network: nn.Module, objective: MatchingObjective, generator: torch.Generator) -> float:
    """This rank's share of one matching step; leaves the full ∇_S L in ``condenser.synthetic.grad`` on every rank.

    Returns the matching loss L (the same value on every rank).
    """
    world = current_world()
    config, ipc, num_classes = condenser.config, condenser.config.ipc, condenser.num_classes
    mine = my_share(num_classes, world)
    dsa: DSA | None = condenser.dsa
    reals: dict[int, Tensor] = {}
    syns: dict[int, Tensor] = {}
    for c in range(num_classes):  # every rank draws every class, in the single-process order
        index = condenser.sampler.draw(c, config.real_batch, generator)
        draw = dsa.sample(generator, 1, siamese=True) if dsa is not None else None
        if c not in mine:
            continue
        real = condenser.sampler.images[index]
        syn = condenser.synthetic[c * ipc : (c + 1) * ipc]
        if draw is not None:
            real, syn = dsa.apply(real, draw), dsa.apply(syn, draw)  # type: ignore[union-attr]
        reals[c], syns[c] = real, syn

    real_grads = _own_real_gradients(condenser, network, reals)
    if objective is MatchingObjective.CLASSWISE:
        class_losses = torch.zeros(num_classes, device=condenser.synthetic.device)  # (C,), one entry per owner
        for c in mine:
            real_grad = real_grads[c]
            syn_grad = parameter_gradients(network, syns[c], condenser._class_label(c, ipc), create_graph=True)
            loss = classwise_matching_loss([real_grad], [syn_grad], config.distance)
            if torch.isfinite(loss):  # a non-finite term stops every rank below, after the all-reduce
                loss.backward()
            class_losses[c] = loss.detach()
        all_reduce_sum_([_synthetic_grad(condenser), class_losses], "all-reduce of the class-wise matching gradients")
        total = 0.0
        for value in class_losses:  # the single-process order of checks and of the sum
            condenser._check_finite(value)
            total += value.item()
        return total

    real_part = sum_gradients(real_grads[c] for c in mine)  # Σ_{c ∈ R_r} ∇θ ℓ(B_c), in class order as one process adds them
    syn_all = torch.cat([syns[c] for c in mine])
    syn_labels = condenser.labels[mine.start * ipc : mine.stop * ipc]
    syn_weights = torch.full((len(syn_all),), 1.0 / (num_classes * ipc), device=syn_all.device)
    syn_part = parameter_gradients(network, syn_all, syn_labels, create_graph=True, sample_weights=syn_weights)
    reduced = differentiable_all_reduce_sum([*real_part, *syn_part])  # one collective for g_B and g_S
    real_mean = [g.detach() / num_classes for g in reduced[: len(real_part)]]
    syn_grad = reduced[len(real_part) :]
    loss = contrastive_matching_loss(real_mean, syn_grad, config.distance)
    condenser._check_finite(loss)
    loss.backward()
    all_reduce_sum_([_synthetic_grad(condenser)], "all-reduce of the contrastive matching gradients")
    return loss.item()


def splits_network_training(network: nn.Module, num_images: int, world: World) -> bool:
    """Whether :func:`train_epoch_over_ranks` splits the batches (else every rank trains all of it)."""
    return world.is_distributed and not has_batchnorm(network) and num_images >= SPLIT_MIN_IMAGES_PER_RANK * world.size


def _draw_part(draw: AugmentationDraw, part: range) -> AugmentationDraw:
    """The per-image parameters of images ``part`` of a non-Siamese draw."""
    return AugmentationDraw(draw.group, {k: v[part.start : part.stop] for k, v in draw.params.items()}, draw.siamese)


def train_epoch_over_ranks(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    dsa: DSA | None,
    forward: Forward | None = None,
) -> None:
    """One epoch of :func:`condense.training.train_epoch` (non-Siamese DSA if ``dsa``), the work split over ranks.

    The shuffle and the augmentation parameters are drawn for the whole batch on every rank, as
    one process draws them; rank r trains its contiguous part of each batch; the summed gradient
    is the batch mean. See the module docstring for when the batch is not split. ``forward``:
    eager or compiled ``network(images)`` (:mod:`condense.compiled`).

    Args:
        images: (N, C, H, W) float32, normalised (the synthetic set, detached); labels: (N,) int64.
    """
    world = current_world()
    if not splits_network_training(network, len(images), world):
        augment = (lambda x, g: dsa(x, g, siamese=False)) if dsa is not None else None  # noqa: E731
        train_epoch(network, optimizer, images, labels, batch_size=batch_size, generator=generator, augment=augment, forward=forward)
        return
    network.train()
    params = [p for p in network.parameters() if p.requires_grad]
    order = torch.randperm(len(images), generator=generator).to(images.device)
    for start in range(0, len(images), batch_size):
        index = order[start : start + batch_size]
        part = my_share(len(index), world)
        draw = dsa.sample(generator, len(index), siamese=False) if dsa is not None else None
        mine = index[part.start : part.stop]
        if len(mine):
            batch = images[mine]
            if draw is not None:
                batch = dsa.apply(batch, _draw_part(draw, part))  # type: ignore[union-attr]
            logits = network(batch) if forward is None else forward(network, batch)
            loss = F.cross_entropy(logits, labels[mine], reduction="sum") / len(index)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]
        else:
            grads = [torch.zeros_like(p) for p in params]
        all_reduce_sum_(grads, "all-reduce of the network gradients")
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
