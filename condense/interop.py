"""Exchange with other code: the field's released synthetic sets in, PNG folders out.

**Released sets.** The DC, DSA and DM authors' code (and DCC's, which builds on it) saves
``res_<method>_<dataset>_<model>_<ipc>ipc.pt``::

    torch.save({"data": [[images, labels], ...],        # one pair per experiment
                "accs_all_exps": {model: [accuracy, ...]}}, path)

with ``images: (N, C, H, W) float32`` normalised by the dataset's mean/std and ``labels: (N,)``
int64. :func:`read_released_sets` loads such a file with ``torch.load(weights_only=True)`` (a
pickle that names any class or function is refused before it is built), checks that it holds
only tensors, numbers, strings, lists and dicts, and turns each experiment into a
:class:`~condense.artifacts.SyntheticSet` of a registered (or path) dataset, so our evaluation
protocol can score the authors' sets beside ours. The images are re-normalised when the
authors' mean/std (``source_mean``/``source_std``, default the dataset's) differ from ours: the
DCC code's CIFAR-100 used CIFAR-10's statistics (0.4914, 0.4822, 0.4465)/(0.2023, 0.1994, 0.2010).

**PNG export.** :func:`export_png_folder` writes ``00000.png, 00001.png, ...`` (de-normalised
pixels, greyscale or RGB) and ``labels.csv`` (``file,label,class_name``).

Example::

    sets = read_released_sets("res_DC_CIFAR10_ConvNet_10ipc.pt", load_dataset("cifar10"))
    sets[0].save("converted/exp0.safetensors")
    export_png_folder(sets[0], "converted/exp0-png")
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from condense.artifacts import SyntheticSet, atomic_write_bytes
from condense.data import ImageDataset
from condense.errors import CondenseError
from condense.safeio import load_torch_file

log = logging.getLogger("condense.interop")

__all__ = ["ReleasedName", "parse_released_name", "read_released_sets", "export_png_folder", "AUTHORS_AUGMENTATION"]

#: The evaluation augmentation each method's authors used (DC code: MNIST crop/scale/rotate for DC, DSA for DSA/DM).
AUTHORS_AUGMENTATION: dict[str, str] = {"dc": "none", "dcc": "none", "dsa": "dsa", "dsac": "dsa", "dm": "dsa"}
#: Dataset names in the authors' file names -> registry names.
_DATASET_NAMES = {"mnist": "mnist", "fashionmnist": "fashion-mnist", "svhn": "svhn", "cifar10": "cifar10", "cifar100": "cifar100"}
_NAME = re.compile(r"^res_(?P<method>[A-Za-z0-9]+)_(?P<dataset>[A-Za-z0-9-]+)_(?P<model>[A-Za-z0-9]+)_(?P<ipc>\d+)ipc$")


@dataclass(frozen=True)
class ReleasedName:
    """What a ``res_<method>_<dataset>_<model>_<ipc>ipc.pt`` file name says."""

    method: str  #: lower case, e.g. ``"dc"``, ``"dsa"``, ``"dm"``
    dataset: str | None  #: the registry name when known, e.g. ``"fashion-mnist"``
    model: str
    ipc: int


def parse_released_name(path: str | Path) -> ReleasedName | None:
    """The parts of an authors' result file name, or None when the name has another shape."""
    match = _NAME.match(Path(path).stem)
    if match is None:
        return None
    return ReleasedName(match["method"].lower(), _DATASET_NAMES.get(match["dataset"].lower()), match["model"], int(match["ipc"]))


def _plain(value: Any, where: str) -> None:
    """Refuse anything but tensors, numbers, strings, None, lists, tuples and dicts (recursively)."""
    if isinstance(value, Tensor) or type(value) in (int, float, str, bool, type(None)):
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]")
        return
    if type(value) is dict:
        for key, item in value.items():
            _plain(key, f"{where} key")
            _plain(item, f"{where}[{key!r}]")
        return
    raise CondenseError(f"{where} is a {type(value).__name__}; a released set holds only tensors, numbers, lists and dicts")


def _stats(values: Sequence[float] | None, default: tuple[float, ...], name: str) -> Tensor:
    values = tuple(default if values is None else values)
    if len(values) != len(default):
        raise CondenseError(f"--{name} needs {len(default)} value(s), one per channel, got {len(values)}")
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def _reported(accuracies: Any) -> dict[str, list[float]]:
    """The authors' ``accs_all_exps`` as JSON-able ``{model: [accuracy, ...]}`` (empty if absent or odd)."""
    if not isinstance(accuracies, dict):
        return {}
    out = {}
    for model, values in accuracies.items():
        if isinstance(values, (list, tuple)) and all(isinstance(v, (int, float)) for v in values):
            out[str(model)] = [float(v) for v in values]
    return out


def read_released_sets(
    path: str | Path,
    dataset: ImageDataset,
    *,
    method: str | None = None,
    source_mean: Sequence[float] | None = None,
    source_std: Sequence[float] | None = None,
) -> list[SyntheticSet]:
    """Every experiment of an authors' ``res_*.pt`` file as a :class:`SyntheticSet` of ``dataset``.

    Args:
        path: the file (loaded with ``weights_only=True``; only plain data accepted).
        dataset: the dataset the set was condensed from (class names, mean/std, image shape).
        method: the method's name; default from the file name (``res_DSA_...`` → ``"dsa"``),
            else ``"released"``. Any string is accepted.
        source_mean, source_std: the normalisation the authors applied (default ``dataset``'s).

    Returns:
        One set per experiment: ``seed`` = experiment index, ``ipc`` from the labels, ``config``
        holding the source (file, experiment, model, the authors' reported accuracies) and the
        augmentation the authors evaluated with (``evaluation_augmentation``).
    """
    path = Path(path)
    record = load_torch_file(path, "released synthetic set")
    _plain(record, str(path))
    if not isinstance(record, dict) or not isinstance(record.get("data"), (list, tuple)) or not record["data"]:
        raise CondenseError(f"{path} is not an authors' result file: expected a dict with 'data' = [[images, labels], ...]")
    name = parse_released_name(path)
    method = (method or (name.method if name else "released")).lower()
    mean_s, std_s = _stats(source_mean, dataset.mean, "source-mean"), _stats(source_std, dataset.std, "source-std")
    mean_d, std_d = _stats(None, dataset.mean, "mean"), _stats(None, dataset.std, "std")
    reported = _reported(record.get("accs_all_exps"))
    shape = (dataset.channels, *dataset.image_size)
    sets = []
    for k, pair in enumerate(record["data"]):
        where = f"{path}: experiment {k}"
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, Tensor) for t in pair):
            raise CondenseError(f"{where} is not an [images, labels] pair of tensors")
        images, labels = pair
        if images.dim() != 4 or not images.is_floating_point() or tuple(images.shape[1:]) != shape:
            raise CondenseError(f"{where}: images {tuple(images.shape)} {images.dtype} do not fit {dataset.name} images (N, {', '.join(map(str, shape))}) float")
        if labels.dim() != 1 or labels.is_floating_point() or len(labels) != len(images):
            raise CondenseError(f"{where}: labels must be ({len(images)},) integers, got {tuple(labels.shape)} {labels.dtype}")
        labels = labels.to(torch.int64)
        if labels.numel() == 0 or int(labels.min()) < 0 or int(labels.max()) >= dataset.num_classes:
            raise CondenseError(f"{where}: labels outside 0..{dataset.num_classes - 1} ({dataset.name} has {dataset.num_classes} classes)")
        if not torch.isfinite(images).all():
            raise CondenseError(f"{where}: images hold NaN or infinite values")
        counts = torch.bincount(labels, minlength=dataset.num_classes)
        ipc = int(counts.max())
        if int(counts.min()) != ipc:
            log.warning("%s: classes have %d to %d images; ipc recorded as %d", where, int(counts.min()), ipc, ipc)
        images = ((images.detach().to(torch.float32) * std_s + mean_s) - mean_d) / std_d
        config = {
            "released": {"file": path.name, "experiment": k, "method": method, "model": name.model if name else None,
                         "reported_accuracies": reported},
            "evaluation_augmentation": _authors_augmentation(method, dataset.name),
        }
        sets.append(SyntheticSet(
            images=images.contiguous(), labels=labels.clone(), dataset=dataset.name, class_names=tuple(dataset.class_names),
            mean=tuple(dataset.mean), std=tuple(dataset.std), method=method, ipc=ipc, seed=k, iteration=0, config=config,
        ))
    return sets


def _authors_augmentation(method: str, dataset: str) -> str:
    """DC/DCC: crop/scale/rotate on MNIST, none elsewhere; DSA/DSAC/DM: DSA; unknown methods: none."""
    if method in ("dc", "dcc") and dataset == "mnist":
        return "dc"
    return AUTHORS_AUGMENTATION.get(method, "none")


def export_png_folder(synthetic: SyntheticSet, out: str | Path) -> Path:
    """Write ``<out>/<index:05d>.png`` (de-normalised, 8-bit, greyscale or RGB) and ``<out>/labels.csv``.

    Returns the path of ``labels.csv``. Pixel values are ``round(255 · clamp(x · std + mean, 0, 1))``.
    """
    from PIL import Image

    out = Path(out)
    pixels = (synthetic.denormalised() * 255).round().to(torch.uint8)  # (N, C, H, W)
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["file", "label", "class_name"])
    for index, (image, label) in enumerate(zip(pixels, synthetic.labels.tolist())):
        array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        name = f"{index:05d}.png"
        atomic_write_bytes(out / name, buffer.getvalue())
        writer.writerow([name, label, synthetic.class_names[label]])
    atomic_write_bytes(out / "labels.csv", rows.getvalue().encode())
    return out / "labels.csv"
