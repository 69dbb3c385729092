"""dynamics.track / dynamics.figures: the smoke preset end to end, resume, reuse, errors."""

from __future__ import annotations

import csv
import json
import logging
import shutil

import pytest
import torch

from dynamics.figures import main as figures_main
from dynamics.presets import TRACK_PRESETS, TrackPreset, get_track_preset
from dynamics.track import CSV_COLUMNS, apply_overrides, main
from dynamics.tracking import KernelRecorder
from dynamics.velocity import kernel_distance

SMOKE = get_track_preset("smoke")
FIGURES = ("kernel_velocity", "distance_from_init", "test_accuracy", "dynamics", "kernel_heatmaps", "kernel_vs_real")


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("track") / "smoke"
    assert main(["--run", "smoke", "--out", str(out), "--no-progress"]) == 0
    return out


def test_smoke_run_writes_config_csv_kernels_and_figures(smoke_run):
    config = json.loads((smoke_run / "config.json").read_text())
    assert config["preset"]["name"] == "smoke" and config["probe"]["size"] == 20
    assert "test images" in config["test_accuracy_on"]
    rows = _rows(smoke_run / "dynamics.csv")
    assert tuple(rows[0]) == CSV_COLUMNS
    times = [0, 1, 2, 3, 4, 5]  # log schedule up to E + 1 = 5 epochs (0, 1, 2, 3, 5) + the lr drop at E//2 + 2 = 4
    for method in SMOKE.methods:
        for seed in SMOKE.seeds:
            unit = [r for r in rows if r["method"] == method and r["seed"] == str(seed)]
            assert [int(float(r["time"])) for r in unit] == times, (method, seed)
            assert unit[-1]["velocity"] == "" and all(r["velocity"] != "" for r in unit[:-1])
            assert float(unit[0]["distance_from_init"]) == 0.0 and 0 <= float(unit[-1]["test_accuracy"]) <= 1
            assert (smoke_run / "kernels" / f"{method}-seed{seed}.pt").exists()
    for method in SMOKE.condensed_methods:
        assert (smoke_run / "sets" / f"{method}-seed0" / "DONE").exists()
        assert (smoke_run / "sets" / f"{method}-seed0" / "synthesis_kernels.pt").exists()
    assert {r["method"] for r in _rows(smoke_run / "synthesis.csv")} == set(SMOKE.condensed_methods)
    for stem in FIGURES + ("synthesis_velocity",):
        for ext in ("pdf", "png"):
            assert (smoke_run / "figures" / f"{stem}.{ext}").stat().st_size > 1000, (stem, ext)


def test_summary_compares_each_method_with_real_from_the_saved_kernels(smoke_run):
    summary = (smoke_run / "summary.md").read_text()
    assert "DCC − DC per seed" in summary
    real = KernelRecorder.load(smoke_run / "kernels" / "real-seed1.pt")
    dcc = KernelRecorder.load(smoke_run / "kernels" / "dcc-seed1.pt")
    last_real, last_dcc = (rec.records_of(rec.runs()[-1])[-1].kernel for rec in (real, dcc))
    expected = kernel_distance(last_dcc, last_real)
    assert expected > 0
    assert f"| dcc | 1 | {expected:.4f} |" in summary


def test_csv_velocity_equals_the_distance_of_saved_kernels_over_dt(smoke_run):
    rows = [r for r in _rows(smoke_run / "dynamics.csv") if r["method"] == "dcc" and r["seed"] == "1"]
    recorder = KernelRecorder.load(smoke_run / "kernels" / "dcc-seed1.pt")
    records = recorder.records_of("dcc-seed1")
    assert [r.time for r in records] == [float(r["time"]) for r in rows]
    for i in range(len(records) - 1):
        dt = records[i + 1].time - records[i].time
        expected = kernel_distance(records[i].kernel, records[i + 1].kernel) / dt
        assert float(rows[i]["velocity"]) == pytest.approx(expected, rel=1e-12)
        assert float(rows[i + 1]["distance_from_init"]) == pytest.approx(kernel_distance(records[0].kernel, records[i + 1].kernel), rel=1e-12)
    assert recorder.metadata.mode == "trace" and records[0].kernel.shape == (20, 20)
    assert recorder.info["method"] == "dcc" and recorder.info["train_size"] == 10


def test_rerun_skips_finished_units(smoke_run, caplog):
    finished = sorted((smoke_run / "kernels").glob("*.pt")) + sorted((smoke_run / "sets").glob("*/synthetic.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    with caplog.at_level(logging.INFO, logger="dynamics.track"):
        assert main(["--run", "smoke", "--out", str(smoke_run), "--no-progress", "--no-figures"]) == 0
    assert {p: p.stat().st_mtime_ns for p in finished} == stamps
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == len(SMOKE.methods) * len(SMOKE.seeds)


def test_a_finished_study_set_is_reused(smoke_run, tmp_path, caplog):
    study = tmp_path / "study"
    shutil.copytree(smoke_run / "sets" / "dcc-seed0", study / "dcc-ipc1-seed0")
    out = tmp_path / "reuse"
    args = ["--run", "smoke", "--out", str(out), "--set", "methods=dcc", "--seeds", "0", "--reuse-study", str(study), "--no-progress", "--no-figures"]
    with caplog.at_level(logging.INFO, logger="dynamics.track"):
        assert main(args) == 0
    assert any("reusing the synthetic set of study" in r.getMessage() for r in caplog.records)
    assert not (out / "sets").exists()  # nothing was condensed
    assert torch.equal(  # the same set, the same initialisation and data order: the same kernels
        KernelRecorder.load(out / "kernels" / "dcc-seed0.pt").records[-1].kernel,
        KernelRecorder.load(smoke_run / "kernels" / "dcc-seed0.pt").records[-1].kernel,
    )


def test_figures_command_regenerates_into_a_chosen_directory(smoke_run, tmp_path):
    assert figures_main([str(smoke_run), "--out", str(tmp_path / "figs"), "--formats", "png"]) == 0
    assert sorted(p.stem for p in (tmp_path / "figs").glob("*.png")) == sorted(FIGURES + ("synthesis_velocity",))
    assert figures_main([str(tmp_path)]) == 2  # no dynamics.csv


def test_missing_cifar10_offline_exits_2_with_one_line(tmp_path, capsys):
    empty = tmp_path / "data"
    empty.mkdir()
    status = main(["--run", "cifar10", "--data-root", str(empty), "--offline", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("error: ") and "cifar" in err.lower() and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_list_shows_every_preset(capsys):
    assert main(["--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(TRACK_PRESETS)
    assert {"smoke", "fashion-mnist", "cifar10", "cifar100", "svhn", "imagenet32-insect"} <= set(listed)


def test_user_errors_exit_2(smoke_run, capsys):
    assert main(["--run", "smoke", "--set", "nonsense=1"]) == 2
    assert main(["--run", "smok"]) == 2
    assert "did you mean smoke" in capsys.readouterr().err
    # the same directory with different settings would mix two studies
    assert main(["--run", "smoke", "--out", str(smoke_run), "--set", "epochs=7", "--no-progress"]) == 2
    assert "different settings (epochs)" in capsys.readouterr().err


def test_presets_are_valid_and_overridable():
    for preset in TRACK_PRESETS.values():
        assert TrackPreset.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset
        assert {"random", "dc", "dcc"} <= set(preset.methods) or preset.name == "smoke"
    changed = apply_overrides(SMOKE, ["epochs=9", "methods=random,dcc", "seeds=3,4", "real_images=none", "schedule=every:2"])
    assert (changed.epochs, changed.methods, changed.seeds, changed.real_images, changed.schedule) == (9, ("random", "dcc"), (3, 4), None, "every:2")
    fashion = get_track_preset("fashion-mnist")
    assert fashion.probe_per_class * 10 == 50 and fashion.real_images == 500 and fashion.epochs == 100
