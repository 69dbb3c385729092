"""Synthetic images side by side: one mosaic per method (rows = classes, columns = images).

    >>> from condense.figures.grids import synthetic_set_comparison            # doctest: +SKIP
    >>> fig, written = synthetic_set_comparison(
    ...     {"DC": SyntheticSet.load("results/study-fashion-mnist/dc-ipc10-seed0/synthetic.pt"),
    ...      "DCC": SyntheticSet.load("results/study-fashion-mnist/dcc-ipc10-seed0/synthetic.pt")},
    ...     out="figures", stem="images_ipc10")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from condense.artifacts import SyntheticSet
from condense.errors import ConfigError
from condense.figures.style import save_figure, use_paper_style

__all__ = ["class_mosaic", "synthetic_set_comparison"]


def class_mosaic(images: Tensor, labels: Tensor, num_classes: int, per_class: int, pad: int = 1) -> Tensor:
    """Tile images into one picture with a row per class and ``per_class`` columns.

    Args:
        images: ``(N, C, H, W)`` in [0, 1] (de-normalised).
        labels: ``(N,)`` int64 in ``0..num_classes-1``.
    Returns:
        ``(rows·(H+pad)−pad, per_class·(W+pad)−pad, C)`` float32 in [0, 1]; padding and missing
        images are white.
    """
    _, channels, height, width = images.shape
    canvas = torch.ones(num_classes * (height + pad) - pad, per_class * (width + pad) - pad, channels)
    for c in range(num_classes):
        for k, image in enumerate(images[labels == c][:per_class]):
            top, left = c * (height + pad), k * (width + pad)
            canvas[top:top + height, left:left + width] = image.permute(1, 2, 0)
    return canvas


def synthetic_set_comparison(
    sets: Mapping[str, SyntheticSet], *, title: str = "", out: str | Path | None = None, stem: str = "images",
    max_per_class: int = 10, formats: Sequence[str] = ("pdf", "png"),
) -> tuple[Any, list[Path]]:
    """One panel per named synthetic set, classes as rows; returns the figure and the files written.

    All sets must come from the same dataset (the class names label the first panel's rows).
    """
    if not sets:
        raise ConfigError("no synthetic sets to draw")
    first = next(iter(sets.values()))
    if any(s.class_names != first.class_names for s in sets.values()):
        raise ConfigError("synthetic sets of different datasets cannot share one grid")
    use_paper_style()
    import matplotlib.pyplot as plt

    per_class = min(max_per_class, max(s.ipc for s in sets.values()))
    panel_width = 0.32 * per_class + 0.2
    fig, axes = plt.subplots(1, len(sets), figsize=(panel_width * len(sets) + 0.8, 0.32 * first.num_classes + 0.5), squeeze=False)
    for n, (ax, (name, synthetic)) in enumerate(zip(axes[0], sets.items())):
        mosaic = class_mosaic(synthetic.denormalised(), synthetic.labels.cpu(), synthetic.num_classes, per_class)
        grey = mosaic.shape[-1] == 1
        ax.imshow(mosaic.squeeze(-1).numpy() if grey else mosaic.numpy(), cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=7)
        ax.set_xticks([])
        height = synthetic.images.shape[-2] + 1
        ax.set_yticks([height * c + height / 2 - 1 for c in range(synthetic.num_classes)] if n == 0 else [])
        if n == 0:
            ax.set_yticklabels(synthetic.class_names, fontsize=6)
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.tight_layout(pad=0.2)
    if title:
        fig.suptitle(title, fontsize=7, y=1.0 + 0.25 / fig.get_figheight(), va="bottom")
    written = save_figure(fig, out, stem, formats) if out is not None else []
    return fig, written
