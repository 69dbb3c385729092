"""Datasets from a user's path: ImageFolder directories and .npz archives, checked against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from condense.data import load_dataset
from condense.data.userdata import dataset_slug, looks_like_path
from condense.errors import CorruptDatasetError, UnknownDatasetError


def _reference_stats(images_nchw: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images_nchw.astype(np.float64) / 255
    return tuple(np.round(x.mean(axis=(0, 2, 3)), 4)), tuple(np.round(x.std(axis=(0, 2, 3)), 4))


def _write_folder(root, split, class_images):
    for name, images in class_images.items():
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(images):
            Image.fromarray(image).save(root / split / name / f"{k:03d}.png")


def test_image_folder_greyscale(tmp_path):
    rng = np.random.default_rng(0)
    train = {name: rng.integers(0, 256, (n, 6, 7), dtype=np.uint8) for name, n in (("zebra", 3), ("ant", 2), ("cat", 4))}
    test = {"ant": rng.integers(0, 256, (2, 6, 7), dtype=np.uint8), "zebra": rng.integers(0, 256, (1, 6, 7), dtype=np.uint8)}
    _write_folder(tmp_path, "train", train)
    _write_folder(tmp_path, "test", test)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image: ignored")
    ds = load_dataset(str(tmp_path))
    assert ds.class_names == ("ant", "cat", "zebra") and ds.name == str(tmp_path.resolve())
    expected = np.concatenate([train["ant"], train["cat"], train["zebra"]])[:, None]
    assert torch.equal(ds.train_images, torch.from_numpy(expected)) and ds.train_labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert ds.test_labels.tolist() == [0, 0, 2] and torch.equal(ds.test_images[2, 0], torch.from_numpy(test["zebra"][0]))
    assert (ds.mean, ds.std) == _reference_stats(expected)


def test_image_folder_with_one_colour_image_is_read_as_rgb(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    colour = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "train" / "b").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    Image.fromarray(grey).save(tmp_path / "train" / "a" / "0.png")
    Image.fromarray(colour).save(tmp_path / "train" / "b" / "0.png")
    Image.fromarray(colour).save(tmp_path / "test" / "a" / "0.jpg", quality=95)
    ds = load_dataset(str(tmp_path))
    assert ds.train_images.shape == (2, 3, 5, 5) and ds.test_images.shape == (1, 3, 5, 5)
    assert torch.equal(ds.train_images[0], torch.from_numpy(np.stack([grey] * 3)))  # grey replicated into RGB
    assert torch.equal(ds.train_images[1], torch.from_numpy(colour.transpose(2, 0, 1)))
    with Image.open(tmp_path / "test" / "a" / "0.jpg") as decoded:  # JPEG is lossy: compare with Pillow's own decoding
        assert torch.equal(ds.test_images[0], torch.from_numpy(np.array(decoded.convert("RGB")).transpose(2, 0, 1)))


def test_npz_channels_last_with_class_names(tmp_path):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (6, 4, 5, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", train_images=train, train_labels=np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8),
             test_images=test, test_labels=np.array([2, 0]), class_names=np.array(["x", "y", "z"]))
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert ds.train_images.shape == (6, 3, 4, 5) and torch.equal(ds.train_images, torch.from_numpy(train.transpose(0, 3, 1, 2)))
    assert ds.class_names == ("x", "y", "z") and ds.train_labels.dtype == torch.int64 and ds.test_labels.tolist() == [2, 0]
    assert (ds.mean, ds.std) == _reference_stats(train.transpose(0, 3, 1, 2))


def test_npz_without_class_names_numbers_the_classes(tmp_path):
    images = np.random.default_rng(3).integers(0, 256, (4, 3, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", train_images=images, train_labels=np.array([0, 1, 2, 3]), test_images=images[:1], test_labels=np.array([3]))
    assert load_dataset(str(tmp_path / "d.npz")).class_names == ("0", "1", "2", "3")


@pytest.mark.parametrize("change, fragment", [
    ({"train_labels": np.array([0, 1, 5, 0])}, "labels outside 0..2"),
    ({"train_labels": np.array([0, 0, 1, 0])}, "classes without training images: c"),
    ({"train_labels": np.array([0.0, 1, 2, 0])}, "must be (4,) integers"),
    ({"test_images": np.zeros((1, 4, 4), np.uint8)}, "differ in shape"),
    ({"train_images": np.zeros((4, 3, 3, 7), np.uint8)}, "C <= 4"),
    ({"train_images": np.full((4, 3, 3), 7, np.uint8)}, "constant"),
])
def test_npz_layout_errors(tmp_path, change, fragment):
    arrays = {"train_images": np.random.default_rng(4).integers(0, 256, (4, 3, 3), dtype=np.uint8), "train_labels": np.array([0, 1, 2, 0]),
              "test_images": np.zeros((1, 3, 3), np.uint8), "test_labels": np.array([1]), "class_names": np.array(["a", "b", "c"]), **change}
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(CorruptDatasetError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(str(tmp_path / "d.npz"))


def test_image_folder_layout_errors(tmp_path):
    image = np.zeros((4, 4), np.uint8)
    _write_folder(tmp_path, "train", {"a": [image]})
    _write_folder(tmp_path, "test", {"b": [image]})
    with pytest.raises(CorruptDatasetError, match="test has classes that train does not: b"):
        load_dataset(str(tmp_path))
    (tmp_path / "train" / "c").mkdir()
    (tmp_path / "test" / "b").rename(tmp_path / "test" / "a")
    with pytest.raises(CorruptDatasetError, match="train/c holds no images"):
        load_dataset(str(tmp_path))
    (tmp_path / "train" / "c" / "0.png").write_bytes(b"not a png")
    with pytest.raises(CorruptDatasetError, match=r"cannot read image .*0.png"):
        load_dataset(str(tmp_path))


def test_names_and_paths():
    assert not looks_like_path("fashion-mnist") and looks_like_path("data/mine.npz") and looks_like_path("mine.npz")
    assert dataset_slug("fashion-mnist") == "fashion-mnist" and dataset_slug("/data/my set.npz") == "my-set"
    assert dataset_slug("/data/photos/") == "photos"
    with pytest.raises(UnknownDatasetError, match="or the path of an ImageFolder directory or .npz"):
        load_dataset("no-such-dataset")
