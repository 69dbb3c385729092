"""dynamics.tracking: tracking never changes a run; records at the scheduled times; storage; probes."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

from condense.artifacts import MetricsLog
from condense.config import EvaluationConfig
from condense.errors import CondenseError
from condense.evaluation import train_and_test
from condense.hooks import Callback
from condense.networks import build_network
from condense.runtime import derive_generator, seeded_global_rng
from condense.synthesis import condense_dataset
import dynamics.tracking as tracking_module
from dynamics.ntk import empirical_ntk
from dynamics.tracking import (
    KernelRecorder,
    KernelTracker,
    log_schedule,
    make_probe,
    parse_schedule,
    preserved_state,
)
from dynamics.velocity import kernel_distance
from tests.condense.test_synthesis import tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def data():
    return tiny_dataset()


@pytest.fixture(scope="module")
def probe(data):
    return make_probe(data, per_class=2, seed=0)


def _network(data, name: str, seed: int = 0) -> torch.nn.Module:
    with seeded_global_rng(derive_generator(seed, "net")):
        return build_network(name, data.channels, data.num_classes, data.image_size)


def _train(data, network, callbacks=(), epochs: int = 3, augmentation: str = "none", tag: str = "run"):
    x, y = data.normalised_train()
    tx, ty = data.normalised_test()
    config = EvaluationConfig(num_networks=1, epochs=epochs, batch_size=16)
    return train_and_test(network, x, y, tx, ty, config, augmentation=augmentation, generator=derive_generator(0, "train"), callbacks=callbacks, tag=tag)


class _ForwardsInTrainMode(Callback):
    """A careless observer: evaluates the network on its probe without switching to eval mode."""

    def __init__(self, images):
        self.images = images

    def on_training_epoch_end(self, *, tag, epoch, network, train_loss):
        with torch.no_grad():
            network(self.images)  # BatchNorm in train mode updates its running statistics


# ------------------------------------------------------------------ no side effects


@pytest.mark.parametrize("method", ["dcc", "dsac"])
def test_condensation_with_tracking_is_bit_identical(data, probe, tmp_path, method):
    config = tiny_config(method=method)
    plain = condense_dataset(config, data, tmp_path / "plain", device="cpu", progress=False)
    tracker = KernelTracker(probe, synthesis_iterations=range(config.iterations))  # every inner epoch of every iteration
    tracked = condense_dataset(config, data, tmp_path / "tracked", device="cpu", progress=False, callbacks=[tracker])
    assert torch.equal(plain.images, tracked.images)
    strip = lambda log: [{k: v for k, v in r.items() if k != "seconds"} for r in log]  # noqa: E731
    plain_log, tracked_log = (MetricsLog(tmp_path / d / "metrics.jsonl").read() for d in ("plain", "tracked"))
    assert strip(plain_log) == strip(tracked_log) and any(r["event"] == "evaluation" for r in plain_log)
    inner_epochs = config.epochs_between_steps * (config.steps - 1)
    assert len(tracker.recorder) == config.iterations * (inner_epochs + 1)  # it measured θ₀ and every update


@pytest.mark.parametrize("network_name, augmentation", [("convnet-w32", "dsa"), ("convnet-bn", "none")])
def test_training_with_tracking_is_bit_identical(data, probe, network_name, augmentation):
    plain_net = _network(data, network_name)
    plain = _train(data, plain_net, augmentation=augmentation)
    tracked_net = _network(data, network_name)
    tx, ty = data.normalised_test()
    tracker = KernelTracker(probe, test_images=tx, test_labels=ty)  # every epoch, with test accuracy
    tracker.record(tracked_net, run="run", time=0)
    tracked = _train(data, tracked_net, callbacks=[tracker], augmentation=augmentation)
    assert tracked.test_accuracy == plain.test_accuracy and tracked.train_loss == plain.train_loss
    for (name, a), (_, b) in zip(plain_net.state_dict().items(), tracked_net.state_dict().items()):
        assert torch.equal(a, b), name
    assert [r.time for r in tracker.recorder.records] == [0, 1, 2, 3, 4]


def test_the_bit_identity_check_catches_a_careless_observer(data, probe):
    """Negative control: the comparison above detects an observer with a side effect."""
    plain_net, careless_net = _network(data, "convnet-bn"), _network(data, "convnet-bn")
    _train(data, plain_net)
    _train(data, careless_net, callbacks=[_ForwardsInTrainMode(probe.images)])
    assert not all(torch.equal(a, b) for a, b in zip(plain_net.state_dict().values(), careless_net.state_dict().values()))


def test_measurement_leaves_modes_grads_and_rng_untouched(data, probe):
    network = _network(data, "convnet-bn")
    network.train()
    network.features[1].eval()  # a mixed state must come back exactly
    modes = [m.training for m in network.modules()]
    for p in network.parameters():
        p.grad = torch.full_like(p, 0.5)
    grads = [p.grad for p in network.parameters()]
    rng = torch.get_rng_state()
    KernelTracker(probe).record(network, run="x", time=0)
    assert [m.training for m in network.modules()] == modes
    assert all(p.grad is g and bool((g == 0.5).all()) for p, g in zip(network.parameters(), grads))
    assert torch.equal(torch.get_rng_state(), rng)


def test_preserved_state_refuses_in_place_parameter_changes(data):
    network = _network(data, "convnet-w32")
    with pytest.raises(RuntimeError, match="modified"):
        with preserved_state(network):
            with torch.no_grad():
                next(network.parameters()).mul_(1.0)


# ------------------------------------------------------------------ what is recorded


def test_records_exactly_at_the_scheduled_times(data, probe):
    network = _network(data, "convnet-w32")
    tracker = KernelTracker(probe, epochs={1, 3, 4, 7})  # 7 is beyond the 4 epochs trained
    tracker.record(network, run="run", time=0)
    _train(data, network, callbacks=[tracker], epochs=3)  # E + 1 = 4 epochs: times 1..4
    assert [r.time for r in tracker.recorder.records_of("run")] == [0, 1, 3, 4]
    assert math.isnan(tracker.recorder.records_of("run")[0].train_loss)
    assert all(math.isfinite(r.train_loss) for r in tracker.recorder.records_of("run")[1:])


def test_synthesis_inner_loop_is_recorded_at_the_scheduled_inner_epochs(data, probe, tmp_path):
    config = tiny_config(method="dc", iterations=2, outer_warmup=0, eval_at=(2,))  # T=2, K=3: 4 inner epochs
    tracker = KernelTracker(probe, synthesis_iterations={1}, synthesis_epochs={1, 4})
    condense_dataset(config, data, tmp_path / "run", device="cpu", progress=False, evaluate=False, callbacks=[tracker])
    assert tracker.recorder.runs() == ["synthesis/it1"]
    records = tracker.recorder.records_of("synthesis/it1")
    assert [r.time for r in records] == [1, 4]
    assert [(r.info["step"], r.info["epoch"]) for r in records] == [(0, 0), (1, 1)]


def test_synthesis_inner_loop_starts_at_the_fresh_network(data, probe, tmp_path):
    """Time 0 of an iteration's inner loop is θ₀ as built, before any matching step or training."""
    from condense.runtime import derive_generator
    from condense.synthesis import Condenser

    config = tiny_config(method="dc", iterations=2, outer_warmup=0, eval_at=(2,))
    tracker = KernelTracker(probe, synthesis_iterations={1}, synthesis_epochs={0, 2})
    condense_dataset(config, data, tmp_path / "run", device="cpu", progress=False, evaluate=False, callbacks=[tracker])
    records = tracker.recorder.records_of("synthesis/it1")
    assert [r.time for r in records] == [0, 2]
    fresh = Condenser(config, data, device="cpu")._new_network(derive_generator(config.seed, "iteration", 1)).eval()
    assert torch.equal(records[0].kernel, empirical_ntk(fresh, probe.images, mode="trace"))


def test_recorded_kernel_equals_the_ntk_of_the_trained_network(data, probe):
    network = _network(data, "convnet-w32")
    tracker = KernelTracker(probe, epochs={4})
    _train(data, network, callbacks=[tracker], epochs=3)
    last = tracker.recorder.records_of("run")[-1]
    assert last.time == 4
    network.eval()
    direct = empirical_ntk(network, probe.images, mode="trace")
    assert torch.equal(last.kernel, direct)
    assert last.kernel.shape == (len(probe), len(probe))


def test_save_and_load_round_trip(data, probe, tmp_path):
    network = _network(data, "convnet-w32")
    tx, ty = data.normalised_test()
    tracker = KernelTracker(probe, epochs=log_schedule(4), test_images=tx, test_labels=ty)
    tracker.record(network, run="run", time=0)
    _train(data, network, callbacks=[tracker], epochs=3)
    tracker.recorder.info["note"] = "kept"
    tracker.recorder.save(tmp_path / "k.pt")
    loaded = KernelRecorder.load(tmp_path / "k.pt")
    assert loaded.metadata == tracker.recorder.metadata and loaded.info == {"note": "kept"}
    assert loaded.metadata.probe_indices == probe.indices.tolist() and loaded.metadata.probe_seed == 0
    for a, b in zip(tracker.recorder.records, loaded.records, strict=True):
        assert (a.run, a.time, a.time_unit, a.info) == (b.run, b.time, b.time_unit, b.info)
        assert torch.equal(a.kernel, b.kernel)
        assert a.test_accuracy == b.test_accuracy and (a.train_loss == b.train_loss or math.isnan(a.train_loss) and math.isnan(b.train_loss))
    rows = loaded.rows("run")
    k = [r.kernel for r in loaded.records_of("run")]
    assert rows[1]["velocity"] == pytest.approx(kernel_distance(k[1], k[2]) / (2 - 1))
    assert rows[-1]["distance_from_init"] == pytest.approx(kernel_distance(k[0], k[-1]))
    assert math.isnan(rows[-1]["velocity"])
    with pytest.raises(CondenseError, match="no kernel recording"):
        KernelRecorder.load(tmp_path / "missing.pt")


# ------------------------------------------------------------------ probes and schedules


def test_probe_is_class_balanced_and_fixed_by_its_seed(data):
    first, again, other = make_probe(data, 3, seed=0), make_probe(data, 3, seed=0), make_probe(data, 3, seed=1)
    assert torch.equal(first.indices, again.indices) and torch.equal(first.images, again.images)
    assert not torch.equal(first.indices, other.indices)
    assert torch.bincount(first.labels).tolist() == [3] * data.num_classes
    assert torch.equal(first.images, data.normalise(data.test_images[first.indices]))
    assert torch.equal(first.labels, data.test_labels[first.indices])
    train_probe = make_probe(data, 3, seed=0, split="train")
    assert torch.equal(train_probe.labels, data.train_labels[train_probe.indices])
    with pytest.raises(CondenseError, match="fewer than"):
        make_probe(data, 50, seed=0)


def test_schedules():
    assert log_schedule(100) == (0, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 100)
    assert log_schedule(301)[-5:] == (80, 120, 200, 300, 301)
    assert parse_schedule("every:3", 10) == (0, 3, 6, 9, 10)
    assert parse_schedule("0, 2,5", 10) == (0, 2, 5)
    for bad in ("every:0", "sometimes", "0,11"):
        with pytest.raises(CondenseError):
            parse_schedule(bad, 10)


def test_module_example_runs():
    result = doctest.testmod(tracking_module, raise_on_error=False)
    assert result.failed == 0 and result.attempted >= 10
