"""The evaluation protocol: schedule, determinism, and that it actually trains."""

import pytest
import torch

from condense.config import EvaluationConfig
from condense.errors import ConfigError
from condense.evaluation import evaluate_images, evaluation_augmentation, learning_rates, mean_std
from condense.hooks import Callback
from tests.condense.test_synthesis import tiny_dataset


def test_learning_rate_schedule_matches_the_authors_code():
    rates = learning_rates(300, 0.01)
    assert len(rates) == 301  # E + 1 epochs
    assert rates[:152] == [0.01] * 152  # epochs 0..151 (= E//2 + 1) at the initial rate
    assert rates[152:] == pytest.approx([0.001] * 149)
    assert len(learning_rates(1000, 0.01)) == 1001 and learning_rates(1000, 0.01)[502] == pytest.approx(0.001)


def test_default_epochs_depend_on_augmentation():
    config = EvaluationConfig()
    assert config.resolved_epochs("none") == 300 and config.resolved_epochs("dc") == 300
    assert config.resolved_epochs("dsa") == 1000
    assert EvaluationConfig(epochs=7).resolved_epochs("dsa") == 7


class EpochCounter(Callback):
    def __init__(self):
        self.epochs = []

    def on_training_epoch_end(self, *, tag, epoch, network, train_loss):
        self.epochs.append(epoch)


def test_protocol_trains_to_high_accuracy_on_separable_data_and_is_deterministic():
    data = tiny_dataset(num_classes=3, per_class=12)
    images, labels = data.normalised_train()
    config = EvaluationConfig(networks=("mlp", "convnet-w32"), num_networks=2, epochs=20)
    counter = EpochCounter()
    first = evaluate_images(images, labels, data, config, augmentation="none", seed=0, key="t", device="cpu", callbacks=[counter])
    assert set(first) == {"mlp", "convnet-w32"} and all(len(v) == 2 for v in first.values())
    assert all(acc > 0.9 for accs in first.values() for acc in accs), first  # chance is 1/3
    assert counter.epochs == list(range(21)) * 4  # E + 1 epochs for each of 4 networks
    again = evaluate_images(images, labels, data, config, augmentation="none", seed=0, key="t", device="cpu")
    assert again == first


def test_training_on_one_class_cannot_beat_chance_by_much():
    data = tiny_dataset(num_classes=3, per_class=12)
    images, labels = data.normalised_train()
    only_zero = labels == 0
    result = evaluate_images(images[only_zero], labels[only_zero], data, EvaluationConfig(networks=("mlp",), num_networks=1, epochs=5), augmentation="dsa", seed=0, key="t", device="cpu")
    assert result["mlp"][0] == pytest.approx(1 / 3, abs=0.01)  # predicts class 0 everywhere


def test_augmentations_and_errors():
    assert evaluation_augmentation("none") is None
    x = torch.randn(4, 1, 8, 8)
    for name in ("dsa", "dc"):
        out = evaluation_augmentation(name)(x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and not torch.equal(out, x)
    with pytest.raises(ConfigError):
        evaluation_augmentation("mixup")
    with pytest.raises(ConfigError):
        EvaluationConfig(num_networks=0)


def test_mean_std_is_population_std():
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
