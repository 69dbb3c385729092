"""The bf16 test pass on the same trained networks: does it change evaluation accuracy?

For each stored run directory (``synthetic.pt`` + ``config.json`` + ``metrics.jsonl``, e.g. the
quick-preset study in ``results/study-fashion-mnist``), the networks of its last evaluation are
trained again exactly as :func:`condense.evaluation.evaluate_images` trained them (same seeds,
``key = it<iteration>``, eager fp32 training, so the fp32 accuracies reproduce the stored ones),
and each trained network is tested twice on the full test set: in fp32 and under bf16 autocast
(``EvaluationConfig.test_dtype = "bfloat16"``). The training is identical; only the test pass
differs, so the difference is the bf16 test pass's own effect.

Usage::

    python bench/bf16_test_accuracy.py results/study-fashion-mnist/dc-ipc1-seed{0,1,2} --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from condense.artifacts import MetricsLog, SyntheticSet
from condense.config import CondenseConfig
from condense.data import load_dataset
from condense.networks import build_network
from condense.protocol import train_and_test
from condense.runtime import derive_generator, seeded_global_rng
from condense.training import accuracy
from machine import describe_machine  # bench/machine.py


def run(run_dir: Path, compile_mode: str) -> list[dict]:
    config = CondenseConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    synthetic = SyntheticSet.load(run_dir / "synthetic.pt")
    stored = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if r.get("event") == "evaluation" and r["iteration"] == synthetic.iteration]
    dataset = load_dataset(config.dataset)
    evaluation = dataclasses.replace(config.evaluation, compile=compile_mode)
    augmentation = config.evaluation_augmentation
    test_images, test_labels = dataset.normalised_test()
    images, labels = synthetic.images, synthetic.labels
    key = f"it{synthetic.iteration}"
    records = []
    for arch in evaluation.networks:
        stored_accs = next((r["accuracies"] for r in stored if r["network"] == arch), None)
        for index in range(evaluation.num_networks):
            generator = derive_generator(config.seed, "evaluation", key, arch, index)
            with seeded_global_rng(generator):
                network = build_network(arch, images.shape[1], dataset.num_classes, tuple(images.shape[2:]))
            result = train_and_test(network, images, labels, test_images, test_labels, evaluation, augmentation=augmentation, generator=generator)
            bf16 = accuracy(network, test_images, test_labels, evaluation.test_batch_size, dtype=torch.bfloat16)
            record = {
                "run": str(run_dir), "method": config.method, "ipc": config.ipc, "seed": config.seed, "network": arch, "index": index,
                "fp32": result.test_accuracy, "bf16": bf16, "stored_fp32": stored_accs[index] if stored_accs else None,
            }
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="off", help="training passes (off: the stored accuracies reproduce exactly)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {describe_machine(args.threads)}; command: python bench/bf16_test_accuracy.py {' '.join(sys.argv[1:])}", flush=True)
    started = time.perf_counter()
    records = [r for run_dir in args.runs for r in run(run_dir, args.compile)]
    flips = sum(abs(r["fp32"] - r["bf16"]) * 10_000 for r in records)
    diffs = [100 * (r["bf16"] - r["fp32"]) for r in records]
    print(f"# {len(records)} networks; bf16 − fp32 test accuracy (points): mean {sum(diffs) / len(diffs):+.3f}, "
          f"min {min(diffs):+.2f}, max {max(diffs):+.2f}; |net change| {flips:.0f} test images in all; {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
