"""Datasets from a user's own files: an ImageFolder directory or an ``.npz`` archive.

Wherever the package takes a dataset name (``--dataset``, ``CondenseConfig.dataset``,
:func:`condense.data.load_dataset`), a path works too:

* **ImageFolder directory** ``PATH/train/<class>/*.png|jpg`` and ``PATH/test/<class>/*.png|jpg``:
  class names are the ``train`` folder names, sorted (label = position); every image must have
  the same size. Greyscale images (Pillow modes ``1``, ``L``, ``I;16``, ...) give one channel; if
  any image is in colour, all are read as RGB (alpha dropped).
* **``.npz`` archive** (read with ``allow_pickle=False``): ``train_images`` ``(N, H, W)`` or
  ``(N, H, W, C)`` uint8, ``train_labels`` ``(N,)`` integers in ``0..K-1``, ``test_images``,
  ``test_labels``, optionally ``class_names`` ``(K,)`` strings (else ``"0" … "K-1"``).

Mean and std are computed on the training images (per channel, ``[0, 1]`` units). The dataset's
``name`` is the resolved absolute path, so a synthetic set made from it records where to reload
it (``python -m condense evaluate`` accepts ``--dataset`` when the data moved).

Example::

    np.savez("mine.npz", train_images=x, train_labels=y, test_images=xt, test_labels=yt, class_names=np.array(["cat", "dog"]))
    ds = load_dataset("mine.npz")            # ImageDataset(name='/abs/mine.npz', train=(N, C, H, W), ...)
"""
from __future__ import annotations

import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from condense.data.dataset import ImageDataset, channel_stats
from condense.errors import CorruptDatasetError, DatasetNotFoundError

__all__ = ["IMAGE_SUFFIXES", "looks_like_path", "load_path_dataset", "dataset_slug"]

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
_NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def looks_like_path(name: str) -> bool:
    """True when ``name`` names a file or directory rather than a registry entry: it exists, or
    it has a path separator, or it ends in ``.npz``."""
    return os.sep in name or "/" in name or name.endswith(".npz") or Path(name).expanduser().exists()


def dataset_slug(name: str) -> str:
    """A short name for run directories: the registry name, or the path's last part without suffix."""
    if not looks_like_path(name):
        return name
    path = Path(name).expanduser()
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem or path.resolve().name).strip("-.")
    return slug or "dataset"


def load_path_dataset(name: str | os.PathLike) -> ImageDataset:
    """The dataset stored at ``name`` (an ImageFolder directory or an ``.npz``); see the module docstring.

    Raises:
        DatasetNotFoundError: nothing at the path.
        CorruptDatasetError: the layout is wrong (missing split, mixed image sizes, bad labels,
            non-uint8 arrays, pickled objects in the ``.npz``), naming the file.
    """
    path = Path(name).expanduser().resolve()
    if not path.exists():
        raise DatasetNotFoundError(
            f"no dataset at {path}: give a registry name (python -m condense datasets), an ImageFolder "
            "directory (PATH/train/<class>/*.png, PATH/test/<class>/*.png) or an .npz file")
    if path.is_dir():
        return _image_folder(path)
    if path.suffix == ".npz":
        return _npz(path)
    raise CorruptDatasetError(f"{path}: a dataset file must be an .npz archive (or give an ImageFolder directory)")


# ---------------------------------------------------------------------------------------------- npz


def _npz(path: Path) -> ImageDataset:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CorruptDatasetError(f"{path}: a single array, not an .npz archive of {', '.join(_NPZ_KEYS)}")
        with loaded as archive:
            missing = [k for k in _NPZ_KEYS if k not in archive.files]
            if missing:
                raise CorruptDatasetError(
                    f"{path}: missing {', '.join(missing)} (an .npz dataset needs {', '.join(_NPZ_KEYS)}, optional class_names)")
            arrays = {k: archive[k] for k in (*_NPZ_KEYS, "class_names") if k in archive.files}
    except CorruptDatasetError:
        raise
    except ValueError as error:
        if "Object arrays" in str(error):
            raise CorruptDatasetError(f"{path}: holds pickled Python objects, which are never loaded; "
                                      "store class_names as a plain string array (np.array([...], dtype=str))") from None
        raise CorruptDatasetError(f"cannot read {path}: not an .npz archive") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as error:
        raise CorruptDatasetError(f"cannot read {path}: {_short(error)} (truncated or not an .npz?)") from None
    images = {split: _npz_images(arrays[f"{split}_images"], f"{path}: {split}_images") for split in ("train", "test")}
    labels = {split: _npz_labels(arrays[f"{split}_labels"], len(images[split]), f"{path}: {split}_labels") for split in ("train", "test")}
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise CorruptDatasetError(f"{path}: class_names must be a 1-D string array, got {names.dtype} {names.shape}")
        class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    else:
        top = max(int(labels[split].max()) if labels[split].numel() else -1 for split in ("train", "test"))
        class_names = tuple(str(c) for c in range(top + 1))
    return _dataset(path, images, labels, class_names, "user .npz")


def _npz_images(array: np.ndarray, where: str) -> torch.Tensor:
    if array.dtype != np.uint8:
        raise CorruptDatasetError(f"{where} must be uint8 pixels 0..255, got {array.dtype} "
                                  "(convert with np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for [0, 1] floats)")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and 1 <= array.shape[3] <= 4:
        array = array.transpose(0, 3, 1, 2)
    else:
        raise CorruptDatasetError(f"{where} must be (N, H, W) or (N, H, W, C) with C <= 4, got {array.shape}")
    if array.shape[0] == 0:
        raise CorruptDatasetError(f"{where} holds no images")
    if array.shape[1] == 4:  # RGBA: drop alpha, as for image files
        array = array[:, :3]
    return torch.from_numpy(np.ascontiguousarray(array))


def _npz_labels(array: np.ndarray, count: int, where: str) -> torch.Tensor:
    if array.dtype.kind not in "iu" or array.ndim != 1 or array.shape[0] != count:
        raise CorruptDatasetError(f"{where} must be ({count},) integers, got {array.dtype} {array.shape}")
    return torch.from_numpy(array.astype(np.int64))


# -------------------------------------------------------------------------------------- ImageFolder


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted((p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _image_folder(root: Path) -> ImageDataset:
    from PIL import Image, UnidentifiedImageError

    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise CorruptDatasetError(f"{root}: no {split}/ folder (an ImageFolder dataset needs {root}/train/<class>/*.png and {root}/test/<class>/*.png)")
    class_names = tuple(d.name for d in _class_dirs(root / "train"))
    if not class_names:
        raise CorruptDatasetError(f"{root}/train has no class folders")
    unknown = [d.name for d in _class_dirs(root / "test") if d.name not in class_names]
    if unknown:
        raise CorruptDatasetError(f"{root}/test has classes that train does not: {', '.join(unknown[:5])}")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "test"):
        files[split] = []
        for label, name in enumerate(class_names):
            found = _image_files(root / split / name) if (root / split / name).is_dir() else []
            if split == "train" and not found:
                raise CorruptDatasetError(f"{root}/train/{name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files[split] += [(p, label) for p in found]
        if not files[split]:
            raise CorruptDatasetError(f"{root}/{split} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    pictures: dict[str, list] = {"train": [], "test": []}
    size, first = None, None
    for split, entries in files.items():
        for file, _ in entries:
            try:
                with Image.open(file) as image:
                    image.load()
                    picture = image.copy()
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
                raise CorruptDatasetError(f"cannot read image {file}: {_short(error)}") from None
            if size is None:
                size, first = picture.size, file
            elif picture.size != size:
                raise CorruptDatasetError(
                    f"images differ in size: {file} is {picture.size[0]}x{picture.size[1]}, {first} is {size[0]}x{size[1]} "
                    "(resize them all to one size first)")
            pictures[split].append(picture)
    colour = any(p.mode not in _GREY_MODES for ps in pictures.values() for p in ps)
    images = {split: torch.from_numpy(np.stack([_pixels(p, colour) for p in ps])) for split, ps in pictures.items()}
    labels = {split: torch.tensor([label for _, label in entries], dtype=torch.int64) for split, entries in files.items()}
    return _dataset(root, images, labels, class_names, "user ImageFolder")


def _pixels(picture, colour: bool) -> np.ndarray:
    """A Pillow image as ``(C, H, W) uint8``: RGB when ``colour``, else one grey channel (16-bit scaled to 8)."""
    if colour:
        return np.asarray(picture.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    if picture.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(picture, dtype=np.float64)
        scale = 257.0 if values.max(initial=0) > 255 else 1.0
        return np.clip(np.rint(values / scale), 0, 255).astype(np.uint8)[None]
    return np.asarray(picture.convert("L"), dtype=np.uint8)[None]


# ------------------------------------------------------------------------------------------- shared


def _dataset(path: Path, images: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], class_names: tuple[str, ...], kind: str) -> ImageDataset:
    for split in ("train", "test"):
        values = labels[split]
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= len(class_names)):
            raise CorruptDatasetError(f"{path}: {split} labels outside 0..{len(class_names) - 1} ({len(class_names)} classes)")
    counts = torch.bincount(labels["train"], minlength=len(class_names))
    empty = [class_names[c] for c in range(len(class_names)) if counts[c] == 0]
    if empty:
        raise CorruptDatasetError(f"{path}: classes without training images: {', '.join(empty[:5])}")
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise CorruptDatasetError(f"{path}: train images {tuple(images['train'].shape[1:])} and test images "
                                  f"{tuple(images['test'].shape[1:])} differ in shape")
    mean, std = channel_stats(images["train"])
    if min(std) <= 0:
        raise CorruptDatasetError(f"{path}: the training images are constant (std 0); nothing to learn")
    return ImageDataset(
        name=str(path), class_names=class_names, mean=mean, std=std,
        train_images=images["train"].contiguous(), train_labels=labels["train"],
        test_images=images["test"].contiguous(), test_labels=labels["test"],
        note=f"{kind}; mean/std computed on its {len(labels['train'])} training images")


def _short(error: BaseException) -> str:
    return (" ".join(str(error).split()) or type(error).__name__)[:200]
