"""Named presets: the paper's exact settings and quick CPU settings, as one table of data.

- ``<dataset>-ipc<N>-<method>``: the paper's protocol (PAPER.md §1–5): 1000 iterations, loop
  sizes from :data:`condense.config.LOOP_SIZES`, real batch 256, warm-up 250/10, evaluation of
  20 ConvNets for 300 epochs (1000 with DSA) at iterations 0, 500 and 1000.
- ``quick-<dataset>-ipc<N>-<method>``: the same algorithm with a smaller budget, sized to finish
  in a few minutes on 2 CPU cores. What is reduced is listed in :data:`QUICK_REDUCTIONS` and
  printed by ``python -m condense presets``.
"""

from __future__ import annotations

from dataclasses import dataclass

from condense.config import METHODS, CondenseConfig, EvaluationConfig
from condense.errors import ConfigError

__all__ = ["Preset", "PRESETS", "get_preset", "QUICK_REDUCTIONS"]


@dataclass(frozen=True)
class Preset:
    name: str
    config: CondenseConfig
    description: str


PAPER_DATASETS = ("mnist", "fashion-mnist", "svhn", "cifar10", "cifar100")
FINE_GRAINED = tuple(f"imagenet32-{s}" for s in ("automobile", "truck", "lizard", "fish", "terrier", "insect"))
PAPER_IPCS = (1, 10, 50)
QUICK_DATASETS = ("fashion-mnist", "fashion-mnist-upper", "mnist-10k", "mnist")

#: ipc -> the fields a quick preset changes (everything else is the paper's setting).
QUICK_REDUCTIONS: dict[int, dict] = {
    1: dict(iterations=15, real_batch=32, outer_warmup=4, checkpoint_every=3, eval_at=(15,),
            evaluation=EvaluationConfig(num_networks=3, epochs=300)),
    10: dict(iterations=5, real_batch=32, network_epochs=5, outer_warmup=1, checkpoint_every=1, eval_at=(5,),
             evaluation=EvaluationConfig(num_networks=2, epochs=100)),
}


def _describe_quick(ipc: int) -> str:
    r = QUICK_REDUCTIONS[ipc]
    ev: EvaluationConfig = r["evaluation"]
    parts = [f"{r['iterations']} iterations (paper 1000)", f"real batch {r['real_batch']} (paper 256)", f"outer warm-up {r['outer_warmup']} (paper 250)"]
    if "network_epochs" in r:
        parts.append(f"T={r['network_epochs']} network epochs per step (paper 50)")
    parts.append(f"evaluated at the end only with {ev.num_networks} networks (paper 20) × {ev.epochs} epochs (paper 300, 1000 with DSA)")
    return "quick CPU budget: " + ", ".join(parts)


def _build() -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for dataset in PAPER_DATASETS + FINE_GRAINED:
        for ipc in PAPER_IPCS if dataset in PAPER_DATASETS else (1, 10):
            for method in METHODS:
                name = f"{dataset}-ipc{ipc}-{method}"
                config = CondenseConfig(dataset=dataset, method=method, ipc=ipc)
                presets[name] = Preset(name, config, "paper protocol (PAPER.md §1-5)")
    for dataset in QUICK_DATASETS:
        for ipc, reduction in QUICK_REDUCTIONS.items():
            for method in METHODS:
                name = f"quick-{dataset}-ipc{ipc}-{method}"
                config = CondenseConfig(dataset=dataset, method=method, ipc=ipc, **reduction)
                presets[name] = Preset(name, config, _describe_quick(ipc))
    return presets


PRESETS: dict[str, Preset] = _build()


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`ConfigError` with close matches otherwise."""
    if name in PRESETS:
        return PRESETS[name]
    import difflib

    close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `python -m condense presets` lists them"
    raise ConfigError(f"unknown preset {name!r}{hint}")
