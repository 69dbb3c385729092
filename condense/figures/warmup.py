"""The warm-up ablation figure: final accuracy per warm-up variant and what each variant's images became.

Reads a :mod:`condense.warmup_ablation` directory with
:func:`~condense.warmup_ablation.read_warmup_ablation`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from condense.artifacts import SyntheticSet, find_synthetic_file
from condense.figures.grids import class_mosaic
from condense.figures.style import COLUMN_WIDTH, method_colour, save_figure, use_paper_style
from condense.warmup_ablation import VARIANTS, VariantResult

__all__ = ["warmup_ablation_figure", "ablation_note"]


def ablation_note(directory: str | Path) -> str:
    """What the stored ablation ran: preset name, reduced budget and init, from ``ablation.json``."""
    path = Path(directory) / "ablation.json"
    if not path.exists():
        return ""
    record = json.loads(path.read_text())
    preset = record["preset"]
    config = next(iter(record["configs"].values()))
    budget = "reduced budget, " if preset.get("reduced", True) else ""
    return (f"{budget}preset {preset['name']}: {config['dataset']} ipc {config['ipc']}, {config['init']} init, "
            f"{config['iterations']} iterations (paper 1000), {config['network']}")


def _colour(variant: str) -> str:
    return method_colour("dc") if variant == "dc" else method_colour("dcc")


def warmup_ablation_figure(
    results: Sequence[VariantResult], directory: str | Path, *, out: str | Path | None = None, stem: str = "warmup_ablation",
    formats: Sequence[str] = ("pdf", "png"),
) -> tuple[Any, list[Path]]:
    """Left: final test accuracy per variant (bar = mean ± std over networks × seeds, dots = seed
    means). Right: the synthetic set of the first seed of each variant (one image per class).
    """
    use_paper_style()
    import matplotlib.pyplot as plt

    directory = Path(directory)
    fig, (bars, images) = plt.subplots(1, 2, figsize=(2 * COLUMN_WIDTH, 0.35 * len(results) + 1.2), gridspec_kw={"width_ratios": [1, 1.3]})
    for row, result in enumerate(results):
        y = len(results) - 1 - row
        bars.barh(y, 100 * result.mean, xerr=100 * result.std, color=_colour(result.variant),
                  error_kw={"linewidth": 0.6, "capsize": 1.5})
        seeds = [100 * v for v in result.seed_means.values()]
        bars.scatter(seeds, [y] * len(seeds), s=4, color="black", zorder=3, linewidths=0)
        bars.text(100 * (result.mean + result.std) + 1, y, f"{100 * result.mean:.1f}", va="center", fontsize=6)
    bars.set_yticks(range(len(results)), [f"{VARIANTS[r.variant]}\n({100 * r.classwise_share:.0f} % class-wise steps)" for r in reversed(results)])
    bars.set_xlabel("test accuracy (%)")
    bars.set_xlim(0, min(100, max(100 * (r.mean + r.std) for r in results) + 12))

    firsts, rows = [], []
    for row, result in enumerate(results):  # mosaic rows = variants, columns = classes (first image of each)
        run_dir = directory / f"{result.variant}-seed{min(result.seed_means)}"
        synthetic = SyntheticSet.load(find_synthetic_file(run_dir) or run_dir / "synthetic.safetensors")
        pictures, labels = synthetic.denormalised(), synthetic.labels.cpu()
        firsts += [pictures[labels == c][0] for c in range(synthetic.num_classes)]
        rows += [row] * synthetic.num_classes
    canvas = class_mosaic(torch.stack(firsts), torch.tensor(rows), len(results), synthetic.num_classes)
    height = synthetic.images.shape[-2]
    grey = canvas.shape[-1] == 1
    images.imshow(canvas.squeeze(-1).numpy() if grey else canvas.numpy(), cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
    images.set_yticks([(height + 1) * r + height / 2 - 0.5 for r in range(len(results))], [VARIANTS[r.variant] for r in results], fontsize=6)
    images.set_xticks([])
    images.set_title("synthetic images (one per class, first seed)", fontsize=6)
    for spine in images.spines.values():
        spine.set_visible(False)
    note = ablation_note(directory)
    fig.suptitle("warm-up ablation" + (f"\n{note}" if note else ""), fontsize=7)
    fig.tight_layout()
    written = save_figure(fig, out, stem, formats) if out is not None else []
    return fig, written
