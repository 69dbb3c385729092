"""ImageDataset invariants, normalisation arithmetic, the stratified split and channel statistics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from condense.data import ImageDataset
from condense.data.dataset import channel_stats, stratified_split
from condense.errors import CorruptDatasetError


def _dataset(**overrides) -> ImageDataset:
    fields = dict(name="toy", train_images=torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1),
                  train_labels=torch.tensor([0, 1, 1]), test_images=torch.zeros(1, 1, 1, 1, dtype=torch.uint8),
                  test_labels=torch.tensor([0]), class_names=("a", "b"), mean=(0.5,), std=(0.25,))
    return ImageDataset(**{**fields, **overrides})


def test_normalise_is_x_over_255_minus_mean_over_std():
    ds = _dataset()
    x, y = ds.normalised_train()
    assert x.dtype == torch.float32 and x.shape == (3, 1, 1, 1)
    assert torch.allclose(x.flatten(), torch.tensor([-2.0, -1.2, 2.0]))
    assert y.tolist() == [0, 1, 1] and ds.num_classes == 2 and ds.channels == 1 and ds.image_size == (1, 1)


def test_denormalise_inverts_and_clamps():
    ds = _dataset()
    x, _ = ds.normalised_train()
    assert torch.allclose(ds.denormalise(x).flatten(), torch.tensor([0.0, 0.2, 1.0]))
    assert ds.denormalise(torch.tensor([-9.0, 9.0]).view(2, 1, 1, 1)).flatten().tolist() == [0.0, 1.0]


def test_per_channel_statistics_broadcast_over_channels():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    ds = _dataset(train_images=images, train_labels=torch.tensor([0]), test_images=images,
                  test_labels=torch.tensor([1]), mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25))
    assert ds.normalise(images)[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0]


def test_normalise_rejects_float_input():
    with pytest.raises(TypeError, match="uint8"):
        _dataset().normalise(torch.zeros(1, 1, 1, 1))


@pytest.mark.parametrize("overrides, pattern", [
    (dict(train_labels=torch.tensor([0, 1, 2])), "labels outside 0..1"),
    (dict(train_labels=torch.tensor([0, 1, 1], dtype=torch.int32)), "int64"),
    (dict(train_images=torch.zeros(3, 1, 1, 1)), "uint8"),
    (dict(mean=(0.5, 0.5)), "mean/std need 1 channel"),
    (dict(test_images=torch.zeros(1, 1, 2, 2, dtype=torch.uint8)), "differ in shape"),
])
def test_inconsistent_datasets_are_rejected(overrides, pattern):
    with pytest.raises(CorruptDatasetError, match=pattern):
        _dataset(**overrides)


def test_stratified_split_sizes_are_exact_and_proportional():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    train, test = stratified_split(labels, test_size=25, seed=0)
    assert len(test) == 25 and len(train) == 75
    assert torch.bincount(labels[test]).tolist() == [13, 7, 5]  # 12.5, 7.5, 5 by largest remainder
    assert sorted(torch.cat([train, test]).tolist()) == list(range(100))


def test_stratified_split_is_seeded():
    labels = torch.arange(200) % 4
    first, again, other = (stratified_split(labels, 40, seed)[1] for seed in (0, 0, 1))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_channel_stats_match_numpy():
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (37, 3, 5, 4), dtype=np.uint8))
    mean, std = channel_stats(images, chunk=8)
    pixels = images.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, pixels.mean(axis=(0, 2, 3)), atol=1e-4)
    np.testing.assert_allclose(std, pixels.std(axis=(0, 2, 3)), atol=1e-4)
