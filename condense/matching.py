"""Gradient matching: distances between gradients, the DC and DCC losses, and the warm-up rule.

Notation (PAPER.md §1–3). θ are the network parameters, ℓ(X) the mean cross-entropy of a batch
X, B_c a real batch of class c, S_c the synthetic images of class c and S = ∪_c S_c.

- Class-wise matching (DC, Zhao et al. 2021):
      L_DC  = Σ_c D( ∇θ ℓ(S_c), ∇θ ℓ(B_c) )
- Contrastive matching (DCC, Lee et al. 2022):
      L_DCC = D( ∇θ ℓ(S), (1/C) Σ_c ∇θ ℓ(B_c) )
  where ℓ(S) is the mean loss over the whole synthetic set in one forward pass. With equal ipc,
  ℓ(S) = (1/C) Σ_c ℓ(S_c). D is scale-invariant per row, so the paper's "sum" and the code's
  "mean" of class gradients give the same loss.
- Bi-level warm-up: at iteration ``it`` and matching step ``k`` use DCC iff
  ``it >= outer_warmup or k >= inner_warmup``, else DC.

Gradients are passed as sequences of tensors, one per parameter tensor of the network, in the
order of ``network.parameters()``. The loss functions only combine gradients; computing them
(with ``create_graph=True`` on the synthetic side) is the caller's job, see
:func:`parameter_gradients` and :mod:`condense.synthesis`.

Example::

    >>> import torch
    >>> g_real = [torch.randn(4, 3), torch.randn(4)]
    >>> g_syn = [g.clone() for g in g_real]
    >>> float(gradient_distance(g_real, g_syn))  # identical gradients: zero distance
    0.0
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Distance",
    "MatchingObjective",
    "gradient_distance",
    "layerwise_cosine_distance",
    "classwise_matching_loss",
    "contrastive_matching_loss",
    "sum_gradients",
    "matching_objective",
    "parameter_gradients",
    "classwise_parameter_gradients",
    "acts_per_sample",
]

Gradients = Sequence[Tensor]

_EPS = 1e-6  # the authors' constant in the cosine denominator


class Distance(str, enum.Enum):
    """Distance D between a synthetic and a real gradient."""

    OURS = "ours"
    """Layer-wise, output-node-wise cosine (the DC/DCC default). 1-D tensors contribute 0."""
    MSE = "mse"
    """Squared L2 distance between all flattened gradients."""
    COS = "cos"
    """One cosine distance between all flattened gradients."""


class MatchingObjective(str, enum.Enum):
    """Which loss a matching step uses."""

    CLASSWISE = "classwise"  # DC / DSA
    CONTRASTIVE = "contrastive"  # DCC / DSAC


def _as_rows(gradient: Tensor) -> Tensor | None:
    """Reshape one parameter's gradient to (output nodes, fan-in); ``None`` for 1-D tensors.

    conv weight (out, in, h, w) -> (out, in·h·w); linear weight (out, in) unchanged;
    layer-norm weight (C, h, w) -> (C, h·w); biases and norm scales (n,) -> ignored.
    """
    if gradient.dim() <= 1:
        return None
    return gradient.reshape(gradient.shape[0], -1)


def layerwise_cosine_distance(real: Tensor, synthetic: Tensor) -> Tensor:
    """D for one parameter tensor: Σ_rows (1 − ⟨r, s⟩ / (‖r‖‖s‖ + 1e-6)); 0 for 1-D tensors."""
    real_rows, syn_rows = _as_rows(real), _as_rows(synthetic)
    if real_rows is None or syn_rows is None:
        return synthetic.new_zeros(())
    dot = (real_rows * syn_rows).sum(dim=-1)
    norms = real_rows.norm(dim=-1) * syn_rows.norm(dim=-1)
    return (1 - dot / (norms + _EPS)).sum()


def gradient_distance(real: Gradients, synthetic: Gradients, distance: Distance | str = Distance.OURS) -> Tensor:
    """D(∇θ ℓ(S), ∇θ ℓ(B)) summed over parameter tensors.

    Args:
        real: gradients of the real batch, one tensor per parameter (detached).
        synthetic: gradients of the synthetic batch, same shapes (usually with a graph).
        distance: ``ours`` (layer-wise row cosine), ``mse`` or ``cos``.

    Returns:
        A scalar tensor, differentiable w.r.t. whatever ``synthetic`` depends on.
    """
    distance = Distance(distance)
    if len(real) != len(synthetic):
        raise ValueError(f"got {len(real)} real and {len(synthetic)} synthetic gradient tensors")
    if distance is Distance.OURS:
        return torch.stack([layerwise_cosine_distance(r, s) for r, s in zip(real, synthetic)]).sum()
    real_flat = torch.cat([r.reshape(-1) for r in real])
    syn_flat = torch.cat([s.reshape(-1) for s in synthetic])
    if distance is Distance.MSE:
        return ((syn_flat - real_flat) ** 2).sum()
    return 1 - (real_flat * syn_flat).sum() / (real_flat.norm() * syn_flat.norm() + _EPS)


def classwise_matching_loss(
    real_per_class: Sequence[Gradients],
    synthetic_per_class: Sequence[Gradients],
    distance: Distance | str = Distance.OURS,
) -> Tensor:
    """DC loss: L = Σ_c D(∇θ ℓ(S_c), ∇θ ℓ(B_c)).

    Args:
        real_per_class: for each class c, the gradients of ℓ(B_c).
        synthetic_per_class: for each class c, the gradients of ℓ(S_c).
    """
    if len(real_per_class) != len(synthetic_per_class):
        raise ValueError("real and synthetic gradients must cover the same classes")
    return torch.stack(
        [gradient_distance(r, s, distance) for r, s in zip(real_per_class, synthetic_per_class)]
    ).sum()


def sum_gradients(gradients: Iterable[Gradients]) -> list[Tensor]:
    """Σ_i g_i, parameter by parameter, added in the order given.

    ``gradients`` may be a generator, so that only the running sum and one term are held at a
    time (class by class: one class's pass in memory). Raises ``ValueError`` when it is empty.
    """
    total: list[Tensor] | None = None
    for gradient in gradients:
        total = list(gradient) if total is None else [a + b for a, b in zip(total, gradient)]
    if total is None:
        raise ValueError("sum_gradients needs at least one gradient")
    return total


def mean_class_gradient(real_per_class: Sequence[Gradients]) -> list[Tensor]:
    """(1/C) Σ_c ∇θ ℓ(B_c), parameter by parameter."""
    return [torch.stack(per_param).mean(dim=0) for per_param in zip(*real_per_class)]


def contrastive_matching_loss(
    real_mean_gradient: Gradients,
    synthetic_whole_gradient: Gradients,
    distance: Distance | str = Distance.OURS,
) -> Tensor:
    """DCC loss: L = D(∇θ ℓ(S), (1/C) Σ_c ∇θ ℓ(B_c)).

    Args:
        real_mean_gradient: the mean over classes of the class-wise real gradients; see
            :func:`mean_class_gradient`, or compute it in one pass as the gradient of
            (1/C) Σ_c ℓ(B_c) over the concatenated real batches.
        synthetic_whole_gradient: the gradient of the mean loss over the whole synthetic set.
    """
    return gradient_distance(real_mean_gradient, synthetic_whole_gradient, distance)


def matching_objective(iteration: int, step: int, outer_warmup: int, inner_warmup: int) -> MatchingObjective:
    """The bi-level warm-up rule of PAPER.md §3.

    Contrastive iff ``iteration >= outer_warmup or step >= inner_warmup``; class-wise otherwise.
    With ``outer_warmup = inner_warmup = 0`` the loss is contrastive throughout.
    """
    if iteration >= outer_warmup or step >= inner_warmup:
        return MatchingObjective.CONTRASTIVE
    return MatchingObjective.CLASSWISE


def parameter_gradients(
    network: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    create_graph: bool = False,
    sample_weights: Tensor | None = None,
    forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
) -> list[Tensor]:
    """∇θ of the (weighted) mean cross-entropy of ``network`` on a batch.

    Args:
        images: (N, C, H, W) float32, normalised.
        labels: (N,) int64.
        create_graph: keep the graph so the result can be differentiated again (synthetic side).
        sample_weights: optional (N,) weights summing to 1; default uniform 1/N. Used to compute
            (1/C) Σ_c ℓ(B_c) over concatenated real batches of unequal sizes in one pass.
        forward: computes ``network(images)`` (e.g. a compiled pass,
            :class:`condense.compiled.CompiledForward`); only for ``create_graph=False``, as a
            compiled graph cannot be differentiated twice.
    """
    if forward is not None and create_graph:
        raise ValueError("a second-order gradient (create_graph=True) needs the eager network, not a compiled forward")
    params = [p for p in network.parameters() if p.requires_grad]
    logits = network(images) if forward is None else forward(network, images)
    if sample_weights is None:
        loss = F.cross_entropy(logits, labels)
    else:
        loss = (F.cross_entropy(logits, labels, reduction="none") * sample_weights).sum()
    grads = torch.autograd.grad(loss, params, create_graph=create_graph)
    if create_graph:
        return list(grads)
    return [g.detach() for g in grads]


def acts_per_sample(network: nn.Module) -> bool:
    """True if, in its current mode, ``network`` maps each sample independently of the others
    (no batch norm in training mode, no active dropout), so that concatenating batches is exact."""
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            return False
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
            return False
    return True


def classwise_parameter_gradients(network: nn.Module, images: Tensor, labels: Tensor) -> list[list[Tensor]]:
    """∇θ ℓ(B_c) for every class c in one vmapped pass (``torch.func.vmap`` of ``grad``).

    Args:
        images: (C, B, channels, H, W) float32 — C equal-sized class batches; labels: (C, B) int64.

    Returns:
        ``[c][i]``: the gradient of parameter tensor i for class c, as :func:`parameter_gradients`
        would give for ``images[c]``. Exact (up to float rounding) only for a network that acts per
        sample (:func:`acts_per_sample`); on a GPU it replaces C small passes by one large one.
    """
    from torch.func import functional_call, grad, vmap

    if not acts_per_sample(network):
        raise ValueError("batched class gradients need a network that acts per sample (no BN in training mode, no dropout)")
    names = [name for name, p in network.named_parameters() if p.requires_grad]
    params = {name: p.detach() for name, p in network.named_parameters() if p.requires_grad}
    frozen = {name: p for name, p in network.named_parameters() if not p.requires_grad}
    buffers = dict(network.named_buffers())

    def class_loss(parameters: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        logits = functional_call(network, {**parameters, **frozen, **buffers}, (x,))
        return F.cross_entropy(logits, y)

    per_param = vmap(grad(class_loss), in_dims=(None, 0, 0))(params, images, labels)  # {name: (C, *shape)}
    return [[per_param[name][c] for name in names] for c in range(images.shape[0])]
