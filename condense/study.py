"""Resumable grids of runs: methods × ipc × seeds, summarised as a table.

Each cell is its own run directory (``<out>/<method>-ipc<N>-seed<S>``); a finished cell (with a
``DONE`` file) is skipped, an unfinished one resumes from its checkpoint. Baselines (``random``,
``herding``) are cells too, evaluated by the same protocol with the same evaluation config as
the condensation cells of that ipc.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from condense.artifacts import SYNTHETIC_FILE, MetricsLog, atomic_write_bytes, atomic_write_json, save_image_grid
from condense.baselines import herding_subset, random_subset, whole_dataset
from condense.config import METHODS, CondenseConfig
from condense.data import ImageDataset
from condense.distributed import barrier, current_world, on_main
from condense.errors import ConfigError
from condense.evaluation import PooledAccuracies, evaluate_synthetic_set, mean_std
from condense.presets import PRESETS, get_preset
from condense.synthesis import condense_dataset

log = logging.getLogger("condense.study")

SELECTION_BASELINES = {"random": random_subset, "herding": herding_subset, "whole": whole_dataset}


@dataclass(frozen=True)
class Cell:
    method: str
    ipc: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-ipc{self.ipc}-seed{self.seed}"


def cell_config(preset_prefix: str, dataset: str, cell: Cell, overrides: dict | None = None) -> CondenseConfig:
    """The config of a cell: the preset ``<prefix><dataset>-ipc<N>-<method>`` with the cell's seed.

    Baseline cells use the DC preset of the same ipc (else of the nearest ipc) for their evaluation
    settings. A dataset without presets of its own (a path dataset) borrows Fashion-MNIST's settings.
    """
    if cell.ipc < 1:
        raise ConfigError(f"ipc must be a positive number of images per class, got {cell.ipc}")
    method = cell.method if cell.method in METHODS else "dc"
    candidates = [f"{preset_prefix}{dataset}-ipc{cell.ipc}-{method}", f"{preset_prefix}fashion-mnist-ipc{cell.ipc}-{method}"]
    name = next((n for n in candidates if n in PRESETS), None)
    if name is None and cell.method not in METHODS:  # a baseline needs only evaluation settings: the nearest ipc's
        stem = f"{preset_prefix}fashion-mnist-ipc"
        ipcs = sorted({p.config.ipc for n, p in PRESETS.items() if n.startswith(stem) and n.endswith("-dc")})
        base = get_preset(f"{stem}{min(ipcs, key=lambda i: abs(i - cell.ipc))}-dc").config
        return base.replace(dataset=dataset, seed=cell.seed, ipc=cell.ipc, matching_steps=base.steps,
                            network_epochs=base.epochs_between_steps, **(overrides or {}))
    return get_preset(name or candidates[0]).config.replace(dataset=dataset, seed=cell.seed, **(overrides or {}))


def run_cell(cell: Cell, config: CondenseConfig, dataset: ImageDataset, out: Path, *, device=None, progress: bool = True) -> None:
    """Run one cell to completion (resuming if it was interrupted)."""
    run_dir = out / cell.name
    if on_main(lambda: (run_dir / "DONE").exists(), "check for a finished cell"):  # torchrun: rank 0 decides for all
        return
    if cell.method in METHODS:
        condense_dataset(config, dataset, run_dir, device=device, resume=True, progress=progress)
        return
    if cell.method not in SELECTION_BASELINES:
        raise ConfigError(f"unknown method {cell.method!r}; choose from {', '.join(METHODS + tuple(SELECTION_BASELINES))}")
    started = time.perf_counter()
    chosen = SELECTION_BASELINES[cell.method](dataset, cell.ipc, cell.seed)
    augmentation = "dc" if config.evaluation_augmentation == "dc" else "none"
    results = evaluate_synthetic_set(chosen, dataset, config.evaluation, augmentation=augmentation, seed=cell.seed, key=cell.method, device=device, progress=progress)
    if current_world().is_main:  # torchrun: the networks were split over the ranks; rank 0 writes
        _write_baseline_cell(cell, config, chosen, results, run_dir, started)
    barrier("wait for rank 0 to write the cell")


def _write_baseline_cell(cell: Cell, config: CondenseConfig, chosen, results: dict[str, list[float]], run_dir: Path, started: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json({"baseline": cell.method, "ipc": cell.ipc, "seed": cell.seed, "evaluation": config.to_dict()["evaluation"]}, run_dir / "config.json")
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    metrics.path.unlink(missing_ok=True)
    for arch, accs in results.items():
        mean, std = mean_std(accs)
        metrics.append(event="evaluation", iteration=0, network=arch, accuracies=accs, mean=mean, std=std, seconds=time.perf_counter() - started)
    if cell.method != "whole":  # the whole training set is not worth a copy
        chosen.save(run_dir / SYNTHETIC_FILE)
        save_image_grid(chosen.denormalised(), chosen.labels, run_dir / "images_it0000.png", chosen.class_names)
    (run_dir / "DONE").write_text("0\n")


def evaluation_accuracies(run_dir: Path, network: str = "convnet") -> dict[int, list[float]]:
    """``{iteration: accuracies of every evaluation network of ``network`` at that iteration}``
    recorded in a run directory's metrics.jsonl, in iteration order."""
    found: dict[int, list[float]] = {}
    for r in MetricsLog(run_dir / "metrics.jsonl").read():
        if r.get("event") == "evaluation" and r.get("network") == network:
            found.setdefault(r["iteration"], []).extend(r["accuracies"])
    return dict(sorted(found.items()))


def final_accuracies(run_dir: Path, network: str = "convnet") -> list[float]:
    """Accuracies of the last evaluation of ``network`` recorded in a run directory."""
    found = evaluation_accuracies(run_dir, network)
    return found[max(found)] if found else []


def evaluation_means(run_dir: Path, network: str = "convnet") -> dict[int, float]:
    """``{iteration: mean accuracy over that evaluation's networks}`` recorded in a run directory."""
    return {it: mean_std(accs)[0] for it, accs in evaluation_accuracies(run_dir, network).items()}


def per_seed_table(out: Path, cells: Sequence[Cell], network: str = "convnet") -> str:
    """A Markdown table per seed: for every (ipc, seed) the first evaluation (iteration 0: the real
    images the sets start from) and the last of each method, in %, then DCC − DC and DSAC − DSA
    of the last evaluation where both ran (finished cells only). Empty when no cell has an
    evaluation at iteration 0 and a later one."""
    methods = list(dict.fromkeys(c.method for c in cells))
    rows, any_start = [], False
    for ipc in sorted({c.ipc for c in cells}):
        for seed in sorted({c.seed for c in cells}):
            means = {c.method: evaluation_means(Path(out) / c.name, network) for c in cells if c.ipc == ipc and c.seed == seed}
            means = {m: v for m, v in means.items() if v}
            if not means:
                continue
            starts = [v[min(v)] for v in means.values() if min(v) == 0 and len(v) > 1]
            any_start |= bool(starts)
            last = {m: v[max(v)] for m, v in means.items() if (Path(out) / Cell(m, ipc, seed).name / "DONE").exists()}
            if not last:
                continue
            pairs = [f"{100 * (last[a] - last[b]):+.2f}" if a in last and b in last else "–" for a, b in (("dcc", "dc"), ("dsac", "dsa"))]
            rows.append(f"| {ipc} | {seed} | " + (f"{100 * statistics.fmean(starts):.2f}" if starts else "–") + " | "
                        + " | ".join(f"{100 * last[m]:.2f}" if m in last else "–" for m in methods) + " | " + " | ".join(pairs) + " |")
    if not rows or not any_start:
        return ""
    header = "| ipc | seed | iteration 0 (real init) | " + " | ".join(methods) + " | DCC − DC | DSAC − DSA |"
    return "\n".join([header, "|---" * (len(methods) + 5) + "|", *rows])


def study_summary(out: Path, cells: Sequence[Cell], dataset_name: str, note: str = "") -> str:
    """The Markdown of ``<out>/summary.md``: the summary table, the per-seed table and ``note``."""
    seeds = per_seed_table(out, cells)
    seeds = f"\nPer seed (mean over that seed's evaluation networks, %; the last evaluation of each method):\n\n{seeds}\n" if seeds else ""
    return f"# Study {Path(out).name}: {dataset_name}\n\n{summary_table(out, cells)}\n{seeds}\n{note}\n"


def finished_cells(out: Path) -> list[Cell]:
    """The finished cells (``<method>-ipc<N>-seed<S>/DONE``) in a study directory, sorted by name."""
    cells = []
    for done in sorted(Path(out).glob("*-ipc*-seed*/DONE")):
        method, _, rest = done.parent.name.rpartition("-ipc")
        ipc, _, seed = rest.partition("-seed")
        if method and ipc.isdigit() and seed.isdigit():
            cells.append(Cell(method, int(ipc), int(seed)))
    return cells


@dataclass(frozen=True)
class CellSummary(PooledAccuracies):
    """The final accuracies of one (method, ipc) over the seeds that have any.

    Attributes:
        method, ipc: the row and column of the summary table.
        accuracies: every evaluation network of every seed, in [0, 1].
        seed_means: ``{seed: mean of that seed's networks}``.
    """

    method: str
    ipc: int
    accuracies: tuple[float, ...]
    seed_means: dict[int, float]

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f} (n={len(self.accuracies)}, {len(self.seed_means)} seeds)"


def summarise_cells(out: Path, cells: Sequence[Cell], network: str = "convnet") -> dict[tuple[str, int], CellSummary]:
    """``{(method, ipc): CellSummary}`` of the finished ``cells`` (with ``DONE``) in ``out``, for the
    pairs with any evaluation."""
    grouped: dict[tuple[str, int], dict[int, list[float]]] = {}
    for c in cells:
        if not (Path(out) / c.name / "DONE").exists():  # an unfinished cell's last evaluation is not its result
            continue
        found = final_accuracies(Path(out) / c.name, network)
        if found:
            grouped.setdefault((c.method, c.ipc), {})[c.seed] = found
    return {
        key: CellSummary(key[0], key[1], tuple(a for accs in per_seed.values() for a in accs),
                         {seed: mean_std(accs)[0] for seed, accs in sorted(per_seed.items())})
        for key, per_seed in grouped.items()
    }


def summary_table(out: Path, cells: Sequence[Cell], network: str = "convnet") -> str:
    """A Markdown table: rows = methods, columns = ipc, cells = mean ± std % over seeds × networks."""
    methods = list(dict.fromkeys(c.method for c in cells))
    ipcs = sorted({c.ipc for c in cells})
    summaries = summarise_cells(out, cells, network)
    lines = ["| method | " + " | ".join(f"ipc {i}" for i in ipcs) + " |", "|---|" + "---|" * len(ipcs)]
    for method in methods:
        row = [str(summaries[(method, ipc)]) if (method, ipc) in summaries else "–" for ipc in ipcs]
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def run_study(
    dataset: ImageDataset,
    out: str | Path,
    *,
    methods: Sequence[str],
    ipcs: Sequence[int],
    seeds: Sequence[int],
    preset_prefix: str = "quick-",
    overrides: dict | None = None,
    device=None,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> str:
    """Run every (method, ipc, seed) cell that is not finished yet and return the summary table.

    ``shard=(i, n)`` runs only cells i, i+n, ...; n processes with one thread each share n cores
    without the slow-down of oversubscribed threads. The table covers every cell finished so far.
    """
    out = Path(out)
    cells = [Cell(m, i, s) for i in ipcs for s in seeds for m in methods]
    configs = {cell: cell_config(preset_prefix, dataset.name, cell, overrides) for cell in cells}  # validate all first
    started = time.perf_counter()
    index, count = shard
    for n, cell in enumerate(cells):
        if n % count != index:
            continue
        log.info("[%d/%d] %s (%.1f min so far)", n + 1, len(cells), cell.name, (time.perf_counter() - started) / 60)
        run_cell(cell, configs[cell], dataset, out, device=device, progress=progress)
    table = summary_table(out, cells)
    if not current_world().is_main:
        return table
    note = f"This invocation took {(time.perf_counter() - started) / 60:.1f} min (cells finished earlier are not re-run)."
    text = study_summary(out, cells, dataset.name, note)
    atomic_write_bytes(out / "summary.md", text.encode())
    return table
