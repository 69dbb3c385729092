"""The matching losses against hand-derived gradients of a linear softmax model."""

import numpy as np
import pytest
import torch
from torch import nn

from condense.matching import (
    MatchingObjective,
    classwise_matching_loss,
    contrastive_matching_loss,
    gradient_distance,
    layerwise_cosine_distance,
    matching_objective,
    mean_class_gradient,
    parameter_gradients,
)


def softmax_gradient(W, b, X, y, num_classes):
    """Hand-derived ∇ of mean CE for logits = X Wᵀ + b: ((p − onehot)ᵀ X / N, mean(p − onehot))."""
    logits = X @ W.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    residual = p - np.eye(num_classes)[y]
    return residual.T @ X / len(X), residual.mean(axis=0)


def row_cosine_distance(a, b):
    """Hand formula of D for a 2-D tensor: Σ_rows 1 − ⟨a_i, b_i⟩ / (‖a_i‖‖b_i‖ + 1e-6)."""
    return sum(1 - a[i] @ b[i] / (np.linalg.norm(a[i]) * np.linalg.norm(b[i]) + 1e-6) for i in range(len(a)))


@pytest.fixture
def linear_problem():
    rng = np.random.default_rng(0)
    C, D = 4, 6
    W, b = rng.normal(size=(C, D)), rng.normal(size=C)
    real = [rng.normal(loc=c, size=(7 + c, D)) for c in range(C)]  # unequal class batch sizes
    syn = [rng.normal(size=(2, D)) for _ in range(C)]
    model = nn.Linear(D, C).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(W))
        model.bias.copy_(torch.tensor(b))
    return C, W, b, real, syn, model


def test_contrastive_loss_equals_distance_to_mean_class_gradient(linear_problem):
    C, W, b, real, syn, model = linear_problem
    # Hand computation: D(∇ℓ(S), (1/C) Σ_c ∇ℓ(B_c)); biases (1-D) contribute nothing.
    real_w = [softmax_gradient(W, b, real[c], np.full(len(real[c]), c), C)[0] for c in range(C)]
    S = np.concatenate(syn)
    yS = np.repeat(np.arange(C), 2)
    syn_w = softmax_gradient(W, b, S, yS, C)[0]
    expected = row_cosine_distance(syn_w, np.mean(real_w, axis=0))

    real_grads = [parameter_gradients(model, torch.tensor(real[c]), torch.full((len(real[c]),), c)) for c in range(C)]
    syn_whole = parameter_gradients(model, torch.tensor(S), torch.tensor(yS), create_graph=True)
    got = contrastive_matching_loss(mean_class_gradient(real_grads), syn_whole)
    assert got.item() == pytest.approx(expected, rel=1e-9)

    # The one-pass weighted real gradient equals the mean of class gradients (unequal batch sizes).
    X = torch.tensor(np.concatenate(real))
    y = torch.cat([torch.full((len(r),), c) for c, r in enumerate(real)])
    weights = torch.cat([torch.full((len(r),), 1.0 / (C * len(r)), dtype=torch.float64) for r in real])
    one_pass = parameter_gradients(model, X, y, sample_weights=weights)
    for a, m in zip(one_pass, mean_class_gradient(real_grads)):
        torch.testing.assert_close(a, m, rtol=1e-9, atol=1e-12)


def test_classwise_loss_is_sum_of_per_class_distances_and_differs_from_contrastive(linear_problem):
    C, W, b, real, syn, model = linear_problem
    expected = 0.0
    for c in range(C):
        gr = softmax_gradient(W, b, real[c], np.full(len(real[c]), c), C)[0]
        gs = softmax_gradient(W, b, syn[c], np.full(2, c), C)[0]
        expected += row_cosine_distance(gs, gr)
    real_grads = [parameter_gradients(model, torch.tensor(real[c]), torch.full((len(real[c]),), c)) for c in range(C)]
    syn_grads = [parameter_gradients(model, torch.tensor(syn[c]), torch.full((2,), c), create_graph=True) for c in range(C)]
    classwise = classwise_matching_loss(real_grads, syn_grads)
    assert classwise.item() == pytest.approx(expected, rel=1e-9)
    S = torch.tensor(np.concatenate(syn))
    syn_whole = parameter_gradients(model, S, torch.arange(C).repeat_interleave(2), create_graph=True)
    contrastive = contrastive_matching_loss(mean_class_gradient(real_grads), syn_whole)
    assert abs(classwise.item() - contrastive.item()) > 0.1


def test_loss_gradient_wrt_synthetic_pixels_matches_finite_differences(linear_problem):
    """Second-order back-propagation into the pixels, checked numerically in float64."""
    C, W, b, real, syn, model = linear_problem
    real_grads = [parameter_gradients(model, torch.tensor(real[c]), torch.full((len(real[c]),), c)) for c in range(C)]
    target = mean_class_gradient(real_grads)
    labels = torch.arange(C).repeat_interleave(2)

    def loss_of(S):
        return contrastive_matching_loss(target, parameter_gradients(model, S, labels, create_graph=True))

    S = torch.tensor(np.concatenate(syn), requires_grad=True)
    (analytic,) = torch.autograd.grad(loss_of(S), S)
    numeric = torch.zeros_like(S)
    eps = 1e-6
    for idx in np.ndindex(*S.shape):
        plus, minus = S.detach().clone(), S.detach().clone()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-7)


def test_distance_ignores_one_dimensional_tensors():
    g = torch.Generator().manual_seed(0)
    real = [torch.randn(5, 3, 3, 3, generator=g), torch.randn(5, generator=g), torch.randn(4, 2, 2, generator=g)]
    syn = [torch.randn_like(t) for t in real]
    base = gradient_distance(real, syn, "ours")
    syn_other_bias = [syn[0], torch.randn(5, generator=g) * 100, syn[2]]
    assert float(gradient_distance(real, syn_other_bias, "ours")) == pytest.approx(float(base), abs=1e-6)
    assert float(layerwise_cosine_distance(real[1], syn[1])) == 0.0
    # mse and cos see the biases
    assert float(gradient_distance(real, syn_other_bias, "mse")) != pytest.approx(float(gradient_distance(real, syn, "mse")))
    # conv (out, in, h, w) rows are out-nodes: 5 rows; 3-D (C, h, w) rows are channels: 4 rows
    conv_rows = real[0].reshape(5, -1)
    expected_conv = sum(1 - torch.dot(conv_rows[i], syn[0].reshape(5, -1)[i]) / (conv_rows[i].norm() * syn[0].reshape(5, -1)[i].norm() + 1e-6) for i in range(5))
    assert float(layerwise_cosine_distance(real[0], syn[0])) == pytest.approx(float(expected_conv), rel=1e-5)


def test_distance_properties():
    g = torch.Generator().manual_seed(1)
    real = [torch.randn(6, 4, generator=g), torch.randn(3, 2, 3, 3, generator=g)]
    assert float(gradient_distance(real, real, "ours")) == pytest.approx(0.0, abs=1e-5)
    assert float(gradient_distance(real, [3.0 * t for t in real], "ours")) == pytest.approx(0.0, abs=1e-5)  # scale-invariant
    # opposite gradients: every row at cosine −1 → 2 per row; 6 + 3 rows
    assert float(gradient_distance(real, [-t for t in real], "ours")) == pytest.approx(2 * 9, rel=1e-5)
    assert float(gradient_distance(real, [-t for t in real], "cos")) == pytest.approx(2.0, rel=1e-5)
    assert float(gradient_distance(real, [t + 1 for t in real], "mse")) == pytest.approx(6 * 4 + 3 * 2 * 9, rel=1e-6)
    with pytest.raises(ValueError):
        gradient_distance(real, real[:1])


@pytest.mark.parametrize(
    "iteration, step, expected",
    [
        (0, 0, "classwise"), (0, 9, "classwise"), (249, 9, "classwise"),  # ipc 1/10: K=10, inner warm-up 10
        (250, 0, "contrastive"), (999, 5, "contrastive"),
        (0, 10, "contrastive"), (100, 49, "contrastive"),  # ipc 50: step ≥ 10 is contrastive before 250
    ],
)
def test_warmup_rule(iteration, step, expected):
    assert matching_objective(iteration, step, outer_warmup=250, inner_warmup=10) is MatchingObjective(expected)


def test_no_warmup_means_contrastive_throughout():
    assert all(matching_objective(it, k, 0, 0) is MatchingObjective.CONTRASTIVE for it in range(3) for k in range(3))


def test_sum_gradients_adds_in_order_parameter_by_parameter_and_refuses_nothing():
    from condense.matching import sum_gradients

    g = torch.Generator().manual_seed(0)
    terms = [[torch.randn(3, 2, generator=g), torch.randn(4, generator=g)] for _ in range(3)]
    total = sum_gradients(iter(terms))  # a generator: one term at a time
    expected = [(terms[0][i] + terms[1][i]) + terms[2][i] for i in range(2)]
    assert all(torch.equal(t, e) for t, e in zip(total, expected))
    with pytest.raises(ValueError, match="at least one"):
        sum_gradients(iter([]))
