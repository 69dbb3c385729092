"""One look for every figure of the package: colours and names of methods, fonts, saving.

Figures are sized for a 3.3-inch paper column (:data:`COLUMN_WIDTH`), fonts ≥ 6 pt, drawn with
matplotlib's Agg backend (no display needed) and saved atomically as PDF and PNG.
``dynamics.figures`` uses the same helpers, so both packages' figures match.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from condense.artifacts import atomic_write_bytes

__all__ = ["COLUMN_WIDTH", "METHOD_STYLE", "use_paper_style", "save_figure", "ordered_methods", "method_colour", "method_name"]

COLUMN_WIDTH = 3.3  # inches
#: colour and display name of each method, in plotting order.
METHOD_STYLE: dict[str, tuple[str, str]] = {
    "random": ("#7f7f7f", "random"),
    "herding": ("#8c564b", "herding"),
    "dc": ("#1f77b4", "DC"),
    "dsa": ("#17becf", "DSA"),
    "dcc": ("#d62728", "DCC"),
    "dsac": ("#ff7f0e", "DSAC"),
    "real": ("#2ca02c", "real"),
    "whole": ("#2ca02c", "whole set"),
}


def use_paper_style() -> None:
    """Agg backend, seaborn's paper theme, small fonts, no top/right spines.

    seaborn is a required dependency so that a figure looks the same wherever it is drawn.
    """
    import matplotlib

    logging.getLogger("fontTools").setLevel(logging.ERROR)  # PDF font subsetting chatter
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="ticks")
    plt.rcParams.update({
        "font.size": 7, "axes.labelsize": 7, "axes.titlesize": 7, "legend.fontsize": 6,
        "xtick.labelsize": 6, "ytick.labelsize": 6, "lines.linewidth": 1.2, "pdf.fonttype": 42,
        "savefig.dpi": 300, "axes.spines.top": False, "axes.spines.right": False,
    })


def save_figure(fig: Any, out: str | Path, stem: str, formats: Sequence[str] = ("pdf", "png")) -> list[Path]:
    """Write ``fig`` as ``out/<stem>.<format>`` for every format (atomically); return the paths."""
    written = []
    for fmt in formats:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, bbox_inches="tight")
        path = Path(out) / f"{stem}.{fmt}"
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """``methods`` in :data:`METHOD_STYLE` order, unknown ones last (sorted)."""
    methods = list(dict.fromkeys(methods))
    known = [m for m in METHOD_STYLE if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_STYLE)


def method_colour(method: str) -> str:
    return METHOD_STYLE.get(method, ("#000000", method))[0]


def method_name(method: str) -> str:
    return METHOD_STYLE.get(method, ("", method))[1]
