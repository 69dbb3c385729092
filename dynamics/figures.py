"""Figures of a track run: kernel velocity, distance from initialisation and test accuracy vs time.

``python -m dynamics.figures RUN_DIR [--out DIR]`` reads ``RUN_DIR/dynamics.csv`` (and
``synthesis.csv`` when present) written by :mod:`dynamics.track` and writes, as PDF and PNG
(Agg backend, sized for a 3.3-inch column, fonts ≥ 7 pt), into ``DIR`` (default
``figures/<run dir name>/``; ``python -m dynamics.track`` writes ``RUN_DIR/figures/``):

- ``kernel_velocity``: v(t) = S(K_t, K_t') / (t' − t) per method, log y, time axis linear up to
  1 epoch then logarithmic (symlog, so the first pair at t = 0 is shown);
- ``distance_from_init``: S(K_0, K_t) per method;
- ``test_accuracy``: test accuracy at the tracked times (on the test set named in config.json);
- ``dynamics``: the three side by side (two-column width);
- ``synthesis_velocity``: the same velocity in the condensation inner loop (if recorded);
- ``kernel_heatmaps``: the probe kernel (class-sorted, as K_nm / √(K_nn K_mm)) at initialisation
  and after training for each method of one seed, titled with its centred kernel-label alignment
  (:func:`dynamics.velocity.kernel_label_alignment`); drawn when ``RUN_DIR/kernels/`` is there;
- ``kernel_vs_real``: each method's kernel against real-data training of the same seed
  (:mod:`dynamics.comparison`); drawn when the run tracked ``real``.

Lines are the mean over seeds; bands are ± one standard deviation over seeds (drawn only with
≥ 2 seeds, which the title says). A dotted vertical line marks the learning-rate drop (×0.1) of the
training protocol.

Example::

    python -m dynamics.figures runs/fashion-mnist               # -> figures/fashion-mnist/*.pdf|png
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import torch
from torch import Tensor

from condense.errors import CondenseError
from condense.figures.style import COLUMN_WIDTH, METHOD_STYLE, method_colour, method_name, ordered_methods, save_figure, use_paper_style

__all__ = [
    "make_figures", "read_csv", "aggregate", "METHOD_STYLE", "main",
    "ProbeKernels", "load_probe_kernels", "kernel_heatmaps", "alignment_rows", "kernel_vs_reference",
]

def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV with numbers parsed (empty cells → NaN)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {}
            for key, text in row.items():
                if key in ("method", "time_unit"):
                    parsed[key] = text
                else:
                    try:
                        parsed[key] = float(text) if text != "" else math.nan
                    except ValueError:
                        parsed[key] = text
            rows.append(parsed)
    return rows


def aggregate(rows: list[dict[str, Any]], value: str, *, group: str = "method") -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """``{method: (times, mean, std, seeds)}`` of ``value`` over seeds at each time (NaNs dropped)."""
    by: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[str, set] = defaultdict(set)
    for row in rows:
        v = row[value]
        if isinstance(v, float) and math.isfinite(v):
            by[row[group]][row["time"]].append(v)
            seeds[row[group]].add(row.get("seed"))
    result = {}
    for key, per_time in by.items():
        times = np.array(sorted(per_time))
        values = [np.array(per_time[t]) for t in times]
        result[key] = (times, np.array([v.mean() for v in values]), np.array([v.std() for v in values]), len(seeds[key]))
    return result


def _label(method: str, config: dict[str, Any]) -> str:
    name = method_name(method)
    if method == "real" and config.get("real"):
        text = str(config["real"])
        digits = [w.strip("(") for w in text.split() if w.strip("(").isdigit()]
        name += f" ({digits[0]} img)" if digits else ""
    return name


_PANELS = {
    "kernel_velocity": ("velocity", "kernel velocity  S(K$_t$, K$_{t'}$)/(t'−t)", "log"),
    "distance_from_init": ("distance_from_init", "distance from init  S(K$_0$, K$_t$)", "linear"),
    "test_accuracy": ("test_accuracy", "test accuracy (%)", "linear"),
}


def _NullLocator() -> Any:  # noqa: N802 - a factory standing for matplotlib's class
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _draw(
    ax: Any, data: dict[str, tuple], config: dict[str, Any], yscale: str, scale: float = 1.0,
    time_unit: str = "epoch", linestyle: str = "-", suffix: str = "",
) -> None:
    for method in ordered_methods(list(data)):
        times, mean, std, seeds = data[method]
        colour = method_colour(method)
        if yscale == "log":
            keep = mean > 0
            times, mean, std = times[keep], mean[keep], std[keep]
        ax.plot(times, scale * mean, color=colour, label=_label(method, config) + suffix, marker="o", markersize=2, linestyle=linestyle)
        if seeds >= 2:
            low = scale * (mean - std)
            if yscale == "log":
                low = np.maximum(low, scale * mean * 1e-2)
            ax.fill_between(times, low, scale * (mean + std), color=colour, alpha=0.2, linewidth=0)
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    ax.set_yscale(yscale)
    end = max((float(d[0].max()) for d in data.values() if len(d[0])), default=1.0)
    ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000) if t <= end]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(_NullLocator())
    ax.set_xlim(0, end * 1.05)
    ax.set_xlabel(f"training time ({time_unit}s)")


def _mark_lr_decay(ax: Any, config: dict[str, Any]) -> None:
    """A dotted line where the protocol's learning rate drops ×0.1: epochs after index E//2 + 1,
    i.e. from time E//2 + 2 on (time = epochs finished)."""
    epochs = config.get("preset", {}).get("epochs")
    if isinstance(epochs, int):
        ax.axvline(epochs // 2 + 2, color="0.6", linestyle=":", linewidth=0.8, zorder=0)


def _caption(rows: list[dict[str, Any]], config: dict[str, Any]) -> str:
    seeds = sorted({int(r["seed"]) for r in rows if isinstance(r.get("seed"), float) and math.isfinite(r["seed"])})
    band = "mean ± std over seeds" if len(seeds) >= 2 else "one seed"
    preset = config.get("preset", {})
    probe = config.get("probe", {})
    parts = [preset.get("dataset", ""), f"ipc {preset['ipc']}" if "ipc" in preset else "",
             f"probe {probe['size']} imgs" if "size" in probe else "", f"{preset.get('kernel_mode', 'trace')} NTK", band]
    return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class ProbeKernels:
    """The kernels of one (method, seed) of a track run, on the run's probe.

    Attributes:
        method, seed: the unit.
        times: ``(T,)`` the recorded times (epochs finished; 0 = initialisation).
        kernels: ``(T, P, P)`` float32 trace-NTKs on the probe.
        labels: ``(P,)`` int64 probe labels, sorted by class.
        final_test_accuracy: after the last epoch (NaN if not recorded).
    """

    method: str
    seed: int
    times: Tensor
    kernels: Tensor
    labels: Tensor
    final_test_accuracy: float


def load_probe_kernels(run_dir: str | Path, seed: int | None = None) -> list[ProbeKernels]:
    """Every ``kernels/<method>-seed<S>.pt`` of ``run_dir`` (only seed ``seed`` if given), in method order.

    The probe labels are rebuilt from ``config.json`` (the probe is class-balanced and sorted by
    class: ``per_class`` images of every class). Raises :class:`CondenseError` when there is none.
    """
    from dynamics.tracking import KernelRecorder

    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise CondenseError(f"{run_dir} has no config.json; is it a `python -m dynamics.track` run directory?")
    config = json.loads(config_path.read_text())
    per_class, classes = config["probe"]["per_class"], len(config["dataset"]["classes"])
    labels = torch.arange(classes).repeat_interleave(per_class)
    found = []
    for path in sorted((run_dir / "kernels").glob("*.pt")):
        recorder = KernelRecorder.load(path)
        method, unit_seed = recorder.info["method"], int(recorder.info["seed"])
        if seed is not None and unit_seed != seed:
            continue
        records = [r for run in recorder.runs() for r in recorder.records_of(run)]
        kernels = torch.stack([r.kernel for r in records])
        if kernels.shape[1:] != (len(labels), len(labels)):
            raise CondenseError(f"{path}: kernels of shape {tuple(kernels.shape[1:])}, expected the ({len(labels)}, {len(labels)}) trace NTK of the probe")
        found.append(ProbeKernels(method, unit_seed, torch.tensor([float(r.time) for r in records]), kernels, labels,
                                  float(recorder.info.get("final_test_accuracy", math.nan))))
    if not found:
        raise CondenseError(f"{run_dir / 'kernels'} holds no kernel recording" + (f" of seed {seed}" if seed is not None else ""))
    order = {m: i for i, m in enumerate(ordered_methods(k.method for k in found))}
    return sorted(found, key=lambda k: (order[k.method], k.seed))


def _cosine_normalised(kernel: Tensor) -> Tensor:
    """``K_nm / √(K_nn K_mm)``: the kernel's correlation matrix, ``(P, P)`` in [-1, 1]."""
    diagonal = kernel.diagonal().clamp_min(1e-30).sqrt()
    return kernel / diagonal[:, None] / diagonal[None, :]


def alignment_rows(kernels: Sequence[ProbeKernels]) -> list[dict[str, Any]]:
    """Tidy rows ``method, seed, time, alignment`` (centred kernel-label alignment at every recorded time)."""
    from dynamics.velocity import kernel_label_alignment

    return [
        {"method": k.method, "seed": k.seed, "time": float(t), "alignment": kernel_label_alignment(kernel, k.labels)}
        for k in kernels for t, kernel in zip(k.times, k.kernels)
    ]


def kernel_heatmaps(
    run_dir: str | Path, out: str | Path | None = None, *, seed: int = 0, formats: Sequence[str] = ("pdf", "png"),
) -> tuple[Any, list[Path]]:
    """Heat maps of the class-sorted probe kernel: at initialisation, then after training per method.

    One panel per distinct initial kernel (all methods of a seed share θ₀, so usually one), then
    one per method at its last recorded time; each kernel shown as ``K_nm / √(K_nn K_mm)`` on one
    colour scale, titled with its centred kernel-label alignment. Returns the figure and, when
    ``out`` is given, the files written there as ``kernel_heatmaps.<format>``.
    """
    from dynamics.velocity import kernel_label_alignment

    kernels = load_probe_kernels(run_dir, seed)
    use_paper_style()
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Tensor, Tensor]] = []
    for k in kernels:
        if not any(torch.equal(k.kernels[0], kernel) for title, kernel, _ in panels if title.startswith("init")):
            panels.append((f"init (θ₀, {k.method})" if panels else "init (θ₀, shared)", k.kernels[0], k.labels))
    for k in kernels:
        panels.append((f"{method_name(k.method)}, epoch {int(k.times[-1])}", k.kernels[-1], k.labels))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.25 * len(panels) + 0.6, 1.6), squeeze=False)
    image = None
    for ax, (title, kernel, labels) in zip(axes[0], panels):
        image = ax.imshow(_cosine_normalised(kernel).numpy(), cmap="viridis", vmin=-1 if kernel.min() < 0 else 0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\nalignment {kernel_label_alignment(kernel, labels):.2f}", fontsize=6)
        boundaries = torch.nonzero(labels[1:] != labels[:-1]).flatten() + 0.5
        for b in boundaries.tolist():
            ax.axhline(b, color="white", linewidth=0.3)
            ax.axvline(b, color="white", linewidth=0.3)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].set_ylabel("probe images, sorted by class")
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.02, pad=0.01, label="K$_{nm}$/√(K$_{nn}$K$_{mm}$)")
    fig.suptitle(f"probe NTK, seed {seed} ({Path(run_dir).name})", fontsize=7, y=1.08)
    written = []
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        written = save_figure(fig, out, "kernel_heatmaps", formats)
    return fig, written


def make_figures(run_dir: str | Path, out: str | Path | None = None, *, formats: Sequence[str] = ("pdf", "png")) -> list[Path]:
    """Draw the figures of ``run_dir`` into ``out`` (default ``figures/<run_dir name>``); return the paths.

    Raises :class:`~condense.errors.CondenseError` when ``run_dir`` has no ``dynamics.csv``.
    """
    run_dir = Path(run_dir)
    csv_path = run_dir / "dynamics.csv"
    if not csv_path.exists():
        raise CondenseError(f"{run_dir} has no dynamics.csv; run `python -m dynamics.track` first")
    out = Path(out) if out is not None else Path("figures") / run_dir.resolve().name
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    rows = read_csv(csv_path)
    if not rows:
        raise CondenseError(f"{csv_path} has no rows yet (no finished unit)")
    time_unit = rows[0].get("time_unit", "epoch")
    caption = _caption(rows, config)
    use_paper_style()
    import matplotlib.pyplot as plt

    written: list[Path] = []
    for stem, (column, ylabel, yscale) in _PANELS.items():
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        scale = 100.0 if column == "test_accuracy" else 1.0
        _draw(ax, aggregate(rows, column), config, yscale, scale, time_unit)
        _mark_lr_decay(ax, config)
        ax.set_ylabel(ylabel)
        ax.set_title(caption, fontsize=6)
        ax.legend(frameon=False, loc="best")
        written += save_figure(fig, out, stem, formats)
        plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(3 * COLUMN_WIDTH * 0.75, 2.2))
    for ax, (stem, (column, ylabel, yscale)) in zip(axes, _PANELS.items()):
        _draw(ax, aggregate(rows, column), config, yscale, 100.0 if column == "test_accuracy" else 1.0, time_unit)
        _mark_lr_decay(ax, config)
        ax.set_ylabel(ylabel)
    axes[0].legend(frameon=False, loc="best")
    fig.suptitle(caption, fontsize=7)
    fig.tight_layout()
    written += save_figure(fig, out, "dynamics", formats)
    plt.close(fig)

    synthesis_path = run_dir / "synthesis.csv"
    if synthesis_path.exists():
        srows = read_csv(synthesis_path)
        if srows:
            fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
            iterations = sorted({int(r["iteration"]) for r in srows if math.isfinite(r["iteration"])})
            for it in iterations:  # the last tracked iteration solid, earlier ones dashed
                last = it == iterations[-1]
                data = aggregate([r for r in srows if r["iteration"] == it], "velocity")
                _draw(ax, data, config, "log", 1.0, "inner epoch", "-" if last else "--", f" (it {it})" if len(iterations) > 1 else "")
            ax.set_ylabel("kernel velocity (inner loop)")
            ax.set_title(f"condensation inner loop (θ trained on S), iteration {', '.join(map(str, iterations))}\n{caption}", fontsize=6)
            ax.legend(frameon=False, loc="best")
            written += save_figure(fig, out, "synthesis_velocity", formats)
            plt.close(fig)
    if any((run_dir / "kernels").glob("*.pt")):
        seeds = sorted({int(r["seed"]) for r in rows if isinstance(r.get("seed"), float) and math.isfinite(r["seed"])})
        fig, heatmaps = kernel_heatmaps(run_dir, out, seed=seeds[0] if seeds else 0, formats=formats)
        written += heatmaps
        plt.close(fig)
    written += kernel_vs_reference(run_dir, out, config=config, caption=caption, formats=formats)
    return written


def kernel_vs_reference(
    run_dir: str | Path, out: str | Path, *, reference: str = "real", config: dict[str, Any] | None = None,
    caption: str = "", formats: Sequence[str] = ("pdf", "png"),
) -> list[Path]:
    """``kernel_vs_<reference>``: how like ``reference`` training each method moves the kernel
    (:mod:`dynamics.comparison`). Left: S(K_m(t), K_ref(t)) against time (mean ± std over seeds);
    right: each seed's velocity gap |log₁₀ v_m − log₁₀ v_ref| per method, a seed's points joined.
    Nothing is drawn (``[]``) when the run has no ``reference`` kernels."""
    from dynamics.comparison import distance_to_reference_rows, run_reference_gaps

    gaps = run_reference_gaps(run_dir, reference)
    if not gaps:
        return []
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH * 0.8, 2.3), gridspec_kw={"width_ratios": [1.6, 1]})
    _draw(left, aggregate(distance_to_reference_rows(gaps), "distance_to_reference"), config or {}, "linear")
    _mark_lr_decay(left, config or {})
    left.set_ylabel(f"S(K$_m$(t), K$_{{{reference}}}$(t))")
    left.legend(frameon=False, loc="best")
    methods = ordered_methods(list(dict.fromkeys(g.method for g in gaps)))
    for seed in sorted({g.seed for g in gaps}):
        by = {g.method: g.velocity_gap for g in gaps if g.seed == seed}
        xs = [i for i, m in enumerate(methods) if m in by]
        right.plot(xs, [by[methods[i]] for i in xs], color="0.75", linewidth=0.6, zorder=1)
        right.scatter(xs, [by[methods[i]] for i in xs], c=[method_colour(methods[i]) for i in xs], s=10, zorder=2)
    right.set_xticks(range(len(methods)), [method_name(m) for m in methods])
    right.set_xlim(-0.5, len(methods) - 0.5)
    right.set_ylabel(f"velocity gap to {reference} (log$_{{10}}$)")
    right.set_title("each seed; lower = more like real", fontsize=6)
    fig.suptitle(f"kernel motion against {reference}-data training: {caption}", fontsize=7)
    fig.tight_layout()
    written = save_figure(fig, out, f"kernel_vs_{reference}", formats)
    plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dynamics.figures", description="Draw the figures of a dynamics.track run.")
    parser.add_argument("run_dir", help="a run directory written by python -m dynamics.track (holds dynamics.csv)")
    parser.add_argument("--out", default=None, help="output directory (default figures/<run dir name>)")
    parser.add_argument("--formats", default="pdf,png", help="comma-separated file formats")
    args = parser.parse_args(argv)
    try:
        written = make_figures(args.run_dir, args.out, formats=[f for f in args.formats.split(",") if f])
    except CondenseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
