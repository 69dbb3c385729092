"""The original-style evaluation of bench/bench_evaluation.py trains what the package trains.

With one batch per epoch (batch ≥ set size) and no augmentation, the DataLoader's shuffle cannot
change the mean loss, so the reference and the package must reach the same test accuracy from
the same initial network: the benchmark then compares like with like.
"""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

bench_evaluation = pytest.importorskip("bench_evaluation")

from condense.config import EvaluationConfig  # noqa: E402
from condense.evaluation import evaluate_images  # noqa: E402
from tests.condense.test_synthesis import tiny_dataset  # noqa: E402


def test_original_style_evaluation_matches_the_package_on_one_batch_per_epoch():
    # random labels: each network memorises them its own way, so its test accuracy depends on
    # exactly which network was trained how (on the true labels every network scores 100%)
    data = tiny_dataset(num_classes=3, per_class=5, size=28)
    g = torch.Generator().manual_seed(0)
    data = dataclasses.replace(data, train_labels=torch.randint(0, 3, data.train_labels.shape, generator=g), test_labels=torch.randint(0, 3, data.test_labels.shape, generator=g))
    images, labels = data.normalised_train()
    config = EvaluationConfig(num_networks=4, epochs=4)
    reference = bench_evaluation.original_evaluate(images, labels, data.normalised_test(), config, "none", seed=0, device="cpu")
    package = evaluate_images(images, labels, data, config, augmentation="none", seed=0, key="bench", device="cpu")["convnet"]
    assert reference == pytest.approx(package, abs=1e-9)
    assert len(set(package)) > 1  # the networks differ, so equal lists mean equal networks
