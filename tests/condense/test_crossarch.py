"""Cross-architecture evaluation: network groups, resumable (set, architecture) cells, the table."""

import json

import pytest
import torch

import condense.crossarch as crossarch
from condense.artifacts import SyntheticSet
from condense.baselines import random_subset
from condense.config import EvaluationConfig
from condense.crossarch import cross_architecture_table, find_synthetic_set, resolve_networks, run_cross_architecture
from condense.errors import ConfigError
from condense.evaluation import default_augmentation, evaluate_synthetic_set
from tests.condense.test_synthesis import tiny_config, tiny_dataset


def test_groups_expand_and_unknown_names_fail():
    assert resolve_networks("pool") == ("mlp", "convnet", "lenet", "alexnet", "vgg11", "resnet18")
    assert resolve_networks("mlp, convnet-w32,mlp") == ("mlp", "convnet-w32")
    assert len(resolve_networks("pool,ablations")) == 6 + 14
    with pytest.raises(ConfigError, match="unknown network"):
        resolve_networks("mlp,transformer")


def test_default_augmentation_follows_the_set():
    data = tiny_dataset()
    base = random_subset(data, 2, seed=0)
    assert default_augmentation(base, EvaluationConfig()) == "none"  # a baseline has no condensation config
    dsa = SyntheticSet(**{**base.__dict__, "config": tiny_config(method="dsac").to_dict()})
    assert default_augmentation(dsa, EvaluationConfig()) == "dsa"
    assert default_augmentation(dsa, EvaluationConfig(augmentation="none")) == "none"


def test_cells_match_direct_evaluation_resume_and_shard(tmp_path, monkeypatch):
    data = tiny_dataset(num_classes=3, per_class=6, size=16)
    sets = {}
    for seed in (0, 1):
        run = tmp_path / f"random-seed{seed}"
        run.mkdir()
        random_subset(data, 2, seed=seed).save(run / "synthetic.pt")
        sets[run.name] = find_synthetic_set(run)
    evaluation = EvaluationConfig(num_networks=2, epochs=3)
    out = tmp_path / "out"
    # two shards together cover every pair once
    run_cross_architecture(sets, ("mlp", "convnet-w32"), evaluation, data, out, seed=4, shard=(0, 2), progress=False)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.json")) == ["random-seed0/mlp.json", "random-seed1/mlp.json"]
    run_cross_architecture(sets, ("mlp", "convnet-w32"), evaluation, data, out, seed=4, shard=(1, 2), progress=False)
    record = json.loads((out / "random-seed1" / "convnet-w32.json").read_text())
    direct = evaluate_synthetic_set(SyntheticSet.load(sets["random-seed1"]), data, EvaluationConfig(networks=("convnet-w32",), num_networks=2, epochs=3), augmentation="none", seed=4, key="crossarch-random-seed1", device="cpu")
    assert record["accuracies"] == direct["convnet-w32"]
    assert record["mean"] == pytest.approx(sum(direct["convnet-w32"]) / 2)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished pair was evaluated again")

    monkeypatch.setattr(crossarch, "evaluate_synthetic_set", must_not_run)
    table = run_cross_architecture(sets, ("mlp", "convnet-w32"), evaluation, data, out, seed=4, progress=False)
    lines = table.splitlines()
    assert lines[0] == "| architecture | random-seed0 | random-seed1 |"
    assert lines[3].startswith("| convnet-w32 | ") and f"{100 * record['mean']:.1f} ± {100 * record['std']:.1f}" in lines[3]


def test_table_marks_missing_pairs_and_missing_sets_fail(tmp_path):
    assert cross_architecture_table(tmp_path, ["a"], ["mlp"]).splitlines()[-1] == "| mlp | – |"
    with pytest.raises(ConfigError, match="no synthetic set"):
        find_synthetic_set(tmp_path)
    torch.save({}, tmp_path / "x.pt")
    assert find_synthetic_set(tmp_path / "x.pt") == tmp_path / "x.pt"
