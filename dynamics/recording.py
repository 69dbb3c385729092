"""Kernel recordings: the empirical NTKs of one or several runs with their time stamps, on disk.

Purpose: keep what :class:`~dynamics.tracking.KernelTracker` measures so that kernel distances
and velocities (Fort et al., NeurIPS 2020; :mod:`dynamics.velocity`) can be computed, tabled and
plotted long after the run. A :class:`KernelRecord` is one measurement (run, time, kernel,
training loss, test accuracy); a :class:`KernelRecorder` holds them, one per ``(run, time)``, with
the :class:`~dynamics.velocity.KernelMetadata` of the probe they were measured on. It saves
atomically to a ``.pt`` file of tensors and plain data only, and reloads it with
``torch.load(weights_only=True)`` (:func:`condense.safeio.load_torch_file`).

Example (executed by the tests)::

    >>> import pathlib, tempfile
    >>> import torch
    >>> from dynamics.recording import KernelRecord, KernelRecorder
    >>> from dynamics.velocity import KernelMetadata
    >>> recorder = KernelRecorder(KernelMetadata(mode="trace", time_unit="epoch", probe_indices=[4, 9]))
    >>> for time, kernel in [(0, torch.eye(2)), (1, 2 * torch.eye(2)), (3, torch.ones(2, 2))]:
    ...     recorder.add(KernelRecord("demo", time, "epoch", kernel))
    >>> [round(row["distance_from_init"], 3) for row in recorder.rows("demo")]  # S(K_0, K_t)
    [0.0, 0.0, 0.293]
    >>> round(recorder.rows("demo")[1]["velocity"], 3)                          # S(K_1, K_3) / (3 − 1)
    0.146
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "kernels.pt"
    >>> recorder.save(path)
    >>> [r.time for r in KernelRecorder.load(path).records_of("demo")]
    [0, 1, 3]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from condense.artifacts import atomic_torch_save
from condense.errors import CondenseError
from condense.safeio import load_torch_file
from dynamics.velocity import KernelMetadata, KernelTrajectory, trajectory_from_kernels

__all__ = ["KernelRecord", "KernelRecorder"]

_FORMAT = "dynamics.KernelRecorder/1"


@dataclass
class KernelRecord:
    """One kernel measurement.

    Attributes:
        run: which training run (e.g. ``'dcc-seed0'`` or ``'synthesis/it4'``).
        time: when, in ``time_unit`` (epochs finished; 0 = initialisation).
        time_unit: ``'epoch'``, ``'step'`` or ``'iteration'``.
        kernel: the kernel on the CPU, e.g. ``(P, P)`` float32 for ``mode='trace'``.
        train_loss: mean training loss of the epoch just finished (NaN at time 0 / unknown).
        test_accuracy: accuracy on the tracker's test set (NaN when it has none).
        info: JSON-serialisable details (e.g. the synthesis ``iteration``, ``step``, ``epoch``).
    """

    run: str
    time: float
    time_unit: str
    kernel: Tensor
    train_loss: float = math.nan
    test_accuracy: float = math.nan
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run, "time": self.time, "time_unit": self.time_unit, "kernel": self.kernel,
            "train_loss": self.train_loss, "test_accuracy": self.test_accuracy, "info": dict(self.info),
        }


class KernelRecorder:
    """Kernels of one or several runs with their time stamps; saves atomically and reloads.

    Args:
        metadata: what the kernels were computed on (mode, probe, dataset).
        records: initial records.
        info: JSON-serialisable facts about the recording (method, seed, set size, …).
    """

    def __init__(self, metadata: KernelMetadata, records: Sequence[KernelRecord] = (), info: dict[str, Any] | None = None):
        self.metadata = metadata
        self.info: dict[str, Any] = dict(info or {})
        self._records: dict[tuple[str, float], KernelRecord] = {}
        for record in records:
            self.add(record)

    def add(self, record: KernelRecord) -> None:
        """Store ``record``, replacing an earlier one of the same run and time (a resumed loop)."""
        self._records[(record.run, float(record.time))] = record

    @property
    def records(self) -> list[KernelRecord]:
        """All records, by run (first-seen order) then time."""
        order = {run: i for i, run in enumerate(self.runs())}
        return sorted(self._records.values(), key=lambda r: (order[r.run], r.time))

    def runs(self) -> list[str]:
        """Run names in the order they were first recorded."""
        return list(dict.fromkeys(run for run, _ in self._records))

    def records_of(self, run: str) -> list[KernelRecord]:
        """The records of ``run`` in increasing time."""
        found = sorted((r for (name, _), r in self._records.items() if name == run), key=lambda r: r.time)
        if not found:
            raise KeyError(f"no records for run {run!r}; runs: {self.runs()}")
        return found

    def trajectory(self, run: str) -> KernelTrajectory:
        """Distances from the first recorded kernel and velocities of ``run`` (see :mod:`dynamics.velocity`)."""
        records = self.records_of(run)
        return trajectory_from_kernels([(r.time, r.kernel) for r in records], metadata=self.metadata)

    def rows(self, run: str) -> list[dict[str, Any]]:
        """Tidy rows for ``run``: time, time_unit, distance_from_init, velocity, train_loss, test_accuracy.

        ``velocity`` of a row at ``t_i`` is ``S(K_{t_i}, K_{t_{i+1}}) / (t_{i+1} − t_i)``; NaN in the last row.
        """
        records = self.records_of(run)
        traj = self.trajectory(run)
        velocities = traj.velocities.tolist() + [math.nan]
        return [
            {
                "time": r.time, "time_unit": r.time_unit, "distance_from_init": float(d), "velocity": v,
                "train_loss": r.train_loss, "test_accuracy": r.test_accuracy, **r.info,
            }
            for r, d, v in zip(records, traj.distances_from_init.tolist(), velocities)
        ]

    def __len__(self) -> int:
        return len(self._records)

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT, "metadata": self.metadata.to_dict(), "info": dict(self.info),
            "records": [r.to_dict() for r in self.records],
        }

    def save(self, path: str | Path) -> None:
        """Write to ``path`` atomically (readers see the old file or the new one)."""
        atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> KernelRecorder:
        """Read a recorder written by :meth:`save`; :class:`~condense.errors.CondenseError` otherwise."""
        state = load_torch_file(path, "kernel recording")
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise CondenseError(f"{path} is not a kernel recording written by dynamics.recording")
        try:
            records = [KernelRecord(**r) for r in state["records"]]
            return cls(KernelMetadata.from_dict(state["metadata"]), records, state.get("info"))
        except (KeyError, TypeError, ValueError) as exc:
            raise CondenseError(f"{path} is an incomplete kernel recording ({type(exc).__name__}: {exc})".splitlines()[0]) from None
