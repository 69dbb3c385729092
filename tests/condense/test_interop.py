"""The authors' released sets in (``convert``), PNG folders out (``export``), on files the tests
write in the authors' exact structure: ``torch.save({'data': [[images, labels], ...], 'accs_all_exps': {...}})``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from condense.__main__ import main
from condense.artifacts import SyntheticSet
from condense.data import load_dataset
from condense.errors import CondenseError
from condense.interop import export_png_folder, parse_released_name, read_released_sets


@pytest.fixture(scope="module")
def digits():
    return load_dataset("sklearn-digits")


def _authors_file(path, digits, experiments=2, ipc=2, mean=None, std=None):
    """What the DC/DSA/DM code's torch.save writes: per experiment, ipc real images per class, normalised."""
    images = digits.train_images.float() / 255
    mean = torch.tensor(mean or digits.mean).view(1, -1, 1, 1)
    std = torch.tensor(std or digits.std).view(1, -1, 1, 1)
    data = []
    for k in range(experiments):
        idx = torch.cat([torch.nonzero(digits.train_labels == c).flatten()[k * ipc:(k + 1) * ipc] for c in range(10)])
        labels = torch.tensor(np.array([np.ones(ipc) * i for i in range(10)]), dtype=torch.long).view(-1)  # as the authors build them
        data.append([((images[idx] - mean) / std).clone(), labels])
    torch.save({"data": data, "accs_all_exps": {"ConvNet": [0.61, 0.63]}}, path)
    return data


def test_file_names_parse():
    name = parse_released_name("res_DSA_FashionMNIST_ConvNet_10ipc.pt")
    assert (name.method, name.dataset, name.model, name.ipc) == ("dsa", "fashion-mnist", "ConvNet", 10)
    assert parse_released_name("res_DM_CIFAR100_ConvNet_50ipc.pt").dataset == "cifar100"
    assert parse_released_name("res_DC_TinyImageNet_ConvNet_1ipc.pt").dataset is None
    assert parse_released_name("synthetic.pt") is None


def test_each_experiment_becomes_a_set_with_the_same_pixels(tmp_path, digits):
    data = _authors_file(tmp_path / "res_DM_digits_ConvNet_2ipc.pt", digits)
    sets = read_released_sets(tmp_path / "res_DM_digits_ConvNet_2ipc.pt", digits)
    assert len(sets) == 2
    for k, (synthetic, (images, labels)) in enumerate(zip(sets, data)):
        torch.testing.assert_close(synthetic.images, images, rtol=0, atol=1e-6)
        assert torch.equal(synthetic.labels, labels) and synthetic.ipc == 2 and synthetic.seed == k
        assert (synthetic.method, synthetic.dataset, synthetic.class_names, synthetic.mean) == ("dm", "sklearn-digits", digits.class_names, digits.mean)
        assert synthetic.config["released"]["reported_accuracies"] == {"ConvNet": [0.61, 0.63]}
        assert synthetic.config["evaluation_augmentation"] == "dsa"  # the DM code evaluates with DSA


def test_other_normalisation_is_converted_to_the_datasets(tmp_path, digits):
    _authors_file(tmp_path / "res.pt", digits, mean=[0.1], std=[0.5])
    (synthetic, _) = read_released_sets(tmp_path / "res.pt", digits, method="DC", source_mean=[0.1], source_std=[0.5])
    first = torch.nonzero(digits.train_labels == 0).flatten()[:2]
    expected = digits.normalise(digits.train_images[first])  # the same pixels under the dataset's own mean/std
    torch.testing.assert_close(synthetic.images[:2], expected, rtol=0, atol=1e-5)
    assert synthetic.method == "dc" and synthetic.config["evaluation_augmentation"] == "none"


@pytest.mark.parametrize("record, fragment", [
    ({"data": [[torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)]]}, "do not fit"),
    ({"data": [[torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 2, 99])]]}, "labels outside"),
    ({"data": [[torch.zeros(4, 1, 8, 8), torch.zeros(4)]]}, "labels must be"),
    ({"data": [[torch.full((2, 1, 8, 8), float("nan")), torch.tensor([0, 1])]]}, "NaN"),
    ({"data": [torch.zeros(2, 1, 8, 8)]}, "not an [images, labels] pair"),
    ({"accs_all_exps": {}}, "not an authors' result file"),
    ({"data": [[torch.zeros(2, 1, 8, 8), torch.tensor([0, 1])]], "extra": torch.Size([1, 2])}, "Size"),
])
def test_malformed_released_files_are_refused(tmp_path, digits, record, fragment):
    torch.save(record, tmp_path / "res.pt")
    with pytest.raises(CondenseError, match=fragment.replace("[", r"\[")):
        read_released_sets(tmp_path / "res.pt", digits)


def test_convert_then_evaluate_and_export_from_the_command_line(tmp_path, digits, capsys):
    path = tmp_path / "res_DC_digits_ConvNet_2ipc.pt"
    _authors_file(path, digits)
    assert main(["convert", str(path), "--dataset", "sklearn-digits", "--out", str(tmp_path / "conv")]) == 0
    printed = capsys.readouterr().out
    assert "exp0.safetensors: dc ipc 2, 20 images" in printed and "ConvNet 62.00 %" in printed
    assert main(["evaluate", str(tmp_path / "conv" / "exp1.safetensors"), "--networks", "mlp", "--num-networks", "1", "--epochs", "1",
                 "--no-progress", "--threads", "1"]) == 0
    assert "dc ipc 2 on sklearn-digits" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "conv" / "exp0.safetensors"), "--out", str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 20


def test_export_writes_the_denormalised_pixels_and_labels(tmp_path):
    images = torch.rand(3, 3, 4, 5) * 2 - 1  # some values fall outside [0, 1] after de-normalising: clamped
    synthetic = SyntheticSet(images=images, labels=torch.tensor([2, 0, 1]), dataset="x", class_names=("a", "b", "c"),
                             mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), method="dcc", ipc=1, seed=0, iteration=0)
    export_png_folder(synthetic, tmp_path)
    with open(tmp_path / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"file": "00000.png", "label": "2", "class_name": "c"}, {"file": "00001.png", "label": "0", "class_name": "a"},
                    {"file": "00002.png", "label": "1", "class_name": "b"}]
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1), torch.tensor([0.2, 0.3, 0.4]).view(3, 1, 1)
    for k, row in enumerate(rows):
        with Image.open(tmp_path / row["file"]) as picture:
            assert picture.mode == "RGB" and picture.size == (5, 4)
            pixels = torch.from_numpy(np.array(picture)).permute(2, 0, 1)
        expected = ((images[k] * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        assert torch.equal(pixels, expected)
