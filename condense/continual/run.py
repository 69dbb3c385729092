"""Run a class-incremental experiment: resumable units, ``steps.csv``, ``summary.md``, a figure.

For every memory and class order (one *unit*)::

    order ← class_orders(C, [seed])             steps ← split_into_steps(order, config.steps)
    memory ← Memory(memory_per_class)
    for step, classes in enumerate(steps):
        subset ← the step's classes, relabelled 0..k−1
        memory.update(builder(subset) mapped back to global labels)     (cached per step)
        for each of networks_per_step learners (gdumb: fresh network; incremental: kept one):
            train on memory.images/labels by the protocol, test on the seen classes' test images
            with unseen logits masked to −inf  → one row of steps.csv

``<out>/`` holds ``config.json``, ``order<S>/step<i>/<memory>/`` (each step's memory; a
condensation run directory), ``order<S>/<memory>-<training>.json`` (a finished unit, written
atomically; a rerun skips it), ``steps.csv`` and ``summary.md`` (all finished units).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from condense.artifacts import atomic_write_bytes, atomic_write_json
from condense.continual.classes import class_orders, class_subset, split_into_steps
from condense.continual.config import ContinualConfig
from condense.continual.learners import LEARNERS, SeenClassMask, seen_mask
from condense.continual.memory import Memory, MemoryRequest, step_memory
from condense.data import ImageDataset
from condense.errors import ConfigError
from condense.evaluation import mean_std, train_and_test
from condense.networks import build_network
from condense.runtime import derive_generator, resolve_device

log = logging.getLogger("condense.continual")

__all__ = ["run_unit", "run_continual", "read_rows", "summary_table", "plot_accuracy", "STEPS_COLUMNS"]

STEPS_COLUMNS = ("memory", "training", "order_seed", "network", "step", "seen_classes", "memory_size", "accuracy")
#: config.json entries that may change between invocations into the same --out (they only select units)
_SELECTING = ("memories", "orders", "training", "preset")


def _unit_path(out: Path, memory: str, training: str, order_seed: int) -> Path:
    return out / f"order{order_seed}" / f"{memory}-{training}.json"


def run_unit(config: ContinualConfig, dataset: ImageDataset, memory_name: str, order_seed: int, out: Path, *,
             device: torch.device, progress: bool = False) -> list[dict[str, Any]]:
    """All steps of one (memory, class order) with ``config.training``; returns the rows of ``steps.csv``."""
    (order,) = class_orders(dataset.num_classes, [order_seed])
    steps = split_into_steps(order, config.steps)
    evaluation = config.evaluation
    everything = class_subset(dataset, range(dataset.num_classes), test_per_class=config.test_per_class)
    test_images = dataset.normalise(everything.dataset.test_images).to(device)
    test_labels = everything.dataset.test_labels.to(device)  # all classes, identity relabelling: global labels

    def factory() -> torch.nn.Module:
        return build_network(config.network, dataset.channels, dataset.num_classes, dataset.image_size)

    learners = [LEARNERS[config.training](factory, order_seed, index) for index in range(config.networks_per_step)]
    memory = Memory(config.memory_per_class)
    rows = []
    for step, classes in enumerate(steps):
        started = time.perf_counter()
        subset = class_subset(dataset, classes, train_per_class=config.train_per_class)
        request = MemoryRequest(config, subset, order_seed, step, out / f"order{order_seed}" / f"step{step}" / memory_name, device, progress)
        synthetic = step_memory(memory_name, request)
        memory.update(synthetic.images, subset.to_global(synthetic.labels))
        seen = seen_mask(memory.classes, dataset.num_classes, device)
        tested = seen[test_labels]
        images, labels = memory.images.to(device), memory.labels.to(device)
        for index, learner in enumerate(learners):
            network = SeenClassMask(learner.network(step), seen, config.mask_training).to(device)
            # not keyed by the training: GDumb's and the incremental learner's step 0 are the same computation
            generator = derive_generator(order_seed, "continual-training", index, step)
            result = train_and_test(network, images, labels, test_images[tested], test_labels[tested], evaluation,
                                    augmentation=config.augmentation, generator=generator,
                                    tag=f"{memory_name}/order{order_seed}/step{step}/{index}")
            rows.append(dict(memory=memory_name, training=config.training, order_seed=order_seed, network=index, step=step,
                             seen_classes=len(memory.classes), memory_size=memory.size, accuracy=result.test_accuracy,
                             classes=list(classes), seconds=round(time.perf_counter() - started, 2)))
            log.info("%s/%s order %d step %d net %d: %d classes seen, memory %d, accuracy %.2f %% (%.0f s)", memory_name,
                     config.training, order_seed, step, index, len(memory.classes), memory.size, 100 * result.test_accuracy,
                     time.perf_counter() - started)
    return rows


def _check_same_experiment(config: ContinualConfig, out: Path) -> None:
    """A rerun into ``out`` may select other memories/orders/training, not change anything else."""
    path = out / "config.json"
    if not path.exists():
        return
    before = json.loads(path.read_text())
    now = json.loads(json.dumps(config.to_dict()))
    changed = sorted(k for k in set(before) | set(now) if k not in _SELECTING and before.get(k) != now.get(k))
    if changed:
        raise ConfigError(f"{out} holds a continual run with different settings ({', '.join(changed)}); choose another --out")


def read_rows(out: Path, config: ContinualConfig, trainings: Sequence[str] = tuple(LEARNERS)) -> list[dict[str, Any]]:
    """Rows of every finished unit of ``config``'s memories × orders (for each training with results)."""
    rows = []
    for training in trainings:
        for memory in config.memories:
            for seed in config.orders:
                path = _unit_path(out, memory, training, seed)
                if path.exists():
                    rows += json.loads(path.read_text())["rows"]
    return rows


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=STEPS_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def _per_step(rows: list[dict[str, Any]], memory: str, training: str) -> dict[int, list[float]]:
    """seen classes -> accuracies over orders × networks."""
    result: dict[int, list[float]] = {}
    for r in rows:
        if r["memory"] == memory and r["training"] == training:
            result.setdefault(r["seen_classes"], []).append(r["accuracy"])
    return dict(sorted(result.items()))


def summary_table(rows: list[dict[str, Any]], training: str) -> str:
    """Markdown: one row per memory, one column per step, mean ± std % over orders × networks."""
    rows = [r for r in rows if r["training"] == training]
    memories = list(dict.fromkeys(r["memory"] for r in rows))
    seen = sorted({r["seen_classes"] for r in rows})
    lines = ["| memory | " + " | ".join(f"{n} classes" for n in seen) + " | orders |", "|---|" + "---|" * (len(seen) + 1)]
    for memory in memories:
        per_step = _per_step(rows, memory, training)
        cells = [f"{100 * mean_std(per_step[n])[0]:.1f} ± {100 * mean_std(per_step[n])[1]:.1f}" if n in per_step else "–" for n in seen]
        orders = len({r["order_seed"] for r in rows if r["memory"] == memory})
        lines.append(f"| {memory} | " + " | ".join(cells) + f" | {orders} |")
    return "\n".join(lines)


def plot_accuracy(rows: list[dict[str, Any]], title: str, path_stem: Path) -> list[Path]:
    """Accuracy vs seen classes, one line per memory with a ±std band, one panel per training.

    Writes ``<path_stem>.png`` and ``.pdf`` atomically; returns their paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trainings = list(dict.fromkeys(r["training"] for r in rows))
    fig, axes = plt.subplots(1, len(trainings), figsize=(4.8 * len(trainings), 3.6), squeeze=False, sharey=True)
    for ax, training in zip(axes[0], trainings):
        for memory in dict.fromkeys(r["memory"] for r in rows if r["training"] == training):
            per_step = _per_step(rows, memory, training)
            x = list(per_step)
            stats = [mean_std(v) for v in per_step.values()]
            mean = [100 * m for m, _ in stats]
            std = [100 * s for _, s in stats]
            ax.plot(x, mean, marker="o", label=memory)
            ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
        ax.set_title(f"{title} ({training})", fontsize=9)
        ax.set_xlabel("seen classes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test accuracy on seen classes (%)")
    fig.tight_layout()
    paths = []
    for suffix in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix, dpi=120)
        path = path_stem.with_name(f"{path_stem.name}.{suffix}")
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def run_continual(config: ContinualConfig, dataset: ImageDataset, out: str | Path, *, name: str = "custom",
                  figures: str | Path | None = "figures", device: str | torch.device | None = None,
                  progress: bool = False, shard: tuple[int, int] = (0, 1)) -> str:
    """Run every unfinished (memory, order) unit of ``config`` and return ``summary.md``'s text.

    ``shard=(i, n)`` runs units i, i+n, ... only (n processes with one thread each on n cores).
    The figure goes to ``<figures>/continual-<name>.png`` and ``.pdf`` (``figures=None``: none).
    """
    out = Path(out)
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    sizes = config.step_sizes(dataset.num_classes)  # fail before any work
    if config.dataset != dataset.name:
        raise ConfigError(f"the config is for {config.dataset!r}, the dataset is {dataset.name!r}")
    _check_same_experiment(config, out)
    atomic_write_json({"preset": name, **config.to_dict()}, out / "config.json")
    units = [(memory, seed) for memory in config.memories for seed in config.orders]
    started = time.perf_counter()
    index, count = shard
    for n, (memory, seed) in enumerate(units):
        path = _unit_path(out, memory, config.training, seed)
        if n % count != index or path.exists():
            continue
        log.info("[%d/%d] %s memory, class order %d, %s (%.1f min so far)", n + 1, len(units), memory, seed, config.training,
                 (time.perf_counter() - started) / 60)
        unit_started = time.perf_counter()
        rows = run_unit(config, dataset, memory, seed, out, device=device, progress=progress)
        atomic_write_json({"memory": memory, "order_seed": seed, "training": config.training, "rows": rows,
                           "seconds": round(time.perf_counter() - unit_started, 1)}, path)
    rows = read_rows(out, config)
    _write_csv(rows, out / "steps.csv")
    trainings = list(dict.fromkeys(r["training"] for r in rows))
    tables = "\n\n".join(f"## {t}\n\n{summary_table(rows, t)}" for t in trainings)
    minutes = (time.perf_counter() - started) / 60
    text = (f"# Continual learning {name}: {dataset.name}, {len(sizes)} steps of {'/'.join(map(str, sorted(set(sizes))))} classes, "
            f"{config.memory_per_class} images per class\n\nTest accuracy on the seen classes (%), mean ± std over class orders"
            f"{' × networks' if config.networks_per_step > 1 else ''}.\n\n{tables}\n\n"
            f"This invocation took {minutes:.1f} min (units finished earlier are not re-run).\n")
    atomic_write_bytes(out / "summary.md", text.encode())
    if figures is not None and rows:
        plot_accuracy(rows, f"{name}: {dataset.name}", Path(figures) / f"continual-{name}")
    return text
