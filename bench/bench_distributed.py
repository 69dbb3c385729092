"""Benchmark: class-parallel condensation on torch.distributed vs one process, on this machine's cores.

For each case (Fashion-MNIST, the paper's loop sizes, real batch 256 per class; DCC contrastive
from the first step, ``outer_warmup = inner_warmup = 0``), side by side in one run:

- ``1 process × 2 threads``: ``Condenser(config).run_iteration()`` with ``torch.set_num_threads(2)``;
- ``2 ranks × 1 thread``: the same under ``torchrun --standalone --nproc_per_node 2`` (gloo), each
  rank one thread (``condense/class_parallel.py``: 5 classes per rank, the network training on S
  split over the ranks when a rank gets ≥ 32 images of the batch, i.e. at ipc 10).

Measured per setting: seconds per iteration (after an untimed warm-up of the case's batch shapes
and, for the ranks, of one all-reduce), peak resident memory of each process during the timed
iterations (``/proc/self/clear_refs`` then ``VmHWM``, as ``bench_synthesis.py``), the CPU seconds
the benchmark's own processes spent per iteration (all threads, all ranks), the other load
on the machine during the timed iterations (busy cores from ``/proc/stat`` minus the benchmark's
own processes), and how far the two synthetic sets are apart afterwards (the same draws: DC is
exact, DCC differs by float rounding, see ``tests/condense/test_distributed.py``). Passes run eager
(``compile="off"``) unless ``--compile auto``, which warms up with a 2-step iteration instead.

Usage::

    python bench/bench_distributed.py --quick                  # smoke run: 2 matching steps, real batch 64
    python bench/bench_distributed.py --out report.md          # the three cases at the paper's loop sizes
    python bench/bench_distributed.py --cases dcc-ipc1 --iterations 2

(``--rank-worker`` is how the script runs itself under torchrun; not for direct use.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

from bench_synthesis import cpu_seconds, other_load, peak_rss_mib, reset_peak_rss, warm_up  # noqa: E402
from machine import describe_machine  # noqa: E402  (bench/machine.py)

from condense.config import CondenseConfig  # noqa: E402

DATASET = "fashion-mnist"
#: name -> (method, ipc)
CASES: dict[str, tuple[str, int]] = {"dc-ipc1": ("dc", 1), "dcc-ipc1": ("dcc", 1), "dcc-ipc10": ("dcc", 10)}
QUICK = dict(matching_steps=2, network_epochs=2, real_batch=64)
RANKS = 2


def case_config(case: str, quick: bool, compile_mode: str) -> CondenseConfig:
    method, ipc = CASES[case]
    config = CondenseConfig(dataset=DATASET, method=method, ipc=ipc, real_batch=256, outer_warmup=0, inner_warmup=0, compile=compile_mode)
    return config.replace(**QUICK) if quick else config


def measure(case: str, quick: bool, compile_mode: str, iterations: int, threads: int, out: Path) -> None:
    """One setting of one case in this process (one rank under torchrun); rank 0 writes ``out`` (JSON + tensor)."""
    from condense.data import load_dataset
    from condense.distributed import all_reduce_sum_, barrier, current_world, gather_indexed, init_distributed
    from condense.synthesis import Condenser

    torch.set_num_threads(threads)
    world = init_distributed("cpu")
    config = case_config(case, quick, compile_mode)
    dataset = load_dataset(DATASET)
    condenser = Condenser(config, dataset, device="cpu")
    if compile_mode == "off":
        warm_up(config, condenser.image_shape, condenser.num_classes, bf16=False)
    else:  # compile every pass shape of the case once (compiled passes are cached per kind and shape)
        Condenser(config.replace(matching_steps=2, network_epochs=1, seed=999), dataset, device="cpu").run_iteration()
    all_reduce_sum_([torch.zeros(400_000)])  # gloo connections up before the clock starts
    barrier()
    rss_start, _ = reset_peak_rss()
    before = cpu_seconds()
    started = time.perf_counter()
    losses = [condenser.run_iteration().loss for _ in range(iterations)]
    barrier()
    wall = time.perf_counter() - started
    after = cpu_seconds()
    own_cpu = after[1] - before[1] if before and after else None
    record = {"rank": world.rank, "peak_rss_mib": peak_rss_mib(), "rss_start_mib": rss_start, "own_cpu_s": own_cpu, "machine_busy_s": after[0] - before[0] if before and after else None}
    ranks = gather_indexed({world.rank: record}, world.size)
    if world.is_main:
        own = sum(r["own_cpu_s"] or 0.0 for r in ranks)
        busy = ranks[0]["machine_busy_s"]
        summary = {
            "case": case, "ranks": world.size, "threads": threads, "seconds_per_iteration": wall / iterations, "losses": losses,
            "per_rank": ranks, "other_load": None if busy is None else max(0.0, busy - own) / wall, "cpu_seconds_per_iteration": own / iterations,
        }
        out.write_text(json.dumps(summary, indent=2))
        torch.save(condenser.synthetic.detach().clone(), out.with_suffix(".pt"))


def run_setting(case: str, ranks: int, threads: int, args: argparse.Namespace, work: Path) -> tuple[dict, torch.Tensor]:
    out = work / f"{case}-{ranks}x{threads}.json"
    worker = [str(Path(__file__).resolve()), "--rank-worker", case, str(out), "--threads", str(threads), "--iterations", str(args.iterations), "--compile", args.compile]
    if args.quick:
        worker.append("--quick")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if ranks == 1:
        command = [sys.executable, *worker]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), *worker]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{case} with {ranks} rank(s) failed:\n{done.stderr[-4000:]}")
    return json.loads(out.read_text()), torch.load(out.with_suffix(".pt"), weights_only=True)


def report(args: argparse.Namespace) -> str:
    machine = describe_machine()
    lines = [
        f"# Class-parallel condensation: 1 process x 2 threads vs {RANKS} torchrun ranks x 1 thread",
        "",
        f"Machine: {machine}. Fashion-MNIST, real batch {QUICK['real_batch'] if args.quick else 256}, "
        f"{'quick loop (K=2, T=2)' if args.quick else 'the paper loop sizes (ipc 1: K=10, T=5; ipc 10: K=10, T=50)'}, "
        f"{args.iterations} timed iteration(s), compile={args.compile}, DCC contrastive throughout.",
        "",
        "| case | 1 process x 2 threads: s/it | 2 ranks x 1 thread: s/it | speed-up | CPU s/it (1 process / 2 ranks) | peak RSS MiB (1 process) | peak RSS MiB per rank | other load (cores) | max abs diff of S |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case in args.cases:
            single, s_images = run_setting(case, 1, 2, args, work)
            dist, d_images = run_setting(case, RANKS, 1, args, work)
            speedup = single["seconds_per_iteration"] / dist["seconds_per_iteration"]
            peaks = " / ".join(f"{r['peak_rss_mib']:.0f}" for r in dist["per_rank"])
            load = " / ".join("–" if r["other_load"] is None else f"{r['other_load']:.2f}" for r in (single, dist))
            lines.append(
                f"| {case} | {single['seconds_per_iteration']:.1f} | {dist['seconds_per_iteration']:.1f} | {speedup:.2f}x | "
                f"{single['cpu_seconds_per_iteration']:.0f} / {dist['cpu_seconds_per_iteration']:.0f} | "
                f"{single['per_rank'][0]['peak_rss_mib']:.0f} | {peaks} | {load} | {(s_images - d_images).abs().max().item():.1e} |"
            )
            print(lines[-1], flush=True)
    lines += ["", f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 matching steps, 2 network epochs, real batch 64")
    parser.add_argument("--compile", choices=["off", "auto", "on"], default="off")
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    parser.add_argument("--rank-worker", nargs=2, metavar=("CASE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rank_worker:
        case, out = args.rank_worker
        measure(case, args.quick, args.compile, args.iterations, args.threads, Path(out))
        return 0
    text = report(args)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
