"""The condensation loop: learn a synthetic set S by gradient matching (DC, DSA, DCC, DSAC).

For iteration ``it`` = 0 … iterations−1 (PAPER.md §1–4)::

    θ ← a freshly initialised network
    for matching step k = 0 … K−1:
        (BN networks: set BN statistics on 16 real images per class, then freeze BN)
        objective ← contrastive if it ≥ outer_warmup or k ≥ inner_warmup else class-wise
                    (DC and DSA are always class-wise)
        for every class c: real batch B_c (256 images, without replacement);
            DSA/DSAC: one Siamese augmentation draw a_c shared by B_c and S_c
        class-wise:   L = Σ_c D(∇θ ℓ(a_c(S_c)), ∇θ ℓ(a_c(B_c)))
        contrastive:  L = D(∇θ ℓ(∪_c a_c(S_c)), (1/C) Σ_c ∇θ ℓ(a_c(B_c)))
        S ← S − SGD(lr 0.1, momentum 0.5) step on ∇_S L
        unless k = K−1: train θ on S for T epochs (SGD lr 0.01, batch 256; DSA augmentation
                        for DSA/DSAC)

The contrastive real target (1/C) Σ_c ∇θ ℓ(B_c) is accumulated class by class (one class's
graph in memory at a time, summed in class order and divided by C, as the authors' code does);
for large synthetic sets the contrastive synthetic side is back-propagated class by class too
(:meth:`Condenser._contrastive_backward_by_class`), so DCC's peak memory stays near DC's.

The first-order passes — the real gradients and the training of θ on S — run through compiled
functions of the network (``config.compile``; :mod:`condense.compiled`) on the network's own
parameters; the synthetic-side gradient, which is differentiated again, stays eager.

Every iteration draws its randomness from a generator derived from ``(seed, iteration)`` and the
synthetic images and optimiser state are checkpointed, so a resumed run is identical to an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from condense.artifacts import SYNTHETIC_FILE, MetricsLog, SyntheticSet, atomic_torch_save, atomic_write_json, save_image_grid
from condense.augment import DSA
from condense import class_parallel
from condense.compiled import CompiledForward
from condense.config import CondenseConfig
from condense.data import ImageDataset
from condense.distributed import barrier, current_world, on_main
from condense.errors import ConfigError, NonFiniteLossError
from condense.hooks import Callback, notify
from condense.matching import (
    MatchingObjective,
    acts_per_sample,
    classwise_matching_loss,
    classwise_parameter_gradients,
    contrastive_matching_loss,
    matching_objective,
    parameter_gradients,
    sum_gradients,
)
from condense.networks import build_network, has_batchnorm
from condense.runtime import derive_generator, resolve_device, seeded_global_rng
from condense.safeio import load_torch_file
from condense.sampling import ClassSampler, initial_synthetic_images
from condense.training import train_epoch

log = logging.getLogger("condense.synthesis")

#: DCC's synthetic side runs as one pass over S (the authors' order of operations) up to this many
#: synthetic images (ipc 10 on 10 classes: measured no more memory than DC), class by class above
#: (same mathematics; one class's second-order graph in memory; docs/benchmarks.md)
ONE_PASS_SYNTHETIC_IMAGES = 100

__all__ = ["ClassSampler", "Condenser", "condense_dataset", "initial_synthetic_images"]  # the first two re-exported from condense.sampling


@dataclass
class IterationResult:
    loss: float
    objectives: list[str] = field(default_factory=list)


class Condenser:
    """Runs the condensation loop for one config on one dataset.

    Args:
        config: the run's configuration.
        dataset: the real data.
        device: compute device (``None``: CUDA if available, else CPU).
        callbacks: observers (see :mod:`condense.hooks`).
    """

    def __init__(self, config: CondenseConfig, dataset: ImageDataset, device: str | torch.device | None = None, callbacks: list[Callback] | tuple[Callback, ...] = ()):
        self.config = config
        self.dataset = dataset
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.callbacks = tuple(callbacks)
        images, labels = dataset.normalised_train()
        self.num_classes = dataset.num_classes
        self.world = current_world()  # torchrun: classes split over ranks (condense/class_parallel.py)
        if self.world.is_distributed:
            class_parallel.check_class_split(self.num_classes, self.world)
        self.sampler = ClassSampler(images.to(self.device), labels.to(self.device), self.num_classes)
        self.image_shape = tuple(images.shape[1:])
        self.dsa = DSA() if config.uses_dsa else None
        initial = initial_synthetic_images(config, self.sampler, self.image_shape, self.num_classes)
        self.synthetic = initial.detach().clone().requires_grad_(True)
        self.labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(config.ipc)
        self.optimizer = torch.optim.SGD([self.synthetic], lr=config.syn_lr, momentum=config.syn_momentum)
        self.real_forward = CompiledForward(config.compile, kind="real-gradient")
        self.train_forward = CompiledForward(config.compile, kind="train")
        self.iteration = 0  # number of finished iterations

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "synthetic": self.synthetic.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
            "iteration": self.iteration,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.synthetic.copy_(state["synthetic"].to(self.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration = int(state["iteration"])

    def synthetic_set(self) -> SyntheticSet:
        return SyntheticSet(
            images=self.synthetic.detach().cpu().clone(),
            labels=self.labels.cpu().clone(),
            dataset=self.dataset.name,
            class_names=tuple(self.dataset.class_names),
            mean=tuple(self.dataset.mean),
            std=tuple(self.dataset.std),
            method=self.config.method,
            ipc=self.config.ipc,
            seed=self.config.seed,
            iteration=self.iteration,
            config=self.config.to_dict(),
        )

    # ------------------------------------------------------------------ pieces
    def _new_network(self, generator: torch.Generator) -> nn.Module:
        with seeded_global_rng(generator):
            network = build_network(self.config.network, self.image_shape[0], self.num_classes, self.image_shape[1:])
        return network.to(self.device)

    def _autocast(self, dtype: str) -> contextlib.AbstractContextManager:
        """bf16 autocast for ``dtype == "bfloat16"`` (``real_grad_dtype``, ``network_train_dtype``)."""
        if dtype == "bfloat16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _real_autocast(self) -> contextlib.AbstractContextManager:
        return self._autocast(self.config.real_grad_dtype)

    def _freeze_batchnorm(self, network: nn.Module, generator: torch.Generator) -> None:
        """Set BN running statistics on a few real images per class, then put BN in eval mode."""
        network.train()
        batch = torch.cat([self.sampler.sample(c, self.config.bn_images_per_class, generator) for c in range(self.num_classes)])
        with torch.no_grad():
            network(batch)
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def _class_label(self, c: int, n: int) -> Tensor:
        return torch.full((n,), c, dtype=torch.long, device=self.device)

    def _real_gradients(self, network: nn.Module, images: Tensor, c: int) -> list[Tensor]:
        """∇θ ℓ(B_c) of one real batch (compiled per ``config.compile``; bf16 per ``real_grad_dtype``)."""
        with self._real_autocast():
            return parameter_gradients(network, images, self._class_label(c, len(images)), forward=self.real_forward)

    def _matching_loss_and_backward(self, network: nn.Module, objective: MatchingObjective, generator: torch.Generator) -> float:
        """Compute the matching loss for one step and accumulate ∇_S L into ``synthetic.grad``.

        Random draws per class, in class order: the real batch, then (DSA/DSAC) the Siamese draw.
        """
        if self.world.is_distributed:  # torchrun: this rank's classes, then all-reduce (same draws, same result)
            return class_parallel.matching_loss_and_backward(self, network, objective, generator)
        config = self.config
        ipc = config.ipc
        reals, syns = [], []
        for c in range(self.num_classes):
            real = self.sampler.sample(c, config.real_batch, generator)
            syn = self.synthetic[c * ipc : (c + 1) * ipc]
            if self.dsa is not None:
                draw = self.dsa.sample(generator, 1, siamese=True)
                real, syn = self.dsa.apply(real, draw), self.dsa.apply(syn, draw)
            reals.append(real)
            syns.append(syn)

        batched = self._batched_real_gradients(network, reals)
        if objective is MatchingObjective.CLASSWISE:
            total = 0.0
            for c in range(self.num_classes):
                real_grad = batched[c] if batched is not None else self._real_gradients(network, reals[c], c)
                syn_grad = parameter_gradients(network, syns[c], self._class_label(c, ipc), create_graph=True)
                loss = classwise_matching_loss([real_grad], [syn_grad], config.distance)  # the class-c term
                self._check_finite(loss)
                # Backward per class: the same ∇_S Σ_c D_c as one backward, with one class's graph in memory.
                loss.backward()
                total += loss.item()
            return total

        if batched is not None:
            real_mean = [torch.stack(per_class).sum(dim=0) / self.num_classes for per_class in zip(*batched)]
        else:
            real_mean = self._mean_real_gradient(network, reals)
        if len(self.labels) > ONE_PASS_SYNTHETIC_IMAGES and acts_per_sample(network):
            return self._contrastive_backward_by_class(network, real_mean, syns)
        syn_grad = parameter_gradients(network, torch.cat(syns), self.labels, create_graph=True)
        loss = contrastive_matching_loss(real_mean, syn_grad, config.distance)
        self._check_finite(loss)
        loss.backward()
        return loss.item()

    def _contrastive_backward_by_class(self, network: nn.Module, real_mean: list[Tensor], syns: list[Tensor]) -> float:
        """L = D(∇θ ℓ(S), target) and ∇_S L with one class's second-order graph in memory at a time.

        With ipc images in every class, ℓ(S) = (1/C) Σ_c ℓ(S_c), so g = ∇θ ℓ(S) = (1/C) Σ_c g_c
        with g_c = ∇θ ℓ(S_c), and by the chain rule ∇_{S_c} L = ∇_{S_c} ⟨∂L/∂g, g_c⟩ / C. Pass 1
        sums the g_c without a graph and takes v = ∂L/∂g; pass 2 recomputes each g_c with its
        graph and back-propagates ⟨v, g_c⟩ / C to S_c. Same mathematics as one pass over S (for a
        network that acts per sample), one extra first-order synthetic pass.
        """
        classes, ipc = self.num_classes, self.config.ipc
        total = sum_gradients(parameter_gradients(network, syns[c].detach(), self._class_label(c, ipc)) for c in range(classes))
        whole = [(g / classes).requires_grad_(True) for g in total]
        loss = contrastive_matching_loss(real_mean, whole, self.config.distance)
        self._check_finite(loss)
        direction = torch.autograd.grad(loss, whole, allow_unused=True)  # None: a tensor D ignores (1-D)
        for c in range(classes):
            grads = parameter_gradients(network, syns[c], self._class_label(c, ipc), create_graph=True)
            inner = torch.stack([(v * g).sum() for v, g in zip(direction, grads) if v is not None]).sum() / classes
            inner.backward()
        return loss.item()

    def _batched_real_gradients(self, network: nn.Module, reals: list[Tensor]) -> list[list[Tensor]] | None:
        """Every class's ∇θ ℓ(B_c) in one vmapped pass, or ``None`` to compute them class by class.

        Used per ``config.class_batching`` (``auto``: on CUDA, where C small passes are
        launch-bound) when it is exact: equal class batches and a network that acts per sample.
        """
        mode = self.config.class_batching
        if mode == "off" or (mode == "auto" and self.device.type != "cuda"):
            return None
        if len({len(r) for r in reals}) != 1 or not acts_per_sample(network):
            return None
        labels = torch.arange(self.num_classes, device=self.device).repeat_interleave(len(reals[0])).view(self.num_classes, -1)
        with self._real_autocast():
            return classwise_parameter_gradients(network, torch.stack(reals), labels)

    def _mean_real_gradient(self, network: nn.Module, reals: list[Tensor]) -> list[Tensor]:
        """The contrastive target (1/C) Σ_c ∇θ ℓ(B_c), one class's graph at a time.

        Summed in class order, then divided by C (the authors' order of operations), so that peak
        memory is that of one class's pass rather than of all C real batches in one graph.
        """
        total = sum_gradients(self._real_gradients(network, real, c) for c, real in enumerate(reals))
        return [g / self.num_classes for g in total]

    def _check_finite(self, loss: Tensor) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"matching loss became {loss.item()} during iteration {self.iteration}; "
                f"the synthetic set of the last checkpoint (iteration ≤ {self.iteration}) is kept"
            )

    def _train_network_on_synthetic(self, network: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, step: int) -> None:
        images = self.synthetic.detach().clone()
        augment = None
        if self.dsa is not None:
            dsa = self.dsa
            augment = lambda x, g: dsa(x, g, siamese=False)  # noqa: E731
        for epoch in range(self.config.epochs_between_steps):
            with self._autocast(self.config.network_train_dtype):  # not around the callbacks
                if self.world.is_distributed:  # torchrun: each batch split over the ranks, gradients all-reduced
                    class_parallel.train_epoch_over_ranks(network, optimizer, images, self.labels, batch_size=self.config.network_batch, generator=generator, dsa=self.dsa, forward=self.train_forward)
                else:
                    train_epoch(network, optimizer, images, self.labels, batch_size=self.config.network_batch, generator=generator, augment=augment, forward=self.train_forward)
            notify(self.callbacks, "on_synthesis_network_update", iteration=self.iteration, step=step, epoch=epoch, network=network)

    # ------------------------------------------------------------------ one iteration
    def run_iteration(self) -> IterationResult:
        """One outer iteration (K matching steps on a fresh network). Advances ``self.iteration``."""
        config = self.config
        generator = derive_generator(config.seed, "iteration", self.iteration)
        network = self._new_network(generator)
        notify(self.callbacks, "on_synthesis_network_created", iteration=self.iteration, network=network)
        network_optimizer = torch.optim.SGD(network.parameters(), lr=config.network_lr)
        batchnorm = has_batchnorm(network)
        total, objectives = 0.0, []
        for step in range(config.steps):
            if batchnorm:
                self._freeze_batchnorm(network, generator)
            if config.uses_warmup:
                objective = matching_objective(self.iteration, step, config.outer_warmup, config.inner_warmup)
            else:
                objective = MatchingObjective.CLASSWISE
            objectives.append(objective.value)
            self.optimizer.zero_grad(set_to_none=True)
            total += self._matching_loss_and_backward(network, objective, generator)
            self.optimizer.step()
            if step < config.steps - 1:
                self._train_network_on_synthetic(network, network_optimizer, generator, step)
        self.iteration += 1
        mean_loss = total / config.steps
        notify(self.callbacks, "on_synthesis_iteration_end", iteration=self.iteration, loss=mean_loss)
        return IterationResult(loss=mean_loss, objectives=objectives)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :meth:`Condenser.state_dict` (tensors and plain data, read with
    ``weights_only=True``); one-line :class:`~condense.errors.CondenseError` otherwise."""
    state = load_torch_file(path, "checkpoint")
    keys = ("synthetic", "optimizer", "iteration", "config")
    if not isinstance(state, dict) or any(k not in state for k in keys) or not isinstance(state["config"], dict):
        raise ConfigError(f"{path} is not a checkpoint of this package (expected {', '.join(keys)}); remove it or choose another --out")
    return state


def _objective_summary(objectives: list[str]) -> str:
    return "+".join(sorted(set(objectives)))


def condense_dataset(
    config: CondenseConfig,
    dataset: ImageDataset,
    run_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    resume: bool = False,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    progress: bool = True,
    evaluate: bool = True,
) -> SyntheticSet:
    """Run (or resume) a condensation, writing the run directory described in :mod:`condense.artifacts`.

    Evaluates the synthetic set by the protocol of :mod:`condense.evaluation` at
    ``config.evaluation_iterations`` unless ``evaluate=False``.
    """
    from tqdm.auto import tqdm

    from condense.evaluation import evaluate_synthetic_set, mean_std

    run_dir = Path(run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    condenser = Condenser(config, dataset, device=device, callbacks=callbacks)
    main = condenser.world.is_main  # torchrun: rank 0 reads and writes the run directory, the others compute

    def prepare() -> tuple[dict[str, Any] | None, set[int]]:
        """The checkpoint to resume (or None) and the iterations already evaluated; sets up the directory."""
        state = None
        if checkpoint_path.exists():
            if not resume:
                raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
            state = _read_checkpoint(checkpoint_path)
            if not CondenseConfig.from_dict(state["config"]).same_run(config):
                raise ConfigError(f"the checkpoint in {run_dir} was made with a different config; resume with the same settings")
            metrics.truncate_after(int(state["iteration"]))
            log.info("resuming %s at iteration %d", run_dir, int(state["iteration"]))
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            metrics.path.unlink(missing_ok=True)
        world_size = {"world_size": condenser.world.size} if condenser.world.is_distributed else {}
        atomic_write_json({**config.to_dict(), **world_size}, run_dir / "config.json")
        return state, {r["iteration"] for r in metrics.read() if r.get("event") == "evaluation"}

    state, evaluated = on_main(prepare, "check of the run directory")  # one process: just prepare()
    if state is not None:
        condenser.load_state_dict(state)

    def checkpoint() -> None:
        if not torch.isfinite(condenser.synthetic).all():
            raise NonFiniteLossError(f"synthetic images became non-finite by iteration {condenser.iteration}; the last checkpoint in {run_dir} is kept")
        if not main:
            return
        atomic_torch_save(condenser.state_dict(), checkpoint_path)
        synthetic = condenser.synthetic_set()
        synthetic.save(run_dir / SYNTHETIC_FILE)

    def maybe_evaluate() -> None:
        it = condenser.iteration
        if it not in config.evaluation_iterations or it in evaluated:
            return
        synthetic = condenser.synthetic_set()
        if main:
            save_image_grid(synthetic.denormalised(), synthetic.labels, run_dir / f"images_it{it:04d}.png", synthetic.class_names)
        if evaluate:
            started = time.perf_counter()
            result = evaluate_synthetic_set(synthetic, dataset, config.evaluation, augmentation=config.evaluation_augmentation, seed=config.seed, key=f"it{it}", device=condenser.device, progress=progress and main)
            for arch, accs in result.items() if main else ():
                mean, std = mean_std(accs)
                metrics.append(event="evaluation", iteration=it, network=arch, accuracies=accs, mean=mean, std=std, seconds=time.perf_counter() - started)
                log.info("iteration %d: %s accuracy %.2f ± %.2f %% over %d networks", it, arch, 100 * mean, 100 * std, len(accs))
        evaluated.add(it)

    maybe_evaluate()
    bar = tqdm(total=config.iterations, initial=condenser.iteration, desc=f"{config.method} ipc{config.ipc}", disable=not (progress and main), unit="it")
    try:
        while condenser.iteration < config.iterations:
            started = time.perf_counter()
            result = condenser.run_iteration()
            if main:
                metrics.append(event="iteration", iteration=condenser.iteration, loss=result.loss, objective=_objective_summary(result.objectives), seconds=time.perf_counter() - started)
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss:.3f}", obj=_objective_summary(result.objectives))
            maybe_evaluate()
            if condenser.iteration % config.checkpoint_every == 0 or condenser.iteration in config.evaluation_iterations:
                checkpoint()
    finally:
        bar.close()
    checkpoint()
    if main:
        (run_dir / "DONE").write_text(f"{condenser.iteration}\n")
    barrier("wait for rank 0 to write the run directory")  # torchrun: no rank reads a file before it is written
    return condenser.synthetic_set()
