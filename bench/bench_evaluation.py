"""Benchmark: the evaluation protocol, original-style one-by-one vs the package (one-by-one and stacked).

Usage::

    python bench/bench_evaluation.py                     # ipc 1, 10, 50 (no augmentation) and ipc 10 with DSA
    python bench/bench_evaluation.py --quick             # a smoke run (seconds)
    python bench/bench_evaluation.py --device cuda       # where stacking is meant to pay off

Three implementations run side by side in one process, on the same synthetic-size set (random real
Fashion-MNIST images, ``ipc`` per class), the same fresh networks and the same test images:

- ``original``: written the way the DC/DSA code's ``evaluate_synset`` / ``epoch`` work: a
  ``TensorDataset`` + ``DataLoader`` (batch 256, shuffled) per network, ``.to(device)`` per batch,
  per-batch ``loss.item()`` and a NumPy accuracy on the outputs, DC-style augmentation image by image
  in a Python loop, and the test pass through a ``DataLoader`` *with* autograd recording (the
  original does not use ``no_grad`` there);
- ``package``: :func:`condense.evaluation.evaluate_images` with ``ensemble="one-by-one"``
  (in-memory tensors, index shuffles, batched no-grad test pass);
- ``stacked``: the same with ``ensemble="stacked"`` (all networks of the case trained as one
  vmapped model; :mod:`condense.ensemble`).

Each case times the two phases of the protocol separately: training ``--networks`` ConvNets for
``--epochs`` (+1) epochs (their test on 10 images is negligible), and the test passes of as many
networks over ``--test-images`` real test images. The table gives seconds per epoch per network,
seconds per 10 000 test images per network, and the **protocol estimate** per network —
(300 or 1000) + 1 epochs plus one pass over the whole test set — from which the speed-ups are
computed. ``package`` and ``stacked`` train the same networks (equal up to rounding, tested in
``tests/condense/test_ensemble.py``); ``original`` trains the same initial networks too, and on one
batch per epoch without augmentation reaches the same accuracy (``tests/bench/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from condense.augment import DSA, DCAugment
from condense.baselines import random_subset
from condense.config import EvaluationConfig
from condense.data import ImageDataset, load_dataset
from condense.ensemble import StackedNetworks, stacked_accuracy
from condense.evaluation import evaluate_images
from condense.networks import build_network
from condense.runtime import derive_generator, resolve_device, seeded_global_rng
from condense.training import accuracy
from machine import describe_machine  # bench/machine.py

IMPLEMENTATIONS = ("original", "package", "stacked")


# ---------------------------------------------------------------------------------------------
# the original-style evaluation (DC/DSA code structure)


def _original_augment(augmentation: str) -> Callable[[Tensor, torch.Generator], Tensor] | None:
    if augmentation == "dsa":
        dsa = DSA()
        return lambda x, g: dsa(x, g, siamese=False)  # DiffAugment is batched in the original too
    if augmentation == "dc":
        dc = DCAugment()
        # the original ``augment`` transforms image by image in a Python loop
        return lambda x, g: torch.cat([dc(x[i : i + 1], g) for i in range(len(x))])
    return None


def _original_epoch(mode: str, loader: DataLoader, net: nn.Module, optimizer, augment, generator, device) -> tuple[float, float]:
    net.train(mode == "train")
    loss_avg, acc_avg, num_exp = 0.0, 0, 0
    for img, lab in loader:
        img = img.float().to(device)
        if augment is not None and mode == "train":
            img = augment(img, generator)
        lab = lab.long().to(device)
        output = net(img)
        loss = F.cross_entropy(output, lab)
        acc = np.sum(np.equal(np.argmax(output.cpu().data.numpy(), axis=-1), lab.cpu().data.numpy()))
        loss_avg += loss.item() * lab.shape[0]
        acc_avg += acc
        num_exp += lab.shape[0]
        if mode == "train":
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return loss_avg / num_exp, acc_avg / num_exp


def original_evaluate(images: Tensor, labels: Tensor, test: tuple[Tensor, Tensor], config: EvaluationConfig, augmentation: str, seed: int, device: torch.device) -> list[float]:
    """``evaluate_synset`` for each of ``config.num_networks`` ConvNets, one after another."""
    accuracies = []
    augment = _original_augment(augmentation)
    epochs = config.resolved_epochs(augmentation)
    for index in range(config.num_networks):
        generator = derive_generator(seed, "evaluation", "bench", "convnet", index)
        with seeded_global_rng(generator):
            net = build_network("convnet", images.shape[1], int(labels.max()) + 1, tuple(images.shape[2:])).to(device)
        torch.manual_seed(index)
        train_loader = DataLoader(TensorDataset(images, labels), batch_size=config.batch_size, shuffle=True, num_workers=0)
        test_loader = DataLoader(TensorDataset(*test), batch_size=256, shuffle=False, num_workers=0)
        lr = config.lr
        optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
        for epoch in range(epochs + 1):
            _original_epoch("train", train_loader, net, optimizer, augment, generator, device)
            if epoch == epochs // 2 + 1:
                lr *= 0.1
                optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)
        accuracies.append(_original_epoch("test", test_loader, net, optimizer, None, generator, device)[1])
    return accuracies


# ---------------------------------------------------------------------------------------------
# cases and measurement


@dataclass(frozen=True)
class Case:
    ipc: int
    augmentation: str

    @property
    def name(self) -> str:
        return f"ipc {self.ipc}" + ("" if self.augmentation == "none" else f", {self.augmentation}")


@dataclass
class Timing:
    seconds: float
    accuracies: list[float]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(impl: str, case: Case, dataset: ImageDataset, tiny_test: ImageDataset, config: EvaluationConfig, device: torch.device) -> Timing:
    """Seconds to train ``config.num_networks`` networks for E + 1 epochs (their test on ``tiny_test``
    is negligible); accuracies on ``tiny_test`` only show that the runs did the same thing."""
    selected = random_subset(dataset, case.ipc, seed=0)
    images, labels = selected.images.to(device), selected.labels.to(device)
    _sync(device)
    started = time.perf_counter()
    if impl == "original":
        test = tuple(t.to(device) for t in tiny_test.normalised_test())
        accuracies = original_evaluate(images, labels, test, config, case.augmentation, seed=0, device=device)
    else:
        mode = "stacked" if impl == "stacked" else "one-by-one"
        result = evaluate_images(images, labels, tiny_test, dataclasses.replace(config, ensemble=mode), augmentation=case.augmentation, seed=0, key="bench", device=device)
        accuracies = result["convnet"]
    _sync(device)
    return Timing(time.perf_counter() - started, accuracies)


def time_test_pass(impl: str, networks: list[nn.Module], test_images: Tensor, test_labels: Tensor, device: torch.device) -> float:
    """Seconds for every network's test pass (the cost does not depend on the weights)."""
    _sync(device)
    started = time.perf_counter()
    if impl == "original":
        loader = DataLoader(TensorDataset(test_images, test_labels), batch_size=256, shuffle=False, num_workers=0)
        for net in networks:
            _original_epoch("test", loader, net, None, None, None, device)
    elif impl == "package":
        for net in networks:
            accuracy(net, test_images, test_labels)
    else:
        stacked_accuracy(StackedNetworks(networks), test_images, test_labels)
    _sync(device)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipc", default="1,10,50", help="ipc values evaluated without augmentation")
    parser.add_argument("--dsa-ipc", default="10", help="ipc values also evaluated with DSA augmentation ('' for none)")
    parser.add_argument("--networks", type=int, default=4, help="evaluation networks per case (the protocol: 20)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (+1) per network (the protocol: 300 / 1000 with DSA)")
    parser.add_argument("--test-images", type=int, default=2000, help="test images per network (the protocol: the whole test set)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="ipc 1 and 10, 2 networks, 3 epochs, 500 test images")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.ipc, args.dsa_ipc, args.networks, args.epochs, args.test_images = "1,10", "", 2, 3, 500
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dataset = load_dataset("fashion-mnist")
    full_test = len(dataset.test_labels)
    keep = torch.randperm(full_test, generator=torch.Generator().manual_seed(0))

    def test_only(count: int) -> ImageDataset:
        index = keep[:count]
        return ImageDataset(dataset.name, dataset.train_images[:1], dataset.train_labels[:1], dataset.test_images[index], dataset.test_labels[index], dataset.class_names, dataset.mean, dataset.std)

    tiny_test = test_only(10)
    test_images, test_labels = (t.to(device) for t in test_only(args.test_images).normalised_test())
    config = EvaluationConfig(num_networks=args.networks, epochs=args.epochs)
    cases = [Case(int(i), "none") for i in args.ipc.split(",") if i] + [Case(int(i), "dsa") for i in args.dsa_ipc.split(",") if i]

    print(f"# evaluation protocol benchmark — {describe_machine(torch.get_num_threads(), device)}")
    print(f"# {args.networks} ConvNets per case × {args.epochs}+1 epochs; test passes over {args.test_images} images; "
          f"protocol estimate = (300 or 1000)+1 epochs + a pass over all {full_test} test images, per network")
    rows = [
        "| case | train s/epoch/net: original · package · stacked | test s/10k images/net: original · package · stacked "
        "| protocol estimate s/net: original · package · stacked | package vs original | stacked vs original | stacked vs package |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for case in cases:
        protocol_epochs = EvaluationConfig().resolved_epochs(case.augmentation) + 1
        per_epoch, per_10k, protocol = {}, {}, {}
        warm = EvaluationConfig(num_networks=2, epochs=1)
        for impl in IMPLEMENTATIONS:  # untimed: oneDNN/cuDNN pick and cache kernels for these shapes
            time_training(impl, case, dataset, tiny_test, warm, device)
            time_test_pass(impl, [build_network("convnet", 1, dataset.num_classes, (28, 28)).to(device) for _ in range(2)], test_images[:256], test_labels[:256], device)
        for impl in IMPLEMENTATIONS:
            trained = time_training(impl, case, dataset, tiny_test, config, device)
            networks = [build_network("convnet", 1, dataset.num_classes, (28, 28)).to(device) for _ in range(args.networks)]
            tested = time_test_pass(impl, networks, test_images, test_labels, device)
            per_epoch[impl] = trained.seconds / args.networks / (args.epochs + 1)
            per_10k[impl] = tested / args.networks * 10_000 / args.test_images
            protocol[impl] = per_epoch[impl] * protocol_epochs + per_10k[impl] * full_test / 10_000
            print(f"{case.name:12s} {impl:9s} train {per_epoch[impl]:.3f} s/epoch/net  test {per_10k[impl]:.2f} s/10k/net  "
                  f"protocol ≈ {protocol[impl]:.0f} s/net  (tiny-test acc {100 * np.mean(trained.accuracies):.0f})", flush=True)

        def three(values: dict[str, float], fmt: str) -> str:
            return " · ".join(format(values[k], fmt) for k in IMPLEMENTATIONS)

        rows.append(
            f"| {case.name} | {three(per_epoch, '.3f')} | {three(per_10k, '.1f')} | {three(protocol, '.0f')} | "
            f"{protocol['original'] / protocol['package']:.2f}× | {protocol['original'] / protocol['stacked']:.2f}× | {protocol['package'] / protocol['stacked']:.2f}× |"
        )
    table = "\n".join(rows)
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
