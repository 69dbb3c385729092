"""dynamics.ntk: every implementation against an explicit autograd Jacobian (float64)."""

from __future__ import annotations

import copy
import doctest
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dynamics.ntk as ntk_module
from dynamics.ntk import MODES, NTKImplementation, empirical_ntk

# forward-mode AD (NTK_VECTOR_PRODUCTS) loads torch's jvp decompositions through torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

IMPLS = [m for m in NTKImplementation]
RTOL = 1e-4



# --------------------------------------------------------------------------------------------
# independent reference: Python loop, one forward per example, autograd.grad per logit, float64


def reference_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, mode: str) -> torch.Tensor:
    """J (N·O, P) stacked row by row, K = J1 J2ᵀ, reduced by mode; all in float64."""
    m = copy.deepcopy(model).double()
    params = [p for p in m.parameters() if p.requires_grad]

    def jacobian(x: torch.Tensor) -> torch.Tensor:
        rows = []
        for i in range(x.shape[0]):
            out = m(x[i : i + 1].double()).reshape(-1)
            for o in range(out.numel()):
                g = torch.autograd.grad(out[o], params, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1) for gi, p in zip(g, params)]))
        return torch.stack(rows)  # (N·O, P)

    j1 = jacobian(x1)
    j2 = j1 if x2 is None else jacobian(x2)
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    n_out = j1.shape[0] // n1
    full = (j1 @ j2.T).reshape(n1, n_out, n2, n_out).permute(0, 2, 1, 3)  # (N1, N2, O, O)
    if mode == "full":
        return full
    diag = torch.diagonal(full, dim1=2, dim2=3)  # (N1, N2, O)
    return diag.sum(-1) if mode == "trace" else diag


def rel_err(k: torch.Tensor, ref: torch.Tensor) -> float:
    return ((k.double() - ref).abs().max() / ref.abs().max()).item()


# --------------------------------------------------------------------------------------------
# small models


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 4))


def convnet() -> nn.Module:
    """DC-style ConvNet: conv → instance norm (GroupNorm(C, C)) → ReLU (in place) → avg pool."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(8, 8), nn.ReLU(inplace=True), nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.GroupNorm(8, 8), nn.ReLU(inplace=True), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 3),
    )  # fmt: skip


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.short(x)  # in place on a tapped output
        return F.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.block = Block(8, 12, 2)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(F.relu(self.bn(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet_bn_eval() -> nn.Module:
    """BatchNorm with non-trivial running statistics, then eval mode."""
    net = TinyResNet()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 1, 8, 8) * 2 + 0.5)
    return net.eval()


def package_networks() -> dict[str, object]:
    try:
        from condense.networks import build_network
    except ImportError:
        return {}
    return {
        "pkg-convnet": lambda: build_network("convnet", 1, 3, (12, 12), width=8, depth=2),
        "pkg-convnet-bn": lambda: build_network("convnet-bn", 1, 3, (12, 12), width=8, depth=2),
        "pkg-mlp": lambda: build_network("mlp", 1, 3, (8, 8)),
    }


MODELS: dict[str, object] = {"mlp": mlp, "convnet": convnet, "resnet-bn-eval": resnet_bn_eval}
MODELS.update(package_networks())
SIZES = {"mlp": 8, "convnet": 8, "resnet-bn-eval": 8, "pkg-convnet": 12, "pkg-convnet-bn": 12, "pkg-mlp": 8}


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    """(name, model in eval mode, x1 (5, 1, s, s), x2 (3, 1, s, s), {(mode, symmetric): reference})."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MODELS[request.param]().eval()
    s = SIZES[request.param]
    x1, x2 = torch.randn(5, 1, s, s), torch.randn(3, 1, s, s)
    refs = {}
    for symmetric in (True, False):
        full = reference_ntk(model, x1, None if symmetric else x2, "full")
        refs[("full", symmetric)] = full
        diag = torch.diagonal(full, dim1=2, dim2=3)
        refs[("diagonal", symmetric)] = diag
        refs[("trace", symmetric)] = diag.sum(-1)
    torch.set_num_threads(threads)
    return request.param, model, x1, x2, refs


def test_reference_reduction_is_consistent():
    """The reference's own reductions agree with each other (sanity of the test oracle)."""
    torch.manual_seed(0)
    model, x = mlp().eval(), torch.randn(3, 1, 8, 8)
    full = reference_ntk(model, x, None, "full")
    assert torch.allclose(reference_ntk(model, x, None, "trace"), torch.einsum("nmoo->nm", full))
    assert torch.allclose(full, full.permute(1, 0, 3, 2))  # K(x, x) is symmetric


@pytest.mark.parametrize("impl", IMPLS, ids=[m.value for m in IMPLS])
def test_matches_explicit_jacobian(case, impl):
    name, model, x1, x2, refs = case
    for mode in MODES:
        for symmetric in (True, False):
            k = empirical_ntk(model, x1, None if symmetric else x2, mode=mode, implementation=impl)
            n2 = 5 if symmetric else 3
            n_out = refs[("full", True)].shape[-1]
            expected_shape = {"full": (5, n2, n_out, n_out), "trace": (5, n2), "diagonal": (5, n2, n_out)}[mode]
            assert k.shape == expected_shape
            assert k.dtype == torch.float32
            err = rel_err(k, refs[(mode, symmetric)])
            assert err < RTOL, f"{name} {impl.value} {mode} symmetric={symmetric}: rel err {err:.2e}"


@pytest.mark.parametrize("impl", IMPLS, ids=[m.value for m in IMPLS])
def test_tiling_and_chunking_match_untiled(impl):
    torch.manual_seed(1)
    model = convnet().eval()
    x1, x2 = torch.randn(7, 1, 8, 8), torch.randn(5, 1, 8, 8)
    for mode in MODES:
        for b in (None, x2):
            plain = empirical_ntk(model, x1, b, mode=mode, implementation=impl)
            for tile, chunk in ((2, None), (3, 2), (None, 3), (1, 1)):
                k = empirical_ntk(model, x1, b, mode=mode, implementation=impl, tile_size=tile, chunk_size=chunk)
                torch.testing.assert_close(k, plain, rtol=1e-5, atol=1e-6 * plain.abs().max().item())


def test_symmetric_kernel_is_exactly_symmetric():
    torch.manual_seed(2)
    model, x = convnet().eval(), torch.randn(7, 1, 8, 8)
    k = empirical_ntk(model, x, mode="full", tile_size=3)
    assert torch.equal(k, k.permute(1, 0, 3, 2))
    k = empirical_ntk(model, x, tile_size=2)
    assert torch.equal(k, k.T)


def test_x2_same_object_as_x1_is_treated_as_symmetric():
    torch.manual_seed(3)
    model, x = mlp().eval(), torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(empirical_ntk(model, x, x), empirical_ntk(model, x))


@pytest.mark.parametrize("impl", IMPLS, ids=[m.value for m in IMPLS])
def test_batchnorm_in_train_mode_raises(impl):
    model = resnet_bn_eval().train()
    with pytest.raises(ValueError, match="put the model in eval mode"):
        empirical_ntk(model, torch.randn(3, 1, 8, 8), implementation=impl)
    assert model.training  # the mode was not changed


def test_batchnorm_without_running_stats_raises():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)).eval()
    with pytest.raises(ValueError, match="batch statistics"):
        empirical_ntk(model, torch.randn(3, 1, 2, 2))


class OddLayers(nn.Module):
    """Layers the layerwise path must get right: groups, stride, dilation, reflect and 'same'
    padding, InstanceNorm2d, LayerNorm, a frozen layer, an unused layer, a 3-D Linear input."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, 3, padding=1, padding_mode="reflect")
        self.c2 = nn.Conv2d(6, 6, 3, stride=2, dilation=1, padding=1, groups=3)
        self.c3 = nn.Conv2d(6, 4, 2, padding="same", dilation=2)
        self.inorm = nn.InstanceNorm2d(6, affine=True)
        self.frozen = nn.Conv2d(4, 4, 1)
        self.frozen.requires_grad_(False)
        self.lnorm = nn.LayerNorm([4, 4, 4])
        self.token = nn.Linear(4, 5)  # applied to (N, 16, 4): per-position linear
        self.unused = nn.Linear(3, 3)
        self.fc = nn.Linear(16 * 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.c1(x))
        h = F.relu(self.inorm(self.c2(h)))
        h = self.lnorm(self.frozen(self.c3(h)))
        h = self.token(h.flatten(2).transpose(1, 2))  # (N, 16, 5)
        return self.fc(torch.sigmoid(h).flatten(1))


def test_layerwise_on_unusual_layers():
    torch.manual_seed(4)
    model = OddLayers().eval()
    x1, x2 = torch.randn(4, 2, 8, 8), torch.randn(3, 2, 8, 8)
    for mode in MODES:
        ref = reference_ntk(model, x1, x2, mode)
        for impl in (NTKImplementation.LAYERWISE_GRADIENTS, NTKImplementation.PER_EXAMPLE_LOOP):
            assert rel_err(empirical_ntk(model, x1, x2, mode=mode, implementation=impl), ref) < RTOL


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.fc = nn.Linear(4 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.conv(x.flatten(1).unsqueeze(1)) * self.scale).flatten(1))


class ReusedLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.lin(torch.tanh(self.lin(x.flatten(1))))))


class TiedOutsideForward(nn.Module):
    """Uses a Linear's weight outside the Linear's forward: only the batch-gradient check sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.lin(x.flatten(1)))
        return self.fc(torch.tanh(F.linear(h, self.lin.weight)))


@pytest.mark.parametrize("model_cls", [Unsupported, ReusedLayer, TiedOutsideForward])
def test_layerwise_refuses_or_auto_falls_back(model_cls):
    torch.manual_seed(5)
    model = model_cls().eval()
    x = torch.randn(4, 1, 2, 4)
    with pytest.raises(ValueError):
        empirical_ntk(model, x, implementation="layerwise_gradients")
    ref = reference_ntk(model, x, None, "trace")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        k = empirical_ntk(model, x, implementation="auto")
    assert rel_err(k, ref) < RTOL
    for impl in ("per_example_loop", "jacobian_contraction", "ntk_vector_products"):
        assert rel_err(empirical_ntk(model, x, implementation=impl), ref) < RTOL


def test_auto_resolves_to_fastest_on_cpu():
    assert ntk_module._resolve("auto", convnet(), torch.device("cpu")) is NTKImplementation.LAYERWISE_GRADIENTS
    assert ntk_module._resolve("auto", Unsupported(), torch.device("cpu")) is NTKImplementation.PER_EXAMPLE_LOOP
    assert ntk_module._resolve("auto", convnet(), torch.device("meta")) is NTKImplementation.JACOBIAN_CONTRACTION
    assert ntk_module._resolve("NTK_Vector_Products", convnet(), torch.device("cpu")) is NTKImplementation.NTK_VECTOR_PRODUCTS


def test_members_document_their_trade_off():
    for member in NTKImplementation:
        assert member.__doc__ and len(member.__doc__) > 60
        assert member == member.value  # usable as a plain string


def test_no_grad_context_and_model_state_untouched():
    torch.manual_seed(6)
    model, x = convnet().eval(), torch.randn(3, 1, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        k_ng = empirical_ntk(model, x, implementation="layerwise_gradients")
    k = empirical_ntk(model, x, implementation="layerwise_gradients")
    torch.testing.assert_close(k_ng, k)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(p.grad is None for p in model.parameters())
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


def test_invalid_arguments():
    model, x = mlp().eval(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="mode"):
        empirical_ntk(model, x, mode="sum")
    with pytest.raises(ValueError, match="unknown NTK implementation"):
        empirical_ntk(model, x, implementation="magic")
    with pytest.raises(ValueError, match="tile_size"):
        empirical_ntk(model, x, tile_size=0)
    with pytest.raises(ValueError, match="same example shape"):
        empirical_ntk(model, x, torch.randn(2, 1, 4, 4))
    frozen = mlp().eval().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        empirical_ntk(frozen, x)


def test_module_docstring_examples_run():
    result = doctest.testmod(ntk_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_tile_recomputation_count_matches_docstring(monkeypatch):
    """Symmetric: T + (T-1)(T-2)/2 tile Jacobians; general: T1·T2 + 1 (module docstring)."""
    calls = []
    original = ntk_module.jacobian_loop

    def counting(model, x):
        calls.append(x.shape[0])
        return original(model, x)

    monkeypatch.setattr(ntk_module, "jacobian_loop", counting)
    model, x = mlp().eval(), torch.randn(10, 1, 8, 8)
    empirical_ntk(model, x, implementation="per_example_loop", tile_size=1)
    assert len(calls) == 10 + 9 * 8 // 2
    calls.clear()
    empirical_ntk(model, x, x[:6].clone(), implementation="per_example_loop", tile_size=2)
    assert len(calls) == 5 * 3 + 1
