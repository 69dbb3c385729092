"""The warm-up ablation: contrastive matching with and without the bi-level DC warm-up.

The paper (PAPER.md §3) runs DCC after a warm-up of class-wise (DC) matching and reports that
contrastive matching alone, started from noise, can collapse. The synthesis loop's rule is

    contrastive iff iteration >= outer_warmup or step >= inner_warmup,

so the class-wise region is the rectangle ``iteration < O and step < I``. The variants below
name the shape of that rectangle for a run of ``N`` iterations of ``K`` matching steps
(``O_w = round(outer_fraction * N)``, ``I_w = round(inner_fraction * K)``):

============  =========  =========  ================================================
variant       O          I          class-wise where
============  =========  =========  ================================================
``dc``        —          —          everywhere (method ``dc``: the reference)
``none``      0          0          nowhere (contrastive from the first step)
``outer``     O_w        K          all steps of the first O_w iterations (the paper's
                                    setting at ipc 1 and 10, where I = 10 = K)
``inner``     N          I_w        the first I_w steps of every iteration
``bilevel``   O_w        I_w        the first I_w steps of the first O_w iterations
============  =========  =========  ================================================

Each (variant, seed) is a condensation run directory ``<out>/<variant>-seed<S>/`` written by
:func:`condense.synthesis.condense_dataset` (resumable; a finished one, with ``DONE``, is
skipped), evaluated by the protocol at the end. Presets are data (:data:`ABLATION_PRESETS`)::

    >>> from condense import load_dataset                                         # doctest: +SKIP
    >>> from condense.warmup_ablation import describe, get_ablation_preset, read_warmup_ablation, run_warmup_ablation
    >>> preset = get_ablation_preset("fashion-mnist")
    >>> run_warmup_ablation(preset, load_dataset(preset.dataset), "runs/warmup-ablation-fashion-mnist")
    >>> print(describe(read_warmup_ablation("runs/warmup-ablation-fashion-mnist")))   # a Markdown table
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from condense.artifacts import atomic_write_json
from condense.config import CondenseConfig, parse_overrides
from condense.data import ImageDataset
from condense.errors import ConfigError
from condense.evaluation import PooledAccuracies, mean_std
from condense.matching import MatchingObjective, matching_objective
from condense.presets import get_preset
from condense.study import final_accuracies
from condense.synthesis import condense_dataset

log = logging.getLogger("condense.warmup_ablation")

__all__ = [
    "VARIANTS", "AblationPreset", "ABLATION_PRESETS", "get_ablation_preset", "variant_config",
    "run_warmup_ablation", "VariantResult", "read_warmup_ablation", "classwise_share", "describe",
]

#: variant -> one-line description, in plotting order.
VARIANTS: dict[str, str] = {
    "dc": "DC (class-wise throughout)",
    "none": "DCC, no warm-up",
    "inner": "DCC, inner warm-up only",
    "outer": "DCC, outer warm-up only",
    "bilevel": "DCC, outer + inner warm-up",
}


@dataclass(frozen=True)
class AblationPreset:
    """One warm-up ablation.

    Attributes:
        name: the preset's name (default run directory ``runs/warmup-ablation-<name>``).
        description: one line.
        base_preset: a :mod:`condense.presets` name whose config every variant starts from.
        condense_set: ``field=value`` overrides of that config (as ``python -m condense run --set``).
        variants: from :data:`VARIANTS`.
        seeds: one run per variant and seed.
        outer_fraction: O_w as a fraction of the iterations.
        inner_fraction: I_w as a fraction of the matching steps K.
        reduced: the budget is smaller than the paper's (figures say so).
    """

    name: str
    description: str
    base_preset: str
    condense_set: tuple[str, ...] = ()
    variants: tuple[str, ...] = tuple(VARIANTS)
    seeds: tuple[int, ...] = (0,)
    outer_fraction: float = 0.25
    inner_fraction: float = 0.5
    reduced: bool = True

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown warm-up variants {unknown}; choose from {', '.join(VARIANTS)}")
        if not (0 < self.outer_fraction <= 1 and 0 < self.inner_fraction <= 1):
            raise ConfigError("outer_fraction and inner_fraction must lie in (0, 1]")

    def base_config(self) -> CondenseConfig:
        """The config every variant starts from: ``base_preset`` with ``condense_set``, as DC (whose
        warm-up fields are unused, so they need not fit the overridden loop sizes yet)."""
        return get_preset(self.base_preset).config.replace(method="dc", **parse_overrides(list(self.condense_set)))

    @property
    def dataset(self) -> str:
        """The dataset every variant condenses."""
        return self.base_config().dataset

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


ABLATION_PRESETS: dict[str, AblationPreset] = {
    preset.name: preset
    for preset in (
        AblationPreset(
            name="smoke",
            description="seconds on a CPU, for tests: sklearn 8x8 digits, noise init, 4 iterations of K=4 steps",
            base_preset="quick-fashion-mnist-ipc1-dcc",
            condense_set=("dataset=sklearn-digits", "network=convnet-w32", "init=noise", "iterations=4", "matching_steps=4",
                          "network_epochs=2", "real_batch=8", "eval_at=[4]", "checkpoint_every=2",
                          "evaluation.num_networks=1", "evaluation.epochs=20"),
        ),
        AblationPreset(
            name="fashion-mnist",
            description="CPU budget (~1 min per run on one loaded core): Fashion-MNIST ipc 1 from noise, width-32 ConvNet, "
                        "16 iterations of K=10 steps (paper 1000), real batch 32 (256), 3 ConvNet-w32 x 100 epochs (20 x 300), 3 seeds",
            base_preset="quick-fashion-mnist-ipc1-dcc",
            condense_set=("network=convnet-w32", "init=noise", "iterations=16", "real_batch=32", "eval_at=[16]",
                          "checkpoint_every=4", "evaluation.num_networks=3", "evaluation.epochs=100",
                          "evaluation.networks=convnet-w32"),
            seeds=(0, 1, 2),
        ),
        AblationPreset(
            name="fashion-mnist-paper",
            description="the paper's budget (a GPU job): Fashion-MNIST ipc 1 from noise, ConvNet, 1000 iterations, "
                        "real batch 256, 20 ConvNets x 300 epochs, 3 seeds",
            base_preset="fashion-mnist-ipc1-dcc", condense_set=("init=noise",), seeds=(0, 1, 2), reduced=False,
        ),
    )
}


def get_ablation_preset(name: str) -> AblationPreset:
    """The ablation preset ``name``; a :class:`ConfigError` naming the known ones otherwise."""
    if name not in ABLATION_PRESETS:
        raise ConfigError(f"unknown warm-up ablation preset {name!r}; known: {', '.join(ABLATION_PRESETS)}")
    return ABLATION_PRESETS[name]


def variant_config(preset: AblationPreset, variant: str, seed: int) -> CondenseConfig:
    """The condensation config of ``variant`` (see the module docstring's table) for ``seed``."""
    base = preset.base_config().replace(seed=seed)
    iterations, steps = base.iterations, base.steps
    outer = max(1, round(preset.outer_fraction * iterations))
    inner = max(1, round(preset.inner_fraction * steps))
    warmups = {
        "none": (0, 0),
        "outer": (outer, steps),
        "inner": (iterations, inner),
        "bilevel": (outer, inner),
    }
    if variant == "dc":
        return base
    if variant not in warmups:
        raise ConfigError(f"unknown warm-up variant {variant!r}; choose from {', '.join(VARIANTS)}")
    outer_warmup, inner_warmup = warmups[variant]
    return base.replace(method="dcc", outer_warmup=outer_warmup, inner_warmup=inner_warmup)


def run_warmup_ablation(
    preset: AblationPreset, dataset: ImageDataset, out: str | Path, *, device=None, progress: bool = True,
) -> Path:
    """Run every unfinished (variant, seed) of ``preset`` into ``out``; return ``out``."""
    out = Path(out)
    configs = {f"{v}-seed{s}": variant_config(preset, v, s) for s in preset.seeds for v in preset.variants}
    if any(c.dataset != dataset.name for c in configs.values()):
        raise ConfigError(f"preset {preset.name!r} condenses {preset.dataset}, not {dataset.name}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json({"preset": preset.to_dict(), "configs": {k: c.to_dict() for k, c in configs.items()}}, out / "ablation.json")
    for n, (name, config) in enumerate(configs.items()):
        if (out / name / "DONE").exists():
            continue
        log.info("[%d/%d] warm-up ablation %s (outer %d, inner %d)", n + 1, len(configs), name, config.outer_warmup, config.inner_warmup)
        condense_dataset(config, dataset, out / name, device=device, resume=True, progress=progress)
    return out


@dataclass(frozen=True)
class VariantResult(PooledAccuracies):
    """Final test accuracies of one variant over its finished seeds.

    Attributes:
        variant: a key of :data:`VARIANTS`.
        accuracies: every evaluation network of every seed, in [0, 1].
        seed_means: ``{seed: mean accuracy of that seed's networks}``.
        outer_warmup, inner_warmup: the config's warm-up (``None`` for ``dc``).
        classwise_share: the fraction of the run's (iteration, matching step) pairs matched class-wise.
    """

    variant: str
    accuracies: tuple[float, ...]
    seed_means: dict[int, float]
    outer_warmup: int | None
    inner_warmup: int | None
    classwise_share: float



def read_warmup_ablation(out: str | Path, network: str | None = None) -> list[VariantResult]:
    """The finished variants in ``out`` (a :func:`run_warmup_ablation` directory), in :data:`VARIANTS` order.

    ``network`` defaults to the first evaluation architecture of the configs. Raises
    :class:`ConfigError` when ``out`` holds no finished run.
    """
    out = Path(out)
    runs: dict[str, dict[int, Path]] = {}
    for done in sorted(out.glob("*-seed*/DONE")):
        variant, _, seed = done.parent.name.rpartition("-seed")
        if variant in VARIANTS and seed.isdigit():
            runs.setdefault(variant, {})[int(seed)] = done.parent
    if not runs:
        raise ConfigError(f"{out} holds no finished warm-up ablation run (<variant>-seed<S>/DONE)")
    results = []
    for variant in (v for v in VARIANTS if v in runs):
        accuracies: list[float] = []
        seed_means: dict[int, float] = {}
        config = None
        for seed, run_dir in sorted(runs[variant].items()):
            config = CondenseConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
            found = final_accuracies(run_dir, network or config.evaluation.networks[0])
            if found:
                accuracies += found
                seed_means[seed] = mean_std(found)[0]
        if accuracies and config is not None:
            warm = config.method == "dcc"
            results.append(VariantResult(variant, tuple(accuracies), seed_means, config.outer_warmup if warm else None,
                                         config.inner_warmup if warm else None, classwise_share(config)))
    return results


def classwise_share(config: CondenseConfig) -> float:
    """The fraction of (iteration, matching step) pairs of ``config`` that match class-wise (1 for DC/DSA)."""
    if not config.uses_warmup:
        return 1.0
    pairs = [(it, k) for it in range(config.iterations) for k in range(config.steps)]
    classwise = sum(matching_objective(it, k, config.outer_warmup, config.inner_warmup) is MatchingObjective.CLASSWISE for it, k in pairs)
    return classwise / max(1, len(pairs))


def describe(results: Sequence[VariantResult]) -> str:
    """A Markdown table of :func:`read_warmup_ablation`'s results (accuracy in %)."""
    lines = ["| variant | outer warm-up O | inner warm-up I | class-wise steps | test accuracy (%) | seeds |", "|---|---|---|---|---|---|"]
    for r in results:
        o = "–" if r.outer_warmup is None else str(r.outer_warmup)
        i = "–" if r.inner_warmup is None else str(r.inner_warmup)
        lines.append(f"| {VARIANTS[r.variant]} | {o} | {i} | {100 * r.classwise_share:.1f} % | {100 * r.mean:.1f} ± {100 * r.std:.1f} (n={len(r.accuracies)}) | {len(r.seed_means)} |")
    return "\n".join(lines)
