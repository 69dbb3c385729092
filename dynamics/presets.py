"""Track presets: what ``python -m dynamics.track --run <name>`` runs, as one table of data.

A :class:`TrackPreset` names the dataset, the images per class, the methods, the condensation
budget (a :mod:`condense.presets` name prefix, ``''`` for the paper's protocol or ``'quick-'``,
plus field overrides), the probe, the kernel variant, the tracking schedule, the training of the
tracked networks and the seeds. Every field can be overridden on the command line
(``--set field=value``); the resolved preset is written to the run's ``config.json``.

Cost of ``fashion-mnist``, measured unit by unit with one thread on a 2-core machine shared with
two other one-thread jobs (the run got 0.67 of a core there): condensing DC and DCC ≈ 2 × 330 s
(5 iterations ≈ 60 s each, +30 s for tracking the last one's inner loop), training + tracking on
each 100-image set ≈ 115 s (12 kernels of the 50-image probe ≈ 3 s each, plus test accuracy),
on the 500-image real subset ≈ 410 s (1000 images: 7.5 s per epoch, ≈ 760 s); ≈ 1420 s in all,
so ≈ 16 min (× 0.67) on an idle 2-core machine with one thread and less with two. Each extra seed
doubles it; ``--reuse-study`` with a finished ``condense study`` of the quick presets skips the
condensation (≈ 45 %); ``--set real_images=1000`` adds ≈ 4 min.

Methods: ``random`` (a random real subset of ``ipc`` images per class, the paper's baseline),
``dc``, ``dsa``, ``dcc``, ``dsac`` (condensed sets) and ``real`` (real training images: the whole
training set when ``real_images`` is ``None``, else a class-balanced random subset of
``real_images`` images; the size is part of every label).

Example::

    python -m dynamics.track --list
    python -m dynamics.track --run fashion-mnist --threads 2
    python -m dynamics.track --run fashion-mnist --seeds 0,1 --reuse-study runs/study-fashion-mnist
    python -m dynamics.track --run smoke --out /tmp/smoke --set epochs=8 --seeds 0,1,2
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from condense.errors import ConfigError

__all__ = ["TrackPreset", "TRACK_PRESETS", "get_track_preset", "TRACK_METHODS", "CONDENSED_METHODS"]

CONDENSED_METHODS: tuple[str, ...] = ("dc", "dsa", "dcc", "dsac")
TRACK_METHODS: tuple[str, ...] = ("random", *CONDENSED_METHODS, "real")
_AUGMENTATIONS = ("none", "dsa", "dc", "protocol")


@dataclass(frozen=True)
class TrackPreset:
    """One kernel-tracking study.

    Attributes:
        name: the preset's name (and the default run directory ``runs/<name>``).
        description: one line, shown by ``--list``.
        dataset: a :func:`condense.data.load_dataset` name.
        ipc: images per class of the synthetic sets and of the random subset.
        methods: from :data:`TRACK_METHODS`.
        condense_prefix: condensation presets ``<prefix><dataset>-ipc<ipc>-<method>``
            (``''``: the paper's protocol, ``'quick-'``: the CPU budget); a dataset without
            presets borrows Fashion-MNIST's settings (as ``condense study`` does).
        condense_set: overrides of the condensation config, ``'field=value'`` as in
            ``python -m condense run --set``.
        seeds: one unit per (method, seed): the seed of the condensation, of the random/real
            subset and of the tracked network's initialisation (shared by all methods of a seed,
            so their kernels start from the same K_0) and data order.
        network: architecture of the tracked networks (condensation uses its preset's).
        epochs: E of the training protocol (PAPER.md §5): E + 1 epochs, lr × 0.1 after E//2 + 1.
        augmentation: during tracked training: ``'none'`` (the same for every method, the
            default), ``'dsa'``, ``'dc'``, or ``'protocol'`` (each method's evaluation protocol).
        schedule: when to record, in epochs finished (see :func:`dynamics.tracking.parse_schedule`):
            ``'log'``, ``'every:K'`` or ``'0,1,5,…'``; the time of the learning-rate drop
            (E//2 + 2) is always added.
        probe_per_class: probe images per class (the probe has classes × this many images).
        probe_split: ``'test'`` (held out from every training set) or ``'train'``.
        probe_seed: seed of the probe (fixed across methods and seeds).
        kernel_mode: ``'trace'`` (P × P), ``'diagonal'`` (P × P × O) or ``'full'`` (P × P × O × O).
        real_images: size of the ``real`` training set (``None``: the whole training set).
        test_images: accuracy at tracked times on a fixed class-balanced subset of this many test
            images (``None``: the whole test set).
        synthesis_iterations: condensation iterations whose inner loop (θ trained on S) is
            tracked too when a set is condensed here (negative: from the end; ``()``: none).
        synthesis_schedule: when to record in that inner loop, in inner epochs finished.
        batch_size: training batch size (the protocol's 256).
    """

    name: str
    description: str
    dataset: str
    ipc: int
    methods: tuple[str, ...] = ("random", "dc", "dcc", "real")
    condense_prefix: str = "quick-"
    condense_set: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    network: str = "convnet"
    epochs: int = 300
    augmentation: str = "none"
    schedule: str = "log"
    probe_per_class: int = 5
    probe_split: str = "test"
    probe_seed: int = 0
    kernel_mode: str = "trace"
    real_images: int | None = None
    test_images: int | None = None
    synthesis_iterations: tuple[int, ...] = (-1,)
    synthesis_schedule: str = "log"
    batch_size: int = 256

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in TRACK_METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"unknown track methods {unknown}; choose from {', '.join(TRACK_METHODS)}")
        if len(set(self.methods)) != len(self.methods) or len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ConfigError("methods and seeds must be non-empty and without repeats")
        if self.ipc < 1 or self.epochs < 1 or self.probe_per_class < 1 or self.batch_size < 1:
            raise ConfigError("ipc, epochs, probe_per_class and batch_size must be positive")
        if self.augmentation not in _AUGMENTATIONS:
            raise ConfigError(f"augmentation must be one of {', '.join(_AUGMENTATIONS)}, got {self.augmentation!r}")
        if self.kernel_mode not in ("trace", "diagonal", "full"):
            raise ConfigError(f"kernel_mode must be trace, diagonal or full, got {self.kernel_mode!r}")
        if self.probe_split not in ("train", "test"):
            raise ConfigError(f"probe_split must be train or test, got {self.probe_split!r}")
        for name in ("real_images", "test_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive or None, got {value}")

    @property
    def condensed_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m in CONDENSED_METHODS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackPreset:
        hints = typing.get_type_hints(cls)
        values = {k: tuple(v) if isinstance(v, list) and "tuple" in str(hints.get(k)) else v for k, v in data.items()}
        unknown = set(values) - set(hints)
        if unknown:
            raise ConfigError(f"unknown track preset fields: {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrackPreset:
        return dataclasses.replace(self, **changes)


_FINE_GRAINED = ("automobile", "truck", "lizard", "fish", "terrier", "insect")
_PAPER = "paper's condensation protocol (1000 iterations), 300-epoch training, 3 seeds; a GPU job"

_TABLE: tuple[TrackPreset, ...] = (
    TrackPreset(
        name="smoke",
        description="seconds on a CPU, for tests: sklearn 8x8 digits, ipc 1, tiny ConvNet, 2 condensation iterations, 5 epochs, 2 seeds",
        dataset="sklearn-digits", ipc=1, methods=("random", "dc", "dcc", "real"), seeds=(0, 1),
        condense_set=("network=convnet-w32", "iterations=2", "matching_steps=2", "network_epochs=2", "real_batch=8",
                      "outer_warmup=1", "inner_warmup=1", "eval_at=[2]", "checkpoint_every=1"),
        network="convnet-w32", epochs=4, probe_per_class=2, real_images=200, test_images=100,
    ),
    TrackPreset(
        name="fashion-mnist",
        description="CPU study, est. 16 min on 2 idle cores with 1 thread (less with 2): Fashion-MNIST ipc 10, quick "
                    "condensation presets, 50-image probe, 100-epoch training, real = 500-image subset, 1 seed",
        dataset="fashion-mnist", ipc=10, methods=("random", "dc", "dcc", "real"), seeds=(0,),
        epochs=100, probe_per_class=5, real_images=500, test_images=500,
    ),
    TrackPreset(
        name="fashion-mnist-40it",
        description="the kernels of results/study-fashion-mnist-40it (reuse it with --reuse-study): Fashion-MNIST ipc 1, "
                    "paper loop sizes, 40 iterations, 300-epoch training, 50-image probe, real = 500-image subset, 3 seeds",
        dataset="fashion-mnist", ipc=1, methods=("random", "dc", "dcc", "real"), condense_prefix="",
        condense_set=("iterations=40", "outer_warmup=10", "inner_warmup=10"), seeds=(0, 1, 2),
        probe_per_class=5, real_images=500, test_images=1000, synthesis_iterations=(),
    ),
    TrackPreset(
        name="fashion-mnist-upper-paper-loops",
        description="the kernels of results/study-fashion-mnist-upper-paper-loops (reuse it with --reuse-study): the 4 upper-body "
                    "garments, ipc 10, K=10 T=50, 20 iterations, 300-epoch training, 40-image probe, real = 400-image subset, 3 seeds",
        dataset="fashion-mnist-upper", ipc=10, methods=("random", "dc", "dcc", "real"), condense_prefix="",
        condense_set=("iterations=20", "outer_warmup=5"), seeds=(0, 1, 2),
        probe_per_class=10, real_images=400, test_images=1000, synthesis_iterations=(),
    ),
    TrackPreset(
        name="cifar10",
        description=f"the DCC paper's setting: CIFAR-10 ipc 10, all methods, {_PAPER}, 100-image probe, real = whole training set",
        dataset="cifar10", ipc=10, methods=TRACK_METHODS, condense_prefix="", seeds=(0, 1, 2),
        probe_per_class=10, synthesis_iterations=(0, -1),
    ),
    TrackPreset(
        name="cifar100",
        description=f"CIFAR-100 ipc 10, random/DC/DSA/DCC/DSAC/real, {_PAPER}, 100-image probe (1 per class)",
        dataset="cifar100", ipc=10, methods=TRACK_METHODS, condense_prefix="", seeds=(0, 1, 2),
        probe_per_class=1, synthesis_iterations=(0, -1),
    ),
    TrackPreset(
        name="svhn",
        description=f"SVHN ipc 10, all methods, {_PAPER}, 100-image probe, real = whole training set",
        dataset="svhn", ipc=10, methods=TRACK_METHODS, condense_prefix="", seeds=(0, 1, 2),
        probe_per_class=10, synthesis_iterations=(0, -1),
    ),
    *(
        TrackPreset(
            name=f"imagenet32-{group}",
            description=f"ImageNet32 {group} subset ipc 10 (where DC can fall to random's level), {_PAPER}, 5 probe images per class",
            dataset=f"imagenet32-{group}", ipc=10, methods=TRACK_METHODS, condense_prefix="", seeds=(0, 1, 2),
            probe_per_class=5, synthesis_iterations=(0, -1),
        )
        for group in _FINE_GRAINED
    ),
)

TRACK_PRESETS: dict[str, TrackPreset] = {p.name: p for p in _TABLE}


def get_track_preset(name: str) -> TrackPreset:
    """The track preset called ``name``; :class:`~condense.errors.ConfigError` with close matches otherwise."""
    if name in TRACK_PRESETS:
        return TRACK_PRESETS[name]
    import difflib

    close = difflib.get_close_matches(name, TRACK_PRESETS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(TRACK_PRESETS)}"
    raise ConfigError(f"unknown track preset {name!r}{hint}")
