"""The CUDA path against the CPU path: what `bench/device_check.sh` runs first on a lent GPU.

Skipped where there is no CUDA device (CI, laptops): ``pytest -m cuda`` selects them. Each test
compares a CUDA computation with the same computation on the CPU (the tested reference), so a
GPU-only defect — a tensor left on the wrong device, a generator drawn on the device, a compiled
graph that differs, a batched per-class pass that mixes classes — shows up as a failure rather
than as a silently different number in a benchmark.

Tolerances: cuDNN and cuBLAS sum in other orders than oneDNN (and may use TF32, switched off
here), so CUDA and CPU agree to float32 rounding amplified by the few steps each test runs.
"""

from __future__ import annotations

import pytest
import torch

from condense.config import EvaluationConfig
from condense.evaluation import evaluate_images
from condense.matching import parameter_gradients
from condense.networks import build_network
from condense.synthesis import Condenser
from tests.condense.test_synthesis import tiny_config, tiny_dataset

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def no_tf32():
    """Full float32 matrix products on the GPU, so that CUDA is compared with CPU like for like."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


def _one_iteration(config, data, device: str) -> tuple[float, torch.Tensor]:
    """(matching loss, synthetic images on the CPU) after one iteration of a fresh Condenser."""
    condenser = Condenser(config, data, device=device)
    return condenser.run_iteration().loss, condenser.synthetic.detach().cpu()


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> None:
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    scale = max(b.abs().max().item(), 1e-12)
    assert (a - b).abs().max().item() <= rel * scale, f"max |Δ| {(a - b).abs().max().item():.3e} vs scale {scale:.3e}"


@pytest.mark.parametrize("network", ["convnet-w32", "convnet-bn"])
def test_real_gradients_on_cuda_equal_cpu(network):
    torch.manual_seed(0)
    net = build_network(network, 1, 3, (8, 8))
    images, labels = torch.randn(16, 1, 8, 8), torch.arange(3).repeat(6)[:16]
    cpu = parameter_gradients(net, images, labels)
    cuda = parameter_gradients(net.cuda(), images.cuda(), labels.cuda())
    _close(torch.cat([g.flatten() for g in cuda]), torch.cat([g.flatten() for g in cpu]), rel=1e-4)


@pytest.mark.parametrize("method", ["dc", "dcc", "dsa", "dsac"])
def test_one_synthesis_iteration_on_cuda_equals_cpu(data, method):
    """Same seed, same draws (generators live on the CPU), same synthetic set after an iteration."""
    config = tiny_config(method=method, outer_warmup=1, inner_warmup=1, compile="off", class_batching="off")
    results = {device: _one_iteration(config, data, device) for device in ("cpu", "cuda")}
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-3, abs=1e-4)
    _close(results["cuda"][1], results["cpu"][1], rel=1e-3)


@pytest.mark.parametrize("method", ["dc", "dcc"])
def test_batched_class_gradients_on_cuda_equal_the_per_class_loop(data, method):
    """class_batching=auto is on for CUDA: it must give the per-class loop's iteration."""
    config = tiny_config(method=method, outer_warmup=1, inner_warmup=1, compile="off")
    results = {mode: _one_iteration(config.replace(class_batching=mode), data, "cuda") for mode in ("off", "auto")}
    assert results["auto"][0] == pytest.approx(results["off"][0], rel=1e-4)
    _close(results["auto"][1], results["off"][1], rel=1e-4)


@pytest.mark.compile
@pytest.mark.parametrize("method", ["dc", "dcc"])
def test_compiled_iteration_on_cuda_equals_eager(data, method):
    config = tiny_config(method=method, outer_warmup=1, inner_warmup=1, class_batching="off")
    results = {mode: _one_iteration(config.replace(compile=mode), data, "cuda") for mode in ("off", "on")}
    assert results["on"][0] == pytest.approx(results["off"][0], rel=1e-4)
    _close(results["on"][1], results["off"][1], rel=1e-3)


def test_stacked_evaluation_on_cuda_equals_one_by_one(data):
    """ensemble=auto stacks on CUDA; its accuracies must be those of networks trained one by one."""
    images, labels = data.normalised_train()
    accuracies = {}
    for ensemble in ("one-by-one", "stacked"):
        config = EvaluationConfig(num_networks=3, epochs=4, ensemble=ensemble, compile="off")
        accuracies[ensemble] = evaluate_images(images, labels, data, config, augmentation="none", seed=0, key="cuda", device="cuda")["convnet"]
    assert accuracies["stacked"] == pytest.approx(accuracies["one-by-one"], abs=1e-6)
