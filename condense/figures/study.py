"""The benchmark table and bar chart of a study directory (``python -m condense study``).

Reads the finished cells with :func:`condense.study.finished_cells` and
:func:`condense.study.summarise_cells` (mean ± population std over all evaluation networks of
all seeds, as the authors report), and says whether the cells used a reduced budget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condense.errors import ConfigError
from condense.figures.style import COLUMN_WIDTH, method_colour, method_name, ordered_methods, save_figure, use_paper_style
from condense.study import CellSummary, evaluation_means, finished_cells, summarise_cells, summary_table

__all__ = ["PAPER_ITERATIONS", "StudyResults", "read_study", "budget_note", "study_chart"]

PAPER_ITERATIONS = 1000  # condensation iterations of the paper's protocol (PAPER.md §1)


@dataclass(frozen=True)
class StudyResults:
    """The finished cells of one study directory, summarised per (method, ipc).

    Attributes:
        directory: the study directory.
        summaries: ``{(method, ipc): CellSummary}``.
        table: the Markdown table of :func:`condense.study.summary_table`.
        iterations: ``{(method, ipc): condensation iterations}`` of the condensation cells.
        cells: how many cells are finished.
        starts: ``{ipc: mean accuracy at iteration 0}`` over the finished condensation cells that
            were evaluated there (real initialisation: a random real subset), else empty.
    """

    directory: Path
    summaries: dict[tuple[str, int], CellSummary]
    table: str
    iterations: dict[tuple[str, int], int]
    cells: int
    starts: dict[int, float] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return ordered_methods(m for m, _ in self.summaries)

    @property
    def ipcs(self) -> list[int]:
        return sorted({i for _, i in self.summaries})

    @property
    def reduced(self) -> bool:
        """True when any condensation cell ran fewer iterations than the paper's 1000."""
        return any(it < PAPER_ITERATIONS for it in self.iterations.values())


def read_study(directory: str | Path, network: str = "convnet") -> StudyResults:
    """Summarise the finished cells of ``directory``; :class:`ConfigError` if there is none."""
    directory = Path(directory)
    cells = finished_cells(directory)
    if not cells:
        raise ConfigError(f"{directory} holds no finished study cell (<method>-ipc<N>-seed<S>/DONE); run `python -m condense study ... --out {directory}`")
    iterations = {}
    for cell in cells:
        config = json.loads((directory / cell.name / "config.json").read_text())
        if "iterations" in config:
            iterations[(cell.method, cell.ipc)] = int(config["iterations"])
    starts: dict[int, list[float]] = {}
    for cell in cells:
        means = evaluation_means(directory / cell.name, network)
        if (cell.method, cell.ipc) in iterations and 0 in means and len(means) > 1:
            starts.setdefault(cell.ipc, []).append(means[0])
    return StudyResults(directory, summarise_cells(directory, cells, network), summary_table(directory, cells, network), iterations, len(cells),
                        {ipc: sum(v) / len(v) for ipc, v in starts.items()})


def budget_note(results: StudyResults) -> str:
    """``'reduced budget: ipc 1 15 iterations, ipc 10 5 iterations (paper 1000)'`` or ``''``."""
    if not results.reduced:
        return ""
    per_ipc = {ipc: it for (_, ipc), it in sorted(results.iterations.items())}
    return "reduced budget: " + ", ".join(f"ipc {i} {it} iterations" for i, it in per_ipc.items()) + f" (paper {PAPER_ITERATIONS})"


def study_chart(
    results: StudyResults, *, title: str = "", out: str | Path | None = None, stem: str = "study",
    formats: Sequence[str] = ("pdf", "png"),
) -> tuple[Any, list[Path]]:
    """Grouped bars (one group per ipc, one bar per method): mean ± std test accuracy, dots = seed means,
    a dashed line at the iteration-0 accuracy (the real images the sets start from) where it was measured.

    The title gets :func:`budget_note` when the cells used a reduced budget.
    """
    use_paper_style()
    import matplotlib.pyplot as plt

    methods, ipcs = results.methods, results.ipcs
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(COLUMN_WIDTH, 0.9 * len(ipcs) * len(methods) * 0.35 + 0.8), 2.2))
    for m, method in enumerate(methods):
        for g, ipc in enumerate(ipcs):
            summary = results.summaries.get((method, ipc))
            if summary is None:
                continue
            x = g + (m - (len(methods) - 1) / 2) * width
            ax.bar(x, 100 * summary.mean, width * 0.9, yerr=100 * summary.std, color=method_colour(method),
                   label=method_name(method) if g == 0 else None, error_kw={"linewidth": 0.6, "capsize": 1.5})
            seed_values = [100 * v for v in summary.seed_means.values()]
            ax.scatter([x] * len(seed_values), seed_values, s=3, color="black", zorder=3, linewidths=0)
    for g, ipc in enumerate(ipcs):
        if ipc in results.starts:
            ax.hlines(100 * results.starts[ipc], g - 0.45, g + 0.45, colors="0.4", linestyles="--", linewidth=0.8,
                      label="iteration 0 (real init)" if g == min(i for i, c in enumerate(ipcs) if c in results.starts) else None)
    ax.set_xticks(range(len(ipcs)), [f"{i} img/class" for i in ipcs])
    lows = [100 * (s.mean - s.std) for s in results.summaries.values()] + [100 * v - 2 for v in results.starts.values()]
    ax.set_ylim(max(0.0, min(lows) - 10), min(100.0, max(100 * (s.mean + s.std) for s in results.summaries.values()) + 5))
    ax.set_ylabel("test accuracy (%)")
    ax.legend(frameon=False, ncol=len(methods) + bool(results.starts), loc="upper left", fontsize=6)
    note = budget_note(results)
    ax.set_title("\n".join(t for t in (title or results.directory.name, note) if t), fontsize=6)
    written = save_figure(fig, out, stem, formats) if out is not None else []
    return fig, written
