"""condense.image_motion: displacement and total variation of a set from its rebuilt real start."""

import pytest
import torch

from condense.errors import ConfigError
from condense.image_motion import image_motion, relative_displacement, total_variation
from condense.synthesis import Condenser, condense_dataset
from tests.condense.test_synthesis import tiny_config, tiny_dataset


def test_total_variation_and_displacement_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [3.0, 5.0]]]])  # vertical |3-0|, |5-1| → 3.5; horizontal |1-0|, |5-3| → 1.5
    assert total_variation(x) == pytest.approx(5.0)
    start = torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]])  # norms 5 and 1
    moved = start + torch.tensor([[[[0.0, 5.0]]], [[[0.0, 0.5]]]])  # moves 5 and 0.5 → relative 1 and 0.5
    assert relative_displacement(moved, start) == pytest.approx(0.75)


def test_a_run_is_measured_from_the_images_it_started_from(tmp_path):
    dataset = tiny_dataset()
    config = tiny_config(iterations=2, eval_at=(), method="dc")
    start = Condenser(config, dataset, device="cpu").synthetic.detach().clone()
    final = condense_dataset(config, dataset, tmp_path / "run", device="cpu", progress=False, evaluate=False)
    motion = image_motion(tmp_path / "run", dataset)
    assert motion.method == "dc" and motion.iteration == 2
    assert motion.displacement == pytest.approx(float(((final.images - start).flatten(1).norm(dim=1) / start.flatten(1).norm(dim=1)).mean()), rel=1e-6)
    assert motion.displacement > 0 and motion.total_variation_start == pytest.approx(total_variation(start))
    frozen = condense_dataset(tiny_config(iterations=2, eval_at=(), syn_lr=0.0), dataset, tmp_path / "frozen", device="cpu", progress=False, evaluate=False)
    still = image_motion(tmp_path / "frozen", dataset)
    assert still.displacement == 0.0 and still.total_variation_end == pytest.approx(total_variation(frozen.images))


def test_a_noise_start_or_a_missing_set_is_a_one_line_error(tmp_path):
    dataset = tiny_dataset()
    condense_dataset(tiny_config(iterations=2, eval_at=(), init="noise"), dataset, tmp_path / "noise", device="cpu", progress=False, evaluate=False)
    with pytest.raises(ConfigError, match="real initialisation"):
        image_motion(tmp_path / "noise", dataset)
    with pytest.raises(ConfigError, match="no synthetic set"):
        image_motion(tmp_path / "nothing", dataset)
