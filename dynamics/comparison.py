"""How much like real data a training set moves the kernel: tracked kernels against a reference's.

The DCC paper argues with kernel velocity (PAPER.md §7) that networks trained on DCC's sets move
their empirical NTK more like networks trained on real data than networks trained on DC's sets
do. A track run (:mod:`dynamics.track`) trains every method of a seed from the same θ₀, so the
kernels of all methods start equal (K₀) and can be compared at every recorded time t. Against a
reference method r (``real`` by default) this module measures, per (method, seed):

- the **kernel distance to the reference**, ``S(K_m(t), K_r(t))`` with
  ``S(K, K') = 1 − ⟨K, K'⟩_F / (‖K‖_F ‖K'‖_F)`` (0 at t = 0; small: the same kernel as real-data
  training reached at that time), reported at the last time and averaged over the recorded times;
- the **velocity gap**, the mean over consecutive time pairs of
  ``|log₁₀ v_m(t_i) − log₁₀ v_r(t_i)|`` with ``v(t_i) = S(K_{t_i}, K_{t_{i+1}}) / (t_{i+1} − t_i)``
  (0: the same speed as real-data training at every time; 1: a factor 10 apart on average).

Both are computed from the stored kernels (``<run>/kernels/<method>-seed<S>.pt``) at the times
the two methods share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from condense.errors import CondenseError
from condense.evaluation import mean_std
from dynamics.velocity import kernel_distance, kernel_velocity

__all__ = ["ReferenceGap", "reference_gaps", "run_reference_gaps", "distance_to_reference_rows", "reference_table", "paired_difference"]

_VELOCITY_FLOOR = 1e-12  # a kernel that did not move at all: log10 of this instead of -inf


@dataclass(frozen=True)
class ReferenceGap:
    """One (method, seed) against the reference method of the same seed.

    Attributes:
        method, seed: the unit.
        reference: the reference method (``real``).
        times: ``(T,)`` the shared recorded times (epochs finished).
        distances: ``(T,)`` ``S(K_m(t), K_r(t))`` at those times.
        velocity_gap: mean ``|log₁₀ v_m − log₁₀ v_r|`` over the ``T − 1`` consecutive pairs.
    """

    method: str
    seed: int
    reference: str
    times: torch.Tensor
    distances: torch.Tensor
    velocity_gap: float

    @property
    def final_distance(self) -> float:
        return float(self.distances[-1])

    @property
    def mean_distance(self) -> float:
        return float(self.distances.mean())


def _shared(times_a: torch.Tensor, times_b: torch.Tensor) -> tuple[list[int], list[int]]:
    """Indices into a and b of the times both recorded (sorted)."""
    index_b = {float(t): i for i, t in enumerate(times_b)}
    pairs = [(i, index_b[float(t)]) for i, t in enumerate(times_a) if float(t) in index_b]
    return [i for i, _ in pairs], [j for _, j in pairs]


def reference_gaps(kernels: Sequence, reference: str = "real") -> list[ReferenceGap]:
    """Every non-reference (method, seed) of ``kernels`` against the reference of its seed.

    Args:
        kernels: :class:`dynamics.figures.ProbeKernels` (``method``, ``seed``, ``times (T,)``,
            ``kernels (T, P, P)``) of one track run, e.g. from :func:`dynamics.figures.load_probe_kernels`.
        reference: the method every other one is compared with.

    Raises :class:`CondenseError` when the reference is missing for a seed that has other methods,
    or when a unit shares fewer than two times with it.
    """
    references = {k.seed: k for k in kernels if k.method == reference}
    gaps = []
    for unit in kernels:
        if unit.method == reference:
            continue
        ref = references.get(unit.seed)
        if ref is None:
            raise CondenseError(f"no {reference!r} kernels for seed {unit.seed}: track the {reference!r} method too")
        mine, theirs = _shared(unit.times, ref.times)
        if len(mine) < 2:
            raise CondenseError(f"{unit.method} seed {unit.seed} shares {len(mine)} recorded time(s) with {reference!r}; need 2")
        times = unit.times[mine].to(torch.float64)
        ours, refs = unit.kernels[mine], ref.kernels[theirs]
        distances = torch.tensor([kernel_distance(a, b) for a, b in zip(ours, refs)], dtype=torch.float64)
        v_ours = kernel_velocity(list(ours), times.tolist()).velocities.clamp_min(_VELOCITY_FLOOR)
        v_refs = kernel_velocity(list(refs), times.tolist()).velocities.clamp_min(_VELOCITY_FLOOR)
        gap = float((v_ours.log10() - v_refs.log10()).abs().mean())
        gaps.append(ReferenceGap(unit.method, unit.seed, reference, times, distances, gap))
    return gaps


def run_reference_gaps(run_dir, reference: str = "real") -> list[ReferenceGap]:
    """:func:`reference_gaps` of a track run directory's stored kernels; ``[]`` when the run has no
    ``reference`` unit or its kernels are not the trace NTK of the probe (``kernel_mode`` other than trace)."""
    from dynamics.figures import load_probe_kernels

    try:
        kernels = load_probe_kernels(run_dir)
    except CondenseError:
        return []
    if not any(k.method == reference for k in kernels):
        return []
    return reference_gaps([k for k in kernels if any(r.method == reference and r.seed == k.seed for r in kernels)], reference)


def distance_to_reference_rows(gaps: Sequence[ReferenceGap]) -> list[dict]:
    """Tidy rows ``method, seed, time, distance_to_reference`` (for :func:`dynamics.figures.aggregate`)."""
    return [
        {"method": g.method, "seed": float(g.seed), "time": float(t), "distance_to_reference": float(d)}
        for g in gaps for t, d in zip(g.times, g.distances)
    ]


def paired_difference(gaps: Sequence[ReferenceGap], better: str, worse: str, measure: str) -> dict[int, float]:
    """``{seed: measure(better) − measure(worse)}`` over the seeds that have both methods
    (``measure``: ``final_distance``, ``mean_distance`` or ``velocity_gap``; negative: ``better``
    is closer to the reference)."""
    by = {(g.method, g.seed): getattr(g, measure) for g in gaps}
    seeds = sorted({s for m, s in by if m == better} & {s for m, s in by if m == worse})
    return {s: by[(better, s)] - by[(worse, s)] for s in seeds}


def _mean_std(values: Sequence[float]) -> str:
    """``mean ± population std`` (the mean alone for one value)."""
    mean, std = mean_std(values)
    return f"{mean:.4f}" + (f" ± {std:.4f}" if len(values) > 1 else "")


def reference_table(gaps: Sequence[ReferenceGap]) -> str:
    """A Markdown table: per method and seed the three measures, then mean ± std over seeds, then
    DCC − DC (and DSAC − DSA) per seed when both are there."""
    if not gaps:
        return ""
    reference = gaps[0].reference
    lines = [
        f"Kernels against `{reference}` training of the same seed (same θ₀): S(K_m(t), K_{reference}(t)) at the last "
        "recorded time and averaged over the recorded times, and the mean |log₁₀ v_m − log₁₀ v_ref| over time pairs. "
        "Smaller = more like real-data training.",
        "",
        "| method | seed | final distance | mean distance | velocity gap (log₁₀) |",
        "|---|---|---|---|---|",
    ]
    methods = list(dict.fromkeys(g.method for g in gaps))
    for method in methods:
        mine = [g for g in gaps if g.method == method]
        for g in mine:
            lines.append(f"| {method} | {g.seed} | {g.final_distance:.4f} | {g.mean_distance:.4f} | {g.velocity_gap:.3f} |")
        if len(mine) > 1:
            lines.append(f"| **{method}** | mean ± std | {_mean_std([g.final_distance for g in mine])} | "
                         f"{_mean_std([g.mean_distance for g in mine])} | {_mean_std([g.velocity_gap for g in mine])} |")
    for better, worse in (("dcc", "dc"), ("dsac", "dsa")):
        if better in methods and worse in methods:
            diffs = {m: paired_difference(gaps, better, worse, m) for m in ("final_distance", "mean_distance", "velocity_gap")}
            seeds = sorted(diffs["final_distance"])
            lines += ["", f"{better.upper()} − {worse.upper()} per seed (negative: {better.upper()} is closer to `{reference}`):", "",
                      "| seed | final distance | mean distance | velocity gap |", "|---|---|---|---|"]
            lines += [f"| {s} | {diffs['final_distance'][s]:+.4f} | {diffs['mean_distance'][s]:+.4f} | {diffs['velocity_gap'][s]:+.3f} |" for s in seeds]
    return "\n".join(lines) + "\n"
