"""dynamics.comparison: tracked kernels against a reference method's, checked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from condense.errors import CondenseError
from dynamics.comparison import distance_to_reference_rows, paired_difference, reference_gaps, reference_table
from dynamics.figures import ProbeKernels

K0 = torch.tensor([[2.0, 1.0], [1.0, 2.0]])


def _cos_distance(a: list[float], b: list[float]) -> float:
    """1 − cos of two flattened 2 × 2 kernels, written out by hand."""
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _unit(method: str, seed: int, times: list[float], kernels: list[torch.Tensor]) -> ProbeKernels:
    return ProbeKernels(method, seed, torch.tensor(times), torch.stack(kernels), torch.tensor([0, 1]), math.nan)


def test_distance_and_velocity_gap_match_a_hand_computation():
    real1 = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    dc1 = torch.tensor([[2.0, 0.5], [0.5, 2.0]])
    # DC records one extra time (0.5) that real does not: only the shared times 0 and 2 count
    dc_half = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    units = [_unit("real", 0, [0, 2], [K0, real1]), _unit("dc", 0, [0, 0.5, 2], [K0, dc_half, dc1])]
    (gap,) = reference_gaps(units)
    assert gap.method == "dc" and gap.reference == "real"
    assert gap.times.tolist() == [0.0, 2.0]
    d = _cos_distance([2, 0.5, 0.5, 2], [3, 0, 0, 1])
    assert gap.distances.tolist() == pytest.approx([0.0, d], abs=1e-12)
    assert gap.final_distance == pytest.approx(d, abs=1e-12) and gap.mean_distance == pytest.approx(d / 2, abs=1e-12)
    v_dc = _cos_distance([2, 1, 1, 2], [2, 0.5, 0.5, 2]) / 2
    v_real = _cos_distance([2, 1, 1, 2], [3, 0, 0, 1]) / 2
    assert gap.velocity_gap == pytest.approx(abs(math.log10(v_dc) - math.log10(v_real)), rel=1e-9)


def test_identical_training_has_no_gap_and_rows_are_tidy():
    k1 = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
    units = [_unit("real", 3, [0, 1], [K0, k1]), _unit("dcc", 3, [0, 1], [K0, k1])]
    (gap,) = reference_gaps(units)
    assert gap.final_distance == pytest.approx(0.0, abs=1e-12) and gap.velocity_gap == pytest.approx(0.0, abs=1e-12)
    rows = distance_to_reference_rows([gap])
    assert [(r["method"], r["seed"], r["time"]) for r in rows] == [("dcc", 3.0, 0.0), ("dcc", 3.0, 1.0)]


def test_paired_difference_and_table_per_seed():
    far, near = torch.tensor([[1.0, 0.0], [0.0, 5.0]]), torch.tensor([[2.0, 1.1], [1.1, 2.0]])
    units = []
    for seed in (0, 1):
        units += [_unit("real", seed, [0, 1], [K0, K0 * 2]), _unit("dc", seed, [0, 1], [K0, far]), _unit("dcc", seed, [0, 1], [K0, near])]
    gaps = reference_gaps(units)
    diff = paired_difference(gaps, "dcc", "dc", "final_distance")
    expected = _cos_distance([2, 1.1, 1.1, 2], [2, 1, 1, 2]) - _cos_distance([1, 0, 0, 5], [2, 1, 1, 2])
    assert diff == pytest.approx({0: expected, 1: expected}, abs=1e-6) and expected < 0  # 1.1 is rounded to float32
    table = reference_table(gaps)
    assert "DCC − DC per seed" in table and f"| 1 | {expected:+.4f} |" in table
    assert table.count("| dc | ") == 2 and "| **dcc** | mean ± std |" in table


def test_a_seed_without_the_reference_is_an_error():
    with pytest.raises(CondenseError, match="no 'real' kernels for seed 1"):
        reference_gaps([_unit("real", 0, [0, 1], [K0, K0]), _unit("dc", 1, [0, 1], [K0, K0])])
    with pytest.raises(CondenseError, match="shares 1 recorded time"):
        reference_gaps([_unit("real", 0, [0, 1], [K0, K0]), _unit("dc", 0, [0, 2], [K0, K0])])
