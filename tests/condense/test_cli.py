"""The command line: end to end on real Fashion-MNIST at a tiny budget, and one-line errors."""

import pytest

from condense.__main__ import main, parse_overrides
from condense.artifacts import SyntheticSet
from condense.presets import PRESETS, QUICK_REDUCTIONS, get_preset

TINY = ["--set", "iterations=1", "--set", "eval_at=[1]", "--set", "outer_warmup=0", "--set", "inner_warmup=1", "--set", "matching_steps=2",
        "--set", "network_epochs=1", "--set", "real_batch=4", "--set", "network=convnet-w32",
        "--set", "evaluation.num_networks=1", "--set", "evaluation.epochs=1", "--no-progress", "--offline"]


def one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_run_then_evaluate_the_saved_set(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "quick-fashion-mnist-ipc1-dcc", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "iteration     1  convnet-w32" not in printed and "iteration     1  convnet" in printed
    saved = SyntheticSet.load(out / "synthetic.safetensors")
    assert saved.images.shape == (10, 1, 28, 28) and saved.dataset == "fashion-mnist" and saved.iteration == 1
    assert main(["evaluate", str(out / "synthetic.safetensors"), "--networks", "mlp", "--num-networks", "1", "--epochs", "2", "--no-progress", "--offline"]) == 0
    assert "mlp" in capsys.readouterr().out
    # a second run into the same directory must not silently overwrite it
    assert "--resume" in one_line_error(capsys, ["run", "--preset", "quick-fashion-mnist-ipc1-dcc", "--out", str(out), *TINY])
    assert main(["run", "--preset", "quick-fashion-mnist-ipc1-dcc", "--out", str(out), "--resume", *TINY]) == 0


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run", "--preset", "quick-fashion-mnist-ipc1-dc", "--set", "dataset=fashion-mnst"], "fashion-mnist"),
        (["run", "--preset", "quick-fashion-mnist-ipc1-dc", "--set", "ipc=0"], "ipc"),
        (["run", "--preset", "cifar10-ipc10-dcc"], "cifar"),
        (["run", "--preset", "quick-fashion-mnist-ipc1-dc", "--set", "nonsense=1"], "unknown config field"),
        (["run", "--preset", "no-such-preset"], "unknown preset"),
        (["study", "--out", "x", "--shard", "3/2"], "shard"),
        (["evaluate", "missing.pt"], "no synthetic set"),
    ],
)
def test_bad_input_gives_one_line_errors(capsys, tmp_path, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    argv = [*argv, "--offline", "--data-root", str(tmp_path)] if argv[0] != "study" else argv
    assert fragment in one_line_error(capsys, argv)
    assert not (tmp_path / "x").exists()  # a refused command leaves no output directory behind


def test_listing_commands(capsys):
    assert main(["presets", "quick-fashion-mnist-ipc10"]) == 0
    out = capsys.readouterr().out
    assert "quick-fashion-mnist-ipc10-dcc" in out and "paper 1000" in out
    assert main(["datasets"]) == 0
    assert "fashion-mnist" in capsys.readouterr().out


def test_presets_keep_the_paper_settings_exact():
    paper = get_preset("cifar10-ipc10-dcc").config
    assert (paper.iterations, paper.steps, paper.epochs_between_steps, paper.real_batch) == (1000, 10, 50, 256)
    assert (paper.outer_warmup, paper.inner_warmup, paper.syn_lr, paper.syn_momentum, paper.network_lr) == (250, 10, 0.1, 0.5, 0.01)
    assert paper.evaluation.num_networks == 20 and paper.evaluation_iterations == (0, 500, 1000)
    assert get_preset("svhn-ipc50-dsac").config.steps == 50 and get_preset("svhn-ipc50-dsac").config.evaluation_augmentation == "dsa"
    assert get_preset("mnist-ipc1-dc").config.evaluation_augmentation == "dc"
    for name, preset in PRESETS.items():  # every quick preset differs from its paper twin only in the listed fields
        if name.startswith("quick-"):
            changed = set(QUICK_REDUCTIONS[preset.config.ipc]) | {"dataset"}
            twin = get_preset(name.replace("quick-", "").replace("mnist-10k", "mnist").replace("fashion-mnist-upper", "fashion-mnist")).config
            differing = {k for k, v in preset.config.to_dict().items() if twin.to_dict()[k] != v}
            assert differing <= changed, (name, differing)


def test_parse_overrides_types():
    assert parse_overrides(["iterations=3", "eval_at=[1,2]", "evaluation.networks=mlp,convnet", "init=noise"]) == {
        "iterations": 3, "eval_at": (1, 2), "init": "noise", "evaluation": {"networks": ("mlp", "convnet")}}


def test_parse_overrides_accepts_comma_lists_for_tuple_fields():
    assert parse_overrides(["eval_at=1,2", "evaluation.networks=mlp"]) == {"eval_at": (1, 2), "evaluation": {"networks": ("mlp",)}}
