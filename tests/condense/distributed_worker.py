"""One rank of the distributed tests (tests/condense/test_distributed.py); run as
``python -m tests.condense.distributed_worker MODE OUT`` by the test, with torchrun's environment.

Modes:
    main   the equivalence cases, the split evaluation, one split training epoch, an uninterrupted
           run and a run whose ranks all stop hard after iteration 2 (rank 0 writes OUT/*.pt)
    dies   rank 1 exits in the middle of iteration 1; rank 0 must stop with a one-line error
    hangs  rank 1 stops answering in the middle of iteration 1; rank 0 must stop within the timeout
    threads  each rank counts its OS threads before joining, in the group and after shutdown
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from condense.config import CondenseConfig, EvaluationConfig, parse_overrides
from condense.data import load_dataset
from condense.hooks import Callback
from condense.presets import get_preset

#: name -> config changes of the equivalence cases (2 iterations on sklearn-digits).
CASES: dict[str, dict] = {
    "dc": dict(method="dc"),
    "dcc": dict(method="dcc"),
    "dsac": dict(method="dsac"),
    "dcc-bn": dict(method="dcc", network="convnet-bn"),
    "dsac-class-batched": dict(method="dsac", class_batching="on"),  # each rank's real passes in one vmapped pass
    # 70 synthetic images >= 32 per rank x 2 ranks: the network training on S is split over the ranks
    "dc-split": dict(method="dc", ipc=7, matching_steps=2, network_epochs=1),
}
#: Evaluation of the split-evaluation check: 3 networks over 2 ranks (rank 0: network 0, rank 1: 1 and 2).
EVALUATION = EvaluationConfig(num_networks=3, epochs=3)
#: The run killed and resumed through the command line (``run --preset PRESET --set ...``).
RUN_PRESET = "quick-fashion-mnist-ipc1-dcc"
RUN_SETS = [
    "dataset=sklearn-digits", "network=convnet-w32", "iterations=3", "eval_at=0,3", "checkpoint_every=1",
    "matching_steps=3", "network_epochs=2", "outer_warmup=1", "inner_warmup=1", "evaluation.num_networks=2", "evaluation.epochs=2",
]


def cli_commands(out: Path) -> dict[str, list[str]]:
    """Command lines run on 2 ranks (in the worker's process group) and in one process by the test."""
    tiny = ["--set", "network=convnet-w32", "--set", "iterations=1", "--set", "eval_at=1", "--set", "matching_steps=2", "--set", "network_epochs=1",
            "--set", "evaluation.num_networks=3", "--set", "evaluation.epochs=2"]
    return {
        "evaluate": ["evaluate", str(out / "full" / "synthetic.safetensors"), "--num-networks", "3", "--epochs", "2", "--networks", "convnet-w32,mlp",
                     "--device", "cpu", "--no-progress"],
        "study": ["study", "--dataset", "sklearn-digits", "--methods", "random,dc", "--ipc", "1", "--seeds", "0", "--out", str(out / "study"),
                  "--device", "cpu", "--no-progress", *tiny],
    }


def case_config(name: str) -> CondenseConfig:
    base = dict(
        dataset="sklearn-digits", ipc=2, network="convnet-w32", iterations=2, matching_steps=3, network_epochs=2,
        real_batch=32, outer_warmup=1, inner_warmup=1, eval_at=(2,), evaluation=EvaluationConfig(num_networks=1, epochs=1),
    )
    return CondenseConfig(**{**base, **CASES[name]})


def run_config() -> CondenseConfig:
    return get_preset(RUN_PRESET).config.replace(**parse_overrides(RUN_SETS))


def condense_case(name: str, dataset) -> dict:
    from condense.synthesis import Condenser

    from condense.distributed import current_world, gather_indexed

    condenser = Condenser(case_config(name), dataset, device="cpu")
    losses = [condenser.run_iteration().loss for _ in range(case_config(name).iterations)]
    images = condenser.synthetic.detach().clone()
    world = current_world()
    every_rank = gather_indexed({world.rank: images}, world.size)  # the ranks must hold the same S, bit for bit
    return {"images": images, "losses": losses, "ranks_agree": all(torch.equal(images, other) for other in every_rank)}


def one_training_epoch(dataset, split: bool) -> dict[str, torch.Tensor]:
    """Network parameters after one epoch on 70 images with DSA, one process or split over the ranks."""
    from condense.augment import DSA
    from condense.class_parallel import train_epoch_over_ranks
    from condense.networks import build_network
    from condense.runtime import seeded_global_rng
    from condense.training import train_epoch

    images, labels = dataset.normalised_train()
    images, labels = images[:70], labels[:70]
    with seeded_global_rng(torch.Generator().manual_seed(5)):
        network = build_network("convnet-w32", 1, 10, (8, 8))
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
    dsa, generator = DSA(), torch.Generator().manual_seed(6)
    if split:
        train_epoch_over_ranks(network, optimizer, images, labels, batch_size=32, generator=generator, dsa=dsa)
    else:
        train_epoch(network, optimizer, images, labels, batch_size=32, generator=generator, augment=lambda x, g: dsa(x, g, siamese=False))
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


class HardStopAfter(Callback):
    """Ends the process without any clean-up after ``iteration`` iterations (like a kill)."""

    def __init__(self, iteration: int):
        self.iteration = iteration

    def on_synthesis_iteration_end(self, *, iteration: int, loss: float) -> None:
        if iteration == self.iteration:
            sys.stdout.flush()
            os._exit(0)


class RankOneFails(Callback):
    """Rank 1 dies (``dies``) or stops answering (``hangs``) after the first network update."""

    def __init__(self, how: str):
        self.how = how

    def on_synthesis_network_update(self, *, iteration: int, step: int, epoch: int, network) -> None:
        if os.environ["RANK"] == "1":
            if self.how == "dies":
                os._exit(3)
            time.sleep(120)


def main(mode: str, out: Path) -> int:
    from condense.__main__ import build_parser
    from condense.distributed import current_world, distributed_session, init_distributed, shutdown
    from condense.evaluation import evaluate_images
    from condense.runtime import run_command
    from condense.synthesis import condense_dataset

    torch.set_num_threads(1)
    if mode == "threads":
        return count_threads(out)
    dataset = load_dataset("sklearn-digits")
    if mode in ("dies", "hangs"):
        def doomed() -> int:
            with distributed_session("cpu"):  # as the command line runs a command (condense.__main__)
                condense_dataset(case_config("dc"), dataset, out / "doomed", device="cpu", progress=False, callbacks=[RankOneFails(mode)])
            return 0

        return run_command(doomed)
    world = init_distributed("cpu")
    assert world.size == 2, world
    results = {name: condense_case(name, dataset) for name in CASES}
    images, labels = dataset.normalised_train()
    results["evaluation"] = evaluate_images(images[:40], labels[:40], dataset, EVALUATION, augmentation="none", seed=0, key="dist", device="cpu")
    results["epoch"] = one_training_epoch(dataset, split=True)
    condense_dataset(run_config(), dataset, out / "full", device="cpu", progress=False)
    parser = build_parser()
    for name, argv in cli_commands(out).items():  # the commands' own code, in this process group
        with open(out / f"{name}-rank{world.rank}.txt", "w") as printed, contextlib.redirect_stdout(printed):
            args = parser.parse_args(argv)
            args.func(args)
    if current_world().is_main:
        torch.save(results, out / "results.pt")
    condense_dataset(run_config(), dataset, out / "cut", device="cpu", progress=False, callbacks=[HardStopAfter(2)])
    shutdown()
    return 0


def count_threads(out: Path) -> int:
    """The ``threads`` mode: this rank's OS threads before joining, in the group, and after shutdown."""
    from condense.distributed import gather_indexed, init_distributed, shutdown

    before_init = os_threads()
    world = init_distributed("cpu")
    # What a run does after joining: an optimiser (torch.optim imports torch._dynamo, which imports
    # torch.distributed.nn.functional) and an object collective, as the runs end with.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    gather_indexed({world.rank: float(world.rank)}, world.size)
    in_group = os_threads()
    shutdown()
    counts = dict(before_init=before_init, in_group=in_group, after_shutdown=os_threads())
    (out / f"threads-rank{world.rank}.json").write_text(json.dumps(counts))
    return 0


def os_threads() -> int:
    """This process's operating-system threads (Python's and C++'s: gloo's workers show up here)."""
    return len(os.listdir("/proc/self/task"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
