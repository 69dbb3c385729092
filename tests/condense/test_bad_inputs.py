"""Every bad input is one line on stderr, exit status 2, no traceback — through the real CLI.

Each row of :data:`CASES` is a command line (``{tmp}`` = a per-module folder of prepared bad
files) and a fragment the message must contain, naming what is wrong. Commands run in-process
(``condense.__main__.main`` / ``dynamics.track.main``); two rows also run as real subprocesses.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from condense.__main__ import main
from condense.baselines import random_subset
from condense.data import load_dataset
from dynamics.track import main as track_main
from tests.condense import malicious

DIGITS = ["--dataset", "sklearn-digits"]
QUICK = ["--set", "iterations=1", "--set", "matching_steps=2", "--set", "network_epochs=1", "--set", "real_batch=4",
         "--set", "network=convnet-w32", "--set", "eval_at=[]", "--set", "outer_warmup=0", "--set", "inner_warmup=1", "--no-progress", "--threads", "1", "--offline"]
RUN = ["run", *DIGITS, "--method", "dc", "--ipc", "1"]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    """Bad files of every kind, and one finished tiny run (``{tmp}/done``)."""
    root = tmp_path_factory.mktemp("bad")
    digits = load_dataset("sklearn-digits")
    good = random_subset(digits, 1, seed=0)
    good.save(root / "good.safetensors")
    data = (root / "good.safetensors").read_bytes()
    (root / "cut.safetensors").write_bytes(data[: len(data) // 2])
    (root / "garbage.safetensors").write_bytes(b"\x00\x01 not a set at all " * 20)
    save_file({"images": good.images.contiguous()}, str(root / "incomplete.safetensors"), metadata={"format": "condense.SyntheticSet/2", "dataset": '"sklearn-digits"'})
    torch.save({"format": "condense.SyntheticSet/1", "images": good.images}, root / "incomplete.pt")
    malicious.torch_file(root / "evil.pt", root / "pwned", {"format": "condense.SyntheticSet/1"})
    torch.save({"something": torch.zeros(1)}, root / "not-released.pt")
    (root / "a-file").write_text("I am a file, not a directory\n")
    # mnist-style IDX files: truncated gzip / garbage content
    for kind, blob in (("truncated", gzip.compress(np.random.default_rng(1).bytes(4000))[:2000]), ("corrupt", gzip.compress(b"garbage" * 10))):
        home = root / kind / "mnist"
        home.mkdir(parents=True)
        for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            (home / f"{stem}.gz").write_bytes(blob)
    # user datasets
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), "train_labels": np.repeat(np.arange(2), 10),
              "test_images": rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), "test_labels": np.array([0, 1, 0, 1])}
    np.savez(root / "no-labels.npz", **{k: v for k, v in arrays.items() if k != "train_labels"})
    np.savez(root / "float.npz", **{**arrays, "train_images": arrays["train_images"] / 255.0})
    np.savez(root / "ok.npz", **arrays)
    (root / "cut.npz").write_bytes((root / "ok.npz").read_bytes()[:300])
    from PIL import Image

    for split, size in (("train", (8, 8)), ("test", (9, 9))):
        for cls in ("cat", "dog"):
            folder = root / "mixed" / split / cls
            folder.mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / "0.png")
    (root / "no-test" / "train" / "cat").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / "no-test" / "train" / "cat" / "0.png")
    assert main([*RUN, "--out", str(root / "done"), *QUICK]) == 0
    shutil.copytree(root / "done", root / "cut-checkpoint")
    checkpoint = (root / "done" / "checkpoint.pt").read_bytes()
    (root / "cut-checkpoint" / "checkpoint.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    return root


CASES = [
    # unknown names
    ("unknown dataset", ["run", "--dataset", "no-such-set", *QUICK], "unknown dataset 'no-such-set'"),
    ("unknown preset", ["run", "--preset", "no-such-preset", *QUICK], "unknown preset"),
    ("neither preset nor dataset", ["run", *QUICK], "run needs --dataset"),
    ("unknown method", ["run", *DIGITS, "--method", "dx", *QUICK], "unknown method 'dx'; choose one of dc, dsa, dcc, dsac"),
    ("unknown method in --set", [*RUN, *QUICK, "--set", "method=dx"], "method=dx: expected one of dc, dsa, dcc, dsac"),
    ("unknown network", [*RUN, *QUICK, "--set", "network=resnet99"], "unknown network 'resnet99'"),
    ("unknown evaluation network", ["evaluate", "{tmp}/good.safetensors", "--networks", "convnet,vgg99", "--offline"], "unknown network(s) vgg99"),
    ("unknown track preset", ["track", "--run", "no-such"], "unknown"),
    # ipc
    ("ipc 0", ["run", *DIGITS, "--ipc", "0", *QUICK], "ipc must be a positive number"),
    ("ipc negative", ["baseline", "random", *DIGITS, "--ipc", "-3", "--out", "{tmp}/b", "--offline"], "ipc must be a positive number"),
    ("ipc larger than a class", ["run", *DIGITS, "--method", "dc", "--ipc", "200", "--out", "{tmp}/big", *QUICK], "ipc=200 exceeds"),
    ("baseline ipc larger than a class", ["baseline", "random", *DIGITS, "--ipc", "500", "--out", "{tmp}/b", "--offline"], "ipc=500 exceeds"),
    # --set
    ("--set not an integer", [*RUN, *QUICK, "--set", "iterations=abc"], "iterations=abc: expected an integer"),
    ("--set not finite", [*RUN, *QUICK, "--set", "syn_lr=nan"], "syn_lr=nan: expected a finite number"),
    ("--set bad list", [*RUN, *QUICK, "--set", "eval_at=1,x"], "eval_at=1,x: expected"),
    ("--set without =", [*RUN, *QUICK, "--set", "iterations"], "--set expects field=value"),
    ("--set unknown field", [*RUN, *QUICK, "--set", "itrations=3"], "unknown config field 'itrations'"),
    ("--set impossible value", [*RUN, *QUICK, "--set", "evaluation.num_networks=0"], "at least one network"),
    # dataset files
    ("missing dataset files", ["run", "--dataset", "mnist", "--data-root", "{tmp}/empty", *QUICK], "mnist: missing"),
    ("truncated dataset files", ["run", "--dataset", "mnist", "--data-root", "{tmp}/truncated", *QUICK], "(truncated or not gzip?)"),
    ("corrupt dataset files", ["run", "--dataset", "mnist", "--data-root", "{tmp}/corrupt", *QUICK], "wrong or damaged file"),
    ("missing path dataset", ["run", "--dataset", "{tmp}/nothing-here.npz", *QUICK], "no dataset at"),
    ("npz without a key", ["run", "--dataset", "{tmp}/no-labels.npz", *QUICK], "missing train_labels"),
    ("npz of floats", ["run", "--dataset", "{tmp}/float.npz", *QUICK], "must be uint8"),
    ("truncated npz", ["run", "--dataset", "{tmp}/cut.npz", *QUICK], "cut.npz"),
    ("image folder of mixed sizes", ["run", "--dataset", "{tmp}/mixed", *QUICK], "images differ in size"),
    ("image folder without test/", ["baseline", "random", "--dataset", "{tmp}/no-test", "--out", "{tmp}/b"], "no test/ folder"),
    # artifacts
    ("missing set", ["evaluate", "{tmp}/missing.safetensors"], "no synthetic set"),
    ("garbage set", ["evaluate", "{tmp}/garbage.safetensors"], "not a torch file"),
    ("truncated set", ["evaluate", "{tmp}/cut.safetensors"], "cannot read synthetic set"),
    ("incomplete safetensors set", ["evaluate", "{tmp}/incomplete.safetensors"], "incomplete synthetic set: no labels, class_names"),
    ("incomplete legacy set", ["evaluate", "{tmp}/incomplete.pt"], "incomplete synthetic set: no labels"),
    ("malicious set", ["evaluate", "{tmp}/evil.pt"], "refusing to load synthetic set"),
    ("set of another dataset", ["evaluate", "{tmp}/good.safetensors", "--dataset", "{tmp}/ok.npz", "--num-networks", "1", "--epochs", "1"], "does not match"),
    ("convert a foreign file", ["convert", "{tmp}/not-released.pt", *DIGITS, "--out", "{tmp}/c"], "not an authors' result file"),
    ("convert without a dataset", ["convert", "{tmp}/not-released.pt", "--out", "{tmp}/c"], "pass --dataset"),
    ("convert bad --source-mean", ["convert", "{tmp}/not-released.pt", *DIGITS, "--out", "{tmp}/c", "--source-mean", "a,b"], "--source-mean expects"),
    # output directories and runs
    ("--out under a file", [*RUN, "--out", "{tmp}/a-file/run", *QUICK], "cannot write to output directory"),
    ("--out is a file", ["export", "{tmp}/good.safetensors", "--out", "{tmp}/a-file"], "it is a file"),
    ("run directory reused", [*RUN, "--out", "{tmp}/done", *QUICK], "pass --resume"),
    ("resume from a truncated checkpoint", [*RUN, "--out", "{tmp}/cut-checkpoint", "--resume", *QUICK], "cannot read checkpoint"),
    ("resume with another config", [*RUN, "--out", "{tmp}/done", "--resume", *QUICK, "--set", "real_batch=5"], "different config"),
    ("NaN loss", [*RUN, "--out", "{tmp}/nan", *QUICK, "--set", "matching_steps=3", "--set", "syn_lr=1e30"], "matching loss became nan"),
    # machine
    ("impossible device", [*RUN, "--device", "cuda:99", *QUICK], "cuda:99"),
    ("unknown device", [*RUN, "--device", "banana", *QUICK], "unknown device 'banana'"),
    ("zero threads", [*RUN, *QUICK, "--threads", "0"], "--threads must be at least 1"),
    ("negative threads", ["evaluate", "{tmp}/good.safetensors", "--threads", "-2"], "--threads must be at least 1"),
    ("track zero threads", ["track", "--run", "smoke", "--threads", "0"], "--threads must be at least 1"),
    ("track unknown dataset", ["track", "--run", "smoke", "--dataset", "no-such-set", "--out", "{tmp}/t"], "unknown dataset"),
    ("bad shard", ["study", *DIGITS, "--out", "{tmp}/s", "--shard", "3/2"], "shard"),
]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    entry = track_main if argv[0] == "track" else main
    code = entry(argv[1:] if argv[0] == "track" else argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp, capsys, argv, fragment):
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    code, out, err = _run(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip() and " INFO " not in line and " WARNING " not in line]
    assert code == 2, (code, err)
    assert "Traceback" not in err + out
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert not (tmp / "pwned").exists()


def test_the_table_is_broad():
    assert len(CASES) >= 20


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--dataset", "sklearn-digits", "--set", "iterations=abc"], "iterations=abc: expected an integer"),
    (["evaluate", "{tmp}/evil.pt"], "refusing to load synthetic set"),
])
def test_bad_input_in_a_real_process(tmp, argv, fragment):
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    done = subprocess.run([sys.executable, "-m", "condense", *argv, "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and fragment in done.stderr
