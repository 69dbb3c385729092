"""Kernel distance, kernel velocity and distance from initialisation (Fort et al., NeurIPS 2020).

Purpose: summarise how fast a network's empirical NTK (:mod:`dynamics.ntk`) moves during
training, on a fixed probe set. For kernels ``K_t`` recorded at times ``t_0 < t_1 < …``:

    S(K, K') = 1 − ⟨K, K'⟩_F / (‖K‖_F ‖K'‖_F)               kernel distance, in [0, 2]
    v_i      = S(K_{t_i}, K_{t_{i+1}}) / (t_{i+1} − t_i)     kernel velocity of pair i, at t_i
    d(t)     = S(K_{t_0}, K_t)                               distance from initialisation

(Fort et al., "Deep learning versus kernel learning: an empirical study of loss landscape
geometry and the time evolution of the Neural Tangent Kernel", NeurIPS 2020.) The velocity of a
pair is reported at the pair's START time ``t_i``, matching ``v(t) = S(K_t, K_{t+dt}) / dt``.
Kernels of any shape (``trace``, ``diagonal`` or ``full`` mode) are flattened; sums accumulate in
float64. ``S`` is invariant to positive rescaling of either kernel, so it measures the kernel's
direction (its "shape"), not its magnitude.

Every result carries a :class:`KernelMetadata` (kernel mode, probe indices and seed, time unit),
because the DCC paper's exact probe and time axis are unknown and must always be recorded.

Example::

    >>> import torch
    >>> from dynamics.velocity import kernel_distance, trajectory_from_kernels, KernelMetadata
    >>> k0 = torch.eye(2)
    >>> kernel_distance(k0, 3 * k0)                      # scale-invariant
    0.0
    >>> k1 = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    >>> round(kernel_distance(k0, k1), 6)                # 1 - 2 / (sqrt(2) * 2)
    0.292893
    >>> meta = KernelMetadata(mode="trace", time_unit="epoch", probe_indices=[0, 1], probe_seed=0)
    >>> traj = trajectory_from_kernels([(0, k0), (1, k1), (3, k1)], metadata=meta)
    >>> [round(v, 6) for v in traj.velocities.tolist()]  # per pair, at the pair's start time
    [0.292893, 0.0]
    >>> traj.velocity_times.tolist(), round(traj.distances_from_init[-1].item(), 6)
    ([0.0, 1.0], 0.292893)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "KernelMetadata",
    "KernelTrajectory",
    "VelocityCurve",
    "TIME_UNITS",
    "KERNEL_MODES",
    "kernel_distance",
    "kernel_velocity",
    "distance_from_init",
    "kernel_label_alignment",
    "trajectory_from_kernels",
    "class_balanced_probe",
]

TIME_UNITS: tuple[str, ...] = ("step", "epoch", "iteration")
KERNEL_MODES: tuple[str, ...] = ("full", "trace", "diagonal")


def kernel_distance(k1: Tensor, k2: Tensor) -> float:
    """``S = 1 − ⟨K1, K2⟩_F / (‖K1‖_F ‖K2‖_F)`` of two same-shaped kernels, in ``[0, 2]``.

    Any shape (flattened); accumulated in float64. Symmetric, 0 for kernels that are positive
    multiples of each other. Raises ``ValueError`` on a shape mismatch or an all-zero kernel.
    """
    if k1.shape != k2.shape:
        raise ValueError(f"kernels must have the same shape, got {tuple(k1.shape)} and {tuple(k2.shape)}")
    a = k1.detach().reshape(-1).to(torch.float64)
    b = k2.detach().to(a.device).reshape(-1).to(torch.float64)
    na, nb = torch.linalg.vector_norm(a).item(), torch.linalg.vector_norm(b).item()
    if na == 0.0 or nb == 0.0 or not (math.isfinite(na) and math.isfinite(nb)):
        raise ValueError("kernel distance is undefined for an all-zero or non-finite kernel")
    cos = torch.dot(a, b).item() / (na * nb)
    return float(min(2.0, max(0.0, 1.0 - cos)))  # clamp float rounding (cos = 1 + 1e-16)


class VelocityCurve(NamedTuple):
    """Kernel velocity per consecutive pair; ``times[i]`` is the pair's start time ``t_i``."""

    times: Tensor  # (T-1,) float64
    velocities: Tensor  # (T-1,) float64


def _check_times(times: Sequence[float], count: int) -> Tensor:
    t = torch.as_tensor([float(x) for x in times], dtype=torch.float64)
    if t.numel() != count:
        raise ValueError(f"got {count} kernels but {t.numel()} times")
    if count > 1 and not bool((t[1:] > t[:-1]).all()):
        raise ValueError(f"times must be strictly increasing, got {t.tolist()}")
    return t


def kernel_velocity(kernels: Sequence[Tensor], times: Sequence[float]) -> VelocityCurve:
    """``v_i = S(K_i, K_{i+1}) / (t_{i+1} − t_i)`` for each consecutive pair, at time ``t_i``.

    Args:
        kernels: ``T ≥ 2`` same-shaped kernels.
        times: ``T`` strictly increasing times (in the unit recorded in :class:`KernelMetadata`).

    Returns:
        ``VelocityCurve(times=(T-1,), velocities=(T-1,))``, float64; unpacks as a tuple.
    """
    if len(kernels) < 2:
        raise ValueError(f"kernel velocity needs at least 2 kernels, got {len(kernels)}")
    t = _check_times(times, len(kernels))
    v = [kernel_distance(kernels[i], kernels[i + 1]) / (t[i + 1] - t[i]).item() for i in range(len(kernels) - 1)]
    return VelocityCurve(t[:-1].clone(), torch.tensor(v, dtype=torch.float64))


def distance_from_init(kernels: Sequence[Tensor]) -> Tensor:
    """``d_t = S(K_0, K_t)`` for every kernel (``d_0 = 0``): ``(T,)`` float64."""
    if len(kernels) < 1:
        raise ValueError("distance_from_init needs at least one kernel")
    return torch.tensor([kernel_distance(kernels[0], k) for k in kernels], dtype=torch.float64)


def kernel_label_alignment(kernel: Tensor, labels: Tensor) -> float:
    """Centred kernel-label alignment ``1 − S(HKH, HYH)`` of a ``(P, P)`` kernel, in ``[-1, 1]``.

    ``Y[n, m] = 1`` when probe images ``n`` and ``m`` share a class (``labels``: ``(P,)``), ``H =
    I − 11ᵀ/P`` removes the constant part both kernels share (Cortes et al., JMLR 2012). 1 means
    the kernel is a positive multiple of the class structure after centring, 0 that it is
    orthogonal to it; like ``S`` it ignores the kernel's scale.
    """
    if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] != labels.numel():
        raise ValueError(f"need a (P, P) kernel and (P,) labels, got {tuple(kernel.shape)} and {tuple(labels.shape)}")
    size = kernel.shape[0]
    centring = torch.eye(size, dtype=torch.float64) - 1.0 / size
    same_class = (labels.reshape(-1, 1) == labels.reshape(1, -1)).to(torch.float64)
    k = kernel.detach().cpu().to(torch.float64)
    return 1.0 - kernel_distance(centring @ k @ centring, centring @ same_class @ centring)


@dataclass
class KernelMetadata:
    """What a kernel trajectory was computed on; stored with every result.

    Attributes:
        mode: kernel reduction over logits: ``'full'``, ``'trace'`` or ``'diagonal'``.
        time_unit: ``'step'`` (optimiser steps), ``'epoch'`` or ``'iteration'`` (outer
            condensation iterations).
        probe_indices: indices of the probe images in their dataset split.
        probe_seed: seed of the generator that drew the probe (``None`` if not random).
        dataset: dataset name and split, e.g. ``'fashion_mnist/test'`` (optional).
        extra: anything else worth recording (network, implementation, …); JSON-serialisable.
    """

    mode: str
    time_unit: str
    probe_indices: list[int]
    probe_seed: int | None = None
    dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in KERNEL_MODES:
            raise ValueError(f"mode must be one of {', '.join(KERNEL_MODES)}, got {self.mode!r}")
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {', '.join(TIME_UNITS)}, got {self.time_unit!r}")
        if isinstance(self.probe_indices, Tensor):
            self.probe_indices = self.probe_indices.reshape(-1).tolist()
        self.probe_indices = [int(i) for i in self.probe_indices]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelMetadata:
        return cls(**data)


@dataclass
class KernelTrajectory:
    """Kernel distances along training, with what they were computed on.

    Attributes:
        times: ``(T,)`` float64, the times of the kernels.
        distances_from_init: ``(T,)`` float64, ``S(K_0, K_t)``.
        velocity_times: ``(T-1,)`` float64, the start time ``t_i`` of each consecutive pair.
        velocities: ``(T-1,)`` float64, ``S(K_i, K_{i+1}) / (t_{i+1} − t_i)``.
        metadata: :class:`KernelMetadata` or ``None`` when the caller did not give one.
    """

    times: Tensor
    distances_from_init: Tensor
    velocity_times: Tensor
    velocities: Tensor
    metadata: KernelMetadata | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (lists of floats)."""
        return {
            "times": self.times.tolist(),
            "distances_from_init": self.distances_from_init.tolist(),
            "velocity_times": self.velocity_times.tolist(),
            "velocities": self.velocities.tolist(),
            "metadata": None if self.metadata is None else self.metadata.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelTrajectory:
        meta = data.get("metadata")
        return cls(
            times=torch.tensor(data["times"], dtype=torch.float64),
            distances_from_init=torch.tensor(data["distances_from_init"], dtype=torch.float64),
            velocity_times=torch.tensor(data["velocity_times"], dtype=torch.float64),
            velocities=torch.tensor(data["velocities"], dtype=torch.float64),
            metadata=None if meta is None else KernelMetadata.from_dict(meta),
        )


def trajectory_from_kernels(
    timed_kernels: Sequence[tuple[float, Tensor]], metadata: KernelMetadata | None = None
) -> KernelTrajectory:
    """Distances from init and velocities from stored ``(time, kernel)`` pairs.

    The pairs must be in strictly increasing time. One kernel gives a trajectory with no
    velocities.
    """
    if len(timed_kernels) < 1:
        raise ValueError("trajectory_from_kernels needs at least one (time, kernel) pair")
    times = [t for t, _ in timed_kernels]
    kernels = [k for _, k in timed_kernels]
    t = _check_times(times, len(kernels))
    if len(kernels) >= 2:
        vt, v = kernel_velocity(kernels, times)
    else:
        vt, v = torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.float64)
    return KernelTrajectory(t, distance_from_init(kernels), vt, v, metadata)


def class_balanced_probe(labels: Tensor, per_class: int, generator: torch.Generator | None = None) -> Tensor:
    """``per_class`` random indices of every class in ``labels``, sorted by class then index.

    Args:
        labels: ``(N,)`` integer class labels.
        per_class: examples drawn (without replacement) from each class present in ``labels``.
        generator: a seeded CPU ``torch.Generator`` (record its seed in :class:`KernelMetadata`).

    Returns:
        ``(num_classes · per_class,)`` int64 indices into ``labels``.
    """
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive int, got {per_class!r}")
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if labels.is_floating_point():
        raise ValueError("labels must be integers")
    chosen = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).reshape(-1)
        if idx.numel() < per_class:
            raise ValueError(f"class {c} has {idx.numel()} examples, fewer than per_class={per_class}")
        pick = idx[torch.randperm(idx.numel(), generator=generator)[:per_class]]
        chosen.append(pick.sort().values)
    return torch.cat(chosen).to(torch.int64)
