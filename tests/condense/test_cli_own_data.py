"""A new user's path: condense an .npz / ImageFolder from the command line with no preset, evaluate
the set (which records where its data lives), and use the same path in baseline, study and track."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from condense.__main__ import main
from condense.artifacts import SyntheticSet
from condense.config import CondenseConfig
from dynamics.track import main as track_main

TINY = ["--set", "iterations=1", "--set", "matching_steps=2", "--set", "network_epochs=1", "--set", "real_batch=4", "--set", "network=convnet-w32",
        "--set", "outer_warmup=0", "--set", "inner_warmup=1", "--set", "eval_at=[1]", "--set", "evaluation.num_networks=1",
        "--set", "evaluation.epochs=1", "--no-progress", "--threads", "1"]


def _arrays(seed: int = 0, classes: int = 3, per_class: int = 12, test_per_class: int = 3, channels: int | None = None):
    """Class c = noise around brightness 60 + 60 c, 8x8 (learnable, so accuracies are meaningful)."""
    rng = np.random.default_rng(seed)
    shape = (8, 8) if channels is None else (8, 8, channels)

    def split(n):
        labels = np.repeat(np.arange(classes), n)
        images = np.clip(60 + 60 * labels[:, None, None] + rng.normal(0, 20, (len(labels), 8, 8)), 0, 255).astype(np.uint8)
        if channels is not None:
            images = np.repeat(images[..., None], channels, axis=-1)
        return images.reshape(len(labels), *shape), labels

    return split(per_class), split(test_per_class)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    (train_x, train_y), (test_x, test_y) = _arrays()
    path = tmp_path_factory.mktemp("data") / "shades.npz"
    np.savez(path, train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y, class_names=np.array(["dark", "mid", "light"]))
    return path


def test_run_on_an_npz_without_a_preset_then_evaluate(tmp_path, npz, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--dataset", str(npz), "--method", "dcc", "--ipc", "2", *TINY]) == 0
    out = tmp_path / "runs" / "shades-ipc2-dcc-seed0"  # default name from the path, not the path itself
    assert "iteration     1  convnet " in capsys.readouterr().out
    synthetic = SyntheticSet.load(out / "synthetic.safetensors")
    assert synthetic.dataset == str(npz.resolve()) and synthetic.class_names == ("dark", "mid", "light") and synthetic.images.shape == (6, 1, 8, 8)
    config = CondenseConfig.from_dict(json.loads((out / "config.json").read_text()))
    paper = CondenseConfig()  # everything not given is the paper's setting
    assert (config.syn_lr, config.network_lr, config.syn_momentum, config.distance) == (paper.syn_lr, paper.network_lr, paper.syn_momentum, paper.distance)
    assert (config.method, config.ipc, config.dataset) == ("dcc", 2, str(npz.resolve()))
    evaluate = ["evaluate", str(out / "synthetic.safetensors"), "--num-networks", "1", "--epochs", "1", "--no-progress", "--threads", "1"]
    assert main(evaluate) == 0  # the set records where its data is
    assert "dcc ipc 2 on" in capsys.readouterr().out
    moved = tmp_path / "moved.npz"
    shutil.copy(npz, moved)
    assert main([*evaluate, "--dataset", str(moved)]) == 0


def test_a_moved_dataset_asks_for_dataset(tmp_path, capsys):
    (train_x, train_y), (test_x, test_y) = _arrays(seed=1)
    path = tmp_path / "gone.npz"
    np.savez(path, train_images=train_x, train_labels=train_y, test_images=test_x, test_labels=test_y)
    assert main(["baseline", "random", "--dataset", str(path), "--ipc", "1", "--out", str(tmp_path / "b"), "--set", "evaluation.epochs=1",
                 "--set", "evaluation.num_networks=1", "--no-progress", "--threads", "1"]) == 0
    path.unlink()
    assert main(["evaluate", str(tmp_path / "b" / "random-ipc1-seed0" / "synthetic.safetensors")]) == 2
    assert "pass --dataset NAME_OR_PATH" in capsys.readouterr().err


def test_image_folder_run_and_study(tmp_path, capsys):
    (train_x, train_y), (test_x, test_y) = _arrays(seed=2, channels=3)
    for split, images, labels in (("train", train_x, train_y), ("test", test_x, test_y)):
        for k, (image, label) in enumerate(zip(images, labels)):
            folder = tmp_path / "photos" / split / ["dark", "mid", "light"][label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{k}.png")
    assert main(["run", "--dataset", str(tmp_path / "photos"), "--method", "dc", "--ipc", "1", "--out", str(tmp_path / "run"), *TINY]) == 0
    synthetic = SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors")
    assert synthetic.class_names == ("dark", "light", "mid") and synthetic.images.shape == (3, 3, 8, 8)  # folder names, sorted
    assert main(["study", "--dataset", str(tmp_path / "photos"), "--methods", "random", "--ipc", "1", "--seeds", "0", "--out", str(tmp_path / "study"),
                 "--set", "evaluation.epochs=1", "--set", "evaluation.num_networks=1", "--no-progress", "--threads", "1"]) == 0
    assert "| random |" in capsys.readouterr().out


def test_track_on_a_path_dataset(tmp_path, npz):
    out = tmp_path / "track"
    assert track_main(["--run", "smoke", "--dataset", str(npz), "--out", str(out), "--seeds", "0", "--set", "methods=random,real",
                       "--set", "epochs=1", "--set", "probe_per_class=1", "--no-progress", "--no-figures", "--threads", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["name"] == str(npz.resolve()) and config["dataset"]["classes"] == ["dark", "mid", "light"]
    assert (out / "kernels" / "random-seed0.pt").exists() and (out / "kernels" / "real-seed0.pt").exists()
