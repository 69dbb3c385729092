"""dynamics.velocity: kernel distance, velocity, distance from init, metadata, probes."""

from __future__ import annotations

import doctest
import json
import math

import pytest
import torch

import dynamics.velocity as velocity_module
from dynamics.velocity import (
    KernelMetadata,
    KernelTrajectory,
    class_balanced_probe,
    distance_from_init,
    kernel_distance,
    kernel_velocity,
    trajectory_from_kernels,
)

K1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
K2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
S12 = 1 - 5 / (math.sqrt(30) * math.sqrt(2))  # ⟨K1,K2⟩ = 2 + 3; ‖K1‖² = 30; ‖K2‖² = 2



def test_distance_hand_computation_2x2():
    assert kernel_distance(K1, K2) == pytest.approx(S12, abs=1e-12)
    # orthogonal kernels are at distance 1, opposite ones at 2
    assert kernel_distance(torch.eye(2), K2) == pytest.approx(1.0, abs=1e-12)
    assert kernel_distance(K1, -K1) == pytest.approx(2.0, abs=1e-12)


def test_distance_zero_for_identical_and_scaled_kernels():
    torch.manual_seed(0)
    k = torch.randn(6, 6, 3)
    assert kernel_distance(k, k) == pytest.approx(0.0, abs=1e-12)
    other = torch.randn(6, 6, 3)
    base = kernel_distance(k, other)
    for c in (1e-3, 0.5, 7.0, 1e4):
        assert kernel_distance(c * k, other) == pytest.approx(base, abs=1e-6)
        assert kernel_distance(k, c * other) == pytest.approx(base, abs=1e-6)
        assert kernel_distance(k, c * k) == pytest.approx(0.0, abs=1e-6)


def test_distance_symmetric_and_bounded():
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        a, b = torch.randn(5, 5, generator=g), torch.randn(5, 5, generator=g)
        d = kernel_distance(a, b)
        assert d == pytest.approx(kernel_distance(b, a), abs=1e-12)
        assert 0.0 <= d <= 2.0


def test_distance_accumulates_in_float64():
    # float32 squares of 1e20 overflow (1e40 > 3.4e38); float64 accumulation does not
    k = torch.full((4, 4), 1e20, dtype=torch.float32)
    assert kernel_distance(k, k) == pytest.approx(0.0, abs=1e-12)
    assert kernel_distance(k, 2 * k) == pytest.approx(0.0, abs=1e-12)


def test_distance_any_shape_flattened():
    a, b = K1.reshape(1, 2, 2, 1), K2.reshape(1, 2, 2, 1)
    assert kernel_distance(a, b) == pytest.approx(S12, abs=1e-12)


def test_distance_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        kernel_distance(torch.eye(2), torch.eye(3))
    with pytest.raises(ValueError, match="all-zero"):
        kernel_distance(torch.zeros(2, 2), torch.eye(2))


def test_velocity_hand_computation():
    # kernels at times 0, 1, 3: v0 = S(K1, K2) / 1, v1 = S(K2, K3) / 2
    k3 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # ⟨K2, K3⟩ = 1; ‖K3‖² = 3
    s23 = 1 - 1 / (math.sqrt(2) * math.sqrt(3))
    times, v = kernel_velocity([K1, K2, k3], [0, 1, 3])
    assert times.tolist() == [0.0, 1.0]  # the pair's start time
    assert v.dtype == torch.float64
    assert v.tolist() == pytest.approx([S12 / 1, s23 / 2], abs=1e-12)


def test_velocity_rejects_bad_times():
    with pytest.raises(ValueError, match="strictly increasing"):
        kernel_velocity([K1, K2, K1], [0, 2, 2])
    with pytest.raises(ValueError, match="times"):
        kernel_velocity([K1, K2], [0, 1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        kernel_velocity([K1], [0])


def test_distance_from_init():
    d = distance_from_init([K1, K2, 5 * K1])
    assert d.tolist() == pytest.approx([0.0, S12, 0.0], abs=1e-12)


def test_trajectory_from_kernels_and_roundtrip():
    meta = KernelMetadata(mode="trace", time_unit="epoch", probe_indices=torch.tensor([3, 1, 4]), probe_seed=7,
                          dataset="fashion_mnist/test", extra={"network": "convnet"})  # fmt: skip
    traj = trajectory_from_kernels([(0, K1), (2, K2), (3, K1)], metadata=meta)
    assert traj.times.tolist() == [0.0, 2.0, 3.0]
    assert traj.distances_from_init.tolist() == pytest.approx([0.0, S12, 0.0], abs=1e-12)
    assert traj.velocity_times.tolist() == [0.0, 2.0]
    assert traj.velocities.tolist() == pytest.approx([S12 / 2, S12 / 1], abs=1e-12)
    assert traj.metadata.probe_indices == [3, 1, 4]
    back = KernelTrajectory.from_dict(json.loads(json.dumps(traj.to_dict())))
    assert back.metadata == meta
    assert torch.equal(back.velocities, traj.velocities)
    single = trajectory_from_kernels([(5, K1)])
    assert single.velocities.numel() == 0 and single.distances_from_init.tolist() == [0.0]


def test_metadata_validation():
    with pytest.raises(ValueError, match="mode"):
        KernelMetadata(mode="sum", time_unit="step", probe_indices=[0])
    with pytest.raises(ValueError, match="time_unit"):
        KernelMetadata(mode="full", time_unit="second", probe_indices=[0])


def test_class_balanced_probe():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    idx = class_balanced_probe(labels, 3, torch.Generator().manual_seed(0))
    assert idx.dtype == torch.int64 and idx.numel() == 9
    assert labels[idx].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # sorted by class
    for c in range(3):
        chunk = idx[3 * c : 3 * c + 3]
        assert torch.equal(chunk, chunk.sort().values) and chunk.unique().numel() == 3
    again = class_balanced_probe(labels, 3, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)  # reproducible from the seed
    draws = {tuple(class_balanced_probe(labels, 2, torch.Generator().manual_seed(s)).tolist()) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    with pytest.raises(ValueError, match="fewer than"):
        class_balanced_probe(labels, 5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="per_class"):
        class_balanced_probe(labels, 0)


def test_module_docstring_examples_run():
    result = doctest.testmod(velocity_module)
    assert result.attempted > 0 and result.failed == 0


def test_kernel_label_alignment_is_one_for_the_class_kernel_and_scale_invariant():
    from dynamics.velocity import kernel_label_alignment

    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    same_class = (labels[:, None] == labels[None]).float()
    assert kernel_label_alignment(same_class, labels) == pytest.approx(1.0)
    assert kernel_label_alignment(7 * same_class + 3, labels) == pytest.approx(1.0)  # scale and constant removed
    # the identity: HYH has C - 1 eigenvalues P/C, so <H, HYH> / (|H| |HYH|) = sqrt(C - 1) / sqrt(P - 1)
    assert kernel_label_alignment(torch.eye(6), labels) == pytest.approx(math.sqrt(2 / 5))
    with pytest.raises(ValueError, match="need a"):
        kernel_label_alignment(torch.eye(5), labels)
