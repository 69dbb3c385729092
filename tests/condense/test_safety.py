"""Nothing the package reads can run code: a malicious pickle under every loader creates no file
and gives one line; safetensors sets are readable without the package; old ``.pt`` sets still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from condense.__main__ import main
from condense.artifacts import SyntheticSet
from condense.config import CondenseConfig, EvaluationConfig
from condense.data import formats, load_dataset
from condense.data.registry import get_spec
from condense.errors import CondenseError
from condense.interop import read_released_sets
from condense.safeio import UnsafeFileError, load_torch_file
from condense.synthesis import condense_dataset
from dynamics.tracking import KernelRecorder
from tests.condense import malicious

REPO = Path(__file__).resolve().parents[2]
TINY = CondenseConfig(dataset="sklearn-digits", method="dc", ipc=1, network="convnet-w32", iterations=1, matching_steps=2,
                      network_epochs=1, real_batch=4, eval_at=(), evaluation=EvaluationConfig(num_networks=1, epochs=1))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("sklearn-digits")


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text, text
    return text


def _checkpoint(path: Path, marker: Path, digits) -> None:
    run_dir = path.parent
    condense_dataset(TINY, digits, run_dir, resume=True, progress=False, evaluate=False)


def _imagenet32_cache(path: Path, marker: Path, digits) -> None:
    spec = get_spec("imagenet32-automobile")
    root = path.parent.parent
    malicious_cache = spec._cache_path(root / "imagenet32")
    malicious_cache.parent.mkdir(parents=True, exist_ok=True)
    path.rename(malicious_cache)
    load_dataset("imagenet32-automobile", root=root, download=False)  # the cache is refused, the sources are missing


LOADERS = {
    "synthetic set (.pt)": lambda path, marker, digits: SyntheticSet.load(path),
    "checkpoint": _checkpoint,
    "kernel recording": lambda path, marker, digits: KernelRecorder.load(path),
    "released set": lambda path, marker, digits: read_released_sets(path, digits),
    "dataset pickle": lambda path, marker, digits: formats.read_pickle(path),
    "imagenet32 cache": _imagenet32_cache,
    "torch file": lambda path, marker, digits: load_torch_file(path, "file"),
}
FILE_NAMES = {"checkpoint": "run/checkpoint.pt", "imagenet32 cache": "root/x/evil.pt"}
#: what each loader says: a refusal, or (the cache, which is rebuilt when unreadable) that the sources are missing
EXPECTED = {"dataset pickle": "unexpected object", "imagenet32 cache": "missing train_data_batch"}


WRITERS = {"torch.save zip": malicious.torch_file, "legacy pickle": malicious.raw_pickle}
CASES = [(loader, writer) for loader in LOADERS for writer in WRITERS if not (loader == "dataset pickle" and writer == "torch.save zip")]


@pytest.mark.parametrize("loader, writer", CASES, ids=[f"{loader}-{writer}" for loader, writer in CASES])
def test_a_malicious_pickle_runs_no_code_under_any_loader(tmp_path, digits, loader, writer):
    """Dataset pickles are plain pickles, never torch zip files, so that pair is left out."""
    writer = WRITERS[writer]
    marker = tmp_path / "pwned"
    path = tmp_path / FILE_NAMES.get(loader, "evil.pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(path, marker, {"format": "condense.SyntheticSet/1", "data": []})
    with pytest.raises(CondenseError) as caught:
        LOADERS[loader](path, marker, digits)
    assert not marker.exists(), f"{loader}: the pickle ran code"
    assert EXPECTED.get(loader, "refusing to load") in _one_line(caught.value)


def test_refusal_names_the_file_and_the_reason(tmp_path):
    path = malicious.torch_file(tmp_path / "evil.pt", tmp_path / "pwned")
    with pytest.raises(UnsafeFileError, match=r"refusing to load synthetic set .*evil.pt: .*Unsupported global: GLOBAL io.open\), which could run code"):
        SyntheticSet.load(path)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    arrays = {k: np.zeros((2, 4, 4), np.uint8) for k in ("train_images", "test_images")}
    np.savez(tmp_path / "evil.npz", **arrays, train_labels=np.array([0, 1]), test_labels=np.array([0, 1]),
             class_names=np.array([malicious.CreatesFile(marker), "b"], dtype=object))
    with pytest.raises(CondenseError, match="pickled Python objects"):
        load_dataset(str(tmp_path / "evil.npz"))
    assert not marker.exists()


@pytest.mark.parametrize("command", [["evaluate", "{path}"], ["export", "{path}", "--out", "{tmp}/png"], ["convert", "{path}", "--dataset", "sklearn-digits", "--out", "{tmp}/c"]])
def test_cli_refuses_malicious_files_in_one_line(tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    path = malicious.torch_file(tmp_path / "evil.pt", marker, {"format": "condense.SyntheticSet/1"})
    argv = [a.format(path=path, tmp=tmp_path) for a in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: refusing to load") and "\n" not in err and "Traceback" not in err
    assert not marker.exists()


def test_safetensors_set_is_readable_without_the_package(tmp_path):
    from safetensors import safe_open

    original = SyntheticSet(images=torch.randn(4, 1, 3, 3), labels=torch.tensor([0, 0, 1, 1]), dataset="tiny", class_names=("a", "b"),
                            mean=(0.5,), std=(0.25,), method="dcc", ipc=2, seed=3, iteration=7, config={"eval_at": (1, 2), "k": None})
    original.save(tmp_path / "s.safetensors")
    with safe_open(str(tmp_path / "s.safetensors"), framework="pt") as handle:
        images, labels, metadata = handle.get_tensor("images"), handle.get_tensor("labels"), handle.metadata()
    assert torch.equal(images, original.images) and torch.equal(labels, original.labels)
    assert metadata["format"] == "condense.SyntheticSet/2"
    fields = {k: json.loads(v) for k, v in metadata.items() if k != "format"}
    assert fields["class_names"] == ["a", "b"] and fields["mean"] == [0.5] and fields["std"] == [0.25]
    assert (fields["dataset"], fields["method"], fields["ipc"], fields["seed"], fields["iteration"]) == ("tiny", "dcc", 2, 3, 7)
    assert fields["config"] == {"eval_at": [1, 2], "k": None} and fields["package_version"] == original.package_version


def test_sets_in_the_old_torch_format_still_load(tmp_path):
    images = torch.randn(2, 1, 3, 3)
    old = {"images": images, "labels": torch.tensor([0, 1]), "dataset": "tiny", "class_names": ("a", "b"), "mean": (0.5,), "std": (0.25,),
           "method": "dc", "ipc": 1, "seed": 0, "iteration": 4, "package_version": "0.0.9", "config": {"eval_at": (4,)}, "format": "condense.SyntheticSet/1"}
    torch.save(old, tmp_path / "synthetic.pt")
    loaded = SyntheticSet.load(tmp_path / "synthetic.pt")
    assert torch.equal(loaded.images, images) and loaded.iteration == 4 and loaded.package_version == "0.0.9" and loaded.class_names == ("a", "b")


@pytest.mark.parametrize("relative", ["results/study-fashion-mnist/dcc-ipc1-seed0/synthetic.pt", "results/continual-fashion-mnist/order0/step0/dc/synthetic.pt"])
def test_the_committed_legacy_sets_load_with_weights_only(relative):
    path = REPO / relative
    if not path.exists():
        pytest.skip(f"{relative} not in this checkout")
    synthetic = SyntheticSet.load(path)
    assert synthetic.images.shape[1:] == (1, 28, 28) and len(synthetic.labels) == synthetic.ipc * len(set(synthetic.labels.tolist()))


def test_the_committed_kernel_recordings_load_with_weights_only():
    paths = sorted((REPO / "results" / "track-fashion-mnist" / "kernels").glob("*.pt"))
    if not paths:
        pytest.skip("no committed kernel recordings")
    recorder = KernelRecorder.load(paths[0])
    assert len(recorder) > 0
