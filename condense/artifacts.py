"""What a run leaves on disk, written atomically.

A run directory holds::

    config.json        the resolved CondenseConfig
    metrics.jsonl      one JSON object per event (iteration losses, evaluations)
    checkpoint.pt      the state needed to resume (synthetic images, optimiser, iteration)
    synthetic.pt       the latest SyntheticSet (self-describing, see below)
    images_itNNNN.png  de-normalised grids of the synthetic images (classes × ipc)

A :class:`SyntheticSet` carries everything needed to evaluate it later with no other input:
dataset name, class names, normalisation, method, ipc, seed, iteration and package version.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from condense.errors import CondenseError

__all__ = ["SyntheticSet", "atomic_write_bytes", "atomic_torch_save", "atomic_write_json", "MetricsLog", "save_image_grid"]


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(obj: Any, path: str | Path) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class MetricsLog:
    """Append-only ``metrics.jsonl``. Each record is one JSON line, flushed at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, **record: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: drop it
                continue
        return records

    def truncate_after(self, iteration: int) -> None:
        """Keep only records up to ``iteration`` (used on resume so no event is logged twice)."""
        kept = [r for r in self.read() if r.get("iteration", -1) <= iteration]
        atomic_write_bytes(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode())


@dataclass
class SyntheticSet:
    """A condensed (or selected) training set with its own metadata.

    Attributes:
        images: (N, C, H, W) float32, normalised with ``mean``/``std``.
        labels: (N,) int64.
    """

    images: Tensor
    labels: Tensor
    dataset: str
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    method: str
    ipc: int
    seed: int
    iteration: int
    package_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.package_version:
            from condense import __version__

            self.package_version = __version__

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def denormalised(self) -> Tensor:
        """(N, C, H, W) in [0, 1]."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (self.images.detach().cpu() * std + mean).clamp(0, 1)

    def save(self, path: str | Path) -> None:
        record = dataclasses.asdict(self)
        record["images"] = self.images.detach().cpu().clone()
        record["labels"] = self.labels.detach().cpu().clone()
        record["format"] = "condense.SyntheticSet/1"
        atomic_torch_save(record, path)

    @classmethod
    def load(cls, path: str | Path) -> "SyntheticSet":
        path = Path(path)
        if not path.exists():
            raise CondenseError(f"no synthetic set at {path}")
        try:
            record = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
            raise CondenseError(f"cannot read synthetic set {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
        if not isinstance(record, dict) or record.get("format") != "condense.SyntheticSet/1":
            raise CondenseError(f"{path} is not a synthetic set written by this package")
        record.pop("format")
        record["class_names"] = tuple(record["class_names"])
        record["mean"], record["std"] = tuple(record["mean"]), tuple(record["std"])
        return cls(**record)


def save_image_grid(images: Tensor, labels: Tensor, path: str | Path, class_names: tuple[str, ...] = (), max_per_class: int = 10) -> None:
    """Save de-normalised images ``(N, C, H, W)`` in [0, 1] as a PNG grid: one row per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(set(labels.tolist()))
    per_class = [images[labels == c][:max_per_class] for c in classes]
    cols = max(len(p) for p in per_class)
    rows = len(classes)
    fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols + 1.2, 0.9 * rows), squeeze=False)
    for r, (c, imgs) in enumerate(zip(classes, per_class)):
        for k in range(cols):
            ax = axes[r][k]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if k < len(imgs):
                img = imgs[k].permute(1, 2, 0).numpy()
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            if k == 0:
                name = class_names[c] if c < len(class_names) else str(c)
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout(pad=0.1)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
