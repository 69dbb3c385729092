"""Benchmark: the compiled ConvNet with its first convolution as a plain ``nn.Conv2d`` vs as a
:class:`~condense.networks.thin_conv.ThinConv2d` (im2col + 1×1 convolution inside the graph).

The decision it supports: which inputs get the thin first convolution
(:data:`condense.networks.thin_conv.MAX_THIN_CHANNELS`). Side by side in one process, interleaved
over rounds (fastest kept), on random inputs of the dataset's shape:

- ``grad``: forward + backward to the weights on a real batch (the real-gradient pass of
  matching, and every training step), under fp32 and bf16 autocast;
- ``test``: the evaluation's test pass (eval mode, ``no_grad``), fp32 and bf16;
- each against the eager fp32 pass of the same kind (the reference arithmetic).

Usage::

    python bench/bench_first_conv.py                        # 1x28x28 and 3x32x32, 2 threads
    python bench/bench_first_conv.py --channels 1 --threads 1 --batch 64 --test-batch 256
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from machine import describe_machine  # noqa: E402  (bench/machine.py)

from condense.networks import build_network  # noqa: E402
from condense.networks.thin_conv import ThinConv2d  # noqa: E402

SHAPES = {1: (28, 28), 3: (32, 32)}  # Fashion-MNIST / MNIST, CIFAR / SVHN
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def with_first_conv(network: nn.Module, kind: type[nn.Conv2d]) -> nn.Module:
    """A copy of ``network`` (same weights) whose first convolution is of class ``kind``."""
    old = network.features[0]
    new = kind(old.in_channels, old.out_channels, old.kernel_size, padding=old.padding)
    new.load_state_dict(old.state_dict())
    copy = build_network("convnet", old.in_channels, network.classifier.out_features, SHAPES[old.in_channels])
    copy.load_state_dict(network.state_dict())
    copy.features[0] = new
    return copy


def pass_functions(channels: int, batch: int, test_batch: int, dtypes: list[str], kinds: list[str]) -> dict[str, Callable[[], object]]:
    """name -> a callable running one pass; names are ``"<kind> <dtype> <route>"``."""
    torch.manual_seed(0)
    size = SHAPES[channels]
    base = build_network("convnet", channels, 10, size)
    images, labels = torch.randn(batch, channels, *size), torch.randint(0, 10, (batch,))
    test_images = torch.randn(test_batch, channels, *size)

    def grad_pass(network: nn.Module, forward: Callable, dtype: torch.dtype | None) -> Callable[[], object]:
        network.train()
        params = list(network.parameters())

        def run() -> object:
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = forward(images)
            return torch.autograd.grad(F.cross_entropy(logits.float(), labels), params)

        return run

    def test_pass(network: nn.Module, forward: Callable, dtype: torch.dtype | None) -> Callable[[], object]:
        network.eval()

        def run() -> object:
            with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                return forward(test_images)

        return run

    makers = {"grad": grad_pass, "test": test_pass}
    functions: dict[str, Callable[[], object]] = {}
    for kind in kinds:
        eager = with_first_conv(base, nn.Conv2d)
        functions[f"{kind} fp32 eager"] = makers[kind](eager, eager, None)
        for dtype in dtypes:
            for route, conv in (("plain", nn.Conv2d), ("thin", ThinConv2d)):
                network = with_first_conv(base, conv)
                functions[f"{kind} {dtype} {route}"] = makers[kind](network, torch.compile(network), DTYPES[dtype])
    return functions


def measure(functions: dict[str, Callable[[], object]], rounds: int, warm: int = 2) -> dict[str, float]:
    """Fastest seconds per call of each function, interleaved over ``rounds`` after ``warm`` calls."""
    for function in functions.values():
        for _ in range(warm):
            function()
    best = {name: float("inf") for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def report(channels: int, seconds: dict[str, float]) -> list[str]:
    """Table rows, each pass's time against the eager fp32 pass of its own kind."""
    height, width = SHAPES[channels]
    return [f"| {channels}×{height}×{width} | {name} | {1000 * s:.0f} | {seconds[name.split()[0] + ' fp32 eager'] / s:.2f}× |" for name, s in seconds.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3], choices=sorted(SHAPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256, help="images of the grad pass (the real batch)")
    parser.add_argument("--test-batch", type=int, default=1024, help="images of the test pass")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--kinds", nargs="+", default=["grad", "test"], choices=["grad", "test"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {describe_machine(args.threads)}; default ConvNet, grad pass {args.batch} images, test pass {args.test_batch}; fastest of {args.rounds} interleaved rounds")
    print("\n| input | pass dtype route | ms | vs eager fp32 |\n|---|---|---:|---:|")
    # every variant compiles ConvNet.forward anew (route, dtype, grad mode): keep dynamo from
    # giving up after its default 8 graphs, and start each input shape afresh
    torch._dynamo.config.recompile_limit = 64
    for channels in args.channels:
        torch._dynamo.reset()
        seconds = measure(pass_functions(channels, args.batch, args.test_batch, args.dtypes, args.kinds), args.rounds)
        print("\n".join(report(channels, seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
