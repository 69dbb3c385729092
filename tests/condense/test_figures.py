"""condense.figures and condense.warmup_ablation: aggregation, files written, missing inputs, the warm-up rule."""

import json
import math

import pytest
import torch

from condense.artifacts import MetricsLog, SyntheticSet
from condense.errors import ConfigError
from condense.figures import PaperFigureConfig, class_mosaic, make_paper_figures, read_study
from condense.figures.__main__ import main
from condense.matching import MatchingObjective, matching_objective
from condense.study import finished_cells
from condense.warmup_ablation import classwise_share, get_ablation_preset, read_warmup_ablation, variant_config


def _cell(study, name, accuracies, *, iterations=15, done=True, images=None):
    """A study cell with one final evaluation of ``accuracies`` (and an earlier one that must be ignored)."""
    run = study / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"iterations": iterations} if iterations else {"baseline": "random"}))
    log = MetricsLog(run / "metrics.jsonl")
    log.append(event="evaluation", iteration=0, network="convnet", accuracies=[0.1], mean=0.1, std=0.0)
    log.append(event="evaluation", iteration=iterations or 0, network="convnet", accuracies=accuracies, mean=0.0, std=0.0)
    if images is not None:
        SyntheticSet(images=images, labels=torch.arange(2).repeat_interleave(len(images) // 2), dataset="toy", class_names=("a", "b"),
                     mean=(0.5,), std=(0.5,), method=name.split("-")[0], ipc=len(images) // 2, seed=0, iteration=iterations or 0).save(run / "synthetic.pt")
    if done:
        (run / "DONE").write_text("1\n")


@pytest.fixture
def study(tmp_path):
    study = tmp_path / "results" / "study-toy"
    images = torch.zeros(2, 1, 4, 4)
    _cell(study, "dc-ipc1-seed0", [0.5, 0.7], images=images)
    _cell(study, "dc-ipc1-seed1", [0.6])
    _cell(study, "dcc-ipc1-seed0", [0.8, 0.8], images=images)
    _cell(study, "dcc-ipc1-seed1", [0.2], done=False)  # unfinished: ignored
    _cell(study, "random-ipc1-seed0", [0.4], iterations=None)
    return study


def test_study_table_is_mean_and_population_std_over_networks_and_seeds(study):
    results = read_study(study)
    assert [c.name for c in finished_cells(study)] == ["dc-ipc1-seed0", "dc-ipc1-seed1", "dcc-ipc1-seed0", "random-ipc1-seed0"]
    dc = results.summaries[("dc", 1)]
    assert dc.accuracies == (0.5, 0.7, 0.6)
    assert dc.mean == pytest.approx(0.6) and dc.std == pytest.approx(math.sqrt(0.02 / 3))
    assert dc.seed_means == {0: pytest.approx(0.6), 1: pytest.approx(0.6)}
    assert results.summaries[("dcc", 1)].accuracies == (0.8, 0.8)  # the unfinished seed 1 is left out
    assert "| dc | 60.0 ± 8.2 (n=3, 2 seeds) |" in results.table
    assert "| dcc | 80.0 ± 0.0 (n=2, 1 seeds) |" in results.table
    assert results.methods == ["random", "dc", "dcc"] and results.reduced


def test_paper_figures_from_a_hand_made_results_dir(study, tmp_path):
    out = tmp_path / "figures"
    config = PaperFigureConfig(results=study.parent, runs=tmp_path / "runs", out=out, study="study-toy", grid_ipcs=(1,), run_missing=False)
    report = make_paper_figures(config)
    for stem in ("study", "images_ipc1"):
        for ext in ("pdf", "png"):
            assert (out / f"{stem}.{ext}").stat().st_size > 1000, (stem, ext)
    index = (out / "paper_figures.md").read_text()
    assert "60.0 ± 8.2" in index and "reduced budget: ipc 1 15 iterations (paper 1000)" in index
    # the missing inputs give notes that say what to run, and nothing is drawn for them
    assert any("study-fashion-mnist-upper" in n and "python -m condense study" in n for n in report.notes)
    assert any("warm-up ablation" in n and "warmup-ablation-fashion-mnist" in n for n in report.notes)
    assert not (out / "fine_grained.png").exists() and not (out / "warmup_ablation.png").exists()


def test_scratch_inputs_are_used_with_a_note(study, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    study.rename(runs / "study-toy")
    report = make_paper_figures(PaperFigureConfig(results=tmp_path / "results", runs=runs, out=tmp_path / "f", study="study-toy",
                                                  grid_ipcs=(), run_missing=False), only=("study",))
    assert (tmp_path / "f" / "study.png").exists()
    assert any("scratch, not yet stored" in n for n in report.notes)


def test_empty_study_dir_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no finished study cell"):
        read_study(tmp_path / "empty")


def test_cli_reports_missing_inputs_and_rejects_unknown_parts(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "r"), "--runs", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--no-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("note:") == 5 and str(tmp_path / "o" / "paper_figures.md") in printed
    assert main(["--results", str(tmp_path / "r"), "--out", str(tmp_path / "o"), "--stored-only"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("note:") == 5 and "--stored-only" not in printed and "under " + str(tmp_path / "r") + "/;" in printed
    assert main(["--only", "study,bogus", "--out", str(tmp_path / "o")]) == 2
    assert "unknown parts ['bogus']" in capsys.readouterr().err


def test_class_mosaic_places_each_image_in_its_class_row():
    images = torch.stack([torch.full((1, 2, 3), v) for v in (0.1, 0.2, 0.3)])  # (3, 1, 2, 3)
    mosaic = class_mosaic(images, torch.tensor([1, 0, 1]), num_classes=2, per_class=2)
    assert mosaic.shape == (2 * 3 - 1, 2 * 4 - 1, 1)
    assert mosaic[0, 0, 0] == pytest.approx(0.2) and mosaic[0, 4, 0] == 1.0  # class 0: one image, then white
    assert mosaic[3, 0, 0] == pytest.approx(0.1) and mosaic[3, 4, 0] == pytest.approx(0.3)
    assert mosaic[2, 0, 0] == 1.0  # the padding row


@pytest.mark.parametrize("variant, expected", [("dc", "all"), ("none", 0), ("outer", "O*K"), ("inner", "N*I"), ("bilevel", "O*I")])
def test_variants_put_the_class_wise_region_where_their_names_say(variant, expected):
    preset = get_ablation_preset("fashion-mnist")
    config = variant_config(preset, variant, seed=3)
    n, k = config.iterations, config.steps
    outer, inner = round(0.25 * n), round(0.5 * k)
    classwise = sum(matching_objective(it, step, config.outer_warmup, config.inner_warmup) is MatchingObjective.CLASSWISE
                    for it in range(n) for step in range(k))
    want = {"all": n * k, 0: 0, "O*K": outer * k, "N*I": n * inner, "O*I": outer * inner}[expected]
    assert config.seed == 3 and config.init == "noise"
    assert config.method == ("dc" if variant == "dc" else "dcc")
    if variant != "dc":  # DC never consults the warm-up fields
        assert classwise == want and classwise_share(config) == want / (n * k)


def test_missing_ablation_runs_the_smoke_preset_and_is_drawn(tmp_path):
    config = PaperFigureConfig(results=tmp_path / "results", runs=tmp_path / "runs", out=tmp_path / "f",
                               ablation_when_missing="smoke", formats=("png",))
    report = make_paper_figures(config, only=("warmup",))
    assert (tmp_path / "f" / "warmup_ablation.png").stat().st_size > 1000
    results = read_warmup_ablation(tmp_path / "runs" / "warmup-ablation-smoke")
    assert [r.variant for r in results] == ["dc", "none", "inner", "outer", "bilevel"]
    assert all(0.0 <= a <= 1.0 for r in results for a in r.accuracies) and all(len(r.accuracies) == 1 for r in results)
    assert results[1].outer_warmup == 0 and results[0].outer_warmup is None
    assert any("ran preset 'smoke'" in n for n in report.notes)
    assert [r.classwise_share for r in results] == [1.0, 0.0, 0.5, 0.25, 0.125]  # smoke: 4 iterations x K=4, O=1, I=2
    assert "| DCC, no warm-up | 0 | 0 | 0.0 % |" in (tmp_path / "f" / "paper_figures.md").read_text()


def test_per_seed_table_shows_the_real_start_the_last_evaluation_and_dcc_minus_dc(study):
    from condense.study import Cell, per_seed_table

    cells = [Cell(m, 1, s) for s in (0, 1) for m in ("dc", "dcc")]
    table = per_seed_table(study, cells)
    lines = table.splitlines()
    assert lines[0] == "| ipc | seed | iteration 0 (real init) | dc | dcc | DCC − DC | DSAC − DSA |"
    # seed 0: both start at 10 %, DC ends at mean(50, 70) = 60, DCC at 80; seed 1: DCC is unfinished
    assert lines[2] == "| 1 | 0 | 10.00 | 60.00 | 80.00 | +20.00 | – |"
    assert lines[3] == "| 1 | 1 | 10.00 | 60.00 | – | – | – |"
    assert per_seed_table(study, [Cell("random", 1, 0)]) == ""  # a baseline has no iteration-0 start to show


def test_an_unfinished_cell_with_an_early_evaluation_is_not_in_the_summary(study):
    from condense.study import Cell, summarise_cells

    cells = [Cell("dcc", 1, 0), Cell("dcc", 1, 1)]  # seed 1 is unfinished, its last evaluation (0.2) is not a result
    assert summarise_cells(study, cells)[("dcc", 1)].accuracies == (0.8, 0.8)


def test_study_start_is_the_iteration_0_mean_of_finished_condensation_cells(study):
    # every finished condensation cell of the fixture was evaluated at 0 (0.1) and later; the baseline is not counted
    assert read_study(study).starts == {1: pytest.approx(0.1)}
