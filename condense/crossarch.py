"""Cross-architecture evaluation: train architectures other than the one a set was condensed with.

The paper's generalisation tables (PAPER.md §5) train the architecture pool — MLP, ConvNet,
LeNet, AlexNet, VGG11, ResNet18 — and the ConvNet ablations (width, depth, normalisation,
pooling, activation) on sets condensed with the default ConvNet, by the same evaluation protocol.

:func:`run_cross_architecture` evaluates every (set, architecture) pair as its own resumable cell,
``<out>/<set name>/<architecture>.json``, written atomically when the pair is done; ``shard=(i, n)``
splits the pairs over n one-thread processes. :func:`cross_architecture_table` reads the cells
back as a Markdown table (rows: architectures, columns: sets).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from condense.artifacts import SYNTHETIC_FILE, SyntheticSet, atomic_write_json, find_synthetic_file
from condense.config import EvaluationConfig
from condense.data import ImageDataset
from condense.errors import ConfigError
from condense.evaluation import default_augmentation, evaluate_synthetic_set, mean_std
from condense.networks import list_networks

log = logging.getLogger("condense.crossarch")

__all__ = ["ARCHITECTURE_POOL", "CONVNET_ABLATIONS", "resolve_networks", "find_synthetic_set", "run_cross_architecture", "cross_architecture_table"]

#: The paper's cross-architecture pool.
ARCHITECTURE_POOL: tuple[str, ...] = ("mlp", "convnet", "lenet", "alexnet", "vgg11", "resnet18")
#: ConvNet variants, one factor changed at a time from width 128, depth 3, instance norm, ReLU, avg pooling.
CONVNET_ABLATIONS: tuple[str, ...] = (
    "convnet-w32", "convnet-w64", "convnet-w256",
    "convnet-d1", "convnet-d2", "convnet-d4",
    "convnet-bn", "convnet-ln", "convnet-gn", "convnet-nonorm",
    "convnet-maxpool", "convnet-nopool",
    "convnet-sigmoid", "convnet-leakyrelu",
)
NETWORK_GROUPS: dict[str, tuple[str, ...]] = {"pool": ARCHITECTURE_POOL, "ablations": CONVNET_ABLATIONS}


def resolve_networks(spec: str) -> tuple[str, ...]:
    """``"pool,ablations,vgg11bn"`` → the architectures, groups expanded, duplicates dropped, names checked."""
    names: list[str] = []
    for item in (s.strip().lower() for s in spec.split(",") if s.strip()):
        names.extend(NETWORK_GROUPS.get(item, (item,)))
    known = set(list_networks())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown network(s) {', '.join(unknown)}; known: {', '.join(NETWORK_GROUPS)} (groups), {', '.join(list_networks())}")
    if not names:
        raise ConfigError("no networks given")
    return tuple(dict.fromkeys(names))


def find_synthetic_set(path: str | Path) -> Path:
    """A synthetic-set file (``.safetensors``, or a legacy ``.pt``), or a run directory holding one."""
    path = Path(path)
    candidate = find_synthetic_file(path) if path.is_dir() else path
    if candidate is None or not candidate.is_file():
        raise ConfigError(f"no synthetic set at {path} (expected a set file or a run directory with {SYNTHETIC_FILE})")
    return candidate


def _cell_path(out: Path, set_name: str, arch: str) -> Path:
    return out / set_name / f"{arch}.json"


def run_cross_architecture(
    sets: dict[str, Path],
    networks: Sequence[str],
    evaluation: EvaluationConfig,
    dataset: ImageDataset,
    out: str | Path,
    *,
    seed: int = 0,
    device=None,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> str:
    """Evaluate each set in ``sets`` (name → set file) on each architecture; returns the table so far.

    ``evaluation`` gives everything but the architecture (networks per architecture, epochs...);
    the augmentation is each set's protocol default (DSA for DSA/DSAC sets). Finished pairs are
    skipped, so an interrupted run continues where it stopped.
    """
    out = Path(out)
    pairs = [(name, arch) for name in sets for arch in networks]
    index, count = shard
    started = time.perf_counter()
    loaded: dict[str, SyntheticSet] = {}  # each set read once, when its first pair is due
    for n, (name, arch) in enumerate(pairs):
        target = _cell_path(out, name, arch)
        if n % count != index or target.exists():
            continue
        if name not in loaded:
            loaded[name] = SyntheticSet.load(sets[name])
        synthetic = loaded[name]
        augmentation = default_augmentation(synthetic, evaluation)
        log.info("[%d/%d] %s on %s, augmentation %s (%.1f min so far)", n + 1, len(pairs), name, arch, augmentation, (time.perf_counter() - started) / 60)
        cell_started = time.perf_counter()
        config = dataclasses.replace(evaluation, networks=(arch,))
        accuracies = evaluate_synthetic_set(synthetic, dataset, config, augmentation=augmentation, seed=seed, key=f"crossarch-{name}", device=device, progress=progress)[arch]
        mean, std = mean_std(accuracies)
        atomic_write_json(
            {"set": name, "source": str(sets[name]), "method": synthetic.method, "ipc": synthetic.ipc, "network": arch,
             "augmentation": augmentation, "accuracies": accuracies, "mean": mean, "std": std,
             "evaluation": config.__dict__, "seconds": time.perf_counter() - cell_started},
            target,
        )
    return cross_architecture_table(out, list(sets), networks)


def cross_architecture_table(out: str | Path, set_names: Sequence[str], networks: Sequence[str]) -> str:
    """Markdown: one row per architecture, one column per set, mean ± std % ("–" where not run yet)."""
    out = Path(out)
    lines = ["| architecture | " + " | ".join(set_names) + " |", "|---|" + "---:|" * len(set_names)]
    for arch in networks:
        row = []
        for name in set_names:
            path = _cell_path(out, name, arch)
            if path.exists():
                record = json.loads(path.read_text())
                row.append(f"{100 * record['mean']:.1f} ± {100 * record['std']:.1f}")
            else:
                row.append("–")
        lines.append(f"| {arch} | " + " | ".join(row) + " |")
    return "\n".join(lines)
