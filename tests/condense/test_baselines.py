"""Coreset baselines: random subsets and herding against a brute-force reference."""

import pytest
import torch

from condense.baselines import herding_indices, herding_subset, random_subset
from condense.errors import ConfigError
from tests.condense.test_synthesis import tiny_dataset


def test_herding_matches_brute_force_greedy():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(9, 3, generator=g)
    mu = features.mean(0)
    picked = []
    for k in range(1, 5):  # hand-written greedy: the next point minimising the running-mean error
        best = min((i for i in range(9) if i not in picked), key=lambda i: float(((mu - (features[picked].sum(0) + features[i]) / k) ** 2).sum()))
        picked.append(best)
    assert herding_indices(features, 4).tolist() == picked


def test_herding_first_pick_is_closest_to_mean_and_full_selection_is_a_permutation():
    features = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-10.0, 0.1], [0.1, 0.0]])
    order = herding_indices(features, 4)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    mu = features.mean(0)
    assert int(order[0]) == int(((features - mu) ** 2).sum(1).argmin())
    with pytest.raises(ConfigError):
        herding_indices(features, 5)


def test_random_subset_is_class_balanced_seeded_and_real():
    data = tiny_dataset(num_classes=3, per_class=12)
    a, b, c = random_subset(data, 4, seed=0), random_subset(data, 4, seed=0), random_subset(data, 4, seed=1)
    assert a.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    train = data.normalise(data.train_images)
    assert all((train == img).flatten(1).all(1).any() for img in a.images)
    assert a.method == "random" and a.ipc == 4
    with pytest.raises(ConfigError, match="exceeds"):
        random_subset(data, 13, seed=0)
    with pytest.raises(ConfigError):
        random_subset(data, 0, seed=0)


def test_herding_subset_runs_end_to_end():
    data = tiny_dataset(num_classes=3, per_class=12)
    chosen = herding_subset(data, 2, seed=0, network="mlp", feature_epochs=1, device="cpu")
    assert chosen.labels.tolist() == [0, 0, 1, 1, 2, 2] and chosen.method == "herding"
    assert len({tuple(x.flatten().tolist()) for x in chosen.images}) == 6  # no duplicates


def test_whole_dataset_baseline_covers_every_training_image(tmp_path):
    from condense.baselines import whole_dataset
    from condense.config import EvaluationConfig
    from condense.study import Cell, final_accuracies, run_cell
    from tests.condense.test_synthesis import tiny_config

    data = tiny_dataset(num_classes=3, per_class=12)
    whole = whole_dataset(data)
    assert len(whole.labels) == 36 and torch.equal(whole.images, data.normalise(data.train_images))
    config = tiny_config(evaluation=EvaluationConfig(networks=("mlp",), num_networks=1, epochs=10))
    run_cell(Cell("whole", 1, 0), config, data, tmp_path, device="cpu", progress=False)
    assert final_accuracies(tmp_path / "whole-ipc1-seed0", "mlp")[0] > 0.9
    assert not (tmp_path / "whole-ipc1-seed0" / "synthetic.pt").exists()
