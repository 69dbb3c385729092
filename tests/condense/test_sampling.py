"""condense.sampling: real batches by class, drawn without replacement, and the synthetic set's start."""

import pytest
import torch

from condense.config import CondenseConfig
from condense.errors import ConfigError
from condense.sampling import ClassSampler, initial_synthetic_images


def _toy(counts=(5, 3, 7)):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    images = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return images, labels


def test_a_class_batch_holds_distinct_images_of_that_class_only():
    images, labels = _toy()
    sampler = ClassSampler(images, labels, 3)
    for c, n in enumerate((5, 3, 7)):
        assert sampler.count(c) == n
        drawn = sampler.draw(c, 4, torch.Generator().manual_seed(c))
        assert len(drawn) == min(4, n) and len(set(drawn.tolist())) == len(drawn)  # without replacement
        assert (labels[drawn] == c).all()
        assert torch.equal(sampler.sample(c, 4, torch.Generator().manual_seed(c)), images[drawn])
    assert sorted(sampler.draw(1, 100, torch.Generator()).tolist()) == torch.nonzero(labels == 1).flatten().tolist()


def test_a_class_without_images_is_a_clear_error():
    images, labels = _toy()
    with pytest.raises(ConfigError, match=r"classes \[3\] have no training images"):
        ClassSampler(images, labels, 4)


def test_real_start_is_ipc_real_images_per_class_in_class_order_and_reproducible():
    images, labels = _toy()
    sampler = ClassSampler(images, labels, 3)
    config = CondenseConfig(dataset="sklearn-digits", method="dc", matching_steps=1, network_epochs=1, ipc=2, seed=3)
    start = initial_synthetic_images(config, sampler, (1, 2, 2), 3)
    assert start.shape == (6, 1, 2, 2)
    index = start[:, 0, 0, 0].long()  # each toy image is filled with its own index
    assert labels[index].tolist() == [0, 0, 1, 1, 2, 2] and len(set(index.tolist())) == 6
    assert torch.equal(start, initial_synthetic_images(config, sampler, (1, 2, 2), 3))
    assert not torch.equal(start, initial_synthetic_images(config.replace(seed=4), sampler, (1, 2, 2), 3))


def test_noise_start_is_standard_normal_and_ipc_beyond_a_class_is_refused():
    images, labels = _toy()
    sampler = ClassSampler(images, labels, 3)
    noise = initial_synthetic_images(CondenseConfig(dataset="sklearn-digits", method="dc", matching_steps=1, network_epochs=1, ipc=4, init="noise"), sampler, (1, 8, 8), 3)
    assert noise.shape == (12, 1, 8, 8) and abs(noise.mean().item()) < 0.2 and abs(noise.std().item() - 1) < 0.2
    with pytest.raises(ConfigError, match=r"ipc=4 exceeds the number of training images of classes \[1\]"):
        initial_synthetic_images(CondenseConfig(dataset="sklearn-digits", method="dc", matching_steps=1, network_epochs=1, ipc=4), sampler, (1, 2, 2), 3)
