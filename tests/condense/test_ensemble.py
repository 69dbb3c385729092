"""Stacked (vmapped) evaluation networks give what training them one by one gives."""

import math

import pytest
import torch

import condense.ensemble as ensemble
import condense.evaluation as evaluation
from condense.config import EvaluationConfig
from condense.ensemble import StackedNetworks, train_and_test_stacked, use_stacking, why_not_stackable
from condense.errors import ConfigError
from condense.evaluation import evaluate_images, train_and_test
from condense.hooks import Callback
from condense.networks import build_network
from condense.runtime import derive_generator, seeded_global_rng
from tests.condense.test_synthesis import tiny_dataset


def fresh(arch: str, count: int, seed: int = 0, classes: int = 3, size: int = 8) -> tuple[list, list]:
    """Networks and generators built exactly as :func:`evaluate_images` builds them."""
    generators = [derive_generator(seed, "evaluation", "t", arch, i) for i in range(count)]
    networks = []
    for g in generators:
        with seeded_global_rng(g):
            networks.append(build_network(arch, 1, classes, (size, size)))
    return networks, generators


@pytest.mark.parametrize(("arch", "size"), [("convnet-w32", 8), ("mlp", 8), ("lenet", 28), ("resnet18", 16)])
def test_stacked_forward_equals_each_network(arch, size):
    networks, _ = fresh(arch, 3, size=size)
    stacked = StackedNetworks(networks)
    x = torch.randn(3, 5, 1, size, size)
    expected = torch.stack([n(x[m]) for m, n in enumerate(networks)])
    torch.testing.assert_close(stacked(x), expected, rtol=1e-5, atol=1e-5)
    shared = torch.randn(7, 1, size, size)
    torch.testing.assert_close(stacked.shared(shared), torch.stack([n(shared) for n in networks]), rtol=1e-5, atol=1e-5)


@pytest.fixture
def float64():
    """Run in float64: rounding (1e-16) then cannot be amplified into visible differences."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def train_both_ways(augmentation: str, dtype: torch.dtype, epochs: int = 6):
    data = tiny_dataset(num_classes=3, per_class=10, size=16)
    images, labels = (t.to(dtype) if t.is_floating_point() else t for t in data.normalised_train())
    test_images, test_labels = (t.to(dtype) if t.is_floating_point() else t for t in data.normalised_test())
    # batch 8 < 30 images: several steps per epoch, a partial last batch, and the lr decay at epoch 4
    config = EvaluationConfig(num_networks=3, epochs=epochs, batch_size=8)
    alone, alone_generators = fresh("convnet-w32", 3, size=16)
    together, together_generators = fresh("convnet-w32", 3, size=16)
    initial = [p.detach().clone() for p in alone[0].parameters()]
    for a, b in zip(alone, together):  # the same initial weights
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    one_by_one = [
        train_and_test(n, images, labels, test_images, test_labels, config, augmentation=augmentation, generator=g)
        for n, g in zip(alone, alone_generators)
    ]
    stacked = train_and_test_stacked(together, images, labels, test_images, test_labels, config, augmentation=augmentation, generators=together_generators)
    moved = max(float((p.detach() - p0).abs().max()) for p, p0 in zip(alone[0].parameters(), initial))
    assert moved > 0.01  # the networks really trained
    # the generators were advanced identically (the same draws in the same order)
    for g, h in zip(alone_generators, together_generators):
        assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=h))
    return alone, together, one_by_one, stacked


@pytest.mark.parametrize("augmentation", ["none", "dsa", "dc"])
def test_stacked_training_equals_one_by_one_up_to_rounding(float64, augmentation):
    alone, together, one_by_one, stacked = train_both_ways(augmentation, torch.float64)
    for a, b, r, s in zip(alone, together, one_by_one, stacked):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            assert p.dtype == torch.float64
            torch.testing.assert_close(q, p, rtol=1e-12, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
        assert (s.test_accuracy, s.train_accuracy) == (r.test_accuracy, r.train_accuracy)
        assert s.train_loss == pytest.approx(r.train_loss, rel=1e-12)


def test_stacked_training_in_float32_stays_within_rounding_of_one_by_one():
    alone, together, one_by_one, stacked = train_both_ways("none", torch.float32, epochs=12)
    for a, b, r, s in zip(alone, together, one_by_one, stacked):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5)
        assert s.test_accuracy == r.test_accuracy
        assert s.train_loss == pytest.approx(r.train_loss, rel=1e-5)


def test_evaluate_images_stacked_equals_one_by_one_even_when_split(monkeypatch):
    data = tiny_dataset(num_classes=3, per_class=6, size=16)
    images, labels = data.normalised_train()
    base = dict(networks=("convnet-w32", "mlp"), num_networks=5, epochs=4)
    one = evaluate_images(images, labels, data, EvaluationConfig(**base, ensemble="one-by-one"), augmentation="dsa", seed=1, key="t", device="cpu")
    monkeypatch.setattr(ensemble, "MAX_STACKED_IMAGES", 2 * 18)  # 18 images per step: stacks of 2, 2, 1
    sizes = []
    real = evaluation.train_and_test_stacked

    def spy(networks, *args, **kwargs):
        sizes.append(len(networks))
        return real(networks, *args, **kwargs)

    monkeypatch.setattr(evaluation, "train_and_test_stacked", spy)
    stacked = evaluate_images(images, labels, data, EvaluationConfig(**base, ensemble="stacked"), augmentation="dsa", seed=1, key="t", device="cpu")
    assert sizes == [2, 2, 1, 2, 2, 1]
    assert set(one) == set(stacked)
    for arch in one:
        assert stacked[arch] == pytest.approx(one[arch], abs=1 / 12 + 1e-9), arch  # 12 test images


def test_a_diverging_member_is_scored_as_it_was_and_does_not_disturb_the_others():
    data = tiny_dataset(num_classes=3, per_class=6)
    images, labels = data.normalised_train()
    test_images, test_labels = data.normalised_test()
    config = EvaluationConfig(num_networks=2, epochs=3)
    alone, ga = fresh("mlp", 2)
    together, gb = fresh("mlp", 2)
    for nets in (alone, together):
        with torch.no_grad():
            next(nets[1].parameters()).fill_(math.inf)  # member 1 diverges at once
    one = [train_and_test(n, images, labels, test_images, test_labels, config, augmentation="none", generator=g) for n, g in zip(alone, ga)]
    both = train_and_test_stacked(together, images, labels, test_images, test_labels, config, augmentation="none", generators=gb)
    assert not math.isfinite(one[1].train_loss) and not math.isfinite(both[1].train_loss)
    assert both[1].test_accuracy == one[1].test_accuracy
    assert both[0].train_loss == pytest.approx(one[0].train_loss, rel=1e-5)
    for p, q in zip(alone[0].parameters(), together[0].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_when_networks_are_stacked():
    convnet = build_network("convnet-w32", 1, 3, (8, 8))
    bn = build_network("convnet-bn", 1, 3, (8, 8))
    assert why_not_stackable([convnet, convnet]) is None
    assert "batch norm" in why_not_stackable([bn])
    assert "different" in why_not_stackable([convnet, build_network("mlp", 1, 3, (8, 8))])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    auto, on, off = (EvaluationConfig(ensemble=mode) for mode in ("auto", "stacked", "one-by-one"))
    assert not use_stacking(auto, cpu, convnet, 20, has_callbacks=False)  # slower on a CPU
    assert use_stacking(auto, cuda, convnet, 20, has_callbacks=False)
    assert use_stacking(on, cpu, convnet, 20, has_callbacks=False)
    assert not use_stacking(on, cpu, convnet, 20, has_callbacks=True)  # callbacks watch single networks
    assert not use_stacking(on, cpu, bn, 20, has_callbacks=False)
    assert not use_stacking(on, cpu, convnet, 1, has_callbacks=False)
    assert not use_stacking(off, cuda, convnet, 20, has_callbacks=False)
    with pytest.raises(ConfigError):
        StackedNetworks([bn, bn])
    with pytest.raises(ConfigError):
        EvaluationConfig(ensemble="parallel")


def test_callbacks_still_see_every_epoch_of_every_network_in_stacked_mode():
    class Epochs(Callback):
        def __init__(self):
            self.seen = []

        def on_training_epoch_end(self, *, tag, epoch, network, train_loss):
            self.seen.append(tag)

    data = tiny_dataset(num_classes=3, per_class=4)
    images, labels = data.normalised_train()
    counter = Epochs()
    evaluate_images(images, labels, data, EvaluationConfig(networks=("mlp",), num_networks=2, epochs=1, ensemble="stacked"), augmentation="none", seed=0, key="t", device="cpu", callbacks=[counter])
    assert counter.seen == ["t/mlp/0"] * 2 + ["t/mlp/1"] * 2

