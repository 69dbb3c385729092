"""The tables of a ``python -m dynamics.track`` run, rewritten from its finished units.

``dynamics.csv`` (one row per recorded time of every unit: ``CSV_COLUMNS``), ``synthesis.csv``
(the condensation inner loop's kernels per iteration, when tracked: ``SYNTHESIS_COLUMNS``) and
``summary.md`` (training set, final test accuracy and time of every unit, then each method's
kernel against real-data training from :mod:`dynamics.comparison`), read from the
``KernelRecorder`` files under ``<out>/kernels/`` and ``<out>/sets/*/``. Written atomically;
floats as ``repr`` (exact), NaN as an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from condense.artifacts import atomic_write_bytes
from dynamics.tracking import KernelRecorder

__all__ = ["CSV_COLUMNS", "SYNTHESIS_COLUMNS", "write_tables"]

CSV_COLUMNS: tuple[str, ...] = (
    "method", "seed", "time", "time_unit", "distance_from_init", "velocity", "train_loss", "test_accuracy", "steps",
)
SYNTHESIS_COLUMNS: tuple[str, ...] = (
    "method", "seed", "iteration", "time", "time_unit", "distance_from_init", "velocity",
)


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, "")) for k in columns})
    atomic_write_bytes(path, buffer.getvalue().encode())


def _method_order(method: str) -> int:
    order = ("random", "dc", "dsa", "dcc", "dsac", "real")
    return order.index(method) if method in order else len(order)


def write_tables(out: str | Path) -> None:
    """(Re)write ``dynamics.csv``, ``synthesis.csv`` and ``summary.md`` from the finished units in ``out``."""
    out = Path(out)
    recorders = [KernelRecorder.load(p) for p in sorted((out / "kernels").glob("*.pt"))]
    recorders.sort(key=lambda r: (_method_order(r.info["method"]), r.info["method"], r.info["seed"]))
    rows = []
    summary = ["| method | seed | training set | images | final test accuracy | seconds |", "|---|---|---|---|---|---|"]
    for rec in recorders:
        method, seed, steps = rec.info["method"], rec.info["seed"], rec.info["steps_per_epoch"]
        for run in rec.runs():
            for row in rec.rows(run):
                rows.append({"method": method, "seed": seed, **row, "steps": int(row["time"] * steps)})
        summary.append(
            f"| {method} | {seed} | {rec.info['train_source']} | {rec.info['train_size']} | "
            f"{100 * rec.info['final_test_accuracy']:.2f} % | {rec.info['seconds_total']:.0f} |"
        )
    _write_csv(out / "dynamics.csv", CSV_COLUMNS, rows)
    synthesis_rows = []
    for path in sorted((out / "sets").glob("*/synthesis_kernels.pt")):
        rec = KernelRecorder.load(path)
        for run in rec.runs():
            for row in rec.rows(run):
                synthesis_rows.append({"method": rec.info.get("method"), "seed": rec.info.get("seed"), **row})
    if synthesis_rows:
        _write_csv(out / "synthesis.csv", SYNTHESIS_COLUMNS, synthesis_rows)
    note = ""
    config_path = out / "config.json"
    if config_path.exists():
        note = f"\nTest accuracy is measured on {json.loads(config_path.read_text())['test_accuracy_on']}.\n"
    from dynamics.comparison import reference_table, run_reference_gaps

    comparison = reference_table(run_reference_gaps(out))
    atomic_write_bytes(out / "summary.md", ("\n".join(summary) + "\n" + note + ("\n" + comparison if comparison else "")).encode())
