"""Where the time of one real-gradient pass goes: the default ConvNet, forward + backward to the
weights on a real batch (256 Fashion-MNIST-sized images), eager against ``torch.compile``,
measured side by side in one process, then ``torch.profiler``'s operators of each.

This is the pass that dominates a DC iteration at ipc 1 (K × C = 100 of them per iteration).
After compilation the remaining time splits into convolutions (oneDNN) and the compiler's fused
element-wise kernels (instance norm, ReLU, average pooling); the split bounds what any further
fusion can buy.

Usage::

    python bench/profile_pass.py                 # 2 threads, batch 256
    python bench/profile_pass.py --threads 1 --batch 64 --rows 8
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from machine import describe_machine  # noqa: E402  (bench/machine.py)

from condense.networks import build_network  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per variant (after 3 untimed ones)")
    parser.add_argument("--rows", type=int, default=6, help="operators listed per variant")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = build_network("convnet", 1, 10, (28, 28))
    images, labels = torch.randn(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))
    params = list(network.parameters())

    def step(forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        torch.autograd.grad(torch.nn.functional.cross_entropy(forward(images), labels), params)

    print(f"machine: {describe_machine(args.threads)}; default ConvNet, {args.batch} images 1x28x28, forward + backward to the weights")
    times: dict[str, float] = {}
    for name, forward in (("eager", network), ("compiled", torch.compile(network))):
        for _ in range(3):
            step(forward)
        started = time.perf_counter()
        for _ in range(args.repeats):
            step(forward)
        times[name] = (time.perf_counter() - started) / args.repeats
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(forward)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{name}: {1000 * times[name]:.0f} ms per pass; share of self CPU time:")
        for event in events[: args.rows]:
            print(f"  {100 * event.self_cpu_time_total / total:5.1f} %  {event.key[:70]}")
    print(f"\ncompiled vs eager: {times['eager'] / times['compiled']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
