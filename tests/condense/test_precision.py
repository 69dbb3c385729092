"""The opt-in bf16 options: ``real_grad_dtype`` and ``network_train_dtype`` (condensation),
``test_dtype`` (evaluation). Each really runs its pass in bf16 (its result differs from fp32 by
bf16 rounding, not by nothing and not by more), touches nothing else, and bad values are refused."""

from __future__ import annotations

import pytest
import torch

from condense.config import CondenseConfig, EvaluationConfig
from condense.errors import ConfigError
from condense.networks import build_network
from condense.synthesis import Condenser
from condense.training import accuracy
from tests.condense.test_synthesis import tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def _relative(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return ((_flat(a) - _flat(b)).norm() / _flat(b).norm()).item()


def test_bf16_real_gradients_differ_from_fp32_by_bf16_rounding_only(data):
    reals = {}
    for dtype in ("float32", "bfloat16"):
        condenser = Condenser(tiny_config(real_grad_dtype=dtype, compile="off"), data, device="cpu")
        network = condenser._new_network(torch.Generator().manual_seed(0))
        images = condenser.sampler.sample(1, 8, torch.Generator().manual_seed(1))
        reals[dtype] = condenser._real_gradients(network, images, 1)
    assert all(g.dtype == torch.float32 for g in reals["bfloat16"])  # autocast: fp32 weights, fp32 grads
    assert 1e-4 < _relative(reals["bfloat16"], reals["float32"])  # it did run in bf16 (8-bit mantissa)
    assert _cosine(reals["bfloat16"], reals["float32"]) > 0.99  # and computed the same gradient


def _cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return torch.nn.functional.cosine_similarity(_flat(a), _flat(b), dim=0).item()


def _train_between_steps(data, dtype: str, seen: list[bool]) -> list[torch.Tensor]:
    class Observer:
        def on_synthesis_network_update(self, **_):
            seen.append(torch.is_autocast_enabled("cpu"))

    condenser = Condenser(tiny_config(network_train_dtype=dtype, network_epochs=3, compile="off"), data, device="cpu", callbacks=[Observer()])
    generator = torch.Generator().manual_seed(0)
    network = condenser._new_network(generator)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.05)
    condenser._train_network_on_synthetic(network, optimizer, generator, step=0)
    return [p.detach().clone() for p in network.parameters()]


def test_bf16_network_training_moves_the_weights_like_fp32_up_to_rounding(data):
    seen: list[bool] = []
    start = [p.detach().clone() for p in Condenser(tiny_config(), data, device="cpu")._new_network(torch.Generator().manual_seed(0)).parameters()]
    fp32 = _train_between_steps(data, "float32", seen)
    bf16 = _train_between_steps(data, "bfloat16", seen)
    step_fp32 = [a - s for a, s in zip(fp32, start)]
    step_bf16 = [b - s for b, s in zip(bf16, start)]
    assert _relative(step_fp32, [torch.zeros_like(s) for s in start]) > 0  # the weights did move
    assert 1e-4 < _relative(step_bf16, step_fp32)  # it did train in bf16
    assert _cosine(step_bf16, step_fp32) > 0.9  # in the same direction as fp32
    assert seen == [False] * 6  # 3 epochs each: the callbacks never run under autocast


def test_bf16_test_pass_scores_like_fp32_and_restores_nothing_else(data):
    torch.manual_seed(0)
    network = build_network("convnet-w32", 1, 3, (8, 8))
    images, labels = data.normalised_test()
    fp32 = accuracy(network, images, labels, dtype=torch.float32)
    bf16 = accuracy(network, images, labels, dtype=torch.bfloat16)
    assert abs(fp32 - bf16) <= 2 / len(labels)  # at most two borderline images flip
    assert not torch.is_autocast_enabled("cpu")
    assert all(p.dtype == torch.float32 for p in network.parameters())


@pytest.mark.parametrize("field", ["real_grad_dtype", "network_train_dtype"])
def test_unknown_condensation_dtypes_are_refused(field):
    with pytest.raises(ConfigError, match=field):
        CondenseConfig(**{field: "float16"})


def test_unknown_test_dtype_is_refused():
    with pytest.raises(ConfigError, match="test_dtype"):
        EvaluationConfig(test_dtype="half")
