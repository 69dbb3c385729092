"""Train several evaluation networks of one architecture at once, as one stacked model.

The protocol (PAPER.md §5) trains 20 fresh networks per architecture on a set of 10–500 images:
thousands of tiny optimisation steps. :class:`StackedNetworks` keeps the M networks' parameters
stacked along a leading axis (``torch.func.stack_module_state``) and runs them with
``torch.func.vmap(functional_call(...))``, so one step of the ensemble is one call per layer
(a grouped convolution, a batched matrix product) instead of M.

Member m sees exactly what it would see alone: the same initial θ, the same shuffles and
augmentation draws from its own ``torch.Generator`` (drawn in the same order as
:func:`condense.protocol.train_and_test` draws them), the same SGD update (SGD, momentum and
weight decay act element-wise, so one optimiser over the stacked tensors is M independent
optimisers), and the summed loss Σ_m ℓ_m has ∂/∂θ_m = ∂ℓ_m/∂θ_m. The results equal one-by-one
training up to floating-point summation order (tested in ``tests/condense/test_ensemble.py``).

When it pays off: on a GPU, where one small network cannot fill the device. On a CPU the step is
compute-bound and a grouped convolution is slower than M plain ones (``bench/bench_evaluation.py``
measures both), so :func:`use_stacking` chooses one-by-one training there unless asked.

Networks with batch norm (running statistics are mutated in place, which ``vmap`` cannot do) or
with dropout (random masks would come from a different stream) are always trained one by one.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from condense.config import EvaluationConfig
from condense.errors import ConfigError
from condense.networks import has_batchnorm
from condense.protocol import TrainResult, dtype_of_test_pass, evaluation_augmentation, protocol_optimizers

log = logging.getLogger("condense.ensemble")

__all__ = ["StackedNetworks", "why_not_stackable", "use_stacking", "stack_size", "train_and_test_stacked"]

#: Images per stacked step (members × batch) above which the stack is split: bounds activation memory.
MAX_STACKED_IMAGES = 4096


def why_not_stackable(networks: Sequence[nn.Module]) -> str | None:
    """``None`` if ``networks`` can be trained as one stack, else the reason (one line)."""
    if not networks:
        return "no networks"
    first = networks[0]
    if any(type(n) is not type(first) for n in networks):
        return "the networks are of different classes"
    shapes = [tuple(p.shape) for p in first.parameters()]
    if any([tuple(p.shape) for p in n.parameters()] != shapes for n in networks):
        return "the networks have different parameter shapes"
    if has_batchnorm(first):
        return "batch norm updates running statistics in place"
    if any(isinstance(m, nn.modules.dropout._DropoutNd) for m in first.modules()):
        return "dropout would draw its masks from a different random stream"
    return None


def use_stacking(config: EvaluationConfig, device: torch.device, network: nn.Module, count: int, has_callbacks: bool) -> bool:
    """Whether :func:`condense.evaluation.evaluate_images` trains ``count`` networks like ``network`` as stacks.

    ``config.ensemble``: ``"stacked"`` (whenever possible), ``"one-by-one"``, or ``"auto"`` =
    stacked on CUDA only (on a CPU the stacked step is slower; see the module docstring).
    Callbacks that watch one network at a time (``on_training_epoch_end``) force one-by-one.
    """
    if config.ensemble == "one-by-one" or has_callbacks or count < 2:
        return False
    reason = why_not_stackable([network])
    if reason is not None:
        if config.ensemble == "stacked":
            log.info("training the networks one by one: %s", reason)
        return False
    return config.ensemble == "stacked" or device.type == "cuda"


def stack_size(batch_size: int, num_images: int) -> int:
    """How many members to stack so that one step holds at most :data:`MAX_STACKED_IMAGES` images."""
    return max(1, MAX_STACKED_IMAGES // max(1, min(batch_size, num_images)))


class StackedNetworks:
    """M networks of one architecture as stacked parameters ``{name: (M, *shape)}``.

    ``stacked(x)`` maps a per-member batch ``x: (M, B, C, H, W)`` to logits ``(M, B, K)``;
    ``stacked.shared(x)`` maps one batch ``(B, C, H, W)`` seen by every member to ``(M, B, K)``.
    The parameters are leaf tensors: give :meth:`parameters` to an optimiser.
    """

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        reason = why_not_stackable(networks)
        if reason is not None:
            raise ConfigError(f"cannot stack these networks: {reason}")
        self.size = len(networks)
        params, buffers = stack_module_state(list(networks))
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        self._template = copy.deepcopy(networks[0]).to("meta")

        def member(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self._template, (params, buffers), (x,))

        self._per_member = vmap(member, in_dims=(0, 0, 0))
        self._shared = vmap(member, in_dims=(0, 0, None))

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def train(self, mode: bool = True) -> "StackedNetworks":
        self._template.train(mode)
        return self

    def __call__(self, x: Tensor) -> Tensor:
        return self._per_member(self.params, self.buffers, x)

    def shared(self, x: Tensor) -> Tensor:
        return self._shared(self.params, self.buffers, x)

    def member_state(self, index: int) -> dict[str, Tensor]:
        """Member ``index``'s parameters and buffers (detached copies), as a ``state_dict``."""
        return {name: t[index].detach().clone() for name, t in {**self.params, **self.buffers}.items()}

    @torch.no_grad()
    def set_member_state(self, index: int, state: dict[str, Tensor]) -> None:
        """Overwrite member ``index``'s parameters and buffers with ``state`` (as :meth:`member_state` gives)."""
        stacked = {**self.params, **self.buffers}
        for name, tensor in state.items():
            stacked[name][index].copy_(tensor)

    def load_into(self, networks: Sequence[nn.Module]) -> None:
        """Copy the stacked state back into ``networks`` (e.g. to keep using them one by one)."""
        for index, network in enumerate(networks):
            network.load_state_dict(self.member_state(index))


def _stacked_epoch(
    stacked: StackedNetworks,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    *,
    batch_size: int,
    generators: Sequence[torch.Generator],
    augment,
) -> tuple[Tensor, Tensor]:
    """One shuffled epoch for every member; the stacked twin of :func:`condense.training.train_epoch`.

    Returns per-member (mean loss, accuracy), each ``(M,)``.
    """
    stacked.train()
    n = len(images)
    orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(images.device)  # (M, N)
    total_loss = torch.zeros(stacked.size, dtype=torch.float64)
    correct = torch.zeros(stacked.size, dtype=torch.long)
    for start in range(0, n, batch_size):
        index = orders[:, start : start + batch_size]  # (M, b)
        batch, target = images[index], labels[index]  # (M, b, C, H, W), (M, b)
        if augment is not None:
            batch = torch.stack([augment(batch[m], g) for m, g in enumerate(generators)])
        logits = stacked(batch)  # (M, b, K)
        losses = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none").view(target.shape).mean(dim=1)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # ∂/∂θ_m of Σ_m ℓ_m = ∂ℓ_m/∂θ_m
        optimizer.step()
        total_loss += losses.detach().double().cpu() * index.shape[1]
        correct += (logits.argmax(dim=2) == target).sum(dim=1).cpu()
    return total_loss / n, correct.double() / n


@torch.no_grad()
def stacked_accuracy(stacked: StackedNetworks, images: Tensor, labels: Tensor, batch_size: int = 2048, *, dtype: torch.dtype = torch.float32) -> list[float]:
    """Each member's top-1 accuracy on (images, labels), in eval mode; batches of ``batch_size / M``.

    ``dtype=torch.bfloat16``: under bf16 autocast, as the one-by-one test pass.
    """
    stacked.train(False)
    chunk = max(1, batch_size // stacked.size)
    correct = torch.zeros(stacked.size, dtype=torch.long)
    for start in range(0, len(images), chunk):
        with torch.autocast(images.device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = stacked.shared(images[start : start + chunk])  # (M, b, K)
        correct += (logits.argmax(dim=2) == labels[start : start + chunk]).sum(dim=1).cpu()
    return (correct.double() / len(images)).tolist()


def train_and_test_stacked(
    networks: Sequence[nn.Module],
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    config: EvaluationConfig,
    *,
    augmentation: str,
    generators: Sequence[torch.Generator],
    tag: str = "",
):
    """:func:`condense.protocol.train_and_test` for M networks at once; member m uses ``generators[m]``.

    Returns one ``TrainResult`` per network, in order, and leaves each network holding its trained
    weights. A member whose training loss becomes non-finite is scored with its weights at the end
    of that epoch, as when trained alone (the others go on).
    """
    if len(generators) != len(networks):
        raise ValueError(f"{len(networks)} networks but {len(generators)} generators")
    augment = evaluation_augmentation(augmentation)
    stacked = StackedNetworks(networks)
    size = len(networks)
    losses = torch.full((size,), math.nan, dtype=torch.float64)
    train_accs = torch.full((size,), math.nan, dtype=torch.float64)
    frozen: dict[int, dict[str, Tensor]] = {}  # members stopped by a non-finite loss: their final state
    for epoch, optimizer in protocol_optimizers(stacked.parameters(), config, config.resolved_epochs(augmentation)):
        epoch_loss, epoch_acc = _stacked_epoch(
            stacked, optimizer, train_images, train_labels, batch_size=config.batch_size, generators=generators, augment=augment
        )
        for m in range(size):
            if m in frozen:
                continue
            losses[m], train_accs[m] = epoch_loss[m], epoch_acc[m]
            if not math.isfinite(float(epoch_loss[m])):
                log.warning("%s/%d: training loss became %s at epoch %d; the network is scored as it is", tag, m, float(epoch_loss[m]), epoch)
                frozen[m] = stacked.member_state(m)
        if len(frozen) == size:
            break
    for m, state in frozen.items():
        stacked.set_member_state(m, state)
    test_accs = stacked_accuracy(stacked, test_images, test_labels, config.test_batch_size, dtype=dtype_of_test_pass(config))
    stacked.load_into(networks)
    return [
        TrainResult(test_accuracy=test_accs[m], train_loss=float(losses[m]), train_accuracy=float(train_accs[m]))
        for m in range(size)
    ]
