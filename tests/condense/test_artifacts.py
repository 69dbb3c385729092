"""Run artifacts: atomic writes, the self-describing synthetic set, the metrics log."""

import json

import pytest
import torch

from condense.artifacts import MetricsLog, SyntheticSet, atomic_write_bytes, save_image_grid
from condense.errors import CondenseError


def make_set():
    return SyntheticSet(images=torch.randn(4, 1, 5, 5), labels=torch.tensor([0, 0, 1, 1]), dataset="tiny", class_names=("a", "b"), mean=(0.5,), std=(0.25,), method="dcc", ipc=2, seed=3, iteration=7, config={"k": 1})


def test_synthetic_set_round_trip_and_denormalisation(tmp_path):
    original = make_set()
    original.save(tmp_path / "s.pt")
    loaded = SyntheticSet.load(tmp_path / "s.pt")
    assert torch.equal(loaded.images, original.images) and torch.equal(loaded.labels, original.labels)
    assert (loaded.dataset, loaded.class_names, loaded.mean, loaded.std, loaded.method, loaded.ipc, loaded.seed, loaded.iteration) == ("tiny", ("a", "b"), (0.5,), (0.25,), "dcc", 2, 3, 7)
    assert loaded.package_version == original.package_version != ""
    expected = (original.images * 0.25 + 0.5).clamp(0, 1)
    torch.testing.assert_close(loaded.denormalised(), expected)


def test_bad_synthetic_set_files_give_clear_errors(tmp_path):
    with pytest.raises(CondenseError, match="no synthetic set"):
        SyntheticSet.load(tmp_path / "missing.pt")
    make_set().save(tmp_path / "s.pt")
    data = (tmp_path / "s.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CondenseError, match="cannot read"):
        SyntheticSet.load(tmp_path / "cut.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CondenseError, match="not a synthetic set"):
        SyntheticSet.load(tmp_path / "other.pt")


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_metrics_log_skips_a_line_cut_by_a_kill_and_truncates_on_resume(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    for it in range(1, 5):
        log.append(event="iteration", iteration=it, loss=float(it))
    with log.path.open("a") as handle:
        handle.write('{"event": "iter')  # a kill in the middle of a write
    assert [r["iteration"] for r in log.read()] == [1, 2, 3, 4]
    log.truncate_after(2)
    assert [r["iteration"] for r in log.read()] == [1, 2]
    assert all(json.loads(line) for line in log.path.read_text().splitlines())


def test_image_grid_is_a_png(tmp_path):
    s = make_set()
    save_image_grid(s.denormalised(), s.labels, tmp_path / "g.png", s.class_names)
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
