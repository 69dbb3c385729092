"""Kernel tracking: record a network's empirical NTK on a fixed probe set while it trains.

Purpose: observe training dynamics (Fort et al., NeurIPS 2020; PAPER.md §7) without changing
them. :class:`KernelTracker` is a :class:`condense.hooks.Callback`, so any loop that calls the
hooks can be observed:

- ``on_training_epoch_end`` (evaluation training, :func:`condense.evaluation.train_and_test`):
  the kernel after epoch ``e`` is recorded at time ``e + 1`` (epochs finished). Time 0, the
  initialisation, has no hook: the caller records it with :meth:`KernelTracker.record`.
- ``on_synthesis_network_update`` (the inner loop of condensation, θ trained on S): at each
  tracked outer iteration the tracker counts inner epochs; the kernel after the ``n``-th inner
  epoch of that iteration (over all matching steps) is recorded at time ``n``. The hooks fire
  after epochs only, so a synthesis trajectory starts at ``n = 1``, not at the initialisation.

What is recorded (a :class:`KernelRecord` per time, kept in a :class:`KernelRecorder`): the
run's name (the hook's ``tag``, or ``synthesis/it<iteration>``), the time and its unit, the
kernel on the CPU (``mode='trace'``: ``(P, P)`` float32 for a probe of ``P`` images, always small
enough to keep), the last epoch's training loss, and the test accuracy on an optional fixed test
set. The recorder saves atomically to a ``.pt`` file together with a
:class:`~dynamics.velocity.KernelMetadata` (kernel mode, probe indices and seed, dataset/split)
and reloads with :meth:`KernelRecorder.load`; both classes live in :mod:`dynamics.recording` and
are re-exported here.

No side effects: the kernel is computed in eval mode (BatchNorm uses its running statistics,
dropout is off) and then every module's ``training`` flag is restored exactly; parameter ``.grad``
tensors are set aside and put back; torch's global RNG state is restored (the NTK draws nothing,
but a forked RNG guards against any implementation that would); parameters and buffers are
checked unchanged via their version counters. A run with a tracker attached therefore gives the
same result as one without (tested in ``tests/dynamics/test_tracking.py``).

Example (executed by the tests)::

    >>> import torch
    >>> from condense import build_network, load_dataset
    >>> from condense.config import EvaluationConfig
    >>> from condense.evaluation import train_and_test
    >>> from condense.runtime import derive_generator, seeded_global_rng
    >>> from dynamics.tracking import KernelTracker, log_schedule, make_probe
    >>> data = load_dataset("sklearn-digits")
    >>> probe = make_probe(data, per_class=2, seed=0)              # 20 held-out test images
    >>> tracker = KernelTracker(probe, epochs=log_schedule(6))    # epochs 1, 2, 3, 5, 6
    >>> with seeded_global_rng(derive_generator(0, "demo")):
    ...     net = build_network("convnet-w32", 1, 10, (8, 8))
    >>> tracker.record(net, run="demo", time=0).kernel.shape      # time 0: the initialisation
    torch.Size([20, 20])
    >>> (x, y), (tx, ty) = data.normalised_train(), data.normalised_test()
    >>> result = train_and_test(net, x, y, tx, ty, EvaluationConfig(num_networks=1, epochs=5),
    ...                         augmentation="none", generator=derive_generator(0, "data order"),
    ...                         callbacks=[tracker], tag="demo")  # E + 1 = 6 epochs
    >>> [r.time for r in tracker.recorder.records_of("demo")]
    [0, 1, 2, 3, 5, 6]
    >>> tracker.recorder.trajectory("demo").velocities.shape      # one per consecutive pair
    torch.Size([5])

``tracker.recorder.save(path)`` writes it; ``KernelRecorder.load(path)`` reads it back. The
command line that runs whole tracking studies is ``python -m dynamics.track --run smoke``
(:mod:`dynamics.track`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from condense.data import ImageDataset
from condense.errors import CondenseError
from condense.hooks import Callback
from condense.runtime import derive_generator
from dynamics.ntk import NTKImplementation, empirical_ntk
from dynamics.recording import KernelRecord, KernelRecorder
from dynamics.velocity import KernelMetadata, class_balanced_probe

__all__ = [
    "ProbeSet",
    "make_probe",
    "log_schedule",
    "parse_schedule",
    "KernelRecord",  # re-exported from dynamics.recording
    "KernelRecorder",  # re-exported from dynamics.recording
    "KernelTracker",
    "preserved_state",
]


# --------------------------------------------------------------------------------------------
# probe sets


@dataclass(frozen=True)
class ProbeSet:
    """A fixed, class-balanced set of images on which kernels (or accuracies) are measured.

    Attributes:
        images: ``(P, C, H, W) float32``, normalised with the dataset's mean/std.
        labels: ``(P,) int64``, sorted by class.
        indices: ``(P,) int64`` indices of the images in ``dataset``'s ``split``.
        dataset: the dataset's registry name.
        split: ``'train'`` or ``'test'``.
        seed: the seed the indices were drawn from (with :func:`make_probe`'s ``key``).
        per_class: images per class.
    """

    images: Tensor
    labels: Tensor
    indices: Tensor
    dataset: str
    split: str
    seed: int
    per_class: int

    def __len__(self) -> int:
        return int(self.labels.numel())

    def metadata(self, mode: str, time_unit: str = "epoch", **extra: Any) -> KernelMetadata:
        """The :class:`KernelMetadata` of kernels measured on this probe."""
        return KernelMetadata(
            mode=mode, time_unit=time_unit, probe_indices=self.indices.tolist(), probe_seed=self.seed,
            dataset=f"{self.dataset}/{self.split}", extra={"probe_per_class": self.per_class, **extra},
        )


def make_probe(dataset: ImageDataset, per_class: int, seed: int, *, split: str = "test", key: str = "probe") -> ProbeSet:
    """``per_class`` images of every class of ``dataset``'s ``split``, drawn from ``(seed, key, split)``.

    The same ``(dataset, per_class, seed, split, key)`` always gives the same images. The test
    split is the default: no network of a run trains on it, so every kernel is measured on
    held-out images. Raises :class:`~condense.errors.CondenseError` if a class is too small.
    """
    if split not in ("train", "test"):
        raise CondenseError(f"probe split must be 'train' or 'test', got {split!r}")
    images_u8 = dataset.train_images if split == "train" else dataset.test_images
    labels = dataset.train_labels if split == "train" else dataset.test_labels
    try:
        indices = class_balanced_probe(labels, per_class, derive_generator(seed, key, split))
    except ValueError as err:
        raise CondenseError(f"{dataset.name} {split} split: {err}") from None
    return ProbeSet(
        images=dataset.normalise(images_u8[indices]), labels=labels[indices].clone(), indices=indices,
        dataset=dataset.name, split=split, seed=seed, per_class=per_class,
    )


# --------------------------------------------------------------------------------------------
# schedules

_MANTISSAS = (1.2, 2, 3, 5, 8)


def log_schedule(end: int) -> tuple[int, ...]:
    """Roughly log-spaced times ``0, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 120, …`` up to ``end``.

    ``end`` itself is always included (the last epoch). Kernel velocity is fast early and slow
    later (Fort et al.), so early times are dense.
    """
    if end < 0:
        raise ValueError(f"end must be >= 0, got {end}")
    times = {0, end}
    decade = 1
    while decade <= end:
        times.update(t for t in (round(m * decade) for m in _MANTISSAS) if t <= end)
        decade *= 10
    return tuple(sorted(times))


def parse_schedule(spec: str, end: int) -> tuple[int, ...]:
    """Times in ``0..end`` named by ``spec``: ``'log'`` (:func:`log_schedule`), ``'every:K'``
    (0, K, 2K, …, and ``end``) or an explicit comma list ``'0,1,5,10'``.

    Raises :class:`~condense.errors.CondenseError` for anything else.
    """
    spec = spec.strip()
    if spec == "log":
        return log_schedule(end)
    if spec.startswith("every:"):
        try:
            step = int(spec.split(":", 1)[1])
        except ValueError:
            step = 0
        if step < 1:
            raise CondenseError(f"schedule {spec!r}: 'every:K' needs a positive integer K")
        return tuple(sorted(set(range(0, end + 1, step)) | {end}))
    try:
        times = sorted({int(t) for t in spec.split(",") if t.strip()})
    except ValueError:
        raise CondenseError(f"unknown schedule {spec!r}; use 'log', 'every:K' or a list like '0,1,5,10'") from None
    if not times or times[0] < 0 or times[-1] > end:
        raise CondenseError(f"schedule {spec!r}: times must lie in 0..{end}")
    return tuple(times)


# --------------------------------------------------------------------------------------------
# side-effect-free measurement


@contextlib.contextmanager
def preserved_state(network: nn.Module) -> Iterator[None]:
    """Inside the block the network may be put in eval mode and evaluated; afterwards every
    module's ``training`` flag, every parameter's ``.grad`` and torch's global RNG state are as
    before. Raises ``RuntimeError`` if a parameter or buffer was modified in place."""
    modes = [(module, module.training) for module in network.modules()]
    params = list(network.parameters())
    grads = [p.grad for p in params]
    tensors = params + list(network.buffers())
    versions = [t._version for t in tensors]
    devices = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            for p in params:
                p.grad = None  # whatever the measurement does, the run's gradients stay untouched
            yield
    finally:
        for p, g in zip(params, grads):
            p.grad = g
        for module, training in modes:
            module.training = training  # exactly as before, module by module
    changed = [i for i, (t, v) in enumerate(zip(tensors, versions)) if t._version != v]
    if changed:
        raise RuntimeError(f"kernel tracking modified {len(changed)} parameter/buffer tensors of the network (a bug)")


@torch.no_grad()
def _accuracy(network: nn.Module, images: Tensor, labels: Tensor, batch_size: int) -> float:
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = network(images[start : start + batch_size])
        correct += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return correct / len(images)


# --------------------------------------------------------------------------------------------
# the callback


class KernelTracker(Callback):
    """Records the empirical NTK on a fixed probe set from :mod:`condense.hooks` (see module doc).

    Args:
        probe: a :class:`ProbeSet` or a ``(P, C, H, W)`` tensor of normalised images.
        mode: kernel reduction over logits: ``'trace'`` ``(P, P)``, ``'diagonal'`` ``(P, P, O)``
            or ``'full'`` ``(P, P, O, O)`` (see :func:`dynamics.ntk.empirical_ntk`).
        epochs: evaluation-training times (epochs finished) to record at; ``None``: every epoch.
        synthesis_iterations: outer condensation iterations whose inner loop is tracked
            (none by default).
        synthesis_epochs: inner-epoch counts (within an iteration) to record at; ``None``: all.
        test_images, test_labels: an optional fixed test set, ``(M, C, H, W)`` normalised and
            ``(M,)``, whose accuracy is recorded with every kernel.
        implementation, chunk_size, tile_size: passed to :func:`~dynamics.ntk.empirical_ntk`.
        recorder: where records go (a new :class:`KernelRecorder` by default).
        metadata_extra: added to the recorder's :class:`KernelMetadata` ``extra``.
    """

    def __init__(
        self,
        probe: ProbeSet | Tensor,
        *,
        mode: str = "trace",
        epochs: Collection[int] | None = None,
        synthesis_iterations: Collection[int] = (),
        synthesis_epochs: Collection[int] | None = None,
        test_images: Tensor | None = None,
        test_labels: Tensor | None = None,
        implementation: NTKImplementation | str = NTKImplementation.AUTO,
        chunk_size: int | None = None,
        tile_size: int | None = None,
        test_batch_size: int = 1024,
        recorder: KernelRecorder | None = None,
        metadata_extra: dict[str, Any] | None = None,
    ):
        if (test_images is None) != (test_labels is None):
            raise ValueError("give both test_images and test_labels, or neither")
        self.images = probe.images if isinstance(probe, ProbeSet) else probe
        if self.images.dim() < 2 or len(self.images) == 0:
            raise ValueError(f"the probe must be a non-empty batch of images, got shape {tuple(self.images.shape)}")
        extra = {"implementation": str(getattr(implementation, "value", implementation)), **(metadata_extra or {})}
        if isinstance(probe, ProbeSet):
            metadata = probe.metadata(mode, **extra)
        else:
            metadata = KernelMetadata(mode=mode, time_unit="epoch", probe_indices=list(range(len(probe))), extra=extra)
        self.recorder = recorder if recorder is not None else KernelRecorder(metadata)
        self.mode = mode
        self.epochs = None if epochs is None else frozenset(int(t) for t in epochs)
        self.synthesis_iterations = frozenset(int(i) for i in synthesis_iterations)
        self.synthesis_epochs = None if synthesis_epochs is None else frozenset(int(t) for t in synthesis_epochs)
        self.test_images, self.test_labels = test_images, test_labels
        self.implementation = implementation
        self.chunk_size, self.tile_size = chunk_size, tile_size
        self.test_batch_size = test_batch_size
        self._inner_epochs: dict[int, int] = {}
        self._on_device: dict[torch.device, tuple[Tensor, Tensor | None, Tensor | None]] = {}

    # -------------------------------------------------------------- measurement
    def _inputs(self, device: torch.device) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if device not in self._on_device:
            move = lambda t: None if t is None else t.to(device)  # noqa: E731
            self._on_device[device] = (self.images.to(device), move(self.test_images), move(self.test_labels))
        return self._on_device[device]

    def measure(self, network: nn.Module) -> tuple[Tensor, float]:
        """``(kernel on the CPU, test accuracy or NaN)`` of ``network`` as it is, without side effects."""
        device = next(network.parameters()).device
        probe, test_x, test_y = self._inputs(device)
        with preserved_state(network):
            network.eval()
            kernel = empirical_ntk(
                network, probe, mode=self.mode, implementation=self.implementation,
                chunk_size=self.chunk_size, tile_size=self.tile_size,
            )
            acc = math.nan if test_x is None else _accuracy(network, test_x, test_y, self.test_batch_size)
        return kernel.detach().cpu(), acc

    def record(
        self,
        network: nn.Module,
        *,
        run: str,
        time: float,
        time_unit: str = "epoch",
        train_loss: float = math.nan,
        info: dict[str, Any] | None = None,
    ) -> KernelRecord:
        """Measure ``network`` now and store it as ``run`` at ``time`` (e.g. time 0 before training)."""
        kernel, acc = self.measure(network)
        record = KernelRecord(run, time, time_unit, kernel, float(train_loss), acc, dict(info or {}))
        self.recorder.add(record)
        return record

    # -------------------------------------------------------------- hooks
    def on_training_epoch_end(self, *, tag: str, epoch: int, network: nn.Module, train_loss: float) -> None:
        time = epoch + 1
        if self.epochs is None or time in self.epochs:
            self.record(network, run=tag, time=time, train_loss=train_loss)

    def on_synthesis_network_created(self, *, iteration: int, network: nn.Module) -> None:
        if iteration in self.synthesis_iterations:
            self._inner_epochs[iteration] = 0  # also restarts the count when a resumed run redoes it
            if self.synthesis_epochs is None or 0 in self.synthesis_epochs:
                self.record(network, run=f"synthesis/it{iteration}", time=0, info={"iteration": iteration})

    def on_synthesis_network_update(self, *, iteration: int, step: int, epoch: int, network: nn.Module) -> None:
        if iteration not in self.synthesis_iterations:
            return
        time = self._inner_epochs.get(iteration, 0) + 1
        self._inner_epochs[iteration] = time
        if self.synthesis_epochs is None or time in self.synthesis_epochs:
            info = {"iteration": iteration, "step": step, "epoch": epoch}
            self.record(network, run=f"synthesis/it{iteration}", time=time, info=info)
