"""``python -m dynamics.track --run <preset>``: kernel velocity of networks trained on condensed sets.

Purpose: test the DCC paper's claim (PAPER.md §7) that networks trained on DCC data move their
empirical NTK more like real-data training than networks trained on DC data. For every
(method, seed) *unit* of a :class:`~dynamics.presets.TrackPreset`:

1. get the training set: a condensed set (reused from ``<out>/sets/<method>-seed<S>/`` or from
   ``--reuse-study DIR`` when a finished set with the same condensation config exists, else
   condensed there, with the inner loop of the chosen iterations tracked too), the random
   subset (``ipc`` real images per class), or ``real`` (the whole training set or a
   class-balanced subset of ``real_images`` images);
2. train a fresh network on it by the evaluation protocol (PAPER.md §5, ``epochs`` = E; the
   initialisation is shared by all methods of a seed) while a
   :class:`~dynamics.tracking.KernelTracker` records the trace NTK on a fixed class-balanced
   probe of held-out test images, and the test accuracy on a fixed test subset, at the
   scheduled epochs (time 0 = initialisation, time e = after e epochs);
3. write ``<out>/kernels/<method>-seed<S>.pt`` atomically: the unit is done.

A rerun skips finished units (and resumes an interrupted condensation from its checkpoint), so
Ctrl-C or a kill leaves a resumable run. What ``<out>`` (default ``runs/<preset>``) holds::

    config.json               the resolved preset, the probe, the condensation configs, set sizes
    sets/<method>-seed<S>/    condensation run directories (+ synthesis_kernels.pt)
    kernels/<method>-seed<S>.pt   a KernelRecorder per unit (kernels, times, losses, accuracies)
    dynamics.csv              method, seed, time, time_unit, distance_from_init, velocity,
                              train_loss, test_accuracy, steps  (one row per recorded time)
    synthesis.csv             the same for the condensation inner loop (per iteration)
    summary.md                training set, final accuracy and time of every unit
    figures/                  PDF + PNG (see :mod:`dynamics.figures`)

``velocity`` of the row at ``t_i`` is ``S(K_{t_i}, K_{t_{i+1}}) / (t_{i+1} − t_i)`` (empty in
the last row); ``distance_from_init`` is ``S(K_0, K_t)``.

This module runs the units (:func:`run_track`); the tables are written by
:mod:`dynamics.track_tables` and the command line is :mod:`dynamics.track_cli`, whose names
(``main``, ``apply_overrides``, ``write_tables``, ``CSV_COLUMNS`` ...) are re-exported here.

Example::

    python -m dynamics.track --list
    python -m dynamics.track --run fashion-mnist --threads 2 --reuse-study runs/study-fashion-mnist
    python -m dynamics.track --run smoke --out /tmp/smoke --seeds 0,1,2 --set epochs=8
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from condense.artifacts import SyntheticSet, atomic_write_json, find_synthetic_file
from condense.config import CondenseConfig, EvaluationConfig
from condense.data import ImageDataset, load_dataset
from condense.distributed import barrier, current_world, local_only, my_share, on_main
from condense.errors import CondenseError, ConfigError
from condense.hooks import Callback
from dynamics.presets import CONDENSED_METHODS, TrackPreset
from dynamics.track_cli import apply_overrides, build_parser, main  # re-exported: the command line
from dynamics.track_tables import CSV_COLUMNS, SYNTHESIS_COLUMNS, write_tables  # re-exported: the tables
from dynamics.tracking import KernelRecorder, KernelTracker, ProbeSet, make_probe, parse_schedule

log = logging.getLogger("dynamics.track")

__all__ = [
    "Unit", "condense_config", "training_times", "real_training_set", "run_track", "write_tables", "main", "CSV_COLUMNS",
    "SYNTHESIS_COLUMNS", "apply_overrides", "build_parser",
]

_NOT_IMAGE_FIELDS = ("evaluation", "eval_at", "checkpoint_every", "compile", "class_batching")  # speed settings: same images up to rounding


@dataclass(frozen=True)
class Unit:
    """One tracked training run: a method's training set for one seed."""

    method: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}-seed{self.seed}"


# --------------------------------------------------------------------------------------------
# training sets


def condense_config(preset: TrackPreset, method: str, seed: int) -> CondenseConfig:
    """The condensation config of ``method`` for ``seed``: preset ``<prefix><dataset>-ipc<N>-<method>``
    (Fashion-MNIST's when the dataset has none, as in ``condense study``) with ``condense_set``."""
    from condense.config import parse_overrides
    from condense.study import Cell, cell_config

    return cell_config(preset.condense_prefix, preset.dataset, Cell(method, preset.ipc, seed), parse_overrides(list(preset.condense_set)))


def _image_fields(config: dict[str, Any] | CondenseConfig) -> dict[str, Any]:
    data = config.to_dict() if isinstance(config, CondenseConfig) else CondenseConfig.from_dict(config).to_dict()
    return {k: v for k, v in data.items() if k not in _NOT_IMAGE_FIELDS}


def _finished_set(run_dir: Path, config: CondenseConfig) -> tuple[SyntheticSet | None, str]:
    """The synthetic set in ``run_dir`` if it is finished and made with ``config`` (else None and why not)."""
    path = find_synthetic_file(run_dir)
    if not (run_dir / "DONE").exists() or path is None:
        return None, "not finished"
    synthetic = SyntheticSet.load(path)
    try:
        same = _image_fields(synthetic.config) == _image_fields(config)
    except (CondenseError, TypeError):
        same = False
    if not same or synthetic.iteration != config.iterations:
        return None, "made with a different condensation config"
    return synthetic, "finished"


def real_training_set(dataset: ImageDataset, size: int | None, seed: int) -> SyntheticSet:
    """The ``real`` method's training set: the whole training set (``size=None`` or ≥ its size) or
    ``size // classes`` random images per class (seeded by ``(seed, 'real-subset')``)."""
    from condense.baselines import subset_as_synthetic_set
    from condense.runtime import derive_generator
    from dynamics.velocity import class_balanced_probe

    n = len(dataset.train_labels)
    if size is None or size >= n:
        indices = torch.arange(n)
        per_class = int(torch.bincount(dataset.train_labels).min())
    else:
        per_class = size // dataset.num_classes
        if per_class < 1:
            raise ConfigError(f"real_images={size} gives no image per class for {dataset.num_classes} classes")
        try:
            indices = class_balanced_probe(dataset.train_labels, per_class, derive_generator(seed, "real-subset"))
        except ValueError as err:
            raise ConfigError(f"real_images={size}: {err}") from None
    return subset_as_synthetic_set(dataset, indices, "real", per_class, seed)


def _real_label(preset: TrackPreset, dataset: ImageDataset) -> str:
    n = len(dataset.train_labels)
    if preset.real_images is None or preset.real_images >= n:
        return f"whole training set ({n} images)"
    return f"class-balanced random subset of {preset.real_images // dataset.num_classes * dataset.num_classes} of the {n} training images"


class _SynthesisSaver(Callback):
    """Saves the synthesis tracker's recorder after every tracked condensation iteration."""

    def __init__(self, tracker: KernelTracker, path: Path):
        self.tracker, self.path = tracker, path

    def on_synthesis_iteration_end(self, *, iteration: int, loss: float) -> None:
        if iteration - 1 in self.tracker.synthesis_iterations:  # ``iteration`` counts finished ones
            self.tracker.recorder.save(self.path)


def _condensed_set(
    preset: TrackPreset, unit: Unit, dataset: ImageDataset, out: Path, probe: ProbeSet, *,
    reuse_study: Path | None, device: torch.device, progress: bool,
) -> tuple[SyntheticSet, str]:
    from condense.synthesis import condense_dataset

    config = condense_config(preset, unit.method, unit.seed)
    own = out / "sets" / unit.name
    synthetic, why = _finished_set(own, config)
    if synthetic is not None:
        log.info("%s: reusing the synthetic set in %s", unit.name, own)
        return synthetic, str(own)
    if reuse_study is not None:
        candidate = reuse_study / f"{unit.method}-ipc{preset.ipc}-seed{unit.seed}"
        synthetic, why = _finished_set(candidate, config)
        if synthetic is not None:
            log.info("%s: reusing the synthetic set of study %s", unit.name, candidate)
            return synthetic, str(candidate)
        log.info("%s: not reusing %s (%s)", unit.name, candidate, why)
    iterations = {i if i >= 0 else config.iterations + i for i in preset.synthesis_iterations}
    inner_end = config.epochs_between_steps * (config.steps - 1)
    path = own / "synthesis_kernels.pt"
    recorder = KernelRecorder.load(path) if path.exists() else None
    tracker = KernelTracker(
        probe, mode=preset.kernel_mode, synthesis_iterations={i for i in iterations if 0 <= i < config.iterations},
        synthesis_epochs=parse_schedule(preset.synthesis_schedule, inner_end) if inner_end else (), recorder=recorder,
        metadata_extra={"network": config.network, "method": unit.method, "seed": unit.seed, "phase": "synthesis"},
    )
    tracker.recorder.info.update(method=unit.method, seed=unit.seed, inner_epochs=inner_end)
    log.info("%s: condensing (%s, %d iterations) into %s", unit.name, config.method, config.iterations, own)
    synthetic = condense_dataset(
        config, dataset, own, device=device, resume=True, callbacks=[tracker, _SynthesisSaver(tracker, path)],
        progress=progress, evaluate=False,
    )
    if len(tracker.recorder):
        tracker.recorder.save(path)
    return synthetic, str(own)


def _training_set(
    preset: TrackPreset, unit: Unit, dataset: ImageDataset, out: Path, probe: ProbeSet, *,
    reuse_study: Path | None, device: torch.device, progress: bool,
) -> tuple[SyntheticSet, str]:
    from condense.baselines import random_subset

    if unit.method == "random":
        return random_subset(dataset, preset.ipc, unit.seed), f"condense.baselines.random_subset(ipc={preset.ipc}, seed={unit.seed})"
    if unit.method == "real":
        return real_training_set(dataset, preset.real_images, unit.seed), _real_label(preset, dataset)
    return _condensed_set(preset, unit, dataset, out, probe, reuse_study=reuse_study, device=device, progress=progress)


def _augmentation(preset: TrackPreset, unit: Unit) -> str:
    if preset.augmentation != "protocol":
        return preset.augmentation
    method = unit.method if unit.method in CONDENSED_METHODS else "dc"
    protocol = condense_config(preset, method, unit.seed).evaluation_augmentation
    return protocol if unit.method in CONDENSED_METHODS else ("dc" if protocol == "dc" else "none")


def training_times(preset: TrackPreset) -> tuple[int, ...]:
    """When the tracked networks are measured (epochs finished): the preset's schedule over
    0 … E + 1 plus the time the protocol's learning rate drops (E//2 + 2), so that no velocity pair
    straddles the drop."""
    end = preset.epochs + 1
    return tuple(sorted(set(parse_schedule(preset.schedule, end)) | {min(preset.epochs // 2 + 2, end)}))


# --------------------------------------------------------------------------------------------
# one unit


class _EpochBar(Callback):
    def __init__(self, bar: Any):
        self.bar = bar

    def on_training_epoch_end(self, *, tag: str, epoch: int, network: torch.nn.Module, train_loss: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(unit=tag, loss=f"{train_loss:.3f}")


def _run_unit(
    preset: TrackPreset, unit: Unit, dataset: ImageDataset, out: Path, probe: ProbeSet,
    test_images: torch.Tensor, test_labels: torch.Tensor, *,
    reuse_study: Path | None, device: torch.device, progress: bool, bar: Any,
) -> None:
    from condense.evaluation import train_and_test
    from condense.networks import build_network
    from condense.runtime import derive_generator, seeded_global_rng

    started = time.perf_counter()
    train_set, source = _training_set(preset, unit, dataset, out, probe, reuse_study=reuse_study, device=device, progress=progress)
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    with seeded_global_rng(derive_generator(unit.seed, "track-network")):  # the same K_0 for every method of a seed
        network = build_network(preset.network, dataset.channels, dataset.num_classes, dataset.image_size).to(device)
    times = training_times(preset)
    tracker = KernelTracker(
        probe, mode=preset.kernel_mode, epochs=times, test_images=test_images, test_labels=test_labels,
        metadata_extra={"network": preset.network, "method": unit.method, "seed": unit.seed, "phase": "training"},
    )
    trained_at = time.perf_counter()
    tracker.record(network, run=unit.name, time=0)
    config = EvaluationConfig(networks=(preset.network,), num_networks=1, epochs=preset.epochs, batch_size=preset.batch_size)
    augmentation = _augmentation(preset, unit)
    result = train_and_test(
        network, images, labels, test_images, test_labels, config, augmentation=augmentation,
        generator=derive_generator(unit.seed, "track-training", unit.method), callbacks=[tracker, _EpochBar(bar)], tag=unit.name,
    )
    tracker.recorder.info.update(
        method=unit.method, seed=unit.seed, train_size=len(labels), train_source=source, augmentation=augmentation,
        steps_per_epoch=math.ceil(len(labels) / preset.batch_size), final_test_accuracy=result.test_accuracy,
        final_train_loss=result.train_loss, seconds_total=time.perf_counter() - started,
        seconds_training=time.perf_counter() - trained_at,
    )
    path = out / "kernels" / f"{unit.name}.pt"
    tracker.recorder.save(path)  # atomic: from now on the unit counts as finished
    log.info(
        "%s: %d images, %d kernels, test accuracy %.1f %% (%.0f s, of which training+tracking %.0f s)",
        unit.name, len(labels), len(tracker.recorder), 100 * result.test_accuracy,
        time.perf_counter() - started, time.perf_counter() - trained_at,
    )


# --------------------------------------------------------------------------------------------
# the run


def _check_config(out: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Refuse to mix runs of different settings in one directory; methods and seeds (which units
    run) may change between invocations and are merged."""
    path = out / "config.json"
    if not path.exists():
        return record
    old = json.loads(path.read_text())
    ignore = {"seeds", "methods", "description", "name"}
    old_preset, new_preset = old.get("preset", {}), record["preset"]
    differ = sorted(k for k in set(old_preset) | set(new_preset) if k not in ignore and json.dumps(old_preset.get(k)) != json.dumps(new_preset.get(k)))
    if differ:
        raise ConfigError(f"{out} holds a track run with different settings ({', '.join(differ)}); choose another --out or remove it")
    record["preset"]["seeds"] = sorted(set(old_preset.get("seeds", [])) | set(new_preset["seeds"]))
    record["preset"]["methods"] = list(dict.fromkeys([*old_preset.get("methods", []), *new_preset["methods"]]))
    record["condense_configs"] = {**old.get("condense_configs", {}), **record["condense_configs"]}
    return record


def run_track(
    preset: TrackPreset,
    out: str | Path,
    *,
    data_root: str | Path | None = None,
    download: bool = True,
    device: str | torch.device | None = None,
    reuse_study: str | Path | None = None,
    progress: bool = True,
    figures: bool = True,
) -> Path:
    """Run every unfinished (method, seed) unit of ``preset`` into ``out``; return ``out``."""
    from tqdm.auto import tqdm

    from condense import __version__
    from condense.runtime import resolve_device

    out = Path(out)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    reuse = Path(reuse_study) if reuse_study is not None else None
    if reuse is not None and not reuse.is_dir():
        raise ConfigError(f"--reuse-study {reuse}: no such directory")
    dataset = load_dataset(preset.dataset, root=data_root, download=download)
    units = [Unit(m, s) for s in preset.seeds for m in preset.methods]
    configs = {u.name: condense_config(preset, u.method, u.seed).to_dict() for u in units if u.method in CONDENSED_METHODS}
    times = training_times(preset)  # validates the schedule before any work
    probe = make_probe(dataset, preset.probe_per_class, preset.probe_seed, split=preset.probe_split)
    if preset.test_images is None or preset.test_images >= len(dataset.test_labels):
        test_images, test_labels = dataset.normalised_test()
        test_on = f"the whole {dataset.name} test set ({len(test_labels)} images)"
        test_indices = None
    else:
        subset = make_probe(dataset, max(1, preset.test_images // dataset.num_classes), preset.probe_seed, split="test", key="accuracy")
        test_images, test_labels, test_indices = subset.images, subset.labels, subset.indices.tolist()
        test_on = f"a fixed class-balanced subset of {len(test_labels)} {dataset.name} test images (seed {preset.probe_seed}, key 'accuracy')"
    record = {
        "preset": preset.to_dict(),
        "package_version": __version__,
        "dataset": {"name": dataset.name, "note": dataset.note, "classes": list(dataset.class_names),
                    "train_images": len(dataset.train_labels), "test_images": len(dataset.test_labels)},
        "probe": {"split": probe.split, "per_class": probe.per_class, "seed": probe.seed, "indices": probe.indices.tolist(), "size": len(probe)},
        "kernel": {"mode": preset.kernel_mode, "definition": "empirical NTK over all trainable parameters, eval mode; "
                   "trace = sum over logits of K[n, m, o, o]"},
        "time": {"unit": "epoch", "definition": "epochs finished (0 = initialisation)", "schedule": list(times),
                 "lr_drop": f"lr x 0.1 from time {preset.epochs // 2 + 2} on (epochs after index E//2 + 1)"},
        "velocity": "S(K_t, K_t') / (t' - t) at the start time t of each consecutive pair; S = 1 - <K, K'>_F / (|K|_F |K'|_F)",
        "test_accuracy_on": test_on,
        "test_indices": test_indices,
        "real": _real_label(preset, dataset) if "real" in preset.methods else None,
        "condense_configs": configs,
    }
    out.mkdir(parents=True, exist_ok=True)
    world = current_world()  # torchrun: the units are split over the ranks, each unit run by one rank alone

    def unfinished() -> list[Unit]:
        atomic_write_json(_check_config(out, record), out / "config.json")
        todo = []
        for unit in units:
            path = out / "kernels" / f"{unit.name}.pt"
            if path.exists():
                log.info("skipping %s: finished (%s)", unit.name, path)
            else:
                todo.append(unit)
        return todo

    todo = on_main(unfinished, "list of unfinished units")  # one process: just unfinished()
    mine = [todo[i] for i in my_share(len(todo))]
    test_images, test_labels = test_images.to(device), test_labels.to(device)
    started = time.perf_counter()
    with tqdm(total=len(mine) * (preset.epochs + 1), desc=f"track {preset.name}", unit="epoch", disable=not (progress and world.is_main)) as bar:
        for n, unit in enumerate(mine):
            log.info("[%d/%d] %s (%.1f min so far)", n + 1, len(mine), unit.name, (time.perf_counter() - started) / 60)
            with local_only():
                _run_unit(preset, unit, dataset, out, probe, test_images, test_labels, reuse_study=reuse, device=device, progress=progress, bar=bar)
            if not world.is_distributed:
                write_tables(out)
    barrier("wait for the other ranks' units")
    if not world.is_main:
        return out
    write_tables(out)
    if figures:
        from dynamics.figures import make_figures

        written = make_figures(out, out / "figures")
        log.info("figures: %s", ", ".join(p.name for p in written))
    log.info("track %s: %d units run, %d skipped, %.1f min -> %s", preset.name, len(todo), len(units) - len(todo), (time.perf_counter() - started) / 60, out)
    return out


if __name__ == "__main__":
    sys.exit(main())
