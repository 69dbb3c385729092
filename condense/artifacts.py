"""What a run leaves on disk, written atomically.

A run directory holds::

    config.json             the resolved CondenseConfig
    metrics.jsonl           one JSON object per event (iteration losses, evaluations)
    checkpoint.pt           the state needed to resume (synthetic images, optimiser, iteration);
                            tensors and plain data only, read back with weights_only=True
    synthetic.safetensors   the latest SyntheticSet (self-describing, see below)
    images_itNNNN.png       de-normalised grids of the synthetic images (classes × ipc)

A :class:`SyntheticSet` carries everything needed to evaluate it later with no other input:
dataset name, class names, normalisation, method, ipc, seed, iteration, config and package
version. It is stored as a ``safetensors`` file — a JSON header and raw tensor bytes, nothing
that can run code — readable without this package::

    from safetensors import safe_open
    with safe_open("runs/x/synthetic.safetensors", "pt") as f:
        images = f.get_tensor("images")              # (N, C, H, W) float32, normalised
        labels = f.get_tensor("labels")              # (N,) int64
        meta = {k: json.loads(v) for k, v in f.metadata().items() if k != "format"}
        meta["class_names"], meta["mean"], meta["std"], meta["config"]

Sets written by earlier versions (``synthetic.pt``, a ``torch.save`` dict) still load, through
``torch.load(weights_only=True)`` (:func:`condense.safeio.load_torch_file`).
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
from condense.safeio import load_torch_file, one_line

__all__ = [
    "SyntheticSet", "SYNTHETIC_FILE", "LEGACY_SYNTHETIC_FILE", "find_synthetic_file",
    "prepare_output_dir", "atomic_write_bytes", "atomic_torch_save", "atomic_write_json", "MetricsLog", "save_image_grid",
]

#: The synthetic set of a run directory (safetensors).
SYNTHETIC_FILE = "synthetic.safetensors"
#: Its name before safetensors (a ``torch.save`` dict); still read.
LEGACY_SYNTHETIC_FILE = "synthetic.pt"
_FORMAT = "condense.SyntheticSet/2"  # safetensors: tensors + JSON metadata
_LEGACY_FORMAT = "condense.SyntheticSet/1"  # torch.save dict
_REQUIRED = ("images", "labels", "dataset", "class_names", "mean", "std", "method", "ipc", "seed", "iteration")


def find_synthetic_file(run_dir: str | Path) -> Path | None:
    """The synthetic set of a run directory: ``synthetic.safetensors``, else a legacy ``synthetic.pt``, else None."""
    for name in (SYNTHETIC_FILE, LEGACY_SYNTHETIC_FILE):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


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


def prepare_output_dir(path: str | Path) -> Path:
    """Create the output directory ``path`` (with parents) and check a file can be written in it.

    Raises:
        CondenseError: one line naming the directory and why (under a regular file, read-only, ...).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CondenseError(f"cannot write to output directory {path}: it is a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CondenseError(f"cannot write to output directory {path}: {exc.strerror or one_line(exc)}") from None
    return path


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
        """Write a ``safetensors`` file (whatever the suffix): tensors ``images``, ``labels``; every
        other field as a JSON string in the header metadata, plus ``format``."""
        from safetensors.torch import save as safetensors_bytes

        metadata = {"format": _FORMAT}
        for f in dataclasses.fields(self):
            if f.name not in ("images", "labels"):
                metadata[f.name] = json.dumps(getattr(self, f.name), sort_keys=True)
        tensors = {
            "images": self.images.detach().to("cpu", torch.float32).contiguous(),
            "labels": self.labels.detach().to("cpu", torch.int64).contiguous(),
        }
        atomic_write_bytes(path, safetensors_bytes(tensors, metadata=metadata))

    @classmethod
    def load(cls, path: str | Path) -> "SyntheticSet":
        """Read a set written by :meth:`save` (safetensors) or by earlier versions (``torch.save``
        dict, read with ``weights_only=True``). The file's content decides, not its suffix.

        Raises:
            CondenseError: one line naming the file — missing, truncated, foreign, incomplete, or
                (legacy files) holding pickled objects that could run code.
        """
        path = Path(path)
        if not path.is_file():
            raise CondenseError(f"no synthetic set at {path}")
        if _looks_like_safetensors(path):
            record = _read_safetensors(path)
        else:
            record = load_torch_file(path, "synthetic set")
            if not isinstance(record, dict) or record.get("format") != _LEGACY_FORMAT:
                raise CondenseError(f"{path} is not a synthetic set written by this package")
            record = dict(record)
            record.pop("format")
        return cls(**_checked_fields(record, path))


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with the 8-byte little-endian header length, then the JSON header ``{``."""
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            record: dict[str, Any] = {k: handle.get_tensor(k) for k in handle.keys() if k in ("images", "labels")}
    except Exception as exc:  # noqa: BLE001 - any failure to parse means a damaged or foreign file
        raise CondenseError(f"cannot read synthetic set {path}: {one_line(exc)} (truncated or not a safetensors file?)") from None
    if metadata.get("format") != _FORMAT:
        raise CondenseError(f"{path} is a safetensors file but not a synthetic set written by this package (format {metadata.get('format')!r})")
    for key, text in metadata.items():
        if key != "format":
            try:
                record[key] = json.loads(text)
            except json.JSONDecodeError:
                raise CondenseError(f"{path}: metadata field {key!r} is not JSON") from None
    return record


def _checked_fields(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """The constructor arguments in ``record``, checked: a bad file fails here with one line, not later."""
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise CondenseError(f"{path} is an incomplete synthetic set: no {', '.join(missing)}")

    def bad(problem: str) -> CondenseError:
        return CondenseError(f"{path} is not a valid synthetic set: {problem}")

    images, labels = record["images"], record["labels"]
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise bad(f"images must be a (N, C, H, W) float tensor, got {getattr(images, 'shape', type(images).__name__)}")
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype != torch.int64 or len(labels) != len(images):
        raise bad(f"labels must be ({len(images)},) int64, got {getattr(labels, 'shape', type(labels).__name__)}")
    names, mean, std = record["class_names"], record["mean"], record["std"]
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise bad("class_names must be a non-empty list of strings")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(names)):
        raise bad(f"labels outside 0..{len(names) - 1}")
    for key, values in (("mean", mean), ("std", std)):
        if not isinstance(values, (list, tuple)) or len(values) != images.shape[1] or not all(isinstance(v, (int, float)) for v in values):
            raise bad(f"{key} must hold {images.shape[1]} number(s), one per channel")
    if not all(v > 0 for v in std):
        raise bad("std must be positive")
    for key in ("dataset", "method"):
        if not isinstance(record[key], str):
            raise bad(f"{key} must be a string")
    for key in ("ipc", "seed", "iteration"):
        if not isinstance(record[key], int) or isinstance(record[key], bool):
            raise bad(f"{key} must be an integer")
    if not isinstance(record.get("config", {}), dict):
        raise bad("config must be a dict")
    known = {f.name for f in dataclasses.fields(SyntheticSet)}
    fields = {k: v for k, v in record.items() if k in known}  # fields of later versions are ignored
    fields["class_names"] = tuple(names)
    fields["mean"], fields["std"] = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    fields["package_version"] = str(fields.get("package_version") or "")
    return fields


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
