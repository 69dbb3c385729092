"""The condensation loop: warm-up switching, determinism, resume equivalence, failure handling."""

import math

import pytest
import torch

from condense.artifacts import MetricsLog, SyntheticSet
from condense.config import CondenseConfig, EvaluationConfig
from condense.data import ImageDataset
from condense.errors import ConfigError, NonFiniteLossError
from condense.hooks import Callback
from condense.synthesis import Condenser, condense_dataset


def tiny_dataset(num_classes: int = 3, per_class: int = 12, size: int = 8) -> ImageDataset:
    """Class-dependent stripes plus noise, uint8, so classes are separable."""
    g = torch.Generator().manual_seed(123)

    def split(n):
        labels = torch.arange(num_classes).repeat_interleave(n)
        base = torch.zeros(len(labels), 1, size, size)
        for c in range(num_classes):
            base[labels == c, :, c::num_classes, :] = 180.0
        images = (base + 40 * torch.rand(base.shape, generator=g)).clamp(0, 255).to(torch.uint8)
        return images, labels

    train_x, train_y = split(per_class)
    test_x, test_y = split(4)
    return ImageDataset("tiny", train_x, train_y, test_x, test_y, tuple(f"c{c}" for c in range(num_classes)), (0.3,), (0.35,))


def tiny_config(**changes) -> CondenseConfig:
    base = dict(
        dataset="tiny", method="dcc", ipc=2, network="convnet-w32", iterations=4, matching_steps=3, network_epochs=2,
        real_batch=8, outer_warmup=2, inner_warmup=1, checkpoint_every=2, eval_at=(4,),
        evaluation=EvaluationConfig(num_networks=1, epochs=2),
    )
    base.update(changes)
    return CondenseConfig(**base)


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


def test_warmup_switches_at_the_right_iteration_and_step(data):
    condenser = Condenser(tiny_config(), data, device="cpu")
    seen = [condenser.run_iteration().objectives for _ in range(4)]
    assert seen[0] == ["classwise", "contrastive", "contrastive"]  # step ≥ inner_warmup=1
    assert seen[1] == ["classwise", "contrastive", "contrastive"]
    assert seen[2] == ["contrastive"] * 3 == seen[3]  # iteration ≥ outer_warmup=2
    dc = Condenser(tiny_config(method="dc"), data, device="cpu")
    assert all(dc.run_iteration().objectives == ["classwise"] * 3 for _ in range(3))


def test_real_initialisation_is_a_random_real_subset(data):
    condenser = Condenser(tiny_config(), data, device="cpu")
    images, labels = data.normalised_train()
    assert condenser.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for image, label in zip(condenser.synthetic.detach(), condenser.labels):
        matches = (images == image).flatten(1).all(dim=1)
        assert matches.any() and set(labels[matches].tolist()) == {int(label)}


@pytest.mark.parametrize("method", ["dc", "dsac"])
def test_same_seed_gives_bit_identical_synthetic_images(data, method):
    def run(seed):
        condenser = Condenser(tiny_config(method=method, seed=seed), data, device="cpu")
        for _ in range(2):
            condenser.run_iteration()
        return condenser.synthetic.detach().clone()

    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, Condenser(tiny_config(method=method), data, device="cpu").synthetic.detach())  # it moved


class StopAfter(Callback):
    def __init__(self, iteration):
        self.iteration = iteration

    def on_synthesis_iteration_end(self, *, iteration, loss):
        if iteration == self.iteration:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["dcc", "dsa"])
def test_resumed_run_equals_uninterrupted_run(data, tmp_path, method):
    config = tiny_config(method=method, iterations=5, eval_at=(0, 5))
    full = condense_dataset(config, data, tmp_path / "full", device="cpu", progress=False)
    with pytest.raises(KeyboardInterrupt):
        condense_dataset(config, data, tmp_path / "cut", device="cpu", progress=False, callbacks=[StopAfter(3)])
    assert not (tmp_path / "cut" / "DONE").exists()
    with pytest.raises(ConfigError, match="--resume"):
        condense_dataset(config, data, tmp_path / "cut", device="cpu", progress=False)
    resumed = condense_dataset(config, data, tmp_path / "cut", device="cpu", progress=False, resume=True)
    assert torch.equal(full.images, resumed.images)
    full_log, cut_log = MetricsLog(tmp_path / "full" / "metrics.jsonl").read(), MetricsLog(tmp_path / "cut" / "metrics.jsonl").read()
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    assert strip(full_log) == strip(cut_log)  # nothing logged twice, same losses and accuracies
    assert [r["iteration"] for r in full_log if r["event"] == "iteration"] == [1, 2, 3, 4, 5]
    assert [r["iteration"] for r in full_log if r["event"] == "evaluation"] == [0, 5]


def test_run_directory_is_self_describing(data, tmp_path):
    condense_dataset(tiny_config(), data, tmp_path / "run", device="cpu", progress=False)
    saved = SyntheticSet.load(tmp_path / "run" / "synthetic.safetensors")
    assert saved.images.shape == (6, 1, 8, 8) and saved.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert (saved.dataset, saved.method, saved.ipc, saved.iteration, saved.seed) == ("tiny", "dcc", 2, 4, 0)
    assert saved.class_names == ("c0", "c1", "c2") and saved.mean == (0.3,) and saved.std == (0.35,)
    assert CondenseConfig.from_dict(saved.config) == tiny_config()
    assert saved.package_version
    assert (tmp_path / "run" / "images_it0004.png").stat().st_size > 0
    assert (tmp_path / "run" / "config.json").exists()
    evaluation = [r for r in MetricsLog(tmp_path / "run" / "metrics.jsonl").read() if r["event"] == "evaluation"]
    assert len(evaluation) == 1 and 0.0 <= evaluation[0]["mean"] <= 1.0


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(data, tmp_path):
    class PoisonAfter(Callback):
        def __init__(self):
            self.condenser = None

        def on_synthesis_iteration_end(self, *, iteration, loss):
            if iteration == 3:  # after the checkpoint of iteration 2
                with torch.no_grad():
                    self.condenser.synthetic.fill_(math.nan)

    poison = PoisonAfter()
    config = tiny_config(eval_at=(4,))
    import condense.synthesis as synthesis

    original = synthesis.Condenser.__init__

    def init_and_remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        poison.condenser = self

    synthesis.Condenser.__init__ = init_and_remember
    try:
        with pytest.raises(NonFiniteLossError, match="iteration 3"):
            condense_dataset(config, data, tmp_path / "run", device="cpu", progress=False, callbacks=[poison])
    finally:
        synthesis.Condenser.__init__ = original
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 2 and torch.isfinite(state["synthetic"]).all()


def test_batchnorm_networks_are_frozen_after_setting_statistics(data):
    condenser = Condenser(tiny_config(network="convnet-bn", method="dc"), data, device="cpu")
    network = condenser._new_network(torch.Generator().manual_seed(0))
    bn = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = bn[0].running_mean.clone()
    condenser._freeze_batchnorm(network, torch.Generator().manual_seed(0))
    assert not torch.equal(before, bn[0].running_mean)
    assert all(not m.training for m in bn)
    assert condenser.run_iteration().loss > 0


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(ipc=0), "ipc"),
        (dict(ipc=7, matching_steps=None, network_epochs=None), "loop sizes"),
        (dict(inner_warmup=9), "inner_warmup"),
        (dict(outer_warmup=99), "outer_warmup"),
        (dict(method="dccx"), "unknown method"),
        (dict(eval_at=(99,)), "eval_at"),
    ],
)
def test_impossible_configs_are_rejected(changes, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**changes)


def test_ipc_larger_than_a_class_is_rejected(data):
    with pytest.raises(ConfigError, match="exceeds"):
        Condenser(tiny_config(ipc=50, matching_steps=1, network_epochs=1), data, device="cpu")


def test_class_by_class_dcc_target_equals_the_one_pass_weighted_target(data):
    """(1/C) Σ_c ∇θ ℓ(B_c) accumulated class by class = one weighted pass over the concatenated
    batches, to float rounding (classes of unequal size included)."""
    from condense.matching import parameter_gradients

    config = tiny_config(method="dcc", real_batch=8)
    condenser = Condenser(config, data, device="cpu")
    network = condenser._new_network(torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    reals = [condenser.sampler.sample(c, n, g) for c, n in enumerate((8, 5, 3))]
    accumulated = condenser._mean_real_gradient(network, reals)
    labels = torch.cat([torch.full((len(r),), c) for c, r in enumerate(reals)])
    weights = torch.cat([torch.full((len(r),), 1.0 / (3 * len(r))) for r in reals])
    one_pass = parameter_gradients(network, torch.cat(reals), labels, sample_weights=weights)
    flat_a, flat_b = torch.cat([t.flatten() for t in accumulated]), torch.cat([t.flatten() for t in one_pass])
    assert (flat_a - flat_b).abs().max() <= 1e-5 * flat_b.abs().max()


@pytest.mark.parametrize("method, network", [("dc", "convnet-w32"), ("dcc", "convnet-w32"), ("dsac", "convnet-w32"), ("dc", "convnet-bn")])
def test_batched_class_gradients_equal_the_per_class_passes(data, method, network):
    """class_batching=on (the CUDA default) gives the per-class loop's iteration up to rounding;
    a BN network is frozen (eval-mode BN acts per sample) during the real passes, so it batches too."""
    config = tiny_config(method=method, network=network, outer_warmup=1, inner_warmup=1)
    results = {}
    for mode in ("off", "on"):
        condenser = Condenser(config.replace(class_batching=mode), data, device="cpu")
        results[mode] = (condenser.run_iteration().loss, condenser.synthetic.detach().clone())
    assert results["on"][0] == pytest.approx(results["off"][0], rel=1e-5)
    scale = results["off"][1].abs().max()
    assert (results["on"][1] - results["off"][1]).abs().max() <= 1e-4 * scale


def test_batched_class_gradients_refuse_a_network_that_mixes_samples():
    from condense.matching import classwise_parameter_gradients
    from condense.networks import build_network

    network = build_network("convnet-bn", 1, 3, (8, 8)).train()
    with pytest.raises(ValueError, match="per sample"):
        classwise_parameter_gradients(network, torch.randn(3, 2, 1, 8, 8), torch.arange(3).repeat_interleave(2).view(3, 2))


@pytest.mark.parametrize("method", ["dcc", "dsac"])
def test_class_by_class_contrastive_backward_equals_one_pass(data, method, monkeypatch):
    """Above ONE_PASS_SYNTHETIC_IMAGES the contrastive synthetic side is back-propagated class by
    class; it gives the one-pass ∇_S L (and loss) to rounding."""
    from condense import synthesis

    config = tiny_config(method=method, outer_warmup=0, inner_warmup=0)
    calls = []
    original = Condenser._contrastive_backward_by_class
    monkeypatch.setattr(Condenser, "_contrastive_backward_by_class", lambda self, *a: calls.append(1) or original(self, *a))
    results = {}
    for name, limit in (("one-pass", 10**9), ("by-class", 0)):
        monkeypatch.setattr(synthesis, "ONE_PASS_SYNTHETIC_IMAGES", limit)
        condenser = Condenser(config, data, device="cpu")
        results[name] = (condenser.run_iteration().loss, condenser.synthetic.detach().clone())
    assert len(calls) == config.steps  # every step of the second run went class by class
    assert results["by-class"][0] == pytest.approx(results["one-pass"][0], rel=1e-5)
    scale = results["one-pass"][1].abs().max()
    assert (results["by-class"][1] - results["one-pass"][1]).abs().max() <= 1e-4 * scale
