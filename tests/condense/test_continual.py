"""Continual learning: class orders, steps, class subsets, the memory, masking, learners, presets,
and the smoke preset end to end (through the CLI) with resume."""

import csv
import json

import pytest
import torch
from torch import nn

from condense.__main__ import main
from condense.continual import (
    CONTINUAL_PRESETS,
    ContinualConfig,
    FreshNetworkPerStep,
    Memory,
    OneNetwork,
    SeenClassMask,
    class_orders,
    class_subset,
    get_continual_preset,
    mask_unseen,
    seen_mask,
    split_into_steps,
)
from condense.continual import run as continual_run
from condense.data import ImageDataset, load_dataset
from condense.errors import ConfigError


def toy_dataset(num_classes: int = 6, per_class: int = 5) -> ImageDataset:
    """Each image is filled with its own index (train) or 200 + index (test), so selections can be traced."""
    g = torch.Generator().manual_seed(0)
    train_labels = torch.arange(num_classes).repeat(per_class)[torch.randperm(num_classes * per_class, generator=g)]
    test_labels = torch.arange(num_classes).repeat(2)
    train = torch.arange(len(train_labels), dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    test = (200 + torch.arange(len(test_labels), dtype=torch.uint8)).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    return ImageDataset("toy", train, train_labels, test, test_labels, tuple(f"c{c}" for c in range(num_classes)), (0.5,), (0.25,))


# ---------------------------------------------------------------------------------- class orders, steps


def test_class_orders_are_seeded_permutations():
    orders = class_orders(100, [0, 1, 2])
    assert all(sorted(order) == list(range(100)) for order in orders)
    assert class_orders(100, [0, 1, 2]) == orders  # fixed by the seed
    assert len({tuple(o) for o in orders}) == 3  # different across seeds
    assert orders[0] != list(range(100))
    assert class_orders(100, [1]) == [orders[1]]  # an order depends on its own seed only


def test_steps_partition_the_classes():
    order = class_orders(10, [3])[0]
    steps = split_into_steps(order, 5)
    assert [len(s) for s in steps] == [2] * 5
    assert [c for s in steps for c in s] == order  # consecutive, disjoint, complete
    assert [len(s) for s in split_into_steps(order, (4, 3, 3))] == [4, 3, 3]
    assert [c for s in split_into_steps(order, (4, 3, 3)) for c in s] == order


@pytest.mark.parametrize("steps", [3, 0, (4, 4), (5, 0, 5), ()])
def test_steps_that_do_not_partition_the_classes_are_config_errors(steps):
    with pytest.raises(ConfigError):
        split_into_steps(list(range(10)), steps)


def test_class_subset_relabels_in_the_given_order_and_round_trips():
    data = toy_dataset()
    subset = class_subset(data, [4, 1, 3])
    sub = subset.dataset
    assert sub.class_names == ("c4", "c1", "c3") and sub.num_classes == 3
    assert sub.mean == data.mean and sub.std == data.std
    assert set(sub.train_labels.tolist()) == {0, 1, 2}
    assert len(sub.train_labels) == 15 and len(sub.test_labels) == 6
    # local label k is global class classes[k]; the images are the parent's images at those positions
    assert torch.equal(subset.to_global(sub.train_labels), data.train_labels[subset.train_indices])
    assert torch.equal(subset.to_global(sub.test_labels), data.test_labels[subset.test_indices])
    assert torch.equal(sub.train_images, data.train_images[subset.train_indices])
    assert torch.equal(sub.train_images[sub.train_labels == 0], data.train_images[data.train_labels == 4])
    assert set(data.train_labels[subset.train_indices].tolist()) == {4, 1, 3}
    capped = class_subset(data, [4, 1], train_per_class=2, test_per_class=1)
    assert torch.bincount(capped.dataset.train_labels).tolist() == [2, 2]
    assert torch.bincount(capped.dataset.test_labels).tolist() == [1, 1]
    first_two = torch.nonzero(data.train_labels == 4).flatten()[:2]
    assert torch.equal(capped.dataset.train_images[capped.dataset.train_labels == 0], data.train_images[first_two])
    with pytest.raises(ConfigError):
        class_subset(data, [1, 1])
    with pytest.raises(ConfigError):
        class_subset(data, [6])


# ---------------------------------------------------------------------------------- memory


def step_images(classes, per_class, start=0):
    """``per_class`` images per class, image i filled with start + i, global labels."""
    labels = torch.tensor(classes).repeat_interleave(per_class)
    images = (start + torch.arange(len(labels), dtype=torch.float32)).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return images, labels


def test_memory_keeps_per_class_images_of_every_seen_class():
    memory = Memory(per_class=3)
    assert memory.size == 0 and memory.classes == ()
    memory.update(*step_images([5, 2], 3))
    assert memory.size == 6 and memory.classes == (5, 2)
    memory.update(*step_images([0, 9], 3, start=100))
    assert memory.size == 3 * 4 == len(memory.images) == len(memory.labels)
    assert memory.classes == (5, 2, 0, 9)
    assert memory.labels.tolist() == [5] * 3 + [2] * 3 + [0] * 3 + [9] * 3
    assert memory.images[memory.labels == 9][:, 0, 0, 0].tolist() == [103.0, 104.0, 105.0]
    memory.resize(2)  # keeps the first two of each class
    assert memory.size == 8 and memory.per_class == 2
    assert memory.images[:, 0, 0, 0].tolist() == [0.0, 1.0, 3.0, 4.0, 100.0, 101.0, 103.0, 104.0]
    assert memory.labels.tolist() == [5, 5, 2, 2, 0, 0, 9, 9]


def test_memory_rejects_what_breaks_its_invariant():
    memory = Memory(per_class=2)
    memory.update(*step_images([1], 2))
    with pytest.raises(ValueError, match="already"):
        memory.update(*step_images([1], 2))
    with pytest.raises(ValueError, match="2 images per class"):
        memory.update(*step_images([3], 1))
    with pytest.raises(ValueError, match="2 images per class"):
        memory.update(*step_images([3], 3))
    with pytest.raises(ValueError):
        memory.resize(3)  # cannot grow
    with pytest.raises(ValueError):
        Memory(per_class=0)
    assert memory.size == 2 and memory.classes == (1,)


# ---------------------------------------------------------------------------------- masking, learners


def test_seen_class_masking_predicts_a_seen_class_even_if_an_unseen_one_scores_highest():
    logits = torch.tensor([[0.1, 0.5, 9.0, 0.2], [3.0, 0.0, 8.0, 7.0], [0.0, 0.0, -1.0, 0.0]])
    seen = seen_mask([0, 1], 4)
    assert logits.argmax(dim=1).tolist() == [2, 2, 0]
    assert mask_unseen(logits, seen).argmax(dim=1).tolist() == [1, 0, 0]
    assert torch.isinf(mask_unseen(logits, seen)[:, 2:]).all()


def test_seen_class_mask_module_masks_at_test_and_optionally_in_training():
    network = nn.Linear(3, 4)
    with torch.no_grad():
        network.weight.zero_()
        network.bias.copy_(torch.tensor([0.0, 1.0, 5.0, 0.0]))
    x = torch.zeros(2, 3)
    masked = SeenClassMask(network, seen_mask([0, 1], 4))
    assert masked.eval()(x).argmax(dim=1).tolist() == [1, 1]
    assert masked.train()(x).argmax(dim=1).tolist() == [2, 2]  # training sees every output by default
    assert SeenClassMask(network, seen_mask([0, 1], 4), mask_training=True).train()(x).argmax(dim=1).tolist() == [1, 1]


def test_gdumb_builds_a_fresh_seeded_network_per_step_and_incremental_keeps_one():
    def factory():
        return nn.Linear(3, 2)

    gdumb, again, incremental = FreshNetworkPerStep(factory, 7), FreshNetworkPerStep(factory, 7), OneNetwork(factory, 7)
    first, second = gdumb.network(0), gdumb.network(1)
    assert first is not second and not torch.equal(first.weight, second.weight)
    assert torch.equal(first.weight, again.network(0).weight)  # seeded
    kept = incremental.network(0)
    assert incremental.network(3) is kept and torch.equal(kept.weight, first.weight)  # same start as GDumb
    assert not torch.equal(FreshNetworkPerStep(factory, 8).network(0).weight, first.weight)


# ---------------------------------------------------------------------------------- config, presets


@pytest.mark.parametrize(
    "changes, fragment",
    [
        (dict(memories=("random", "icarl")), "unknown memory"),
        (dict(memory_per_class=0), "memory_per_class"),
        (dict(training="replay"), "unknown training"),
        (dict(steps=0), "steps"),
        (dict(augmentation="mixup"), "augmentation"),
        (dict(condense_preset="nope-{method}"), "unknown preset"),
        (dict(condense_overrides=dict(nonsense=1)), "condense_overrides"),
    ],
)
def test_bad_continual_configs_are_config_errors(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        get_continual_preset("smoke").config.replace(**changes)


def test_steps_must_divide_the_classes():
    config = ContinualConfig(dataset="cifar100", steps=3)  # valid on its own...
    with pytest.raises(ConfigError, match="do not divide"):
        config.step_sizes(100)  # ...not for 100 classes
    assert ContinualConfig(dataset="cifar100", steps=(50, 25, 25)).step_sizes(100) == (50, 25, 25)


def test_presets():
    assert {"smoke", "fashion-mnist", "cifar100-5steps", "cifar100-10steps"} <= set(CONTINUAL_PRESETS)
    classes = {"sklearn-digits": 10, "fashion-mnist": 10, "cifar100": 100}
    for preset in CONTINUAL_PRESETS.values():
        config = preset.config
        config.step_sizes(classes[config.dataset])
    fmnist = get_continual_preset("fashion-mnist").config
    assert fmnist.step_sizes(10) == (2,) * 5 and fmnist.memories == ("random", "herding", "dc", "dcc")
    for name, steps in (("cifar100-5steps", 5), ("cifar100-10steps", 10)):
        config = get_continual_preset(name).config
        assert config.step_sizes(100) == (100 // steps,) * steps and config.memory_per_class == 20
        assert (config.epochs, config.augmentation, len(config.orders)) == (1000, "dsa", 5)
        for method in ("dc", "dcc", "dsa", "dsac"):
            condense = config.condense_config(method, seed=0)
            assert (condense.method, condense.ipc, condense.steps, condense.epochs_between_steps) == (method, 20, 20, 25)
            assert condense.iterations == 1000 and condense.dataset == "cifar100"
    with pytest.raises(ConfigError, match="unknown continual preset"):
        get_continual_preset("cifar1000")


# ---------------------------------------------------------------------------------- end to end


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_smoke_continual_run_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    out, figures = tmp_path / "cl", tmp_path / "figures"
    argv = ["continual", "--preset", "smoke", "--out", str(out), "--figures", str(figures), "--no-progress", "--offline"]
    assert main(argv) == 0
    assert "| random |" in capsys.readouterr().out
    rows = read_csv(out / "steps.csv")
    assert list(rows[0]) == ["memory", "training", "order_seed", "network", "step", "seen_classes", "memory_size", "accuracy"]
    assert len(rows) == 2 * 2 * 2  # memories × orders × steps
    assert {(r["memory"], r["order_seed"], r["step"]) for r in rows} == {(m, o, s) for m in ("random", "dc") for o in "01" for s in "01"}
    assert all(r["training"] == "gdumb" for r in rows)
    assert {(r["step"], r["seen_classes"], r["memory_size"]) for r in rows} == {("0", "5", "10"), ("1", "10", "20")}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert any(float(r["accuracy"]) > 0.3 for r in rows if r["memory"] == "random")  # above chance (0.2 / 0.1): it learned
    assert (figures / "continual-smoke.png").stat().st_size > 0 and (figures / "continual-smoke.pdf").exists()
    summary = (out / "summary.md").read_text()
    assert "| memory | 5 classes | 10 classes | orders |" in summary and "| dc |" in summary
    assert (out / "order0" / "step1" / "dc" / "synthetic.safetensors").exists()

    # a rerun skips every finished unit and reproduces the table
    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished unit was run again")

    monkeypatch.setattr(continual_run, "run_unit", must_not_run)
    assert main(argv) == 0
    assert read_csv(out / "steps.csv") == rows
    monkeypatch.undo()

    # the incremental learner reuses the cached step memories and starts exactly where GDumb starts
    assert main([*argv, "--training", "incremental", "--memories", "random", "--orders", "0"]) == 0
    both = read_csv(out / "steps.csv")
    incremental = [r for r in both if r["training"] == "incremental"]
    assert len(incremental) == 2
    gdumb_step0 = next(r for r in rows if (r["memory"], r["order_seed"], r["step"]) == ("random", "0", "0"))
    assert incremental[0]["accuracy"] == gdumb_step0["accuracy"]
    assert "## incremental" in (out / "summary.md").read_text()

    # another setting into the same directory is refused
    monkeypatch.setattr(continual_run, "run_unit", must_not_run)
    config = get_continual_preset("smoke").config.replace(epochs=3)
    with pytest.raises(ConfigError, match="different settings"):
        continual_run.run_continual(config, load_dataset("sklearn-digits"), out, figures=None)
    assert json.loads((out / "config.json").read_text())["epochs"] == 50


def test_cli_lists_presets_and_reports_bad_input_in_one_line(capsys, tmp_path):
    assert main(["continual", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "fashion-mnist" in listed and "cifar100-10steps" in listed
    for argv, fragment in ((["--preset", "smoke", "--memories", "random,icarl"], "unknown memory"),
                           (["--preset", "smoke", "--orders", "a,b"], "--orders"),
                           (["--preset", "nope"], "unknown continual preset"),
                           ([], "--preset")):
        assert main(["continual", *argv, "--offline", "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and fragment in err and "\n" not in err
