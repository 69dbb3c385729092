"""Benchmark: the evaluation protocol, original-style one-by-one vs the package (eager, compiled, bf16 test, stacked).

Usage::

    python bench/bench_evaluation.py                     # ipc 1, 10, 50 (no augmentation) and ipc 10 with DSA
    python bench/bench_evaluation.py --quick             # a smoke run (seconds)
    python bench/bench_evaluation.py --dry --compile off # seconds: checks that the script runs
    python bench/bench_evaluation.py --device cuda --implementations original package-compiled stacked
    python bench/bench_evaluation.py --json out.json     # one record per (case, implementation)

The implementations run side by side in one process, interleaved case by case, on the same
synthetic-size set (random real Fashion-MNIST images, ``ipc`` per class), the same fresh networks
and the same test images:

- ``original``: written the way the DC/DSA code's ``evaluate_synset`` / ``epoch`` work: a
  ``TensorDataset`` + ``DataLoader`` (batch 256, shuffled) per network, ``.to(device)`` per batch,
  per-batch ``loss.item()`` and a NumPy accuracy on the outputs, DC-style augmentation image by image
  in a Python loop, and the test pass through a ``DataLoader`` *with* autograd recording (the
  original does not use ``no_grad`` there);
- ``package-eager``: :func:`condense.evaluation.evaluate_images` with ``ensemble="one-by-one"``,
  ``compile="off"`` (in-memory tensors, index shuffles, batched no-grad test pass);
- ``package-compiled``: the same with ``compile="on"`` (training and test passes through
  ``torch.compile``; :mod:`condense.compiled`);
- ``package-compiled-bf16``: compiled, with the test pass under bf16 autocast
  (``test_dtype="bfloat16"``; training as ``package-compiled``);
- ``stacked``: ``ensemble="stacked"`` (all networks of the case trained as one vmapped model;
  :mod:`condense.ensemble`); not in the default list on a CPU, where it is slower.

Every implementation first runs an untimed warm-up of the same shapes (oneDNN picks its kernels;
the compiled ones compile their graphs), so compile time is not in the numbers.

Each case times the two phases of the protocol separately: training ``--networks`` ConvNets for
``--epochs`` (+1) epochs (their test on 10 images is negligible), and the test passes of as many
networks over ``--test-images`` real test images. The table gives seconds per epoch per network,
seconds per 10 000 test images per network, and the **protocol estimate** per network —
(300 or 1000) + 1 epochs plus one pass over the whole test set — from which the speed-ups are
computed. The package implementations and ``stacked`` train the same networks (equal up to rounding, tested in
``tests/condense/test_ensemble.py``); ``original`` trains the same initial networks too, and on one
batch per epoch without augmentation reaches the same accuracy (``tests/bench/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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
from condense.compiled import CompiledForward
from condense.config import EvaluationConfig
from condense.data import ImageDataset, load_dataset
from condense.ensemble import StackedNetworks, stacked_accuracy
from condense.evaluation import evaluate_images
from condense.networks import build_network
from condense.runtime import derive_generator, resolve_device, seeded_global_rng
from condense.training import accuracy
from machine import describe_machine  # bench/machine.py

#: package implementation -> EvaluationConfig changes
PACKAGE_IMPLEMENTATIONS: dict[str, dict[str, str]] = {
    "package-eager": dict(ensemble="one-by-one", compile="off"),
    "package-compiled": dict(ensemble="one-by-one", compile="on"),
    "package-compiled-bf16": dict(ensemble="one-by-one", compile="on", test_dtype="bfloat16"),
    "package-eager-bf16": dict(ensemble="one-by-one", compile="off", test_dtype="bfloat16"),
    "stacked": dict(ensemble="stacked", compile="off"),
}
ALL_IMPLEMENTATIONS = ("original", *PACKAGE_IMPLEMENTATIONS)
IMPLEMENTATIONS = ("original", "package-eager", "package-compiled", "package-compiled-bf16")
#: what the phases are timed with: wall time, or (--cpu-time) this process's CPU time, the fairer
#: measure of a one-thread run on a machine that other jobs share
clock = time.perf_counter


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
    started = clock()
    if impl == "original":
        test = tuple(t.to(device) for t in tiny_test.normalised_test())
        accuracies = original_evaluate(images, labels, test, config, case.augmentation, seed=0, device=device)
    else:
        result = evaluate_images(images, labels, tiny_test, dataclasses.replace(config, **PACKAGE_IMPLEMENTATIONS[impl]), augmentation=case.augmentation, seed=0, key="bench", device=device)
        accuracies = result["convnet"]
    _sync(device)
    return Timing(clock() - started, accuracies)


def time_test_pass(impl: str, networks: list[nn.Module], test_images: Tensor, test_labels: Tensor, device: torch.device) -> float:
    """Seconds for every network's test pass (the cost does not depend on the weights)."""
    _sync(device)
    started = clock()
    if impl == "original":
        loader = DataLoader(TensorDataset(test_images, test_labels), batch_size=256, shuffle=False, num_workers=0)
        for net in networks:
            _original_epoch("test", loader, net, None, None, None, device)
    elif impl == "stacked":
        stacked_accuracy(StackedNetworks(networks), test_images, test_labels)
    else:
        changes = PACKAGE_IMPLEMENTATIONS[impl]
        forward = CompiledForward(changes["compile"], kind="test")
        dtype = torch.bfloat16 if changes.get("test_dtype") == "bfloat16" else torch.float32
        for net in networks:
            accuracy(net, test_images, test_labels, forward=forward, dtype=dtype)
    _sync(device)
    return clock() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ipc", default="1,10,50", help="ipc values evaluated without augmentation")
    parser.add_argument("--dsa-ipc", default="10", help="ipc values also evaluated with DSA augmentation ('' for none)")
    parser.add_argument("--networks", type=int, default=4, help="evaluation networks per case (the protocol: 20)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (+1) per network (the protocol: 300 / 1000 with DSA)")
    parser.add_argument("--test-images", type=int, default=2000, help="test images per network (the protocol: the whole test set)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--implementations", nargs="+", default=None, choices=ALL_IMPLEMENTATIONS, help=f"default: {' '.join(IMPLEMENTATIONS)} (+ stacked on CUDA)")
    parser.add_argument("--compile", choices=["on", "off"], default="on", help="off: leave out the compiled implementations")
    parser.add_argument("--quick", action="store_true", help="ipc 1 and 10, 2 networks, 3 epochs, 500 test images")
    parser.add_argument("--dry", action="store_true", help="ipc 1, 1 network, 1 epoch, 100 test images (checks that the script runs)")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--json", help="write one record per (case, implementation) to this JSON file")
    parser.add_argument("--cpu-time", action="store_true", help="time with this process's CPU time instead of wall time (use with --threads 1 on a shared machine)")
    args = parser.parse_args(argv)
    global clock
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.quick:
        args.ipc, args.dsa_ipc, args.networks, args.epochs, args.test_images = "1,10", "", 2, 3, 500
    if args.dry:
        args.ipc, args.dsa_ipc, args.networks, args.epochs, args.test_images = "1", "", 1, 1, 100
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    implementations = list(args.implementations or (IMPLEMENTATIONS + (("stacked",) if device.type == "cuda" else ())))
    if args.compile == "off":
        implementations = [i for i in implementations if PACKAGE_IMPLEMENTATIONS.get(i, {}).get("compile") != "on"]
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

    machine = describe_machine(torch.get_num_threads(), device)
    print(f"# evaluation protocol benchmark — {machine}; timed by {'CPU time of this process' if args.cpu_time else 'wall time'}")
    print(f"# {args.networks} ConvNets per case × {args.epochs}+1 epochs; test passes over {args.test_images} images; "
          f"protocol estimate = (300 or 1000)+1 epochs + a pass over all {full_test} test images, per network")
    rows = [
        "| case | implementation | train s/epoch/net | test s/10k images/net | protocol estimate s/net | speed-up vs original (protocol) | train | test |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    records = []
    for case in cases:
        protocol_epochs = EvaluationConfig().resolved_epochs(case.augmentation) + 1
        per_epoch, per_10k, protocol = {}, {}, {}
        warm = EvaluationConfig(num_networks=2, epochs=1)
        for impl in implementations:  # untimed: oneDNN picks kernels, the compiled passes compile, for these shapes
            time_training(impl, case, dataset, tiny_test, warm, device)
            time_test_pass(impl, [build_network("convnet", 1, dataset.num_classes, (28, 28)).to(device) for _ in range(2)], test_images, test_labels, device)
        for impl in implementations:
            trained = time_training(impl, case, dataset, tiny_test, config, device)
            networks = [build_network("convnet", 1, dataset.num_classes, (28, 28)).to(device) for _ in range(args.networks)]
            tested = time_test_pass(impl, networks, test_images, test_labels, device)
            per_epoch[impl] = trained.seconds / args.networks / (args.epochs + 1)
            per_10k[impl] = tested / args.networks * 10_000 / args.test_images
            protocol[impl] = per_epoch[impl] * protocol_epochs + per_10k[impl] * full_test / 10_000
            print(f"{case.name:12s} {impl:22s} train {per_epoch[impl]:.3f} s/epoch/net  test {per_10k[impl]:.2f} s/10k/net  "
                  f"protocol ≈ {protocol[impl]:.0f} s/net  (tiny-test acc {100 * np.mean(trained.accuracies):.0f})", flush=True)
        base = "original" if "original" in protocol else None
        for impl in implementations:
            speedups = [per[base] / per[impl] if base else None for per in (protocol, per_epoch, per_10k)]
            text = " | ".join("–" if v is None else f"{v:.2f}×" for v in speedups)
            rows.append(f"| {case.name} | {impl} | {per_epoch[impl]:.4f} | {per_10k[impl]:.2f} | {protocol[impl]:.1f} | {text} |")
            records.append({
                "case": case.name, "ipc": case.ipc, "augmentation": case.augmentation, "implementation": impl,
                "train_seconds_per_epoch_per_network": per_epoch[impl], "test_seconds_per_10k_images_per_network": per_10k[impl],
                "protocol_seconds_per_network": protocol[impl], "speedup_vs_original": speedups[0],
                "networks": args.networks, "epochs": args.epochs, "test_images": args.test_images, "machine": machine,
                "clock": "process CPU time" if args.cpu_time else "wall time",
            })
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(records, handle, indent=1)
    table = "\n".join(rows)
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
